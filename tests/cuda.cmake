# CUDA backend tests (owner: "cuda"). Built only when cmake/SqCuda.cmake
# found a toolkit. Label unit: run on CPU-only CI (host-side planning, the
# library links, --device cuda refused with a clear message, auto = cpu).
# Label gpu: need a device (exit 77 = skipped without one); CPU CI
# excludes them with -LE gpu, tests/gpu/run.sh runs them on a GPU machine.
if(NOT SQ_HAVE_CUDA)
  return()
endif()

set(SQ_CUDA_TEST_MODELS ${PROJECT_SOURCE_DIR}/models)

add_executable(test_cuda_unit cuda/test_cuda_unit.c)
target_link_libraries(test_cuda_unit PRIVATE sq_llm sq_testlib sq_warnings)
target_compile_definitions(test_cuda_unit PRIVATE _POSIX_C_SOURCE=200809L)
add_test(NAME unit.cuda.host COMMAND test_cuda_unit)
set_tests_properties(unit.cuda.host PROPERTIES LABELS unit)

if(TARGET shardq-worker)
  add_executable(test_cuda_cli cuda/test_cuda_cli.c)
  target_link_libraries(test_cuda_cli PRIVATE sq_llm sq_testlib sq_warnings)
  add_test(NAME unit.cuda.device_flag
           COMMAND test_cuda_cli $<TARGET_FILE:shardq-worker> ${SQ_CUDA_TEST_MODELS}/stories260K.gguf)
  set_tests_properties(unit.cuda.device_flag PROPERTIES LABELS unit TIMEOUT 300)
  if(SQ_SANITIZE)
    # the worker starts MPI, whose start-up allocations read as leaks (see
    # tests/engine.cmake); memory-error checks stay on
    set_tests_properties(unit.cuda.device_flag PROPERTIES ENVIRONMENT ASAN_OPTIONS=detect_leaks=0)
  endif()
endif()

add_executable(test_cuda_engine cuda/test_cuda_engine.c)
target_link_libraries(test_cuda_engine PRIVATE sq_llm sq_testlib sq_warnings m)
target_include_directories(test_cuda_engine PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/unit)

add_executable(test_cuda_lora cuda/test_cuda_lora.c)
target_link_libraries(test_cuda_lora PRIVATE sq_llm sq_testlib sq_warnings m)
target_include_directories(test_cuda_lora PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/unit)

add_executable(test_cuda_tp cuda/test_cuda_tp.c)
target_link_libraries(test_cuda_tp PRIVATE sq_llm sq_testlib sq_warnings MPI::MPI_C m)
target_include_directories(test_cuda_tp PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/unit)

set(SQ_CUDA_MPI_ENV OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    OMPI_MCA_rmaps_base_oversubscribe=1)
if(SQ_SANITIZE)
  list(APPEND SQ_CUDA_MPI_ENV ASAN_OPTIONS=detect_leaks=0)
endif()
if(TARGET shardq-model)
  set(SQ_CUDA_F16 ${CMAKE_CURRENT_BINARY_DIR}/cuda-tiny-gqa-f16.gguf)
  add_test(NAME gpu.cuda.make_f16
           COMMAND shardq-model random --shape tiny-gqa --type f16 --seed 5 ${SQ_CUDA_F16})
  set_tests_properties(gpu.cuda.make_f16 PROPERTIES LABELS gpu FIXTURES_SETUP sq_cuda_f16)
  # (and the head_dim-32 model of tests/engine.cmake, for the Q8_0 KV cache)
  add_test(NAME gpu.cuda.engine
           COMMAND test_cuda_engine ${SQ_CUDA_TEST_MODELS} ${SQ_CUDA_F16} ${SQ_HD32_MODEL})
  set_tests_properties(gpu.cuda.engine PROPERTIES FIXTURES_REQUIRED "sq_cuda_f16;sq_hd32")
else()
  add_test(NAME gpu.cuda.engine COMMAND test_cuda_engine ${SQ_CUDA_TEST_MODELS})
