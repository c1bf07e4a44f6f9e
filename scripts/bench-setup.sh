# Sourced by the benchmark scripts (bench.sh, bench-matrix.sh, bench-scale.sh, bench-cluster.sh): the same
# ground for every run. Leaves the repository as the working directory, sets $load (the load
# generator) and $work (a scratch directory removed on exit, with every server started in
# the background stopped), and $LIMITS: hubbub's limits raised for load from one address.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ -x target/release/hubbub ] || scripts/leptos.sh build --release
cargo build --release --features ssr --bin hubbub-load
load=target/release/hubbub-load
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$work"' EXIT
# shellcheck disable=SC2034 # used by the scripts that source this one
LIMITS=(HUBBUB_MAX_CONNECTIONS=50000 HUBBUB_MAX_CONNECTIONS_PER_IP=50000
  HUBBUB_MAX_HTTP_CONNECTIONS=50000 HUBBUB_MAX_HTTP_CONNECTIONS_PER_IP=50000
  HUBBUB_RATE_PER_SEC=1000 HUBBUB_RATE_BURST=1000
  HUBBUB_REQUESTS_PER_SEC=1000 HUBBUB_REQUEST_BURST=1000
  HUBBUB_SIGNUPS_PER_IP_PER_HOUR=1000000 RUST_LOG=warn)
