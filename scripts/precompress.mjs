// Writes a brotli (.br) and a gzip (.gz) copy of each built file the browser downloads (the
// WASM, its JavaScript and the CSS), at the highest levels: the server sends them to browsers
// that accept them (src/server/assets.rs), so no request pays for compression and every
// visitor gets the smallest file. Copies of files that are gone are removed.
//
//   node scripts/precompress.mjs target/site/pkg
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node scripts/precompress.mjs <pkg directory>");
  process.exit(2);
}

const served = /\.(wasm|js|css)$/;
for (const name of readdirSync(dir)) {
  const file = path.join(dir, name);
  const copy = name.match(/^(.*)\.(br|gz)$/);
  if (copy) {
    if (!existsSync(path.join(dir, copy[1]))) rmSync(file);
    continue;
  }
  if (!served.test(name)) continue;
  const source = statSync(file);
  const fresh = (out) => existsSync(out) && statSync(out).mtimeMs >= source.mtimeMs;
  const bytes = readFileSync(file);
  const br = `${file}.br`;
  if (!fresh(br)) {
    writeFileSync(
      br,
      brotliCompressSync(bytes, {
        params: {
          [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
          [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
          [constants.BROTLI_PARAM_MODE]: name.endsWith(".wasm")
            ? constants.BROTLI_MODE_GENERIC
            : constants.BROTLI_MODE_TEXT,
        },
      }),
    );
  }
  const gz = `${file}.gz`;
  if (!fresh(gz)) writeFileSync(gz, gzipSync(bytes, { level: 9 }));
  console.log(
    `${name}: ${bytes.length} bytes, brotli ${statSync(br).size}, gzip ${statSync(gz).size}`,
  );
}
