# Scheduler tests (helper "scheduler"): policy, cron/time zones, decisions,
# simulate, actuators, scaling records.
foreach(t policy cron decide simulate)
  add_executable(test_${t} unit/test_${t}.c)
  target_link_libraries(test_${t} PRIVATE sq_sched sq_testlib sq_warnings m)
  add_test(NAME unit.sched.${t} COMMAND test_${t} ${PROJECT_SOURCE_DIR}/scheduler/traces)
  set_tests_properties(unit.sched.${t} PROPERTIES LABELS unit)
endforeach()

# Fuzzing the policy file, cron and ISO time parsers and TZif zone files
# (fuzz/fuzz_policy.c, fuzz/fuzz_cron.c; the regress_* seeds are what the
# first runs found).
sq_fuzz_test(policy
  SOURCES ${PROJECT_SOURCE_DIR}/scheduler/sq_policy.c ${PROJECT_SOURCE_DIR}/scheduler/sq_cron.c
          ${PROJECT_SOURCE_DIR}/scheduler/sq_tz.c
  INCLUDES ${PROJECT_SOURCE_DIR}/scheduler
  LIBS sq_core PkgConfig::YAML m
  SEEDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/seeds/policy
  RUNS 100000)
sq_fuzz_test(cron
  SOURCES ${PROJECT_SOURCE_DIR}/scheduler/sq_cron.c ${PROJECT_SOURCE_DIR}/scheduler/sq_tz.c
  INCLUDES ${PROJECT_SOURCE_DIR}/scheduler
  LIBS sq_core m
  SEEDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/seeds/cron
  RUNS 100000)

add_executable(test_local_actuator unit/test_local_actuator.c)
target_link_libraries(test_local_actuator PRIVATE sq_sched sched_testutil sq_testlib sq_warnings)
# With shardq-worker built, its answers to --check-flags are checked too
# (here and in db.sched.loop).
set(sched_worker_bin "")
if(TARGET shardq-worker)
  set(sched_worker_bin $<TARGET_FILE:shardq-worker>)
endif()
add_test(NAME unit.sched.local_actuator
         COMMAND test_local_actuator ${CMAKE_CURRENT_SOURCE_DIR}/unit/sched_fake_mpirun.sh
                 ${sched_worker_bin})
set_tests_properties(unit.sched.local_actuator PROPERTIES LABELS unit TIMEOUT 120)

# The kubernetes actuator against a local HTTPS endpoint with the real API
# shapes (no API server can run here): tests/unit/sched_kube_api.py.
add_executable(test_kube_actuator unit/test_kube_actuator.c)
target_link_libraries(test_kube_actuator PRIVATE sq_sched sched_testutil sq_testlib sq_warnings)
add_test(NAME unit.sched.kube_actuator
         COMMAND test_kube_actuator ${CMAKE_CURRENT_SOURCE_DIR}/unit/sched_kube_api.py)
set_tests_properties(unit.sched.kube_actuator PROPERTIES LABELS unit TIMEOUT 120)

# scaling_events / policies in a real PostgreSQL (skipped without SHARDQ_TEST_DB).
add_executable(test_sched_db db/test_sched_db.c)
target_link_libraries(test_sched_db PRIVATE sq_sched_db sched_testutil sq_testlib sq_warnings)
add_test(NAME db.sched.scaling_events COMMAND test_sched_db ${PROJECT_SOURCE_DIR}/sql)
set_tests_properties(db.sched.scaling_events PROPERTIES LABELS db SKIP_RETURN_CODE 77)

# The control loop as a process: fixture broker (real ZeroMQ, sq_wire),
# real PostgreSQL, process groups from sched_fake_mpirun.sh.
add_library(sched_testutil STATIC db/sched_testutil.c db/sched_fake_broker.c)
target_include_directories(sched_testutil PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/db)
target_link_libraries(sched_testutil PUBLIC sq_db sq_testlib sq_wire PkgConfig::CZMQ Threads::Threads
                      PRIVATE sq_warnings)
add_executable(test_sched_loop db/test_sched_loop.c)
target_link_libraries(test_sched_loop PRIVATE sched_testutil sq_db sq_wire sq_testlib PkgConfig::CZMQ
                      Threads::Threads sq_warnings)
add_test(NAME db.sched.loop
         COMMAND test_sched_loop $<TARGET_FILE:shardq-scheduler>
                 ${CMAKE_CURRENT_SOURCE_DIR}/unit/sched_fake_mpirun.sh ${PROJECT_SOURCE_DIR}/sql
                 ${sched_worker_bin})
set_tests_properties(db.sched.loop PROPERTIES LABELS db SKIP_RETURN_CODE 77 TIMEOUT 180)

# The control loop under faults: a PostgreSQL that stops answering (a proxy
# in the test), a row the database refuses, an error cut inside a UTF-8
# character, a reload that removes a pool, --grace-s 0.
add_executable(test_sched_faults db/test_sched_faults.c)
target_link_libraries(test_sched_faults PRIVATE sched_testutil sq_db sq_wire sq_testlib
                      PkgConfig::CZMQ Threads::Threads sq_warnings)
add_test(NAME db.sched.faults
         COMMAND test_sched_faults $<TARGET_FILE:shardq-scheduler>
                 ${CMAKE_CURRENT_SOURCE_DIR}/unit/sched_fake_mpirun.sh ${PROJECT_SOURCE_DIR}/sql)
set_tests_properties(db.sched.faults PROPERTIES LABELS db SKIP_RETURN_CODE 77 TIMEOUT 300)

# End to end: real broker, real `mpirun shardq-worker` groups started by the
# local actuator, real PostgreSQL (sq_harness from tests/e2e.cmake).
if(TARGET sq_harness AND TARGET shardq-broker AND TARGET shardq-worker)
  add_executable(test_sched_scale db/test_sched_scale.c)
  target_link_libraries(test_sched_scale PRIVATE sched_testutil sq_harness shardq sq_db
                        sq_testlib m sq_warnings)
  add_test(NAME e2e.sched_scale
           COMMAND test_sched_scale $<TARGET_FILE:shardq-scheduler> $<TARGET_FILE:shardq-worker>
                   ${PROJECT_SOURCE_DIR}/models/stories260K.gguf 18530)
  set_tests_properties(e2e.sched_scale PROPERTIES LABELS e2e SKIP_RETURN_CODE 77 TIMEOUT 600
    ENVIRONMENT "SHARDQ_BROKER_BIN=$<TARGET_FILE:shardq-broker>;SHARDQ_SQL_DIR=${PROJECT_SOURCE_DIR}/sql;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endif()

# The scheduler's flags: a bad value is refused (exit 2) naming the flag,
# the value and the range, in both forms; so is a missing --policy
sq_flag_tests(unit.scheduler_flag shardq-scheduler "--policy=p.yaml;--db=host=x"
              "shardq-scheduler: " "tick-ms=0" "metrics-port=70000" "log-level=loud"
              "grace-s=-1" "actuator=foo")
sq_flag_tests(unit.scheduler_flag.simulate shardq-scheduler "simulate;--policy=p.yaml"
              "shardq-scheduler: " "startup-s=-5" "service-s=0" "tick-ms=x")
add_test(NAME unit.scheduler_flag.no_policy COMMAND shardq-scheduler --db=host=x)
set_tests_properties(unit.scheduler_flag.no_policy PROPERTIES LABELS unit
  PASS_REGULAR_EXPRESSION "^shardq-scheduler: --policy FILE is required")
