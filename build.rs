//! Generates the C header (`include/embedchat.h`) and the PHP FFI header
//! (`bindings/php/embedchat.h`) from `src/ffi/` with cbindgen.
//!
//! Both land in OUT_DIR only: a build must not rewrite tracked files (cargo forbids it for
//! packaged crates, and it would hide a stale committed header). `tests/headers.rs` fails when the
//! committed copies differ; `scripts/bless-headers` copies the fresh ones over.
//!
//! It also gives the shared library its SONAME, `libembedchat.so.<CHAT_ABI_VERSION>` (see
//! `soname` below).

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

    soname(&dir, &out);
}

/// Every build of the cdylib, debug or release, by `cargo build` or `scripts/install`, carries
/// the SONAME `libembedchat.so.<CHAT_ABI_VERSION>`: a program linked against it records that
/// name (DT_NEEDED), so it loads any later library of the same ABI and refuses one of another
/// ABI, as with any C library. Set here rather than by scripts/install (or RUSTFLAGS) so the
/// library the tests, the PHP package and a developer's C host load is the one that ships, and
/// changing flags never rebuilds the whole dependency tree.
///
/// Because a program linked against `target/<profile>/libembedchat.so` then asks for
/// `libembedchat.so.2`, the build also leaves that name in the profile directory as a symlink
/// to `libembedchat.so`, as an installed library's soname link would be: `-L target/release
/// -Wl,-rpath,…` keeps working for programs built against the tree. It is the one file a build
/// writes outside OUT_DIR, and only inside cargo's own target directory.
fn soname(dir: &std::path::Path, out: &std::path::Path) {
    // ELF platforms with a GNU-style linker only: macOS names a library with -install_name
    // and Windows has no SONAME.
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if !matches!(os.as_str(), "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly") {
        return;
    }
    let soname = format!("libembedchat.so.{}", abi_version(dir));
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    // A build id names the library's detached debug file (scripts/install puts it under
    // lib/debug/.build-id/), for gdb, eu-stack and debuginfod. Debian's gcc passes it already;
    // asked for here so no other toolchain leaves it out.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--build-id");

    // OUT_DIR is <target>/<profile>/build/embedchat-<hash>/out; cargo puts the cdylib in
    // <target>/<profile>. With a separate `build-dir` this lands beside the intermediate
    // files instead, where it does no harm.
    let Some(profile_dir) = out.ancestors().nth(3) else { return };
    if !profile_dir.join("build").is_dir() {
        return;
    }
    let link = profile_dir.join(&soname);
    if std::fs::read_link(&link).is_ok_and(|t| t == std::path::Path::new("libembedchat.so")) {
        return;
    }
    let _ = std::fs::remove_file(&link);
    // Dangling until cargo links the library right after this script: that is fine.
    #[cfg(unix)]
    if let Err(e) = std::os::unix::fs::symlink("libembedchat.so", &link) {
        println!("cargo:warning=could not create {}: {e}", link.display());
    }
}

/// `CHAT_ABI_VERSION` as written in src/ffi/strings.rs (a build script cannot use the crate it
/// builds). The build fails rather than guess when the line is not found.
fn abi_version(dir: &std::path::Path) -> u32 {
    let path = dir.join("src/ffi/strings.rs");
    let src = std::fs::read_to_string(&path).expect("src/ffi/strings.rs");
    src.lines()
        .find_map(|l| {
            l.trim().strip_prefix("pub const CHAT_ABI_VERSION: u32 = ")?.strip_suffix(';')?.parse().ok()
        })
        .expect("`pub const CHAT_ABI_VERSION: u32 = N;` in src/ffi/strings.rs")
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
