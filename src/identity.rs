//! Who a connection is and where it left off: plain values settled before the upgrade (by the
//! HTTP layer and the login check) and handed down to the hub.

/// A connection's id: 1, 2, 3… per engine; 0 means the host.
pub type ConnId = u64;

use std::net::IpAddr;

/// Who a connection is, settled before the upgrade (token, or what the client asked for).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// The client's address as limits count it (an IPv6 client's network, see `ipv6_prefix`).
    pub ip: Option<IpAddr>,
    /// Connections with the same key are one user (tabs): `sub:<token sub>`, or `key:<secret>`
    /// for an anonymous browser's own random key. None: this connection alone.
    pub user: Option<String>,
    pub name: Option<String>,
    /// The name comes from the site's login: `nick` is refused.
    pub bound: bool,
    /// Rooms the token allows (None: any).
    pub rooms: Option<Vec<String>>,
}

/// Where a joining client left off: the last id it saw and the epoch that id is from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    pub since: Option<u64>,
    pub epoch: Option<String>,
}
