#!/usr/bin/env bash
# Build the container image from the Dockerfile without a container engine,
# then run the cluster from it.
#
#   tests/image/rehearse.sh [--build-arg NAME=VALUE]... [--keep DIR]
#
# Why: the Helm chart runs shardq/shardq, but no container engine runs on
# the machines this project is built and tested on, so `docker build` cannot
# be part of CI. This script reads the Dockerfile itself (ARG, FROM, COPY,
# COPY --from, RUN, ENV, USER, WORKDIR; anything else is refused, naming
# its line) and carries it out in chroots: each FROM debian:12 or
# debian:12-slim is a fresh `debootstrap --variant=minbase bookworm` root
# (slim: with the slim images' dpkg excludes), RUN runs in it with the
# stage's ARG and ENV values, COPY takes the build context less
# .dockerignore. Then, in the final root, as the image's USER and with its
# ENV (what a pod gets), it checks what the chart's pods rely on:
#   - the user, every program's --version, every library resolved (ldd);
#   - /adapters writable, the bundled model in /models;
#   - a one-shot generation from /models;
#   - the whole path of a job: shardq-broker --migrate and serving
#     (against a throwaway PostgreSQL on the host, its socket directory
#     mounted in the root), a worker group through shardq-group (mpirun
#     -np 2 with the image's OMPI_MCA_plm=isolated, no ssh, not root),
#     `shardq submit --wait` of the installed example batch, `shardq
#     results`: every task answered.
# Needs root, debootstrap (scripts/deps.sh installs it) and Debian's
# mirror (as scripts/deps.sh does); about 2 minutes once the base root is
# cached (/tmp/shardq-image-cache). With --build-arg CUDA=13-0 the build
# needs NVIDIA's repository (scripts/cuda-apt.sh), which only a machine
# with that network reaches.
# Exits 0 when the image built and every check passed, 1 when not, 77
# (ctest: skipped) where it cannot run: not root, or no mounts allowed (a
# container without CAP_SYS_ADMIN).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/scripts/procs.sh"

