/* worker.h — one worker: a thread running one libuv loop, one LuaJIT VM, its own
 * SO_REUSEPORT listener and every connection that listener accepted. Nothing here is
 * shared with other workers except the read-only config and the atomic counters in
 * ews_server_t; other threads talk to a worker only through its inbox (hub/bus.h)
 * and the requests below. */
#ifndef EWS_WORKER_H
#define EWS_WORKER_H

#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "hub/hub.h"
#include "lua/vm.h"
#include "net/listener.h"
#include "net/net.h"
#include "stat.h"

typedef struct ews_tls_ctx ews_tls_ctx_t;
struct ews_worker;

/* What a listener serves: the main address (wss:// when TLS is configured), the
 * optional plain ws:// address next to it, the optional admin address. */
enum { EWS_LISTEN_MAIN = 0, EWS_LISTEN_PLAIN, EWS_LISTEN_ADMIN, EWS_LISTEN_MAX };

typedef struct ews_server {
  const ews_config_t *cfg;
  uint64_t started_ms;       /* wall clock at start, for uptime */
  uint32_t nconns;           /* atomic: open connections over all workers */
  int nworkers;
  struct ews_worker *workers; /* for /metrics (counters are read without locks) */
  ews_hub_t **hubs;           /* every worker's hub (their peers), by number */
  const struct ews_engine *engine; /* where the services' shared state lives */
  struct ews_store *store;    /* durable storage (hub/store.h), or NULL */
  /* The reload in progress: main.c starts one (a new generation), every worker
   * answers once (ews_worker_request_reload), main logs one line when all have. */
  uv_mutex_t reload_lock;
  unsigned reload_gen, reload_done, reload_failed; /* under reload_lock */
  char *reload_err;           /* the first failing worker's error (malloc'd), or NULL */
  uv_async_t *reload_async;   /* the main loop's: a worker answered (or NULL) */
} ews_server_t;

typedef struct ews_worker {
  int id;
  ews_server_t *server;
  uv_thread_t thread;
  uv_loop_t loop;
  ews_net_t net;        /* the net layer's share of the loop: connections, wheel, pool */
  ews_hub_t hub;        /* the hub's share: inbox, channels, topics, store client */
  ews_vm_t vm;          /* the Lua layer's: the VM, its tasks and timers; owns the
                           connections (net.ops) */
  ews_listener_t listeners[EWS_LISTEN_MAX];
  ews_tls_ctx_t *pending_tls;  /* a reloaded ctx handed over by the main thread */
  uv_async_t wakeup;   /* the inbox's (hub.inbox) and the main thread's requests */
  uv_timer_t drain_timer;
  uv_prepare_t prepare; /* flush + sweep before the loop blocks */
  uv_check_t check;     /* flush + sweep after I/O callbacks */
  /* Set by other threads (atomics), read on wakeup (hub.inbox's lock says whether the
   * wakeup handle may still be signalled). */
  int req_stop, req_reload, req_force;
  /* Start-up handshake with the main thread. */
  uv_sem_t ready;
  int start_err;
  uint8_t sync_inited, thread_started, joined;
} ews_worker_t;

/* Prepares worker `id` (zeroed, its inbox ready) so that other threads may post to
 * it, finding it not alive, before it starts and after it stopped. Every worker is
 * initialised before any starts (server->hubs[id] is set here). 0 or EWS_ENOMEM. */
int ews_worker_init(ews_worker_t *w, ews_server_t *server, int id);
/* Starts the worker thread: creates the VM, loads the script, binds its listeners
 * (ports[EWS_LISTEN_MAIN], and ports[EWS_LISTEN_PLAIN] when the config has a plain
 * address; port 0 = any free port, read back from w->listeners[k].bound_port) and
 * signals readiness. `tls` (referenced by the worker) makes the main listener wss://.
 * Returns 0 once it is serving, or a negative error (the thread has then exited and
 * been joined). */
int ews_worker_start(ews_worker_t *w, const int ports[EWS_LISTEN_MAX], ews_tls_ctx_t *tls);
/* Hands the worker a reloaded TLS ctx (the worker takes over this reference). */
void ews_worker_swap_tls(ews_worker_t *w, ews_tls_ctx_t *ctx);
/* Requests: reload the script, stop gracefully (drain), stop now. Thread-safe. */
void ews_worker_request_reload(ews_worker_t *w);
void ews_worker_request_stop(ews_worker_t *w, int force);
/* Waits for the worker's thread to end (idempotent). The worker's inbox stays valid:
 * other threads may still post to it (they find it not alive). */
void ews_worker_join(ews_worker_t *w);
/* Destroys what other threads use to reach the worker (its inbox). Only once no
 * thread can post any more: every worker joined, the store's writer stopped, pub/sub
 * shut down, and no signal handler running. */
void ews_worker_destroy(ews_worker_t *w);

/* Runs the flush and sweep lists now (also run from the loop's prepare/check). */
void ews_worker_run_pending(ews_worker_t *w);
/* Loads (or reloads) the script into w->vm.L. 0 or -1 (logged). */
int ews_worker_load_script(ews_worker_t *w);

#endif
