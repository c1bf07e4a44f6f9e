//! The server: one axum router serving the Leptos pages and assets, the `/ws` hub,
//! `/healthz` and `/metrics`. Compiled only with the `ssr` feature.
//!
//! - [`config`]: settings from `Leptos.toml` and the environment.
//! - [`accounts`]: who may use a name: sign-up, sessions, passwords, tokens.
//! - [`hub`]: what connections talk to: joins, messages, history, one node or a cluster.
//! - [`rooms`]: rooms, who is in them, and the fan-out of frames to their connections.
//! - [`connection`]: one WebSocket's lifecycle (reader, writer, limits, heartbeats).
//! - [`storage`]: the storage seam: message history in SQLite or PostgreSQL, rules written once.
//! - [`limits`]: token bucket and connection caps.
//! - [`listener`]: the HTTP accept loop (header timeout, connection caps, stalled requests).
//! - [`headers`]: security headers (the pages' nonce CSP, `nosniff`).
//! - [`metrics`]: Prometheus counters.
//! - [`shutdown`]: SIGTERM / Ctrl-C.
//!
//! [`serve`] takes an already-bound listener, so tests run a real server on `127.0.0.1:0`.

pub mod accounts;
pub mod assets;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod deflate;
pub mod files;
pub mod headers;
pub mod hub;
pub mod limits;
pub mod listener;
pub mod mailbox;
pub mod metrics;
pub mod previews;
pub mod rooms;
pub mod shutdown;
pub mod storage;
pub mod websocket;
pub mod wire;

use crate::app::{App, shell};
use axum::Router;
use axum::extract::{ConnectInfo, FromRef, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use config::Config;
use hub::Hub;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use limits::{ConnectionLimits, Refusal};
use metrics::Metrics;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tower_http::compression::{CompressionLayer, CompressionLevel};

/// Tungstenite reads into a buffer of this size, allocated and zeroed up front for every
/// connection (its default is 128 KiB). Chat frames are a few hundred bytes; a larger frame
/// is read in several goes and grows the buffer as needed.
const READ_BUFFER: usize = 512;
/// Tungstenite writes only what it would answer by itself (dropped: see `websocket`), so
/// its write buffer stays as small as it can be.
const WRITE_BUFFER: usize = 0;

/// The largest HTTP request body accepted (server-function arguments are a few hundred bytes).
const MAX_REQUEST_BODY: usize = 64 * 1024;

/// Shared by every request handler.
#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub hub: Arc<Hub>,
    limits: Arc<ConnectionLimits>,
    shutdown: watch::Receiver<bool>,
}

impl FromRef<AppState> for Arc<Hub> {
    fn from_ref(state: &AppState) -> Self {
        state.hub.clone()
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Hub(#[from] hub::HubError),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
    #[error("[hub] settings: {0}")]
    Config(String),
}

/// Serves until `shutdown` resolves, then closes every WebSocket with 1001 and waits (up to
/// the configured grace period) for them to finish.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.hub.check().map_err(ServerError::Config)?;
    let metrics = Arc::new(Metrics::default());
    let hub_config = Arc::new(config.hub);
    let hub = Hub::open(hub_config.clone(), metrics.clone()).await?;
    let hub = Arc::new(hub);
    files::sweep_every_hour(hub.clone());
    let (stop, stopped) = watch::channel(false);
    let state = AppState {
        leptos_options: config.site.clone(),
        hub: hub.clone(),
        limits: ConnectionLimits::new(
            hub_config.max_connections,
            hub_config.max_connections_per_ip,
        ),
        shutdown: stopped,
    };
    let routes = routes();
    let context_hub = hub.clone();
    // Every page render, routed or not found, gets the hub and its security policy.
    let page_context = move || {
        provide_context(context_hub.clone());
        headers::provide_page_policy();
    };
    let app = Router::new()
        .route("/ws", get(upgrade))
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .leptos_routes_with_context(&state, routes, page_context.clone(), {
            let options = config.site.clone();
            move || shell(options.clone())
        })
        // The WASM, JS and CSS: hashed, precompressed and cached (see `assets`).
        .merge(assets::routes(&config.site))
        // The files of public/ are gzipped for clients that accept it, at the fastest level.
        // Pages are left alone, so their streamed HTML is not held back by a compressor.
        .fallback(
            leptos_axum::file_and_error_handler_with_context::<AppState, _>(page_context, shell)
                .layer(CompressionLayer::new().quality(CompressionLevel::Fastest)),
        )
        // Nothing we serve takes a large body (server functions read theirs whole, with no
        // limit of their own): 413 beyond this.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_REQUEST_BODY,
        ))
        // Uploads count their own bytes against `max-upload-bytes` (see `files`).
        .merge(
            Router::new()
                .route("/api/files", post(files::upload))
                .route("/files/{id}", get(files::download))
                .route("/files/{id}/thumb", get(files::download_thumbnail)),
        )
        .layer(axum::middleware::from_fn(refuse_cross_site_posts))
        .layer(axum::middleware::map_response(headers::secure))
        .with_state(state);

    let http = listener::HttpSettings {
        header_timeout: Duration::from_millis(hub_config.http_header_timeout_ms),
        max_connections: hub_config.max_http_connections,
        max_connections_per_ip: hub_config.max_http_connections_per_ip,
        trusted_proxies: hub_config.trusted_proxies.clone(),
        grace: Duration::from_millis(hub_config.shutdown_grace_ms),
    };
    listener::serve(listener, app, http, async move {
        shutdown.await;
        tracing::info!("shutting down: closing WebSocket connections");
        let _ = stop.send(true);
    })
    .await;

    // HTTP has stopped accepting. Upgraded WebSockets are not tracked by axum: each writer
    // saw the stop signal and is sending 1001; wait for them to finish.
    let grace = Duration::from_millis(hub_config.shutdown_grace_ms);
    let deadline = Instant::now() + grace;
    while metrics
        .connections_open
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Finish in-flight work: with the connections gone, nothing new is accepted; wait for
    // what was to be stored (and, in a cluster, announced). Exiting before that could cut a
    // message the server had accepted off half-way through its transaction.
    if tokio::time::timeout(grace, hub.flush()).await.is_err() {
        tracing::warn!("shutdown: messages were still being stored or announced after {grace:?}");
    }
    Ok(())
}

