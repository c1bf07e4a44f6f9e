//! Server-to-client WebSocket frames as bytes on the wire, encoded once and written as they
//! are to every connection that should get them.
//!
//! A frame from a server is never masked (RFC 6455 §5.1), so a broadcast's bytes, header and
//! payload, are the same for every recipient: [`Frame::json`] builds them once, and each
//! connection's writer hands the same shared buffer to the kernel with its other ready frames
//! in one vectored write ([`write_all`]). No connection copies a frame, keeps a write buffer
//! or cuts frames into fragments, so an idle connection holds no frame memory at all.
//!
//! Reading (and the handshake) stays with tungstenite; only this fan-out path is ours, since
//! tungstenite frames each message into a per-connection buffer, once per recipient.

use bytes::Bytes;
use serde::Serialize;
use std::io::IoSlice;
use tokio::io::AsyncWrite;

const FIN: u8 = 0x80;
const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// The longest header: 2 bytes and a 64-bit length.
const MAX_HEADER: usize = 10;

/// One complete, unmasked, final WebSocket frame. Cloning shares the bytes. Just the bytes:
/// the header's length is read back from them, so a frame is no larger than a `Bytes` and
/// neither is a slot of every connection's queue.
#[derive(Clone, Debug)]
pub struct Frame {
    bytes: Bytes,
}

impl Frame {
    /// A text frame holding `value` as JSON, serialised straight behind room for its header,
    /// so the payload is written once and never copied.
    pub fn json(value: &impl Serialize) -> Frame {
        let mut buf = vec![0; MAX_HEADER];
        // Serialising hubbub's frames cannot fail: plain structs, string keys, no floats.
        if serde_json::to_writer(&mut buf, value).is_err() {
            buf.truncate(MAX_HEADER);
        }
        Self::in_place(TEXT, buf)
    }

    /// A text frame holding `text` as it is.
    #[cfg(test)]
    pub fn text(text: &str) -> Frame {
        Self::with_payload(TEXT, text.as_bytes())
    }

    /// A ping with no payload.
    pub fn ping() -> Frame {
        Frame {
            bytes: Bytes::from_static(&[FIN | PING, 0]),
        }
    }

    /// The answer to a client's ping: its payload echoed (at most 125 bytes, as every
    /// control frame's).
    pub fn pong(payload: &[u8]) -> Frame {
        Self::with_payload(PONG, &payload[..payload.len().min(125)])
    }

    /// A close frame with a status code and a reason (cut to fit a control frame).
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        Self::with_payload(CLOSE, &payload)
    }

    fn with_payload(opcode: u8, payload: &[u8]) -> Frame {
        let mut buf = Vec::with_capacity(MAX_HEADER + payload.len());
        buf.resize(MAX_HEADER, 0);
        buf.extend_from_slice(payload);
        Self::in_place(opcode, buf)
    }

    /// Writes the final frame's header (RFC 6455 §5.2) for the payload behind `buf`'s first
    /// [`MAX_HEADER`] bytes into the end of that space, and keeps the frame from the header's
    /// first byte.
    fn in_place(opcode: u8, mut buf: Vec<u8>) -> Frame {
        let len = buf.len() - MAX_HEADER;
        let start = match len {
            0..=125 => {
                buf[9] = len as u8;
                8
            }
            126..=0xFFFF => {
                buf[7] = 126;
                buf[8..MAX_HEADER].copy_from_slice(&(len as u16).to_be_bytes());
                6
            }
            _ => {
                buf[1] = 127;
                buf[2..MAX_HEADER].copy_from_slice(&(len as u64).to_be_bytes());
                0
            }
        };
        buf[start] = FIN | opcode;
        Frame {
            bytes: Bytes::from(buf).slice(start..),
        }
    }

    /// The whole frame, as written.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The payload: for a text frame, its text.
    pub fn payload(&self) -> &[u8] {
        let header = match self.bytes.get(1).map(|b| b & 0x7F) {
            Some(127) => 10,
            Some(126) => 4,
            _ => 2,
        };
        self.bytes.get(header..).unwrap_or_default()
    }

    /// A text frame's text ("" if it is not UTF-8, which frames built here always are).
    pub fn text_payload(&self) -> &str {
        std::str::from_utf8(self.payload()).unwrap_or_default()
    }
}

/// Frames handed to the kernel per write at most (Linux takes up to 1,024 slices).
const SLICES: usize = 64;

