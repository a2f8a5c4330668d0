//! Where messages leave the hub: into this engine's outboxes, and through the `Broker` to
//! wherever else the room lives.
//!
//! Every delivery to a room goes through `Hub::to_room`, which encodes the message at most once
//! per wire (`Frames`), pushes the same bytes into every member's bounded outbox, counts what
//! happened (`Delivery::account`), then hands the message to the broker. The broker of a
//! single engine has nothing to add (`LocalOnly`); a cluster's broker forwards the message to
//! the other nodes, which deliver it to their members the same way. That is the whole seam:
//! scale-out adds a `Broker`, not edits at every place a message is sent.
//!
//! A cluster also orders messages (`Broker::orders`): one sequence of ids per room across every
//! node. Then a message is not delivered here first; it is `post`ed, the cluster gives it its
//! id, and every node, this one included, delivers it when it comes back (`hub/cluster.rs`).

use std::sync::Arc;

use bytes::Bytes;

use super::room::Slot;
use crate::config::SlowConsumer;
use crate::events::{Event, EventKind, EventQueue};
use crate::identity::ConnId;
use crate::outbox::{Outbox, Push};
use crate::protocol::{Codec, Out, Wire};
use crate::stats::Stats;
use crate::wsframe;

/// A message and its frames, built lazily: at most one encoding and one frame per wire, and
/// one compressed frame per wire for the members that negotiated permessage-deflate, each
/// shared by every member that takes it.
pub struct Frames<'a> {
    pub out: Out<'a>,
    plain: [Option<Option<Bytes>>; Wire::COUNT],
    /// Compressed with the full window (what browsers negotiate); None inside: not smaller.
    packed: [Option<Option<Bytes>>; Wire::COUNT],
}

impl<'a> Frames<'a> {
    pub fn new(out: Out<'a>) -> Self {
        Frames { out, plain: Default::default(), packed: Default::default() }
    }

    /// With the JSON text already made (a message the room also keeps in its history).
    pub fn with_json(out: Out<'a>, json: &str) -> Self {
        let mut f = Frames::new(out);
        f.plain[Wire::Json.index()] = Some(Some(wsframe::text(json)));
        f
    }

    /// The frame for a connection of `codec`, or None when its wire does not carry this
    /// message.
    pub fn get(&mut self, codec: Codec) -> Option<Bytes> {
        let out = &self.out;
        let wire = codec.wire;
        let plain = self.plain[wire.index()]
            .get_or_insert_with(|| wire.encode(out).map(|t| wsframe::text(&t)))
            .clone()?;
        Some(match codec.deflate {
            0 => plain,
            15 => {
                self.packed[wire.index()].get_or_insert_with(|| deflated(&plain, 15)).clone().unwrap_or(plain)
            }
            // A smaller window was asked for (rare): compressed for this member alone.
            bits => deflated(&plain, bits).unwrap_or(plain),
        })
    }
}

/// `plain`'s message compressed into a frame of its own, if that is smaller.
pub fn deflated(plain: &Bytes, window_bits: u8) -> Option<Bytes> {
    crate::deflate::compress(wsframe::payload(plain), window_bits)
        .map(|z| wsframe::encode_deflated(plain[0] & 0x0f, &z))
}

