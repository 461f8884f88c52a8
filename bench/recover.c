/* recover.c — recover mode of edgews-bench: what a burst of pub/sub recoveries
 * costs the other clients of the same worker. Against bench/apps/recovery.lua:
 *
 *   -c N recovering connections are opened, and one bystander in a child process
 *   of its own (its own loop, on the same CPU): the generator's loop is busy
 *   reading the replays, and would delay the bystander's timer and its echoes.
 *   The first connection fills the topic with --messages M messages ("F<M>" ->
 *   "f<last>"). The bystander sends echo messages ("E<16 hex send time>") at
 *   --rate per second, open loop (one per timer tick whether or not the previous
 *   echo came back, so a stalled server shows as the whole stall). For 1 s it
 *   measures the baseline; then, --rounds times, every recovering connection
 *   subscribes from the start ("S0") at once and receives the M messages of the
 *   replay, then the answer "s<replayed>,<recovered>,<gap>"; once all have it
 *   they unsubscribe ("U" -> "u") and the next round starts. The parent tells the
 *   child over a pipe when the baseline and each round start and end; the child
 *   sends its histograms back at the end.
 *
 * Every recovering connection verifies that it gets offsets 1..M once and in
 * order in each round, and the answer (replayed = M, recovered, no gap). The
 * bystander's echo latency is recorded in g_hist while a round is in progress
 * (from its "S0"s until the last answer), and in a separate histogram for the
 * baseline. Reported: latency percentiles of both, the time of each round, the
 * replayed messages per second over the rounds, and the server's CPU. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define RX_KEEP 128 /* bytes of a message kept for parsing (offsets are near the start) */
#define ROUND_TIMEOUT_S 300.0

enum { PH_OPENING, PH_FILL, PH_BASELINE, PH_ROUND, PH_UNSUB, PH_CLOSING, PH_DONE };

typedef struct {
  uint8_t buf[RX_KEEP];
  uint32_t len;  /* bytes of the current message kept */
  int64_t next;  /* the offset expected next in this round */
  int done;      /* answered in this round */
  int unsubscribed;
} rstate_t;

/* What the child sends back at the end. */
typedef struct {
  hist_t base, during;
  uint64_t sent, received, errors;
  char first_error[256];
} by_result_t;

static conn_t *g_conns; /* the parent's N recovering connections, or the child's bystander */
static rstate_t *g_rs;
static int g_n;
static int g_phase_id;
static int g_round;
static int g_answered, g_unsubbed;
static uint64_t g_t_round0, g_t_rounds_total;
static double g_round_s[64];
static uint64_t g_replayed; /* messages received in rounds */
static int g_cmd_fd = -1, g_res_fd = -1; /* parent: commands out, results in */
static pid_t g_child;
static by_result_t g_by; /* the child's result (parent: as received) */
static const uint8_t g_hex[16] = "0123456789abcdef";

static void start_close(void);
static void start_round(void);

static void send_text(conn_t *c, const char *s) {
  conn_queue_frame(c, EWS_OP_TEXT, (const uint8_t *)s, strlen(s));
  conn_flush(c);
}