endif()
set_tests_properties(gpu.cuda.engine PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 300)
# The same with one mechanism off, each of which must give what it gives
# on: graphs (op by op: what a graph replays), fusion (every op its own
# kernel), the int8 mma kernel (big Q8_0 batches through cuBLAS) and
# programmatic dependent launch (each kernel waits for the one before it);
# and the attention's keys split over 3 blocks (the bundled model's short
# context never splits by itself). NAME:ENVIRONMENT each.
set(SQ_CUDA_ENGINE_VARIANTS nographs:SHARDQ_CUDA_GRAPHS=0 nofuse:SHARDQ_CUDA_FUSE=0
    nomma:SHARDQ_CUDA_MMA=0 nopdl:SHARDQ_CUDA_PDL=0 split3:SHARDQ_CUDA_ATT_SPLIT=3)
# PREFIX_<name> for each of VARIANTS, running ARGN, labelled LABEL, with
# FIXTURE (may be empty) required
function(sq_cuda_engine_tests prefix label fixture variants)
  # the emulator under AddressSanitizer switches fibres with ucontext,
  # about twenty times slower: some 25 minutes for the engine test
  set(timeout 300)
  if(SQ_SANITIZE AND label STREQUAL "unit")
    set(timeout 2400)
  endif()
  foreach(variant ${variants})
    string(REPLACE ":" ";" variant ${variant})
    list(GET variant 0 name)
    list(GET variant 1 env)
    add_test(NAME ${prefix}_${name} COMMAND ${ARGN})
    set_tests_properties(${prefix}_${name} PROPERTIES LABELS ${label} SKIP_RETURN_CODE 77
                         TIMEOUT ${timeout} ENVIRONMENT ${env})
    if(fixture)
      set_tests_properties(${prefix}_${name} PROPERTIES FIXTURES_REQUIRED "${fixture}")
    endif()
  endforeach()
endfunction()
sq_cuda_engine_tests(gpu.cuda.engine gpu "" "${SQ_CUDA_ENGINE_VARIANTS}"
                     $<TARGET_FILE:test_cuda_engine> ${SQ_CUDA_TEST_MODELS})

# the tolerance of a model's CUDA-vs-CPU logits (Q8_0's: see test_q8_0 in
# cuda/test_cuda_engine.c)
function(sq_cuda_tol model out)
  if(model MATCHES "q8_0")
    set(${out} 5e-2 PARENT_SCOPE)
  else()
    set(${out} 1e-3 PARENT_SCOPE)
  endif()
endfunction()

# LoRA on CUDA vs CPU, F32 and Q8_0 bases; two random adapters on
# different targets and ranks, made once by shardq-model for this test
# and its emulator run
set(SQ_CUDA_LORA_DIR ${CMAKE_CURRENT_BINARY_DIR}/cuda-lora)
if(TARGET shardq-model)
  set(SQ_CUDA_LORA_BASE ${SQ_CUDA_TEST_MODELS}/stories260K.gguf)
  add_test(NAME unit.cuda.make_lora
           COMMAND sh -c "mkdir -p ${SQ_CUDA_LORA_DIR} && \
$<TARGET_FILE:shardq-model> lora-random --base ${SQ_CUDA_LORA_BASE} --rank 4 --seed 3 --targets attn_q,attn_v,attn_output,ffn_up,ffn_down --gain 0.2 ${SQ_CUDA_LORA_DIR}/a.gguf && \
$<TARGET_FILE:shardq-model> lora-random --base ${SQ_CUDA_LORA_BASE} --rank 8 --seed 5 --alpha 4 --targets attn_k,ffn_gate,ffn_down --gain 0.2 ${SQ_CUDA_LORA_DIR}/b.gguf")
  set_tests_properties(unit.cuda.make_lora PROPERTIES LABELS unit FIXTURES_SETUP sq_cuda_lora)
endif()

