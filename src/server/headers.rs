//! Security headers on every response: what the browser may do with our pages and files.
//!
//! - **Pages** get a `Content-Security-Policy` whose `script-src` is the page's own nonce
//!   (leptos_axum makes a fresh one for every render and Leptos puts it on the hydration
//!   script) plus `'self'` for the WASM bundle's JavaScript, so a script injected into the
//!   HTML does not run even if something slipped past escaping. `'wasm-unsafe-eval'` lets the
//!   page compile its WASM; nothing may frame the page (`frame-ancestors 'none'`).
//! - **Everything else** (static files, JSON, metrics) gets a policy that allows nothing, in
//!   case a browser is ever led to render one as a document.
//! - **Pages** are `no-cache`: each names the current release's files (see `assets`).
//! - **Every response:** `X-Content-Type-Options: nosniff` (a file is only ever what its
//!   `Content-Type` says), `Referrer-Policy: same-origin` (room names in our URLs stay here)
//!   and `X-Frame-Options: DENY` for browsers without `frame-ancestors`.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use leptos::prelude::use_context;
use leptos_axum::ResponseOptions;

/// Under `cargo leptos watch` (`make dev`), the page also opens cargo-leptos's live-reload
/// socket on its own port.
fn reload_source() -> String {
    match (
        std::env::var("LEPTOS_WATCH"),
        std::env::var("LEPTOS_RELOAD_PORT"),
    ) {
        (Ok(_), Ok(port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            format!(" ws://localhost:{port} ws://127.0.0.1:{port}")
        }
        _ => String::new(),
    }
}

/// The policy for a page whose scripts carry `nonce`. Pictures come from Gravatar; the
/// socket (`connect-src 'self'`) is this site's `/ws`. Style *attributes* are allowed (an
/// avatar's colour is a `style="--hue: …"` custom property), style elements and sheets only
/// from this site.
pub fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' https://www.gravatar.com; font-src 'self'; \
         connect-src 'self'{}; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
        reload_source()
    )
}

/// For responses that are not pages.
const NOTHING_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// Called while a page renders (from the Leptos context of every route and of the fallback):
/// sets the page's policy with this render's nonce.
pub fn provide_page_policy() {
    let (Some(nonce), Some(response)) =
        (leptos::nonce::use_nonce(), use_context::<ResponseOptions>())
    else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(&page_policy(&nonce)) {
        response.insert_header(header::CONTENT_SECURITY_POLICY, value);
    }
    // A page names the release's hashed files (see `assets`): always ask whether it changed.
    response.insert_header(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

/// Adds the headers every response carries (a `map_response` layer over the whole router).
pub async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(headers, header::CONTENT_SECURITY_POLICY, NOTHING_POLICY);
    }
    response
}