static int write_all(int fd, const void *p, size_t n) {
  const char *b = p;
  while (n) {
    ssize_t k = write(fd, b, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    b += k;
    n -= (size_t)k;
  }
  return 0;
}

static int read_all(int fd, void *p, size_t n) {
  char *b = p;
  while (n) {
    ssize_t k = read(fd, b, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return -1;
    b += k;
    n -= (size_t)k;
  }
  return 0;
}

/* ---- the bystander (child process) ------------------------------------------------- */

static conn_t g_byc;
static int g_by_state; /* 'B' baseline, 'R' round, else not recording */
static uv_timer_t g_tick;
static uv_pipe_t g_cmd_pipe;
static int g_by_res_fd;

static void by_tick(uv_timer_t *t) {
  (void)t;
  if (g_byc.state != CS_OPEN) return;
  uint64_t now = uv_hrtime();
  uint8_t m[17];
  m[0] = 'E';
  for (int i = 0; i < 16; i++) m[16 - i] = g_hex[(now >> (4 * i)) & 15];
  conn_queue_frame(&g_byc, EWS_OP_TEXT, m, sizeof m);
  conn_flush(&g_byc);
  g_by.sent++;
}

static void by_alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
  (void)h;
  (void)n;
  static char buf[64];
  *b = uv_buf_init(buf, sizeof buf);
}

static void by_finish(void) {
  g_by.errors = g_res.errors;
  snprintf(g_by.first_error, sizeof g_by.first_error, "%s", g_res.first_error);
  int r = write_all(g_by_res_fd, &g_by, sizeof g_by);
  _exit(r == 0 ? 0 : 1);
}

/* Commands from the parent: B (baseline), R (round), E (end of it), Q (quit). */
static void by_cmd(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)s;
  if (n < 0) by_finish(); /* the parent is gone */
  for (ssize_t i = 0; i < n; i++) {
    char c = b->base[i];
    if (c == 'Q') by_finish();
    g_by_state = c;
  }
}

static int by_on_data(conn_t *c, int opcode, uint8_t *p, size_t n, int first, int last) {
  (void)opcode;
  rstate_t *s = &g_rs[0];
  if (first) s->len = 0;
  size_t keep = RX_KEEP - s->len < n ? RX_KEEP - s->len : n;
  memcpy(s->buf + s->len, p, keep);
  s->len += (uint32_t)keep;
  if (!last) return 0;
  uint64_t ts = 0;
  int ok = s->len == 17 && s->buf[0] == 'E';
  for (int i = 1; ok && i < 17; i++) {
    uint8_t ch = s->buf[i];
    int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
    ok = d >= 0;
    ts = ts << 4 | (uint64_t)(d & 15);
  }
  if (!ok) {
    bench_error("bystander: not an echo: '%.*s'", (int)(s->len > 40 ? 40 : s->len), s->buf);
    return 0;
  }
  (void)c;
  uint64_t lat = g_now > ts ? g_now - ts : 0;
  g_by.received++;
  if (g_by_state == 'B') hist_add(&g_by.base, lat);
  else if (g_by_state == 'R') hist_add(&g_by.during, lat);
  return 0;
}

static void by_on_open(conn_t *c) {
  (void)c;
  uv_timer_init(g_loop, &g_tick);
  uint64_t ms = g_opt.rate >= 1000 ? 1 : (uint64_t)(1000.0 / (g_opt.rate > 0 ? g_opt.rate : 1));
  uv_timer_start(&g_tick, by_tick, ms, ms);
  uint8_t ready = 'O';
  if (write_all(g_by_res_fd, &ready, 1) != 0) _exit(1);
}

static void by_on_fail(conn_t *c, const char *what) {
  (void)c;
  bench_error("bystander: %s", what);
  by_finish();
}

static void by_on_closed(conn_t *c) { (void)c; }

static const conn_hooks_t g_by_hooks = {
    .on_open = by_on_open,
    .on_data = by_on_data,
    .on_fail = by_on_fail,
    .on_closed = by_on_closed,
};

/* The child: one connection, echoes at the rate, until the parent says Q. */
static void bystander_main(int cmd_fd, int res_fd) {
  static uv_loop_t loop;
  uv_loop_init(&loop);
  g_loop = &loop;
  g_hooks = &g_by_hooks;
  g_by_res_fd = res_fd;
  hist_reset(&g_by.base);
  hist_reset(&g_by.during);
  g_rs = calloc(1, sizeof *g_rs);
  uv_pipe_init(g_loop, &g_cmd_pipe, 0);
  uv_pipe_open(&g_cmd_pipe, cmd_fd);
  uv_read_start((uv_stream_t *)&g_cmd_pipe, by_alloc, by_cmd);
  g_byc.id = 0;
  if (conn_start(&g_byc) != 0) {
    bench_error("bystander: cannot connect");
    by_finish();
  }
  uv_run(g_loop, UV_RUN_DEFAULT);
  by_finish();
}

