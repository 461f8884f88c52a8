/* scale.c — scale mode of edgews-bench, against bench/apps/scale.lua (scripts/bench-scale):
 * many subscribed connections that verify every publish, or the publisher.
 *
 * Receivers (default): -c N connections (spread round-robin over the URL's address and
 * the --spread ones, bound round-robin to the --source addresses; at most --max-pending
 * joining at once, a join being connect, upgrade and subscribe answer) each send "S"
 * once open; the app subscribes the socket to the pub/sub topic "scale" and
 * answers "s<last offset>". Once every connection is subscribed (or failed) one line
 *   {"event":"ready","t0_ns":..,"opened_ns":..,"ready_ns":..,"opened":..,"subscribed":..,
 *    "failed":..}
 * goes to stdout (uv_hrtime, CLOCK_MONOTONIC: comparable across processes), then the
 * connections stay idle (answering the server's heartbeat pings) until each has
 * received --messages M publishes, which ends the run. Each message must be the
 * envelope {"type":"pub","topic":"scale","epoch":E,"offset":O,"time":T,"data":"D"}
 * with E the same on every message, O = the subscribe answer's offset + k for the
 * k-th message (1-based: none missing, repeated or reordered) and D the publisher's
 * k-th payload (below, -s bytes, every byte checked); then {"event":"complete",..}
 * goes to stdout and the connections close --settle seconds later. Delivery latency = the start of
 * the read callback - the send time in D (same machine clock). SIGINT / SIGTERM, or
 * --hold seconds after ready, end the wait early; every missing delivery is an error.
 * SIGUSR1 prints {"event":"status","t_ns":..,"pings":..,"verified":..,"open":..}.
 *
 * Publisher (--publish): one connection sends M messages "P" + D, --interval seconds
 * apart (the next one no earlier than the previous ack), D =
 *   16 hex digits message number k (0-based) | 16 hex digits send time (uv_hrtime ns) |
 *   filler "abc...z" starting at letter (k % 26) + 32
 * and records each ack ("p<offset>", sent by the app once pubsub.publish returned)
 * latency: publish sent -> ack received. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define SC_HDR 32
#define SC_TOPIC_PREFIX "{\"type\":\"pub\",\"topic\":\"scale\",\"epoch\":\""
#define SC_ACK_TIMEOUT_S 30.0

enum { PH_OPENING, PH_WAIT, PH_CLOSING, PH_DONE };

static conn_t *g_conns;
static int g_n;
static int g_ph;
static int g_subscribed; /* connections that subscribed (ever) */
static int g_ws_open;    /* connections that got their 101 */
static int g_lost;       /* subscribed, then lost */
static int g_complete;   /* subscribed and received all messages */
static uint64_t g_t0, g_t_opened, g_t_ready;
static uint32_t *g_deliv; /* per message: deliveries verified */
static uint64_t g_total;  /* deliveries verified */
static uint64_t *g_samp;  /* (message << 48 | latency ns) per delivery */
static size_t g_nsamp, g_capsamp;
static char g_epoch[17];
static uint8_t *g_letters;
static uv_signal_t g_sigint, g_sigterm, g_sigusr1;
static int g_signals_live;
static int g_hold_expired, g_interrupted;
/* publisher */
static uint64_t g_pub_sent, g_pub_acked, g_pub_t_send, g_pub_first_off, g_pub_last_off;
static uint64_t *g_ack_ns;
static uint64_t g_pub_t0;
static const uint8_t g_hex[16] = "0123456789abcdef";

static void signals_close(void) {
  if (!g_signals_live) return;
  g_signals_live = 0;
  uv_close((uv_handle_t *)&g_sigint, NULL);
  uv_close((uv_handle_t *)&g_sigterm, NULL);
  uv_close((uv_handle_t *)&g_sigusr1, NULL);
}

static void finish(void) {
  if (g_ph == PH_DONE) return;
  g_ph = PH_DONE;
  signals_close();
  phase_timer_close();
}

static void force_close(void) {
  for (int i = 0; i < g_n; i++) conn_abort(&g_conns[i]);
  if (g_live == 0) finish();
}

static void start_close(void) {
  if (g_ph >= PH_CLOSING) return;
  g_ph = PH_CLOSING;
  phase_timer_stop();
  conns_close_all(g_conns, g_n, 1000, 10.0, finish, force_close);
}

