//! `/pkg`: the files cargo-leptos builds for the browser (the WASM, its JavaScript, the CSS).
//!
//! - **Release builds** (`make build`, `make run`): `hash-files` (Leptos.toml) makes
//!   cargo-leptos put each file's content hash in its name and list the hashes in `hash.txt`
//!   beside the binary, where Leptos reads them to write the page's `<script>` and `<link>`.
//!   A hashed name never changes content, so it is cached for a year (`immutable`: no
//!   revalidation on reload); the page itself is `no-cache` (see `headers`), so a new release
//!   is seen on the next load. `make build` also writes a brotli and a gzip copy of each file
//!   (scripts/precompress.mjs, at the highest levels), sent to browsers that accept them: no
//!   compression work per request, and smaller than any level worth spending per request.
//! - **`make dev`** (no hashes): files change under the same name, so they are `no-cache` and
//!   compressed per request (a stale `.br` beside a rebuilt file must never be sent).

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use leptos::config::LeptosOptions;
use std::path::Path;
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::services::ServeDir;

const FOREVER: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

/// The `/pkg` routes for `options`' site. `hash_files` says whether the names carry their
/// hash; `config` has already turned it off when no `hash.txt` is beside the binary.
pub fn routes<S: Clone + Send + Sync + 'static>(options: &LeptosOptions) -> Router<S> {
    let dir = Path::new(&*options.site_root).join(&*options.site_pkg_dir);
    let hashed = options.hash_files;
    let files = if hashed {
        ServeDir::new(dir).precompressed_br().precompressed_gzip()
    } else {
        ServeDir::new(dir)
    };
    let cache = move |mut response: Response| async move {
        let value = if hashed && response.status() == StatusCode::OK {
            FOREVER
        } else {
            REVALIDATE
        };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(value));
        // The body depends on `Accept-Encoding`: a shared cache must keep one per encoding
        // (ServeDir does not say so for its precompressed files).
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        response
    };
    Router::new()
        .nest_service(
            &format!("/{}", options.site_pkg_dir),
            tower::ServiceBuilder::new()
                // Leaves a response that already has a `Content-Encoding` (a precompressed
                // file) alone. The fastest level: about 17 ms of CPU per fetch of the WASM.
                .layer(CompressionLayer::new().quality(CompressionLevel::Fastest))
                .service(files),
        )
        .layer(axum::middleware::map_response(cache))
}
