/* api_client.c — outbound WebSocket connections for Lua (edgews.client, the pool's
 * connections): the Lua layer as the owner of net/client.h connections
 * (net->client_ops) and the core.client_* functions lua/edgews/client.lua calls.
 *
 * A Lua client is a full userdata holding a pointer to an ews_lclient_t: the
 * connection (NULL once net freed it), the messages received and not yet taken (a
 * FIFO; past QUEUE_MAX messages the connection stops reading, so a slow reader
 * pushes back on the server through TCP), and the task parked in connect or receive
 * with its timeout timer. Waiting is cosocket style: connect and receive park the
 * running task (a handler, a timer, a bus task) and the connection's events resume it
 * from the libuv callback; nothing here calls Lua from inside a function Lua called.
 * The record is freed when both sides let go: the connection's `free` and the
 * userdata's __gc (which closes a connection still open with 1001). Every record is
 * on the VM's list, so worker shutdown closes what is left (ews_lclients_close_all).
 *
 * Per worker: a connection belongs to the loop of the worker that opened it, like a
 * server connection; there are no locks. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "log.h"
#include "lua/api.h"
#include "lua/tasks.h"
#include "net/client.h"
#include "net/tls.h"

#define QUEUE_MAX 256 /* queued messages before the connection stops reading */
#define LCLIENT_MT "edgews.client"
#define DEFAULT_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

enum { LC_CONNECTING = 0, LC_OPEN, LC_CLOSED };
enum { W_NONE = 0, W_CONNECT, W_RECEIVE, W_PONG };

typedef struct lmsg {
  struct lmsg *next;
  size_t len;
  int binary;
  char data[];
} lmsg_t;

typedef struct wait_timer {
  uv_timer_t t;
  struct ews_lclient *h; /* NULL once the wait ended another way */
} wait_timer_t;

typedef struct ews_lclient {
  ews_conn_t *c;
  ews_vm_t *w;
  struct ews_lclient *prev, *next; /* the VM's list */
  lmsg_t *head, *tail;
  size_t nq;
  ews_task_t *waiter;
  int wait_kind;
  wait_timer_t *timer;
  int state;
  int gc;                /* the userdata was collected */
  int err;               /* why it failed or ended (EWS_E*), 0 while fine */
  char reason[320];      /* the failure, or the close reason */
  unsigned close_code;
  int probe_status;      /* an HTTP probe's answer */
  char *protocol;
} ews_lclient_t;

/* ---- TLS client configurations, cached per worker thread by (ca_file, verify) --- */

typedef struct {
  char *ca;
  int verify;
  ews_tls_ctx_t *ctx;
} tls_cache_t;

static _Thread_local tls_cache_t tls_cache[8];

static ews_tls_ctx_t *tls_ctx_for(const char *ca, int verify, char **err) {
  for (int i = 0; i < 8; i++)
    if (tls_cache[i].ctx && tls_cache[i].verify == verify && !strcmp(tls_cache[i].ca, ca))
      return tls_cache[i].ctx;
  ews_tls_ctx_t *ctx = ews_tls_client_ctx_new(ca, verify, err);
  if (!ctx) return NULL;
  int slot = 0;
  while (slot < 8 && tls_cache[slot].ctx) slot++;
  if (slot == 8) { /* full: drop the oldest (connections hold their own reference) */
    ews_tls_ctx_unref(tls_cache[0].ctx);
    free(tls_cache[0].ca);
    memmove(tls_cache, tls_cache + 1, 7 * sizeof tls_cache[0]);
    slot = 7;
  }
  tls_cache[slot] = (tls_cache_t){strdup(ca), verify, ctx};
  if (!tls_cache[slot].ca) {
    ews_tls_ctx_unref(ctx);
    tls_cache[slot].ctx = NULL;
    return NULL;
  }
  return ctx;
}

/* ---- the record ------------------------------------------------------------------ */

static void free_queue(ews_lclient_t *h) {
  while (h->head) {
    lmsg_t *m = h->head;
    h->head = m->next;
    free(m);
  }
  h->tail = NULL;
  h->nq = 0;
}

static void close_timer(ews_lclient_t *h);

static void maybe_free(ews_lclient_t *h) {
  if (!h->gc || h->c || h->waiter) return;
  close_timer(h);
  if (h->prev) h->prev->next = h->next;
  else h->w->lclients = h->next;
  if (h->next) h->next->prev = h->prev;
  free_queue(h);
  free(h->protocol);
  free(h);
}

static void on_timer_closed(uv_handle_t *t) { free(t->data); }

