//! embedchat: a WebSocket chat engine that lives inside another program.
//!
//! Start it from Rust with [`Engine::start`], or from C and PHP through the C ABI in
//! `include/embedchat.h` (`chat_start`, `chat_broadcast`, `chat_dispatch`, …). The engine runs
//! on its own threads; the host takes events on its own thread and is never called from the
//! engine's network threads.
//!
//! Layers, each depending only on those below it (docs/contributing.md's Layout says what each
//! module is):
//! `ffi` → `api` → `runtime` / `remote` → `http` / `control` → `host` / `session` → `context`
//! → `hub` / `auth` / `tls` → `outbox` / `events` / `stats` → `error` → `config` → `protocol` /
//! `wsframe` → `identity` / `clock`.

mod api;
mod auth;
mod clock;
mod cluster;
mod config;
mod context;
mod control;
mod deflate;
mod error;
mod events;
pub mod ffi;
mod host;
mod http;
mod hub;
mod identity;
mod outbox;
mod protocol;
mod pusher;
mod remote;
mod runtime;
mod session;
mod stats;
mod tls;
mod transport;
mod wsframe;

/// Entry points for the fuzz targets in `fuzz/`: the parsers that see untrusted bytes.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Feeds bytes, cut at `split`, to a frame decoder; returns what it decoded.
    pub fn frames(data: &[u8], split: usize) -> usize {
        let mut d = crate::wsframe::Decoder::new();
        let limits = crate::wsframe::Limits { max_message: 1 << 16, max_fragments: 64, deflate: true };
        let mut n = 0;
        let (a, b) = data.split_at(split.min(data.len()));
        for part in [a, b] {
            if d.feed(part, limits, &mut |_| n += 1).is_err() {
                break;
            }
        }
        n
    }

    /// Parses one client text message as a command.
    pub fn command(text: &str) -> bool {
        crate::protocol::parse_client(text, false).is_ok()
    }

    /// Parses one Pusher client frame, and, for a presence subscription, its `channel_data`.
    pub fn pusher(text: &str) -> bool {
        match crate::protocol::pusher::parse(text) {
            Ok(crate::protocol::pusher::In::Subscribe { channel, channel_data, .. }) => {
                let _ = crate::protocol::pusher::validate_channel(&channel, 64);
                channel_data.is_none_or(|d| crate::protocol::pusher::presence_user(&d).is_ok())
            }
            r => r.is_ok(),
        }
    }
}

pub use api::{
    CallbackThread, Config, ConfigError, Engine, Error, ErrorKind, Event, EventKind, HookDefault, Protocol,
    Relay, RoomInfo, SlowConsumer, Stats, WhisperScope,
};
pub use config::{
    AdmissionConfig, AuthConfig, ChatConfig, EventsConfig, HistoryConfig, LimitsConfig, ModerationConfig,
    RoomConfig, SiteConfig, TlsConfig,
};
