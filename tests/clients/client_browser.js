#!/usr/bin/env node
// client_browser.js - client/edgews.js in headless Chromium (Debian's /usr/bin/chromium
// through playwright-core), with the browser's own WebSocket: the module is put into
// a blank page as an inline <script type="module">, then the page
//   - against the chat example (--chat ws://.../chat): two clients join a room through
//     a resubscribe hook, ask `who` (a request whose reply has no id), say something
//     and receive it as a pub frame; an unknown type is rejected with its code;
//   - against spec/apps/client_app.lua (--app ws://HOST:PORT): /deflate negotiates
//     permessage-deflate as Chromium offers it and echoes a 50 KB request; a topic
//     survives a server-side close (1013: backoff, reconnect, resubscribe from its
//     offset); /jwt takes the token as a bearer.<token> subprotocol beside app.v1.
// Prints one JSON line with what the page saw (spec/integration/client_browser_spec.lua
// asserts on it); exits 0 unless the browser or the page failed.
//
// usage: node client_browser.js --chat URL --app URL --token JWT [--chromium PATH]
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
}

async function main() {
  const chat = arg('--chat');
  const app = arg('--app');
  const token = arg('--token');
  const exe = arg('--chromium', '/usr/bin/chromium');
  if (!chat || !app || !token) throw new Error('--chat, --app and --token are required');
  const source = fs.readFileSync(path.join(__dirname, '..', '..', 'client', 'edgews.js'), 'utf8');
  const browser = await chromium.launch({
    executablePath: exe,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    const steps = [];
    page.on('console', (m) => { steps.push(m.text()); process.stderr.write(`page: ${m.text()}\n`); });
    await page.setContent('<!doctype html><title>edgews.js</title>');
    await page.addScriptTag({ type: 'module', content: `${source}\nwindow.edgews = { EdgeWS, EdgeWSError };` });
    await page.waitForFunction(() => window.edgews !== undefined, null, { timeout: 10000 });
    const run = page.evaluate(async ({ chat, app, token }) => {
      const { EdgeWS } = window.edgews;
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      const step = (what) => console.log(`step: ${what}`);
      async function until(pred, what, ms = 10000) {
        const deadline = Date.now() + ms;
        while (!pred()) {
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
          await sleep(10);
        }
      }
      const once = (em, ev) => new Promise((resolve) => em.once(ev, resolve));
      const out = { userAgent: navigator.userAgent, hasWebSocket: typeof WebSocket === 'function' };

      // --- the chat example
      const room = `b${Date.now()}`;
      const joinHook = (c) => (topic, since_offset, epoch) =>
        c.request('join', { room, since_offset, epoch }, { reply: 'joined' });
      const ada = new EdgeWS(`${chat}?name=ada`);
      const bob = new EdgeWS(`${chat}?name=bob`);
      const got = [];
      const adaSub = ada.subscribe(`chat:${room}`, { resubscribe: joinHook(ada), onMessage: (m) => got.push(m) });
      const bobSub = bob.subscribe(`chat:${room}`, { resubscribe: joinHook(bob) });
      await Promise.all([once(adaSub, 'subscribed'), once(bobSub, 'subscribed')]);
      step('chat: subscribed');
      out.readyState = ada.readyState;
      const who = await ada.request('who', { room }, { reply: 'who' });
      out.who = who.users.slice().sort();
      bob.send({ type: 'say', room, text: 'hello from bob' });
      await until(() => got.length === 1, 'the pub frame');
      out.pub = { offset: got[0].offset, text: got[0].data.text, user: got[0].data.user };
      try { await ada.request('nope', {}); } catch (e) { out.unknown = e.code; }
      const adaClosed = once(ada, 'close');
      ada.close();
      bob.close();
      out.closingState = ada.readyState;
      const closeEv = await adaClosed;
      out.closed = { state: ada.readyState, code: closeEv.code, willReconnect: closeEv.willReconnect };

      step('chat: done');
      // --- permessage-deflate, and a subscription across a server-side close
      const z = new EdgeWS(`${app}/deflate`, { reconnect: { initialDelay: 50, maxDelay: 200 }, random: () => 1 });
      const zs = [];
      const zsub = z.subscribe(`bt${Date.now()}`, { onMessage: (m) => zs.push(m.offset) });
      const subscribed = once(zsub, 'subscribed');
      const opened = await once(z, 'open');
      step('deflate: open');
      out.extensions = opened.extensions;
      const big = 'compressible text '.repeat(2800);
      const echo = await z.request('echo', { big });
      out.bigEcho = echo.body.big === big;
      await subscribed;
      await z.request('publish', { topic: zsub.topic, data: 1 });
      await until(() => zs.length === 1, 'the first pub');
      const events = [];
      z.on('close', (e) => events.push(['close', e.code, e.decision]));
      z.on('reconnecting', (e) => events.push(['reconnecting', e.delay]));
      step('deflate: closing');
      const reopened = once(z, 'open');
      const resubscribed = once(zsub, 'subscribed');
      z.send({ type: 'close', code: 1013, reason: 'try later' });
      await reopened;
      out.events = events.slice();
      const resub = await resubscribed;
      out.resubscribed = { offset: resub.offset, replayed: resub.replayed };
      const other = new EdgeWS(`${app}/plain`);
      await other.request('publish', { topic: zsub.topic, data: 2 });
      await until(() => zs.length === 2, 'the second pub');
      out.offsets = zs;
      z.close();
      other.close();

      step('reconnect: done');
      // --- the token as a bearer.<token> subprotocol (Chromium requires the server to
      // select one of the offered protocols: app.v1)
      const j = new EdgeWS(`${app}/jwt`, { token: () => token, tokenIn: 'protocol', protocols: ['app.v1'] });
      const jo = await once(j, 'open');
      out.jwt = { protocol: jo.protocol, user: (await j.request('whoami', {})).user };
      j.close();
      return out;
    }, { chat, app, token });
    let timer;
    const result = await Promise.race([run, new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`the page did not finish within 45 s; last: ${steps.slice(-3).join(' | ')}`)), 45000);
    })]);
    clearTimeout(timer);
    result.pageErrors = pageErrors;
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + '\n');
  process.exit(1);
});
