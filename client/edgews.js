// edgews.js — the browser (and Node 20) client of edgews-lua. An ES module with no
// dependencies; edgews.d.ts beside it declares its types.
//
//   import { EdgeWS } from "./edgews.js";
//   const client = new EdgeWS("wss://example.com/live", { token: () => fetchToken() });
//   const news = client.subscribe("news", { onMessage: (m) => show(m.data) });
//   const who = await client.request("whoami", {}, { timeout: 5000 });
//
// Design. One EdgeWS object stands for a *session* that outlives sockets: it opens a
// WebSocket, and when that socket ends it decides from the close code what to do
// (stop, retry at once, back off, or wait for a new token), opens the next one and
// restores what the app had: authentication, every subscription from its last
// offset and epoch, then the messages the app sent while offline. The server's
// protocol is the one README.md documents (application layer, pub/sub, close
// codes); everything app-specific (how a topic is (re)subscribed) is a hook.
//
// - State machine: idle -> connecting -> open -> (closed by the server)
//   reconnecting -> connecting -> ...; unauthorized (waiting for a new token);
//   closing -> closed (client.close(), or a policy that stops). Each socket gets a
//   generation; callbacks of an older socket or of an abandoned async step are
//   ignored, so a late event can never touch the current connection.
// - Backoff: attempt n (0-based) waits a uniformly random time in
//   [0, min(maxDelay, initialDelay * factor^n)] ("full jitter"); the counter resets
//   once a connection has stayed open for stableAfter ms.
// - Subscriptions keep (epoch, offset) of the last message handed to the app. A pub
//   frame at or below it is a duplicate and dropped; one past the next offset waits
//   in a bounded reorder buffer for the missing ones (or a gap frame, or a timeout
//   that turns the hole into a gap event); a new epoch resets the position. So the
//   app sees each offset at most once, in increasing order, and every hole as a gap.
// - Requests carry a numeric `id`; the reply that echoes it settles the promise (an
//   error reply rejects with its code). For apps whose replies carry no id, a
//   request may name the reply's type instead (matched first come, first served:
//   the server runs one socket's messages in order).
// - Timers are only setTimeout/clearTimeout and the clock only Date.now(), so tests
//   can drive everything with fake timers.

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

const DEFAULTS = {
  protocols: [],
  token: undefined,
  tokenIn: 'query', // 'query' | 'protocol' | 'message'
  tokenParam: 'token',
  protocolPrefix: 'bearer.',
  authField: 'token',
  refresh: true,
  refreshMargin: 30000,
  reconnect: { initialDelay: 1000, maxDelay: 30000, factor: 2, stableAfter: 5000, maxAttempts: Infinity },
  reconnectPolicy: undefined,
  requestTimeout: 10000,
  connectTimeout: 10000,
  queueLimit: 100,
  queueFull: 'reject', // 'reject' | 'drop-oldest'
  reorderTimeout: 5000,
  maxReorder: 1000,
  binaryType: 'arraybuffer',
  WebSocket: undefined,
  autoConnect: true,
  random: Math.random,
};

/** An error with a machine-readable `code` (the server's error code, or the client's). */
export class EdgeWSError extends Error {
  constructor(code, message, extra) {
    super(message || code);
    this.name = 'EdgeWSError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/**
 * The delay before reconnect attempt `attempt` (0 = the first after a failure):
 * uniform in [0, min(maxDelay, initialDelay * factor^attempt)].
 */
export function backoffDelay(attempt, opts = {}, random = Math.random) {
  const o = { ...DEFAULTS.reconnect, ...opts };
  const ceiling = Math.min(o.maxDelay, o.initialDelay * Math.pow(o.factor, Math.max(0, attempt)));
  return random() * ceiling;
}

/**
 * What the client does after a connection ends with `code` (README: "Close codes and
 * reconnection"): 'stop', 'immediate', 'backoff' or 'auth' (no new connection until
 * the token provider gives a new token). `httpStatus` is the status of a refused
 * upgrade when the platform tells it (Node's `ws`; browsers report 1006 only).
 */
export function closeDecision(code, httpStatus) {
  if (code === 1000) return 'stop';
  if (code === 1001 || code === 1012) return 'immediate';
  if (code === 4401 || code === 4403) return 'auth';
  if (httpStatus === 401 || httpStatus === 403) return 'auth';
  return 'backoff';
}

function b64urlDecode(s) {
  let t = s.replace(/-/g, '+').replace(/_/g, '/');
  while (t.length % 4) t += '=';
  const bin = atob(t);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/** The expiry of a JWT in ms since the epoch (its `exp` claim), or null. */
export function tokenExpiry(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const claims = JSON.parse(b64urlDecode(parts[1]));
    return typeof claims.exp === 'number' && isFinite(claims.exp) ? claims.exp * 1000 : null;
  } catch (e) {
    return null;
  }
}

// A listener's exception: reported as uncaught (reportError where the platform has
// it, else thrown again from a timer), never into the client's own code.
function rethrowLater(e) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(e);
  else setTimeout(() => { throw e; }, 0);
}

class Emitter {
  constructor() { this._listeners = new Map(); }

