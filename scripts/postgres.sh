#!/usr/bin/env bash
# Sourced by the cluster and benchmark scripts: a throw-away PostgreSQL in a scratch directory
# (Debian's package, as scripts/install.sh installs it), run as `postgres` when we are root.
#
#   source scripts/postgres.sh
#   url=$(start_postgres "$work/pg" 6391)    # prints postgres://postgres@127.0.0.1:6391/hubbub
#   ...
#   stop_postgres "$work/pg"

pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1; }

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  local dir=$1 port=$2 bin
  bin=$(pg_bin)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_postgres "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >/dev/null
  as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
  as_postgres "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres hubbub
  echo "postgres://postgres@127.0.0.1:$port/hubbub"
}

# CPU seconds used so far by the server in DIR: its postmaster and every process it started
# (the connections' backends, alive for as long as the pool keeps them).
postgres_cpu() {
  local dir=$1 pm total=0
  pm=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null) || { echo 0; return; }
  for p in $pm $(pgrep -P "$pm"); do
    total=$(awk -v c="$total" '{printf "%.2f", c + ($14+$15)/100}' "/proc/$p/stat" 2>/dev/null || echo "$total")
  done
  echo "$total"
}

stop_postgres() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] && as_postgres "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  return 0
}
