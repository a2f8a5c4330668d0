// What the Pusher tests share: a chat server with a Pusher app (the chat_server example), a
// small auth endpoint as a site has one (it signs with the app secret, as Pusher's server
// libraries do), and a signed call to the HTTP API.
"use strict";
const { spawn } = require("node:child_process");
const http = require("node:http");
const path = require("node:path");
const fs = require("node:fs");
const os = require("node:os");
const crypto = require("node:crypto");

const root = path.resolve(__dirname, "../..");
const serverBin = process.env.EMBEDCHAT_SERVER || path.join(root, "target/debug/examples/chat_server");
const APP = { app_id: "4242", key: "test-app-key", secret: "test-app-secret-0123456789" };

// Starts a chat server with the Pusher app (and `extra` keys) on a free port; resolves `url`.
function startServer(extra = {}) {
  const config = { pusher: { ...APP, client_events: true }, ...extra };
  const file = path.join(os.tmpdir(), `embedchat-pusher-${process.pid}-${crypto.randomUUID()}.json`);
  fs.writeFileSync(file, JSON.stringify(config));
  const proc = spawn(serverBin, ["--listen", "127.0.0.1:0", "--quiet", "--config", file], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start")), 10000);
    proc.stdout.on("data", (d) => {
      const m = String(d).match(/http:\/\/\S+/);
      if (m) { clearTimeout(timer); resolve(m[0].replace(/\/$/, "")); }
    });
  });
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  const stop = async () => { proc.kill("SIGINT"); await exited; fs.rmSync(file, { force: true }); };
  return { url, stop };
}

const hmac = (secret, text) => crypto.createHmac("sha256", secret).update(text).digest("hex");

// A site's auth endpoint (POST socket_id, channel_name): signs private channels, and presence
// channels for the user named in `?user=` (as a logged-in site would know it); at /user-auth,
// that user's signin. CORS is open for
// the browser tests' page, which is served from another port.
function startAuthEndpoint() {
  const server = http.createServer((req, res) => {
    const cors = {
      "access-control-allow-origin": "*",
      "access-control-allow-headers": "content-type, x-csrf-token, x-socket-id",
    };
    if (req.method === "OPTIONS") { res.writeHead(204, cors); return res.end(); }
    let body = "";
    req.on("data", (d) => { body += d; });
    req.on("end", () => {
      const form = new URLSearchParams(body);
      const socketId = form.get("socket_id");
      const channel = form.get("channel_name");
      const user = new URL(req.url, "http://x").searchParams.get("user") || "anon";
      if (user === "refused") { res.writeHead(403, cors); return res.end("no"); }
      let reply;
      if (req.url.startsWith("/user-auth")) {
        // pusher-js's signin: the user's data, signed for this socket.
        const userData = JSON.stringify({ id: user, user_info: { name: user } });
        reply = { auth: `${APP.key}:${hmac(APP.secret, `${socketId}::user::${userData}`)}`, user_data: userData };
      } else if (channel.startsWith("presence-")) {
        const channelData = JSON.stringify({ user_id: user, user_info: { name: user.toUpperCase() } });
        reply = { auth: `${APP.key}:${hmac(APP.secret, `${socketId}:${channel}:${channelData}`)}`, channel_data: channelData };
      } else {
        reply = { auth: `${APP.key}:${hmac(APP.secret, `${socketId}:${channel}`)}` };
      }
      res.writeHead(200, { "content-type": "application/json", ...cors });
      res.end(JSON.stringify(reply));
    });
  });
  const url = new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${server.address().port}`)));
  return { url, stop: () => new Promise((r) => server.close(r)) };
}

// A signed HTTP API request, as Pusher's server libraries make them.
async function api(base, method, apiPath, body, { secret = APP.secret, params = {} } = {}) {
  const text = body === undefined ? "" : JSON.stringify(body);
  const q = {
    ...params,
    auth_key: APP.key,
    auth_timestamp: String(Math.floor(Date.now() / 1000)),
    auth_version: "1.0",
    body_md5: crypto.createHash("md5").update(text).digest("hex"),
  };
  const full = `/apps/${APP.app_id}${apiPath}`;
  const query = Object.keys(q).sort().map((k) => `${k}=${q[k]}`).join("&");
  const signature = hmac(secret, `${method}\n${full}\n${query}`);
  const r = await fetch(`${base}${full}?${query}&auth_signature=${signature}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : text,
  });
  const raw = await r.text();
  let json = null;
  try { json = JSON.parse(raw); } catch { /* an error's text */ }
  return { status: r.status, json, text: raw };
}

// Resolves with the first value `fn` returns that is not undefined, polling; rejects after `ms`.
function until(fn, ms = 5000, what = "condition") {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const tick = () => {
      let v;
      try { v = fn(); } catch (e) { return reject(e); }
      if (v !== undefined && v !== false) return resolve(v);
      if (Date.now() - start > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}

// Subscribes pusher-js client `c` to channel `name`; resolves with the channel once subscribed.
function subscribed(c, name) {
  const channel = c.subscribe(name);
  return new Promise((resolve, reject) => {
    channel.bind("pusher:subscription_succeeded", () => resolve(channel));
    channel.bind("pusher:subscription_error", (e) => reject(new Error(`subscription refused: ${JSON.stringify(e)}`)));
  });
}

// Everything a channel receives under `event`, in order.
function collect(channel, event) {
  const got = [];
  channel.bind(event, (data) => got.push(data));
  return got;
}

module.exports = { root, APP, startServer, startAuthEndpoint, api, until, hmac, subscribed, collect };
