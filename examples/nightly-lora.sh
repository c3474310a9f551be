#!/usr/bin/env bash
# Nightly LoRA update: publish the adapter last night's training produced and
# activate it for new tasks (or for a canary share first).
#
# Environment:
#   SHARDQ_BROKER        broker client endpoint (default tcp://127.0.0.1:5555)
#   LORA_NAME            adapter name (default fin)
#   LORA_VERSION         version to publish (default: today's UTC date, YYYY-MM-DD)
#   LORA_FILE            the adapter file; default $LORA_SOURCE_DIR/$LORA_NAME-$LORA_VERSION.gguf
#   LORA_SOURCE_DIR      where training drops adapters (default .)
#   LORA_BASE_MODEL      base model the adapter must fit (checked before publishing)
#   LORA_CANARY_PERCENT  0 (default): activate for all new tasks; 1..99: canary share
#   LORA_METRICS         evaluation figures as a JSON object (optional)
#   SHARDQ_BIN           the shardq CLI (default: shardq on PATH)
#
# Every step is recorded by the broker in lora_updates, lora_events and the
# audit log, with SHARDQ_ACTOR (default: the login name) as who. Exit status:
# 0 published and activated; non-zero when any step was refused (nothing is
# activated then), so a scheduler (the Helm chart's CronJob) can alert.
# Running it again with the same file is safe (a retry after a refused or
# unanswered step): the broker answers the publish "published before" and
# the activation goes on, or changes nothing when it was done.
set -euo pipefail

name=${LORA_NAME:-fin}
version=${LORA_VERSION:-$(date -u +%Y-%m-%d)}
file=${LORA_FILE:-${LORA_SOURCE_DIR:-.}/$name-$version.gguf}
canary=${LORA_CANARY_PERCENT:-0}
shardq=${SHARDQ_BIN:-shardq}

if [[ ! -f $file ]]; then
  echo "nightly-lora: no adapter for $name@$version at $file" >&2
  exit 1
fi

publish=("$shardq" lora publish --name "$name" --version "$version" --file "$file"
         --source "nightly $(date -u +%Y-%m-%dT%H:%M:%SZ) from $(basename "$file")")
[[ -n ${LORA_BASE_MODEL:-} ]] && publish+=(--base "$LORA_BASE_MODEL")
[[ -n ${LORA_METRICS:-} ]] && publish+=(--metrics "$LORA_METRICS")
"${publish[@]}"

if [[ $canary -gt 0 ]]; then
  "$shardq" lora activate "$name@$version" --canary "$canary"
else
  "$shardq" lora activate "$name@$version"
fi
"$shardq" lora list "$name"