# The tests of the bundled model in F32 and Q8_0 that run a program both on
# a GPU and on the emulator, named PREFIX.<what>.<model>, labelled LABEL:
# tp2 (mpirun -np 2; on one GPU both ranks share it and the all-reduce goes
# through host memory), tp2_lora (the same on a LoRA adapter) and lora.
function(sq_cuda_model_tests prefix label tp_program lora_program)
  foreach(model stories260K stories260K-q8_0)
    sq_cuda_tol(${model} tol)
    add_test(NAME ${prefix}.tp2.${model}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe
                     ${MPIEXEC_PREFLAGS} ${tp_program} ${SQ_CUDA_TEST_MODELS}/${model}.gguf 32
                     auto ${tol})
    set_tests_properties(${prefix}.tp2.${model} PROPERTIES LABELS ${label} SKIP_RETURN_CODE 77
                         TIMEOUT 300 ENVIRONMENT "${SQ_CUDA_MPI_ENV}")
    if(TARGET shardq-model)
      # TP = 2 with every token on adapter A (column- and row-parallel targets)
      add_test(NAME ${prefix}.tp2_lora.${model}
               COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe
                       ${MPIEXEC_PREFLAGS} ${tp_program} ${SQ_CUDA_TEST_MODELS}/${model}.gguf 32
                       auto ${tol} ${SQ_CUDA_LORA_DIR}/a.gguf)
      set_tests_properties(${prefix}.tp2_lora.${model} PROPERTIES LABELS ${label}
                           SKIP_RETURN_CODE 77 TIMEOUT 300 FIXTURES_REQUIRED sq_cuda_lora
                           ENVIRONMENT "${SQ_CUDA_MPI_ENV}")
      add_test(NAME ${prefix}.lora.${model}
               COMMAND ${lora_program} ${SQ_CUDA_TEST_MODELS}/${model}.gguf
                       ${SQ_CUDA_LORA_DIR}/a.gguf ${SQ_CUDA_LORA_DIR}/b.gguf ${tol})
      set_tests_properties(${prefix}.lora.${model} PROPERTIES LABELS ${label}
                           SKIP_RETURN_CODE 77 TIMEOUT 300 FIXTURES_REQUIRED sq_cuda_lora)
    endif()
  endforeach()
endfunction()
sq_cuda_model_tests(gpu.cuda gpu $<TARGET_FILE:test_cuda_tp> $<TARGET_FILE:test_cuda_lora>)

# the host path forced, on any number of devices
add_test(NAME gpu.cuda.tp2.host_forced
         COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe
                 ${MPIEXEC_PREFLAGS} $<TARGET_FILE:test_cuda_tp>
                 ${SQ_CUDA_TEST_MODELS}/stories260K.gguf 32 host)
set_tests_properties(gpu.cuda.tp2.host_forced PROPERTIES LABELS gpu SKIP_RETURN_CODE 77
                     TIMEOUT 300 ENVIRONMENT "${SQ_CUDA_MPI_ENV}")

# One rank with an all-reduce path forced (test_cuda_tp keeps a forced mode
# for one rank): what a single device runs of that path. NCCL refuses two
# ranks on one device, so this is how a one-GPU machine runs NCCL's code
# (unique id over MPI, init, ncclAllReduce on the stream between the graphs
# of each layer half, teardown); the emulator, without NCCL, runs the host
# path's (download, MPI all-reduce, upload between graphs).
function(sq_cuda_tp1_tests prefix label program mode)
  foreach(model stories260K stories260K-q8_0)
    sq_cuda_tol(${model} tol)
    add_test(NAME ${prefix}.tp1_${mode}.${model}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 1 ${MPIEXEC_PREFLAGS}
                     ${program} ${SQ_CUDA_TEST_MODELS}/${model}.gguf 32 ${mode} ${tol})
    set_tests_properties(${prefix}.tp1_${mode}.${model} PROPERTIES LABELS ${label}
                         SKIP_RETURN_CODE 77 TIMEOUT 300 ENVIRONMENT "${SQ_CUDA_MPI_ENV}")
  endforeach()
endfunction()
if(SQ_HAVE_NCCL)
  sq_cuda_tp1_tests(gpu.cuda gpu $<TARGET_FILE:test_cuda_tp> nccl)
endif()


# The real backend on the CPU: sq_backend_cuda.c, sq_cuda_comm.c (host
# all-reduce, no NCCL) and the launchers of sq_cuda_kernels.cu (through
# sq_cuda_emu_kernels.cpp, by the host compiler) over an emulated CUDA
# runtime and cuBLAS (sq_cuda_emu_rt.cpp). Programs that run the engine on
# it link sq_llm_emu: the sources of sq_llm built again against this
# library, so neither the real backend nor cudart nor cuBLAS is on their
# link line (a runtime function the shim lacks is a link error, never the
# real one picked up by link order).
set(SQ_CUDA_SRC ${PROJECT_SOURCE_DIR}/worker/backend/cuda)
add_library(sq_backend_cuda_emu STATIC
  ${SQ_CUDA_SRC}/sq_backend_cuda.c ${SQ_CUDA_SRC}/sq_cuda_comm.c
  cuda/emu/sq_cuda_emu_kernels.cpp cuda/emu/sq_cuda_emu_rt.cpp)
