/* bench.h — shared declarations of the edgews-bench load generator: options, the
 * latency histogram, /proc and rusage sampling, the WebSocket client connection
 * (conn.c) and the three modes (echo.c, hsmode.c, idle.c) that drive connections
 * through hooks. Everything runs on one libuv loop in one thread. */
#ifndef EWS_BENCH_H
#define EWS_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "proto/frame.h"
#include "proto/handshake.h"

/* ---- options (main.c) --------------------------------------------------------- */

typedef enum { MODE_ECHO, MODE_HANDSHAKE, MODE_IDLE } bench_mode_t;

typedef struct {
  bench_mode_t mode;
  const char *url;
  char host_header[300]; /* Host: value (host[:port] as in the URL) */
  char path[1024];       /* request target */
  struct sockaddr_storage addr;
  int conns;       /* echo: connections; handshake: concurrency; idle: -n */
  int depth;       /* echo: messages in flight per connection */
  size_t size;     /* echo: payload bytes */
  int binary;      /* echo: binary frames instead of text */
  double duration; /* measured seconds */
  double warmup;   /* seconds before measuring */
  double settle;   /* idle: seconds to wait before reading RSS again */
  double hold;     /* idle: seconds to keep the connections open after measuring */
  int max_pending; /* handshakes outstanding at once while opening */
  long server_pid; /* 0 = none */
  int json;
  int verbose;
} bench_opts_t;

extern bench_opts_t g_opt;

/* ---- results (filled by the modes, printed by main.c) --------------------------- */

typedef struct {
  uint64_t done;        /* messages / handshakes completed in the measured interval */
  double seconds;       /* measured wall time */
  uint64_t errors;
  char first_error[256];
  double server_cpu_s;  /* < 0: unknown */
  int server_procs;     /* processes in the server's tree */
  double gen_cpu_s;
  double machine_cpu_s; /* all processes on the machine; < 0 unknown */
  /* idle */
  int opened, alive;
  long rss_before, rss_after; /* bytes; < 0 unknown */
} bench_result_t;

extern bench_result_t g_res;

/* Samples taken at the start and end of the measured interval (server tree CPU,
 * own CPU, machine CPU) into g_res. */
void sample_begin(void);
void sample_end(void);

/* Counts an error; the first message is kept for the report and the first few
 * are printed to stderr. */
void bench_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Progress line on stderr (only with --verbose, or always when `always`). */
void bench_note(int always, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- latency histogram (hist.c): log-linear buckets over nanoseconds, relative
 * error below 0.2%, values up to ~18 minutes. ------------------------------------ */

#define HIST_SUB_BITS 10
#define HIST_BUCKETS ((64 - HIST_SUB_BITS + 2) << (HIST_SUB_BITS - 1))

typedef struct {
  uint64_t total;
  uint64_t min_ns, max_ns;
  double sum_ns;
  uint64_t counts[HIST_BUCKETS];
} hist_t;

extern hist_t g_hist;

void hist_reset(hist_t *h);
/* Value at quantile q (0..1) in microseconds; 0 when empty. */
double hist_quantile_us(const hist_t *h, double q);
double hist_mean_us(const hist_t *h);
double hist_max_us(const hist_t *h);

static inline unsigned hist_index(uint64_t v) {
  if (v < (1u << HIST_SUB_BITS)) return (unsigned)v;
  unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS */
  unsigned shift = e - HIST_SUB_BITS + 1;
  return (shift << (HIST_SUB_BITS - 1)) + (unsigned)(v >> shift);
}

static inline void hist_add(hist_t *h, uint64_t ns) {
  h->counts[hist_index(ns)]++;
  h->total++;
  h->sum_ns += (double)ns;
  if (ns < h->min_ns) h->min_ns = ns;
  if (ns > h->max_ns) h->max_ns = ns;
}

/* ---- process sampling (sysstat.c) ---------------------------------------------- */

/* CPU seconds (user + system) of `pid` and all its descendant processes, or -1 when
 * pid does not exist. *nprocs (may be NULL) gets the number of processes summed. */
double proc_tree_cpu_s(long pid, int *nprocs);
/* Sum of VmRSS of pid and its descendants in bytes, or -1. */
long proc_tree_rss(long pid);
/* User + system CPU seconds of the whole machine, all CPUs (/proc/stat), or -1. */
double machine_cpu_s(void);
/* This process's CPU seconds (getrusage). */
double self_cpu_s(void);
/* Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit. */
long raise_nofile_limit(void);

/* ---- random numbers: xorshift64*, seeded from getrandom ------------------------ */

extern uint64_t g_rng;
static inline uint64_t rng64(void) {
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  return g_rng * 0x2545F4914F6CDD1DULL;
}

/* ---- client connections (conn.c) ----------------------------------------------- */

typedef enum {
  CS_IDLE = 0,   /* not started, or closed */
  CS_CONNECTING, /* TCP connect in progress */
  CS_HANDSHAKE,  /* upgrade request sent, waiting for the 101 */
  CS_OPEN,       /* WebSocket open */
  CS_CLOSING     /* close frame sent; waiting for the server's close or EOF */
} conn_state_t;

#define CONN_HS_MAX 1024 /* response head buffer */

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  uint32_t id;
  uint8_t state;
  uint8_t handle_live; /* uv_tcp_init done, close_cb not yet run */
  uint8_t closing;     /* uv_close called */
  uint8_t wbusy;       /* a uv_write is in flight from out[wbuf] */
  uint8_t wbuf;        /* buffer being written (when wbusy) */
  uint8_t fill;        /* buffer being filled */
  uint8_t failed;      /* a failure was already reported for this connection */
  uint8_t rx_bad;      /* echo: current message mismatched */
  uint8_t *out[2];
  uint32_t out_len[2], out_cap[2];
  uint64_t t_start; /* uv_hrtime at connect start */
  ews_rx_t rx;
  char accept[EWS_ACCEPT_LEN + 1];
  uint16_t hs_len;
  char hs[CONN_HS_MAX];
  /* echo mode */
  uint64_t send_seq, recv_seq;
  uint32_t in_flight;
  uint32_t rx_off; /* bytes of the current echo received */
  uint32_t poff;   /* pattern offset of the current echo */
  uint8_t tok[16]; /* token of the current echo */
  uint64_t *ts;    /* send times, ring of depth entries */
} conn_t;