/// The app's routes, found once per process by rendering it with resources held back.
///
/// Leptos holds them back with a process-global flag, and a resource whose future is first
/// polled while it is set waits for ever (leptos_server 0.8.8 `resource.rs`,
/// `IS_SUPPRESSING_RESOURCE_LOAD`; leptos-rs/leptos#4773): a page requested from one server
/// while another server in the same process was starting never got an answer. The routes
/// never change, so later servers (tests, an embedder running two) reuse the first list, and
/// no render can overlap a generation: every caller waits here until the one generation ends.
fn routes() -> Vec<leptos_axum::AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<leptos_axum::AxumRouteListing>> =
        std::sync::OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// `GET /ws`: refuses cross-site and over-limit upgrades before upgrading.
async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let ws = match websocket::Upgrade::from_request(request) {
        Ok(ws) => ws,
        Err(refused) => return refused.into_response(),
    };
    let headers = &ws.headers;
    let hub = &state.hub;
    let metrics = &hub.metrics;
    let count = |c: &std::sync::atomic::AtomicU64| {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    if !origin_allowed(headers, &hub.config.allowed_origins) {
        count(&metrics.rejected_upgrades_origin);
        return (
            StatusCode::FORBIDDEN,
            "cross-origin WebSocket connections are not allowed\n",
        )
            .into_response();
    }
    if *state.shutdown.borrow() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down\n",
        )
            .into_response();
    }
    let client = client_ip(peer.ip(), headers, &hub.config.trusted_proxies);
    let slot = match state.limits.try_acquire(client) {
        Ok(slot) => slot,
        Err(Refusal::Full) => {
            count(&metrics.rejected_upgrades_capacity);
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "10")],
                "the server is at its connection limit\n",
            )
                .into_response();
        }
        Err(Refusal::PerIp) => {
            count(&metrics.rejected_upgrades_per_ip);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "10")],
                "too many connections from your address\n",
            )
                .into_response();
        }
    };
    // Who is connecting, before any frame: a bearer token (bots) must be valid; a stale
    // session cookie only means the browser is not signed in.
    let (cookie, bearer) = accounts::secrets(headers);
    use storage::SecretKind::{Api, Browser, Join};
    let secret = match (&bearer, &cookie) {
        (Some(token), _) => Some((token.as_str(), &[Api, Join][..])),
        (None, Some(cookie)) => Some((cookie.as_str(), &[Browser][..])),
        (None, None) => None,
    };
    let signed_in = match secret {
        None => None,
        Some((secret, kinds)) => match hub.accounts.by_secret(secret, kinds).await {
            Ok(found) => found.map(|account| connection::SignedIn {
                account,
                secret: secret.to_string(),
                kinds,
            }),
            Err(e) => {
                tracing::error!("{e}");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "accounts cannot be checked right now; try again\n",
                )
                    .into_response();
            }
        },
    };
    if bearer.is_some() && signed_in.is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            "this API token is not valid (unknown, revoked, or its account is banned)\n",
        )
            .into_response();
    }
    let peer = connection::Peer {
        ip: client,
        signed_in,
        deflate: false,
    };
    let hub = state.hub.clone();
    // The connection enforces `max_frame_bytes` itself, after reading the whole frame, so it
    // can answer with a clean 1009. Tungstenite's own cap is only a backstop against memory
    // abuse: hitting it means abandoning a half-read frame, which can reset the connection.
    let max = hub.config.max_frame_bytes.saturating_mul(4);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_frame_size(Some(max))
        .max_message_size(Some(max));
    let send_buffer = hub.config.socket_send_buffer;
    let deflate = hub.config.permessage_deflate;
    ws.accept(
        config,
        send_buffer,
        deflate,
        move |socket, writer, progress, deflate| {
            let peer = connection::Peer { deflate, ..peer };
            connection::serve(socket, writer, progress, hub, slot, state.shutdown, peer)
        },
    )
}