/* The record's wait timer is made at its first wait with a timeout and kept for the
 * next ones (a receive loop arms it once per message): stopping only disarms it. */
static void stop_timer(ews_lclient_t *h) {
  if (h->timer) uv_timer_stop(&h->timer->t);
}

static void close_timer(ews_lclient_t *h) {
  if (!h->timer) return;
  h->timer->h = NULL;
  uv_timer_stop(&h->timer->t);
  uv_close((uv_handle_t *)&h->timer->t, on_timer_closed);
  h->timer = NULL;
}

/* Takes the parked task off the record (its values are pushed by the caller). */
static ews_task_t *take_waiter(ews_lclient_t *h) {
  ews_task_t *t = h->waiter;
  h->waiter = NULL;
  h->wait_kind = W_NONE;
  stop_timer(h);
  return t;
}

static void resume_nil_err(ews_lclient_t *h, const char *err) {
  ews_task_t *t = take_waiter(h);
  lua_pushnil(t->co);
  lua_pushstring(t->co, err);
  ews_task_resume(h->w, t, 2);
}

static void on_wait_timeout(uv_timer_t *tm) {
  wait_timer_t *wt = tm->data;
  ews_lclient_t *h = wt->h;
  if (!h || !h->waiter) return;
  /* A connect that timed out is the connection's own deadline (it fails with
   * "timeout" through `failed`); this is a receive's. */
  resume_nil_err(h, "timeout");
  maybe_free(h);
}

/* Parks the running task on h, with a timeout (ms; < 0: none). Returns lua_yield. */
static int park(lua_State *L, ews_lclient_t *h, ews_task_t *task, int kind, double timeout_ms) {
  h->waiter = task;
  h->wait_kind = kind;
  task->waiting = 1;
  if (timeout_ms >= 0) {
    wait_timer_t *wt = h->timer;
    if (!wt) {
      if (!(wt = calloc(1, sizeof *wt))) return luaL_error(L, "out of memory");
      uv_timer_init(h->w->net->loop, &wt->t);
      wt->t.data = wt;
      wt->h = h;
      h->timer = wt;
    }
    uv_timer_start(&wt->t, on_wait_timeout, (uint64_t)timeout_ms, 0);
  }
  return lua_yield(L, 0);
}

/* ---- the connection's events (net->client_ops) ---------------------------------- */

static void c_open(ews_conn_t *c, const char *protocol) {
  ews_lclient_t *h = c->udata;
  if (!h) return;
  h->state = LC_OPEN;
  if (protocol) h->protocol = strdup(protocol);
  if (h->waiter && h->wait_kind == W_CONNECT) {
    ews_task_t *t = take_waiter(h);
    lua_pushboolean(t->co, 1);
    ews_task_resume(h->w, t, 1);
  }
}

static void c_failed(ews_conn_t *c, int err, const char *reason) {
  ews_lclient_t *h = c->udata;
  if (!h) return;
  h->state = LC_CLOSED;
  h->err = err;
  snprintf(h->reason, sizeof h->reason, "%s", reason);
  if (h->waiter) resume_nil_err(h, h->reason);
}

static void c_message(ews_conn_t *c, const uint8_t *p, size_t n, int binary) {
  ews_lclient_t *h = c->udata;
  if (!h || h->gc) return;
  if (h->waiter && h->wait_kind == W_RECEIVE && !h->head) {
    ews_task_t *t = take_waiter(h);
    lua_pushlstring(t->co, (const char *)p, n);
    lua_pushboolean(t->co, binary);
    ews_task_resume(h->w, t, 2);
    return;
  }
  lmsg_t *m = malloc(sizeof *m + n);
  if (!m) {
    ews_conn_fail(c, EWS_ENOMEM, NULL);
    return;
  }
  m->next = NULL;
  m->len = n;
  m->binary = binary;
  memcpy(m->data, p, n);
  if (h->tail) h->tail->next = m;
  else h->head = m;
  h->tail = m;
  if (++h->nq >= QUEUE_MAX) ews_conn_pause(c);
}

static void c_close(ews_conn_t *c) {
  ews_lclient_t *h = c->udata;
  if (!h) return;
  h->state = LC_CLOSED;
  const char *reason;
  size_t len;
  h->close_code = ews_conn_close_status(c, &reason, &len);
  if (len >= sizeof h->reason) len = sizeof h->reason - 1;
  memcpy(h->reason, reason, len);
  h->reason[len] = 0;
  if (!h->err) h->err = EWS_ECLOSED;
  if (h->waiter && (h->wait_kind == W_PONG || (h->wait_kind == W_RECEIVE && !h->head)))
    resume_nil_err(h, "closed");
}

