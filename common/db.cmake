# sq_db: libpq helpers (connect with backoff, parameterised exec, COPY
# batches, error conversion). Used by the broker, scheduler and db tests.
add_library(sq_db STATIC ${CMAKE_CURRENT_LIST_DIR}/sq_db.c)
target_include_directories(sq_db PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(sq_db PUBLIC sq_core PkgConfig::PQ PRIVATE sq_warnings)
set_target_properties(sq_db PROPERTIES POSITION_INDEPENDENT_CODE ON)
