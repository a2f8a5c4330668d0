//! Pusher's HTTP API (`/apps/{app_id}/...`), the calls Pusher's server libraries make
//! (pusher-http-php, Laravel's broadcaster, the Python and Node libraries), each request signed
//! with the app secret (`crate::pusher::sign`). Events go to the hub like a host broadcast, so
//! both kinds of client in a channel get them.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming as Body;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{reply, Reply};
use crate::config::PusherConfig;
use crate::context::Context;
use crate::error::Error;
use crate::host::cluster_up;
use crate::hub::ChannelInfo;
use crate::protocol::pusher::{validate_channel, Kind};
use crate::pusher::{self, sign};
use crate::stats::Stats;

/// Events one `batch_events` request may carry (Pusher's limit).
const MAX_BATCH: usize = 10;

fn json_reply(status: StatusCode, v: &Value) -> Reply {
    reply(status, "application/json", format!("{v}\n"))
}

/// Pusher's libraries show an error response's body as it is: plain text that says what to fix.
fn error(status: StatusCode, msg: impl Into<String>) -> Reply {
    let mut m = msg.into();
    m.push('\n');
    reply(status, "text/plain; charset=utf-8", m)
}

/// One event as `events` and `batch_events` take it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody {
    name: String,
    /// A string (what every library sends); other JSON is taken as its text.
    data: Value,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    /// The sender's socket, which does not get the event.
    #[serde(default)]
    socket_id: Option<String>,
    /// Attributes to return per channel (`user_count`, `subscription_count`).
    #[serde(default)]
    info: Option<String>,
}

/// An event to a signed-in user's connections.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEvent {
    name: String,
    data: Value,
}

#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<EventBody>,
}

pub(super) async fn api(req: Request<Body>, ctx: &Context) -> Reply {
    let Some(cfg) = &ctx.cfg.site.pusher else {
        return error(StatusCode::NOT_FOUND, "the Pusher API is off (set `pusher` in the engine config)");
    };
    let path = req.uri().path().to_string();
    let rest = path.trim_start_matches("/apps/");
    let Some((app, rest)) = rest.split_once('/') else { return error(StatusCode::NOT_FOUND, "not found") };
    if app != cfg.app_id {
        return error(StatusCode::NOT_FOUND, format!("app {app} does not exist on this server"));
    }
    let query: Vec<(String, String)> = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let method = req.method().clone();
    // Big enough for a full batch of the largest events with their names and channels.
    let limit = MAX_BATCH * (cfg.max_event_data_bytes + 64 * 1024);
    let body: Bytes = match http_body_util::Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if let Err(sign::Unsigned(why)) =
        sign::check_request(&cfg.key, &cfg.secret, method.as_str(), &path, &query, &body, now)
    {
        Stats::inc(&ctx.stats.api_auth_failures);
        return error(StatusCode::UNAUTHORIZED, why);
    }
    Stats::inc(&ctx.stats.api_requests);
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let segments: Vec<&str> = rest.split('/').collect();
    let done = match (&method, segments.as_slice()) {
        (&Method::POST, ["events"]) => match parse::<EventBody>(&body) {
            Ok(e) => trigger(ctx, cfg, e).await,
            Err(e) => Err(e),
        },
        (&Method::POST, ["batch_events"]) => match parse::<BatchBody>(&body) {
            Ok(b) => batch(ctx, cfg, b).await,
            Err(e) => Err(e),
        },
        (&Method::GET, ["channels"]) => channels(ctx, param("filter_by_prefix"), param("info")).await,
        (&Method::GET, ["channels", name]) => Ok(channel(ctx, name, param("info")).await),
        (&Method::GET, ["channels", name, "users"]) => users(ctx, name).await,
        (&Method::POST, ["users", user, "events"]) => {
            parse::<UserEvent>(&body).and_then(|e| to_user(ctx, cfg, user, e))
        }
        (&Method::POST, ["users", user, "terminate_connections"]) => {
            ctx.hub.pusher_terminate(user);
            Ok(json!({}))
        }
        (_, ["events" | "batch_events"] | ["users", _, "terminate_connections" | "events"]) => {
            Err((StatusCode::METHOD_NOT_ALLOWED, "this path takes POST".into()))
        }
        (_, ["channels", ..]) => Err((StatusCode::METHOD_NOT_ALLOWED, "this path takes GET".into())),
        _ => Err((StatusCode::NOT_FOUND, format!("no API path {path}"))),
    };
    match done {
        Ok(v) => json_reply(StatusCode::OK, &v),
        Err((status, why)) => {
            if status == StatusCode::BAD_REQUEST {
                Stats::inc(&ctx.stats.command_errors);
            }
            error(status, why)
        }
    }
}

type Refusal = (StatusCode, String);

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("bad request body: {e}")))
}

fn bad(msg: impl Into<String>) -> Refusal {
    (StatusCode::BAD_REQUEST, msg.into())
}

/// An event's checks, then its delivery; returns the `channels` info asked for.
async fn trigger(ctx: &Context, cfg: &PusherConfig, e: EventBody) -> Result<Value, Refusal> {
    let channels: Vec<String> = match (e.channel, e.channels) {
        (Some(c), None) => vec![c],
        (None, Some(cs)) if !cs.is_empty() => cs,
        _ => return Err(bad("give `channel` or a non-empty `channels`, not both")),
    };
    if channels.len() > cfg.max_channels_per_event {
        return Err(bad(format!("at most {} channels per event", cfg.max_channels_per_event)));
    }
    for c in &channels {
        validate_channel(c, ctx.cfg.chat.max_room_chars).map_err(bad)?;
    }
    let data = match e.data {
        Value::String(s) => s,
        other => other.to_string(),
    };
    pusher::check_event(cfg, &e.name, &data).map_err(|m| (StatusCode::PAYLOAD_TOO_LARGE, m))?;
    let except = match e.socket_id.as_deref() {
        None => None,
        Some(s) if pusher::valid_socket_id(s) => pusher::conn_of(s),
        Some(s) => return Err(bad(format!("`{s}` is not a socket_id (digits.digits)"))),
    };
    ctx.hub.pusher_publish(&channels, &e.name, &data, except);
    let Some(info) = e.info else { return Ok(json!({})) };
    let mut out = Map::new();
    for c in &channels {
        out.insert(c.clone(), attributes(&channel_info(ctx, c).await, &info));
    }
    Ok(json!({ "channels": out }))
}

