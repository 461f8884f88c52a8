// The chat page: rooms (pub/sub topics with history), typing indicators, who is here
// (presence), direct messages (stored notifications) and unread counts, over
// client/edgews.js, which reconnects and resubscribes each room from the last offset
// it delivered. A message is sent with a client id (cid); until the room (or the
// server's dm:sent) shows it stored, it stays in the outbox, shown as "sending", and
// is sent again after a reconnect: nothing typed is lost, and a message that arrives
// twice (sent again after its first copy was stored) is shown once.
import { EdgeWS } from './client/edgews.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const server = params.get('server') || location.origin.replace(/^http/, 'ws');
const HISTORY = 50;
const TYPING_RESEND = 3000; // ms between typing=true while the user types
const TYPING_IDLE = 2500; // ms without a keystroke before typing=false
const TYPING_EXPIRE = 6000; // ms an indicator lives without a refresh

let me = null;
let client = null;
let gen = 0; // connection generation: what was sent on which connection
const rooms = new Map(); // room -> { sub, messages, cids, unread, live, members, typing }
const dms = new Map(); // peer -> { messages, ids, cids, unread }
const outbox = new Map(); // cid -> { kind: "room"|"dm", to, text, sentGen }
let current = null; // { kind: "room"|"dm", id }
let myStatus = 'online';

// ------------------------------------------------------------------ helpers

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-') || k.startsWith('aria-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

const newCid = () => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
const clock = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

function notice(text) {
  const n = $('notice');
  n.textContent = text;
  n.hidden = false;
  clearTimeout(notice.t);
  notice.t = setTimeout(() => { n.hidden = true; }, 5000);
}

function save() {
  localStorage.setItem('chat:rooms', JSON.stringify([...rooms.keys()]));
}

// ------------------------------------------------------------------ connection state

function showConn() {
  const c = $('conn');
  let text;
  let state = client ? client.state : 'connecting';
  if (state === 'open') text = 'connected';
  else if (state === 'reconnecting') {
    const s = Math.max(0, Math.ceil(((client.nextReconnectAt || Date.now()) - Date.now()) / 1000));
    text = s > 0 ? `reconnecting in ${s} s` : 'reconnecting…';
  } else if (state === 'connecting') text = 'connecting…';
  else if (state === 'unauthorized') text = 'signed out';
  else { text = 'offline'; state = 'offline'; }
  if (state !== 'open' && typeof navigator !== 'undefined' && navigator.onLine === false) text = 'offline (no network)';
  c.dataset.state = state;
  if (c.textContent !== text) c.textContent = text;
}

// ------------------------------------------------------------------ rooms

function room(name) {
  let r = rooms.get(name);
  if (r) return r;
  r = { sub: null, messages: [], cids: new Set(), unread: 0, live: false,
        members: new Map(), typing: new Map() };
  rooms.set(name, r);
  r.sub = client.subscribe(`chat:${name}`, {
    resubscribe: (topic, since_offset, epoch) => client.request('join',
      { room: name, since_offset, epoch, history: since_offset === undefined ? HISTORY : undefined },
      { reply: (m) => (m.type === 'joined' && m.room === name) || (m.type === 'error' && m.room === name) }),
    unsubscribe: () => client.send({ type: 'leave', room: name }),
    onMessage: (m) => roomMessage(name, m),
    onGap: (g) => system(name, `${g.to - g.from + 1} message(s) are no longer available (${g.reason})`),
  });
  r.sub.on('subscribed', () => {
    r.live = true;
    who(name);
    flushOutbox((o) => o.kind === 'room' && o.to === name);
  });
  save();
  renderRooms();
  return r;
}

function leaveRoom(name) {
  const r = rooms.get(name);
  if (!r) return;
  r.sub.unsubscribe();
  for (const t of r.typing.values()) clearTimeout(t);
  rooms.delete(name);
  for (const [cid, o] of outbox) if (o.kind === 'room' && o.to === name) outbox.delete(cid);
  save();
  if (current && current.kind === 'room' && current.id === name) {
    const next = rooms.keys().next().value;
    select(next ? { kind: 'room', id: next } : null);
  }
  renderRooms();
}

function roomMessage(name, m) {
  const r = rooms.get(name);
  if (!r) return;
  const d = m.data || {};
  if (d.cid) {
    if (d.user === me) outbox.delete(d.cid);
    if (r.cids.has(d.cid)) { render(); return; } // a copy sent again after a reconnect
    r.cids.add(d.cid);
  }
  r.messages.push({ offset: m.offset, time: m.time, user: d.user, text: d.text, cid: d.cid });
  if (r.messages.length > 500) r.messages.splice(0, r.messages.length - 500);
  stopTyping(name, d.user);
  if (r.live && d.user !== me && !isVisible('room', name)) r.unread++;
  renderRooms();
  if (isShown('room', name)) {
    render();
    if (r.live && d.user !== me) $('announce').textContent = `${d.user}: ${d.text}`;
  }
}

