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

# Broker scenarios: one binary per family, one CTest entry per case.
# sq_e2e_cases(<binary> <source> CASES <case>... SERIAL <case>...) — SERIAL cases restart
# the shared PostgreSQL, so nothing else may run beside them.
function(sq_e2e_cases bin src)
  cmake_parse_arguments(arg "" "" "CASES;SERIAL" ${ARGN})
  add_executable(${bin} ${src})
  target_link_libraries(${bin} PRIVATE sq_e2e_client sq_harness sq_testlib sq_warnings)
  foreach(case IN LISTS arg_CASES arg_SERIAL)
    add_test(NAME e2e.${case} COMMAND ${bin} ${case})
    set_tests_properties(e2e.${case} PROPERTIES LABELS e2e SKIP_RETURN_CODE 77 TIMEOUT 300
      ENVIRONMENT "${SQ_E2E_ENV};SHARDQ_BROKER_BIN=$<TARGET_FILE:shardq-broker>;SHARDQ_SQL_DIR=${PROJECT_SOURCE_DIR}/sql;SHARDQ_TEST_PG_PROXY=${CMAKE_CURRENT_SOURCE_DIR}/e2e/pg_commit_drop.py")
  endforeach()
  foreach(case IN LISTS arg_SERIAL)
    set_tests_properties(e2e.${case} PROPERTIES RUN_SERIAL TRUE)
  endforeach()
endfunction()

if(TARGET sq-test-worker AND TARGET shardq-broker)
  add_library(sq_e2e_client STATIC e2e/sq_e2e_client.c e2e/sq_e2e_case.c)
  target_include_directories(sq_e2e_client PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/e2e)
  target_link_libraries(sq_e2e_client PUBLIC sq_wire sq_harness PRIVATE sq_warnings)
  sq_e2e_cases(test_e2e_flow e2e/test_e2e_flow.c
               CASES ten_thousand cancel retries_dead fairness duplicate_delivery priority
                     idempotent_submit)
  sq_e2e_cases(test_e2e_crash e2e/test_e2e_crash.c
               CASES worker_kill worker_term worker_stall stale_result lease_suspect lease_probe broker_kill broker_term
                     commit_reply_lost cancel_refused
               SERIAL pg_restart commit_backpressure cancel_db_down term_db_down term_db_lost)
  sq_e2e_cases(test_e2e_input e2e/test_e2e_input.c
               CASES bad_frames hostile_strings usage_counts)
  sq_e2e_cases(test_e2e_broker_faults e2e/test_e2e_broker_faults.c
               CASES loop_stall lost_together tasks_params_cap results_page_cap stale_audit
                     audit_once)
  sq_e2e_cases(test_e2e_metrics e2e/test_e2e_metrics.c CASES metrics_models metrics_group)
endif()
