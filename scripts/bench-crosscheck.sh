#!/usr/bin/env bash
# The #15 cases again with a second, independent load generator (scripts/loadgen-go: Go and
# gorilla/websocket instead of Rust and a hand-written client), hubbub and seed 001 side by
# side in one run, so that no result depends on one generator's quirks.
#
#   scripts/bench-crosscheck.sh [seconds-per-case]     # default 10
#
# Same ground as the other benchmarks (bench-setup.sh, bench-seeds.sh). Not part of `make test`.
seconds=${1:-10}
source "$(dirname "$0")/bench-setup.sh"
source "$(dirname "$0")/bench-seeds.sh"
loadgen_go

go_case() { # NAME SERVER ARGS...
  local name=$1 server=$2; shift 2
  start "$server"
  echo "### $name / $server"
  "$gen" -url "$url" -protocol "$proto" -pid "$pid" -label "$server" "$@" || echo "($server failed this case)"
  stop
  echo
}

for size in 100 1900; do
  for s in hubbub seed001; do
    go_case "10 msg/s, $size B" "$s" -clients 1000 -senders 10 -rate 1 -size "$size" -seconds "$seconds"
  done
  for s in hubbub seed001; do
    go_case "100 msg/s, $size B" "$s" -clients 1000 -senders 10 -rate 10 -size "$size" -seconds "$seconds"
  done
  for s in hubbub seed001; do
    go_case "closed loop, 50 senders, $size B" "$s" -clients 1000 -senders 50 -closed-loop -size "$size" -seconds "$seconds"
  done
done
for s in hubbub seed001; do
  go_case "10000 clients in one room, 1 msg/s" "$s" -clients 10000 -senders 1 -rate 1 -size 100 -seconds "$seconds"
done
