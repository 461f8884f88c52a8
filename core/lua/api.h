/* api.h — registration of the C functions that make up the `edgews.core` module,
 * one concern per file (api_core.c: sockets, routes, logging, stats; api_timer.c:
 * timers). Each adds its functions to the table on top of the stack, with the
 * worker (or NULL on the main thread's configuration VM) as upvalue. */
#ifndef EWS_API_H
#define EWS_API_H

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>

struct ews_worker;
struct ews_conn;

/* The socket argument: the `_c` of a Lua socket (the connection's address as a
 * number). */
static inline struct ews_conn *ews_api_conn(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TNUMBER) luaL_argerror(L, idx, "open socket expected");
  return (struct ews_conn *)(uintptr_t)lua_tonumber(L, idx);
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
void ews_api_notify_register(lua_State *L, void *w);
/* Document logs of edgews.docs (api_docs.c): doc_append (waits for the commit), doc_load. */
void ews_api_docs_register(lua_State *L, void *w);

void ews_api_timer_register(lua_State *L, void *w);
/* Presence (api_presence.c): the presence_* functions and the worker's presence timer. */
void ews_api_presence_register(lua_State *L, void *w);
/* At worker shutdown: stops and frees every Lua timer (and the tasks sleeping). */
void ews_ltimers_close_all(struct ews_worker *w);

#endif
