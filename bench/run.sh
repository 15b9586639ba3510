#!/usr/bin/env bash
# Runs every workload (W1–W8) on every system of tinypool-bench, and, when node and npm are
# present, on Node's Tinypool (worker_threads and child_process) and Piscina, then prints a
# markdown table with a ratio column against (Rust) tinypool. See bench/README.md.
#
#   bash bench/run.sh               the full run (about 16 minutes on 2 cores)
#   QUICK=1 bash bench/run.sh       smoke test: fewer tasks and repeats (about 2 minutes)
#
# Environment: QUICK=1 as above; NODE=0 skips the Node side; KEEP=<dir> keeps the JSON lines
# (results.jsonl), hyperfine's exports and the table there.
#
# It installs what it needs: hyperfine (apt-get, as root or with passwordless sudo; without it
# W3 is timed by the driver's `time` mode) and the Node packages (`npm ci` in bench/node, from
# its package-lock.json: tinypool 2.1.0, piscina 5.3.2). Every run is a fresh process; a run
# that fails (a wrong result exits non-zero) is listed after the table, and run.sh then exits 1.
#
# tinypool's targets (threads / child processes), checked in the table's last column:
#   W1 latency       ≤ 2 µs / ≤ 10 µs per round trip; pinned (taskset -c 0): ≤ 6 / ≤ 10 µs
#   W2 throughput    ≥ 5,000,000 / ≥ 500,000 tasks/s
#   W3 cold start    ≤ 1.5 ms / ≤ 3 ms
#   W4 isolation     ≥ 15,000 / ≥ 1,000 tasks/s
#   W5 payload       moved (zero-copy) / ≥ 2,000 MiB/s copied
#   W6 idle memory   ≤ 3.5 MiB / ≤ 8 MiB RSS
#   W7 idle CPU      ≤ 10 ms in 5 s
# and, without targets, on the systems with async exports (tinypool's, Node's Tinypool and
# Piscina): W1/W2 of an async export that returns at once (w1-async, w2-async), and W8, 1,000
# async 10 ms sleeps on 2 workers with 100 in flight on each (ideal 50 ms).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '%s\n' "$*" >&2; }

# w1a/w2a: the async-export W1/W2 (fewer tasks than W1/W2: Node's take seconds per 100,000);
# w8: 1,000 async 10 ms sleeps.
if [[ ${QUICK:-0} == 1 ]]; then
  w1=(2000 3) w2=(20000 3) w4=(20 3) w5=(20 3) w6=(100 1) w7=(1 1) w3_warmup=1 w3_runs=5
  w1a=(1000 3) w2a=(5000 3) w8=(1000 3)
else
  w1=(20000 5) w2=(200000 5) w4=(200 5) w5=(200 5) w6=(100 3) w7=(5 1) w3_warmup=3 w3_runs=20
  w1a=(5000 5) w2a=(20000 5) w8=(1000 5)
fi
rust_systems=(tinypool-threads tinypool-process tinypool-process-exe rayon threadpool tokio procspawn
  floor-mpsc floor-unix)
