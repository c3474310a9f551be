#!/usr/bin/env bash
# What `cmake --install` puts in a prefix is what the container image
# (Dockerfile) holds and the Helm chart's pods run: every program, started
# from the prefix (its libraries found through the installed run path),
# every command the chart's templates name, the nightly LoRA job and the
# bundled model the default pool serves, and a one-shot generation with
# the installed worker and model.
#   tests/install/check.sh BUILD_DIR SOURCE_DIR VERSION
set -uo pipefail
build=${1:?build dir} src=${2:?source dir} version=${3:?version}
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAILED: $*"; }

if ! cmake --install "$build" --prefix "$prefix" >"$prefix.log" 2>&1; then
  cat "$prefix.log"; rm -f "$prefix.log"
  echo "FAILED: cmake --install"; exit 1
fi
rm -f "$prefix.log"

# shardq-group asks the worker beside it (the prefix is not on PATH)
for p in shardq shardq-broker shardq-worker shardq-scheduler shardq-model shardq-group; do
  out=$("$prefix/bin/$p" --version 2>&1)
  if [[ $? -eq 0 && $out == "$p $version" ]]; then ok "$p --version: $out"
  else bad "$p --version from the prefix: $out"; fi
done
for s in bin/shardq-group share/shardq/examples/nightly-lora.sh; do
  if [[ -x $prefix/$s ]] && bash -n "$prefix/$s"; then
    ok "$s installed, executable, parses"
  else bad "$s"; fi
done

# every command of the chart's pods on the shardq image (postgresql.yaml
# runs the official postgres image): an absolute path as the image has it
# (the image installs to /usr), else a program on PATH
cmds=$(ls "$src"/helm/shardq/templates/*.yaml | grep -v '/postgresql.yaml$' |
       xargs grep -ho 'command: \["[^"]*"' | sed 's/.*\["//; s/"$//' | sort -u)
[[ -n $cmds ]] || bad "no command found in the chart's templates"
for c in $cmds; do
  case $c in
    /usr/*) f=$prefix/${c#/usr/} ;;
    /*) f=$prefix/$c ;;
    *) f=$prefix/bin/$c ;;
  esac
  if [[ -x $f ]]; then ok "the chart's command $c is installed"
  else bad "the chart's command $c is not in the install tree ($f)"; fi
done

for m in stories260K.gguf stories260K-q8_0.gguf README.md; do
  if cmp -s "$src/models/$m" "$prefix/share/shardq/models/$m"; then ok "model file $m installed"
  else bad "model file $m missing or different"; fi
done

out=$("$prefix/bin/shardq-worker" --model "$prefix/share/shardq/models/stories260K.gguf" \
        --prompt "Once upon a time" --max-tokens 8 2>&1)
if [[ $? -eq 0 && $out == ", there was a little girl"* ]]; then
  ok "the installed worker generates from the installed model: $out"
else bad "installed worker: $out"; fi

echo "$pass passed, $fail failed"
((fail == 0))
