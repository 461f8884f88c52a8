/* api_presence.c — presence for Lua (the presence_* functions of `edgews.core`,
 * wrapped by lua/edgews/presence.lua) and each worker's presence timer.
 *
 * The tables are process-wide (hub/presence.h); what is per worker is a timer,
 * started on the worker's first presence call, that every batch interval publishes
 * the pending join/leave events (whichever worker gets there first takes them; the
 * channel fan-out reaches subscribers on every worker) and sweeps this worker's
 * member connections: one silent for heartbeat_interval gets a ping, one silent for
 * heartbeat_timeout (no frame, pongs included) stops being a member. Only the owning
 * worker looks at a connection, so the sweep reads its idle time without locks. The
 * timer's handle is static (one slot per worker id): the worker's final uv_walk
 * closes it before the loop closes, and there is nothing to free. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub/bus.h"
#include "hub/channels.h"
#include "hub/engine.h"
#include "hub/presence.h"
#include "lua/api.h"
#include "net/conn.h"
#include "proto/frame.h"

#define MAX_WORKERS 256

typedef struct {
  uv_timer_t timer;
  ews_vm_t *w;
  int started;
  uint64_t repeat_ms;
  double next_sweep;
} presence_worker_t;

static presence_worker_t pws[MAX_WORKERS];

static double mono_now(void) { return (double)uv_hrtime() / 1e9; }

static ews_vm_t *worker_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

/* The engine's presence (hub/engine.h); the configuration VM has no worker. */
static const ews_presence_engine_t *engine(const ews_vm_t *w) {
  return (w ? w->hub->engine : &ews_engine_local)->presence;
}

/* Publishes the pending batch (if one is due, or forced). From the timer, the
 * worker's inbox is run first: a batch another worker published earlier may still be
 * queued there, and this worker's subscribers must see batches in order. (Not from
 * presence.flush(): the inbox starts Lua tasks, which must not run inside a Lua call.) */
static int flush(ews_vm_t *w, double now, int force, int from_timer) {
  const ews_presence_engine_t *P = engine(w);
  ews_presence_event_t *e = P->take(now, force);
  int n = 0;
  if (e && from_timer) ews_bus_drain(&w->hub->inbox);
  for (ews_presence_event_t *x = e; x; x = x->next, n++)
    ews_chan_publish(w->hub, x->channel, x->channel_len, EWS_OP_TEXT, x->json, x->json_len, 0);
  P->events_free(e);
  return n;
}

typedef struct {
  uint32_t interval_ms, timeout_ms;
  double now;
} probe_t;

static int probe(void *conn, double *last_ping, void *ud) {
  const probe_t *p = ud;
  ews_conn_t *c = conn;
  if (!ews_conn_is_open(c)) return 1; /* closing: no longer present */
  uint32_t idle = ews_conn_idle_ms(c); /* 0 while we are not reading it: not its silence */
  if (p->timeout_ms && idle >= p->timeout_ms) return 1;
  if (p->interval_ms && idle >= p->interval_ms && (p->now - *last_ping) * 1000 >= p->interval_ms) {
    ews_conn_ping(c, NULL, 0);
    *last_ping = p->now;
  }
  return 0;
}

static uint32_t to_ms(double s) { return s > 0 ? (uint32_t)(s * 1000 + 0.5) : 0; }

static void on_tick(uv_timer_t *t) {
  presence_worker_t *pw = t->data;
  ews_vm_t *w = pw->w;
  const ews_presence_engine_t *P = engine(w);
  double now = mono_now();
  flush(w, now, 0, 1);
  if (!P->conns() || now < pw->next_sweep) return;
  ews_presence_config_t cfg;
  P->get_config(&cfg);
  probe_t p = {to_ms(cfg.heartbeat_interval), to_ms(cfg.heartbeat_timeout), now};
  /* Sweep four times per (shorter) period, between 50 ms and 1 s apart. */
  double period = cfg.heartbeat_timeout;
  if (cfg.heartbeat_interval > 0 && (period <= 0 || cfg.heartbeat_interval < period))
    period = cfg.heartbeat_interval;
  double every = period > 0 ? period / 4 : 1;
  pw->next_sweep = now + (every < 0.05 ? 0.05 : every > 1 ? 1 : every);
  if (p.interval_ms || p.timeout_ms) P->sweep(w->id, probe, &p);
}

