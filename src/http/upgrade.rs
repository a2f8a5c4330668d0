//! The WebSocket upgrade: every check a connection must pass before it becomes a session
//! (method and headers, login token, room, origin, capacity, per-address limit), each refusal an
//! HTTP status with a reason and a count.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use hyper::body::Incoming as Body;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};

use super::{header_has, text, Reply};
use crate::context::{Context, IpSlot};
use crate::events::{Event, EventKind};
use crate::identity::{Identity, Resume};
use crate::protocol;
use crate::session::{self, Hello};
use crate::stats::Stats;
use crate::transport::Transport;

/// The subprotocol the bundled page offers, and the one the server answers when it is offered.
pub const SUBPROTOCOL: &str = "embedchat";

/// A login token offered as a subprotocol: `embedchat.token.<jwt>`. A browser cannot set other
/// headers on a WebSocket, and a token in the URL lands in every proxy's access log;
/// `Sec-WebSocket-Protocol` is sent with the upgrade like the URL but is not logged by default.
/// A JWT is base64url and dots, all HTTP token characters, so it is a valid subprotocol name.
pub const TOKEN_PROTOCOL_PREFIX: &str = "embedchat.token.";

/// What a client offered in `Sec-WebSocket-Protocol` (every line, comma-separated).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Offered {
    /// `embedchat` was offered: the 101 names it (a browser fails a connection whose answer is
    /// not one of the values it offered, so the token entry is never the answer).
    pub marker: bool,
    /// The `embedchat.token.` entries, prefix removed.
    pub tokens: Vec<String>,
}

pub fn offered_protocols(headers: &hyper::HeaderMap) -> Offered {
    let mut o = Offered::default();
    for entry in headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
    {
        if entry == SUBPROTOCOL {
            o.marker = true;
        } else if let Some(t) = entry.strip_prefix(TOKEN_PROTOCOL_PREFIX) {
            o.tokens.push(t.to_string());
        }
    }
    o
}

/// The Sec-WebSocket-Accept value for a client key (RFC 6455 section 4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Why a request may not become a WebSocket connection: the status and the reason the client
/// is told, and the counter that counts it besides `handshake_rejects`.
pub(super) struct Refusal {
    status: StatusCode,
    reason: String,
    counter: Option<fn(&Stats) -> &AtomicU64>,
    /// The room it asked for, when that was a valid name (for the `refused` event).
    room: Option<String>,
}

pub(super) fn refusal(status: StatusCode, reason: impl Into<String>) -> Refusal {
    Refusal { status, reason: reason.into(), counter: None, room: None }
}

fn auth_failed(status: StatusCode, reason: impl Into<String>) -> Refusal {
    Refusal { counter: Some(|s| &s.auth_failures), ..refusal(status, reason) }
}

/// Answers a refused upgrade: counted, told to the host when it asked (`refused_events`), and
/// sent to the client as plain text.
pub(super) fn refuse(ctx: &Context, r: Refusal) -> Reply {
    Stats::inc(&ctx.stats.handshake_rejects);
    if let Some(counter) = r.counter {
        Stats::inc(counter(&ctx.stats));
    }
    if ctx.cfg.events.refused_events {
        let mut ev = Event::new(EventKind::Refused, 0);
        ev.close_code = r.status.as_u16();
        ev.text = Some(r.reason.clone());
        ev.room = r.room.map(Arc::from);
        ctx.events.push_spare(ev);
    }
    text(r.status, r.reason)
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the right-most
/// address in X-Forwarded-For that is not itself a trusted proxy.
pub fn client_ip(ctx: &Context, peer: IpAddr, forwarded: Option<&str>) -> IpAddr {
    let trusted = |ip: &IpAddr| ctx.proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let Some(list) = forwarded else { return peer };
    let mut client = peer;
    for hop in list.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted(&ip) {
                    break;
                }
            }
            Err(_) => break, // a malformed entry: trust nothing left of it
        }
    }
    client
}

/// The address limits count a client under: an IPv4 address (also when written as IPv6), or the
/// IPv6 network of `v6_prefix` bits around it (one host or household usually has a whole /64,
/// so counting single IPv6 addresses would let it pass every per-address limit).
pub fn limit_key(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            ipnet::Ipv6Net::new(v6, v6_prefix).map_or(IpAddr::V6(v6), |n| IpAddr::V6(n.network()))
        }
        v4 => v4,
    }
}

