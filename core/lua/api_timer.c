/* api_timer.c — timers for Lua: edgews.sleep (park the running handler task for a
 * while), edgews.timer and edgews.every (run a function later, or periodically, in
 * a task of its own). Each timer is one uv_timer_t on the worker's loop, listed on
 * the worker so that shutdown can free what is still pending. Lua timers are few
 * (a sleeping handler, an app's periodic job), unlike connection deadlines (heartbeats,
 * authentication expiry), which use the timer wheel.
 *
 * A timer that Lua may cancel is found by its id through a per-worker Lua table
 * (id -> light userdata), so cancelling costs the same with a million timers as with
 * one. Ids come from a per-worker counter (workers run in parallel) and are never
 * reused within a worker. Delays have no upper limit: libuv clamps a deadline past
 * the end of its 64-bit millisecond clock, so math.huge means "never". */
#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>

#include "log.h"
#include "lua/api.h"
#include "lua/tasks.h"

typedef struct ews_ltimer {
  uv_timer_t handle;
  ews_vm_t *w;
  struct ews_ltimer *prev, *next;
  ews_task_t *task; /* sleep: the parked task to resume */
  int fn_ref;       /* timer/every: the function to run */
  double id;        /* timer/every: the key in the worker's id -> timer table; 0 for sleep */
} ews_ltimer_t;

static void on_closed(uv_handle_t *h) { free(h->data); }

static void unlink_timer(ews_ltimer_t *t) {
  if (t->prev) t->prev->next = t->next;
  else t->w->ltimers = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = NULL;
  t->w->nltimers--;
}

/* id -> t in the worker's table (t NULL: removes the entry). */
static void map_set(lua_State *L, ews_vm_t *w, double id, ews_ltimer_t *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->ltimer_map);
  lua_pushnumber(L, id);
  if (t) lua_pushlightuserdata(L, t);
  else lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* L: the running Lua thread, or NULL outside Lua (the worker's main state is used). */
static void destroy(ews_ltimer_t *t, lua_State *L) {
  ews_vm_t *w = t->w;
  unlink_timer(t);
  if (!L) L = w->L;
  if (L) {
    if (t->id != 0) map_set(L, w, t->id, NULL);
    if (t->fn_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
  }
  t->fn_ref = LUA_NOREF;
  uv_close((uv_handle_t *)&t->handle, on_closed);
}

static void on_fire(uv_timer_t *h) {
  ews_ltimer_t *t = h->data;
  ews_vm_t *w = t->w;
  if (t->task) {
    ews_task_t *task = t->task;
    t->task = NULL;
    destroy(t, NULL);
    ews_task_resume(w, task, 0);
    return;
  }
  int repeating = uv_timer_get_repeat(h) > 0;
  ews_task_t *task = ews_task_get(w);
  if (!task) {
    EWS_ERROR("timer: out of memory");
  } else {
    lua_rawgeti(task->co, LUA_REGISTRYINDEX, w->refs.run_timer);
    lua_rawgeti(task->co, LUA_REGISTRYINDEX, t->fn_ref);
    if (!repeating) destroy(t, NULL); /* before running: the function may start new timers */
    ews_task_start(w, task, 1, NULL);
    return;
  }
  if (!repeating) destroy(t, NULL);
}

/* Seconds -> libuv milliseconds: any non-negative number; beyond 2^63 ms (math.huge
 * included) it is the largest delay, which libuv clamps to "never". */
static uint64_t delay_ms(lua_State *L, double secs) {
  if (!(secs >= 0)) luaL_error(L, "bad delay %f (seconds >= 0 expected)", secs);
  double ms = secs * 1000.0 + 0.5;
  return ms >= 9.2e18 ? UINT64_MAX : (uint64_t)ms;
}

static ews_ltimer_t *new_timer(lua_State *L, ews_vm_t *w) {
  if (!w) luaL_error(L, "timers need a worker (not available while reading the configuration)");
  ews_ltimer_t *t = calloc(1, sizeof *t);
  if (!t) luaL_error(L, "out of memory");
  uv_timer_init(w->net->loop, &t->handle);
  t->handle.data = t;
  t->w = w;
  t->fn_ref = LUA_NOREF;
  t->next = w->ltimers;
  if (w->ltimers) w->ltimers->prev = t;
  w->ltimers = t;
  w->nltimers++;
  return t;
}

/* core.sleep(secs): only inside a handler task; yields until the time has passed. */
static int l_sleep(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  uint64_t ms = delay_ms(L, luaL_checknumber(L, 1));
  ews_task_t *task = ews_task_current(w, L);
  if (!task) return luaL_error(L, "edgews.sleep can only wait inside a handler");
  ews_ltimer_t *t = new_timer(L, w);
  t->task = task;
  task->waiting = 1;
  uv_timer_start(&t->handle, on_fire, ms, 0);
  return lua_yield(L, 0);
}

/* core.timer(secs, fn [, every]) -> id */
static int l_timer(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  double secs = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int every = lua_toboolean(L, 3);
  if (every && !(secs >= 0.001)) return luaL_error(L, "edgews.every: interval must be >= 0.001 s");
  uint64_t ms = delay_ms(L, secs);
  if (!w) return luaL_error(L, "timers need a worker (not available while reading the configuration)");
  if (!w->ltimer_map) { /* registry refs are > 0 */
    lua_newtable(L);
    w->ltimer_map = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  ews_ltimer_t *t = new_timer(L, w);
  lua_pushvalue(L, 2);
  t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  t->id = ++w->ltimer_seq;
  map_set(L, w, t->id, t);
  uv_timer_start(&t->handle, on_fire, ms, every ? (ms ? ms : 1) : 0);
  lua_pushnumber(L, t->id);
  return 1;
}

/* core.timer_cancel(id) -> true if it was pending */
static int l_timer_cancel(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  double id = luaL_checknumber(L, 1);
  ews_ltimer_t *t = NULL;
  if (w && w->ltimer_map) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->ltimer_map);
    lua_pushnumber(L, id);
    lua_rawget(L, -2);
    t = lua_touserdata(L, -1);
    lua_pop(L, 2);
  }
  if (t) destroy(t, L);
  lua_pushboolean(L, t != NULL);
  return 1;
}

void ews_api_timer_register(lua_State *L, void *w) {
  static const luaL_Reg fns[] = {
      {"sleep", l_sleep}, {"timer", l_timer}, {"timer_cancel", l_timer_cancel}, {NULL, NULL}};
  ews_api_add(L, w, fns);
}

void ews_ltimers_close_all(ews_vm_t *w) {
  while (w->ltimers) {
    ews_ltimer_t *t = w->ltimers;
    if (t->task) {
      /* A handler parked in sleep at shutdown: it will never run again. */
      ews_task_t *task = t->task;
      t->task = NULL;
      ews_task_detach(task);
      free(task); /* its thread is freed with the VM */
    }
    destroy(t, NULL);
  }
}
