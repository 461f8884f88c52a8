#!/usr/bin/env node
// client_scenarios.mjs — client/edgews.js (under Node, with the `ws` package) against
// a real edgews-lua server; driven by spec/integration/client_spec.lua. Each scenario
// checks what it sees with node:assert and prints one JSON line with what it saw;
// exit 0 when every check held, 1 otherwise ({"ok":false,"error":...}).
//
//   node client_scenarios.mjs requests   --base ws://127.0.0.1:PORT   (spec/apps/client_app.lua)
//   node client_scenarios.mjs queue      --base ...
//   node client_scenarios.mjs closecodes --base ...
//   node client_scenarios.mjs auth       --base ...
//   node client_scenarios.mjs restart    --url ws://127.0.0.1:PORT/chat   (examples/chat)
//       prints {"step":"kill"} and {"step":"term"} and waits for a stdin line after
//       each: the spec kills (SIGKILL) / stops (SIGTERM) the server and starts it again
//       on the same port and data directory.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createInterface } from 'node:readline';
import { EdgeWS } from '../../client/edgews.js';
import WebSocket from 'ws';

const SECRET = 'client-secret';

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls pred() until true, or fails after `ms` with `what`.
async function until(pred, what, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function once(emitter, event, ms = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no '${event}' event within ${ms} ms`)), ms);
    emitter.once(event, (x) => { clearTimeout(t); resolve(x); });
  });
}

function jwt(claims, secret = SECRET) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${head}.${createHmac('sha256', secret).update(head).digest('base64url')}`;
}

// A WebSocket class that counts what it opens and, while gate.open is false, points
// every attempt at a closed port (connection refused: the server is unreachable).
function gated(gate = { open: true }) {
  const made = [];
  function Gated(url, protocols) {
    const u = gate.open ? url : url.replace(/\/\/[^/]+\//, '//127.0.0.1:1/');
    made.push(u);
    return protocols ? new WebSocket(u, protocols) : new WebSocket(u);
  }
  Gated.made = made;
  Gated.gate = gate;
  return Gated;
}

// A client with every event recorded.
function recorded(url, opts) {
  const c = new EdgeWS(url, { WebSocket: gated(), ...opts });
  c.log = [];
  for (const e of ['open', 'close', 'reconnecting', 'gap', 'error', 'message', 'auth', 'unauthorized']) {
    c.on(e, (x) => c.log.push([e, x, Date.now()]));
  }
  c.named = (name) => c.log.filter((e) => e[0] === name).map((e) => e[1]);
  return c;
}

const clients = [];
function track(c) { clients.push(c); return c; }

// ---------------------------------------------------------------------- requests

async function requests(base) {
  const c = track(recorded(`${base}/plain`));
  await once(c, 'open');
  const echo = await c.request('echo', { text: 'héllo 𝄞', n: 1 });
  assert.deepEqual(echo.body, { text: 'héllo 𝄞', n: 1 });
  const errs = {};
  for (const [type, body] of [['nope', {}], ['boom', {}], ['close', { code: 'x' }]]) {
    try {
      await c.request(type, body);
      assert.fail(`${type} resolved`);
    } catch (e) {
      errs[type] = e.code;
    }
  }
  assert.deepEqual(errs, { nope: 'unknown_type', boom: 'handler_error', close: 'validation_failed' });
  // timeout: the reply comes after the timeout and is then an ordinary message
  const t0 = Date.now();
  let timeoutErr;
  try { await c.request('slow', { secs: 0.6 }, { timeout: 150 }); } catch (e) { timeoutErr = e; }
  const tookMs = Date.now() - t0;
  assert.equal(timeoutErr && timeoutErr.code, 'timeout');
  assert.ok(tookMs >= 140, `rejected after ${tookMs} ms`); // (Date.now() rounds)
  await until(() => c.named('message').some((m) => m.type === 'slow'), 'the late reply');
  // many in flight at once, answered out of order (slow ones later): each by its id
  const ps = [];
  for (let i = 0; i < 20; i++) ps.push(c.request(i % 2 ? 'echo' : 'slow', i % 2 ? { i } : { secs: 0.01 }));
  const replies = await Promise.all(ps);
  replies.forEach((r, i) => assert.equal(r.type, i % 2 ? 'echo' : 'slow'));
  // in flight when the server closes the connection: 'disconnected'
  const inflight = c.request('slow', { secs: 0.2, close: 1013 });
  let lost;
  try { await inflight; } catch (e) { lost = e.code; }
  assert.equal(lost, 'disconnected');
  c.close();

  // permessage-deflate as Node's ws offers it: negotiated, and a large message
  const z = track(recorded(`${base}/deflate`));
  await once(z, 'open');
  const big = 'compressible '.repeat(4000); // 52 KB, under the default max_json_size
  const r = await z.request('echo', { big });
  assert.equal(r.body.big, big);
  const extensions = z.extensions;
  assert.match(extensions, /permessage-deflate/);
  z.close();
  return { errs, timeout: timeoutErr.code, tookMs, lost, extensions };
}

// -------------------------------------------------------------------- offline queue

async function queue(base) {
  const out = {};
  for (const policy of ['reject', 'drop-oldest']) {
    const WS = gated({ open: false });
    const tag = policy === 'reject' ? 'r' : 'd';
    const c = track(recorded(`${base}/plain`, {
      WebSocket: WS, queueLimit: 3, queueFull: policy, reconnect: { initialDelay: 20, maxDelay: 100 },
    }));
    await until(() => WS.made.length >= 2, 'a refused attempt and a retry');
    assert.equal(c.state === 'reconnecting' || c.state === 'connecting', true);
    const accepted = [];
    const requests = [];
    for (let i = 1; i <= 5; i++) {
      if (i === 2) {
        // one request among the sends: it waits in the queue like them
        const p = c.request('log', { text: `${tag}${i}` });
        requests.push(p.then(() => 'ok', (e) => e.code));
        accepted.push(true);
      } else {
        accepted.push(c.send({ type: 'log', text: `${tag}${i}` }));
      }
    }
    assert.equal(c.queued, 3);
    WS.gate.open = true;
    await once(c, 'open');
    const log = await c.request('get_log', {});
    const mine = log.text.split(',').filter((x) => x.startsWith(tag));
    out[policy] = { accepted, request: await requests[0], delivered: mine };
    c.close();
  }
  assert.deepEqual(out.reject, { accepted: [true, true, true, false, false], request: 'ok', delivered: ['r1', 'r2', 'r3'] });
  assert.deepEqual(out['drop-oldest'], { accepted: [true, true, true, true, true], request: 'queue_full', delivered: ['d3', 'd4', 'd5'] });
  return out;
}

// ---------------------------------------------------------------- close code policy

async function closecodes(base) {
  const out = {};
  const reconnect = { initialDelay: 200, maxDelay: 1000, stableAfter: 100 };
  for (const code of [1000, 1001, 1008, 1011, 1013, 4000, 4408, 4429]) {
    const c = track(recorded(`${base}/plain`, { reconnect, random: () => 0.5 }));
    await once(c, 'open');
    await sleep(150); // stable: the schedule starts from its first step
    const closed = once(c, 'close');
    c.send({ type: 'close', code, reason: `test ${code}` });
    const ev = await closed;
    const r = { code: ev.code, reason: ev.reason, decision: ev.decision, willReconnect: ev.willReconnect };
    if (ev.willReconnect) {
      const rec = c.named('reconnecting')[0];
      r.delay = rec.delay;
      await once(c, 'open');
      r.reopened = true;
    } else {
      r.state = c.state;
    }
    out[code] = r;
    c.close();
  }
  for (const code of [1008, 1011, 1013, 4000, 4408, 4429]) {
    assert.deepEqual(out[code], { code, reason: `test ${code}`, decision: 'backoff', willReconnect: true, delay: 100, reopened: true });
  }
  assert.deepEqual(out[1001], { code: 1001, reason: 'test 1001', decision: 'immediate', willReconnect: true, delay: 0, reopened: true });
  assert.deepEqual(out[1000], { code: 1000, reason: 'test 1000', decision: 'stop', willReconnect: false, state: 'closed' });

  // 4401/4403 from the server: no new socket while the provider gives the refused token
  for (const code of [4401, 4403]) {
    let token = 'first';
    const asked = [];
    const WS = gated();
    const c = track(recorded(`${base}/plain`, {
      WebSocket: WS, reconnect: { initialDelay: 20, maxDelay: 50 },
      token: (i) => { asked.push(i.reason); return token; },
    }));
    await once(c, 'open');
    c.send({ type: 'close', code, reason: 'auth' });
    await once(c, 'unauthorized');
    await until(() => asked.length >= 5, 'the provider asked again');
    assert.equal(WS.made.length, 1, 'no connection with the refused token');
    assert.equal(c.state, 'unauthorized');
    token = 'second';
    await once(c, 'open');
    assert.equal(WS.made.length, 2);
    assert.match(WS.made[1], /token=second/);
    out[code] = { reasons: [...new Set(asked)], sockets: WS.made.length };
    c.close();
  }
  assert.deepEqual(out[4401].reasons, ['connect', 'rejected']);
  assert.deepEqual(out[4403].reasons, ['connect', 'expired']);
  return out;
}

// --------------------------------------------------------------------------- auth

async function auth(base) {
  const out = {};
  const now = () => Math.floor(Date.now() / 1000);

  // first-message auth: a bad token is closed 4401 by the server; a good one opens
  {
    let token = jwt({ sub: 'ann', exp: now() + 60 }, 'wrong-secret');
    const WS = gated();
    const c = track(recorded(`${base}/jwtmsg`, { WebSocket: WS, tokenIn: 'message', token: () => token,
      reconnect: { initialDelay: 20, maxDelay: 50 } }));
    const u = await once(c, 'unauthorized');
    assert.equal(u.code, 4401);
    assert.equal(c.named('open').length, 0);
    token = jwt({ sub: 'ann', exp: now() + 60 });
    await once(c, 'open');
    assert.equal(c.user, 'ann');
    const who = await c.request('whoami', {});
    out.first_message = { code: u.code, user: who.user, sockets: WS.made.length };
    c.close();
  }

  // refresh before expiry, with tokens living 3-4 s; 7 s without a close (the three
  // ways of giving the token at once)
  await Promise.all(['query', 'protocol', 'message'].map(async (tokenIn) => {
    const issued = []; // { token, exp (ms), at (ms) }
    const c = track(recorded(`${base}/${tokenIn === 'message' ? 'jwtmsg' : 'jwt'}`, {
      tokenIn, protocols: tokenIn === 'protocol' ? ['app.v1'] : [],
      token: () => {
        const exp = now() + 4;
        const token = jwt({ sub: 'bea', exp });
        issued.push({ token, exp: exp * 1000, at: Date.now() });
        return token;
      },
    }));
    const opened = await once(c, 'open');
    if (tokenIn === 'protocol') assert.equal(opened.protocol, 'app.v1');
    const t0 = Date.now();
    await until(() => Date.now() - t0 > 7000, '7 s', 8000);
    const refreshed = c.log.filter((e) => e[0] === 'auth' && e[1].refreshed);
    assert.equal(c.named('close').length, 0, `${tokenIn}: never closed`);
    assert.equal(c.named('error').length, 0, `${tokenIn}: no errors`);
    assert.ok(refreshed.length >= 2, `${tokenIn}: ${refreshed.length} refreshes`);
    // each refresh: after half of the previous token's lifetime, before its expiry
    const timing = refreshed.map(([, ev, at], i) => {
      const prev = issued[i];
      assert.equal(ev.exp * 1000, issued[i + 1].exp, 'the server took the new exp');
      assert.ok(at < prev.exp, `${tokenIn}: refresh ${i} at ${at} after expiry ${prev.exp}`);
      assert.ok(issued[i + 1].at >= prev.at + (prev.exp - prev.at) / 2, `${tokenIn}: refresh ${i} too early`);
      return { lifetime: prev.exp - prev.at, refreshedAfter: issued[i + 1].at - prev.at };
    });
    const who = await c.request('whoami', {});
    assert.equal(who.user, 'bea');
    assert.equal(who.exp * 1000, issued[issued.length - 1].exp);
    out[tokenIn] = { refreshes: refreshed.length, timing };
    c.close();
  }));

  // no refresh (the provider keeps its token): the server closes with 4403 at expiry;
  // a new token reconnects
  {
    const exp = now() + 2;
    let token = jwt({ sub: 'cy', exp });
    const c = track(recorded(`${base}/jwt`, { token: () => token, reconnect: { initialDelay: 20, maxDelay: 50 } }));
    await once(c, 'open');
    const closed = await once(c, 'close', 5000);
    const at = Date.now();
    assert.equal(closed.code, 4403);
    assert.ok(at >= exp * 1000, 'closed at expiry, not before');
    assert.equal(c.state, 'unauthorized');
    token = jwt({ sub: 'cy', exp: now() + 60 });
    await once(c, 'open');
    out.expired = { code: closed.code, decision: closed.decision, reopened: true };
    c.close();
  }

  // an expired token refused before the upgrade (HTTP 401, which Node can see)
  {
    let token = jwt({ sub: 'di', exp: now() - 10 });
    const WS = gated();
    const c = track(recorded(`${base}/jwt`, { WebSocket: WS, token: () => token, reconnect: { initialDelay: 20, maxDelay: 50 } }));
    await once(c, 'unauthorized');
    assert.equal(c.named('open').length, 0);
    await sleep(200);
    assert.equal(WS.made.length, 1, 'no second try with the refused token');
    token = jwt({ sub: 'di', exp: now() + 60 });
    await once(c, 'open');
    out.http401 = { sockets: WS.made.length };
    c.close();
  }
  return out;
}

// ------------------------------------------------------------------------- restart

async function restart(url) {
  const lines = createInterface({ input: process.stdin });
  const it = lines[Symbol.asyncIterator]();
  const step = async (name) => {
    process.stdout.write(JSON.stringify({ step: name }) + '\n');
    const { value, done } = await it.next();
    if (done) throw new Error(`stdin closed at step ${name}`);
    return value;
  };
  const room = `r${Date.now()}`;
  const topic = `chat:${room}`;
  const reconnect = { initialDelay: 100, maxDelay: 400 };
  const join = (c, joins) => (t, since_offset, epoch) => {
    const p = c.request('join', { room, since_offset, epoch }, { reply: 'joined' });
    p.then((j) => joins.push({ since_offset: since_offset ?? null, epoch: epoch ?? null, replayed: j.replayed, gap: j.gap }), () => {});
    return p;
  };
  const adaWS = gated();
  const ada = track(recorded(`${url}?name=ada`, { WebSocket: adaWS, reconnect, connectTimeout: 2000 }));
  const bob = track(recorded(`${url}?name=bob`, { reconnect, connectTimeout: 2000 }));
  const adaJoins = [];
  const got = [];
  const adaSub = ada.subscribe(topic, { resubscribe: join(ada, adaJoins), onMessage: (m) => got.push([m.offset, m.data.text]) });
  const bobSub = bob.subscribe(topic, { resubscribe: join(bob, []) });
  await Promise.all([once(adaSub, 'subscribed'), once(bobSub, 'subscribed')]);
  const who = await bob.request('who', { room }, { reply: 'who' });
  assert.deepEqual(who.users.sort(), ['ada', 'bob']);
  for (const text of ['m1', 'm2', 'm3']) bob.send({ type: 'say', room, text });
  await until(() => got.length === 3, 'm1..m3');
  const epoch = adaSub.epoch;

  // kill -9; ada stays away (gate closed) until bob's offline messages are stored
  adaWS.gate.open = false;
  const killed = step('kill');
  await until(() => ada.state === 'reconnecting' && bob.state === 'reconnecting', 'both reconnecting');
  for (const text of ['m4', 'm5', 'm6']) assert.equal(bob.send({ type: 'say', room, text }), true);
  assert.equal(bob.queued, 3);
  await killed; // restarted
  await until(() => bobSub.offset === 6, "bob's queued messages stored and seen", 15000);
  adaWS.gate.open = true;
  await until(() => got.length === 6, 'ada recovered m4..m6', 15000);
  bob.send({ type: 'say', room, text: 'm7' });
  await until(() => got.length === 7, 'm7 live');
  const adaClose1 = ada.named('close')[0];

  // SIGTERM: 1001 going away, one immediate retry, then backoff until the new server
  const termed = step('term');
  const closeTerm = await once(ada, 'close', 10000);
  await termed;
  await until(() => ada.state === 'open' && bob.state === 'open' && adaSub.state === 'active', 'back after the drain', 15000);
  bob.send({ type: 'say', room, text: 'm8' });
  await until(() => got.length === 8, 'm8');
  const recTerm = ada.log.filter((e) => e[0] === 'reconnecting' && e[2] >= ada.log.find((x) => x[1] === closeTerm)[2]).map((e) => e[1]);

  assert.deepEqual(got, [[1, 'm1'], [2, 'm2'], [3, 'm3'], [4, 'm4'], [5, 'm5'], [6, 'm6'], [7, 'm7'], [8, 'm8']]);
  assert.equal(adaSub.epoch, epoch, 'the stored topic kept its epoch');
  assert.equal(adaSub.duplicates, 0);
  assert.equal(ada.named('gap').length, 0);
  assert.equal(adaClose1.code, 1006);
  assert.deepEqual(adaJoins[0], { since_offset: null, epoch: null, replayed: 0, gap: false });
  const recovery = adaJoins.find((j) => j.since_offset === 3);
  assert.deepEqual(recovery, { since_offset: 3, epoch, replayed: 3, gap: false });
  assert.equal(closeTerm.code, 1001);
  assert.equal(closeTerm.decision, 'immediate');
  assert.deepEqual([recTerm[0].delay, recTerm[0].attempt], [0, 0]);
  assert.ok(recTerm.length >= 2, 'the immediate retry found no server, then backoff');
  return {
    offsets: got.map((g) => g[0]), texts: got.map((g) => g[1]), joins: adaJoins, epoch,
    close1: adaClose1.code, closeTerm: { code: closeTerm.code, decision: closeTerm.decision },
    termDelays: recTerm.map((r) => r.delay),
  };
}

// ----------------------------------------------------------------------------- main

const scenarios = { requests, queue, closecodes, auth, restart };

async function main() {
  const name = process.argv[2];
  const fn = scenarios[name];
  if (!fn) throw new Error(`unknown scenario '${name}' (${Object.keys(scenarios).join(', ')})`);
  const res = await fn(arg('--base') || arg('--url'));
  process.stdout.write(JSON.stringify({ ok: true, scenario: name, ...res }) + '\n');
}

main().then(() => {
  for (const c of clients) c.close();
  process.exit(0);
}, (e) => {
  for (const c of clients) c.close();
  process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.stack || e) }) + '\n');
  process.exit(1);
});
