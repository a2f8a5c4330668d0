//! The one port: hyper serves the page and small HTTP endpoints, and checks WebSocket upgrade
//! requests before handing the raw socket to a session.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming as Body;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha1::{Digest, Sha1};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::context::Context;
use crate::hub::{Identity, Resume};
use crate::protocol;
use crate::session::{self, Hello};
use crate::stats::Stats;

/// The bundled chat page.
const PAGE: &str = include_str!("../web/index.html");

/// Accepts connections until `stop` is notified.
pub async fn accept_loop(listener: TcpListener, ctx: Arc<Context>, stop: Arc<Notify>) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve(stream, peer, ctx.clone()));
                }
                // Out of descriptors or a transient error: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            _ = stop.notified() => break,
        }
    }
}

async fn serve(stream: TcpStream, peer: SocketAddr, ctx: Arc<Context>) {
    let timeout = Duration::from_millis(ctx.cfg.handshake_timeout_ms);
    let svc_ctx = ctx.clone();
    let svc = service_fn(move |req| handle(req, svc_ctx.clone(), peer));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(ctx.cfg.max_header_bytes)
        .max_headers(ctx.cfg.max_header_count)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        // hyper answered (431) or hung up (timeout) by itself; count it like every other refusal.
        if e.is_parse_too_large() {
            Stats::inc(&ctx.stats.header_rejects);
        } else if e.is_timeout() {
            Stats::inc(&ctx.stats.handshake_timeouts);
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("text/plain")),
    );
    r
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response<Full<Bytes>> {
    let mut m = msg.into();
    m.push('\n');
    reply(status, "text/plain; charset=utf-8", m)
}

fn header_has(req: &Request<Body>, name: header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

async fn handle(
    req: Request<Body>,
    ctx: Arc<Context>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if header_has(&req, header::UPGRADE, "websocket") {
        return Ok(match req.uri().path() {
            "/ws" | "/" => upgrade(req, ctx, peer),
            _ => text(StatusCode::NOT_FOUND, "no WebSocket endpoint here; use /ws"),
        });
    }
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/") if ctx.cfg.page => reply(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/metrics") if ctx.cfg.metrics => {
            reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", ctx.snapshot().prometheus())
        }
        (_, p) if p.starts_with("/api/") => api(req, &ctx).await,
        _ => text(StatusCode::NOT_FOUND, "not found"),
    })
}

fn json_reply(status: u16, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply(status, "application/json", format!("{v}\n"))
}

/// Compares without stopping at the first differing byte, so response timing does not reveal
/// how much of a guessed key was right.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The HTTP API: the control operations for a site's PHP-FPM pages, behind `api_key`.
async fn api(req: Request<Body>, ctx: &Context) -> Response<Full<Bytes>> {
    use crate::control::{self, Failure};
    use http_body_util::BodyExt;
    let Some(key) = &ctx.cfg.api_key else {
        return text(StatusCode::NOT_FOUND, "the HTTP API is off (set `api_key` in the engine config)");
    };
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let ok = given
        .and_then(|g| g.strip_prefix("Bearer "))
        .is_some_and(|g| same_key(g.trim().as_bytes(), key.as_bytes()));
    if !ok {
        Stats::inc(&ctx.stats.api_auth_failures);
        let mut r = json_reply(
            401,
            &Failure::new("unauthorized", "missing or wrong `Authorization: Bearer` key").to_json(),
        );
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    Stats::inc(&ctx.stats.api_requests);
    let path = req.uri().path().trim_start_matches("/api/").to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let op = match (req.method().clone(), path.as_str()) {
        (Method::POST, "publish" | "send" | "kick") => {
            let limit = ctx.cfg.max_message_bytes + 64 * 1024;
            let body = match http_body_util::Limited::new(req.into_body(), limit).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return json_reply(413, &Failure::new("too_large", "request body too large").to_json())
                }
            };
            let mut v: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(v @ serde_json::Value::Object(_)) => v,
                _ => {
                    return json_reply(
                        400,
                        &Failure::new("bad_request", "the body must be a JSON object").to_json(),
                    )
                }
            };
            v["op"] = serde_json::Value::from(if path == "publish" { "broadcast" } else { path.as_str() });
            serde_json::from_value(v).map_err(|e| Failure::new("bad_request", format!("bad request: {e}")))
        }
        (Method::GET, "rooms") => Ok(control::Op::Rooms),
        (Method::GET, "stats") => Ok(control::Op::Stats),
        (Method::GET, "presence") => {
            let room = form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "room")
                .map(|(_, v)| v.into_owned());
            Ok(control::Op::Presence { room })
        }
        (_, "publish" | "send" | "kick" | "rooms" | "stats" | "presence") => {
            return json_reply(
                405,
                &Failure::new(
                    "method_not_allowed",
                    "publish, send and kick are POST; rooms, presence and stats are GET",
                )
                .to_json(),
            );
        }
        _ => return json_reply(404, &Failure::new("not_found", "unknown API path").to_json()),
    };
    match op.and_then(|op| control::execute(ctx, op)) {
        Ok(v) => json_reply(200, &v),
        Err(f) => json_reply(f.status(), &f.to_json()),
    }
}

