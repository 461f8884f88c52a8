'use strict';
// Reference fan-out server for scripts/bench: the `ws` library with its native
// helpers (bufferutil, utf-8-validate) on ws://HOST:PORT/broadcast. Every connection
// is subscribed, and every message any client sends is sent to every connected
// client (the sender included), as text or binary as it came, by walking ws's client
// set — the usual ws broadcast. The frame is built once per client by ws (its
// documented broadcast pattern); no compression.
//
// Usage: node bench/node/broadcast_server.js PORT [HOST]
const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 9003);
const host = process.argv[3] || '127.0.0.1';

for (const mod of ['bufferutil', 'utf-8-validate']) {
  try {
    require(mod);
  } catch (e) {
    console.error(`warning: ${mod} not available (${e.message}); ws falls back to JS`);
  }
}

const server = http.createServer((req, res) => {
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found\n');
});
const wss = new WebSocketServer({
  server,
  path: '/broadcast',
  perMessageDeflate: false,
  clientTracking: true,
  maxPayload: 64 * 1024,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    for (const client of wss.clients) {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
  ws.on('error', () => {});
});

server.listen({ port, host, backlog: 4096 }, () => {
  const a = server.address();
  console.log(`listening on ${a.address}:${a.port} (ws broadcast)`);
});

function shutdown() {
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
