# Queue area (owner: broker): codec and queue unit tests, database tests.
# DB tests read SHARDQ_TEST_DB and skip (77) when it is unset.
add_executable(test_wire ${CMAKE_CURRENT_LIST_DIR}/unit/test_wire.c)
target_link_libraries(test_wire PRIVATE sq_wire sq_testlib sq_warnings)
add_test(NAME unit.wire COMMAND test_wire)
set_tests_properties(unit.wire PROPERTIES LABELS unit)

# Fuzzing the wire decoder (label fuzz): sq_wire_validate and the
# accessors on raw bodies, sq_wire_parse on frames, and the fields the
# broker and the client read (fuzz/fuzz_wire.c).
sq_fuzz_test(wire
  SOURCES ${PROJECT_SOURCE_DIR}/common/sq_wire.c ${PROJECT_SOURCE_DIR}/common/sq_wire_msg.c
  INCLUDES ${PROJECT_SOURCE_DIR}/common
  LIBS sq_core PkgConfig::CZMQ PkgConfig::ZMQ PkgConfig::MSGPACK
  SEEDS ${CMAKE_CURRENT_LIST_DIR}/fuzz/seeds/wire
  RUNS 100000)

if(TARGET sq_bqueue)
  add_executable(test_queue ${CMAKE_CURRENT_LIST_DIR}/unit/test_queue.c)
  target_link_libraries(test_queue PRIVATE sq_bqueue sq_testlib sq_warnings)
  add_test(NAME unit.queue COMMAND test_queue)
  set_tests_properties(unit.queue PROPERTIES LABELS unit)
endif()

# The broker's flags: a bad value is refused (exit 2) naming the flag it
# was given to, for every numeric flag, as --flag=value and --flag value
if(TARGET shardq-broker)
  sq_flag_tests(unit.broker_flag shardq-broker "--db=host=x" "shardq-broker: bad value for "
                "metrics-port=0" "heartbeat-ms=499" "lease-timeout-ms=-1" "retry-base-ms=x"
                "retry-cap-ms=1e3" "log-level=loud")
endif()

# a socket the broker cannot bind: the flag, the endpoint and the reason,
# before any database work (host=x would fail only later)
if(TARGET shardq-broker)
  add_test(NAME unit.broker_bind_bad COMMAND shardq-broker --db=host=x --listen=bogus)
  add_test(NAME unit.broker_bind_bad_workers
           COMMAND shardq-broker --db=host=x --listen=tcp://127.0.0.1:0 --workers=tcp://999.1.1.1:5)
  set_tests_properties(unit.broker_bind_bad PROPERTIES LABELS unit
    PASS_REGULAR_EXPRESSION "err=\"--listen bogus: cannot bind: Invalid argument\"")
  set_tests_properties(unit.broker_bind_bad_workers PROPERTIES LABELS unit
    PASS_REGULAR_EXPRESSION "err=\"--workers tcp://999\\.1\\.1\\.1:5: cannot bind: ")
endif()

# Database tests (label db): migrations through the real broker binary, the
# audit-log trigger, and every sql/queries file run as-is through psql.
if(TARGET shardq-broker AND TARGET sq_db)
  add_executable(test_db ${CMAKE_CURRENT_LIST_DIR}/db/test_db.c)
  target_link_libraries(test_db PRIVATE sq_db sq_testlib sq_warnings)
  add_test(NAME db.schema COMMAND test_db)
  set_tests_properties(db.schema PROPERTIES LABELS db SKIP_RETURN_CODE 77 TIMEOUT 120
    ENVIRONMENT "SHARDQ_BROKER_BIN=$<TARGET_FILE:shardq-broker>;SHARDQ_SQL_DIR=${PROJECT_SOURCE_DIR}/sql")
endif()
