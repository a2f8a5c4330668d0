//! Counters: every connection, message, byte and drop is counted here.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

#[derive(Default, Debug)]
pub struct Stats {
    pub connections_total: AtomicU64,
    pub connections_open: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub host_broadcasts: AtomicU64,
    pub slow_consumer_closes: AtomicU64,
    pub messages_dropped: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub command_errors: AtomicU64,
    pub handshake_rejects: AtomicU64,
    pub kicks: AtomicU64,
    pub origin_rejects: AtomicU64,
    pub per_ip_rejects: AtomicU64,
    pub rate_limited: AtomicU64,
    pub rate_limit_closes: AtomicU64,
    pub idle_timeouts: AtomicU64,
    pub hook_timeouts: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub tls_handshake_timeouts: AtomicU64,
    pub header_rejects: AtomicU64,
    pub control_requests: AtomicU64,
    pub control_connections_open: AtomicU64,
    pub control_peer_rejects: AtomicU64,
    pub control_connection_rejects: AtomicU64,
    pub control_idle_closes: AtomicU64,
    pub api_auth_failures: AtomicU64,
    pub api_requests: AtomicU64,
    pub auth_failures: AtomicU64,
    pub rooms_evicted: AtomicU64,
    pub room_refusals: AtomicU64,
    pub history_trimmed: AtomicU64,
    pub moderation_refusals: AtomicU64,
    pub cluster_errors: AtomicU64,
    pub cluster_reconnects: AtomicU64,
    pub cluster_local_only: AtomicU64,
    pub cluster_early_dropped: AtomicU64,
    pub cluster_posts_dropped: AtomicU64,
    /// 1 while the engine is in a cluster and Redis answers (see `cluster_degraded`).
    pub cluster_up: AtomicU64,
    /// In a cluster: every live node's counters added up, as the link last read them (each node
    /// writes its own to Redis every second).
    pub cluster_totals: std::sync::Mutex<Option<std::collections::BTreeMap<String, u64>>>,
}

/// A point-in-time copy, as returned by `chat_stats_json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Snapshot {
    pub connections_total: u64,
    pub connections_open: u64,
    pub rooms: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub host_broadcasts: u64,
    pub slow_consumer_closes: u64,
    pub messages_dropped: u64,
    pub protocol_errors: u64,
    pub command_errors: u64,
    pub handshake_rejects: u64,
    pub kicks: u64,
    pub origin_rejects: u64,
    pub per_ip_rejects: u64,
    pub rate_limited: u64,
    pub rate_limit_closes: u64,
    pub idle_timeouts: u64,
    pub hook_timeouts: u64,
    pub handshake_timeouts: u64,
    /// TLS handshakes that failed (not TLS, no common version, cipher or ALPN protocol, the
    /// client refused the certificate, or hung up).
    pub tls_handshake_failures: u64,
    /// TLS handshakes not finished within `handshake_timeout_ms`.
    pub tls_handshake_timeouts: u64,
    pub header_rejects: u64,
    pub control_requests: u64,
    /// Control socket connections open now.
    pub control_connections_open: u64,
    /// Control connections refused because the peer's uid is not allowed (`control_socket_uids`).
    pub control_peer_rejects: u64,
    /// Control connections refused because `control_socket_max_connections` were open.
    pub control_connection_rejects: u64,
    /// Control connections closed by `control_socket_idle_timeout_ms`.
    pub control_idle_closes: u64,
    pub api_auth_failures: u64,
    pub api_requests: u64,
    pub auth_failures: u64,
    /// Empty rooms forgotten with their history before their time (room or byte limits).
    pub rooms_evicted: u64,
    /// Rooms clients were refused to create (`max_rooms`, `max_rooms_per_ip`, per connection).
    pub room_refusals: u64,
    /// Messages dropped from a room's history by the byte limits.
    pub history_trimmed: u64,
    /// Messages and joins refused because the event queue had no room for the host's decision.
    pub moderation_refusals: u64,
    /// Redis calls that failed or took longer than `redis_timeout_ms`.
    pub cluster_errors: u64,
    /// Times the engine connected to Redis again after losing it.
    pub cluster_reconnects: u64,
    /// Messages delivered on this node only (id 0, not kept), because Redis could not be reached.
    pub cluster_local_only: u64,
    /// Messages that came while a room's history was loading and did not fit the wait list (they are in the loaded history).
    pub cluster_early_dropped: u64,
    /// Messages refused because too many were waiting for Redis (counted, and the sender told).
    pub cluster_posts_dropped: u64,
    /// In a cluster: 1 while Redis answers, 0 while this node serves alone. Alone: 0.
    pub cluster_up: u64,
    pub events_queued: u64,
    pub events_dropped: u64,
    pub running: bool,
    /// In a cluster: the same counters added up over every live node (at most ~1 s old), and
    /// `nodes`, how many there are; this node's own are the fields above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<std::collections::BTreeMap<String, u64>>,
}

