#!/usr/bin/env node
// Reference server (Node `ws`) for the outbound client's conformance spec
// (spec/integration/outbound_client_spec.lua). Prints "listening ws PORT" on stdout.
//   /echo       echoes (text stays text, binary stays binary); "__info__" answers JSON
//               {subprotocol, extensions, headers}; permessage-deflate when offered
//   /fragments  sends one binary message in 3 fragments, then echoes
//   /badutf8    sends a text frame with invalid UTF-8 (ws does not check what it sends)
//   /close      closes with ?code=N&reason=R
//   /burst-close sends b1, b2, b3 and closes with 4005 "after burst"
//   /flood      sends f1 .. f1000 at once, then echoes
// Every close the server sees is printed as "closed PATH CODE REASON".
'use strict';
const { WebSocketServer } = require('ws');

const wss = new WebSocketServer({
  host: '127.0.0.1', port: 0, perMessageDeflate: { threshold: 0 }, maxPayload: 8 << 20,
  handleProtocols: (protocols) => (protocols.has('chat.v2') ? 'chat.v2' : false),
});
wss.on('listening', () => console.log(`listening ws ${wss.address().port}`));
wss.on('connection', (ws, req) => {
  const u = new URL(req.url, 'http://x');
  ws.on('close', (code, reason) => console.log(`closed ${u.pathname} ${code} ${reason.toString()}`));
  if (u.pathname === '/fragments') {
    ws.send(Buffer.from([1, 2]), { binary: true, fin: false });
    ws.send(Buffer.from([3, 4]), { binary: true, fin: false });
    ws.send(Buffer.from([5, 0]), { binary: true, fin: true });
  } else if (u.pathname === '/badutf8') {
    ws.send(Buffer.from([0x6f, 0x6b, 0xc3, 0x28]), { binary: false });
  } else if (u.pathname === '/burst-close') {
    for (let i = 1; i <= 3; i++) ws.send(`b${i}`);
    ws.close(4005, 'after burst');
    return;
  } else if (u.pathname === '/flood') {
    for (let i = 1; i <= 1000; i++) ws.send(`f${i}`);
  } else if (u.pathname === '/close') {
    ws.close(Number(u.searchParams.get('code') || 1000), u.searchParams.get('reason') || '');
    return;
  }
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.toString() === '__info__') {
      ws.send(JSON.stringify({ subprotocol: ws.protocol, extensions: ws.extensions, headers: req.headers }));
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});
process.on('SIGTERM', () => process.exit(0));