/// Whether a browser page from `origin` may open a WebSocket here (see `allowed_origins`).
pub fn origin_allowed(allowed: &[String], origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else { return true }; // not a browser
    if allowed.iter().any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        return true;
    }
    if !allowed.is_empty() {
        return false;
    }
    // Same origin: the Origin's host[:port] must be the Host the browser connected to.
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
    match host {
        Some(h) => !origin_host.is_empty() && origin_host.eq_ignore_ascii_case(h),
        None => false,
    }
}

/// What an admitted request becomes: its connection's identity, first room and resume point.
struct Admitted {
    who: Identity,
    room: String,
    resume: Resume,
    ip_slot: Option<IpSlot>,
}

/// The checks of the WebSocket handshake itself (not asked of a `verdict`): the accept key.
fn handshake(req: &Request<Body>) -> Result<String, Refusal> {
    if req.method() != Method::GET || !header_has(req, header::CONNECTION, "upgrade") {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade is a GET with Connection: Upgrade",
        ));
    }
    if req.headers().get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(refusal(StatusCode::UPGRADE_REQUIRED, "only WebSocket version 13 is supported"));
    }
    match req.headers().get(header::SEC_WEBSOCKET_KEY) {
        Some(k)
            if base64::engine::general_purpose::STANDARD.decode(k.as_bytes()).map(|d| d.len()) == Ok(16) =>
        {
            Ok(accept_key(k.as_bytes()))
        }
        _ => Err(refusal(StatusCode::BAD_REQUEST, "missing or malformed Sec-WebSocket-Key")),
    }
}