impl Stats {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self, rooms: u64, events_queued: u64, events_dropped: u64, running: bool) -> Snapshot {
        Snapshot {
            connections_total: self.connections_total.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            rooms,
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            host_broadcasts: self.host_broadcasts.load(Relaxed),
            slow_consumer_closes: self.slow_consumer_closes.load(Relaxed),
            messages_dropped: self.messages_dropped.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
            command_errors: self.command_errors.load(Relaxed),
            handshake_rejects: self.handshake_rejects.load(Relaxed),
            kicks: self.kicks.load(Relaxed),
            origin_rejects: self.origin_rejects.load(Relaxed),
            per_ip_rejects: self.per_ip_rejects.load(Relaxed),
            rate_limited: self.rate_limited.load(Relaxed),
            rate_limit_closes: self.rate_limit_closes.load(Relaxed),
            idle_timeouts: self.idle_timeouts.load(Relaxed),
            hook_timeouts: self.hook_timeouts.load(Relaxed),
            handshake_timeouts: self.handshake_timeouts.load(Relaxed),
            tls_handshake_failures: self.tls_handshake_failures.load(Relaxed),
            tls_handshake_timeouts: self.tls_handshake_timeouts.load(Relaxed),
            header_rejects: self.header_rejects.load(Relaxed),
            control_requests: self.control_requests.load(Relaxed),
            control_connections_open: self.control_connections_open.load(Relaxed),
            control_peer_rejects: self.control_peer_rejects.load(Relaxed),
            control_connection_rejects: self.control_connection_rejects.load(Relaxed),
            control_idle_closes: self.control_idle_closes.load(Relaxed),
            api_auth_failures: self.api_auth_failures.load(Relaxed),
            api_requests: self.api_requests.load(Relaxed),
            auth_failures: self.auth_failures.load(Relaxed),
            rooms_evicted: self.rooms_evicted.load(Relaxed),
            room_refusals: self.room_refusals.load(Relaxed),
            history_trimmed: self.history_trimmed.load(Relaxed),
            moderation_refusals: self.moderation_refusals.load(Relaxed),
            cluster_errors: self.cluster_errors.load(Relaxed),
            cluster_reconnects: self.cluster_reconnects.load(Relaxed),
            cluster_local_only: self.cluster_local_only.load(Relaxed),
            cluster_early_dropped: self.cluster_early_dropped.load(Relaxed),
            cluster_posts_dropped: self.cluster_posts_dropped.load(Relaxed),
            cluster_up: self.cluster_up.load(Relaxed),
            events_queued,
            events_dropped,
            running,
            cluster: self.cluster_totals.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

/// Gauges (values that go up and down); every other field is a counter.
const GAUGES: [&str; 6] =
    ["connections_open", "control_connections_open", "rooms", "events_queued", "running", "cluster_up"];

impl Snapshot {
    /// The Prometheus text exposition format (`GET /metrics`).
    pub fn prometheus(&self) -> String {
        let serde_json::Value::Object(fields) = serde_json::to_value(self).unwrap_or_default() else {
            return String::new();
        };
        let mut out = String::new();
        for (field, value) in fields {
            if let serde_json::Value::Object(totals) = &value {
                // The cluster's totals: one gauge per counter, `embedchat_cluster_total_<name>`.
                for (name, v) in totals {
                    let metric = format!("embedchat_cluster_total_{name}");
                    out.push_str(&format!("# TYPE {metric} gauge\n{metric} {}\n", v.as_u64().unwrap_or(0)));
                }
                continue;
            }
            let v = match value {
                serde_json::Value::Bool(b) => u64::from(b),
                v => v.as_u64().unwrap_or(0),
            };
            let (name, kind) = if GAUGES.contains(&field.as_str()) {
                (format!("embedchat_{field}"), "gauge")
            } else if field.ends_with("_total") {
                (format!("embedchat_{field}"), "counter")
            } else {
                (format!("embedchat_{field}_total"), "counter")
            };
            out.push_str(&format!("# TYPE {name} {kind}\n{name} {v}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_a_type_line_and_a_value_for_every_field() {
        let s = Stats::default();
        Stats::add(&s.messages_in, 7);
        let text = s.snapshot(2, 0, 0, true).prometheus();
        assert!(
            text.contains("# TYPE embedchat_messages_in_total counter\nembedchat_messages_in_total 7\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE embedchat_rooms gauge\nembedchat_rooms 2\n"));
        assert!(text.contains("embedchat_connections_total 0\n"));
        assert!(text.contains("embedchat_running 1\n"));
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(samples, text.lines().filter(|l| l.starts_with("# TYPE")).count());
    }
}