target_compile_features(sq_backend_cuda_emu PUBLIC cxx_std_17)
target_include_directories(sq_backend_cuda_emu PUBLIC
  ${SQ_CUDA_SRC} ${CMAKE_CURRENT_SOURCE_DIR}/cuda/emu)
target_include_directories(sq_backend_cuda_emu SYSTEM PUBLIC ${CUDAToolkit_INCLUDE_DIRS})
target_link_libraries(sq_backend_cuda_emu PUBLIC sq_cuda_plan sq_core stdc++ PRIVATE sq_warnings)
target_compile_definitions(sq_backend_cuda_emu PRIVATE
  $<$<COMPILE_LANGUAGE:C>:_POSIX_C_SOURCE=200809L> "SQ_CUDA_ARCHS=\"90 (emulated)\"")

# The kernels of sq_cuda_device.cuh compiled as host C++ and run on the
# CPU by an emulator (tests/cuda/emu: one fibre per CUDA thread) against a
# reference, most through the real launchers: label unit, no device needed.
add_executable(test_cuda_emu cuda/emu/test_cuda_emu.cpp)
target_link_libraries(test_cuda_emu PRIVATE sq_backend_cuda_emu sq_testlib sq_warnings)
# the header's kernels that run through the launchers are unused here
target_compile_options(test_cuda_emu PRIVATE -Wno-unused-function)
add_test(NAME unit.cuda.emu COMMAND test_cuda_emu)
set_tests_properties(unit.cuda.emu PROPERTIES LABELS unit TIMEOUT 120)

# out = target's sources as absolute paths, to build them again here
function(sq_emu_sources target out)
  get_target_property(dir ${target} SOURCE_DIR)
  get_target_property(rel ${target} SOURCES)
  set(abs)
  foreach(src ${rel})
    if(IS_ABSOLUTE ${src})
      list(APPEND abs ${src})
    else()
      list(APPEND abs ${dir}/${src})
    endif()
  endforeach()
  set(${out} ${abs} PARENT_SCOPE)
endfunction()

get_target_property(SQ_LLM_EMU_DIR sq_llm SOURCE_DIR)
sq_emu_sources(sq_llm SQ_LLM_EMU_SOURCES)
add_library(sq_llm_emu STATIC ${SQ_LLM_EMU_SOURCES})
target_include_directories(sq_llm_emu PUBLIC
  ${SQ_LLM_EMU_DIR}/engine ${SQ_LLM_EMU_DIR}/backend ${SQ_LLM_EMU_DIR}/backend/cpu)
target_link_libraries(sq_llm_emu PUBLIC sq_backend_cuda_emu sq_core MPI::MPI_C m
                      PRIVATE sq_warnings)
if(TARGET sq_cpu_kernels)
  target_link_libraries(sq_llm_emu PUBLIC sq_cpu_kernels)
endif()
target_compile_definitions(sq_llm_emu PRIVATE _POSIX_C_SOURCE=200809L SQ_HAVE_CUDA)

# test_cuda_engine itself on the emulator, the very test gpu.cuda.engine
# runs, in the same variants (SQ_CUDA_ENGINE_VARIANTS). Label unit: 10 to
# 20 s each on a 2-core machine.
add_executable(test_cuda_emu_engine cuda/test_cuda_engine.c)
target_link_libraries(test_cuda_emu_engine PRIVATE sq_llm_emu sq_testlib sq_warnings m)
target_include_directories(test_cuda_emu_engine PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/unit)
set(SQ_EMU_ENGINE_ARGS ${SQ_CUDA_TEST_MODELS})
if(TARGET shardq-model)
  set(SQ_CUDA_EMU_F16 ${CMAKE_CURRENT_BINARY_DIR}/cuda-emu-tiny-gqa-f16.gguf)
  add_test(NAME unit.cuda.emu_make_f16
           COMMAND shardq-model random --shape tiny-gqa --type f16 --seed 5 ${SQ_CUDA_EMU_F16})
  set_tests_properties(unit.cuda.emu_make_f16 PROPERTIES LABELS unit
                       FIXTURES_SETUP sq_cuda_emu_f16)
  list(APPEND SQ_EMU_ENGINE_ARGS ${SQ_CUDA_EMU_F16} ${SQ_HD32_MODEL})
