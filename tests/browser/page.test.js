// The bundled page in a real browser (Debian's Chromium driven by playwright-core): two people
// join, see each other, chat, whisper; markup in a message stays text and runs nothing; all of
// it under the page's Content-Security-Policy, with no violation; a login token reaches the
// server without ever being in a URL; the page is framed only where the config allows.
//   npm ci --prefix tests/browser && node --test tests/browser/
// Needs target/debug/examples/chat_server (cargo test builds it) or EMBEDCHAT_SERVER.
"use strict";
const { test, before, after, afterEach } = require("node:test");
const assert = require("node:assert");
const { spawn } = require("node:child_process");
const path = require("node:path");
const fs = require("node:fs");
const crypto = require("node:crypto");
const http = require("node:http");
const { chromium } = require("playwright-core");

const root = path.resolve(__dirname, "../..");
const serverBin = process.env.EMBEDCHAT_SERVER || path.join(root, "target/debug/examples/chat_server");
let server, base, browser;

before(async () => {
  const cfg = path.join(require("node:os").tmpdir(), `embedchat-browser-${process.pid}.json`);
  // "stage" is a big room from its third member on (presence_limit), to test how it is shown.
  fs.writeFileSync(cfg, JSON.stringify({ max_messages_per_second: 0, presence_interval_ms: 100, rooms: { stage: { presence_limit: 2 } } }));
  server = spawn(serverBin, ["--listen", "127.0.0.1:0", "--quiet", "--config", cfg], { stdio: ["ignore", "pipe", "inherit"] });
  base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start")), 10000);
    server.stdout.once("data", (d) => {
      clearTimeout(timer);
      resolve(String(d).match(/http:\/\/\S+/)[0]);
    });
  });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
    timeout: 30000,
  });
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.kill("SIGINT");
});

// Every CSP violation any page reports (Chromium logs each as a console error naming the
// Content Security Policy): the page must work under its policy without one.
const violations = [];
async function newContext(options) {
  const context = await browser.newContext(options);
  context.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  return context;
}
afterEach(() => {
  assert.deepStrictEqual(violations.splice(0), [], "no Content Security Policy violations");
});

async function person(name) {
  const context = await newContext({ viewport: { width: 900, height: 600 } });
  const page = await context.newPage();
  const dialogs = [];
  page.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss(); });
  await page.goto(`${base}/?name=${name}`);
  await page.locator("#state", { hasText: "connected" }).waitFor({ timeout: 10000 });
  return { page, dialogs };
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.keyboard.press("Enter"); // keyboard only
}

test("two people chat, whisper, and markup stays text", { timeout: 60000 }, async () => {
  const ann = await person("ann");
  const bob = await person("bob");
  await ann.page.locator("#room-list button", { hasText: "lobby" }).waitFor({ timeout: 5000 });
  await ann.page.locator("#members li", { hasText: "bob" }).waitFor({ timeout: 5000 });
  await bob.page.locator("#members li", { hasText: "ann" }).waitFor({ timeout: 5000 });

  await say(bob.page, "hello ann");
  await ann.page.locator(".log li", { hasText: "hello ann" }).waitFor({ timeout: 5000 });
  // Chromium offers permessage-deflate and the engine takes it (the messages above came so).
  assert.match(await ann.page.evaluate(() => ws.extensions), /permessage-deflate/);

  await say(bob.page, "/w ann just between us");
  await ann.page.locator(".log li.whisper", { hasText: "just between us" }).waitFor({ timeout: 5000 });

  const evil = "<img src=x onerror=alert(1)>";
  await say(ann.page, evil);
  const line = bob.page.locator(".log li", { hasText: evil });
  await line.waitFor({ timeout: 5000 });
  assert.strictEqual(await bob.page.locator(".log img").count(), 0, "no element was created from the text");
  await bob.page.waitForTimeout(300);
  assert.deepStrictEqual(bob.dialogs, [], "no script ran");
  assert.deepStrictEqual(ann.dialogs, []);

  fs.mkdirSync(path.join(root, "target/artifacts"), { recursive: true });
  await bob.page.screenshot({ path: path.join(root, "target/artifacts/page.png") });

  // A phone-width screen still shows the conversation and the input.
  await bob.page.setViewportSize({ width: 380, height: 700 });
  assert.ok(await bob.page.locator("#text").isVisible());
  assert.ok(await bob.page.locator(".log li", { hasText: "hello ann" }).isVisible());
});

