/* api_pool.c — the pool's lines in GET /metrics. The pool (lua/edgews/pool.lua) lives
 * in each worker's Lua; it renders its gauges and counters as Prometheus lines, one
 * text per metric family, and hands them here (core.pool_metrics) whenever it runs
 * its maintenance (every eviction_interval) or a backend changes state. /metrics,
 * served by any worker, prints each family's HELP and TYPE once and then every
 * worker's text for it. The texts are process-wide, under one mutex: they change a
 * few times a second at most, never on a message path. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "lua/api.h"

#define MAX_WORKERS 256

static const char *const families[EWS_POOL_FAMILIES][2] = {
    {"edgews_pool_connections", "gauge\" \"Pool connections, by pool, backend and state (idle, in_flight, connecting)."},
    {"edgews_pool_waiting", "gauge\" \"Acquisitions waiting for a pool connection."},
    {"edgews_pool_backend_healthy", "gauge\" \"1 while the backend passes its health checks."},
    {"edgews_pool_circuit_state", "gauge\" \"The backend's circuit breaker: 0 closed, 1 half-open, 2 open."},
    {"edgews_pool_failures_total", "counter\" \"Failed connects, validations and requests, by backend."},
    {"edgews_pool_acquired_total", "counter\" \"Connections handed out by pool:acquire."},
};

static uv_once_t once = UV_ONCE_INIT;
static uv_mutex_t mu;
static char *texts[MAX_WORKERS][EWS_POOL_FAMILIES];

static void init(void) { uv_mutex_init(&mu); }

/* core.pool_metrics(family (0-based), text) */
static int l_pool_metrics(lua_State *L) {
  ews_vm_t *w = lua_touserdata(L, lua_upvalueindex(1));
  lua_Integer f = luaL_checkinteger(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (!w || w->id < 0 || w->id >= MAX_WORKERS || f < 0 || f >= EWS_POOL_FAMILIES) return 0;
  char *copy = n ? malloc(n + 1) : NULL;
  if (copy) memcpy(copy, s, n + 1);
  uv_once(&once, init);
  uv_mutex_lock(&mu);
  char *old = texts[w->id][f];
  texts[w->id][f] = copy;
  uv_mutex_unlock(&mu);
  free(old);
  return 0;
}

void ews_api_pool_register(lua_State *L, void *w) {
  static const luaL_Reg fns[] = {{"pool_metrics", l_pool_metrics}, {NULL, NULL}};
  ews_api_add(L, w, fns);
}

void ews_pool_metrics(int nworkers, void (*put)(void *ud, const char *s), void *ud) {
  uv_once(&once, init);
  uv_mutex_lock(&mu);
  for (int f = 0; f < EWS_POOL_FAMILIES; f++) {
    int any = 0;
    for (int i = 0; i < nworkers && i < MAX_WORKERS; i++) any |= texts[i][f] != NULL;
    if (!any) continue;
    const char *name = families[f][0], *meta = families[f][1];
    const char *q = strchr(meta, '"');
    put(ud, "# HELP ");
    put(ud, name);
    put(ud, " ");
    put(ud, q + 3);
    put(ud, "\n# TYPE ");
    put(ud, name);
    put(ud, " ");
    char type[16];
    size_t tl = (size_t)(q - meta) < sizeof type - 1 ? (size_t)(q - meta) : sizeof type - 1;
    memcpy(type, meta, tl);
    type[tl] = 0;
    put(ud, type);
    put(ud, "\n");
    for (int i = 0; i < nworkers && i < MAX_WORKERS; i++)
      if (texts[i][f]) put(ud, texts[i][f]);
  }
  uv_mutex_unlock(&mu);
}

void ews_pool_metrics_free(void) {
  uv_once(&once, init);
  uv_mutex_lock(&mu);
  for (int i = 0; i < MAX_WORKERS; i++)
    for (int f = 0; f < EWS_POOL_FAMILIES; f++) {
      free(texts[i][f]);
      texts[i][f] = NULL;
    }
  uv_mutex_unlock(&mu);
}
