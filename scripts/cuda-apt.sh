#!/bin/sh
# scripts/cuda-apt.sh VERSION dev|runtime: add NVIDIA's Debian 12 CUDA
# repository and install the CUDA packages shardq needs at build time (dev:
# nvcc, the runtime's headers and static library, cuBLAS, NCCL) or at run
# time (runtime: cuBLAS and NCCL's libraries). VERSION is the packages'
# suffix, e.g. 13-0; empty: nothing to do (a CPU-only image). Used by the
# Dockerfile; needs network access to developer.download.nvidia.com.
set -eu
version=${1:-}
kind=${2:?dev or runtime}
[ -n "$version" ] || exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends ca-certificates curl
curl -fsSL -o /tmp/cuda-keyring.deb \
  https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb
dpkg -i /tmp/cuda-keyring.deb
rm -f /tmp/cuda-keyring.deb
apt-get update -qq
case $kind in
  dev) apt-get install -y -qq --no-install-recommends "cuda-nvcc-$version" \
         "cuda-cudart-dev-$version" "libcublas-dev-$version" libnccl-dev ;;
  runtime) apt-get install -y -qq --no-install-recommends "libcublas-$version" libnccl2 ;;
  *) echo "cuda-apt.sh: '$kind' is not dev or runtime" >&2; exit 2 ;;
esac
