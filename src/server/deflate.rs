//! permessage-deflate (RFC 7692): compressed WebSocket messages, with browsers that offer it.
//!
//! Negotiated with `server_no_context_takeover` and `client_no_context_takeover`: every message
//! is compressed on its own, so a broadcast is compressed **once** and the same bytes go to
//! every connection that negotiated it (the others get the plain frame), and no connection
//! keeps a compressor or a 32 KiB window between messages. Frames under [`MIN_BYTES`] stay
//! plain: a typing notice gains nothing.
//!
//! tungstenite, which reads the client's frames, has no permessage-deflate and refuses a frame
//! with RSV1 set; [`Inflater`] sits between the socket and tungstenite and turns each
//! compressed message into the plain frame tungstenite expects, inflating it at most to the
//! frame limit (a message that inflates beyond it reaches tungstenite as an oversized frame,
//! which the connection answers with close 1009, as any other).

use axum::http::{HeaderMap, HeaderValue, header};
use flate2::Compression;

/// Payloads shorter than this are sent plain.
pub const MIN_BYTES: usize = 256;

/// The extension as accepted.
const ACCEPTED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
/// The same, for an offer that named the server's window (which must then be answered).
const ACCEPTED_15: &str = "permessage-deflate; server_no_context_takeover; \
                           client_no_context_takeover; server_max_window_bits=15";

/// The `Sec-WebSocket-Extensions` answer, if the client offers permessage-deflate with
/// parameters this server can honour (RFC 7692 §7.1). An offer that limits the server's window
/// below the 32 KiB this compressor uses (`server_max_window_bits` < 15) is passed over.
pub fn negotiate(headers: &HeaderMap) -> Option<HeaderValue> {
    let offers = headers
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for offer in offers {
        let mut parts = offer.split(';').map(str::trim);
        if !parts
            .next()
            .is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate"))
        {
            continue;
        }
        let mut window = false;
        let acceptable = parts.all(|param| {
            let (name, value) = match param.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (param, None),
            };
            match name.to_ascii_lowercase().as_str() {
                "server_no_context_takeover" | "client_no_context_takeover" => value.is_none(),
                // Any window for the client's messages: they are inflated with the largest.
                "client_max_window_bits" => {
                    value.is_none_or(|v| v.parse::<u8>().is_ok_and(|b| (8..=15).contains(&b)))
                }
                "server_max_window_bits" => {
                    window = true;
                    value == Some("15")
                }
                _ => false,
            }
        });
        if acceptable {
            return Some(HeaderValue::from_static(if window {
                ACCEPTED_15
            } else {
                ACCEPTED
            }));
        }
    }
    None
}

/// `payload` compressed as one message (the final empty block's `00 00 ff ff` removed, RFC
/// 7692 §7.2.1), if that makes it shorter; written behind `room` bytes left for a header.
pub fn compress(payload: &[u8], room: usize) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut deflate = flate2::write::DeflateEncoder::new(vec![0; room], Compression::fast());
    deflate.write_all(payload).ok()?;
    // A sync flush, not `finish`: the message ends with an empty block, no final one.
    deflate.flush().ok()?;
    let mut out = std::mem::take(deflate.get_mut());
    if !out.ends_with(&[0, 0, 0xff, 0xff]) {
        return None;
    }
    out.truncate(out.len() - 4);
    (out.len() - room < payload.len()).then_some(out)
}

/// A compressed message's payload inflated, or `None` if it is not valid deflate data or
/// would inflate beyond `max` bytes.
pub fn inflate(compressed: &[u8], max: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    // The sync flush's empty block the sender removed, then an empty final block, so that
    // the stream ends where the message does.
    let tail: &[u8] = &[0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff];
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(compressed.chain(tail))
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() <= max).then_some(out)
}