test("the tutorial's page works unchanged against seed mode", { timeout: 60000 }, async () => {
  const seed = spawn(serverBin, ["--listen", "127.0.0.1:0", "--quiet", "--config", path.join(root, "examples/seed/config.json")],
    { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const port = await new Promise((resolve) => seed.stdout.once("data", (d) => resolve(String(d).match(/:(\d+)\s*$/m)[1])));
    const url = "file://" + path.join(root, "examples/seed/index.html") + "?port=" + port;
    const pages = [];
    for (let i = 0; i < 2; i++) {
      const page = await (await newContext()).newPage();
      await page.goto(url);
      pages.push(page);
    }
    await pages[0].waitForTimeout(300);
    await pages[0].fill("#t", "hi from the tutorial <b>page</b>");
    await pages[0].keyboard.press("Enter");
    const line = pages[1].locator("#msgs li", { hasText: "hi from the tutorial <b>page</b>" });
    await line.waitFor({ timeout: 5000 });
    assert.strictEqual(await pages[1].locator("#msgs li b").count(), 1, "only the sender name is bold; the text's <b> is text");
  } finally {
    seed.kill("SIGINT");
  }
});

test("rooms: join, unread counts, switching", { timeout: 60000 }, async () => {
  const cy = await person("cy");
  const dee = await person("dee");
  // cy joins "dev" from the page and looks at it.
  await cy.page.fill("#join-name", "dev");
  await cy.page.keyboard.press("Enter");
  await cy.page.locator("#room-list button[aria-current=true]", { hasText: "dev" }).waitFor({ timeout: 5000 });
  // dee talks in the lobby: cy sees an unread count there, not the message.
  await say(dee.page, "lobby news 1");
  await say(dee.page, "lobby news 2");
  const badge = cy.page.locator("#room-list button", { hasText: "lobby" }).locator(".unread");
  await badge.filter({ hasText: "2" }).waitFor({ timeout: 5000 });
  assert.strictEqual(await cy.page.locator(".log:not([hidden]) li", { hasText: "lobby news" }).count(), 0);
  // Switching shows them and clears the count.
  await cy.page.locator("#room-list button", { hasText: "lobby" }).click();
  await cy.page.locator(".log:not([hidden]) li", { hasText: "lobby news 2" }).waitFor({ timeout: 5000 });
  assert.strictEqual(await badge.count(), 0);
  // A message typed now goes to the room shown.
  await say(cy.page, "back in the lobby");
  await dee.page.locator(".log:not([hidden]) li", { hasText: "back in the lobby" }).waitFor({ timeout: 5000 });
});

test("scrolling up pages older history in", { timeout: 60000 }, async () => {
  const writer = await person("writer");
  await writer.page.fill("#join-name", "archive");
  await writer.page.keyboard.press("Enter");
  await writer.page.locator("#room-list button[aria-current=true]", { hasText: "archive" }).waitFor({ timeout: 5000 });
  for (let i = 1; i <= 80; i++) await say(writer.page, `old ${i}`);
  await writer.page.locator(".log:not([hidden]) li", { hasText: "old 80" }).waitFor({ timeout: 10000 });

  const reader = await person("reader");
  await reader.page.fill("#join-name", "archive");
  await reader.page.keyboard.press("Enter");
  const log = reader.page.locator(".log:not([hidden])");
  await log.locator("li", { hasText: "old 80" }).waitFor({ timeout: 5000 });
  assert.strictEqual(await log.locator("li", { hasText: /^.*old 30$/ }).count(), 0, "a newcomer gets the newest 50");
  await log.evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event("scroll")); });
  await log.locator("li", { hasText: /old 30$/ }).waitFor({ timeout: 5000 });
  await log.locator("li", { hasText: /old 1$/ }).waitFor({ timeout: 5000 });
});

