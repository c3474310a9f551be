# Client area tests: job-file validation (unit) and the shardq CLI driven
# end to end against a real broker, fixture workers and PostgreSQL (e2e).

add_executable(test_jsonl unit/test_jsonl.c)
target_link_libraries(test_jsonl PRIVATE sq_jsonl sq_testlib PkgConfig::JANSSON sq_warnings)
add_test(NAME unit.jsonl COMMAND test_jsonl)
set_tests_properties(unit.jsonl PROPERTIES LABELS unit TIMEOUT 60)

# Fuzzing the job-file parser and the result lines (label fuzz): what
# sq_jsonl.h promises, checked on every input (fuzz/fuzz_jsonl.c).
sq_fuzz_test(jsonl
  SOURCES ${PROJECT_SOURCE_DIR}/common/sq_jsonl.c ${PROJECT_SOURCE_DIR}/common/sq_jsonl_task.c
          ${PROJECT_SOURCE_DIR}/common/sq_jsonl_result.c
  INCLUDES ${PROJECT_SOURCE_DIR}/common
  LIBS sq_core PkgConfig::JANSSON m
  SEEDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/seeds/jsonl
  RUNS 100000)

# libshardq's request rules (retries, timeouts, stale replies, paging)
# against a scripted peer on a real loopback ROUTER socket.
if(TARGET shardq)
  add_executable(test_client unit/test_client.c)
  target_link_libraries(test_client PRIVATE shardq sq_wire sq_testlib Threads::Threads
                        sq_warnings)
  add_test(NAME unit.client COMMAND test_client)
  set_tests_properties(unit.client PROPERTIES LABELS unit TIMEOUT 60)
endif()

# The CLI as a user runs it (tests/e2e/test_cli.c): one CTest entry per case.
# broker_down needs neither broker nor database; the others need both.
if(TARGET shardq-cli AND TARGET sq_harness)
  add_executable(test_cli e2e/test_cli.c)
  target_link_libraries(test_cli PRIVATE sq_harness sq_testlib PkgConfig::JANSSON util sq_warnings)
  set(SQ_CLI_ENV "SHARDQ_CLI_BIN=$<TARGET_FILE:shardq-cli>")
  add_test(NAME e2e.cli_broker_down COMMAND test_cli broker_down)
  set_tests_properties(e2e.cli_broker_down PROPERTIES LABELS e2e TIMEOUT 120
                       ENVIRONMENT "${SQ_CLI_ENV}")
  if(TARGET shardq-broker AND TARGET sq-test-worker)
    list(APPEND SQ_CLI_ENV "SHARDQ_BROKER_BIN=$<TARGET_FILE:shardq-broker>"
         "SHARDQ_TEST_WORKER_BIN=$<TARGET_FILE:sq-test-worker>"
         "SHARDQ_SQL_DIR=${PROJECT_SOURCE_DIR}/sql")
    foreach(case flow failures chat cancel invalid restart stats)
      add_test(NAME e2e.cli_${case} COMMAND test_cli ${case})
      set_tests_properties(e2e.cli_${case} PROPERTIES LABELS e2e SKIP_RETURN_CODE 77
                           TIMEOUT 300 ENVIRONMENT "${SQ_CLI_ENV}")
    endforeach()
  endif()
endif()
