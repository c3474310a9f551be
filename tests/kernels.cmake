# CPU kernel tests: every SIMD level this CPU has against the reference,
# fp16 conversion, Q8_0 quantization, the thread pool.
if(NOT TARGET sq_cpu_kernels)
  # The worker tree normally adds the kernels; build them alone otherwise.
  add_subdirectory(${PROJECT_SOURCE_DIR}/worker/backend/cpu
                   ${PROJECT_BINARY_DIR}/worker/backend/cpu)
endif()
add_executable(test_cpu_kernels unit/test_cpu_kernels.c)
target_link_libraries(test_cpu_kernels PRIVATE sq_cpu_kernels sq_testlib sq_warnings)
add_test(NAME unit.cpu_kernels COMMAND test_cpu_kernels)
add_test(NAME unit.cpu_kernels.portable COMMAND test_cpu_kernels)
set_tests_properties(unit.cpu_kernels unit.cpu_kernels.portable PROPERTIES LABELS unit)
set_tests_properties(unit.cpu_kernels.portable PROPERTIES ENVIRONMENT SQ_CPU_SIMD=portable)
