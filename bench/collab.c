/* collab.c — collab mode of edgews-bench, for examples/collab/app.lua: -c editors
 * spread over --docs documents (editor i edits document i % D) type as fast as the
 * server acknowledges, one operation in flight each, as an ot.js client does.
 *
 * Each editor opens /collab?name=e<i>, joins its document (a fresh name per run:
 * "b<run>-<k>") and, once every editor has joined, sends
 *
 *   {"type":"edit","doc":D,"revision":R,"operation":[P,"x",R-P],"seq":S}
 *
 * an insert of one character at a random position P of the document at revision R,
 * the newest revision it has. Every operation inserts one character into a document
 * that starts empty, so the document at revision R has exactly R characters and the
 * editor needs no OT of its own: the server transforms. The editor then reads acks
 * (its own op, committed as revision R') and ops (the others', committed as R'),
 * checks that every message carries exactly the next revision (nothing lost,
 * repeated or reordered) and sends its next edit as soon as its ack arrives.
 *
 * Measured: acknowledgements per second (operations committed) and ack latency
 * (edit sent -> ack received) while measuring; ops delivered to the other editors
 * per second. Phases: open (paced) -> join -> type (warmup) -> measure -> drain
 * the acks outstanding -> close. collab_report() prints the summary (and --json).
 *
 * A cluster: one generator per instance, all with the same EDGEWS_BENCH_COLLAB_RUN
 * (the documents' names) and each with its own EDGEWS_BENCH_COLLAB_FIRST (the first
 * editor's number, so that client ids differ); their editors then edit the same
 * documents through different instances (a document may not be new when joined). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define RX_KEEP 160 /* bytes of a message kept: type and revision come first */

enum { PH_OPENING, PH_JOINING, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_CLOSING, PH_DONE };

typedef struct {
  char doc[32];
  int64_t rev;       /* newest revision received */
  uint64_t seq;      /* seq of the last edit sent */
  uint64_t t_sent;   /* send time of the outstanding edit */
  int outstanding;
  int joined;
  uint32_t len;
  uint8_t buf[RX_KEEP];
} editor_t;

static conn_t *g_conns;
static editor_t *g_ed;
static int g_phase_id;
static int g_sending, g_measuring;
static int g_joined;
static uint64_t g_outstanding;
static uint64_t g_acks, g_ops;          /* measured */
static uint64_t g_acks_all, g_ops_all;  /* whole run */
static uint64_t g_t_begin, g_t_end;
static unsigned g_run;
static int g_first; /* added to the editors' numbers in their names and client ids */
static int g_shared; /* EDGEWS_BENCH_COLLAB_RUN: the documents are shared with other generators */


static void send_text(conn_t *c, const char *s, size_t n) {
  conn_queue_frame(c, EWS_OP_TEXT, (const uint8_t *)s, n);
  conn_flush(c);
}

static void send_edit(conn_t *c) {
  editor_t *e = &g_ed[c->id];
  int64_t r = e->rev;
  int64_t p = r > 0 ? (int64_t)(rng64() % (uint64_t)(r + 1)) : 0;
  char op[64], msg[192];
  if (p > 0 && r - p > 0)
    snprintf(op, sizeof op, "[%lld,\"x\",%lld]", (long long)p, (long long)(r - p));
  else if (p > 0)
    snprintf(op, sizeof op, "[%lld,\"x\"]", (long long)p);
  else if (r > 0)
    snprintf(op, sizeof op, "[\"x\",%lld]", (long long)r);
  else
    snprintf(op, sizeof op, "[\"x\"]");
  int n = snprintf(msg, sizeof msg,
                   "{\"type\":\"edit\",\"doc\":\"%s\",\"revision\":%lld,\"operation\":%s,\"seq\":%llu}",
                   e->doc, (long long)r, op, (unsigned long long)++e->seq);
  e->t_sent = uv_hrtime();
  e->outstanding = 1;
  g_outstanding++;
  send_text(c, msg, (size_t)n);
}

/* The value of "key": (an integer) in the kept prefix of a message, or -1. */
static int64_t field_int(const editor_t *e, const char *key) {
  size_t kl = strlen(key);
  for (uint32_t i = 0; i + kl < e->len; i++) {
    if (memcmp(e->buf + i, key, kl) != 0) continue;
    int64_t v = 0;
    uint32_t j = i + (uint32_t)kl;
    if (j >= e->len || e->buf[j] < '0' || e->buf[j] > '9') return -1;
    for (; j < e->len && e->buf[j] >= '0' && e->buf[j] <= '9'; j++) v = v * 10 + (e->buf[j] - '0');
    return v;
  }
  return -1;
}

static int is_type(const editor_t *e, const char *t) {
  char want[40];
  int n = snprintf(want, sizeof want, "{\"type\":\"%s\"", t);
  return e->len >= (uint32_t)n && memcmp(e->buf, want, (size_t)n) == 0;
}

static void all_joined(void);

