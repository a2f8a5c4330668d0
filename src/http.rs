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
        _ => text(StatusCode::NOT_FOUND, "not found"),
    })
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
    let mut since = None;
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match &*k {
            "name" => name = protocol::clean_name(&v, ctx.cfg.max_name_chars),
            "room" if !v.is_empty() => room = Some(v.into_owned()),
            "since" => since = v.parse::<u64>().ok(),
            _ => {}
        }
    }
    let room = room.unwrap_or_else(|| ctx.cfg.default_room.clone());
    if let Err(m) = protocol::validate_room(&room, ctx.cfg.max_room_chars) {
        return reject(&ctx, StatusCode::BAD_REQUEST, &m);
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
        session::run(ctx.clone(), stream, parts.read_buf, Hello { id, name, room, since }, guard).await;
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
