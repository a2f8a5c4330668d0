// What the browser tests share: starting chat servers (the chat_server example), Debian's
// Chromium, and the rule that no page ever reports a Content-Security-Policy violation.
"use strict";
const { spawn } = require("node:child_process");
const path = require("node:path");
const fs = require("node:fs");
const os = require("node:os");
const crypto = require("node:crypto");
const { chromium } = require("playwright-core");

const root = path.resolve(__dirname, "../..");
const serverBin = process.env.EMBEDCHAT_SERVER || path.join(root, "target/debug/examples/chat_server");

// Starts a chat server on a free port (or `listen`) with `config` (an object, or a file path);
// resolves `url` once it listens. `output` collects what it prints (its events, unless quiet).
function startServer(config, { listen = "127.0.0.1:0", quiet = true } = {}) {
  const args = ["--listen", listen];
  if (quiet) args.push("--quiet");
  if (typeof config === "string") args.push("--config", config);
  else if (config) {
    const file = path.join(os.tmpdir(), `embedchat-browser-${process.pid}-${crypto.randomUUID()}.json`);
    fs.writeFileSync(file, JSON.stringify(config));
    args.push("--config", file);
  }
  const proc = spawn(serverBin, args, { stdio: ["ignore", "pipe", "inherit"] });
  const output = [];
  const url = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start")), 10000);
    proc.stdout.on("data", (d) => {
      output.push(String(d));
      const m = String(d).match(/http:\/\/\S+/);
      if (m) { clearTimeout(timer); resolve(m[0]); }
    });
  });
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  const stop = async () => { proc.kill("SIGINT"); await exited; };
  return { proc, url, exited, stop, output };
}

function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
    timeout: 30000,
  });
}

// Every CSP violation any page reports (Chromium logs each as a console error naming the
// Content Security Policy): the pages must work under their policies without one.
const violations = [];
async function newContext(browser, options) {
  const context = await browser.newContext(options);
  context.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  return context;
}

// An HS256 JWT, as EmbedChat\Token::issue mints it.
function jwt(secret, claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = b64({ alg: "HS256", typ: "JWT" }) + "." + b64(claims);
  return body + "." + crypto.createHmac("sha256", secret).update(body).digest("base64url");
}

module.exports = { root, serverBin, startServer, launchBrowser, newContext, violations, jwt };
