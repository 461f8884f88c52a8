// The editor page: a textarea over examples/collab's protocol (README "Collaborative
// editing"). The client keeps ot.js's state machine:
//   synchronized       nothing of ours in flight
//   awaitingConfirm    one operation sent (`outstanding`), waiting for its ack
//   awaitingWithBuffer one in flight and later edits composed into `buffer`
// Received operations are transformed against outstanding and buffer before they are
// applied; so are the others' cursors. Edits made while offline wait in the same two
// slots; after a reconnect the page joins with its client id and revision, takes the
// catch-up (its own committed operation among it is its ack) and sends the outstanding
// operation again with the same seq (the server commits a seq once). Positions are
// UTF-16 code units, as the textarea's selectionStart/End and the server count them.
import { EdgeWS } from './client/edgews.js';
import * as ot from './ot.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const server = params.get('server') || location.origin.replace(/^http/, 'ws');
const area = $('text');

const st = {
  doc: null, // document name
  clientId: `c${Math.random().toString(36).slice(2, 10)}${Date.now().toString(36).slice(-4)}`,
  revision: null, // last revision received (null before the first join)
  text: '', // the textarea's value as we last saw it
  outstanding: null, // { op, seq }
  buffer: null, // op
  seq: 0, // the last seq used
  joined: false, // this connection has joined the document
  members: new Map(), // user -> { name, color }
  cursors: new Map(), // client -> { user, selection } in the textarea's coordinates
  me: null,
};
let client = null;
window.collab = st; // for the console (and the tests)

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'style') e.style.cssText = v;
    else if (k.startsWith('data-') || k.startsWith('aria-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function notice(text) {
  const n = $('notice');
  n.textContent = text;
  n.hidden = false;
  clearTimeout(notice.t);
  notice.t = setTimeout(() => { n.hidden = true; }, 6000);
}

function showConn() {
  const c = $('conn');
  let state = client ? client.state : 'connecting';
  let text;
  if (state === 'open') text = 'connected';
  else if (state === 'reconnecting') {
    const s = Math.max(0, Math.ceil(((client.nextReconnectAt || Date.now()) - Date.now()) / 1000));
    text = s > 0 ? `reconnecting in ${s} s` : 'reconnecting…';
  } else if (state === 'connecting') text = 'connecting…';
  else { text = 'offline'; state = 'offline'; }
  c.dataset.state = state;
  if (c.textContent !== text) c.textContent = text;
  const sync = !st.outstanding ? 'saved' : st.joined ? 'saving…' : 'unsaved changes (kept until the connection is back)';
  if ($('sync').textContent !== sync) $('sync').textContent = sync;
  $('sync').dataset.state = st.outstanding ? 'pending' : 'saved';
}

// ------------------------------------------------------------------ state machine

const mySelection = () => ({ ranges: [{ anchor: area.selectionDirection === 'backward' ? area.selectionEnd : area.selectionStart,
  head: area.selectionDirection === 'backward' ? area.selectionStart : area.selectionEnd }] });

// The selection goes with the edit only when nothing is buffered: otherwise the
// textarea's selection includes the buffered edits, which the server has not seen.
function sendOutstanding(withSelection = true) {
  if (!st.joined || !st.outstanding) return;
  client.send({ type: 'edit', doc: st.doc, revision: st.revision, operation: st.outstanding.op,
                seq: st.outstanding.seq, selection: withSelection && st.buffer === null ? mySelection() : undefined });
}

// A local edit (the textarea changed from st.text to its value).
function applyClient(op) {
  if (st.outstanding === null) {
    st.outstanding = { op, seq: ++st.seq };
    sendOutstanding();
  } else if (st.buffer === null) st.buffer = op;
  else st.buffer = ot.compose(st.buffer, op);
  for (const c of st.cursors.values()) c.selection = ot.transformSelection(c.selection, op);
}

function serverAck(revision) {
  st.revision = revision;
  if (st.buffer !== null) {
    st.outstanding = { op: st.buffer, seq: ++st.seq };
    st.buffer = null;
    sendOutstanding();
  } else {
    st.outstanding = null;
    sendCursor();
  }
}

// Someone else's operation at `revision` (it applies to revision - 1).
function serverOp(op, revision, author) {
  st.revision = revision;
  if (st.outstanding) {
    const [o1, op1] = ot.transform(st.outstanding.op, op);
    st.outstanding.op = o1;
    op = op1;
  }
  if (st.buffer) {
    const [b1, op2] = ot.transform(st.buffer, op);
    st.buffer = b1;
    op = op2;
  }
  applyServer(op);
  return op;
}

// Puts a (transformed) remote operation into the textarea, keeping our selection.
function applyServer(op) {
  sync(); // anything typed but not yet seen by the input event
  const start = ot.transformIndex(area.selectionStart, op);
  const end = ot.transformIndex(area.selectionEnd, op);
  const dir = area.selectionDirection;
  const top = area.scrollTop;
  st.text = ot.apply(st.text, op);
  area.value = st.text;
  if (document.activeElement === area) area.setSelectionRange(start, end, dir);
  else area.setSelectionRange(start, end, dir);
  area.scrollTop = top;
  for (const c of st.cursors.values()) c.selection = ot.transformSelection(c.selection, op);
}

// The textarea's value against what we last saw: a local edit.
function sync() {
  if (area.value === st.text) return;
  const op = ot.diff(st.text, area.value);
  st.text = area.value;
  if (!ot.isNoop(op)) applyClient(op);
}

// Moves a selection received at the server's revision into our coordinates.
function local(sel) {
  if (!sel) return sel;
  if (st.outstanding) sel = ot.transformSelection(sel, st.outstanding.op);
  if (st.buffer) sel = ot.transformSelection(sel, st.buffer);
  return sel;
}

let lastCursor = '';
function sendCursor() {
  if (!st.joined || st.outstanding) return; // an edit carries the selection
  const sel = mySelection();
  const key = JSON.stringify(sel) + st.revision;
  if (key === lastCursor) return;
  lastCursor = key;
  client.send({ type: 'cursor', doc: st.doc, revision: st.revision, selection: sel });
}

// ------------------------------------------------------------------ messages

function onJoined(m) {
  const first = st.revision === null;
  if (m.text !== undefined && (first || m.reload)) {
    if (!first) {
      // too far behind (or the server lost the document): start again from its text;
      // an operation of ours that seq shows as committed is in it, a later one is lost
      if (st.outstanding && (m.seq == null || m.seq < st.outstanding.seq)) notice('Your latest edits could not be merged and were dropped.');
    }
    st.outstanding = null;
    st.buffer = null;
    st.text = m.text;
    area.value = m.text;
    st.revision = m.revision;
    if (m.seq != null && m.seq > st.seq) st.seq = m.seq;
  } else {
    for (const e of m.ops || []) {
      if (e.client === st.clientId) {
        if (st.outstanding && e.seq === st.outstanding.seq) serverAck(e.revision); else st.revision = e.revision;
      } else {
        serverOp(e.operation, e.revision, e.user);
      }
    }
    st.revision = m.revision;
  }
  st.cursors.clear();
  for (const c of m.cursors || []) if (c.client !== st.clientId && c.selection) st.cursors.set(c.client, { user: c.user, selection: local(c.selection) });
  st.joined = true;
  area.disabled = false;
  lastCursor = '';
  sendOutstanding(); // again, same seq: committed once
  sendCursor();
  renderMarks();
  showConn();
}

function onMessage(m) {
  if (!m || typeof m !== 'object') return;
  if (m.doc !== undefined && m.doc !== st.doc && m.type !== 'presence') return;
  switch (m.type) {
    case 'welcome':
      st.me = m;
      st.members.set(m.user, { name: m.name, color: m.color });
      renderPeople();
      break;
    case 'joined': onJoined(m); break;
    case 'members':
      st.members = new Map(m.members.map((x) => [x.user, { name: x.name || x.user, color: x.color }]));
      renderPeople();
      renderMarks();
      break;
    case 'presence':
      if (m.channel !== `doc:${st.doc}`) return;
      for (const j of m.joins || []) st.members.set(j.user, { name: (j.meta && j.meta.name) || j.user, color: j.meta && j.meta.color });
      for (const u of m.leaves || []) {
        st.members.delete(u);
        for (const [k, c] of st.cursors) if (c.user === u) st.cursors.delete(k);
      }
      renderPeople();
      renderMarks();
      break;
    case 'ack':
      if (st.outstanding && m.seq === st.outstanding.seq) serverAck(m.revision);
      showConn();
      break;
    case 'op': {
      if (m.client === st.clientId) { // our own operation, through another connection
        if (st.outstanding && m.seq === st.outstanding.seq) serverAck(m.revision);
        break;
      }
      serverOp(m.operation, m.revision, m.user);
      if (m.selection) st.cursors.set(m.client, { user: m.user, selection: local(m.selection) });
      renderMarks();
      break;
    }
    case 'cursor':
      if (m.client === st.clientId) break;
      if (m.selection) st.cursors.set(m.client, { user: m.user, selection: local(m.selection) });
      else st.cursors.delete(m.client);
      renderMarks();
      break;
    case 'error':
      if (st.outstanding && m.seq === st.outstanding.seq) refused(m);
      else if (m.error !== 'rate_limited') notice(`The server refused a message: ${m.error}${m.message ? ` (${m.message})` : ''}`);
      break;
    default:
  }
}

// Our outstanding edit was refused: try again later when the server said so, without
// the selection when that was the problem; anything else means this page's state is
// wrong: start again from the server's text (our unsent edits are lost).
function refused(m) {
  const again = ['storage_failed', 'overloaded', 'rate_limited'];
  if (again.includes(m.error)) {
    setTimeout(() => sendOutstanding(), 1000);
  } else if (m.error === 'invalid_selection') {
    sendOutstanding(false);
  } else {
    notice(`Your latest edits were refused (${m.error}) and dropped; the document was reloaded.`);
    st.joined = false;
    st.revision = null;
    st.outstanding = null;
    st.buffer = null;
    client.send({ type: 'leave', doc: st.doc });
    join();
  }
}

function join() {
  client.send({ type: 'join', doc: st.doc, client: st.clientId, revision: st.revision === null ? undefined : st.revision });
}

// ------------------------------------------------------------------ rendering

function color(user) {
  const m = st.members.get(user);
  return (m && m.color) || '#888888';
}
function name(user) {
  const m = st.members.get(user);
  return (m && m.name) || user;
}

function renderPeople() {
  $('people').replaceChildren(...[...st.members].sort((a, b) => a[0].localeCompare(b[0])).map(([user, m]) =>
    el('li', { 'data-user': user },
      el('span', { class: 'swatch', style: `background:${m.color || '#888'}`, 'aria-hidden': 'true' }),
      st.me && user === st.me.user ? `${m.name || user} (you)` : (m.name || user))));
}

// The backdrop repeats the text with the others' selections as <mark>s and their
// carets as zero-width <span>s at the same character positions, under the
// transparent textarea (same font, padding and wrapping).
function renderMarks() {
  const text = st.text;
  const points = new Map(); // position -> list of events
  const add = (pos, ev) => {
    pos = Math.max(0, Math.min(text.length, pos));
    if (!points.has(pos)) points.set(pos, []);
    points.get(pos).push(ev);
  };
  for (const [id, c] of st.cursors) {
    if (!c.selection) continue;
    for (const r of c.selection.ranges) {
      const from = Math.min(r.anchor, r.head);
      const to = Math.max(r.anchor, r.head);
      if (to > from) { add(from, { open: id, user: c.user }); add(to, { close: id }); }
      add(r.head, { caret: id, user: c.user });
    }
  }
  const positions = [...points.keys()].sort((a, b) => a - b);
  const frag = [];
  const open = new Map(); // client -> user of selections open here
  let at = 0;
  const piece = (s) => {
    if (!s) return;
    if (open.size === 0) { frag.push(document.createTextNode(s)); return; }
    const [id, user] = [...open][open.size - 1];
    frag.push(el('mark', { 'data-client': id, style: `background:${color(user)}40` }, s));
  };
  for (const pos of positions) {
    piece(text.slice(at, pos));
    at = pos;
    for (const ev of points.get(pos)) {
      if (ev.close) open.delete(ev.close);
    }
    for (const ev of points.get(pos)) {
      if (ev.caret) {
        frag.push(el('span', { class: 'caret', 'data-client': ev.caret, 'data-user': ev.user, 'data-name': name(ev.user),
                                style: `--c:${color(ev.user)}` }));
      }
      if (ev.open) open.set(ev.open, ev.user);
    }
  }
  piece(text.slice(at));
  frag.push(document.createTextNode('\n')); // a last empty line is as tall as in the textarea
  $('marks').replaceChildren(...frag);
  $('backdrop').scrollTop = area.scrollTop;
}

// ------------------------------------------------------------------ start

function start(user, doc) {
  localStorage.setItem('collab:name', user);
  st.doc = doc;
  $('signin').hidden = true;
  $('app').hidden = false;
  $('doc-title').textContent = doc;
  document.title = `${doc} · edgews collab`;
  const colorParam = params.get('color');
  client = new EdgeWS(`${server}/collab?name=${encodeURIComponent(user)}${colorParam ? `&color=${encodeURIComponent(colorParam)}` : ''}`,
    { reconnect: { initialDelay: 500, maxDelay: 8000 } });
  window.collabClient = client;
  for (const ev of ['open', 'close', 'reconnecting']) client.on(ev, showConn);
  client.on('open', join);
  client.on('close', () => {
    st.joined = false;
    st.cursors.clear();
    renderMarks();
  });
  client.on('message', onMessage);
  setInterval(showConn, 250);
  showConn();
}

area.addEventListener('input', () => { sync(); renderMarks(); showConn(); });
let cursorTimer = null;
const cursorSoon = () => {
  if (cursorTimer) return;
  cursorTimer = setTimeout(() => { cursorTimer = null; sync(); sendCursor(); }, 50);
};
document.addEventListener('selectionchange', () => { if (document.activeElement === area) cursorSoon(); });
area.addEventListener('select', cursorSoon);
area.addEventListener('keyup', cursorSoon);
area.addEventListener('mouseup', cursorSoon);
area.addEventListener('scroll', () => { $('backdrop').scrollTop = area.scrollTop; });
$('signin').addEventListener('submit', (e) => {
  e.preventDefault();
  location.hash = $('signin-doc').value.trim();
  start($('signin-name').value.trim(), $('signin-doc').value.trim());
});

const initial = params.get('name') || localStorage.getItem('collab:name');
const initialDoc = decodeURIComponent(location.hash.slice(1)) || params.get('doc') || 'notes';
if (initial && /^[A-Za-z0-9_-]{1,32}$/.test(initial) && /^[A-Za-z0-9_\-.:/]{1,128}$/.test(initialDoc)) start(initial, initialDoc);
else {
  $('signin').hidden = false;
  $('signin-name').focus();
}
