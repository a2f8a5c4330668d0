//! WebSocket framing (RFC 6455): encode server frames once, decode and check client frames.
//!
//! Written here rather than taken from tungstenite because framing is where the engine earns its
//! speed and its manners: a broadcast is framed once and the same bytes go to every member; reads
//! go through one buffer per worker thread and a connection only keeps the bytes of a frame that
//! has not fully arrived; and every violation maps to the close code the RFC asks for (1002, 1007,
//! 1009) instead of a dropped TCP connection. Pure code, no I/O.

use bytes::{BufMut, Bytes, BytesMut};

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes the engine sends.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const BAD_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    /// The server cannot take this now (its moderator is overloaded); the client may retry.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const KICKED: u16 = 4000;
    /// The host refused the connection's first room (`join_hook`).
    pub const JOIN_REFUSED: u16 = 4003;
}

/// One unmasked server frame, FIN set, ready to write as is.
pub fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    frame(0x80 | opcode, payload)
}

/// One server frame carrying a message compressed with permessage-deflate (RSV1 set).
pub fn encode_deflated(opcode: u8, payload: &[u8]) -> Bytes {
    frame(0x80 | 0x40 | opcode, payload)
}

/// The payload of a frame `encode` made (server frames are unmasked).
pub fn payload(frame: &[u8]) -> &[u8] {
    let at = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    frame.get(at..).unwrap_or(&[])
}

fn frame(first: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut b = BytesMut::with_capacity(len + 10);
    b.put_u8(first);
    if len < 126 {
        b.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        b.put_u8(126);
        b.put_u16(len as u16);
    } else {
        b.put_u8(127);
        b.put_u64(len as u64);
    }
    b.put_slice(payload);
    b.freeze()
}

pub fn text(payload: &str) -> Bytes {
    encode(OP_TEXT, payload.as_bytes())
}

/// A close frame; the reason is cut to fit the 125-byte control frame limit on a char boundary.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut p = Vec::with_capacity(2 + end);
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OP_CLOSE, &p)
}

/// A complete message or control frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    /// The client's close: its code (None if the frame had no body) and reason.
    Close(Option<u16>, String),
}

/// Why the connection must be closed, with the close code to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

const fn violation(code: u16, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message: usize,
    pub max_fragments: usize,
    /// permessage-deflate was negotiated: a data message may be compressed (RSV1 on its first
    /// frame) and is inflated, within `max_message`, when it completes.
    pub deflate: bool,
}

/// Incremental decoder for one connection. Holds only what it must between reads: the tail of a
/// frame that has not fully arrived and the fragments of an unfinished message.
#[derive(Debug, Default)]
pub struct Decoder {
    pending: Vec<u8>,
    message: Vec<u8>,
    /// Opcode of the message being reassembled (text or binary), if any.
    message_op: Option<u8>,
    fragments: usize,
    /// Prefix of the text message being decoded already known to be valid UTF-8, ending on a
    /// character boundary. Counted over `message` followed by the payload of the text frame that
    /// has not fully arrived, so it may run past `message.len()` while that frame is pending.
    utf8_checked: usize,
    /// The message being reassembled is compressed (its first frame had RSV1).
    compressed: bool,
    closed: bool,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes read from the socket; each complete message goes to `sink`. After a close
    /// frame nothing more is decoded.
    pub fn feed(
        &mut self,
        input: &[u8],
        limits: Limits,
        sink: &mut impl FnMut(Incoming),
    ) -> Result<(), Violation> {
        if self.closed {
            return Ok(());
        }
        if self.pending.is_empty() {
            let used = self.parse(input, limits, sink)?;
            if used < input.len() && !self.closed {
                self.pending.extend_from_slice(&input[used..]);
            }
        } else {
            let mut data = std::mem::take(&mut self.pending);
            data.extend_from_slice(input);
            let used = self.parse(&data, limits, sink)?;
            data.drain(..used);
            if data.is_empty() && data.capacity() > 4096 {
                data = Vec::new(); // give back the memory of a big frame
            }
            self.pending = data;
        }
        Ok(())
    }

    fn parse(
        &mut self,
        data: &[u8],
        limits: Limits,
        sink: &mut impl FnMut(Incoming),
    ) -> Result<usize, Violation> {
        let mut pos = 0;
        while !self.closed {
            let Some((consumed, frame)) = self.frame(&data[pos..], limits)? else {
                break;
            };
            pos += consumed;
            if let Some(msg) = frame {
                if matches!(msg, Incoming::Close(..)) {
                    self.closed = true;
                }
                sink(msg);
            }
        }
        Ok(pos)
    }

