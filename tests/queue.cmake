# Queue area (owner: broker): codec and queue unit tests, database tests.
# DB tests read SHARDQ_TEST_DB and skip (77) when it is unset.
add_executable(test_wire ${CMAKE_CURRENT_LIST_DIR}/unit/test_wire.c)
target_link_libraries(test_wire PRIVATE sq_wire sq_testlib sq_warnings)
add_test(NAME unit.wire COMMAND test_wire)
set_tests_properties(unit.wire PROPERTIES LABELS unit)
