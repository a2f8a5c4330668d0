// pusher-js 8 (npm, the Node build) against the engine's Pusher protocol: connect, public,
// private and presence channels, events from the signed HTTP API, members coming and going
// (once per user across tabs), client events both ways, refusals with Pusher's codes.
//   cargo build --example chat_server && npm ci --prefix tests/pusher && node --test --test-force-exit tests/pusher/
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert");
const Pusher = require("pusher-js");
const { APP, startServer, startAuthEndpoint, api, until, subscribed, collect } = require("./harness");

let server;
let auth;
let base;
let authUrl;
const clients = [];

before(async () => {
  server = startServer();
  auth = startAuthEndpoint();
  base = await server.url;
  authUrl = await auth.url;
});
after(async () => {
  for (const c of clients) c.disconnect();
  await server.stop();
  await auth.stop();
});

function client(user = "anon", options = {}) {
  const { hostname, port } = new URL(base);
  const c = new Pusher(options.key || APP.key, {
    cluster: "mt1",
    wsHost: hostname,
    wsPort: Number(port),
    forceTLS: false,
    enabledTransports: ["ws"],
    disableStats: true,
    channelAuthorization: options.channelAuthorization || { endpoint: `${authUrl}/auth?user=${user}`, transport: "ajax" },
    userAuthentication: { endpoint: `${authUrl}/user-auth?user=${user}`, transport: "ajax" },
  });
  clients.push(c);
  return c;
}

const connected = (c) => new Promise((resolve) => {
  if (c.connection.state === "connected") return resolve();
  c.connection.bind("connected", resolve);
});

test("pusher-js connects and gets a socket id of Pusher's form", { timeout: 15000 }, async () => {
  const c = client();
  await connected(c);
  assert.match(c.connection.socket_id, /^\d+\.\d+$/);
});

test("a wrong app key is refused with pusher:error 4001", { timeout: 15000 }, async () => {
  const c = client("anon", { key: "not-this-app" });
  // In the handshake pusher-js wraps the pusher:error in a WebSocketError, and stays away.
  const err = await new Promise((resolve) => c.connection.bind("error", (e) => resolve(e.error || e)));
  assert.strictEqual(err.type, "PusherError");
  assert.strictEqual(err.data.code, 4001);
  assert.match(err.data.message, /does not exist/);
  await until(() => c.connection.state === "disconnected", 5000, "disconnected");
  c.disconnect();
});

test("public and private channels get events published through the HTTP API", { timeout: 15000 }, async () => {
  const a = client("ann");
  const b = client("bob");
  const [news, priv] = await Promise.all([subscribed(a, "news"), subscribed(a, "private-desk")]);
  const bNews = await subscribed(b, "news");
  const got = collect(news, "headline");
  const gotPrivate = collect(priv, "headline");
  const gotB = collect(bNews, "headline");
  const r = await api(base, "POST", "/events", {
    name: "headline",
    channels: ["news", "private-desk"],
    data: JSON.stringify({ title: "hello" }),
  });
  assert.strictEqual(r.status, 200, r.text);
  await until(() => got.length === 1 && gotPrivate.length === 1 && gotB.length === 1, 5000, "the events");
  assert.deepStrictEqual(got[0], { title: "hello" });
  assert.deepStrictEqual(gotPrivate[0], { title: "hello" });
  // socket_id: the sender's own connection is left out.
  const r2 = await api(base, "POST", "/events", {
    name: "headline", channel: "news", data: "\"second\"", socket_id: a.connection.socket_id,
  });
  assert.strictEqual(r2.status, 200, r2.text);
  await until(() => gotB.length === 2, 5000, "bob's second event");
  assert.strictEqual(gotB[1], "second");
  await new Promise((r) => setTimeout(r, 200));
  assert.strictEqual(got.length, 1, "the excluded socket did not get it");
});

test("a private subscription with a wrong signature is refused", { timeout: 15000 }, async () => {
  const c = client("anon", {
    channelAuthorization: { customHandler: (_params, cb) => cb(null, { auth: `${APP.key}:${"0".repeat(64)}` }) },
  });
  const channel = c.subscribe("private-vault");
  const status = await new Promise((resolve) => channel.bind("pusher:subscription_error", resolve));
  assert.strictEqual(status.status, 401);
  assert.match(status.error, /Invalid signature/);
});

test("presence: the member list, and members come and go once per user across tabs", { timeout: 20000 }, async () => {
  const ann = client("ann");
  const room = await subscribed(ann, "presence-lounge");
  assert.strictEqual(room.members.count, 1);
  assert.deepStrictEqual(room.members.me, { id: "ann", info: { name: "ANN" } });
  const added = collect(room, "pusher:member_added");
  const removed = collect(room, "pusher:member_removed");

  const bob1 = client("bob");
  await subscribed(bob1, "presence-lounge");
  await until(() => added.length === 1, 5000, "member_added");
  assert.deepStrictEqual(added[0], { id: "bob", info: { name: "BOB" } });

  const bob2 = client("bob");
  const bobRoom = await subscribed(bob2, "presence-lounge");
  assert.strictEqual(bobRoom.members.count, 2, "ann and bob, bob once");
  assert.deepStrictEqual(Object.keys(bobRoom.members.members).sort(), ["ann", "bob"]);

  bob1.disconnect();
  await new Promise((r) => setTimeout(r, 300));
  assert.strictEqual(removed.length, 0, "bob still has a tab there");
  assert.strictEqual(added.length, 1, "the second tab was not announced");
  bob2.disconnect();
  await until(() => removed.length === 1, 5000, "member_removed");
  assert.strictEqual(removed[0].id, "bob");
  assert.strictEqual(room.members.count, 1);

  const users = await api(base, "GET", "/channels/presence-lounge/users");
  assert.deepStrictEqual(users.json, { users: [{ id: "ann" }] });
});

