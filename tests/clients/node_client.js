#!/usr/bin/env node
// WebSocket test client built on Node `ws`. Every subcommand prints one JSON result
// line on stdout (the last line; `hold` prints {"event":"connected"} first) and exits
// 0 on success, 1 on failure.
//
//   echo       --url U [--sizes 0,125,...] [--binary]     byte-exact echo of random data
//   fragmented --url U [--binary] [--fragments N] [--size BYTES]
//              one message sent as N frames (ws.send(chunk, {fin:false}) ...); text
//              fragments are cut at byte offsets, so code points are split across frames
//   ping       --url U [--payload TEXT]                   ping, await the matching pong
//   close      --url U --code C [--reason R] [--expect C2] [--expect-reason R2]
//   protocol   --url U --offer a,b [--expect NAME]
//   send       --url U (--message M | --size N) [--binary] [--expect-close CODE]
//   hold       --url U [--seconds S] [--expect-code C]
//   pings      --url U --count N [--seconds S]           stay quiet (ws answers each ping
//              with a pong) until N pings from the server arrived or S seconds passed
//
// Options of every subcommand (without them nothing changes):
//   --ca FILE          wss://: trust only this CA (PEM) instead of Node's default CAs
//   --deflate          offer permessage-deflate (RFC 7692) with ws's defaults
//                      (client_max_window_bits without a value; ws's threshold 1024)
//   --pmd-server-no-context-takeover, --pmd-client-no-context-takeover,
//   --pmd-server-max-window-bits N, --pmd-client-max-window-bits N|bare|none,
//   --pmd-threshold BYTES
//                      ws perMessageDeflate options (each implies --deflate)
// The result line then also holds "extensions" (the 101's Sec-WebSocket-Extensions,
// null without one), "pmd" (the parameters ws accepted, or null) and "tls"
// ({version, cipher}) of the first connection.
//
// `ws` is resolved from the repository's node_modules (npm ci at the root) or NODE_PATH.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const WebSocket = require('ws');

// Connection options from the command line (set in main) and what the first
// connection negotiated.
const connectOpts = {};
let firstInfo = null;

function parseArgs(argv) {
  const cmd = argv[0];
  const o = {
    cmd, timeout: 10, sizes: '0,125,126,65535,65536,1048576', binary: false,
    fragments: 5, size: 70000, payload: 'ping-payload', code: 1000, reason: '',
    seconds: 30,
  };
  const numeric = new Set(['timeout', 'fragments', 'size', 'code', 'expect-code',
    'expect-close', 'seconds', 'count', 'pmd-server-max-window-bits', 'pmd-threshold']);
  const flags = new Set(['binary', 'deflate', 'pmd-server-no-context-takeover',
    'pmd-client-no-context-takeover']);
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const name = a.slice(2);
    if (flags.has(name)) {
      o[name.replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = true;
      continue;
    }
    if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
    const v = argv[++i];
    const key = name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    o[key] = numeric.has(name) ? Number(v) : v;
  }
  if (!o.url) throw new Error('--url is required');
  return o;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// A random Buffer of valid UTF-8, exactly `size` bytes: ASCII runs with 2-, 3- and
// 4-byte code points in between.
function randomText(size) {
  const parts = [];
  let left = size;
  while (left > 0) {
    const k = 2 + crypto.randomInt(3);
    if (left >= k) {
      let cp;
      if (k === 2) cp = 0x80 + crypto.randomInt(0x800 - 0x80);
      else if (k === 3) {
        do cp = 0x800 + crypto.randomInt(0x10000 - 0x800); while (cp >= 0xd800 && cp <= 0xdfff);
      } else cp = 0x10000 + crypto.randomInt(0x110000 - 0x10000);
      parts.push(Buffer.from(String.fromCodePoint(cp), 'utf8'));
      left -= k;
    }
    const run = Math.min(left, crypto.randomInt(301));
    if (run) {
      const b = crypto.randomBytes(run);
      for (let i = 0; i < run; i++) b[i] = 0x20 + (b[i] % 95);
      parts.push(b);
      left -= run;
    }
  }
  const out = Buffer.concat(parts);
  if (out.length !== size) throw new Error('randomText length bug');
  return out;
}

function payload(size, binary) {
  return binary ? crypto.randomBytes(size) : randomText(size);
}

function withTimeout(promise, secs, what) {
  let t;
  const timer = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`timeout: ${what}`)), secs * 1000);
  });
  return Promise.race([promise, timer]).finally(() => clearTimeout(t));
}

