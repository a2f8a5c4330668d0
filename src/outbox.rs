//! One connection's outgoing queue: shared, already-framed bytes waiting for its writer.
//!
//! The hub pushes a reference to the same frame into every member's outbox (no copy, no
//! per-member JSON); the connection's task takes everything queued and writes it with one
//! vectored write. The queue is bounded in bytes: a consumer that falls behind past the limit is
//! closed (1008) or has messages dropped, per policy; it never grows the engine's memory.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use std::sync::MutexGuard;
use std::task::Waker;

use crate::config::SlowConsumer;
use crate::wsframe;

/// Unsent pongs kept at most (see `Queue::pongs`).
const MAX_PONGS: usize = 16;

/// Result of offering a frame to an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The backlog limit was reached and the policy drops messages: `dropped` were dropped now
    /// (the oldest queued, or this one when `queued` is false); `total` for this connection.
    Lagging {
        queued: bool,
        dropped: u32,
        total: u64,
    },
    /// The backlog limit would be passed; the frame was not queued and the outbox is now closing.
    Overflow,
    /// The connection is already closing; the frame was discarded.
    Closed,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    /// Answers to the latest pings not yet taken by the writer, at most `MAX_PONGS`: RFC 6455
    /// (5.5.3) lets an endpoint answer only the most recent ping, so a client that pings without
    /// reading cannot grow this queue; a few are kept because clients that ping in bursts (and
    /// the Autobahn suite, case 2.10) like an answer to each.
    pongs: VecDeque<Bytes>,
    /// Close frame to send once, after which nothing else is accepted.
    close: Option<Bytes>,
    closing: bool,
    /// The close discards what is queued (slow consumer, stop) instead of sending it first.
    discard: bool,
    /// The code of the close frame, once closing.
    code: Option<u16>,
    /// The writer waiting for something to write: woken by the next push or close.
    waker: Option<Waker>,
}

/// What the writer takes in one go.
pub struct Batch {
    /// Pongs to send before the frames taken.
    pub pongs: VecDeque<Bytes>,
    /// The close frame, when the connection is being closed: to be sent after the frames taken.
    pub close: Option<Bytes>,
    /// Frames the writer took earlier are to be dropped too (except one it has half written).
    pub discard: bool,
}

#[derive(Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Bytes queued or taken but not yet written to the socket.
    backlog: AtomicUsize,
    /// Messages dropped by a drop policy, over the connection's life.
    dropped: AtomicU64,
    /// The hub owes this connection more history: ask for it once everything queued is written.
    owes_history: AtomicBool,
    /// The compressor window its permessage-deflate allows (0: not negotiated).
    deflate: u8,
}

impl Outbox {
    #[cfg(test)]
    pub fn new() -> Self {
        Self::default()
    }

    /// For a connection that negotiated permessage-deflate with this compressor window.
    pub fn with_deflate(window_bits: u8) -> Self {
        Outbox { deflate: window_bits, ..Self::default() }
    }

