//! Generates the C header (`include/embedchat.h`) and the PHP FFI header
//! (`bindings/php/embedchat.h`) from `src/ffi/` with cbindgen.
//!
//! Both land in OUT_DIR only: a build must not rewrite tracked files (cargo forbids it for
//! packaged crates, and it would hide a stale committed header). `tests/headers.rs` fails when the
//! committed copies differ; `scripts/bless-headers` copies the fresh ones over.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");

    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let c_header = generate(&dir, config.clone());
    std::fs::write(out.join("embedchat.h"), &c_header).unwrap();

    // PHP's FFI::cdef has no preprocessor: no #include, #define or include guard, no extern "C".
    let mut php = config;
    php.cpp_compat = false;
    php.include_guard = None;
    php.sys_includes.clear();
    php.header = Some(
        "/* embedchat for PHP FFI::cdef: the declarations of ../../include/embedchat.h without \
         preprocessor lines.\n * The comments there are the manual. */"
            .into(),
    );
    php.documentation = false;
    let mut php_header = String::new();
    for line in generate(&dir, php).lines().filter(|l| !l.trim_start().starts_with('#')) {
        if line.is_empty() && (php_header.is_empty() || php_header.ends_with("\n\n")) {
            continue; // the stripped lines leave runs of blank lines behind
        }
        php_header.push_str(line);
        php_header.push('\n');
    }
    let php_header = php_text_as_bytes(&php_header);
    std::fs::write(out.join("embedchat_php.h"), php_header).unwrap();
}

/// PHP's FFI turns a `const char *` field into a PHP string as soon as it is read, measured with
/// `strlen`: `chat_event.text` (which may contain NUL bytes, `text_len` is its length) would be
/// cut at its first NUL, so a word filter in PHP would see "" for "\0darn" while the whole text
/// is published. Declared `const uint8_t *` (same size and alignment, so the layout is the C
/// header's), the field stays a pointer and PHP reads exactly `text_len` bytes with
/// `FFI::string($ev->text, $ev->text_len)`. Only this field: the other strings have no NUL.
fn php_text_as_bytes(header: &str) -> String {
    const FIELD: &str = "  const char *text;\n";
    const BYTES: &str = "  const uint8_t *text; /* not char: PHP FFI would read it with strlen and \
                         stop at a NUL; read text_len bytes with FFI::string */\n";
    let start = header.find("typedef struct chat_event {").expect("chat_event in the PHP header");
    let end = start + header[start..].find("} chat_event;").expect("the end of chat_event");
    let body = &header[start..end];
    // Fail the build rather than quietly bring the strlen read back if the field is renamed.
    assert_eq!(body.matches(FIELD).count(), 1, "chat_event.text is no longer `const char *text;`");
    format!("{}{}{}", &header[..start], body.replace(FIELD, BYTES), &header[end..])
}

fn generate(dir: &std::path::Path, config: cbindgen::Config) -> String {
    let mut buf = Vec::new();
    // Only the C surface (cbindgen follows the `mod` lines of src/ffi/mod.rs): the rest of the
    // crate is Rust-only and must not leak into the header.
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/ffi/mod.rs"))
        .generate()
        .expect("cbindgen could not generate the header")
        .write(&mut buf);
    String::from_utf8(buf).unwrap()
}
