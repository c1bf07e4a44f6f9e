//! The WebSocket opening handshake, done here over hyper's upgrade rather than with axum's
//! `WebSocketUpgrade`, so each connection owns its TCP socket directly, split in two:
//!
//! - the **reading** half goes to tungstenite, which parses the client's frames;
//! - the **writing** half goes to the connection's writer, which writes frames encoded once
//!   per broadcast (`wire`), the same bytes for every recipient, with no per-connection
//!   write buffer (tungstenite's keeps the capacity of the largest batch it ever wrote, often
//!   the `welcome`, for the connection's whole life) and no per-recipient copy.
//!
//! Tungstenite would answer a client's ping and close by itself, through the stream it
//! reads; here its writes go nowhere ([`ReadSide`]) and the reader asks the writer to answer.

use super::deflate::{self, Inflater};
use super::listener::{Io, Progress, Tracked};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// An accepted WebSocket's reading side, as the connection's reader drives it: the TCP
/// socket's reading half, taken back from hyper after the handshake.
pub type Socket = WebSocketStream<ReadSide>;

/// An accepted WebSocket's writing side: the TCP socket's writing half, written by the
/// connection's writer only (see `wire`).
pub type SocketWriter = Tracked<OwnedWriteHalf>;

/// The reading half as tungstenite sees it: whatever tungstenite writes by itself (the
/// answer to a ping, the reply to a close) is dropped, because the writer owns the socket's
/// sending side; the reader answers those frames through the writer instead. With
/// permessage-deflate, compressed messages are inflated on the way ([`Inflater`]).
pub struct ReadSide {
    socket: Tracked<OwnedReadHalf>,
    /// With permessage-deflate: the inflater.
    inflate: Option<Box<Inflater>>,
}

impl AsyncRead for ReadSide {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let Some(inflater) = &mut this.inflate else {
            return Pin::new(&mut this.socket).poll_read(cx, buf);
        };
        loop {
            let ready = inflater.ready();
            if !ready.is_empty() {
                let n = ready.len().min(buf.remaining());
                buf.put_slice(&ready[..n]);
                inflater.consume(n);
                return Poll::Ready(Ok(()));
            }
            // Frames already read but held back (a frame's worth was waiting) come first.
            inflater.process();
            if !inflater.ready().is_empty() {
                continue;
            }
            // More from the socket, into the inflater's input (at most 8 KiB at a time).
            let input = inflater.spare();
            let start = input.len();
            input.resize(start + (input.capacity() - start).min(8192), 0);
            let mut read = ReadBuf::new(&mut input[start..]);
            let polled = Pin::new(&mut this.socket).poll_read(cx, &mut read);
            let got = read.filled().len();
            input.truncate(start + got);
            match polled {
                Poll::Ready(Ok(())) if got == 0 => return Poll::Ready(Ok(())), // closed
                Poll::Ready(Ok(())) => inflater.process(),
                other => return other,
            }
        }
    }
}

impl AsyncWrite for ReadSide {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A valid upgrade request, not yet answered.
pub struct Upgrade {
    /// The request's headers, for the checks made before accepting (Origin, limits).
    pub headers: HeaderMap,
    key: HeaderValue,
    on_upgrade: OnUpgrade,
    /// The answer to the client's permessage-deflate offer, if it made one this server takes.
    deflate: Option<HeaderValue>,
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
            deflate: deflate::negotiate(&headers),
            headers,
            key,
            on_upgrade,
        })
    }

    /// Answers 101 and runs `serve` on the socket once hyper hands the connection over.
    /// `send_buffer` (bytes, 0 for the kernel's default) caps the socket's `SO_SNDBUF`.
    /// permessage-deflate is taken up if the client offered it and `deflate` allows it;
    /// `serve` is told whether it was.
    pub fn accept<F, Fut>(
        self,
        config: WebSocketConfig,
        send_buffer: usize,
        deflate: bool,
        serve: F,
    ) -> Response
    where
        F: FnOnce(Socket, SocketWriter, Progress, bool) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        let extension = self.deflate.filter(|_| deflate);
        let compressed = extension.is_some();
        let max_frame = config.max_frame_size.unwrap_or(64 << 20);
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
            let (read, write) = tcp.into_split();
            // Bytes the client sent right behind its request (its first frame) are not lost;
            // with permessage-deflate they go through the inflater like the rest.
            let mut early = parts.read_buf.to_vec();
            let inflate = compressed.then(|| {
                let mut inflater = Box::new(Inflater::new(max_frame));
                inflater.spare().append(&mut early);
                inflater.process();
                inflater
            });
            let read = ReadSide {
                socket: read,
                inflate,
            };
            let socket =
                WebSocketStream::from_partially_read(read, early, Role::Server, Some(config)).await;
            // A task of its own rather than `.await` here: this task's state (the pending
            // upgrade, the socket while it is built) is freed now instead of sitting beside
            // the connection's for its whole life.
            tokio::spawn(serve(socket, write, progress, compressed));
        });
        let mut response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept);
        if let Some(extension) = extension {
            response = response.header(header::SEC_WEBSOCKET_EXTENSIONS, extension);
        }
        response
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
