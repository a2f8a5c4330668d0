//! One WebSocket connection after the upgrade: one task that reads client frames, carries out
//! commands, and writes whatever the hub queued with vectored writes, then closes politely.
//!
//! Reads go through a buffer owned by the worker thread, not the connection, so an idle
//! connection holds no read buffer at all (tungstenite's default 128 KiB buffer cost 134 KiB of
//! RSS per idle connection when measured here). Over TLS the plaintext comes through the same
//! buffer; rustls keeps its own per-connection buffers for records (`src/transport.rs`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use tokio::time::Sleep;

use crate::context::{Context, IpSlot, SessionGuard};
use crate::identity::{ConnId, Identity, Resume};
use crate::outbox::Outbox;
use crate::protocol;
use crate::stats::Stats;
use crate::transport::Transport;
use crate::wsframe::{self, close, Decoder, Incoming};
use std::net::IpAddr;

const READ_CHUNK: usize = 64 * 1024;
/// Frames handed to one `writev` call (Linux allows 1024; 64 keeps the slice array on the stack).
const MAX_IOV: usize = 64;

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Who the client is and where it goes, from the upgrade request.
pub struct Hello {
    pub id: ConnId,
    pub who: Identity,
    pub room: String,
    /// Where the client left off in `room` (resume after a reconnect).
    pub resume: Resume,
    /// The compressor window permessage-deflate was agreed with (0: not negotiated).
    pub deflate: u8,
    /// A Pusher connection (`/app/{key}`): whether its key and protocol were right.
    pub pusher: Option<Result<(), crate::pusher::Refused>>,
}

/// Frames taken from the outbox and not yet fully written.
#[derive(Default)]
struct Writer {
    pending: VecDeque<Bytes>,
    /// Bytes of the front frame already written.
    offset: usize,
    /// The close frame is queued behind `pending`; nothing else will be.
    closing: bool,
    close_written: bool,
}

impl Writer {
    /// Writes what the socket takes. Ok(true): everything written (for TLS: also out of
    /// rustls's buffer); Ok(false): socket full.
    fn flush(
        &mut self,
        stream: &mut Transport,
        cx: &mut TaskContext<'_>,
        outbox: &Outbox,
        stats: &Stats,
    ) -> io::Result<bool> {
        if !self.closing {
            let batch = outbox.take(&mut self.pending);
            // Ahead of the queue, but never inside a frame already half written.
            let first = usize::from(self.offset > 0).min(self.pending.len());
            for (at, pong) in (first..).zip(batch.pongs) {
                self.pending.insert(at, pong);
            }
            if let Some(close_frame) = batch.close {
                if batch.discard {
                    // Keep a half-written frame (the stream must stay well-formed), drop the rest.
                    let keep = usize::from(self.offset > 0).min(self.pending.len());
                    let dropped: usize = self.pending.drain(keep..).map(|f| f.len()).sum();
                    outbox.written(dropped);
                }
                // The close goes out after what is left; nothing is queued after it.
                self.pending.push_back(close_frame);
                self.closing = true;
            }
        }
        loop {
            if self.pending.is_empty() {
                // The close frame counts as written only once it is on the socket: the
                // connection is dropped right after.
                match stream.poll_send_buffered(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => return Ok(false),
                }
                self.close_written = self.closing;
                if self.pending.capacity() > 16 {
                    // A burst grew the queue; an idle connection should not keep that memory.
                    self.pending = VecDeque::new();
                }
                return Ok(true);
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (i, f) in self.pending.iter().take(MAX_IOV).enumerate() {
                slices[i] = IoSlice::new(if i == 0 { &f[self.offset..] } else { f });
                n += 1;
            }
            match stream.poll_write_bufs(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(mut w)) => {
                    outbox.written(w);
                    Stats::add(&stats.bytes_out, w as u64);
                    while w > 0 {
                        let left = self.pending[0].len() - self.offset;
                        if w >= left {
                            w -= left;
                            self.pending.pop_front();
                            self.offset = 0;
                        } else {
                            self.offset += w;
                            w = 0;
                        }
                    }
                }
                Poll::Pending => return Ok(false),
                Poll::Ready(Err(e)) => return Err(e),
            }
        }
    }
}