  /** Adds a listener; returns this. */
  on(event, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    let l = this._listeners.get(event);
    if (!l) this._listeners.set(event, (l = []));
    l.push(fn);
    return this;
  }

  /** Removes a listener added with on() or once(); returns this. */
  off(event, fn) {
    const l = this._listeners.get(event);
    if (l) {
      const i = l.findIndex((f) => f === fn || f._orig === fn);
      if (i >= 0) l.splice(i, 1);
    }
    return this;
  }

  /** A listener called once. */
  once(event, fn) {
    const w = (...args) => { this.off(event, w); fn(...args); };
    w._orig = fn;
    return this.on(event, w);
  }

  // A listener that throws must not break the client's state: its error is thrown
  // again from a timer, where the platform reports it as uncaught.
  _emit(event, ...args) {
    const l = this._listeners.get(event);
    if (!l || l.length === 0) return false;
    for (const fn of l.slice()) {
      try { fn.apply(this, args); } catch (e) { rethrowLater(e); }
    }
    return true;
  }
}

/** One topic the app follows; created by client.subscribe(). */
export class Subscription extends Emitter {
  constructor(client, topic, opts) {
    super();
    this.client = client;
    this.topic = topic;
    this.epoch = opts.epoch == null ? null : String(opts.epoch);
    this.offset = opts.offset == null ? null : Number(opts.offset);
    this.state = 'pending'; // pending | active | error | closed
    this.duplicates = 0; // frames dropped as already delivered
    this._resubscribe = opts.resubscribe || defaultResubscribe(client);
    this._unsubscribe = opts.unsubscribe || defaultUnsubscribe(client);
    this._buffer = new Map(); // offset -> frame, waiting for the offsets before it
    this._holeTimer = null;
    if (opts.onMessage) this.on('message', opts.onMessage);
    if (opts.onGap) this.on('gap', opts.onGap);
    if (opts.onError) this.on('error', opts.onError);
  }

  /** The position to keep (e.g. in localStorage) and give back as {epoch, offset}. */
  get position() { return { epoch: this.epoch, offset: this.offset }; }

  /** Stops following the topic (calls the unsubscribe hook when connected). */
  unsubscribe() { return this.client._unsubscribe(this); }

  _clearBuffer() {
    this._buffer.clear();
    if (this._holeTimer) { clearTimeout(this._holeTimer); this._holeTimer = null; }
  }

  _deliver(m) {
    this.offset = m.offset;
    this._emit('message', m);
  }

  _gap(g) {
    this.client._emit('gap', g);
    this._emit('gap', g);
  }

  _onPub(m) {
    const offset = m.offset;
    if (typeof offset !== 'number' || !Number.isInteger(offset)) {
      this._emit('message', m); // not a sequenced frame: nothing to track
      return;
    }
    const epoch = m.epoch == null ? null : m.epoch;
    if (this.epoch !== null && epoch !== null && epoch !== this.epoch) {
      // A new epoch without a gap frame first (the topic was reset while we were
      // live): what we hold is superseded; the new epoch counts from 1.
      const previousEpoch = this.epoch;
      this._clearBuffer();
      this.epoch = epoch;
      this.offset = offset - 1;
      this._gap({ type: 'gap', topic: this.topic, epoch, previousEpoch, from: 1, to: offset - 1, reason: 'epoch' });
    }
    if (this.epoch === null && epoch !== null) this.epoch = epoch;
    if (this.offset === null) this.offset = offset - 1; // the first message sets the baseline
    if (offset <= this.offset || this._buffer.has(offset)) {
      this.duplicates++;
      return;
    }
    if (offset === this.offset + 1) {
      this._deliver(m);
      this._drain();
      return;
    }
    // a hole before this one: wait for it (bounded in count and time)
    this._buffer.set(offset, m);
    if (this._buffer.size > this.client._opts.maxReorder) {
      this._skipHole('overflow');
    } else if (!this._holeTimer) {
      this._holeTimer = setTimeout(() => { this._holeTimer = null; this._skipHole('timeout'); },
        this.client._opts.reorderTimeout);
    }
  }

  // The missing offsets are not coming: report them as a gap, deliver what waits.
  _skipHole(why) {
    if (this._buffer.size === 0) return;
    const first = Math.min(...this._buffer.keys());
    const from = this.offset + 1;
    this.offset = first - 1;
    this._gap({ type: 'gap', topic: this.topic, epoch: this.epoch, from, to: first - 1, reason: 'missing', why });
    this._drain();
  }

