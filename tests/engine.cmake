# Engine tests (owner: "engine"). Models come from models/ in the source tree.
set(SQ_ENGINE_MODELS ${PROJECT_SOURCE_DIR}/models)

add_executable(test_gguf unit/test_gguf.c)
target_link_libraries(test_gguf PRIVATE sq_llm sq_testlib sq_warnings)
add_test(NAME unit.gguf COMMAND test_gguf ${SQ_ENGINE_MODELS})
set_tests_properties(unit.gguf PROPERTIES LABELS unit)

add_executable(test_model unit/test_model.c)
target_link_libraries(test_model PRIVATE sq_llm sq_testlib sq_warnings)
# a random model of 128 dims in 4 heads of 32 (2 KV heads): the Q8_0 KV
# cache's tests need whole blocks of 32 values per head (stories260K's are 8)
set(SQ_HD32_MODEL ${CMAKE_CURRENT_BINARY_DIR}/engine-hd32.gguf)
add_test(NAME unit.model.make_hd32
         COMMAND shardq-model random --shape tiny-gqa --dim 128 --heads 4 --kv-heads 2
                 --seed 13 ${SQ_HD32_MODEL})
set_tests_properties(unit.model.make_hd32 PROPERTIES LABELS unit FIXTURES_SETUP sq_hd32)
add_test(NAME unit.model COMMAND test_model ${SQ_ENGINE_MODELS} ${SQ_HD32_MODEL})
# the same capped at AVX2 + AVX-VNNI, whose own packed Q8_0 kernel the
# engine then runs (where the CPU has it: else a lower level, noted)
add_test(NAME unit.model.avx2vnni COMMAND test_model ${SQ_ENGINE_MODELS} ${SQ_HD32_MODEL})
set_tests_properties(unit.model unit.model.avx2vnni PROPERTIES LABELS unit
                     FIXTURES_REQUIRED sq_hd32)
set_tests_properties(unit.model.avx2vnni PROPERTIES ENVIRONMENT SQ_CPU_SIMD=avx2vnni)

add_executable(test_kv_pages unit/test_kv_pages.c)
target_link_libraries(test_kv_pages PRIVATE sq_llm sq_testlib sq_warnings)
add_test(NAME unit.kv_pages COMMAND test_kv_pages)
set_tests_properties(unit.kv_pages PROPERTIES LABELS unit)

add_executable(test_model_quality unit/test_model_quality.c)
target_link_libraries(test_model_quality PRIVATE sq_llm sq_testlib sq_warnings m)
add_test(NAME unit.model_quality
         COMMAND test_model_quality ${SQ_ENGINE_MODELS} ${CMAKE_CURRENT_SOURCE_DIR}/data)
set_tests_properties(unit.model_quality PROPERTIES LABELS unit)

add_executable(test_model_load unit/test_model_load.c)
target_link_libraries(test_model_load PRIVATE sq_llm sq_testlib sq_warnings m)
add_test(NAME unit.model_load COMMAND test_model_load)
set_tests_properties(unit.model_load PROPERTIES LABELS unit)

add_executable(test_sampler unit/test_sampler.c)
target_link_libraries(test_sampler PRIVATE sq_llm sq_testlib sq_warnings m)
add_test(NAME unit.sampler COMMAND test_sampler)
set_tests_properties(unit.sampler PROPERTIES LABELS unit)

# Tensor parallelism under real mpirun (label mpi): TP = 2 and 4 against
# TP = 1 on the bundled model, and on a random model with 8 query and 2 KV
# heads, so that 4 ranks replicate each KV head.
add_executable(test_tp mpi/test_tp.c)
target_link_libraries(test_tp PRIVATE sq_llm sq_testlib sq_warnings MPI::MPI_C m)
target_include_directories(test_tp PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/unit)
set(SQ_MPI_ENV OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1)
if(SQ_SANITIZE)
  # Open MPI's own start-up allocations (in plugins it has unloaded by
  # exit, so they cannot be suppressed by name) read as leaks; ASan's
  # memory-error checks stay on, and the unit tests check our leaks.
  list(APPEND SQ_MPI_ENV ASAN_OPTIONS=detect_leaks=0)
endif()
function(sq_engine_mpi_test name n_ranks)
  add_test(NAME ${name}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${n_ranks} --oversubscribe
                   ${MPIEXEC_PREFLAGS} ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS mpi TIMEOUT 300 ENVIRONMENT "${SQ_MPI_ENV}")
