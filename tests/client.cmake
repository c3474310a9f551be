# Client area tests: job-file validation (unit) and the shardq CLI driven
# end to end against a real broker, fixture workers and PostgreSQL (e2e).

add_executable(test_jsonl unit/test_jsonl.c)
target_link_libraries(test_jsonl PRIVATE sq_jsonl sq_testlib PkgConfig::JANSSON sq_warnings)
add_test(NAME unit.jsonl COMMAND test_jsonl)
set_tests_properties(unit.jsonl PROPERTIES LABELS unit TIMEOUT 60)
