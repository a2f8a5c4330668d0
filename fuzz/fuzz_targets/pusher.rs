//! Pusher client frames into the Pusher parser (and a presence subscription's channel_data):
//! malformed, nested or huge JSON must give a `pusher:error`, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    embedchat::fuzzing::pusher(text);
});
