#!/usr/bin/env bash
# The #15 matrix, hubbub and seed 001 side by side in one run: message sizes ~100 B and
# ~1.9 KB × 10 msg/s, 100 msg/s and a closed loop of 50 senders, 1,000 clients; then 10,000
# idle joined connections.
#
#   scripts/bench-matrix.sh [seconds-per-case]     # default 10; prints every report
#
# Same ground as scripts/bench.sh (bench-setup.sh: release build, raised limits;
# bench-seeds.sh: the seeds built with Debian's Go, one case at a time). Not part of `make test`.
seconds=${1:-10}
source "$(dirname "$0")/bench-setup.sh"
source "$(dirname "$0")/bench-seeds.sh"

for size in 100 1900; do
  for s in hubbub seed001; do
    case_run "10 msg/s, $size B" "$s" --clients 1000 --senders 10 --rate 1 --size "$size" --seconds "$seconds"
  done
  for s in hubbub seed001; do
    case_run "100 msg/s, $size B" "$s" --clients 1000 --senders 10 --rate 10 --size "$size" --seconds "$seconds"
  done
  for s in hubbub seed001; do
    case_run "closed loop, 50 senders, $size B" "$s" --clients 1000 --senders 50 --closed-loop --size "$size" --seconds "$seconds"
  done
done
for s in hubbub seed001; do case_run "10000 idle connections" "$s" --clients 10000 --senders 0 --seconds 2; done