/* ---- receivers ---------------------------------------------------------------------- */

static void write_samples(void) {
  if (!g_opt.samples) return;
  FILE *f = fopen(g_opt.samples, "w");
  if (!f) {
    bench_error("cannot write %s", g_opt.samples);
    return;
  }
  for (size_t i = 0; i < g_nsamp; i++)
    fprintf(f, "%llu %llu\n", (unsigned long long)(g_samp[i] >> 48),
            (unsigned long long)(g_samp[i] & ((1ull << 48) - 1)));
  if (fclose(f) != 0) bench_error("writing %s failed", g_opt.samples);
}

/* All messages arrived everywhere, or we stop waiting: count what is missing, close. */
static void receivers_end(void) {
  if (g_ph >= PH_CLOSING) return;
  uint64_t missing = 0;
  for (int i = 0; i < g_n; i++) {
    conn_t *c = &g_conns[i];
    if (c->in_flight == 2 && c->sc_got < (uint32_t)g_opt.messages)
      missing += (uint64_t)g_opt.messages - c->sc_got;
  }
  if (missing) {
    bench_error("%llu of %llu deliveries did not arrive (%s)", (unsigned long long)missing,
                (unsigned long long)g_subscribed * (uint64_t)g_opt.messages,
                g_interrupted ? "stopped by a signal" : g_hold_expired ? "--hold expired"
                                                                     : "connections lost");
    g_res.errors += missing - 1;
  }
  write_samples();
  start_close();
}

/* Every connection has every message: say so at once (the script stops its CPU
 * sample there), then wait --settle seconds before closing. */
static void receivers_complete(void) {
  if (g_ph != PH_WAIT) return;
  printf("{\"event\":\"complete\",\"t_ns\":%llu,\"verified\":%llu}\n",
         (unsigned long long)uv_hrtime(), (unsigned long long)g_total);
  fflush(stdout);
  phase_timer(g_opt.settle, receivers_end);
}

static void hold_expired(void) {
  g_hold_expired = 1;
  receivers_end();
}

/* The opener is done: every connection subscribed or failed (a join = connect,
 * upgrade and the subscribe answer: --max-pending bounds the joins in flight, so a
 * generator never has more than that many subscribes waiting at the servers). */
static void all_joined(void) {
  if (g_ph != PH_OPENING) return;
  g_t_ready = uv_hrtime();
  g_ph = PH_WAIT;
  if (g_opener.failed)
    bench_error("%d of %d connections failed to open and subscribe (%d got their 101)",
                g_opener.failed, g_n, g_ws_open);
  printf("{\"event\":\"ready\",\"t0_ns\":%llu,\"opened_ns\":%llu,\"ready_ns\":%llu,\"opened\":%d,"
         "\"subscribed\":%d,\"failed\":%d}\n",
         (unsigned long long)g_t0, (unsigned long long)g_t_opened, (unsigned long long)g_t_ready,
         g_ws_open, g_subscribed, g_opener.failed);
  fflush(stdout);
  bench_note(1, "%d connections subscribed in %.2f s (opened in %.2f s)", g_subscribed,
             (double)(g_t_ready - g_t0) / 1e9, (double)(g_t_opened - g_t0) / 1e9);
  if (g_subscribed == g_lost) {
    receivers_end();
    return;
  }
  phase_timer(g_opt.hold, hold_expired);
}


static inline int hexval(uint8_t ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  return -1;
}

/* Reads 16 hex digits. 0 or -1. */
static int hex16(const uint8_t *p, uint64_t *out) {
  uint64_t v = 0;
  for (int i = 0; i < 16; i++) {
    int d = hexval(p[i]);
    if (d < 0) return -1;
    v = v << 4 | (uint64_t)d;
  }
  *out = v;
  return 0;
}

/* Reads a decimal number at *pp (advanced). 0 or -1. */
static int decimal(const uint8_t **pp, const uint8_t *end, uint64_t *out) {
  const uint8_t *p = *pp;
  uint64_t v = 0;
  if (p >= end || *p < '0' || *p > '9') return -1;
  while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
  *pp = p;
  *out = v;
  return 0;
}