function system(name, text) {
  const r = rooms.get(name);
  if (!r) return;
  r.messages.push({ system: true, text, time: Date.now() });
  if (isShown('room', name)) render();
}

function who(name) {
  client.request('who', { room: name }, { reply: (m) => m.type === 'who' && m.room === name, timeout: 5000 })
    .then((w) => {
      const r = rooms.get(name);
      if (!r) return;
      r.members = new Map((w.members || w.users.map((u) => ({ user: u }))).map((m) => [m.user, m.status || 'online']));
      renderPeople();
      renderDms();
    }, () => {});
}

function onPresence(p) {
  const name = String(p.channel || '').replace(/^room:/, '');
  const r = rooms.get(name);
  if (!r) return;
  for (const j of p.joins || []) r.members.set(j.user, j.status || 'online');
  for (const u of p.updates || []) if (r.members.has(u.user)) r.members.set(u.user, u.status || 'online');
  for (const u of p.leaves || []) { r.members.delete(u); stopTyping(name, u); }
  renderPeople();
  renderDms();
}

// ------------------------------------------------------------------ typing

function onTyping(t) {
  const r = rooms.get(t.room);
  if (!r || t.user === me) return;
  clearTimeout(r.typing.get(t.user));
  if (t.typing) r.typing.set(t.user, setTimeout(() => stopTyping(t.room, t.user), TYPING_EXPIRE));
  else r.typing.delete(t.user);
  renderTyping();
}

function stopTyping(name, user) {
  const r = rooms.get(name);
  if (!r || !r.typing.has(user)) return;
  clearTimeout(r.typing.get(user));
  r.typing.delete(user);
  renderTyping();
}

const typingState = { room: null, sentAt: 0, idle: null };

function typed() {
  if (!current || current.kind !== 'room' || client.state !== 'open') return;
  const name = current.id;
  if (typingState.room !== name || Date.now() - typingState.sentAt > TYPING_RESEND) {
    if (typingState.room && typingState.room !== name) typingDone();
    client.send({ type: 'typing', room: name, typing: true });
    typingState.room = name;
    typingState.sentAt = Date.now();
  }
  clearTimeout(typingState.idle);
  typingState.idle = setTimeout(typingDone, TYPING_IDLE);
}

function typingDone() {
  clearTimeout(typingState.idle);
  if (typingState.room && rooms.has(typingState.room) && client.state === 'open') {
    client.send({ type: 'typing', room: typingState.room, typing: false });
  }
  typingState.room = null;
  typingState.sentAt = 0;
}

// ------------------------------------------------------------------ direct messages

function dm(peer) {
  let d = dms.get(peer);
  if (!d) {
    d = { messages: [], ids: new Set(), cids: new Set(), unread: new Set() };
    dms.set(peer, d);
  }
  return d;
}

// A stored direct message (a notification, or a row of the `dms` list): ours (a
// copy the server keeps for the sender) or someone else's.
function dmRow(row, live) {
  const data = row.data || {};
  const mine = data.from === me;
  const peer = mine ? data.to : data.from;
  if (!peer) return;
  const d = dm(peer);
  if (d.ids.has(row.id)) return;
  d.ids.add(row.id);
  if (data.cid && mine) outbox.delete(data.cid);
  if (data.cid && d.cids.has(`${data.from}:${data.cid}`)) return;
  if (data.cid) d.cids.add(`${data.from}:${data.cid}`);
  d.messages.push({ id: row.id, time: row.created_at, user: data.from, text: data.text, cid: data.cid });
  d.messages.sort((a, b) => a.time - b.time || a.id - b.id);
  if (!mine && row.state !== 'read') {
    if (isVisible('dm', peer)) markRead([row.id]);
    else {
      d.unread.add(row.id);
      if (live) notice(`New message from ${peer}`);
    }
  }
  renderDms();
  if (isShown('dm', peer)) {
    render();
    if (live && !mine) $('announce').textContent = `${data.from}: ${data.text}`;
  }
}

function markRead(ids) {
  if (ids.length > 0) client.send({ type: 'read', ids });
}

function loadDms() {
  client.request('dms', { limit: 100 }, { reply: 'dms', timeout: 5000 })
    .then((r) => { for (const row of r.items.slice().reverse()) dmRow(row, false); }, () => {});
}

// ------------------------------------------------------------------ sending

