// The bundled page over https:// and its chat over wss://, served by the engine itself (config
// `tls`) with a certificate made for the test by Debian's `openssl`; Chromium ignores that it
// is self-signed (--ignore-certificate-errors), everything else is as in production: the page's
// CSP (`connect-src 'self'` admits wss:// to its own host), the WebSocket URL the page builds
// from `location.protocol`, and two people chatting.
//   npm ci --prefix tests/browser && node --test tests/browser/
// Needs target/debug/examples/chat_server (cargo test builds it) or EMBEDCHAT_SERVER.
"use strict";
const { test, before, after } = require("node:test");
const assert = require("node:assert");
const { spawn, execFileSync } = require("node:child_process");
const path = require("node:path");
const fs = require("node:fs");
const os = require("node:os");
const { chromium } = require("playwright-core");

const root = path.resolve(__dirname, "../..");
const serverBin = process.env.EMBEDCHAT_SERVER || path.join(root, "target/debug/examples/chat_server");
let server, base, browser, dir;

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "embedchat-browser-tls-"));
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem"), "-days", "1",
    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { stdio: "ignore" });
  const cfg = path.join(dir, "config.json");
  fs.writeFileSync(cfg, JSON.stringify({
    max_messages_per_second: 0,
    tls: { cert: path.join(dir, "cert.pem"), key: path.join(dir, "key.pem") },
  }));
  server = spawn(serverBin, ["--listen", "127.0.0.1:0", "--quiet", "--config", cfg], { stdio: ["ignore", "pipe", "inherit"] });
  base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start")), 10000);
    server.stdout.once("data", (d) => {
      clearTimeout(timer);
      resolve(String(d).match(/https:\/\/\S+/)[0]);
    });
  });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--ignore-certificate-errors"],
    timeout: 30000,
  });
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.kill("SIGINT");
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function person(name, violations) {
  const context = await browser.newContext({ viewport: { width: 900, height: 600 } });
  context.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  const page = await context.newPage();
  const sockets = [];
  page.on("websocket", (ws) => sockets.push(ws.url()));
  await page.goto(`${base}/?name=${name}`);
  await page.locator("#state", { hasText: "connected" }).waitFor({ timeout: 10000 });
  return { page, sockets };
}

test("the page over https chats over wss", { timeout: 60000 }, async () => {
  assert.match(base, /^https:\/\/127\.0\.0\.1:\d+$/);
  const violations = [];
  const ann = await person("ann", violations);
  const bob = await person("bob", violations);
  assert.ok(ann.sockets.length > 0 && ann.sockets.every((u) => u.startsWith("wss://")), ann.sockets.join(" "));
  await ann.page.locator("#members li", { hasText: "bob" }).waitFor({ timeout: 5000 });

  await ann.page.fill("#text", "hello over wss");
  await ann.page.keyboard.press("Enter");
  await bob.page.locator(".log li", { hasText: "hello over wss" }).waitFor({ timeout: 5000 });
  await bob.page.fill("#text", "/w ann a secret, encrypted");
  await bob.page.keyboard.press("Enter");
  await ann.page.locator(".log li.whisper", { hasText: "a secret, encrypted" }).waitFor({ timeout: 5000 });
  assert.deepStrictEqual(violations, [], "no Content Security Policy violations");
});