/* Starts this worker's timer (once), or adjusts its period to the configuration. */
static void ensure_timer(ews_vm_t *w) {
  if (!w || w->id < 0 || w->id >= MAX_WORKERS || w->net->stopping) return;
  presence_worker_t *pw = &pws[w->id];
  ews_presence_config_t cfg;
  engine(w)->get_config(&cfg);
  uint64_t ms = cfg.batch_interval > 0.005 ? (uint64_t)(cfg.batch_interval * 1000 + 0.5) : 5;
  if (!pw->started) {
    uv_timer_init(w->net->loop, &pw->timer);
    pw->timer.data = pw;
    pw->w = w;
    pw->started = 1;
  } else if (pw->repeat_ms == ms) {
    return;
  }
  pw->repeat_ms = ms;
  uv_timer_start(&pw->timer, on_tick, ms, ms);
}

static int push_error(lua_State *L, int rc) {
  lua_pushnil(L);
  lua_pushinteger(L, rc);
  return 2;
}

static const char *opt_lstring(lua_State *L, int idx, size_t *len) {
  *len = 0;
  return lua_isnoneornil(L, idx) ? NULL : luaL_checklstring(L, idx, len);
}

/* core.presence_configure(batch_interval, heartbeat_interval, heartbeat_timeout,
 * status_expiration) (validated by presence.lua) */
static int l_configure(lua_State *L) {
  ews_presence_config_t cfg = {luaL_checknumber(L, 1), luaL_checknumber(L, 2),
                               luaL_checknumber(L, 3), luaL_checknumber(L, 4)};
  engine(worker_of(L))->configure(&cfg);
  ensure_timer(worker_of(L));
  return 0;
}

/* A member connection's memberships end when it closes. */
static void conn_closed(ews_conn_t *c, ews_conn_hook_t *h) {
  engine(ews_conn_owner(c))->drop_conn(ews_conn_id(c));
  free(h);
}

/* core.presence_join(c, channel, user, status | nil, meta_json | nil) -> true, is_new | nil, code */
static int l_join(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  if (lua_type(L, 1) != LUA_TNUMBER) luaL_argerror(L, 1, "open socket expected");
  ews_conn_t *c = (ews_conn_t *)(uintptr_t)lua_tonumber(L, 1);
  size_t chl, ul, sl, ml;
  const char *ch = luaL_checklstring(L, 2, &chl);
  const char *uid = luaL_checklstring(L, 3, &ul);
  const char *status = opt_lstring(L, 4, &sl);
  const char *meta = opt_lstring(L, 5, &ml);
  if (!w) return push_error(L, EWS_EINVAL);
  if (!ews_conn_is_open(c)) return push_error(L, EWS_ECLOSED);
  if (!ews_conn_hook_find(c, conn_closed)) {
    ews_conn_hook_t *h = calloc(1, sizeof *h);
    if (!h) return push_error(L, EWS_ENOMEM);
    h->closed = conn_closed;
    if (ews_conn_hook_add(c, h) != 0) {
      free(h);
      return push_error(L, EWS_ENOMEM);
    }
  }
  ensure_timer(w);
  int r = engine(w)->join(ch, chl, uid, ul, status, sl, meta, ml, w->id, ews_conn_id(c), c,
                            mono_now());
  if (r < 0) return push_error(L, r);
  lua_pushboolean(L, 1);
  lua_pushboolean(L, r);
  return 2;
}

/* core.presence_leave(socket_id, channel) -> true, left | nil, code */
static int l_leave(lua_State *L) {
  uint64_t id = (uint64_t)luaL_checknumber(L, 1);
  size_t chl;
  const char *ch = luaL_checklstring(L, 2, &chl);
  ensure_timer(worker_of(L));
  int r = engine(worker_of(L))->leave(ch, chl, id);
  if (r < 0) return push_error(L, r);
  lua_pushboolean(L, 1);
  lua_pushboolean(L, r);
  return 2;
}