  _drain() {
    for (const k of this._buffer.keys()) if (k <= this.offset) this._buffer.delete(k);
    while (this._buffer.has(this.offset + 1)) {
      const m = this._buffer.get(this.offset + 1);
      this._buffer.delete(this.offset + 1);
      this._deliver(m);
    }
    if (this._holeTimer) { clearTimeout(this._holeTimer); this._holeTimer = null; }
    if (this._buffer.size > 0) {
      this._holeTimer = setTimeout(() => { this._holeTimer = null; this._skipHole('timeout'); },
        this.client._opts.reorderTimeout);
    }
  }

  _onGap(g) {
    const epoch = g.epoch == null ? null : g.epoch;
    const from = Number(g.from);
    const to = Number(g.to);
    if (g.reason === 'epoch' || (this.epoch !== null && epoch !== null && epoch !== this.epoch)) {
      // The topic's epoch is not ours: its messages come again from `from`.
      const previousEpoch = this.epoch;
      this._clearBuffer();
      this.epoch = epoch;
      this.offset = Number.isInteger(from) ? from - 1 : 0;
      this._gap({ ...g, previousEpoch });
      return;
    }
    if (g.reason === 'ahead') {
      // We hold offsets the topic never had: the next message is `from`.
      this._clearBuffer();
      if (epoch !== null) this.epoch = epoch;
      this.offset = from - 1;
      this._gap({ ...g });
      return;
    }
    if (!Number.isInteger(to)) return;
    if (this.epoch === null && epoch !== null) this.epoch = epoch;
    if (this.offset !== null && to <= this.offset) return; // nothing we lack
    this.offset = to;
    this._gap({ ...g });
    this._drain();
  }
}

function defaultResubscribe(client) {
  return (topic, since_offset, epoch) =>
    client.request('follow', { topic, since_offset, epoch }, { reply: 'following' });
}

function defaultUnsubscribe(client) {
  return (topic) => client.send({ type: 'unfollow', topic });
}

function isNode() {
  return typeof process !== 'undefined' && process.versions != null && process.versions.node != null;
}

let wsPackage = null; // the `ws` package's WebSocket, once loaded

async function resolveWebSocket(given) {
  if (given) return given;
  if (typeof globalThis.WebSocket === 'function') return globalThis.WebSocket;
  if (isNode()) {
    if (!wsPackage) {
      const name = 'ws'; // a variable: bundlers must not try to resolve it for browsers
      const mod = await import(name);
      wsPackage = mod.WebSocket || mod.default;
    }
    return wsPackage;
  }
  throw new EdgeWSError('no_websocket', 'no WebSocket implementation: pass options.WebSocket');
}

export class EdgeWS extends Emitter {
  constructor(url, options = {}) {
    super();
    if (typeof url !== 'string' && !(url instanceof URL)) throw new TypeError('EdgeWS: url must be a string');
    const o = { ...DEFAULTS, ...options };
    o.reconnect = options.reconnect === false ? false : { ...DEFAULTS.reconnect, ...(options.reconnect || {}) };
    o.protocols = typeof o.protocols === 'string' ? [o.protocols] : [...(o.protocols || [])];
    if (!['query', 'protocol', 'message'].includes(o.tokenIn)) {
      throw new TypeError("EdgeWS: tokenIn must be 'query', 'protocol' or 'message'");
    }
    if (o.tokenIn === 'protocol' && o.token != null && o.protocols.length === 0) {
      throw new TypeError("EdgeWS: tokenIn 'protocol' needs a real protocol in options.protocols as well");
    }
    if (!['reject', 'drop-oldest'].includes(o.queueFull)) {
      throw new TypeError("EdgeWS: queueFull must be 'reject' or 'drop-oldest'");
    }
    this._opts = o;
    this.url = String(url);
    this._state = 'idle';
    this._ws = null;
    this._gen = 0; // generation of the current connection attempt
    this._attempt = 0; // consecutive failures since the last stable connection
    this._everOpened = false;
    this._immediateAt = -Infinity;
    this._timers = { reconnect: null, connect: null, stable: null, refresh: null };
    this._token = typeof o.token === 'string' ? o.token : null;
    this._rejectedToken = null;
    this._httpStatus = null;
    this._openedAt = null;
    this._nextAttemptAt = null;
    this._seq = 0;
    this._pending = new Map(); // id -> request
    this._queue = []; // { data, req }
    this._subs = new Map(); // topic -> Subscription
    this._dropTopics = new Set(); // unsubscribed on this connection: late frames dropped
    this.user = null;
    this._onOnline = () => {
      if (this._state === 'reconnecting') this._connectNow('reconnect');
    };
    this._listenOnline(true);
    if (o.autoConnect) {
      this._state = 'connecting';
      Promise.resolve().then(() => { if (this._state === 'connecting' && !this._ws) this._connectNow('connect'); });
    }
  }

