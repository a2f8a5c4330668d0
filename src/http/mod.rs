//! The one port: hyper serves the page and small HTTP endpoints (`/healthz`, `/metrics`, the
//! HTTP API in `rest.rs`), and checks WebSocket upgrade requests (`upgrade.rs`) before handing
//! the connection (plain TCP, or TLS with config `tls`: `src/tls.rs`) to a session.

mod pusher;
mod rest;
mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::config::SiteConfig;
use crate::context::Context;
use crate::stats::Stats;
use crate::transport::Transport;

/// The bundled chat page.
const PAGE: &str = include_str!("../../web/index.html");
/// The operator's page (`/admin`, with `api_key`).
const ADMIN: &str = include_str!("../../web/admin.html");
/// Both pages' icon: a file of its own, since the pages' CSP admits no `data:` images.
const FAVICON: &str = include_str!("../../web/favicon.svg");

/// The page's Content-Security-Policy up to `frame-ancestors` (which comes from the config).
static PAGE_POLICY: LazyLock<String> = LazyLock::new(|| policy(PAGE));
/// The admin page's: framed by nobody (it acts with the API key).
static ADMIN_POLICY: LazyLock<String> =
    LazyLock::new(|| format!("{}; frame-ancestors 'none'", policy(ADMIN)));

/// A page's Content-Security-Policy: its inline scripts and styles are allowed by their
/// SHA-256 hashes, computed from the page itself, so they can never drift apart and nothing
/// else inline runs: a message that somehow became markup could not execute.
/// `connect-src 'self'` admits the page's WebSocket and requests to the same host (CSP 3:
/// `'self'` covers `ws:`/`wss:` to the page's own host and port).
fn policy(html: &str) -> String {
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self'; \
         base-uri 'none'; form-action 'none'",
        inline_hashes(html, "script").join(" "),
        inline_hashes(html, "style").join(" "),
    )
}

/// The CSP sources (`'sha256-…'`) of every inline `<tag>…</tag>` block of `html`: the hash of
/// exactly the text between the tags, as browsers compute it.
fn inline_hashes(html: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&open) {
        let body = &rest[i + open.len()..];
        let Some(j) = body.find(&close) else { break };
        let digest = ring::digest::digest(&ring::digest::SHA256, &body.as_bytes()[..j]);
        out.push(format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest)));
        rest = &body[j + close.len()..];
    }
    out
}

/// `GET /`: the page, with headers that keep it from being framed by strangers (clickjacking),
/// from running anything but its own code, and from leaking its URL (which may carry a login
/// token in the fragment until the page clears it) in a Referer.
fn page(site: &SiteConfig) -> Reply {
    let mut r = reply(StatusCode::OK, "text/html; charset=utf-8", PAGE);
    // validate() checked the sources, so this is a valid header; 'none' if it somehow is not.
    let ancestors = site.frame_ancestors().unwrap_or_else(|_| "'none'".into());
    let csp = format!("{}; frame-ancestors {ancestors}", *PAGE_POLICY);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static("frame-ancestors 'none'")),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

/// `GET /admin`: the operator's page. It holds no data itself (every figure comes from the API
/// with the key the operator types), so it is served to anyone while the API is on.
fn admin(site: &SiteConfig) -> Reply {
    if site.api_key.is_none() {
        return text(StatusCode::NOT_FOUND, "the admin page is off (set `api_key` in the engine config)");
    }
    let mut r = reply(StatusCode::OK, "text/html; charset=utf-8", ADMIN);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&ADMIN_POLICY).unwrap_or(HeaderValue::from_static("default-src 'none'")),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn favicon() -> Reply {
    let mut r = reply(StatusCode::OK, "image/svg+xml", FAVICON);
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=86400"));
    r
}

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
    // The TLS handshake runs here, in the connection's own task: a slow or stalled client
    // waits on its socket and a timer, never on a worker thread.
    let io = match &ctx.tls {
        None => Transport::Plain(stream),
        Some(tls) => match tls.accept(stream, timeout, &ctx.stats).await {
            Some(s) => Transport::Tls(Box::new(s)),
            None => return,
        },
    };
    let svc_ctx = ctx.clone();
    let svc = service_fn(move |req| handle(req, svc_ctx.clone(), peer));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(adm.max_header_bytes)
        .max_headers(adm.max_header_count)
        .serve_connection(TokioIo::new(io), svc)
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
    // Every answer is exactly its Content-Type: a browser must not guess HTML from a body.
    r.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

