// The inbox page: the user's notifications, newest first, a page at a time; new ones
// arrive live (and what came while the page was closed is delivered when it connects);
// reading one, or all, is sent to the server, which tells every tab of the user, so
// the unread count is the same everywhere. Over client/edgews.js (reconnects; what is
// sent while offline waits in its queue).
import { EdgeWS } from './client/edgews.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const server = params.get('server') || location.origin.replace(/^http/, 'ws');
const pageSize = Math.min(50, Math.max(1, Number(params.get('pageSize')) || 10));

let client = null;
let offset = 0; // of the page shown
let total = 0;
let unread = 0;
let items = []; // the page shown (newest first)
const known = new Set(); // ids the unread count already covers
let expiryTimer = null;

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
}

const ago = (ms) => {
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
};
const until = (ms) => {
  const s = Math.max(0, Math.round((ms - Date.now()) / 1000));
  return s < 60 ? `${s} s` : s < 3600 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
};

// ------------------------------------------------------------------ data

function load() {
  client.request('inbox', { offset, limit: pageSize }, { reply: 'inbox', timeout: 8000 }).then((r) => {
    if (r.offset !== offset) return; // an older page's answer
    total = r.total;
    unread = r.unread;
    items = r.items;
    for (const n of items) known.add(n.id);
    render();
  }, () => {});
}

function onNotification(m) {
  if (known.has(m.id)) return;
  known.add(m.id);
  unread++;
  total++;
  const n = { id: m.id, created_at: m.created_at, state: 'delivered', data: m.data || {},
             expires_at: (m.data && m.data.expires_at) || undefined };
  if (offset === 0) {
    items.unshift(n);
    if (items.length > pageSize) items.pop();
  }
  if (n.data.priority === 'urgent') showUrgent(n);
  render();
}

function onRead(m) {
  const ids = new Set(m.ids || []);
  for (const n of items) if (m.all || ids.has(n.id)) n.state = 'read';
  unread = m.unread;
  const u = $('urgent');
  if (m.all || ids.has(Number(u.dataset.id))) u.hidden = true;
  render();
}

function markRead(ids) {
  for (const n of items) if (ids.includes(n.id)) n.state = 'read';
  client.send({ type: 'read', ids });
  render();
}

function showUrgent(n) {
  const u = $('urgent');
  u.dataset.id = n.id;
  u.replaceChildren(el('strong', {}, n.data.title || 'Urgent'), ' ', n.data.body || '',
    el('button', { type: 'button', onclick: () => { u.hidden = true; markRead([n.id]); } }, 'Dismiss'));
  u.hidden = false;
}

// ------------------------------------------------------------------ rendering

function render() {
  const b = $('badge');
  b.hidden = unread === 0;
  b.textContent = String(unread);
  b.setAttribute('aria-label', `${unread} unread`);
  document.title = unread > 0 ? `(${unread}) Inbox` : 'Inbox';
  $('read-all').disabled = unread === 0;
  $('summary').textContent = `${unread} unread of ${total}`;
  const now = Date.now();
  const shown = items.filter((n) => !n.expires_at || n.expires_at > now);
  $('items').replaceChildren(...(shown.length === 0 ? [el('li', { class: 'empty' }, 'Nothing here.')]
    : shown.map((n) => {
      const d = n.data || {};
      const prio = d.priority || 'normal';
      return el('li', { class: `item ${n.state} p-${prio}`, 'data-id': String(n.id), 'data-state': n.state },
        el('div', { class: 'head' },
          el('span', { class: `prio p-${prio}` }, prio),
          el('strong', { class: 'title' }, d.title || d.text || '(no title)'),
          el('span', { class: 'state' }, n.state)),
        d.body ? el('p', { class: 'body' }, d.body) : null,
        el('div', { class: 'meta' },
          el('time', { dateTime: new Date(n.created_at).toISOString() }, ago(n.created_at)),
          n.expires_at ? el('span', { class: 'expires' }, ` · expires in ${until(n.expires_at)}`) : null,
          n.state === 'read' ? null : el('button', { type: 'button', class: 'small',
            'aria-label': `Mark “${d.title || 'notification'}” read`, onclick: () => markRead([n.id]) }, 'Mark read')));
    })));
  const pages = Math.max(1, Math.ceil(total / pageSize));
  $('page').textContent = `page ${Math.floor(offset / pageSize) + 1} of ${pages}`;
  $('prev').disabled = offset === 0;
  $('next').disabled = offset + pageSize >= total;
  // reload when the next one expires (the server no longer lists it)
  clearTimeout(expiryTimer);
  const next = Math.min(...items.filter((n) => n.expires_at > now).map((n) => n.expires_at));
  if (Number.isFinite(next)) expiryTimer = setTimeout(() => { if (client.state === 'open') load(); else render(); }, next - now + 50);
}

// ------------------------------------------------------------------ start

function start(name) {
  localStorage.setItem('inbox:name', name);
  $('signin').hidden = true;
  $('app').hidden = false;
  $('me').textContent = name;
  client = new EdgeWS(`${server}/inbox?name=${encodeURIComponent(name)}`,
    { reconnect: { initialDelay: 500, maxDelay: 8000 } });
  window.inbox = { client }; // for the console
  for (const ev of ['open', 'close', 'reconnecting']) client.on(ev, showConn);
  client.on('open', load);
  client.on('message', (m) => {
    if (m && m.type === 'notification') onNotification(m);
    else if (m && m.type === 'read') onRead(m);
  });
  setInterval(showConn, 250);
  showConn();
  render();
}

$('signin').addEventListener('submit', (e) => {
  e.preventDefault();
  start($('signin-name').value.trim());
});
$('read-all').addEventListener('click', () => {
  for (const n of items) n.state = 'read';
  client.send({ type: 'read_all' });
  render();
});
$('prev').addEventListener('click', () => { offset = Math.max(0, offset - pageSize); load(); });
$('next').addEventListener('click', () => { offset += pageSize; load(); });

const initial = params.get('name') || localStorage.getItem('inbox:name');
if (initial && /^[A-Za-z0-9_-]{1,32}$/.test(initial)) start(initial);
else {
  $('signin').hidden = false;
  $('signin-name').focus();
}