static void on_message(conn_t *c) {
  editor_t *e = &g_ed[c->id];
  if (is_type(e, "joined")) {
    int64_t rev = field_int(e, "\"revision\":");
    if (rev != 0 && !g_shared) /* (shared: another generator's editors may have typed) */
      bench_error("editor %u: joined %s at revision %lld, not a new document", c->id, e->doc,
                  (long long)rev);
    e->rev = rev < 0 ? 0 : rev;
    if (!e->joined) {
      e->joined = 1;
      if (++g_joined == g_opt.conns) all_joined();
    }
    return;
  }
  int ack = is_type(e, "ack");
  if (!ack && !is_type(e, "op")) {
    if (is_type(e, "error"))
      bench_error("editor %u: %.*s", c->id, (int)(e->len < 120 ? e->len : 120), (const char *)e->buf);
    return; /* welcome, members, presence */
  }
  int64_t rev = field_int(e, "\"revision\":");
  if (rev != e->rev + 1) {
    bench_error("editor %u: %s at revision %lld after %lld (lost, repeated or out of order)", c->id,
                ack ? "ack" : "op", (long long)rev, (long long)e->rev);
    if (rev < 0) return;
  }
  e->rev = rev;
  if (!ack) {
    g_ops_all++;
    if (g_measuring) g_ops++;
    return;
  }
  if (!e->outstanding) {
    bench_error("editor %u: ack with nothing outstanding", c->id);
    return;
  }
  uint64_t now = uv_hrtime();
  e->outstanding = 0;
  g_outstanding--;
  g_acks_all++;
  if (g_measuring) {
    hist_add(&g_hist, now - e->t_sent);
    g_acks++;
  }
  if (g_sending)
    send_edit(c);
  else if (g_phase_id == PH_DRAIN && g_outstanding == 0)
    run_close();
}

static int collab_on_data(conn_t *c, int opcode, uint8_t *p, size_t n, int first, int last) {
  editor_t *e = &g_ed[c->id];
  (void)opcode;
  if (first) e->len = 0;
  size_t room = RX_KEEP - e->len;
  size_t k = n < room ? n : room;
  memcpy(e->buf + e->len, p, k);
  e->len += (uint32_t)k;
  if (last) on_message(c);
  return 0;
}

/* ---- phases ----------------------------------------------------------------------- */

static void drain_timeout(void) {
  bench_error("%llu acks did not arrive within 10 s after the run", (unsigned long long)g_outstanding);
  run_close();
}

static void end_measure(void) {
  g_t_end = uv_hrtime();
  g_measuring = 0;
  g_sending = 0;
  sample_end();
  g_res.done = g_acks;
  g_res.seconds = (double)(g_t_end - g_t_begin) / 1e9;
  g_phase_id = PH_DRAIN;
  if (g_outstanding == 0) run_close();
  else phase_timer(10.0, drain_timeout);
}

static void begin_measure(void) {
  g_phase_id = PH_MEASURE;
  hist_reset(&g_hist);
  g_acks = g_ops = 0;
  sample_begin();
  g_t_begin = uv_hrtime();
  g_measuring = 1;
  phase_timer(g_opt.duration, end_measure);
}

static void join_timeout(void) {
  bench_error("%d of %d editors did not join within 10 s", g_opt.conns - g_joined, g_opt.conns);
  run_close();
}

static void all_joined(void) {
  phase_timer_stop();
  g_phase_id = PH_WARMUP;
  g_sending = 1;
  for (int i = 0; i < g_opt.conns; i++) send_edit(&g_conns[i]);
  if (g_opt.warmup > 0) phase_timer(g_opt.warmup, begin_measure);
  else begin_measure();
}

static void all_opened(void) {
  if (g_opener.failed) {
    bench_error("%d of %d connections failed to open", g_opener.failed, g_opener.target);
    run_close();
    return;
  }
  bench_note(0, "opened %d connections", g_opener.opened);
  g_phase_id = PH_JOINING;
  for (int i = 0; i < g_opt.conns; i++) {
    char msg[128];
    int n = snprintf(msg, sizeof msg, "{\"type\":\"join\",\"doc\":\"%s\",\"client\":\"g%d\"}",
                     g_ed[i].doc, g_first + i);
    send_text(&g_conns[i], msg, (size_t)n);
  }
  phase_timer(10.0, join_timeout);
}

/* ---- hooks ------------------------------------------------------------------------ */

static void collab_on_fail(conn_t *c, const char *what) {
  if (run_on_fail(c, "editor", what)) return;
  if (g_ed[c->id].outstanding) {
    g_ed[c->id].outstanding = 0;
    g_outstanding--;
  }
  if (g_phase_id == PH_DRAIN && g_outstanding == 0) run_close();
}

static const conn_hooks_t g_collab_hooks = {
    .on_open = run_on_open,
    .on_data = collab_on_data,
    .on_pong = NULL,
    .on_fail = collab_on_fail,
    .on_closed = run_on_closed,
};

