//! Server-to-client WebSocket frames as bytes on the wire, encoded once and written as they
//! are to every connection that should get them.
//!
//! A frame from a server is never masked (RFC 6455 §5.1), so a broadcast's bytes, header and
//! payload, are the same for every recipient: [`Frame::json`] builds them once, and whoever
//! writes a connection's socket (`mailbox`) hands the same shared buffer to the kernel with
//! the connection's other waiting frames in one vectored write ([`write_now`], [`write_all`]).
//! No connection copies a frame, keeps a write buffer or cuts frames into fragments, so an
//! idle connection holds no frame memory at all.
//!
//! Reading (and the handshake) stays with tungstenite; only this fan-out path is ours, since
//! tungstenite frames each message into a per-connection buffer, once per recipient.

use bytes::Bytes;
use serde::Serialize;
use std::io::IoSlice;

const FIN: u8 = 0x80;
/// Set on a message's first frame when it is compressed (permessage-deflate).
const RSV1: u8 = 0x40;
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

    /// This text frame compressed (permessage-deflate), if its payload is large enough for
    /// that to pay and it gets shorter. Made once per broadcast, shared like the plain frame.
    pub fn deflated(&self) -> Option<Frame> {
        let payload = self.payload();
        if payload.len() < crate::server::deflate::MIN_BYTES || self.bytes[0] != FIN | TEXT {
            return None;
        }
        let buf = crate::server::deflate::compress(payload, MAX_HEADER)?;
        Some(Self::in_place(RSV1 | TEXT, buf))
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
    #[cfg(test)]
    pub fn text_payload(&self) -> &str {
        std::str::from_utf8(self.payload()).unwrap_or_default()
    }
}

/// Appends a client-to-server frame (RFC 6455 §5.2): `first` is its first byte (FIN, RSV1,
/// opcode), its payload masked with `mask`. What test clients and the load generator send,
/// and what the permessage-deflate inflater hands tungstenite (with a zero mask).
pub fn push_client_frame(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(first);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// A socket frames are written to without waiting, by whichever task's turn it is
/// (`mailbox`): the connection's TCP socket, or a test's stand-in.
pub trait Sink {
    /// Writes what the socket takes now (`WouldBlock` if nothing).
    fn try_write_vectored(&self, data: &[IoSlice<'_>]) -> std::io::Result<usize>;
    /// Waits until the socket can take more.
    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send;
}

impl Sink for crate::server::websocket::SocketWriter {
    fn try_write_vectored(&self, data: &[IoSlice<'_>]) -> std::io::Result<usize> {
        crate::server::websocket::SocketWriter::try_write_vectored(self, data)
    }

    fn writable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        crate::server::websocket::SocketWriter::writable(self)
    }
}

/// Frames handed to the kernel per write at most (Linux takes up to 1,024 slices).
const SLICES: usize = 64;

/// One vectored write of `frames` (the first from byte `sent` on), without waiting: how many
/// bytes the socket took.
pub fn write_now(socket: &impl Sink, frames: &[Frame], sent: usize) -> std::io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); SLICES];
    let mut count = 0;
    for (i, frame) in frames.iter().take(SLICES).enumerate() {
        let from = if i == 0 { sent } else { 0 };
        slices[i] = IoSlice::new(&frame.bytes[from..]);
        count += 1;
    }
    match socket.try_write_vectored(&slices[..count]) {
        Ok(0) if count > 0 => Err(std::io::ErrorKind::WriteZero.into()),
        other => other,
    }
}

/// After `written` more bytes of `frames` (the first from byte `sent` on): how many frames
/// are now whole on the wire, and the bytes written of the next.
pub fn advance(frames: &[Frame], sent: usize, mut written: usize) -> (usize, usize) {
    let mut done = 0;
    let mut sent = sent;
    while written > 0 && done < frames.len() {
        let left = frames[done].bytes.len() - sent;
        if written >= left {
            written -= left;
            done += 1;
            sent = 0;
        } else {
            sent += written;
            written = 0;
        }
    }
    (done, sent)
}

/// Writes every frame of `frames` (the first from byte `sent` on), in order, with as few
/// vectored writes as the socket allows, waiting for it as needed, and empties `frames`.
/// Given up on (dropped) only when the connection is dropped with it: a stalled reader.
pub async fn write_all(
    socket: &impl Sink,
    frames: &mut Vec<Frame>,
    mut sent: usize,
) -> std::io::Result<()> {
    let mut first = 0;
    while first < frames.len() {
        match write_now(socket, &frames[first..], sent) {
            Ok(written) => {
                let (done, partial) = advance(&frames[first..], sent, written);
                first += done;
                sent = partial;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => socket.writable().await?,
            Err(e) => return Err(e),
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
    fn a_frame_costs_no_more_than_the_bytes_it_shares() {
        // A frame is a slot of every waiting connection's mailbox.
        assert_eq!(size_of::<Frame>(), size_of::<Bytes>());
    }

    /// A socket that takes at most `max` bytes per write and refuses every other write
    /// (`WouldBlock`), to exercise partial writes and waiting.
    struct Trickle {
        got: std::sync::Mutex<(Vec<u8>, bool)>,
        max: usize,
    }

    impl Sink for Trickle {
        fn try_write_vectored(&self, data: &[IoSlice<'_>]) -> std::io::Result<usize> {
            let mut got = self.got.lock().unwrap();
            got.1 = !got.1;
            if !got.1 {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for slice in data {
                let take = slice.len().min(self.max - n);
                got.0.extend_from_slice(&slice[..take]);
                n += take;
            }
            Ok(n)
        }

        async fn writable(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn partial_writes_resume_where_they_stopped() {
        let frames: Vec<Frame> = (0..200).map(|i| Frame::text(&"m".repeat(i))).collect();
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.bytes().to_vec()).collect();
        for max in [1, 7, 300, 1 << 20] {
            for sent in [0, 1] {
                let socket = Trickle {
                    got: Default::default(),
                    max,
                };
                let mut batch = frames[1..].to_vec();
                write_all(&socket, &mut batch, sent).await.unwrap();
                assert!(batch.is_empty());
                let got = &socket.got.lock().unwrap().0;
                let from = frames[0].bytes().len() + sent;
                assert_eq!(got[..], expected[from..], "at most {max} bytes per write");
            }
        }
    }

    #[test]
    fn advancing_counts_whole_frames_and_the_rest() {
        let frames: Vec<Frame> = ["ab", "cde"].iter().map(|t| Frame::text(t)).collect();
        // Frames of 4 and 5 bytes (2-byte headers).
        assert_eq!(advance(&frames, 0, 3), (0, 3));
        assert_eq!(advance(&frames, 3, 1), (1, 0));
        assert_eq!(advance(&frames, 0, 6), (1, 2));
        assert_eq!(advance(&frames, 2, 7), (2, 0));
    }
}
