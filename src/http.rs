//! The one port: hyper serves the page and small HTTP endpoints, and checks WebSocket upgrade
//! requests before handing the raw socket to a session.

use std::convert::Infallible;
use std::net::SocketAddr;
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
        .max_buf_size(16 * 1024)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    let _ = conn.await;
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
        (&Method::GET, "/") if ctx.cfg.page => {
            reply(StatusCode::OK, "text/html; charset=utf-8", PAGE)
        }
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
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

fn upgrade(mut req: Request<Body>, ctx: Arc<Context>, _peer: SocketAddr) -> Response<Full<Bytes>> {
    if req.method() != Method::GET || !header_has(&req, header::CONNECTION, "upgrade") {
        return reject(
            &ctx,
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade is a GET with Connection: Upgrade",
        );
    }
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        let mut r = reject(
            &ctx,
            StatusCode::UPGRADE_REQUIRED,
            "only WebSocket version 13 is supported",
        );
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return r;
    }
    let key = match req.headers().get(header::SEC_WEBSOCKET_KEY) {
        Some(k)
            if base64::engine::general_purpose::STANDARD
                .decode(k.as_bytes())
                .map(|d| d.len())
                == Ok(16) =>
        {
            accept_key(k.as_bytes())
        }
        _ => {
            return reject(
                &ctx,
                StatusCode::BAD_REQUEST,
                "missing or malformed Sec-WebSocket-Key",
            )
        }
    };

    let mut name = None;
    let mut room = None;
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        match &*k {
            "name" => name = protocol::clean_name(&v, ctx.cfg.max_name_chars),
            "room" if !v.is_empty() => room = Some(v.into_owned()),
            _ => {}
        }
    }
    let room = room.unwrap_or_else(|| ctx.cfg.default_room.clone());
    if let Err(m) = protocol::validate_room(&room, ctx.cfg.max_room_chars) {
        return reject(&ctx, StatusCode::BAD_REQUEST, &m);
    }
    if ctx.stopping.load(Ordering::SeqCst) {
        return reject(&ctx, StatusCode::SERVICE_UNAVAILABLE, "server is stopping");
    }
    if ctx.sessions.get() >= ctx.cfg.max_connections {
        return reject(
            &ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections",
        );
    }

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
        session::run(
            ctx.clone(),
            stream,
            parts.read_buf,
            Hello { id, name, room },
            guard,
        )
        .await;
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
    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