function sendOne(cid, o) {
  if (client.state !== 'open' || o.sentGen === gen) return;
  if (o.kind === 'room') {
    const r = rooms.get(o.to);
    if (!r || r.sub.state !== 'active') return; // sent once the room is (re)joined
    client.send({ type: 'say', room: o.to, text: o.text, cid });
  } else {
    client.send({ type: 'dm', to: o.to, text: o.text, cid });
  }
  o.sentGen = gen;
}

function flushOutbox(filter) {
  for (const [cid, o] of outbox) if (filter(o)) sendOne(cid, o);
}

function submit(text) {
  if (!current) return;
  const cid = newCid();
  const o = { kind: current.kind, to: current.id, text, sentGen: 0, time: Date.now() };
  outbox.set(cid, o);
  if (current.kind === 'room') typingDone();
  sendOne(cid, o);
  render();
}

// ------------------------------------------------------------------ rendering

function isShown(kind, id) { return current && current.kind === kind && current.id === id; }
function isVisible(kind, id) { return isShown(kind, id) && document.visibilityState !== 'hidden'; }

function select(c) {
  current = c;
  if (c) {
    if (c.kind === 'room') rooms.get(c.id).unread = 0;
    else {
      const d = dm(c.id);
      markRead([...d.unread]);
      d.unread.clear();
    }
    localStorage.setItem('chat:current', JSON.stringify(c));
  }
  renderRooms();
  renderDms();
  renderPeople();
  render();
}

function badge(n) {
  return n > 0 ? el('span', { class: 'badge', 'aria-label': `${n} unread` }, String(n)) : null;
}

function renderRooms() {
  const ul = $('rooms');
  ul.replaceChildren(...[...rooms].map(([name, r]) => el('li', {},
    el('button', { type: 'button', class: 'item', 'aria-current': isShown('room', name) ? 'true' : 'false',
                   onclick: () => select({ kind: 'room', id: name }) }, `# ${name}`, badge(r.unread)))));
  updateTitle();
}

function online(user) {
  for (const r of rooms.values()) if (r.members.has(user)) return r.members.get(user);
  return 'offline';
}

function renderDms() {
  const ul = $('dms');
  ul.replaceChildren(...[...dms].map(([peer, d]) => {
    const st = online(peer);
    return el('li', {}, el('button', { type: 'button', class: 'item', 'aria-current': isShown('dm', peer) ? 'true' : 'false',
      onclick: () => select({ kind: 'dm', id: peer }) },
    el('span', { class: `dot ${st}`, 'aria-label': st, title: st }), `@ ${peer}`, badge(d.unread.size)));
  }));
  updateTitle();
}

function renderPeople() {
  const ul = $('people');
  const r = current && current.kind === 'room' ? rooms.get(current.id) : null;
  $('people-title').textContent = r ? `People in #${current.id}` : 'People here';
  const people = r ? [...r.members].sort((a, b) => a[0].localeCompare(b[0])) : [];
  ul.replaceChildren(...people.map(([user, st]) => el('li', { class: 'person', 'data-user': user },
    el('span', { class: `dot ${st}`, 'aria-hidden': 'true' }),
    el('span', { class: 'name' }, user === me ? `${user} (you)` : user),
    el('span', { class: 'status' }, st),
    user === me ? null : el('button', { type: 'button', class: 'small', 'aria-label': `Message ${user}`,
      onclick: () => { dm(user); select({ kind: 'dm', id: user }); } }, 'message'))));
}

function renderTyping() {
  const r = current && current.kind === 'room' ? rooms.get(current.id) : null;
  const who = r ? [...r.typing.keys()].sort() : [];
  const text = who.length === 0 ? '' : who.length === 1 ? `${who[0]} is typing…`
    : who.length < 4 ? `${who.join(', ')} are typing…` : 'several people are typing…';
  if ($('typing').textContent !== text) $('typing').textContent = text;
}

function render() {
  const list = $('messages');
  $('leave').hidden = !current || current.kind !== 'room';
  $('say-form').hidden = !current;
  if (!current) {
    $('title').textContent = 'Join a room';
    list.replaceChildren();
    renderTyping();
    return;
  }
  const isRoom = current.kind === 'room';
  $('title').textContent = isRoom ? `# ${current.id}` : `@ ${current.id}`;
  const src = isRoom ? rooms.get(current.id) : dm(current.id);
  const items = src.messages.map((m) => m.system
    ? el('li', { class: 'system' }, m.text)
    : el('li', { class: m.user === me ? 'msg mine' : 'msg', 'data-cid': m.cid || '' },
      el('time', {}, clock(m.time)), el('b', {}, m.user), el('span', { class: 'text' }, m.text)));
  for (const [cid, o] of outbox) {
    if (o.kind === current.kind && o.to === current.id) {
      items.push(el('li', { class: 'msg mine pending', 'data-cid': cid },
        el('time', {}, clock(o.time)), el('b', {}, me), el('span', { class: 'text' }, o.text),
        el('span', { class: 'sending' }, ' (sending…)')));
    }
  }
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 40;
  list.replaceChildren(...items);
  if (atBottom) list.scrollTop = list.scrollHeight;
  renderTyping();
}