/// `POST /users/{id}/events`: to the connections signed in as `user` (their
/// `#server-to-user-{id}` channel).
fn to_user(ctx: &Context, cfg: &PusherConfig, user: &str, e: UserEvent) -> Result<Value, Refusal> {
    if user.is_empty() || user.len() > 128 {
        return Err(bad("a user id has 1 to 128 characters"));
    }
    let data = match e.data {
        Value::String(s) => s,
        other => other.to_string(),
    };
    pusher::check_event(cfg, &e.name, &data).map_err(|m| (StatusCode::PAYLOAD_TOO_LARGE, m))?;
    let channel = format!("{}{user}", crate::protocol::pusher::USER_CHANNEL);
    ctx.hub.pusher_publish(&[channel], &e.name, &data, None);
    Ok(json!({}))
}

async fn batch(ctx: &Context, cfg: &PusherConfig, b: BatchBody) -> Result<Value, Refusal> {
    if b.batch.len() > MAX_BATCH {
        return Err(bad(format!("at most {MAX_BATCH} events per batch")));
    }
    if b.batch.iter().any(|e| e.channels.is_some()) {
        return Err(bad("a batch event names one `channel`"));
    }
    let mut infos = Vec::new();
    for e in b.batch {
        let info = e.info.is_some();
        let channel = e.channel.clone();
        let v = trigger(ctx, cfg, e).await?;
        if info {
            infos.push(channel.and_then(|c| v["channels"].get(&c).cloned()).unwrap_or(json!({})));
        } else {
            infos.push(json!({}));
        }
    }
    Ok(json!({ "batch": infos }))
}

/// The attributes `info` asks for (comma-separated), those that apply to the channel.
fn attributes(c: &ChannelInfo, info: &str) -> Value {
    let mut m = Map::new();
    for attr in info.split(',').map(str::trim) {
        match attr {
            "user_count" => {
                if let Some(n) = c.user_count {
                    m.insert("user_count".into(), n.into());
                }
            }
            "subscription_count" => {
                m.insert("subscription_count".into(), c.subscription_count.into());
            }
            _ => {}
        }
    }
    Value::Object(m)
}

/// The cluster's answer, or None (counted in `cluster_errors`) when Redis did not give one:
/// the node answers for itself then, as while it knows Redis is away. (An event was delivered
/// before its `info` is asked for: an error would make a library send it again.)
fn or_local<T>(ctx: &Context, answer: Result<T, Error>) -> Option<T> {
    match answer {
        Ok(v) => Some(v),
        Err(_) => {
            Stats::inc(&ctx.stats.cluster_errors);
            None
        }
    }
}

/// One channel: in a cluster whose Redis answers, on every node.
async fn channel_info(ctx: &Context, name: &str) -> ChannelInfo {
    if cluster_up(ctx) {
        if let Some((entries, _)) = or_local(ctx, ctx.queries.room(&ctx.cfg.cluster, name).await) {
            return ChannelInfo::of_entries(name, &entries);
        }
    }
    ctx.hub.pusher_channel(name)
}

async fn channels(ctx: &Context, prefix: Option<&str>, info: Option<&str>) -> Result<Value, Refusal> {
    let info = info.unwrap_or("");
    if info.split(',').any(|a| a.trim() == "user_count")
        && !prefix.is_some_and(|p| p.starts_with("presence-"))
    {
        return Err(bad("info=user_count needs filter_by_prefix=presence-"));
    }
    let cluster = match cluster_up(ctx) {
        true => or_local(ctx, ctx.queries.rooms(&ctx.cfg.cluster, prefix.unwrap_or("")).await),
        false => None,
    };
    let list = match cluster {
        Some(rooms) => rooms
            .iter()
            .map(|r| ChannelInfo::of_cluster(&r.name, r.conns, r.members))
            .filter(|c| c.occupied)
            .collect(),
        None => ctx.hub.pusher_channels(prefix),
    };
    let mut out = Map::new();
    for c in list {
        out.insert(c.name.clone(), attributes(&c, info));
    }
    Ok(json!({ "channels": out }))
}

async fn channel(ctx: &Context, name: &str, info: Option<&str>) -> Value {
    let c = channel_info(ctx, name).await;
    let mut v = attributes(&c, info.unwrap_or(""));
    v["occupied"] = c.occupied.into();
    v
}

async fn users(ctx: &Context, name: &str) -> Result<Value, Refusal> {
    if Kind::of(name) != Kind::Presence {
        return Err(bad("users are listed for presence- channels only"));
    }
    let cluster = match cluster_up(ctx) {
        true => or_local(ctx, ctx.queries.room(&ctx.cfg.cluster, name).await),
        false => None,
    };
    let ids = match cluster {
        Some((entries, _)) => crate::hub::pusher_cluster_users(&entries),
        None => ctx.hub.pusher_users(name),
    };
    let users: Vec<Value> = ids.into_iter().map(|id| json!({ "id": id })).collect();
    Ok(json!({ "users": users }))
}
