//! permessage-deflate (RFC 7692): the negotiation, and deflating and inflating one message.
//!
//! Both directions run without context takeover: the server declares
//! `server_no_context_takeover` (so a broadcast is compressed once and the same bytes go to
//! every member that negotiated the extension, as uWebSockets' shared compressor does) and
//! `client_no_context_takeover` (so a client's message inflates without its predecessors). No
//! connection keeps compression state: the compressors and the inflater belong to the network
//! thread and are reset for each message. The backend is flate2 on zlib-rs (pure Rust, and
//! unlike miniz_oxide it honours `server_max_window_bits`).

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What a sync flush ends with; RFC 7692 7.2.1 has the sender strip it and the receiver add it.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Messages shorter than this go out uncompressed: deflate's own overhead would eat the gain.
pub const MIN_SIZE: usize = 64;

/// The agreed parameters of a connection that negotiated permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The LZ77 window our compressor may use (the client's `server_max_window_bits`).
    pub window_bits: u8,
}

/// Picks the first permessage-deflate offer in `Sec-WebSocket-Extensions` (all its lines) that
/// this server can honour; returns what was agreed and the response header value. An offer with
/// an unknown, repeated or out-of-range parameter is declined (RFC 7692 7.1), as is
/// `server_max_window_bits=8`, which zlib cannot produce for raw deflate.
pub fn negotiate<'a>(offers: impl Iterator<Item = &'a str>) -> Option<(Agreed, String)> {
    for offer in offers.flat_map(|line| line.split(',')) {
        let mut parts = offer.split(';').map(str::trim);
        if !parts.next().is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate")) {
            continue;
        }
        if let Some(agreed) = accept(parts) {
            let mut response =
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover".to_string();
            if let Some(bits) = agreed.1 {
                response.push_str(&format!("; server_max_window_bits={bits}"));
            }
            return Some((agreed.0, response));
        }
    }
    None
}

/// The parameters of one offer, if acceptable: the agreement and the `server_max_window_bits`
/// to echo.
fn accept<'a>(params: impl Iterator<Item = &'a str>) -> Option<(Agreed, Option<u8>)> {
    let mut seen: Vec<&str> = Vec::new();
    let mut server_bits = None;
    for p in params {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (p, None),
        };
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        match (name, value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(v)) => {
                let bits: u8 = v.parse().ok().filter(|b| (9..=15).contains(b))?;
                server_bits = Some(bits);
            }
            // Any window the client likes: we inflate with the largest.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))?;
            }
            _ => return None,
        }
    }
    Some((Agreed { window_bits: server_bits.unwrap_or(15) }, server_bits))
}

thread_local! {
    /// One compressor per window size, reset for each message.
    static DEFLATERS: RefCell<Vec<(u8, Compress)>> = const { RefCell::new(Vec::new()) };
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// `payload` deflated as one message (tail stripped), or None when that would not be smaller.
pub fn compress(payload: &[u8], window_bits: u8) -> Option<Vec<u8>> {
    if payload.len() < MIN_SIZE {
        return None;
    }
    DEFLATERS.with(|d| {
        let mut d = d.borrow_mut();
        let i = match d.iter().position(|(b, _)| *b == window_bits) {
            Some(i) => i,
            None => {
                // Level 3: most of level 6's ratio on chat text at a fraction of its time.
                d.push((
                    window_bits,
                    Compress::new_with_window_bits(Compression::new(3), false, window_bits),
                ));
                d.len() - 1
            }
        };
        let c = &mut d[i].1;
        c.reset();
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        loop {
            let done = c.total_in() as usize;
            c.compress_vec(&payload[done..], &mut out, FlushCompress::Sync).ok()?;
            if c.total_in() as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        (out.len() < payload.len()).then_some(out)
    })
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the limit (a compression bomb, or just too big).
    TooBig,
    /// Not valid deflate data.
    Corrupt,
}

/// Inflates one message, refusing as soon as it passes `max` bytes (never allocating more).
pub fn inflate(payload: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
    INFLATER.with(|i| {
        let mut i = i.borrow_mut();
        let d = i.get_or_insert_with(|| Decompress::new_with_window_bits(false, 15));
        d.reset(false);
        let mut out = Vec::with_capacity((payload.len() * 3).clamp(64, max + 1));
        for input in [payload, &TAIL[..]] {
            let start = d.total_in();
            loop {
                let done = (d.total_in() - start) as usize;
                let status = d
                    .decompress_vec(&input[done..], &mut out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                if out.len() > max {
                    return Err(InflateError::TooBig);
                }
                let consumed = (d.total_in() - start) as usize == input.len();
                if status == Status::StreamEnd || (consumed && out.len() < out.capacity()) {
                    break;
                }
                if out.len() == out.capacity() {
                    // Room for more, but never past the limit plus one byte (to notice passing it).
                    let grow = out.capacity().min(max + 1 - out.len());
                    if grow == 0 {
                        return Err(InflateError::TooBig);
                    }
                    out.reserve_exact(grow);
                } else if status == Status::BufError {
                    break; // needs more input than this part has
                }
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_acceptable_offer_is_taken() {
        let (a, r) = negotiate(["permessage-deflate; client_max_window_bits"].into_iter()).unwrap();
        assert_eq!(a.window_bits, 15);
        assert_eq!(r, "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
        let (a, r) = negotiate(
            ["permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10"]
                .into_iter(),
        )
        .unwrap();
        assert_eq!(a.window_bits, 10, "8 is declined, the next offer taken");
        assert!(r.ends_with("server_max_window_bits=10"));
        for bad in [
            "permessage-deflate; colour",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=20",
            "x-webkit-deflate-frame",
        ] {
            assert!(negotiate([bad].into_iter()).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_message_round_trips_and_small_ones_stay_plain() {
        let text =
            r#"{"type":"message","room":"lobby","text":"hello hello hello hello hello hello"}"#.repeat(4);
        let z = compress(text.as_bytes(), 15).unwrap();
        assert!(z.len() < text.len() / 2, "{} of {}", z.len(), text.len());
        assert_eq!(inflate(&z, 1 << 20).unwrap(), text.as_bytes());
        assert!(compress(b"hi", 15).is_none());
        let z9 = compress(text.as_bytes(), 9).unwrap();
        assert_eq!(inflate(&z9, 1 << 20).unwrap(), text.as_bytes());
    }

    #[test]
    fn a_compression_bomb_is_refused_before_it_is_inflated() {
        let bomb = compress(&vec![b'a'; 10 << 20], 15).unwrap();
        assert!(bomb.len() < 20_000);
        assert_eq!(inflate(&bomb, 64 * 1024), Err(InflateError::TooBig));
        assert_eq!(inflate(&[0xff, 0xff, 0xff], 1024), Err(InflateError::Corrupt));
    }
}
