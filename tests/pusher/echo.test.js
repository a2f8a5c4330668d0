// laravel-echo 2 with the pusher broadcaster (pusher-js 8, web build) in Debian's Chromium,
// on the example page (examples/pusher): Echo.channel().listen(), Echo.private() through the
// site's auth endpoint, Echo.join().here/joining/leaving, whispers, and messages from the
// host's API reaching Echo as the `message` event.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert");
const path = require("node:path");
const { chromium } = require("playwright-core");
const { APP, startServer, api, until } = require("./harness");
const site = require(path.join(__dirname, "../../examples/pusher/serve.js"));

const API_KEY = "echo-test-api-key-0123456789";
let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"],
    timeout: 30000,
  });
});
after(async () => { if (browser) await browser.close(); });

test("laravel-echo: public, private and presence channels, whispers and host messages", { timeout: 90000 }, async () => {
  let engineAddr = "";
  const web = site.start({ listen: "127.0.0.1:0", engine: () => engineAddr, app: APP });
  const origin = await web.url;
  const engine = startServer({ allowed_origins: [origin], api_key: API_KEY });
  const base = await engine.url;
  engineAddr = new URL(base).host;
  const errors = [];
  try {
    const open = async (name) => {
      const page = await (await browser.newContext()).newPage();
      page.on("pageerror", (e) => errors.push(`${name}: ${e.message}`));
      await page.goto(`${origin}/`);
      await page.fill("#name", name);
      await page.click("#login button");
      await page.locator("#members li", { hasText: name }).waitFor({ timeout: 10000 });
      return page;
    };
    const logHas = (page, text) => page.locator("#log li", { hasText: text }).waitFor({ timeout: 10000 });

    // here(): ann alone; then bob comes: joining() on ann's page, here() with both on bob's.
    const ann = await open("ann");
    const bob = await open("bob");
    await ann.locator("#members li", { hasText: "bob" }).waitFor({ timeout: 10000 });
    assert.deepStrictEqual((await bob.locator("#members li").allTextContents()).sort(), ["ann", "bob"]);
    await logHas(ann, "bob joined");

    // Echo.channel('news').listen('.headline'): an event from the signed HTTP API.
    await until(async () => (await api(base, "GET", "/channels/news")).json.occupied, 5000, "news subscribed");
    const r = await api(base, "POST", "/events", { name: "headline", channel: "news", data: JSON.stringify({ title: "Echo works" }) });
    assert.strictEqual(r.status, 200, r.text);
    await logHas(ann, "headline: Echo works");
    await logHas(bob, "headline: Echo works");

    // Echo.private('user.ann'): only ann is authorised, only ann gets it.
    const n = await api(base, "POST", "/events", { name: "notice", channel: "private-user.ann", data: JSON.stringify({ text: "for ann" }) });
    assert.strictEqual(n.status, 200, n.text);
    await logHas(ann, "notice: for ann");

    // A whisper (client event) from bob reaches ann.
    await bob.fill("#text", "hello ann");
    await bob.press("#text", "Enter");
    await logHas(ann, "bob: hello ann");

    // The host's message into the room (the engine's own API) reaches Echo as `message`.
    const hostPost = await fetch(`${base}/api/publish`, {
      method: "POST",
      headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ room: "presence-lounge", text: "from the host" }),
    });
    assert.strictEqual(hostPost.status, 200, await hostPost.text());
    await logHas(ann, "system: from the host");
    await logHas(bob, "system: from the host");

    // leaving(): bob closes his page.
    await bob.context().close();
    await logHas(ann, "bob left");
    assert.deepStrictEqual(await ann.locator("#members li").allTextContents(), ["ann"]);
    assert.deepStrictEqual(await ann.locator("#log li", { hasText: "notice" }).count(), 1);
    assert.deepStrictEqual(errors, []);
  } finally {
    await engine.stop();
    await web.stop();
  }
});
