/* api_core.c — what Lua may call in C: the `edgews.core` module (routes, logging,
 * socket operations, stats) and the FFI entry points used on the per-message path.
 *
 * Sockets are passed as `_c` of the Lua socket table: the connection's address as a
 * number (LuaJIT compiles number -> uintptr_t FFI conversions, not light userdata).
 * The table's _c is set to false when the connection ends, so an address reaching
 * these functions is always a live connection of the calling worker. None of these functions calls
 * back into Lua: connection events they cause (a close) run at the worker's next
 * sweep. FFI-called functions return 0 or a negative EWS_E* code. */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"
#include "log.h"
#include "hub/channels.h"
#include "hub/engine.h"
#include "hub/counters.h"
#include "lua/api.h"
#include "lua/events.h"
#include "lua/json_decode.h"
#include "lua/runaway.h"
#include "lua/tasks.h"
#include "lua/vm.h"
#include "net/conn.h"
#include "net/fanout.h"
#include "proto/frame.h"

#define EWS_EXPORT __attribute__((visibility("default"), used))

/* ---- FFI entry points ------------------------------------------------------ */

EWS_EXPORT int ews_ffi_send(uintptr_t conn, const char *p, size_t n, int binary) {
  return ews_conn_send((ews_conn_t *)conn, binary ? EWS_OP_BINARY : EWS_OP_TEXT, p, n);
}

EWS_EXPORT double ews_ffi_buffered(uintptr_t conn) {
  return (double)ews_conn_buffered((ews_conn_t *)conn);
}

/* ews_json_scan_type (lua/json_decode.h) for edgews.json's scan_type: 1 with the
 * type's offset in span[0] and its length in span[1], else 0. Through the FFI a
 * compiled trace calls it directly, once per routed message. */
EWS_EXPORT int ews_ffi_json_scan_type(const char *p, size_t n, size_t *span) {
  const char *t;
  size_t tn;
  if (!ews_json_scan_type(p, n, &t, &tn)) return 0;
  span[0] = (size_t)(t - p);
  span[1] = tn;
  return 1;
}

/* ---- edgews.core ------------------------------------------------------------ */

static ews_vm_t *worker_of(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

#define check_conn ews_api_conn
#define push_result ews_api_result

static int l_send(lua_State *L) {
  ews_conn_t *c = check_conn(L, 1);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  return push_result(L, ews_conn_send(c, lua_toboolean(L, 3) ? EWS_OP_BINARY : EWS_OP_TEXT, p, n));
}

/* core.fanout(sockets, data, is_binary) -> number queued: one message to many
 * sockets of this worker, framed (and compressed) once (net/fanout.h). */
static int l_fanout(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  int binary = lua_toboolean(L, 3);
  size_t count = lua_objlen(L, 1);
  if (!w || count == 0) {
    lua_pushinteger(L, 0);
    return 1;
  }
  ews_conn_t *stack_conns[256];
  ews_conn_t **conns = count <= 256 ? stack_conns : malloc(count * sizeof *conns);
  if (!conns) return luaL_error(L, "out of memory");
  for (size_t i = 0; i < count; i++) {
    lua_rawgeti(L, 1, (int)i + 1);
    conns[i] = NULL;
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "_c");
      if (lua_type(L, -1) == LUA_TNUMBER) conns[i] = (ews_conn_t *)(uintptr_t)lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  int r = ews_fanout(w->net, conns, count, binary ? EWS_OP_BINARY : EWS_OP_TEXT, p, n);
  if (conns != stack_conns) free(conns);
  if (r < 0) return push_result(L, r);
  lua_pushinteger(L, r);
  return 1;
}

/* core.app_sockets(path) -> the socket tables of the app's open connections on
 * this worker. */
static int l_app_sockets(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t plen;
  const char *path = luaL_checklstring(L, 1, &plen);
  lua_createtable(L, 16, 0);
  int i = 0;
  for (ews_conn_t *c = w ? w->net->conns : NULL; c; c = ews_conn_next(c)) {
    const ews_app_t *app = ews_conn_app(c);
    if (!ews_conn_is_open(c) || !app) continue;
    if (strlen(app->path) != plen || memcmp(app->path, path, plen) != 0) continue;
    if (ews_lua_socket_push(L, c)) lua_rawseti(L, -2, ++i);
  }
  return 1;
}

static int l_close(lua_State *L) {
  ews_conn_t *c = check_conn(L, 1);
  lua_Integer code = luaL_optinteger(L, 2, 1000);
  size_t n = 0;
  const char *reason = luaL_optlstring(L, 3, "", &n);
  return push_result(L, ews_conn_close(c, (unsigned)code, reason, n));
}

static int l_ping(lua_State *L) {
  ews_conn_t *c = check_conn(L, 1);
  size_t n = 0;
  const char *p = luaL_optlstring(L, 2, "", &n);
  return push_result(L, ews_conn_ping(c, p, n));
}

static int l_buffered(lua_State *L) {
  lua_pushnumber(L, (lua_Number)ews_conn_buffered(check_conn(L, 1)));
  return 1;
}

static int l_remote_addr(lua_State *L) {
  ews_conn_t *c = check_conn(L, 1);
  char ip[64];
  int port;
  if (ews_conn_peer(c, ip, sizeof ip, &port) != 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "not connected");
    return 2;
  }
  lua_pushstring(L, ip);
  lua_pushinteger(L, port);
  return 2;
}

