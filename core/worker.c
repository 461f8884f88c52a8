/* worker.c — a worker thread: its loop, listener, timer wheel ticker, the per-
 * iteration flush/sweep, requests from the main thread (reload, stop) and the
 * graceful drain (see worker.h). */
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "err.h"
#include "log.h"
#include "hub/bus.h"
#include "hub/pubsub.h"
#include "hub/store.h"
#include "lua/api.h"
#include "lua/tasks.h"
#include "lua/vm.h"
#include "net/conn.h"
#include "net/tls.h"

static void close_walk_cb(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* The worker is done when it is stopping and no connection is left. */
static void maybe_finish(ews_worker_t *w) {
  if (!w->stopping || w->nconns) return;
  uv_stop(&w->loop);
}

void ews_worker_conn_closed(ews_worker_t *w) { maybe_finish(w); }

void ews_worker_run_pending(ews_worker_t *w) {
  /* Sweeps can queue flushes (a close handler sending) and flushes can queue sweeps
   * (a write error): repeat until both lists are empty. */
  while (w->sweep_head || w->flush_head) {
    while (w->sweep_head) {
      ews_conn_t *c = w->sweep_head;
      w->sweep_head = c->sweep_next;
      c->flags &= (uint16_t)~EWS_CF_SWEEP_QUEUED;
      ews_conn_sweep(c);
    }
    while (w->flush_head) {
      ews_conn_t *c = w->flush_head;
      w->flush_head = c->flush_next;
      c->flags &= (uint16_t)~EWS_CF_FLUSH_QUEUED;
      ews_conn_flush(c);
    }
  }
}

static void on_prepare(uv_prepare_t *h) {
  ews_worker_run_pending(h->data);
  ews_pubsub_tick(h->data, 0);
}

static void on_check(uv_check_t *h) {
  ews_worker_run_pending(h->data);
  ews_pubsub_tick(h->data, 1);
}

static void on_tick(uv_timer_t *t) {
  ews_worker_t *w = t->data;
  ews_wheel_advance(&w->wheel, uv_now(&w->loop), ews_conn_on_timer, w);
}

static void on_connection(uv_stream_t *server, int status) {
  ews_listener_t *l = server->data;
  ews_worker_t *w = l->w;
  if (status < 0) {
    /* EMFILE/ENFILE: libuv has already accepted and closed the pending connection
     * with its reserve descriptor, so we shed load instead of spinning. Log at most
     * once a second. */
    uint64_t now = uv_now(&w->loop);
    if (now - w->last_emfile_log >= 1000) {
      w->last_emfile_log = now;
      EWS_WARN("accept failed: %s (shedding connections)", uv_strerror(status));
    }
    return;
  }
  int r = ews_conn_accept(w, server, l->tls ? w->tls_ctx : NULL, l->kind == EWS_LISTEN_ADMIN);
  if (r == EWS_ENOMEM) EWS_WARN("accept: %s", ews_strerror(r)); /* EWS_EIO was logged */
}

static void on_drain_timeout(uv_timer_t *t) {
  ews_worker_t *w = t->data;
  if (w->nconns) EWS_INFO("drain timeout: closing %u remaining connection(s)", w->nconns);
  for (ews_conn_t *c = w->conns; c; c = c->next) ews_conn_abort(c);
  ews_worker_run_pending(w);
}

static void close_listeners(ews_worker_t *w) {
  for (int k = 0; k < EWS_LISTEN_MAX; k++) {
    if (!w->listeners[k].active) continue;
    w->listeners[k].active = 0;
    uv_close((uv_handle_t *)&w->listeners[k].tcp, NULL);
  }
}

static void begin_stop(ews_worker_t *w, int force) {
  if (!w->stopping) {
    w->stopping = 1;
    close_listeners(w);
    for (ews_conn_t *c = w->conns; c; c = c->next) ews_conn_shutdown(c);
    double t = w->server->cfg->drain_timeout;
    uv_timer_start(&w->drain_timer, on_drain_timeout, (uint64_t)(t * 1000), 0);
  }
  if (force) on_drain_timeout(&w->drain_timer);
  ews_worker_run_pending(w);
  maybe_finish(w);
}

static void on_wakeup(uv_async_t *a) {
  ews_worker_t *w = a->data;
  uv_mutex_lock(&w->post_lock);
  ews_tls_ctx_t *tls = w->pending_tls;
  w->pending_tls = NULL;
  uv_mutex_unlock(&w->post_lock);
  if (tls) {
    /* Connections mid-handshake keep their own reference to the old ctx. */
    ews_tls_ctx_unref(w->tls_ctx);
    w->tls_ctx = tls;
  }
  if (__atomic_exchange_n(&w->req_reload, 0, __ATOMIC_ACQ_REL) && !w->stopping)
    ews_worker_load_script(w);
  ews_bus_drain(w);
  if (w->store) ews_store_client_drain(w->store);
  ews_worker_run_pending(w);
  int stop = __atomic_load_n(&w->req_stop, __ATOMIC_ACQUIRE);
  int force = __atomic_load_n(&w->req_force, __ATOMIC_ACQUIRE);
  if (stop) begin_stop(w, force);
}

int ews_worker_load_script(ews_worker_t *w) {
  char *err = NULL;
  int r = ews_vm_load(w->L, w->server->cfg->script, &err);
  if (r != 0) {
    EWS_ERROR("%s", err ? err : "script failed to load");
    free(err);
    return -1;
  }
  return 0;
}

static int bind_listener(ews_worker_t *w, int kind, const char *host, int port, int tls) {
  const ews_config_t *cfg = w->server->cfg;
  ews_listener_t *l = &w->listeners[kind];
  struct sockaddr_storage ss;
  int r;
  if (strchr(host, ':')) r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  else r = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (r < 0) return r;
  r = uv_tcp_init_ex(&w->loop, &l->tcp, ss.ss_family);
  if (r < 0) return r;
  l->tcp.data = l;
  l->w = w;
  l->kind = kind;
  l->tls = tls;
  l->active = 1;
  uv_os_fd_t fd;
  int one = 1;
  r = uv_fileno((uv_handle_t *)&l->tcp, &fd);
  if (r == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
    r = uv_translate_sys_error(errno);
  if (r == 0) r = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&l->tcp, cfg->backlog, on_connection);
  if (r == 0) {
    int len = sizeof ss;
    r = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len);
    l->bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
  if (r < 0) EWS_ERROR("cannot listen on %s:%d: %s", host, port, uv_strerror(r));
  return r;
}

typedef struct {
  ews_worker_t *w;
  int ports[EWS_LISTEN_MAX];
} start_arg_t;

/* The store's writer completed requests of this worker: drain them on its loop. */
static void store_wake(void *ud) {
  ews_worker_t *w = ud;
  uv_mutex_lock(&w->post_lock);
  if (w->alive) uv_async_send(&w->wakeup);
  uv_mutex_unlock(&w->post_lock);
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
  ews_wheel_init(&w->wheel, uv_now(&w->loop));
  w->rbuf = malloc(EWS_READ_BUF);
  char *err = NULL;
  if (w->server->store && ews_store_client_open(w->server->store, store_wake, w, &w->store) < 0) {
    EWS_ERROR("cannot open the data store for this worker");
    w->start_err = EWS_EIO;
    free(sa);
    free(w->rbuf);
    w->rbuf = NULL;
    uv_loop_close(&w->loop);
    uv_sem_post(&w->ready);
    return;
  }
  w->L = w->rbuf ? ews_vm_new(w, w->server->cfg->script_dir, &err) : NULL;
  if (!w->L) {
    w->runaway = NULL;
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
    uv_timer_init(&w->loop, &w->ticker);
    w->ticker.data = w;
    uv_timer_start(&w->ticker, on_tick, EWS_TICK_MS, EWS_TICK_MS);
    uv_timer_init(&w->loop, &w->drain_timer);
    w->drain_timer.data = w;
    uv_prepare_init(&w->loop, &w->prepare);
    w->prepare.data = w;
    uv_prepare_start(&w->prepare, on_prepare);
    uv_check_init(&w->loop, &w->check);
    w->check.data = w;
    uv_check_start(&w->check, on_check);
    const ews_config_t *cfg = w->server->cfg;
    r = bind_listener(w, EWS_LISTEN_MAIN, cfg->host, sa->ports[EWS_LISTEN_MAIN], w->tls_ctx != NULL);
    if (r == 0 && cfg->plain_port >= 0)
      r = bind_listener(w, EWS_LISTEN_PLAIN, cfg->plain_host, sa->ports[EWS_LISTEN_PLAIN], 0);
    if (r == 0 && cfg->admin_port >= 0)
      r = bind_listener(w, EWS_LISTEN_ADMIN, cfg->admin_host, sa->ports[EWS_LISTEN_ADMIN], 0);
  }
started:
  w->start_err = r;
  if (r == 0) {
    uv_mutex_lock(&w->post_lock);
    w->alive = 1;
    uv_mutex_unlock(&w->post_lock);
  }
  uv_sem_post(&w->ready);
  if (r == 0) uv_run(&w->loop, UV_RUN_DEFAULT);
  /* Stopped (or failed to start): no more wakeups, close every handle, then tear
   * down the VM and the loop. */
  uv_mutex_lock(&w->post_lock);
  w->alive = 0;
  uv_mutex_unlock(&w->post_lock);
  /* Runs the completions still due (a publish or store waiting in a handler). */
  ews_store_client_close(w->store);
  w->store = NULL;
  ews_ltimers_close_all(w);
  ews_bus_free(w);
  uv_walk(&w->loop, close_walk_cb, NULL);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  if (w->L) ews_vm_close(w->L);
  w->L = NULL;
  w->runaway = NULL;
  ews_task_pool_free(w);
  ews_routes_clear(&w->routes);
  ews_chans_free(&w->chans);
  ews_pubsub_worker_free(w);
  ews_topics_free(&w->topics);
  ews_tls_ctx_unref(w->tls_ctx);
  ews_tls_ctx_unref(w->pending_tls);
  w->tls_ctx = w->pending_tls = NULL;
  if (uv_loop_close(&w->loop) != 0) EWS_WARN("loop closed with handles still open");
  ews_bufpool_drain(&w->pool);
  ews_zbuf_free(&w->zscratch);
  free(w->rbuf);
  w->rbuf = NULL;
  free(sa);
}

int ews_worker_init(ews_worker_t *w, ews_server_t *server, int id) {
  memset(w, 0, sizeof *w);
  w->id = id;
  w->server = server;
  w->inbox_limit = server->cfg->inbox_limit;
  if (uv_sem_init(&w->ready, 0) != 0) return EWS_ENOMEM;
  if (uv_mutex_init(&w->post_lock) != 0) {
    uv_sem_destroy(&w->ready);
    return EWS_ENOMEM;
  }
  w->sync_inited = 1;
  return 0;
}

int ews_worker_start(ews_worker_t *w, const int ports[EWS_LISTEN_MAX], ews_tls_ctx_t *tls) {
  if (tls) ews_tls_ctx_ref(tls);
  w->tls_ctx = tls;
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

static void post(ews_worker_t *w) {
  uv_mutex_lock(&w->post_lock);
  if (w->alive) uv_async_send(&w->wakeup);
  uv_mutex_unlock(&w->post_lock);
}

void ews_worker_swap_tls(ews_worker_t *w, ews_tls_ctx_t *ctx) {
  uv_mutex_lock(&w->post_lock);
  ews_tls_ctx_t *old = w->pending_tls;
  w->pending_tls = ctx;
  if (w->alive) uv_async_send(&w->wakeup);
  uv_mutex_unlock(&w->post_lock);
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
  uv_mutex_destroy(&w->post_lock);
}