/// Cross-site request forgery defence for the server functions (sign-up, sign-in, sign-out,
/// password): a `POST` another site's page makes the browser send is refused. Browsers say
/// where a request comes from in `Sec-Fetch-Site`; older ones only in `Origin`, which must
/// then be this site. (The session cookie is also `SameSite=Lax`, which browsers do not send
/// on cross-site `POST`s.) Clients that are not browsers send neither header.
async fn refuse_cross_site_posts(request: Request, next: axum::middleware::Next) -> Response {
    if request.method() == axum::http::Method::POST && request.uri().path().starts_with("/api/") {
        let headers = request.headers();
        let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        // Neither header at all is refused too: every browser that could be led to post here
        // sends one of them, and clients that are not browsers can send `Origin` themselves.
        let same_site = match fetch_site {
            Some(site) => site == "same-origin" || site == "none",
            None => headers.contains_key(header::ORIGIN) && origin_allowed(headers, &[]),
        };
        if !same_site {
            return (
                StatusCode::FORBIDDEN,
                "cross-site requests to the server functions are refused\n",
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// Cross-site WebSocket hijacking defence. Browsers always send `Origin`; it must be this site
/// (same host and port as the request) or on the allow-list. Non-browser clients send none.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// The address a connection is counted against. From a trusted proxy, the nearest address in
/// `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends the peer it saw,
/// so the entries left of the last trusted hop could have been written by the client).
/// Otherwise, and when the header is missing or unreadable, the peer itself.
/// Addresses are compared canonically: behind a dual-stack listener, an IPv4 proxy arrives
/// as `::ffff:a.b.c.d`.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|t| t.to_canonical() == *ip);
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|hop| hop.trim().parse().map(|ip: IpAddr| ip.to_canonical()))
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    hops.into_iter()
        .rev()
        .find(|hop| !is_trusted(hop))
        .unwrap_or(peer)
}

async fn healthz(State(state): State<AppState>) -> Response {
    let open = state
        .hub
        .metrics
        .connections_open
        .load(std::sync::atomic::Ordering::Relaxed);
    // A cluster node cut off from Redis keeps its clients but cannot reach anyone else's.
    if !state.hub.is_healthy() {
        let body = serde_json::json!({
            "status": "degraded",
            "connections": open,
            "problem": "Redis is unreachable: local clients stay connected; sending waits for it",
        });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    axum::Json(serde_json::json!({ "status": "ok", "connections": open })).into_response()
}

async fn prometheus(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.hub.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::{client_ip, origin_allowed};
    use axum::http::{HeaderMap, HeaderValue, header};
    use std::net::IpAddr;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn origins() {
        let allow = vec!["https://chat.example.com".to_string()];
        assert!(origin_allowed(&headers(None, "a:1"), &allow));
        assert!(origin_allowed(&headers(Some("http://a:1"), "a:1"), &allow));
        assert!(origin_allowed(
            &headers(Some("https://chat.example.com"), "b"),
            &allow
        ));
        assert!(!origin_allowed(
            &headers(Some("http://evil.io"), "a:1"),
            &allow
        ));
        assert!(!origin_allowed(&headers(Some("http://a:2"), "a:1"), &allow));
        assert!(!origin_allowed(&headers(Some("null"), "a:1"), &allow));
    }

    #[test]
    fn clients_behind_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxy = ip("10.0.0.1");
        let trusted = [proxy, ip("10.0.0.2")];
        let forwarded = |xff: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
            h
        };
        // The client's own entry, as the proxy appended it.
        let h = forwarded("203.0.113.7");
        assert_eq!(client_ip(proxy, &h, &trusted), ip("203.0.113.7"));
        // A forged entry on the left is not believed; chained trusted proxies are skipped.
        let h = forwarded("1.2.3.4, 203.0.113.7, 10.0.0.2");
        assert_eq!(client_ip(proxy, &h, &trusted), ip("203.0.113.7"));
        // From an untrusted peer the header means nothing.
        let stranger = ip("198.51.100.9");
        assert_eq!(client_ip(stranger, &h, &trusted), stranger);
        // Missing or garbled: the proxy itself.
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
        assert_eq!(client_ip(proxy, &forwarded("nonsense"), &trusted), proxy);
    }
}
