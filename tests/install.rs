//! Installed like a C library (issue 16): `scripts/install` into a temporary prefix, a C host
//! built with nothing but `pkg-config --cflags --libs embedchat` and run against a real client,
//! PHP finding the installed library with EMBEDCHAT_LIB unset, and the Debian packages of
//! `scripts/package-deb`, inspected, unpacked and installed into a throwaway dpkg root.
//!
//! Every external command runs under coreutils' `timeout`, which signals its whole process
//! group (a cargo or gcc started by a script ends with it). Nothing is installed into the
//! system: the prefix lives in cargo's per-project temporary directory (target/tmp), and the
//! packages go into a dpkg root of their own (`dpkg --root`); `apt-get install` only simulates.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use common::*;
use embedchat::ffi::CHAT_ABI_VERSION;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `program` under `timeout -k 10 SECONDS`.
fn bounded(seconds: u32, program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-k", "10", &seconds.to_string()]).arg(program);
    c
}

/// Runs `cmd`; panics with its output unless it exits 0; returns its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}; 124 = timed out)\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// One of the repository's scripts, offline: installing must not need the network (the crates
/// are in cargo's cache since this test was built; a stale release build is rebuilt from them).
fn script(name: &str, seconds: u32) -> Command {
    let mut c = bounded(seconds, root().join(name));
    c.current_dir(root()).env("CARGO_NET_OFFLINE", "true").env_remove("DESTDIR");
    c
}

/// An empty directory in cargo's temporary directory for this project's tests.
fn fresh_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("install").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The prefix `scripts/install --prefix` installed into, once per test run (it builds the
/// release library first when target/release is stale: scripts/test builds it beforehand).
fn prefix() -> &'static Path {
    static PREFIX: OnceLock<PathBuf> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let prefix = fresh_dir("prefix");
        ok(script("scripts/install", 1800).arg("--prefix").arg(&prefix));
        prefix
    })
}

fn real_name() -> String {
    format!(
        "libembedchat.so.{CHAT_ABI_VERSION}.{}.{}",
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH")
    )
}

fn soname() -> String {
    format!("libembedchat.so.{CHAT_ABI_VERSION}")
}

/// pkg-config's answer for embedchat with only `pc_dir` added to its search path.
fn pkg_config(pc_dir: &Path, args: &[&str]) -> String {
    ok(bounded(60, "pkg-config").args(args).arg("embedchat").env("PKG_CONFIG_PATH", pc_dir))
        .trim()
        .to_string()
}

/// The dynamic section's entries of one kind (`NEEDED`, `SONAME`) as `readelf -d` shows them.
fn dynamic(file: &Path, kind: &str) -> Vec<String> {
    ok(bounded(60, "readelf").arg("-d").arg(file))
        .lines()
        .filter(|l| l.contains(&format!("({kind})")))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_string()))
        .collect()
}

/// A copy of examples/c/host.c in `dir`: nothing of the repository next to it for `#include
/// "embedchat.h"` to find by accident.
fn host_source(dir: &Path) -> PathBuf {
    let src = dir.join("host.c");
    std::fs::copy(root().join("examples/c/host.c"), &src).unwrap();
    src
}

