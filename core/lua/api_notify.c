/* api_notify.c — the notification functions of `edgews.core` over the store
 * (hub/store.h), or the engine's notifications when it keeps them (a cluster's
 * Redis: hub/engine.h): store and mark wait in the calling handler until the writer
 * has committed (fsynced) them; pending and list read the worker's snapshot. The
 * Lua face, with delivery to online users, is lua/edgews/notifications.lua. */
#include <lauxlib.h>
#include <lua.h>
#include <stdlib.h>

#include "err.h"
#include "hub/engine.h"
#include "hub/store.h"
#include "lua/api.h"
#include "lua/tasks.h"

#define MAX_IDS 1000

static ews_vm_t *worker_of(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  if (!w) luaL_error(L, "notifications need a worker (not available while reading the configuration)");
  return w;
}

static void on_done(ews_store_req_t *req, void *ud) {
  ews_task_t *task = ud;
  ews_vm_t *w = task->w;
  lua_State *co = task->co;
  if (req->status < 0) {
    lua_pushnil(co);
    lua_pushinteger(co, req->status);
  } else if (req->op == EWS_STORE_NOTIF) {
    lua_pushnumber(co, (lua_Number)req->id);
    lua_pushnumber(co, (lua_Number)req->created_at);
  } else {
    lua_pushnumber(co, (lua_Number)req->changed);
    lua_pushnil(co);
  }
  ews_task_resume(w, task, 2);
}

static void on_done_ignored(ews_store_req_t *req, void *ud) {
  (void)req;
  (void)ud;
}

/* The engine's notifications, or NULL (the store's). */
static const ews_notify_engine_t *eng(const ews_vm_t *w) { return w->hub->engine->notify; }

/* The engine's completion: (id, created_at) of a store, (changed) of a mark. */
static void on_engine_done(ews_hub_t *h, void *ud, int status, int64_t a, int64_t b) {
  (void)h;
  ews_task_t *task = ud;
  ews_vm_t *w = task->w;
  if (!w->L) return;
  lua_State *co = task->co;
  if (status < 0) {
    lua_pushnil(co);
    lua_pushinteger(co, status);
  } else {
    lua_pushnumber(co, (lua_Number)a);
    if (b) lua_pushnumber(co, (lua_Number)b);
    else lua_pushnil(co);
  }
  ews_task_resume(w, task, 2);
}

/* An engine request's result r: parks the handler until it completes. */
static int engine_wait(lua_State *L, ews_task_t *task, int r) {
  if (r < 0) return ews_api_result(L, r);
  if (!task) {
    lua_pushboolean(L, 1);
    return 1;
  }
  task->waiting = 1;
  return lua_yield(L, 0);
}

/* Submits req; inside a task and when asked to wait, parks it until the commit
 * (resumed by on_done). */
static int submit(lua_State *L, ews_vm_t *w, ews_store_req_t *req, int wait) {
  ews_task_t *task = wait ? ews_task_current(w, L) : NULL;
  int r = ews_store_submit(w->hub->store, req, task ? on_done : on_done_ignored, task);
  if (r < 0) return ews_api_result(L, r);
  if (!task) {
    lua_pushboolean(L, 1);
    return 1;
  }
  task->waiting = 1;
  return lua_yield(L, 0);
}

/* core.notif_store(user, payload, ttl) -> id, created_at | true (outside a
 * handler: not waited for) | nil, code */
static int l_store(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t ul, n;
  const char *user = luaL_checklstring(L, 1, &ul);
  const char *p = luaL_checklstring(L, 2, &n);
  int ttl = (int)luaL_optinteger(L, 3, 0);
  if (eng(w)) {
    ews_task_t *task = ews_task_current(w, L);
    return engine_wait(L, task, eng(w)->store(w->hub, user, ul, p, n, ttl,
                                              task ? on_engine_done : NULL, task));
  }
  if (!w->hub->store) return ews_api_result(L, EWS_ENOSTORE);
  ews_store_req_t *req;
  int r = ews_store_req_notif(&req, user, ul, p, n, ttl);
  if (r < 0) return ews_api_result(L, r);
  return submit(L, w, req, 1);
}