endif()
set(SQ_EMU_ENGINE_FIXTURE)
if(TARGET shardq-model)
  set(SQ_EMU_ENGINE_FIXTURE "sq_cuda_emu_f16;sq_hd32")
endif()
# as on a GPU, with the engine test itself and SQ_EMU_LAZY=1 (streams run
# only when the host waits) besides; and on a device that refuses every
# graph capture, or those that take a PDL launch (the backend's way out of
# each: cuda/test_cuda_engine.c, test_batched_equals_single)
sq_cuda_engine_tests(unit.cuda.emu unit "${SQ_EMU_ENGINE_FIXTURE}"
                     "engine:SQ_EMU_LAZY=0;engine_lazy:SQ_EMU_LAZY=1;engine_capture_fail:SQ_EMU_CAPTURE_FAIL=1000000;engine_capture_pdl:SQ_EMU_CAPTURE_REFUSE_PDL=1"
                     $<TARGET_FILE:test_cuda_emu_engine> ${SQ_EMU_ENGINE_ARGS})
sq_cuda_engine_tests(unit.cuda.emu_engine unit "${SQ_EMU_ENGINE_FIXTURE}"
                     "${SQ_CUDA_ENGINE_VARIANTS}"
                     $<TARGET_FILE:test_cuda_emu_engine> ${SQ_EMU_ENGINE_ARGS})

# test_cuda_tp and test_cuda_lora on the emulator; under mpirun the two
# ranks share the one emulated device, so `auto` takes the host all-reduce
# of sq_cuda_comm.c (the emulator's build has no NCCL)
add_executable(test_cuda_emu_tp cuda/test_cuda_tp.c)
target_link_libraries(test_cuda_emu_tp PRIVATE sq_llm_emu sq_testlib sq_warnings MPI::MPI_C m)
target_include_directories(test_cuda_emu_tp PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/unit)
add_executable(test_cuda_emu_lora cuda/test_cuda_lora.c)
target_link_libraries(test_cuda_emu_lora PRIVATE sq_llm_emu sq_testlib sq_warnings m)
target_include_directories(test_cuda_emu_lora PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/unit)
sq_cuda_model_tests(unit.cuda.emu unit $<TARGET_FILE:test_cuda_emu_tp>
                    $<TARGET_FILE:test_cuda_emu_lora>)
sq_cuda_tp1_tests(unit.cuda.emu unit $<TARGET_FILE:test_cuda_emu_tp> host)

# a model bigger than the device (the emulator's, of 80 MiB: the backend's
# own buffers and the first tensors of a random llama-110m in Q8_0 fit,
# the rest does not)
add_executable(test_cuda_emu_memory cuda/test_cuda_memory.c)
target_link_libraries(test_cuda_emu_memory PRIVATE sq_llm_emu sq_testlib sq_warnings m)
target_include_directories(test_cuda_emu_memory PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/unit)
if(TARGET shardq-model)
  set(SQ_CUDA_EMU_BIG ${CMAKE_CURRENT_BINARY_DIR}/cuda-emu-llama-110m-q8_0.gguf)
  add_test(NAME unit.cuda.emu_make_big
           COMMAND shardq-model random --shape llama-110m --type q8_0 --seed 9 ${SQ_CUDA_EMU_BIG})
  set_tests_properties(unit.cuda.emu_make_big PROPERTIES LABELS unit
                       FIXTURES_SETUP sq_cuda_emu_big)
  add_test(NAME unit.cuda.emu.memory
           COMMAND test_cuda_emu_memory ${SQ_CUDA_EMU_BIG} ${SQ_CUDA_TEST_MODELS}/stories260K.gguf)
  set_tests_properties(unit.cuda.emu.memory PROPERTIES LABELS unit TIMEOUT 300
                       FIXTURES_REQUIRED sq_cuda_emu_big
                       ENVIRONMENT SQ_EMU_DEVICE_BYTES=83886080)
