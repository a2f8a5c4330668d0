//! Every Redis key and channel the cluster uses, in one place (`docs/scaling.md` lists them).
//! The room's name comes last in each, so no room name can make one collide with another.

/// Names under one `redis_prefix`.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    /// `<prefix>:room:`, the start of every room channel.
    channel_prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.to_string(), channel_prefix: format!("{prefix}:room:") }
    }

    /// The cluster's history epoch (a string, set once by the first node).
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// The counter that numbers nodes as they start.
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// A room's last message id.
    pub fn seq(&self, room: &str) -> String {
        format!("{}:seq:{room}", self.prefix)
    }

    /// A room's history: a stream of messages, oldest first.
    pub fn history(&self, room: &str) -> String {
        format!("{}:history:{room}", self.prefix)
    }

    /// A room's users per node: field `<node>:<user>`, value the user's JSON with its tabs there.
    pub fn presence(&self, room: &str) -> String {
        format!("{}:presence:{room}", self.prefix)
    }

    /// A room's users: field `<user>`, value on how many nodes it has tabs there.
    pub fn users(&self, room: &str) -> String {
        format!("{}:users:{room}", self.prefix)
    }

    /// The rooms where a node has (or had) users, for cleaning up after it if it dies.
    pub fn node_rooms(&self, node: u64) -> String {
        format!("{}:node-rooms:{node}", self.prefix)
    }

    /// Each node's counters: field the node's number, value `{"at": ms, "s": its stats}`.
    pub fn stats(&self) -> String {
        format!("{}:stats", self.prefix)
    }

    /// The rooms that have users on some node.
    pub fn rooms(&self) -> String {
        format!("{}:rooms", self.prefix)
    }

    /// The nodes that have users in some room.
    pub fn presence_nodes(&self) -> String {
        format!("{}:presence-nodes", self.prefix)
    }

    /// Exists while a node is alive (it sets it again every second, with a short expiry).
    pub fn alive(&self, node: u64) -> String {
        format!("{}:alive:{node}", self.prefix)
    }

    /// Names in use: field the lower-cased name, value the user key that has it.
    pub fn names(&self) -> String {
        format!("{}:names", self.prefix)
    }

    /// The nodes where the user that has a name (lower-cased) has tabs.
    pub fn name_nodes(&self, lower: &str) -> String {
        format!("{}:name-nodes:{lower}", self.prefix)
    }

    /// The nodes whose users hold names (for cleaning up after a node that died).
    pub fn name_holder_nodes(&self) -> String {
        format!("{}:name-holder-nodes", self.prefix)
    }

    /// The names (lower-cased) a node's users have.
    pub fn node_names(&self, node: u64) -> String {
        format!("{}:node-names:{node}", self.prefix)
    }

    /// The prefix itself (the clean-up script builds the keys of a dead node from it).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The channel every node follows: whispers to users and what the host does to connections
    /// of other nodes.
    pub fn all(&self) -> String {
        format!("{}:all", self.prefix)
    }

    /// The bytes a room's history stream holds (to keep it within `history_max_bytes`).
    pub fn history_bytes(&self, room: &str) -> String {
        format!("{}:history-bytes:{room}", self.prefix)
    }

    /// The channel a room's messages are published on.
    pub fn channel(&self, room: &str) -> String {
        format!("{}{room}", self.channel_prefix)
    }

    /// The room a channel is for, if it is a room channel of this prefix.
    pub fn room_of<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(&self.channel_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_channel_gives_its_room_back_even_with_colons_in_the_name() {
        let k = Keys::new("ec");
        assert_eq!(k.channel("a:seq"), "ec:room:a:seq");
        assert_eq!(k.room_of(&k.channel("a:seq")), Some("a:seq"));
        assert_eq!(k.room_of("other:room:x"), None);
        assert_ne!(k.seq("a"), k.history("a"));
    }
}
