#!/usr/bin/env node
// Reference WebSocket server built on Node `ws`, used to validate the test clients
// (py_client.py, node_client.js, raw_client.py) independently of edgews-lua.
//
// It mimics the edgews-lua contract where `ws` and Node's HTTP parser allow it:
//   node ref_server.js [--listen HOST:PORT] [--max-payload BYTES]
//                      [--handshake-timeout SECS] [--drain-timeout SECS]
//   - writes "listening on HOST:PORT" to stderr once listening (port 0 = pick one)
//   - GET /health -> 200 {"status":"ok"}; unknown path -> 404; an app path without
//     Upgrade -> 426; non-GET upgrade -> 405; Sec-WebSocket-Version != 13 -> 426 with
//     "Sec-WebSocket-Version: 13"; bad/missing key -> 400; malformed head -> 400;
//     head over 8 KiB -> 431; HTTP/2.0 request line -> 505 (when Node reports it as a
//     version error); every error answer closes the connection.
//   - app paths: /echo (echo, subprotocols chat.v1/chat.v2, max payload 2 MiB by
//     default), /boom (echo, but the message "boom" closes that connection with 1011,
//     imitating a Lua handler that raised).
//   - SIGTERM/SIGINT: close every client with 1001, exit 0 when all closed or after
//     the drain timeout.
// Known differences from the edgews-lua contract (they come from `ws`):
//   - a 64-bit length with the top bit set is answered with 1009, not 1002;
//   - invalid UTF-8 in a fragmented text message is only detected when the message is
//     complete (no fail-fast before the final fragment).
'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');

function parseArgs(argv) {
  const opts = {
    listen: '127.0.0.1:0',
    maxPayload: 2 * 1024 * 1024,
    handshakeTimeout: 2,
    drainTimeout: 5,
    logLevel: 'info',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
      return argv[++i];
    };
    if (a === '--listen') opts.listen = next();
    else if (a === '--max-payload') opts.maxPayload = Number(next());
    else if (a === '--handshake-timeout') opts.handshakeTimeout = Number(next());
    else if (a === '--drain-timeout') opts.drainTimeout = Number(next());
    else if (a === '--log-level') opts.logLevel = next();
    else if (a === '--workers') next(); // accepted, ignored (one process)
    else if (a.endsWith('.lua')) { /* app file argument accepted for CLI parity */ }
    else throw new Error(`unknown argument ${a}`);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const APP_PATHS = new Set(['/echo', '/boom']);
const PROTOCOLS = ['chat.v1', 'chat.v2'];

const LEVELS = { debug: 0, info: 1, warn: 2, error: 3 };
function log(level, msg) {
  // the "listening on" line is always printed (the test helper waits for it)
  if (LEVELS[level] < LEVELS[opts.logLevel] && !msg.startsWith('listening on')) return;
  process.stderr.write(`${new Date().toISOString()} ${level.toUpperCase()} [main] ${msg}\n`);
}

function plainResponse(socket, status, extraHeaders, body) {
  const reason = http.STATUS_CODES[status] || 'Unknown';
  const payload = Buffer.from(body || '');
  let head = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (const [k, v] of Object.entries(extraHeaders || {})) head += `${k}: ${v}\r\n`;
  head += 'Content-Type: application/json\r\n';
  head += `Content-Length: ${payload.length}\r\n`;
  head += 'Connection: close\r\n\r\n';
  if (socket.writable) {
    socket.write(head);
    socket.end(payload);
  } else {
    socket.destroy();
  }
}

function errorBody(name) {
  return JSON.stringify({ error: name });
}

const server = http.createServer({
  maxHeaderSize: 8192,
  headersTimeout: opts.handshakeTimeout * 1000,
  requestTimeout: opts.handshakeTimeout * 1000,
  connectionsCheckingInterval: 250,
});

server.on('request', (req, res) => {
  const path = req.url.split('?')[0];
  if (req.httpVersionMajor !== 1) {
    res.writeHead(505, { Connection: 'close', 'Content-Length': 0 });
    res.end();
    return;
  }
  const send = (status, headers, body) => {
    res.writeHead(status, Object.assign({
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
      'Connection': 'close',
    }, headers || {}));
    res.end(body);
  };
  if (path === '/health' && req.method === 'GET') {
    send(200, {}, JSON.stringify({ status: 'ok', connections: wss.clients.size }));
  } else if (APP_PATHS.has(path)) {
    if (req.method !== 'GET') send(405, { Allow: 'GET' }, errorBody('method'));
    else send(426, { Upgrade: 'websocket' }, errorBody('upgrade required'));
  } else {
    send(404, {}, errorBody('not found'));
  }
});

server.on('clientError', (err, socket) => {
  if (!socket.writable) { socket.destroy(); return; }
  if (err.code === 'HPE_HEADER_OVERFLOW') plainResponse(socket, 431, {}, errorBody('head too large'));
  else if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code === 'ERR_HTTP_HEADERS_TIMEOUT') socket.destroy();
  else if (err.code === 'HPE_INVALID_VERSION' && /HTTP\/[02-9]/.test(String(err.rawPacket || ''))) {
    plainResponse(socket, 505, {}, errorBody('version'));
  }
  else plainResponse(socket, 400, {}, errorBody('bad request'));
});

