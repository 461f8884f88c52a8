#!/usr/bin/env node
// pages_client.js - the example apps' own pages (examples/*/public, served by the
// server under test) in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core), two pages (two users, or two tabs of one user) per scenario:
//   chat          rooms both ways, typing indicator, presence status, a direct message
//                 with its unread count, history for a page that joins later, and the
//                 server killed (kill -9) and restarted while a page sends: both pages
//                 show "reconnecting", come back by themselves, and show every message
//                 once, in the same order
//   notifications an inbox filled while the user is away, delivered on connect; live
//                 delivery to two tabs; read state (one, and "mark all read") synced
//                 across the tabs; pagination; the kill -9 / restart
//   collab        two editors typing at once converge, each shows the other's cursor
//                 at the right character; edits made while the server is down (kill -9)
//                 reach the other editor after the restart, once
// The spec (spec/integration/pages_spec.lua) starts the server. At {"step":"kill"} on
// stdout it kills the server with SIGKILL and writes a line to stdin; the pages then
// show "reconnecting" and work offline; at {"step":"restart"} it starts the server
// again on the same port and data directory and writes a line. The last stdout line
// is the JSON result; screenshots go to --shots DIR.
//
// usage: node pages_client.js SCENARIO --base http://127.0.0.1:PORT --shots DIR
//        [--query "&server=ws://..."] [--chromium PATH]
'use strict';
const path = require('path');
const readline = require('readline');
const { chromium } = require('playwright-core');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
}

const scenario = process.argv[2];
const base = arg('--base');
const shots = arg('--shots');
const extra = arg('--query', '');
const exe = arg('--chromium', '/usr/bin/chromium');
const WAIT = 15000; // every wait is bounded

const log = (...a) => process.stderr.write(`${a.join(' ')}\n`);
const lines = readline.createInterface({ input: process.stdin });
const stdinLines = [];
const stdinWaiters = [];
lines.on('line', (l) => { const w = stdinWaiters.shift(); if (w) w(l); else stdinLines.push(l); });
function step(name, extraFields = {}) {
  process.stdout.write(JSON.stringify({ step: name, ...extraFields }) + '\n');
  return new Promise((resolve) => {
    if (stdinLines.length) resolve(stdinLines.shift()); else stdinWaiters.push(resolve);
  });
}

async function until(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT, polling: 50 });
  } catch (e) {
    throw new Error(`timed out waiting for ${what}`);
  }
}

const texts = (page, sel) => page.$$eval(sel, (els) => els.map((e) => e.textContent));
const connState = (page) => page.$eval('#conn', (e) => e.dataset.state);
const waitConn = (page, state, what) => until(page, (s) => document.querySelector('#conn').dataset.state === s,
  state, what || `#conn ${state}`);

