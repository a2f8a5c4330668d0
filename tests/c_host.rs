//! C hosts: compiled with gcc -Wall -Wextra -Werror against the real libembedchat.so and run.

mod common;

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
    let child = Command::new(&bin).arg("127.0.0.1:0").stdout(Stdio::piped()).spawn().unwrap();
    time_bot_scenario(child, "server time: ").await;
}
