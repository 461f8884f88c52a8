/* worker.c — a worker thread: its loop, listener, timer wheel ticker, the per-
 * iteration flush/sweep, requests from the main thread (reload, stop) and the
 * graceful drain (see worker.h). */
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "err.h"
#include "log.h"
#include "hub/bus.h"
#include "hub/engine.h"
#include "hub/pubsub.h"
#include "hub/store.h"
#include "lua/api.h"
#include "lua/events.h"
#include "lua/tasks.h"
#include "lua/vm.h"
#include "metrics.h"
#include "net/tls.h"

static void close_walk_cb(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* The worker is done when it is stopping and no connection is left. */
static void maybe_finish(ews_worker_t *w) {
  if (!w->net.stopping || w->net.nconns) return;
  uv_stop(&w->loop);
}

static void conn_freed(void *owner) { maybe_finish(owner); }

static void on_tick(void *owner) {
  ews_worker_t *w = owner;
  ews_vm_tick(&w->vm);
}

void ews_worker_run_pending(ews_worker_t *w) { ews_net_run_pending(&w->net); }

static void on_prepare(uv_prepare_t *h) {
  ews_worker_t *w = h->data;
  ews_net_run_pending(&w->net);
  ews_pubsub_tick(&w->hub, 0);
}

static void on_check(uv_check_t *h) {
  ews_worker_t *w = h->data;
  ews_net_run_pending(&w->net);
  ews_pubsub_tick(&w->hub, 1);
}

/* GET /health: {"status":..., "uptime":s, "workers":n, "connections":n, "worker":id}
 * (connections: every worker's, not counting this request's own) and, in a cluster,
 * "cluster":{"shards":n,"connected":n,"publish_ms":avg,"delivery_ms":avg,"deliveries":n}:
 * "degraded" (still 200) while a Redis shard is
 * down. */
static int health(void *owner, char *buf, size_t cap, int *status) {
  ews_worker_t *w = owner;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  uint64_t now = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
  uint64_t up = now > w->server->started_ms ? now - w->server->started_ms : 0;
  *status = w->net.stopping ? 503 : 200;
  const char *state = w->net.stopping ? "draining" : "ok";
  char cluster[256] = "";
  const ews_engine_t *e = w->server->engine;
  if (e && e->status) {
    ews_engine_status_t *st = malloc(sizeof *st);
    if (st) {
      e->status(st);
      if (st->connected < st->shards && !w->net.stopping) state = "degraded";
      snprintf(cluster, sizeof cluster,
               ",\"cluster\":{\"shards\":%d,\"connected\":%d,\"publish_ms\":%.3f,"
               "\"delivery_ms\":%.3f,\"deliveries\":%llu}",
               st->shards, st->connected,
               st->latency_n ? (double)st->latency_us_sum / 1e3 / (double)st->latency_n : 0.0,
               st->delivery_n ? (double)st->delivery_us_sum / 1e3 / (double)st->delivery_n : 0.0,
               (unsigned long long)st->delivery_n);
      free(st);
    }
  }
  uint32_t conns = __atomic_load_n(&w->server->nconns, __ATOMIC_RELAXED);
  if (conns > 0) conns--; /* the request asking */
  return snprintf(buf, cap,
                  "{\"status\":\"%s\",\"uptime\":%llu,\"workers\":%d,\"connections\":%u,"
                  "\"worker\":%d%s}",
                  state, (unsigned long long)(up / 1000), w->server->nworkers,
                  conns, w->id, cluster);
}

static int metrics(void *owner, char **body, size_t *len) {
  ews_worker_t *w = owner;
  return ews_metrics_text(w->server, w->id, body, len);
}

static void on_drain_timeout(uv_timer_t *t) {
  ews_worker_t *w = t->data;
  if (w->net.nconns) EWS_INFO("drain timeout: closing %u remaining connection(s)", w->net.nconns);
  ews_net_abort_all(&w->net);
  ews_net_run_pending(&w->net);
}

static void close_listeners(ews_worker_t *w) {
  for (int k = 0; k < EWS_LISTEN_MAX; k++) ews_listener_close(&w->listeners[k]);
}

static void begin_stop(ews_worker_t *w, int force) {
  if (!w->net.stopping) {
    w->net.stopping = 1;
    close_listeners(w);
    ews_net_shutdown(&w->net);
    double t = w->server->cfg->drain_timeout;
    uv_timer_start(&w->drain_timer, on_drain_timeout, (uint64_t)(t * 1000), 0);
  }
  if (force) on_drain_timeout(&w->drain_timer);
  ews_net_run_pending(&w->net);
  maybe_finish(w);
}

static void reload_script(ews_worker_t *w);

static void on_wakeup(uv_async_t *a) {
  ews_worker_t *w = a->data;
  ews_tls_ctx_t *tls = __atomic_exchange_n(&w->pending_tls, NULL, __ATOMIC_ACQ_REL);
  if (tls) {
    /* Connections mid-handshake keep their own reference to the old ctx. */
    ews_tls_ctx_unref(w->net.tls);
    w->net.tls = tls;
  }
  if (__atomic_exchange_n(&w->req_reload, 0, __ATOMIC_ACQ_REL) && !w->net.stopping)
    reload_script(w);
  ews_bus_drain(&w->hub.inbox);
  if (w->hub.store) ews_store_client_drain(w->hub.store);
  ews_net_run_pending(&w->net);
  int stop = __atomic_load_n(&w->req_stop, __ATOMIC_ACQUIRE);
  int force = __atomic_load_n(&w->req_force, __ATOMIC_ACQUIRE);
  if (stop) begin_stop(w, force);
}

int ews_worker_load_script(ews_worker_t *w) {
  char *err = NULL;
  int r = ews_vm_load(w->vm.L, w->server->cfg->script, &err);
  if (r != 0) {
    char *line = ews_vm_error_summary(err);
    EWS_ERROR("%s", line ? line : "script failed to load");
    if (err && strchr(err, '\n')) EWS_DEBUG("%s", err);
    free(line);
    free(err);
    return -1;
  }
  return 0;
}

/* A reload the main thread asked for: loads the script and answers main.c, which
 * logs the outcome once for all workers (the traceback is logged here, at debug). */
static void reload_script(ews_worker_t *w) {
  ews_server_t *s = w->server;
  uv_mutex_lock(&s->reload_lock);
  unsigned gen = s->reload_gen;
  uv_mutex_unlock(&s->reload_lock);
  char *err = NULL;
  int r = ews_vm_load(w->vm.L, s->cfg->script, &err);
  if (r != 0) EWS_DEBUG("reload failed: %s", err ? err : "?");
  uv_mutex_lock(&s->reload_lock);
  if (gen == s->reload_gen) { /* else a newer reload is coming: this one is not counted */
    s->reload_done++;
    if (r != 0) {
      s->reload_failed++;
      if (!s->reload_err) {
        s->reload_err = err;
        err = NULL;
      }
    }
  }
  uv_mutex_unlock(&s->reload_lock);
  free(err);
  if (s->reload_async) uv_async_send(s->reload_async);
}

typedef struct {
  ews_worker_t *w;
  int ports[EWS_LISTEN_MAX];
} start_arg_t;

/* The store's writer completed requests of this worker: drain them on its loop. */
static void store_wake(void *ud) {
  ews_worker_t *w = ud;
  ews_bus_wake(&w->hub.inbox);
}

static void worker_main(void *arg) {
  start_arg_t *sa = arg;
  ews_worker_t *w = sa->w;
  char tag[16];
  snprintf(tag, sizeof tag, "w%d", w->id);
  ews_log_set_tag(tag);

  int r = uv_loop_init(&w->loop);
  if (r < 0) {
    w->start_err = r;
    free(sa);
    uv_sem_post(&w->ready);
    return;
  }
  const ews_config_t *cfg = w->server->cfg;
  ews_net_t *net = &w->net;
  int net_err = ews_net_init(net, &w->loop, w->id);
  net->cfg = (ews_net_config_t){cfg->handshake_timeout_ms, cfg->close_timeout_ms, cfg->max_head,
                                cfg->max_headers, (uint8_t)cfg->health, (uint8_t)cfg->metrics,
                                (uint8_t)(cfg->admin_port >= 0)};
  net->ops = &ews_lua_conn_ops;
  net->client_ops = &ews_lua_client_ops;
  net->owner = &w->vm;
  net->hooks = (ews_net_hooks_t){health, metrics, conn_freed, on_tick, w};
  net->total_conns = &w->server->nconns;
  char *err = NULL;
  if (w->server->store &&
      ews_store_client_open(w->server->store, store_wake, w, &w->hub.store) < 0) {
    EWS_ERROR("cannot open the data store for this worker");
    w->start_err = EWS_EIO;
    free(sa);
    uv_walk(&w->loop, close_walk_cb, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    ews_net_free(net);
    uv_loop_close(&w->loop);
    uv_sem_post(&w->ready);
    return;
  }
  w->vm.L = net_err == 0 ? ews_vm_new(&w->vm, cfg->script_dir, &err) : NULL;
  if (!w->vm.L) {
    w->vm.runaway = NULL;
    EWS_ERROR("cannot create the Lua VM: %s", err ? err : "out of memory");
    free(err);
    r = EWS_ENOMEM;
  } else if (ews_worker_load_script(w) != 0) {
    r = EWS_EINVAL;
  } else {
    r = uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    if (r < 0) {
      EWS_ERROR("cannot create the worker's wakeup handle: %s", uv_strerror(r));
      goto started;
    }
    w->wakeup.data = w;
    uv_timer_init(&w->loop, &w->drain_timer);
    w->drain_timer.data = w;
    uv_prepare_init(&w->loop, &w->prepare);
    w->prepare.data = w;
    uv_prepare_start(&w->prepare, on_prepare);
    uv_check_init(&w->loop, &w->check);
    w->check.data = w;
    uv_check_start(&w->check, on_check);
    ews_listener_t *l = w->listeners;
    r = ews_listener_open(&l[EWS_LISTEN_MAIN], net, cfg->host, sa->ports[EWS_LISTEN_MAIN],
                          cfg->backlog, net->tls != NULL, 0);
    if (r == 0 && cfg->plain_port >= 0)
      r = ews_listener_open(&l[EWS_LISTEN_PLAIN], net, cfg->plain_host,
                            sa->ports[EWS_LISTEN_PLAIN], cfg->backlog, 0, 0);
    if (r == 0 && cfg->admin_port >= 0)
      r = ews_listener_open(&l[EWS_LISTEN_ADMIN], net, cfg->admin_host,
                            sa->ports[EWS_LISTEN_ADMIN], cfg->backlog, 0, 1);
  }
started:
  w->start_err = r;
  if (r == 0) ews_inbox_open(&w->hub.inbox, &w->wakeup);
  uv_sem_post(&w->ready);
  if (r == 0) uv_run(&w->loop, UV_RUN_DEFAULT);
  /* Stopped (or failed to start): no more wakeups, close every handle, then tear
   * down the VM and the loop. */
  ews_inbox_close(&w->hub.inbox);
  /* Runs the completions still due (a publish or store waiting in a handler). */
  ews_store_client_close(w->hub.store);
  w->hub.store = NULL;
  ews_lclients_close_all(&w->vm);
  ews_lwaits_close_all(&w->vm);
  ews_ltimers_close_all(&w->vm);
  ews_bus_free(&w->hub.inbox);
  ews_net_reap(&w->net); /* connections closed above: freed while the VM still runs */
  uv_walk(&w->loop, close_walk_cb, NULL);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  if (w->vm.L) ews_vm_close(w->vm.L);
  w->vm.L = NULL;
  w->vm.runaway = NULL;
  ews_task_pool_free(&w->vm);
  ews_hub_free(&w->hub);
  ews_tls_ctx_unref(w->net.tls);
  ews_tls_ctx_unref(w->pending_tls);
  w->net.tls = w->pending_tls = NULL;
  if (uv_loop_close(&w->loop) != 0) EWS_WARN("loop closed with handles still open");
  ews_net_free(&w->net);
  free(sa);
}

int ews_worker_init(ews_worker_t *w, ews_server_t *server, int id) {
  memset(w, 0, sizeof *w);
  w->id = id;
  w->server = server;
  server->hubs[id] = &w->hub;
  if (uv_sem_init(&w->ready, 0) != 0) return EWS_ENOMEM;
  if (ews_hub_init(&w->hub, id, server->nworkers, server->hubs, &w->net, server->engine,
                   server->cfg->inbox_limit) != 0) {
    uv_sem_destroy(&w->ready);
    return EWS_ENOMEM;
  }
  /* The layers' contexts are linked before any worker starts (others read them). */
  w->vm = (ews_vm_t){.id = id, .nworkers = server->nworkers, .cfg = server->cfg,
                     .net = &w->net, .hub = &w->hub};
  w->hub.up = &w->vm;
  w->hub.pubsub_local = ews_api_pubsub_local;
  w->hub.app_message = ews_api_app_message;
  w->sync_inited = 1;
  return 0;
}

int ews_worker_start(ews_worker_t *w, const int ports[EWS_LISTEN_MAX], ews_tls_ctx_t *tls) {
  if (tls) ews_tls_ctx_ref(tls);
  w->net.tls = tls;
  start_arg_t *sa = malloc(sizeof *sa);
  if (!sa) return EWS_ENOMEM;
  sa->w = w;
  memcpy(sa->ports, ports, sizeof sa->ports);
  int r = uv_thread_create(&w->thread, worker_main, sa);
  if (r < 0) {
    free(sa);
    return r;
  }
  w->thread_started = 1;
  uv_sem_wait(&w->ready);
  if (w->start_err < 0) {
    ews_worker_join(w);
    return w->start_err;
  }
  return 0;
}

static void post(ews_worker_t *w) { ews_bus_wake(&w->hub.inbox); }

void ews_worker_swap_tls(ews_worker_t *w, ews_tls_ctx_t *ctx) {
  ews_tls_ctx_t *old = __atomic_exchange_n(&w->pending_tls, ctx, __ATOMIC_ACQ_REL);
  post(w);
  ews_tls_ctx_unref(old); /* an earlier reload the worker had not taken yet */
}

void ews_worker_request_reload(ews_worker_t *w) {
  __atomic_store_n(&w->req_reload, 1, __ATOMIC_RELEASE);
  post(w);
}

void ews_worker_request_stop(ews_worker_t *w, int force) {
  if (force) __atomic_store_n(&w->req_force, 1, __ATOMIC_RELEASE);
  __atomic_store_n(&w->req_stop, 1, __ATOMIC_RELEASE);
  post(w);
}

void ews_worker_join(ews_worker_t *w) {
  if (w->thread_started && !w->joined) uv_thread_join(&w->thread);
  w->joined = 1;
}

void ews_worker_destroy(ews_worker_t *w) {
  if (!w->sync_inited) return;
  w->sync_inited = 0;
  uv_sem_destroy(&w->ready);
  ews_hub_destroy(&w->hub);
}
