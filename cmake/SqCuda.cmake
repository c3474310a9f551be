# SqCuda: the CUDA backend and the NCCL communicator (owner: "cuda").
#
# Included by the top-level CMakeLists.txt after the components. With
# SQ_WITH_CUDA=ON (default) and a toolkit found (nvcc in
# /usr/local/cuda/bin or under CUDAToolkit_ROOT), it builds
# worker/backend/cuda and links it into sq_llm with SQ_HAVE_CUDA defined;
# without a toolkit it says so and the tree builds for the CPU only.
# Architectures 80 and 90 (A100, H100/H200): set before enable_language.

set(SQ_HAVE_CUDA OFF)
if(NOT SQ_WITH_CUDA)
  message(STATUS "shardq: CUDA backend off (SQ_WITH_CUDA=OFF)")
  return()
endif()

if(NOT CMAKE_CUDA_COMPILER)
  find_program(SQ_NVCC nvcc
    HINTS ${CUDAToolkit_ROOT}/bin $ENV{CUDAToolkit_ROOT}/bin /usr/local/cuda/bin
    NO_CACHE)
  if(NOT SQ_NVCC)
    message(STATUS "shardq: no CUDA toolkit (nvcc not found): CPU backend only")
    return()
  endif()
  set(CMAKE_CUDA_COMPILER ${SQ_NVCC})
endif()
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "80;90")
endif()
get_filename_component(SQ_CUDA_BIN ${CMAKE_CUDA_COMPILER} DIRECTORY)
get_filename_component(SQ_CUDA_ROOT ${SQ_CUDA_BIN} DIRECTORY)
if(NOT CUDAToolkit_ROOT)
  set(CUDAToolkit_ROOT ${SQ_CUDA_ROOT})
endif()

enable_language(CUDA)
find_package(CUDAToolkit)
if(NOT CUDAToolkit_FOUND)
  message(STATUS "shardq: nvcc at ${CMAKE_CUDA_COMPILER} but no usable toolkit: CPU backend only")
  return()
endif()

# NCCL: under SQ_NCCL_ROOT when given (include/ and lib/, e.g. the pip
# wheel nvidia-nccl-cu13, which has libnccl.so.2 but no libnccl.so), else
# next to the toolkit or in the system's paths.
if(SQ_NCCL_ROOT)
  find_path(SQ_NCCL_INCLUDE nccl.h
    PATHS ${SQ_NCCL_ROOT} PATH_SUFFIXES include NO_DEFAULT_PATH NO_CACHE)
  find_library(SQ_NCCL_LIBRARY NAMES nccl libnccl.so.2
    PATHS ${SQ_NCCL_ROOT} PATH_SUFFIXES lib lib64 NO_DEFAULT_PATH NO_CACHE)
else()
  find_path(SQ_NCCL_INCLUDE nccl.h
    HINTS ${CUDAToolkit_INCLUDE_DIRS} ${SQ_CUDA_ROOT}/include NO_CACHE)
  find_library(SQ_NCCL_LIBRARY nccl
    HINTS ${CUDAToolkit_LIBRARY_DIR} ${SQ_CUDA_ROOT}/lib ${SQ_CUDA_ROOT}/lib64 NO_CACHE)
endif()
if(SQ_NCCL_INCLUDE AND SQ_NCCL_LIBRARY)
  set(SQ_HAVE_NCCL ON)
  message(STATUS "shardq: NCCL ${SQ_NCCL_LIBRARY}")
else()
  set(SQ_HAVE_NCCL OFF)
  if(SQ_NCCL_ROOT)
    message(STATUS "shardq: no NCCL under SQ_NCCL_ROOT=${SQ_NCCL_ROOT}: "
                   "multi-GPU all-reduce goes through host memory")
  else()
    message(STATUS "shardq: NCCL not found: multi-GPU all-reduce goes through host memory")
  endif()
endif()

set(SQ_HAVE_CUDA ON)
message(STATUS "shardq: CUDA backend on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
               "architectures ${CMAKE_CUDA_ARCHITECTURES}, NCCL ${SQ_HAVE_NCCL})")
add_subdirectory(worker/backend/cuda)
