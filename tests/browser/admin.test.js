// The operator's page (/admin) in Chromium: off without an API key; asks for the key once and
// keeps it for the tab; shows connections, rooms, a live chart and the limits' counters (from
// /metrics behind the key); publishes to a room and kicks a user; no CSP violation.
//   npm ci --prefix tests/browser && node --test tests/browser/
"use strict";
const { test, before, after, afterEach } = require("node:test");
const assert = require("node:assert");
const { startServer, launchBrowser, newContext, violations } = require("./harness");

const KEY = "admin-test-key-0123456789";
let browser;

before(async () => { browser = await launchBrowser(); });
after(async () => { if (browser) await browser.close(); });
afterEach(() => {
  assert.deepStrictEqual(violations.splice(0), [], "no Content Security Policy violations");
});

test("without an api_key there is no admin page", { timeout: 30000 }, async () => {
  const chat = startServer({});
  try {
    const page = await (await newContext(browser)).newPage();
    const r = await page.goto(`${await chat.url}/admin`);
    assert.strictEqual(r.status(), 404);
    assert.match(await page.textContent("body"), /set `api_key`/);
  } finally {
    await chat.stop();
  }
});

test("the admin page shows the engine live, publishes to a room and kicks a user", { timeout: 90000 }, async () => {
  const chat = startServer({ api_key: KEY, metrics_auth: true, max_messages_per_second: 0 });
  try {
    const url = await chat.url;
    // Two chatters in the lobby.
    const chatters = [];
    for (const name of ["ann", "bob"]) {
      const page = await (await newContext(browser)).newPage();
      await page.goto(`${url}/?name=${name}`);
      await page.locator("#state", { hasText: /^connected$/ }).waitFor({ timeout: 10000 });
      chatters.push(page);
    }
    const [ann, bob] = chatters;

    const context = await newContext(browser, { viewport: { width: 1100, height: 900 } });
    const admin = await context.newPage();
    const response = await admin.goto(`${url}/admin`);
    assert.match(response.headers()["content-security-policy"], /frame-ancestors 'none'/);
    assert.strictEqual(response.headers()["cache-control"], "no-store");

    // A wrong key is refused (and counted: a limit counter the page then shows).
    await admin.fill("#key", "not-the-key-at-all");
    await admin.keyboard.press("Enter");
    await admin.locator("#login-error", { hasText: "refused" }).waitFor({ timeout: 10000 });
    await admin.fill("#key", KEY);
    await admin.keyboard.press("Enter");
    await admin.locator("#connections", { hasText: /^2$/ }).waitFor({ timeout: 10000 });
    await admin.locator("#rooms tr", { hasText: "lobby" }).waitFor({ timeout: 5000 });
    const failures = admin.locator("#limits tr[data-counter=api_auth_failures]");
    await failures.locator("td.num").filter({ hasText: /^[1-9]/ }).waitFor({ timeout: 5000 });
    assert.strictEqual(await failures.getAttribute("class"), "nonzero", "a counter that moved stands out");

    // Traffic shows in the rates and the chart.
    for (let i = 0; i < 5; i++) {
      await ann.fill("#text", `busy ${i}`);
      await ann.keyboard.press("Enter");
    }
    await admin.locator("#rooms tr", { hasText: "lobby" }).locator("td").nth(3).filter({ hasText: /^[1-9]\d*$/ }).waitFor({ timeout: 10000 });
    const inked = await admin.evaluate(() => {
      const c = document.getElementById("chart");
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
      return n;
    });
    assert.ok(inked > 1000, `the chart is drawn (${inked} pixels)`);

    // The key is kept for the tab: a reload does not ask again.
    await admin.reload();
    await admin.locator("#connections", { hasText: /^2$/ }).waitFor({ timeout: 10000 });
    assert.ok(await admin.locator("#login").isHidden());

    // Publish to a room.
    await admin.fill("#pub-room", "lobby");
    await admin.fill("#pub-from", "Operator");
    await admin.fill("#pub-text", "maintenance at noon");
    await admin.click("#publish button");
    await admin.locator("#result", { hasText: "reached 2 connections" }).waitFor({ timeout: 5000 });
    await bob.locator(".log li", { hasText: "maintenance at noon" }).filter({ hasText: "Operator" }).waitFor({ timeout: 5000 });

    // Kick bob.
    await admin.locator("#rooms tr", { hasText: "lobby" }).getByRole("button", { name: "Members" }).click();
    await admin.locator("#members tr", { hasText: "bob" }).waitFor({ timeout: 5000 });
    await admin.getByRole("button", { name: "Kick bob" }).click();
    await admin.locator("#result", { hasText: "Kicked bob" }).waitFor({ timeout: 5000 });
    await bob.locator("#state", { hasText: "kicked" }).waitFor({ timeout: 5000 });
    await bob.locator("#alert", { hasText: "removed by an operator" }).waitFor({ timeout: 5000 });
    await admin.locator("#connections", { hasText: /^1$/ }).waitFor({ timeout: 10000 });

    // A new tab asks for the key again; so does this one once it forgets it.
    const other = await context.newPage();
    await other.goto(`${url}/admin`);
    await other.locator("#key").waitFor({ state: "visible", timeout: 5000 });
    await admin.click("#forget");
    await admin.locator("#key").waitFor({ state: "visible", timeout: 5000 });
  } finally {
    await chat.stop();
  }
});
