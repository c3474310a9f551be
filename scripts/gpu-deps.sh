#!/usr/bin/env bash
# scripts/gpu-deps.sh: the headers, libraries and tools the GPU build needs,
# taken from Debian 12 and unpacked into .gpudeps/root, for a GPU machine
# that has none of our -dev packages and no network. tests/gpu/run.sh
# sources scripts/gpu-env.sh, which points the build at this tree when the
# machine lacks any of it; carry .gpudeps/root with the working tree.
#
#   scripts/gpu-deps.sh          # on Debian 12 as root; idempotent; prints the size
#
# What goes in: the -dev packages the top-level CMakeLists.txt asks for
# (pkg-config modules, OpenSSL, MPI), Open MPI's launcher, wrappers and
# plugins, pkg-config itself, and the shared libraries the GPU targets and
# those tools load, listed below by hand and checked at the end against
# every ELF file's DT_NEEDED. libcurl and libpq come for configure only: no
# GPU target links them, so their own dependencies (LDAP, GnuTLS, ...: 8 MB)
# stay out, and so do their soname links, so that a program on that machine
# which loads the system's libcurl (CMake does) never gets ours instead.
# Building the scheduler, broker or client there needs the system's.
# What else stays out: what any Linux with a C toolchain has (glibc, libgcc,
# libstdc++, zlib, zstd, gmp: carrying our own would also put them under
# the machine's compiler), docs, man pages, static archives, Open MPI's
# Fortran, Java and OpenSHMEM parts and its plugins for InfiniBand, OFI, UCX
# and PSM, whose libraries we do not carry (ranks on one node talk over
# shared memory).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
dest=$here/.gpudeps
tree=$dest/root

pkgs=(
  # headers, .so links and .pc files (configure and build)
  libczmq-dev libzmq3-dev libmsgpack-dev libjansson-dev libyaml-dev
  libcurl4-openssl-dev libssl-dev libpq-dev libopenmpi-dev
  # tools: mpirun / mpicc and their data files, pkg-config
  openmpi-bin openmpi-common pkgconf-bin libpkgconf3
  # the libraries behind the -dev packages
  libczmq4 libzmq5 libmsgpackc2 libjansson4 libyaml-0-2 libssl3
  libopenmpi3 libpmix2 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7
  libmunge2 libudev1
  # configure only (see above)
  libcurl4 libpq5
  # what those load in turn
  libsystemd0 libcap2 libgcrypt20 libgpg-error0 liblz4-1 liblzma5 libuuid1
  libbsd0 libmd0 libsodium23 libnorm1 libpgm-5.3-0
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
)
configure_only='libcurl.so.4 libpq.so.5'
# sonames a machine with a C toolchain is assumed to have
base_sonames=(ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2
  librt.so.1 libresolv.so.2 libutil.so.1 libanl.so.1 libgcc_s.so.1 libstdc++.so.6
  libz.so.1 libzstd.so.1 libgmp.so.10)
multiarch=usr/lib/x86_64-linux-gnu

log() { echo "gpu-deps: $*" >&2; }

# package=version for everything above, plus this script: the stamp that
# makes reruns free
s_versions() {
  apt-cache show --no-all-versions "${pkgs[@]}" |
    awk '/^Package:/ {p = $2} /^Version:/ {print p "=" $2}' | sort
}
self=$(sha256sum <"$0" | cut -c1-16)
versions=$(s_versions)
if [[ -f $tree/.stamp && $(cat "$tree/.stamp") == "$versions $self" ]]; then
  log "up to date: $(du -sh "$tree" | cut -f1) in $tree"
  exit 0
fi

debs=$dest/debs
rm -rf "$debs" "$tree.new"
mkdir -p "$debs" "$tree.new"
log "downloading ${#pkgs[@]} packages"
# $versions: one package=version per word
# shellcheck disable=SC2086
if ! (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root $versions); then
  # the lists name a version the mirror no longer has: refresh and retry
  apt-get update -qq
  versions=$(s_versions)
  # shellcheck disable=SC2086
  (cd "$debs" && apt-get download -qq -o APT::Sandbox::User=root $versions)
