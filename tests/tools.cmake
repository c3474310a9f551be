# Tests of the tokenizer, the GGUF writer, hostile GGUF files, the GGUF
# fuzz target and the shardq-model tool (owner: "engine-tools").
set(SQ_TOOLS_MODELS ${PROJECT_SOURCE_DIR}/models)

add_executable(test_tokenizer unit/test_tokenizer.c)
target_link_libraries(test_tokenizer PRIVATE sq_llm sq_testlib sq_warnings)
add_test(NAME unit.tokenizer COMMAND test_tokenizer ${SQ_TOOLS_MODELS}/stories260K.gguf)
set_tests_properties(unit.tokenizer PROPERTIES LABELS unit)

add_executable(test_gguf_writer unit/test_gguf_writer.c)
target_link_libraries(test_gguf_writer PRIVATE sq_llm sq_testlib sq_warnings)
add_test(NAME unit.gguf_writer COMMAND test_gguf_writer ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(unit.gguf_writer PROPERTIES LABELS unit)

add_executable(test_gguf_hostile unit/test_gguf_hostile.c)
target_link_libraries(test_gguf_hostile PRIVATE sq_llm sq_testlib sq_warnings)
add_test(NAME unit.gguf_hostile COMMAND test_gguf_hostile ${CMAKE_CURRENT_BINARY_DIR})
set_tests_properties(unit.gguf_hostile PROPERTIES LABELS unit)

# Fuzzing the GGUF reader (label fuzz). The reader's source is compiled into
# the fuzz target itself so that it carries the fuzzer's instrumentation.
# clang: a libFuzzer target, run ~20 s from a corpus seeded with the
# bundled models (new inputs go to a scratch corpus in the build tree).
# gcc: the same harness under a replay driver: the corpus plus a fixed
# number of seeded random mutants, so gcc CI exercises it too.
set(SQ_FUZZ_GGUF_SOURCES fuzz/fuzz_gguf.c fuzz/gguf_probe.c
    ${PROJECT_SOURCE_DIR}/worker/engine/sq_gguf.c)
set(SQ_FUZZ_INCLUDES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz ${PROJECT_SOURCE_DIR}/worker/engine
    ${PROJECT_SOURCE_DIR}/worker/backend/cpu)
if(CMAKE_C_COMPILER_ID MATCHES "Clang")
  add_executable(fuzz_gguf ${SQ_FUZZ_GGUF_SOURCES})
  target_include_directories(fuzz_gguf PRIVATE ${SQ_FUZZ_INCLUDES})
  target_compile_definitions(fuzz_gguf PRIVATE _POSIX_C_SOURCE=200809L)
  target_compile_options(fuzz_gguf PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(fuzz_gguf PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_gguf PRIVATE sq_core sq_warnings)
  set(SQ_FUZZ_CORPUS ${CMAKE_CURRENT_BINARY_DIR}/fuzz_gguf_corpus)
  file(MAKE_DIRECTORY ${SQ_FUZZ_CORPUS})
  add_test(NAME fuzz.gguf COMMAND fuzz_gguf -max_total_time=20 -seed=1 -rss_limit_mb=2048
           ${SQ_FUZZ_CORPUS} ${SQ_TOOLS_MODELS})
else()
  if(SQ_WITH_FUZZ)
    message(STATUS "SQ_WITH_FUZZ: ${CMAKE_C_COMPILER_ID} has no libFuzzer; "
                   "building the GGUF fuzz harness as a replay driver")
  endif()
  add_executable(fuzz_gguf_replay fuzz/fuzz_replay.c ${SQ_FUZZ_GGUF_SOURCES})
  target_include_directories(fuzz_gguf_replay PRIVATE ${SQ_FUZZ_INCLUDES})
  target_compile_definitions(fuzz_gguf_replay PRIVATE _POSIX_C_SOURCE=200809L)
  target_link_libraries(fuzz_gguf_replay PRIVATE sq_core sq_testlib sq_warnings)
  add_test(NAME fuzz.gguf COMMAND fuzz_gguf_replay -runs=10000 -seed=1 ${SQ_TOOLS_MODELS})
endif()
set_tests_properties(fuzz.gguf PROPERTIES LABELS fuzz TIMEOUT 300)

# The hostile-file test shares the fuzz target's accessor probe.
target_sources(test_gguf_hostile PRIVATE fuzz/gguf_probe.c)
target_include_directories(test_gguf_hostile PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/fuzz)

# shardq-model as a real process: CLI, random models, quantize.
if(TARGET shardq-model)
  add_executable(test_shardq_model unit/test_shardq_model.c)
  target_compile_definitions(test_shardq_model PRIVATE _POSIX_C_SOURCE=200809L)
  target_link_libraries(test_shardq_model PRIVATE sq_llm sq_testlib sq_warnings)
  add_test(NAME unit.shardq_model
           COMMAND test_shardq_model $<TARGET_FILE:shardq-model> ${SQ_TOOLS_MODELS}
                   ${CMAKE_CURRENT_BINARY_DIR})
  set_tests_properties(unit.shardq_model PROPERTIES LABELS unit)
endif()
