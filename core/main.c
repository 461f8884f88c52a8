/* main.c — the process: command line, configuration (the script's
 * edgews.configure{...} read in a throw-away VM, then flags), the open-file limit,
 * starting the workers, signals (SIGINT/SIGTERM drain, SIGHUP reload) and watching
 * the script's directory for hot reload. The main thread serves no connection. */
#include <errno.h>
#include <lauxlib.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <uv.h>

#include "config.h"
#include "err.h"
#include "owner.h"
#include "script_config.h"
#include "net/msgmem.h"
#include "log.h"
#include "lua/api.h"
#include "lua/runaway.h"
#include "lua/vm.h"
#include "net/tls.h"
#include "hub/counters.h"
#include "hub/engine.h"
#include "hub/pubsub.h"
#include "hub/store.h"
#include "worker.h"

typedef struct {
  ews_config_t cfg;
  ews_server_t server;
  ews_worker_t *workers;
  int nworkers;
  uv_loop_t *loop;
  uv_signal_t sig_int, sig_term, sig_hup;
  uv_fs_event_t watch;
  uv_timer_t debounce;
  int stop_signals;
  ews_tls_ctx_t *tls; /* the main thread's reference; workers hold their own */
  uv_async_t reload_async; /* a worker answered a reload */
  const char *reload_why;  /* of the reload in progress ("SIGHUP", "file changed") */
  int reload_reported;     /* its outcome was logged */
} ews_main_t;

static void raise_nofile_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) EWS_WARN("cannot raise the open-file limit");
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    EWS_DEBUG("open-file limit: %llu", (unsigned long long)rl.rlim_cur);
}

/* Runs the script once on this thread to read edgews.configure{...} and to fail
 * fast, with file:line, before any worker starts. */
/* Logs a load error as one line at error level (prefix, then the cause with the
 * user's file:line) and its traceback at debug level. */
static void log_load_error(const char *prefix, const char *err) {
  char *line = ews_vm_error_summary(err ? err : "cannot load the script");
  EWS_ERROR("%s%s", prefix, line ? line : "cannot load the script");
  if (err && strchr(err, '\n')) EWS_DEBUG("%s", err);
  free(line);
}

static int read_script_config(ews_config_t *cfg) {
  char *err = NULL;
  lua_State *L = ews_vm_new(NULL, cfg->script_dir, &err);
  if (!L || ews_vm_load(L, cfg->script, &err) != 0 || ews_script_read_config(L, cfg, &err) != 0) {
    log_load_error("", err);
    free(err);
    if (L) ews_vm_close(L);
    return -1;
  }
  ews_vm_close(L);
  return 0;
}

static void request_reload(ews_main_t *m, const char *why) {
  EWS_INFO("reloading %s (%s)", m->cfg.script, why);
  /* Load it once here, as the workers will: a failure is reported once, not once
   * per worker, and the workers are not asked. */
  char *err = NULL;
  lua_State *L = ews_vm_new(NULL, m->cfg.script_dir, &err);
  if (!L || ews_vm_load(L, m->cfg.script, &err) != 0) {
    log_load_error("reload failed, the old version keeps running: ", err);
    free(err);
    if (L) ews_vm_close(L);
    return;
  }
  ews_vm_close(L);
  ews_server_t *s = &m->server;
  uv_mutex_lock(&s->reload_lock);
  s->reload_gen++;
  s->reload_done = s->reload_failed = 0;
  free(s->reload_err);
  s->reload_err = NULL;
  uv_mutex_unlock(&s->reload_lock);
  m->reload_why = why;
  m->reload_reported = 0;
  for (int i = 0; i < m->nworkers; i++) ews_worker_request_reload(&m->workers[i]);
}