fi
for deb in "$debs"/*.deb; do
  dpkg -x "$deb" "$tree.new"
done

cd "$tree.new"
# some libraries still ship in /lib: one directory, as on a merged-/usr system
if [[ -d lib ]]; then
  cp -a lib/. usr/lib/
  rm -rf lib
fi
# headers: Debian's multiarch include directory merged into include/, since
# compilers search only the system's own (OpenSSL's opensslconf.h is there)
multiinc=usr/include/x86_64-linux-gnu
rm -f $multiinc/openmpi  # a link to Open MPI's include directory
cp -a $multiinc/. usr/include/
rm -rf $multiinc
rm -rf usr/share/{doc,man,info,lintian,bug,locale,aclocal,zproject,libgcrypt20} \
  $multiarch/{fortran,cmake,openmpi/lib/pkgconfig}
find . -name '*.a' -delete
# Open MPI: C (and mpi.h's C++ bindings) only; no Fortran, Java, OpenSHMEM,
# nor the headers for building Open MPI plugins
ompi_inc=$multiarch/openmpi/include
rm -rf $multiarch/libmpi_{mpifh,usempi_ignore_tkr,usempif08,java,cxx}.so* \
  $multiarch/liboshmem.so* $multiarch/libompitrace.so* \
  usr/bin/{mpif77,mpif90,mpifort,mpijavac,osh,shmem}* \
  $ompi_inc/{mpif*,mpp,openshmem,pshmem*,shmem*} \
  $ompi_inc/openmpi/{opal,orte,oshmem,*.h}
find $ompi_inc/openmpi/ompi -mindepth 1 -maxdepth 1 ! -name mpi -exec rm -rf {} +
find $ompi_inc/openmpi/ompi/mpi -mindepth 1 -maxdepth 1 ! -name cxx -exec rm -rf {} +

# sonames ELF file $1 needs
s_needed() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
s_soname() { readelf -d "$1" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p'; }
# sonames the tree provides (what LD_LIBRARY_PATH will find) or the system has
s_have() {
  { find $multiarch -maxdepth 1 -name '*.so*' -printf '%f\n'; printf '%s\n' "${base_sonames[@]}"; } |
    sort -u
}

# Plugins (dlopened: Open MPI, PMIx) that need a library we leave out go,
# then those that needed them, until nothing changes.
while :; do
  have=$(s_have)
  dropped=0
  for f in "$multiarch"/openmpi/lib/openmpi3/*.so "$multiarch"/libmca_common_*.so.* \
           "$multiarch"/pmix2/lib/pmix/*.so; do
    [[ -f $f && ! -L $f ]] || continue
    for n in $(s_needed "$f"); do
      if ! grep -qxF "$n" <<<"$have"; then
        rm -f "$f"
        dropped=1
        break
      fi
    done
  done
  find . -xtype l -delete  # links to what went
  ((dropped)) || break
done

# configure-only libraries: the file find_library wants, no soname link
for so in $configure_only; do
  rm "$multiarch/$so"
done

# .pc files: relative to where they lie (${pcfiledir}), so the tree works
# wherever it is unpacked; the libraries are in the directory above (some
# say /usr/lib, found on Debian only as a default path); no private
# requirements (we link shared).
for pc in "$multiarch"/pkgconfig/*.pc; do
  if [[ -L $pc ]]; then cp --remove-destination "$(readlink -f "$pc")" "$pc"; fi
  # shellcheck disable=SC2016  # ${pcfiledir} is for pkg-config
  sed -i -e 's#^\([A-Za-z_]*\)=/usr\([/ ]\|$\)#\1=${pcfiledir}/../../..\2#' \
    -e 's#^libdir=.*#libdir=${pcfiledir}/..#' \
    -e 's#/include/x86_64-linux-gnu#/include#' \
    -e '/^Requires.private:/d' -e '/^Libs.private:/d' "$pc"
done

# Every ELF file's needs are met by the tree or the base set.
have=$(s_have)
missing=$(find . -type f \( -name '*.so*' -o -path './usr/bin/*' \) -print0 |
  while IFS= read -r -d '' f; do
    case " $configure_only " in *" $(s_soname "$f") "*) continue ;; esac
    for n in $(s_needed "$f"); do
      grep -qxF "$n" <<<"$have" || echo "$n (needed by ${f#./})"
    done
  done | sort -u)
if [[ -n $missing ]]; then
  log "libraries not in the tree:"
  echo "$missing" >&2
  exit 1
fi

echo "$versions $self" >.stamp
cd "$dest"
rm -rf "$tree" "$debs"
mv "$tree.new" "$tree"
log "$(du -sh "$tree" | cut -f1) in $tree (${#pkgs[@]} packages)"
