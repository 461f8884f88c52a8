// Type-checks client/edgews.d.ts against the way the README uses the client
// (spec/unit/client_spec.lua runs: tsc --noEmit --strict on this file). The lines after
// an expect-error directive at the end must be refused by the declarations.
import EdgeWSDefault, { EdgeWS, EdgeWSError, Subscription, backoffDelay, closeDecision, tokenExpiry } from '../../client/edgews.js';
import type { CloseInfo, Decision, GapEvent, PubMessage, ReconnectingEvent, State } from '../../client/edgews.js';

interface ChatLine { user: string; text: string }

const client = new EdgeWS('wss://chat.example.com/chat', {
  protocols: ['chat.v1'],
  token: async ({ reason }) => (reason === 'refresh' ? 'new' : 'old'),
  tokenIn: 'protocol',
  reconnect: { initialDelay: 500, maxDelay: 20000, stableAfter: 10000 },
  reconnectPolicy: ({ code }) => (code === 4000 ? 'stop' : undefined),
  queueLimit: 50,
  queueFull: 'drop-oldest',
  requestTimeout: 5000,
});
const same: typeof EdgeWS = EdgeWSDefault;
void same;

client.on('open', (e) => { const r: boolean = e.reconnected; void r; });
client.on('close', (e: CloseInfo) => { const d: Decision = e.decision; void d; });
client.on('reconnecting', (e: ReconnectingEvent) => { const ms: number = e.delay; void ms; });
client.on('gap', (g: GapEvent) => { const n: number = g.to - g.from; void n; });
client.on('error', (e) => { const code: string = e.code; void code; });
client.once('unauthorized', (e) => { const c: number = e.code; void c; });

const room: Subscription<ChatLine> = client.subscribe<ChatLine>('chat:lobby', {
  resubscribe: (topic, since_offset, epoch) =>
    client.request('join', { room: topic.slice(5), since_offset, epoch }, { reply: 'joined' }),
  unsubscribe: (topic) => client.send({ type: 'leave', room: topic.slice(5) }),
  onMessage: (m: PubMessage<ChatLine>) => { const t: string = m.data.text; void t; },
  onGap: (g) => { const why: string = g.reason; void why; },
});
room.on('message', (m) => { const u: string = m.data.user; void u; });
const pos: { epoch: string | null; offset: number | null } = room.position;
void pos;

async function use(): Promise<void> {
  const who = await client.request<{ users: string[] }>('who', { room: 'lobby' }, { reply: 'who', timeout: 2000 });
  const first: string | undefined = who.users[0];
  void first;
  try {
    await client.request('say', { room: 'lobby', text: 'hi' });
  } catch (e) {
    if (e instanceof EdgeWSError && e.code === 'timeout') return;
  }
  const ok: boolean = client.send('plain text');
  void ok;
  const st: State = client.state;
  const rs: number = client.readyState === EdgeWS.OPEN ? 1 : 0;
  const at: number | null = client.nextReconnectAt;
  void st; void rs; void at;
  await room.unsubscribe();
  client.close(1000, 'bye');
}
void use;

const d: number = backoffDelay(3, { initialDelay: 100 }, Math.random);
const dec: Decision = closeDecision(1001);
const exp: number | null = tokenExpiry('a.b.c');
void d; void dec; void exp;

// @ts-expect-error the type of a request is a string
client.request(42);
// @ts-expect-error tokenIn is one of three
new EdgeWS('ws://x/', { tokenIn: 'header' });
// @ts-expect-error an unknown event
client.on('opened', () => {});
// @ts-expect-error a decision is one of four
const bad: Decision = 'later';
void bad;