    /// Decodes one frame: None if incomplete, else bytes used and the message it completed.
    fn frame(&mut self, d: &[u8], limits: Limits) -> Result<Option<(usize, Option<Incoming>)>, Violation> {
        if d.len() < 2 {
            return Ok(None);
        }
        let fin = d[0] & 0x80 != 0;
        let op = d[0] & 0x0f;
        let rsv1 = d[0] & 0x40 != 0;
        if d[0] & 0x30 != 0 || (rsv1 && !(limits.deflate && (op == OP_TEXT || op == OP_BINARY))) {
            // RSV1 is permessage-deflate's, on a message's first frame only (RFC 7692 6.1).
            return Err(violation(close::PROTOCOL, "reserved bits set without an extension"));
        }
        if d[1] & 0x80 == 0 {
            return Err(violation(close::PROTOCOL, "client frames must be masked"));
        }
        let (len, mut hdr) = match d[1] & 0x7f {
            126 => {
                if d.len() < 4 {
                    return Ok(None);
                }
                (u16::from_be_bytes([d[2], d[3]]) as u64, 4)
            }
            127 => {
                if d.len() < 10 {
                    return Ok(None);
                }
                let n = u64::from_be_bytes(d[2..10].try_into().unwrap_or([0; 8]));
                if n >> 63 != 0 {
                    return Err(violation(close::PROTOCOL, "frame length has its top bit set"));
                }
                (n, 10)
            }
            n => (n as u64, 2),
        };
        let control = op & 0x8 != 0;
        match op {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    return Err(violation(close::PROTOCOL, "fragmented control frame"));
                }
                if len > 125 {
                    return Err(violation(close::PROTOCOL, "control frame longer than 125 bytes"));
                }
            }
            OP_CONT => {
                if self.message_op.is_none() {
                    return Err(violation(close::PROTOCOL, "continuation without a message to continue"));
                }
            }
            OP_TEXT | OP_BINARY => {
                if self.message_op.is_some() {
                    return Err(violation(close::PROTOCOL, "new message before the last one finished"));
                }
            }
            _ => return Err(violation(close::PROTOCOL, "reserved opcode")),
        }
        if !control {
            if (self.message.len() as u64).saturating_add(len) > limits.max_message as u64 {
                return Err(violation(close::TOO_BIG, "message too big"));
            }
            if self.fragments + 1 > limits.max_fragments {
                return Err(violation(close::TOO_BIG, "message split into too many frames"));
            }
        }
        let len = len as usize;
        if d.len() < hdr + 4 + len {
            // A text frame still arriving: check what has come so that invalid UTF-8 early in a
            // long frame closes the connection now, not once the rest has been read (Autobahn
            // 6.4.3/6.4.4). Only incomplete frames get here, so frames that arrive whole pay
            // nothing extra, and only the bytes new since the last read are checked.
            let text = op == OP_TEXT || (op == OP_CONT && self.message_op == Some(OP_TEXT));
            // A compressed message is checked once inflated.
            let compressed = if op == OP_CONT { self.compressed } else { rsv1 };
            if text && !compressed && d.len() > hdr + 4 {
                let mask = [d[hdr], d[hdr + 1], d[hdr + 2], d[hdr + 3]];
                self.check_utf8_arriving(&d[hdr + 4..], mask)?;
            }
            return Ok(None);
        }
        let mask = [d[hdr], d[hdr + 1], d[hdr + 2], d[hdr + 3]];
        hdr += 4;
        let payload = &d[hdr..hdr + len];
        let used = hdr + len;

        if control {
            let body = unmask(payload, mask);
            let msg = match op {
                OP_PING => Incoming::Ping(body),
                OP_PONG => Incoming::Pong,
                _ => parse_close(&body)?,
            };
            return Ok(Some((used, Some(msg))));
        }

        if op != OP_CONT {
            self.message_op = Some(op);
            self.compressed = rsv1;
            self.message = Vec::with_capacity(if fin { len } else { len.max(256) });
        }
        self.fragments += 1;
        let start = self.message.len();
        self.message.extend_from_slice(payload);
        unmask_in_place(&mut self.message[start..], mask);

        if self.message_op == Some(OP_TEXT) && !self.compressed {
            self.check_utf8(fin)?;
        }
        if !fin {
            return Ok(Some((used, None)));
        }
        let op = self.message_op.take().unwrap_or(OP_BINARY);
        let mut body = std::mem::take(&mut self.message);
        self.fragments = 0;
        self.utf8_checked = 0;
        if std::mem::take(&mut self.compressed) {
            body = crate::deflate::inflate(&body, limits.max_message).map_err(|e| match e {
                crate::deflate::InflateError::TooBig => violation(close::TOO_BIG, "message too big"),
                crate::deflate::InflateError::Corrupt => {
                    violation(close::BAD_DATA, "invalid compressed data")
                }
            })?;
        }
        let msg = if op == OP_TEXT {
            // check_utf8(fin = true) validated the whole message.
            Incoming::Text(String::from_utf8(body).map_err(|_| violation(close::BAD_DATA, "invalid UTF-8"))?)
        } else {
            Incoming::Binary(body)
        };
        Ok(Some((used, Some(msg))))
    }

    /// Checks the masked payload that has arrived of a text frame not yet complete, from
    /// `utf8_checked` on, up to its last complete character. Unmasks through a stack buffer rather
    /// than into `pending`/`message`: the frame stays as it is until it completes, so the decoder
    /// keeps no more than before (one position); `utf8_checked` then spares `check_utf8` from
    /// checking the same bytes again.
    fn check_utf8_arriving(&mut self, arrived: &[u8], mask: [u8; 4]) -> Result<(), Violation> {
        let base = self.message.len(); // position of arrived[0] in the text message
        let mut next = self.utf8_checked.saturating_sub(base); // first arrived byte not known valid
        if next >= arrived.len() {
            return Ok(()); // all of it checked already
        }
        let mut buf = [0u8; 1024];
        // A character split across the previous fragment and this frame starts in `message`
        // (at most 3 bytes, already unmasked).
        let carried = &self.message[self.utf8_checked.min(base)..];
        buf[..carried.len()].copy_from_slice(carried);
        let mut n = carried.len(); // buf[..n] holds the text from position utf8_checked on
        while next < arrived.len() {
            let take = (buf.len() - n).min(arrived.len() - next);
            buf[n..n + take].copy_from_slice(&arrived[next..next + take]);
            let mut m = mask;
            m.rotate_left(next % 4); // the mask key repeats from the start of the payload
            unmask_in_place(&mut buf[n..n + take], m);
            n += take;
            next += take;
            let valid = match std::str::from_utf8(&buf[..n]) {
                Ok(_) => n,
                // error_len None: the bytes end inside a character; the next bytes may finish it.
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => return Err(violation(close::BAD_DATA, "invalid UTF-8")),
            };
            self.utf8_checked += valid;
            buf.copy_within(valid..n, 0); // the unfinished character, 0 to 3 bytes
            n -= valid;
        }
        Ok(())
    }

    /// Validates text as it arrives so a bad fragment fails at once, not at the end.
    fn check_utf8(&mut self, fin: bool) -> Result<(), Violation> {
        match std::str::from_utf8(&self.message[self.utf8_checked..]) {
            Ok(_) => self.utf8_checked = self.message.len(),
            Err(e) => {
                // error_len None: the text ends inside a character that the next fragment may complete.
                if e.error_len().is_some() || fin {
                    return Err(violation(close::BAD_DATA, "invalid UTF-8"));
                }
                self.utf8_checked += e.valid_up_to();
            }
        }
        Ok(())
    }
}