/// Writes every frame of `frames`, in order, with as few (vectored) writes as the socket
/// allows, and empties `frames`. Cancel-safe only in the sense that matters here: a write
/// that is given up on (a stalled reader) drops the connection.
pub async fn write_all<W: AsyncWrite + Unpin>(
    socket: &mut W,
    frames: &mut Vec<Frame>,
) -> std::io::Result<()> {
    let mut first = 0;
    // Bytes of `frames[first]` already written.
    let mut done = 0;
    while first < frames.len() {
        // The slices are built at each poll rather than kept across the wait: kept, they
        // would sit in the future, and the future in every connection's writer (1 KiB each).
        let mut written = std::future::poll_fn(|cx| {
            let mut slices = [IoSlice::new(&[]); SLICES];
            let mut count = 0;
            for (i, frame) in frames[first..].iter().take(SLICES).enumerate() {
                let from = if i == 0 { done } else { 0 };
                slices[i] = IoSlice::new(&frame.bytes[from..]);
                count += 1;
            }
            std::pin::Pin::new(&mut *socket).poll_write_vectored(cx, &slices[..count])
        })
        .await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let left = frames[first].bytes.len() - done;
            if written >= left {
                written -= left;
                first += 1;
                done = 0;
            } else {
                done += written;
                written = 0;
            }
        }
    }
    frames.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// What a WebSocket client (tungstenite's) reads from these bytes.
    async fn read_as_client(bytes: Vec<u8>, frames: usize) -> Vec<Message> {
        // Kept open: the client answers the ping and the close through it.
        let (mut ours, theirs) = tokio::io::duplex(1 << 20);
        ours.write_all(&bytes).await.unwrap();
        let ws = WebSocketStream::from_raw_socket(theirs, Role::Client, None).await;
        let read = ws.take(frames).map(Result::unwrap).collect().await;
        drop(ours);
        read
    }

    #[tokio::test]
    async fn a_client_reads_every_size_of_frame_and_the_controls() {
        // Each header length (7-bit, 16-bit, 64-bit), unicode, and a cut at a character
        // boundary in the close reason.
        let texts = ["", "hi ✓", &"é".repeat(100), &"x".repeat(70_000)];
        let mut frames: Vec<Frame> = texts.iter().map(|t| Frame::text(t)).collect();
        frames.push(Frame::json(&serde_json::json!({"type": "pong"})));
        frames.push(Frame::ping());
        frames.push(Frame::pong(b"abc"));
        frames.push(Frame::close(4000, &"é".repeat(100)));
        let bytes = frames.iter().flat_map(|f| f.bytes().to_vec()).collect();
        let got = read_as_client(bytes, frames.len()).await;
        for (i, text) in texts.iter().enumerate() {
            assert_eq!(got[i], Message::text(*text), "frame {i}");
        }
        assert_eq!(got[4], Message::text(r#"{"type":"pong"}"#));
        assert_eq!(got[5], Message::Ping(Default::default()));
        assert_eq!(got[6], Message::Pong(b"abc".to_vec().into()));
        let Message::Close(Some(close)) = &got[7] else {
            panic!("{:?}", got[7]);
        };
        assert_eq!(u16::from(close.code), 4000);
        assert_eq!(
            close.reason.len(),
            122,
            "61 two-byte characters fit in 123 bytes"
        );
        assert_eq!(frames[1].text_payload(), "hi ✓");
        assert_eq!(frames[2].text_payload(), "é".repeat(100));
        assert_eq!(frames[3].text_payload(), "x".repeat(70_000));
        assert!(frames[0].text_payload().is_empty());
    }

    #[test]
    fn a_frame_and_its_write_cost_an_idle_connection_little() {
        // A frame is a queue slot of every connection: no larger than the bytes it shares.
        assert_eq!(size_of::<Frame>(), size_of::<Bytes>());
        // The write future sits in every writer: no slice array kept across its wait.
        let mut socket = tokio::io::sink();
        let mut frames = Vec::new();
        assert!(size_of_val(&write_all(&mut socket, &mut frames)) < 128);
    }

    /// A socket that takes at most `max` bytes per write, to exercise partial writes.
    struct Trickle {
        got: Vec<u8>,
        max: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            data: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = data.len().min(self.max);
            self.got.extend_from_slice(&data[..n]);
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_writes_resume_where_they_stopped() {
        let frames: Vec<Frame> = (0..200).map(|i| Frame::text(&"m".repeat(i))).collect();
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.bytes().to_vec()).collect();
        for max in [1, 7, 300, 1 << 20] {
            let mut socket = Trickle {
                got: Vec::new(),
                max,
            };
            let mut batch = frames.clone();
            write_all(&mut socket, &mut batch).await.unwrap();
            assert!(batch.is_empty());
            assert_eq!(socket.got, expected, "at most {max} bytes per write");
        }
    }
}
