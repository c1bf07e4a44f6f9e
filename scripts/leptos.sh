#!/usr/bin/env bash
# Runs cargo-leptos with hubbub's settings and tools:
# - the [site] settings of Leptos.toml, exported as the LEPTOS_* variables cargo-leptos reads
#   (variables already set win, as they do for the server), so they live in one file;
# - the project's wasm-opt (npm binaryen) first on PATH: Debian's binaryen 108 breaks
#   hydration of Leptos 0.8 release builds.
#
#   scripts/leptos.sh watch | build --release | serve --release | end-to-end --release
set -euo pipefail
cd "$(dirname "$0")/.."

while IFS='=' read -r key value; do
  [ -n "$key" ] || continue
  [ -n "${!key:-}" ] || export "$key=$value"
done < <(awk '
  /^\[/ { in_site = ($0 == "[site]"); next }
  in_site && /^[a-z-]+[ \t]*=/ {
    key = $0; sub(/[ \t]*=.*/, "", key)
    value = $0; sub(/^[^=]*=[ \t]*/, "", value); sub(/[ \t]+#.*$/, "", value); gsub(/"/, "", value)
    gsub(/-/, "_", key)
    print "LEPTOS_" toupper(key) "=" value
  }' Leptos.toml)

export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
exec cargo leptos "$@"