static void c_free(ews_conn_t *c) {
  ews_lclient_t *h = c->udata;
  c->udata = NULL;
  if (!h) return;
  h->c = NULL;
  if (h->state != LC_CLOSED) {
    h->state = LC_CLOSED;
    if (!h->err) h->err = EWS_ECLOSED;
  }
  if (h->waiter) resume_nil_err(h, h->wait_kind == W_CONNECT ? "connection lost" : "closed");
  maybe_free(h);
}

static void c_pong(ews_conn_t *c, const uint8_t *p, size_t n) {
  (void)p, (void)n;
  ews_lclient_t *h = c->udata;
  if (!h || !h->waiter || h->wait_kind != W_PONG) return;
  ews_task_t *t = take_waiter(h);
  lua_pushboolean(t->co, 1);
  ews_task_resume(h->w, t, 1);
}

static void c_http_status(ews_conn_t *c, int status) {
  ews_lclient_t *h = c->udata;
  if (!h) return;
  h->state = LC_CLOSED;
  h->err = EWS_ECLOSED;
  h->probe_status = status;
  if (h->waiter && h->wait_kind == W_CONNECT) {
    ews_task_t *t = take_waiter(h);
    lua_pushinteger(t->co, status);
    ews_task_resume(h->w, t, 1);
  }
}

const ews_conn_ops_t ews_lua_client_ops = {NULL,   c_open,  c_message, c_close,
                                           c_free, c_failed, c_pong,   c_http_status};

/* ---- Lua functions ---------------------------------------------------------------- */

static ews_lclient_t *check_h(lua_State *L, int idx) {
  ews_lclient_t **ud = luaL_checkudata(L, idx, LCLIENT_MT);
  return *ud;
}

static uint64_t opt_u64(lua_State *L, int t, const char *k, uint64_t def) {
  lua_getfield(L, t, k);
  uint64_t v = def;
  if (lua_isnumber(L, -1)) {
    double d = lua_tonumber(L, -1);
    v = d <= 0 ? 0 : d >= 1.8e19 ? UINT64_MAX : (uint64_t)d;
  }
  lua_pop(L, 1);
  return v;
}

static const char *opt_str(lua_State *L, int t, const char *k, size_t *len) {
  lua_getfield(L, t, k);
  const char *s = lua_isstring(L, -1) ? lua_tolstring(L, -1, len) : NULL;
  lua_pop(L, 1); /* the table keeps the string alive */
  if (!s && len) *len = 0;
  return s;
}

static void push_closed(lua_State *L, ews_lclient_t *h) {
  lua_pushnil(L);
  lua_pushstring(L, h->err && h->err != EWS_ECLOSED ? h->reason : "closed");
}

/* core.client_open(url, o) -> client | nil, err: starts connecting (no wait; see
 * core.client_wait_open). o (checked in client.lua): headers (a string of
 * "Name: value\r\n" lines), protocols ("a, b"), timeout_ms, max_message,
 * compression, compress_threshold, max_buffered, ping_interval_ms, ping_timeout_ms,
 * ca_file, verify, probe_path; wait = 1: raise unless the caller is a task that can
 * wait for the result (connect and probe do). */
