//! The committed headers must be exactly what build.rs generates from src/ffi/.

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
