#!/usr/bin/env node
// Concurrent editors for examples/collab/app.lua: ot.js's own client state machine
// (npm `ot` 0.0.15: Synchronized / AwaitingConfirm / AwaitingWithBuffer) over Node
// `ws`, typing random edits (ASCII, multi-byte and astral characters, inserts,
// deletes and replacements) into one document with random delays, dropping their
// connections at random (sometimes right after sending an edit, so its ack is lost)
// and reconnecting with the last revision they have: the catch-up ops come in
// `joined`, their own op among them counts as its ack, and an operation still
// unacknowledged is resent with the same seq (ot.js's serverReconnect).
//
//   node collab_fuzz.js --url ws://127.0.0.1:P/collab --doc D [--clients 8] [--ops 40]
//        [--seed 1] [--max-delay 25] [--drop 0.06] [--cursor 0.2] [--timeout 60]
//        [--progress 50]
//   --urls U1,U2,... instead of --url: several instances of a cluster; client i
//        connects to U(i), and each reconnect goes to the next one (it rejoins on
//        another instance); the observer reads the document on every one.
//
// While running it prints `ACKS n` lines every --progress acknowledgements (a spec
// can kill the server at a known point; the clients then keep reconnecting until it
// is back). When every client has typed its ops and has nothing unacknowledged, an
// observer joins to read the server's text and revision, and the clients wait until
// they are at that revision. The last line is one JSON object:
//   { ok, server: {text, revision}, clients: [{client, user, text, revision,
//     acks: [[seq, revision]...], sent, reconnects, resends, cursors, workers, urls}],
//     errors: [...] }   (workers: the server workers its connections landed on;
//     urls: the indexes of the --urls it joined through)
// ok is true when every client's text equals the server's and nothing went wrong.
'use strict';
const WebSocket = require('ws');
const ot = require('ot');

const TextOperation = ot.TextOperation;
const Selection = ot.Selection;

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const URLS = (args.urls || args.url).split(',');
const DOC = args.doc || 'fuzz';
const N = +(args.clients || 8);
const OPS = +(args.ops || 40);
const SEED = +(args.seed || 1);
const MAX_DELAY = +(args['max-delay'] || 25);
const DROP = +(args.drop || 0.06);
const CURSOR = +(args.cursor || 0.2);
const TIMEOUT = +(args.timeout || 60) * 1000;
const PROGRESS = +(args.progress || 0);