/// The Sec-WebSocket-Accept value for a client key (RFC 6455 section 4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

fn reject(ctx: &Context, status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    Stats::inc(&ctx.stats.handshake_rejects);
    text(status, msg)
}

fn auth_failed(ctx: &Context, status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    Stats::inc(&ctx.stats.auth_failures);
    reject(ctx, status, msg)
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

fn upgrade(mut req: Request<Body>, ctx: Arc<Context>, peer: SocketAddr) -> Response<Full<Bytes>> {
    if req.method() != Method::GET || !header_has(&req, header::CONNECTION, "upgrade") {
        return reject(
            &ctx,
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade is a GET with Connection: Upgrade",
        );
    }
    if req.headers().get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        let mut r = reject(&ctx, StatusCode::UPGRADE_REQUIRED, "only WebSocket version 13 is supported");
        r.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return r;
    }
    let key = match req.headers().get(header::SEC_WEBSOCKET_KEY) {
        Some(k)
            if base64::engine::general_purpose::STANDARD.decode(k.as_bytes()).map(|d| d.len()) == Ok(16) =>
        {
            accept_key(k.as_bytes())
        }
        _ => return reject(&ctx, StatusCode::BAD_REQUEST, "missing or malformed Sec-WebSocket-Key"),
    };

    let mut name = None;
    let mut room = None;
    let mut resume = Resume::default();
    let mut token = None;
    let mut client_key = None;
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match &*k {
            "name" => name = protocol::clean_name(&v, ctx.cfg.max_name_chars),
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
    let who = match (&ctx.auth, token) {
        (Some(v), Some(t)) => match v.verify(&t, ctx.cfg.max_name_chars) {
            Ok(who) => who,
            Err(why) => return auth_failed(&ctx, StatusCode::UNAUTHORIZED, &why),
        },
        (Some(_), None) if ctx.cfg.auth.as_ref().is_some_and(|a| a.required) => {
            return auth_failed(&ctx, StatusCode::UNAUTHORIZED, "a login token is required (?token=)");
        }
        (None, Some(_)) => {
            return auth_failed(&ctx, StatusCode::UNAUTHORIZED, "this server does not accept login tokens");
        }
        _ => Identity { user: client_key, name, bound: false, rooms: None },
    };
    // A token limited to some rooms lands in the first of them unless it asks for another.
    let fallback = who.rooms.as_ref().and_then(|r| r.first()).unwrap_or(&ctx.cfg.default_room);
    let room = room.unwrap_or_else(|| fallback.clone());
    if let Err(m) = protocol::validate_room(&room, ctx.cfg.max_room_chars) {
        return reject(&ctx, StatusCode::BAD_REQUEST, &m);
    }
    if who.rooms.as_ref().is_some_and(|allowed| !allowed.contains(&room)) {
        let msg = format!("your login does not allow room `{room}`");
        return auth_failed(&ctx, StatusCode::FORBIDDEN, &msg);
    }
    let header = |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
    if !origin_allowed(&ctx.cfg.allowed_origins, header(header::ORIGIN), header(header::HOST)) {
        Stats::inc(&ctx.stats.origin_rejects);
        return reject(&ctx, StatusCode::FORBIDDEN, "this Origin may not open a WebSocket here");
    }
    if ctx.stopping.load(Ordering::SeqCst) {
        return reject(&ctx, StatusCode::SERVICE_UNAVAILABLE, "server is stopping");
    }
    if ctx.sessions.get() >= ctx.cfg.max_connections {
        return reject(&ctx, StatusCode::SERVICE_UNAVAILABLE, "too many connections");
    }
    let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let ip = client_ip(&ctx, peer.ip(), forwarded);
    let Some(ip_slot) = ctx.ip_slot(ip) else {
        Stats::inc(&ctx.stats.per_ip_rejects);
        return reject(&ctx, StatusCode::TOO_MANY_REQUESTS, "too many connections from your address");
    };

    let guard = ctx.sessions.enter();
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let Ok(parts) = upgraded.downcast::<TokioIo<TcpStream>>() else {
            return;
        };
        Stats::inc(&ctx.stats.connections_total);
        Stats::inc(&ctx.stats.connections_open);
        let stream = parts.io.into_inner();
        session::run(ctx.clone(), stream, parts.read_buf, Hello { id, who, room, resume }, guard).await;
        drop(ip_slot);
        ctx.stats.connections_open.fetch_sub(1, Ordering::Relaxed);
    });

    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
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
        let cfg = crate::config::Config { trusted_proxies: vec!["10.0.0.0/8".into()], ..Default::default() };
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
    fn accept_key_matches_rfc_example() {
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
