#!/usr/bin/env bash
# Install shardq's build and test dependencies on Debian 12 (idempotent).
# Only packages that are missing are installed, so an existing
# postgresql-15 / libpq-dev is never upgraded underneath a running cluster.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libczmq-dev libzmq3-dev libmsgpack-dev libjansson-dev libyaml-dev
  libcurl4-openssl-dev libssl-dev unzip openssl python3 bc
  openmpi-bin libopenmpi-dev
  postgresql-15 libpq-dev
  clang libclang-rt-14-dev
  debootstrap
)
# Node.js is only needed by the Helm chart checks and the comparison
# benchmarks; keep any Node already on the machine.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs npm)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}
missing=()
for p in "${pkgs[@]}"; do
  if ! installed "$p"; then
    # libpq-dev depends on its exact libpq5: pin it to the installed one, or
    # installing it would upgrade libpq5 under a running PostgreSQL
    if [[ $p == libpq-dev ]] && installed libpq5; then
      p="libpq-dev=$(dpkg-query -W -f='${Version}' libpq5)"
    fi
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  SUDO=sudo
else
  SUDO=
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
