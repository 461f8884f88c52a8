/* bench.h — shared declarations of the edgews-bench load generator: options, the
 * latency histogram, /proc and rusage sampling, the WebSocket client connection
 * (conn.c) with its optional TLS layer (tls.c) and permessage-deflate (pmd.c),
 * message payloads (payload.c) and the modes (echo.c, hsmode.c, idle.c, fanout.c,
 * recover.c, churn.c, collab.c, scale.c) that drive connections through hooks.
 * Everything runs on one libuv loop in one thread. */
#ifndef EWS_BENCH_H
#define EWS_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "proto/deflate.h"
#include "proto/frame.h"
#include "proto/handshake.h"

/* ---- options (main.c) --------------------------------------------------------- */

#define BENCH_MAX_ADDRS 64
#define BENCH_MAX_PIDS 64

typedef enum { MODE_ECHO, MODE_HANDSHAKE, MODE_IDLE, MODE_FANOUT, MODE_RECOVER, MODE_COLLAB,
               MODE_SCALE } bench_mode_t;
/* pattern: token + random bytes; json: JSON-like arrays (compressible); route: JSON
 * objects {"type":"echo",...} for the application-layer (router) benchmark. The
 * json and route kinds are pre-built variants, verified the same way. */
typedef enum { PAYLOAD_PATTERN = 0, PAYLOAD_JSON, PAYLOAD_ROUTE } payload_kind_t;
typedef enum { DEFLATE_OFF = 0, DEFLATE_SHARED, DEFLATE_TAKEOVER } deflate_mode_t;

typedef struct {
  bench_mode_t mode;
  const char *url;
  char host_header[300]; /* Host: value (host[:port] as in the URL) */
  char path[1024];       /* request target */
  char host[300];        /* host part of the URL, without brackets or port */
  struct sockaddr_storage addr;
  int tls;               /* wss:// */
  const char *ca_file;   /* --ca: verify the server against these certificates */
  int insecure;          /* --insecure: no certificate verification */
  const char *sni;       /* --sni: server name to send and verify (default: host) */
  int resume;            /* --resume: resume TLS sessions (tickets) after the first */
  deflate_mode_t deflate;
  int deflate_level;     /* our compressor's zlib level (1) */
  int client_context;    /* --client-context: takeover mode compresses with context */
  payload_kind_t payload;
  int prime;             /* idle: one echoed message per connection before measuring */
  int conns;       /* echo: connections; handshake: concurrency; idle: -n */
  int depth;       /* echo: messages in flight per connection */
  size_t size;     /* echo: payload bytes */
  int binary;      /* echo: binary frames instead of text */
  double duration; /* measured seconds */
  double warmup;   /* seconds before measuring */
  double settle;   /* idle: seconds to wait before reading RSS again */
  double hold;     /* idle: seconds to keep the connections open after measuring */
  int max_pending; /* handshakes outstanding at once while opening */
  double rate;     /* fanout: messages published per second (0: window-bound only) */
  int window;      /* fanout: messages outstanding (not yet received by everyone) */
  int messages;    /* recover: messages in the topic's history */
  int rounds;      /* recover: recoveries of every connection */
  int docs;        /* collab: documents the editors (-c) are spread over */
  long server_pid; /* 0 = none; the first of server_pids */
  long server_pids[BENCH_MAX_PIDS]; /* --server-pid A,B,...: trees summed */
  int nserver_pids;
  /* Where connections go and come from. dst[0] is the URL's address; --spread adds
   * more (fanout subscribers and scale connections take them round-robin). --source
   * binds each connection to one of these IPv4 addresses (round-robin; the port is
   * chosen at connect time, IP_BIND_ADDRESS_NO_PORT), so that more than one
   * ephemeral port range's worth of connections reach one server address. */
  struct sockaddr_storage dst[BENCH_MAX_ADDRS];
  int ndst;
  struct sockaddr_in src[BENCH_MAX_ADDRS];
  int nsrc;
  int publish;      /* scale: the publisher role */
  double interval;  /* scale publisher: seconds between publishes */
  const char *samples; /* scale: file for the (message, latency) samples */
  int json;
  int verbose;
} bench_opts_t;

extern bench_opts_t g_opt;

/* ---- results (filled by the modes, printed by main.c) --------------------------- */