// mulberry32: a small seeded PRNG, one stream per client
function rng(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const errors = [];
function fail(msg) {
  if (errors.length < 50) errors.push(msg);
}
let totalAcks = 0;
function progress() {
  totalAcks++;
  if (PROGRESS && totalAcks % PROGRESS === 0) process.stdout.write('ACKS ' + totalAcks + '\n');
}

const PIECES = ['a', 'b', 'c', 'x', ' ', '\n', 'é', 'ß', '中', '文', '😀', '🎉', '"', '\\', '\t'];
const isHigh = (c) => c >= 0xd800 && c <= 0xdbff;

// a position of doc that does not split a surrogate pair
function boundary(doc, p) {
  if (p > 0 && p < doc.length && isHigh(doc.charCodeAt(p - 1))) p--;
  return p;
}

function randomOp(doc, r) {
  const len = doc.length;
  const op = new TextOperation();
  let pos = boundary(doc, Math.floor(r() * (len + 1)));
  let del = 0;
  const kind = r();
  if (len > 0 && kind < 0.35) { // delete (or replace) a span
    const end = boundary(doc, Math.min(len, pos + 1 + Math.floor(r() * 6)));
    del = end - pos;
  }
  let ins = '';
  if (kind >= 0.25 || del === 0) {
    const n = 1 + Math.floor(r() * 4);
    for (let i = 0; i < n; i++) ins += PIECES[Math.floor(r() * PIECES.length)];
  }
  op.retain(pos);
  if (ins) op.insert(ins);
  if (del) op['delete'](del);
  op.retain(len - pos - del);
  return op;
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

class Editor extends ot.Client {
  constructor(i) {
    super(0);
    this.i = i;
    this.user = 'u' + i;
    this.id = 'c' + i + '-' + SEED;
    this.r = rng(SEED * 7919 + i);
    this.doc = '';
    this.seq = 0;
    this.outSeq = 0;
    this.ws = null;
    this.joined = false;
    this.everJoined = false;
    this.resending = false;
    this.acks = [];
    this.sent = 0;
    this.reconnects = 0;
    this.resends = 0;
    this.cursors = 0;
    this.typing = true;
    this.stopped = false;
    this.dropNext = false;
    this.workers = {};
    this.urls = {};
    this.url = i % URLS.length;
    this.retries = 0;
  }

  sendOperation(revision, operation) {
    if (!this.resending) this.outSeq = ++this.seq;
    else this.resends++;
    if (!this.joined) return; // resent after the reconnect
    this.sent++;
    this.ws.send(JSON.stringify({ type: 'edit', doc: DOC, revision, operation: operation.toJSON(),
                                  seq: this.outSeq, id: this.outSeq }));
    if (this.dropNext) { // lose the ack: the connection goes before it can arrive
      this.dropNext = false;
      this.ws.terminate();
    }
  }

  applyOperation(operation) {
    this.doc = operation.apply(this.doc);
  }

  hasOutstanding() {
    return this.state instanceof ot.Client.AwaitingConfirm || this.state instanceof ot.Client.AwaitingWithBuffer;
  }

  ack(rev, seq, how) {
    if (!this.hasOutstanding()) return fail(`${this.id}: ${how} for revision ${rev} with nothing outstanding`);
    if (seq !== this.outSeq) return fail(`${this.id}: ${how} of seq ${seq}, outstanding seq ${this.outSeq}`);
    if (rev !== this.revision + 1) return fail(`${this.id}: ${how} at revision ${rev}, expected ${this.revision + 1}`);
    this.acks.push([seq, rev]);
    progress();
    this.serverAck();
  }

  remote(rev, json) {
    if (rev !== this.revision + 1) return fail(`${this.id}: op at revision ${rev}, expected ${this.revision + 1}`);
    this.applyServer(TextOperation.fromJSON(json));
  }

  onMessage(m) {
    if (m.type === 'welcome') {
      this.workers[m.worker] = true;
    } else if (m.type === 'joined') {
      if (m.text !== undefined) {
        if (this.everJoined) return fail(`${this.id}: rejoin at ${this.revision} got the whole text (reload)`);
        this.doc = m.text;
        this.revision = m.revision;
      } else {
        for (const o of m.ops) {
          if (o.client === this.id) this.ack(o.revision, o.seq, 'own op in the catch-up');
          else this.remote(o.revision, o.operation);
        }
        if (this.revision !== m.revision) fail(`${this.id}: at ${this.revision} after the catch-up to ${m.revision}`);
      }
      this.joined = this.everJoined = true;
      this.urls[this.url] = true;
      if (this.hasOutstanding()) {
        this.resending = true;
        this.serverReconnect();
        this.resending = false;
      }
    } else if (m.type === 'ack') {
      this.ack(m.revision, m.seq, 'ack');
    } else if (m.type === 'op') {
      if (m.client === this.id) this.ack(m.revision, m.seq, 'own op');
      else this.remote(m.revision, m.operation);
    } else if (m.type === 'cursor') {
      if (m.revision !== this.revision) return fail(`${this.id}: cursor at ${m.revision}, client at ${this.revision}`);
      if (m.selection === null) return;
      const sel = this.transformSelection(Selection.fromJSON(m.selection));
      for (const rg of sel.ranges) {
        if (rg.anchor > this.doc.length || rg.head > this.doc.length) fail(`${this.id}: cursor out of the document`);
      }
      this.cursors++;
    } else if (m.type === 'error') {
      // Transient refusals (the server starting or overloaded, storage, the rate):
      // a join is retried on a new connection, an edit is resent a little later.
      const transient = m.error === 'overloaded' || m.error === 'storage_failed' || m.error === 'rate_limited' ||
        m.error === 'unavailable';
      if (!transient) return fail(`${this.id}: error ${m.error}: ${m.message}`);
      this.retries++;
      if (!this.joined) { if (this.ws) this.ws.terminate(); return; }
      setTimeout(() => {
        if (this.joined && this.hasOutstanding()) {
          this.resending = true;
          this.serverReconnect();
          this.resending = false;
        }
      }, 50);
    }
  }

  connect() {
    if (this.stopped) return;
    const ws = new WebSocket(`${URLS[this.url]}?name=${this.user}`);
    this.ws = ws;
    ws.on('open', () => {
      const join = { type: 'join', doc: DOC, client: this.id };
      if (this.everJoined) join.revision = this.revision;
      ws.send(JSON.stringify(join));
    });
    ws.on('message', (data) => {
      if (this.ws !== ws) return;
      let m;
      try { m = JSON.parse(data); } catch (e) { return fail(`${this.id}: bad JSON ${data}`); }
      this.onMessage(m);
    });
    ws.on('error', () => {});
    ws.on('close', () => {
      if (this.ws !== ws) return;
      this.joined = false;
      if (this.stopped) return;
      this.reconnects++;
      this.url = (this.url + 1) % URLS.length;
      setTimeout(() => this.connect(), 20 + Math.floor(this.r() * 150));
    });
  }

  async type() {
    for (let k = 0; k < OPS; k++) {
      await sleep(Math.floor(this.r() * MAX_DELAY));
      if (this.joined && !this.hasOutstanding() && this.r() < CURSOR) {
        const p = boundary(this.doc, Math.floor(this.r() * (this.doc.length + 1)));
        const q = boundary(this.doc, Math.floor(this.r() * (this.doc.length + 1)));
        this.ws.send(JSON.stringify({ type: 'cursor', doc: DOC, revision: this.revision,
                                      selection: { ranges: [{ anchor: p, head: q }] } }));
      }
      const op = randomOp(this.doc, this.r);
      this.doc = op.apply(this.doc);
      const drop = this.joined && this.r() < DROP;
      // Synchronized: applyClient sends the op at once, and the connection goes right
      // after it (its ack is lost); otherwise the op is buffered and the drop loses
      // the outstanding one's ack.
      if (drop && !this.hasOutstanding()) this.dropNext = true;
      this.applyClient(op);
      this.dropNext = false;
      if (drop && this.ws) this.ws.terminate();
    }
    this.typing = false;
  }
}

function observe(url) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url}?name=observer`);
    const timer = setTimeout(() => { ws.terminate(); resolve(null); }, 10000);
    ws.on('open', () => ws.send(JSON.stringify({ type: 'join', doc: DOC })));
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.type === 'joined') {
        clearTimeout(timer);
        ws.close();
        resolve({ text: m.text, revision: m.revision });
      }
    });
    ws.on('error', () => {});
    ws.on('close', () => { clearTimeout(timer); resolve(null); }); // (after joined: resolved already)
  });
}

async function waitFor(cond, ms) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(20);
  }
  return true;
}

(async () => {
  const deadline = Date.now() + TIMEOUT;
  const eds = [];
  for (let i = 0; i < N; i++) eds.push(new Editor(i));
  for (const e of eds) e.connect();
  await waitFor(() => eds.every((e) => e.everJoined), 10000);
  await Promise.all(eds.map((e) => e.type()));
  // nothing unacknowledged, everyone connected
  if (!await waitFor(() => eds.every((e) => e.joined && !e.hasOutstanding()), deadline - Date.now())) {
    fail('timed out waiting for every edit to be acknowledged: ' +
         eds.filter((e) => !e.joined || e.hasOutstanding()).map((e) => `${e.id} joined=${e.joined} seq=${e.outSeq}`).join(', '));
  }
  // the document as every instance serves it (an instance that is gone is skipped)
  let server = null;
  const observed = [];
  for (let u = 0; u < URLS.length; u++) {
    let got = null;
    for (let i = 0; i < 50 && !got; i++) {
      got = await observe(URLS[u]);
      if (!got) await sleep(100);
    }
    if (!got) continue;
    observed.push(u);
    if (!server) server = got;
    else if (got.text !== server.text || got.revision !== server.revision) {
      fail(`instance ${u} serves revision ${got.revision}, instance ${observed[0]} ${server.revision} (or the texts differ)`);
    }
  }
  if (!server) fail('the observer could not read the document');
  else if (!await waitFor(() => eds.every((e) => e.revision === server.revision), 10000)) {
    fail('clients did not reach the server revision ' + server.revision + ': ' + eds.map((e) => e.revision).join(','));
  }
  for (const e of eds) {
    e.stopped = true;
    if (e.ws) e.ws.close();
  }
  const clients = eds.map((e) => ({ client: e.id, user: e.user, text: e.doc, revision: e.revision, acks: e.acks,
                                    sent: e.sent, reconnects: e.reconnects, resends: e.resends, cursors: e.cursors, retries: e.retries,
                                    workers: Object.keys(e.workers).map(Number), urls: Object.keys(e.urls).map(Number) }));
  if (server) {
    for (const c of clients) if (c.text !== server.text) fail(`${c.client}: text differs from the server's`);
  }
  const ok = errors.length === 0;
  process.stdout.write(JSON.stringify({ ok, server, observed, clients, errors }) + '\n');
  process.exit(ok ? 0 : 1);
})().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: false, errors: [String(e && e.stack || e)] }) + '\n');
  process.exit(1);
});
