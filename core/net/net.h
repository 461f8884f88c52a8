/* net.h — the net layer's share of one event loop: what the connections of a loop
 * have in common (the loop, its timer wheel, buffer pool, shared read buffer and
 * compression scratch, the flush and sweep lists, the connection list, the routes,
 * the counters the layer bumps) and the callbacks through which they reach their
 * owner. A worker embeds one (ews_net_init) before it accepts; an ews_net_t belongs
 * to its loop's thread, except the counters (stats, nconns), which other threads
 * read with EWS_STAT_LOAD (stat.h).
 *
 * The owner of the connections is reached through a table and an opaque pointer
 * (`ops`, `owner`), like the frame receiver's ews_rx_handler_t: ews_conn_ops_t
 * (conn.h) for a connection's events (authenticate, open, message, close, free; the
 * Lua layer's are in lua/events.c). ews_net_hooks_t is what the loop itself asks of
 * whoever runs it (the bodies of GET /health and /metrics, a connection freed).
 * Services that keep per-connection state register close hooks on the connection
 * (conn.h). */
#ifndef EWS_NET_H
#define EWS_NET_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/app.h"
#include "net/buf.h"
#include "net/poller.h"
#include "net/static_files.h"
#include "net/timers.h"
#include "proto/deflate.h"

typedef struct ews_conn ews_conn_t;
typedef struct ews_conn_ops ews_conn_ops_t;
struct ews_tls_ctx;

#define EWS_READ_BUF (64u * 1024u) /* the shared read buffer: every read lands here */

/* Why a connection was refused before (or instead of) its upgrade. */
#define EWS_REJECT_REASONS(XX)                                                        \
  XX(origin) XX(max_connections) XX(per_ip) XX(per_user) XX(unauthorized) XX(auth_timeout) \
  XX(bad_request) XX(shutting_down)
enum {
#define XX(n) EWS_RJ_##n,
  EWS_REJECT_REASONS(XX)
#undef XX
  EWS_RJ_MAX
};

/* What the net layer counts on this loop (written by its thread with EWS_STAT_ADD). */
typedef struct {
  uint64_t conns_total, msgs_in, msgs_out, bytes_in, bytes_out;
  uint64_t compressed;    /* messages compressed (a fan-out counts once) */
  uint64_t auth_timeouts; /* first-message authentication not done in time (4408) */
  uint64_t auth_expired;  /* tokens that expired on open connections (4403) */
  uint64_t rejected[EWS_RJ_MAX];
  uint64_t static_requests[4];   /* static-file answers by status class: 2xx .. 5xx */
  uint64_t static_bytes_sendfile; /* static bodies: bytes sent with sendfile (no copy) */
  uint64_t static_bytes_copied;   /* ... and bytes read into the write queue (TLS, full socket) */
} ews_net_stats_t;

/* The limits and routes of the loop's server side (copied from the configuration). */
typedef struct {
  uint32_t handshake_timeout_ms; /* accept to complete request head */
  uint32_t close_timeout_ms;     /* close frame sent, or HTTP answer queued, to TCP closed */
  uint32_t max_head, max_headers;
  uint8_t health, metrics;       /* serve GET /health, GET /metrics */
  uint8_t admin_only;            /* ... only on the admin listener (there is one) */
} ews_net_config_t;

/* What the loop asks of whoever runs it (any of them may be NULL; ud is theirs). */
typedef struct {
  /* GET /health: writes a JSON body into buf (at most cap bytes); returns its length
   * (< 0: answer 500) and sets *status (200, or 503 while draining). */
  int (*health)(void *ud, char *buf, size_t cap, int *status);
  /* GET /metrics: the Prometheus text in a malloc'd *body. 0 or EWS_ENOMEM. */
  int (*metrics)(void *ud, char **body, size_t *len);
  /* A connection was freed (nconns is already one less). */
  void (*conn_freed)(void *ud);
  /* Every tick of the loop's ticker (EWS_TICK_MS): for the owner's periodic chores. */
  void (*tick)(void *ud);
  void *ud;
} ews_net_hooks_t;