function startServer(listen, config) {
  const args = ["--listen", listen, "--quiet"];
  if (config) {
    const file = path.join(require("node:os").tmpdir(), `embedchat-browser-${process.pid}-${crypto.randomUUID()}.json`);
    fs.writeFileSync(file, JSON.stringify(config));
    args.push("--config", file);
  }
  const proc = spawn(serverBin, args, { stdio: ["ignore", "pipe", "inherit"] });
  const url = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start")), 10000);
    proc.stdout.once("data", (d) => { clearTimeout(timer); resolve(String(d).match(/http:\/\/\S+/)[0]); });
  });
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  return { proc, url, exited };
}

test("a user's tabs are one member with a tab count", { timeout: 60000 }, async () => {
  const context = await newContext({ viewport: { width: 900, height: 600 } });
  const tab1 = await context.newPage();
  await tab1.goto(`${base}/?name=tabby&room=tabs`);
  await tab1.locator("#state", { hasText: "connected" }).waitFor({ timeout: 10000 });
  const tab2 = await context.newPage(); // same browser: same client key, same user
  await tab2.goto(`${base}/?room=tabs`);
  await tab2.locator("#members li", { hasText: "tabby (2 tabs)" }).waitFor({ timeout: 5000 });
  assert.strictEqual(await tab2.locator("#name").inputValue(), "tabby", "the second tab is the same user");
  const other = await person("watcher");
  await other.page.fill("#join-name", "tabs");
  await other.page.keyboard.press("Enter");
  await other.page.locator("#members li", { hasText: "tabby" }).waitFor({ timeout: 5000 });
  assert.strictEqual(await other.page.locator("#members li", { hasText: "tabby" }).count(), 1, "listed once");
  await context.close();
});

test("the server restarts; the page reconnects and shows what it missed", { timeout: 90000 }, async () => {
  const first = startServer("127.0.0.1:0");
  const url = await first.url;
  const listen = url.replace("http://", "");
  const context = await newContext({ viewport: { width: 900, height: 600 } });
  const ann = await context.newPage();
  await ann.goto(`${url}/?name=ann`);
  await ann.locator("#state", { hasText: "connected" }).waitFor({ timeout: 10000 });
  await say(ann, "before the restart");
  await ann.locator(".log li", { hasText: "before the restart" }).waitFor({ timeout: 5000 });

  // Ann's browser goes offline while the server restarts, so something is said without her.
  await context.setOffline(true);
  first.proc.kill("SIGINT");
  await first.exited;
  await ann.locator("#state", { hasText: /reconnecting|offline|connecting/ }).waitFor({ timeout: 10000 });
  const second = startServer(listen);
  try {
    await second.url;
    const bob = await (await newContext()).newPage();
    await bob.goto(`${url}/?name=bob`);
    await bob.locator("#state", { hasText: "connected" }).waitFor({ timeout: 10000 });
    await say(bob, "said while ann was away");
    await bob.locator(".log li", { hasText: "said while ann was away" }).waitFor({ timeout: 5000 });

    await context.setOffline(false);
    await ann.locator("#state", { hasText: /^connected$/ }).waitFor({ timeout: 40000 });
    await ann.locator(".log li", { hasText: "said while ann was away" }).waitFor({ timeout: 5000 });
    await ann.locator(".log li", { hasText: "Some messages were missed" }).waitFor({ timeout: 5000 });
    await ann.screenshot({ path: path.join(root, "target/artifacts/page-after-restart.png") });
  } finally {
    second.proc.kill("SIGINT");
    await second.exited;
  }
});

// An HS256 JWT, as EmbedChat\Token::issue mints it.
function jwt(secret, claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = b64({ alg: "HS256", typ: "JWT" }) + "." + b64(claims);
  return body + "." + crypto.createHmac("sha256", secret).update(body).digest("base64url");
}

const SECRET = "browser-test-secret-0123456789";