test("client events reach the other subscribers and not the sender, both ways", { timeout: 15000 }, async () => {
  const a = client("ann");
  const b = client("bob");
  const [ca, cb] = await Promise.all([subscribed(a, "private-chat"), subscribed(b, "private-chat")]);
  const gotA = collect(ca, "client-typing");
  const gotB = collect(cb, "client-typing");
  assert.ok(ca.trigger("client-typing", { who: "ann" }));
  await until(() => gotB.length === 1, 5000, "bob gets ann's event");
  assert.deepStrictEqual(gotB[0], { who: "ann" });
  assert.ok(cb.trigger("client-typing", { who: "bob" }));
  await until(() => gotA.length === 1, 5000, "ann gets bob's event");
  assert.deepStrictEqual(gotA[0], { who: "bob" });
  await new Promise((r) => setTimeout(r, 200));
  assert.strictEqual(gotA.length, 1, "ann does not get her own");
  assert.strictEqual(gotB.length, 1, "bob does not get his own");
});

test("the HTTP API lists channels and their users and refuses a wrong signature", { timeout: 15000 }, async () => {
  const c = client("cy");
  await subscribed(c, "presence-stats");
  await subscribed(c, "public-stats");
  const all = await api(base, "GET", "/channels");
  assert.strictEqual(all.status, 200, all.text);
  assert.ok("public-stats" in all.json.channels && "presence-stats" in all.json.channels);
  const presence = await api(base, "GET", "/channels", undefined, {
    params: { filter_by_prefix: "presence-", info: "user_count" },
  });
  assert.strictEqual(presence.json.channels["presence-stats"].user_count, 1);
  assert.ok(!("public-stats" in presence.json.channels));
  const one = await api(base, "GET", "/channels/public-stats", undefined, { params: { info: "subscription_count" } });
  assert.deepStrictEqual(one.json, { occupied: true, subscription_count: 1 });
  const empty = await api(base, "GET", "/channels/nobody-here");
  assert.deepStrictEqual(empty.json, { occupied: false });
  const wrong = await api(base, "POST", "/events", { name: "x", channel: "news", data: "1" }, { secret: "not-the-secret-at-all" });
  assert.strictEqual(wrong.status, 401);
});

test("terminate_connections closes a user's connections", { timeout: 15000 }, async () => {
  const c = client("dee");
  await subscribed(c, "presence-term");
  const errors = [];
  c.connection.bind("error", (e) => errors.push(e));
  const r = await api(base, "POST", "/users/dee/terminate_connections", {});
  assert.strictEqual(r.status, 200, r.text);
  await until(() => errors.length > 0, 5000, "the error");
  assert.strictEqual(errors[0].data.code, 4009);
});

test("signin: events sent to the user reach every connection signed in as it; terminate closes them", { timeout: 20000 }, async () => {
  const tabs = [client("eve"), client("eve")];
  const got = [[], []];
  tabs.forEach((c, i) => {
    c.signin();
    c.user.bind("wake", (d) => got[i].push(d));
  });
  await Promise.all(tabs.map((c) => c.user.signinDonePromise));
  await until(() => tabs.every((c) => c.user.serverToUserChannel && c.user.serverToUserChannel.subscribed), 5000, "the user channels");
  assert.strictEqual(tabs[0].user.user_data.id, "eve");
  const r = await api(base, "POST", "/users/eve/events", { name: "wake", data: JSON.stringify({ up: true }) });
  assert.strictEqual(r.status, 200, r.text);
  await until(() => got[0].length === 1 && got[1].length === 1, 5000, "both tabs get it");
  assert.deepStrictEqual(got[0][0], { up: true });

  const errors = [];
  tabs[0].connection.bind("error", (e) => errors.push(e));
  const t = await api(base, "POST", "/users/eve/terminate_connections", {});
  assert.strictEqual(t.status, 200, t.text);
  await until(() => errors.some((e) => e.data && e.data.code === 4009), 5000, "the 4009");
});

test("a signin with a wrong signature is closed with 4009", { timeout: 15000 }, async () => {
  const { hostname, port } = new URL(base);
  const c = new Pusher(APP.key, {
    cluster: "mt1", wsHost: hostname, wsPort: Number(port), forceTLS: false, enabledTransports: ["ws"], disableStats: true,
    userAuthentication: { customHandler: (_p, cb) => cb(null, { auth: `${APP.key}:${"0".repeat(64)}`, user_data: "{\"id\":\"x\"}" }) },
  });
  clients.push(c);
  const errors = [];
  c.connection.bind("error", (e) => errors.push(e));
  c.signin();
  await until(() => errors.some((e) => e.data && e.data.code === 4009), 5000, "the 4009");
});

test("cache channels give a newcomer the last event, or pusher:cache_miss", { timeout: 15000 }, async () => {
  const r = await api(base, "POST", "/events", { name: "temperature", channel: "cache-weather", data: JSON.stringify({ c: 21 }) });
  assert.strictEqual(r.status, 200, r.text);
  const c = client("fay");
  const weather = c.subscribe("cache-weather");
  const got = collect(weather, "temperature");
  const empty = c.subscribe("cache-nothing-yet");
  const misses = collect(empty, "pusher:cache_miss");
  await until(() => got.length === 1 && misses.length === 1, 5000, "the cached event and the miss");
  assert.deepStrictEqual(got[0], { c: 21 });
});
