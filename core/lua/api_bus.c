/* api_bus.c — Lua messages between workers: core.post(worker_id, blob) sends a blob
 * of Lua values (serialised by lua/edgews/workers.lua with LuaJIT's string.buffer)
 * to another worker through the engine (hub/engine.h: users.post; the in-process
 * engine puts it on the worker's inbox); there it runs in a task of its own through
 * the Lua dispatcher `_bus` (ews_api_app_message, the hub's app_message hook).
 * Cross-worker sends to a user's sockets, app-wide broadcasts and notifications
 * travel this way; workers share no Lua state. */
#include <lauxlib.h>
#include <lua.h>

#include "err.h"
#include "hub/engine.h"
#include "log.h"
#include "lua/api.h"
#include "lua/tasks.h"

void ews_api_app_message(ews_hub_t *h, const char *data, size_t len) {
  ews_vm_t *w = h->up;
  ews_task_t *t = w && w->L ? ews_task_get(w) : NULL;
  if (!t) {
    EWS_ERROR("bus: dropped a message (no task)");
    return;
  }
  lua_rawgeti(t->co, LUA_REGISTRYINDEX, w->refs.bus);
  lua_pushlstring(t->co, data, len);
  ews_task_start(w, t, 1, NULL);
}

/* core.post(worker_id, blob [, instance]) -> true | nil, err: a bus message for
 * another worker (of another instance of the cluster when instance is given). */
static int l_post(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  int to = (int)luaL_checkinteger(L, 1);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  const char *inst = luaL_optstring(L, 3, NULL);
  if (!w) return ews_api_result(L, EWS_EINVAL);
  const ews_users_engine_t *users = w->hub->engine->users;
  if (inst) /* a worker of another instance of the cluster */
    return ews_api_result(L, users->post_remote ? users->post_remote(w->hub, inst, to, p, n)
                                                : EWS_EINVAL);
  return ews_api_result(L, users->post(w->hub, to, p, n));
}

/* core.post_instances(blob) -> true | nil, err: a bus message for every worker of
 * every other instance of the cluster (nil, EWS_EINVAL outside a cluster). */
static int l_post_instances(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  size_t n;
  const char *p = luaL_checklstring(L, 1, &n);
  if (!w || !w->hub->engine->users->post_all) return ews_api_result(L, EWS_EINVAL);
  return ews_api_result(L, w->hub->engine->users->post_all(w->hub, p, n));
}

/* core.cluster() -> true when this instance is part of a cluster (--redis) */
static int l_cluster(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushboolean(L, w && w->hub->engine->users->post_all != NULL);
  return 1;
}

void ews_api_bus_register(lua_State *L, void *w) {
  static const luaL_Reg fns[] = {{"post", l_post}, {"post_instances", l_post_instances},
                                 {"cluster", l_cluster}, {NULL, NULL}};
  ews_api_add(L, w, fns);
}
