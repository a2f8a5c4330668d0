//! What every connection task shares: the config, the hub, counters and the stop signal.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::Config;
use crate::events::EventQueue;
use crate::hub::Hub;
use crate::stats::Stats;
use crate::wsframe::Limits;

pub struct Context {
    pub cfg: Config,
    pub hub: Hub,
    pub stats: Arc<Stats>,
    pub events: Arc<EventQueue>,
    pub limits: Limits,
    /// Connection ids start at 1; 0 means the host.
    pub next_id: AtomicU64,
    pub stopping: AtomicBool,
    pub sessions: Arc<SessionCount>,
}

impl Context {
    pub fn new(cfg: Config, events: Arc<EventQueue>) -> Self {
        let stats = Arc::new(Stats::default());
        let hub = Hub::new((&cfg).into(), stats.clone(), events.clone());
        let limits = Limits {
            max_message: cfg.max_message_bytes,
            max_fragments: cfg.max_fragments,
        };
        Context {
            cfg,
            hub,
            stats,
            events,
            limits,
            next_id: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            sessions: Arc::default(),
        }
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
