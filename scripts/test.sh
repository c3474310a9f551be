#!/usr/bin/env bash
# Run the whole test suite: install dependencies, build, start a throwaway
# PostgreSQL, run ctest (everything except the `gpu` label: those need a
# GPU, tests/gpu/run.sh runs them), stop PostgreSQL.
# Exits non-zero when anything fails. Extra arguments go to ctest
# (e.g. scripts/test.sh -L unit).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

scripts/deps.sh
scripts/build.sh dev

export SHARDQ_TEST_DB
SHARDQ_TEST_DB=$(scripts/pg-local.sh start)
trap 'scripts/pg-local.sh stop || true' EXIT
export SHARDQ_PG_CTL="$here/scripts/pg-local.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

ctest --test-dir build/dev --output-on-failure --timeout 900 -LE gpu "$@"
