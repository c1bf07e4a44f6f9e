//! hubbub: a self-hosted real-time group chat in one binary.
//!
//! A map of the crate, by what each part is for:
//!
//! - [`protocol`]: the wire format of `/ws` (serde types and validation rules), compiled into
//!   both the server and the browser so they cannot drift apart.
//! - [`app`]: the page shell, routes and chat page (Leptos, rendered on the server and
//!   hydrated in the browser).
//! - [`auth`]: signing up, in and out (server functions; the session is an HttpOnly cookie).
//! - [`components`]: the UI pieces, one per file.
//! - [`browser`]: browser APIs (resize observers) with do-nothing twins for the server build.
//! - [`client`]: the browser's chat state and its WebSocket task (reconnect, resume, outbox).
//! - [`emoji`]: `:shortcode:` to emoji; [`text`]: mentions and emoji in a run of text;
//!   [`markdown`]: the formatting subset, parsed into a tree the components draw.
//! - `server` (feature `ssr` only): configuration, the hub, connections, storage, limits,
//!   metrics and shutdown. It never reaches the WASM bundle.

// Leptos views are deeply nested types; the default limit (128) is too low for the chat page.
#![recursion_limit = "256"]

pub mod app;
pub mod auth;
pub mod browser;
pub mod client;
pub mod components;
pub mod emoji;
pub mod markdown;
pub mod protocol;
#[cfg(feature = "ssr")]
pub mod server;
pub mod text;

/// The browser entry point: attach the app to the server-rendered HTML.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