/// A connection's state. Times are µs on the engine's clock (`Clock`, 0 = never): half the size
/// of `Instant`s, and there is one of these per connection.
struct State {
    /// Stop decoding: the client sent close or broke the protocol.
    reading_done: bool,
    peer_closed: bool,
    eof: bool,
    /// Close code reported to the host (what the client sent, or what we closed with).
    code: Option<u16>,
    /// Message rate token bucket, and refusals in a row.
    strikes: u32,
    tokens: f32,
    refilled: u64,
    /// When the client last sent anything, and when we pinged it since (0: not since).
    last_rx: u64,
    ping_sent: u64,
}

impl State {
    fn new(ctx: &Context) -> Self {
        let now = ctx.clock.now();
        State {
            reading_done: false,
            peer_closed: false,
            eof: false,
            code: None,
            strikes: 0,
            tokens: ctx.cfg.limits.message_burst as f32,
            refilled: now,
            last_rx: now,
            ping_sent: 0,
        }
    }
}

/// Joins an upgraded connection to the hub and runs it as a task of its own until it ends.
pub fn start(
    ctx: Arc<Context>,
    stream: Transport,
    early: Bytes,
    hello: Hello,
    guard: SessionGuard,
    ip_slot: Option<IpSlot>,
) {
    // The session gives the address's slot back itself (`finish`): a plain address is smaller.
    let ip = ip_slot.map(IpSlot::keep);
    let id = hello.id;
    let outbox = Arc::new(Outbox::with_deflate(hello.deflate));
    let pusher = hello.pusher.is_some();
    if ctx.cfg.echo {
        ctx.hub.attach_silent(id, outbox.clone());
    } else if let Some(check) = hello.pusher {
        crate::pusher::open(&ctx, id, hello.who.ip, &outbox, check.err());
    } else {
        ctx.hub.connect(id, hello.who, &hello.room, hello.resume, outbox.clone());
    }
    let limits = &ctx.cfg.limits;
    let pings = limits.ping_interval_ms > 0 && !ctx.cfg.echo;
    let mut session = Session {
        id,
        stream,
        outbox,
        decoder: Decoder::new(),
        state: State::new(&ctx),
        writer: Writer::default(),
        timer: None,
        timer_at: 0,
        deadline: 0,
        pings,
        pusher,
        finished: false,
        ip,
        _guard: guard,
        ctx,
    };
    if !early.is_empty() {
        session.input(&early);
    }
    // `early` is a view into hyper's whole read buffer (8 KiB or more): let it go now, not
    // when the connection ends.
    drop(early);
    tokio::spawn(session);
}

/// One connection, as a hand-written future rather than an `async fn` around `select!`: an idle
/// connection is this struct and nothing else (about 400 bytes, where the `select!` loop's state
/// machine took 1.6 KiB), and a message queued for it wakes it through the outbox directly.
struct Session {
    ctx: Arc<Context>,
    id: ConnId,
    stream: Transport,
    outbox: Arc<Outbox>,
    decoder: Decoder,
    state: State,
    writer: Writer,
    /// One timer for the close deadline and the ping schedule, made once and moved.
    timer: Option<Pin<Box<Sleep>>>,
    /// When the timer is set to go off (engine clock µs, 0 = not set).
    timer_at: u64,
    /// When a closing connection is dropped if the client has not answered (0 = not closing).
    deadline: u64,
    pings: bool,
    /// Speaks the Pusher protocol: text frames go to `crate::pusher`, not the command parser.
    pusher: bool,
    finished: bool,
    /// The client's address slot (`max_connections_per_ip`), given back in `finish`.
    ip: Option<IpAddr>,
    _guard: SessionGuard,
}