endfunction()
foreach(n 2 4)
  sq_engine_mpi_test(mpi.tp${n}.stories ${n} $<TARGET_FILE:test_tp>
                     ${SQ_ENGINE_MODELS}/stories260K.gguf 64)
endforeach()
# A Q8_0 model's activations are quantized to Q8_0 before each product: a
# partial sum that TP = 2 rounds differently from TP = 1 (the F32
# ffn_down's halves, 1 ulp) can move an activation across a rounding
# boundary, a step of up to 1/127 of its block's largest value. Its logits
# then agree within 2e-2 (measured 1.2e-2 with an F16 cache), not F32's
# 1e-4; the greedy tokens must still be the same.
sq_engine_mpi_test(mpi.tp2.stories_q8 2 $<TARGET_FILE:test_tp>
                   ${SQ_ENGINE_MODELS}/stories260K-q8_0.gguf 64 2e-2 2e-2)
if(TARGET shardq-model)
  set(SQ_TINY_GQA ${CMAKE_CURRENT_BINARY_DIR}/engine-tiny-gqa.gguf)
  add_test(NAME mpi.tp.make_tiny_gqa
           COMMAND shardq-model random --shape tiny-gqa --seed 11 ${SQ_TINY_GQA})
  set_tests_properties(mpi.tp.make_tiny_gqa PROPERTIES LABELS mpi FIXTURES_SETUP sq_tiny_gqa)
  foreach(n 2 4)
    sq_engine_mpi_test(mpi.tp${n}.tiny_gqa ${n} $<TARGET_FILE:test_tp> ${SQ_TINY_GQA} 64)
    set_tests_properties(mpi.tp${n}.tiny_gqa PROPERTIES FIXTURES_REQUIRED sq_tiny_gqa)
  endforeach()
  # heads of 32 values: the Q8_0 KV cache too (its tolerance as Q8_0 weights')
  sq_engine_mpi_test(mpi.tp2.hd32 2 $<TARGET_FILE:test_tp> ${SQ_HD32_MODEL} 64 1e-4 5e-3 2e-2)
  set_tests_properties(mpi.tp2.hd32 PROPERTIES FIXTURES_REQUIRED sq_hd32)
endif()

# A one-shot KV cache too big for memory (4 GB of address space, a 16M
# context): the message names what one-shot can lower, --ctx, not the
# group's --max-batch or --kv-pages (ASan reserves more than that)
if(NOT SQ_SANITIZE)
  add_test(NAME unit.worker_kv_too_big
           COMMAND sh -c "ulimit -v 4000000; exec $<TARGET_FILE:shardq-worker> --model ${SQ_ENGINE_MODELS}/stories260K.gguf --prompt Hi --ctx 16777216")
  set_tests_properties(unit.worker_kv_too_big PROPERTIES LABELS unit ENVIRONMENT "${SQ_MPI_ENV}"
    PASS_REGULAR_EXPRESSION "does not fit in cpu memory \\(at layer [0-9]\\): lower --ctx\""
    FAIL_REGULAR_EXPRESSION "max-batch|kv-pages")
endif()

# The worker binary itself: one-shot generation, single rank and split.
add_test(NAME unit.worker_oneshot
         COMMAND shardq-worker --model ${SQ_ENGINE_MODELS}/stories260K.gguf --prompt ""
                 --max-tokens 40)
set_tests_properties(unit.worker_oneshot PROPERTIES LABELS unit ENVIRONMENT "${SQ_MPI_ENV}"
  PASS_REGULAR_EXPRESSION "^Once upon a time, there was a little girl named Lily\\. She loved to play outside in the park\\.")
add_test(NAME unit.worker_json
         COMMAND shardq-worker --model ${SQ_ENGINE_MODELS}/stories260K.gguf
                 --prompt "Once upon a time" --max-tokens 8 --json)
set_tests_properties(unit.worker_json PROPERTIES LABELS unit ENVIRONMENT "${SQ_MPI_ENV}"
  PASS_REGULAR_EXPRESSION "^\\{\"prompt_ids\": \\[1, [0-9, ]+\\], \"ids\": \\[[0-9, ]+\\], \"text\": \", there was a little girl\"")
# every flag as --flag=value too (as the Helm chart writes them): the same story
add_test(NAME unit.worker_flag_equals
         COMMAND shardq-worker --model=${SQ_ENGINE_MODELS}/stories260K.gguf --prompt=
                 --max-tokens=40 --threads=1 --kv-type=f32 --device=cpu)