async function shot(page, name) {
  if (!shots) return null;
  const file = path.join(shots, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

const allPages = [];

async function newPage(browser, url, errors, viewport = { width: 1000, height: 640 }) {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  // a WebSocket that cannot connect while the server is down is logged by Chromium
  // itself: expected here; any other console error is reported
  page.on('console', (m) => {
    if (m.type() === 'error' && !/^WebSocket connection to .* failed/.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  page.label = url;
  if (process.env.PAGES_DEBUG) {
    page.on('websocket', (ws) => {
      const who = url.replace(/^.*name=([^&]*).*$/, '$1');
      ws.on('framesent', (f) => log(`${who} > ${f.payload}`));
      ws.on('framereceived', (f) => log(`${who} < ${String(f.payload).slice(0, 300)}`));
      ws.on('close', () => log(`${who} ws closed`));
    });
  }
  allPages.push(page);
  await page.goto(url);
  return page;
}

// ----------------------------------------------------------------------- chat

async function chat(browser, out) {
  const room = `r${Date.now() % 100000}`;
  const url = (name) => `${base}/?name=${name}&room=${room}${extra}`;
  const ada = await newPage(browser, url('ada'), out.pageErrors);
  const bob = await newPage(browser, url('bob'), out.pageErrors);
  await waitConn(ada, 'open');
  await waitConn(bob, 'open');
  const people = (page, names) => until(page, (n) => {
    const got = [...document.querySelectorAll('#people .person')].map((e) => e.dataset.user).sort();
    return JSON.stringify(got) === JSON.stringify(n);
  }, names, `people ${names}`);
  await people(ada, ['ada', 'bob']);
  await people(bob, ['ada', 'bob']);
  out.connText = await ada.$eval('#conn', (e) => e.textContent);

  // typing: bob sees ada typing, ada sees nothing of her own
  await ada.type('#say', 'hello b');
  await until(bob, () => document.querySelector('#typing').textContent === 'ada is typing…', null, 'bob sees ada typing');
  out.typingSeen = await bob.$eval('#typing', (e) => e.textContent);
  out.typingSelf = await ada.$eval('#typing', (e) => e.textContent);
  await ada.type('#say', 'ob');
  await ada.press('#say', 'Enter');
  const msgs = (page) => texts(page, '#messages li.msg:not(.pending) .text');
  const hasMsgs = (page, list, what) => until(page, (l) => {
    const got = [...document.querySelectorAll('#messages li.msg:not(.pending) .text')].map((e) => e.textContent);
    return JSON.stringify(got) === JSON.stringify(l);
  }, list, what);
  await hasMsgs(bob, ['hello bob'], 'bob gets hello bob');
  // the indicator goes when the message comes (and when ada stops: typing=false)
  await until(bob, () => document.querySelector('#typing').textContent === '', null, 'typing indicator cleared');
  await bob.fill('#say', 'hi ada');
  await bob.press('#say', 'Enter');
  await hasMsgs(ada, ['hello bob', 'hi ada'], 'ada gets hi ada');
  await hasMsgs(bob, ['hello bob', 'hi ada'], 'bob shows both');

  // presence status: bob goes away, ada's list shows it
  await bob.selectOption('#my-status', 'away');
  await until(ada, () => {
    const e = document.querySelector('#people .person[data-user="bob"] .status');
    return e && e.textContent === 'away';
  }, null, 'bob away in ada\'s list');
  out.bobStatus = await ada.$eval('#people .person[data-user="bob"] .status', (e) => e.textContent);
  await bob.selectOption('#my-status', 'online');
  await until(ada, () => {
    const e = document.querySelector('#people .person[data-user="bob"] .status');
    return e && e.textContent === 'online';
  }, null, 'bob online again in ada\'s list');
  await bob.selectOption('#my-status', 'away');

  // a direct message: bob gets an unread count on his DM list, reading it clears it
  await ada.fill('#dm-to', 'bob');
  await ada.press('#dm-to', 'Enter');
  await ada.fill('#say', 'psst, bob');
  await ada.press('#say', 'Enter');
  await until(bob, () => {
    const b = document.querySelector('#dms .badge');
    return b && b.textContent === '1';
  }, null, 'bob\'s unread DM badge');
  out.dmBadge = await bob.$eval('#dms .badge', (e) => e.getAttribute('aria-label'));
  out.dmNotice = await bob.$eval('#notice', (e) => e.textContent);
  await ada.click('#rooms button.item');
  await shot(bob, 'chat-dm');
  await bob.click('#dms button.item');
  await hasMsgs(bob, ['psst, bob'], 'bob reads the DM');
  out.dmBadgeAfter = await bob.$$eval('#dms .badge', (e) => e.length);
  // the room, not shown on bob's page, counts what he has not seen
  await ada.fill('#say', 'are you there?');
  await ada.press('#say', 'Enter');
  await until(bob, () => {
    const b = document.querySelector('#rooms .badge');
    return b && b.textContent === '1';
  }, null, 'bob\'s unread room badge');
  out.roomBadge = await bob.$eval('#rooms .badge', (e) => e.getAttribute('aria-label'));
  await bob.click('#rooms button.item');
  await until(bob, () => !document.querySelector('#rooms .badge'), null, 'the room badge goes when the room is shown');

  // kill -9 while ada sends: both show reconnecting, then come back by themselves
  await step('kill');
  await waitConn(ada, 'reconnecting', 'ada reconnecting');
  await waitConn(bob, 'reconnecting', 'bob reconnecting');
  out.reconnectingText = await ada.$eval('#conn', (e) => e.textContent);
  for (const t of ['sent while down 1', 'sent while down 2']) {
    await ada.fill('#say', t);
    await ada.press('#say', 'Enter');
  }
  out.pendingWhileDown = await ada.$$eval('#messages li.pending', (e) => e.length);
  await shot(ada, 'chat-reconnecting');
  await step('restart');
  await waitConn(ada, 'open', 'ada back');
  await waitConn(bob, 'open', 'bob back');
  await bob.fill('#say', 'after restart');
  await bob.press('#say', 'Enter');
  const all = ['hello bob', 'hi ada', 'are you there?', 'sent while down 1', 'sent while down 2', 'after restart'];
  await hasMsgs(ada, all, 'ada: every message once');
  await hasMsgs(bob, all, 'bob: every message once');
  await until(ada, () => document.querySelectorAll('#messages li.pending').length === 0, null, 'ada: outbox empty');
  out.adaMessages = await msgs(ada);
  out.bobMessages = await msgs(bob);
  await people(ada, ['ada', 'bob']);

  // a third page joining later gets the history
  const cy = await newPage(browser, url('cy'), out.pageErrors, { width: 390, height: 700 });
  await waitConn(cy, 'open');
  await hasMsgs(cy, all, 'cy: history on join');
  out.cyMessages = await msgs(cy);
  await shot(cy, 'chat-narrow');
  await shot(ada, 'chat-ada');
  // the README's picture: bob's page while ada types (Escape closes a notice)
  await bob.keyboard.press('Escape');
  await ada.type('#say', 'one more thing');
  await until(bob, () => document.querySelector('#typing').textContent === 'ada is typing…', null, 'bob sees ada typing again');
  await shot(bob, 'chat');

  // an indicator whose sender never says "stopped" (and stays connected) expires
  const WebSocket = require('ws');
  const wsBase = base.replace(/^http/, 'ws');
  const dan = new WebSocket(`${wsBase}/chat?name=dan`);
  await new Promise((resolve, reject) => { dan.once('open', resolve); dan.once('error', reject); });
  dan.send(JSON.stringify({ type: 'join', room }));
  await until(bob, () => document.querySelector('#typing').textContent === '', null, 'ada stopped typing');
  dan.send(JSON.stringify({ type: 'typing', room, typing: true }));
  await until(bob, () => document.querySelector('#typing').textContent === 'dan is typing…', null, 'bob sees dan typing');
  const shownAt = Date.now();
  await until(bob, () => document.querySelector('#typing').textContent === '', null, 'dan\'s indicator expires');
  out.typingExpiredAfter = Date.now() - shownAt;
  out.danStillOpen = dan.readyState === WebSocket.OPEN;
  dan.close();
}

// ----------------------------------------------------------------------- notifications

async function notificationsScenario(browser, out) {
  const user = `u${Date.now() % 100000}`;
  const other = `${user}b`;
  const admin = await newPage(browser, `${base}/admin.html?x=1${extra}`, out.pageErrors, { width: 700, height: 760 });
  await waitConn(admin, 'open', 'admin connected');
  async function send(title, opts = {}) {
    await admin.check(opts.everyone ? 'input[value=everyone]' : 'input[value=user]');
    if (!opts.everyone) await admin.fill('#to', opts.to || user);
    await admin.fill('#title', title);
    await admin.fill('#body', opts.body || '');
    await admin.selectOption('#priority', opts.priority || 'normal');
    await admin.selectOption('#ttl', String(opts.ttl || 0));
    await admin.click('#send button');
    await until(admin, () => /^sent to|^not sent/.test(document.querySelector('#result').textContent), null, `sent ${title}`);
    const r = await admin.$eval('#result', (e) => e.textContent);
    if (!r.startsWith('sent to')) throw new Error(`admin: ${r}`);
    return r;
  }
  // stored while the user has never connected: delivered on the first connect
  for (let i = 1; i <= 11; i++) await send(`n${i}`, { priority: i === 3 ? 'high' : 'normal' });

  // two tabs of one user (one browser context), five a page
  const ctx = await browser.newContext({ viewport: { width: 800, height: 720 } });
  const tab = async () => {
    const p = await ctx.newPage();
    p.on('pageerror', (e) => out.pageErrors.push(String(e)));
    p.on('console', (m) => {
      if (m.type() === 'error' && !/^WebSocket connection to .* failed/.test(m.text())) out.pageErrors.push(`console: ${m.text()}`);
    });
    allPages.push(p);
    await p.goto(`${base}/?name=${user}&pageSize=5${extra}`);
    await waitConn(p, 'open');
    return p;
  };
  const t1 = await tab();
  const t2 = await tab();
  const titles = (p) => texts(p, '#items li.item .title');
  const badge = (p) => p.$eval('#badge', (e) => (e.hidden ? 0 : Number(e.textContent)));
  const hasTitles = (p, list, what) => until(p, (l) => JSON.stringify([...document.querySelectorAll('#items li.item .title')]
    .map((e) => e.textContent)) === JSON.stringify(l), list, what);
  const hasBadge = (p, n, what) => until(p, (n) => {
    const b = document.querySelector('#badge');
    return (b.hidden ? 0 : Number(b.textContent)) === n;
  }, n, what);
  await hasTitles(t1, ['n11', 'n10', 'n9', 'n8', 'n7'], 'tab 1: the newest five');
  await hasBadge(t1, 11, 'tab 1: 11 unread');
  await hasBadge(t2, 11, 'tab 2: 11 unread');
  out.firstPage = await titles(t1);
  out.states = await t1.$$eval('#items li.item', (els) => els.map((e) => e.dataset.state));
  // pages
  await t1.click('#next');
  await hasTitles(t1, ['n6', 'n5', 'n4', 'n3', 'n2'], 'page 2');
  out.page2 = await titles(t1);
  out.page2Label = await t1.$eval('#page', (e) => e.textContent);
  out.highOnPage2 = await t1.$eval('#items li.p-high .title', (e) => e.textContent);
  await t1.click('#next');
  await hasTitles(t1, ['n1'], 'page 3');
  out.nextDisabled = await t1.$eval('#next', (e) => e.disabled);
  await t1.click('#prev');
  await t1.click('#prev');
  await hasTitles(t1, ['n11', 'n10', 'n9', 'n8', 'n7'], 'back to page 1');

  // live, to both tabs; read in one tab is read in the other
  await send('live one', { body: 'sent while you look' });
  await hasTitles(t1, ['live one', 'n11', 'n10', 'n9', 'n8'], 'tab 1: live');
  await hasTitles(t2, ['live one', 'n11', 'n10', 'n9', 'n8'], 'tab 2: live');
  await hasBadge(t2, 12, 'tab 2: 12 unread');
  await t1.click('#items li.item[data-state="delivered"] button');
  await hasBadge(t2, 11, 'tab 2: 11 after tab 1 read one');
  await until(t2, () => document.querySelector('#items li.item').dataset.state === 'read', null, 'tab 2: live one read');
  out.readSynced = await t2.$eval('#items li.item', (e) => [e.querySelector('.title').textContent, e.dataset.state]);
  await t2.click('#read-all');
  await hasBadge(t1, 0, 'tab 1: none unread after tab 2 read all');
  out.afterReadAll = await t1.$$eval('#items li.item', (els) => els.map((e) => e.dataset.state));

  // priority and expiry
  await send('server on fire', { priority: 'urgent', ttl: 3600, body: 'look now' });
  await until(t1, () => !document.querySelector('#urgent').hidden, null, 'urgent banner');
  out.urgent = await t1.$eval('#urgent strong', (e) => e.textContent);
  out.expires = await t1.$eval('#items li.item .expires', (e) => e.textContent);
  await shot(t1, 'notifications');
  await shot(admin, 'notifications-admin');

  // another user, away: delivered when they first connect; then "everyone"
  await send('for the other one', { to: other });
  const o = await newPage(browser, `${base}/?name=${other}${extra}`, out.pageErrors, { width: 390, height: 700 });
  await waitConn(o, 'open');
  await hasTitles(o, ['for the other one'], 'the other user: delivered on connect');
  await send('to everyone', { everyone: true });
  await until(o, () => document.querySelector('#items li.item .title').textContent === 'to everyone', null, 'other: everyone');
  await hasTitles(t1, ['to everyone', 'server on fire', 'live one', 'n11', 'n10'], 'tab 1: everyone');
  await shot(o, 'notifications-narrow');

  // kill -9 and a restart on the same data: tabs reconnect; what is sent next arrives once
  await step('kill');
  await waitConn(t1, 'reconnecting', 'tab 1 reconnecting');
  await waitConn(t2, 'reconnecting', 'tab 2 reconnecting');
  out.reconnectingText = await t2.$eval('#conn', (e) => e.textContent);
  await step('restart');
  await waitConn(admin, 'open', 'admin back');
  await waitConn(t1, 'open', 'tab 1 back');
  await waitConn(t2, 'open', 'tab 2 back');
  await send('after the restart');
  const want = ['after the restart', 'to everyone', 'server on fire', 'live one', 'n11'];
  await hasTitles(t1, want, 'tab 1 after restart');
  await hasTitles(t2, want, 'tab 2 after restart');
  await hasBadge(t1, 3, 'tab 1: 3 unread after restart');
  await hasBadge(t2, 3, 'tab 2: 3 unread after restart');
  out.afterRestart = await titles(t2);
  out.badgeAfterRestart = await badge(t2);
  out.ids = await t1.$$eval('#items li.item', (els) => els.map((e) => Number(e.dataset.id)));
}

// ----------------------------------------------------------------------- collab

async function collab(browser, out) {
  const doc = `d${Date.now() % 100000}`;
  const url = (name, color) => `${base}/?name=${name}&color=${encodeURIComponent(color)}${extra}#${doc}`;
  const ada = await newPage(browser, url('ada', '#e6194b'), out.pageErrors, { width: 900, height: 600 });
  const bob = await newPage(browser, url('bob', '#4363d8'), out.pageErrors, { width: 900, height: 600 });
  const ready = (p, what) => until(p, () => document.querySelector('#conn').dataset.state === 'open'
    && !document.querySelector('#text').disabled && window.collab.joined, null, what);
  await ready(ada, 'ada joined');
  await ready(bob, 'bob joined');
  const value = (p) => p.$eval('#text', (e) => e.value);
  // both pages show `text` with nothing of theirs in flight
  const converged = (p, text, what) => until(p, (t) => document.querySelector('#text').value === t
    && window.collab.outstanding === null && window.collab.buffer === null, text, what);
  await until(ada, () => document.querySelectorAll('#people li').length === 2, null, 'ada sees two people');
  out.people = await ada.$$eval('#people li', (els) => els.map((e) => e.textContent));

  await ada.focus('#text');
  await ada.keyboard.type('Hello 😀 world');
  await converged(bob, 'Hello 😀 world', 'bob gets ada\'s text');

  // typing at once: ada at the end, bob at the start, a key every 15 ms each
  await ada.keyboard.press('Control+End');
  await bob.focus('#text');
  await bob.keyboard.press('Control+Home');
  await Promise.all([ada.keyboard.type(' from ada', { delay: 15 }), bob.keyboard.type('bob says: ', { delay: 15 })]);
  const both = 'bob says: Hello 😀 world from ada';
  await converged(ada, both, 'ada converges');
  await converged(bob, both, 'bob converges');
  out.converged = [await value(ada), await value(bob)];
  out.revisions = [await ada.evaluate(() => window.collab.revision), await bob.evaluate(() => window.collab.revision)];

  // cursors: ada selects "world", bob's page marks exactly it and puts ada's caret after it
  const adaClient = await ada.evaluate(() => window.collab.clientId);
  const start = both.indexOf('world');
  await ada.evaluate(([s, e]) => { const t = document.querySelector('#text'); t.focus(); t.setSelectionRange(s, e); }, [start, start + 5]);
  // the caret's place = the length of the text before its span in the backdrop
  const caretAt = (id) => {
    const c = document.querySelector(`#marks .caret[data-client="${id}"]`);
    if (!c) return -1;
    const r = document.createRange();
    r.setStart(document.querySelector('#marks'), 0);
    r.setEndBefore(c);
    return r.toString().length;
  };
  await until(bob, ([id, want, fn]) => {
    const m = document.querySelector(`#marks mark[data-client="${id}"]`);
    return m && m.textContent === 'world' && (0, eval)(fn)(id) === want;
  }, [adaClient, start + 5, `(${caretAt})`], 'bob sees ada\'s selection');
  out.adaSelectionOnBob = await bob.$eval(`#marks mark[data-client="${adaClient}"]`, (e) => e.textContent);
  out.adaCaretOnBob = await bob.evaluate(([id, fn]) => (0, eval)(fn)(id), [adaClient, `(${caretAt})`]);
  out.adaCaretName = await bob.$eval(`#marks .caret[data-client="${adaClient}"]`, (e) => e.dataset.name);
  // bob's caret after "bob" (3); ada sees it there, and it moves when ada types before it
  const bobClient = await bob.evaluate(() => window.collab.clientId);
  await bob.evaluate(() => { const t = document.querySelector('#text'); t.focus(); t.setSelectionRange(3, 3); });
  await until(ada, ([id, fn]) => (0, eval)(fn)(id) === 3, [bobClient, `(${caretAt})`], 'ada sees bob\'s caret at 3');
  await ada.evaluate(() => { const t = document.querySelector('#text'); t.focus(); t.setSelectionRange(0, 0); });
  await ada.keyboard.type('> ');
  await until(ada, ([id, fn]) => (0, eval)(fn)(id) === 5, [bobClient, `(${caretAt})`], 'bob\'s caret moved to 5 on ada\'s page');
  await until(bob, () => document.querySelector('#text').selectionStart === 5, null, 'bob\'s own caret moved to 5');
  out.bobCaretOnAda = await ada.evaluate(([id, fn]) => (0, eval)(fn)(id), [bobClient, `(${caretAt})`]);
  const two = `> ${both}`;
  await converged(bob, two, 'bob has "> "');
  await ada.evaluate(([s, e]) => { const t = document.querySelector('#text'); t.focus(); t.setSelectionRange(s, e); }, [two.indexOf('world'), two.indexOf('world') + 5]);
  await until(bob, ([id]) => {
    const m = document.querySelector(`#marks mark[data-client="${id}"]`);
    return m && m.textContent === 'world';
  }, [adaClient], 'ada\'s selection again');
  await shot(bob, 'collab');

  // kill -9: both keep editing while the server is down; after the restart both converge
  await step('kill');
  await waitConn(ada, 'reconnecting', 'ada reconnecting');
  await waitConn(bob, 'reconnecting', 'bob reconnecting');
  await ada.evaluate(() => { const t = document.querySelector('#text'); t.focus(); t.setSelectionRange(t.value.length, t.value.length); });
  await ada.keyboard.type(' [offline ada]');
  await bob.evaluate(() => { const t = document.querySelector('#text'); t.focus(); t.setSelectionRange(0, 0); });
  await bob.keyboard.type('[offline bob] ');
  out.syncWhileDown = await ada.$eval('#sync', (e) => e.textContent);
  out.connWhileDown = await ada.$eval('#conn', (e) => e.textContent);
  await shot(ada, 'collab-offline');
  await step('restart');
  const final = `[offline bob] ${two} [offline ada]`;
  await converged(ada, final, 'ada after the restart');
  await converged(bob, final, 'bob after the restart');
  out.final = [await value(ada), await value(bob)];
  // a fresh page gets the same text from the server (stored, each edit once)
  const cy = await newPage(browser, url('cy', '#3cb44b'), out.pageErrors, { width: 390, height: 640 });
  await ready(cy, 'cy joined');
  out.fresh = await value(cy);
  await shot(cy, 'collab-narrow');
}

const scenarios = { chat, notifications: notificationsScenario, collab };

async function main() {
  if (!scenarios[scenario] || !base) throw new Error('usage: pages_client.js chat|notifications|collab --base URL');
  const browser = await chromium.launch({
    executablePath: exe,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const out = { scenario, pageErrors: [] };
  try {
    await scenarios[scenario](browser, out);
    out.ok = true;
  } catch (e) {
    out.ok = false;
    out.error = String(e && e.stack || e);
    out.pages = [];
    for (const p of allPages) {
      out.pages.push(await p.evaluate(() => ({
        url: location.href,
        conn: document.querySelector('#conn') && document.querySelector('#conn').textContent,
        text: document.querySelector('main') && document.querySelector('main').innerText.slice(0, 2000),
        notice: document.querySelector('#notice') && document.querySelector('#notice').textContent,
        collab: window.collab && JSON.stringify({ revision: window.collab.revision, outstanding: window.collab.outstanding,
          buffer: window.collab.buffer, seq: window.collab.seq, joined: window.collab.joined }),
      })).catch((err) => String(err)));
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(out.ok ? 0 : 1);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.stack || e) }) + '\n');
  process.exit(1);
});