/* Parent side: a command to the child (B, R, E, Q). */
static void by_command(char c) {
  if (g_cmd_fd >= 0 && write_all(g_cmd_fd, &c, 1) != 0) bench_error("the bystander process is gone");
}

/* ---- the recovering connections (parent) ------------------------------------------- */

static void all_answered(void) {
  by_command('E');
  double s = (double)(uv_hrtime() - g_t_round0) / 1e9;
  g_t_rounds_total += uv_hrtime() - g_t_round0;
  if (g_round <= 64) g_round_s[g_round - 1] = s;
  phase_timer_stop();
  bench_note(0, "round %d: %d connections recovered %d messages each in %.3f s", g_round, g_n,
             g_opt.messages, s);
  g_phase_id = PH_UNSUB;
  g_unsubbed = 0;
  for (int i = 0; i < g_n; i++) send_text(&g_conns[i], "U");
}

static void rec_message(conn_t *c, rstate_t *s, const uint8_t *p, uint32_t n) {
  if (n > 8 && p[0] == '{') {
    /* {"type":"pub","topic":"bench","epoch":"...","offset":N,... */
    const char *o = memmem(p, n, "\"offset\":", 9);
    if (!o) {
      bench_error("conn %u: a message without an offset", c->id);
      return;
    }
    long long off = strtoll(o + 9, NULL, 10);
    if (off != s->next) {
      bench_error("conn %u: round %d: offset %lld, expected %lld", c->id, g_round, off,
                  (long long)s->next);
      if (off > s->next) s->next = off + 1;
      return;
    }
    s->next++;
    g_replayed++;
    return;
  }
  if (n > 1 && p[0] == 's') {
    char a[RX_KEEP + 1];
    memcpy(a, p, n);
    a[n] = 0;
    long replayed = -1;
    int recovered = -1, gap = -1;
    sscanf(a + 1, "%ld,%d,%d", &replayed, &recovered, &gap);
    if (s->done || replayed != g_opt.messages || s->next != g_opt.messages + 1 || recovered != 1 ||
        gap != 0)
      bench_error("conn %u: round %d: answer '%.*s' after %lld messages", c->id, g_round, (int)n, p,
                  (long long)(s->next - 1));
    if (!s->done) {
      s->done = 1;
      if (++g_answered == g_n) all_answered();
    }
    return;
  }
  if (n == 1 && p[0] == 'u') {
    if (!s->unsubscribed) {
      s->unsubscribed = 1;
      if (++g_unsubbed == g_n) {
        if (g_round < g_opt.rounds) start_round();
        else start_close();
      }
    }
    return;
  }
  if (n > 1 && p[0] == 'f' && g_phase_id == PH_FILL) {
    long last = strtol((const char *)p + 1, NULL, 10);
    if (last != g_opt.messages) {
      bench_error("fill: the topic's last offset is %ld, not %d (not a fresh server?)", last,
                  g_opt.messages);
      start_close();
      return;
    }
    g_phase_id = PH_BASELINE;
    by_command('B');
    phase_timer(1.0, start_round);
    return;
  }
  bench_error("conn %u: unexpected message '%.*s'", c->id, (int)(n > 40 ? 40 : n), p);
}

static int rc_on_data(conn_t *c, int opcode, uint8_t *p, size_t n, int first, int last) {
  rstate_t *s = &g_rs[c->id];
  if (first) {
    s->len = 0;
    if (opcode != EWS_OP_TEXT) bench_error("conn %u: binary message", c->id);
  }
  size_t keep = RX_KEEP - s->len < n ? RX_KEEP - s->len : n;
  memcpy(s->buf + s->len, p, keep);
  s->len += (uint32_t)keep;
  if (last) rec_message(c, s, s->buf, s->len);
  return 0;
}

/* ---- phases ------------------------------------------------------------------------ */

static void round_timeout(void) {
  bench_error("round %d: %d of %d connections answered within %.0f s", g_round, g_answered, g_n,
              ROUND_TIMEOUT_S);
  start_close();
}

