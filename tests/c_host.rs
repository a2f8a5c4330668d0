//! C hosts: compiled with gcc -Wall -Wextra -Werror against the real libembedchat.so and run.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn gcc(src: &str, out: &Path) {
    let lib = lib_dir();
    let status = Command::new("gcc")
        .args(["-std=c11", "-D_POSIX_C_SOURCE=200809L", "-g", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join(src))
        .arg("-L")
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lembedchat", "-pthread", "-o"])
        .arg(out)
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc -Wall -Wextra -Werror failed for {src}");
}

#[test]
fn c_contract_misuse_and_50_start_stop_loops_are_clean_under_valgrind() {
    let bin = lib_dir().join("c_contract");
    gcc("tests/c/contract.c", &bin);
    let valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    let mut cmd = if valgrind {
        let mut c = Command::new("valgrind");
        c.args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect",
            "-q",
        ])
        .arg(&bin);
        c
    } else {
        eprintln!("valgrind not found: running without it (scripts/test installs it)");
        Command::new(&bin)
    };
    let mut child = cmd.arg("50").spawn().unwrap();
    let status = wait_with_timeout(&mut child, Duration::from_secs(300));
    assert!(status.success(), "C contract test failed or leaked: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_host_answers_time_and_stops_cleanly_on_sigint() {
    let bin = lib_dir().join("c_host_example");
    gcc("examples/c/host.c", &bin);
    let mut child = Command::new(&bin).arg("127.0.0.1:0").stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let port: u16 = first
        .trim()
        .strip_prefix("listening on http://127.0.0.1:")
        .and_then(|r| r.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));

    let url = format!("ws://127.0.0.1:{port}/ws?name=tester");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    recv_type(&mut ws, "welcome").await;
    send(&mut ws, "/time").await;
    let reply = recv_type(&mut ws, "whisper").await;
    assert!(reply["text"].as_str().unwrap().starts_with("server time: "), "{reply}");

    // SAFETY: kill(2) with a pid we own.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(close_code(&mut ws).await.map(u16::from), Some(1001));
    let status = wait_with_timeout(&mut child, Duration::from_secs(20));
    assert!(status.success(), "{status}");
    let rest: Vec<String> = out.lines().map(|l| l.unwrap()).collect();
    assert!(rest.iter().any(|l| l.contains("\"kind\":\"message\"") && l.contains("/time")), "{rest:?}");
    assert!(rest.last().unwrap().starts_with("stopped (ok)"), "{rest:?}");
}
