# Worker groups (issue 4): the continuous batcher under real mpirun, and
# groups serving a real broker end to end.
if(TARGET sq_group)
  add_executable(test_batcher worker/test_batcher.c)
  target_link_libraries(test_batcher PRIVATE sq_group sq_llm sq_testlib sq_warnings MPI::MPI_C)
  foreach(n 1 2)
    add_test(NAME mpi.batcher.tp${n}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${n} --oversubscribe
                     $<TARGET_FILE:test_batcher> ${PROJECT_SOURCE_DIR}/models/stories260K.gguf)
    set_tests_properties(mpi.batcher.tp${n} PROPERTIES LABELS mpi TIMEOUT 300
      ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
  endforeach()
endif()

if(TARGET sq_group AND TARGET sq_e2e_client AND TARGET shardq-broker)
  add_executable(test_group_e2e worker/test_group_e2e.c)
  target_link_libraries(test_group_e2e PRIVATE sq_e2e_client sq_harness sq_testlib sq_warnings)
  foreach(case group_serves group_rank_killed group_drain)
    add_test(NAME e2e.${case} COMMAND test_group_e2e ${case})
    set_tests_properties(e2e.${case} PROPERTIES LABELS e2e SKIP_RETURN_CODE 77 TIMEOUT 400
      ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;SHARDQ_BROKER_BIN=$<TARGET_FILE:shardq-broker>;SHARDQ_GROUP_BIN=${PROJECT_SOURCE_DIR}/worker/group/shardq-group;SHARDQ_WORKER_BIN=$<TARGET_FILE:shardq-worker>;SHARDQ_TEST_MODEL=${PROJECT_SOURCE_DIR}/models/stories260K.gguf;SHARDQ_SQL_DIR=${PROJECT_SOURCE_DIR}/sql")
  endforeach()
endif()
