#!/usr/bin/env bash
# The #15 cases beyond the 1,000-client matrix (scripts/bench-matrix.sh), in one run:
# - many small rooms (hubbub only: the seeds have one room): 5,000 connections each alone in
#   a room, and 9,900 rooms of two (19,800 connections), idle, RSS per connection;
# - 10,000 clients in one room, one message a second: delivery latency (p50, p99, p99.9 and
#   max; a message has reached everyone by its slowest delivery), hubbub and seed 001;
# - 10 stalled readers (4 KiB receive window) among 1,000 clients at 100 msg/s of 512 B,
#   against the same run without them, hubbub and seed 001.
#
#   scripts/bench-scale.sh [seconds-per-case]     # default 20
#
# Same ground as the other benchmarks (bench-setup.sh, bench-seeds.sh). Not part of `make test`.
seconds=${1:-20}
source "$(dirname "$0")/bench-setup.sh"
source "$(dirname "$0")/bench-seeds.sh"

case_run "5000 rooms of 1, idle" hubbub --clients 5000 --rooms 5000 --senders 0 --seconds 2
case_run "1 room of 5000, idle" hubbub --clients 5000 --senders 0 --seconds 2
# 9,900 rooms of two, not 10,000: the machines here cap open files at 20,000 per process (a
# hard limit a container cannot raise), and the server needs a few besides its sockets.
case_run "9900 rooms of 2, idle" hubbub --clients 19800 --rooms 9900 --senders 0 --seconds 2
for s in hubbub seed001; do
  case_run "10000 clients in one room, 1 msg/s" "$s" --clients 10000 --senders 1 --rate 1 --size 100 --seconds "$seconds"
done
for s in hubbub seed001; do
  case_run "1000 clients, 100 msg/s, 512 B, clean" "$s" --clients 1000 --senders 10 --rate 10 --size 512 --seconds "$seconds"
  case_run "1000 clients, 100 msg/s, 512 B, 10 stalled" "$s" --clients 1000 --senders 10 --rate 10 --size 512 --stalled 10 --seconds "$seconds"
done