typedef struct {
  /* Handshake verified; the connection is CS_OPEN. */
  void (*on_open)(conn_t *c);
  /* Payload of a data message (see ews_rx_handler_t.on_data). Return 0 to go on. */
  int (*on_data)(conn_t *c, int opcode, uint8_t *p, size_t n, int first, int last);
  /* A pong arrived (idle mode checks liveness with pings). May be NULL. */
  void (*on_pong)(conn_t *c, const uint8_t *p, size_t n);
  /* The connection failed (connect error, bad handshake, protocol error, unexpected
   * EOF or close). `what` describes it. The handle is being closed. */
  void (*on_fail)(conn_t *c, const char *what);
  /* The handle is closed (after uv_close); the conn may be started again. */
  void (*on_closed)(conn_t *c);
} conn_hooks_t;

extern const conn_hooks_t *g_hooks;
extern uv_loop_t *g_loop;
extern uint64_t g_now; /* uv_hrtime() at the start of the current read callback */
extern int g_live;     /* tcp handles initialised and not yet closed */

/* Starts a TCP connect + WebSocket handshake. Returns 0 or a libuv error. */
int conn_start(conn_t *c);
/* Space for n more bytes at the end of the buffer being filled. */
uint8_t *conn_out_reserve(conn_t *c, size_t n);
static inline void conn_out_commit(conn_t *c, size_t n) { c->out_len[c->fill] += (uint32_t)n; }
/* Writes what was queued (uv_try_write, then uv_write for the rest). */
void conn_flush(conn_t *c);
/* Queues a masked frame (payload copied and masked). Does not flush. */
void conn_queue_frame(conn_t *c, int opcode, const uint8_t *payload, size_t n);
/* Starts the closing handshake: queues a close frame with `code`, flushes, and
 * goes CS_CLOSING; the handle is closed when the server's close or EOF arrives. */
void conn_close_ws(conn_t *c, unsigned code);
/* Closes the TCP handle now (idempotent). */
void conn_abort(conn_t *c);
/* Marks the connection failed (once), reports to the hooks, closes the handle. */
void conn_fail(conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees the out buffers and echo ring of a closed connection. */
void conn_free(conn_t *c);

/* ---- modes --------------------------------------------------------------------- */

int run_echo(void);
int run_handshake(void);
int run_idle(void);

/* Opening many connections with at most g_opt.max_pending handshakes outstanding
 * (used by echo and idle modes). */
typedef struct {
  conn_t *conns;
  int target;   /* connections to open */
  int started;  /* conn_start called */
  int opened;   /* handshake done */
  int failed;   /* connect or handshake failed */
  uint64_t t0;
  void (*done)(void); /* called once when opened + failed == target */
} opener_t;

extern opener_t g_opener;
void opener_begin(conn_t *conns, int target, void (*done)(void));
/* Call from on_open / on_fail of a connection that was being opened. */
void opener_on_open(void);
void opener_on_fail(void);

/* A one-shot phase timer shared by the modes. */
void phase_timer(double seconds, void (*cb)(void));
void phase_timer_stop(void);
/* Closes the phase timer handle so the loop can end. */
void phase_timer_close(void);

#endif
