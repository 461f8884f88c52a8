/* api_bus.c — Lua messages between workers: core.post(worker_id, blob) queues a blob
 * of Lua values (serialised by lua/edgews/workers.lua with LuaJIT's string.buffer)
 * on another worker's inbox (hub/bus.h); there it runs in a task of its own through
 * the Lua dispatcher `_bus`. Cross-worker sends to a user's sockets and app-wide
 * broadcasts travel this way; workers share no Lua state. */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub/bus.h"
#include "log.h"
#include "lua/api.h"
#include "lua/tasks.h"

typedef struct {
  ews_bus_msg_t base; /* first */
  size_t len;
  char data[];
} lua_msg_t;

static void msg_run(void *ud, ews_bus_msg_t *m) {
  ews_hub_t *h = ud;
  ews_vm_t *w = h->up;
  lua_msg_t *lm = (lua_msg_t *)m;
  ews_task_t *t = w && w->L ? ews_task_get(w) : NULL;
  if (!t) {
    EWS_ERROR("bus: dropped a message (no task)");
    return;
  }
  lua_rawgeti(t->co, LUA_REGISTRYINDEX, w->refs.bus);
  lua_pushlstring(t->co, lm->data, lm->len);
  ews_task_start(w, t, 1, NULL);
}

static void msg_free(ews_bus_msg_t *m) { free(m); }

static const ews_bus_kind_t lua_kind = {"Lua", msg_run, msg_free, NULL};

/* core.post(worker_id, blob) -> true | nil, err: a bus message for another worker. */
static int l_post(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  int to = (int)luaL_checkinteger(L, 1);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  if (!w || to < 0 || to >= w->hub->nworkers) return ews_api_result(L, EWS_EINVAL);
  lua_msg_t *m = malloc(sizeof *m + n);
  if (!m) return ews_api_result(L, EWS_ENOMEM);
  m->base.kind = &lua_kind;
  m->len = n;
  memcpy(m->data, p, n);
  return ews_api_result(L, ews_bus_post(&w->hub->peers[to]->inbox, &m->base));
}

void ews_api_bus_register(lua_State *L, void *w) {
  static const luaL_Reg fns[] = {{"post", l_post}, {NULL, NULL}};
  ews_api_add(L, w, fns);
}
