#!/usr/bin/env node
// deflate_engine.js - echo through an app whose shared compressor may run on
// libdeflate (spec/apps/deflate_engine_app.lua), with headless Chromium (Debian's
// /usr/bin/chromium through playwright-core: the browser's own permessage-deflate)
// or Node `ws` (perMessageDeflate). Messages: text with multi-byte UTF-8 and binary
// of pseudo-random (incompressible) bytes, of 0, 1, 100, 5000, 65536, 70000 and
// 200000 bytes, all sent first, then each echo compared byte for byte, in order, on
// one connection (a receiver's inflate state must survive every message).
// Prints one JSON line per URL: {url: {extensions, messages, identical, code}}.
//
// usage: node deflate_engine.js (--browser [--chromium PATH] | --node) URL...
'use strict';

const SIZES = [0, 1, 100, 5000, 65536, 70000, 200000];

// Runs in the page too (passed as source): the messages and the echo check.
const echoSource = `async (url, sizes, open) => {
  const sent = [];
  for (const n of sizes) {
    sent.push('é€𝄞 compressible text '.repeat(Math.ceil(n / 24) + 1).slice(0, n));
    const b = new Uint8Array(n);
    let x = 2463534242 + n;
    for (let i = 0; i < n; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; b[i] = x & 255; }
    sent.push(b);
  }
  const ws = await open(url);
  const got = [];
  let code = null;
  const done = new Promise((r) => {
    ws.onmessage = (ev) => { got.push(ev.data); if (got.length === sent.length) r(); };
    ws.onclose = (ev) => { code = ev.code; r(); };
  });
  for (const m of sent) ws.send(m);
  await Promise.race([done, new Promise((r) => setTimeout(r, 15000))]);
  let same = got.length === sent.length;
  for (let i = 0; same && i < sent.length; i++) {
    if (typeof sent[i] === 'string') same = got[i] === sent[i];
    else {
      const a = new Uint8Array(got[i]);
      same = a.length === sent[i].length && a.every((v, k) => v === sent[i][k]);
    }
  }
  const extensions = ws.extensions;
  ws.close();
  return { extensions, messages: got.length, identical: same, code };
}`;

async function viaBrowser(urls, exe) {
  const { chromium } = require('playwright-core');
  const browser = await chromium.launch({
    executablePath: exe, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const out = {};
    for (const url of urls) {
      out[url] = await page.evaluate(async ([src, u, sizes]) => {
        const echo = eval(src);
        return echo(u, sizes, (x) => new Promise((resolve, reject) => {
          const ws = new WebSocket(x);
          ws.binaryType = 'arraybuffer';
          ws.onopen = () => resolve(ws);
          ws.onerror = () => reject(new Error('websocket error: ' + x));
        }));
      }, [echoSource, url, SIZES]);
      out[url].userAgent = await page.evaluate(() => navigator.userAgent);
    }
    return out;
  } finally {
    await browser.close();
  }
}

async function viaNode(urls) {
  const WebSocket = require('ws');
  const echo = eval(echoSource);
  const out = {};
  for (const url of urls) {
    out[url] = await echo(url, SIZES, (x) => new Promise((resolve, reject) => {
      const ws = new WebSocket(x, { perMessageDeflate: true });
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => resolve(ws);
      ws.onerror = (e) => reject(new Error('websocket error: ' + (e && e.message)));
    }));
    // ws hands text over as a string only when it is text: compare like the page
  }
  return out;
}

async function main() {
  const args = process.argv.slice(2);
  const i = args.indexOf('--chromium');
  const exe = i >= 0 ? args.splice(i, 2)[1] : '/usr/bin/chromium';
  const mode = args.shift();
  const urls = args;
  const out = mode === '--browser' ? await viaBrowser(urls, exe) : await viaNode(urls);
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + '\n');
  process.exit(1);
});
