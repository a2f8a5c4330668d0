//! The `SiteConfig` group of the config: its keys, their defaults and their checks.

use super::*;

/// The site's ways in besides the chat: the page, metrics, login tokens, the HTTP API and the
/// control socket. The secrets live here and nowhere else.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SiteConfig {
    /// Serve the bundled chat page at `GET /`.
    pub page: bool,
    /// Where the page may be framed: the CSP `frame-ancestors` sources of `GET /` (`'self'`,
    /// `'none'`, or origins such as `https://site.example`). A site that shows the page in an
    /// iframe from another origin lists that origin.
    pub page_frame_ancestors: Vec<String>,
    /// Serve counters in Prometheus text format at `GET /metrics`.
    pub metrics: bool,
    /// `/metrics` asks for the `api_key` (`Authorization: Bearer`) like the HTTP API: the
    /// counters tell an outsider how busy the chat is and which limits are being hit.
    pub metrics_auth: bool,
    /// Tokens from the site's login (see `AuthConfig`); absent = everyone is anonymous.
    pub auth: Option<AuthConfig>,
    /// Bearer key for the HTTP API (`/api/...`); absent = the API is off.
    pub api_key: Option<String>,
    /// Path of a local control socket (Unix domain) for `chat_connect`; absent = none.
    pub control_socket: Option<String>,
    /// File mode of the control socket, octal digits as a string.
    pub control_socket_mode: String,
    /// Users (numeric uids) allowed on the control socket besides the engine's own user and
    /// root; a peer whose uid (`SO_PEERCRED`) is neither is closed at once. The file mode decides
    /// who can reach the socket at all; this list decides whose requests are carried out (with
    /// mode `0660` and a shared group: the FPM pool's uid). Uids, not gids: `SO_PEERCRED` carries
    /// only the peer's primary group, so a gid list would refuse a user who is in the group
    /// through a supplementary membership, which is how a web user is usually added to one.
    pub control_socket_uids: Vec<u32>,
    /// Control connections open at once; past it a new one is refused and closed.
    pub control_socket_max_connections: usize,
    /// A control connection that sends no request (or does not read its reply) for this long is
    /// closed; `chat_connect` handles reconnect by themselves.
    pub control_socket_idle_timeout_ms: u64,
    /// Serve HTTPS and `wss://` on `listen` (see `TlsConfig`); absent = plain HTTP and `ws://`.
    pub tls: Option<TlsConfig>,
    /// Speak the Pusher Channels protocol too (see `PusherConfig`); absent = not.
    pub pusher: Option<PusherConfig>,
}

impl Default for SiteConfig {
    fn default() -> Self {
        SiteConfig {
            page: true,
            page_frame_ancestors: vec!["'self'".into()],
            metrics: true,
            metrics_auth: false,
            auth: None,
            api_key: None,
            control_socket: None,
            control_socket_mode: "0600".into(),
            control_socket_uids: Vec::new(),
            // Near the largest PHP-FPM pools (one connection per request that posts, all at once
            // at worst); each costs a file descriptor and a few KiB.
            control_socket_max_connections: 256,
            control_socket_idle_timeout_ms: 60_000,
            tls: None,
            pusher: None,
        }
    }
}

impl SiteConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(a) = &self.auth {
            if a.secret.len() < 16 {
                return Err(err(
                    "auth.secret",
                    "must be at least 16 bytes (HS256 key; 32 random bytes recommended)",
                ));
            }
            if a.audience.as_ref().is_some_and(|aud| aud.is_empty() || aud.chars().any(char::is_control)) {
                return Err(err("auth.audience", "must be a non-empty string without control characters"));
            }
        }
        if self.metrics_auth && self.api_key.is_none() {
            return Err(err("metrics_auth", "needs `api_key`: /metrics then asks for that key"));
        }
        self.frame_ancestors()?;
        if let Some(k) = &self.api_key {
            if k.len() < 16 || k.chars().any(|c| c.is_control() || c == ' ') {
                return Err(err(
                    "api_key",
                    "must be at least 16 characters, without spaces or control characters",
                ));
            }
        }
        if let Some(p) = &self.control_socket {
            if p.is_empty() || p.len() > 100 {
                return Err(err(
                    "control_socket",
                    "must be a file path of 1 to 100 bytes (Unix socket path limit)",
                ));
            }
        }
        for (i, uid) in self.control_socket_uids.iter().enumerate() {
            if *uid == u32::MAX {
                return Err(err(&format!("control_socket_uids[{i}]"), "4294967295 is not a user id"));
            }
        }
        range("control_socket_max_connections", self.control_socket_max_connections, 1, 65_536)?;
        range(
            "control_socket_idle_timeout_ms",
            self.control_socket_idle_timeout_ms as usize,
            100,
            86_400_000,
        )?;
        if let Some(t) = &self.tls {
            // The files themselves are read at start (`tls::Tls::load`), where a bad one fails
            // `chat_start` naming the same keys.
            for (key, path) in [("tls.cert", &t.cert), ("tls.key", &t.key)] {
                if path.trim().is_empty() {
                    return Err(err(key, "must be the path of a PEM file"));
                }
            }
        }
        if let Some(p) = &self.pusher {
            p.validate()?;
        }
        self.socket_mode().map(drop)
    }

    /// The `page_frame_ancestors` sources, space-separated, for the page's CSP. Each must be one
    /// CSP source (no blanks, `;` or `,`, which would end or split the directive and let a
    /// config value add directives of its own).
    pub fn frame_ancestors(&self) -> Result<String, ConfigError> {
        let list = &self.page_frame_ancestors;
        if list.is_empty() {
            return Err(err(
                "page_frame_ancestors",
                "must list at least one source; [\"'none'\"] forbids framing",
            ));
        }
        for (i, src) in list.iter().enumerate() {
            let key = format!("page_frame_ancestors[{i}]");
            let quoted = src.starts_with('\'');
            let ok = if quoted {
                src == "'self'" || src == "'none'"
            } else {
                // A host or scheme source (`https://site.example`, `https://*.site.example`,
                // `https:`): no quotes, since other keywords ('unsafe-inline' …) mean nothing here.
                !src.is_empty() && src.chars().all(|c| c.is_ascii_alphanumeric() || "-._~:/*%[]".contains(c))
            };
            if !ok {
                return Err(err(
                    &key,
                    format!("`{src}` is not 'self', 'none' or a source such as https://site.example"),
                ));
            }
            if src == "'none'" && list.len() > 1 {
                return Err(err(&key, "'none' must be the only source"));
            }
        }
        Ok(list.join(" "))
    }

    /// The control socket's file mode.
    pub fn socket_mode(&self) -> Result<u32, ConfigError> {
        match u32::from_str_radix(&self.control_socket_mode, 8) {
            Ok(m) if m <= 0o777 && !self.control_socket_mode.is_empty() => Ok(m),
            _ => Err(err("control_socket_mode", "must be octal permission digits like \"0600\"")),
        }
    }
}
