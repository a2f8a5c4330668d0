//! embedchat: a WebSocket chat engine that lives inside another program.
//!
//! Start it from Rust with [`Engine::start`], or from C and PHP through the C ABI in
//! `include/embedchat.h` (`chat_start`, `chat_broadcast`, `chat_dispatch`, …). The engine runs
//! on its own threads; the host takes events on its own thread and is never called from the
//! engine's network threads.
//!
//! Layers, each depending only on those below it:
//! `ffi` → `api` → `engine` → `http` → `session` → `hub` → `protocol` / `wsframe`.

mod api;
mod config;
mod context;
mod engine;
mod events;
pub mod ffi;
mod http;
mod hub;
mod outbox;
mod protocol;
mod session;
mod stats;
mod wsframe;

pub use api::{CallbackThread, Config, ConfigError, Engine, Error, Event, EventKind, Protocol, Relay, Stats};
