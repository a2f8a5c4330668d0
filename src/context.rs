//! What every connection task shares: the config, the hub, counters and the stop signal.
//! (The hub receives only its part of the config; the HTTP side reads `site` and `admission`.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::auth::Verifier;
use crate::config::Config;
use crate::events::EventQueue;
use crate::hub::{Broker, Hub, LocalOnly};
use crate::stats::Stats;
use crate::tls::Tls;
use crate::wsframe::Limits;

pub struct Context {
    pub cfg: Config,
    /// The clock connections keep their times on.
    pub clock: Clock,
    pub hub: Hub,
    pub stats: Arc<Stats>,
    pub events: Arc<EventQueue>,
    pub limits: Limits,
    /// Connection ids start at 1 (in a cluster, above the node's number); 0 means the host.
    pub next_id: AtomicU64,
    pub stopping: AtomicBool,
    pub sessions: Arc<SessionCount>,
    /// Networks whose X-Forwarded-For is believed.
    pub proxies: Vec<ipnet::IpNet>,
    /// Open WebSocket connections per client address.
    pub per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// The bound TCP port.
    pub local_port: u16,
    /// Checks login tokens (config `auth`).
    pub auth: Option<Verifier>,
    /// The certificate new connections get (config `tls`), loaded at start.
    pub tls: Option<Tls>,
    /// The engine's runtime, for host calls that must wait on it (a cluster's questions to
    /// Redis from a host thread).
    pub runtime: Option<tokio::runtime::Handle>,
    /// This node's number in a cluster (0: an engine alone).
    pub node: u64,
    /// In a cluster: the Redis connection the host's questions about the cluster share.
    pub queries: crate::cluster::query::Queries,
}

impl Context {
    /// The context of an engine alone.
    pub fn new(cfg: Config, events: Arc<EventQueue>) -> Self {
        Self::with_broker(cfg, events, Arc::default(), Box::new(LocalOnly), None, 0)
    }

    /// The context of a node of a cluster: its broker, the cluster's epoch, and its number,
    /// which sets the high bits of its connection ids so they are unique across the cluster.
    pub fn with_broker(
        cfg: Config,
        events: Arc<EventQueue>,
        stats: Arc<Stats>,
        broker: Box<dyn Broker>,
        epoch: Option<String>,
        node: u64,
    ) -> Self {
        let hub = Hub::new((&cfg).into(), stats.clone(), events.clone(), broker, epoch);
        let proxies = cfg.admission.proxy_nets().unwrap_or_default();
        let cfg_auth = cfg.site.auth.as_ref().map(Verifier::new);
        let limits = Limits {
            max_message: cfg.limits.max_message_bytes,
            max_fragments: cfg.limits.max_fragments,
            deflate: false,
        };
        Context {
            clock: Clock::new(),
            cfg,
            hub,
            stats,
            events,
            limits,
            next_id: AtomicU64::new(first_conn_id(node)),
            stopping: AtomicBool::new(false),
            sessions: Arc::default(),
            proxies,
            per_ip: Arc::default(),
            auth: cfg_auth,
            local_port: 0,
            tls: None,
            runtime: None,
            node,
            queries: Default::default(),
        }
    }
}

/// The first connection id of node `node` (0: an engine alone). A node's ids start at
/// `node << 32`: unique across a cluster, and below 2^53, so JavaScript reads them exactly, for
/// the first million nodes to start (the number wraps past that).
pub fn first_conn_id(node: u64) -> u64 {
    ((node % (1 << 20)) << 32) | 1
}

impl Context {
    /// Waits for `fut` on the engine's runtime, from a host thread (never from the runtime's own
    /// threads: they would wait for themselves). A thread of its own, so a host that is itself
    /// async code may call it too.
    pub fn wait_for<F>(&self, fut: F) -> Option<F::Output>
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        let handle = self.runtime.as_ref()?;
        std::thread::scope(|s| s.spawn(|| handle.block_on(fut)).join().ok())
    }

    /// Every counter and gauge, as `chat_stats_json` and `/metrics` report them.
    pub fn snapshot(&self) -> crate::stats::Snapshot {
        self.stats.snapshot(
            self.hub.room_count() as u64,
            self.events.len() as u64,
            self.events.dropped_total(),
            !self.stopping.load(Ordering::SeqCst),
        )
    }
}

/// A compact clock: µs since the engine started, as a `u64` (8 bytes where a `tokio::time::Instant`
/// takes 16; connections keep several). Never 0, so 0 can mean "not set".
pub struct Clock {
    start: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        Clock { start: tokio::time::Instant::now() }
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_micros() as u64 + 1
    }

    /// The `Instant` of a time on this clock (for timers).
    pub fn instant(&self, us: u64) -> tokio::time::Instant {
        self.start + std::time::Duration::from_micros(us.saturating_sub(1))
    }
}

/// Counts live WebSocket sessions so stop can wait until every client has been closed.
#[derive(Default)]
pub struct SessionCount {
    n: AtomicUsize,
    zero: Notify,
}

impl SessionCount {
    /// Counts a session until the returned guard is dropped (also when its task is cancelled).
    pub fn enter(self: &Arc<Self>) -> SessionGuard {
        self.n.fetch_add(1, Ordering::SeqCst);
        SessionGuard(self.clone())
    }

    pub fn get(&self) -> usize {
        self.n.load(Ordering::SeqCst)
    }

    /// Resolves once no session is left.
    pub async fn wait_zero(&self) {
        loop {
            let notified = self.zero.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.get() == 0 {
                return;
            }
            notified.await;
        }
    }
}

pub struct SessionGuard(Arc<SessionCount>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.0.n.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

/// Holds one of a client address's connection slots until dropped.
pub struct IpSlot {
    /// None once kept (`keep`): then the holder gives the slot back.
    map: Option<Arc<Mutex<HashMap<IpAddr, usize>>>>,
    ip: IpAddr,
}

impl Context {
    /// Takes a connection slot for `ip`, or None when it already has `max_connections_per_ip`.
    pub fn ip_slot(&self, ip: IpAddr) -> Option<IpSlot> {
        let max = self.cfg.admission.max_connections_per_ip;
        let mut m = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if max != 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot { map: Some(self.per_ip.clone()), ip })
    }
}

impl IpSlot {
    /// The address, its slot kept: the holder gives it back with `Context::release_ip`.
    pub fn keep(mut self) -> IpAddr {
        self.map = None;
        self.ip
    }
}

impl Context {
    /// Gives back a connection slot of `ip` kept with `IpSlot::keep`.
    pub fn release_ip(&self, ip: IpAddr) {
        release(&self.per_ip, ip);
    }
}

fn release(map: &Mutex<HashMap<IpAddr, usize>>, ip: IpAddr) {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = m.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            m.remove(&ip);
        }
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Some(map) = &self.map {
            release(map, self.ip);
        }
    }
}
