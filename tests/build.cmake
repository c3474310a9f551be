# The tree builds with Clang as well as GCC: build.clang compiles every C
# file of this (GCC) build again with Clang, with its flags and warnings as
# errors (tests/build/clang_check.py). scripts/deps.sh installs clang.
find_program(SQ_CLANG NAMES clang clang-16 clang-15 clang-14)
find_program(SQ_PYTHON3 NAMES python3)
if(CMAKE_C_COMPILER_ID STREQUAL "GNU" AND SQ_CLANG AND SQ_PYTHON3)
  add_test(NAME build.clang
           COMMAND ${SQ_PYTHON3} ${CMAKE_CURRENT_SOURCE_DIR}/build/clang_check.py
                   ${SQ_CLANG} ${CMAKE_BINARY_DIR})
  set_tests_properties(build.clang PROPERTIES LABELS unit TIMEOUT 600)
elseif(CMAKE_C_COMPILER_ID STREQUAL "GNU")
  message(STATUS "build.clang: no clang or python3 found, test not registered")
endif()