static int expect(const uint8_t **pp, const uint8_t *end, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(end - *pp) < n || memcmp(*pp, lit, n) != 0) return -1;
  *pp += n;
  return 0;
}

/* Verifies one publish envelope for c; NULL or what is wrong. */
static const char *verify_pub(conn_t *c, const uint8_t *m, size_t n) {
  const uint8_t *p = m, *end = m + n;
  uint64_t off, tms, seq, ts;
  if (expect(&p, end, SC_TOPIC_PREFIX) != 0) return "not a publish of topic scale";
  if (end - p < 16) return "truncated epoch";
  if (!g_epoch[0]) {
    memcpy(g_epoch, p, 16);
  } else if (memcmp(g_epoch, p, 16) != 0) {
    return "another epoch";
  }
  p += 16;
  if (expect(&p, end, "\",\"offset\":") != 0 || decimal(&p, end, &off) != 0) return "bad offset";
  if (expect(&p, end, ",\"time\":") != 0 || decimal(&p, end, &tms) != 0) return "bad time";
  if (expect(&p, end, ",\"data\":\"") != 0) return "bad data";
  if ((size_t)(end - p) != g_opt.size + 2 || end[-2] != '"' || end[-1] != '}')
    return "data of the wrong size";
  if (hex16(p, &seq) != 0 || hex16(p + 16, &ts) != 0) return "bad payload header";
  if (off != c->sc_base + c->sc_got + 1) {
    static char msg[120];
    snprintf(msg, sizeof msg, "offset %llu, expected %llu", (unsigned long long)off,
             (unsigned long long)(c->sc_base + c->sc_got + 1));
    return msg;
  }
  if (seq != c->sc_got) return "the payload is not the next message's";
  if (seq >= (uint64_t)g_opt.messages) return "more messages than --messages";
  if (memcmp(p + SC_HDR, g_letters + seq % 26 + SC_HDR, g_opt.size - SC_HDR) != 0)
    return "filler bytes differ";
  uint64_t lat = g_now > ts ? g_now - ts : 0;
  hist_add(&g_hist, lat);
  if (g_nsamp < g_capsamp) g_samp[g_nsamp++] = seq << 48 | (lat & ((1ull << 48) - 1));
  g_deliv[seq]++;
  g_total++;
  c->sc_got++;
  return NULL;
}

static void got_message(conn_t *c, const uint8_t *m, size_t n) {
  if (c->in_flight == 1) { /* the subscribe answer */
    const uint8_t *p = m + 1;
    uint64_t base;
    if (n < 2 || m[0] != 's' || decimal(&p, m + n, &base) != 0 || p != m + n) {
      conn_fail(c, "subscribe failed: '%.*s'", (int)(n > 80 ? 80 : n), (const char *)m);
      return;
    }
    c->sc_base = base;
    c->in_flight = 2;
    g_subscribed++;
    if (g_ph == PH_OPENING) opener_on_open();
    return;
  }
  if (c->in_flight != 2) {
    conn_fail(c, "a message before subscribing");
    return;
  }
  const char *bad = verify_pub(c, m, n);
  if (bad) {
    bench_error("conn %u: message %u: %s", c->id, c->sc_got + 1, bad);
    return;
  }
  if (c->sc_got == (uint32_t)g_opt.messages && ++g_complete + g_lost == g_subscribed &&
      g_ph == PH_WAIT)
    receivers_complete();
}

static int rcv_on_data(conn_t *c, int opcode, uint8_t *p, size_t n, int first, int last) {
  if (first && opcode != EWS_OP_TEXT) {
    conn_fail(c, "a binary message");
    return 1;
  }
  if (first && last) {
    got_message(c, p, n);
    return 0;
  }
  size_t cap = g_opt.size + 512;
  if (!c->acc) {
    c->acc = malloc(cap);
    if (!c->acc) {
      fprintf(stderr, "edgews-bench: out of memory\n");
      exit(3);
    }
  }
  if (first) c->acc_len = 0;
  if (c->acc_len + n > cap) {
    conn_fail(c, "a message longer than %zu bytes", cap);
    return 1;
  }
  memcpy(c->acc + c->acc_len, p, n);
  c->acc_len += (uint32_t)n;
  if (last) got_message(c, c->acc, c->acc_len);
  return 0;
}