/* A worker answered a reload: once all have, one line says how it went. */
static void on_reload_answer(uv_async_t *a) {
  ews_main_t *m = a->data;
  ews_server_t *s = &m->server;
  uv_mutex_lock(&s->reload_lock);
  if (!m->reload_reported && (int)s->reload_done >= m->nworkers) {
    m->reload_reported = 1;
    if (s->reload_failed == 0) {
      EWS_INFO("reloaded %s (%s): %d worker%s the new version", m->cfg.script,
               m->reload_why ? m->reload_why : "?", m->nworkers,
               m->nworkers == 1 ? " runs" : "s run");
    } else {
      char *line = ews_vm_error_summary(s->reload_err);
      EWS_ERROR("reload failed in %u of %d workers, which keep the old version: %s",
                s->reload_failed, m->nworkers, line ? line : "?");
      free(line);
    }
  }
  uv_mutex_unlock(&s->reload_lock);
}

static void on_debounce(uv_timer_t *t) { request_reload(t->data, "file changed"); }

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status) {
  (void)events;
  ews_main_t *m = h->data;
  if (status < 0) return;
  size_t n = filename ? strlen(filename) : 0;
  if (n < 4 || strcmp(filename + n - 4, ".lua") != 0) return;
  /* Editors write a file in several steps; act once things settle. */
  uv_timer_start(&m->debounce, on_debounce, 150, 0);
}

/* SIGHUP: new certificate and key for new connections; a bad file keeps the old. */
static void reload_tls(ews_main_t *m) {
  if (!m->tls) return;
  char *err = NULL;
  ews_tls_ctx_t *ctx = ews_tls_ctx_new(m->cfg.tls_cert, m->cfg.tls_key, &err);
  if (!ctx) {
    EWS_ERROR("TLS reload failed, keeping the current certificate: %s", err ? err : "?");
    free(err);
    return;
  }
  for (int i = 0; i < m->nworkers; i++) {
    ews_tls_ctx_ref(ctx);
    ews_worker_swap_tls(&m->workers[i], ctx);
  }
  ews_tls_ctx_unref(m->tls);
  m->tls = ctx;
  EWS_INFO("TLS certificate reloaded from %s", m->cfg.tls_cert);
}

static void on_signal(uv_signal_t *s, int signum) {
  ews_main_t *m = s->data;
  if (signum == SIGHUP) {
    reload_tls(m);
    request_reload(m, "SIGHUP");
    return;
  }
  int force = m->stop_signals++ > 0;
  EWS_INFO("%s: %s", signum == SIGINT ? "SIGINT" : "SIGTERM",
           force ? "closing all connections now" : "draining connections");
  for (int i = 0; i < m->nworkers; i++) ews_worker_request_stop(&m->workers[i], force);
  if (!force) {
    uv_close((uv_handle_t *)&m->watch, NULL);
    uv_close((uv_handle_t *)&m->debounce, NULL);
    uv_close((uv_handle_t *)&m->sig_hup, NULL);
  }
}

/* Joins the workers on a helper thread, so the main loop keeps handling signals
 * (a second SIGTERM) while they drain. */
static void join_workers(void *arg) {
  ews_main_t *m = arg;
  for (int i = 0; i < m->nworkers; i++) ews_worker_join(&m->workers[i]);
}

static void on_joined(uv_async_t *a) {
  ews_main_t *m = a->data;
  uv_close((uv_handle_t *)a, NULL);
  uv_close((uv_handle_t *)&m->sig_int, NULL);
  uv_close((uv_handle_t *)&m->sig_term, NULL);
  uv_close((uv_handle_t *)&m->reload_async, NULL);
  if (!uv_is_closing((uv_handle_t *)&m->sig_hup)) {
    uv_close((uv_handle_t *)&m->watch, NULL);
    uv_close((uv_handle_t *)&m->debounce, NULL);
    uv_close((uv_handle_t *)&m->sig_hup, NULL);
  }
}

typedef struct {
  ews_main_t *m;
  uv_async_t done;
} joiner_t;

static void joiner_main(void *arg) {
  joiner_t *j = arg;
  join_workers(j->m);
  uv_async_send(&j->done);
}