const wss = new WebSocketServer({
  noServer: true,
  maxPayload: opts.maxPayload,
  perMessageDeflate: false,
  clientTracking: true,
  handleProtocols: (offered /* Set, client order */) => {
    for (const p of offered) if (PROTOCOLS.includes(p)) return p;
    return false;
  },
});

server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  if (req.httpVersionMajor !== 1) return plainResponse(socket, 505, {}, errorBody('version'));
  if (!APP_PATHS.has(path)) return plainResponse(socket, 404, {}, errorBody('not found'));
  if (req.method !== 'GET') return plainResponse(socket, 405, { Allow: 'GET' }, errorBody('method'));
  const conn = (req.headers.connection || '').toLowerCase().split(',').map((s) => s.trim());
  const upg = (req.headers.upgrade || '').toLowerCase().split(',').map((s) => s.trim());
  if (!conn.includes('upgrade') || !upg.includes('websocket')) {
    return plainResponse(socket, 426, { Upgrade: 'websocket' }, errorBody('upgrade required'));
  }
  if (req.headers['sec-websocket-version'] !== '13') {
    return plainResponse(socket, 426, { 'Sec-WebSocket-Version': '13' }, errorBody('version'));
  }
  const key = (req.headers['sec-websocket-key'] || '').trim();
  if (!/^[A-Za-z0-9+/]{22}==$/.test(key)) return plainResponse(socket, 400, {}, errorBody('key'));
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req, path));
});

let nextId = 1;
wss.on('connection', (ws, req, path) => {
  const id = nextId++;
  log('debug', `open ${id} ${path} protocol=${ws.protocol || '-'}`);
  ws.on('message', (data, isBinary) => {
    if (path === '/boom' && !isBinary && data.toString() === 'boom') {
      log('error', `ref_server.js: handler raised for connection ${id}`);
      ws.close(1011, 'handler error');
      return;
    }
    ws.send(data, { binary: isBinary });
  });
  ws.on('error', (err) => log('debug', `connection ${id} error: ${err.message}`));
  ws.on('close', (code) => log('debug', `close ${id} ${code}`));
});

let draining = false;
function shutdown(sig) {
  if (draining) return;
  draining = true;
  log('info', `${sig}: draining ${wss.clients.size} connection(s)`);
  server.close();
  const done = () => {
    log('info', 'bye');
    process.exit(0);
  };
  const timer = setTimeout(() => {
    for (const ws of wss.clients) ws.terminate();
    done();
  }, opts.drainTimeout * 1000);
  timer.unref();
  const check = () => { if (wss.clients.size === 0) done(); };
  for (const ws of wss.clients) {
    ws.on('close', check);
    ws.close(1001, 'going away');
  }
  check();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

const m = /^(.*):(\d+)$/.exec(opts.listen);
if (!m) throw new Error(`bad --listen ${opts.listen}`);
server.listen(Number(m[2]), m[1], () => {
  const addr = server.address();
  log('info', `listening on ${addr.address}:${addr.port}`);
});