// ws options for --ca and the permessage-deflate options.
function setConnectOpts(o) {
  if (o.ca) connectOpts.ca = fs.readFileSync(o.ca);
  const pmd = {};
  let on = Boolean(o.deflate);
  if (o.pmdServerNoContextTakeover) { pmd.serverNoContextTakeover = true; on = true; }
  if (o.pmdClientNoContextTakeover) { pmd.clientNoContextTakeover = true; on = true; }
  if (o.pmdServerMaxWindowBits !== undefined) {
    pmd.serverMaxWindowBits = o.pmdServerMaxWindowBits;
    on = true;
  }
  if (o.pmdClientMaxWindowBits !== undefined) {
    const v = o.pmdClientMaxWindowBits;
    pmd.clientMaxWindowBits = v === 'bare' ? undefined : v === 'none' ? false : Number(v);
    on = true;
  }
  if (o.pmdThreshold !== undefined) { pmd.threshold = o.pmdThreshold; on = true; }
  if (on) connectOpts.perMessageDeflate = pmd;
}

// A connection with a queue of received messages and a promise for the close.
function open(url, protocols) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols || [], Object.assign({
      perMessageDeflate: false, maxPayload: 0, handshakeTimeout: 5000,
    }, connectOpts));
    let extHeader = null;
    ws.on('upgrade', (res) => { extHeader = res.headers['sec-websocket-extensions'] || null; });
    const conn = { ws, queue: [], waiters: [], closeInfo: null };
    conn.closed = new Promise((res) => {
      ws.on('close', (code, reason) => {
        conn.closeInfo = {
          close_code: code,
          close_reason: reason.toString(),
          close_received: Boolean(ws._closeFrameReceived),
        };
        for (const w of conn.waiters.splice(0)) w.reject(new Error(`closed ${code}`));
        res(conn.closeInfo);
      });
    });
    ws.on('message', (data, isBinary) => {
      const m = { data, isBinary };
      const w = conn.waiters.shift();
      if (w) w.resolve(m); else conn.queue.push(m);
    });
    ws.on('error', (err) => { conn.error = err.message; reject(err); });
    ws.on('open', () => {
      if (!firstInfo) {
        const pmd = ws._extensions && ws._extensions['permessage-deflate'];
        firstInfo = { extensions: extHeader, pmd: pmd ? pmd.params : null };
        const sock = ws._socket;
        if (sock && typeof sock.getCipher === 'function') {
          const c = sock.getCipher();
          firstInfo.tls = { version: sock.getProtocol(), cipher: c && c.name };
        }
      }
      resolve(conn);
    });
  });
}

function recv(conn, secs) {
  if (conn.queue.length) return Promise.resolve(conn.queue.shift());
  if (conn.closeInfo) return Promise.reject(new Error(`closed ${conn.closeInfo.close_code}`));
  return withTimeout(new Promise((resolve, reject) => conn.waiters.push({ resolve, reject })),
    secs, 'waiting for a message');
}

function sendP(ws, data, opts) {
  return new Promise((resolve, reject) => ws.send(data, opts, (e) => (e ? reject(e) : resolve())));
}

async function closeP(conn, code, reason, secs) {
  conn.ws.close(code, reason);
  return withTimeout(conn.closed, secs, 'close handshake');
}

function mismatch(sent, got) {
  if (sent.length !== got.length) return `length ${got.length}, expected ${sent.length}`;
  for (let i = 0; i < sent.length; i++) if (sent[i] !== got[i]) return `first difference at byte ${i}`;
  return 'differs';
}