static void errlog_flush(ews_vm_t *w, uint64_t now) {
  if (w->errlog_quiet)
    EWS_ERROR("%u more handler error%s in the last %.1f s (not logged one by one; "
              "edgews_errors_total{kind=\"handler\"} counts them all)",
              w->errlog_quiet, w->errlog_quiet == 1 ? "" : "s",
              (double)(now - w->errlog_window_ms) / 1000.0);
  w->errlog_quiet = w->errlog_logged = 0;
  w->errlog_window_ms = now;
}

void ews_vm_tick(ews_vm_t *w) {
  if (!w->errlog_quiet) return;
  uint64_t now = uv_now(w->net->loop);
  if (now - w->errlog_window_ms >= 1000) errlog_flush(w, now);
}

/* One more handler error line this second? (Else it is counted for the summary.) */
static int errlog_admit(ews_vm_t *w) {
  if (!w || !w->net) return 1;
  uint64_t now = uv_now(w->net->loop);
  if (now - w->errlog_window_ms >= 1000) errlog_flush(w, now);
  if (w->errlog_logged >= EWS_VM_ERRORS_PER_SEC) {
    w->errlog_quiet++;
    return 0;
  }
  w->errlog_logged++;
  return 1;
}

/* core.handler_error(c | false, event, message_with_traceback [, keep_open]) -> stopped:
 * a handler raised. Logs the message (file:line) at error level and the traceback at
 * debug level, counts it, and fails the connection with 1011 when it is still open
 * (unless keep_open: a routed message's error is answered, not fatal). When the error
 * is the watchdog stopping a runaway run (lua/runaway.h), the stop is caught here:
 * the connection is failed even with keep_open, and the result is true. */
static int l_handler_error(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  const char *event = luaL_checkstring(L, 2);
  size_t len;
  const char *msg = luaL_checklstring(L, 3, &len);
  const char *tb = strstr(msg, "\nstack traceback:");
  int head = tb ? (int)(tb - msg) : (int)len;
  ews_conn_t *c = lua_type(L, 1) == LUA_TNUMBER ? (ews_conn_t *)(uintptr_t)lua_tonumber(L, 1) : NULL;
  if (ews_log_level <= EWS_LOG_ERROR && errlog_admit(w)) {
    char *line = ews_vm_error_summary(msg); /* + the user's file:line when raised in edgews */
    EWS_ERROR("%s handler error (conn %llu): %.*s", event,
              c ? (unsigned long long)ews_conn_id(c) : 0ULL, line ? (int)strlen(line) : head,
              line ? line : msg);
    free(line);
    if (tb) EWS_DEBUG("%s", tb + 1);
  }
  if (w) EWS_STAT_ADD(w->stats.handler_errors, 1);
  int stopped = ews_runaway_caught(ews_runaway_of(L));
  if (c && (stopped || !lua_toboolean(L, 4))) ews_conn_fail(c, EWS_EHANDLER, NULL);
  lua_pushboolean(L, stopped);
  return 1;
}

/* core.set_run_budget(seconds): the time budget of the run in progress (0: none); for
 * edgews.configure{handler_timeout = ...} while the script loads. */
static int l_set_run_budget(lua_State *L) {
  ews_runaway_t *rw = ews_runaway_of(L);
  double s = luaL_checknumber(L, 1);
  if (rw) ews_runaway_set_run_budget(rw, s);
  return 0;
}