endif()

# shardq-worker on the emulator: its sources and sq_group's built again
# against sq_llm_emu, so `--device cuda` runs the real backend on the CPU.
# e2e.group_cuda_emu serves jobs with a real group of it (mpirun -np 2,
# both ranks on the one emulated device).
if(TARGET shardq-worker AND TARGET sq_group)
  sq_emu_sources(sq_group SQ_GROUP_EMU_SOURCES)
  get_target_property(SQ_GROUP_EMU_DIR sq_group SOURCE_DIR)
  add_library(sq_group_emu STATIC ${SQ_GROUP_EMU_SOURCES})
  target_include_directories(sq_group_emu PUBLIC ${SQ_GROUP_EMU_DIR})
  target_link_libraries(sq_group_emu PUBLIC sq_llm_emu sq_wire MPI::MPI_C
                        PRIVATE Threads::Threads sq_jsonl sq_warnings)
  sq_emu_sources(shardq-worker SQ_WORKER_EMU_SOURCES)
  get_target_property(SQ_WORKER_EMU_DIR shardq-worker SOURCE_DIR)
  add_executable(shardq-worker-emu ${SQ_WORKER_EMU_SOURCES})
  target_link_libraries(shardq-worker-emu PRIVATE sq_group_emu sq_llm_emu sq_warnings)
  target_include_directories(shardq-worker-emu PRIVATE ${SQ_WORKER_EMU_DIR})
  target_compile_definitions(shardq-worker-emu PRIVATE _POSIX_C_SOURCE=200809L)
  if(TARGET test_group_e2e)
    sq_group_e2e_test(group_cuda_emu $<TARGET_FILE:shardq-worker-emu>)
    # the emulated device faulting, then hanging, mid-job: leases back, a
    # healthy group ends the job
    sq_group_e2e_test(group_cuda_fault $<TARGET_FILE:shardq-worker-emu>)
    sq_group_e2e_test(group_cuda_hang $<TARGET_FILE:shardq-worker-emu>)
  endif()
  # the worker's --device flag and profile on the emulated device
  add_executable(test_cuda_emu_cli cuda/test_cuda_cli.c)
  target_link_libraries(test_cuda_emu_cli PRIVATE sq_llm_emu sq_testlib sq_warnings)
  add_test(NAME unit.cuda.emu.device_flag
           COMMAND test_cuda_emu_cli $<TARGET_FILE:shardq-worker-emu>
                   ${SQ_CUDA_TEST_MODELS}/stories260K.gguf)
  set_tests_properties(unit.cuda.emu.device_flag PROPERTIES LABELS unit TIMEOUT 300)
  # a build without kernels for the device: cuda refused naming the cause
  # and the architectures to build, auto on the CPU
  add_test(NAME unit.cuda.emu.device_flag_no_kernels
           COMMAND test_cuda_emu_cli $<TARGET_FILE:shardq-worker-emu>
                   ${SQ_CUDA_TEST_MODELS}/stories260K.gguf
                   "CUDA device 0 (compute capability 9.0): this build has no kernels for it")
  set_tests_properties(unit.cuda.emu.device_flag_no_kernels PROPERTIES LABELS unit TIMEOUT 300
                       ENVIRONMENT SQ_EMU_PTX_VERSION=0)
  # a device that wedges while the group loads the model: --load-timeout
  # ends the process (exit 1) naming the cause, instead of a group that
  # never serves nor fails
  add_test(NAME unit.cuda.emu.load_hang
           COMMAND sh -c "$<TARGET_FILE:shardq-worker-emu> --broker tcp://127.0.0.1:1 \
--model ${SQ_CUDA_TEST_MODELS}/stories260K.gguf --device cuda --load-timeout 2 2>&1; echo exit=$?")
  set_tests_properties(unit.cuda.emu.load_hang PROPERTIES LABELS unit TIMEOUT 60
    ENVIRONMENT "${SQ_MPI_ENV};SQ_EMU_HANG_IN=cudaMalloc"
    PASS_REGULAR_EXPRESSION "msg=\"model load stuck, ending the group\" rank=0 load_timeout_s=2[^\n]*\n(.*\n)?exit=1")
endif()
