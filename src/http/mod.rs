//! The one port: hyper serves the page and small HTTP endpoints (`/healthz`, `/metrics`, the
//! HTTP API in `rest.rs`), and checks WebSocket upgrade requests (`upgrade.rs`) before handing
//! the raw socket to a session.

mod rest;
mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming as Body;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::context::Context;
use crate::stats::Stats;

/// The bundled chat page.
const PAGE: &str = include_str!("../../web/index.html");

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
    let adm = &ctx.cfg.admission;
    let timeout = Duration::from_millis(adm.handshake_timeout_ms);
    let svc_ctx = ctx.clone();
    let svc = service_fn(move |req| handle(req, svc_ctx.clone(), peer));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(adm.max_header_bytes)
        .max_headers(adm.max_header_count)
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

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("text/plain")),
    );
    r
}

fn text(status: StatusCode, msg: impl Into<String>) -> Reply {
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

async fn handle(req: Request<Body>, ctx: Arc<Context>, peer: SocketAddr) -> Result<Reply, Infallible> {
    if header_has(&req, header::UPGRADE, "websocket") {
        return Ok(match req.uri().path() {
            "/ws" | "/" => upgrade::upgrade(req, ctx, peer),
            _ => text(StatusCode::NOT_FOUND, "no WebSocket endpoint here; use /ws"),
        });
    }
    let site = &ctx.cfg.site;
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/") if site.page => reply(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/metrics") if site.metrics => {
            reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", ctx.snapshot().prometheus())
        }
        (_, p) if p.starts_with("/api/") => rest::api(req, &ctx).await,
        _ => text(StatusCode::NOT_FOUND, "not found"),
    })
}