declare -A build_args=()
keep=""
while (($#)); do
  case $1 in
    --build-arg) [[ $2 == *=* ]] || { echo "rehearse.sh: --build-arg wants NAME=VALUE" >&2; exit 2; }
                 build_args[${2%%=*}]=${2#*=}; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "usage: tests/image/rehearse.sh [--build-arg NAME=VALUE]... [--keep DIR]" >&2; exit 2 ;;
  esac
done
skip() { echo "rehearse.sh: skipped: $*" >&2; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "needs root (debootstrap, chroot, mount)"
probe=$(mktemp -d)
if mount -t tmpfs tmpfs "$probe" 2>/dev/null; then umount "$probe"; rmdir "$probe"
else rmdir "$probe"; skip "this machine allows no mounts (a chroot needs /proc, /dev and /sys)"; fi
command -v debootstrap >/dev/null || { echo "rehearse.sh: needs debootstrap (scripts/deps.sh installs it)" >&2; exit 1; }

work=${keep:-$(mktemp -d /tmp/shardq-image.XXXXXX)}
mkdir -p "$work"
chmod 0755 "$work" # (the PostgreSQL server below runs as postgres)
cache=${SHARDQ_IMAGE_CACHE:-/tmp/shardq-image-cache}
mkdir -p "$cache"
mirror=${SHARDQ_DEBIAN_MIRROR:-http://deb.debian.org/debian}
port_c=${SHARDQ_IMAGE_PORT:-15755}
port_w=$((port_c + 1))
log() { printf '== %s\n' "$*"; }
die() { echo "rehearse.sh: $*" >&2; exit 1; }

mounts=()
pids=()
pgdir=""
cleanup() {
  set +e
  stop_pids "${pids[@]}"
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -R "${mounts[i]}" 2>/dev/null; done
  [[ -n $pgdir ]] && SHARDQ_PG_DIR=$pgdir "$here/scripts/pg-local.sh" destroy >/dev/null 2>&1
  [[ -z $keep ]] && rm -rf "$work"
}
trap cleanup EXIT

# ---- base images -------------------------------------------------------
# debian:12 and debian:12-slim as debootstrap minbase roots, cached as
# tarballs (the first one takes about a minute).
base_tar() {
  local tar=$cache/bookworm-minbase.tar
  if [[ ! -s $tar ]]; then
    local tmp=$cache/bootstrap.$$
    rm -rf "$tmp"
    debootstrap --variant=minbase bookworm "$tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
      { tail -20 "$cache/debootstrap.log" >&2; die "debootstrap bookworm from $mirror failed"; }
    cat >"$tmp/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
    tar -C "$tmp" -cf "$tar.$$.part" . && mv "$tar.$$.part" "$tar"
    rm -rf "$tmp"
  fi
  echo "$tar"
}

new_root() { # IMAGE DIR
  local image=$1 dir=$2
  case $image in
    debian:12|debian:bookworm|debian:12-slim|debian:bookworm-slim) ;;
    *) die "FROM $image: only debian:12 and debian:12-slim can be rehearsed" ;;
  esac
  mkdir -p "$dir"
  tar -C "$dir" -xf "$(base_tar)"
  if [[ $image == *-slim ]]; then
    # what Debian's slim images leave out of every package they install
    cat >"$dir/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  fi
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  # the way this machine's apt reaches the mirror (a proxy), if it has one
  local f
  for f in $(grep -lis 'proxy' /etc/apt/apt.conf /etc/apt/apt.conf.d/* 2>/dev/null); do
    cp "$f" "$dir/etc/apt/apt.conf.d/99host-${f##*/}"
  done
  mount -t proc proc "$dir/proc"; mounts+=("$dir/proc")
  mount --rbind /dev "$dir/dev"; mount --make-rslave "$dir/dev"; mounts+=("$dir/dev")
  # a container sees the host's /sys read-only (Open MPI's hwloc reads the
  # CPU topology there)
  mount --rbind /sys "$dir/sys"; mount --make-rslave "$dir/sys"
  mount -o remount,bind,ro "$dir/sys"; mounts+=("$dir/sys")
}

# ---- the Dockerfile ----------------------------------------------------
# Logical lines: comments dropped, continuations joined; each printed as
# "LINENO<TAB>INSTRUCTION ARGS".
logical_lines() {
  awk '
    /^[[:space:]]*#/ { next }
    { line = $0
      if (buf == "") start = NR
      if (sub(/\\[[:space:]]*$/, "", line)) { buf = buf line " "; next }
      buf = buf line
      if (buf ~ /[^[:space:]]/) printf "%d\t%s\n", start, buf
      buf = "" }
    END { if (buf ~ /[^[:space:]]/) printf "%d\t%s\n", start, buf }' "$1"
}

# The build context: the tree less what .dockerignore names (plain
# patterns relative to the root; "!" exceptions are not supported).
context=$work/context
make_context() {
  local ex=() p
  if [[ -f $here/.dockerignore ]]; then
    while IFS= read -r p; do
      p=${p%%#*}; p=${p%"${p##*[![:space:]]}"}; p=${p#"${p%%[![:space:]]*}"}
      [[ -z $p ]] && continue
      [[ $p == !* ]] && die ".dockerignore: exception patterns (\"$p\") are not supported here"
      ex+=("--exclude=./${p%/}")
    done <"$here/.dockerignore"
  fi
  mkdir -p "$context"
  tar -C "$here" --anchored "${ex[@]}" -cf - . | tar -C "$context" -xf -
}

declare -A global_args=() stage_root=()
stage_n=0 root="" user="" workdir="/"
declare -A stage_args=() stage_env=()
env_list() { # the environment of a RUN or of the running image
  local k home=/root
  if [[ -n $user ]]; then # the user's home, as docker sets it
    home=$(awk -F: -v u="${user%%:*}" '$1 == u || $3 == u { print $6; exit }' "$root/etc/passwd")
  fi
  echo PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "HOME=${home:-/}"
  for k in "${!stage_args[@]}"; do echo "$k=${stage_args[$k]}"; done
  for k in "${!stage_env[@]}"; do echo "$k=${stage_env[$k]}"; done
}
in_root() { # run a command in the current root as its current user
  # (with IN_ROOT_EXEC set, the shell becomes the command: for background
  # services, whose pid then takes signals)
  local spec=()
  [[ -n $user ]] && spec=(--userspec="$user")
  local envs
  mapfile -t envs < <(env_list)
  ${IN_ROOT_EXEC:+exec} chroot "${spec[@]}" "$root" /usr/bin/env -i "${envs[@]}" /bin/sh -c "cd '$workdir' && $1"
}

copy_in() { # SRC-ROOT DEST ARGS... (sources relative to SRC-ROOT)
  local from=$1; shift
  local srcs=("${@:1:$#-1}") dest=${*: -1}
  local target=$root/${dest#/}
  ((${#srcs[@]} > 1)) && [[ $dest != */ ]] && die "COPY of several sources wants a destination ending in /"
  local s
  for s in "${srcs[@]}"; do
    local path=$from/${s#/}
    [[ -e $path ]] || die "COPY $s: no such file in the ${from##*/} (line $lineno)"
    if [[ -d $path ]]; then mkdir -p "$target"; cp -a "$path/." "$target/"
    elif [[ $dest == */ ]]; then mkdir -p "$target"; cp -a "$path" "$target"
    else mkdir -p "$(dirname "$target")"; cp -a "$path" "$target"; fi
  done
}

dockerfile=$here/Dockerfile
log "image: $dockerfile, work in $work"
make_context
lines=$(logical_lines "$dockerfile")
while IFS=$'\t' read -r lineno text; do
  instr=${text%%[[:space:]]*}; rest=${text#"$instr"}; rest=${rest#"${rest%%[![:space:]]*}"}
  instr=${instr^^}
  case $instr in
    ARG)
      name=${rest%%=*}; def=""; [[ $rest == *=* ]] && def=${rest#*=}; def=${def//\"/}
      if [[ -z $root ]]; then global_args[$name]=${build_args[$name]-$def}
      else stage_args[$name]=${build_args[$name]-${global_args[$name]-$def}}; fi ;;
    FROM)
      read -r image as name <<<"$rest"
      [[ -n ${as:-} && ${as^^} != AS ]] && die "line $lineno: FROM $rest: expected 'AS name'"
      stage_n=$((stage_n + 1)); name=${name:-stage$stage_n}
      root=$work/$stage_n-$name; user=""; workdir=/
      stage_args=(); stage_env=()
      log "stage $name: FROM $image (line $lineno)"
      new_root "$image" "$root"
      stage_root[$name]=$root ;;
    COPY)
      [[ -n $root ]] || die "line $lineno: COPY before FROM"
      read -r -a words <<<"$rest"
      if [[ ${words[0]} == --from=* ]]; then
        from=${words[0]#--from=}
        [[ -n ${stage_root[$from]:-} ]] || die "line $lineno: COPY --from=$from: no stage of that name"
        copy_in "${stage_root[$from]}" "${words[@]:1}"
      else
        [[ ${words[0]} == --* ]] && die "line $lineno: COPY ${words[0]} is not supported here"
        copy_in "$context" "${words[@]}"
      fi ;;
    RUN)
      [[ -n $root ]] || die "line $lineno: RUN before FROM"
      log "RUN (line $lineno): ${rest:0:100}"
      if ! in_root "$rest" >"$work/run-$lineno.log" 2>&1; then
        tail -30 "$work/run-$lineno.log" >&2
        die "RUN at Dockerfile line $lineno failed (whole log: $work/run-$lineno.log with --keep)"
      fi ;;
    ENV)
      read -r -a words <<<"$rest"
      for w in "${words[@]}"; do
        [[ $w == *=* ]] || die "line $lineno: ENV $w: only NAME=VALUE pairs are supported here"
        stage_env[${w%%=*}]=${w#*=}
      done ;;
    USER) user=$rest ;;
    WORKDIR) workdir=$rest; mkdir -p "$root/${rest#/}" ;;
    *) die "Dockerfile line $lineno: $instr is not supported by this rehearsal" ;;
  esac
done <<<"$lines"
[[ -n $root ]] || die "the Dockerfile has no FROM"
log "image built: $root (user '${user:-root}')"

# ---- what the chart's pods rely on -------------------------------------
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAILED: $*"; }
version=$(sed -n 's/^project(shardq VERSION \([0-9.]*\).*/\1/p' "$here/CMakeLists.txt")

out=$(in_root 'id -u' 2>&1) || true
[[ $out == "10001" ]] && ok "runs as uid 10001" || bad "runs as uid '$out', not 10001"
for p in shardq shardq-broker shardq-worker shardq-scheduler shardq-model; do
  out=$(in_root "$p --version" 2>&1) || true
  [[ $out == "$p $version" ]] && ok "$p --version: $out" || bad "$p --version: $out"
done
out=$(in_root 'command -v shardq-group && bash -n "$(command -v shardq-group)"' 2>&1) &&
  ok "shardq-group on PATH: $out" || bad "shardq-group: $out"
out=$(in_root 'for f in /usr/bin/shardq*; do head -c4 "$f" | grep -q ELF && ldd "$f"; done' 2>&1) || true
if [[ -n $out && $out != *"not found"* ]]; then ok "every program's libraries resolve"
else bad "unresolved libraries: $(grep 'not found' <<<"$out" | sort -u | tr '\n' ' ')"; fi
out=$(in_root 'touch /adapters/.w && rm /adapters/.w && echo writable' 2>&1) || true
[[ $out == writable ]] && ok "/adapters writable by the image's user" || bad "/adapters: $out"
for m in stories260K.gguf stories260K-q8_0.gguf; do
  cmp -s "$here/models/$m" "$root/models/$m" && ok "/models/$m is the bundled model" || bad "/models/$m"
done
out=$(in_root 'shardq-worker --model /models/stories260K-q8_0.gguf --prompt "Once upon a time" --max-tokens 8' 2>&1) || true
[[ $out == ", there was a"* ]] && ok "one-shot generation: $out" || bad "one-shot generation: $out"

# A job through the cluster, all of it run from the image.
pgdir=$work/pg
export SHARDQ_PG_DIR=$pgdir SHARDQ_PG_PORT=${SHARDQ_IMAGE_PG_PORT:-54331}
db=$("$here/scripts/pg-local.sh" start)
sock=${db#host=}; sock=${sock%% *}
chmod 0755 "$pgdir" "$sock"
mkdir -p "$root$sock"; mount --bind "$sock" "$root$sock"; mounts+=("$root$sock")
stage_env[SHARDQ_DB]=$db
stage_env[SHARDQ_BROKER]=tcp://127.0.0.1:$port_c
if out=$(in_root 'shardq-broker --migrate' 2>&1); then ok "shardq-broker --migrate"
else bad "shardq-broker --migrate: $out"; fi
IN_ROOT_EXEC=1 in_root "exec shardq-broker --listen tcp://127.0.0.1:$port_c --workers tcp://127.0.0.1:$port_w \
  --adapters /adapters" >"$work/broker.log" 2>&1 &
pids+=($!)
IN_ROOT_EXEC=1 in_root "exec shardq-group -np 2 -- --broker tcp://127.0.0.1:$port_w --model /models/stories260K.gguf \
  --max-batch 8 --group-id image-group --adapters /adapters" >"$work/group.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do
  in_root 'shardq workers' 2>/dev/null | grep -q image-group && break
  sleep 0.2
done
if in_root 'shardq workers' 2>/dev/null | grep -q image-group; then
  ok "a worker group of 2 ranks started by shardq-group (mpirun) joined the broker"
else bad "the worker group did not join: $(tail -5 "$work/group.log" | tr '\n' ' ')"; fi
# the installed example, less the tasks on the adapter (none is published here)
n=$(in_root 'grep -v "\"adapter\"" /usr/share/shardq/examples/research-batch.jsonl | head -n 12 > /tmp/batch.jsonl &&
             wc -l < /tmp/batch.jsonl')
if out=$(in_root 'shardq submit /tmp/batch.jsonl --tenant image --model stories260K.gguf --wait --timeout 240 \
                  -o /tmp/results.jsonl' 2>&1); then
  ok "shardq submit --wait: the job succeeded"
else bad "shardq submit --wait: $out"; fi
got=$(in_root 'grep -c "\"status_code\":200" /tmp/results.jsonl' 2>/dev/null) || true
[[ $n -gt 0 && $got == "$n" ]] && ok "shardq results: all $n tasks answered (status 200)" ||
  bad "results: $got of $n tasks answered"
kill -TERM "${pids[1]}" 2>/dev/null
if wait "${pids[1]}"; then ok "the worker group drained on SIGTERM (exit 0)"
else bad "the worker group's exit on SIGTERM: $? ($(tail -3 "$work/group.log" | tr '\n' ' '))"; fi

echo "$pass passed, $fail failed"
((fail == 0))
