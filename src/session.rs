//! One WebSocket connection after the upgrade: one task that reads client frames, carries out
//! commands, and writes whatever the hub queued with vectored writes, then closes politely.
//!
//! Reads go through a buffer owned by the worker thread, not the connection, so an idle
//! connection holds no read buffer at all (tungstenite's default 128 KiB buffer cost 134 KiB of
//! RSS per idle connection when measured here).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::context::{Context, SessionGuard};
use crate::identity::{ConnId, Identity, Resume};
use crate::outbox::Outbox;
use crate::protocol;
use crate::stats::Stats;
use crate::wsframe::{self, close, Decoder, Incoming};

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
    /// Writes what the socket takes. Ok(true): everything written; Ok(false): socket full.
    fn flush(&mut self, stream: &TcpStream, outbox: &Outbox, stats: &Stats) -> io::Result<bool> {
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
            match stream.try_write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut w) => {
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Runs the connection to its end, then removes it from the hub.
pub async fn run(ctx: Arc<Context>, stream: TcpStream, early: Bytes, hello: Hello, _guard: SessionGuard) {
    let id = hello.id;
    let outbox = Arc::new(Outbox::new());
    if ctx.cfg.echo {
        ctx.hub.attach_silent(id, outbox.clone());
    } else {
        ctx.hub.connect(id, hello.who, &hello.room, hello.resume, outbox.clone());
    }
    let code =
        Connection { ctx: &ctx, id, outbox: &outbox, decoder: Decoder::new(), state: State::new(&ctx) }
            .serve(&stream, early)
            .await;
    if ctx.cfg.echo {
        ctx.hub.detach_silent(id);
    } else {
        ctx.hub.disconnect(id, code);
    }
}

struct State {
    /// Stop decoding: the client sent close or broke the protocol.
    reading_done: bool,
    peer_closed: bool,
    eof: bool,
    /// Close code reported to the host (what the client sent, or what we closed with).
    code: Option<u16>,
    /// When the client last sent anything, and whether we pinged it since.
    last_rx: Instant,
    ping_sent: Option<Instant>,
    /// Message rate token bucket, and refusals in a row.
    tokens: f64,
    refilled: Instant,
    strikes: u32,
}

impl State {
    fn new(ctx: &Context) -> Self {
        let now = Instant::now();
        State {
            reading_done: false,
            peer_closed: false,
            eof: false,
            code: None,
            last_rx: now,
            ping_sent: None,
            tokens: ctx.cfg.limits.message_burst as f64,
            refilled: now,
            strikes: 0,
        }
    }
}

struct Connection<'a> {
    ctx: &'a Context,
    id: ConnId,
    outbox: &'a Outbox,
    decoder: Decoder,
    state: State,
}

impl Connection<'_> {
    async fn serve(mut self, stream: &TcpStream, early: Bytes) -> u16 {
        let ctx = self.ctx;
        let close_timeout = Duration::from_millis(ctx.cfg.limits.close_timeout_ms);
        let mut writer = Writer::default();
        let mut deadline: Option<Instant> = None;
        if !early.is_empty() {
            self.input(&early);
        }
        // `early` is a view into hyper's whole read buffer (8 KiB or more): let it go now, not
        // when the connection ends.
        drop(early);
        let ping_interval = Duration::from_millis(ctx.cfg.limits.ping_interval_ms);
        let pong_timeout = Duration::from_millis(ctx.cfg.limits.pong_timeout_ms);
        let pings = ctx.cfg.limits.ping_interval_ms > 0 && !ctx.cfg.echo;
        // One timer for the close deadline and the ping schedule, moved rather than re-created.
        let timer = tokio::time::sleep(Duration::from_secs(86_400));
        tokio::pin!(timer);
        let mut timer_at = None;
        while let Ok(done) = writer.flush(stream, self.outbox, &ctx.stats) {
            if done && !writer.closing && self.outbox.owes_history() {
                // Everything is written: the next page of this client's history fits now.
                ctx.hub.next_history_page(self.id);
                continue;
            }
            let want_writable = !done;
            if writer.closing && deadline.is_none() {
                deadline = Some(Instant::now() + close_timeout);
            }
            // Server closes TCP after its close frame is out and the client's close (or EOF) is in.
            if writer.close_written && (self.state.peer_closed || self.state.eof) {
                break;
            }
            if self.state.eof && !writer.closing {
                break; // the client vanished without a close frame
            }
            let idle_at = match self.state.ping_sent {
                _ if !pings || writer.closing => None,
                Some(sent) => Some(sent + pong_timeout),
                None => Some(self.state.last_rx + ping_interval),
            };
            let next = match (deadline, idle_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if next != timer_at {
                if let Some(at) = next {
                    timer.as_mut().reset(at);
                }
                timer_at = next;
            }
            tokio::select! {
                biased;
                r = stream.readable(), if !self.state.eof => {
                    if r.is_err() || self.read(stream).is_err() {
                        break;
                    }
                    // A peer that keeps sending would win every turn of this biased select and
                    // starve the timer: the close deadline is checked here too.
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                }
                _ = self.outbox.notified(), if !want_writable => {}
                r = stream.writable(), if want_writable => {
                    if r.is_err() {
                        break;
                    }
                }
                _ = &mut timer, if next.is_some() => {
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        break;
                    }
                    if self.state.ping_sent.is_some() {
                        Stats::inc(&ctx.stats.idle_timeouts);
                        self.state.code.get_or_insert(close::GOING_AWAY);
                        self.outbox.close(close::GOING_AWAY, "no answer to ping");
                    } else {
                        self.outbox.push_control(wsframe::encode(wsframe::OP_PING, b""));
                        self.state.ping_sent = Some(now);
                    }
                    timer_at = None; // re-arm on the next turn
                }
            }
        }
        self.state.code.or(self.outbox.close_code()).unwrap_or(1006)
    }

    /// One read from the socket through the thread's shared buffer.
    fn read(&mut self, stream: &TcpStream) -> io::Result<()> {
        READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            match stream.try_read(&mut buf) {
                Ok(0) => {
                    self.state.eof = true;
                    Ok(())
                }
                Ok(n) => {
                    Stats::add(&self.ctx.stats.bytes_in, n as u64);
                    self.state.last_rx = Instant::now();
                    self.state.ping_sent = None;
                    self.input(&buf[..n]);
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn input(&mut self, data: &[u8]) {
        if self.state.reading_done {
            return; // after a close or a violation, bytes are read only to see EOF
        }
        let mut msgs = Vec::new();
        let res = self.decoder.feed(data, self.ctx.limits, &mut |m| msgs.push(m));
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
        let ctx = self.ctx;
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
        let now = Instant::now();
        let st = &mut self.state;
        let refill = (now - st.refilled).as_secs_f64() * cfg.max_messages_per_second as f64;
        st.tokens = (st.tokens + refill).min(cfg.message_burst as f64);
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

impl Connection<'_> {
    /// Conformance mode: complete messages go back as they came; control frames as usual.
    fn echo(&mut self, m: Incoming) {
        let frame = match m {
            Incoming::Text(t) => wsframe::encode(wsframe::OP_TEXT, t.as_bytes()),
            Incoming::Binary(b) => wsframe::encode(wsframe::OP_BINARY, &b),
            control => return self.control(control),
        };
        Stats::inc(&self.ctx.stats.messages_in);
        if self.outbox.push(frame, self.ctx.cfg.limits.max_backlog_bytes, crate::config::SlowConsumer::Close)
            == crate::outbox::Push::Overflow
        {
            Stats::inc(&self.ctx.stats.slow_consumer_closes);
        }
    }
}