fn gcc(src: &Path, out: &Path, flags: &str) {
    ok(bounded(300, "gcc")
        .args(["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror"])
        .arg(src)
        .arg("-o")
        .arg(out)
        .args(flags.split_whitespace()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_host_built_with_only_pkg_config_serves_a_real_client() {
    let prefix = prefix();
    let pc = prefix.join("lib/pkgconfig");
    let flags = pkg_config(&pc, &["--cflags", "--libs"]);
    for path in flags.split_whitespace().filter_map(|f| f.strip_prefix("-I").or(f.strip_prefix("-L"))) {
        assert!(Path::new(path).starts_with(prefix), "{flags}: every -I/-L is in the prefix");
    }
    let dir = fresh_dir("c-host");
    let bin = dir.join("host");
    gcc(&host_source(&dir), &bin, &flags);
    assert_eq!(
        dynamic(&bin, "NEEDED").iter().filter(|n| n.starts_with("libembedchat")).collect::<Vec<_>>(),
        [&soname()]
    );

    // No rpath: the loader finds the installed library through the linker path, as after
    // ldconfig; LD_LIBRARY_PATH stands for that here.
    let lib = prefix.join("lib");
    let ldd = ok(bounded(60, "ldd").arg(&bin).env("LD_LIBRARY_PATH", &lib));
    let expected = format!("{} => {}", soname(), lib.join(soname()).display());
    assert!(ldd.contains(&expected), "{ldd}");
    let child = Command::new(&bin)
        .arg("127.0.0.1:0")
        .env("LD_LIBRARY_PATH", &lib)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    time_bot_scenario(child, "server time: ").await;
}

#[test]
fn the_installed_library_is_named_by_its_abi_stripped_and_needs_only_libc() {
    let lib = prefix().join("lib");
    let real = lib.join(real_name());
    assert_eq!(dynamic(&real, "SONAME"), [soname()]);
    assert_eq!(std::fs::read_link(lib.join(soname())).unwrap(), Path::new(&real_name()));
    assert_eq!(std::fs::read_link(lib.join("libembedchat.so")).unwrap(), Path::new(&soname()));
    // libc, and libgcc_s for the unwinder the panic boundary needs (in every glibc system).
    for needed in dynamic(&real, "NEEDED") {
        assert!(
            ["libc.so.6", "libgcc_s.so.1", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1"]
                .contains(&needed.as_str())
                || needed.starts_with("ld-linux"),
            "{real:?} needs {needed}"
        );
    }

    let sections = ok(bounded(60, "readelf").args(["-S", "-W"]).arg(&real));
    assert!(!sections.contains(".debug_"), "debug sections left in the installed library");
    assert!(!sections.contains(" .symtab "), "the static symbol table is left in the installed library");
    let built = std::fs::metadata(lib_dir().parent().unwrap().join("release/libembedchat.so")).unwrap().len();
    let installed = std::fs::metadata(&real).unwrap().len();
    assert!(installed * 3 < built, "installed {installed} bytes of the {built}-byte build: not lean");

    // The debug information, by build id, where gdb and eu-stack look for it.
    let notes = ok(bounded(60, "readelf").arg("-n").arg(&real));
    let id = notes.lines().find_map(|l| l.trim().strip_prefix("Build ID: ")).expect("a build id").trim();
    let debug = prefix().join(format!("lib/debug/.build-id/{}/{}.debug", &id[..2], &id[2..]));
    let debug_sections = ok(bounded(60, "readelf").args(["-S", "-W"]).arg(&debug));
    assert!(debug_sections.contains(".debug_line"), "{debug:?} has no line tables");
    assert!(debug_sections.contains(".symtab"), "{debug:?} has no symbol table");
}

#[test]
fn the_pc_files_version_is_the_crates_version() {
    let pc = prefix().join("lib/pkgconfig");
    assert_eq!(pkg_config(&pc, &["--modversion"]), VERSION);
    let header = prefix().join("include/embedchat.h");
    assert_eq!(std::fs::read(&header).unwrap(), std::fs::read(root().join("include/embedchat.h")).unwrap());
    assert_eq!(pkg_config(&pc, &["--variable=includedir"]), prefix().join("include").to_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_static_library_links_with_the_pc_files_private_libraries() {
    let prefix = prefix();
    let pc = prefix.join("lib/pkgconfig");
    // `-l:libembedchat.a`: with the shared library next to it, -lembedchat would pick that one.
    let flags = format!("{} {}", pkg_config(&pc, &["--cflags"]), pkg_config(&pc, &["--static", "--libs"]))
        .replace("-lembedchat", "-l:libembedchat.a");
    let dir = fresh_dir("c-static");
    let bin = dir.join("host");
    gcc(&host_source(&dir), &bin, &flags);
    assert!(!dynamic(&bin, "NEEDED").iter().any(|n| n.starts_with("libembedchat")), "linked statically");
    let child = Command::new(&bin).arg("127.0.0.1:0").stdout(Stdio::piped()).spawn().unwrap();
    time_bot_scenario(child, "server time: ").await;
}

/// Copies the PHP package the way Composer's path repository does (into vendor/): no
/// repository build beside it.
fn php_package_copy(name: &str) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &to.join(entry.file_name()));
            } else {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
    let site = fresh_dir(name);
    let package = site.join("vendor/embedchat/embedchat");
    for part in ["src", "bin"] {
        copy(&root().join("bindings/php").join(part), &package.join(part));
    }
    for file in ["autoload.php", "composer.json", "embedchat.h", "preload.php"] {
        std::fs::copy(root().join("bindings/php").join(file), package.join(file)).unwrap();
    }
    package
}

/// Runs tests/php/installed_probe.php; returns its "key value" lines.
fn probe(php_args: &[&str], package: &Path, env: &[(&str, &Path)]) -> Vec<(String, String)> {
    let mut cmd = bounded(60, "php");
    cmd.args(php_args)
        .arg(root().join("tests/php/installed_probe.php"))
        .arg(package)
        .env_remove("EMBEDCHAT_LIB")
        .env_remove("LD_LIBRARY_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    ok(&mut cmd)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

fn value<'a>(lines: &'a [(String, String)], key: &str) -> &'a str {
    &lines.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no {key} in {lines:?}")).1
}

#[test]
fn php_finds_the_installed_library_on_the_linker_path_without_embedchat_lib() {
    let lib = prefix().join("lib");
    let lines = probe(&[], &php_package_copy("php-linker-path"), &[("LD_LIBRARY_PATH", lib.as_path())]);
    assert_eq!(value(&lines, "scope"), "no");
    // By soname through the linker path, reported as the soname link (follows upgrades).
    assert_eq!(value(&lines, "found"), lib.join(soname()).to_str().unwrap());
    assert_eq!(value(&lines, "mapped"), lib.join(real_name()).to_str().unwrap());
    assert!(value(&lines, "port").parse::<u16>().unwrap() > 0);
}

#[test]
fn php_loads_the_installed_library_through_the_installed_ffi_preload_header() {
    let header = prefix().join(format!("share/embedchat/{CHAT_ABI_VERSION}/embedchat-ffi.h"));
    // The same text EmbedChat\Native::scopedHeader gives (bin/ffi-header.php prints it).
    let lib = prefix().join("lib").join(soname());
    let expected = ok(bounded(60, "php").arg(root().join("bindings/php/bin/ffi-header.php")).arg(&lib));
    assert_eq!(std::fs::read_to_string(&header).unwrap(), expected);
    assert_eq!(
        std::fs::read(prefix().join(format!("share/embedchat/{CHAT_ABI_VERSION}/embedchat.h"))).unwrap(),
        std::fs::read(root().join("bindings/php/embedchat.h")).unwrap()
    );

    // As php.ini's ffi.preload in FPM: no linker path, no EMBEDCHAT_LIB, the header's FFI_LIB.
    let preload = format!("ffi.preload={}", header.display());
    let lines = probe(&["-d", &preload], &php_package_copy("php-preload"), &[]);
    assert_eq!(value(&lines, "scope"), "yes");
    assert_eq!(value(&lines, "mapped"), prefix().join("lib").join(real_name()).to_str().unwrap());
}

/// Every file and symlink under `dir`, as paths relative to it.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                walk(base, &entry.path(), out);
            } else {
                out.insert(entry.path().strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn destdir_stages_exactly_the_prefix_tree_without_naming_destdir_and_the_same_bytes_again() {
    let first = prefix(); // also makes sure the release build exists
    let stage = fresh_dir("destdir");
    ok(script("scripts/install", 300)
        .args(["--prefix", "/opt/embedchat", "--no-build"])
        .env("DESTDIR", &stage));

    let staged = files(&stage);
    let id = |p: &Path| p.to_str().unwrap().contains("/.build-id/");
    let mut expected: BTreeSet<PathBuf> = [
        format!("lib/{}", real_name()),
        format!("lib/{}", soname()),
        "lib/libembedchat.so".into(),
        "lib/libembedchat.a".into(),
        "lib/pkgconfig/embedchat.pc".into(),
        "include/embedchat.h".into(),
        format!("share/embedchat/{CHAT_ABI_VERSION}/embedchat.h"),
        format!("share/embedchat/{CHAT_ABI_VERSION}/embedchat-ffi.h"),
    ]
    .iter()
    .map(|p| Path::new("opt/embedchat").join(p))
    .collect();
    let debug: Vec<_> = staged.iter().filter(|p| id(p)).cloned().collect();
    assert_eq!(debug.len(), 1, "one debug file: {staged:?}");
    assert!(debug[0].starts_with("opt/embedchat/lib/debug/.build-id"), "{debug:?}");
    expected.extend(debug);
    assert_eq!(staged, expected, "nothing outside DESTDIR/PREFIX, nothing missing");

    let opt = stage.join("opt/embedchat");
    for text in ["lib/pkgconfig/embedchat.pc", &format!("share/embedchat/{CHAT_ABI_VERSION}/embedchat-ffi.h")]
    {
        let content = std::fs::read_to_string(opt.join(text)).unwrap();
        assert!(!content.contains(stage.to_str().unwrap()), "{text} names DESTDIR:\n{content}");
        assert!(content.contains("/opt/embedchat"), "{text} names the prefix");
    }
    // Symlinks relative, so the staged tree means the same wherever it is unpacked.
    assert_eq!(std::fs::read_link(opt.join("lib").join(soname())).unwrap(), Path::new(&real_name()));
    // The same build installs the same bytes (the static archive is deterministic too).
    for file in [real_name(), "libembedchat.a".to_string()] {
        assert!(
            std::fs::read(opt.join("lib").join(&file)).unwrap()
                == std::fs::read(first.join("lib").join(&file)).unwrap(),
            "{file} differs between two installs of one build"
        );
    }
}

#[test]
fn the_example_makefile_uses_pkg_config_when_it_knows_embedchat_and_the_build_tree_otherwise() {
    let pc = prefix().join("lib/pkgconfig");
    let makefile = root().join("examples/c/Makefile");
    let make = |dir: &Path, pc_path: &Path, dry: bool| {
        let mut cmd = bounded(300, "make");
        cmd.arg("-f").arg(&makefile).arg("-C").arg(dir).env("PKG_CONFIG_PATH", pc_path);
        if dry {
            cmd.arg("-n");
        }
        if pc_path.as_os_str().is_empty() {
            cmd.env("PKG_CONFIG_LIBDIR", "/nonexistent"); // hide an embedchat installed in the system
        }
        ok(&mut cmd)
    };
    let dir = fresh_dir("make");
    let tree = make(&dir, Path::new(""), true);
    assert!(tree.contains(&format!("-I{}", root().join("include").display())), "{tree}");
    assert!(tree.contains(&format!("-L{}", root().join("target/release").display())), "{tree}");

    let installed = make(&dir, &pc, false);
    assert!(installed.contains("embedchat from the pkg-config"), "{installed}");
    assert!(installed.contains(&format!("-I{}", prefix().join("include").display())), "{installed}");
    assert!(!installed.contains(&root().join("include").display().to_string()), "{installed}");
    assert_eq!(
        dynamic(&dir.join("host"), "NEEDED").iter().filter(|n| n.starts_with("libembedchat")).count(),
        1
    );
}

/// `dpkg-deb -f DEB FIELD`.
fn field(deb: &Path, name: &str) -> String {
    ok(bounded(60, "dpkg-deb").arg("-f").arg(deb).arg(name)).trim().to_string()
}

/// The entries of `dpkg-deb -c DEB`: (owner/group, path) with symlink targets after " -> ".
fn contents(deb: &Path) -> Vec<(String, String)> {
    ok(bounded(60, "dpkg-deb").arg("-c").arg(deb))
        .lines()
        .map(|l| {
            let owner = l.split_whitespace().nth(1).unwrap_or_default().to_string();
            let path = l.split_once(" ./").map(|(_, p)| format!("./{p}")).unwrap_or_default();
            (owner, path)
        })
        .collect()
}

#[test]
fn the_debian_packages_hold_the_prefix_tree_depend_on_libc_only_and_install_into_a_dpkg_root() {
    prefix(); // the release build
    let arch = ok(bounded(60, "dpkg").arg("--print-architecture")).trim().to_string();
    let multiarch = ok(bounded(60, "dpkg-architecture").arg("-qDEB_HOST_MULTIARCH")).trim().to_string();
    let out = lib_dir().parent().unwrap().join("debian");
    let lib_pkg = format!("libembedchat{CHAT_ABI_VERSION}");
    let debs = |names: &[&str]| -> Vec<PathBuf> {
        names.iter().map(|n| out.join(format!("{n}_{VERSION}_{arch}.deb"))).collect()
    };
    let all = debs(&[&lib_pkg, "libembedchat-dev", &format!("{lib_pkg}-dbgsym")]);
    ok(script("scripts/package-deb", 900).arg("--no-build"));
    let first: Vec<Vec<u8>> = all.iter().map(|d| std::fs::read(d).unwrap()).collect();
    // Reproducible: a second run from the same tree gives the same bytes.
    ok(script("scripts/package-deb", 900).arg("--no-build"));
    for (deb, bytes) in all.iter().zip(&first) {
        assert!(std::fs::read(deb).unwrap() == *bytes, "{deb:?} differs between two runs");
    }
    let (lib, dev, dbg) = (&all[0], &all[1], &all[2]);

    for deb in &all {
        assert_eq!(field(deb, "Version"), VERSION);
        assert_eq!(field(deb, "Architecture"), arch);
        assert_eq!(field(deb, "Multi-Arch"), "same");
        for (owner, path) in contents(deb) {
            assert_eq!(owner, "root/root", "{deb:?} {path}");
            assert!(path == "./" || path.starts_with("./usr/"), "{deb:?} has {path} outside /usr");
        }
    }
    // Only libc (and libgcc-s1, the unwinder) as dpkg-shlibdeps found them.
    let depends = field(lib, "Depends");
    for dep in depends.split(',') {
        let name = dep.split_whitespace().next().unwrap();
        assert!(["libc6", "libgcc-s1"].contains(&name), "{lib:?} depends on {dep}: {depends}");
    }
    assert!(depends.contains("libc6"), "{depends}");
    assert_eq!(field(dev, "Depends"), format!("{lib_pkg} (= {VERSION})"));
    assert_eq!(field(dbg, "Depends"), format!("{lib_pkg} (= {VERSION})"));

    let entries = |deb: &Path| -> BTreeSet<String> {
        contents(deb)
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| !p.ends_with('/') && !p.contains("/share/doc/"))
            .collect()
    };
    let ma = format!("./usr/lib/{multiarch}");
    assert_eq!(
        entries(lib),
        [
            format!("{ma}/{}", real_name()),
            format!("{ma}/{} -> {}", soname(), real_name()),
            format!("./usr/share/embedchat/{CHAT_ABI_VERSION}/embedchat-ffi.h"),
            format!("./usr/share/embedchat/{CHAT_ABI_VERSION}/embedchat.h"),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(
        entries(dev),
        [
            "./usr/include/embedchat.h".to_string(),
            format!("{ma}/libembedchat.a"),
            format!("{ma}/libembedchat.so -> {}", soname()),
            format!("{ma}/pkgconfig/embedchat.pc"),
        ]
        .into_iter()
        .collect()
    );
    let debug = entries(dbg);
    assert!(
        debug.len() == 1 && debug.iter().all(|p| p.starts_with("./usr/lib/debug/.build-id/")),
        "{debug:?}"
    );

    // Unpacked, the ffi.preload header names the library where the package puts it.
    let unpacked = fresh_dir("deb-x");
    for deb in [lib, dev] {
        ok(bounded(120, "dpkg").arg("-x").arg(deb).arg(&unpacked));
    }
    let ffi = std::fs::read_to_string(
        unpacked.join(format!("usr/share/embedchat/{CHAT_ABI_VERSION}/embedchat-ffi.h")),
    )
    .unwrap();
    let ffi_lib = format!("/usr/lib/{multiarch}/{}", soname());
    assert!(ffi.contains(&format!("#define FFI_LIB \"{ffi_lib}\"\n")), "{}", &ffi[..200]);
    assert!(unpacked.join(&ffi_lib[1..]).exists(), "{ffi_lib} is in the package");
    assert_eq!(dynamic(&unpacked.join(&ffi_lib[1..]), "SONAME"), [soname()]);
    let pc = std::fs::read_to_string(unpacked.join(format!("usr/lib/{multiarch}/pkgconfig/embedchat.pc")))
        .unwrap();
    assert!(pc.starts_with(&format!("prefix=/usr\nlibdir=${{prefix}}/lib/{multiarch}\n")), "{pc}");

    // apt would take them as `apt install ./file.deb` (simulated: the system is left alone).
    if Command::new("apt-get").arg("--version").stdout(Stdio::null()).status().is_ok() {
        let sim = ok(bounded(120, "apt-get").args(["install", "-s", "-q"]).arg(lib).arg(dev));
        assert!(sim.contains(&format!("Inst {lib_pkg} ")) || sim.contains("is already the newest"), "{sim}");
    }

    // A real dpkg install and removal, into a dpkg root of its own (--force-depends: libc6 is in
    // the real system, not in this empty database).
    let dpkg_root = fresh_dir("dpkg-root");
    for dir in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
        std::fs::create_dir_all(dpkg_root.join(dir)).unwrap();
    }
    std::fs::write(dpkg_root.join("var/lib/dpkg/status"), "").unwrap();
    let dpkg = |args: &[&OsStr]| {
        ok(bounded(300, "dpkg")
            .arg(format!("--root={}", dpkg_root.display()))
            .arg("--force-depends")
            .args(args))
    };
    dpkg(&[OsStr::new("-i"), lib.as_os_str(), dev.as_os_str()]);
    let installed = dpkg_root.join(format!("usr/lib/{multiarch}"));
    assert!(installed.join(real_name()).is_file() && installed.join("libembedchat.so").exists());
    dpkg(&[OsStr::new("--purge"), OsStr::new("libembedchat-dev"), OsStr::new(&lib_pkg)]);
    assert!(!installed.join(real_name()).exists(), "removed with the package");
    assert!(!dpkg_root.join("usr/include/embedchat.h").exists(), "removed with the package");
}