  // ------------------------------------------------------------------ public state

  /** 'idle' | 'connecting' | 'open' | 'reconnecting' | 'unauthorized' | 'closing' | 'closed' */
  get state() { return this._state; }

  /**
   * WebSocket-style: OPEN while open; CLOSING; CLOSED when idle or closed; CONNECTING
   * while connecting or waiting to (reconnecting, unauthorized).
   */
  get readyState() {
    switch (this._state) {
      case 'open': return OPEN;
      case 'closing': return CLOSING;
      case 'closed': case 'idle': return CLOSED;
      default: return CONNECTING;
    }
  }

  get protocol() { return this._ws && this._state === 'open' ? this._ws.protocol : ''; }
  get extensions() { return this._ws && this._state === 'open' ? this._ws.extensions : ''; }
  get bufferedAmount() { return this._ws ? this._ws.bufferedAmount : 0; }
  /** Messages waiting in the offline queue. */
  get queued() { return this._queue.length; }
  /** Consecutive failed attempts since the last stable connection. */
  get attempt() { return this._attempt; }
  /** When the next attempt is due (ms since the epoch) while reconnecting, else null. */
  get nextReconnectAt() { return this._state === 'reconnecting' ? this._nextAttemptAt : null; }
  /** The subscriptions, by topic. */
  get subscriptions() { return new Map(this._subs); }

  // ---------------------------------------------------------------- public methods

  /** Connects now (also to retry at once while waiting to reconnect). */
  connect() {
    if (this._state === 'open' || (this._state === 'connecting' && this._ws)) return this;
    if (this._state === 'closing') return this; // the close finishes first
    this._listenOnline(true);
    this._connectNow(this._everOpened ? 'reconnect' : 'connect');
    return this;
  }

  /** Closes for good (no reconnect): pending requests and queued messages fail with 'closed'. */
  close(code = 1000, reason = '') {
    if (this._state === 'closed' || this._state === 'closing') return;
    this._gen++;
    this._clearTimers();
    this._failQueue('closed', 'the client was closed');
    this._failPending(() => true, 'closed', 'the client was closed');
    this._listenOnline(false);
    const ws = this._ws;
    if (ws && (ws.readyState === OPEN || ws.readyState === CONNECTING)) {
      this._state = 'closing';
      try { ws.close(code, reason); } catch (e) { ws.close(); }
      // the socket's close event finishes (see _onSocketClose)
    } else {
      this._detach();
      this._finish({ code, reason, wasClean: true });
    }
  }

  /**
   * Sends a message: an object is sent as JSON, a string or binary data as it is.
   * While not connected it waits in the offline queue. Returns false when it was
   * refused (queue full under queueFull 'reject', or the client is closed).
   */
  send(data) {
    const payload = (typeof data === 'string' || isBinary(data)) ? data : JSON.stringify(data);
    return this._sendOrQueue(payload, null) === true;
  }

  /**
   * Sends {type, ...body, id} and resolves with the reply that carries the same id
   * (or, with opts.reply, the first later message of that type or matching that
   * function). Rejects with EdgeWSError: the server's code for an error reply, or
   * 'timeout', 'disconnected', 'queue_full', 'closed'.
   */
  request(type, body = {}, opts = {}) {
    if (typeof type !== 'string' || type === '') throw new TypeError('request: type must be a non-empty string');
    if (body === null || typeof body !== 'object') throw new TypeError('request: body must be an object');
    const id = ++this._seq;
    const data = JSON.stringify({ ...body, type, id });
    const timeout = opts.timeout != null ? opts.timeout : this._opts.requestTimeout;
    return new Promise((resolve, reject) => {
      const req = { id, type, reply: opts.reply || null, resolve, reject, sent: false, timer: null };
      this._pending.set(id, req);
      if (timeout > 0 && timeout !== Infinity) {
        req.timer = setTimeout(() => {
          this._dequeue(req);
          this._settle(req, new EdgeWSError('timeout', `no reply to '${type}' within ${timeout} ms`, { request: type }));
        }, timeout);
      }
      const r = this._sendOrQueue(data, req);
      if (r !== true) {
        this._settle(req, new EdgeWSError(r, r === 'closed' ? 'the client is closed' : 'the offline queue is full',
          { request: type }));
      }
    });
  }

