# End-to-end tests (label e2e): shardq-broker, fixture workers and a real
# PostgreSQL, all as processes talking over real sockets. Each test makes
# its own database (sq_harness) and skips (77) without SHARDQ_TEST_DB.

# The harness other areas' e2e tests link too (the CLI tests).
add_library(sq_harness STATIC e2e/sq_proc.c e2e/sq_harness.c)
target_include_directories(sq_harness PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/e2e)
target_link_libraries(sq_harness PUBLIC sq_core sq_testlib PkgConfig::PQ PRIVATE sq_warnings)

add_executable(test_e2e_harness e2e/test_harness.c)
target_link_libraries(test_e2e_harness PRIVATE sq_harness sq_testlib sq_warnings)
add_test(NAME e2e.harness COMMAND test_e2e_harness)
set_tests_properties(e2e.harness PROPERTIES LABELS e2e SKIP_RETURN_CODE 77 TIMEOUT 120)

# The fixture worker (docs/protocol.md §5); a test tool, never installed.
if(TARGET sq_wire)
  add_executable(sq-test-worker e2e/sq_test_worker.c)
  target_link_libraries(sq-test-worker PRIVATE sq_wire sq_core sq_warnings)
endif()

# Everything below runs the fixture worker; the broker tests need the broker.
if(TARGET sq-test-worker)
  set(SQ_E2E_ENV "SHARDQ_TEST_WORKER_BIN=$<TARGET_FILE:sq-test-worker>")
  add_executable(test_e2e_worker_fixture e2e/test_worker_fixture.c)
  target_link_libraries(test_e2e_worker_fixture PRIVATE sq_harness sq_wire sq_testlib sq_warnings)
  add_test(NAME e2e.worker_fixture COMMAND test_e2e_worker_fixture)
  set_tests_properties(e2e.worker_fixture PROPERTIES LABELS e2e TIMEOUT 120
                       ENVIRONMENT "${SQ_E2E_ENV}")
endif()
