/* vm.h — one LuaJIT VM per worker: the Lua layer's per-worker context (ews_vm_t:
 * the VM, its tasks and timers, the Lua layer's counters, and the worker's net and
 * hub contexts it calls into), creation (standard libraries, module paths, the
 * edgews.core C module), loading and reloading the user's script through the
 * edgews module's loader, and the protected-call convention: the traceback message
 * handler sits at stack index 1 for the VM's whole life, so every call from C is
 * `push function, push args, lua_pcall(L, n, r, 1)`.
 *
 * The worker embeds an ews_vm_t, fills id, nworkers, cfg, net and hub, and makes it
 * the owner of its connections (net->ops = &ews_lua_conn_ops, lua/events.h) and the
 * hub's layer above (hub->up, hub->pubsub_local). The main thread's configuration VM
 * has no context (NULL): the functions that need a worker refuse there. */
#ifndef EWS_VM_H
#define EWS_VM_H

#include <lua.h>
#include <stdint.h>

#include "config.h"
#include "hub/hub.h"
#include "net/net.h"
#include "stat.h"

/* Refs (LUA_REGISTRYINDEX) of the functions and metatable C calls on hot paths. */
typedef struct {
  int dispatch_open, dispatch_message, dispatch_close;
  int enqueue_message, enqueue_close; /* events for a connection whose task waits */
  int run_timer;
  int authenticate;
  int bus;
  int pubsub; /* Lua subscribers of pub/sub topics */
  int socket_mt;
  int apps; /* the dispatcher's path -> app table (events.c reads handler fields) */
} ews_vm_refs_t;

/* Counters the application layer (Lua) bumps by name: core.count(name). */
#define EWS_LUA_COUNTERS(XX) \
  XX(auth_failures) XX(auth_expired) XX(rate_limited)
enum {
#define XX(n) EWS_LC_##n,
  EWS_LUA_COUNTERS(XX)
#undef XX
  EWS_LC_MAX
};

/* The codes of the router's error replies (edgews.router), counted by code:
 * core.count("router_errors", code). */
#define EWS_ROUTER_CODES(XX)                                                     \
  XX(message_too_large) XX(binary_not_supported) XX(invalid_json) XX(invalid_message) \
  XX(missing_type) XX(unknown_type) XX(validation_failed)
enum {
#define XX(n) EWS_RC_##n,
  EWS_ROUTER_CODES(XX)
#undef XX
  EWS_RC_MAX
};

#define EWS_LATENCY_BUCKETS 12 /* handler run time: 10 us .. 1 s, +Inf */
/* Upper bounds (seconds) of the handler run-time histogram's buckets; the last is
 * +Inf. */
extern const double ews_latency_bounds[EWS_LATENCY_BUCKETS];

/* The Lua layer's counters (EWS_STAT_ADD, stat.h). */
typedef struct {
  uint64_t handler_errors;
  uint64_t lua[EWS_LC_MAX];
  uint64_t router[EWS_RC_MAX];           /* router error replies, by code */
  uint64_t latency[EWS_LATENCY_BUCKETS]; /* cumulative-free bucket counts */
  double latency_sum;                    /* seconds */
} ews_vm_stats_t;

typedef struct ews_vm {
  int id;                      /* the worker's number */
  int nworkers;
  const ews_config_t *cfg;
  ews_net_t *net;              /* the worker's connections */
  ews_hub_t *hub;              /* the worker's share of the hub (hub->peers: the others) */
  lua_State *L;
  struct ews_runaway *runaway; /* L's time and memory budgets (lua/runaway.h) */
  ews_vm_refs_t refs;          /* Lua functions C calls per event */
  struct ews_task *task_free;  /* pooled coroutines (lua/tasks.h) */
  unsigned task_free_n;
  struct ews_task *current_task;
  struct ews_ltimer *ltimers;  /* Lua timers (edgews.sleep/timer/every), for cleanup */
  uint32_t nltimers;           /* how many (edgews.stats().timers) */
  int ltimer_map;              /* registry ref of the id -> timer table (0: none yet) */
  double ltimer_seq;           /* the last timer id given out on this worker */
  struct ews_lclient *lclients; /* outbound connections' Lua records (api_client.c) */
  struct ews_lwait *lwaits;    /* tasks waiting to be woken (api_wait.c) */
  int lwait_map;               /* registry ref of the id -> wait record table (0: none) */
  double lwait_seq;            /* the last wait id given out on this worker */
  ews_vm_stats_t stats;
  /* handler error lines of the current second (api_core.c): logged one by one, then
   * counted only */
  uint64_t errlog_window_ms;
  uint32_t errlog_logged, errlog_quiet;
} ews_vm_t;

/* Handler errors are logged one line each, at most EWS_VM_ERRORS_PER_SEC a second per
 * worker; the others of that second are summed up in one line when it ends (by
 * ews_vm_tick, from the loop's ticker). */
#define EWS_VM_ERRORS_PER_SEC 5
void ews_vm_tick(ews_vm_t *w);

/* An application-layer counter as /metrics and edgews.stats(true) show it: what Lua
 * counted, plus the authentication deadlines the net layer enforced. Any thread. */
static inline uint64_t ews_vm_count(const ews_vm_t *w, int k) {
  uint64_t v = EWS_STAT_LOAD(w->stats.lua[k]);
  if (k == EWS_LC_auth_failures) v += EWS_STAT_LOAD(w->net->stats.auth_timeouts);
  if (k == EWS_LC_auth_expired) v += EWS_STAT_LOAD(w->net->stats.auth_expired);
  return v;
}

/* Creates a VM for worker w (NULL for the main thread's configuration VM), with the
 * script's directory on package.path (so `require` finds the modules beside it).
 * Returns NULL and sets *err (malloc'd) on failure. */
lua_State *ews_vm_new(ews_vm_t *w, const char *script_dir, char **err);
/* Loads (or reloads) the script: on success the new apps replace the old for new
 * connections and for the next event on every existing one. On failure the old
 * version stays and *err (malloc'd) says why, with file:line. 0 or -1. */
int ews_vm_load(lua_State *L, const char *script, char **err);
void ews_vm_close(lua_State *L);
/* The directory the edgews modules are loaded from (see README: Installing):
 * EDGEWS_LUA_PATH when set, else PREFIX/share/lua/5.1 beside an installed binary
 * (PREFIX/bin/edgews-lua) when it holds edgews/init.lua, else the lua/ directory of
 * the source tree the binary was built from. Computed once; any thread. */
const char *ews_vm_lua_dir(void);
/* The one line an operator reads for a load or handler error with its traceback
 * (as ews_vm_load's *err): the message's first line and, when that points into the
 * edgews modules, " (called from FILE:LINE)" of the first frame of the user's code.
 * malloc'd; NULL on ENOMEM. */
char *ews_vm_error_summary(const char *err);


/* The luaopen function of the edgews.core C module (api_core.c). */
int ews_luaopen_core(lua_State *L);

#endif
