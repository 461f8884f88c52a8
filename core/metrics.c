/* metrics.c — GET /metrics in the Prometheus text format (see metrics.h). */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "err.h"
#include "hub/engine.h"
#include "hub/store.h"
#include "lua/api.h"
#include "net/msgmem.h"
#include "worker.h"

typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out_t *o, const char *fmt, ...) {
  if (o->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < o->cap - o->len) {
      o->len += (size_t)n;
      return;
    }
    size_t cap = o->cap * 2 + (size_t)n;
    char *np = realloc(o->p, cap);
    if (!np) {
      o->oom = 1;
      return;
    }
    o->p = np;
    o->cap = cap;
  }
}

static void put_str(void *ud, const char *s) { put(ud, "%s", s); }

static uint64_t rd(const uint64_t *v) { return __atomic_load_n(v, __ATOMIC_RELAXED); }

#define COUNTER(name, help, field)                                               \
  do {                                                                           \
    put(&o, "# HELP edgews_" name " " help "\n# TYPE edgews_" name " counter\n"); \
    for (int i = 0; i < s->nworkers; i++)                                        \
      put(&o, "edgews_" name "{worker=\"%d\"} %llu\n", i,                      \
          (unsigned long long)rd(&s->workers[i].field));                         \
  } while (0)