test("a login token in the fragment connects, leaves the address bar, and is never in a URL", { timeout: 60000 }, async () => {
  const chat = startServer("127.0.0.1:0", { auth: { secret: SECRET, required: true } });
  try {
    const url = await chat.url;
    const token = jwt(SECRET, { sub: "42", name: "Grace", exp: Math.floor(Date.now() / 1000) + 300 });
    const page = await (await newContext()).newPage();
    const sockets = [];
    page.on("websocket", (ws) => sockets.push(ws.url()));
    const requests = [];
    page.on("request", (r) => requests.push(r.url()));
    await page.goto(`${url}/?room=lobby#token=${token}`);
    // Connected: with auth required, only a token the server received lets it in (else 401).
    await page.locator("#state", { hasText: /^connected$/ }).waitFor({ timeout: 10000 });
    assert.strictEqual(await page.locator("#name").inputValue(), "Grace", "the token named the user");
    const href = await page.evaluate(() => location.href);
    assert.strictEqual(href, `${url}/?room=lobby`, "fragment cleared, path and query kept");
    assert.ok(!href.includes(token));
    assert.ok(sockets.length >= 1, "a WebSocket was opened");
    for (const u of [...sockets, ...requests]) {
      assert.ok(!u.includes(token) && !u.includes("token="), `the token is not in ${u}`);
    }
    await say(page, "signed in");
    await page.locator(".log li", { hasText: "signed in" }).waitFor({ timeout: 5000 });
  } finally {
    chat.proc.kill("SIGINT");
    await chat.exited;
  }
});

// A page of another origin (the site, like examples/php/site/login.php) that frames the chat.
async function embedder() {
  let chatUrl = "";
  const srv = http.createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><title>site</title><iframe title="chat" src="${chatUrl}"></iframe>`);
  });
  await new Promise((resolve) => srv.listen(0, "127.0.0.1", resolve));
  return { srv, origin: `http://127.0.0.1:${srv.address().port}`, frame: (u) => { chatUrl = u; } };
}

test("the page is framed by another origin only when page_frame_ancestors lists it", { timeout: 60000 }, async () => {
  const site = await embedder();
  const chat = startServer("127.0.0.1:0", { auth: { secret: SECRET, required: true }, page_frame_ancestors: ["'self'", site.origin] });
  try {
    const url = await chat.url;
    const token = jwt(SECRET, { sub: "7", name: "Linus", exp: Math.floor(Date.now() / 1000) + 300 });
    site.frame(`${url}/#token=${token}`);
    const page = await (await newContext()).newPage();
    await page.goto(`${site.origin}/`);
    const frame = page.frameLocator("iframe");
    await frame.locator("#state", { hasText: /^connected$/ }).waitFor({ timeout: 10000 });
    assert.strictEqual(await frame.locator("#name").inputValue(), "Linus");

    // The default ('self'): the same embedding is refused by the browser. This context's
    // violation is the expected one, so it is not collected.
    site.frame(`${base}/`);
    const refused = await (await browser.newContext()).newPage();
    const blocked = [];
    refused.on("console", (m) => blocked.push(m.text()));
    await refused.goto(`${site.origin}/`);
    await refused.waitForTimeout(1000);
    assert.ok(blocked.some((t) => t.includes("frame-ancestors")), `framing refused: ${blocked}`);
    assert.strictEqual(await refused.frameLocator("iframe").locator("#state").count(), 0, "no chat in the frame");
  } finally {
    chat.proc.kill("SIGINT");
    await chat.exited;
    site.srv.close();
  }
});

test("a big room shows its count and finds members on demand", { timeout: 60000 }, async () => {
  const people = [];
  for (const name of ["stagehand", "singer", "sound"]) {
    const p = await person(name);
    await p.page.fill("#join-name", "stage");
    await p.page.keyboard.press("Enter");
    await p.page.locator("#room-list button[aria-current=true]", { hasText: "stage" }).waitFor({ timeout: 5000 });
    people.push(p);
  }
  // The third arrived in a crowd: a count, not a list; the first learns the count in a batch.
  const late = people[2].page;
  await late.locator("#room-title", { hasText: "3 in stage" }).waitFor({ timeout: 5000 });
  await people[0].page.locator("#room-title", { hasText: "3 in stage" }).waitFor({ timeout: 5000 });
  assert.ok(await late.locator("#member-search").isVisible(), "a search box instead of the whole list");
  await late.fill("#member-search", "si");
  await late.locator("#members li", { hasText: "singer" }).waitFor({ timeout: 5000 });
  await late.waitForFunction(() => document.querySelectorAll("#members li").length === 1, null, { timeout: 5000 });
  assert.strictEqual(await late.locator("#members li").count(), 1, "only the names that start so");
});