const commands = {
  async echo(o) {
    const sizes = o.sizes.split(',').filter((s) => s !== '').map(Number);
    const conn = await open(o.url);
    const results = [];
    let ok = true;
    for (const n of sizes) {
      const data = payload(n, o.binary);
      const t = process.hrtime.bigint();
      await sendP(conn.ws, data, { binary: o.binary });
      const m = await recv(conn, o.timeout);
      const good = m.isBinary === o.binary && Buffer.compare(m.data, data) === 0;
      const r = { size: n, ok: good, ms: Number(process.hrtime.bigint() - t) / 1e6 };
      if (!good) r.error = m.isBinary !== o.binary ? `isBinary ${m.isBinary}` : mismatch(data, m.data);
      results.push(r);
      ok = ok && good;
    }
    const info = await closeP(conn, 1000, '', o.timeout);
    return [ok && info.close_code === 1000, { binary: o.binary, results, ...info }];
  },

  async fragmented(o) {
    const data = payload(o.size, o.binary);
    const n = Math.max(1, o.fragments);
    const step = Math.max(1, Math.ceil(data.length / n));
    // Cut points; for text each one is moved onto a UTF-8 continuation byte (when one
    // follows within 400 bytes), so code points are split across frames on purpose.
    const cuts = [];
    let splitCodePoints = 0;
    for (let c = step; c < data.length; c += step) {
      let at = c;
      if (!o.binary) {
        const limit = Math.min(data.length - 1, c + 400);
        while (at < limit && (data[at] & 0xc0) !== 0x80) at++;
        if ((data[at] & 0xc0) === 0x80) splitCodePoints++;
        else at = c;
      }
      if (at > (cuts.length ? cuts[cuts.length - 1] : 0)) cuts.push(at);
    }
    const frags = [];
    let prev = 0;
    for (const c of cuts) { frags.push(data.subarray(prev, c)); prev = c; }
    frags.push(data.subarray(prev));
    const conn = await open(o.url);
    for (let i = 0; i < frags.length; i++) {
      await sendP(conn.ws, frags[i], { binary: o.binary, fin: i === frags.length - 1 });
    }
    const m = await recv(conn, o.timeout);
    const good = m.isBinary === o.binary && Buffer.compare(m.data, data) === 0;
    const info = await closeP(conn, 1000, '', o.timeout);
    const res = { binary: o.binary, fragments: frags.length, size: data.length,
      split_code_points: splitCodePoints, ...info };
    if (!good) res.error = mismatch(data, m.data);
    return [good && info.close_code === 1000, res];
  },

  async ping(o) {
    const conn = await open(o.url);
    const want = Buffer.from(o.payload);
    const t = process.hrtime.bigint();
    const pong = withTimeout(new Promise((resolve) => {
      conn.ws.on('pong', (data) => { if (Buffer.compare(data, want) === 0) resolve(data); });
    }), o.timeout, 'pong');
    conn.ws.ping(want);
    await pong;
    const rtt = Number(process.hrtime.bigint() - t) / 1e6;
    await sendP(conn.ws, 'after-ping', {});
    const m = await recv(conn, o.timeout);
    await closeP(conn, 1000, '', o.timeout);
    return [m.data.toString() === 'after-ping', { payload: o.payload, pong: true, rtt_ms: rtt }];
  },

  async close(o) {
    const conn = await open(o.url);
    await sendP(conn.ws, 'before-close', {});
    await recv(conn, o.timeout);
    const info = await closeP(conn, o.code, o.reason, o.timeout);
    const expect = o.expect === undefined ? o.code : Number(o.expect);
    let ok = info.close_received && info.close_code === expect;
    if (o.expectReason !== undefined) ok = ok && info.close_reason === o.expectReason;
    return [ok, { sent_code: o.code, sent_reason: o.reason, ...info }];
  },

  async protocol(o) {
    const offer = o.offer.split(',').filter(Boolean);
    const conn = await open(o.url, offer);
    const proto = conn.ws.protocol || null;
    await sendP(conn.ws, 'proto-check', {});
    const m = await recv(conn, o.timeout);
    await closeP(conn, 1000, '', o.timeout);
    let ok = m.data.toString() === 'proto-check';
    if (o.expect !== undefined) ok = ok && proto === (o.expect === 'none' ? null : o.expect);
    return [ok, { offer, protocol: proto }];
  },

  async send(o) {
    const data = o.message !== undefined ? Buffer.from(o.message) : payload(o.size, o.binary);
    const conn = await open(o.url);
    let echoed = false;
    try {
      await sendP(conn.ws, data, { binary: o.binary });
      const m = await recv(conn, o.timeout);
      echoed = Buffer.compare(m.data, data) === 0;
    } catch (e) { /* closed by the server */ }
    let info;
    if (o.expectClose !== undefined) info = await withTimeout(conn.closed, o.timeout, 'server close');
    else info = await closeP(conn, 1000, '', o.timeout);
    const res = { size: data.length, echoed, ...info };
    if (o.expectClose !== undefined) return [info.close_received && info.close_code === o.expectClose, res];
    return [echoed, res];
  },

  async pings(o) {
    const conn = await open(o.url);
    const t = Date.now();
    const times = [];
    const want = o.count || 3;
    await withTimeout(new Promise((resolve) => {
      conn.ws.on('ping', () => {
        times.push((Date.now() - t) / 1000);
        if (times.length >= want) resolve();
      });
    }), o.seconds, 'pings').catch(() => {});
    const info = await closeP(conn, 1000, '', o.timeout);
    return [times.length >= want, { pings: times.length, at: times, ...info }];
  },

  async hold(o) {
    const conn = await open(o.url);
    emit({ event: 'connected' });
    const t = Date.now();
    let closed = true;
    const info = await withTimeout(conn.closed, o.seconds, 'server close').catch(() => {
      closed = false;
      return { close_code: null, close_received: false };
    });
    let ok = closed && info.close_received;
    if (o.expectCode !== undefined) ok = ok && info.close_code === o.expectCode;
    if (!closed) conn.ws.terminate();
    return [ok, { closed_by_server: closed, held: (Date.now() - t) / 1000, ...info }];
  },
};

async function main() {
  let o;
  const res = { client: 'node-ws' };
  try {
    o = parseArgs(process.argv.slice(2));
    res.cmd = o.cmd;
    res.url = o.url;
    if (!commands[o.cmd]) throw new Error(`unknown command ${o.cmd}`);
    setConnectOpts(o);
    const [ok, extra] = await commands[o.cmd](o);
    Object.assign(res, extra, { ok: Boolean(ok) });
  } catch (e) {
    res.ok = false;
    res.error = e.message;
    if (e.code) res.error_code = e.code;
  }
  if (firstInfo) Object.assign(res, firstInfo, { ok: res.ok });
  emit(res);
  process.exitCode = res.ok ? 0 : 1;
  // do not wait for lingering sockets/timers
  setImmediate(() => process.exit(process.exitCode));
}

main();