/* core.auth_done(ok, user | nil, status, message): the authenticator of the
 * connection this task serves has decided (a no-op when the client went away). */
static int l_auth_done(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  ews_task_t *t = ews_task_current(w, L);
  ews_conn_t *c = t ? t->conn : NULL;
  int ok = lua_toboolean(L, 1);
  if (!c || !ews_conn_awaiting_auth(c)) return 0;
  char idbuf[256];
  const char *uid = NULL;
  if (ok && lua_istable(L, 2)) {
    lua_getfield(L, 2, "id");
    if (lua_isstring(L, -1) || lua_isnumber(L, -1)) {
      lua_pushvalue(L, -1);
      snprintf(idbuf, sizeof idbuf, "%s", lua_tostring(L, -1));
      lua_pop(L, 1);
      uid = idbuf;
    }
    lua_pop(L, 1);
    /* The user waits in c->uref for the open event (or the connection's end). */
    lua_pushvalue(L, 2);
    c->uref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  ews_conn_auth_done(c, ok, uid, (int)luaL_optinteger(L, 3, 401), luaL_optstring(L, 4, NULL));
  return 0;
}

/* core.count_user(c, user_id) -> true | nil, "limit": counts a connection that
 * authenticated after the upgrade in its app's per-user counter. */
static int l_count_user(lua_State *L) {
  ews_conn_t *c = check_conn(L, 1);
  const char *uid = luaL_checkstring(L, 2);
  return push_result(L, ews_conn_count_user(c, uid));
}

/* core.auth_deadline(c, kind, t) -> true | nil, err: the connection's authentication
 * deadline, kept by the core on the worker's timer wheel. kind "timeout": t seconds
 * from now, then close 4408; "expiry": t is the time (seconds since the epoch, the
 * token's exp plus leeway) after which it closes 4403; nil: no deadline. Any length
 * (a token valid for ten years is fine); a time already past closes at once. */
static int l_auth_deadline(lua_State *L) {
  ews_conn_t *c = check_conn(L, 1);
  const char *kind = luaL_optstring(L, 2, NULL);
  if (!kind) return push_result(L, ews_conn_auth_deadline(c, EWS_AUTH_DL_NONE, 0));
  double t = luaL_checknumber(L, 3), ms;
  int k;
  if (!strcmp(kind, "timeout")) {
    k = EWS_AUTH_DL_TIMEOUT;
    ms = t * 1000.0;
  } else if (!strcmp(kind, "expiry")) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    k = EWS_AUTH_DL_EXPIRY;
    ms = (t - (double)ts.tv_sec) * 1000.0 - (double)ts.tv_nsec / 1e6;
  } else {
    return luaL_argerror(L, 2, "\"timeout\" or \"expiry\" expected");
  }
  /* NaN and the past: now. Beyond ~285,000 years: as good as never. */
  uint64_t delay = !(ms > 0) ? 0 : ms >= 9e15 ? (uint64_t)9e15 : (uint64_t)(ms + 0.999);
  return push_result(L, ews_conn_auth_deadline(c, k, delay));
}

/* core.authenticated(c): first-message auth succeeded; lifts the pre-auth size limit. */
static int l_authenticated(lua_State *L) {
  ews_conn_authenticated(check_conn(L, 1));
  return 0;
}

/* core.user_add(uid, socket_id) / core.user_remove(uid, socket_id) /
 * core.user_list(uid) -> { {worker, socket_id [, instance]}, ... }: instance (16 hex
 * digits) for a socket of another instance of the cluster */
static int l_user_add(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t n;
  const char *uid = luaL_checklstring(L, 1, &n);
  return push_result(L, w ? w->hub->engine->users->add(uid, n, w->id, luaL_checknumber(L, 2)) : 0);
}

static int l_user_remove(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t n;
  const char *uid = luaL_checklstring(L, 1, &n);
  if (w) w->hub->engine->users->remove(uid, n, w->id, luaL_checknumber(L, 2));
  return 0;
}

