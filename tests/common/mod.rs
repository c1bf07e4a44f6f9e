//! Test harness: a real hubbub server on 127.0.0.1:0 (in-process, or the real binary as a
//! child process when a test needs to kill it), and real WebSocket clients.
#![allow(dead_code)]

use futures::{SinkExt, StreamExt};
use hubbub::protocol::{ClientFrame, ServerFrame};
use hubbub::server::config::{Config, HubConfig};
use leptos::config::LeptosOptions;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame it expects.
pub const WAIT: Duration = Duration::from_secs(10);

/// An in-process server with its own temporary database.
pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Settings for tests: generous rate limits so tests are not throttled by accident.
pub fn test_config(dir: &Path) -> HubConfig {
    HubConfig {
        database: dir.join("chat.db"),
        rate_per_sec: 1_000.0,
        rate_burst: 1_000.0,
        requests_per_sec: 1_000.0,
        request_burst: 1_000.0,
        signups_per_ip_per_hour: 1_000_000,
        ..HubConfig::default()
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(adjust: impl FnOnce(&mut HubConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut hub = test_config(dir.path());
        adjust(&mut hub);
        Self::start_in(dir, hub).await
    }

    pub async fn start_in(dir: tempfile::TempDir, hub: HubConfig) -> Self {
        let site = LeptosOptions::builder()
            .output_name("hubbub")
            .site_root(dir.path().to_string_lossy().to_string())
            .build();
        Self::start_site(dir, hub, site).await
    }

    /// With the site settings given (`site_root` should be `dir`).
    pub async fn start_site(dir: tempfile::TempDir, hub: HubConfig, site: LeptosOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        register_realm(addr, &hub.database.to_string_lossy());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            hubbub::server::serve(listener, Config { site, hub }, async {
                let _ = stopped.await;
            })
            .await
            .expect("server failed");
        });
        TestServer {
            addr,
            dir,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.url()).await
    }

    /// A client that has joined as `name` (email `name@example.com`), welcome consumed.
    pub async fn joined(&self, name: &str) -> Client {
        let mut c = self.client().await;
        c.join(name).await;
        c
    }

    /// Asks the server to shut down (as SIGTERM would) and waits until it has.
    pub async fn shutdown(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("shutdown took too long")
            .unwrap();
        self.dir
    }

    /// `GET path` over plain HTTP/1.1; returns (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path, &[]).await
    }
}

/// A bare HTTP/1.1 GET, enough for `/metrics` and `/healthz`.
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, _, body) = http_response(addr, path, headers).await;
    (status, String::from_utf8_lossy(&body).to_string())
}

/// A bare HTTP/1.1 GET: the status, the response head (lower-cased) and the body as sent
/// (de-chunked, not decompressed).
pub async fn http_response(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    exchange(addr, request).await
}

/// A bare HTTP/1.1 form `POST` (as a server function is called): status, head (lower-cased)
/// and body.
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    form: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let (status, head, body) = exchange(addr, request).await;
    (status, head, String::from_utf8_lossy(&body).to_string())
}

/// A bare HTTP/1.1 `POST` of `body` as `content_type` (an upload): status, head
/// (lower-cased) and body.
pub async fn http_post_bytes(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    exchange(addr, bytes).await
}

