# Worker groups (issue 4): the continuous batcher under real mpirun, and
# groups serving a real broker end to end.
if(TARGET sq_group)
  add_executable(test_batcher worker/test_batcher.c)
  target_link_libraries(test_batcher PRIVATE sq_group sq_llm sq_testlib sq_warnings MPI::MPI_C)
  foreach(n 1 2)
    add_test(NAME mpi.batcher.tp${n}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${n} --oversubscribe
                     $<TARGET_FILE:test_batcher> ${PROJECT_SOURCE_DIR}/models/stories260K.gguf)
    # (SQ_MPI_ENV, tests/engine.cmake: as root, and no leak check of Open
    # MPI's start-up under ASan)
    set_tests_properties(mpi.batcher.tp${n} PROPERTIES LABELS mpi TIMEOUT 300
      ENVIRONMENT "${SQ_MPI_ENV}")
  endforeach()
endif()

# shardq-group's own --help and --version before --, as every program has
# (they went to mpirun, which answered with Open MPI's); after -- they are
# the worker's
if(TARGET shardq-worker)
  set(SQ_GROUP_SH ${PROJECT_SOURCE_DIR}/worker/group/shardq-group)
  add_test(NAME unit.group_help COMMAND ${SQ_GROUP_SH} -np 2 --help)
  set_tests_properties(unit.group_help PROPERTIES LABELS unit
    PASS_REGULAR_EXPRESSION "^usage: shardq-group \\[MPIRUN-OPTIONS\\] -- WORKER-OPTIONS\n.*drain")
  add_test(NAME unit.group_version COMMAND ${SQ_GROUP_SH} -np 2 --version -- --help)
  add_test(NAME unit.group_worker_version COMMAND ${SQ_GROUP_SH} -np 1 -- --version)
  add_test(NAME unit.group_worker_help COMMAND ${SQ_GROUP_SH} -np 1 -- --help)
  set_tests_properties(unit.group_version unit.group_worker_version unit.group_worker_help
    PROPERTIES LABELS unit ENVIRONMENT "${SQ_MPI_ENV};SHARDQ_WORKER_BIN=$<TARGET_FILE:shardq-worker>")
  set_tests_properties(unit.group_version PROPERTIES
    PASS_REGULAR_EXPRESSION "^shardq-group ${PROJECT_VERSION}\n$")
  set_tests_properties(unit.group_worker_version PROPERTIES
    PASS_REGULAR_EXPRESSION "^shardq-worker ${PROJECT_VERSION}\n$")
  set_tests_properties(unit.group_worker_help PROPERTIES
    PASS_REGULAR_EXPRESSION "^usage: shardq-worker ")
  # the worker cannot say its version: no version, and a failure
  add_test(NAME unit.group_version_no_worker COMMAND ${SQ_GROUP_SH} --version)
  set_tests_properties(unit.group_version_no_worker PROPERTIES LABELS unit WILL_FAIL TRUE
    ENVIRONMENT "SHARDQ_WORKER_BIN=${PROJECT_SOURCE_DIR}/no-such-worker")
endif()