fn text(status: StatusCode, msg: impl Into<String>) -> Reply {
    let mut m = msg.into();
    m.push('\n');
    reply(status, "text/plain; charset=utf-8", m)
}

/// `GET /metrics`, behind the API key when `metrics_auth` is on.
fn metrics(req: &Request<Body>, ctx: &Context) -> Reply {
    let site = &ctx.cfg.site;
    if site.metrics_auth {
        // validate() refuses metrics_auth without a key; never serve openly because of that.
        let Some(key) = &site.api_key else {
            return text(StatusCode::NOT_FOUND, "/metrics needs `api_key` (metrics_auth)");
        };
        if let Some(refused) = rest::refusal(req, ctx, key) {
            return refused;
        }
    }
    reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", ctx.snapshot().prometheus())
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
            p if p.starts_with("/app/") && ctx.cfg.site.pusher.is_some() => upgrade::upgrade(req, ctx, peer),
            _ => upgrade::refuse(
                &ctx,
                upgrade::refusal(StatusCode::NOT_FOUND, "no WebSocket endpoint here; use /ws"),
            ),
        });
    }
    let site = &ctx.cfg.site;
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/") if site.page => page(site),
        (&Method::GET, "/ws") => upgrade::verdict(&req, &ctx, peer),
        (&Method::GET, "/admin") => admin(site),
        (&Method::GET, "/favicon.svg") => favicon(),
        (&Method::GET, "/healthz") => text(StatusCode::OK, health(&ctx)),
        (&Method::GET, "/metrics") if site.metrics => metrics(&req, &ctx),
        // Boxed: their futures (a cluster's questions to Redis among them) are kilobytes, and
        // every request's future, each WebSocket upgrade's included, would be as big.
        (_, p) if p.starts_with("/api/") => Box::pin(rest::api(req, &ctx)).await,
        (_, p) if p.starts_with("/apps/") => Box::pin(pusher::api(req, &ctx)).await,
        _ => text(StatusCode::NOT_FOUND, "not found"),
    })
}

/// `ok`, or, for a node of a cluster that cannot reach Redis, why it serves alone (still 200:
/// it does serve its own clients, and a load balancer that took it out would only move them).
fn health(ctx: &Context) -> &'static str {
    let alone = ctx.cfg.cluster.url().is_some()
        && ctx.stats.cluster_up.load(std::sync::atomic::Ordering::Relaxed) == 0;
    if alone {
        "degraded: Redis cannot be reached; this node serves its own clients alone"
    } else {
        "ok"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page with its inline script and style bodies removed: its markup.
    fn markup(html: &str) -> String {
        let mut out = String::new();
        let mut rest = html;
        while let Some((i, tag)) =
            ["script", "style"].iter().filter_map(|t| rest.find(&format!("<{t}>")).map(|i| (i, *t))).min()
        {
            out.push_str(&rest[..i]);
            let close = format!("</{tag}>");
            rest = rest[i..].find(&close).map_or("", |j| &rest[i + j + close.len()..]);
        }
        out + rest
    }

    #[test]
    fn inline_blocks_are_hashed_as_browsers_do() {
        // SHA-256 of the empty string, as every CSP tutorial prints it.
        assert_eq!(
            inline_hashes("<style></style><p>", "style"),
            ["'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"]
        );
        assert_eq!(inline_hashes("<script>a</script> <script>b</script>", "script").len(), 2);
    }

    #[test]
    fn each_policy_covers_every_inline_block_and_nothing_else_inline() {
        for (html, policy) in [(PAGE, &*PAGE_POLICY), (ADMIN, &*ADMIN_POLICY)] {
            assert_eq!(inline_hashes(html, "script").len(), html.matches("<script").count());
            assert_eq!(inline_hashes(html, "style").len(), html.matches("<style").count());
            assert!(!policy.contains("unsafe"), "{policy}");
            // Hashes do not cover style attributes or inline event handlers: the pages have none.
            let m = markup(html);
            assert!(!m.contains("style="), "a style attribute would be blocked by the CSP");
            let handler = m.match_indices(" on").any(|(i, _)| {
                let name: String = m[i + 3..].chars().take_while(char::is_ascii_lowercase).collect();
                !name.is_empty() && m[i + 3 + name.len()..].starts_with('=')
            });
            assert!(!handler, "an inline event handler would be blocked by the CSP");
        }
        assert!(ADMIN_POLICY.ends_with("frame-ancestors 'none'"));
        assert!(!FAVICON.contains("<script"), "the icon is a picture, nothing more");
    }
}
