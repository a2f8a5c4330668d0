//! Client text into the command parser: malformed, deeply nested or huge JSON must give an
//! error reply, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    embedchat::fuzzing::command(text);
});
