#!/usr/bin/env bash
# The #15 matrix, hubbub and seed 001 side by side in one run: message sizes ~100 B and
# ~1.9 KB × 10 msg/s, 100 msg/s and a closed loop of 50 senders, 1,000 clients; then 10,000
# idle joined connections.
#
#   scripts/bench-matrix.sh [seconds-per-case]     # default 10; prints every report
#
# Same ground as scripts/bench.sh (bench-setup.sh: release build, raised limits, seeds built
# with Debian's Go). Not part of `make test`.
seconds=${1:-10}
source "$(dirname "$0")/bench-setup.sh"
anchors=../shared/anchors
if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/github.com/gorilla/websocket ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-github-gorilla-websocket-dev >/dev/null
fi
seeds=$("$anchors/build.sh" /tmp/hubbub-anchors | tail -1)

start() {
  case $1 in
    hubbub)
      rm -f "$work"/bench.db*
      env "${LIMITS[@]}" LEPTOS_SITE_ADDR=127.0.0.1:18100 HUBBUB_DATABASE="$work/bench.db" \
        target/release/hubbub >/dev/null &
      pid=$!; url=ws://127.0.0.1:18100/ws; proto=hubbub ;;
    seed001)
      ADDR=127.0.0.1:18001 "$seeds/seed001" 2>/dev/null &
      pid=$!; url=ws://127.0.0.1:18001/ws; proto=seed001 ;;
  esac
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/${url:15:5}") 2>/dev/null; then return; fi
    sleep 0.05
  done
  echo "server $1 did not start" >&2; exit 1
}
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }

case_run() { # NAME SERVER ARGS...
  local name=$1 server=$2; shift 2
  start "$server"
  echo "### $name / $server"
  "$load" --url "$url" --protocol "$proto" --pid "$pid" --label "$server" "$@" || echo "($server failed this case)"
  stop
  echo
}

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
