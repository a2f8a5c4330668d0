// pusher-js 8 against two engines sharing one Redis (scale-out): a presence channel's members
// on both nodes, announced once per user across nodes and tabs; client events and API events
// crossing nodes; the HTTP API of either node answering for the whole cluster;
// terminate_connections through one node closing the user's connections on the other.
// Needs `redis-server` (scripts/test installs it); the test starts its own on a free port.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert");
const { spawn } = require("node:child_process");
const net = require("node:net");
const Pusher = require("pusher-js");
const { APP, startServer, startAuthEndpoint, api, until, subscribed, collect } = require("./harness");

let redis;
let nodes;
let auth;
let authUrl;
const clients = [];

const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});


before(async () => {
  const port = await freePort();
  redis = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore",
  });
  await waitListening(port);
  const extra = { redis_url: `redis://127.0.0.1:${port}/0` };
  nodes = [startServer(extra), startServer(extra)];
  nodes.urls = await Promise.all(nodes.map((n) => n.url));
  auth = startAuthEndpoint();
  authUrl = await auth.url;
});
after(async () => {
  for (const c of clients) c.disconnect();
  await Promise.all(nodes.map((n) => n.stop()));
  await auth.stop();
  redis.kill("SIGKILL");
});

// `until` polls a value, not a promise: wait for the port by polling connects.
async function waitListening(port) {
  const deadline = Date.now() + 10000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => { s.destroy(); resolve(true); });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error("redis-server did not listen");
    await new Promise((r) => setTimeout(r, 50));
  }
}

function client(node, user) {
  const { hostname, port } = new URL(nodes.urls[node]);
  const c = new Pusher(APP.key, {
    cluster: "mt1",
    wsHost: hostname,
    wsPort: Number(port),
    forceTLS: false,
    enabledTransports: ["ws"],
    disableStats: true,
    channelAuthorization: { endpoint: `${authUrl}/auth?user=${user}`, transport: "ajax" },
  });
  clients.push(c);
  return c;
}

// Polls an async check until it holds.
async function eventually(check, what, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const usersOf = async (node, channel) => {
  const r = await api(nodes.urls[node], "GET", `/channels/${channel}/users`);
  return r.json.users.map((u) => u.id).sort().join(",");
};

test("presence across nodes: members once per user, either node's API answers for both", { timeout: 60000 }, async () => {
  const ann = client(0, "ann");
  const room = await subscribed(ann, "presence-hall");
  const added = collect(room, "pusher:member_added");
  const removed = collect(room, "pusher:member_removed");
  await eventually(async () => (await usersOf(1, "presence-hall")) === "ann", "node B to list ann");

  const bob1 = client(1, "bob");
  const bobRoom = await subscribed(bob1, "presence-hall");
  assert.strictEqual(bobRoom.members.count, 2, "bob, on node B, sees ann of node A");
  assert.deepStrictEqual(bobRoom.members.get("ann").info, { name: "ANN" });
  await until(() => added.length === 1, 10000, "ann hears bob come");
  assert.deepStrictEqual(added[0], { id: "bob", info: { name: "BOB" } });

  // Bob's second tab is on node A; then his first (node B) goes: still one bob, no news.
  const bob2 = client(0, "bob");
  assert.strictEqual((await subscribed(bob2, "presence-hall")).members.count, 2);
  // Node A tells Redis of bob's second tab a moment after greeting it.
  let one;
  await eventually(async () => {
    one = await api(nodes.urls[1], "GET", "/channels/presence-hall", undefined, {
      params: { info: "subscription_count,user_count" },
    });
    return one.json.subscription_count === 3;
  }, "node B to count bob's tab on node A");
  assert.deepStrictEqual(one.json, { occupied: true, subscription_count: 3, user_count: 2 });
  const listed = await api(nodes.urls[0], "GET", "/channels", undefined, {
    params: { filter_by_prefix: "presence-", info: "user_count" },
  });
  assert.deepStrictEqual(listed.json, { channels: { "presence-hall": { user_count: 2 } } });
  bob1.disconnect();
  await eventually(async () => {
    const r = await api(nodes.urls[0], "GET", "/channels/presence-hall", undefined, { params: { info: "subscription_count" } });
    return r.json.subscription_count === 2;
  }, "bob's tab on node B to be gone");
  await new Promise((r) => setTimeout(r, 300));
  assert.strictEqual(removed.length, 0, "bob is still here (on node A)");
  assert.strictEqual(added.length, 1, "bob's second tab was not news");

  // terminate_connections through node B closes bob's tab on node A; ann hears bob go once.
  const errors = [];
  bob2.connection.bind("error", (e) => errors.push(e));
  const r = await api(nodes.urls[1], "POST", "/users/bob/terminate_connections", {});
  assert.strictEqual(r.status, 200, r.text);
  await until(() => errors.length > 0, 10000, "bob's tab on node A to be told");
  assert.strictEqual(errors[0].data.code, 4009);
  await until(() => removed.length === 1, 10000, "ann hears bob go");
  assert.strictEqual(removed[0].id, "bob");
  assert.strictEqual(room.members.count, 1);
});

test("events cross nodes: the HTTP API on one, client events from the other", { timeout: 60000 }, async () => {
  const a = client(0, "cy");
  const b = client(1, "di");
  const [ca, cb] = await Promise.all([subscribed(a, "private-desk"), subscribed(b, "private-desk")]);
  const gotA = collect(ca, "client-note");
  const gotB = collect(cb, "client-note");
  const news = collect(ca, "news");
  // Both nodes follow the channel once each has a subscriber; publish through node B.
  await eventually(async () => {
    const r = await api(nodes.urls[1], "GET", "/channels/private-desk", undefined, { params: { info: "subscription_count" } });
    return r.json.subscription_count === 2;
  }, "both subscriptions in the cluster");
  const sent = await api(nodes.urls[1], "POST", "/events", { name: "news", channel: "private-desk", data: JSON.stringify({ n: 1 }) });
  assert.strictEqual(sent.status, 200, sent.text);
  await until(() => news.length === 1, 10000, "node A's client gets node B's API event");
  assert.deepStrictEqual(news[0], { n: 1 });
  assert.ok(cb.trigger("client-note", { from: "di" }));
  await until(() => gotA.length === 1, 10000, "node A's client gets node B's client event");
  assert.deepStrictEqual(gotA[0], { from: "di" });
  await new Promise((r) => setTimeout(r, 200));
  assert.strictEqual(gotB.length, 0, "not back to its sender");
});
