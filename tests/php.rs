//! PHP hosts: the real PHP CLI with FFI loading the real libembedchat.so.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

fn php(script: &str, args: &[&str]) -> std::process::Child {
    Command::new("php")
        .arg(root().join(script))
        .args(args)
        .env("EMBEDCHAT_LIB", lib_dir().join("libembedchat.so"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("the php CLI (apt install php-cli; scripts/test installs it)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_takes_10000_messages_through_dispatch_while_running_php_code() {
    const CLIENTS: usize = 10;
    const EACH: usize = 1000;
    let mut child = php("tests/php/receive_all.php", &[&(CLIENTS * EACH).to_string()]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line.trim().strip_prefix("port ").and_then(|p| p.parse().ok()).expect(&line);

    let mut senders = Vec::new();
    for c in 0..CLIENTS {
        senders.push(tokio::spawn(async move {
            let url = format!("ws://127.0.0.1:{port}/ws?name=c{c}");
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            for i in 0..EACH {
                ws.feed(Message::text(format!("c{c}-{i}"))).await.unwrap();
            }
            ws.flush().await.unwrap();
            ws // kept open until PHP has everything
        }));
    }
    let mut clients = Vec::new();
    for s in senders {
        clients.push(s.await.unwrap());
    }
    let status = tokio::task::spawn_blocking(move || wait_with_timeout(&mut child, Duration::from_secs(150)))
        .await
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(status.success(), "PHP failed: {status} {rest}");
    assert!(rest.starts_with(&format!("received {}", CLIENTS * EACH)), "{rest}");
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_daemon_answers_time_and_stops_cleanly_on_sigint() {
    time_bot_scenario(php("examples/php/daemon.php", &["127.0.0.1:0"]), "PHP").await;
}

#[test]
fn php_host_misuse_gets_error_codes_and_never_crashes() {
    let mut child = php("tests/php/misuse.php", &[]);
    let status = wait_with_timeout(&mut child, Duration::from_secs(60));
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{status}: {out}");
    assert_eq!(out.trim(), "0 checks failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_php_host_approving_every_message_lets_each_one_through_in_order() {
    const N: usize = 100;
    let mut child = KillOnDrop(php("bench/php_host.php", &["approve", &N.to_string()]));
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let port: u16 = first.trim().rsplit(':').next().and_then(|p| p.parse().ok()).expect(&first);
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws")).await.unwrap();
    welcomed(&mut ws).await;
    for i in 0..N {
        send(&mut ws, &format!("m{i}")).await;
        let m = recv_type(&mut ws, "message").await;
        assert_eq!(m["text"], format!("m{i}"), "approved by PHP, in order");
    }
    let status = wait_with_timeout(&mut child.0, Duration::from_secs(30));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(status.success(), "{status} {rest}");
    assert_eq!(rest.trim(), format!("handled {N}, failed approvals 0"));
}
