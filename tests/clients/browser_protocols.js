#!/usr/bin/env node
// browser_protocols.js - opens WebSockets from headless Chromium (Debian's
// /usr/bin/chromium through playwright-core) with given subprotocol lists and
// reports, per case, what the page saw: whether it opened, the protocol the
// browser accepted (ws.protocol), the first message, or the close code when the
// browser refused or failed the connection.
//
// usage: node browser_protocols.js --cases '[{"name":..,"url":..,"protocols":[..]}]'
// Prints one JSON line {name: {opened, protocol, message, code}}; exits 0 unless the
// browser itself failed.
'use strict';
const { chromium } = require('playwright-core');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
}

async function main() {
  const cases = JSON.parse(arg('--cases', '[]'));
  const browser = await chromium.launch({
    executablePath: arg('--chromium', '/usr/bin/chromium'),
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const result = await page.evaluate(async (cases) => {
      function one(c) {
        return new Promise((resolve) => {
          const r = { opened: false };
          let ws;
          try {
            ws = c.protocols ? new WebSocket(c.url, c.protocols) : new WebSocket(c.url);
          } catch (e) {
            resolve({ opened: false, exception: String(e) });
            return;
          }
          const timer = setTimeout(() => { r.timeout = true; resolve(r); }, 8000);
          ws.onopen = () => { r.opened = true; r.protocol = ws.protocol; };
          ws.onmessage = (ev) => {
            r.message = JSON.parse(ev.data);
            clearTimeout(timer);
            ws.close(1000);
            resolve(r);
          };
          ws.onclose = (ev) => { r.code = ev.code; clearTimeout(timer); resolve(r); };
        });
      }
      const out = {};
      for (const c of cases) out[c.name] = await one(c);
      return out;
    }, cases);
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + '\n');
  process.exit(1);
});
