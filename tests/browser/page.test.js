// The bundled page in a real browser (Debian's Chromium driven by playwright-core): two people
// join, see each other, chat, whisper; markup in a message stays text and runs nothing; refused
// actions are shown where the user looks; the name is asked before connecting; a phone gets
// drawers; all of it under the page's Content-Security-Policy, with no violation; a login token
// reaches the server without ever being in a URL; the page is framed only where the config allows.
//   npm ci --prefix tests/browser && node --test tests/browser/
// Needs target/debug/examples/chat_server (cargo build --examples) or EMBEDCHAT_SERVER.
// EMBEDCHAT_SCREENSHOTS=1 also writes the README's screenshots to docs/ (scripts/screenshots).
"use strict";
const { test, before, after, afterEach } = require("node:test");
const assert = require("node:assert");
const path = require("node:path");
const fs = require("node:fs");
const http = require("node:http");
const { root, startServer, launchBrowser, newContext: contextOf, violations, jwt } = require("./harness");

let server, base, browser;
const newContext = (options) => contextOf(browser, options);

before(async () => {
  // "stage" is a big room from its third member on (presence_limit), to test how it is shown.
  server = startServer({ max_messages_per_second: 0, presence_interval_ms: 100, rooms: { stage: { presence_limit: 2 } } });
  base = await server.url;
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

afterEach(() => {
  assert.deepStrictEqual(violations.splice(0), [], "no Content Security Policy violations");
});

// Someone with a browser of their own (its own client key), in the lobby or `query`'s room.
async function person(name, { query = "", url = base, viewport = { width: 900, height: 600 } } = {}) {
  const context = await newContext({ viewport });
  const page = await context.newPage();
  const dialogs = [];
  page.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss(); });
  await page.goto(`${url}/?name=${name}${query}`);
  await page.locator("#state", { hasText: /^connected$/ }).waitFor({ timeout: 10000 });
  return { page, dialogs, context };
}

async function say(page, text) {
  await page.fill("#text", text);
  await page.keyboard.press("Enter"); // keyboard only
}

async function join(page, room) {
  await page.fill("#join-name", room);
  await page.keyboard.press("Enter");
  await page.locator("#room-list button[aria-current=true]", { hasText: new RegExp(`^${room}$`) }).waitFor({ timeout: 5000 });
}

// The lines of the room on screen.
const shown = (page) => page.locator(".log:not([hidden]) li");

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
});

test("a refused join is shown where the user looks, and the view stays in its room", { timeout: 60000 }, async () => {
  const p = await person("roamer");
  // The lobby and 15 more: the 16 rooms one connection may be in.
  for (let i = 1; i <= 15; i++) await join(p.page, `r${i}`);
  await p.page.fill("#join-name", "r16");
  await p.page.keyboard.press("Enter");
  await p.page.locator("#alert", { hasText: "at most 16 rooms per connection" }).waitFor({ timeout: 5000 });
  await p.page.locator(".log:not([hidden]) li.error", { hasText: "at most 16 rooms per connection" }).waitFor({ timeout: 5000 });
  assert.strictEqual(await p.page.locator("#room-list button[aria-current=true]").textContent(), "r15", "still in r15");
  assert.strictEqual(await p.page.locator("#room-list button", { hasText: "r16" }).count(), 0, "r16 was never joined");
  // The next message goes to the room on screen, and arrives.
  await say(p.page, "still here");
  await shown(p.page).filter({ hasText: "still here" }).waitFor({ timeout: 5000 });
  assert.ok(await p.page.locator("#alert").isHidden(), "a successful send clears the error");
});

test("typing after leaving the last room says to join a room first", { timeout: 60000 }, async () => {
  const p = await person("leaver");
  await p.page.click("#leave");
  await p.page.locator("#empty").waitFor({ state: "visible", timeout: 5000 });
  await say(p.page, "anyone?");
  await p.page.locator("#alert", { hasText: "join a room first" }).waitFor({ timeout: 5000 });
});

