# shellcheck shell=bash
# scripts/gpu-env.sh: sourced by tests/gpu/run.sh before it configures.
# Decides where the build's dependencies come from on a GPU machine and
# sets the environment and SQ_GPU_CMAKE_ARGS (an array for cmake) to match:
#
# * system: pkg-config finds every module the top-level CMakeLists.txt asks
#   for and mpicc and mpirun are on PATH; nothing changes.
# * carried: anything is missing and .gpudeps/root exists (made on Debian 12
#   by scripts/gpu-deps.sh, carried with the tree): pkg-config reads only
#   its .pc files, its libraries come first on LD_LIBRARY_PATH, and Open MPI
#   runs relocated from it. Every dependency then comes from the tree, so
#   that a partial system install never mixes with it.
#
# Independently, NCCL: the pip wheel nvidia-nccl-cu13 (what PyTorch uses on
# that machine) is passed as SQ_NCCL_ROOT unless SQ_NCCL_ROOT is already
# set; without any NCCL the build uses the host all-reduce.
# One line on stderr says which paths were taken.

s_gpu_env() {
  local here root lib mods missing=() m nccl=${SQ_NCCL_ROOT:-} deps
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  root=$here/.gpudeps/root
  lib=$root/usr/lib/x86_64-linux-gnu
  SQ_GPU_CMAKE_ARGS=()

  # pkg_check_modules in CMakeLists.txt, plus OpenSSL (find_package)
  mods="libczmq libzmq libpq msgpack jansson yaml-0.1 libcurl openssl"
  if command -v pkg-config >/dev/null 2>&1; then
    for m in $mods; do
      pkg-config --exists "$m" || missing+=("$m")
    done
  else
    missing+=(pkg-config)
  fi
  for m in mpicc mpirun; do
    command -v "$m" >/dev/null 2>&1 || missing+=("$m")
  done

  if ((${#missing[@]} == 0)); then
    deps="dependencies from the system"
  elif [[ ! -d $lib ]]; then
    deps="the system lacks ${missing[*]} and there is no $root (scripts/gpu-deps.sh makes it): configure will fail"
  else
    export PATH=$root/usr/bin:$PATH
    export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    # the .pc files name their paths relative to themselves (${pcfiledir})
    export PKG_CONFIG_LIBDIR=$lib/pkgconfig
    unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
    # Debian's Open MPI, moved: prefix /usr, configuration in /etc/openmpi,
    # launcher and wrappers under their .openmpi names (no alternatives)
    export OPAL_PREFIX=$root/usr OPAL_SYSCONFDIR=$root/etc/openmpi
    # and its PMIx, whose directories Debian configured as absolute paths
    local pmix=$lib/pmix2
    export PMIX_PREFIX=$pmix PMIX_LIBDIR=$pmix/lib PMIX_DATAROOTDIR=$pmix/share \
      PMIX_DATADIR=$pmix/share PMIX_SYSCONFDIR=$pmix/share \
      PMIX_MCA_mca_base_component_path=$pmix/lib/pmix
    # the system's hwloc plugins, if any, belong to another hwloc
    export HWLOC_PLUGINS_PATH=$lib/hwloc
    # One node, in a container: start ranks without ssh (mpirun refuses to
    # start when no ssh or rsh is installed), and without the cross-memory
    # attach that containers often forbid.
    export OMPI_MCA_plm=${OMPI_MCA_plm:-isolated}
    export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
    local pkgconfig
    pkgconfig=$(command -v pkg-config || echo "$root/usr/bin/pkgconf")
    SQ_GPU_CMAKE_ARGS+=(
      "-DPKG_CONFIG_EXECUTABLE=$pkgconfig"
      "-DOPENSSL_ROOT_DIR=$root/usr"
      "-DMPI_C_COMPILER=$root/usr/bin/mpicc.openmpi"
      "-DMPIEXEC_EXECUTABLE=$root/usr/bin/mpirun.openmpi")
    deps="dependencies from $root (the system lacks ${missing[*]})"
  fi

  # NCCL from the wheel: nvidia is a namespace package, so look in every
  # directory of nvidia.nccl.__path__ for include/nccl.h and lib*/libnccl.so*
  if [[ -z $nccl ]] && command -v python3 >/dev/null 2>&1; then
    nccl=$(python3 - 2>/dev/null <<'EOF'
import glob, os
import nvidia.nccl
for d in nvidia.nccl.__path__:
    for h in sorted(glob.glob(os.path.join(d, "**", "include", "nccl.h"), recursive=True)):
        top = os.path.dirname(os.path.dirname(h))
        if glob.glob(os.path.join(top, "lib*", "libnccl.so*")):
            print(top)
            raise SystemExit
EOF
    )
  fi
  if [[ -n $nccl ]]; then
    SQ_GPU_CMAKE_ARGS+=("-DSQ_NCCL_ROOT=$nccl")
    for m in "$nccl"/lib*; do
      if [[ -d $m ]]; then
        export LD_LIBRARY_PATH=$m${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
      fi
    done
    echo "gpu-env: $deps; NCCL from $nccl" >&2
  else
    echo "gpu-env: $deps; NCCL wherever CMake finds it (next to the toolkit), if anywhere" >&2
  fi
}

s_gpu_env
unset -f s_gpu_env
