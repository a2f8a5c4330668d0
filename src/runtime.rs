//! Runtime lifecycle: build the tokio runtime, bind synchronously, serve, stop gracefully and
//! join every thread.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::sync::Notify;

use crate::config::Config;
use crate::context::Context;
use crate::error::Error;
use crate::events::EventQueue;
use crate::wsframe::close;

/// A running server: its runtime, shared state and the accept loop's stop signal.
pub struct Running {
    runtime: Runtime,
    pub ctx: Arc<Context>,
    stop_accept: Arc<Notify>,
    stop_control: Arc<Notify>,
    /// Removed at stop, after the runtime (and the listener) is gone.
    control_path: Option<String>,
    pub local_addr: SocketAddr,
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_cloexec(true)?;
    s.bind(&addr.into())?;
    // A deep accept queue: bursts of thousands of connects must not hit SYN retries.
    s.listen(4096)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// A write to a socket whose client has gone raises SIGPIPE, whose default action kills the
/// whole process: a C host that never thought about it would die when a browser tab closes (Rust
/// programs and the PHP CLI ignore it; plain C does not). The engine's threads block it, so such
/// a write only fails with EPIPE; the host's own signal handling is left as it is.
fn block_sigpipe() {
    #[cfg(unix)]
    // SAFETY: the set is initialised by sigemptyset before use; pthread_sigmask only changes the
    // calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Validates the config, binds, and returns once connections are accepted.
pub fn start(cfg: Config) -> Result<Running, Error> {
    cfg.validate()?;
    // The certificate and key are read before anything else starts, so a bad file fails
    // chat_start with CHAT_ERR_CONFIG naming `tls.cert` or `tls.key`.
    let tls = cfg.site.tls.as_ref().map(crate::tls::Tls::load).transpose()?;
    let addr = cfg.listen_addr()?;
    let std_listener = bind(addr).map_err(|source| Error::Bind { addr, source })?;
    let local_addr = std_listener.local_addr().map_err(Error::Io)?;
    // Before the runtime exists: a failed start must not drop a runtime (which panics when the
    // caller is itself async code).
    let control = match &cfg.site.control_socket {
        Some(path) => {
            let mode = cfg.site.socket_mode()?;
            let l = crate::control::bind(path, mode).map_err(|e| {
                Error::Control(format!("config key `control_socket`: cannot listen on {path}: {e}"))
            })?;
            Some((l, path.clone()))
        }
        None => None,
    };
    let events = Arc::new(
        EventQueue::with_limits(cfg.events.event_queue, cfg.events.max_event_bytes).map_err(Error::Io)?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.worker_threads)
        .thread_name("embedchat-io")
        .on_thread_start(block_sigpipe)
        // A network thread with nothing left to do wakes the host for the events it queued.
        .on_thread_park({
            let events = events.clone();
            move || events.flush()
        })
        .enable_all()
        .build()
        .map_err(Error::Io)?;
    // A node of a cluster joins it before it serves (and fails to start, saying why, when Redis
    // cannot be reached).
    let (mut ctx, starter) = match cfg.cluster.url() {
        Some(_) => {
            let stats = Arc::new(crate::stats::Stats::default());
            let epoch = Some(cfg.history.history_epoch.clone()).filter(|e| !e.is_empty());
            let join = crate::cluster::join(&cfg.cluster, &cfg.history, epoch, stats.clone());
            // On a plain thread: blocking on (or dropping) a runtime inside another runtime's
            // thread panics, and a Rust host may start the engine from async code.
            let joined = std::thread::scope(|s| s.spawn(|| runtime.block_on(join)).join()).map_err(|_| {
                Error::Other(crate::error::ErrorKind::Internal, "joining the cluster panicked".into())
            })?;
            let j = match joined {
                Ok(j) => j,
                Err(e) => {
                    std::thread::scope(|s| {
                        s.spawn(move || drop(runtime));
                    });
                    return Err(e);
                }
            };
            (Context::with_broker(cfg, events, stats, j.broker, Some(j.epoch), j.node), Some(j.start))
        }
        None => (Context::new(cfg, events), None),
    };
    ctx.local_port = local_addr.port();
    if ctx.cfg.cluster.url().is_some() {
        ctx.runtime = Some(runtime.handle().clone());
    }
    ctx.tls = tls;
    let ctx = Arc::new(ctx);
    let stop_accept = Arc::new(Notify::new());
    let (listener, control) = {
        let _enter = runtime.enter();
        let tcp = tokio::net::TcpListener::from_std(std_listener).map_err(Error::Io)?;
        let unix = match control {
            Some((l, path)) => Some((tokio::net::UnixListener::from_std(l).map_err(Error::Io)?, path)),
            None => None,
        };
        (tcp, unix)
    };
    if let Some(starter) = starter {
        let _enter = runtime.enter();
        starter.start(&ctx);
    }
    runtime.spawn(crate::http::accept_loop(listener, ctx.clone(), stop_accept.clone()));
    let stop_control = Arc::new(Notify::new());
    let control_path = control.as_ref().map(|(_, p)| p.clone());
    if let Some((l, _)) = control {
        runtime.spawn(crate::control::serve(l, ctx.clone(), stop_control.clone()));
    }
    if !ctx.cfg.echo {
        // Big rooms announce their comings and goings in batches (hub/presence.rs).
        let hub_ctx = ctx.clone();
        let every = Duration::from_millis(ctx.cfg.chat.presence_interval_ms);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                hub_ctx.hub.flush_presence();
            }
        });
    }
    if ctx.cfg.moderation.holds_anything() {
        // Held messages and joins the host did not decide on get `hook_default` within ~25 ms
        // of their deadline.
        let hub_ctx = ctx.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            loop {
                tick.tick().await;
                hub_ctx.hub.expire(crate::clock::now_ms());
            }
        });
    }
    Ok(Running { runtime, ctx, stop_accept, stop_control, control_path, local_addr })
}