test("the tutorial's page works unchanged against seed mode", { timeout: 60000 }, async () => {
  const seed = startServer(path.join(root, "examples/seed/config.json"));
  try {
    const port = (await seed.url).match(/:(\d+)$/)[1];
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
    await seed.stop();
  }
});

test("the bundled page shows the messages of a seed-mode server", { timeout: 60000 }, async () => {
  const seed = startServer(path.join(root, "examples/seed/config.json"));
  try {
    const url = await seed.url;
    const ann = await person("ann", { url });
    const bob = await person("bob", { url });
    await say(ann.page, "plain seed words");
    await shown(bob.page).filter({ hasText: "plain seed words" }).waitFor({ timeout: 5000 });
    await shown(ann.page).filter({ hasText: "plain seed words" }).waitFor({ timeout: 5000 });
    assert.ok(await shown(bob.page).filter({ hasText: "ann" }).first().isVisible(), "with the sender's name");
  } finally {
    await seed.stop();
  }
});

test("the page asks for a name before connecting, and renames the live connection", { timeout: 60000 }, async () => {
  const watcher = await person("watcher");
  const context = await newContext({ viewport: { width: 900, height: 600 } });
  const page = await context.newPage();
  const sockets = [];
  page.on("websocket", (ws) => sockets.push(ws.url()));
  await page.goto(`${base}/`);
  await page.locator("#start-name").waitFor({ state: "visible", timeout: 5000 });
  await page.waitForTimeout(300);
  assert.strictEqual(sockets.length, 0, "no connection (and no guest) before a name");
  await page.fill("#start-name", "zoe");
  await page.keyboard.press("Enter"); // Enter submits
  await page.locator("#state", { hasText: /^connected$/ }).waitFor({ timeout: 10000 });
  assert.strictEqual(await page.locator("#name").inputValue(), "zoe");
  await watcher.page.locator(".log li", { hasText: "zoe joined" }).waitFor({ timeout: 5000 });

  // /nick renames this connection; the name field follows.
  await say(page, "/nick zoey");
  await watcher.page.locator(".log li", { hasText: "zoe is now zoey" }).waitFor({ timeout: 5000 });
  await page.waitForFunction(() => document.getElementById("name").value === "zoey", null, { timeout: 5000 });
  // So does Enter in the name field, without reconnecting.
  await page.fill("#name", "zoe-b");
  await page.press("#name", "Enter");
  await watcher.page.locator(".log li", { hasText: "zoey is now zoe-b" }).waitFor({ timeout: 5000 });
  assert.strictEqual(await watcher.page.locator(".log li", { hasText: / left$/ }).count(), 0, "nobody left and came back");
  assert.strictEqual(await watcher.page.locator(".log li", { hasText: "guest-" }).count(), 0, "no guest came and went");
  assert.strictEqual(sockets.length, 1, "one connection all along");

  // A second tab of this browser is the same user, and the page says so.
  const tab2 = await context.newPage();
  await tab2.goto(`${base}/`);
  await tab2.locator(".log li", { hasText: "This browser is already in the chat as zoe-b" }).waitFor({ timeout: 10000 });
});