/// The client-to-server frames of a connection that negotiated permessage-deflate, on their
/// way from the socket to tungstenite: plain frames pass through as they are; a compressed
/// message (RSV1 on its first frame) is gathered, inflated, and handed on as one plain frame.
pub struct Inflater {
    /// The largest frame tungstenite accepts: no message inflates beyond it.
    max: usize,
    /// Read from the socket, not yet looked at: `input[pos..]`.
    input: Vec<u8>,
    pos: usize,
    /// Ready for tungstenite: `output[out_pos..]`.
    output: Vec<u8>,
    out_pos: usize,
    /// Payload bytes of a plain frame still to pass through.
    passing: u64,
    /// The compressed message being gathered: its opcode and its payload so far (unmasked).
    message: Option<(u8, Vec<u8>)>,
    /// A message was too big: nothing more is read.
    refused: bool,
}

impl Inflater {
    pub fn new(max: usize) -> Inflater {
        Inflater {
            max,
            input: Vec::new(),
            pos: 0,
            output: Vec::new(),
            out_pos: 0,
            passing: 0,
            message: None,
            refused: false,
        }
    }

    /// Bytes ready for tungstenite, if any.
    pub fn ready(&self) -> &[u8] {
        &self.output[self.out_pos..]
    }

    /// `n` ready bytes were handed on.
    pub fn consume(&mut self, n: usize) {
        self.out_pos += n;
        if self.out_pos == self.output.len() {
            self.output.clear();
            self.out_pos = 0;
            // A large message's buffers are not kept for the connection's life.
            if self.output.capacity() > 4096 {
                self.output = Vec::new();
            }
        }
    }

    /// Where to read more from the socket into (at least 512 bytes free), the bytes read so
    /// far first. Capacity beyond what a pending frame needs is given back.
    pub fn spare(&mut self) -> &mut Vec<u8> {
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        if self.input.capacity() > 4096 && self.input.capacity() > self.input.len() * 4 {
            self.input.shrink_to(self.input.len().max(512));
        }
        self.input.reserve(512);
        &mut self.input
    }

    /// Turns what has been read into what tungstenite reads, until a frame's worth waits for
    /// it (so a burst of small bombs cannot make one read inflate without bound).
    pub fn process(&mut self) {
        while !self.refused && self.output.len() - self.out_pos < self.max && self.step() {}
    }

    /// One step; false when more input is needed.
    fn step(&mut self) -> bool {
        let max = self.max;
        let available = &self.input[self.pos..];
        if self.passing > 0 {
            let n = (available.len() as u64).min(self.passing) as usize;
            if n == 0 {
                return false;
            }
            self.output.extend_from_slice(&available[..n]);
            self.pos += n;
            self.passing -= n as u64;
            return true;
        }
        let Some((header, len)) = parse_header(available) else {
            return false;
        };
        let (b0, b1) = (available[0], available[1]);
        let (fin, rsv1, opcode, masked) =
            (b0 & 0x80 != 0, b0 & 0x40 != 0, b0 & 0x0F, b1 & 0x80 != 0);
        let data = opcode == 1 || opcode == 2;
        if data && self.message.is_some() {
            // A new message inside a fragmented one (RFC 6455 §5.4): an opcode tungstenite
            // refuses, and the connection fails.
            self.output.extend_from_slice(&[0x83, 0x80, 0, 0, 0, 0]);
            self.refused = true;
            return false;
        }
        // RSV2 and RSV3 mean nothing here: such frames go to tungstenite, which refuses them.
        let other_bits = b0 & 0x30 != 0;
        let starts_compressed = rsv1 && data && !other_bits;
        let continues = opcode == 0 && !rsv1 && !other_bits && self.message.is_some();
        if !(starts_compressed || continues) || !masked {
            // Plain (or not ours to judge: tungstenite refuses what is wrong).
            self.output.extend_from_slice(&available[..header]);
            self.pos += header;
            self.passing = len;
            return true;
        }
        // `gathered` is at most `max`: compared first, `len` cannot overflow the sum.
        let gathered = self.message.as_ref().map_or(0, |(_, m)| m.len() as u64);
        if len > max as u64 || len + gathered > max as u64 {
            return self.refuse(opcode);
        }
        let len = len as usize;
        if available.len() < header + len {
            return false;
        }
        let mask: [u8; 4] = available[header - 4..header].try_into().unwrap_or_default();
        let payload = &available[header..header + len];
        let (kind, message) = self.message.get_or_insert_with(|| (opcode, Vec::new()));
        let kind = *kind;
        message.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.pos += header + len;
        if !fin {
            return true;
        }
        let (_, compressed) = self.message.take().unwrap_or_default();
        match inflate(&compressed, max) {
            Some(plain) => {
                push_frame(&mut self.output, kind, &plain);
                true
            }
            None => self.refuse(kind),
        }
    }

