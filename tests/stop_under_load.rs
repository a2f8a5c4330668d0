//! Graceful stop under load: the chat_server example holds 10,000 connections while ten rooms are
//! flooded; SIGINT → chat_stop must return within its bound, every client must get close 1001,
//! and the host must print its final stats. The server is a separate process: one process may hold
//! only 20,000 descriptors, and here each side needs 10,000.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const CLIENTS: usize = 10_000;
const ROOMS: usize = 10;

async fn open(port: u16, i: usize) -> std::io::Result<tokio::net::TcpStream> {
    let sock = TcpSocket::new_v4()?;
    // Spread over source addresses: one address has ~28k ports, and earlier tests used some.
    sock.bind(SocketAddr::new(Ipv4Addr::new(127, 0, 1, 1 + (i / 5000) as u8).into(), 0))?;
    let mut s = sock.connect(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)).await?;
    let req = upgrade_request(&format!("/ws?room=storm{}", i % ROOMS), "x", "");
    s.write_all(req.as_bytes()).await?;
    Ok(s)
}

static UPGRADED: AtomicUsize = AtomicUsize::new(0);

/// Reads until the server's close frame; returns its code. Counts the 101 answer first.
async fn read_until_close(mut s: impl tokio::io::AsyncRead + Unpin) -> Option<u16> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut head_done = false;
    loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if !head_done {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            if !buf.starts_with(b"HTTP/1.1 101") {
                return None;
            }
            UPGRADED.fetch_add(1, Ordering::SeqCst);
            buf.drain(..end + 4);
            head_done = true;
        }
        let mut pos = 0;
        while buf.len() - pos >= 2 {
            let d = &buf[pos..];
            let (len, hdr) = match d[1] & 0x7f {
                126 if d.len() >= 4 => (u16::from_be_bytes([d[2], d[3]]) as usize, 4),
                127 if d.len() >= 10 => (u64::from_be_bytes(d[2..10].try_into().unwrap()) as usize, 10),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if d.len() < hdr + len {
                break;
            }
            if d[0] & 0x0f == 8 {
                return Some(u16::from_be_bytes([d[hdr], d[hdr + 1]]));
            }
            pos += hdr + len;
        }
        buf.drain(..pos);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_a_10k_connection_storm_is_bounded_and_closes_everyone_with_1001() {
    let cfg = std::env::temp_dir().join(format!("embedchat-storm-{}.json", std::process::id()));
    std::fs::write(
        &cfg,
        r#"{"max_connections_per_ip": 0, "max_messages_per_second": 0, "stop_timeout_ms": 5000,
            "slow_consumer": "drop_oldest", "event_queue": 1048576}"#,
    )
    .unwrap();
    let mut server = KillOnDrop(
        Command::new(lib_dir().join("examples/chat_server"))
            .args(["--listen", "127.0.0.1:0", "--quiet", "--config"])
            .arg(&cfg)
            .stdout(Stdio::piped())
            .spawn()
            .expect("target/debug/examples/chat_server (cargo test builds it)"),
    );
    let mut out = BufReader::new(server.0.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let port: u16 = first.trim().rsplit(':').next().unwrap().parse().unwrap();

    // 10,000 clients, in batches so the accept queue is never the bottleneck.
    let connect_deadline = Instant::now() + Duration::from_secs(120);
    let mut readers = Vec::new();
    let mut flooders = Vec::new();
    let opened = Arc::new(AtomicUsize::new(0));
    for batch in 0..CLIENTS / 500 {
        let mut conns = Vec::new();
        for i in batch * 500..(batch + 1) * 500 {
            conns.push(tokio::spawn(open(port, i)));
        }
        for (k, c) in conns.into_iter().enumerate() {
            let s = c.await.unwrap().expect("connect");
            opened.fetch_add(1, Ordering::Relaxed);
            if batch == 0 && k < ROOMS {
                // The first client of each room will flood it once everyone is in.
                let (rd, wr) = s.into_split();
                flooders.push(wr);
                readers.push(tokio::spawn(read_until_close(rd)));
            } else {
                readers.push(tokio::spawn(read_until_close(s)));
            }
        }
        assert!(Instant::now() < connect_deadline, "connecting took too long");
    }
    assert_eq!(opened.load(Ordering::Relaxed), CLIENTS);
    while UPGRADED.load(Ordering::SeqCst) < CLIENTS {
        assert!(Instant::now() < connect_deadline, "only {} upgraded", UPGRADED.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let publishers: Vec<_> = flooders
        .into_iter()
        .map(|mut wr| {
            tokio::spawn(async move {
                // Up to 10,000 messages/s offered into each room of 1,000: far more than a
                // debug-build server can fan out, so it is saturated when the stop comes.
                let frame = masked_text(b"storm storm storm storm storm storm storm storm");
                let mut tick = tokio::time::interval(Duration::from_micros(100));
                loop {
                    tick.tick().await;
                    if wr.write_all(&frame).await.is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await; // the storm is on

    let stop_started = Instant::now();
    // SAFETY: signals our own child.
    unsafe { libc::kill(server.0.id() as i32, libc::SIGINT) };
    let status =
        tokio::task::spawn_blocking(move || wait_with_timeout(&mut server.0, Duration::from_secs(30)))
            .await
            .unwrap();
    let stop_took = stop_started.elapsed();
    eprintln!("stop took {stop_took:?}");
    assert!(status.success(), "{status}");
    assert!(stop_took < Duration::from_secs(8), "stop took {stop_took:?} (stop_timeout_ms is 5000)");

    let mut codes = std::collections::HashMap::new();
    for r in readers {
        let code = tokio::time::timeout(Duration::from_secs(30), r).await.expect("reader ended").unwrap();
        *codes.entry(code).or_insert(0usize) += 1;
    }
    for p in publishers {
        p.abort();
    }
    assert_eq!(codes.get(&Some(1001)), Some(&CLIENTS), "close codes seen: {codes:?}");
    let rest: Vec<String> = out.lines().map_while(Result::ok).collect();
    let last = rest.last().cloned().unwrap_or_default();
    assert!(last.starts_with("stopped (ok): {"), "the host printed its final stats: {last}");
    let stats: serde_json::Value = serde_json::from_str(last.trim_start_matches("stopped (ok): ")).unwrap();
    assert_eq!(stats["connections_total"], CLIENTS as u64);
    assert_eq!(stats["running"], false);
    eprintln!("stop took {stop_took:?}; final stats: {last}");
    let _ = std::fs::remove_file(cfg);
}