node_systems=(tinypool-threads tinypool-process piscina)
# The systems whose workers are threads: the only ones with a w5transfer.
threads() { [[ $1 != tinypool-process* && $1 != procspawn && $1 != floor-unix ]]; }
# The systems with async exports (w1-async, w2-async, w8): tinypool's, Rust and Node, and Piscina.
has_async() { [[ ${1#node-} == tinypool-* || $1 == node-piscina ]]; }

# --- What it needs --------------------------------------------------------------------------
if ! command -v hyperfine >/dev/null; then
  log "installing hyperfine"
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    { apt-get update -qq && apt-get install -y -qq hyperfine; } >&2 || true
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    { sudo -n apt-get update -qq && sudo -n apt-get install -y -qq hyperfine; } >&2 || true
  fi
  command -v hyperfine >/dev/null || log "no hyperfine: W3 is timed by tinypool-bench time"
fi
node_side=0
if [[ ${NODE:-1} != 0 ]] && command -v node >/dev/null && command -v npm >/dev/null; then
  lock=bench/node/node_modules/.package-lock.json
  if [[ ! -f $lock || bench/node/package-lock.json -nt $lock ]]; then
    log "installing the Node packages (npm ci)"
    (cd bench/node && npm ci --no-audit --no-fund >&2)
  fi
  node_side=1
else
  log "no node/npm (or NODE=0): Rust systems only"
fi
pin=()
if command -v taskset >/dev/null; then
  pin=(taskset -c 0)
else
  log "no taskset: no pinned W1"
fi

log "building tinypool-bench"
cargo build --release -p tinypool-bench >&2
target_dir=$(cargo metadata --format-version 1 --no-deps |
  grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
bin="$target_dir/release/tinypool-bench"
node_bench="$root/bench/node/bench.mjs"

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
results="$out/results.jsonl"
: >"$results"
failures=()

# record <what> <command...>: runs one fresh process, which must print exactly one JSON line.
record() {
  local what=$1 line
  shift
  log "  $what"
  if line=$("$@" 2>"$out/stderr"); then
    if [[ $line == '{'*'}' && $line != *$'\n'* ]]; then
      printf '%s\n' "$line" >>"$results"
    else
      failures+=("$what: not one JSON line: ${line:0:200}")
    fi
  else
    local code=$?
    failures+=("$what: exit $code: $(tail -n 3 "$out/stderr" | tr '\n' ' ')")
  fi
}

# Every system as "<name> <command prefix...>" lines: the Rust driver's, then bench.mjs's.
each_system() {
  local s
  for s in "${rust_systems[@]}"; do
    "$@" "$s" "$bin" "$s"
  done
  if [[ $node_side == 1 ]]; then
    for s in "${node_systems[@]}"; do
      "$@" "node-$s" node "$node_bench" "$s"
    done
  fi
}

w1_run() { record "w1 $1" "${@:2}" w1 "${w1[@]}"; }
w1_pinned() { record "w1 pinned $1" env BENCH_LABEL=pinned "${pin[@]}" "${@:2}" w1 "${w1[@]}"; }
w2_run() { record "w2 $1" "${@:2}" w2 "${w2[@]}"; }
# W2 again with 32 tasks per worker, for the pools that have the option: a child-process worker
# of tinypool then gets its tasks 32 at a time (many per write).
w2_batched() {
  case ${1#node-} in
    tinypool-threads | tinypool-process* | piscina)
      record "w2 c32 $1" env BENCH_LABEL=c32 BENCH_CONCURRENCY=32 "${@:2}" w2 "${w2[@]}"
      ;;
  esac
}
# tinypool's isolated children are forked from a fork server (`fork_server`); W4 again with
# each spawned anew, for comparison.
w4_run() {
  record "w4 $1" "${@:2}" w4 "${w4[@]}"
  case $1 in
    tinypool-process*)
      record "w4 spawn $1" env BENCH_LABEL=spawn BENCH_SPAWN=1 "${@:2}" w4 "${w4[@]}"
      ;;
  esac
}
w5_run() {
  record "w5copy $1" "${@:2}" w5copy "${w5[@]}"
  if threads "${1#node-}"; then
    record "w5transfer $1" "${@:2}" w5transfer "${w5[@]}"
  fi
}

# The async workloads, on the systems that have async exports (the others are left out).
w1_async() {
  if has_async "$1"; then
    record "w1-async $1" "${@:2}" w1-async "${w1a[@]}"
  fi
}
w2_async() {
  has_async "$1" || return 0
  record "w2-async $1" "${@:2}" w2-async "${w2a[@]}"
  case ${1#node-} in
    tinypool-threads | tinypool-process* | piscina)
      record "w2-async c32 $1" env BENCH_LABEL=c32 BENCH_CONCURRENCY=32 "${@:2}" w2-async "${w2a[@]}"
      ;;
  esac
}
# W8: 1,000 sleeps of 10 ms at once on 2 workers with 100 tasks in flight on each.
w8_run() {
  if has_async "$1"; then
    record "w8 $1" "${@:2}" w8 "${w8[@]}"
  fi
}

# W3: the whole process, once by hand (it must print 3), then timed by hyperfine.
w3_run() {
  local name=$1 answer
  shift
  log "  w3 $name"
  if ! answer=$("$@" w3 2>"$out/stderr") || [[ $answer != 3 ]]; then
    failures+=("w3 $name: printed '${answer:-}': $(tail -n 3 "$out/stderr" | tr '\n' ' ')")
    return
  fi
  if command -v hyperfine >/dev/null; then
    local command
    command=$(printf '%q ' "$@" w3)
    if hyperfine -N --warmup "$w3_warmup" --runs "$w3_runs" --style none \
      --export-json "$out/w3-$name.json" "$command" >/dev/null 2>"$out/stderr"; then
      record "w3 $name (hyperfine)" "$bin" hyperfine "$name" "$out/w3-$name.json"
    else
      failures+=("w3 $name: hyperfine failed: $(tail -n 3 "$out/stderr" | tr '\n' ' ')")
    fi
  else
    record "w3 $name (timed)" "$bin" time "$name" "$w3_runs" "$w3_warmup" -- "$@" w3
  fi
}

# W6/W7: `tinypool-bench measure` starts the idle process (the driver's own, or bench.mjs's
# after --) and reads /proc.
w6_run() {
  local name=$1 command=()
  [[ $name == node-* ]] && command=(-- "${@:2}" w6 "${w6[0]}")
  record "w6 $name" "$bin" measure "$name" w6 "${w6[@]}" "${command[@]}"
  record "w6pss $name" "$bin" measure "$name" w6pss "${w6[@]}" "${command[@]}"
}
w7_run() {
  local name=$1 command=()
  [[ $name == node-* ]] && command=(-- "${@:2}" w7)
  record "w7 $name" "$bin" measure "$name" w7 "${w7[@]}" "${command[@]}"
  record "w7sched $name" "$bin" measure "$name" w7sched "${w7[@]}" "${command[@]}"
}

log "W1 latency"
each_system w1_run
if [[ ${#pin[@]} -gt 0 ]]; then
  log "W1 latency, pinned (taskset -c 0)"
  each_system w1_pinned
fi
log "W2 throughput"
each_system w2_run
log "W2 throughput, concurrent_tasks_per_worker 32"
each_system w2_batched
log "W3 cold start"
each_system w3_run
log "W4 isolation"
each_system w4_run
log "W5 payload"
each_system w5_run
log "W6 idle memory"
each_system w6_run
log "W7 idle CPU"
each_system w7_run
log "W1/W2 with an async export that returns at once"
each_system w1_async
each_system w2_async
log "W8 async sleeps, concurrency 100"
each_system w8_run

"$bin" table "$results" | tee "$out/table.md"
if [[ -n ${KEEP:-} ]]; then
  mkdir -p "$KEEP"
  cp "$out"/results.jsonl "$out"/table.md "$KEEP"/
  cp "$out"/w3-*.json "$KEEP"/ 2>/dev/null || true
  log "kept in $KEEP"
fi
if [[ ${#failures[@]} -gt 0 ]]; then
  echo
  echo "Failed runs:"
  printf -- '- %s\n' "${failures[@]}"
  exit 1
fi