fn parse_close(body: &[u8]) -> Result<Incoming, Violation> {
    match body.len() {
        0 => Ok(Incoming::Close(None, String::new())),
        1 => Err(violation(close::PROTOCOL, "close frame with a 1-byte body")),
        _ => {
            let code = u16::from_be_bytes([body[0], body[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !valid {
                return Err(violation(close::PROTOCOL, "invalid close code"));
            }
            let reason = std::str::from_utf8(&body[2..])
                .map_err(|_| violation(close::BAD_DATA, "close reason is not UTF-8"))?;
            Ok(Incoming::Close(Some(code), reason.to_string()))
        }
    }
}

fn unmask(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut v = payload.to_vec();
    unmask_in_place(&mut v, mask);
    v
}

fn unmask_in_place(buf: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask);
    let mut chunks = buf.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ m;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// Masks a payload into a client frame, as a browser would.
#[cfg(test)]
pub fn encode_client(opcode: u8, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let len = payload.len();
    let mut b = Vec::with_capacity(len + 14);
    b.push(if fin { 0x80 } else { 0 } | opcode);
    if len < 126 {
        b.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        b.push(0x80 | 126);
        b.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        b.push(0x80 | 127);
        b.extend_from_slice(&(len as u64).to_be_bytes());
    }
    b.extend_from_slice(&mask);
    let start = b.len();
    b.extend_from_slice(payload);
    unmask_in_place(&mut b[start..], mask);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: Limits = Limits { max_message: 1 << 20, max_fragments: 100, deflate: false };
    const MASK: [u8; 4] = [1, 2, 3, 4];

    fn decode_all(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Incoming>, Violation> {
        let mut out = Vec::new();
        d.feed(bytes, LIM, &mut |m| out.push(m))?;
        Ok(out)
    }

    #[test]
    fn server_frames_have_the_right_length_encoding() {
        assert_eq!(&text("hi")[..], &[0x81, 2, b'h', b'i']);
        let f = encode(OP_TEXT, &[0u8; 300]);
        assert_eq!(&f[..4], &[0x81, 126, 1, 44]);
        let f = encode(OP_BINARY, &vec![0u8; 70_000]);
        assert_eq!(f[1], 127);
        assert_eq!(f.len(), 70_000 + 10);
    }

    #[test]
    fn masked_text_round_trips_byte_by_byte() {
        let frame = encode_client(OP_TEXT, true, "héllo wörld".as_bytes(), MASK);
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &frame {
            d.feed(std::slice::from_ref(b), LIM, &mut |m| got.push(m)).unwrap();
        }
        assert_eq!(got, vec![Incoming::Text("héllo wörld".into())]);
        assert_eq!(d.pending.len(), 0);
    }

    #[test]
    fn fragments_are_reassembled_with_pings_between() {
        let mut bytes = encode_client(OP_TEXT, false, b"ab", MASK);
        bytes.extend(encode_client(OP_PING, true, b"p", MASK));
        bytes.extend(encode_client(OP_CONT, true, b"cd", MASK));
        let got = decode_all(&mut Decoder::new(), &bytes).unwrap();
        assert_eq!(got, vec![Incoming::Ping(b"p".to_vec()), Incoming::Text("abcd".into())]);
    }

    #[test]
    fn unmasked_frame_is_a_protocol_error() {
        let e = decode_all(&mut Decoder::new(), &text("x")).unwrap_err();
        assert_eq!(e.code, close::PROTOCOL);
    }

    #[test]
    fn too_big_message_is_refused_from_its_header() {
        let mut d = Decoder::new();
        let mut hdr = vec![0x81, 0x80 | 127];
        hdr.extend_from_slice(&(2u64 << 20).to_be_bytes());
        let mut out = Vec::new();
        let e = d.feed(&hdr, LIM, &mut |m| out.push(m)).unwrap_err();
        assert_eq!(e.code, close::TOO_BIG);
    }

    #[test]
    fn too_many_fragments_is_too_big() {
        let mut bytes = Vec::new();
        for _ in 0..101 {
            bytes.extend(encode_client(if bytes.is_empty() { OP_TEXT } else { OP_CONT }, false, b"a", MASK));
        }
        assert_eq!(decode_all(&mut Decoder::new(), &bytes).unwrap_err().code, close::TOO_BIG);
    }

    #[test]
    fn invalid_utf8_fails_fast_in_the_first_bad_fragment() {
        let bytes = encode_client(OP_TEXT, false, &[0xff, b'a'], MASK);
        assert_eq!(decode_all(&mut Decoder::new(), &bytes).unwrap_err().code, close::BAD_DATA);
    }

    #[test]
    fn utf8_split_across_fragments_is_fine() {
        let s = "€".as_bytes();
        let mut bytes = encode_client(OP_TEXT, false, &s[..1], MASK);
        bytes.extend(encode_client(OP_CONT, true, &s[1..], MASK));
        assert_eq!(decode_all(&mut Decoder::new(), &bytes).unwrap(), vec![Incoming::Text("€".into())]);
    }

    /// Feeds `bytes` in the given pieces; the index of the piece that failed, with its violation.
    fn feed_pieces(d: &mut Decoder, bytes: &[u8], cuts: &[usize]) -> Option<(usize, Violation)> {
        let mut from = 0;
        for (i, &to) in cuts.iter().chain(std::iter::once(&bytes.len())).enumerate() {
            if let Err(v) = d.feed(&bytes[from..to], LIM, &mut |_| {}) {
                return Some((i, v));
            }
            from = to;
        }
        None
    }

    #[test]
    fn invalid_utf8_in_a_frame_that_arrives_in_pieces_fails_at_the_bad_byte() {
        let mut payload = "κόσμε".repeat(20).into_bytes();
        payload[100] = 0xff;
        let frame = encode_client(OP_TEXT, true, &payload, MASK);
        let hdr = frame.len() - payload.len();
        // Pieces: up to before the bad byte, the bad byte, the rest.
        let got = feed_pieces(&mut Decoder::new(), &frame, &[hdr + 100, hdr + 101]);
        assert_eq!(got, Some((1, violation(close::BAD_DATA, "invalid UTF-8"))));
    }

    #[test]
    fn a_code_point_made_invalid_by_its_second_byte_fails_at_that_byte() {
        // Autobahn 6.4.4: U+110000 (f4 90 80 80) is out of range; f4 alone may still start a valid
        // character, the 0x90 after it cannot.
        let mut payload = "κόσμε".as_bytes().to_vec();
        payload.extend_from_slice(&[0xf4, 0x90, 0x80, 0x80]);
        payload.extend_from_slice("edited".as_bytes());
        let frame = encode_client(OP_TEXT, true, &payload, MASK);
        let hdr = frame.len() - payload.len();
        let at_f4 = hdr + "κόσμε".len() + 1;
        let got = feed_pieces(&mut Decoder::new(), &frame, &[at_f4, at_f4 + 1]);
        assert_eq!(got.map(|(i, v)| (i, v.code)), Some((1, close::BAD_DATA)));
    }

    #[test]
    fn invalid_utf8_in_a_continuation_that_arrives_in_pieces_fails_at_the_bad_byte() {
        // The first fragment ends inside "€" (e2 82 ac); the continuation's first byte breaks it.
        let mut bytes = encode_client(OP_TEXT, false, &"ab€".as_bytes()[..3], MASK);
        let cont_at = bytes.len();
        bytes.extend(encode_client(OP_CONT, true, b"xyz and more", MASK));
        let payload_at = bytes.len() - b"xyz and more".len();
        let got = feed_pieces(&mut Decoder::new(), &bytes, &[cont_at, payload_at, payload_at + 1]);
        assert_eq!(got.map(|(i, v)| (i, v.code)), Some((2, close::BAD_DATA)));
    }

    #[test]
    fn characters_split_across_reads_and_fragments_inside_long_frames_are_fine() {
        let text = "€uro, 𝄞 and ü ".repeat(30);
        // The fragments split a character too.
        let cut = (text.len() / 2..).find(|&i| !text.is_char_boundary(i)).unwrap();
        let (a, b) = text.as_bytes().split_at(cut);
        let mut bytes = encode_client(OP_TEXT, false, a, MASK);
        bytes.extend(encode_client(OP_CONT, true, b, MASK));
        for step in [1, 2, 3, 5, 7, 64] {
            let mut d = Decoder::new();
            let mut got = Vec::new();
            for c in bytes.chunks(step) {
                d.feed(c, LIM, &mut |m| got.push(m)).unwrap();
            }
            assert_eq!(got, vec![Incoming::Text(text.clone())], "reads of {step} bytes");
            assert_eq!((d.pending.len(), d.utf8_checked), (0, 0));
        }
    }

    #[test]
    fn an_arriving_text_frame_is_checked_once_up_to_its_last_whole_character() {
        let payload = "ab€cd".as_bytes(); // € is bytes 2..5
        let frame = encode_client(OP_TEXT, true, payload, MASK);
        let hdr = frame.len() - payload.len();
        let mut d = Decoder::new();
        d.feed(&frame[..hdr + 4], LIM, &mut |_| {}).unwrap();
        assert_eq!(d.utf8_checked, 2, "stops before the unfinished €");
        d.feed(&frame[hdr + 4..hdr + 5], LIM, &mut |_| {}).unwrap();
        assert_eq!(d.utf8_checked, 5);
        let mut got = Vec::new();
        d.feed(&frame[hdr + 5..], LIM, &mut |m| got.push(m)).unwrap();
        assert_eq!(got, vec![Incoming::Text("ab€cd".into())]);
        assert_eq!(d.utf8_checked, 0);
    }

    #[test]
    fn binary_frames_arriving_in_pieces_are_not_checked_as_text() {
        let payload = [0xff; 300];
        let frame = encode_client(OP_BINARY, true, &payload, MASK);
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for c in frame.chunks(50) {
            d.feed(c, LIM, &mut |m| got.push(m)).unwrap();
        }
        assert_eq!(got, vec![Incoming::Binary(payload.to_vec())]);
    }

    #[test]
    fn control_frame_rules() {
        let big_ping = encode_client(OP_PING, true, &[0; 126], MASK);
        assert_eq!(decode_all(&mut Decoder::new(), &big_ping).unwrap_err().code, close::PROTOCOL);
        let frag_ping = encode_client(OP_PING, false, b"", MASK);
        assert_eq!(decode_all(&mut Decoder::new(), &frag_ping).unwrap_err().code, close::PROTOCOL);
    }

    #[test]
    fn close_codes_are_checked() {
        let ok = encode_client(OP_CLOSE, true, &[0x03, 0xe8, b'b', b'y', b'e'], MASK);
        assert_eq!(
            decode_all(&mut Decoder::new(), &ok).unwrap(),
            vec![Incoming::Close(Some(1000), "bye".into())]
        );
        let bad = encode_client(OP_CLOSE, true, &1005u16.to_be_bytes(), MASK);
        assert_eq!(decode_all(&mut Decoder::new(), &bad).unwrap_err().code, close::PROTOCOL);
        let one = encode_client(OP_CLOSE, true, &[3], MASK);
        assert_eq!(decode_all(&mut Decoder::new(), &one).unwrap_err().code, close::PROTOCOL);
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.push(0xff);
        let f = encode_client(OP_CLOSE, true, &bad_reason, MASK);
        assert_eq!(decode_all(&mut Decoder::new(), &f).unwrap_err().code, close::BAD_DATA);
    }

    #[test]
    fn nothing_is_decoded_after_close() {
        let mut bytes = encode_client(OP_CLOSE, true, b"", MASK);
        bytes.extend(encode_client(OP_TEXT, true, b"late", MASK));
        assert_eq!(
            decode_all(&mut Decoder::new(), &bytes).unwrap(),
            vec![Incoming::Close(None, String::new())]
        );
    }

    #[test]
    fn continuation_without_start_and_reserved_bits_are_errors() {
        let cont = encode_client(OP_CONT, true, b"x", MASK);
        assert_eq!(decode_all(&mut Decoder::new(), &cont).unwrap_err().code, close::PROTOCOL);
        let mut rsv = encode_client(OP_TEXT, true, b"x", MASK);
        rsv[0] |= 0x40;
        assert_eq!(decode_all(&mut Decoder::new(), &rsv).unwrap_err().code, close::PROTOCOL);
        let reserved_op = encode_client(0x3, true, b"x", MASK);
        assert_eq!(decode_all(&mut Decoder::new(), &reserved_op).unwrap_err().code, close::PROTOCOL);
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let f = close_frame(1001, &"é".repeat(100));
        assert!(f.len() <= 127);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A client message and how it is cut into frames.
    fn message() -> impl Strategy<Value = (bool, Vec<u8>, Vec<usize>)> {
        (any::<bool>(), prop::collection::vec(any::<u8>(), 0..600), prop::collection::vec(1usize..200, 0..6))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn any_fragmentation_and_any_chunking_decode_to_the_same_messages(
            msgs in prop::collection::vec(message(), 1..6),
            chunk in 1usize..97,
            mask in any::<[u8; 4]>(),
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for (is_text, body, cuts) in &msgs {
                let body: Vec<u8> = if *is_text {
                    String::from_utf8_lossy(body).into_owned().into_bytes()
                } else {
                    body.clone()
                };
                let mut pieces = Vec::new();
                let mut rest = &body[..];
                for c in cuts {
                    let at = (*c).min(rest.len());
                    pieces.push(&rest[..at]);
                    rest = &rest[at..];
                }
                pieces.push(rest);
                for (i, p) in pieces.iter().enumerate() {
                    let op = if i > 0 { OP_CONT } else if *is_text { OP_TEXT } else { OP_BINARY };
                    wire.extend(encode_client(op, i + 1 == pieces.len(), p, mask));
                    if i == 0 {
                        wire.extend(encode_client(OP_PING, true, b"x", mask)); // control frames may interleave
                    }
                }
                let single = pieces.len() == 1;
                let whole = if *is_text {
                    Incoming::Text(String::from_utf8(body.clone()).unwrap())
                } else {
                    Incoming::Binary(body.clone())
                };
                // The ping follows the first frame: after the message if that frame completed it.
                if single {
                    expected.push(whole);
                    expected.push(Incoming::Ping(b"x".to_vec()));
                } else {
                    expected.push(Incoming::Ping(b"x".to_vec()));
                    expected.push(whole);
                }
            }
            let mut d = Decoder::new();
            let mut got = Vec::new();
            let limits = Limits { max_message: 1 << 20, max_fragments: 1000, deflate: false };
            for c in wire.chunks(chunk) {
                d.feed(c, limits, &mut |m| got.push(m)).unwrap();
            }
            prop_assert_eq!(got, expected);
        }

        /// A text message with perhaps one byte replaced, cut into frames and reads: the decoder
        /// fails with 1007 in the very read that brings the first byte that makes it invalid (or,
        /// for a message ending inside a character, the read that completes its last frame), and
        /// decodes it otherwise.
        #[test]
        fn invalid_utf8_fails_in_the_read_that_brings_the_bad_byte(
            chars in prop::collection::vec(any::<char>(), 0..150),
            corrupt in prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
            cuts in prop::collection::vec(1usize..200, 0..4),
            chunk in 1usize..97,
            mask in any::<[u8; 4]>(),
        ) {
            let mut body = chars.iter().collect::<String>().into_bytes();
            if let (Some((at, byte)), false) = (corrupt, body.is_empty()) {
                let at = at.index(body.len());
                body[at] = byte;
            }
            let mut wire = Vec::new();
            let mut wire_pos = Vec::with_capacity(body.len()); // wire offset of each body byte
            let mut rest = &body[..];
            let mut pieces = Vec::new();
            for c in &cuts {
                let at = (*c).min(rest.len());
                pieces.push(&rest[..at]);
                rest = &rest[at..];
            }
            pieces.push(rest);
            let mut fin_end = 0;
            for (i, p) in pieces.iter().enumerate() {
                let fin = i + 1 == pieces.len();
                let f = encode_client(if i == 0 { OP_TEXT } else { OP_CONT }, fin, p, mask);
                let start = wire.len() + f.len() - p.len();
                wire_pos.extend(start..start + p.len());
                wire.extend(f);
                if fin {
                    fin_end = wire.len() - 1;
                }
                if i == 0 {
                    wire.extend(encode_client(OP_PING, true, b"x", mask));
                }
            }
            // The first body byte at which the text is known to be invalid, as a wire offset.
            let decisive = (0..body.len())
                .find(|&k| matches!(std::str::from_utf8(&body[..=k]), Err(e) if e.error_len().is_some()))
                .map(|k| wire_pos[k])
                .or_else(|| std::str::from_utf8(&body).is_err().then_some(fin_end));
            let mut d = Decoder::new();
            let limits = Limits { max_message: 1 << 20, max_fragments: 100, deflate: false };
            let mut failed_at = None;
            let mut texts = Vec::new();
            for (i, c) in wire.chunks(chunk).enumerate() {
                if let Err(v) = d.feed(c, limits, &mut |m| if let Incoming::Text(t) = m { texts.push(t) }) {
                    prop_assert_eq!(v.code, close::BAD_DATA);
                    failed_at = Some(i);
                    break;
                }
            }
            prop_assert_eq!(failed_at, decisive.map(|w| w / chunk));
            if decisive.is_none() {
                prop_assert_eq!(texts, vec![String::from_utf8(body).unwrap()]);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000), chunk in 1usize..300) {
            let mut d = Decoder::new();
            let limits = Limits { max_message: 4096, max_fragments: 16, deflate: false };
            for c in bytes.chunks(chunk) {
                if let Err(v) = d.feed(c, limits, &mut |_| {}) {
                    prop_assert!(matches!(v.code, close::PROTOCOL | close::BAD_DATA | close::TOO_BIG));
                    break;
                }
            }
        }
    }
}
