#!/usr/bin/env bash
# Three hubbub nodes behind nginx, sharing one PostgreSQL and one Redis, on this machine
# (docs/deploy.md):
#
#   scripts/cluster.sh        # then open http://127.0.0.1:8080/ ; Ctrl-C stops everything
#
# Needs a release build (`make build`), postgresql, redis-server and nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x target/release/hubbub ] || scripts/leptos.sh build --release
source scripts/postgres.sh
work=$(mktemp -d)
chmod 755 "$work"
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; wait 2>/dev/null; stop_postgres "$work/pg"; rm -rf "$work"' EXIT INT TERM

# PostgreSQL keeps every message; every node uses the same database.
database=$(start_postgres "$work/pg" 6391)

# Redis: the bus between the nodes, and presence.
redis-server --port 6390 --bind 127.0.0.1 --appendonly yes --save "" --dir "$work" >"$work/redis.log" &
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6390) 2>/dev/null && break; sleep 0.1; done

for port in 3001 3002 3003; do
  LEPTOS_SITE_ADDR=127.0.0.1:$port HUBBUB_REDIS_URL=redis://127.0.0.1:6390/ HUBBUB_DATABASE="$database" \
  HUBBUB_TRUSTED_PROXIES=127.0.0.1 RUST_LOG=warn \
    target/release/hubbub &
done
sleep 1
nginx -c "$PWD/deploy/nginx.conf" -p "$work/" 2>&1 | grep -v "could not open error log" || true
echo "hubbub: 3 nodes behind nginx on http://127.0.0.1:8080/ (Ctrl-C to stop)"
wait
