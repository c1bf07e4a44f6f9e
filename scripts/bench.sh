#!/usr/bin/env bash
# Side-by-side benchmark: hubbub against the two seed servers (../shared/anchors), in one run,
# on this machine, with the same load generator (target/release/hubbub-load).
#
#   scripts/bench.sh [anchors-dir]     # prints every case's report; docs/benchmarks.md has a run
#
# Needs golang-go and golang-github-gorilla-websocket-dev (installed here if missing) to
# build the seeds. Not part of `make test`: it takes a few minutes and prints numbers.
anchors_arg=${1:+$(realpath "$1")}
source "$(dirname "$0")/bench-setup.sh"
anchors=${anchors_arg:-../shared/anchors}

if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/github.com/gorilla/websocket ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-github-gorilla-websocket-dev >/dev/null
fi
seeds=$("$anchors/build.sh" /tmp/hubbub-anchors | tail -1)

# start NAME -> sets $pid and $url
start() {
  case $1 in
    hubbub)
      rm -f "$work"/bench.db*
      env "${LIMITS[@]}" LEPTOS_SITE_ADDR=127.0.0.1:18100 HUBBUB_DATABASE="$work/bench.db" \
        target/release/hubbub >/dev/null &
      pid=$!; url=ws://127.0.0.1:18100/ws; proto=hubbub ;;
    seed000)
      (cd "$work" && mkdir -p public && ADDR=127.0.0.1:18000 exec "$seeds/seed000" 2>/dev/null) &
      pid=$!; url=ws://127.0.0.1:18000/ws; proto=seed000 ;;
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

FIXED=(--clients 1000 --senders 10 --rate 10 --seconds 20)
for s in hubbub seed001 seed000; do case_run "1000 clients, fixed load" "$s" "${FIXED[@]}"; done
for s in hubbub seed001 seed000; do case_run "1000 clients, closed loop" "$s" --clients 1000 --senders 10 --closed-loop --seconds 20; done
for s in hubbub seed001 seed000; do case_run "10000 idle connections" "$s" --clients 10000 --senders 0 --seconds 2; done
# Stalled readers: bigger messages and tiny receive buffers, so not reading backs up into the
# server within seconds; compared with the same load without them.
STALL=(--clients 1000 --senders 10 --rate 10 --seconds 20 --size 512)
for s in hubbub seed001 seed000; do case_run "1000 clients, 512-byte messages (clean)" "$s" "${STALL[@]}"; done
for s in hubbub seed001 seed000; do case_run "1000 clients + 10 stalled, 512-byte messages" "$s" "${STALL[@]}" --stalled 10; done