typedef struct {
  uint64_t done;        /* messages / handshakes / deliveries (fanout) completed in the
                         * measured interval */
  uint64_t published;   /* fanout: messages published in the measured interval */
  double seconds;       /* measured wall time */
  uint64_t errors;
  char first_error[256];
  double server_cpu_s;  /* < 0: unknown */
  int server_procs;     /* processes in the server's tree */
  double gen_cpu_s;
  double machine_cpu_s; /* all processes on the machine; < 0 unknown */
  /* TLS (handshake mode: full / resumed handshakes completed while measuring) */
  uint64_t tls_full, tls_resumed;
  char tls_suite[64];
  /* permessage-deflate: negotiated response and payload bytes before / after
   * compression, over the whole run */
  char pmd_response[160];
  uint64_t tx_raw, tx_wire, rx_raw, rx_wire;
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
/* proc_tree_cpu_s summed over g_opt.server_pids, or -1 when one of them is gone. */
double servers_cpu_s(int *nprocs);
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
  CS_TLS,        /* TLS handshake in progress (wss://) */
  CS_HANDSHAKE,  /* upgrade request sent, waiting for the 101 */
  CS_OPEN,       /* WebSocket open */
  CS_CLOSING     /* close frame sent; waiting for the server's close or EOF */
} conn_state_t;

#define CONN_HS_MAX 1024 /* response head buffer */

struct tls_conn; /* tls.c */
struct pmd_conn; /* pmd.c */

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
  uint8_t *out[2];                /* bytes for the socket (ciphertext with TLS) */
  uint32_t out_len[2], out_cap[2];
  uint8_t *pt;                    /* wss://: plaintext queued for the next seal */
  uint32_t pt_len, pt_cap;
  struct tls_conn *tls;           /* wss://: kept (and reused) until conn_free */
  struct pmd_conn *pmd;           /* permessage-deflate negotiated on this session */
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
  const uint8_t *expect; /* JSON payloads: the expected echo (payload.c's) */
  uint64_t fo_seq, fo_ts; /* fanout: header of the message being received */
  const char *target;     /* request target of the upgrade; NULL = g_opt.path */
  uint8_t dst;            /* index into g_opt.dst (the source is g_opt.src[id % nsrc]) */
  uint8_t *acc;           /* scale: a message split over reads, accumulated */
  uint32_t acc_len;
  uint64_t sc_base;       /* scale: the topic's last offset when this one subscribed */
  uint32_t sc_got;        /* scale: messages received */
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
extern uint64_t g_pings_rx; /* pings received from the server (answered with pongs) */

/* Starts a TCP connect (+ TLS handshake) + WebSocket handshake. Returns 0 or a
 * libuv error. */
int conn_start(conn_t *c);
/* Space for n more bytes of WebSocket data at the end of what is queued (the TLS
 * plaintext buffer on wss://, else the socket buffer being filled). */
uint8_t *conn_out_reserve(conn_t *c, size_t n);
void conn_out_commit(conn_t *c, size_t n);
/* Appends bytes for the socket itself (ciphertext; tls.c's send callback). */
void conn_wire_append(conn_t *c, const uint8_t *p, size_t n);
/* Writes what was queued (sealed into TLS records first on wss://; uv_try_write,
 * then uv_write for the rest). */
void conn_flush(conn_t *c);
/* Queues a masked frame (payload copied and masked). Does not flush. */
void conn_queue_frame(conn_t *c, int opcode, const uint8_t *payload, size_t n);
/* Queues a data message: compressed (RSV1) when permessage-deflate is on, then
 * masked. `variant`: see pmd_compress (-1: none). Does not flush. */
void conn_queue_message(conn_t *c, int opcode, const uint8_t *payload, size_t n, long variant);
/* Plaintext from the server (called by tls.c after decryption). */
void conn_plain_in(conn_t *c, uint8_t *p, size_t n);
/* The TLS handshake is done: sends the upgrade request (called by tls.c). */
void conn_tls_ready(conn_t *c);
/* Starts the closing handshake: queues a close frame with `code`, flushes, and
 * goes CS_CLOSING; the handle is closed when the server's close or EOF arrives. */
void conn_close_ws(conn_t *c, unsigned code);
/* Closes the TCP handle now (idempotent). */
void conn_abort(conn_t *c);
/* Ends the run's connections: a close frame with `code` on every open one, an abort
 * on the rest. Then `done` right away when no handle is left, else `on_timeout`
 * after `grace` seconds unless the last close comes first (the mode calls `done`
 * from its on_closed hook). */
void conns_close_all(conn_t *conns, int n, unsigned code, double grace, void (*done)(void),
                     void (*on_timeout)(void));
/* A mode's opening and end (echo, collab). run_init() names the mode's phase variable
 * (set to `opening`), its opening, closing and done phases (closing < done, its last
 * two), its "sending" flag and its connections. run_on_open and run_on_closed are the
 * mode's hooks; its on_fail hook starts with run_on_fail(), which reports the failure
 * as "<who> <id>: <what>" and returns 1 when nothing is left to do (closing, or
 * opening: counted by the opener), else 0. run_close() (nothing once the phase is
 * closing or later) enters the closing phase, stops sending and closes every
 * connection (1000, then aborted after 3 s); once none is left the phase is done and
 * the phase timer closed. */