static void start_round(void) {
  if (g_phase_id >= PH_CLOSING) return;
  if (g_round == 0) sample_begin(); /* the server's CPU over the rounds */
  g_round++;
  g_phase_id = PH_ROUND;
  g_answered = 0;
  for (int i = 0; i < g_n; i++) g_rs[i] = (rstate_t){.next = 1};
  by_command('R');
  g_t_round0 = uv_hrtime();
  phase_timer(ROUND_TIMEOUT_S, round_timeout);
  for (int i = 0; i < g_n; i++) send_text(&g_conns[i], "S0");
}

static void finish(void) {
  if (g_phase_id == PH_DONE) return;
  g_phase_id = PH_DONE;
  phase_timer_close();
}

static void force_close(void) {
  for (int i = 0; i < g_n; i++) conn_abort(&g_conns[i]);
  if (g_live == 0) finish();
}

static void start_close(void) {
  if (g_phase_id >= PH_CLOSING) return;
  if (g_round > 0) {
    sample_end();
    g_res.seconds = (double)g_t_rounds_total / 1e9;
    g_res.done = g_replayed;
  }
  g_phase_id = PH_CLOSING;
  phase_timer_stop();
  conns_close_all(g_conns, g_n, 1000, 5.0, finish, force_close);
}

static void opened(void) {
  if (g_opener.failed) {
    bench_error("%d of %d connections failed to open", g_opener.failed, g_opener.target);
    start_close();
    return;
  }
  /* the bystander is connected and echoing (it says 'O') */
  uint8_t ready = 0;
  if (read_all(g_res_fd, &ready, 1) != 0 || ready != 'O') {
    bench_error("the bystander did not connect");
    start_close();
    return;
  }
  g_phase_id = PH_FILL;
  char m[32];
  snprintf(m, sizeof m, "F%d", g_opt.messages);
  send_text(&g_conns[0], m);
}

static void rc_on_open(conn_t *c) {
  (void)c;
  if (g_phase_id == PH_OPENING) opener_on_open();
}

static void rc_on_fail(conn_t *c, const char *what) {
  if (g_phase_id >= PH_CLOSING) return;
  bench_error("conn %u: %s", c->id, what);
  if (g_phase_id == PH_OPENING) {
    opener_on_fail();
    return;
  }
  start_close();
}

static void rc_on_closed(conn_t *c) {
  (void)c;
  if (g_phase_id >= PH_CLOSING && g_live == 0) finish();
}

static const conn_hooks_t g_rc_hooks = {
    .on_open = rc_on_open,
    .on_data = rc_on_data,
    .on_pong = NULL,
    .on_fail = rc_on_fail,
    .on_closed = rc_on_closed,
};

