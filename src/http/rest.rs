//! The HTTP API (`/api/...`, Bearer `api_key`): the host's operations for a site's PHP-FPM
//! pages, as JSON over HTTP. The operations themselves are `host.rs`'s.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming as Body;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};

use super::{reply, text, Reply};
use crate::context::Context;
use crate::error::{Error, ErrorKind};
use crate::host::{self, Op};
use crate::stats::Stats;

fn json_reply(status: u16, v: &serde_json::Value) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply(status, "application/json", format!("{v}\n"))
}

fn failed(e: &Error) -> Reply {
    json_reply(e.kind().http_status(), &e.to_reply())
}

/// Compares without stopping at the first differing byte, so response timing does not reveal
/// how much of a guessed key was right.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks `Authorization: Bearer <api_key>`: `None` when it is right, else the refusal to send
/// (401, counted in `api_auth_failures`). Also guards `/metrics` when `metrics_auth` is on.
pub(super) fn refusal(req: &Request<Body>, ctx: &Context, key: &str) -> Option<Reply> {
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let ok = given
        .and_then(|g| g.strip_prefix("Bearer "))
        .is_some_and(|g| same_key(g.trim().as_bytes(), key.as_bytes()));
    if ok {
        return None;
    }
    Stats::inc(&ctx.stats.api_auth_failures);
    let mut r =
        failed(&Error::other(ErrorKind::Unauthorized, "missing or wrong `Authorization: Bearer` key"));
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(r)
}

pub(super) async fn api(req: Request<Body>, ctx: &Context) -> Reply {
    let Some(key) = &ctx.cfg.site.api_key else {
        return text(StatusCode::NOT_FOUND, "the HTTP API is off (set `api_key` in the engine config)");
    };
    if let Some(refused) = refusal(&req, ctx, key) {
        return refused;
    }
    Stats::inc(&ctx.stats.api_requests);
    let result = match op(req, ctx).await {
        Ok(op) => host::execute_async(ctx, op).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => json_reply(200, &v),
        Err(e) => failed(&e),
    }
}

/// The operation an API request asks for.
async fn op(req: Request<Body>, ctx: &Context) -> Result<Op, Error> {
    let path = req.uri().path().trim_start_matches("/api/").to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::POST, "publish" | "send" | "kick") => {
            let limit = ctx.cfg.limits.max_message_bytes + 64 * 1024;
            let body: Bytes = match http_body_util::Limited::new(req.into_body(), limit).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Err(Error::other(ErrorKind::TooLarge, "request body too large")),
            };
            let mut v: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(v @ serde_json::Value::Object(_)) => v,
                _ => return Err(Error::other(ErrorKind::BadRequest, "the body must be a JSON object")),
            };
            v["op"] = serde_json::Value::from(if path == "publish" { "broadcast" } else { path.as_str() });
            serde_json::from_value(v)
                .map_err(|e| Error::other(ErrorKind::BadRequest, format!("bad request: {e}")))
        }
        (Method::GET, "rooms") => Ok(Op::Rooms),
        (Method::GET, "stats") => Ok(Op::Stats),
        (Method::GET, "presence") => {
            let room = form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "room")
                .map(|(_, v)| v.into_owned());
            Ok(Op::Presence { room })
        }
        (_, "publish" | "send" | "kick" | "rooms" | "stats" | "presence") => Err(Error::other(
            ErrorKind::MethodNotAllowed,
            "publish, send and kick are POST; rooms, presence and stats are GET",
        )),
        _ => Err(Error::other(ErrorKind::NotFound, "unknown API path")),
    }
}
