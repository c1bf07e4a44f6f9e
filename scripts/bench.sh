#!/usr/bin/env bash
# Side-by-side benchmark: hubbub against the two seed servers (../shared/anchors), in one run,
# on this machine, with the same load generator (target/release/hubbub-load).
#
#   scripts/bench.sh [anchors-dir]     # prints every case's report; docs/benchmarks.md has a run
#
# Needs golang-go and golang-github-gorilla-websocket-dev (bench-seeds.sh installs them if
# missing) to build the seeds. Not part of `make test`: it takes a few minutes and prints numbers.
anchors_arg=${1:+$(realpath "$1")}
source "$(dirname "$0")/bench-setup.sh"
anchors=${anchors_arg:-../shared/anchors}
source "$(dirname "$0")/bench-seeds.sh"

FIXED=(--clients 1000 --senders 10 --rate 10 --seconds 20)
for s in hubbub seed001 seed000; do case_run "1000 clients, fixed load" "$s" "${FIXED[@]}"; done
for s in hubbub seed001 seed000; do case_run "1000 clients, closed loop" "$s" --clients 1000 --senders 10 --closed-loop --seconds 20; done
for s in hubbub seed001 seed000; do case_run "10000 idle connections" "$s" --clients 10000 --senders 0 --seconds 2; done
# Stalled readers: bigger messages and tiny receive buffers, so not reading backs up into the
# server within seconds; compared with the same load without them.
STALL=(--clients 1000 --senders 10 --rate 10 --seconds 20 --size 512)
for s in hubbub seed001 seed000; do case_run "1000 clients, 512-byte messages (clean)" "$s" "${STALL[@]}"; done
for s in hubbub seed001 seed000; do case_run "1000 clients + 10 stalled, 512-byte messages" "$s" "${STALL[@]}" --stalled 10; done
