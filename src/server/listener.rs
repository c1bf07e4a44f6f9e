//! The HTTP accept loop: hyper's HTTP/1.1 server driven by us rather than by `axum::serve`,
//! for three limits `axum::serve` does not offer (it runs hyper without a timer):
//!
//! - **Headers in time:** a request must finish its header within `http-header-timeout-ms`,
//!   and an idle keep-alive connection is closed after the same time, so a client trickling
//!   one header line every few seconds ("slowloris") cannot hold a connection for ever.
//! - **A cap on open connections,** in total and per client address, like the WebSocket caps
//!   (an upgraded WebSocket leaves this count and is counted by those instead). Beyond it a
//!   connection gets a plain 503 or 429 and is closed.
//! - **A bounded send buffer for WebSockets:** each request carries a handle on its socket
//!   ([`SocketHandle`]), so the `/ws` handler can set `SO_SNDBUF` on the connections it
//!   upgrades without shrinking the buffer page loads stream the WASM through.
//!
//! Shutdown: stop accepting, ask every HTTP connection to finish its current request and close
//! (hyper's graceful shutdown), and wait for them up to the grace period.

use super::limits::{ConnectionLimits, Refusal};
use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

/// The HTTP limits, from `[hub]`.
pub struct HttpSettings {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Proxies carry many clients on their connections: only the total cap applies to them.
    pub trusted_proxies: Vec<IpAddr>,
    pub grace: Duration,
}

/// The socket a request arrived on, for settings that only some responses need (the
/// WebSocket send buffer). A duplicate of the connection's descriptor: it refers to the same
/// socket, and it is closed when the request is done with it.
#[derive(Clone)]
pub struct SocketHandle(Arc<OwnedFd>);

impl SocketHandle {
    /// Caps the kernel's send buffer for this socket (Linux doubles the value for its own
    /// bookkeeping) and turns its autotuning off.
    pub fn set_send_buffer(&self, bytes: usize) -> std::io::Result<()> {
        socket2::SockRef::from(&*self.0).set_send_buffer_size(bytes)
    }
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: HttpSettings,
    shutdown: impl Future<Output = ()>,
) {
    let limits = ConnectionLimits::new(settings.max_connections, settings.max_connections_per_ip);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    // Every connection task holds a clone of `done`; when all are dropped, `finished` ends.
    let (done, mut finished) = mpsc::channel::<()>(1);
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // keep serving the others, without spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // No Nagle delay: the writer already batches what is ready into one write, and a
        // frame held back waiting for the previous one's ACK is pure latency.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        let ip = peer.ip();
        let slot = if settings.trusted_proxies.contains(&ip) {
            limits.try_acquire_shared(ip)
        } else {
            limits.try_acquire(ip)
        };
        match slot {
            Ok(slot) => {
                let served = connection(
                    stream,
                    peer,
                    app.clone(),
                    http.clone(),
                    stopping.clone(),
                    settings.grace,
                );
                let done = done.clone();
                tokio::spawn(async move {
                    served.await;
                    drop(slot);
                    drop(done);
                });
            }
            Err(refusal) => {
                tokio::spawn(refuse(stream, refusal));
            }
        }
    }
    let _ = stop.send(true);
    drop(done);
    let _ = tokio::time::timeout(settings.grace, finished.recv()).await;
}

/// Serves one HTTP connection: its requests go to `app` with the peer's address (as axum's
/// `ConnectInfo`) and a handle on the socket. On shutdown the connection finishes the request
/// in hand, then closes (hyper's graceful shutdown).
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    http: Arc<http1::Builder>,
    mut stopping: watch::Receiver<bool>,
    grace: Duration,
) {
    let socket = stream
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .map(|fd| SocketHandle(Arc::new(fd)));
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        if let Some(socket) = &socket {
            request.extensions_mut().insert(socket.clone());
        }
        app.clone().oneshot(request)
    });
    let conn = http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                tracing::debug!("HTTP connection from {peer}: {e}");
            }
        }
        () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(grace, conn).await;
        }
    }
}

/// Answers a connection over the limits with a plain HTTP error and closes it.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let (status, body) = match refusal {
        Refusal::Full => (
            "503 Service Unavailable",
            "the server is at its HTTP connection limit\n",
        ),
        Refusal::PerIp => (
            "429 Too Many Requests",
            "too many open connections from your address\n",
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 10\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent until it closes, so the kernel does not answer its
        // unread request with a reset that could destroy our response in flight.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), answer).await;
}
