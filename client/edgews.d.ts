// Type declarations of client/edgews.js, the browser and Node client of edgews-lua.
// README.md, section "Browser client (client/edgews.js)", documents the behaviour.

/** What the client does after a connection ends (see closeDecision). */
export type Decision = 'stop' | 'immediate' | 'backoff' | 'auth';

/** The client's state. */
export type State = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'unauthorized' | 'closing' | 'closed';

/** Why the token provider is asked. */
export type TokenReason = 'connect' | 'reconnect' | 'refresh' | 'expired' | 'rejected';

export interface TokenInfo {
  reason: TokenReason;
  /** The close code that refused the previous token (4401, 4403) when there was one. */
  code?: number;
}

/** A token, or a function giving one (it may return a promise). */
export type TokenProvider = string | ((info: TokenInfo) => string | Promise<string>);

/** The WebSocket constructor to use (browsers' WebSocket, or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  readonly extensions: string;
  readonly bufferedAmount: number;
  binaryType: string;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  onerror: ((ev: any) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean: boolean }) => void) | null;
  send(data: any): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ReconnectOptions {
  /** First backoff step in ms (default 1000). */
  initialDelay?: number;
  /** Cap of the backoff in ms (default 30000). */
  maxDelay?: number;
  /** Growth per step (default 2). */
  factor?: number;
  /** ms a connection must stay open for the backoff to start again from its first step (default 5000). */
  stableAfter?: number;
  /** Consecutive failed attempts before the client gives up (default Infinity). */
  maxAttempts?: number;
}

export interface CloseInfo {
  code: number;
  reason: string;
  wasClean: boolean;
  /** What the client decided (see closeDecision). */
  decision: Decision;
  willReconnect: boolean;
}

export interface PolicyInfo {
  code: number;
  reason: string;
  wasClean: boolean;
  /** Status of a refused upgrade when the platform tells it (Node's `ws`), else null. */
  httpStatus: number | null;
  /** Consecutive failed attempts so far. */
  attempt: number;
  /** The default decision. */
  decision: Decision;
}

export interface EdgeWSOptions {
  /** Subprotocols the app speaks (offered in this order). */
  protocols?: string | string[];
  /** The token, or a provider asked on every connect, before expiry and after a refusal. */
  token?: TokenProvider;
  /** How the token travels: ?token= (default), a `bearer.<token>` subprotocol, or a first `auth` message. */
  tokenIn?: 'query' | 'protocol' | 'message';
  /** Query parameter of tokenIn 'query' (default 'token'). */
  tokenParam?: string;
  /** Subprotocol prefix of tokenIn 'protocol' (default 'bearer.'). */
  protocolPrefix?: string;
  /** Field of the auth message of tokenIn 'message' (default 'token'; 'key' for API keys). */
  authField?: string;
  /** Send auth:refresh with a new token before the current one expires (default true). */
  refresh?: boolean;
  /** At most this many ms before expiry, and a quarter of the token's lifetime at most (default 30000). */
  refreshMargin?: number;
  /** Backoff settings, or false: never reconnect. */
  reconnect?: ReconnectOptions | false;
  /** Overrides the decision after a close: return a Decision, or undefined for the default. */
  reconnectPolicy?: (info: PolicyInfo) => Decision | undefined | void;
  /** Default request timeout in ms (default 10000; 0: none). */
  requestTimeout?: number;
  /** ms for a socket to open (and authenticate) before it counts as failed (default 10000). */
  connectTimeout?: number;
  /** Messages kept while offline (default 100). */
  queueLimit?: number;
  /** When the queue is full: refuse the new message (default) or drop the oldest. */
  queueFull?: 'reject' | 'drop-oldest';
  /** ms a subscription waits for a missing offset before it reports a gap (default 5000). */
  reorderTimeout?: number;
  /** Frames a subscription holds while waiting for a missing offset (default 1000). */
  maxReorder?: number;
  /** binaryType of the sockets (default 'arraybuffer'). */
  binaryType?: string;
  /** The WebSocket implementation (default: the global one, else the `ws` package under Node). */
  WebSocket?: WebSocketConstructor;
  /** Connect at once (default true); false: call connect(). */
  autoConnect?: boolean;
  /** Random source of the backoff jitter, in [0, 1) (default Math.random). */
  random?: () => number;
}

export interface RequestOptions {
  /** ms to wait for the reply (default: the client's requestTimeout; 0: forever). */
  timeout?: number;
  /** For replies without an id: the reply's type, or a test of a message. */
  reply?: string | ((message: any) => boolean);
}

/** A message of a followed topic, as the server sends it. */
export interface PubMessage<T = any> {
  type: 'pub';
  topic: string;
  epoch: string;
  offset: number;
  time: number;
  data: T;
}

