//! permessage-deflate (RFC 7692) over real sockets: negotiation, a broadcast compressed once
//! for every member that negotiated it (plain for the others), compressed client messages, and
//! a compression bomb closed with 1009 before it costs memory.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{json, Value};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// An upgraded raw connection and the response head.
fn client(port: u16, query: &str, extra: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(upgrade_request(&format!("/ws?{query}"), "x", extra).as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (s, head)
}

/// The next frame: (RSV1 set, opcode, payload).
fn frame(s: &mut TcpStream) -> (bool, u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    let mut len = (h[1] & 0x7f) as usize;
    if len == 126 {
        let mut l = [0u8; 2];
        s.read_exact(&mut l).unwrap();
        len = u16::from_be_bytes(l) as usize;
    } else if len == 127 {
        let mut l = [0u8; 8];
        s.read_exact(&mut l).unwrap();
        len = u64::from_be_bytes(l) as usize;
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    (h[0] & 0x40 != 0, h[0] & 0x0f, body)
}

fn inflate(z: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = z.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    out
}

fn deflate(text: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(text.len() + 64);
    c.compress_vec(text, &mut out, FlushCompress::Sync).unwrap();
    out.truncate(out.len() - 4);
    out
}

/// A masked client frame, RSV1 set when `compressed`.
fn client_frame(payload: &[u8], compressed: bool) -> Vec<u8> {
    let mut f = vec![0x81 | if compressed { 0x40 } else { 0 }];
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// The next `message` frame's JSON, inflated if it came compressed; and whether it did.
fn next_message(s: &mut TcpStream) -> (Value, bool) {
    loop {
        let (rsv1, op, body) = frame(s);
        if op != 1 {
            continue;
        }
        let text = if rsv1 { inflate(&body) } else { body };
        let v: Value = serde_json::from_slice(&text).unwrap();
        if v["type"] == "message" {
            return (v, rsv1);
        }
    }
}

#[test]
fn a_broadcast_is_compressed_once_for_those_who_asked_and_plain_for_the_rest() {
    let e = engine(json!({}));
    let (mut zipped, head) = client(e.port(), "name=zip", OFFER);
    frame(&mut zipped); // the welcome: it is in the room
    assert!(
        head.to_lowercase().contains(
            "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ),
        "{head}"
    );
    let (mut plain, head) = client(e.port(), "name=plain", "");
    assert!(!head.to_lowercase().contains("sec-websocket-extensions"), "{head}");
    frame(&mut plain);

    let long = "the quick brown fox jumps over the lazy dog ".repeat(40);
    e.broadcast(Some("lobby"), &long).unwrap();
    let (a, compressed) = next_message(&mut zipped);
    assert!(compressed, "a long message goes out compressed");
    assert_eq!(a["text"], long.as_str());
    let (b, compressed) = next_message(&mut plain);
    assert!(!compressed);
    assert_eq!(b["text"], long.as_str());

    // The client's own compressed message is understood, and counted as one message.
    zipped.write_all(&client_frame(&deflate(long.as_bytes()), true)).unwrap();
    let (m, _) = next_message(&mut plain);
    assert_eq!((m["text"].as_str(), m["from"]["name"].as_str()), (Some(long.as_str()), Some("zip")));
}

#[test]
fn a_compression_bomb_is_closed_with_1009_and_compression_can_be_turned_off() {
    let e = engine(json!({"max_message_bytes": 65536}));
    let (mut s, _) = client(e.port(), "name=bomb", OFFER);
    let bomb = deflate(&vec![b'a'; 50 << 20]); // 50 MiB of 'a' in ~50 KiB
    assert!(bomb.len() < 65536);
    s.write_all(&client_frame(&bomb, true)).unwrap();
    assert_eq!(raw_close_code(&mut s), Some(1009));
    assert!(e.stats().protocol_errors >= 1);

    // RSV1 without the extension is a protocol error.
    let (mut s, _) = client(e.port(), "name=rude", "");
    s.write_all(&client_frame(&deflate(b"hello there hello there"), true)).unwrap();
    assert_eq!(raw_close_code(&mut s), Some(1002));

    let off = engine(json!({"compression": false}));
    let (_s, head) = client(off.port(), "name=x", OFFER);
    assert!(!head.to_lowercase().contains("sec-websocket-extensions"), "{head}");
}
