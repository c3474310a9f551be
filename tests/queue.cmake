# Queue area (owner: broker): codec and queue unit tests, database tests.
# DB tests read SHARDQ_TEST_DB and skip (77) when it is unset.
add_executable(test_wire ${CMAKE_CURRENT_LIST_DIR}/unit/test_wire.c)
target_link_libraries(test_wire PRIVATE sq_wire sq_testlib sq_warnings)
add_test(NAME unit.wire COMMAND test_wire)
set_tests_properties(unit.wire PROPERTIES LABELS unit)

if(TARGET sq_bqueue)
  add_executable(test_queue ${CMAKE_CURRENT_LIST_DIR}/unit/test_queue.c)
  target_link_libraries(test_queue PRIVATE sq_bqueue sq_testlib sq_warnings)
  add_test(NAME unit.queue COMMAND test_queue)
  set_tests_properties(unit.queue PROPERTIES LABELS unit)
endif()