/// Sends a whole HTTP/1.1 request on a new connection and reads the response to its end:
/// the status, the head (lower-cased) and the body as sent (de-chunked, not decompressed).
async fn exchange(addr: SocketAddr, request: impl AsRef<[u8]>) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_ref()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    let mut body = response[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The session secret a response's `Set-Cookie` gives, with the cookie's attributes.
pub fn session_cookie(head: &str) -> Option<(String, String)> {
    head.lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find(|c| c.starts_with("hubbub_session="))
        .map(|c| {
            let value = c["hubbub_session=".len()..]
                .split(';')
                .next()
                .unwrap()
                .to_string();
            (value, c.to_string())
        })
}

/// Decodes an HTTP/1.1 chunked body (SSR pages are streamed).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_hex = String::from_utf8_lossy(&raw[..line_end]).to_string();
        let size = usize::from_str_radix(size_hex.split(';').next().unwrap().trim(), 16).unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// Reads a metric's value from the `/metrics` text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A real WebSocket client.
pub struct Client {
    pub ws: Ws,
    /// Every text frame received, raw, for privacy checks.
    pub raw: Vec<String>,
    /// The accounts database behind the server it talks to (see [`register_realm`]).
    realm: String,
}

/// Which accounts database serves each test server's address: nodes of one cluster share
/// one, so a token from one node works on the others.
static REALMS: std::sync::Mutex<Option<std::collections::HashMap<String, String>>> =
    std::sync::Mutex::new(None);
/// The join token each (database, lower-cased name) was given, so a test's second join as a
/// name is the same account's, as a real client keeping its token would be.
static TOKENS: std::sync::Mutex<Option<std::collections::HashMap<(String, String), String>>> =
    std::sync::Mutex::new(None);

pub fn register_realm(addr: SocketAddr, realm: &str) {
    let mut realms = REALMS.lock().unwrap();
    realms
        .get_or_insert_with(Default::default)
        .insert(addr.to_string(), realm.to_string());
}

fn realm_of(url: &str) -> String {
    let authority = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(url)
        .to_string();
    let realms = REALMS.lock().unwrap();
    realms
        .as_ref()
        .and_then(|r| r.get(&authority).cloned())
        .unwrap_or(authority)
}

/// The token this test run was given for `name` on `realm`, if any.
pub fn known_token(realm: &str, name: &str) -> Option<String> {
    let tokens = TOKENS.lock().unwrap();
    tokens
        .as_ref()?
        .get(&(realm.to_string(), name.to_lowercase()))
        .cloned()
}

fn remember_token(realm: &str, name: &str, token: String) {
    let mut tokens = TOKENS.lock().unwrap();
    tokens
        .get_or_insert_with(Default::default)
        .insert((realm.to_string(), name.to_lowercase()), token);
}

/// How a connection ended, as the client saw it.
#[derive(Debug, PartialEq)]
pub enum Ending {
    Close(u16, String),
    /// The TCP connection ended without a close frame.
    Dropped,
}

impl Client {
    /// A client on a WebSocket opened by hand (e.g. with a small receive buffer).
    pub fn from_socket(ws: Ws, url: &str) -> Client {
        Client {
            ws,
            raw: Vec::new(),
            realm: realm_of(url),
        }
    }

    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        Client {
            ws,
            raw: Vec::new(),
            realm: realm_of(url),
        }
    }

    /// Connects with extra request headers; returns the HTTP status on refusal.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Client, u16> {
        let mut request = url.into_client_request().unwrap();
        for (k, v) in headers {
            let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            request.headers_mut().insert(name, v.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Client {
                ws,
                raw: Vec::new(),
                realm: realm_of(url),
            }),
            Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
            Err(e) => panic!("unexpected connect error: {e}"),
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send(&mut self, frame: &ClientFrame) {
        self.send_text(&serde_json::to_string(frame).unwrap()).await;
    }

    pub async fn join(&mut self, name: &str) -> ServerFrame {
        self.join_as(name, &format!("{name}@example.com"), None)
            .await
    }

    /// Joins as `name`: the first time creates its account; later joins present the token
    /// that first `welcome` gave (as a client keeping it would).
    pub async fn join_as(&mut self, name: &str, email: &str, since: Option<u64>) -> ServerFrame {
        self.join_room_as(name, email, None, since).await
    }

    /// [`Client::join_as`], in `room`.
    pub async fn join_room_as(
        &mut self,
        name: &str,
        email: &str,
        room: Option<&str>,
        since: Option<u64>,
    ) -> ServerFrame {
        self.send(&ClientFrame::Join {
            username: name.into(),
            email: email.into(),
            room: room.map(str::to_string),
            since,
            token: known_token(&self.realm, name),
            invite: None,
        })
        .await;
        let welcome = self.recv().await;
        let ServerFrame::Welcome { token, .. } = &welcome else {
            panic!("expected welcome, got {welcome:?}");
        };
        if let Some(token) = token {
            remember_token(&self.realm, name, token.clone());
        }
        welcome
    }

    /// The token this client's server gave `name`, if a join created its account.
    pub fn token_for(&self, name: &str) -> Option<String> {
        known_token(&self.realm, name)
    }

    pub async fn say(&mut self, text: &str) {
        self.send_json(json!({"type": "message", "text": text}))
            .await;
    }

    /// The next text frame as JSON (pings and pongs are skipped).
    pub async fn recv_json(&mut self) -> Value {
        serde_json::from_str(&self.recv_text().await).unwrap()
    }

    pub async fn recv(&mut self) -> ServerFrame {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad frame {text}: {e}"))
    }

    pub async fn recv_text(&mut self) -> String {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame");
            match next {
                Some(Ok(Message::Text(t))) => {
                    self.raw.push(t.to_string());
                    return t.to_string();
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next chat message, skipping join/leave notices.
    pub async fn recv_message(&mut self) -> hubbub::protocol::ChatMessage {
        loop {
            match self.recv().await {
                ServerFrame::Message(m) => return m,
                ServerFrame::Joined { .. } | ServerFrame::Left { .. } => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// The next error frame's code, as the wire spells it.
    pub async fn recv_error(&mut self) -> String {
        let v = self.recv_json().await;
        assert_eq!(v["type"], "error", "expected an error frame, got {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v["code"].as_str().unwrap().to_string()
    }

    /// Proves the connection is still open and in order: ping, expect pong.
    pub async fn assert_alive(&mut self) {
        self.send_json(json!({"type": "ping"})).await;
        loop {
            match self.recv().await {
                ServerFrame::Pong => return,
                ServerFrame::Joined { .. } | ServerFrame::Left { .. } => continue,
                other => panic!("expected pong, got {other:?}"),
            }
        }
    }

    /// Reads until the connection ends; returns the close code, skipping any other frames.
    pub async fn ending(&mut self) -> Ending {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Err(_) => panic!("connection did not end"),
                Ok(Some(Ok(Message::Close(Some(frame))))) => {
                    return Ending::Close(frame.code.into(), frame.reason.to_string());
                }
                Ok(Some(Ok(Message::Close(None)))) => return Ending::Close(1005, String::new()),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(_)) | None) => return Ending::Dropped,
            }
        }
    }

    /// The next text frame as JSON, or the close code if the connection ends first.
    pub async fn ending_or_frame(&mut self) -> Result<Value, u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Err(_) => panic!("neither a frame nor the end arrived"),
                Ok(Some(Ok(Message::Text(t)))) => return Ok(serde_json::from_str(&t).unwrap()),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Err(frame.map_or(1005, |f| f.code.into()));
                }
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("dropped without a close frame: {e}"),
                Ok(None) => panic!("dropped without a close frame"),
            }
        }
    }

    /// The close code the server sent (fails if it just dropped the connection).
    pub async fn close_code(&mut self) -> u16 {
        match self.ending().await {
            Ending::Close(code, _) => code,
            Ending::Dropped => panic!("connection dropped without a close frame"),
        }
    }

    /// Asserts that nothing but pings arrives for `d`.
    pub async fn assert_quiet(&mut self, d: Duration) {
        let until = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(until, self.ws.next()).await {
                Err(_) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }
}

/// The real `hubbub` binary as a child process, for restarts and `kill -9`.
pub struct Process {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
}

/// Writes a Leptos.toml for a child server using `db`.
pub fn write_config(dir: &Path, db: &Path) -> PathBuf {
    let path = dir.join("Leptos.toml");
    let text = format!(
        "[site]\noutput-name = \"hubbub\"\nsite-addr = \"127.0.0.1:0\"\nsite-root = {root:?}\n\
         [hub]\ndatabase = {db:?}\nrate-per-sec = 1000.0\nrate-burst = 1000.0\n\
         signups-per-ip-per-hour = 1000000\n",
        root = dir.to_string_lossy(),
        db = db.to_string_lossy(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

impl Process {
    /// Starts the binary with `config` (and optional fixed address) and waits for it to listen.
    pub async fn start(config: &Path, addr: Option<SocketAddr>) -> Process {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hubbub"));
        cmd.env("HUBBUB_CONFIG", config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(addr) = addr {
            cmd.env("LEPTOS_SITE_ADDR", addr.to_string());
        } else {
            cmd.env_remove("LEPTOS_SITE_ADDR");
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("server did not start")
            .unwrap()
            .expect("server exited before listening");
        let addr = line
            .strip_prefix("hubbub listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .parse()
            .unwrap();
        // Nodes of one cluster share their accounts: the realm is the database they name.
        let text = std::fs::read_to_string(config).unwrap_or_default();
        let database = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("database = "))
            .map(|v| v.trim_matches('"').to_string());
        register_realm(
            addr,
            &database.unwrap_or_else(|| config.to_string_lossy().into()),
        );
        Process { child, addr }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// `kill -9`: no shutdown code runs.
    pub async fn kill9(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

/// A throw-away PostgreSQL server for one test: its own cluster in a temporary directory, on a
/// free port, stopped (immediately) when dropped. As root, the server runs as the `postgres`
/// user (PostgreSQL refuses to run as root), as `scripts/install.sh` leaves Debian's package.
pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    databases: std::sync::atomic::AtomicU32,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is not installed: run scripts/install.sh")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("no initdb under /usr/lib/postgresql: run scripts/install.sh");
        let dir = tempfile::tempdir().unwrap();
        let root = running_as_root();
        if root {
            let status = std::process::Command::new("chown")
                .arg("-R")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown postgres failed");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.path().join("data");
        let pg = Postgres {
            port,
            dir,
            bin,
            databases: std::sync::atomic::AtomicU32::new(0),
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        pg.start_again();
        pg
    }

    /// Starts the server (again, after [`Postgres::stop`]) on the same port and data.
    pub fn start_again(&self) {
        let data = self.dir.path().join("data");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &options,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "start",
            ],
        );
    }

    /// Runs one of PostgreSQL's programs, as `postgres` when we are root.
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut cmd = if running_as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            std::process::Command::new(&path)
        };
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A new, empty database on this server, and its URL.
    pub fn database(&self) -> String {
        let n = self
            .databases
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("hubbub{n}");
        let port = self.port.to_string();
        self.run(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", &name],
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server at once (as a crash would), or starts it again.
    pub fn stop(&self) {
        let data = self.dir.path().join("data");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if data.join("postmaster.pid").exists() {
                self.run(
                    "pg_ctl",
                    &[
                        "-D",
                        &data.to_string_lossy(),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ],
                );
            }
        }));
    }
}

/// Whether the tests run as root (then PostgreSQL runs as `postgres`).
fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A PNG of `width` × `height` pixels.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let picture = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    picture
        .write_to(&mut bytes, image::ImageFormat::Png)
        .unwrap();
    bytes.into_inner()
}

/// Uploads `body` for `room` as `name`, with `token` (a welcome's) if given.
pub async fn upload(
    addr: SocketAddr,
    token: Option<&str>,
    room: &str,
    name: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Sec-Fetch-Site", "same-origin")];
    if let Some(bearer) = &bearer {
        headers.push(("Authorization", bearer.as_str()));
    }
    let path = format!("/api/files?room={room}&name={}", urlencoded_name(name));
    http_post_bytes(addr, &path, content_type, body, &headers).await
}

fn urlencoded_name(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn fetch(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("Authorization", b.as_str()))
        .collect();
    http_response(addr, path, &headers).await
}
