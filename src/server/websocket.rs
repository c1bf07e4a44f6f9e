//! The WebSocket opening handshake, done here over hyper's upgrade rather than with axum's
//! `WebSocketUpgrade`, so each connection owns tungstenite's stream directly.
//!
//! Why: axum's wrapper offers no access to tungstenite's frames. A connection's write buffer
//! keeps the capacity of the largest batch it ever wrote, and the largest is usually the
//! `welcome` (history plus who is online): several kilobytes held by every idle connection
//! for as long as it lives. With the stream in hand, the writer sends frames above
//! [`FRAGMENT_BYTES`] as a series of fragments (RFC 6455 §5.4, reassembled by every client)
//! and the buffer never grows past one fragment for an idle connection.

use super::listener::{Io, Progress, Tracked};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// An accepted WebSocket, as the connection drives it: the TCP socket itself, taken back from
/// hyper after the handshake, with its progress record.
pub type Socket = WebSocketStream<Tracked<TcpStream>>;

/// Text frames longer than this are written as fragments of at most this many bytes.
pub const FRAGMENT_BYTES: usize = 1024;

/// A valid upgrade request, not yet answered.
pub struct Upgrade {
    /// The request's headers, for the checks made before accepting (Origin, limits).
    pub headers: HeaderMap,
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl Upgrade {
    /// Checks that `request` asks for a WebSocket (RFC 6455 §4.2.1). A request that does not
    /// gets a plain-text 4xx saying what is missing, like any other bad HTTP request.
    pub fn from_request(mut request: Request) -> Result<Self, NotWebSocket> {
        let refuse = |status: StatusCode, why: &'static str| NotWebSocket { status, why };
        let headers = request.headers();
        if request.method() != Method::GET {
            return Err(refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "WebSocket upgrades use GET\n",
            ));
        }
        if !has_token(headers, header::CONNECTION, "upgrade")
            || !has_token(headers, header::UPGRADE, "websocket")
        {
            return Err(refuse(
                StatusCode::UPGRADE_REQUIRED,
                "this endpoint speaks WebSocket only\n",
            ));
        }
        if headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "unsupported Sec-WebSocket-Version (13 is supported)\n",
            ));
        }
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "missing Sec-WebSocket-Key\n",
            ));
        };
        let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
            // Only over HTTP/2 or through a layer that consumed the upgrade.
            return Err(refuse(
                StatusCode::UPGRADE_REQUIRED,
                "this connection cannot be upgraded (WebSocket needs HTTP/1.1)\n",
            ));
        };
        let headers = std::mem::take(request.headers_mut());
        Ok(Upgrade {
            headers,
            key,
            on_upgrade,
        })
    }

    /// Answers 101 and runs `serve` on the socket once hyper hands the connection over.
    /// `send_buffer` (bytes, 0 for the kernel's default) caps the socket's `SO_SNDBUF`.
    pub fn accept<F, Fut>(self, config: WebSocketConfig, send_buffer: usize, serve: F) -> Response
    where
        F: FnOnce(Socket, Progress) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => return tracing::debug!("WebSocket upgrade failed: {e}"),
            };
            // The TCP socket itself rather than hyper's boxed wrapper: no indirection on
            // every read and write, and its send buffer can be set.
            let parts = match upgraded.downcast::<Io>() {
                Ok(parts) => parts,
                Err(_) => return tracing::error!("WebSocket upgrade on an unexpected socket type"),
            };
            let tcp = parts.io.into_inner();
            // Bounded whatever the kernel's autotuning would allow, so a reader that stopped
            // reading blocks our writes (and is dropped as a slow consumer) after a known
            // number of bytes. Page loads keep the autotuned buffer.
            if send_buffer > 0
                && let Err(e) =
                    socket2::SockRef::from(tcp.get_ref()).set_send_buffer_size(send_buffer)
            {
                tracing::debug!("SO_SNDBUF: {e}");
            }
            let progress = tcp.progress();
            // Bytes the client sent right behind its request (its first frame) are not lost.
            let socket = WebSocketStream::from_partially_read(
                tcp,
                parts.read_buf.to_vec(),
                Role::Server,
                Some(config),
            )
            .await;
            // A task of its own rather than `.await` here: this task's state (the pending
            // upgrade, the socket while it is built) is freed now instead of sitting beside
            // the connection's for its whole life.
            tokio::spawn(serve(socket, progress));
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(axum::body::Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

/// Why a request to the WebSocket endpoint cannot be upgraded; answered as plain text.
pub struct NotWebSocket {
    status: StatusCode,
    why: &'static str,
}

impl IntoResponse for NotWebSocket {
    fn into_response(self) -> Response {
        (self.status, self.why).into_response()
    }
}

/// Whether a comma-separated header (`Connection: keep-alive, Upgrade`) lists `token`.
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}
