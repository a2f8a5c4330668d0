// The Node `ws` peer for examples/bench.rs: the same chat behaviour as embedchat's fan-out path
// (welcome on connect; each client message broadcast as the same JSON to every client), written
// the way ws's README recommends (serialize once, client.send for each open client).
// BENCH_DEFLATE=1 (bench --deflate 1) turns on ws's permessage-deflate with its defaults (each
// send compressed for its connection, messages under 1 KiB sent plain).
//   node bench/ws_server.js            prints "listening on http://127.0.0.1:PORT"
"use strict";
const { WebSocketServer, WebSocket } = require("ws");

const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(process.env.PORT || 0), perMessageDeflate: process.env.BENCH_DEFLATE === "1", maxPayload: 64 * 1024 });
let nextId = 1;
let seq = 0;
wss.on("listening", () => console.log(`listening on http://127.0.0.1:${wss.address().port}`));
wss.on("connection", (ws, req) => {
  const id = nextId++;
  const name = new URL(req.url, "http://x").searchParams.get("name") || `guest-${id}`;
  ws.send(JSON.stringify({ type: "welcome", id, name, room: "lobby", members: [] }));
  ws.on("message", (data) => {
    const out = Buffer.from(JSON.stringify({ type: "message", room: "lobby", id: ++seq, ts: Date.now(), from: { id, name }, text: data.toString() }));
    for (const c of wss.clients) if (c.readyState === WebSocket.OPEN) c.send(out, { binary: false });
  });
});
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