int main(int argc, char **argv) {
  static ews_main_t m;
  ews_config_defaults(&m.cfg);
  int pr = ews_config_parse_args(&m.cfg, argc, argv);
  if (pr != 0) return pr > 0 ? 0 : 2;
  ews_log_level = m.cfg.log_level;
  signal(SIGPIPE, SIG_IGN);
  /* A file-size limit (RLIMIT_FSIZE) reached by the store or the log must fail that
   * write with EFBIG (the store refuses the request), not kill the process. */
  signal(SIGXFSZ, SIG_IGN);
  /* Messages of tens of KiB are allocated and freed at a high rate: keep glibc from
   * handing that memory back to the kernel after every free (one madvise syscall and
   * fresh page faults per message) or mmapping each large buffer. */
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  raise_nofile_limit();

  if (read_script_config(&m.cfg) != 0) {
    ews_runaway_shutdown();
    return 1;
  }
  ews_log_level = m.cfg.log_level;
  if (m.cfg.workers < 1) m.cfg.workers = 1;
  ews_msgmem_set_limit(m.cfg.max_message_memory);
  ews_limits_install(&ews_counter_limit_ops); /* connection limits count in hub counters */

  /* Host names are resolved once, here: the listeners bind numeric addresses. */
  {
    struct { char *host; int port; const char *flag, *key; } names[] = {
        {m.cfg.host, 0, "--listen", "listen"},
        {m.cfg.plain_host, m.cfg.plain_port, "--plain-listen", "plain_listen"},
        {m.cfg.admin_host, m.cfg.admin_port, "--admin-listen", "admin_listen"}};
    unsigned cli[] = {EWS_CLI_LISTEN, EWS_CLI_PLAIN, EWS_CLI_ADMIN};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
      if (names[k].port < 0) continue;
      char name[256];
      const char *why = NULL;
      snprintf(name, sizeof name, "%s", names[k].host);
      if (ews_config_resolve_host(names[k].host, &why) != 0) {
        EWS_ERROR("cannot resolve the host '%s' of %s: %s", name,
                  (m.cfg.cli_set & cli[k]) ? names[k].flag : names[k].key, why);
        return 1;
      }
      if (strcmp(name, names[k].host) != 0)
        EWS_INFO("%s: %s resolved to %s", (m.cfg.cli_set & cli[k]) ? names[k].flag : names[k].key,
                 name, names[k].host);
    }
  }

  /* Each address belongs to this process only, unless sharing was asked for. */
  if (!m.cfg.reuse_port) {
    struct { const char *host; int port; } addrs[] = {
        {m.cfg.host, m.cfg.port}, {m.cfg.plain_host, m.cfg.plain_port},
        {m.cfg.admin_host, m.cfg.admin_port}};
    for (size_t k = 0; k < sizeof addrs / sizeof addrs[0]; k++) {
      if (addrs[k].port <= 0) continue;
      int r = ews_own_address(addrs[k].host, addrs[k].port);
      if (r < 0) {
        EWS_ERROR("cannot listen on %s:%d: %s%s", addrs[k].host, addrs[k].port, uv_strerror(r),
                  r == UV_EADDRINUSE ? " (another process listens there; --reuse-port shares it)"
                                     : "");
        return 1;
      }
    }
  }

  struct timeval tv;
  gettimeofday(&tv, NULL);
  m.server.cfg = &m.cfg;
  m.server.started_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
  m.server.nworkers = m.cfg.workers;
  m.workers = calloc((size_t)m.cfg.workers, sizeof *m.workers);
  if (!m.workers) return 1;
  m.server.workers = m.workers;
  m.server.hubs = calloc((size_t)m.cfg.workers, sizeof *m.server.hubs);
  if (!m.server.hubs) return 1;

  if (m.cfg.tls_cert) {
    if (!ews_tls_ctx_shareable()) {
      EWS_ERROR("this mbedTLS is built without MBEDTLS_THREADING_C: TLS is unavailable");
      return 1;
    }
    char *err = NULL;
    m.tls = ews_tls_ctx_new(m.cfg.tls_cert, m.cfg.tls_key, &err);
    if (!m.tls) {
      EWS_ERROR("TLS: %s", err ? err : "cannot load the certificate");
      free(err);
      return 1;
    }
  }

  if (m.cfg.data_dir) {
    /* One process per data directory: a second one would interleave offsets. */
    long holder = 0;
    if (mkdir(m.cfg.data_dir, 0750) != 0 && errno != EEXIST) {
      EWS_ERROR("cannot create the data directory %s: %s", m.cfg.data_dir, strerror(errno));
      return 1;
    }
    int lr = ews_own_data_dir(m.cfg.data_dir, &holder);
    if (lr == UV_EBUSY) {
      if (holder > 0)
        EWS_ERROR("the data directory %s is in use by another edgews-lua (PID %ld)",
                  m.cfg.data_dir, holder);
      else
        EWS_ERROR("the data directory %s is in use by another edgews-lua", m.cfg.data_dir);
      return 1;
    }
    if (lr < 0) {
      EWS_ERROR("cannot lock the data directory %s: %s", m.cfg.data_dir, uv_strerror(lr));
      return 1;
    }
    ews_store_config_t sc = {0};
    sc.dir = m.cfg.data_dir;
    sc.max_queue_size = m.cfg.pubsub_max_queue;
    sc.message_ttl = m.cfg.pubsub_ttl;
    sc.notif_max_per_user = m.cfg.notif_max_per_user;
    sc.notif_ttl = m.cfg.notif_ttl;
    sc.on_commit = ews_pubsub_on_commit;
    int r = ews_store_open(&sc, &m.server.store);
    if (r < 0) {
      EWS_ERROR("cannot open the data store in %s: %s", m.cfg.data_dir, ews_strerror(r));
      return 1;
    }
    ews_log_always(EWS_LOG_INFO, "data store %s/edgews.db (pub/sub history %s)", m.cfg.data_dir,
                   m.cfg.pubsub_persist != 0 ? "on disk" : "in memory");
  }
  m.server.engine = m.cfg.nredis ? &ews_engine_redis : &ews_engine_local;
  /* Signals are caught from now on (a SIGTERM right after "listening on" must drain,
   * not kill); they are handled once the loop runs, when every worker has started. */
  m.loop = uv_default_loop();
  uv_signal_init(m.loop, &m.sig_int);
  uv_signal_init(m.loop, &m.sig_term);
  uv_signal_init(m.loop, &m.sig_hup);
  m.sig_int.data = m.sig_term.data = m.sig_hup.data = &m;
  uv_signal_start(&m.sig_int, on_signal, SIGINT);
  uv_signal_start(&m.sig_term, on_signal, SIGTERM);
  uv_signal_start(&m.sig_hup, on_signal, SIGHUP);
  uv_mutex_init(&m.server.reload_lock);
  uv_async_init(m.loop, &m.reload_async, on_reload_answer);
  m.reload_async.data = &m;
  m.server.reload_async = &m.reload_async;
  for (int i = 0; i < m.cfg.workers; i++) {
    if (ews_worker_init(&m.workers[i], &m.server, i) != 0) {
      EWS_ERROR("out of memory");
      return 1;
    }
  }
  /* The services' shared state (hub/engine.h): in this process, or with --redis
   * across the cluster's instances. Started once every worker's hub exists (an
   * engine's own thread may post to them at once), before any worker runs. */
  ews_engine_config_t ec = {{m.cfg.pubsub_max_queue, m.cfg.pubsub_ttl, m.cfg.pubsub_max_recover},
                            m.server.store, m.cfg.pubsub_persist != 0, m.server.hubs,
                            m.cfg.workers, m.cfg.redis, m.cfg.nredis,
                            m.cfg.notif_max_per_user, m.cfg.notif_ttl};
  if (m.server.engine->start(&ec) != 0) {
    EWS_ERROR("cannot start the %s engine", m.server.engine->name);
    return 1;
  }

  /* Worker 0 binds first; with port 0 the others join the ports it was given. */
  int ports[EWS_LISTEN_MAX] = {m.cfg.port, m.cfg.plain_port, m.cfg.admin_port};
  for (int i = 0; i < m.cfg.workers; i++) {
    int r = ews_worker_start(&m.workers[i], ports, m.tls);
    if (r < 0) {
      EWS_ERROR("worker %d failed to start", i);
      for (int j = 0; j < i; j++) ews_worker_request_stop(&m.workers[j], 1);
      for (int j = 0; j < i; j++) ews_worker_join(&m.workers[j]);
      m.server.engine->stop();
      ews_store_close(m.server.store);
      for (int j = 0; j < m.cfg.workers; j++) ews_worker_destroy(&m.workers[j]);
      return 1;
    }
    m.nworkers = i + 1;
    if (i == 0)
      for (int k = 0; k < EWS_LISTEN_MAX; k++) ports[k] = m.workers[0].listeners[k].bound_port;
  }
  int v6 = strchr(m.cfg.host, ':') != NULL; /* [::1]:8080, as --listen takes it */
  ews_log_always(EWS_LOG_INFO, "listening on %s%s%s:%d%s (%d worker%s, script %s)", v6 ? "[" : "",
                 m.cfg.host, v6 ? "]" : "", ports[EWS_LISTEN_MAIN], m.tls ? " (TLS)" : "", m.nworkers,
                 m.nworkers == 1 ? "" : "s", m.cfg.script);
  if (m.cfg.plain_port >= 0) {
    v6 = strchr(m.cfg.plain_host, ':') != NULL;
    ews_log_always(EWS_LOG_INFO, "plain listener on %s%s%s:%d", v6 ? "[" : "", m.cfg.plain_host,
                   v6 ? "]" : "", ports[EWS_LISTEN_PLAIN]);
  }
  if (m.cfg.admin_port >= 0) {
    v6 = strchr(m.cfg.admin_host, ':') != NULL;
    ews_log_always(EWS_LOG_INFO, "admin listener (/health, /metrics) on %s%s%s:%d", v6 ? "[" : "",
                   m.cfg.admin_host, v6 ? "]" : "", ports[EWS_LISTEN_ADMIN]);
  }

  uv_timer_init(m.loop, &m.debounce);
  m.debounce.data = &m;
  uv_fs_event_init(m.loop, &m.watch);
  m.watch.data = &m;
  if (m.cfg.watch) {
    int r = uv_fs_event_start(&m.watch, on_fs_event, m.cfg.script_dir, 0);
    if (r < 0) EWS_WARN("cannot watch %s: %s (SIGHUP still reloads)", m.cfg.script_dir, uv_strerror(r));
  }

  static joiner_t j;
  j.m = &m;
  uv_async_init(m.loop, &j.done, on_joined);
  j.done.data = &m;
  uv_thread_t joiner;
  uv_thread_create(&joiner, joiner_main, &j);

  uv_run(m.loop, UV_RUN_DEFAULT);
  uv_thread_join(&joiner);
  uv_loop_close(m.loop);
  /* Every worker has closed its client (so every request has completed): stop
   * posting to the workers, then close the store. */
  m.server.engine->stop();
  ews_store_close(m.server.store);
  /* Nothing can post to a worker any more: now their locks may go. */
  for (int i = 0; i < m.cfg.workers; i++) ews_worker_destroy(&m.workers[i]);
  free(m.workers);
  free(m.server.hubs);
  free(m.server.reload_err);
  uv_mutex_destroy(&m.server.reload_lock);
  ews_tls_ctx_unref(m.tls);
  ews_runaway_shutdown(); /* every VM has been closed */
  ews_pool_metrics_free();
  EWS_INFO("stopped");
  ews_config_free(&m.cfg);
  return 0;
}
