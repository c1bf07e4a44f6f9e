#!/usr/bin/env bash
# The light-load cells of #15, where hubbub and seed 001 come out close, measured several
# times with loadgen-go (hubbub and seed 001 alternating) and summarised as medians, so that
# a verdict does not rest on one noisy run. Also a small room (10 clients), where each
# message's fixed cost shows: hubbub stores a message before delivering it, seed 001 stores
# nothing.
#
#   scripts/bench-light.sh [trials] [seconds-per-case]     # default 5 trials of 10 s
#
# Same ground as the other benchmarks (bench-setup.sh, bench-seeds.sh). Not part of `make test`.
trials=${1:-5}
seconds=${2:-10}
source "$(dirname "$0")/bench-setup.sh"
source "$(dirname "$0")/bench-seeds.sh"
loadgen_go
results=$work/results
: >"$results"

one() { # CASE SERVER ARGS...
  local case=$1 server=$2; shift 2
  start "$server"
  local out
  out=$("$gen" -url "$url" -protocol "$proto" -pid "$pid" -label "$server" "$@" 2>&1) || true
  stop
  echo "### $case / $server"
  echo "$out"
  echo
  # One line per run: case, server, p50, p99, deliveries per server CPU-second.
  awk -v c="$case" -v s="$server" '
    /latency_ms/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    /server: cpu_s/ { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
    END { if ("p50" in v) printf "%s|%s|%s|%s|%s\n", c, s, v["p50"], v["p99"], v["deliveries_per_cpu_s"] }
  ' <<<"$out" >>"$results"
}

cases=(
  "10 clients, 10 msg/s, 100 B|-clients 10 -senders 1 -rate 10 -size 100"
  "1000 clients, 10 msg/s, 100 B|-clients 1000 -senders 10 -rate 1 -size 100"
  "1000 clients, 100 msg/s, 100 B|-clients 1000 -senders 10 -rate 10 -size 100"
  "1000 clients, 10 msg/s, 1.9 KB|-clients 1000 -senders 10 -rate 1 -size 1900"
  "1000 clients, 100 msg/s, 1.9 KB|-clients 1000 -senders 10 -rate 10 -size 1900"
)
for trial in $(seq "$trials"); do
  for entry in "${cases[@]}"; do
    name=${entry%%|*}
    read -ra args <<<"${entry#*|}"
    # Alternate which server goes first, so neither always runs on a warmer machine.
    if ((trial % 2)); then order=(hubbub seed001); else order=(seed001 hubbub); fi
    for s in "${order[@]}"; do
      echo "trial $trial: $name / $s" >&2
      one "$name" "$s" "${args[@]}" -seconds "$seconds"
    done
  done
done

echo "## medians of $trials runs (p50 ms, p99 ms, deliveries per server CPU-second)"
sort -t'|' -k1,1 -k2,2 "$results" | awk -F'|' '
  function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { key = $1 "|" $2; p50[key] = p50[key] " " $3; p99[key] = p99[key] " " $4; cpu[key] = cpu[key] " " $5
    if (!(key in seen)) { seen[key] = 1; order[++n] = key } }
  END {
    for (i = 1; i <= n; i++) {
      split(order[i], k, "|")
      printf "%-34s %-8s p50 %6.2f  p99 %6.2f  %8d per CPU-s   (p50s:%s)\n", k[1], k[2],
        median(p50[order[i]]), median(p99[order[i]]), median(cpu[order[i]]), p50[order[i]]
    }
  }'
