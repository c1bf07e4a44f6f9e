#!/usr/bin/env bash
# How many bytes Leptos itself costs a first visit: builds scripts/wasm-floor (a router, a
# title, a history list from a server function, a join form) the way cargo-leptos builds
# hubbub's browser code (wasm-release profile, erase_components, wasm-bindgen, wasm-opt -Oz),
# then prints its sizes beside hubbub's last release build, brotli 11 as the server sends them.
#
#   scripts/wasm-floor.sh        # after `make build`; not part of `make test`
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
floor=scripts/wasm-floor
out=target/wasm-floor
mkdir -p "$out/pkg"
cp Cargo.lock "$floor/Cargo.lock" # hubbub's versions (cargo drops what the floor does not use)
trap 'rm -f "$floor/Cargo.lock"' EXIT
RUSTFLAGS="--cfg erase_components" CARGO_TARGET_DIR="$out" \
  cargo build --manifest-path "$floor/Cargo.toml" --release --target wasm32-unknown-unknown
wasm-bindgen --target web --no-typescript --out-dir "$out/pkg" --out-name floor \
  "$out/wasm32-unknown-unknown/release/wasm_floor.wasm"
wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
  "$out/pkg/floor_bg.wasm" -o "$out/pkg/floor_bg.wasm"
node - "$out/pkg" target/site/pkg <<'JS'
const { brotliCompressSync, constants } = require("node:zlib");
const fs = require("node:fs"), path = require("node:path");
const br = (b) => brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
for (const dir of process.argv.slice(2)) {
  if (!fs.existsSync(dir)) continue;
  let total = 0;
  for (const name of fs.readdirSync(dir).filter((n) => /\.(wasm|js|css)$/.test(n)).sort()) {
    const bytes = fs.readFileSync(path.join(dir, name));
    total += br(bytes);
    console.log(`${dir}/${name}: ${bytes.length} bytes, brotli ${br(bytes)}`);
  }
  console.log(`${dir}: ${total} bytes brotli in all\n`);
}
JS
