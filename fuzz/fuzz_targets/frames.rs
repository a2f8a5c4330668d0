//! Client bytes into the WebSocket frame decoder, cut at a fuzzer-chosen point: it must decode
//! or refuse with a close code, never panic, loop or blow up.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    let (split, data) = input;
    embedchat::fuzzing::frames(data, split as usize);
});
