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
  add_test(NAME gpu.cuda.engine COMMAND test_cuda_engine ${SQ_CUDA_TEST_MODELS} ${SQ_CUDA_F16})
  set_tests_properties(gpu.cuda.engine PROPERTIES FIXTURES_REQUIRED sq_cuda_f16)
else()
  add_test(NAME gpu.cuda.engine COMMAND test_cuda_engine ${SQ_CUDA_TEST_MODELS})
endif()
set_tests_properties(gpu.cuda.engine PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 300)
# the same op by op (graphs off): what a graph replays must equal this
add_test(NAME gpu.cuda.engine_nographs COMMAND test_cuda_engine ${SQ_CUDA_TEST_MODELS})
set_tests_properties(gpu.cuda.engine_nographs PROPERTIES LABELS gpu SKIP_RETURN_CODE 77
                     TIMEOUT 300 ENVIRONMENT SHARDQ_CUDA_GRAPHS=0)
# every op its own kernel (no fusion, sq_cuda_fuse.h): the fused kernels
# must give what this gives
add_test(NAME gpu.cuda.engine_nofuse COMMAND test_cuda_engine ${SQ_CUDA_TEST_MODELS})
set_tests_properties(gpu.cuda.engine_nofuse PROPERTIES LABELS gpu SKIP_RETURN_CODE 77
                     TIMEOUT 300 ENVIRONMENT SHARDQ_CUDA_FUSE=0)

# TP = 2 on whatever devices there are: on one GPU both ranks share it and
# the all-reduce goes through host memory; forced host path on any count.
foreach(model stories260K stories260K-q8_0)
  add_test(NAME gpu.cuda.tp2.${model}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe
                   ${MPIEXEC_PREFLAGS} $<TARGET_FILE:test_cuda_tp>
                   ${SQ_CUDA_TEST_MODELS}/${model}.gguf 32 auto)
  set_tests_properties(gpu.cuda.tp2.${model} PROPERTIES LABELS gpu SKIP_RETURN_CODE 77
                       TIMEOUT 300 ENVIRONMENT "${SQ_CUDA_MPI_ENV}")
endforeach()
add_test(NAME gpu.cuda.tp2.host_forced
         COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe
                 ${MPIEXEC_PREFLAGS} $<TARGET_FILE:test_cuda_tp>
                 ${SQ_CUDA_TEST_MODELS}/stories260K.gguf 32 host)
set_tests_properties(gpu.cuda.tp2.host_forced PROPERTIES LABELS gpu SKIP_RETURN_CODE 77
                     TIMEOUT 300 ENVIRONMENT "${SQ_CUDA_MPI_ENV}")

# The kernels of sq_cuda_device.cuh compiled as host C++ and run on the
# CPU by an emulator (tests/cuda/emu: one fibre per CUDA thread) against a
# reference: label unit, no device needed. The argument lets the test
# check that its copy of the launch geometry still matches the launchers.
add_executable(test_cuda_emu cuda/emu/test_cuda_emu.cpp)
target_compile_features(test_cuda_emu PRIVATE cxx_std_17)
target_include_directories(test_cuda_emu PRIVATE
  ${CMAKE_CURRENT_SOURCE_DIR}/cuda/emu ${PROJECT_SOURCE_DIR}/worker/backend/cuda
  ${PROJECT_SOURCE_DIR}/worker/backend ${PROJECT_SOURCE_DIR}/worker/engine
  ${PROJECT_SOURCE_DIR}/common)
# SYSTEM: the toolkit's headers are not held to our warnings
target_include_directories(test_cuda_emu SYSTEM PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
target_link_libraries(test_cuda_emu PRIVATE sq_testlib sq_warnings)
# a kernel the test does not run yet is a warning, not a broken build (the
# test itself fails on a launch it does not mirror)
target_compile_options(test_cuda_emu PRIVATE -Wno-error=unused-function)
add_test(NAME unit.cuda.emu
         COMMAND test_cuda_emu ${PROJECT_SOURCE_DIR}/worker/backend/cuda/sq_cuda_kernels.cu)
set_tests_properties(unit.cuda.emu PROPERTIES LABELS unit TIMEOUT 120)