set_tests_properties(unit.worker_flag_equals PROPERTIES LABELS unit ENVIRONMENT "${SQ_MPI_ENV}"
  PASS_REGULAR_EXPRESSION "^Once upon a time, there was a little girl named Lily\\. She loved to play outside in the park\\.")
# SHARDQ_PROFILE=1 on the CPU: the same story, and rank 0's table of every
# op on stderr (sq_backend_prof), decode steps in bucket [1]
add_test(NAME unit.worker_profile_cpu_text
         COMMAND shardq-worker --model ${SQ_ENGINE_MODELS}/stories260K.gguf --prompt ""
                 --max-tokens 40)
set_tests_properties(unit.worker_profile_cpu_text PROPERTIES LABELS unit
  ENVIRONMENT "${SQ_MPI_ENV};SHARDQ_PROFILE=1"
  PASS_REGULAR_EXPRESSION "Once upon a time, there was a little girl named Lily\\. She loved to play outside in the park\\.")
add_test(NAME unit.worker_profile_cpu
         COMMAND shardq-worker --model ${SQ_ENGINE_MODELS}/stories260K.gguf --prompt "Once"
                 --max-tokens 8 --kv-type f32)
set_tests_properties(unit.worker_profile_cpu PROPERTIES LABELS unit
  ENVIRONMENT "${SQ_MPI_ENV};SHARDQ_PROFILE=1"
  PASS_REGULAR_EXPRESSION "rank 0 device profile:\ncpu profile: every op timed on the host clock as it ran\nstep \\[batch\\].*(matmul f32 x3 128x64 \\[1\\].*attention kv f32 \\[1\\]|attention kv f32 \\[1\\].*matmul f32 x3 128x64 \\[1\\]).*all steps")
