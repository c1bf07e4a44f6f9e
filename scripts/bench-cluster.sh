#!/usr/bin/env bash
# 1 node against 2 nodes sharing a PostgreSQL and a Redis, on this machine, with the same load generator
# spreading its clients over the nodes' URLs (docs/benchmarks.md, "Cluster"):
#
#   scripts/bench-cluster.sh
#
# Cases: one node on SQLite (the embedded default), one node on PostgreSQL (no Redis), then one
# and two cluster nodes (PostgreSQL + Redis); fixed load and closed loop, 1,000 clients. The
# CPU of PostgreSQL and Redis is printed beside each case. Not part of `make test`.
source "$(dirname "$0")/bench-setup.sh"
source "$(dirname "$0")/postgres.sh"
chmod 755 "$work"  # the postgres user reaches its data directory inside

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 did not open" >&2; exit 1; }

# run LABEL NODES(0=one node on SQLite, pg=one node on PostgreSQL, N=N cluster nodes) LOAD-ARGS...
run() {
  local label=$1 nodes=$2; shift 2
  local pids=() urls=() redis_pid=""
  rm -rf "$work"/*
  if [ "$nodes" = 0 ]; then
    env "${LIMITS[@]}" "${EXTRA[@]}" LEPTOS_SITE_ADDR=127.0.0.1:18200 HUBBUB_DATABASE="$work/bench.db" target/release/hubbub >/dev/null &
    pids+=("$!"); urls+=(--url ws://127.0.0.1:18200/ws); wait_port 18200
  elif [ "$nodes" = pg ]; then
    local database
    database=$(start_postgres "$work/pg" 18298)
    env "${LIMITS[@]}" "${EXTRA[@]}" LEPTOS_SITE_ADDR=127.0.0.1:18200 HUBBUB_DATABASE="$database" target/release/hubbub >/dev/null &
    pids+=("$!"); urls+=(--url ws://127.0.0.1:18200/ws); wait_port 18200
  else
    # A fresh database for every case; its CPU is reported beside Redis's.
    local database
    database=$(start_postgres "$work/pg" 18298)
    redis-server --port 18299 --bind 127.0.0.1 --save "" --appendonly yes --dir "$work" >/dev/null &
    redis_pid=$!; wait_port 18299
    for i in $(seq "$nodes"); do
      env "${LIMITS[@]}" "${EXTRA[@]}" LEPTOS_SITE_ADDR=127.0.0.1:1820$i HUBBUB_REDIS_URL=redis://127.0.0.1:18299/ \
        HUBBUB_DATABASE="$database" target/release/hubbub >/dev/null &
      pids+=("$!"); urls+=(--url "ws://127.0.0.1:1820$i/ws"); wait_port "1820$i"
    done
  fi
  echo "### $label"
  local pid_args=()
  for p in "${pids[@]}"; do pid_args+=(--pid "$p"); done
  "$load" "${urls[@]}" "${pid_args[@]}" --label "$label" "$@" || echo "($label failed)"
  [ -n "$redis_pid" ] && echo "  redis: cpu_s=$(awk '{printf "%.2f", ($14+$15)/100}' /proc/$redis_pid/stat)"
  [ -f "$work/pg/data/postmaster.pid" ] && echo "  postgres: cpu_s=$(postgres_cpu "$work/pg")"
  kill "${pids[@]}" $redis_pid 2>/dev/null || true; wait 2>/dev/null || true
  stop_postgres "$work/pg"
  echo
}

FIXED=(--clients 1000 --senders 10 --rate 10 --seconds 20)
CLOSED=(--clients 1000 --senders 10 --closed-loop --seconds 20)
# Few readers, many senders: what bounds it is storing, not fanning out.
STORE=(--clients 50 --senders 50 --closed-loop --seconds 20)
EXTRA=()
if [ -z "${ONLY_STORING:-}" ]; then
run "1 node on SQLite, fixed load" 0 "${FIXED[@]}"
run "1 node on PostgreSQL, fixed load" pg "${FIXED[@]}"
run "1 cluster node, fixed load" 1 "${FIXED[@]}"
run "2 cluster nodes, fixed load" 2 "${FIXED[@]}"
run "1 node on SQLite, closed loop" 0 "${CLOSED[@]}"
run "1 node on PostgreSQL, closed loop" pg "${CLOSED[@]}"
run "1 cluster node, closed loop" 1 "${CLOSED[@]}"
run "2 cluster nodes, closed loop" 2 "${CLOSED[@]}"
fi
run "1 node on SQLite, storing" 0 "${STORE[@]}"
run "1 node on PostgreSQL, storing" pg "${STORE[@]}"
run "1 cluster node, storing" 1 "${STORE[@]}"
run "2 cluster nodes, storing" 2 "${STORE[@]}"