test("on a phone the header is one line and rooms and members are drawers", { timeout: 60000 }, async () => {
  await person("deskann", { query: "&room=pocket" });
  const phone = await person("phonebob", { query: "&room=pocket", viewport: { width: 390, height: 760 } });
  const page = phone.page;
  const inView = async (sel) => {
    const b = await page.locator(sel).boundingBox();
    return b !== null && b.x >= 0 && b.x + b.width <= 390;
  };
  assert.ok((await page.locator("header").boundingBox()).height <= 56, "the header fits one line");
  assert.ok((await page.locator(".log:not([hidden])").boundingBox()).width >= 370, "the conversation is full width");
  assert.strictEqual(await page.locator("#text").getAttribute("placeholder"), "Message", "a placeholder that fits");
  assert.ok(await inView("form#send button"), "the send button is on screen");
  assert.ok(!(await inView("#people")), "the members are out of the way");

  await page.click("#people-toggle");
  await page.waitForTimeout(300); // the drawer slides in
  assert.ok(await inView("#people"));
  assert.ok(await page.locator("#members li", { hasText: "deskann" }).isVisible(), "the member list is reachable");
  await page.click("#scrim", { position: { x: 20, y: 300 } });
  await page.waitForTimeout(300);
  assert.ok(!(await inView("#people")), "tapping beside it closes it");

  await page.click("#rooms-toggle");
  await page.waitForTimeout(300);
  assert.ok(await inView("#rooms"));
  await page.fill("#join-name", "pocket2");
  await page.keyboard.press("Enter");
  await page.locator("#where", { hasText: "pocket2" }).waitFor({ timeout: 5000 });
  await page.waitForTimeout(300);
  assert.ok(!(await inView("#rooms")), "joining closes the drawer on the new room");
});

test("own messages are marked, bot commands stay private, the welcome follows the history", { timeout: 60000 }, async () => {
  const ann = await person("polly", { query: "&room=polish" });
  await say(ann.page, "first words");
  await shown(ann.page).filter({ hasText: "first words" }).waitFor({ timeout: 5000 });
  const bob = await person("bobby", { query: "&room=polish" });
  const lines = shown(bob.page);
  await lines.filter({ hasText: "You are bobby in polish" }).waitFor({ timeout: 5000 });
  const texts = await lines.allTextContents();
  assert.ok(texts.findIndex((t) => t.includes("first words")) < texts.findIndex((t) => t.includes("You are bobby")),
    `the welcome comes after the history: ${texts}`);
  await bob.page.locator("#members li", { hasText: "bobby" }).filter({ hasText: "(you)" }).waitFor({ timeout: 5000 });

  await say(bob.page, "my own words");
  await bob.page.locator(".log li.mine", { hasText: "my own words" }).filter({ hasText: "(you)" }).waitFor({ timeout: 5000 });
  await shown(ann.page).filter({ hasText: "my own words" }).waitFor({ timeout: 5000 });
  assert.strictEqual(await ann.page.locator(".log li.mine", { hasText: "my own words" }).count(), 0, "not ann's");

  await say(bob.page, "/time");
  await bob.page.locator(".log li.whisper", { hasText: "server time" }).waitFor({ timeout: 5000 });
  await ann.page.waitForTimeout(500);
  assert.strictEqual(await ann.page.locator(".log li", { hasText: "/time" }).count(), 0, "not echoed to the room");
  assert.strictEqual(await bob.page.locator(".log li", { hasText: "/time" }).count(), 0, "nor to the asker");
  assert.ok(await bob.page.locator("#alert").isHidden(), "and not an error");
  assert.strictEqual(await bob.page.locator("li.error").count(), 0);

  const icon = await bob.page.request.get(`${base}/favicon.svg`);
  assert.strictEqual(icon.status(), 200);
  assert.match(icon.headers()["content-type"], /^image\/svg\+xml/);
  assert.strictEqual(await bob.page.locator("link[rel=icon]").getAttribute("href"), "/favicon.svg");
});

test("rooms: join, unread counts, switching", { timeout: 60000 }, async () => {
  const cy = await person("cy");
  const dee = await person("dee");
  // cy joins "dev" from the page and looks at it.
  await join(cy.page, "dev");
  // dee talks in the lobby: cy sees an unread count there, not the message.
  await say(dee.page, "lobby news 1");
  await say(dee.page, "lobby news 2");
  const badge = cy.page.locator("#room-list button", { hasText: "lobby" }).locator(".unread");
  await badge.filter({ hasText: "2" }).waitFor({ timeout: 5000 });
  assert.strictEqual(await shown(cy.page).filter({ hasText: "lobby news" }).count(), 0);
  // Switching shows them and clears the count.
  await cy.page.locator("#room-list button", { hasText: "lobby" }).click();
  await shown(cy.page).filter({ hasText: "lobby news 2" }).waitFor({ timeout: 5000 });
  assert.strictEqual(await badge.count(), 0);
  // A message typed now goes to the room shown.
  await say(cy.page, "back in the lobby");
  await shown(dee.page).filter({ hasText: "back in the lobby" }).waitFor({ timeout: 5000 });
});