# an unknown device is a usage error in broker mode too (not a failed load)
add_test(NAME unit.worker_group_device_bad
         COMMAND shardq-worker --broker=tcp://127.0.0.1:1 --model=x.gguf --device=tpu)
set_tests_properties(unit.worker_group_device_bad PROPERTIES LABELS unit
  PASS_REGULAR_EXPRESSION "^shardq-worker: --device: 'tpu' is not cpu, cuda or auto")
# group mode's flags refused with the flag and the value named
sq_flag_tests(unit.worker_group_flag shardq-worker "--broker=tcp://127.0.0.1:1;--model=x.gguf"
              "shardq-worker: " "step-timeout=10s" "load-timeout=1h" "grace=86401")
add_test(NAME unit.worker_flag_no_value COMMAND shardq-worker --model x.gguf --threads)
set_tests_properties(unit.worker_flag_no_value PROPERTIES LABELS unit
  PASS_REGULAR_EXPRESSION "--threads needs a value")
# an unknown flag is unknown wherever it stands, last on the line too (it
# was taken for a known one lacking its value), in both modes
foreach(mode oneshot group)
  if(mode STREQUAL "oneshot")
    set(fixed --model x.gguf --prompt hi)
  else()
    set(fixed --broker tcp://127.0.0.1:1 --model x.gguf)
  endif()
  add_test(NAME unit.worker_flag_unknown_last_${mode} COMMAND shardq-worker ${fixed} --bogus)
  add_test(NAME unit.worker_flag_unknown_${mode} COMMAND shardq-worker ${fixed} --bogus 1)
  add_test(NAME unit.worker_flag_unknown_joined_${mode} COMMAND shardq-worker ${fixed} --bogus=1)
  set_tests_properties(unit.worker_flag_unknown_last_${mode} unit.worker_flag_unknown_${mode}
                       PROPERTIES LABELS unit
    PASS_REGULAR_EXPRESSION "^shardq-worker: unknown option --bogus \\(see --help\\)\n$")
  # (a switch given a value, --json=1, lands here too: the message says so)
  set_tests_properties(unit.worker_flag_unknown_joined_${mode} PROPERTIES LABELS unit
    PASS_REGULAR_EXPRESSION
    "^shardq-worker: unknown option --bogus, or one that takes no value \\(see --help\\)\n$")
  add_test(NAME unit.worker_flag_switch_value_${mode} COMMAND shardq-worker ${fixed} --json=1)
  set_tests_properties(unit.worker_flag_switch_value_${mode} PROPERTIES LABELS unit
    PASS_REGULAR_EXPRESSION "unknown option --json, or one that takes no value")
endforeach()
# --check-flags is the group's question, --broker or not (it was taken for
# an unknown one-shot flag without it): yes (exit 0), or no with the reason
add_test(NAME unit.worker_check_flags_alone COMMAND shardq-worker --check-flags --model x.gguf)
add_test(NAME unit.worker_check_flags_alone_no
         COMMAND shardq-worker --check-flags --model x.gguf --bogus)
set_tests_properties(unit.worker_check_flags_alone PROPERTIES LABELS unit)
set_tests_properties(unit.worker_check_flags_alone_no PROPERTIES LABELS unit WILL_FAIL TRUE)
# a known flag given too often says so (it read as an unknown one)
set(stops)
foreach(k RANGE 16)
  list(APPEND stops --stop s${k})
endforeach()
add_test(NAME unit.worker_flag_stop_17 COMMAND shardq-worker --model x.gguf --prompt hi ${stops})
set_tests_properties(unit.worker_flag_stop_17 PROPERTIES LABELS unit
  PASS_REGULAR_EXPRESSION "^shardq-worker: --stop: at most 16 \\(see --help\\)\n$")
add_test(NAME unit.worker_usage COMMAND shardq-worker --model x.gguf --max-tokens -3)
set_tests_properties(unit.worker_usage PROPERTIES LABELS unit WILL_FAIL TRUE)
# the KV cache in F32 instead of the default F16: the same story
add_test(NAME unit.worker_kv_f32
         COMMAND shardq-worker --model ${SQ_ENGINE_MODELS}/stories260K.gguf --prompt ""
                 --max-tokens 40 --kv-type f32)
set_tests_properties(unit.worker_kv_f32 PROPERTIES LABELS unit ENVIRONMENT "${SQ_MPI_ENV}"
  PASS_REGULAR_EXPRESSION "^Once upon a time, there was a little girl named Lily\\. She loved to play outside in the park\\.")
add_test(NAME unit.worker_kv_type_bad
         COMMAND shardq-worker --model ${SQ_ENGINE_MODELS}/stories260K.gguf --prompt x
                 --kv-type f8)
set_tests_properties(unit.worker_kv_type_bad PROPERTIES LABELS unit ENVIRONMENT "${SQ_MPI_ENV}"
  PASS_REGULAR_EXPRESSION "--kv-type: 'f8' is not f16, f32 or q8_0")
# the Q8_0 KV cache: refused, with the reason, where a head is not whole
# blocks of 32 values; runs where it is
add_test(NAME unit.worker_kv_q8_0_refused
         COMMAND shardq-worker --model ${SQ_ENGINE_MODELS}/stories260K.gguf --prompt x
                 --kv-type q8_0)
set_tests_properties(unit.worker_kv_q8_0_refused PROPERTIES LABELS unit ENVIRONMENT "${SQ_MPI_ENV}"
  PASS_REGULAR_EXPRESSION "KV cache q8_0: this model's head_dim \\(8\\) is not a multiple of 32")
add_test(NAME unit.worker_kv_q8_0
         COMMAND shardq-worker --model ${SQ_HD32_MODEL} --prompt "Once upon" --max-tokens 12
                 --ignore-eos --kv-type q8_0 --json)
set_tests_properties(unit.worker_kv_q8_0 PROPERTIES LABELS unit ENVIRONMENT "${SQ_MPI_ENV}"
  FIXTURES_REQUIRED sq_hd32
  PASS_REGULAR_EXPRESSION "^\\{\"prompt_ids\": \\[1, [0-9, ]+\\], \"ids\": \\[[0-9, ]+\\], \"text\": .*\"finish_reason\": \"length\"")
add_test(NAME unit.worker_prefix_cache_bad
         COMMAND shardq-worker --broker tcp://127.0.0.1:1 --model x.gguf --prefix-cache maybe)
set_tests_properties(unit.worker_prefix_cache_bad PROPERTIES LABELS unit
  PASS_REGULAR_EXPRESSION "--prefix-cache: 'maybe' is not on or off")
# (mpirun drops empty arguments, so this one starts from a real prompt)
sq_engine_mpi_test(mpi.worker_tp2 2 $<TARGET_FILE:shardq-worker>
                   --model ${SQ_ENGINE_MODELS}/stories260K.gguf --prompt "Once upon a time"
                   --max-tokens 40)
set_tests_properties(mpi.worker_tp2 PROPERTIES
  PASS_REGULAR_EXPRESSION "^, there was a little girl named Lily\\. She loved to play outside in the park\\.")