    /// Hands tungstenite a header announcing a frame over its limit, which it refuses (and
    /// the connection closes with 1009); nothing more is read.
    fn refuse(&mut self, opcode: u8) -> bool {
        let max = self.max;
        let opcode = if opcode == 0 { 1 } else { opcode };
        self.output.push(0x80 | opcode);
        self.output.push(0x80 | 127);
        self.output
            .extend_from_slice(&(max as u64 + 1).to_be_bytes());
        self.output.extend_from_slice(&[0; 4]);
        self.refused = true;
        false
    }
}

/// A complete client frame header at the start of `bytes`: its length and the payload's.
fn parse_header(bytes: &[u8]) -> Option<(usize, u64)> {
    if bytes.len() < 2 {
        return None;
    }
    let mask = if bytes[1] & 0x80 != 0 { 4 } else { 0 };
    let (ext, len) = match bytes[1] & 0x7F {
        126 => (
            2,
            u64::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
        ),
        127 => (8, u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?)),
        n => (0, u64::from(n)),
    };
    let header = 2 + ext + mask;
    (bytes.len() >= header).then_some((header, len))
}

/// A final, masked (with a zero key: masking changes nothing) client frame.
fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    super::wire::push_client_frame(out, 0x80 | opcode, payload, [0; 4]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Option<HeaderValue> {
        let mut headers = HeaderMap::new();
        headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, value.parse().unwrap());
        negotiate(&headers)
    }

    #[test]
    fn what_browsers_offer_is_accepted_and_what_cannot_be_honoured_is_not() {
        // Chromium's and Firefox's offers.
        assert!(offer("permessage-deflate; client_max_window_bits").is_some());
        assert!(offer("permessage-deflate").is_some());
        assert!(
            offer("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=10")
                .is_some()
        );
        assert!(offer("permessage-deflate; server_no_context_takeover").is_some());
        let named = offer("permessage-deflate; server_max_window_bits=15").unwrap();
        assert!(
            named
                .to_str()
                .unwrap()
                .ends_with("server_max_window_bits=15")
        );
        // A smaller window for our side than this compressor uses; unknown parameters.
        assert!(offer("permessage-deflate; server_max_window_bits=10").is_none());
        assert!(offer("permessage-deflate; client_max_window_bits=99").is_none());
        assert!(offer("permessage-deflate; mystery").is_none());
        assert!(offer("x-webkit-deflate-frame").is_none());
        assert!(negotiate(&HeaderMap::new()).is_none());
    }

    #[test]
    fn messages_survive_the_round_trip_and_bombs_are_refused() {
        let text = "chat is mostly words, and words repeat: words, words, words. ".repeat(40);
        let packed = compress(text.as_bytes(), 0).unwrap();
        assert!(packed.len() < text.len() / 4, "{} bytes", packed.len());
        assert_eq!(inflate(&packed, 1 << 20).unwrap(), text.as_bytes());
        // A message that inflates far beyond the limit is refused, not inflated.
        let bomb = compress(&vec![b'a'; 1 << 20], 0).unwrap();
        assert!(bomb.len() < 16 * 1024, "{} bytes", bomb.len());
        assert!(inflate(&bomb, 64 * 1024).is_none());
        assert!(inflate(b"\xff\xfe not deflate", 1024).is_none());
        // Nothing to gain: no compressed copy.
        assert!(compress(b"hi", 0).is_none());
    }

    /// A masked client frame, compressed (RSV1) or not, cut into `parts` fragments.
    fn client_frames(opcode: u8, payload: &[u8], rsv1: bool, parts: usize) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let chunk = payload.len().div_ceil(parts).max(1);
        let mut out = Vec::new();
        let pieces: Vec<&[u8]> = payload.chunks(chunk).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let first = i == 0;
            let last = i == pieces.len() - 1;
            let mut b0 = if first { opcode } else { 0 };
            if last {
                b0 |= 0x80;
            }
            if rsv1 && first {
                b0 |= 0x40;
            }
            crate::server::wire::push_client_frame(&mut out, b0, piece, mask);
        }
        out
    }

    /// Feeds `bytes` to an inflater a few at a time, as a socket might, and reads out what
    /// tungstenite would get.
    fn through(bytes: &[u8], max: usize) -> Vec<u8> {
        let mut inflater = Inflater::new(max);
        let mut out = Vec::new();
        for piece in bytes.chunks(7) {
            inflater.spare().extend_from_slice(piece);
            inflater.process();
            out.extend_from_slice(inflater.ready());
            let n = inflater.ready().len();
            inflater.consume(n);
        }
        out
    }

    #[test]
    fn compressed_messages_reach_tungstenite_as_plain_frames_and_the_rest_passes_through() {
        let text = r#"{"type":"message","text":"hello hello hello hello hello"}"#;
        let packed = compress(text.as_bytes(), 0).unwrap();
        let mut input = client_frames(1, &packed, true, 3); // fragmented, compressed
        input.extend(client_frames(9, b"ping", false, 1)); // a control frame
        input.extend(client_frames(1, b"plain", false, 1));
        let mut expected = Vec::new();
        push_frame(&mut expected, 1, text.as_bytes());
        expected.extend(client_frames(9, b"ping", false, 1));
        expected.extend(client_frames(1, b"plain", false, 1));
        assert_eq!(through(&input, 1 << 16), expected);

        // A bomb: tungstenite is shown a frame over its limit, and nothing after it.
        let bomb = compress(&vec![b'a'; 1 << 20], 0).unwrap();
        let mut input = client_frames(1, &bomb, true, 1);
        input.extend(client_frames(1, b"after", false, 1));
        let out = through(&input, 1 << 16);
        assert_eq!(out.len(), 14);
        assert_eq!(out[1], 0x80 | 127);
        assert_eq!(
            u64::from_be_bytes(out[2..10].try_into().unwrap()),
            (1 << 16) + 1
        );

        // A continuation declaring 2^64 - 1 bytes after a compressed first fragment: refused,
        // no overflow.
        let mut input = vec![0x41, 0x81, 1, 2, 3, 4, 0x55];
        input.extend_from_slice(&[0x80, 0xFF]);
        input.extend_from_slice(&[0xFF; 8]);
        input.extend_from_slice(&[1, 2, 3, 4]);
        let out = through(&input, 1 << 16);
        assert_eq!(&out[..2], &[0x81, 0x80 | 127]);

        // A new message inside a fragmented compressed one: an opcode tungstenite refuses.
        let text = "hello hello hello hello hello hello hello hello".as_bytes();
        let packed = compress(text, 0).unwrap();
        let mut input = client_frames(1, &packed, true, 2);
        input.truncate(2 + 4 + packed.len().div_ceil(2)); // the first fragment
        input.extend(client_frames(1, b"plain", false, 1));
        assert_eq!(through(&input, 1 << 16), [0x83, 0x80, 0, 0, 0, 0]);
    }

    #[test]
    fn one_read_inflates_no_more_than_a_frame_ahead_of_tungstenite() {
        // Ten small messages that each inflate to 40 KiB, arriving in one read.
        let big = compress(&vec![b'x'; 40 * 1024], 0).unwrap();
        let mut inflater = Inflater::new(1 << 16);
        for _ in 0..10 {
            inflater.spare().extend(client_frames(1, &big, true, 1));
        }
        inflater.process();
        let held = inflater.ready().len();
        assert!(held < 2 * (40 * 1024 + 14), "{held} bytes inflated at once");
        // The rest comes as tungstenite takes what is ready.
        let mut total = 0;
        while !inflater.ready().is_empty() {
            let n = inflater.ready().len();
            total += n;
            inflater.consume(n);
            inflater.process();
        }
        assert_eq!(total, 10 * (40 * 1024 + 8));
    }
}