static int l_user_list(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t n;
  const char *uid = luaL_checklstring(L, 1, &n);
  const ews_users_engine_t *users = w ? w->hub->engine->users : ews_engine_local.users;
  ews_user_entry_t buf[64];
  size_t total = users->list(uid, n, buf, 64);
  ews_user_entry_t *all = buf;
  if (total > 64 && (all = malloc(total * sizeof *all))) total = users->list(uid, n, all, total);
  else if (total > 64) total = 64, all = buf;
  lua_createtable(L, (int)total, 0);
  for (size_t i = 0; i < total; i++) {
    lua_createtable(L, 2, 0);
    lua_pushinteger(L, all[i].worker);
    lua_rawseti(L, -2, 1);
    lua_pushnumber(L, all[i].socket_id);
    lua_rawseti(L, -2, 2);
    if (all[i].instance[0]) { /* another instance's (a cluster) */
      lua_pushstring(L, all[i].instance);
      lua_rawseti(L, -2, 3);
    }
    lua_rawseti(L, -2, (int)i + 1);
  }
  if (all != buf) free(all);
  return 1;
}

static const char *const router_codes[] = {
#define XX(n) #n,
    EWS_ROUTER_CODES(XX)
#undef XX
};

/* core.stats_all() -> counters summed over every worker */
static int l_stats_all(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  lua_createtable(L, 0, 16);
  if (!w) return 1;
  struct {
    uint64_t conns_total, msgs_in, msgs_out, bytes_in, bytes_out, handler_errors, compressed;
    uint64_t lua[EWS_LC_MAX], rejected[EWS_RJ_MAX], router[EWS_RC_MAX];
  } sum;
  memset(&sum, 0, sizeof sum);
  uint32_t open = 0;
  for (int i = 0; i < w->nworkers; i++) {
    /* Every worker's contexts are linked before any starts: read without locks. */
    const ews_hub_t *h = w->hub->peers[i];
    const ews_vm_t *v = h->up;
    const ews_vm_stats_t *st = &v->stats;
    const ews_net_stats_t *ns = &h->net->stats;
    sum.conns_total += EWS_STAT_LOAD(ns->conns_total);
    sum.msgs_in += EWS_STAT_LOAD(ns->msgs_in);
    sum.msgs_out += EWS_STAT_LOAD(ns->msgs_out);
    sum.bytes_in += EWS_STAT_LOAD(ns->bytes_in);
    sum.bytes_out += EWS_STAT_LOAD(ns->bytes_out);
    sum.handler_errors += EWS_STAT_LOAD(st->handler_errors);
    sum.compressed += EWS_STAT_LOAD(ns->compressed);
    for (int k = 0; k < EWS_LC_MAX; k++) sum.lua[k] += ews_vm_count(v, k);
    for (int k = 0; k < EWS_RC_MAX; k++) sum.router[k] += EWS_STAT_LOAD(st->router[k]);
    for (int k = 0; k < EWS_RJ_MAX; k++) sum.rejected[k] += EWS_STAT_LOAD(ns->rejected[k]);
    open += ews_net_nconns(h->net);
  }
#define F(name, v)                     \
  lua_pushnumber(L, (lua_Number)(v)); \
  lua_setfield(L, -2, name)
  F("workers", w->nworkers);
  F("connections", open);
  F("connections_total", sum.conns_total);
  F("messages_in", sum.msgs_in);
  F("messages_out", sum.msgs_out);
  F("bytes_in", sum.bytes_in);
  F("bytes_out", sum.bytes_out);
  F("handler_errors", sum.handler_errors);
  F("messages_compressed", sum.compressed);
#undef F
  static const char *const lnames[] = {
#define XX(n) #n,
      EWS_LUA_COUNTERS(XX)
#undef XX
  };
  for (int k = 0; k < EWS_LC_MAX; k++) {
    lua_pushnumber(L, (lua_Number)sum.lua[k]);
    lua_setfield(L, -2, lnames[k]);
  }
  uint64_t router_total = 0;
  lua_createtable(L, 0, EWS_RC_MAX);
  for (int k = 0; k < EWS_RC_MAX; k++) {
    router_total += sum.router[k];
    lua_pushnumber(L, (lua_Number)sum.router[k]);
    lua_setfield(L, -2, router_codes[k]);
  }
  lua_setfield(L, -2, "router_errors_by_code");
  lua_pushnumber(L, (lua_Number)router_total);
  lua_setfield(L, -2, "router_errors");
  static const char *const rnames[] = {
#define XX(n) #n,
      EWS_REJECT_REASONS(XX)
#undef XX
  };
  lua_createtable(L, 0, EWS_RJ_MAX);
  for (int k = 0; k < EWS_RJ_MAX; k++) {
    lua_pushnumber(L, (lua_Number)sum.rejected[k]);
    lua_setfield(L, -2, rnames[k]);
  }
  lua_setfield(L, -2, "rejected");
  return 1;
}

