//! The generator's WebSocket client, by hand: the upgrade request, masked text frames out, and
//! a frame reader that hands back each payload as a slice of one reusable buffer.
//!
//! Why not tungstenite, as before: the generator shares the two cores with the server it
//! measures, and per frame tungstenite allocated the message, validated its UTF-8 and took the
//! lock between a split stream's halves. The generator used more CPU than the server in every
//! loaded case, so its own backlog showed up as the server's latency. This reader costs a
//! header parse and a substring search per frame, and reads as many frames as have arrived
//! with one system call.

use std::io;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A client frame's mask (RFC 6455 §5.3 asks for a random one to defeat cache poisoning by
/// proxies; there is no proxy between a load generator and the server it measures).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The sending half, shared by the client's sender and by its reader (which answers pings).
pub type Writer = Arc<tokio::sync::Mutex<OwnedWriteHalf>>;

/// A frame received: text (or binary), or the server's close.
pub enum Received<'a> {
    Text(&'a [u8]),
    Close,
}

/// Bytes read from all sockets, all clients together (what crossed the wire).
pub static WIRE_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A received frame's header: fin, compressed (RSV1), opcode, payload offset and length.
type Header = (bool, bool, u8, usize, usize);

pub struct Reader {
    socket: OwnedReadHalf,
    /// A compressed message (permessage-deflate), inflated.
    inflated: Vec<u8>,
    writer: Writer,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// A fragmented message so far (servers may split large messages).
    partial: Vec<u8>,
    /// The previous call returned `partial`: clear it on the next.
    consumed_partial: bool,
}

/// Opens a WebSocket to `url` (`ws://host:port/path`) over `stream`, with `headers` (whole
/// `Name: value` lines) added to the upgrade request.
pub async fn handshake(
    mut stream: TcpStream,
    url: &str,
    headers: &[String],
) -> Result<(Reader, Writer), String> {
    let rest = url.strip_prefix("ws://").ok_or("only ws:// URLs")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: aHViYnViLWxvYWQtZ2VuIQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let mut end = 0;
    let head_end = loop {
        if end == buf.len() {
            return Err("upgrade response too long".into());
        }
        let n = stream
            .read(&mut buf[end..])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during the upgrade".into());
        }
        end += n;
        if let Some(i) = buf[..end].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let status = String::from_utf8_lossy(&buf[..head_end]);
    if !status.starts_with("HTTP/1.1 101") {
        let line = status.lines().next().unwrap_or_default();
        return Err(format!("upgrade refused: {line}"));
    }
    let (socket, write) = stream.into_split();
    let writer = Arc::new(tokio::sync::Mutex::new(write));
    let reader = Reader {
        socket,
        inflated: Vec::new(),
        writer: writer.clone(),
        buf,
        start: head_end,
        end,
        partial: Vec::new(),
        consumed_partial: false,
    };
    Ok((reader, writer))
}

/// Writes one masked client frame.
pub async fn send(writer: &Writer, opcode: u8, payload: &[u8]) -> io::Result<()> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    hubbub::server::wire::push_client_frame(&mut frame, 0x80 | opcode, payload, MASK);
    writer.lock().await.write_all(&frame).await
}

pub async fn send_text(writer: &Writer, text: &str) -> io::Result<()> {
    send(writer, TEXT, text.as_bytes()).await
}

impl Reader {
    /// The next text message; pings are answered on the way. `None` when the connection ends.
    pub async fn next(&mut self) -> io::Result<Option<Received<'_>>> {
        if self.consumed_partial {
            self.partial.clear();
            self.consumed_partial = false;
        }
        loop {
            let Some((fin, compressed, opcode, at, len)) = self.header()? else {
                self.fill().await?;
                continue;
            };
            self.start = at + len;
            match opcode {
                PING => {
                    let payload = self.buf[at..at + len].to_vec();
                    send(&self.writer, PONG, &payload).await?;
                }
                CLOSE => return Ok(Some(Received::Close)),
                0 if !self.partial.is_empty() => {
                    self.partial.extend_from_slice(&self.buf[at..at + len]);
                    if fin {
                        self.consumed_partial = true;
                        return Ok(Some(Received::Text(&self.partial)));
                    }
                }
                1 | 2 if !fin => self.partial.extend_from_slice(&self.buf[at..at + len]),
                1 | 2 if compressed => {
                    let payload = &self.buf[at..at + len];
                    self.inflated = hubbub::server::deflate::inflate(payload, 64 << 20)
                        .ok_or_else(|| {
                            io::Error::other("a compressed frame that does not inflate")
                        })?;
                    return Ok(Some(Received::Text(&self.inflated)));
                }
                1 | 2 => return Ok(Some(Received::Text(&self.buf[at..at + len]))),
                _ => {} // pong, or a continuation of nothing
            }
        }
    }

    /// The complete frame at `start`, if all of it is buffered.
    fn header(&self) -> io::Result<Option<Header>> {
        let b = &self.buf[self.start..self.end];
        if b.len() < 2 {
            return Ok(None);
        }
        if b[1] & 0x80 != 0 {
            return Err(io::Error::other("the server masked a frame"));
        }
        let (header, len) = match b[1] & 0x7F {
            126 if b.len() >= 4 => (4, u16::from_be_bytes([b[2], b[3]]) as usize),
            127 if b.len() >= 10 => (
                10,
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
            ),
            126 | 127 => return Ok(None),
            n => (2, n as usize),
        };
        if b.len() < header + len {
            return Ok(None);
        }
        let (fin, compressed) = (b[0] & 0x80 != 0, b[0] & 0x40 != 0);
        Ok(Some((
            fin,
            compressed,
            b[0] & 0x0F,
            self.start + header,
            len,
        )))
    }

    /// Reads more: moves what is unread to the front, grows the buffer if one frame needs
    /// more than it holds, and reads whatever has arrived.
    async fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.socket.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        WIRE_BYTES.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        self.end += n;
        Ok(())
    }
}
