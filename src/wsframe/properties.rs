//! The frame decoder against any client message cut into any frames.

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