typedef struct ews_net {
  uv_loop_t *loop;
  int id;                     /* the worker's number: the low 8 bits of connection ids */
  ews_net_config_t cfg;
  const ews_conn_ops_t *ops;  /* every connection's events go to the owner through these */
  const ews_conn_ops_t *client_ops; /* ... and an outbound connection's (net/client.h) */
  void *owner;                /* the owner's context (opaque), found by ops through c->net */
  ews_net_hooks_t hooks;
  ews_routes_t routes;        /* the apps by path (swapped whole on reload) */
  ews_static_mounts_t statics; /* static-file mounts (swapped whole on reload) */
  struct ews_tls_ctx *tls;    /* wss:// listeners accept with this ctx (referenced) */
  uint32_t *total_conns;      /* process-wide open connections (atomic), or NULL */
  int stopping;               /* draining: upgrades are refused with 503 */
  ews_wheel_t wheel;          /* connection deadlines */
  uv_timer_t ticker;          /* drives the wheel */
  ews_poller_t poller;        /* every connection's socket (net/poller.h) */
  uv_idle_t reaper;           /* active while reap_head is not empty */
  ews_bufpool_t pool;
  ews_zbuf_t zscratch;        /* compressed frames are built here, then queued */
  uint8_t *rbuf;              /* EWS_READ_BUF bytes */
  ews_conn_t *conns;          /* all connections (doubly linked) */
  ews_conn_t *flush_head;     /* connections with queued bytes */
  ews_conn_t *sweep_head;     /* connections that ended: close event, then closing the socket */
  ews_conn_t *reap_head;      /* closed sockets whose structs are freed by the reaper
                                 (linked by sweep_next) */
  uint32_t nconns;            /* read by other threads */
  uint64_t conn_seq;
  uint64_t last_emfile_log;
  uint64_t trim_at;           /* loop time to give freed heap back (ews_net_trim_later), or 0 */
  /* connlog.c: the request path while its head is answered, and the refusal lines
   * of the current second (logged, counted only) */
  const char *req_path;
  size_t req_path_len;
  uint64_t refused_window_ms;
  uint32_t refused_logged, refused_quiet;
  ews_net_stats_t stats;
} ews_net_t;

/* Prepares net for loop (zeroed by the caller first): the read buffer, the wheel and
 * its ticker, the connections' poller and the reaper (handles on the loop: closed
 * with the loop's others). 0, EWS_ENOMEM, or EWS_EIO (no epoll descriptor). */
int ews_net_init(ews_net_t *net, uv_loop_t *loop, int id);
/* Much memory was just freed on this loop (idle TLS connections dropped their cipher
 * contexts, after their handshakes): EWS_TRIM_QUIET_MS after the first such call the
 * ticker hands the heap's free pages back to the kernel (malloc_trim), at most once
 * per EWS_TRIM_QUIET_MS however many calls. Never per message: main.c keeps glibc
 * from trimming on every free, for the 16 KiB echo's sake. */
#define EWS_TRIM_QUIET_MS 500u
void ews_net_trim_later(ews_net_t *net);

/* Frees the connections whose sockets were closed (their close hooks and the owner's
 * `free` run now): the reaper does this from the loop's idle phase; whoever stops the
 * loop calls it once more before closing the loop's handles. Never from inside a
 * connection's callback. */
void ews_net_reap(ews_net_t *net);
/* After the loop closed every handle: frees the routes, buffers and scratch, closes
 * the sockets of connections still open (their structs are not freed: their owner
 * is gone) and the poller's descriptor. */
void ews_net_free(ews_net_t *net);
/* Runs the flush and sweep lists until both are empty (call from the loop's prepare
 * and check phases, and after anything that may have queued work). */
void ews_net_run_pending(ews_net_t *net);
/* Graceful shutdown of every connection (HEAD dropped, OPEN gets close 1001). */
void ews_net_shutdown(ews_net_t *net);
/* Closes every connection's TCP connection now. */
void ews_net_abort_all(ews_net_t *net);
/* Open connections on this loop (any thread). */
static inline uint32_t ews_net_nconns(const ews_net_t *net) {
  return __atomic_load_n(&net->nconns, __ATOMIC_RELAXED);
}

#endif