static void rcv_on_open(conn_t *c) {
  c->in_flight = 1; /* 1: subscribe sent; 2: subscribed */
  conn_queue_frame(c, EWS_OP_TEXT, (const uint8_t *)"S", 1);
  conn_flush(c);
  g_ws_open++;
  g_t_opened = uv_hrtime(); /* the last 101 */
}

static void rcv_on_fail(conn_t *c, const char *what) {
  if (g_ph >= PH_CLOSING) return;
  bench_error("conn %u: %s", c->id, what);
  if (c->in_flight == 2) { /* it will get nothing more */
    c->in_flight = 3;
    if (c->sc_got < (uint32_t)g_opt.messages) {
      g_res.errors += (uint64_t)g_opt.messages - c->sc_got - 1; /* one per missing */
      g_lost++;
      if (g_ph == PH_WAIT && g_complete + g_lost == g_subscribed) receivers_end();
    }
    return;
  }
  int joining = c->in_flight < 2;
  c->in_flight = 3;
  if (joining && g_ph == PH_OPENING) opener_on_fail();
}

static void on_closed(conn_t *c) {
  (void)c;
  if (g_ph >= PH_CLOSING && g_live == 0) finish();
}

static const conn_hooks_t g_rcv_hooks = {
    .on_open = rcv_on_open,
    .on_data = rcv_on_data,
    .on_pong = NULL,
    .on_fail = rcv_on_fail,
    .on_closed = on_closed,
};

static void on_signal(uv_signal_t *s, int signum) {
  (void)s;
  (void)signum;
  g_interrupted = 1;
  if (g_opt.publish || g_ph == PH_OPENING) {
    bench_error("stopped by a signal");
    start_close();
  } else {
    receivers_end();
  }
}

/* SIGUSR1: one status line on stdout (the script counts the pings answered over its
 * heartbeat window with two of them). */
static void on_status(uv_signal_t *s, int signum) {
  (void)s;
  (void)signum;
  printf("{\"event\":\"status\",\"t_ns\":%llu,\"pings\":%llu,\"verified\":%llu,\"open\":%d}\n",
         (unsigned long long)uv_hrtime(), (unsigned long long)g_pings_rx,
         (unsigned long long)g_total, g_live);
  fflush(stdout);
}

/* ---- publisher ---------------------------------------------------------------------- */

static void publish_next(void);

static void pub_send(void) {
  conn_t *c = &g_conns[0];
  size_t s = g_opt.size;
  uint64_t seq = g_pub_sent++;
  uint8_t *m = malloc(1 + s);
  if (!m) exit(3);
  m[0] = 'P';
  uint64_t now = uv_hrtime();
  for (int i = 0; i < 16; i++) {
    m[1 + 15 - i] = g_hex[(seq >> (4 * i)) & 15];
    m[1 + 31 - i] = g_hex[(now >> (4 * i)) & 15];
  }
  memcpy(m + 1 + SC_HDR, g_letters + seq % 26 + SC_HDR, s - SC_HDR);
  g_pub_t_send = now;
  conn_queue_frame(c, EWS_OP_TEXT, m, 1 + s);
  conn_flush(c);
  free(m);
  phase_timer(SC_ACK_TIMEOUT_S, publish_next); /* the ack timeout (see pub_ack) */
}

/* Called by the phase timer: the interval passed (send) or the ack timed out. */
static void publish_next(void) {
  if (g_pub_acked < g_pub_sent) {
    bench_error("no ack for publish %llu within %.0f s", (unsigned long long)g_pub_acked,
                SC_ACK_TIMEOUT_S);
    start_close();
    return;
  }
  pub_send();
}

static void pub_ack(conn_t *c, const uint8_t *m, size_t n) {
  (void)c;
  const uint8_t *p = m + 1;
  uint64_t off;
  if (n < 2 || m[0] != 'p' || decimal(&p, m + n, &off) != 0 || p != m + n) {
    bench_error("publish %llu failed: '%.*s'", (unsigned long long)g_pub_acked,
                (int)(n > 80 ? 80 : n), (const char *)m);
    off = 0;
  } else if (g_pub_acked && off != g_pub_last_off + 1) {
    bench_error("publish %llu got offset %llu after %llu", (unsigned long long)g_pub_acked,
                (unsigned long long)off, (unsigned long long)g_pub_last_off);
  }
  if (g_pub_acked == 0) g_pub_first_off = off;
  g_pub_last_off = off;
  uint64_t lat = g_now - g_pub_t_send;
  g_ack_ns[g_pub_acked++] = lat;
  hist_add(&g_hist, lat);
  if (g_pub_acked == (uint64_t)g_opt.messages) {
    g_res.seconds = (double)(uv_hrtime() - g_pub_t0) / 1e9;
    start_close();
    return;
  }
  double wait = g_opt.interval - (double)(uv_hrtime() - g_pub_t_send) / 1e9;
  if (wait <= 0)
    pub_send();
  else
    phase_timer(wait, publish_next);
}