function updateTitle() {
  let n = 0;
  for (const r of rooms.values()) n += r.unread;
  for (const d of dms.values()) n += d.unread.size;
  document.title = n > 0 ? `(${n}) edgews chat` : 'edgews chat';
}

// ------------------------------------------------------------------ start

function start(name) {
  me = name;
  localStorage.setItem('chat:name', name);
  $('signin').hidden = true;
  $('app').hidden = false;
  $('me').hidden = false;
  $('me-name').textContent = name;
  client = new EdgeWS(`${server}/chat?name=${encodeURIComponent(name)}`,
    { reconnect: { initialDelay: 500, maxDelay: 8000 }, queueLimit: 200 });
  window.chat = { client, rooms, dms, outbox }; // for the console (and the tests)
  for (const ev of ['open', 'close', 'reconnecting', 'unauthorized']) client.on(ev, showConn);
  client.on('open', () => {
    gen++;
    loadDms();
    if (myStatus !== 'online') client.send({ type: 'status', status: myStatus });
    flushOutbox((o) => o.kind === 'dm');
    flushOutbox((o) => o.kind === 'room');
  });
  client.on('close', () => {
    for (const r of rooms.values()) {
      for (const t of r.typing.values()) clearTimeout(t);
      r.typing.clear();
    }
    renderTyping();
    render();
  });
  client.on('message', (m) => {
    if (!m || typeof m !== 'object') return;
    if (m.type === 'presence') onPresence(m);
    else if (m.type === 'typing') onTyping(m);
    else if (m.type === 'notification') dmRow({ id: m.id, created_at: m.created_at, data: m.data, state: 'delivered' }, true);
    else if (m.type === 'dm:sent' && m.cid && outbox.has(m.cid)) {
      const o = outbox.get(m.cid);
      outbox.delete(m.cid);
      const d = dm(o.to);
      if (!d.cids.has(`${me}:${m.cid}`)) {
        d.cids.add(`${me}:${m.cid}`);
        d.messages.push({ id: 0, time: o.time, user: me, text: o.text, cid: m.cid });
      }
      if (isShown('dm', o.to)) render();
    } else if (m.type === 'error') notice(`The server refused a message: ${m.error}`);
  });
  client.on('error', (e) => { if (e.code !== 'timeout') notice(`${e.code}: ${e.message}`); });
  setInterval(showConn, 250);
  showConn();

  let saved = [];
  try { saved = JSON.parse(localStorage.getItem('chat:rooms') || '[]'); } catch { saved = []; }
  const first = params.get('room');
  if (first && !saved.includes(first)) saved.unshift(first);
  if (saved.length === 0) saved = ['lobby'];
  for (const r of saved) room(r);
  let cur = null;
  try { cur = JSON.parse(localStorage.getItem('chat:current') || 'null'); } catch { cur = null; }
  if (first) cur = { kind: 'room', id: first };
  if (!cur || (cur.kind === 'room' && !rooms.has(cur.id))) cur = { kind: 'room', id: saved[0] };
  select(cur);
  $('say').focus();
}

$('signin').addEventListener('submit', (e) => {
  e.preventDefault();
  start($('signin-name').value.trim());
});
$('say-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('say').value.trim();
  if (text) submit(text);
  $('say').value = '';
});
$('say').addEventListener('input', () => { if ($('say').value) typed(); else typingDone(); });
$('say').addEventListener('blur', typingDone);
$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('join-room').value.trim();
  room(name);
  select({ kind: 'room', id: name });
  $('join-room').value = '';
});
$('dm-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const peer = $('dm-to').value.trim();
  dm(peer);
  select({ kind: 'dm', id: peer });
  $('dm-to').value = '';
  $('say').focus();
});
$('leave').addEventListener('click', () => { if (current && current.kind === 'room') leaveRoom(current.id); });
$('my-status').addEventListener('change', (e) => {
  myStatus = e.target.value;
  client.send({ type: 'status', status: myStatus });
});
// a notice goes after 5 s, or with Escape or a click
document.addEventListener('keydown', (e) => { if (e.key === 'Escape') $('notice').hidden = true; });
$('notice').addEventListener('click', () => { $('notice').hidden = true; });
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && current) select(current);
});

const initial = params.get('name') || localStorage.getItem('chat:name');
if (initial && /^[A-Za-z0-9_-]{1,32}$/.test(initial)) start(initial);
else {
  $('signin').hidden = false;
  $('signin-name').focus();
}
