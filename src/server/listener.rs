//! The HTTP accept loop: hyper's HTTP/1.1 server driven by us rather than by `axum::serve`,
//! for three limits `axum::serve` does not offer (it runs hyper without a timer, so hyper's
//! own `header_read_timeout` is inert; upstream: tokio-rs/axum#2741, closed in favour of
//! configuring hyper, which `axum::serve` does not expose):
//!
//! - **Headers in time:** a request must finish its header within `http-header-timeout-ms`,
//!   and an idle keep-alive connection is closed after the same time, so a client trickling
//!   one header line every few seconds ("slowloris") cannot hold a connection for ever.
//! - **A cap on open connections,** in total and per client address, like the WebSocket caps
//!   (an upgraded WebSocket leaves this count and is counted by those instead). Beyond it a
//!   connection gets a plain 503 or 429 and is closed.
//! - **No stalled requests:** a connection whose bytes stop moving both ways for the same
//!   time is closed, so a request body sent a byte at a time or a response nobody reads
//!   cannot hold a place either (hyper's timeout covers only the header).
//!
//! Each connection's socket is wrapped in [`Tracked`], which records when bytes last moved
//! each way. After a WebSocket upgrade the socket is handed on with its record (see
//! `websocket`), so the writer can tell a slow reader from a stalled one.
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
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tower::ServiceExt;

/// The IO hyper serves: the TCP socket with its progress record. The WebSocket upgrade takes
/// it back by this exact type (`hyper::upgrade::Upgraded::downcast`).
pub type Io = TokioIo<Tracked<TcpStream>>;

/// Refusals answered at once; beyond this, a connection over the limits is just closed.
const REFUSALS_IN_FLIGHT: usize = 64;

/// The HTTP limits, from `[hub]`.
pub struct HttpSettings {
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Proxies carry many clients on their connections: only the total cap applies to them.
    pub trusted_proxies: Vec<IpAddr>,
    pub grace: Duration,
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
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let trusted: Vec<IpAddr> = settings
        .trusted_proxies
        .iter()
        .map(IpAddr::to_canonical)
        .collect();
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
        let ip = peer.ip().to_canonical();
        let slot = if trusted.contains(&ip) {
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
                    settings.header_timeout,
                );
                let done = done.clone();
                tokio::spawn(async move {
                    served.await;
                    drop(slot);
                    drop(done);
                });
            }
            Err(refusal) => {
                // Each answer holds a socket for up to two seconds; a flood beyond the cap is
                // just closed.
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse(stream, refusal).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    // New clients are refused at once from here, not left waiting in the backlog.
    drop(listener);
    let _ = stop.send(true);
    drop(done);
    let _ = tokio::time::timeout(settings.grace, finished.recv()).await;
}

/// Serves one HTTP connection: its requests go to `app` with the peer's address (as axum's
/// `ConnectInfo`). Closed when its bytes stop moving for `stall`; on shutdown it finishes the
/// request in hand, then closes (hyper's graceful shutdown).
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    http: Arc<http1::Builder>,
    mut stopping: watch::Receiver<bool>,
    grace: Duration,
    stall: Duration,
) {
    let stream = Tracked::new(stream);
    let progress = stream.progress();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let io: Io = TokioIo::new(stream);
    let conn = http.serve_connection(io, service).with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => {
            if let Err(e) = served {
                tracing::debug!("HTTP connection from {peer}: {e}");
            }
        }
        () = progress.stalled(Progress::idle, stall) => {
            tracing::debug!("HTTP connection from {peer}: no progress for {stall:?}, closed");
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

/// When a connection last moved bytes each way, shared between its IO and whoever watches it
/// (the HTTP stall check here, the WebSocket writer's slow-consumer check).
#[derive(Clone)]
pub struct Progress(Arc<[AtomicU64; 2]>);

const READ: usize = 0;
const WRITE: usize = 1;

/// Milliseconds since the first call: a monotonic clock small enough for an atomic.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl Progress {
    fn new() -> Self {
        let now = now_ms();
        Progress(Arc::new([AtomicU64::new(now), AtomicU64::new(now)]))
    }

    fn touch(&self, way: usize) {
        self.0[way].store(now_ms(), Relaxed);
    }

    /// How long since the peer last took any bytes we wrote.
    pub fn write_idle(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.0[WRITE].load(Relaxed)))
    }

    /// How long since bytes last moved either way.
    pub fn idle(&self) -> Duration {
        let last = self.0[READ].load(Relaxed).max(self.0[WRITE].load(Relaxed));
        Duration::from_millis(now_ms().saturating_sub(last))
    }

    /// Resolves once `idle` (one of the two measures above) has reached `limit`.
    pub async fn stalled(&self, idle: impl Fn(&Self) -> Duration, limit: Duration) {
        loop {
            let quiet = idle(self);
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(limit - quiet).await;
        }
    }
}

/// A connection's socket, recording when bytes last moved each way (an atomic store per read
/// or write that moved bytes).
pub struct Tracked<T> {
    inner: T,
    progress: Progress,
}

impl<T> Tracked<T> {
    pub fn new(inner: T) -> Self {
        Tracked {
            inner,
            progress: Progress::new(),
        }
    }

    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl Tracked<TcpStream> {
    /// The socket's two directions, owned apart (a WebSocket's reader and writer are two
    /// tasks), recording their progress in the same record.
    pub fn into_split(
        self,
    ) -> (
        Tracked<tokio::net::tcp::OwnedReadHalf>,
        Tracked<tokio::net::tcp::OwnedWriteHalf>,
    ) {
        let (read, write) = self.inner.into_split();
        let read = Tracked {
            inner: read,
            progress: self.progress.clone(),
        };
        let write = Tracked {
            inner: write,
            progress: self.progress,
        };
        (read, write)
    }
}

impl Tracked<tokio::net::tcp::OwnedWriteHalf> {
    /// Writes what the socket takes now, without waiting: through a shared reference, since
    /// a connection's writer and the room's flushers take turns on it (`mailbox`).
    pub fn try_write_vectored(&self, data: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let written = self.inner.try_write_vectored(data);
        if matches!(written, Ok(n) if n > 0) {
            self.progress.touch(WRITE);
        }
        written
    }

    /// Waits until the socket can take more.
    pub async fn writable(&self) -> std::io::Result<()> {
        self.inner.writable().await
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.progress.touch(READ);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.progress.touch(WRITE);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.progress.touch(WRITE);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
