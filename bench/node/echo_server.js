'use strict';
// Reference echo server for scripts/bench: the `ws` library with its native helpers
// (bufferutil, utf-8-validate). Echoes text as text and binary as binary on
// ws://HOST:PORT/echo, or wss:// with --tls-cert/--tls-key.
//
// Usage: node bench/node/echo_server.js PORT [HOST] [--tls-cert FILE --tls-key FILE]
//                                        [--compression off|shared|dedicated[:KB]]
//
// --compression mirrors edgews-lua's flag of the same name (core/config.c and
// core/lua/api_core.c), so both servers run the same scenario:
//   shared        serverNoContextTakeover + clientNoContextTakeover, server window 15
//                 (ws keeps one zlib stream per connection but resets it per message;
//                 edgews shares one compressor per worker)
//   dedicated:KB  context takeover both ways, server window log2(KB * 1024) bits
//                 (KB in 1,2,4,8,16,32; default 32 = 15 bits); the client keeps its
//                 context (edgews asks client_no_context_takeover only in shared mode)
// Both: zlib level 1 and memLevel 8 (edgews: ews_pmd_config_default), the client's
// window accepted as offered, and threshold 128 bytes (edgews compresses messages of
// 128 bytes and more, ews_pmd_config_default's threshold; ws compresses at or above
// `threshold` too, but only when its own context takeover is off, i.e. in shared
// mode; with takeover ws compresses every message). The benchmark messages are 1 KiB
// and 16 KiB, so the threshold never decides anything there.
const fs = require('fs');
const http = require('http');
const https = require('https');
const { WebSocketServer } = require('ws');

const positional = [];
const opts = {};
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a.startsWith('--')) {
    const v = process.argv[++i];
    if (v === undefined) {
      console.error(`${a} needs a value`);
      process.exit(2);
    }
    opts[a.slice(2)] = v;
  } else {
    positional.push(a);
  }
}
for (const k of Object.keys(opts)) {
  if (!['tls-cert', 'tls-key', 'compression'].includes(k)) {
    console.error(`unknown option --${k}`);
    process.exit(2);
  }
}
const port = Number(positional[0] || 9002);
const host = positional[1] || '127.0.0.1';
if (!!opts['tls-cert'] !== !!opts['tls-key']) {
  console.error('--tls-cert and --tls-key go together');
  process.exit(2);
}

function deflateOptions(spec) {
  if (!spec || spec === 'off') return false;
  const common = {
    zlibDeflateOptions: { level: 1, memLevel: 8 },
    threshold: 128,
  };
  if (spec === 'shared') {
    return { ...common, serverNoContextTakeover: true, clientNoContextTakeover: true };
  }
  const m = /^dedicated(?::(\d+))?$/.exec(spec);
  const kb = m ? Number(m[1] || 32) : NaN;
  if (![1, 2, 4, 8, 16, 32].includes(kb)) {
    console.error(`bad --compression '${spec}' (off|shared|dedicated[:1|2|4|8|16|32])`);
    process.exit(2);
  }
  return {
    ...common,
    serverNoContextTakeover: false,
    clientNoContextTakeover: false,
    serverMaxWindowBits: 10 + Math.log2(kb),
  };
}
const perMessageDeflate = deflateOptions(opts.compression);

// Make sure ws really uses the native helpers; a silent fallback to JS would make the
// reference slower than it should be.
for (const mod of ['bufferutil', 'utf-8-validate']) {
  try {
    require(mod);
  } catch (e) {
    console.error(`warning: ${mod} not available (${e.message}); ws falls back to JS`);
  }
}

const notFound = (req, res) => {
  res.writeHead(404, { 'Content-Type': 'text/plain' });
  res.end('not found\n');
};
const server = opts['tls-cert']
  ? https.createServer(
      { cert: fs.readFileSync(opts['tls-cert']), key: fs.readFileSync(opts['tls-key']) },
      notFound,
    )
  : http.createServer(notFound);
const wss = new WebSocketServer({
  server,
  path: '/echo',
  perMessageDeflate,
  clientTracking: false,
  maxPayload: 64 * 1024 * 1024,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
  ws.on('error', () => {});
});
server.on('tlsClientError', () => {});

server.listen({ port, host, backlog: 4096 }, () => {
  const a = server.address();
  const z = perMessageDeflate ? ` permessage-deflate ${opts.compression}` : '';
  console.log(`listening on ${a.address}:${a.port} (${opts['tls-cert'] ? 'wss' : 'ws'}${z})`);
});

function shutdown() {
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
