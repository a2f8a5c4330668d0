// The uWebSockets peer for examples/bench.rs (npm `uwebsockets` 3.0.6, a repack of uWebSockets.js
// with its prebuilt binaries): the same chat behaviour as bench/ws_server.js (welcome on connect;
// each client message broadcast as the same JSON to every client of the sender's room), written
// the way uWS is meant to be used: one pub/sub topic per room (the `room` query parameter), each
// connection subscribed to its room's topic, a message serialized once and handed to
// app.publish, which writes it to every subscriber (the sender too, as embedchat does).
//   node bench/uws_server.js           prints "listening on http://127.0.0.1:PORT"
"use strict";
const uWS = require("uwebsockets");

let nextId = 1;
let seq = 0;
const app = uWS.App();
app.ws("/*", {
  // Same cap on a client message as ws_server.js and embedchat's default max_message_bytes.
  maxPayloadLength: 64 * 1024,
  // BENCH_DEFLATE=1 (bench --deflate 1): permessage-deflate with the one compressor shared by
  // every connection, which is what uWS recommends for pub/sub (a published message is
  // compressed once). Otherwise no compression.
  compression: process.env.BENCH_DEFLATE === "1" ? uWS.SHARED_COMPRESSOR : uWS.DISABLED,
  // Everything else is uWS's default: maxBackpressure 64 KiB, idleTimeout 120 s with automatic pings (the bench's clients answer
  // them, as browsers do).
  upgrade: (res, req, context) => {
    // The request is only valid inside this call: copy what the connection keeps.
    const id = nextId++;
    const user = {
      id,
      name: req.getQuery("name") || `guest-${id}`,
      room: req.getQuery("room") || "lobby",
    };
    res.upgrade(
      user,
      req.getHeader("sec-websocket-key"),
      req.getHeader("sec-websocket-protocol"),
      req.getHeader("sec-websocket-extensions"),
      context,
    );
  },
  open: (ws) => {
    const u = ws.getUserData();
    ws.subscribe(u.room);
    ws.send(JSON.stringify({ type: "welcome", id: u.id, name: u.name, room: u.room, members: [] }), false);
  },
  message: (ws, data, isBinary) => {
    const u = ws.getUserData();
    // `data` is only valid during this call; the text is copied out by toString.
    const text = Buffer.from(data).toString();
    const out = JSON.stringify({ type: "message", room: u.room, id: ++seq, ts: Date.now(), from: { id: u.id, name: u.name }, text });
    // The fourth argument asks uWS to compress for subscribers that negotiated it (it is off
    // unless given); with no compression negotiated it changes nothing.
    app.publish(u.room, out, false, true);
  },
  // Closed connections leave their topics by themselves (uWS unsubscribes them).
});
app.listen("127.0.0.1", Number(process.env.PORT || 0), (token) => {
  if (!token) {
    console.error("uws_server: cannot listen");
    process.exit(1);
  }
  console.log(`listening on http://127.0.0.1:${uWS.us_socket_local_port(token)}`);
});
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
