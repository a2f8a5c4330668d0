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
    pub const KICKED: u16 = 4000;
    /// The host refused the connection's first room (`join_hook`).
    pub const JOIN_REFUSED: u16 = 4003;
}

/// One unmasked server frame, FIN set, ready to write as is.
pub fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut b = BytesMut::with_capacity(len + 10);
    b.put_u8(0x80 | opcode);
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
    /// Prefix of a fragmented text message already known to be valid UTF-8.
    utf8_checked: usize,
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
        if d[0] & 0x70 != 0 {
            return Err(violation(close::PROTOCOL, "reserved bits set without an extension"));
        }
        let op = d[0] & 0x0f;
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
            self.message = Vec::with_capacity(if fin { len } else { len.max(256) });
        }
        self.fragments += 1;
        let start = self.message.len();
        self.message.extend_from_slice(payload);
        unmask_in_place(&mut self.message[start..], mask);

        if self.message_op == Some(OP_TEXT) {
            self.check_utf8(fin)?;
        }
        if !fin {
            return Ok(Some((used, None)));
        }
        let op = self.message_op.take().unwrap_or(OP_BINARY);
        let body = std::mem::take(&mut self.message);
        self.fragments = 0;
        self.utf8_checked = 0;
        let msg = if op == OP_TEXT {
            // check_utf8(fin = true) validated the whole message.
            Incoming::Text(String::from_utf8(body).map_err(|_| violation(close::BAD_DATA, "invalid UTF-8"))?)
        } else {
            Incoming::Binary(body)
        };
        Ok(Some((used, Some(msg))))
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

    const LIM: Limits = Limits { max_message: 1 << 20, max_fragments: 100 };
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
            let limits = Limits { max_message: 1 << 20, max_fragments: 1000 };
            for c in wire.chunks(chunk) {
                d.feed(c, limits, &mut |m| got.push(m)).unwrap();
            }
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000), chunk in 1usize..300) {
            let mut d = Decoder::new();
            let limits = Limits { max_message: 4096, max_fragments: 16 };
            for c in bytes.chunks(chunk) {
                if let Err(v) = d.feed(c, limits, &mut |_| {}) {
                    prop_assert!(matches!(v.code, close::PROTOCOL | close::BAD_DATA | close::TOO_BIG));
                    break;
                }
            }
        }
    }
}
