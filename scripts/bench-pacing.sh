#!/usr/bin/env bash
# Socket-write pacing on and off, side by side in one run (docs/benchmarks.md, "Paced writes"):
#
#   scripts/bench-pacing.sh
#
# The same release build twice per case: with the default `socket-writes-per-sec` (50) and
# with it off (0: every frame written as soon as it is ready). 1,000 clients, fixed load and
# closed loop, alternating, ROUNDS times (default 2). Not part of `make test`.
source "$(dirname "$0")/bench-setup.sh"

# run LABEL WRITES-PER-SEC LOAD-ARGS...
run() {
  local label=$1 writes=$2; shift 2
  rm -f "$work"/bench.db*
  env "${LIMITS[@]}" LEPTOS_SITE_ADDR=127.0.0.1:18150 HUBBUB_DATABASE="$work/bench.db" \
    HUBBUB_SOCKET_WRITES_PER_SEC="$writes" target/release/hubbub >/dev/null &
  local pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/18150) 2>/dev/null && break; sleep 0.05; done
  echo "### $label"
  "$load" --url ws://127.0.0.1:18150/ws --pid "$pid" --label "$label" "$@" || echo "($label failed)"
  # Frames per socket write, from the server's own counters.
  exec 3<>/dev/tcp/127.0.0.1/18150
  printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
  awk '/^hubbub_frames_out_total/ {f=$2} /^hubbub_socket_writes_total/ {w=$2}
       END {if (w > 0) printf "  frames_per_write=%.2f (frames=%d writes=%d)\n", f/w, f, w}' <&3
  exec 3<&-
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo
}

FIXED=(--clients 1000 --senders 10 --rate 10 --seconds 20)
CLOSED=(--clients 1000 --senders 10 --closed-loop --seconds 20)
for round in $(seq "${ROUNDS:-2}"); do
  run "paced (50/s), fixed load, round $round" 50 "${FIXED[@]}"
  run "unpaced, fixed load, round $round" 0 "${FIXED[@]}"
  run "paced (50/s), closed loop, round $round" 50 "${CLOSED[@]}"
  run "unpaced, closed loop, round $round" 0 "${CLOSED[@]}"
done
