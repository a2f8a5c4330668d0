//! Clients that stop reading must not grow the engine's memory, and must not cost the others a
//! single message.

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use embedchat::{Engine, EventKind};
use serde_json::json;

const SLEEPERS: usize = 100;
const RATE: u64 = 1000; // messages per second
const SECONDS: u64 = 4;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A client that completes the upgrade and never reads again, with a tiny receive buffer so the
/// kernel absorbs little and the engine's own backlog policy is what gets tested.
fn sleeper(port: u16) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into()).unwrap();
    let mut s: TcpStream = sock.into();
    upgrade_on(&mut s, "/ws?room=ticker");
    s
}

/// Broadcasts RATE messages/s for SECONDS into "ticker" while one real client reads; returns
/// (RSS growth in KiB between the first second and the end, messages the reader got in order).
async fn flood(e: &Engine) -> (i64, usize) {
    // RSS is per process: the two scenarios must not run at the same time.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut reader = connect(e, "name=reader&room=ticker").await;
    recv_type(&mut reader, "welcome").await;
    let sleepers: Vec<TcpStream> = (0..SLEEPERS).map(|_| sleeper(e.port())).collect();
    let total = (RATE * SECONDS) as usize;
    let reading = tokio::spawn(async move {
        let mut next = None;
        let mut got = 0;
        while got < total {
            let m = recv(&mut reader).await;
            if m["type"] != "message" {
                continue;
            }
            let id = m["id"].as_u64().unwrap();
            assert!(next.is_none_or(|n| n == id), "gap or reorder: expected {next:?}, got {id}");
            next = Some(id + 1);
            got += 1;
        }
        got
    });
    let text = "x".repeat(1000);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut rss_early = None;
    for _ in 0..total {
        tick.tick().await;
        e.broadcast(Some("ticker"), &text).unwrap();
        if rss_early.is_none() && start.elapsed() > Duration::from_secs(1) {
            rss_early = Some(rss_kib());
        }
    }
    let rss_end = rss_kib();
    let got = tokio::time::timeout(Duration::from_secs(30), reading).await.expect("reader done").unwrap();
    drop(sleepers);
    let growth = rss_end as i64 - rss_early.unwrap() as i64;
    eprintln!("RSS {} KiB after 1 s, {rss_end} KiB at the end: {growth:+} KiB", rss_early.unwrap());
    (growth, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_reading_clients_keep_memory_flat_under_drop_oldest() {
    let e = engine(json!({
        "max_backlog_bytes": 65536,
        "max_message_bytes": 8192,
        "max_connections_per_ip": 0,
        "rooms": {"ticker": {"slow_consumer": "drop_oldest"}}
    }));
    let (growth_kib, got) = flood(&e).await;
    assert_eq!(got, (RATE * SECONDS) as usize, "the reading member got every message");
    let st = e.stats();
    assert!(st.messages_dropped > 0, "the policy engaged");
    assert_eq!(st.slow_consumer_closes, 0, "nobody was closed");
    assert!(growth_kib < 3 * 1024, "RSS grew {growth_kib} KiB over {} s at {RATE} msg/s", SECONDS - 1);
    let mut lagging = std::collections::HashSet::new();
    while let Some(ev) = e.poll_event(Some(Duration::ZERO)).unwrap() {
        if ev.kind == EventKind::Lagging {
            lagging.insert(ev.conn_id);
        }
    }
    assert_eq!(lagging.len(), SLEEPERS, "every slow client was reported to the host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_reading_clients_are_closed_under_the_default_policy() {
    let e =
        engine(json!({"max_backlog_bytes": 65536, "max_message_bytes": 8192, "max_connections_per_ip": 0}));
    let (growth_kib, got) = flood(&e).await;
    assert_eq!(got, (RATE * SECONDS) as usize);
    let st = e.stats();
    assert_eq!(st.slow_consumer_closes, SLEEPERS as u64);
    assert!(growth_kib < 3 * 1024, "RSS grew {growth_kib} KiB");
}