/** A gap: offsets from..to of the topic will not be delivered. */
export interface GapEvent {
  type: 'gap';
  topic: string;
  epoch: string | null;
  from: number;
  to: number;
  /** 'retention' | 'limit' | 'epoch' | 'ahead' from the server; 'missing' from the client. */
  reason: string;
  /** For reason 'epoch': the epoch the client had. */
  previousEpoch?: string | null;
  /** For reason 'missing': 'timeout' or 'overflow'. */
  why?: string;
}

export interface Position {
  epoch: string | null;
  offset: number | null;
}

export interface SubscribeOptions<T = any> {
  /** Subscribes on the server; called on every (re)connect. Default: request('follow', {topic, since_offset, epoch}, {reply: 'following'}). */
  resubscribe?: (topic: string, since_offset: number | undefined, epoch: string | undefined, sub: Subscription<T>) => any;
  /** Unsubscribes on the server. Default: send({type: 'unfollow', topic}). */
  unsubscribe?: (topic: string, sub: Subscription<T>) => any;
  onMessage?: (message: PubMessage<T>) => void;
  onGap?: (gap: GapEvent) => void;
  onError?: (error: EdgeWSError) => void;
  /** Start from a stored position (e.g. sub.position kept in localStorage). */
  epoch?: string | null;
  offset?: number | null;
}

export interface OpenEvent {
  reconnected: boolean;
  protocol: string;
  extensions: string;
  user: any;
}

export interface ReconnectingEvent {
  /** The backoff step (1 = first); 0 for the immediate retry after 1001. */
  attempt: number;
  /** ms until the attempt. */
  delay: number;
  code: number;
  reason: string;
}

export interface AuthEvent {
  refreshed: boolean;
  user: any;
  exp?: number;
}

export interface ClientEvents {
  open: OpenEvent;
  close: CloseInfo;
  reconnecting: ReconnectingEvent;
  unauthorized: { code: number };
  gap: GapEvent;
  error: EdgeWSError;
  message: any;
  auth: AuthEvent;
}

export interface SubscriptionEvents<T = any> {
  message: PubMessage<T>;
  gap: GapEvent;
  error: EdgeWSError;
  subscribed: any;
}

declare class Emitter<Events> {
  on<K extends keyof Events>(event: K, listener: (arg: Events[K]) => void): this;
  once<K extends keyof Events>(event: K, listener: (arg: Events[K]) => void): this;
  off<K extends keyof Events>(event: K, listener: (arg: Events[K]) => void): this;
}

export class EdgeWSError extends Error {
  constructor(code: string, message?: string, extra?: object);
  /** The server's error code, or the client's: 'timeout', 'disconnected', 'closed', 'queue_full', 'token_error', 'auth_failed', 'token_expired', 'socket_error', 'no_websocket', 'subscribe_failed'. */
  code: string;
  details?: any;
  /** The server's error reply. */
  reply?: any;
  /** The request's type. */
  request?: string;
  /** The topic of a failed (re)subscribe. */
  topic?: string;
}

export class Subscription<T = any> extends Emitter<SubscriptionEvents<T>> {
  readonly client: EdgeWS;
  readonly topic: string;
  /** Epoch and offset of the last message delivered (null before the first). */
  readonly epoch: string | null;
  readonly offset: number | null;
  readonly state: 'pending' | 'active' | 'error' | 'closed';
  /** Frames dropped because they had been delivered already. */
  readonly duplicates: number;
  readonly position: Position;
  unsubscribe(): Promise<boolean>;
}

export class EdgeWS extends Emitter<ClientEvents> {
  constructor(url: string | URL, options?: EdgeWSOptions);
  static readonly CONNECTING: 0;
  static readonly OPEN: 1;
  static readonly CLOSING: 2;
  static readonly CLOSED: 3;
  readonly url: string;
  readonly state: State;
  readonly readyState: 0 | 1 | 2 | 3;
  readonly protocol: string;
  readonly extensions: string;
  readonly bufferedAmount: number;
  /** Messages waiting in the offline queue. */
  readonly queued: number;
  /** Consecutive failed attempts since the last stable connection. */
  readonly attempt: number;
  /** When the next attempt is due (ms since the epoch) while reconnecting, else null. */
  readonly nextReconnectAt: number | null;
  readonly subscriptions: Map<string, Subscription>;
  /** The user of first-message auth (auth:ok), else null. */
  readonly user: any;
  connect(): this;
  close(code?: number, reason?: string): void;
  send(data: string | ArrayBuffer | ArrayBufferView | Blob | object): boolean;
  request<R = any>(type: string, body?: object, options?: RequestOptions): Promise<R>;
  subscribe<T = any>(topic: string, options?: SubscribeOptions<T>): Subscription<T>;
}

export function backoffDelay(attempt: number, options?: ReconnectOptions, random?: () => number): number;
export function closeDecision(code: number, httpStatus?: number | null): Decision;
export function tokenExpiry(token: string): number | null;

export default EdgeWS;