/* core.notif_mark(user|nil, {ids}, state, wait) -> changed | true | nil, code */
static int l_mark(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t ul = 0;
  const char *user = lua_isnil(L, 1) ? NULL : luaL_checklstring(L, 1, &ul);
  luaL_checktype(L, 2, LUA_TTABLE);
  int state = (int)luaL_checkinteger(L, 3);
  if (!w->hub->store && !eng(w)) return ews_api_result(L, EWS_ENOSTORE);
  size_t n = lua_objlen(L, 2);
  if (n == 0 || n > MAX_IDS) return ews_api_result(L, EWS_EINVAL);
  int64_t ids[MAX_IDS];
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 2, (int)i + 1);
    if (!lua_isnumber(L, -1)) return luaL_argerror(L, 2, "notification ids must be numbers");
    ids[i] = (int64_t)lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  if (eng(w)) {
    ews_task_t *task = lua_toboolean(L, 4) ? ews_task_current(w, L) : NULL;
    return engine_wait(L, task, eng(w)->mark(w->hub, user, ul, ids, n, state,
                                             task ? on_engine_done : NULL, task));
  }
  ews_store_req_t *req;
  int r = ews_store_req_mark(&req, user, ul, ids, n, (ews_notif_state_t)state);
  if (r < 0) return ews_api_result(L, r);
  return submit(L, w, req, lua_toboolean(L, 4));
}

static void push_rows(lua_State *L, const ews_store_notifs_t *res) {
  static const char *const states[] = {"pending", "delivered", "read"};
  lua_createtable(L, (int)res->n, 0);
  for (size_t i = 0; i < res->n; i++) {
    const ews_store_notif_t *r = &res->rows[i];
    lua_createtable(L, 0, 5);
    lua_pushnumber(L, (lua_Number)r->id);
    lua_setfield(L, -2, "id");
    lua_pushnumber(L, (lua_Number)r->created_at);
    lua_setfield(L, -2, "created_at");
    if (r->expires_at) {
      lua_pushnumber(L, (lua_Number)r->expires_at);
      lua_setfield(L, -2, "expires_at");
    }
    lua_pushstring(L, states[r->state >= 0 && r->state <= 2 ? r->state : 0]);
    lua_setfield(L, -2, "state");
    lua_pushlstring(L, r->payload, r->len);
    lua_setfield(L, -2, "data");
    lua_rawseti(L, -2, (int)i + 1);
  }
}

/* core.notif_pending(user, limit) -> rows, total | nil, code */
static int l_pending(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t ul;
  const char *user = luaL_checklstring(L, 1, &ul);
  uint32_t limit = (uint32_t)luaL_optinteger(L, 2, 100);
  if (!w->hub->store && !eng(w)) return ews_api_result(L, EWS_ENOSTORE);
  ews_store_notifs_t res;
  int r = eng(w) ? eng(w)->pending(w->hub, user, ul, limit, &res)
                 : ews_store_notif_pending(w->hub->store, user, ul, limit, &res);
  if (r < 0) return ews_api_result(L, r);
  push_rows(L, &res);
  lua_pushnumber(L, (lua_Number)res.total);
  if (eng(w)) eng(w)->notifs_free(&res);
  else ews_store_notifs_free(&res);
  return 2;
}

/* core.notif_list(user, limit, offset) -> rows, total | nil, code */
static int l_list(lua_State *L) {
  ews_vm_t *w = worker_of(L);
  size_t ul;
  const char *user = luaL_checklstring(L, 1, &ul);
  uint32_t limit = (uint32_t)luaL_optinteger(L, 2, 20);
  uint32_t offset = (uint32_t)luaL_optinteger(L, 3, 0);
  if (!w->hub->store && !eng(w)) return ews_api_result(L, EWS_ENOSTORE);
  ews_store_notifs_t res;
  int r = eng(w) ? eng(w)->list(w->hub, user, ul, limit, offset, &res)
                 : ews_store_notif_list(w->hub->store, user, ul, limit, offset, &res);
  if (r < 0) return ews_api_result(L, r);
  push_rows(L, &res);
  lua_pushnumber(L, (lua_Number)res.total);
  if (eng(w)) eng(w)->notifs_free(&res);
  else ews_store_notifs_free(&res);
  return 2;
}

/* core.has_store() -> true when the server runs with a data directory */
static int l_has_store(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushboolean(L, w && w->hub->store != NULL);
  return 1;
}

/* core.notif_available() -> true when notifications can be stored: a data
 * directory, or a cluster's Redis */
static int l_notif_available(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  lua_pushboolean(L, w && (w->hub->store != NULL || eng(w) != NULL));
  return 1;
}

void ews_api_notify_register(lua_State *L, void *w) {
  static const luaL_Reg fns[] = {{"notif_store", l_store}, {"notif_mark", l_mark},
                                 {"notif_pending", l_pending}, {"notif_list", l_list},
                                 {"has_store", l_has_store},
                                 {"notif_available", l_notif_available}, {NULL, NULL}};
  ews_api_add(L, w, fns);
}
