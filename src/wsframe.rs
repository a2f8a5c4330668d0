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
mod tests;

#[cfg(test)]
mod properties;