impl Future for Session {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = &mut *self;
        let r = this.drive(cx);
        // A busy network thread may not park for a while: the host is not kept waiting long.
        this.ctx.events.flush_if_overdue();
        match r {
            Poll::Ready(()) => {
                this.stream.close_now(cx);
                this.finish();
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Cancelled (the runtime shuts down at stop): the hub must still forget it.
        self.finish();
    }
}

impl Session {
    /// Writes, reads and keeps time until the connection ends.
    fn drive(&mut self, cx: &mut TaskContext<'_>) -> Poll<()> {
        loop {
            let Ok(done) = self.writer.flush(&mut self.stream, cx, &self.outbox, &self.ctx.stats) else {
                return Poll::Ready(());
            };
            if done && !self.writer.closing && self.outbox.owes_history() {
                // Everything is written: the next page of this client's history fits now.
                self.ctx.hub.next_history_page(self.id);
                continue;
            }
            if self.writer.closing {
                let now = self.ctx.clock.now();
                if self.deadline == 0 {
                    self.deadline = now + self.ctx.cfg.limits.close_timeout_ms * 1000;
                }
                // Checked here, not only by the timer: a peer that keeps sending keeps this
                // loop busy (and the timer, under tokio's budget, unpolled).
                if now >= self.deadline {
                    return Poll::Ready(());
                }
            }
            // Server closes TCP after its close frame is out and the client's close (or EOF) is in.
            if self.writer.close_written && (self.state.peer_closed || self.state.eof) {
                return Poll::Ready(());
            }
            if self.state.eof && !self.writer.closing {
                return Poll::Ready(()); // the client vanished without a close frame
            }
            if !self.state.eof {
                match self.read(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => {}
                }
            }
            if !done {
                match self.stream.poll_write_ready(cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => {}
                }
            } else if self.outbox.wait(cx.waker()) {
                continue; // queued after the flush above
            }
            match self.poll_timer(cx) {
                Poll::Ready(true) => return Poll::Ready(()),
                Poll::Ready(false) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The close deadline and the ping schedule. Ready(true): the connection is over.
    fn poll_timer(&mut self, cx: &mut TaskContext<'_>) -> Poll<bool> {
        let limits = &self.ctx.cfg.limits;
        let idle_at = match self.state.ping_sent {
            _ if !self.pings || self.writer.closing => 0,
            0 => self.state.last_rx + limits.ping_interval_ms * 1000,
            sent => sent + limits.pong_timeout_ms * 1000,
        };
        let Some(at) = [self.deadline, idle_at].into_iter().filter(|t| *t != 0).min() else {
            return Poll::Pending;
        };
        // The timer is moved only to an earlier time: every message from the client puts the
        // ping off, and re-arming for each would cost more than waking once too early.
        if self.timer_at == 0 || at < self.timer_at {
            let when = self.ctx.clock.instant(at);
            match &mut self.timer {
                Some(t) => t.as_mut().reset(when),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(when))),
            }
            self.timer_at = at;
        }
        let Some(timer) = self.timer.as_mut() else { return Poll::Pending };
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.timer_at = 0; // re-armed on the next turn
        let now = self.ctx.clock.now();
        if self.deadline != 0 && now >= self.deadline {
            return Poll::Ready(true);
        }
        if idle_at != 0 && now >= idle_at {
            if self.state.ping_sent != 0 {
                Stats::inc(&self.ctx.stats.idle_timeouts);
                self.state.code.get_or_insert(close::GOING_AWAY);
                self.outbox.close(close::GOING_AWAY, "no answer to ping");
            } else {
                self.outbox.push_control(wsframe::encode(wsframe::OP_PING, b""));
                self.state.ping_sent = now;
            }
        }
        Poll::Ready(false)
    }

    /// Leaves the hub, once.
    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let code = self.state.code.or(self.outbox.close_code()).unwrap_or(1006);
        if self.ctx.cfg.echo {
            self.ctx.hub.detach_silent(self.id);
        } else {
            self.ctx.hub.disconnect(self.id, code);
        }
        self.ctx.stats.connections_open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(ip) = self.ip.take() {
            self.ctx.release_ip(ip);
        }
    }

