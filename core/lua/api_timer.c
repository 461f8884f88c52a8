/* api_timer.c — timers for Lua: edgews.sleep (park the running handler task for a
 * while), edgews.timer and edgews.every (run a function later, or periodically, in
 * a task of its own). Each timer is one uv_timer_t on the worker's loop, listed on
 * the worker so that shutdown can free what is still pending. Lua timers are few
 * (a sleeping handler, an app's periodic job), unlike connection deadlines, which
 * use the timer wheel. */
#include <lauxlib.h>
#include <stdlib.h>

#include "log.h"
#include "lua/api.h"
#include "lua/tasks.h"
#include "worker.h"

typedef struct ews_ltimer {
  uv_timer_t handle;
  ews_worker_t *w;
  struct ews_ltimer *prev, *next;
  ews_task_t *task; /* sleep: the parked task to resume */
  int fn_ref;       /* timer/every: the function to run */
  double id;
} ews_ltimer_t;

static double next_id = 1;

static void on_closed(uv_handle_t *h) { free(h->data); }

static void unlink_timer(ews_ltimer_t *t) {
  if (t->prev) t->prev->next = t->next;
  else t->w->ltimers = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = NULL;
}

static void destroy(ews_ltimer_t *t) {
  unlink_timer(t);
  if (t->fn_ref != LUA_NOREF && t->w->L) luaL_unref(t->w->L, LUA_REGISTRYINDEX, t->fn_ref);
  t->fn_ref = LUA_NOREF;
  uv_close((uv_handle_t *)&t->handle, on_closed);
}

static void on_fire(uv_timer_t *h) {
  ews_ltimer_t *t = h->data;
  ews_worker_t *w = t->w;
  if (t->task) {
    ews_task_t *task = t->task;
    t->task = NULL;
    destroy(t);
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
    if (!repeating) destroy(t); /* before running: the function may start new timers */
    ews_task_start(w, task, 1, NULL);
    return;
  }
  if (!repeating) destroy(t);
}

static ews_ltimer_t *new_timer(lua_State *L, ews_worker_t *w, double secs) {
  if (!w) luaL_error(L, "timers need a worker (not available while reading the configuration)");
  if (!(secs >= 0) || secs > 1e7) luaL_error(L, "bad delay %f", secs);
  ews_ltimer_t *t = calloc(1, sizeof *t);
  if (!t) luaL_error(L, "out of memory");
  uv_timer_init(&w->loop, &t->handle);
  t->handle.data = t;
  t->w = w;
  t->fn_ref = LUA_NOREF;
  t->id = next_id++;
  t->next = w->ltimers;
  if (w->ltimers) w->ltimers->prev = t;
  w->ltimers = t;
  return t;
}

/* core.sleep(secs): only inside a handler task; yields until the time has passed. */
static int l_sleep(lua_State *L) {
  ews_worker_t *w = lua_touserdata(L, lua_upvalueindex(1));
  double secs = luaL_checknumber(L, 1);
  ews_task_t *task = ews_task_current(w, L);
  if (!task) return luaL_error(L, "edgews.sleep can only wait inside a handler");
  ews_ltimer_t *t = new_timer(L, w, secs);
  t->task = task;
  task->waiting = 1;
  uv_timer_start(&t->handle, on_fire, (uint64_t)(secs * 1000 + 0.5), 0);
  return lua_yield(L, 0);
}

/* core.timer(secs, fn [, every]) -> id */
static int l_timer(lua_State *L) {
  ews_worker_t *w = lua_touserdata(L, lua_upvalueindex(1));
  double secs = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int every = lua_toboolean(L, 3);
  if (every && !(secs >= 0.001)) return luaL_error(L, "edgews.every: interval must be >= 0.001 s");
  ews_ltimer_t *t = new_timer(L, w, secs);
  lua_pushvalue(L, 2);
  t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uint64_t ms = (uint64_t)(secs * 1000 + 0.5);
  uv_timer_start(&t->handle, on_fire, ms, every ? (ms ? ms : 1) : 0);
  lua_pushnumber(L, t->id);
  return 1;
}

/* core.timer_cancel(id) -> true if it was pending */
static int l_timer_cancel(lua_State *L) {
  ews_worker_t *w = lua_touserdata(L, lua_upvalueindex(1));
  double id = luaL_checknumber(L, 1);
  for (ews_ltimer_t *t = w ? w->ltimers : NULL; t; t = t->next) {
    if (t->id == id && !t->task) {
      destroy(t);
      lua_pushboolean(L, 1);
      return 1;
    }
  }
  lua_pushboolean(L, 0);
  return 1;
}

void ews_api_timer_register(lua_State *L, void *w) {
  static const luaL_Reg fns[] = {
      {"sleep", l_sleep}, {"timer", l_timer}, {"timer_cancel", l_timer_cancel}, {NULL, NULL}};
  ews_api_add(L, w, fns);
}

void ews_ltimers_close_all(ews_worker_t *w) {
  while (w->ltimers) {
    ews_ltimer_t *t = w->ltimers;
    if (t->task) {
      /* A handler parked in sleep at shutdown: it will never run again. */
      ews_task_t *task = t->task;
      t->task = NULL;
      ews_task_detach(task);
      free(task); /* its thread is freed with the VM */
    }
    destroy(t);
  }
}
