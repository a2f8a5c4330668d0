// The site side of examples/pusher: serves the page (Laravel Echo + pusher-js), tells it where
// the engine is, and answers Echo's auth requests at /broadcasting/auth the way Laravel's
// broadcasting routes do, signing with the app secret (no Pusher library needed; PHP sites
// can use EmbedChat\Pusher::authorizeChannel). Run, from the repository:
//
//   cargo run --example chat_server -- --config examples/pusher/config.json
//   npm install --prefix examples/pusher && node examples/pusher/serve.js
//
// then open http://127.0.0.1:8000/ in two windows. Publish as a Laravel app would (any Pusher
// server library pointed at 127.0.0.1:8080), or through the engine's own API:
//   curl -H 'Authorization: Bearer example-api-key-change-me' \
//        -d '{"room":"presence-lounge","text":"hello from the host"}' http://127.0.0.1:8080/api/publish
"use strict";
const http = require("node:http");
const fs = require("node:fs");
const path = require("node:path");
const crypto = require("node:crypto");

const config = JSON.parse(fs.readFileSync(path.join(__dirname, "config.json"), "utf8"));

// Where npm put the two libraries (this directory, or the tests' copy). By the package's
// directory: laravel-echo's `exports` do not list its browser build.
function vendor(file) {
  const [pkg, ...rest] = file.split("/");
  for (const dir of [__dirname, path.join(__dirname, "../../tests/pusher")]) {
    const p = path.join(dir, "node_modules", pkg, ...rest);
    if (fs.existsSync(p)) return p;
  }
  throw new Error(`${pkg} is not installed: npm install --prefix examples/pusher`);
}
const FILES = {
  "/": [path.join(__dirname, "index.html"), "text/html; charset=utf-8"],
  "/app.js": [path.join(__dirname, "app.js"), "text/javascript"],
  "/vendor/pusher.min.js": [vendor("pusher-js/dist/web/pusher.min.js"), "text/javascript"],
  "/vendor/echo.iife.js": [vendor("laravel-echo/dist/echo.iife.js"), "text/javascript"],
};

const sign = (secret, text) => crypto.createHmac("sha256", secret).update(text).digest("hex");

// What Laravel's channel routes decide: `user.{name}` is private to that user, `lounge` is a
// presence channel for anyone signed in (here: anyone who said a name).
function authorize(app, user, socketId, channel) {
  if (!user) return null;
  if (channel.startsWith("presence-")) {
    const channelData = JSON.stringify({ user_id: user, user_info: { name: user } });
    return { auth: `${app.key}:${sign(app.secret, `${socketId}:${channel}:${channelData}`)}`, channel_data: channelData };
  }
  if (channel === `private-user.${user}`) {
    return { auth: `${app.key}:${sign(app.secret, `${socketId}:${channel}`)}` };
  }
  return null;
}

// Starts the site on `listen` (host:port); `engine` is the engine's address for the page.
function start({ listen = "127.0.0.1:8000", engine = config.listen, app = config.pusher } = {}) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://site");
    if (req.method === "POST" && url.pathname === "/broadcasting/auth") {
      let body = "";
      req.on("data", (d) => { body += d; });
      req.on("end", () => {
        const form = new URLSearchParams(body);
        const user = req.headers["x-user"];
        const ok = authorize(app, user, form.get("socket_id"), form.get("channel_name") || "");
        res.writeHead(ok ? 200 : 403, { "content-type": "application/json" });
        res.end(JSON.stringify(ok || { error: "forbidden" }));
      });
      return;
    }
    if (url.pathname === "/config.js") {
      const [wsHost, wsPort] = (typeof engine === "function" ? engine() : engine).split(":");
      res.writeHead(200, { "content-type": "text/javascript" });
      res.end(`window.EMBEDCHAT = ${JSON.stringify({ key: app.key, wsHost, wsPort: Number(wsPort) })};\n`);
      return;
    }
    const file = FILES[url.pathname];
    if (!file) { res.writeHead(404); res.end("not found\n"); return; }
    res.writeHead(200, { "content-type": file[1] });
    fs.createReadStream(file[0]).pipe(res);
  });
  const [host, port] = listen.split(":");
  const url = new Promise((resolve) => server.listen(Number(port), host, () => {
    resolve(`http://${host}:${server.address().port}`);
  }));
  return { url, stop: () => new Promise((r) => server.close(r)) };
}

module.exports = { start };

if (require.main === module) {
  start().url.then((u) => console.log(`the Echo page: ${u}/ (engine at ${config.listen})`));
}
