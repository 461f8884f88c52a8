/* api_wait.c — a task waits until another task wakes it, or a timeout: the primitive
 * behind queues in Lua (the pool's FIFO of acquirers).
 *
 *   local id = core.wait_new()          -- a wait record, by id
 *   ... put id in a queue ...
 *   local a, b = core.wait(id, ms)      -- parks the running task (ms < 0: no limit);
 *                                       -- nil, "timeout" when nobody woke it
 *   core.wake(id, a, b) -> true         -- from any task or callback; false when the
 *                                       -- record is gone (timed out, or woken already)
 *
 * A wake is never run inside the waker: the woken task resumes from the loop (a zero
 * timer), so a waker's handler finishes first and tasks never nest. A wake that comes
 * before the wait (the waiter has not parked yet) is kept and returned at once. Ids
 * are per worker, never reused; records are found through a per-worker Lua table
 * (id -> light userdata, w->lwait_map) and listed on the VM (w->lwaits) for shutdown. */
#include <lauxlib.h>
#include <stdlib.h>

#include "lua/api.h"
#include "lua/tasks.h"

typedef struct ews_lwait {
  uv_timer_t timer;
  ews_vm_t *w;
  struct ews_lwait *prev, *next;
  ews_task_t *task;
  double id;
  int vals;    /* registry ref of the woken values {n = count, ...} */
  int woken;
  int started; /* the timer handle was initialised */
} ews_lwait_t;


static void on_closed(uv_handle_t *h) { free(h->data); }

static void map_set(lua_State *L, ews_vm_t *w, double id, ews_lwait_t *r) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->lwait_map);
  lua_pushnumber(L, id);
  if (r) lua_pushlightuserdata(L, r);
  else lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static ews_lwait_t *find(lua_State *L, ews_vm_t *w, double id) {
  if (!w || !w->lwait_map) return NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->lwait_map);
  lua_pushnumber(L, id);
  lua_rawget(L, -2);
  ews_lwait_t *r = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return r;
}

/* Unlinks and frees (through the timer's close when it was started). */
static void destroy(lua_State *L, ews_lwait_t *r) {
  ews_vm_t *w = r->w;
  if (r->prev) r->prev->next = r->next;
  else w->lwaits = r->next;
  if (r->next) r->next->prev = r->prev;
  map_set(L, w, r->id, NULL);
  if (r->vals != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, r->vals);
  r->vals = LUA_NOREF;
  if (r->started) uv_close((uv_handle_t *)&r->timer, on_closed);
  else free(r);
}

/* Pushes the woken values on L (any thread of the VM); returns how many. */
static int push_vals(lua_State *L, ews_lwait_t *r) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->vals);
  lua_getfield(L, -1, "n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n + 2, "core.wait: too many values");
  for (int i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -(n + 1));
  return n;
}

static void on_fire(uv_timer_t *t) {
  ews_lwait_t *r = t->data;
  ews_task_t *task = r->task;
  r->task = NULL;
  if (!task) return;
  lua_State *L = r->w->L;
  int n;
  if (r->woken) {
    n = push_vals(task->co, r);
  } else {
    lua_pushnil(task->co);
    lua_pushstring(task->co, "timeout");
    n = 2;
  }
  ews_vm_t *w = r->w;
  destroy(L, r);
  ews_task_resume(w, task, n);
}

static int l_wait_new(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  if (!w) return luaL_error(L, "waiting needs a worker");
  if (!w->lwait_map) { /* registry refs are > 0 */
    lua_newtable(L);
    w->lwait_map = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  ews_lwait_t *r = calloc(1, sizeof *r);
  if (!r) return luaL_error(L, "out of memory");
  r->w = w;
  r->vals = LUA_NOREF;
  r->id = ++w->lwait_seq;
  r->next = w->lwaits;
  if (w->lwaits) w->lwaits->prev = r;
  w->lwaits = r;
  map_set(L, w, r->id, r);
  lua_pushnumber(L, r->id);
  return 1;
}

static int l_wait(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  ews_lwait_t *r = find(L, w, luaL_checknumber(L, 1));
  double ms = luaL_optnumber(L, 2, -1);
  if (!r) return luaL_error(L, "core.wait: no such wait record");
  if (r->task) return luaL_error(L, "core.wait: already waiting");
  if (r->woken) { /* woken before it waited */
    int n = push_vals(L, r);
    destroy(L, r);
    return n;
  }
  ews_task_t *task = ews_task_current(w, L);
  if (!task) return luaL_error(L, "waiting is only possible inside a handler, a timer or a task");
  r->task = task;
  task->waiting = 1;
  uv_timer_init(w->net->loop, &r->timer);
  r->timer.data = r;
  r->started = 1;
  if (ms >= 0) uv_timer_start(&r->timer, on_fire, (uint64_t)ms, 0);
  return lua_yield(L, 0);
}

static int l_wake(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  ews_lwait_t *r = find(L, w, luaL_checknumber(L, 1));
  if (!r || r->woken) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int n = lua_gettop(L) - 1;
  lua_createtable(L, n, 1);
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(L, 1 + i);
    lua_rawseti(L, -2, i);
  }
  lua_pushinteger(L, n);
  lua_setfield(L, -2, "n");
  r->vals = luaL_ref(L, LUA_REGISTRYINDEX);
  r->woken = 1;
  if (r->task) uv_timer_start(&r->timer, on_fire, 0, 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.wait_cancel(id): drops a record nobody waits on (never parked). */
static int l_wait_cancel(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  ews_lwait_t *r = find(L, w, luaL_checknumber(L, 1));
  if (r && !r->task) destroy(L, r);
  return 0;
}

void ews_api_wait_register(lua_State *L, void *w) {
  static const luaL_Reg fns[] = {{"wait_new", l_wait_new}, {"wait", l_wait}, {"wake", l_wake},
                                 {"wait_cancel", l_wait_cancel}, {NULL, NULL}};
  ews_api_add(L, w, fns);
}

void ews_lwaits_close_all(ews_vm_t *w) {
  while (w->lwaits) {
    ews_lwait_t *r = w->lwaits;
    if (r->task) { /* parked at shutdown: it will never run again */
      ews_task_detach(r->task);
      free(r->task);
      r->task = NULL;
    }
    destroy(w->L, r);
  }
}