static int l_open(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  const char *url = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!w) return luaL_error(L, "edgews.client.connect needs a worker (not while reading the configuration)");
  /* Refuse before connecting when the caller will not be able to wait for it. */
  if (opt_u64(L, 2, "wait", 0) && !ews_task_current(w, L))
    return luaL_error(L, "edgews.client.connect can only wait inside a handler, a timer or a "
                         "task (at load time, connect from edgews.timer(0, fn))");
  ews_client_opts_t o;
  memset(&o, 0, sizeof o);
  o.url = url;
  o.headers = opt_str(L, 2, "headers", &o.headers_len);
  o.protocols = opt_str(L, 2, "protocols", &o.protocols_len);
  o.timeout_ms = (uint32_t)opt_u64(L, 2, "timeout_ms", 10000);
  o.max_message = opt_u64(L, 2, "max_message", 1u << 20);
  o.compression = (int)opt_u64(L, 2, "compression", 0);
  o.compress_threshold = (size_t)opt_u64(L, 2, "compress_threshold", 64);
  o.max_buffered = (size_t)opt_u64(L, 2, "max_buffered", 0);
  o.ping_interval_ms = (uint32_t)opt_u64(L, 2, "ping_interval_ms", 0);
  o.ping_timeout_ms = (uint32_t)opt_u64(L, 2, "ping_timeout_ms", 0);
  o.probe_path = opt_str(L, 2, "probe_path", NULL);
  if (!strncasecmp(url, "wss://", 6)) {
    const char *ca = opt_str(L, 2, "ca_file", NULL);
    int verify = (int)opt_u64(L, 2, "verify", 1);
    char *err = NULL;
    o.tls = tls_ctx_for(ca ? ca : DEFAULT_CA_FILE, verify, &err);
    if (!o.tls) {
      lua_pushnil(L);
      lua_pushfstring(L, "tls: %s", err ? err : "out of memory");
      free(err);
      return 2;
    }
  }
  if (w->net->stopping) {
    lua_pushnil(L);
    lua_pushstring(L, "server shutting down");
    return 2;
  }
  ews_lclient_t *h = calloc(1, sizeof *h);
  if (!h) return luaL_error(L, "out of memory");
  h->w = w;
  ews_lclient_t **ud = lua_newuserdata(L, sizeof *ud);
  *ud = h;
  luaL_getmetatable(L, LCLIENT_MT);
  lua_setmetatable(L, -2);
  h->next = w->lclients;
  if (w->lclients) w->lclients->prev = h;
  w->lclients = h;
  ews_conn_t *c = NULL;
  int r = ews_client_connect(w->net, &o, h, &c);
  if (r < 0) {
    h->state = LC_CLOSED;
    h->err = r;
    lua_pushnil(L);
    if (r == EWS_EURL) lua_pushfstring(L, "bad url: %s", url);
    else lua_pushstring(L, ews_strerror(r));
    return 2;
  }
  h->c = c;
  return 1;
}

/* core.client_wait_open(h) -> true | nil, err: waits (parks the running task) until
 * the handshake is done or failed (the connection's own timeout bounds it). */
static int l_wait_open(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  ews_lclient_t *h = check_h(L, 1);
  if (h->probe_status) {
    lua_pushinteger(L, h->probe_status);
    return 1;
  }
  if (h->state == LC_OPEN) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (h->state == LC_CLOSED || !h->c) {
    push_closed(L, h);
    return 2;
  }
  if (h->waiter) return luaL_error(L, "client: another task is already waiting on this connection");
  ews_task_t *task = ews_task_current(w, L);
  if (!task)
    return luaL_error(L, "edgews.client.connect can only wait inside a handler, a timer or a "
                         "task (at load time, connect from edgews.timer(0, fn))");
  return park(L, h, task, W_CONNECT, -1);
}

/* core.client_protocol(h) -> the selected subprotocol or nil */
static int l_protocol(lua_State *L) {
  ews_lclient_t *h = check_h(L, 1);
  if (h->protocol) lua_pushstring(L, h->protocol);
  else lua_pushnil(L);
  return 1;
}

/* core.client_send(h, data, binary) -> true | nil, err */
static int l_send(lua_State *L) {
  ews_lclient_t *h = check_h(L, 1);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  if (!h->c || h->state != LC_OPEN) {
    push_closed(L, h);
    return 2;
  }
  int r = ews_conn_send(h->c, lua_toboolean(L, 3) ? EWS_OP_BINARY : EWS_OP_TEXT, p, n);
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, r == EWS_ECLOSED ? "closed" : r == EWS_EBACKPRESSURE ? "backpressure" : ews_strerror(r));
  return 2;
}

/* core.client_ping(h, payload) -> true | nil, err */
static int l_ping(lua_State *L) {
  ews_lclient_t *h = check_h(L, 1);
  size_t n = 0;
  const char *p = luaL_optlstring(L, 2, "", &n);
  if (!h->c || h->state != LC_OPEN) {
    push_closed(L, h);
    return 2;
  }
  int r = ews_conn_ping(h->c, p, n);
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, ews_strerror(r));
  return 2;
}

/* core.client_ping_wait(h, timeout_ms) -> true | nil, err: a ping, then waits for a
 * pong ("timeout" when none came in time). */
static int l_ping_wait(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  ews_lclient_t *h = check_h(L, 1);
  double timeout = luaL_checknumber(L, 2);
  if (!h->c || h->state != LC_OPEN || !ews_conn_is_open(h->c)) {
    push_closed(L, h);
    return 2;
  }
  if (h->waiter) return luaL_error(L, "client: another task is already waiting on this connection");
  ews_task_t *task = ews_task_current(w, L);
  if (!task) return luaL_error(L, "client: waiting for a pong needs a handler, a timer or a task");
  int r = ews_conn_ping(h->c, "v", 1);
  if (r != 0) {
    lua_pushnil(L);
    lua_pushstring(L, ews_strerror(r));
    return 2;
  }
  return park(L, h, task, W_PONG, timeout);
}