static int pub_on_data(conn_t *c, int opcode, uint8_t *p, size_t n, int first, int last) {
  if (!(first && last) || opcode != EWS_OP_TEXT) {
    conn_fail(c, "unexpected message to the publisher");
    return 1;
  }
  if (g_pub_acked >= g_pub_sent) {
    bench_error("an answer without a publish: '%.*s'", (int)(n > 80 ? 80 : n), (const char *)p);
    return 0;
  }
  pub_ack(c, p, n);
  return 0;
}

static void pub_on_open(conn_t *c) {
  (void)c;
  g_pub_t0 = uv_hrtime();
  pub_send();
}

static void pub_on_fail(conn_t *c, const char *what) {
  (void)c;
  if (g_ph >= PH_CLOSING) return;
  bench_error("publisher: %s", what);
  start_close();
}

static const conn_hooks_t g_pub_hooks = {
    .on_open = pub_on_open,
    .on_data = pub_on_data,
    .on_pong = NULL,
    .on_fail = pub_on_fail,
    .on_closed = on_closed,
};

/* ---- the run ------------------------------------------------------------------------ */

int run_scale(void) {
  g_letters = malloc(g_opt.size + 26);
  if (!g_letters) return -1;
  for (size_t i = 0; i < g_opt.size + 26; i++) g_letters[i] = (uint8_t)('a' + i % 26);
  g_n = g_opt.publish ? 1 : g_opt.conns;
  if (g_opt.hold <= 0) g_opt.hold = 600;
  g_conns = calloc((size_t)g_n, sizeof(conn_t));
  g_deliv = calloc((size_t)g_opt.messages, sizeof(uint32_t));
  g_ack_ns = calloc((size_t)g_opt.messages, sizeof(uint64_t));
  if (!g_conns || !g_deliv || !g_ack_ns) return -1;
  if (!g_opt.publish && g_opt.samples && g_opt.messages >= 65536) {
    fprintf(stderr, "edgews-bench: --samples takes at most 65535 messages\n");
    return -1;
  }
  if (!g_opt.publish && g_opt.samples) {
    g_capsamp = (size_t)g_n * (size_t)g_opt.messages;
    g_samp = malloc(g_capsamp * sizeof(uint64_t));
    if (!g_samp) return -1;
  }
  for (int i = 0; i < g_n; i++) {
    g_conns[i].id = (uint32_t)i;
    g_conns[i].dst = (uint8_t)(i % g_opt.ndst);
  }
  g_hooks = g_opt.publish ? &g_pub_hooks : &g_rcv_hooks;
  uv_signal_init(g_loop, &g_sigint);
  uv_signal_init(g_loop, &g_sigterm);
  uv_signal_start(&g_sigint, on_signal, SIGINT);
  uv_signal_start(&g_sigterm, on_signal, SIGTERM);
  uv_signal_init(g_loop, &g_sigusr1);
  uv_signal_start(&g_sigusr1, on_status, SIGUSR1);
  g_signals_live = 1;
  g_ph = PH_OPENING;
  g_t0 = uv_hrtime();
  sample_begin();
  if (g_opt.publish) {
    g_ph = PH_WAIT;
    if (conn_start(&g_conns[0]) != 0) start_close();
  } else {
    opener_begin(g_conns, g_n, all_joined);
  }
  uv_run(g_loop, UV_RUN_DEFAULT);
  sample_end();
  for (int i = 0; i < g_n; i++) conn_free(&g_conns[i]);
  free(g_conns);
  free(g_letters);
  free(g_samp);
  return 0;
}