  /**
   * Follows a topic across reconnects. opts: resubscribe(topic, since_offset, epoch,
   * sub) (called on every (re)connect; may return a promise of the server's reply,
   * whose {epoch, offset} sets a fresh subscription's position), unsubscribe(topic,
   * sub), onMessage, onGap, onError, epoch/offset (a position to start from).
   */
  subscribe(topic, opts = {}) {
    if (typeof topic !== 'string' || topic === '') throw new TypeError('subscribe: topic must be a non-empty string');
    if (this._subs.has(topic)) throw new Error(`subscribe: already subscribed to '${topic}'`);
    const sub = new Subscription(this, topic, opts);
    this._subs.set(topic, sub);
    if (this._state === 'open') this._resubscribeOne(sub);
    return sub;
  }

  // ------------------------------------------------------------ connection attempts

  _clearTimers() {
    for (const k of Object.keys(this._timers)) {
      if (this._timers[k]) { clearTimeout(this._timers[k]); this._timers[k] = null; }
    }
  }

  _setState(s) { this._state = s; }

  // Browsers: back online while waiting to reconnect -> try at once.
  _listenOnline(on) {
    if (typeof window === 'undefined' || typeof window.addEventListener !== 'function') return;
    if (on && !this._onlineListening) window.addEventListener('online', this._onOnline);
    if (!on && this._onlineListening) window.removeEventListener('online', this._onOnline);
    this._onlineListening = on;
  }

  async _connectNow(why) {
    const gen = ++this._gen;
    if (this._timers.reconnect) { clearTimeout(this._timers.reconnect); this._timers.reconnect = null; }
    this._setState('connecting');
    this._httpStatus = null;
    let WS, token;
    try {
      WS = await resolveWebSocket(this._opts.WebSocket);
      if (gen !== this._gen) return;
      token = await this._obtainToken(why);
      if (gen !== this._gen) return;
    } catch (e) {
      if (gen !== this._gen) return;
      const err = e instanceof EdgeWSError ? e : new EdgeWSError('token_error', `token provider failed: ${e && e.message}`, { cause: e });
      this._emit('error', err);
      if (err.code === 'no_websocket') this._finish({ code: 1006, reason: err.message, wasClean: false }); // retrying cannot help
      else this._afterEnd({ code: 1006, reason: err.message, wasClean: false, opened: false });
      return;
    }
    let url = this.url;
    let protocols = this._opts.protocols.slice();
    if (token != null && this._opts.tokenIn === 'query') {
      const u = new URL(url);
      u.searchParams.set(this._opts.tokenParam, token);
      url = u.toString();
    } else if (token != null && this._opts.tokenIn === 'protocol') {
      protocols = [this._opts.protocolPrefix + token, ...protocols];
    }
    let ws;
    try {
      ws = protocols.length ? new WS(url, protocols) : new WS(url);
    } catch (e) {
      this._emit('error', new EdgeWSError('socket_error', `cannot open a WebSocket: ${e && e.message}`, { cause: e }));
      this._afterEnd({ code: 1006, reason: String(e && e.message), wasClean: false, opened: false });
      return;
    }
    this._ws = ws;
    this._authed = this._opts.tokenIn !== 'message' || token == null;
    try { ws.binaryType = this._opts.binaryType; } catch (e) { /* read-only in some shims */ }
    if (this._opts.connectTimeout > 0) {
      this._timers.connect = setTimeout(() => {
        this._timers.connect = null;
        if (this._ws === ws) this._abandon(ws, 'connect timeout');
      }, this._opts.connectTimeout);
    }
    ws.onopen = () => {
      if (this._ws !== ws) return;
      if (!this._authed) {
        ws.send(JSON.stringify({ type: 'auth', [this._opts.authField]: token }));
      } else {
        this._ready(ws);
      }
    };
    ws.onmessage = (ev) => { if (this._ws === ws) this._onData(ev.data); };
    ws.onerror = (ev) => {
      if (this._ws !== ws) return;
      const m = /Unexpected server response: (\d{3})/.exec(String((ev && (ev.message || (ev.error && ev.error.message))) || ''));
      if (m) this._httpStatus = Number(m[1]);
    };
    ws.onclose = (ev) => {
      if (this._ws !== ws) return;
      this._onSocketClose(ev.code, ev.reason || '', !!ev.wasClean);
    };
  }

  // The token for the next connection: a new token after a rejection is kept from
  // the provider's answer; otherwise the provider is asked (on every connect).
  async _obtainToken(why) {
    const given = this._opts.token;
    if (given == null) return null;
    if (this._freshToken != null) {
      const t = this._freshToken;
      this._freshToken = null;
      this._token = t;
      return t;
    }
    if (typeof given !== 'function') return given;
    let t = await given({ reason: why });
    const exp = tokenExpiry(t);
    if (exp !== null && exp <= Date.now()) t = await given({ reason: 'expired' }); // once more
    if (typeof t !== 'string' || t === '') throw new EdgeWSError('token_error', 'the token provider gave no token');
    this._token = t;
    return t;
  }