void run_init(int *phase, int opening, int closing, int done, int *sending, conn_t *conns, int n);
void run_on_open(conn_t *c);
int run_on_fail(conn_t *c, const char *who, const char *what);
void run_close(void);
void run_on_closed(conn_t *c);
/* Marks the connection failed (once), reports to the hooks, closes the handle. */
void conn_fail(conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees the out buffers and echo ring of a closed connection. */
void conn_free(conn_t *c);

/* ---- TLS client (tls.c): mbedTLS over memory callbacks ---------------------------- */

/* Loads the CA file, seeds the DRBG and builds the client configuration from
 * g_opt. Returns 0, or -1 after printing why. */
int tls_global_init(void);
void tls_global_free(void);
/* Starts the TLS handshake on a connected socket (sets up or resets the
 * connection's mbedtls_ssl_context). Failures go through conn_fail. */
void tls_begin(conn_t *c);
/* Ciphertext from the socket: drives the handshake, then decrypts records and
 * hands their plaintext to conn_plain_in. */
void tls_read(conn_t *c, const uint8_t *p, size_t n);
/* Seals the queued plaintext into records appended to the socket buffer. */
void tls_seal(conn_t *c, const uint8_t *p, size_t n);
/* Frees the connection's TLS state (conn_free). */
void tls_conn_free(conn_t *c);
/* Handshakes completed in full and resumed (--resume), over the whole run. */
extern uint64_t g_tls_full, g_tls_resumed;

/* ---- permessage-deflate client (pmd.c) ------------------------------------------- */

/* Creates the shared compressor state; 0 or -1. */
int pmd_global_init(void);
void pmd_global_free(void);
/* The Sec-WebSocket-Extensions value we offer. */
const char *pmd_offer(void);
/* Checks the server's Sec-WebSocket-Extensions value (the header's values joined
 * with ", "; NULL when absent) against our offer and sets up c->pmd. Returns NULL,
 * or a description of what is wrong. */
const char *pmd_accept(conn_t *c, const char *v, size_t n);
/* Compresses one message for c; the result stays valid until the next call.
 * `variant` >= 0 names a message of payload.c's fixed set: when c compresses every
 * message on its own, that message is compressed once and the result reused.
 * Returns 0 or an EWS_E* error. */
int pmd_compress(conn_t *c, const uint8_t *p, size_t n, long variant, const uint8_t **out,
                 size_t *out_n);
/* Inflates a chunk of a compressed message (frame receiver order); the inflated
 * bytes stay valid until the next call. 0 or an EWS_E* error. */
int pmd_inflate(conn_t *c, int opcode, const uint8_t *p, size_t n, int first, int last,
                uint8_t **out, size_t *out_n);
/* Frees c->pmd (the session ended). */
void pmd_conn_free(conn_t *c);

/* ---- payloads (payload.c) ---------------------------------------------------------- */

/* Builds the random pattern (text or binary) or the JSON object pool for
 * g_opt.payload and g_opt.size. 0 or -1. */
int payload_init(void);
void payload_free(void);
/* Writes the `size`-byte payload of message `seq` of connection `id` into dst.
 * Deterministic: the same arguments give the same bytes (for verification). */
void payload_fill(uint8_t *dst, size_t size, uint64_t seq, uint32_t id);
/* JSON payloads: the message (g_opt.size bytes, one of a fixed set) and its index
 * in the set (variant, may be NULL). */
const uint8_t *payload_json(uint64_t seq, uint32_t id, uint32_t *variant);
/* Pattern payloads: the token at the start and the pattern (for streaming
 * verification without building the expected message). */
#define TOKEN_LEN 16
void payload_token(uint8_t tok[TOKEN_LEN], uint64_t seq, uint32_t id);
uint32_t payload_pattern_offset(uint64_t seq, uint32_t id);
extern uint8_t *g_pattern; /* size + 256 bytes */
/* Smallest size a JSON payload can have. */
#define PAYLOAD_JSON_MIN 64

/* ---- modes --------------------------------------------------------------------- */

int run_echo(void);
int run_handshake(void);
int run_idle(void);
int run_fanout(void);
int run_recover(void);
/* recover mode prints its own report (recover.c). */
void recover_report(int rc);
/* collab: editors of examples/collab/app.lua (collab.c), with its own report. */
int run_collab(void);
/* scale: many subscribed connections of bench/apps/scale.lua that verify every
 * publish, or (--publish) the publisher (scale.c), with its own report. */
int run_scale(void);
void scale_report(int rc);
void collab_report(int rc);
/* churn (the soak client) parses its own command line: argv[1] is "churn". */
int churn_main(int argc, char **argv);
/* zlib against libdeflate on the JSON payloads (zcmp.c). */
int zcmp_main(int argc, char **argv);
/* ws[s]://host[:port][/path] -> g_opt.addr, host, host_header, path, tls. 0 or -1. */
int bench_parse_url(const char *url);

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
