#!/bin/sh
# Stands in for `mpirun -np N shardq-worker ...` in test_local_actuator:
# a real process group that records its argv and waits. SIGUSR1 — what
# real mpirun forwards to the ranks and shardq-worker drains on — ends it
# (leaving a .term file, as a drained worker would exit cleanly) unless
# SQ_FAKE_IGNORE_TERM is set, which makes it need SIGKILL.
id=""
prev=""
for a in "$@"; do
  [ "$prev" = "--group-id" ] && id=$a
  prev=$a
done
# Signal disposition first: once the .args file exists the test may signal us.
if [ -n "$SQ_FAKE_IGNORE_TERM" ]; then
  trap '' USR1 TERM
else
  trap 'echo drained > "$SQ_FAKE_DIR/$id.term"; exit 0' USR1
fi
printf '%s\n' "$*" > "$SQ_FAKE_DIR/$id.args.tmp" && mv "$SQ_FAKE_DIR/$id.args.tmp" "$SQ_FAKE_DIR/$id.args"
while :; do sleep 0.05; done
