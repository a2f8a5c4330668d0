//! The committed headers must be exactly what build.rs generates from src/ffi/, and the layout
//! of the public structs must be the one recorded for the current `CHAT_ABI_VERSION`.

use embedchat::ffi::{chat_event, CHAT_ABI_VERSION};

fn check(generated: &str, committed_path: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(committed_path);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if std::env::var_os("EMBEDCHAT_BLESS").is_some() {
        std::fs::write(&path, generated).unwrap();
        return;
    }
    assert!(
        committed == generated,
        "{committed_path} is stale: the C ABI in src/ffi/ changed. Run scripts/bless-headers and commit the result."
    );
}

#[test]
fn c_header_is_up_to_date() {
    check(include_str!(concat!(env!("OUT_DIR"), "/embedchat.h")), "include/embedchat.h");
}

#[test]
fn php_header_is_up_to_date() {
    check(include_str!(concat!(env!("OUT_DIR"), "/embedchat_php.h")), "bindings/php/embedchat.h");
}

#[test]
fn php_header_has_no_preprocessor_lines() {
    let php = include_str!("../bindings/php/embedchat.h");
    assert!(!php.lines().any(|l| l.trim_start().starts_with('#')), "FFI::cdef cannot parse # lines");
    assert!(!php.contains("extern \"C\""), "FFI::cdef cannot parse extern \"C\"");
}

/// The fingerprint file: one line per ABI version, pointer width and public struct.
const LAYOUT_FILE: &str = "include/abi-layout.txt";

/// "NAME size=S align=A field@offset:size …" for a struct, fields by offset.
macro_rules! layout {
    ($t:ident { $($f:ident),+ $(,)? }) => {{
        // An exhaustive pattern (no `..`): a field added to the struct but not listed here
        // stops this file from compiling. Listing fields by hand could otherwise miss one that
        // fits into padding and moves neither the size nor any listed offset.
        #[allow(dead_code)]
        fn every_field_is_listed(v: $t) {
            let $t { $($f: _),+ } = v;
        }
        fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
            std::mem::size_of::<F>()
        }
        let mut fields = [$((stringify!($f), std::mem::offset_of!($t, $f), field_size(|s: &$t| &s.$f))),+];
        fields.sort_by_key(|&(_, offset, _)| offset);
        let mut line = format!("{} size={} align={}", stringify!($t), size_of::<$t>(), align_of::<$t>());
        for (name, offset, size) in fields {
            line += &format!(" {name}@{offset}:{size}");
        }
        line
    }};
}

/// The current layouts, each prefixed with its key "abi N W-bit".
fn current_layouts() -> Vec<String> {
    let key = format!("abi {CHAT_ABI_VERSION} {}-bit", usize::BITS);
    let event = layout!(chat_event {
        kind,
        seq,
        conn_id,
        msg_id,
        ts_ms,
        code,
        room,
        name,
        text,
        text_len,
        json,
        reply_token,
        user
    });
    vec![format!("{key} {event}")]
}

/// "abi N W-bit STRUCT": what a line is about (the rest is its layout).
fn entry_key(line: &str) -> String {
    line.split(' ').take(4).collect::<Vec<_>>().join(" ")
}

/// Every public struct's layout is recorded for the current ABI version, and matches: a layout
/// that changes without a new `CHAT_ABI_VERSION` would let a binding written for one layout read
/// another library's struct (as `user` once did). With EMBEDCHAT_BLESS (scripts/bless-headers)
/// a missing entry is appended; a recorded one is never rewritten.
#[test]
fn the_layout_of_chat_event_is_the_one_recorded_for_its_abi_version() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(LAYOUT_FILE);
    let mut recorded = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{LAYOUT_FILE}: {e}"));
    let entries: Vec<&str> = recorded.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let newest = entries.iter().filter_map(|l| l.split(' ').nth(1)?.parse::<u32>().ok()).max().unwrap_or(0);
    assert!(
        newest <= CHAT_ABI_VERSION,
        "{LAYOUT_FILE} records ABI {newest}, but CHAT_ABI_VERSION is {CHAT_ABI_VERSION}: it never goes back"
    );
    let bless = std::env::var_os("EMBEDCHAT_BLESS").is_some();
    let mut missing = Vec::new();
    for now in current_layouts() {
        let key = entry_key(&now);
        match entries.iter().find(|l| entry_key(l) == key) {
            Some(old) if *old == now => {}
            Some(old) => panic!(
                "the layout of {} changed: bump CHAT_ABI_VERSION and record the new layout with \
                 scripts/bless-headers (an older version's entry in {LAYOUT_FILE} is never rewritten; \
                 only if ABI {CHAT_ABI_VERSION} was never released may its line be deleted by hand)\n\
                 recorded: {old}\n     now: {now}",
                key.rsplit(' ').next().unwrap_or_default()
            ),
            None if bless => missing.push(now),
            None => panic!(
                "{LAYOUT_FILE} has no entry for `{key}`: run scripts/bless-headers and commit it\n     now: {now}"
            ),
        }
    }
    if !missing.is_empty() {
        if !recorded.ends_with('\n') {
            recorded.push('\n');
        }
        for line in missing {
            recorded += &line;
            recorded.push('\n');
        }
        std::fs::write(&path, recorded).unwrap();
    }
}

/// The PHP package refuses a library whose ABI differs from its own: it must speak this one.
#[test]
fn the_php_package_speaks_the_current_abi_version() {
    let native = include_str!("../bindings/php/src/Native.php");
    let want = format!("public const ABI_VERSION = {CHAT_ABI_VERSION};");
    assert!(native.contains(&want), "bindings/php/src/Native.php must say `{want}` (CHAT_ABI_VERSION)");
}
