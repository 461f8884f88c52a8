/* tasks.c — pooled coroutines that run Lua handlers (see tasks.h). */
#include "lua/tasks.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "lua/runaway.h"
#include "net/conn.h"

#define TASK_POOL_MAX 256

const double ews_latency_bounds[EWS_LATENCY_BUCKETS] = {
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 1e300};

ews_task_t *ews_task_get(ews_vm_t *w) {
  ews_task_t *t = w->task_free;
  if (t) {
    w->task_free = t->next;
    w->task_free_n--;
    t->next = NULL;
    return t;
  }
  t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->co = lua_newthread(w->L);
  t->w = w;
  t->ref = luaL_ref(w->L, LUA_REGISTRYINDEX);
  return t;
}

static void release(ews_vm_t *w, ews_task_t *t, int reusable) {
  if (t->conn && t->conn->udata == t) {
    t->conn->udata = NULL;
    ews_conn_unpause(t->conn); /* its queue has been worked off */
  }
  t->conn = NULL;
  t->waiting = 0;
  if (reusable && w->task_free_n < TASK_POOL_MAX) {
    lua_settop(t->co, 0);
    t->next = w->task_free;
    w->task_free = t;
    w->task_free_n++;
    return;
  }
  /* A thread that died in an error (or an overfull pool): let the GC have it. */
  luaL_unref(w->L, LUA_REGISTRYINDEX, t->ref);
  free(t);
}

static void record_latency(ews_vm_t *w, uint64_t ns) {
  double s = (double)ns / 1e9;
  int b = 0;
  while (b < EWS_LATENCY_BUCKETS - 1 && s > ews_latency_bounds[b]) b++;
  EWS_STAT_ADD(w->stats.latency[b], 1);
  EWS_STAT_ADD(w->stats.latency_sum, s);
}

/* After lua_resume returned r: pool, park or discard the task. */
static void resumed(ews_vm_t *w, ews_task_t *t, int r) {
  if (r == 0) {
    release(w, t, 1);
    return;
  }
  if (r == LUA_YIELD) {
    if (t->waiting) {
      if (t->conn) t->conn->udata = t; /* events for this connection queue behind it */
      return;
    }
    /* A bare coroutine.yield() in a handler: nothing would ever resume it. */
    EWS_ERROR("a handler yielded outside an edgews wait (coroutine.yield at the top of a "
              "handler?); the task is abandoned");
    if (t->conn) ews_conn_fail(t->conn, EWS_EHANDLER, NULL);
    release(w, t, 0);
    return;
  }
  /* The dispatchers catch handler errors themselves; this is an error in the
   * dispatch machinery or out of memory. */
  const char *msg = lua_tostring(t->co, -1);
  luaL_traceback(w->L, t->co, msg ? msg : "(error object is not a string)", 0);
  EWS_ERROR("task error: %s", lua_tostring(w->L, -1));
  lua_pop(w->L, 1);
  if (t->conn) ews_conn_fail(t->conn, EWS_EHANDLER, NULL);
  release(w, t, 0);
}

static void run(ews_vm_t *w, ews_task_t *t, int nargs) {
  ews_task_t *prev = w->current_task;
  w->current_task = t;
  t->waiting = 0;
  uint64_t t0 = uv_hrtime();
  /* Its time budget: the handler_timeout of the connection's app, or the server's. */
  ews_runaway_begin(w->runaway, t0,
                    t->conn && ews_conn_app(t->conn) ? ews_conn_app(t->conn)->handler_budget_ns
                                                    : UINT64_MAX);
  int r = lua_resume(t->co, nargs);
  if (!prev) record_latency(w, uv_hrtime() - t0); /* nested runs count in their parent */
  w->current_task = prev;
  resumed(w, t, r);
  ews_runaway_end(w->runaway);
}

void ews_task_start(ews_vm_t *w, ews_task_t *t, int nargs, ews_conn_t *conn) {
  t->conn = conn;
  if (conn) conn->udata = t;
  run(w, t, nargs);
}

void ews_task_resume(ews_vm_t *w, ews_task_t *t, int nargs) { run(w, t, nargs); }

ews_task_t *ews_task_current(ews_vm_t *w, lua_State *L) {
  ews_task_t *t = w ? w->current_task : NULL;
  return t && t->co == L ? t : NULL;
}

void ews_task_detach(ews_task_t *t) {
  if (t->conn && t->conn->udata == t) t->conn->udata = NULL;
  t->conn = NULL;
}

void ews_task_pool_free(ews_vm_t *w) {
  while (w->task_free) {
    ews_task_t *t = w->task_free;
    w->task_free = t->next;
    free(t);
  }
  w->task_free_n = 0;
}
