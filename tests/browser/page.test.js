// The bundled page in a real browser (Debian's Chromium driven by playwright-core): two people
// join, see each other, chat, whisper; markup in a message stays text and runs nothing.
//   npm ci --prefix tests/browser && node --test tests/browser/
// Needs target/debug/examples/chat_server (cargo test builds it) or EMBEDCHAT_SERVER.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert");
const { spawn } = require("node:child_process");
const path = require("node:path");
const fs = require("node:fs");
const { chromium } = require("playwright-core");

const root = path.resolve(__dirname, "../..");
const serverBin = process.env.EMBEDCHAT_SERVER || path.join(root, "target/debug/examples/chat_server");
let server, base, browser;

before(async () => {
  server = spawn(serverBin, ["--listen", "127.0.0.1:0", "--quiet"], { stdio: ["ignore", "pipe", "inherit"] });
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

async function person(name) {
  const context = await browser.newContext({ viewport: { width: 900, height: 600 } });
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
  await ann.page.locator("#members li", { hasText: "bob" }).waitFor({ timeout: 5000 });
  await bob.page.locator("#members li", { hasText: "ann" }).waitFor({ timeout: 5000 });

  await say(bob.page, "hello ann");
  await ann.page.locator("#log li", { hasText: "hello ann" }).waitFor({ timeout: 5000 });

  await say(bob.page, "/w ann just between us");
  await ann.page.locator("#log li.whisper", { hasText: "just between us" }).waitFor({ timeout: 5000 });

  const evil = "<img src=x onerror=alert(1)>";
  await say(ann.page, evil);
  const line = bob.page.locator("#log li", { hasText: evil });
  await line.waitFor({ timeout: 5000 });
  assert.strictEqual(await bob.page.locator("#log img").count(), 0, "no element was created from the text");
  await bob.page.waitForTimeout(300);
  assert.deepStrictEqual(bob.dialogs, [], "no script ran");
  assert.deepStrictEqual(ann.dialogs, []);

  fs.mkdirSync(path.join(root, "target/artifacts"), { recursive: true });
  await bob.page.screenshot({ path: path.join(root, "target/artifacts/page.png") });

  // A phone-width screen still shows the conversation and the input.
  await bob.page.setViewportSize({ width: 380, height: 700 });
  assert.ok(await bob.page.locator("#text").isVisible());
  assert.ok(await bob.page.locator("#log li", { hasText: "hello ann" }).isVisible());
});

test("the tutorial's page works unchanged against seed mode", { timeout: 60000 }, async () => {
  const seed = spawn(serverBin, ["--listen", "127.0.0.1:0", "--quiet", "--config", path.join(root, "examples/seed/config.json")],
    { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const port = await new Promise((resolve) => seed.stdout.once("data", (d) => resolve(String(d).match(/:(\d+)\s*$/m)[1])));
    const url = "file://" + path.join(root, "examples/seed/index.html") + "?port=" + port;
    const pages = [];
    for (let i = 0; i < 2; i++) {
      const page = await (await browser.newContext()).newPage();
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