int run_recover(void) {
  int cmd[2], res[2];
  if (pipe(cmd) != 0 || pipe(res) != 0) return -1;
  fflush(NULL);
  g_child = fork();
  if (g_child < 0) return -1;
  if (g_child == 0) {
    close(cmd[1]);
    close(res[0]);
    bystander_main(cmd[0], res[1]); /* does not return */
  }
  close(cmd[0]);
  close(res[1]);
  g_cmd_fd = cmd[1];
  g_res_fd = res[0];

  g_hooks = &g_rc_hooks;
  g_n = g_opt.conns;
  g_conns = calloc((size_t)g_n, sizeof(conn_t));
  g_rs = calloc((size_t)g_n, sizeof(rstate_t));
  if (!g_conns || !g_rs) return -1;
  for (int i = 0; i < g_n; i++) g_conns[i].id = (uint32_t)i;
  g_phase_id = PH_OPENING;
  opener_begin(g_conns, g_n, opened);
  uv_run(g_loop, UV_RUN_DEFAULT);

  /* the bystander's histograms */
  by_command('Q');
  close(g_cmd_fd);
  if (read_all(g_res_fd, &g_by, sizeof g_by) != 0) {
    bench_error("no result from the bystander process");
    hist_reset(&g_by.base);
    hist_reset(&g_by.during);
  } else if (g_by.errors) {
    bench_error("bystander: %llu error(s), first: %s", (unsigned long long)g_by.errors,
                g_by.first_error);
  }
  close(g_res_fd);
  waitpid(g_child, NULL, 0);
  g_hist = g_by.during;
  for (int i = 0; i < g_n; i++) conn_free(&g_conns[i]);
  free(g_conns);
  free(g_rs);
  return g_round == g_opt.rounds && g_res.seconds > 0 ? 0 : -1;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

void recover_report(int rc) {
  const bench_result_t *r = &g_res;
  const hist_t *base = &g_by.base;
  int n = g_round < 64 ? g_round : 64;
  double sorted[64], med = 0;
  memcpy(sorted, g_round_s, (size_t)n * sizeof *sorted);
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
  if (n) med = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  double rate = r->seconds > 0 ? (double)r->done / r->seconds : 0;
  int have_srv = r->seconds > 0 && r->server_cpu_s >= 0;
  FILE *h = g_opt.json ? stderr : stdout;
  fprintf(h, "edgews-bench recover %s\n", g_opt.url);
  fprintf(h, "  load         %d connections recover %d messages each, %d round(s); bystander "
             "(own process) echoes %.0f/s\n", g_n, g_opt.messages, g_opt.rounds, g_opt.rate);
  fprintf(h, "  rounds       %d done, median %.3f s; %llu messages replayed, %.0f/s\n", g_round,
          med, (unsigned long long)r->done, rate);
  fprintf(h, "  bystander    baseline p50 %.1f us, p99 %.1f us, max %.1f us (%llu echoes)\n",
          hist_quantile_us(base, 0.5), hist_quantile_us(base, 0.99), hist_max_us(base),
          (unsigned long long)base->total);
  fprintf(h, "  bystander    during recovery p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us "
             "(%llu echoes)\n", hist_quantile_us(&g_hist, 0.5), hist_quantile_us(&g_hist, 0.99),
          hist_quantile_us(&g_hist, 0.999), hist_max_us(&g_hist), (unsigned long long)g_hist.total);
  if (have_srv)
    fprintf(h, "  server CPU   %.2f s over the rounds (%.0f%% of a core)\n", r->server_cpu_s,
            100.0 * r->server_cpu_s / r->seconds);
  if (r->seconds > 0)
    fprintf(h, "  generator    %.2f s CPU over the rounds (%.0f%% of a core)\n", r->gen_cpu_s,
            100.0 * r->gen_cpu_s / r->seconds);
  fprintf(h, "  errors       %llu%s%s\n", (unsigned long long)r->errors, r->errors ? " -- first: " : "",
          r->errors ? r->first_error : "");
  if (!g_opt.json) return;
  printf("{\"mode\":\"recover\",\"conns\":%d,\"messages\":%d,\"rounds\":%d,\"rounds_done\":%d,"
         "\"rate\":%.1f,\"round_s_median\":%.4f,\"replayed\":%llu,\"replayed_per_sec\":%.1f,"
         "\"base_p50_us\":%.1f,\"base_p99_us\":%.1f,\"base_max_us\":%.1f,\"base_echoes\":%llu,"
         "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"echoes\":%llu,",
         g_n, g_opt.messages, g_opt.rounds, g_round, g_opt.rate, med, (unsigned long long)r->done,
         rate, hist_quantile_us(base, 0.5), hist_quantile_us(base, 0.99), hist_max_us(base),
         (unsigned long long)base->total, hist_quantile_us(&g_hist, 0.5),
         hist_quantile_us(&g_hist, 0.99), hist_quantile_us(&g_hist, 0.999), hist_max_us(&g_hist),
         (unsigned long long)g_hist.total);
  if (have_srv) printf("\"server_cpu_s\":%.3f,", r->server_cpu_s);
  if (r->seconds > 0) printf("\"gen_cpu_s\":%.3f,", r->gen_cpu_s);
  printf("\"errors\":%llu,\"ok\":%s}\n", (unsigned long long)r->errors,
         rc == 0 && r->errors == 0 ? "true" : "false");
}
