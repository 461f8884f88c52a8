// Unit tests of client/edgews.js with a fake socket and Node's mock timers (no
// server): backoff statistics, the reconnect policy per close code, subscriptions
// (duplicates, reordering, gaps, epochs, resubscribe positions), requests, the
// offline queue and token refresh timing. Run by spec/unit/client_spec.lua:
//   node --test tests/clients/client_unit.test.mjs
// What involves the server is tested again against edgews-lua by
// tests/clients/client_scenarios.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EdgeWS, EdgeWSError, backoffDelay, closeDecision, tokenExpiry } from '../../client/edgews.js';

const T0 = 1_800_000_000_000; // the mocked clock's start (ms)

// A fake WebSocket class with its own list of instances. The test plays the server.
function fakeWS() {
  class FakeSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.protocol = '';
      this.extensions = '';
      this.bufferedAmount = 0;
      FakeSocket.instances.push(this);
    }
    send(d) {
      if (this.readyState !== 1) throw new Error('send on a socket that is not open');
      this.sent.push(d);
    }
    close(code, reason) {
      if (this.readyState >= 2) return;
      this.readyState = 2;
      this.closedWith = { code, reason };
      queueMicrotask(() => this.serverClose(code || 1005, reason || '', true));
    }
    // --- the server's side
    open(protocol = '') {
      this.readyState = 1;
      this.protocol = protocol;
      this.onopen && this.onopen({});
    }
    push(obj) { this.onmessage && this.onmessage({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) }); }
    serverClose(code, reason = '', wasClean = code !== 1006) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose && this.onclose({ code, reason, wasClean });
    }
    fail(message) { // refused before the upgrade / unreachable
      this.onerror && this.onerror({ message });
      this.serverClose(1006, '', false);
    }
    json() { return this.sent.map((s) => JSON.parse(s)); }
    last() { return JSON.parse(this.sent[this.sent.length - 1]); }
  }
  FakeSocket.instances = [];
  FakeSocket.last = () => FakeSocket.instances[FakeSocket.instances.length - 1];
  return FakeSocket;
}

const flush = () => new Promise((r) => setImmediate(r));
async function settle(n = 5) { for (let i = 0; i < n; i++) await flush(); }