test("scrolling up pages older history in", { timeout: 60000 }, async () => {
  const writer = await person("writer");
  await join(writer.page, "archive");
  for (let i = 1; i <= 80; i++) await say(writer.page, `old ${i}`);
  await shown(writer.page).filter({ hasText: "old 80" }).waitFor({ timeout: 10000 });

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

test("a user's tabs are one member with a tab count", { timeout: 60000 }, async () => {
  const context = await newContext({ viewport: { width: 900, height: 600 } });
  const tab1 = await context.newPage();
  await tab1.goto(`${base}/?name=tabby&room=tabs`);
  await tab1.locator("#state", { hasText: "connected" }).waitFor({ timeout: 10000 });
  const tab2 = await context.newPage(); // same browser: same client key, same user
  await tab2.goto(`${base}/?room=tabs`);
  await tab2.locator("#members li", { hasText: "tabby (2 tabs)" }).waitFor({ timeout: 5000 });
  assert.strictEqual(await tab2.locator("#name").inputValue(), "tabby", "the second tab is the same user");
  await tab2.locator(".log li", { hasText: "This browser is already in the chat as tabby" }).waitFor({ timeout: 5000 });
  const other = await person("watcher-of-tabs");
  await join(other.page, "tabs");
  await other.page.locator("#members li", { hasText: "tabby" }).waitFor({ timeout: 5000 });
  assert.strictEqual(await other.page.locator("#members li", { hasText: "tabby" }).count(), 1, "listed once");
  await context.close();
});

test("the server restarts; the page reconnects and says the history was reset", { timeout: 90000 }, async () => {
  const first = startServer();
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
  await first.stop();
  await ann.locator("#state", { hasText: /reconnecting|offline|connecting|unreachable/ }).waitFor({ timeout: 10000 });
  const second = startServer(null, { listen });
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
    // A server without storage starts its history afresh: said once, not as missed messages.
    await ann.locator(".log li", { hasText: "The server restarted and its history was reset" }).waitFor({ timeout: 5000 });
    assert.strictEqual(await ann.locator(".log li", { hasText: /missed/ }).count(), 0);
    assert.ok(await ann.locator(".log li", { hasText: "before the restart" }).isVisible(), "what was shown stays");
    await ann.screenshot({ path: path.join(root, "target/artifacts/page-after-restart.png") });
  } finally {
    await second.stop();
  }
});

const SECRET = "browser-test-secret-0123456789";

test("a login token in the fragment connects, leaves the address bar, and is never in a URL", { timeout: 60000 }, async () => {
  const chat = startServer({ auth: { secret: SECRET, required: true } });
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
    // Logged in: the site named this user; no name field, no start form, no connect button.
    assert.ok(await page.locator("#me").isHidden());
    assert.ok(await page.locator("#start").isHidden());
    assert.strictEqual(await page.locator("#me-fixed").textContent(), "Grace ✓");
    assert.ok(await page.locator("#reconnect").isHidden());
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
    await chat.stop();
  }
});

