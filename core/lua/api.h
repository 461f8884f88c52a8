/* api.h — registration of the C functions that make up the `edgews.core` module,
 * one concern per file (api_core.c: sockets, routes, logging, stats; api_timer.c:
 * timers). Each adds its functions to the table on top of the stack, with the
 * worker (or NULL on the main thread's configuration VM) as upvalue. */
#ifndef EWS_API_H
#define EWS_API_H

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>

#include "lua/vm.h"
#include "net/conn.h"

/* The socket argument: the `_c` of a Lua socket (the connection's address as a
 * number). */
static inline ews_conn_t *ews_api_conn(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TNUMBER) luaL_argerror(L, idx, "open socket expected");
  return (ews_conn_t *)(uintptr_t)lua_tonumber(L, idx);
}

/* Adds fns to the table on top of the stack, each with the worker as upvalue. */
static inline void ews_api_add(lua_State *L, void *w, const luaL_Reg *fns) {
  for (const luaL_Reg *r = fns; r->name; r++) {
    lua_pushlightuserdata(L, w);
    lua_pushcclosure(L, r->func, 1);
    lua_setfield(L, -2, r->name);
  }
}

/* 0 -> true; an error -> nil, code. Returns the number of values pushed. */
static inline int ews_api_result(lua_State *L, int r) {
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushinteger(L, r);
  return 2;
}

/* pub/sub (api_pubsub.c) and notifications (api_notify.c). */
void ews_api_pubsub_register(lua_State *L, void *w);
/* The hub's handler for the worker's Lua subscribers of a topic (hub->pubsub_local). */
struct ews_pubsub_event;
void ews_api_pubsub_local(ews_hub_t *h, const struct ews_pubsub_event *e);
void ews_api_notify_register(lua_State *L, void *w);
/* Document logs of edgews.docs (api_docs.c): doc_append (waits for the commit), doc_load. */
void ews_api_docs_register(lua_State *L, void *w);

void ews_api_timer_register(lua_State *L, void *w);
/* core.post: Lua messages to other workers (api_bus.c), and the hub's handler of
 * those that arrive here (hub->app_message). */
void ews_api_bus_register(lua_State *L, void *w);
void ews_api_app_message(ews_hub_t *h, const char *data, size_t len);
/* Presence (api_presence.c): the presence_* functions and the worker's presence timer. */
void ews_api_presence_register(lua_State *L, void *w);
/* Rate limits (api_ratelimit.c): core.take, and the FFI link to hub/ratelimit.h. */
void ews_api_ratelimit_register(lua_State *L, void *w);
/* Static files (api_static.c): core.static_root, core.set_static. */
void ews_api_static_register(lua_State *L, void *w);
/* Outbound WebSocket connections (api_client.c): the core.client_* functions; the
 * Lua layer as the owner of client connections (net->client_ops); at worker
 * shutdown, before the loop's last run, every client connection is aborted and the
 * tasks waiting on one let go. */
void ews_api_client_register(lua_State *L, void *w);
extern const ews_conn_ops_t ews_lua_client_ops;
void ews_lclients_close_all(ews_vm_t *w);
/* The pool's /metrics lines (api_pool.c): core.pool_metrics(family, text) per worker;
 * ews_pool_metrics prints every family (HELP, TYPE, each worker's lines) through
 * put; ews_pool_metrics_free at process exit. Any thread. */
#define EWS_POOL_FAMILIES 6
void ews_api_pool_register(lua_State *L, void *w);
void ews_pool_metrics(int nworkers, void (*put)(void *ud, const char *s), void *ud);
void ews_pool_metrics_free(void);
/* core.wait_new / wait / wake / wait_cancel (api_wait.c): a task waits until another
 * wakes it; at shutdown the records left are freed. */
void ews_api_wait_register(lua_State *L, void *w);
void ews_lwaits_close_all(ews_vm_t *w);
/* At worker shutdown: stops and frees every Lua timer (and the tasks sleeping). */
void ews_ltimers_close_all(ews_vm_t *w);

#endif