// A JWT as far as the client cares (it reads exp; the server checks signatures).
function jwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}.c2ln`;
}

// A seeded PRNG (mulberry32), so the statistics are the same on every run.
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function client(t, WS, opts = {}) {
  const c = new EdgeWS('ws://server.test/app', { WebSocket: WS, ...opts });
  const events = [];
  for (const e of ['open', 'close', 'reconnecting', 'gap', 'error', 'message', 'auth', 'unauthorized']) {
    c.on(e, (x) => events.push([e, x]));
  }
  c.events = events;
  c.named = (name) => events.filter((e) => e[0] === name).map((e) => e[1]);
  t.after(() => c.close());
  return c;
}

function useClock(t) {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
  return (ms) => t.mock.timers.tick(ms);
}

// ------------------------------------------------------------------------- backoff

test('backoff: full jitter, uniform in [0, min(cap, initial * factor^n)], statistically', () => {
  const opts = { initialDelay: 1000, maxDelay: 30000, factor: 2 };
  const random = seeded(42);
  const N = 20000;
  for (let n = 0; n <= 8; n++) {
    const ceiling = Math.min(30000, 1000 * 2 ** n);
    const bins = new Array(10).fill(0);
    let sum = 0;
    let max = 0;
    for (let i = 0; i < N; i++) {
      const d = backoffDelay(n, opts, random);
      assert.ok(d >= 0 && d <= ceiling, `attempt ${n}: ${d} outside [0, ${ceiling}]`);
      sum += d;
      max = Math.max(max, d);
      bins[Math.min(9, Math.floor((d / ceiling) * 10))]++;
    }
    const mean = sum / N;
    // the mean of U(0, c) is c/2 with a standard error of c/sqrt(12 N) = 0.2% of c
    assert.ok(Math.abs(mean - ceiling / 2) < ceiling * 0.01, `attempt ${n}: mean ${mean} vs ${ceiling / 2}`);
    assert.ok(max > ceiling * 0.99, `attempt ${n}: the top of the range is reached (${max})`);
    for (const b of bins) assert.ok(Math.abs(b - N / 10) < N / 10 * 0.1, `attempt ${n}: bins ${bins}`);
  }
  // the cap holds for any attempt, with the platform's own random source too
  for (let i = 0; i < 1000; i++) {
    assert.ok(backoffDelay(50, opts) <= 30000);
    assert.ok(backoffDelay(3, opts) <= 8000);
  }
  assert.equal(backoffDelay(0, opts, () => 1), 1000);
  assert.equal(backoffDelay(4, opts, () => 1), 16000);
  assert.equal(backoffDelay(40, opts, () => 1), 30000);
  assert.equal(backoffDelay(7, { initialDelay: 100, maxDelay: 1e9, factor: 3 }, () => 0.5), 0.5 * 100 * 3 ** 7);
});

test('backoff: the client waits the schedule between failed attempts and resets after a stable connection', async (t) => {
  const tick = useClock(t);
  const WS = fakeWS();
  const c = client(t, WS, { random: () => 1, reconnect: { initialDelay: 100, maxDelay: 1000, stableAfter: 2000 } });
  await settle();
  assert.equal(WS.instances.length, 1);
  const delays = [];
  for (let i = 0; i < 6; i++) {
    WS.last().fail();
    await settle();
    const r = c.named('reconnecting');
    delays.push(r[r.length - 1].delay);
    tick(delays[i] - 1);
    await settle();
    assert.equal(WS.instances.length, i + 1, 'no attempt before its delay');
    tick(1);
    await settle();
    assert.equal(WS.instances.length, i + 2, 'an attempt at its delay');
  }
  assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000]);
  assert.deepEqual(c.named('reconnecting').map((r) => r.attempt), [1, 2, 3, 4, 5, 6]);
  // open, but closed again before stableAfter: the schedule goes on
  WS.last().open();
  tick(1999);
  WS.last().serverClose(1011, 'handler');
  await settle();
  assert.equal(c.named('reconnecting').at(-1).delay, 1000);
  tick(1000);
  await settle();
  // open and stable: the next failure starts from the beginning
  WS.last().open();
  assert.equal(c.attempt, 7);
  tick(2000);
  assert.equal(c.attempt, 0);
  WS.last().serverClose(1006, '');
  await settle();
  assert.equal(c.named('reconnecting').at(-1).delay, 100);
  assert.equal(c.named('open').length, 2);
  assert.equal(c.named('open')[1].reconnected, true);
});

test('backoff: reconnect false and maxAttempts stop the client', async (t) => {
  useClock(t);
  const WS = fakeWS();
  const c = client(t, WS, { reconnect: false });
  await settle();
  WS.last().open();
  WS.last().serverClose(1006);
  await settle();
  assert.equal(c.state, 'closed');
  assert.equal(c.readyState, EdgeWS.CLOSED);
  assert.equal(c.named('close').at(-1).willReconnect, false);

  const WS2 = fakeWS();
  const tick = useClock.bind(null, t);
  void tick;
  const c2 = client(t, WS2, { random: () => 0, reconnect: { maxAttempts: 2 } });
  await settle();
  for (let i = 0; i < 3; i++) {
    WS2.last().fail();
    await settle();
    t.mock.timers.tick(1);
    await settle();
  }
  assert.equal(WS2.instances.length, 3, 'the first attempt and two reconnects');
  assert.equal(c2.state, 'closed');
  assert.equal(c2.named('close').length, 1);
  assert.equal(c2.named('close')[0].willReconnect, false);
});

// ---------------------------------------------------------------- close code policy

test('close codes: the policy table', () => {
  const table = {
    1000: 'stop', 1001: 'immediate', 1012: 'immediate', 1002: 'backoff', 1003: 'backoff',
    1005: 'backoff', 1006: 'backoff', 1007: 'backoff', 1008: 'backoff', 1009: 'backoff',
    1011: 'backoff', 1013: 'backoff', 1014: 'backoff', 4000: 'backoff', 4401: 'auth',
    4403: 'auth', 4408: 'backoff', 4429: 'backoff', 4999: 'backoff',
  };
  for (const [code, d] of Object.entries(table)) assert.equal(closeDecision(Number(code)), d, `code ${code}`);
  assert.equal(closeDecision(1006, 401), 'auth');
  assert.equal(closeDecision(1006, 403), 'auth');
  assert.equal(closeDecision(1006, 429), 'backoff');
  assert.equal(closeDecision(1006, 503), 'backoff');
});

test('close codes: what the client does after each one', async (t) => {
  const tick = useClock(t);
  const cases = [
    [1000, 'stop'], [1001, 'immediate'], [1008, 'backoff'], [1011, 'backoff'], [1013, 'backoff'],
    [4000, 'backoff'], [4408, 'backoff'], [4429, 'backoff'], [1006, 'backoff'],
  ];
  for (const [code, want] of cases) {
    const WS = fakeWS();
    const c = client(t, WS, { random: () => 0.5, reconnect: { initialDelay: 1000 } });
    await settle();
    WS.last().open();
    tick(10000); // stable
    WS.last().serverClose(code, 'why');
    await settle();
    const close = c.named('close');
    assert.equal(close.length, 1, `${code}: one close event`);
    assert.equal(close[0].code, code);
    assert.equal(close[0].decision, want, `${code}`);
    assert.equal(close[0].willReconnect, want !== 'stop', `${code}`);
    if (want === 'stop') {
      assert.equal(c.state, 'closed');
      tick(60000);
      await settle();
      assert.equal(WS.instances.length, 1, `${code}: no reconnect`);
    } else {
      const r = c.named('reconnecting');
      assert.equal(r.length, 1);
      assert.equal(r[0].delay, want === 'immediate' ? 0 : 500, `${code}: delay`);
      assert.equal(r[0].code, code);
      assert.equal(c.state, 'reconnecting');
      assert.equal(c.readyState, EdgeWS.CONNECTING);
      assert.equal(c.nextReconnectAt, Date.now() + r[0].delay);
      tick(r[0].delay);
      await settle();
      assert.equal(WS.instances.length, 2, `${code}: reconnected`);
    }
    c.close();
  }
});

test('close codes: 1001 retries at once, but not twice within stableAfter', async (t) => {
  const tick = useClock(t);
  const WS = fakeWS();
  const c = client(t, WS, { random: () => 1, reconnect: { initialDelay: 100, stableAfter: 5000 } });
  await settle();
  WS.last().open();
  tick(6000);
  WS.last().serverClose(1001, 'server shutting down');
  await settle();
  assert.deepEqual([c.named('reconnecting')[0].delay, c.named('reconnecting')[0].attempt], [0, 0]);
  tick(0);
  await settle();
  WS.last().fail(); // the server is still down: backoff
  await settle();
  assert.equal(c.named('reconnecting')[1].delay, 100);
  tick(100);
  await settle();
  WS.last().open();
  tick(1000);
  WS.last().serverClose(1001, 'again'); // a server that keeps going away: no second immediate
  await settle();
  assert.equal(c.named('reconnecting')[2].delay, 200);
});

test('close codes: 4401/4403 wait for a token other than the refused one', async (t) => {
  const tick = useClock(t);
  const WS = fakeWS();
  let token = 'tok-1';
  const asked = [];
  const c = client(t, WS, {
    random: () => 1, reconnect: { initialDelay: 100, maxDelay: 400 },
    token: (info) => { asked.push(info.reason); return token; },
  });
  await settle();
  assert.match(WS.last().url, /[?&]token=tok-1$/);
  WS.last().open();
  WS.last().serverClose(4401, 'authentication failed');
  await settle();
  assert.equal(c.state, 'unauthorized');
  assert.equal(c.named('unauthorized').length, 1);
  assert.deepEqual(asked, ['connect', 'rejected']);
  // the provider keeps giving the refused token: asked again on the backoff schedule,
  // and no socket is opened
  for (let i = 0; i < 5; i++) { tick(400); await settle(); }
  assert.equal(WS.instances.length, 1);
  assert.ok(asked.length >= 5, `asked ${asked.length} times`);
  token = 'tok-2';
  tick(400);
  await settle();
  assert.equal(WS.instances.length, 2);
  assert.match(WS.last().url, /[?&]token=tok-2$/);
  WS.last().open();
  assert.equal(c.state, 'open');
  // 4403: asked with reason "expired"
  asked.length = 0;
  WS.last().serverClose(4403, 'token expired');
  await settle();
  assert.deepEqual(asked, ['expired']);
  assert.equal(c.state, 'unauthorized');
  token = 'tok-3';
  tick(400);
  await settle();
  assert.equal(WS.instances.length, 3);
  assert.match(WS.last().url, /token=tok-3/);
});

test('close codes: a refused static token stops the client; Node\'s HTTP 401 counts as a refusal', async (t) => {
  useClock(t);
  const WS = fakeWS();
  const c = client(t, WS, { token: 'static' });
  await settle();
  WS.last().open();
  WS.last().serverClose(4401, 'authentication failed');
  await settle();
  assert.equal(c.state, 'closed');
  assert.equal(c.named('close').at(-1).willReconnect, false);
  assert.equal(c.named('error').at(-1).code, 'auth_failed');

  const WS2 = fakeWS();
  let n = 0;
  const c2 = client(t, WS2, { token: () => (n++ < 3 ? 'old' : 'new') });
  await settle();
  WS2.last().fail('Unexpected server response: 401');
  await settle();
  assert.equal(c2.state, 'unauthorized');
  for (let i = 0; i < 3; i++) { t.mock.timers.tick(30000); await settle(); }
  assert.equal(WS2.instances.length, 2);
  assert.equal(n, 4, 'asked until it gave a new token');
  assert.match(WS2.last().url, /token=new/);
});

test('close codes: reconnectPolicy overrides the decision', async (t) => {
  const tick = useClock(t);
  const WS = fakeWS();
  const c = client(t, WS, {
    random: () => 1,
    reconnectPolicy: ({ code, decision }) => (code === 4000 ? 'stop' : code === 1000 ? 'backoff' : decision),
  });
  await settle();
  WS.last().open();
  tick(10000);
  WS.last().serverClose(1000);
  await settle();
  assert.equal(c.state, 'reconnecting');
  tick(1000);
  await settle();
  WS.last().open();
  WS.last().serverClose(4000);
  await settle();
  assert.equal(c.state, 'closed');
});

// ----------------------------------------------------------------- subscriptions

// Opens the client's socket and answers every follow request like the server does.
function serve(WS, topicState = {}) {
  const ws = WS.last();
  const answered = new Set();
  ws.answerFollows = () => {
    for (const m of ws.json()) {
      if (m.type !== 'follow' || answered.has(m.id)) continue;
      answered.add(m.id);
      const st = topicState[m.topic] || { epoch: 'e1', offset: 0 };
      ws.push({ type: 'following', id: m.id, topic: m.topic, epoch: st.epoch, offset: st.offset });
    }
  };
  ws.open();
  ws.answerFollows();
  return ws;
}

const pub = (topic, offset, data, epoch = 'e1') => ({ type: 'pub', topic, epoch, offset, time: 1, data });

test('subscriptions: duplicates are dropped, out-of-order frames wait for the missing ones', async (t) => {
  useClock(t);
  const WS = fakeWS();
  const c = client(t, WS);
  const got = [];
  const sub = c.subscribe('news', { onMessage: (m) => got.push(m.offset) });
  await settle();
  const ws = serve(WS, { news: { epoch: 'e1', offset: 0 } });
  await settle();
  assert.equal(sub.state, 'active');
  assert.deepEqual(ws.json()[0], { type: 'follow', topic: 'news', id: ws.json()[0].id });
  for (const o of [1, 2, 2, 1, 5, 4, 3, 3, 6, 5]) ws.push(pub('news', o, `m${o}`));
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6]);
  assert.equal(sub.duplicates, 4);
  assert.deepEqual(sub.position, { epoch: 'e1', offset: 6 });
  assert.equal(c.named('gap').length, 0);
  assert.equal(c.named('message').length, 0, 'pub frames of a followed topic are not "message" events');
});

test('subscriptions: a hole that is never filled becomes a gap after reorderTimeout (or past maxReorder)', async (t) => {
  const tick = useClock(t);
  const WS = fakeWS();
  const c = client(t, WS, { reorderTimeout: 3000, maxReorder: 3 });
  const got = [];
  c.subscribe('a', { onMessage: (m) => got.push(m.offset) });
  c.subscribe('b', { onMessage: (m) => got.push(`b${m.offset}`) });
  await settle();
  const ws = serve(WS);
  await settle();
  ws.push(pub('a', 1));
  ws.push(pub('a', 3));
  ws.push(pub('a', 4));
  tick(2999);
  assert.deepEqual(got, [1]);
  tick(1);
  assert.deepEqual(got, [1, 3, 4]);
  assert.deepEqual(c.named('gap').map((g) => [g.topic, g.from, g.to, g.reason]), [['a', 2, 2, 'missing']]);
  // overflow: more than maxReorder waiting
  for (const o of [3, 4, 5, 6]) ws.push(pub('b', o));
  assert.deepEqual(got.slice(3), ['b3', 'b4', 'b5', 'b6']);
  assert.deepEqual(c.named('gap')[1], { type: 'gap', topic: 'b', epoch: 'e1', from: 1, to: 2, reason: 'missing', why: 'overflow' });
});

test('subscriptions: gap frames from the server (retention, limit, ahead, epoch) and a live epoch change', async (t) => {
  useClock(t);
  const WS = fakeWS();
  const c = client(t, WS);
  const got = [];
  const gaps = [];
  const sub = c.subscribe('t', { onMessage: (m) => got.push(`${m.epoch}:${m.offset}`), onGap: (g) => gaps.push(g) });
  await settle();
  const ws = serve(WS);
  await settle();
  ws.push(pub('t', 1));
  ws.push({ type: 'gap', topic: 't', epoch: 'e1', from: 2, to: 5, reason: 'retention' });
  ws.push(pub('t', 6));
  ws.push({ type: 'gap', topic: 't', epoch: 'e1', from: 3, to: 4, reason: 'retention' }); // nothing we lack
  ws.push(pub('t', 8)); // waits for 7
  ws.push({ type: 'gap', topic: 't', epoch: 'e1', from: 7, to: 7, reason: 'limit' }); // 8 goes out
  ws.push({ type: 'gap', topic: 't', epoch: 'e1', from: 5, to: 8, reason: 'ahead' }); // back to 4
  ws.push(pub('t', 5));
  ws.push({ type: 'gap', topic: 't', epoch: 'e2', from: 1, to: 2, reason: 'epoch' });
  ws.push(pub('t', 1, null, 'e2'));
  ws.push(pub('t', 2, null, 'e2'));
  ws.push(pub('t', 1, null, 'e3')); // reset while live, no gap frame
  assert.deepEqual(got, ['e1:1', 'e1:6', 'e1:8', 'e1:5', 'e2:1', 'e2:2', 'e3:1']);
  assert.deepEqual(gaps.map((g) => [g.reason, g.from, g.to]),
    [['retention', 2, 5], ['limit', 7, 7], ['ahead', 5, 8], ['epoch', 1, 2], ['epoch', 1, 0]]);
  assert.equal(gaps[3].previousEpoch, 'e1');
  assert.equal(gaps[4].previousEpoch, 'e2');
  assert.equal(c.named('gap').length, 5, 'gaps also reach the client');
  assert.deepEqual(sub.position, { epoch: 'e3', offset: 1 });
});

test('subscriptions: resubscribed after a reconnect from the last offset and epoch; hooks and positions', async (t) => {
  const tick = useClock(t);
  const WS = fakeWS();
  const c = client(t, WS, { random: () => 0 });
  const calls = [];
  const got = [];
  c.subscribe('chat:lobby', {
    resubscribe: (topic, since, epoch) => {
      calls.push([topic, since, epoch]);
      return c.request('join', { room: 'lobby', since_offset: since, epoch }, { reply: 'joined' });
    },
    onMessage: (m) => got.push(m.data),
  });
  const fresh = c.subscribe('quiet'); // default hook: follow/following
  const stored = c.subscribe('kept', { epoch: 'k1', offset: 41 });
  await settle();
  let ws = WS.last();
  ws.open();
  ws.push({ type: 'joined', room: 'lobby', epoch: 'E', offset: 2 }); // no id: matched by type
  ws.answerFollows = serve.bind(null, WS); // unused
  const follows = ws.json().filter((m) => m.type === 'follow');
  assert.deepEqual(follows.map((m) => [m.topic, m.since_offset, m.epoch]), [['quiet', undefined, undefined], ['kept', 41, 'k1']]);
  ws.push({ type: 'following', id: follows[0].id, topic: 'quiet', epoch: 'Q', offset: 7 });
  await settle();
  assert.deepEqual(fresh.position, { epoch: 'Q', offset: 7 }, 'the reply positions a fresh subscription');
  ws.push(pub('chat:lobby', 3, 'c', 'E'));
  ws.push(pub('chat:lobby', 4, 'd', 'E'));
  ws.serverClose(1006);
  await settle();
  tick(0);
  await settle();
  ws = WS.last();
  assert.equal(WS.instances.length, 2);
  ws.open();
  assert.deepEqual(calls, [['chat:lobby', undefined, undefined], ['chat:lobby', 4, 'E']]);
  const again = ws.json().filter((m) => m.type === 'follow').map((m) => [m.topic, m.since_offset, m.epoch]);
  assert.deepEqual(again, [['quiet', 7, 'Q'], ['kept', 41, 'k1']]);
  // the replay may repeat what we have: dropped
  for (const o of [3, 4, 5]) ws.push(pub('chat:lobby', o, String.fromCharCode(96 + o), 'E'));
  assert.deepEqual(got, ['c', 'd', 'e']);
});

test('subscriptions: unsubscribe calls the hook, and late frames of the topic are dropped', async (t) => {
  useClock(t);
  const WS = fakeWS();
  const c = client(t, WS);
  const got = [];
  const sub = c.subscribe('x', { onMessage: (m) => got.push(m.offset) });
  await settle();
  const ws = serve(WS);
  await settle();
  ws.push(pub('x', 1));
  await sub.unsubscribe();
  assert.deepEqual(ws.last(), { type: 'unfollow', topic: 'x' });
  ws.push(pub('x', 2));
  ws.push(pub('y', 1)); // never followed: a plain message
  assert.deepEqual(got, [1]);
  assert.equal(sub.state, 'closed');
  assert.deepEqual(c.named('message').map((m) => m.topic), ['y']);
  assert.throws(() => c.subscribe('', {}), TypeError);
  c.subscribe('x');
  assert.throws(() => c.subscribe('x'), /already subscribed/);
});

test('subscriptions: a failed (re)subscribe is an error event of the subscription and the client', async (t) => {
  useClock(t);
  const WS = fakeWS();
  const c = client(t, WS);
  const errs = [];
  const sub = c.subscribe('secret', { onError: (e) => errs.push(e.code) });
  await settle();
  const ws = WS.last();
  ws.open();
  const req = ws.last();
  ws.push({ type: 'error', error: 'forbidden', message: 'no', id: req.id });
  await settle();
  assert.deepEqual(errs, ['forbidden']);
  assert.equal(sub.state, 'error');
  assert.equal(c.named('error').at(-1).topic, 'secret');
});

// ----------------------------------------------------------------------- requests

test('requests: matched by id, error replies reject with the server code, timeouts', async (t) => {
  const tick = useClock(t);
  const WS = fakeWS();
  const c = client(t, WS, { requestTimeout: 5000 });
  await settle();
  const ws = WS.last();
  ws.open();
  const a = c.request('echo', { x: 1 });
  const b = c.request('echo', { x: 2 });
  const [ma, mb] = ws.json();
  assert.deepEqual(ma, { type: 'echo', x: 1, id: ma.id });
  assert.notEqual(ma.id, mb.id);
  ws.push({ type: 'echo', id: mb.id, v: 'b' });
  ws.push({ type: 'echo', id: ma.id, v: 'a' });
  assert.equal((await a).v, 'a');
  assert.equal((await b).v, 'b');

  const bad = c.request('nope', {});
  ws.push({ type: 'error', error: 'unknown_type', message: "unknown message type 'nope'", id: ws.last().id });
  await assert.rejects(bad, (e) => e instanceof EdgeWSError && e.code === 'unknown_type' && e.reply.error === 'unknown_type');
  const val = c.request('save', {});
  ws.push({ type: 'error', error: 'validation_failed', details: { text: 'required' }, id: ws.last().id });
  await assert.rejects(val, (e) => e.code === 'validation_failed' && e.details.text === 'required');

  const slow = c.request('slow', {}, { timeout: 200 });
  const slowId = ws.last().id;
  tick(199);
  await settle();
  let done = false;
  slow.catch(() => { done = true; });
  await settle();
  assert.equal(done, false);
  tick(1);
  await assert.rejects(slow, (e) => e.code === 'timeout');
  ws.push({ type: 'slow', id: slowId }); // too late: an ordinary message
  assert.equal(c.named('message').at(-1).id, slowId);

  const dflt = c.request('slow', {});
  tick(4999);
  await settle();
  tick(1);
  await assert.rejects(dflt, (e) => e.code === 'timeout');

  // an error reply whose id no request waits for is an error event
  ws.push({ type: 'error', error: 'rate_limited', message: 'slow down' });
  assert.equal(c.named('error').at(-1).code, 'rate_limited');
});

test('requests: reply by type when the app sends no id; in flight at a disconnect -> "disconnected"', async (t) => {
  const tick = useClock(t);
  const WS = fakeWS();
  const c = client(t, WS, { random: () => 0 });
  await settle();
  let ws = WS.last();
  ws.open();
  const w1 = c.request('who', { room: 'a' }, { reply: 'who' });
  const w2 = c.request('who', { room: 'b' }, { reply: (m) => m.type === 'who' && m.room === 'b' });
  ws.push({ type: 'who', room: 'a', users: [1] });
  ws.push({ type: 'who', room: 'b', users: [2] });
  assert.equal((await w1).room, 'a');
  assert.equal((await w2).room, 'b');
  const lost = c.request('echo', {});
  ws.serverClose(1006);
  await assert.rejects(lost, (e) => e.code === 'disconnected');
  // a request made while offline waits for the next connection
  const later = c.request('echo', { n: 1 });
  tick(0);
  await settle();
  ws = WS.last();
  assert.equal(ws.sent.length, 0);
  ws.open();
  ws.push({ type: 'echo', id: ws.last().id });
  assert.equal((await later).type, 'echo');
});

test('requests: with `reply`, a server message that happens to carry the request\'s id is not its reply', async (t) => {
  // The chat example's replies carry no id, and its notifications carry ids of their
  // own ({"type":"notification","id":1,...}): one arriving while request 1 waits must
  // reach the app as a message, not settle the request.
  const WS = fakeWS();
  const c = client(t, WS);
  await settle();
  const ws = WS.last();
  ws.open();
  const join = c.request('join', { room: 'a' }, { reply: 'joined' });
  const id = ws.last().id;
  ws.push({ type: 'notification', id, created_at: 1, data: { text: 'hi' } });
  ws.push({ type: 'joined', room: 'a', offset: 0 });
  assert.equal((await join).type, 'joined');
  assert.deepEqual(c.named('message').map((m) => [m.type, m.id]), [['notification', id]]);
  // an error reply with the id still rejects it, and a reply that matches `reply` and
  // carries the id settles it as before
  const bad = c.request('join', { room: 'b' }, { reply: 'joined' });
  ws.push({ type: 'error', error: 'validation_failed', id: ws.last().id });
  await assert.rejects(bad, (e) => e.code === 'validation_failed');
  const ok = c.request('who', {}, { reply: (m) => m.type === 'who' });
  ws.push({ type: 'who', id: ws.last().id, users: [] });
  assert.equal((await ok).type, 'who');
});

// ------------------------------------------------------------------ offline queue

test('offline queue: bounded; "reject" refuses new messages, "drop-oldest" drops old ones; FIFO after the resubscribes', async (t) => {
  const tick = useClock(t);
  const WS = fakeWS();
  const c = client(t, WS, { queueLimit: 3 });
  c.subscribe('t');
  assert.equal(c.send({ n: 1 }), true);
  assert.equal(c.send('two'), true);
  const r3 = c.request('echo', { n: 3 });
  assert.equal(c.queued, 3);
  assert.equal(c.send({ n: 4 }), false, 'full: refused');
  await assert.rejects(c.request('echo', { n: 5 }), (e) => e.code === 'queue_full');
  assert.equal(c.queued, 3);
  await settle();
  const ws = WS.last();
  ws.open();
  assert.deepEqual(ws.sent.map((s) => (s.startsWith('{') ? JSON.parse(s).type || JSON.parse(s).n : s)),
    ['follow', 1, 'two', 'echo']);
  assert.equal(c.queued, 0);
  ws.push({ type: 'echo', id: JSON.parse(ws.sent[3]).id });
  await r3;

  const WS2 = fakeWS();
  const d = client(t, WS2, { queueLimit: 2, queueFull: 'drop-oldest' });
  const first = d.request('echo', { n: 1 });
  d.send({ n: 2 });
  d.send({ n: 3 });
  await assert.rejects(first, (e) => e.code === 'queue_full');
  assert.equal(d.named('error').at(-1).code, 'queue_full');
  // a queued request that times out leaves the queue and is never sent
  const gone = d.request('echo', { n: 4 }, { timeout: 100 }); // drops n:2
  tick(100);
  await assert.rejects(gone, (e) => e.code === 'timeout');
  assert.equal(d.queued, 1);
  await settle();
  WS2.last().open();
  assert.deepEqual(WS2.last().json(), [{ n: 3 }]);
});

test('close(): queued and pending requests fail with "closed"; sends are refused afterwards', async (t) => {
  useClock(t);
  const WS = fakeWS();
  const c = client(t, WS);
  const q = c.request('echo', {});
  await settle();
  c.close();
  await assert.rejects(q, (e) => e.code === 'closed');
  assert.equal(c.send('x'), false);
  await assert.rejects(c.request('echo', {}), (e) => e.code === 'closed');
  assert.equal(c.state, 'closed');
  await settle();
  assert.equal(c.named('close').length, 1);
  assert.equal(c.named('close')[0].willReconnect, false);
});

// ---------------------------------------------------------------- tokens and auth

test('tokens: query, bearer subprotocol and first-message auth', async (t) => {
  useClock(t);
  const WS = fakeWS();
  client(t, WS, { token: 'a.b.c', tokenParam: 'access_token' });
  await settle();
  assert.equal(WS.last().url, 'ws://server.test/app?access_token=a.b.c');

  const WS2 = fakeWS();
  client(t, WS2, { token: 'a.b.c', tokenIn: 'protocol', protocols: ['app.v1'] });
  await settle();
  assert.deepEqual(WS2.last().protocols, ['bearer.a.b.c', 'app.v1']);
  assert.equal(WS2.last().url, 'ws://server.test/app');
  assert.throws(() => new EdgeWS('ws://x/', { WebSocket: WS2, token: 't', tokenIn: 'protocol' }), /real protocol/);

  const WS3 = fakeWS();
  const c = client(t, WS3, { token: () => 'tok', tokenIn: 'message' });
  c.send({ type: 'early' });
  await settle();
  const ws = WS3.last();
  assert.equal(ws.url, 'ws://server.test/app');
  ws.open();
  assert.deepEqual(ws.json(), [{ type: 'auth', token: 'tok' }], 'nothing before the auth message');
  assert.equal(c.state, 'connecting');
  assert.equal(c.named('open').length, 0);
  ws.push({ type: 'auth:ok', user: 'ann' });
  assert.equal(c.state, 'open');
  assert.equal(c.user, 'ann');
  assert.deepEqual(ws.json()[1], { type: 'early' });
  assert.equal(c.named('open').length, 1);
});

test('tokens: the provider is asked on every connect; refresh before expiry at min(refreshMargin, lifetime/4)', async (t) => {
  const tick = useClock(t);
  const WS = fakeWS();
  const reasons = [];
  let life = 60; // seconds
  const provider = (info) => {
    reasons.push(info.reason);
    return jwt({ sub: 'u', exp: Math.floor(Date.now() / 1000) + life });
  };
  const c = client(t, WS, { token: provider, random: () => 0 });
  await settle();
  let ws = WS.last();
  ws.open();
  const refreshes = () => ws.json().filter((m) => m.type === 'auth:refresh');
  // 60 s token: refreshed 15 s before expiry (a quarter of its lifetime < 30 s)
  tick(44999);
  await settle();
  assert.equal(refreshes().length, 0);
  tick(1);
  await settle();
  assert.equal(refreshes().length, 1);
  const r1 = refreshes()[0];
  assert.equal(tokenExpiry(r1.token), T0 + 45000 + 60000);
  ws.push({ type: 'auth:refreshed', exp: tokenExpiry(r1.token) / 1000, id: r1.id });
  await settle();
  assert.deepEqual(c.named('auth').map((a) => a.refreshed), [true]);
  tick(44999);
  await settle();
  assert.equal(refreshes().length, 1);
  tick(1);
  await settle();
  assert.equal(refreshes().length, 2);
  // a refused refresh is an error event
  ws.push({ type: 'error', error: 'auth_failed', message: 'token refresh failed: expired', id: refreshes()[1].id });
  await settle();
  assert.equal(c.named('error').at(-1).code, 'auth_failed');
  // one-hour tokens: refreshed 30 s (refreshMargin) before expiry
  life = 3600;
  ws.serverClose(1006);
  await settle();
  tick(0);
  await settle();
  ws = WS.last();
  ws.open();
  assert.deepEqual(reasons, ['connect', 'refresh', 'refresh', 'reconnect']);
  tick(3569999);
  await settle();
  assert.equal(refreshes().length, 0);
  tick(1);
  await settle();
  assert.equal(refreshes().length, 1);
});

test('tokens: a provider that gives the same token sends no refresh; an expired token is asked for again once', async (t) => {
  const tick = useClock(t);
  const WS = fakeWS();
  const same = jwt({ sub: 'u', exp: T0 / 1000 + 8 });
  const reasons = [];
  const c = client(t, WS, { token: (i) => { reasons.push(i.reason); return same; } });
  await settle();
  WS.last().open();
  tick(8000);
  await settle();
  assert.equal(WS.last().sent.length, 0);
  assert.deepEqual(reasons, ['connect', 'refresh']);
  void c;

  const WS2 = fakeWS();
  const reasons2 = [];
  const expired = jwt({ sub: 'u', exp: T0 / 1000 - 1 });
  const fresh = jwt({ sub: 'u', exp: T0 / 1000 + 100 });
  client(t, WS2, { token: (i) => { reasons2.push(i.reason); return i.reason === 'expired' ? fresh : expired; } });
  await settle();
  assert.deepEqual(reasons2, ['connect', 'expired']);
  assert.ok(WS2.last().url.endsWith(fresh));
});

test('tokens: a provider that throws is an error event and a backoff', async (t) => {
  const tick = useClock(t);
  const WS = fakeWS();
  let fail = true;
  const c = client(t, WS, { token: () => { if (fail) throw new Error('offline'); return 'ok'; }, random: () => 1 });
  await settle();
  assert.equal(WS.instances.length, 0);
  assert.equal(c.named('error')[0].code, 'token_error');
  assert.equal(c.named('reconnecting')[0].delay, 1000);
  fail = false;
  tick(1000);
  await settle();
  assert.equal(WS.instances.length, 1);
});

// ------------------------------------------------------------------------- misc

test('events and state: readyState, connect timeout, listener errors do not break the client', async (t) => {
  const tick = useClock(t);
  const WS = fakeWS();
  const c = client(t, WS, { connectTimeout: 3000, random: () => 1, autoConnect: false });
  assert.equal(c.state, 'idle');
  assert.equal(c.readyState, EdgeWS.CLOSED);
  c.connect();
  await settle();
  assert.equal(c.readyState, EdgeWS.CONNECTING);
  tick(3000); // never opens
  await settle();
  assert.equal(c.named('reconnecting')[0].reason, 'connect timeout');
  tick(1000);
  await settle();
  c.on('message', () => { throw new Error('listener bug'); });
  const ws = WS.last();
  ws.open();
  assert.equal(c.readyState, EdgeWS.OPEN);
  const errors = [];
  globalThis.reportError = (e) => errors.push(e.message);
  t.after(() => { delete globalThis.reportError; });
  ws.push({ type: 'hello' });
  ws.push('not json');
  tick(0);
  await settle();
  assert.deepEqual(c.named('message'), [{ type: 'hello' }, 'not json']);
  assert.deepEqual(errors, ['listener bug', 'listener bug']);
  const p = c.request('echo', {});
  ws.push({ type: 'echo', id: ws.last().id });
  await p;
});

test('edgews.d.ts declares every export of edgews.js', async () => {
  const { readFile } = await import('node:fs/promises');
  const mod = await import('../../client/edgews.js');
  const dts = await readFile(new URL('../../client/edgews.d.ts', import.meta.url), 'utf8');
  for (const name of Object.keys(mod)) {
    const re = name === 'default' ? /^export default /m : new RegExp(`^export (declare )?(class|function|const) ${name}\\b`, 'm');
    assert.match(dts, re, `${name} is not declared`);
  }
});