    pub fn deflate(&self) -> u8 {
        self.deflate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic while holding this lock leaves only a queue of bytes behind: still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame. If the backlog would pass `max_backlog`, the policy decides: close with
    /// 1008 (dropping what is queued), drop the oldest queued frames, or drop this one.
    pub fn push(&self, frame: Bytes, max_backlog: usize, policy: SlowConsumer) -> Push {
        let mut q = self.lock();
        if q.closing {
            return Push::Closed;
        }
        let len = frame.len();
        let mut dropped = 0u32;
        if self.backlog.load(Ordering::Relaxed) + len > max_backlog {
            match policy {
                SlowConsumer::Close => {
                    drop(q);
                    self.close_discarding(wsframe::close::POLICY, "slow consumer: backlog limit passed");
                    return Push::Overflow;
                }
                SlowConsumer::DropOldest => {
                    // Frames the writer already took cannot be recalled; only queued ones go.
                    while self.backlog.load(Ordering::Relaxed) + len > max_backlog {
                        let Some(old) = q.frames.pop_front() else { break };
                        self.backlog.fetch_sub(old.len(), Ordering::Relaxed);
                        dropped += 1;
                    }
                }
                SlowConsumer::DropNewest => {}
            }
            if self.backlog.load(Ordering::Relaxed) + len > max_backlog {
                let total = self.dropped.fetch_add(u64::from(dropped) + 1, Ordering::Relaxed)
                    + u64::from(dropped)
                    + 1;
                return Push::Lagging { queued: false, dropped: dropped + 1, total };
            }
        }
        self.backlog.fetch_add(len, Ordering::Relaxed);
        q.frames.push_back(frame);
        Self::wake(q);
        if dropped > 0 {
            let total = self.dropped.fetch_add(u64::from(dropped), Ordering::Relaxed) + u64::from(dropped);
            return Push::Lagging { queued: true, dropped, total };
        }
        Push::Queued
    }

    pub fn set_owes_history(&self, owes: bool) {
        self.owes_history.store(owes, Ordering::Relaxed);
    }

    /// Whether the hub has more history for this connection (see `Hub::next_history_page`).
    pub fn owes_history(&self) -> bool {
        self.owes_history.load(Ordering::Relaxed)
    }

    /// Messages dropped by a drop policy so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues the answer to a ping, forgetting the oldest unsent one past `MAX_PONGS`. Outside
    /// the backlog limit: a few small frames at most, and a peer that pings must get its pong
    /// even under load.
    pub fn push_pong(&self, frame: Bytes) {
        let mut q = self.lock();
        if q.closing {
            return;
        }
        self.backlog.fetch_add(frame.len(), Ordering::Relaxed);
        q.pongs.push_back(frame);
        if q.pongs.len() > MAX_PONGS {
            if let Some(old) = q.pongs.pop_front() {
                self.backlog.fetch_sub(old.len(), Ordering::Relaxed);
            }
        }
        Self::wake(q);
    }

    /// Queues a frame of our own (a ping) outside the backlog limit.
    pub fn push_control(&self, frame: Bytes) {
        let mut q = self.lock();
        if q.closing {
            return;
        }
        self.backlog.fetch_add(frame.len(), Ordering::Relaxed);
        q.frames.push_back(frame);
        Self::wake(q);
    }

    /// Starts closing: what is queued is still sent, then a close frame with `code`; nothing
    /// more is accepted. Only the first close counts. Returns whether this call started it.
    pub fn close(&self, code: u16, reason: &str) -> bool {
        self.start_close(code, reason, false)
    }

    /// Like `close`, but queued data is dropped and the close frame goes out at once: the peer
    /// is not reading (slow consumer), or there is no time left to deliver it (stop).
    pub fn close_discarding(&self, code: u16, reason: &str) -> bool {
        self.start_close(code, reason, true)
    }

    fn start_close(&self, code: u16, reason: &str, discard: bool) -> bool {
        let mut q = self.lock();
        if q.closing {
            return false;
        }
        q.closing = true;
        q.discard = discard;
        if discard {
            let pongs = std::mem::take(&mut q.pongs);
            let dropped: usize = q.frames.drain(..).chain(pongs).map(|f| f.len()).sum();
            self.backlog.fetch_sub(dropped, Ordering::Relaxed);
        }
        let frame = wsframe::close_frame(code, reason);
        // The close frame is queued data too: counted until the writer sends it.
        self.backlog.fetch_add(frame.len(), Ordering::Relaxed);
        q.close = Some(frame);
        q.code = Some(code);
        Self::wake(q);
        true
    }

    pub fn is_closing(&self) -> bool {
        self.lock().closing
    }

    /// The code this outbox closed with, if it is closing.
    pub fn close_code(&self) -> Option<u16> {
        self.lock().code
    }

    /// Moves every queued frame into `into` (swapping buffers, so no allocation in steady state).
    pub fn take(&self, into: &mut VecDeque<Bytes>) -> Batch {
        let mut q = self.lock();
        if into.is_empty() {
            std::mem::swap(&mut q.frames, into);
        } else {
            into.extend(q.frames.drain(..));
        }
        Batch { pongs: std::mem::take(&mut q.pongs), close: q.close.take(), discard: q.discard }
    }

    /// The writer reports bytes it wrote or discarded.
    pub fn written(&self, n: usize) {
        self.backlog.fetch_sub(n, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Wakes the waiting writer, if any, after letting go of the lock (its task may run on
    /// another thread at once and want the lock).
    fn wake(mut q: MutexGuard<'_, Queue>) {
        let waker = q.waker.take();
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The writer has written everything: it sleeps until the next push or close wakes
    /// `waker`. Returns true instead if something is already waiting (queued between its last
    /// take and now), so no wake-up is ever missed.
    pub fn wait(&self, waker: &Waker) -> bool {
        let mut q = self.lock();
        if !q.frames.is_empty() || !q.pongs.is_empty() || q.close.is_some() {
            return true;
        }
        if !q.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            q.waker = Some(waker.clone());
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_shared_not_copied() {
        let a = Outbox::new();
        let b = Outbox::new();
        let f = wsframe::text("hello");
        a.push(f.clone(), 1000, SlowConsumer::Close);
        b.push(f.clone(), 1000, SlowConsumer::Close);
        let mut qa = VecDeque::new();
        a.take(&mut qa);
        assert_eq!(qa[0].as_ptr(), f.as_ptr());
    }

    #[test]
    fn backlog_limit_closes_with_1008() {
        let o = Outbox::new();
        assert_eq!(o.push(Bytes::from(vec![0; 600]), 1000, SlowConsumer::Close), Push::Queued);
        assert_eq!(o.push(Bytes::from(vec![0; 600]), 1000, SlowConsumer::Close), Push::Overflow);
        assert_eq!(o.push(Bytes::from(vec![0; 1]), 1000, SlowConsumer::Close), Push::Closed);
        let mut q = VecDeque::new();
        let batch = o.take(&mut q);
        assert!(q.is_empty(), "queued data is dropped on close");
        let close = batch.close.unwrap();
        assert_eq!(&close[2..4], &1008u16.to_be_bytes());
        assert_eq!(o.backlog(), close.len(), "only the close frame is left to write");
    }

    #[test]
    fn backlog_counts_until_written() {
        let o = Outbox::new();
        o.push(Bytes::from(vec![0; 700]), 1000, SlowConsumer::Close);
        let mut q = VecDeque::new();
        o.take(&mut q);
        assert_eq!(
            o.push(Bytes::from(vec![0; 700]), 1000, SlowConsumer::Close),
            Push::Overflow,
            "taken but unwritten still counts"
        );
        let o = Outbox::new();
        o.push(Bytes::from(vec![0; 700]), 1000, SlowConsumer::Close);
        o.take(&mut q);
        o.written(700);
        assert_eq!(o.push(Bytes::from(vec![0; 700]), 1000, SlowConsumer::Close), Push::Queued);
    }

    #[test]
    fn drop_oldest_makes_room_and_counts() {
        let o = Outbox::new();
        let frame = || Bytes::from(vec![0; 400]);
        assert_eq!(o.push(frame(), 1000, SlowConsumer::DropOldest), Push::Queued);
        assert_eq!(o.push(frame(), 1000, SlowConsumer::DropOldest), Push::Queued);
        let third = o.push(frame(), 1000, SlowConsumer::DropOldest);
        assert_eq!(third, Push::Lagging { queued: true, dropped: 1, total: 1 }, "the first made room");
        assert_eq!(o.dropped(), 1);
        let mut q = VecDeque::new();
        o.take(&mut q);
        assert_eq!(q.len(), 2);
        assert!(!o.is_closing());
    }

    #[test]
    fn drop_newest_keeps_the_queue_and_refuses_the_new_frame() {
        let o = Outbox::new();
        o.push(Bytes::from(vec![1; 600]), 1000, SlowConsumer::DropNewest);
        let r = o.push(Bytes::from(vec![2; 600]), 1000, SlowConsumer::DropNewest);
        assert_eq!(r, Push::Lagging { queued: false, dropped: 1, total: 1 });
        let mut q = VecDeque::new();
        o.take(&mut q);
        assert_eq!(q[0][0], 1);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_graceful_close_sends_what_is_queued_first() {
        let o = Outbox::new();
        o.push(wsframe::text("last words"), 1000, SlowConsumer::Close);
        o.close(1001, "bye");
        let mut q = VecDeque::new();
        let batch = o.take(&mut q);
        assert_eq!(q.len(), 1);
        assert!(batch.close.is_some());
    }

    #[test]
    fn only_the_latest_pongs_wait() {
        let o = Outbox::new();
        for i in 0..1000u32 {
            o.push_pong(wsframe::encode(wsframe::OP_PONG, &i.to_be_bytes()));
        }
        assert_eq!(o.backlog(), 6 * MAX_PONGS, "a few pong frames, however many pings");
        let mut q = VecDeque::new();
        let pongs = o.take(&mut q).pongs;
        assert_eq!(&pongs.back().unwrap()[2..], &999u32.to_be_bytes(), "the latest is answered");
        assert!(q.is_empty());
    }

    #[test]
    fn only_the_first_close_counts() {
        let o = Outbox::new();
        assert!(o.close(1001, "bye"));
        assert!(!o.close(1008, "again"));
        let mut q = VecDeque::new();
        assert_eq!(&o.take(&mut q).close.unwrap()[2..4], &1001u16.to_be_bytes());
    }
}
