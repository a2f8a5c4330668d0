// Pusher's Python server library (PyPI `pusher`) publishing to the engine and querying it, with
// a pusher-js client listening; a wrong secret gets 401. (pip install pusher)
"use strict";
const { test } = require("node:test");
const assert = require("node:assert");
const { execFile } = require("node:child_process");
const path = require("node:path");
const Pusher = require("pusher-js");
const { APP, startServer, startAuthEndpoint, until } = require("./harness");

function python(args) {
  return new Promise((resolve, reject) => {
    execFile(process.env.PYTHON || "python3", [path.join(__dirname, "server_lib.py"), ...args], { timeout: 20000 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout))));
  });
}

test("the Python pusher library triggers events, queries channels, and a wrong secret is refused", { timeout: 40000 }, async () => {
  const server = startServer();
  const auth = startAuthEndpoint();
  const base = await server.url;
  const { hostname, port } = new URL(base);
  const c = new Pusher(APP.key, {
    cluster: "mt1", wsHost: hostname, wsPort: Number(port), forceTLS: false, enabledTransports: ["ws"],
    disableStats: true, channelAuthorization: { endpoint: `${await auth.url}/auth?user=pat`, transport: "ajax" },
  });
  try {
    const sub = (name) => new Promise((resolve, reject) => {
      const ch = c.subscribe(name);
      ch.bind("pusher:subscription_succeeded", () => resolve(ch));
      ch.bind("pusher:subscription_error", (e) => reject(new Error(JSON.stringify(e))));
    });
    const [news, priv] = await Promise.all([sub("py-news"), sub("private-py"), sub("presence-py")]);
    const got = [];
    news.bind_global((event, data) => { if (!event.startsWith("pusher")) got.push([event, data]); });
    const gotPrivate = [];
    priv.bind("py-event", (d) => gotPrivate.push(d));

    const seen = await python([base, APP.app_id, APP.key, APP.secret]);
    await until(() => got.length === 3 && gotPrivate.length === 1, 5000, "the three events");
    assert.deepStrictEqual(got, [["py-event", { from: "python" }], ["py-batch", { n: 1 }], ["py-batch", { n: 2 }]]);
    assert.deepStrictEqual(gotPrivate, [{ from: "python" }]);
    assert.ok("py-news" in seen.channels.channels, JSON.stringify(seen.channels));
    assert.deepStrictEqual(seen.channel, { occupied: true, subscription_count: 1 });
    assert.deepStrictEqual(seen.users, { users: [{ id: "pat" }] });
    assert.match(seen.wrong_secret, /^401: .*invalid signature/i);
    assert.match(seen.auth.auth, new RegExp(`^${APP.key}:[0-9a-f]{64}$`));
  } finally {
    c.disconnect();
    await server.stop();
    await auth.stop();
  }
});