int run_collab(void) {
  g_hooks = &g_collab_hooks;
  int n = g_opt.conns, docs = g_opt.docs > 0 ? g_opt.docs : 1;
  g_conns = calloc((size_t)n, sizeof(conn_t));
  g_ed = calloc((size_t)n, sizeof(editor_t));
  if (!g_conns || !g_ed) return -1;
  g_run = (unsigned)(rng64() % 1000000);
  /* Several generators on one set of documents (a cluster's instances, one generator
   * each): the same EDGEWS_BENCH_COLLAB_RUN, and distinct EDGEWS_BENCH_COLLAB_FIRST
   * (the first editor's number) so that their client ids differ. */
  const char *fixed = getenv("EDGEWS_BENCH_COLLAB_RUN"), *first = getenv("EDGEWS_BENCH_COLLAB_FIRST");
  if (fixed && *fixed) g_run = (unsigned)strtoul(fixed, NULL, 10), g_shared = 1;
  g_first = first && *first ? atoi(first) : 0;
  size_t plen = strlen(g_opt.path);
  const char *sep = strchr(g_opt.path, '?') ? "&" : "?";
  for (int i = 0; i < n; i++) {
    conn_t *c = &g_conns[i];
    c->id = (uint32_t)i;
    char *t = malloc(plen + 32);
    if (!t) return -1;
    snprintf(t, plen + 32, "%s%sname=e%d", g_opt.path, sep, g_first + i);
    c->target = t;
    c->out[0] = malloc(1024);
    c->out_cap[0] = 1024;
    if (!c->out[0]) return -1;
    snprintf(g_ed[i].doc, sizeof g_ed[i].doc, "b%u-%d", g_run, i % docs);
  }
  run_init(&g_phase_id, PH_OPENING, PH_CLOSING, PH_DONE, &g_sending, g_conns, n);
  opener_begin(g_conns, n, all_opened);
  uv_run(g_loop, UV_RUN_DEFAULT);
  for (int i = 0; i < n; i++) {
    free((char *)g_conns[i].target);
    g_conns[i].target = NULL;
    conn_free(&g_conns[i]);
  }
  free(g_conns);
  return g_res.seconds > 0 ? 0 : -1;
}

void collab_report(int rc) {
  const bench_result_t *r = &g_res;
  FILE *h = g_opt.json ? stderr : stdout;
  double secs = r->seconds > 0 ? r->seconds : 1;
  int have_srv = r->server_cpu_s >= 0 && r->seconds > 0;
  fprintf(h, "edgews-bench collab %s\n", g_opt.url);
  fprintf(h, "  load         %d editors on %d document(s), one edit in flight each\n", g_opt.conns,
          g_opt.docs > 0 ? g_opt.docs : 1);
  fprintf(h, "  committed    %llu ops in %.2f s: %.0f ops/s; %.0f ops/s delivered to the others\n",
          (unsigned long long)g_acks, r->seconds, (double)g_acks / secs, (double)g_ops / secs);
  fprintf(h, "  ack latency  p50 %.1f us, p90 %.1f us, p99 %.1f us, max %.1f us\n",
          hist_quantile_us(&g_hist, 0.5), hist_quantile_us(&g_hist, 0.9),
          hist_quantile_us(&g_hist, 0.99), hist_max_us(&g_hist));
  if (have_srv)
    fprintf(h, "  server CPU   %.2f s (%.0f%% of a core), %.1f us per op committed\n", r->server_cpu_s,
            100 * r->server_cpu_s / secs, g_acks ? 1e6 * r->server_cpu_s / (double)g_acks : 0);
  fprintf(h, "  errors       %llu%s%s\n", (unsigned long long)r->errors, r->errors ? " -- first: " : "",
          r->errors ? r->first_error : "");
  free(g_ed);
  g_ed = NULL;
  if (!g_opt.json) return;
  printf("{\"mode\":\"collab\",\"editors\":%d,\"docs\":%d,\"seconds\":%.3f,\"ops\":%llu,"
         "\"ops_per_sec\":%.1f,\"delivered_per_sec\":%.1f,\"ack_p50_us\":%.1f,\"ack_p90_us\":%.1f,"
         "\"ack_p99_us\":%.1f,\"ack_max_us\":%.1f,",
         g_opt.conns, g_opt.docs > 0 ? g_opt.docs : 1, r->seconds, (unsigned long long)g_acks,
         (double)g_acks / secs, (double)g_ops / secs, hist_quantile_us(&g_hist, 0.5),
         hist_quantile_us(&g_hist, 0.9), hist_quantile_us(&g_hist, 0.99), hist_max_us(&g_hist));
  if (have_srv)
    printf("\"server_cpu_s\":%.3f,\"server_cpu_us_per_op\":%.2f,", r->server_cpu_s,
           g_acks ? 1e6 * r->server_cpu_s / (double)g_acks : 0);
  printf("\"errors\":%llu,\"ok\":%s}\n", (unsigned long long)r->errors,
         rc == 0 && r->errors == 0 ? "true" : "false");
  fflush(stdout);
  (void)g_acks_all;
  (void)g_ops_all;
}
