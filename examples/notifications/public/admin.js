// The admin sender: one notification to a user or to everyone who has connected,
// with a priority and an expiry. Over client/edgews.js; the server accepts this
// socket from the loopback address only (or with ?key= when NOTIFY_ADMIN_KEY is set).
import { EdgeWS } from './client/edgews.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const server = params.get('server') || location.origin.replace(/^http/, 'ws');
const key = params.get('key');
const client = new EdgeWS(`${server}/admin${key ? `?key=${encodeURIComponent(key)}` : ''}`,
  { reconnect: { initialDelay: 500, maxDelay: 8000 } });

function showConn() {
  const c = $('conn');
  let state = client.state;
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
for (const ev of ['open', 'close', 'reconnecting']) client.on(ev, showConn);
setInterval(showConn, 250);

client.on('open', () => {
  client.request('users', {}, { reply: 'users', timeout: 5000 }).then((r) => {
    $('users').replaceChildren(...r.users.map((u) => Object.assign(document.createElement('option'), { value: u })));
  }, () => {});
});

function syncTarget() {
  const everyone = document.querySelector('input[name=target]:checked').value === 'everyone';
  $('to').disabled = everyone;
  $('to').required = !everyone;
}
for (const r of document.querySelectorAll('input[name=target]')) r.addEventListener('change', syncTarget);
syncTarget();

$('send').addEventListener('submit', async (e) => {
  e.preventDefault();
  const everyone = document.querySelector('input[name=target]:checked').value === 'everyone';
  const msg = { title: $('title').value, body: $('body').value || undefined, priority: $('priority').value,
                ttl: Number($('ttl').value) || undefined };
  if (everyone) msg.everyone = true; else msg.to = $('to').value.trim();
  $('result').textContent = 'sending…';
  try {
    const r = await client.request('send', msg, { reply: (m) => m.type === 'sent', timeout: 10000 });
    $('result').textContent = `sent to ${r.count} user(s), ${r.delivered} of them online now`;
    $('title').value = '';
    $('body').value = '';
  } catch (err) {
    $('result').textContent = `not sent: ${err.code} ${err.message || ''}`;
  }
});