/* core.subscribe(c, channel) / core.unsubscribe(c, channel) -> true | nil, err */
static int l_subscribe(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  ews_conn_t *c = check_conn(L, 1);
  size_t n;
  const char *name = luaL_checklstring(L, 2, &n);
  return push_result(L, ews_chan_subscribe(w->hub, c, name, n));
}

static int l_unsubscribe(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  ews_conn_t *c = check_conn(L, 1);
  size_t n;
  const char *name = luaL_checklstring(L, 2, &n);
  return push_result(L, ews_chan_unsubscribe(w->hub, c, name, n));
}

/* core.publish(channel, data, is_binary, exclude_socket_id) -> local deliveries */
static int l_publish(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t nl, n;
  const char *name = luaL_checklstring(L, 1, &nl);
  const char *p = luaL_checklstring(L, 2, &n);
  int binary = lua_toboolean(L, 3);
  uint64_t exclude = (uint64_t)luaL_optnumber(L, 4, 0);
  if (!w) return push_result(L, EWS_EINVAL);
  int r = ews_chan_publish(w->hub, name, nl, binary ? EWS_OP_BINARY : EWS_OP_TEXT, p, n, exclude);
  if (r < 0) return push_result(L, r);
  lua_pushinteger(L, r);
  return 1;
}

static int l_channel_count(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t n;
  const char *name = luaL_checklstring(L, 1, &n);
  const ews_chan_engine_t *chan = w ? w->hub->engine->chan : ews_engine_local.chan;
  lua_pushinteger(L, chan->count(name, n));
  return 1;
}

/* core.count(name [, code]): bumps an application-layer counter shown in /metrics;
 * "router_errors" is counted by the error's code. */
static int l_count(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  const char *name = luaL_checkstring(L, 1);
  if (!strcmp(name, "router_errors")) {
    const char *code = luaL_checkstring(L, 2);
    for (int i = 0; i < EWS_RC_MAX; i++) {
      if (!strcmp(router_codes[i], code)) {
        if (w) EWS_STAT_ADD(w->stats.router[i], 1);
        return 0;
      }
    }
    return luaL_error(L, "core.count: unknown router error code '%s'", code);
  }
  static const char *const names[] = {
#define XX(n) #n,
      EWS_LUA_COUNTERS(XX)
#undef XX
  };
  for (int i = 0; i < EWS_LC_MAX; i++) {
    if (!strcmp(names[i], name)) {
      if (w) EWS_STAT_ADD(w->stats.lua[i], 1);
      return 0;
    }
  }
  return luaL_error(L, "core.count: unknown counter '%s'", name);
}

/* core.connection_count(path) -> open connections of the app on all workers (and,
 * in a cluster, every live instance) */
static int l_connection_count(lua_State *L) {
  size_t n;
  const char *path = luaL_checklstring(L, 1, &n);
  ews_vm_t *w = worker_of(L);
  if (w && w->hub->engine->app_connections) {
    lua_pushinteger(L, w->hub->engine->app_connections(path, n));
    return 1;
  }
  char key[512];
  int kl = snprintf(key, sizeof key, "conns:%.*s", (int)n, path);
  lua_pushinteger(L, kl > 0 ? ews_counter_peek(key, (size_t)kl) : 0);
  return 1;
}

static int l_log(lua_State *L) {
  int level = (int)luaL_checkinteger(L, 1);
  size_t n;
  const char *msg = luaL_checklstring(L, 2, &n);
  if (level >= ews_log_level) ews_log(level, "%.*s", (int)n, msg);
  return 0;
}

static int l_log_level(lua_State *L) {
  lua_pushinteger(L, ews_log_level);
  return 1;
}

static int l_worker_id(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  lua_pushinteger(L, w ? w->id : -1);
  return 1;
}

static int l_workers(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  lua_pushinteger(L, w ? w->nworkers : 0);
  return 1;
}