/// Whether this client may connect, and as whom: login token, room, origin, capacity and the
/// per-address limit. `tokens` are the login tokens given outside the query. A `dry` run (a
/// `verdict`) takes no per-address slot.
fn admit(
    req: &Request<Body>,
    ctx: &Context,
    peer: SocketAddr,
    tokens: &[String],
    dry: bool,
) -> Result<Admitted, Refusal> {
    let mut name = None;
    let mut room = None;
    let mut resume = Resume::default();
    let mut token = None;
    let mut client_key = None;
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match &*k {
            "name" => name = protocol::clean_name(&v, ctx.cfg.chat.max_name_chars),
            "room" if !v.is_empty() => room = Some(v.into_owned()),
            "since" => resume.since = v.parse::<u64>().ok(),
            "epoch" if !v.is_empty() => resume.epoch = Some(v.into_owned()),
            "token" if !v.is_empty() => token = Some(v.into_owned()),
            // An anonymous browser's own random key: its tabs count as one user. Short keys
            // are ignored (guessable keys would let strangers share someone's whispers).
            "client" if (16..=128).contains(&v.len()) => client_key = Some(format!("key:{v}")),
            _ => {}
        }
    }
    // One token, from one place: two could disagree, and which one counts must not be a guess.
    let token = match (token, tokens) {
        (t, []) => t,
        (None, [t]) => Some(t.clone()),
        _ => {
            return Err(auth_failed(
                StatusCode::UNAUTHORIZED,
                "more than one login token (send one, in Sec-WebSocket-Protocol or ?token=)",
            ))
        }
    };
    let mut who = match (&ctx.auth, token) {
        (Some(v), Some(t)) => v
            .verify(&t, ctx.cfg.chat.max_name_chars)
            .map_err(|why| auth_failed(StatusCode::UNAUTHORIZED, why))?,
        (Some(_), None) if ctx.cfg.site.auth.as_ref().is_some_and(|a| a.required) => {
            return Err(auth_failed(
                StatusCode::UNAUTHORIZED,
                "a login token is required (Sec-WebSocket-Protocol `embedchat.token.<token>`, or ?token=)",
            ));
        }
        (None, Some(_)) => {
            // Said in full: a site that hands out tokens to a daemon started without `auth`
            // (a missing secret) should learn that here, not suspect an expired login.
            return Err(auth_failed(
                StatusCode::UNAUTHORIZED,
                "this server does not accept login tokens (its config has no `auth`)",
            ));
        }
        _ => Identity { user: client_key, name, bound: false, rooms: None, ip: None },
    };
    // A token limited to some rooms lands in the first of them unless it asks for another.
    let fallback = who.rooms.as_ref().and_then(|r| r.first()).unwrap_or(&ctx.cfg.chat.default_room);
    let room = room.unwrap_or_else(|| fallback.clone());
    if let Err(m) = protocol::validate_room(&room, ctx.cfg.chat.max_room_chars) {
        return Err(refusal(StatusCode::BAD_REQUEST, m));
    }
    let with_room = |r: Refusal| Refusal { room: Some(room.clone()), ..r };
    if who.rooms.as_ref().is_some_and(|allowed| !allowed.contains(&room)) {
        let msg = format!("your login does not allow room `{room}`");
        return Err(with_room(auth_failed(StatusCode::FORBIDDEN, msg)));
    }
    if ctx.hub.pusher_guarded(&room) && !who.rooms.as_ref().is_some_and(|allowed| allowed.contains(&room)) {
        return Err(with_room(auth_failed(StatusCode::FORBIDDEN, crate::hub::PUSHER_GUARDED)));
    }
    let header = |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
    if !origin_allowed(&ctx.cfg.admission.allowed_origins, header(header::ORIGIN), header(header::HOST)) {
        return Err(with_room(Refusal {
            counter: Some(|s| &s.origin_rejects),
            ..refusal(StatusCode::FORBIDDEN, "this Origin may not open a WebSocket here")
        }));
    }
    if ctx.stopping.load(Ordering::SeqCst) {
        return Err(with_room(refusal(StatusCode::SERVICE_UNAVAILABLE, "server is stopping")));
    }
    if ctx.sessions.get() >= ctx.cfg.admission.max_connections {
        return Err(with_room(refusal(StatusCode::SERVICE_UNAVAILABLE, "too many connections")));
    }
    // Every X-Forwarded-For line, as one list: a proxy that adds its own line must not leave
    // the client's first line to decide.
    let forwarded: Vec<&str> =
        req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    let forwarded = forwarded.join(",");
    let ip = client_ip(ctx, peer.ip(), Some(forwarded.as_str()).filter(|f| !f.is_empty()));
    let ip = limit_key(ip, ctx.cfg.admission.ipv6_prefix);
    who.ip = Some(ip);
    let Some(ip_slot) = ctx.ip_slot(ip) else {
        return Err(with_room(Refusal {
            counter: Some(|s| &s.per_ip_rejects),
            ..refusal(StatusCode::TOO_MANY_REQUESTS, "too many connections from your address")
        }));
    };
    // A dry run gives the slot back at once (dropping it): it only asked.
    let ip_slot = (!dry).then_some(ip_slot);
    Ok(Admitted { who, room, resume, ip_slot })
}

