//! The frame decoder and encoders, case by case.

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
    assert_eq!(decode_all(&mut Decoder::new(), &bytes).unwrap(), vec![Incoming::Close(None, String::new())]);
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
