#!/usr/bin/env bash
# permessage-deflate: bytes on the wire per delivery, server CPU and latency, with and without,
# 1,000 clients at 100 msg/s, messages padded with words (chat-like text, not dots), at the
# matrix's two sizes. hubbub only (the seeds do not compress).
#
#   scripts/bench-deflate.sh [seconds-per-case]     # default 10
#
# Same ground as the other benchmarks (bench-setup.sh, bench-seeds.sh). Not part of `make test`.
seconds=${1:-10}
source "$(dirname "$0")/bench-setup.sh"
source "$(dirname "$0")/bench-seeds.sh"

for size in 100 1900; do
  case_run "100 msg/s, $size B of words, plain" hubbub --clients 1000 --senders 10 --rate 10 --size "$size" --words --seconds "$seconds"
  case_run "100 msg/s, $size B of words, permessage-deflate" hubbub --clients 1000 --senders 10 --rate 10 --size "$size" --words --deflate --seconds "$seconds"
done
