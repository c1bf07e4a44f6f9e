# Sourced after bench-setup.sh by the side-by-side benchmarks (bench.sh, bench-matrix.sh):
# builds the seed servers from $anchors (../shared/anchors unless set) with Debian's Go, and
# defines start/stop/case_run, which run one case against hubbub, seed000 or seed001, and
# loadgen_go.
anchors=${anchors:-../shared/anchors}
if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/github.com/gorilla/websocket ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-github-gorilla-websocket-dev >/dev/null
fi
seeds=$("$anchors/build.sh" /tmp/hubbub-anchors | tail -1)

# start NAME -> sets $pid, $url and $proto
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

# loadgen_go -> builds scripts/loadgen-go (the second generator, with the same Debian Go and
# gorilla as the seeds) and sets $gen to it.
loadgen_go() {
  gen=$work/loadgen-go
  (cd scripts/loadgen-go && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= \
    GOCACHE=${GOCACHE:-/tmp/gocache} go build -o "$gen" .)
}
