// The Soketi peer for examples/bench.rs (`--targets soketi`): Soketi 1.6, the Pusher-protocol
// server on uWebSockets.js, with the same app the bench's Pusher clients use (key, secret, client
// events on, no connection or event-rate limits). Soketi asks for uWebSockets.js from GitHub;
// package.json maps it to the npm repack `uwebsockets` the uWS peer uses (same binaries).
//   node bench/soketi_server.js        prints "listening on http://127.0.0.1:PORT"
"use strict";
const net = require("node:net");
const { Server } = require("@soketi/soketi");

const freePort = () => new Promise((resolve) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});

(async () => {
  const [port, metricsPort, discoveryPort] = [await freePort(), await freePort(), await freePort()];
  // Soketi's banners go to stdout; the bench reads the port from the first line.
  const log = console.log;
  console.log = () => {};
  const server = new Server({
    host: "127.0.0.1",
    port,
    "metrics.port": metricsPort,
    // Soketi looks for other nodes by UDP broadcast (node-discover): kept on loopback, on a port
    // of its own, so a machine without a broadcast route (or another run) does not disturb it.
    "cluster.hostname": "127.0.0.1",
    "cluster.broadcast": "127.255.255.255",
    "cluster.port": discoveryPort,
    "appManager.array.apps": [{
      id: "bench",
      key: "bench-key",
      secret: "bench-secret-0123456789",
      maxConnections: -1,
      enableClientMessages: true,
      enabled: true,
      maxBackendEventsPerSecond: -1,
      maxClientEventsPerSecond: -1,
      maxReadRequestsPerSecond: -1,
      webhooks: [],
    }],
  });
  // start() resolves before it listens; its callback comes once it does.
  server.start(() => log(`listening on http://127.0.0.1:${port}`));
})();