impl Running {
    /// Stops accepting, closes every client with 1001, waits (up to `stop_timeout_ms`) for them
    /// to finish, then shuts the runtime down and joins its threads.
    pub fn stop(self) {
        // Blocking on or dropping a runtime inside another runtime's thread panics; a Rust host
        // may well call stop from async code, so do the blocking part on a plain thread.
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(move || self.stop_blocking());
            });
        } else {
            self.stop_blocking();
        }
    }

    fn stop_blocking(self) {
        let ctx = &self.ctx;
        let in_cluster = ctx.cfg.cluster.url().is_some() && ctx.stats.cluster_up.load(Ordering::Relaxed) == 1;
        ctx.stopping.store(true, Ordering::SeqCst);
        self.stop_accept.notify_one();
        self.stop_control.notify_one();
        ctx.hub.close_all(close::GOING_AWAY, "server shutting down");
        // Intake closes now: every client is closing, so no message is accepted any more, and
        // what was accepted before is queued. The host can still take those events after stop
        // returns (and loses none of them); the leaves and disconnects of the closing clients
        // are not reported.
        ctx.events.close();
        let wait = Duration::from_millis(ctx.cfg.stop_timeout_ms);
        let sessions = ctx.sessions.clone();
        self.runtime.block_on(async move {
            let _ = tokio::time::timeout(wait, sessions.wait_zero()).await;
        });
        if in_cluster {
            // A node that stops leaves its rooms at once rather than when the others notice.
            self.runtime.block_on(crate::cluster::query::leave(&ctx.cfg.cluster, ctx.node));
        }
        // Dropping the runtime cancels what is left (HTTP requests in flight) and joins the
        // worker threads before returning.
        drop(self.runtime);
        if let Some(p) = &self.control_path {
            // Here, not in the socket's task: that task may be cancelled before it gets to it,
            // and a host that stops expects the file gone when chat_stop returns.
            let _ = std::fs::remove_file(p);
        }
    }
}