void scale_report(int rc) {
  FILE *h = stderr;
  double p50 = hist_quantile_us(&g_hist, 0.5), p99 = hist_quantile_us(&g_hist, 0.99),
         mx = hist_max_us(&g_hist);
  if (g_opt.publish) {
    fprintf(h, "edgews-bench scale --publish %s\n", g_opt.url);
    fprintf(h, "  published    %llu, acknowledged %llu (offsets %llu..%llu)\n",
            (unsigned long long)g_pub_sent, (unsigned long long)g_pub_acked,
            (unsigned long long)g_pub_first_off, (unsigned long long)g_pub_last_off);
    fprintf(h, "  ack latency  p50 %.1f us, p99 %.1f us, max %.1f us\n", p50, p99, mx);
  } else {
    fprintf(h, "edgews-bench scale %s: %d connections\n", g_opt.url, g_n);
    fprintf(h, "  subscribed   %d (opened %d, failed %d) in %.2f s\n", g_subscribed,
            g_opener.opened, g_opener.failed,
            g_t_ready ? (double)(g_t_ready - g_t0) / 1e9 : 0.0);
    fprintf(h, "  deliveries   %llu verified of %llu expected; pings answered %llu\n",
            (unsigned long long)g_total, (unsigned long long)g_subscribed * (uint64_t)g_opt.messages,
            (unsigned long long)g_pings_rx);
    fprintf(h, "  latency      p50 %.1f us, p99 %.1f us, max %.1f us\n", p50, p99, mx);
  }
  fprintf(h, "  errors       %llu%s%s\n", (unsigned long long)g_res.errors,
          g_res.errors ? " -- first: " : "", g_res.errors ? g_res.first_error : "");
  if (!g_opt.json) return;
  FILE *f = stdout;
  fprintf(f, "{\"event\":\"done\",\"role\":\"%s\",\"conns\":%d,\"messages\":%d",
          g_opt.publish ? "publisher" : "receiver", g_n, g_opt.messages);
  if (g_opt.publish) {
    fprintf(f, ",\"published\":%llu,\"acked\":%llu,\"first_offset\":%llu,\"last_offset\":%llu",
            (unsigned long long)g_pub_sent, (unsigned long long)g_pub_acked,
            (unsigned long long)g_pub_first_off, (unsigned long long)g_pub_last_off);
    fprintf(f, ",\"ack_p50_us\":%.1f,\"ack_p99_us\":%.1f,\"ack_max_us\":%.1f", p50, p99, mx);
    if (g_opt.messages <= 100) {
      fputs(",\"ack_us\":[", f);
      for (uint64_t i = 0; i < g_pub_acked; i++)
        fprintf(f, "%s%.1f", i ? "," : "", (double)g_ack_ns[i] / 1e3);
      fputc(']', f);
    }
  } else {
    fprintf(f, ",\"opened\":%d,\"subscribed\":%d,\"failed\":%d,\"t0_ns\":%llu,\"ready_ns\":%llu",
            g_opener.opened, g_subscribed, g_opener.failed, (unsigned long long)g_t0,
            (unsigned long long)g_t_ready);
    fprintf(f, ",\"verified\":%llu,\"expected\":%llu,\"pings\":%llu,\"epoch\":\"%s\"",
            (unsigned long long)g_total,
            (unsigned long long)g_subscribed * (uint64_t)g_opt.messages,
            (unsigned long long)g_pings_rx, g_epoch);
    fputs(",\"per_message\":[", f);
    for (int i = 0; i < g_opt.messages && i < 1000; i++)
      fprintf(f, "%s%u", i ? "," : "", g_deliv[i]);
    fprintf(f, "],\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f", p50, p99, mx);
  }
  fprintf(f, ",\"gen_cpu_s\":%.3f,\"errors\":%llu,\"first_error\":", g_res.gen_cpu_s,
          (unsigned long long)g_res.errors);
  if (g_res.errors) {
    fputc('"', f);
    for (const char *s = g_res.first_error; *s; s++) {
      if (*s == '"' || *s == '\\') fputc('\\', f);
      fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
    }
    fputc('"', f);
  } else {
    fputs("null", f);
  }
  fprintf(f, ",\"ok\":%s}\n", rc == 0 && g_res.errors == 0 ? "true" : "false");
  fflush(f);
  free(g_deliv);
  free(g_ack_ns);
}