if(TARGET sq_group AND TARGET sq_e2e_client AND TARGET shardq-broker AND TARGET shardq-cli AND TARGET shardq-model)
  add_executable(test_group_e2e worker/test_group_e2e.c)
  # (sq_llm: the bundled model's tokenizer, for the ids a chat prompt must give)
  target_link_libraries(test_group_e2e PRIVATE sq_e2e_client sq_harness sq_llm sq_testlib
                        sq_warnings m)
  # the environment of a case, given its worker binary (tests/cuda.cmake
  # adds a case whose groups run the worker built on the CUDA emulator)
  function(sq_group_e2e_test case worker)
    add_test(NAME e2e.${case} COMMAND test_group_e2e ${case})
    set_tests_properties(e2e.${case} PROPERTIES LABELS e2e SKIP_RETURN_CODE 77 TIMEOUT 600
      ENVIRONMENT "${SQ_MPI_ENV};SHARDQ_BROKER_BIN=$<TARGET_FILE:shardq-broker>;SHARDQ_GROUP_BIN=${PROJECT_SOURCE_DIR}/worker/group/shardq-group;SHARDQ_WORKER_BIN=${worker};SHARDQ_MODEL_BIN=$<TARGET_FILE:shardq-model>;SHARDQ_CLI_BIN=$<TARGET_FILE:shardq-cli>;SHARDQ_TEST_MODEL=${PROJECT_SOURCE_DIR}/models/stories260K.gguf;SHARDQ_SQL_DIR=${PROJECT_SOURCE_DIR}/sql")
  endfunction()
  foreach(case group_serves group_rank_killed group_drain group_adapters group_lora_updates
               group_kv_pages group_kv_q8_0 group_task_fields group_chat group_not_finite group_link
               group_lora_states)
    sq_group_e2e_test(${case} $<TARGET_FILE:shardq-worker>)
  endforeach()
endif()

# LoRA: adapters made with shardq-model (random, seeded) and merged offline
# as the independent reference; then unmerged application under TP = 1, 2.
if(TARGET sq_group AND TARGET shardq-model)
  set(SQ_LORA_DIR ${CMAKE_CURRENT_BINARY_DIR}/lora)
  set(SQ_BASE ${PROJECT_SOURCE_DIR}/models/stories260K.gguf)
  set(SQ_SHARDQ_MODEL $<TARGET_FILE:shardq-model>)
  add_test(NAME mpi.lora.make_adapters
           COMMAND sh -c "mkdir -p ${SQ_LORA_DIR} && \
${SQ_SHARDQ_MODEL} lora-random --base ${SQ_BASE} --rank 4 --seed 3 --targets attn_q,attn_v,attn_output,ffn_up,ffn_down --gain 0.2 ${SQ_LORA_DIR}/a.gguf && \
${SQ_SHARDQ_MODEL} lora-random --base ${SQ_BASE} --rank 8 --seed 5 --alpha 4 --targets attn_k,ffn_gate,ffn_down --gain 0.2 ${SQ_LORA_DIR}/b.gguf && \
${SQ_SHARDQ_MODEL} lora-merge ${SQ_BASE} ${SQ_LORA_DIR}/a.gguf ${SQ_LORA_DIR}/merged-a.gguf && \
${SQ_SHARDQ_MODEL} lora-merge ${SQ_BASE} ${SQ_LORA_DIR}/b.gguf ${SQ_LORA_DIR}/merged-b.gguf && \
${SQ_SHARDQ_MODEL} random --shape tiny-gqa --seed 2 ${SQ_LORA_DIR}/other.gguf && \
${SQ_SHARDQ_MODEL} lora-random --base ${SQ_LORA_DIR}/other.gguf --rank 2 ${SQ_LORA_DIR}/wrong.gguf")
  set_tests_properties(mpi.lora.make_adapters PROPERTIES LABELS mpi FIXTURES_SETUP sq_lora_files)
  add_executable(test_lora worker/test_lora.c)
  target_link_libraries(test_lora PRIVATE sq_group sq_llm sq_testlib sq_warnings MPI::MPI_C m)
  foreach(n 1 2)
    add_test(NAME mpi.lora.tp${n}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${n} --oversubscribe
                     $<TARGET_FILE:test_lora> ${SQ_BASE} ${SQ_LORA_DIR}/a.gguf ${SQ_LORA_DIR}/b.gguf
                     ${SQ_LORA_DIR}/merged-a.gguf ${SQ_LORA_DIR}/merged-b.gguf
                     ${SQ_LORA_DIR}/wrong.gguf)
    set_tests_properties(mpi.lora.tp${n} PROPERTIES LABELS mpi TIMEOUT 300
      FIXTURES_REQUIRED sq_lora_files
      ENVIRONMENT "${SQ_MPI_ENV}")
  endforeach()
endif()