/* core.presence_set(user, status | nil, meta_json | nil, expire_s) -> true | nil, code */
static int l_set(lua_State *L) {
  size_t ul, sl, ml;
  const char *uid = luaL_checklstring(L, 1, &ul);
  const char *status = opt_lstring(L, 2, &sl);
  const char *meta = opt_lstring(L, 3, &ml);
  double expire = luaL_optnumber(L, 4, 0);
  ensure_timer(worker_of(L));
  int r = engine(worker_of(L))->set_status(uid, ul, status, sl, meta, ml, expire, mono_now());
  if (r < 0) return push_error(L, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.presence_get({ user, ... }) -> { [user] = { status=, meta=json|nil, online=,
 * channels={...} } } | nil, code */
static int l_get(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t n = lua_objlen(L, 1);
  const char **ids = calloc(n ? n : 1, sizeof *ids);
  size_t *lens = calloc(n ? n : 1, sizeof *lens);
  if (!ids || !lens) {
    free(ids);
    free(lens);
    return push_error(L, EWS_ENOMEM);
  }
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 1, (int)i + 1);
    ids[i] = lua_tolstring(L, -1, &lens[i]); /* presence.lua passed strings; kept by the table */
    lua_pop(L, 1);
    if (!ids[i]) ids[i] = "", lens[i] = 0;
  }
  ews_presence_result_t r;
  const ews_presence_engine_t *P = engine(worker_of(L));
  int rc = P->get(ids, lens, n, mono_now(), &r);
  free(ids);
  free(lens);
  if (rc < 0) return push_error(L, rc);
  lua_createtable(L, 0, (int)r.n);
  for (size_t i = 0; i < r.n; i++) {
    const ews_presence_entry_t *e = &r.v[i];
    lua_pushlstring(L, e->user, e->user_len);
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, e->status, e->status_len);
    lua_setfield(L, -2, "status");
    if (e->meta) {
      lua_pushlstring(L, e->meta, e->meta_len);
      lua_setfield(L, -2, "meta");
    }
    lua_pushboolean(L, e->online);
    lua_setfield(L, -2, "online");
    lua_createtable(L, (int)e->nchannels, 0);
    const char *p = e->channels;
    for (uint32_t k = 0; k < e->nchannels; k++) {
      size_t len = strlen(p);
      lua_pushlstring(L, p, len);
      lua_rawseti(L, -2, (int)k + 1);
      p += len + 1;
    }
    lua_setfield(L, -2, "channels");
    lua_rawset(L, -3);
  }
  P->result_free(&r);
  return 1;
}

/* core.presence_list(channel, cursor | nil, limit) -> { {user=, status=, meta=json,
 * connections=}, ... }, next_cursor | nil */
static int l_list(lua_State *L) {
  size_t chl, curl;
  const char *ch = luaL_checklstring(L, 1, &chl);
  const char *cursor = opt_lstring(L, 2, &curl);
  size_t limit = (size_t)luaL_checkinteger(L, 3);
  ews_presence_result_t r;
  const ews_presence_engine_t *P = engine(worker_of(L));
  int rc = P->list(ch, chl, cursor, curl, limit, mono_now(), &r);
  if (rc < 0) return push_error(L, rc);
  lua_createtable(L, (int)r.n, 0);
  for (size_t i = 0; i < r.n; i++) {
    const ews_presence_entry_t *e = &r.v[i];
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, e->user, e->user_len);
    lua_setfield(L, -2, "user");
    lua_pushlstring(L, e->status, e->status_len);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, e->meta, e->meta_len);
    lua_setfield(L, -2, "meta");
    lua_pushinteger(L, e->connections);
    lua_setfield(L, -2, "connections");
    lua_rawseti(L, -2, (int)i + 1);
  }
  if (r.next_cursor) lua_pushlstring(L, r.next_cursor, r.next_cursor_len);
  else lua_pushnil(L);
  P->result_free(&r);
  return 2;
}

/* core.presence_count(channel) -> users present */
static int l_count(lua_State *L) {
  size_t chl;
  const char *ch = luaL_checklstring(L, 1, &chl);
  lua_pushinteger(L, engine(worker_of(L))->count(ch, chl));
  return 1;
}

/* core.presence_flush() -> events published: the pending batch now */
static int l_flush(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  lua_pushinteger(L, w ? flush(w, mono_now(), 1, 0) : 0);
  return 1;
}

void ews_api_presence_register(lua_State *L, void *w) {
  static const luaL_Reg fns[] = {{"presence_configure", l_configure},
                                 {"presence_join", l_join},
                                 {"presence_leave", l_leave},
                                 {"presence_set", l_set},
                                 {"presence_get", l_get},
                                 {"presence_list", l_list},
                                 {"presence_count", l_count},
                                 {"presence_flush", l_flush},
                                 {NULL, NULL}};
  ews_api_add(L, w, fns);
}
