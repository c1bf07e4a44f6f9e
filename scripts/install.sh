#!/usr/bin/env bash
# Installs everything hubbub needs to build, run and test, on Debian with Rust and Node.
# Idempotent and quick when everything is there: each step checks before it installs.
#
#   scripts/install.sh            # everything (browser and Redis included, for the tests)
#   HUBBUB_SKIP_APT=1 scripts/install.sh   # skip the Debian packages (no root)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

# --- Rust: the WASM target, cargo-leptos, and the wasm-bindgen CLI matching Cargo.lock ---
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

CARGO_LEPTOS_VERSION=0.3.10   # 0.3.11+ needs rustc 1.96
if [ "$(cargo leptos --version 2>/dev/null | awk '{print $2}')" != "$CARGO_LEPTOS_VERSION" ]; then
  say "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 13 minutes on 2 cores, once)"
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked
fi

# cargo-leptos calls `wasm-bindgen` from PATH; it must be exactly the library's version.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 2 minutes, once)"
  # Not --locked: its lock file names a crate version missing from the registry.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

# --- Debian packages: Chromium for the end-to-end tests, Redis and nginx for the cluster tests,
# PostgreSQL for the storage tests ---
if [ -z "${HUBBUB_SKIP_APT:-}" ]; then
  missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v redis-server >/dev/null || missing+=(redis-server)
  [ -x /usr/sbin/nginx ] || missing+=(nginx)  # the tested deploy/nginx.conf (tests/cluster.rs)
  # PostgreSQL: the tests start throw-away servers of their own (tests/common/mod.rs).
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# --- npm: wasm-opt (binaryen) for release builds, Playwright for the browser tests ---
# Playwright never downloads its own browser here (that fails offline): the tests use
# Debian's /usr/bin/chromium, installed above.
npm_install() {
  local dir=$1
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    say "installing npm packages in $dir"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  fi
}
npm_install tools
npm_install end2end

# The emoji font, copied into public/ (which cargo-leptos serves) with its CSS rewritten:
# only woff2, a family name of our own, and the visitor's own emoji font preferred.
emoji_src=tools/node_modules/@fontsource/noto-color-emoji
emoji_dst=public/fonts/emoji
if [ ! -f "$emoji_dst/emoji.css" ] || [ "$emoji_src/package.json" -nt "$emoji_dst/emoji.css" ]; then
  say "copying the emoji web font to $emoji_dst"
  mkdir -p "$emoji_dst"
  cp "$emoji_src"/files/*-400-normal.woff2 "$emoji_dst"/
  sed -e "s/font-family: 'Noto Color Emoji'/font-family: 'hubbub emoji'/" \
      -e "s#src: url(./files/\([^)]*\.woff2\)) format('woff2'), url([^)]*) format('woff');#src: local('Noto Color Emoji'), local('Apple Color Emoji'), local('Segoe UI Emoji'), url(/fonts/emoji/\1) format('woff2');#" \
      "$emoji_src/index.css" > "$emoji_dst/emoji.css"
fi

say "everything is installed"