    /// One read from the connection through the thread's shared buffer.
    fn read(&mut self, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            match self.stream.poll_read_into(cx, &mut buf) {
                Poll::Ready(Ok(0)) => {
                    self.state.eof = true;
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Ok(n)) => {
                    Stats::add(&self.ctx.stats.bytes_in, n as u64);
                    self.state.last_rx = self.ctx.clock.now();
                    self.state.ping_sent = 0;
                    self.input(&buf[..n]);
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    }

    fn input(&mut self, data: &[u8]) {
        if self.state.reading_done {
            return; // after a close or a violation, bytes are read only to see EOF
        }
        let mut msgs = Vec::new();
        let limits = wsframe::Limits { deflate: self.outbox.deflate() > 0, ..self.ctx.limits };
        let res = self.decoder.feed(data, limits, &mut |m| msgs.push(m));
        for m in msgs {
            self.message(m);
        }
        if let Err(v) = res {
            Stats::inc(&self.ctx.stats.protocol_errors);
            self.state.reading_done = true;
            self.state.code.get_or_insert(v.code);
            self.outbox.close(v.code, v.reason);
        }
    }

    fn message(&mut self, m: Incoming) {
        let ctx = self.ctx.clone();
        if self.outbox.is_closing() && !matches!(m, Incoming::Close(..)) {
            return; // closing: only the client's close reply matters now
        }
        if ctx.cfg.echo {
            return self.echo(m);
        }
        // Control frames count too: a ping costs an answer, and a flood of them is a flood.
        if !matches!(m, Incoming::Close(..))
            && !self.take_token(matches!(m, Incoming::Text(_) | Incoming::Binary(_)))
        {
            return;
        }
        match m {
            Incoming::Text(text) => {
                Stats::inc(&ctx.stats.messages_in);
                if self.pusher {
                    return crate::pusher::text(&ctx, self.id, &self.outbox, &text);
                }
                match protocol::parse_client(&text, ctx.hub.wire().plain_text_only()) {
                    Ok(req) => ctx.hub.command(self.id, req),
                    Err(e) => ctx.hub.reply_error(self.id, e.code, &e.message, e.reference.as_ref()),
                }
            }
            Incoming::Binary(_) => {
                Stats::inc(&ctx.stats.messages_in);
                ctx.hub.reply_error(self.id, "binary", "binary messages are not supported; send text", None);
            }
            control => self.control(control),
        }
    }

    /// The message rate limit: true if this message (or control frame) may pass. A refused
    /// message gets an `error` (`tell`: not for pings, whose flood would then flood back); a
    /// whole burst of refusals in a row closes the connection with 1008.
    fn take_token(&mut self, tell: bool) -> bool {
        let cfg = &self.ctx.cfg.limits;
        if cfg.max_messages_per_second == 0 {
            return true;
        }
        let now = self.ctx.clock.now();
        let st = &mut self.state;
        let refill = now.saturating_sub(st.refilled) as f64 / 1e6 * cfg.max_messages_per_second as f64;
        st.tokens = (st.tokens as f64 + refill).min(cfg.message_burst as f64) as f32;
        st.refilled = now;
        if st.tokens >= 1.0 {
            st.tokens -= 1.0;
            st.strikes = 0;
            return true;
        }
        st.strikes += 1;
        Stats::inc(&self.ctx.stats.rate_limited);
        if st.strikes >= cfg.message_burst {
            Stats::inc(&self.ctx.stats.rate_limit_closes);
            st.code.get_or_insert(close::POLICY);
            self.outbox.close(close::POLICY, "message rate limit exceeded");
        } else if tell {
            let msg = format!("more than {} messages per second: slow down", cfg.max_messages_per_second);
            self.ctx.hub.reply_error(self.id, "rate_limited", &msg, None);
        }
        false
    }

    /// Pings, pongs and the client's close.
    fn control(&mut self, m: Incoming) {
        match m {
            Incoming::Ping(payload) => self.outbox.push_pong(wsframe::encode(wsframe::OP_PONG, &payload)),
            Incoming::Close(code, _reason) => {
                self.state.peer_closed = true;
                self.state.reading_done = true;
                self.state.code.get_or_insert(code.unwrap_or(1005));
                // Echo the client's code (RFC 6455 5.5.1); a bodyless close is answered with 1000.
                self.outbox.close(code.unwrap_or(close::NORMAL), "");
            }
            Incoming::Pong | Incoming::Text(_) | Incoming::Binary(_) => {}
        }
    }
}

impl Session {
    /// Conformance mode: complete messages go back as they came; control frames as usual.
    fn echo(&mut self, m: Incoming) {
        let frame = match m {
            Incoming::Text(t) => wsframe::encode(wsframe::OP_TEXT, t.as_bytes()),
            Incoming::Binary(b) => wsframe::encode(wsframe::OP_BINARY, &b),
            control => return self.control(control),
        };
        let frame = match self.outbox.deflate() {
            0 => frame,
            bits => crate::hub::deflated(&frame, bits).unwrap_or(frame),
        };
        Stats::inc(&self.ctx.stats.messages_in);
        if self.outbox.push(frame, self.ctx.cfg.limits.max_backlog_bytes, crate::config::SlowConsumer::Close)
            == crate::outbox::Push::Overflow
        {
            Stats::inc(&self.ctx.stats.slow_consumer_closes);
        }
    }
}