  _abandon(ws, why) {
    // A socket that did not open (or authenticate) in time: drop it and go on as
    // if it had ended abnormally.
    this._detach();
    try { ws.close(); } catch (e) { /* already closing */ }
    this._onSocketCloseDetached(1006, why, false, false);
  }

  _detach() {
    const ws = this._ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
    }
    this._ws = null;
  }

  _ready(ws) {
    if (this._timers.connect) { clearTimeout(this._timers.connect); this._timers.connect = null; }
    const reconnected = this._everOpened;
    this._everOpened = true;
    this._openedAt = Date.now();
    this._connGen = (this._connGen || 0) + 1;
    this._setState('open');
    this._dropTopics.clear();
    const stable = this._opts.reconnect ? this._opts.reconnect.stableAfter : 0;
    this._timers.stable = setTimeout(() => { this._timers.stable = null; this._attempt = 0; }, stable);
    this._scheduleRefresh();
    for (const sub of this._subs.values()) this._resubscribeOne(sub);
    this._flush();
    if (this._state === 'open' && this._ws === ws) {
      this._emit('open', { reconnected, protocol: ws.protocol || '', extensions: ws.extensions || '', user: this.user });
    }
  }

  _onSocketClose(code, reason, wasClean) {
    const opened = this._openedAt !== null && this._state !== 'connecting';
    this._detach();
    this._onSocketCloseDetached(code, reason, wasClean, opened);
  }

  _onSocketCloseDetached(code, reason, wasClean, opened) {
    for (const k of ['connect', 'stable', 'refresh']) {
      if (this._timers[k]) { clearTimeout(this._timers[k]); this._timers[k] = null; }
    }
    this._openedAt = null;
    this._failPending((r) => r.sent, 'disconnected', 'the connection ended before the reply');
    for (const sub of this._subs.values()) {
      sub._clearBuffer();
      if (sub.state === 'active') sub.state = 'pending';
    }
    if (this._state === 'closing') {
      this._finish({ code, reason, wasClean });
      return;
    }
    this._afterEnd({ code, reason, wasClean, opened });
  }

  // Decides what follows the end of a connection or of a failed attempt.
  _afterEnd(info) {
    const { code, reason, wasClean, opened } = info;
    let decision = closeDecision(code, this._httpStatus);
    if (this._opts.reconnectPolicy) {
      const d = this._opts.reconnectPolicy({ code, reason, wasClean, httpStatus: this._httpStatus, attempt: this._attempt, decision });
      if (d === 'stop' || d === 'immediate' || d === 'backoff' || d === 'auth') decision = d;
    }
    if (!this._opts.reconnect) decision = 'stop';
    if (decision === 'backoff' || decision === 'immediate') {
      if (this._attempt >= this._opts.reconnect.maxAttempts) decision = 'stop';
    }
    const ev = { code, reason, wasClean, decision, willReconnect: decision !== 'stop' };
    if (decision === 'stop') {
      this._finish(ev);
      return;
    }
    if (decision === 'auth') {
      if (typeof this._opts.token !== 'function') {
        ev.willReconnect = false;
        this._emit('error', new EdgeWSError(code === 4403 ? 'token_expired' : 'auth_failed',
          `the server refused the token (${code}${reason ? ' ' + reason : ''}) and there is no token provider to ask`));
        this._finish(ev);
        return;
      }
      if (opened) this._emit('close', ev);
      this._waitForToken(code);
      return;
    }
    const now = Date.now();
    if (opened) this._emit('close', ev);
    // One immediate retry after a going-away from an open connection (attempt 0: it
    // is not a backoff step); a server that keeps going away right after accepting
    // gets the backoff instead.
    if (decision === 'immediate' && opened && now - this._immediateAt >= this._opts.reconnect.stableAfter) {
      this._immediateAt = now;
      this._scheduleReconnect(0, code, reason, 0);
    } else {
      const delay = backoffDelay(this._attempt, this._opts.reconnect, this._opts.random);
      this._attempt++;
      this._scheduleReconnect(delay, code, reason, this._attempt);
    }
  }

