//! The `AdmissionConfig` group of the config: its keys, their defaults and their checks.

use super::*;

/// Who may open a WebSocket: read by the upgrade check.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AdmissionConfig {
    /// Open WebSocket connections allowed at once; past it → HTTP 503.
    pub max_connections: usize,
    /// Open WebSocket connections per client IP; past it → HTTP 429. 0 = unlimited.
    pub max_connections_per_ip: usize,
    /// Origins allowed to open a WebSocket (exact `scheme://host[:port]`), `"*"` for any.
    /// Empty (the default) = same origin only: a browser's `Origin` must match the `Host` it
    /// connects to. Requests without `Origin` (non-browser clients) are allowed. Else HTTP 403.
    pub allowed_origins: Vec<String>,
    /// Proxy addresses (IPs or CIDR ranges) whose `X-Forwarded-For` is believed; for everyone
    /// else the TCP peer address is the client's address.
    pub trusted_proxies: Vec<String>,
    /// IPv6 clients are counted per network of this prefix length (one household or host
    /// usually has a whole /64); IPv4 clients per address.
    pub ipv6_prefix: u8,
    /// Most request headers in the upgrade request; more → HTTP 431.
    pub max_header_count: usize,
    /// Most bytes of request line and headers; more → HTTP 431.
    pub max_header_bytes: usize,
    /// Time a client has to send its HTTP request headers; with `tls`, also the time it has
    /// for the TLS handshake before that (each phase gets the whole time).
    pub handshake_timeout_ms: u64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_connections: 100_000,
            max_connections_per_ip: 256,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            ipv6_prefix: 64,
            max_header_count: 64,
            max_header_bytes: 16 * 1024,
            handshake_timeout_ms: 10_000,
        }
    }
}

impl AdmissionConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        range("max_connections", self.max_connections, 1, 10_000_000)?;
        range("max_connections_per_ip", self.max_connections_per_ip, 0, 10_000_000)?;
        range("max_header_count", self.max_header_count, 8, 1000)?;
        range("ipv6_prefix", self.ipv6_prefix as usize, 32, 128)?;
        range("max_header_bytes", self.max_header_bytes, 8192, 1 << 20)?;
        range("handshake_timeout_ms", self.handshake_timeout_ms as usize, 100, 600_000)?;
        for (i, o) in self.allowed_origins.iter().enumerate() {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(err(
                    &format!("allowed_origins[{i}]"),
                    format!("`{o}` is not \"*\" or an origin such as https://example.com"),
                ));
            }
        }
        self.proxy_nets().map(drop)
    }

    /// The `trusted_proxies` key as networks (a plain IP is a one-address network).
    pub fn proxy_nets(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        err(
                            &format!("trusted_proxies[{i}]"),
                            format!("`{p}` is not an IP address or CIDR range"),
                        )
                    })
            })
            .collect()
    }
}