/* core.client_receive(h, timeout_ms or -1) -> data, binary | nil, err
 * ("timeout", "closed", or why the connection failed). */
static int l_receive(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  ews_lclient_t *h = check_h(L, 1);
  double timeout = luaL_optnumber(L, 2, -1);
  if (h->head) {
    lmsg_t *m = h->head;
    h->head = m->next;
    if (!h->head) h->tail = NULL;
    if (h->nq-- == QUEUE_MAX && h->c) ews_conn_unpause(h->c);
    lua_pushlstring(L, m->data, m->len);
    lua_pushboolean(L, m->binary);
    free(m);
    return 2;
  }
  if (!h->c || h->state != LC_OPEN) {
    push_closed(L, h);
    return 2;
  }
  if (h->waiter) return luaL_error(L, "client: another task is already receiving on this connection");
  if (timeout == 0) {
    lua_pushnil(L);
    lua_pushstring(L, "timeout");
    return 2;
  }
  ews_task_t *task = ews_task_current(w, L);
  if (!task) return luaL_error(L, "client:receive can only wait inside a handler, a timer or a task");
  return park(L, h, task, W_RECEIVE, timeout);
}

/* core.client_close(h, code, reason) -> true | nil, "closed" */
static int l_close(lua_State *L) {
  ews_lclient_t *h = check_h(L, 1);
  lua_Integer code = luaL_optinteger(L, 2, 1000);
  size_t n = 0;
  const char *reason = luaL_optlstring(L, 3, "", &n);
  if (!h->c || h->state != LC_OPEN) {
    lua_pushnil(L);
    lua_pushstring(L, "closed");
    return 2;
  }
  if (ews_conn_close(h->c, (unsigned)code, reason, n) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, "closed");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core.client_state(h) -> "connecting" | "open" | "closed", close code, reason,
 * queued messages */
static int l_state(lua_State *L) {
  ews_lclient_t *h = check_h(L, 1);
  static const char *const names[] = {"connecting", "open", "closed"};
  int st = h->state;
  if (st == LC_OPEN && h->c && !ews_conn_is_open(h->c)) st = LC_CLOSED; /* closing */
  lua_pushstring(L, names[st]);
  if (h->close_code) lua_pushinteger(L, h->close_code);
  else lua_pushnil(L);
  lua_pushstring(L, h->reason);
  lua_pushinteger(L, (lua_Integer)h->nq);
  return 4;
}

static int l_gc(lua_State *L) {
  ews_lclient_t **ud = luaL_checkudata(L, 1, LCLIENT_MT);
  ews_lclient_t *h = *ud;
  if (!h || h->gc) return 0;
  h->gc = 1;
  free_queue(h);
  if (h->c) {
    /* Nobody can read it any more: close it (or drop a connect in progress). */
    if (ews_conn_is_open(h->c)) ews_conn_close(h->c, 1001, "client collected", 16);
    else if (h->state == LC_CONNECTING) ews_conn_abort(h->c);
  }
  maybe_free(h);
  return 0;
}

void ews_api_client_register(lua_State *L, void *w) {
  static const luaL_Reg fns[] = {{"client_open", l_open}, {"client_wait_open", l_wait_open}, {"client_send", l_send},
                                 {"client_receive", l_receive}, {"client_close", l_close},
                                 {"client_ping", l_ping},       {"client_state", l_state},
                                 {"client_ping_wait", l_ping_wait},
                                 {"client_protocol", l_protocol}, {NULL, NULL}};
  if (luaL_newmetatable(L, LCLIENT_MT)) {
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  ews_api_add(L, w, fns);
}

void ews_lclients_close_all(ews_vm_t *w) {
  if (!w || !w->net) return;
  w->net->stopping = 1; /* no new connections from the close events below */
  for (ews_lclient_t *h = w->lclients; h; h = h->next)
    if (h->c) ews_conn_abort(h->c);
  ews_net_run_pending(w->net); /* close events, then the sockets closed: the worker reaps */
  for (ews_lclient_t *h = w->lclients; h; h = h->next) {
    if (h->waiter) { /* parked at shutdown: it will never run again */
      ews_task_t *t = take_waiter(h);
      ews_task_detach(t);
      free(t);
    }
    close_timer(h);
  }
  for (int i = 0; i < 8; i++) {
    ews_tls_ctx_unref(tls_cache[i].ctx);
    free(tls_cache[i].ca);
    tls_cache[i] = (tls_cache_t){NULL, 0, NULL};
  }
}