static int l_now(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  lua_pushnumber(L, w ? (lua_Number)uv_now(w->net->loop) / 1000.0 : (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

/* core.clock() -> seconds of the monotonic clock, read now (it advances while Lua runs) */
static int l_clock(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e9);
  return 1;
}

static int l_stats(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  lua_createtable(L, 0, 10);
  if (!w) return 1;
#define FIELD(name, val)            \
  lua_pushnumber(L, (lua_Number)(val)); \
  lua_setfield(L, -2, name)
  FIELD("worker", w->id);
  FIELD("connections", w->net->nconns);
  FIELD("connections_all_workers", __atomic_load_n(w->net->total_conns, __ATOMIC_RELAXED));
  FIELD("connections_total", w->net->stats.conns_total);
  FIELD("messages_in", w->net->stats.msgs_in);
  FIELD("messages_out", w->net->stats.msgs_out);
  FIELD("bytes_in", w->net->stats.bytes_in);
  FIELD("bytes_out", w->net->stats.bytes_out);
  FIELD("handler_errors", w->stats.handler_errors);
  FIELD("messages_compressed", w->net->stats.compressed);
  FIELD("timers", w->nltimers);
#undef FIELD
  return 1;
}

static uint32_t opt_ms(lua_State *L, int t, const char *k, uint32_t def) {
  lua_getfield(L, t, k);
  uint32_t v = lua_isnumber(L, -1) ? (uint32_t)(lua_tonumber(L, -1) * 1000.0) : def;
  lua_pop(L, 1);
  return v;
}

static double opt_num(lua_State *L, int t, const char *k, double def) {
  lua_getfield(L, t, k);
  double v = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : def;
  lua_pop(L, 1);
  return v;
}

/* set_routes({ {path=..., protocols={...}, max_message_size=..., ...}, ... }):
 * replaces this worker's routes. The Lua side has validated every field. */
static int l_set_routes(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!w) return 0;
  size_t n = lua_objlen(L, 1);
  ews_routes_t nr = {calloc(n ? n : 1, sizeof(ews_app_t *)), 0};
  if (!nr.apps) return luaL_error(L, "out of memory");
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, (int)i);
    int t = lua_gettop(L);
    lua_getfield(L, t, "path");
    const char *path = lua_tostring(L, -1);
    ews_app_t *a = path ? ews_app_new(path) : NULL;
    lua_pop(L, 1);
    if (!a) {
      ews_routes_clear(&nr);
      return luaL_error(L, "set_routes: bad app %d", (int)i);
    }
    nr.apps[nr.n++] = a;
    a->rx.max_message = (uint64_t)opt_num(L, t, "max_message_size", (double)a->rx.max_message);
    a->rx.max_frame = (uint64_t)opt_num(L, t, "max_frame_size", (double)a->rx.max_frame);
    /* The wire limit of a compressed message is the inflated limit too. */
    a->idle_timeout_ms = opt_ms(L, t, "idle_timeout", a->idle_timeout_ms);
    a->heartbeat_interval_ms = opt_ms(L, t, "heartbeat_interval", a->heartbeat_interval_ms);
    a->heartbeat_timeout_ms = opt_ms(L, t, "heartbeat_timeout", a->heartbeat_timeout_ms);
    a->max_buffered = (size_t)opt_num(L, t, "max_buffered", (double)a->max_buffered);
    /* permessage-deflate: the app's `compression` table, unless --compression. */
    ews_pmd_config_t *pc = &a->pmd_cfg;
    lua_getfield(L, t, "compression");
    if (lua_istable(L, -1)) {
      int ct = lua_gettop(L);
      lua_getfield(L, ct, "mode");
      const char *mode = lua_tostring(L, -1);
      pc->enabled = mode && strcmp(mode, "off") != 0;
      pc->mode = mode && !strcmp(mode, "dedicated") ? EWS_PMD_DEDICATED : EWS_PMD_SHARED;
      lua_pop(L, 1);
      pc->level = (uint8_t)opt_num(L, ct, "level", pc->level);
      pc->threshold = (size_t)opt_num(L, ct, "threshold", (double)pc->threshold);
      double kb = opt_num(L, ct, "window_kb", 32);
      pc->server_window_bits = (uint8_t)(10 + (kb >= 32 ? 5 : kb >= 16 ? 4 : kb >= 8 ? 3 : kb >= 4 ? 2 : kb >= 2 ? 1 : 0));
      lua_getfield(L, ct, "client_no_context_takeover");
      pc->client_no_context_takeover = lua_isboolean(L, -1) ? lua_toboolean(L, -1)
                                                            : pc->mode == EWS_PMD_SHARED;
      lua_pop(L, 1);
      lua_getfield(L, ct, "engine"); /* config.lua checked it: shared mode only */
      const char *engine = lua_tostring(L, -1);
      pc->engine = engine && !strcmp(engine, "libdeflate") && pc->mode == EWS_PMD_SHARED
                       ? EWS_PMD_ENGINE_LIBDEFLATE
                       : EWS_PMD_ENGINE_ZLIB;
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    const ews_config_t *cfg = w->cfg;
    if (cfg->compression >= 0) {
      pc->enabled = cfg->compression > 0;
      pc->mode = cfg->compression == 2 ? EWS_PMD_DEDICATED : EWS_PMD_SHARED;
      int kb = cfg->compression_window_kb, bits = 10;
      while ((1 << (bits - 10)) < kb) bits++;
      if (pc->mode == EWS_PMD_DEDICATED) pc->server_window_bits = (uint8_t)bits;
      pc->client_no_context_takeover = pc->mode == EWS_PMD_SHARED;
      if (pc->mode != EWS_PMD_SHARED || cfg->compression_engine == 1)
        pc->engine = EWS_PMD_ENGINE_ZLIB;
      else if (cfg->compression_engine == 2)
        pc->engine = EWS_PMD_ENGINE_LIBDEFLATE;
    }
    lua_getfield(L, t, "origins");
    if (lua_istable(L, -1)) {
      size_t no = lua_objlen(L, -1);
      for (size_t j = 1; j <= no; j++) {
        lua_rawgeti(L, -1, (int)j);
        const char *o = lua_tostring(L, -1);
        if (o && ews_app_add_origin(a, o) != 0) {
          ews_routes_clear(&nr);
          return luaL_error(L, "out of memory");
        }
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
    a->max_connections = (uint32_t)opt_num(L, t, "max_connections", 0);
    a->max_per_ip = (uint32_t)opt_num(L, t, "max_connections_per_ip", 0);
    a->max_per_user = (uint32_t)opt_num(L, t, "max_connections_per_user", 0);
    lua_getfield(L, t, "handler_timeout");
    if (lua_isnumber(L, -1)) {
      double s = lua_tonumber(L, -1);
      a->handler_budget_ns = s > 0 ? (uint64_t)(s * 1e9) : 0;
      if (w->runaway) ews_runaway_note_budget(w->runaway, a->handler_budget_ns);
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "auth_before_upgrade");
    a->has_auth = lua_toboolean(L, -1);
    lua_pop(L, 1);
    a->auth_timeout_ms = opt_ms(L, t, "auth_timeout", 10000);
    /* A smaller window gets a smaller hash table too (zlib's default pairs window 15
     * with memLevel 8): memory per dedicated compressor follows window_kb. */
    if (pc->mode == EWS_PMD_DEDICATED) {
      int ml = pc->server_window_bits - 7;
      pc->mem_level = (uint8_t)(ml < 1 ? 1 : ml > 8 ? 8 : ml);
    }
    a->rx_pmd = a->rx;
    a->rx_pmd.allow_rsv1 = 1;
    /* Deflate can expand incompressible data a little (stored blocks: 5 bytes per
     * 64 KiB): allow that on the wire; the inflater enforces the real limit. */
    if (a->rx.max_message) a->rx_pmd.max_message = a->rx.max_message + a->rx.max_message / 64 + 1024;
    if (a->rx.max_frame) a->rx_pmd.max_frame = a->rx.max_frame + a->rx.max_frame / 64 + 1024;
    /* First-message auth: a small limit until the connection has authenticated. */
    a->auth_max_message = (uint64_t)opt_num(L, t, "auth_max_message_size", 0);
    a->rx_auth = a->rx;
    a->rx_auth_pmd = a->rx_pmd;
    if (a->auth_max_message) {
      uint64_t m = a->auth_max_message;
      if (a->rx.max_message && a->rx.max_message < m) m = a->rx.max_message;
      a->rx_auth.max_message = m;
      if (!a->rx_auth.max_frame || a->rx_auth.max_frame > m) a->rx_auth.max_frame = m;
      uint64_t wire = m + m / 64 + 1024; /* as for rx_pmd: deflate may expand a little */
      a->rx_auth_pmd.max_message = wire;
      if (!a->rx_auth_pmd.max_frame || a->rx_auth_pmd.max_frame > wire)
        a->rx_auth_pmd.max_frame = wire;
    }
    lua_getfield(L, t, "on_backpressure");
    a->drop_on_backpressure = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "drop") == 0;
    lua_pop(L, 1);
    lua_getfield(L, t, "token_protocol_prefix");
    if (lua_isstring(L, -1) && !(a->token_prefix = strdup(lua_tostring(L, -1)))) {
      ews_routes_clear(&nr);
      return luaL_error(L, "out of memory");
    }
    lua_pop(L, 1);
    lua_getfield(L, t, "protocols");
    if (lua_istable(L, -1)) {
      size_t np = lua_objlen(L, -1);
      for (size_t j = 1; j <= np; j++) {
        lua_rawgeti(L, -1, (int)j);
        const char *name = lua_tostring(L, -1);
        if (name && ews_app_add_protocol(a, name) != 0) {
          ews_routes_clear(&nr);
          return luaL_error(L, "out of memory");
        }
        lua_pop(L, 1);
      }
    }
    lua_settop(L, t - 1);
  }
  ews_routes_t old = w->net->routes;
  w->net->routes = nr;
  ews_routes_clear(&old); /* open connections keep their own references */
  return 0;
}

/* core.json_decoder(fallback) -> decode: the message path's JSON decoder
 * (lua/json_decode.h), handing what it does not handle to fallback (cjson's decode). */
static int l_json_decoder(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  ews_json_push_decoder(L, 1);
  return 1;
}

static const luaL_Reg core_fns[] = {
    {"json_decoder", l_json_decoder},
    {"send", l_send},           {"close", l_close},
    {"ping", l_ping},           {"buffered", l_buffered},
    {"remote_addr", l_remote_addr}, {"log", l_log},
    {"log_level", l_log_level}, {"worker_id", l_worker_id},
    {"workers", l_workers},     {"now", l_now}, {"clock", l_clock},
    {"stats", l_stats},         {"set_routes", l_set_routes},
    {"handler_error", l_handler_error}, {"fanout", l_fanout},
    {"app_sockets", l_app_sockets}, {"auth_done", l_auth_done},
    {"count_user", l_count_user}, {"connection_count", l_connection_count},
    {"auth_deadline", l_auth_deadline}, {"authenticated", l_authenticated},
    {"count", l_count},
    {"user_add", l_user_add}, {"user_remove", l_user_remove},
    {"user_list", l_user_list}, {"stats_all", l_stats_all},
    {"subscribe", l_subscribe}, {"unsubscribe", l_unsubscribe}, {"publish", l_publish},
    {"channel_count", l_channel_count}, {"set_run_budget", l_set_run_budget},
    {NULL, NULL}};

int ews_luaopen_core(lua_State *L) {
  void *w = lua_touserdata(L, lua_upvalueindex(1));
  lua_createtable(L, 0, 24);
  ews_api_add(L, w, core_fns);
  ews_api_timer_register(L, w);
  ews_api_pubsub_register(L, w);
  ews_api_notify_register(L, w);
  ews_api_docs_register(L, w);
  ews_api_bus_register(L, w);
  ews_api_presence_register(L, w);
  ews_api_ratelimit_register(L, w);
  ews_api_static_register(L, w);
  ews_api_client_register(L, w);
  ews_api_wait_register(L, w);
  ews_api_pool_register(L, w);
  /* Error codes by number -> short lower-case name ("closed", "backpressure", ...). */
  lua_createtable(L, 0, 48);
#define XX(name, val, cc, hs, msg)        \
  lua_pushinteger(L, val);                \
  lua_pushstring(L, msg);                 \
  lua_rawset(L, -3);
  EWS_ERRNO_MAP(XX)
#undef XX
  lua_setfield(L, -2, "errors");
  lua_createtable(L, 0, 48);
#define XX(name, val, cc, hs, msg)        \
  lua_pushinteger(L, val);                \
  lua_pushstring(L, #name);               \
  lua_rawset(L, -3);
  EWS_ERRNO_MAP(XX)
#undef XX
  lua_setfield(L, -2, "error_names");
  lua_pushinteger(L, EWS_LOG_DEBUG);
  lua_setfield(L, -2, "DEBUG");
  lua_pushinteger(L, EWS_LOG_INFO);
  lua_setfield(L, -2, "INFO");
  lua_pushinteger(L, EWS_LOG_WARN);
  lua_setfield(L, -2, "WARN");
  lua_pushinteger(L, EWS_LOG_ERROR);
  lua_setfield(L, -2, "ERROR");
  lua_pushboolean(L, w != NULL);
  lua_setfield(L, -2, "in_worker");
  return 1;
}
