//! The quickest way to try embedchat: a chat server with its page and a `/time` bot.
//!
//!     cargo run --release --example chat_server                 # then open the printed URL
//!     cargo run --release --example chat_server -- --listen 0.0.0.0:9000 --config chat.json
//!
//! `--config FILE` takes the same JSON keys as `chat_start` (docs/config.md); `--listen` (or
//! else the environment variable `EMBEDCHAT_LISTEN`) overrides its `listen`. The bot answers `/time` and `/help` privately (messages starting
//! with `command_prefix`, "/" unless the config sets another, wait for it). Ctrl-C stops
//! gracefully (clients get close 1001).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use embedchat::{Config, Engine, EventKind};

/// Set by SIGINT/SIGTERM; the host loop below checks it between events.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // An atomic store is async-signal-safe; everything else happens in the loop.
    STOP.store(true, Ordering::Relaxed);
}

/// Ctrl-C and `kill` stop the server gracefully. With libc (already the engine's dependency)
/// rather than a signal crate: a dev-dependency such as `ctrlc` turns on features of shared
/// dependencies (libc's `extra_traits` through `nix`), so `cargo build --release` and
/// `cargo run --release --example chat_server` would each rebuild the library the other built.
fn stop_on_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only stores to an atomic; `signal` has no other
        // preconditions.
        unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}

fn usage() -> ! {
    eprintln!("usage: chat_server [--listen ADDR] [--config FILE] [--quiet]");
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut listen = None;
    let mut config_text = String::new();
    let mut quiet = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = Some(args.next().unwrap_or_else(|| usage())),
            "--config" => {
                let path = args.next().unwrap_or_else(|| usage());
                config_text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    eprintln!("cannot read {path}: {e}");
                    std::process::exit(2)
                });
            }
            "--quiet" => quiet = true,
            _ => usage(),
        }
    }
    let mut config = Config::from_json(&config_text).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    // The environment overrides the file and the flag overrides both: a test (or a service
    // manager) can move a README command to a free port without changing the command.
    if let Some(l) = listen.or_else(|| std::env::var("EMBEDCHAT_LISTEN").ok().filter(|l| !l.is_empty())) {
        config.listen = l;
    }
    // The bot's commands ("/time") wait for this loop, which answers them privately and keeps
    // them out of the room; everything else is published at once (relay `auto`).
    if config.moderation.command_prefix.is_empty() {
        config.moderation.command_prefix = "/".into();
    }
    let engine = Engine::start(config).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let scheme = if engine.config().is_some_and(|c| c.site.tls.is_some()) { "https" } else { "http" };
    println!("listening on {scheme}://{}", engine.local_addr());

    stop_on_signals();

    // The host's loop: take events on this thread, answer the bot command, log the rest.
    while !STOP.load(Ordering::Relaxed) {
        let Some(ev) = engine.poll_event(Some(Duration::from_millis(200))).expect("engine running") else {
            continue;
        };
        if !quiet {
            println!("{}", ev.to_json());
        }
        if ev.kind == EventKind::Message && ev.token != 0 {
            // Held for us: a bot command (or every message, with relay `host`).
            let reply = match ev.text.as_deref().map(str::trim) {
                Some("/time") => {
                    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                    Some(format!("server time: {secs} (Unix seconds)"))
                }
                Some("/help") => Some("commands: /time, /w NAME TEXT (whisper), /nick NAME".to_string()),
                _ => None,
            };
            let _ = match reply {
                Some(text) => {
                    // The answer goes to the asker alone; the command never reaches the room.
                    let _ = engine.send(ev.conn_id, &text);
                    engine.reject(ev.token, "answered privately")
                }
                None => engine.approve(ev.token),
            };
        }
    }
    let result = match engine.stop() {
        Ok(()) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    println!("stopped ({result}): {}", serde_json::to_string(&engine.stats()).unwrap_or_default());
}