/// What a cluster needs to hear from this node. Called under the hub's lock, so calls for one
/// room arrive in the order they happened here; an implementation must not block (queue the
/// work and return).
pub trait Broker: Send + Sync {
    /// `out` went to this node's members of `room`; the other nodes' members need it too.
    fn room(&self, room: &str, out: &Out<'_>);
    /// `out` (a whisper) went to this node's tabs of `user`; its tabs elsewhere need it too.
    fn user(&self, user: &str, out: &Out<'_>);
    /// Whether the broker gives messages their ids (a cluster): asked once, at start.
    fn orders(&self) -> bool {
        false
    }
    /// A message for the broker to number and bring back to every node (only when `orders`).
    fn post(&self, _post: Post) {}
    /// A host message for every room of the cluster (`post.room` is empty; only when
    /// `orders`): the broker posts it into each room that has users on some node.
    fn post_everywhere(&self, _post: Post) {}
    /// `room` has its first member here: follow its messages and load its history, then call
    /// `Hub::loaded` with `generation`.
    fn watch(&self, _room: &Arc<str>, _generation: u64) {}
    /// `room` has no member here any more: stop following it.
    fn unwatch(&self, _room: &Arc<str>) {}
    /// A user's tabs in a room on this node changed (only when `orders`): the cluster keeps
    /// and announces it.
    fn presence(&self, _change: super::cluster_presence::PresenceChange) {}
    /// Something the host asked for a connection or user that is not (only) on this node.
    fn node_op(&self, _op: NodeOp) {}
    /// A message the host restores into a room's history (only when `orders`): `json` is the
    /// message object with its id.
    fn restore(&self, _room: &str, _id: u64, _json: String) {}
    /// A user of this node took a name (`claim`; `force`: a logged-in user's, which wins) or
    /// gave it up (only when `orders`): names are unique across the cluster, and a user whose
    /// name another node's user had first is renamed (`Hub::name_taken`).
    fn name(&self, _user: &Arc<str>, _name: &Arc<str>, _claim: bool, _force: bool) {}
}

/// What the host does to connections on other nodes; the node that has them carries it out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NodeOp {
    /// Close a connection with 4000 and `reason`.
    Kick { conn: ConnId, reason: String },
    /// Close every connection of a logged-in user (`sub`).
    KickUser { sub: String, reason: String },
    /// A host message to one connection.
    Send { conn: ConnId, text: String },
    /// Close every Pusher connection signed in as `user_id` or in a presence channel as it
    /// (the Pusher HTTP API's `terminate_connections`).
    PusherTerminate { user_id: String },
    /// A logged-in user took `name` from this guest (`user`, a user key): the guest's node
    /// renames it.
    Rename { user: String, name: String },
}

/// A message on its way to the cluster, before it has an id.
#[derive(Clone)]
pub struct Post {
    pub room: Arc<str>,
    pub from: ConnId,
    pub name: Arc<str>,
    pub bound: bool,
    pub ts: u64,
    pub text: String,
    /// Set by the cluster: tells this message apart when it comes back (see `Posted::key`).
    pub key: u64,
    /// What to tell this node's host once the message has its id (`message` or `published`).
    pub event: Option<Event>,
    /// A named event's name (the Pusher protocol's client and HTTP API events; `text` is its
    /// data); None for a chat message.
    pub event_name: Option<Arc<str>>,
    /// The connection that does not get it (the Pusher API's `socket_id`, a client event's
    /// sender); connection ids are unique in the cluster.
    pub except: Option<ConnId>,
}

/// The broker of an engine that is alone: everything is delivered locally already.
pub struct LocalOnly;

impl Broker for LocalOnly {
    fn room(&self, _room: &str, _out: &Out<'_>) {}
    fn user(&self, _user: &str, _out: &Out<'_>) {}
}

/// Pushing frames into outboxes and counting the outcome.
pub struct Delivery {
    pub stats: Arc<Stats>,
    pub events: Arc<EventQueue>,
    pub max_backlog: usize,
    /// The engine's slow-consumer policy (rooms may override it).
    pub policy: SlowConsumer,
}

impl Delivery {
    /// Pushes `frames` to every member of a room (except one); returns how many got it.
    pub fn to_members(
        &self,
        members: &[Slot],
        frames: &mut Frames<'_>,
        policy: SlowConsumer,
        except: Option<ConnId>,
    ) -> usize {
        self.to_members_where(members, frames, policy, |id| Some(id) != except)
    }

    /// `to_members`, to the members `to` keeps.
    pub fn to_members_where(
        &self,
        members: &[Slot],
        frames: &mut Frames<'_>,
        policy: SlowConsumer,
        to: impl Fn(ConnId) -> bool,
    ) -> usize {
        let mut sent = 0;
        for m in members {
            if !to(m.id) {
                continue;
            }
            if let Some(frame) = frames.get(m.wire) {
                let push = m.outbox.push(frame, self.max_backlog, policy);
                sent += usize::from(self.account(m.id, push));
            }
        }
        Stats::add(&self.stats.messages_out, sent as u64);
        sent
    }

    /// Pushes one message to one connection under the engine's policy; None when its wire does
    /// not carry the message.
    pub fn to_one(&self, id: ConnId, outbox: &Outbox, codec: Codec, out: &Out<'_>) -> Option<Push> {
        let frame = wsframe::text(&codec.wire.encode(out)?);
        let frame = match codec.deflate {
            0 => frame,
            bits => deflated(&frame, bits).unwrap_or(frame),
        };
        let push = outbox.push(frame, self.max_backlog, self.policy);
        self.account(id, push);
        Some(push)
    }

    /// Counts what a push did; tells the host when a connection starts or keeps lagging (at 1,
    /// 10, 100… dropped messages, so a lagging client cannot flood the event queue). Returns
    /// whether the frame was queued.
    pub fn account(&self, id: ConnId, push: Push) -> bool {
        match push {
            Push::Queued => true,
            Push::Overflow => {
                Stats::inc(&self.stats.slow_consumer_closes);
                false
            }
            Push::Closed => false,
            Push::Lagging { queued, dropped, total } => {
                Stats::add(&self.stats.messages_dropped, u64::from(dropped));
                let before = total - u64::from(dropped);
                if before == 0 || before.ilog10() != total.ilog10() {
                    let mut ev = Event::new(EventKind::Lagging, id);
                    ev.count = total;
                    self.events.push(ev);
                }
                queued
            }
        }
    }
}