  _scheduleReconnect(delay, code, reason, attempt) {
    this._setState('reconnecting');
    this._nextAttemptAt = Date.now() + delay;
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      this._connectNow('reconnect');
    }, delay);
    this._emit('reconnecting', { attempt, delay, code, reason });
  }

  // After 4401/4403: ask the provider for a token other than the refused one; none
  // yet: ask again on the backoff schedule. No socket is opened meanwhile.
  _waitForToken(code) {
    const gen = ++this._gen;
    this._rejectedToken = this._token;
    this._setState('unauthorized');
    this._emit('unauthorized', { code });
    const ask = async () => {
      let t = null;
      try {
        t = await this._opts.token({ reason: code === 4403 ? 'expired' : 'rejected', code });
      } catch (e) {
        if (gen === this._gen) this._emit('error', new EdgeWSError('token_error', `token provider failed: ${e && e.message}`, { cause: e }));
      }
      if (gen !== this._gen) return;
      if (typeof t === 'string' && t !== '' && t !== this._rejectedToken) {
        this._freshToken = t;
        this._connectNow('reconnect');
        return;
      }
      const delay = backoffDelay(this._attempt, this._opts.reconnect, this._opts.random);
      this._attempt++;
      this._nextAttemptAt = Date.now() + delay;
      this._timers.reconnect = setTimeout(() => { this._timers.reconnect = null; ask(); }, delay);
    };
    ask();
  }

  _finish(ev) {
    this._clearTimers();
    this._gen++;
    this._setState('closed');
    this._failQueue('closed', 'the client is closed');
    this._failPending(() => true, 'closed', 'the client is closed');
    for (const sub of this._subs.values()) if (sub.state === 'active') sub.state = 'pending';
    this._emit('close', { decision: 'stop', ...ev, willReconnect: false });
  }

  // --------------------------------------------------------------- token refresh

  _scheduleRefresh() {
    if (!this._opts.refresh || typeof this._opts.token !== 'function') return;
    const exp = tokenExpiry(this._token);
    if (exp === null) return;
    const left = exp - Date.now();
    const lead = Math.min(this._opts.refreshMargin, Math.max(0, left) / 4);
    const delay = Math.max(0, left - lead);
    this._timers.refresh = setTimeout(() => { this._timers.refresh = null; this._refresh(); }, delay);
  }

  async _refresh() {
    const gen = this._connGen;
    let t;
    try {
      t = await this._opts.token({ reason: 'refresh' });
    } catch (e) {
      if (gen === this._connGen && this._state === 'open') {
        this._emit('error', new EdgeWSError('token_error', `token provider failed: ${e && e.message}`, { cause: e }));
      }
      return;
    }
    if (gen !== this._connGen || this._state !== 'open') return;
    if (typeof t !== 'string' || t === '' || t === this._token) return; // nothing new: the server decides at expiry
    try {
      const r = await this.request('auth:refresh', { token: t });
      if (gen !== this._connGen || this._state !== 'open') return;
      this._token = t;
      this._emit('auth', { refreshed: true, exp: r.exp, user: this.user });
      this._scheduleRefresh();
    } catch (e) {
      if (gen !== this._connGen || e.code === 'disconnected' || e.code === 'closed') return;
      this._emit('error', e);
    }
  }

  // ------------------------------------------------------------- sending, queueing

  // -> true (sent or queued) | 'queue_full' | 'closed'
  _sendOrQueue(data, req) {
    if (this._state === 'closed' || this._state === 'closing') return 'closed';
    const ws = this._ws;
    if (this._state === 'open' && ws && ws.readyState === OPEN) {
      ws.send(data);
      if (req) req.sent = true;
      return true;
    }
    if (this._queue.length >= this._opts.queueLimit) {
      if (this._opts.queueFull !== 'drop-oldest' || this._opts.queueLimit <= 0) return 'queue_full';
      const dropped = this._queue.shift();
      if (dropped.req) {
        this._settle(dropped.req, new EdgeWSError('queue_full', 'dropped from the full offline queue', { request: dropped.req.type }));
      }
      this._emit('error', new EdgeWSError('queue_full', 'the offline queue is full: its oldest message was dropped'));
    }
    this._queue.push({ data, req });
    return true;
  }

  _flush() {
    const q = this._queue;
    this._queue = [];
    for (let i = 0; i < q.length; i++) {
      const ws = this._ws;
      if (this._state !== 'open' || !ws || ws.readyState !== OPEN) {
        this._queue = q.slice(i).concat(this._queue);
        return;
      }
      ws.send(q[i].data);
      if (q[i].req) q[i].req.sent = true;
    }
  }

  _dequeue(req) {
    const i = this._queue.findIndex((e) => e.req === req);
    if (i >= 0) this._queue.splice(i, 1);
  }

  _failQueue(code, message) {
    const q = this._queue;
    this._queue = [];
    for (const e of q) if (e.req) this._settle(e.req, new EdgeWSError(code, message, { request: e.req.type }));
  }

  _failPending(pred, code, message) {
    for (const req of Array.from(this._pending.values())) {
      if (pred(req)) this._settle(req, new EdgeWSError(code, message, { request: req.type }));
    }
  }

  // Settles a request once: an Error rejects, anything else resolves.
  _settle(req, value) {
    if (!this._pending.has(req.id)) return;
    this._pending.delete(req.id);
    if (req.timer) clearTimeout(req.timer);
    if (value instanceof Error) req.reject(value); else req.resolve(value);
  }

  // ---------------------------------------------------------------------- receiving

  _onData(data) {
    if (typeof data !== 'string') {
      this._emit('message', data);
      return;
    }
    let m;
    try { m = JSON.parse(data); } catch (e) { this._emit('message', data); return; }
    if (m === null || typeof m !== 'object' || Array.isArray(m)) { this._emit('message', m); return; }
    const type = m.type;
    if (!this._authed) {
      if (type === 'auth:ok') {
        this._authed = true;
        this.user = m.user === undefined ? null : m.user;
        this._emit('auth', { refreshed: false, user: this.user });
        this._ready(this._ws);
        return;
      }
    }
    if ((type === 'pub' || type === 'gap') && typeof m.topic === 'string') {
      const sub = this._subs.get(m.topic);
      if (sub) {
        if (type === 'pub') sub._onPub(m); else sub._onGap(m);
        return;
      }
      if (this._dropTopics.has(m.topic)) return;
    }
    // With `reply`, a message carrying the id is the reply only when it is an error or
    // matches `reply`: apps whose replies carry no id may send other messages with ids
    // of their own (the chat example's notifications).
    const byId = m.id != null ? this._pending.get(m.id) : undefined;
    if (byId && (type === 'error' || !byId.reply || matchesReply(byId, m))) {
      const req = byId;
      if (type === 'error') {
        this._settle(req, new EdgeWSError(String(m.error), m.message || String(m.error), { details: m.details, reply: m, request: req.type }));
      } else {
        this._settle(req, m);
      }
      return;
    }
    if (type === 'error') {
      this._emit('error', new EdgeWSError(String(m.error), m.message || String(m.error), { details: m.details, reply: m }));
      return;
    }
    for (const req of this._pending.values()) {
      if (!req.sent || !req.reply) continue;
      if (matchesReply(req, m)) {
        this._settle(req, m);
        return;
      }
    }
    this._emit('message', m);
  }

  // ----------------------------------------------------------------- subscriptions

  _resubscribeOne(sub) {
    const gen = this._connGen;
    sub.state = 'pending';
    sub._clearBuffer();
    let r;
    try {
      r = sub._resubscribe(sub.topic, sub.offset == null ? undefined : sub.offset,
        sub.epoch == null ? undefined : sub.epoch, sub);
    } catch (e) {
      r = Promise.reject(e);
    }
    Promise.resolve(r).then((reply) => {
      if (gen !== this._connGen || this._subs.get(sub.topic) !== sub) return;
      if (reply && typeof reply === 'object') {
        if (sub.offset === null && Number.isInteger(reply.offset)) sub.offset = reply.offset;
        if (sub.epoch === null && typeof reply.epoch === 'string') sub.epoch = reply.epoch;
      }
      sub.state = 'active';
      sub._emit('subscribed', reply);
    }, (e) => {
      if (gen !== this._connGen || this._subs.get(sub.topic) !== sub) return;
      if (e && (e.code === 'disconnected' || e.code === 'closed')) return; // the next connection retries
      sub.state = 'error';
      const err = e instanceof EdgeWSError ? e : new EdgeWSError('subscribe_failed', String(e && e.message || e), { cause: e });
      err.topic = sub.topic;
      sub._emit('error', err);
      this._emit('error', err);
    });
  }

  _unsubscribe(sub) {
    if (this._subs.get(sub.topic) !== sub) return Promise.resolve(false);
    this._subs.delete(sub.topic);
    this._dropTopics.add(sub.topic);
    sub._clearBuffer();
    const was = sub.state;
    sub.state = 'closed';
    if (this._state !== 'open' || was === 'error') return Promise.resolve(true);
    try {
      return Promise.resolve(sub._unsubscribe(sub.topic, sub)).then(() => true);
    } catch (e) {
      return Promise.reject(e);
    }
  }
}

function matchesReply(req, m) {
  return typeof req.reply === 'string' ? req.reply === m.type : Boolean(req.reply(m));
}

function isBinary(d) {
  return (typeof ArrayBuffer !== 'undefined' && (d instanceof ArrayBuffer || ArrayBuffer.isView(d)))
    || (typeof Blob !== 'undefined' && d instanceof Blob);
}

EdgeWS.CONNECTING = CONNECTING;
EdgeWS.OPEN = OPEN;
EdgeWS.CLOSING = CLOSING;
EdgeWS.CLOSED = CLOSED;

export default EdgeWS;