/// `GET /ws` without an upgrade: what an upgrade with this query would be answered, without
/// connecting, counting or telling the host. A browser never shows a page why its WebSocket
/// was refused (a failed upgrade is only "closed, 1006"), so the bundled page asks here and can
/// say what the server said. The login token comes as `Authorization: Bearer <token>` (the
/// header a page can set; `Sec-` headers are the browser's own), or `?token=`.
pub(super) fn verdict(req: &Request<Body>, ctx: &Context, peer: SocketAddr) -> Reply {
    let bearer: Vec<String> = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| vec![t.trim().to_string()])
        .unwrap_or_default();
    let mut r = match admit(req, ctx, peer, &bearer, true) {
        Ok(_) => text(StatusCode::OK, "ok: a WebSocket upgrade with this request would be accepted"),
        Err(refused) => text(refused.status, refused.reason),
    };
    // The answer depends on the token and the moment: never from a cache.
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(super) fn upgrade(mut req: Request<Body>, ctx: Arc<Context>, peer: SocketAddr) -> Reply {
    let key = match handshake(&req) {
        Ok(key) => key,
        Err(r) => {
            let version = r.status == StatusCode::UPGRADE_REQUIRED;
            let mut reply = refuse(&ctx, r);
            if version {
                reply.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            }
            return reply;
        }
    };
    // Pusher's endpoint: a wrong key or protocol is told over the WebSocket (pusher:error and
    // a 4xxx close), as Pusher does, so clients do not retry it as a network failure.
    let pusher = match &ctx.cfg.site.pusher {
        Some(cfg) if req.uri().path().starts_with("/app/") => {
            Some(crate::pusher::check_endpoint(cfg, req.uri().path(), req.uri().query()))
        }
        _ => None,
    };
    let offered = offered_protocols(req.headers());
    let Admitted { who, room, resume, ip_slot } = match admit(&req, &ctx, peer, &offered.tokens, false) {
        Ok(a) => a,
        Err(r) => return refuse(&ctx, r),
    };

    // permessage-deflate, when the config allows it and the client offers it.
    let deflate = if ctx.cfg.compression {
        let offers = req.headers().get_all(header::SEC_WEBSOCKET_EXTENSIONS);
        crate::deflate::negotiate(offers.iter().filter_map(|v| v.to_str().ok()))
    } else {
        None
    };
    let guard = ctx.sessions.enter();
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let window = deflate.as_ref().map_or(0, |(agreed, _)| agreed.window_bits);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let Ok(parts) = upgraded.downcast::<TokioIo<Transport>>() else {
            return;
        };
        Stats::inc(&ctx.stats.connections_total);
        Stats::inc(&ctx.stats.connections_open);
        let stream = parts.io.into_inner();
        // The session is a task of its own: this one (and the upgrade machinery it holds) ends.
        let hello = Hello { id, who, room, resume, deflate: window, pusher };
        session::start(ctx, stream, parts.read_buf, hello, guard, ip_slot);
    });

    let mut r = Response::new(Default::default());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if offered.marker {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
    }
    if let Some(v) = deflate.and_then(|(_, response)| HeaderValue::from_str(&response).ok()) {
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_is_the_default() {
        let none: Vec<String> = Vec::new();
        assert!(origin_allowed(&none, None, Some("chat.example")), "no Origin: not a browser");
        assert!(origin_allowed(&none, Some("https://chat.example"), Some("chat.example")));
        assert!(origin_allowed(&none, Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080")));
        assert!(!origin_allowed(&none, Some("https://evil.example"), Some("chat.example")));
        assert!(!origin_allowed(&none, Some("null"), Some("chat.example")));
    }

    #[test]
    fn allow_list_and_wildcard() {
        let list = vec!["https://site.example".to_string()];
        assert!(origin_allowed(&list, Some("https://site.example"), Some("ws.example")));
        assert!(
            !origin_allowed(&list, Some("https://ws.example"), Some("ws.example")),
            "a list replaces same-origin"
        );
        assert!(origin_allowed(&["*".to_string()], Some("https://any.example"), None));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut cfg = crate::config::Config::default();
        cfg.admission.trusted_proxies = vec!["10.0.0.0/8".into()];
        let ctx = Context::new(cfg, Arc::new(crate::events::EventQueue::new(16).unwrap()));
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(&ctx, stranger, Some("1.2.3.4")), stranger, "spoofed header ignored");
        assert_eq!(client_ip(&ctx, proxy, Some("1.2.3.4")), "1.2.3.4".parse::<IpAddr>().unwrap());
        assert_eq!(
            client_ip(&ctx, proxy, Some("6.6.6.6, 1.2.3.4, 10.9.9.9")),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(&ctx, proxy, None), proxy);
        assert_eq!(client_ip(&ctx, proxy, Some("junk")), proxy);
    }

    #[test]
    fn ipv6_clients_are_counted_per_network() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(limit_key(a, 64), limit_key(b, 64), "one /64, one count");
        assert_ne!(limit_key(a, 128), limit_key(b, 128));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(limit_key(mapped, 64), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_token_is_found_among_the_offered_subprotocols() {
        let mut h = hyper::HeaderMap::new();
        assert_eq!(offered_protocols(&h), Offered::default());
        h.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("embedchat, embedchat.token.a.b.c"),
        );
        h.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("chat.v2 ,embedchat.tokenx"));
        assert_eq!(offered_protocols(&h), Offered { marker: true, tokens: vec!["a.b.c".into()] });
        let mut h = hyper::HeaderMap::new();
        h.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("EmbedChat,embedchat.token."));
        assert_eq!(
            offered_protocols(&h),
            Offered { marker: false, tokens: vec![String::new()] },
            "names are case-sensitive; an empty token is still a token (refused)"
        );
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