int ews_metrics_text(const ews_server_t *s, int self, char **outp, size_t *len) {
  out_t o = {malloc(8192), 0, 8192, 0};
  if (!o.p) return EWS_ENOMEM;
  struct timeval tv;
  gettimeofday(&tv, NULL);
  uint64_t now_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
  put(&o, "# HELP edgews_uptime_seconds Seconds since the server started.\n"
          "# TYPE edgews_uptime_seconds gauge\nedgews_uptime_seconds %.3f\n",
      (double)(now_ms - s->started_ms) / 1000.0);
  put(&o, "# HELP edgews_workers Worker threads.\n# TYPE edgews_workers gauge\nedgews_workers %d\n",
      s->nworkers);
  put(&o, "# HELP edgews_connections_open Open connections.\n# TYPE edgews_connections_open gauge\n");
  for (int i = 0; i < s->nworkers; i++) {
    uint32_t n = ews_net_nconns(&s->workers[i].net);
    if (i == self && n > 0) n--; /* the request asking */
    put(&o, "edgews_connections_open{worker=\"%d\"} %u\n", i, n);
  }
  COUNTER("connections_total", "Connections accepted.", net.stats.conns_total);
  put(&o, "# HELP edgews_connections_rejected_total Connections refused, by reason.\n"
          "# TYPE edgews_connections_rejected_total counter\n");
  static const char *const reasons[] = {
#define XX(n) #n,
      EWS_REJECT_REASONS(XX)
#undef XX
  };
  for (int i = 0; i < s->nworkers; i++)
    for (int r = 0; r < EWS_RJ_MAX; r++)
      put(&o, "edgews_connections_rejected_total{worker=\"%d\",reason=\"%s\"} %llu\n", i,
          reasons[r], (unsigned long long)rd(&s->workers[i].net.stats.rejected[r]));
  COUNTER("messages_in_total", "Messages received.", net.stats.msgs_in);
  COUNTER("messages_out_total", "Messages queued for sending.", net.stats.msgs_out);
  COUNTER("bytes_in_total", "Bytes received (on the wire).", net.stats.bytes_in);
  COUNTER("bytes_out_total", "Bytes written (on the wire).", net.stats.bytes_out);
  COUNTER("messages_compressed_total", "Messages compressed (a fan-out counts once).", net.stats.compressed);
  put(&o, "# HELP edgews_static_requests_total Static-file answers, by status class.\n"
          "# TYPE edgews_static_requests_total counter\n");
  static const char *const classes[] = {"2xx", "3xx", "4xx", "5xx"};
  for (int i = 0; i < s->nworkers; i++)
    for (int k = 0; k < 4; k++)
      put(&o, "edgews_static_requests_total{worker=\"%d\",status=\"%s\"} %llu\n", i, classes[k],
          (unsigned long long)rd(&s->workers[i].net.stats.static_requests[k]));
  put(&o, "# HELP edgews_static_bytes_total Static-file body bytes, by how they left: sendfile"
          " (no copy) or copied (TLS, or a piece queued while the socket was full).\n"
          "# TYPE edgews_static_bytes_total counter\n");
  for (int i = 0; i < s->nworkers; i++) {
    put(&o, "edgews_static_bytes_total{worker=\"%d\",path=\"sendfile\"} %llu\n", i,
        (unsigned long long)rd(&s->workers[i].net.stats.static_bytes_sendfile));
    put(&o, "edgews_static_bytes_total{worker=\"%d\",path=\"copied\"} %llu\n", i,
        (unsigned long long)rd(&s->workers[i].net.stats.static_bytes_copied));
  }
  COUNTER("pubsub_published_total", "Pub/sub messages published.", hub.stats.published);
  COUNTER("inbox_dropped_total", "Cross-worker messages refused because the worker's inbox was full.",
          hub.inbox.dropped);
  put(&o, "# HELP edgews_message_memory_bytes Bytes of incoming messages being reassembled or"
          " inflated, all connections.\n# TYPE edgews_message_memory_bytes gauge\n"
          "edgews_message_memory_bytes %llu\n"
          "# HELP edgews_message_memory_limit_bytes The budget for them (0: none).\n"
          "# TYPE edgews_message_memory_limit_bytes gauge\nedgews_message_memory_limit_bytes %llu\n"
          "# HELP edgews_message_memory_refused_total Messages refused (close 1013) because the"
          " budget was reached.\n# TYPE edgews_message_memory_refused_total counter\n"
          "edgews_message_memory_refused_total %llu\n",
      (unsigned long long)ews_msgmem_used(), (unsigned long long)ews_msgmem_limit(),
      (unsigned long long)ews_msgmem_refused());
  if (s->store) {
    ews_store_stats_t st;
    ews_store_stats(s->store, &st);
    put(&o, "# HELP edgews_store_commits_total Write transactions committed (each fsynced).\n"
            "# TYPE edgews_store_commits_total counter\nedgews_store_commits_total %llu\n"
            "# HELP edgews_store_requests_total Store requests completed, by result.\n"
            "# TYPE edgews_store_requests_total counter\n"
            "edgews_store_requests_total{result=\"ok\"} %llu\n"
            "edgews_store_requests_total{result=\"failed\"} %llu\n"
            "# HELP edgews_store_queued Requests waiting for the writer.\n"
            "# TYPE edgews_store_queued gauge\nedgews_store_queued %llu\n"
            "# HELP edgews_store_max_batch Largest batch committed in one transaction.\n"
            "# TYPE edgews_store_max_batch gauge\nedgews_store_max_batch %llu\n",
        (unsigned long long)st.commits, (unsigned long long)st.requests,
        (unsigned long long)st.failed, (unsigned long long)st.queued,
        (unsigned long long)st.max_batch);
  }
  if (s->engine && s->engine->status) {
    ews_engine_status_t *st = malloc(sizeof *st);
    if (!st) {
      free(o.p);
      return EWS_ENOMEM;
    }
    s->engine->status(st);
    put(&o, "# HELP edgews_redis_shards Redis shards configured.\n# TYPE edgews_redis_shards gauge\n"
            "edgews_redis_shards %d\n"
            "# HELP edgews_redis_shards_connected Redis shards whose connections are ready.\n"
            "# TYPE edgews_redis_shards_connected gauge\nedgews_redis_shards_connected %d\n"
            "# HELP edgews_redis_shard_up A shard is connected (1) or not (0); last_error is"
            " the last failure seen on it.\n# TYPE edgews_redis_shard_up gauge\n",
        st->shards, st->connected);
    for (int i = 0; i < st->shards && i < EWS_ENGINE_MAX_SHARDS; i++) {
      char err[400];
      size_t k = 0;
      for (const char *p = st->shard[i].last_error; *p && k + 3 < sizeof err; p++) {
        if (*p == '"' || *p == '\\') err[k++] = '\\';
        err[k++] = *p == '\n' ? ' ' : *p;
      }
      err[k] = 0;
      put(&o, "edgews_redis_shard_up{shard=\"%s\",last_error=\"%s\"} %d\n", st->shard[i].name,
          err, st->shard[i].up);
    }
    put(&o, "# HELP edgews_redis_connection_losses_total Ready Redis connections lost, by shard.\n"
            "# TYPE edgews_redis_connection_losses_total counter\n");
    for (int i = 0; i < st->shards && i < EWS_ENGINE_MAX_SHARDS; i++)
      put(&o, "edgews_redis_connection_losses_total{shard=\"%s\"} %llu\n", st->shard[i].name,
          (unsigned long long)st->shard[i].losses);
    put(&o, "# HELP edgews_redis_channel_published_total Channel publishes sent to Redis.\n"
            "# TYPE edgews_redis_channel_published_total counter\n"
            "edgews_redis_channel_published_total %llu\n"
            "# HELP edgews_redis_channel_dropped_total Channel publishes that did not reach Redis"
            " (shard down, queue full): other instances missed them.\n"
            "# TYPE edgews_redis_channel_dropped_total counter\n"
            "edgews_redis_channel_dropped_total %llu\n"
            "# HELP edgews_redis_channel_received_total Channel messages from other instances.\n"
            "# TYPE edgews_redis_channel_received_total counter\n"
            "edgews_redis_channel_received_total %llu\n"
            "# HELP edgews_redis_subscriptions Redis subscriptions of this instance (channels,"
            " pub/sub topics with local subscribers and loaded documents).\n"
            "# TYPE edgews_redis_subscriptions gauge\nedgews_redis_subscriptions %llu\n"
            "# HELP edgews_redis_publish_seconds PUBLISH round trips to Redis.\n"
            "# TYPE edgews_redis_publish_seconds summary\n"
            "edgews_redis_publish_seconds_sum %.6f\nedgews_redis_publish_seconds_count %llu\n"
            "# HELP edgews_redis_delivery_seconds Messages of other instances (channels and"
            " pub/sub): from their PUBLISH on the sending instance to their arrival here.\n"
            "# TYPE edgews_redis_delivery_seconds summary\n"
            "edgews_redis_delivery_seconds_sum %.6f\nedgews_redis_delivery_seconds_count %llu\n",
        (unsigned long long)st->published, (unsigned long long)st->dropped,
        (unsigned long long)st->received, (unsigned long long)st->subscriptions,
        (double)st->latency_us_sum / 1e6, (unsigned long long)st->latency_n,
        (double)st->delivery_us_sum / 1e6, (unsigned long long)st->delivery_n);
    free(st);
  }
  put(&o, "# HELP edgews_errors_total Errors, by kind.\n# TYPE edgews_errors_total counter\n");
  for (int i = 0; i < s->nworkers; i++)
    put(&o, "edgews_errors_total{worker=\"%d\",kind=\"handler\"} %llu\n", i,
        (unsigned long long)rd(&s->workers[i].vm.stats.handler_errors));
  static const char *const lua_names[] = {
#define XX(n) #n,
      EWS_LUA_COUNTERS(XX)
#undef XX
  };
  for (int c = 0; c < EWS_LC_MAX; c++) {
    put(&o, "# TYPE edgews_%s_total counter\n", lua_names[c]);
    for (int i = 0; i < s->nworkers; i++)
      put(&o, "edgews_%s_total{worker=\"%d\"} %llu\n", lua_names[c], i,
          (unsigned long long)ews_vm_count(&s->workers[i].vm, c));
  }
  put(&o, "# HELP edgews_router_errors_total Messages the router answered with an error, by"
          " code.\n# TYPE edgews_router_errors_total counter\n");
  static const char *const rcodes[] = {
#define XX(n) #n,
      EWS_ROUTER_CODES(XX)
#undef XX
  };
  for (int i = 0; i < s->nworkers; i++)
    for (int c = 0; c < EWS_RC_MAX; c++)
      put(&o, "edgews_router_errors_total{worker=\"%d\",code=\"%s\"} %llu\n", i, rcodes[c],
          (unsigned long long)rd(&s->workers[i].vm.stats.router[c]));
  put(&o, "# HELP edgews_handler_seconds Time handlers ran per event (not counting waits).\n"
          "# TYPE edgews_handler_seconds histogram\n");
  for (int i = 0; i < s->nworkers; i++) {
    uint64_t cum = 0;
    for (int b = 0; b < EWS_LATENCY_BUCKETS; b++) {
      cum += rd(&s->workers[i].vm.stats.latency[b]);
      if (b == EWS_LATENCY_BUCKETS - 1)
        put(&o, "edgews_handler_seconds_bucket{worker=\"%d\",le=\"+Inf\"} %llu\n", i,
            (unsigned long long)cum);
      else
        put(&o, "edgews_handler_seconds_bucket{worker=\"%d\",le=\"%g\"} %llu\n", i,
            ews_latency_bounds[b], (unsigned long long)cum);
    }
    put(&o, "edgews_handler_seconds_sum{worker=\"%d\"} %.6f\n", i,
        EWS_STAT_LOAD(s->workers[i].vm.stats.latency_sum));
    put(&o, "edgews_handler_seconds_count{worker=\"%d\"} %llu\n", i, (unsigned long long)cum);
  }
  ews_pool_metrics(s->nworkers, put_str, &o); /* edgews.pool's lines, if any */
  if (o.oom) {
    free(o.p);
    return EWS_ENOMEM;
  }
  *outp = o.p;
  *len = o.len;
  return 0;
}
