'use strict';
// Reference echo server for scripts/bench: the `ws` library with its native helpers
// (bufferutil, utf-8-validate), no compression. Echoes text as text and binary as
// binary on ws://HOST:PORT/echo.
// Usage: node bench/node/echo_server.js PORT [HOST]
const http = require('http');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 9002);
const host = process.argv[3] || '127.0.0.1';

// Make sure ws really uses the native helpers; a silent fallback to JS would make the
// reference slower than it should be.
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
  path: '/echo',
  perMessageDeflate: false,
  clientTracking: false,
  maxPayload: 64 * 1024 * 1024,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
  ws.on('error', () => {});
});

server.listen({ port, host, backlog: 4096 }, () => {
  const a = server.address();
  console.log(`listening on ${a.address}:${a.port}`);
});

function shutdown() {
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
