#!/usr/bin/env node
// browser_client.js - the chat example (examples/chat/app.lua) driven from headless
// Chromium (Debian's /usr/bin/chromium through playwright-core): the browser's own
// WebSocket implementation, which offers permessage-deflate, talks to the server.
//
// Scenario, all inside one page: ada and bob join a room; ada says three messages;
// bob's socket closes after the first; bob reconnects with {since_offset, epoch} and
// must get the other two replayed, then a live one; a direct message to bob while he
// is offline arrives as a notification when he connects. Prints one JSON line with
// what the page saw (the spec asserts on it); exits 0 unless the browser failed.
//
// With --echo-base ws://HOST:PORT (spec/apps/deflate_app.lua), the page also echoes
// messages of 0 B to 200 KB (text with multi-byte UTF-8, and binary) through the
// /shared, /dedicated and /dedicated-1k apps and reports the negotiated extension
// and whether every echo came back identical.
//
// usage: node browser_client.js --url ws://127.0.0.1:PORT/chat [--echo-base URL]
//        [--chromium PATH]
'use strict';
const { chromium } = require('playwright-core');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
}

async function main() {
  const url = arg('--url');
  const exe = arg('--chromium', '/usr/bin/chromium');
  if (!url) throw new Error('--url is required');
  const browser = await chromium.launch({
    executablePath: exe,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const result = await page.evaluate(async (base) => {
      // A small client: every message parsed and kept; wait for one matching pred.
      function client(name) {
        return new Promise((resolve, reject) => {
          const ws = new WebSocket(`${base}?name=${name}`);
          const c = { ws, msgs: [], waiters: [] };
          ws.onmessage = (ev) => {
            const m = JSON.parse(ev.data);
            c.msgs.push(m);
            c.waiters = c.waiters.filter((w) => (w.pred(m) ? (w.resolve(m), false) : true));
          };
          ws.onopen = () => resolve(c);
          ws.onerror = () => reject(new Error(`${name}: websocket error`));
        });
      }
      function next(c, pred, ms = 5000) {
        const found = c.msgs.find(pred);
        if (found) return Promise.resolve(found);
        return new Promise((resolve, reject) => {
          c.waiters.push({ pred, resolve });
          setTimeout(() => reject(new Error(`timeout; got ${JSON.stringify(c.msgs).slice(0, 500)}`)), ms);
        });
      }
      const send = (c, t) => c.ws.send(JSON.stringify(t));
      const closed = (c) => new Promise((r) => { c.ws.onclose = r; c.ws.close(); });
      const texts = (c) => c.msgs.filter((m) => m.type === 'pub').map((m) => m.data.text);

      const room = `web${Date.now()}`;
      const ada = await client('ada');
      const bob = await client('bob');
      const extensions = ada.ws.extensions;
      send(ada, { type: 'join', room });
      send(bob, { type: 'join', room });
      await next(ada, (m) => m.type === 'joined');
      await next(bob, (m) => m.type === 'joined');
      send(ada, { type: 'say', room, text: 'one' });
      const first = await next(bob, (m) => m.type === 'pub' && m.data.text === 'one');
      await closed(bob);
      send(ada, { type: 'say', room, text: 'two' });
      send(ada, { type: 'say', room, text: 'three' });
      await next(ada, (m) => m.type === 'pub' && m.data.text === 'three');
      send(ada, { type: 'dm', to: 'bob', text: 'while you were away' });
      const dm = await next(ada, (m) => m.type === 'dm:sent');
      const bob2 = await client('bob');
      const note = await next(bob2, (m) => m.type === 'notification');
      send(bob2, { type: 'join', room, since_offset: first.offset, epoch: first.epoch });
      const joined = await next(bob2, (m) => m.type === 'joined');
      send(ada, { type: 'say', room, text: 'four' });
      await next(bob2, (m) => m.type === 'pub' && m.data.text === 'four');
      const offsets = bob2.msgs.filter((m) => m.type === 'pub').map((m) => m.offset);
      await closed(ada);
      await closed(bob2);
      return {
        extensions, first: first.data.text, replayed: joined.replayed, gap: joined.gap,
        after_reconnect: texts(bob2), offsets, dm_delivered_at_once: dm.delivered,
        notification: note.data, userAgent: navigator.userAgent,
      };
    }, url);
    const echoBase = arg('--echo-base');
    if (echoBase) {
      result.echo = await page.evaluate(async (base) => {
        const out = {};
        for (const path of ['/shared', '/dedicated', '/dedicated-1k']) {
          const ws = new WebSocket(base + path);
          ws.binaryType = 'arraybuffer';
          await new Promise((r, j) => { ws.onopen = r; ws.onerror = () => j(new Error(path)); });
          const sent = [];
          for (const n of [0, 1, 100, 5000, 65536, 200000]) {
            sent.push('é€𝄞 compressible text '.repeat(Math.ceil(n / 24) + 1).slice(0, n));
            const b = new Uint8Array(n);
            for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >> 8)) & 255;
            sent.push(b);
          }
          const got = [];
          const done = new Promise((r) => {
            ws.onmessage = (ev) => { got.push(ev.data); if (got.length === sent.length) r(); };
          });
          for (const m of sent) ws.send(m);
          await Promise.race([done, new Promise((r) => setTimeout(r, 10000))]);
          let same = got.length === sent.length;
          for (let i = 0; same && i < sent.length; i++) {
            if (typeof sent[i] === 'string') same = got[i] === sent[i];
            else {
              const a = new Uint8Array(got[i]);
              same = a.length === sent[i].length && a.every((x, k) => x === sent[i][k]);
            }
          }
          out[path] = { extensions: ws.extensions, messages: got.length, identical: same };
          ws.close();
        }
        return out;
      }, echoBase);
    }
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + '\n');
  process.exit(1);
});