test("a refused connection is explained with the server's own words", { timeout: 60000 }, async () => {
  // A site hands out login tokens, but this server was started without `auth`.
  const chat = startServer({});
  try {
    const url = await chat.url;
    const token = jwt(SECRET, { sub: "42", name: "Grace", exp: Math.floor(Date.now() / 1000) + 300 });
    const page = await (await newContext()).newPage();
    await page.goto(`${url}/#token=${token}`);
    await page.locator("#alert", { hasText: "this server does not accept login tokens" }).waitFor({ timeout: 10000 });
    assert.strictEqual(await page.locator("#state").textContent(), "refused", "not retried: it would fail the same way");
    assert.strictEqual(await page.locator("#alert", { hasText: "expired" }).count(), 0, "no blame on an expired login");

    // An expired login says so, and what to do.
    const old = jwt(SECRET, { sub: "42", name: "Grace", exp: Math.floor(Date.now() / 1000) - 600 });
    const auth = startServer({ auth: { secret: SECRET, required: true } });
    try {
      const page2 = await (await newContext()).newPage();
      await page2.goto(`${await auth.url}/#token=${old}`);
      await page2.locator("#alert", { hasText: "token expired" }).filter({ hasText: "Reload the page" }).waitFor({ timeout: 10000 });
    } finally {
      await auth.stop();
    }
  } finally {
    await chat.stop();
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
  const chat = startServer({ auth: { secret: SECRET, required: true }, page_frame_ancestors: ["'self'", site.origin] });
  try {
    const url = await chat.url;
    const token = jwt(SECRET, { sub: "7", name: "Linus", exp: Math.floor(Date.now() / 1000) + 300 });
    site.frame(`${url}/#token=${token}`);
    const page = await (await newContext()).newPage();
    await page.goto(`${site.origin}/`);
    const frame = page.frameLocator("iframe");
    await frame.locator("#state", { hasText: /^connected$/ }).waitFor({ timeout: 10000 });
    assert.strictEqual(await frame.locator("#name").inputValue(), "Linus");
    assert.ok(await frame.locator("#me").isHidden(), "embedded: the site names the user");

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
    await chat.stop();
    site.srv.close();
  }
});

test("a big room shows its count and finds members on demand", { timeout: 60000 }, async () => {
  const people = [];
  for (const name of ["stagehand", "singer", "sound"]) {
    const p = await person(name);
    await join(p.page, "stage");
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

// The README's pictures: desktop and phone, light and dark, of one small conversation on a
// fresh server. Only with EMBEDCHAT_SCREENSHOTS set (scripts/screenshots), since they are
// committed and should change only when the page does.
test("screenshots for the README", { timeout: 90000, skip: !process.env.EMBEDCHAT_SCREENSHOTS }, async () => {
  const chat = startServer({ max_messages_per_second: 0 });
  try {
    const url = await chat.url;
    const bob = await person("Bob", { url });
    const cy = await person("Cy", { url });
    const ann = await person("Ann", { url });
    await join(cy.page, "design");
    await say(cy.page, "Mockups are up, have a look when you can");
    await cy.page.locator("#room-list button", { hasText: "lobby" }).click();
    await say(bob.page, "Morning! Did the deploy go out?");
    await say(ann.page, "It did, about ten minutes ago. Dashboards look calm.");
    await say(bob.page, "Nice. I'll tell support they can close the ticket about the slow login page.");
    await say(cy.page, "/w Ann lunch at noon?");
    await say(ann.page, "/time");
    await ann.page.locator(".log li.whisper", { hasText: "server time" }).waitFor({ timeout: 5000 });
    await join(ann.page, "design");
    await ann.page.locator("#room-list button", { hasText: "lobby" }).click();
    await say(cy.page, "Thanks both, see you at the review");
    await shown(ann.page).filter({ hasText: "Thanks both" }).waitFor({ timeout: 5000 });
    const dir = path.join(root, "docs/screenshots");
    fs.mkdirSync(dir, { recursive: true });
    for (const [form, viewport] of [["desktop", { width: 960, height: 560 }], ["phone", { width: 390, height: 700 }]]) {
      for (const scheme of ["light", "dark"]) {
        await ann.page.setViewportSize(viewport);
        await ann.page.emulateMedia({ colorScheme: scheme });
        await ann.page.locator("#text").blur();
        await ann.page.waitForTimeout(300);
        await ann.page.screenshot({ path: path.join(dir, `${form}-${scheme}.png`) });
      }
    }
  } finally {
    await chat.stop();
  }
});
