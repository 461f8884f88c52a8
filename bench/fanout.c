/* fanout.c — fan-out mode of edgews-bench, for broadcast servers (every message any
 * client sends goes to every connection, the sender included).
 *
 * -c N subscriber connections are opened (paced like echo mode), then one publisher
 * connection, which is subscribed too. After a short settle (so that the server has
 * subscribed everyone) the publisher sends -s SIZE byte text messages:
 *
 *   16 hex digits sequence number | 16 hex digits send time (uv_hrtime ns) | filler
 *
 * where the filler is a slice of "abc...zabc..." starting at letter seq % 26.
 *
 * Pacing: a fixed rate (--rate MSGS/s; 0 = no rate limit) with at most --window K
 * messages outstanding, where outstanding means sent and not yet received by every
 * connection (all N subscribers and the publisher). A message due by the rate but
 * blocked by the window is sent as soon as the oldest outstanding message has
 * reached everyone, so the publish rate reached is min(rate, what the server
 * sustains with K messages in flight). The window also bounds what a server queues
 * per subscriber (K frames), so a server that drops messages for slow consumers
 * never has to.
 *
 * Every connection verifies that it receives every message exactly once, in order,
 * with the right length, opcode, send time and filler; a sequence number skipped is
 * one error per missing message (and the message counts as delivered for the
 * window, so the run goes on), a repeated or older one is an error too. Delivery
 * latency = receive time (start of the read callback) - send time, one histogram
 * sample per (message, connection) received while measuring. Deliveries are the
 * messages x connections received while measuring.
 *
 * Phases: open subscribers -> open the publisher -> settle -> publish (warmup) ->
 * measure -> stop publishing, drain outstanding messages (5 s, plus twice the time
 * the outstanding ones take at the publish rate measured) -> close. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define FO_HDR 32 /* seq + send time, hex */
#define FO_SETTLE_S 0.5

enum { PH_OPENING, PH_SETTLE, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_CLOSING, PH_DONE };

static conn_t *g_conns; /* N subscribers, then the publisher */
static int g_nconns;    /* N + 1 */
static conn_t *g_pub;
static int g_phase_id;
static int g_sending;
static int g_measuring;
static uint64_t g_sent;        /* messages published */
static uint64_t g_oldest;      /* oldest message not yet received by everyone */
static uint32_t *g_remaining;  /* per window slot: connections still to receive it */
static uint64_t g_sent_begin, g_sent_end;
static uint64_t g_deliveries;  /* measured */
static uint64_t g_t_begin, g_t_end, g_t_pub0;
static uint8_t *g_letters;     /* "abc...z" repeated, size + 26 bytes */
static uv_timer_t g_tick;
static int g_tick_live;
static const uint8_t g_hex[16] = "0123456789abcdef";

static double drain_s = 5.0;

static void start_close(void);

static inline int8_t hexval(uint8_t ch) {
  if (ch >= '0' && ch <= '9') return (int8_t)(ch - '0');
  if (ch >= 'a' && ch <= 'f') return (int8_t)(ch - 'a' + 10);
  return -1;
}

/* ---- publishing ------------------------------------------------------------------ */

static void publish_one(uint64_t now) {
  size_t s = g_opt.size;
  uint64_t seq = g_sent++;
  uint8_t *p = conn_out_reserve(g_pub, EWS_FRAME_MAX_HEADER + s);
  uint64_t r = rng64();
  uint8_t key[4];
  memcpy(key, &r, 4);
  size_t h = ews_frame_header(p, EWS_OP_TEXT, 1, 0, s, key);
  uint8_t *m = p + h;
  for (int i = 0; i < 16; i++) {
    m[15 - i] = g_hex[(seq >> (4 * i)) & 15];
    m[31 - i] = g_hex[(now >> (4 * i)) & 15];
  }
  memcpy(m + FO_HDR, g_letters + seq % 26 + FO_HDR, s - FO_HDR);
  ews_mask(m, s, key, 0);
  conn_out_commit(g_pub, h + s);
  g_remaining[seq % (uint64_t)g_opt.window] = (uint32_t)g_nconns;
}

/* Sends what the rate allows and the window has room for. */
static void pump(void) {
  if (!g_sending || g_pub->state != CS_OPEN) return;
  uint64_t now = uv_hrtime();
  uint64_t due = UINT64_MAX;
  if (g_opt.rate > 0) due = (uint64_t)((double)(now - g_t_pub0) * g_opt.rate / 1e9) + 1;
  int n = 0;
  while (g_sent < due && g_sent - g_oldest < (uint64_t)g_opt.window) {
    publish_one(now);
    n++;
  }
  if (n) conn_flush(g_pub);
}

static void on_tick(uv_timer_t *t) {
  (void)t;
  pump();
}

/* One more connection has (or will never have) message seq. */
static void delivered(uint64_t seq) {
  uint32_t *rem = &g_remaining[seq % (uint64_t)g_opt.window];
  if (--*rem != 0 || seq != g_oldest) return;
  while (g_oldest < g_sent && g_remaining[g_oldest % (uint64_t)g_opt.window] == 0) g_oldest++;
  if (g_sending)
    pump();
  else if (g_phase_id == PH_DRAIN && g_oldest == g_sent)
    start_close();
}

/* ---- receiving ------------------------------------------------------------------- */

static void rx_error(conn_t *c, const char *what) {
  if (c->rx_bad) return;
  c->rx_bad = 1;
  bench_error("conn %u%s: message %llu: %s", c->id, c == g_pub ? " (publisher)" : "",
              (unsigned long long)c->recv_seq, what);
}

static int fo_on_data(conn_t *c, int opcode, uint8_t *p, size_t n, int first, int last) {
  size_t size = g_opt.size;
  if (first) {
    c->rx_off = 0;
    c->rx_bad = 0;
    c->fo_seq = 0;
    c->fo_ts = 0;
    if (opcode != EWS_OP_TEXT) rx_error(c, "binary message");
  }
  size_t off = c->rx_off;
  if (!c->rx_bad) {
    if (off + n > size) {
      rx_error(c, "longer than the message size");
    } else {
      size_t i = 0;
      /* the header, possibly split across chunks */
      for (; off + i < FO_HDR && i < n; i++) {
        int8_t d = hexval(p[i]);
        if (d < 0) {
          rx_error(c, "not a fan-out message (bad header)");
          break;
        }
        if (off + i < 16)
          c->fo_seq = c->fo_seq << 4 | (uint64_t)d;
        else
          c->fo_ts = c->fo_ts << 4 | (uint64_t)d;
      }
      if (!c->rx_bad && i < n &&
          memcmp(p + i, g_letters + c->fo_seq % 26 + off + i, n - i) != 0)
        rx_error(c, "filler bytes differ");
    }
  }
  c->rx_off += (uint32_t)n;
  if (!last) return 0;
  if (!c->rx_bad && c->rx_off != size) rx_error(c, "shorter than the message size");
  if (c->rx_bad) return 0; /* cannot trust its sequence number */

  uint64_t seq = c->fo_seq;
  if (seq >= g_sent) {
    bench_error("conn %u: message %llu was never sent (%llu sent)", c->id,
                (unsigned long long)seq, (unsigned long long)g_sent);
    return 0;
  }
  if (seq < c->recv_seq) {
    bench_error("conn %u: message %llu again or out of order (expected %llu)", c->id,
                (unsigned long long)seq, (unsigned long long)c->recv_seq);
    return 0;
  }
  if (seq > c->recv_seq) {
    uint64_t missing = seq - c->recv_seq;
    bench_error("conn %u%s: %llu message(s) missing before message %llu", c->id,
                c == g_pub ? " (publisher)" : "", (unsigned long long)missing,
                (unsigned long long)seq);
    g_res.errors += missing - 1;
    for (uint64_t s = c->recv_seq; s < seq; s++) delivered(s);
  }
  c->recv_seq = seq + 1;
  if (g_measuring) {
    uint64_t lat = g_now > c->fo_ts ? g_now - c->fo_ts : 0;
    hist_add(&g_hist, lat);
    g_deliveries++;
  }
  delivered(seq);
  return 0;
}

/* ---- phases ----------------------------------------------------------------------- */

static void tick_close(void) {
  if (g_tick_live) {
    uv_timer_stop(&g_tick);
    uv_close((uv_handle_t *)&g_tick, NULL);
    g_tick_live = 0;
  }
}

static void finish(void) {
  if (g_phase_id == PH_DONE) return;
  g_phase_id = PH_DONE;
  tick_close();
  phase_timer_close();
}

static void force_close(void) {
  for (int i = 0; i < g_nconns; i++) conn_abort(&g_conns[i]);
  if (g_live == 0) finish();
}

static void start_close(void) {
  if (g_phase_id >= PH_CLOSING) return;
  g_phase_id = PH_CLOSING;
  g_sending = 0;
  tick_close();
  conns_close_all(g_conns, g_nconns, 1000, 5.0, finish, force_close);
}

static void drain_timeout(void) {
  /* every connection that still lacks a message: one error per missing delivery */
  uint64_t missing = 0;
  for (int i = 0; i < g_nconns; i++)
    if (g_conns[i].recv_seq < g_sent) missing += g_sent - g_conns[i].recv_seq;
  bench_error("%llu deliveries of %llu message(s) did not arrive within %.1f s after the run",
              (unsigned long long)missing, (unsigned long long)(g_sent - g_oldest), drain_s);
  g_res.errors += missing ? missing - 1 : 0;
  start_close();
}

static void end_measure(void) {
  g_t_end = uv_hrtime();
  g_measuring = 0;
  g_sending = 0;
  g_sent_end = g_sent;
  sample_end();
  g_res.done = g_deliveries;
  g_res.published = g_sent_end - g_sent_begin;
  g_res.seconds = (double)(g_t_end - g_t_begin) / 1e9;
  g_phase_id = PH_DRAIN;
  bench_note(0, "measured %llu deliveries in %.2f s; draining %llu message(s)",
             (unsigned long long)g_deliveries, g_res.seconds,
             (unsigned long long)(g_sent - g_oldest));
  if (g_oldest == g_sent) {
    start_close();
  } else {
    /* 5 s, or more when what is outstanding takes longer at the rate measured */
    double r = (double)g_res.published / g_res.seconds, t = 5.0;
    if (r > 0) t += 2.0 * (double)(g_sent - g_oldest) / r;
    drain_s = t < 60.0 ? t : 60.0;
    phase_timer(drain_s, drain_timeout);
  }
}

static void begin_measure(void) {
  g_phase_id = PH_MEASURE;
  hist_reset(&g_hist);
  g_deliveries = 0;
  sample_begin();
  g_t_begin = uv_hrtime();
  g_sent_begin = g_sent;
  g_measuring = 1;
  phase_timer(g_opt.duration, end_measure);
}

static void begin_publish(void) {
  g_phase_id = PH_WARMUP;
  g_sending = 1;
  g_t_pub0 = uv_hrtime();
  if (g_opt.rate > 0) {
    uv_timer_init(g_loop, &g_tick);
    g_tick_live = 1;
    uv_timer_start(&g_tick, on_tick, 1, 1);
  }
  pump();
  if (g_opt.warmup > 0)
    phase_timer(g_opt.warmup, begin_measure);
  else
    begin_measure();
}

static void publisher_opened(void) {
  if (g_opener.failed) {
    bench_error("the publisher connection failed to open");
    start_close();
    return;
  }
  g_phase_id = PH_SETTLE;
  phase_timer(FO_SETTLE_S, begin_publish);
}

static void subscribers_opened(void) {
  double secs = (double)(uv_hrtime() - g_opener.t0) / 1e9;
  if (g_opener.failed) {
    bench_error("%d of %d subscriber connections failed to open", g_opener.failed,
                g_opener.target);
    start_close();
    return;
  }
  bench_note(0, "opened %d subscribers in %.2f s", g_opener.opened, secs);
  opener_begin(g_pub, 1, publisher_opened);
}

/* ---- hooks ------------------------------------------------------------------------ */

static void fo_on_open(conn_t *c) {
  (void)c;
  if (g_phase_id == PH_OPENING) opener_on_open();
}

static void fo_on_fail(conn_t *c, const char *what) {
  if (g_phase_id >= PH_CLOSING) return;
  bench_error("conn %u%s: %s", c->id, c == g_pub ? " (publisher)" : "", what);
  if (g_phase_id == PH_OPENING) {
    opener_on_fail();
    return;
  }
  start_close(); /* a lost subscriber or publisher spoils the run */
}

static void fo_on_closed(conn_t *c) {
  (void)c;
  if (g_phase_id >= PH_CLOSING && g_live == 0) finish();
}

static const conn_hooks_t g_fo_hooks = {
    .on_open = fo_on_open,
    .on_data = fo_on_data,
    .on_pong = NULL,
    .on_fail = fo_on_fail,
    .on_closed = fo_on_closed,
};

int run_fanout(void) {
  g_hooks = &g_fo_hooks;
  if (g_opt.size < FO_HDR) {
    fprintf(stderr, "edgews-bench: fanout needs -s %d or more\n", FO_HDR);
    return -1;
  }
  g_nconns = g_opt.conns + 1;
  g_conns = calloc((size_t)g_nconns, sizeof(conn_t));
  g_remaining = calloc((size_t)g_opt.window, sizeof(uint32_t));
  g_letters = malloc(g_opt.size + 26);
  if (!g_conns || !g_remaining || !g_letters) return -1;
  for (size_t i = 0; i < g_opt.size + 26; i++) g_letters[i] = (uint8_t)('a' + i % 26);
  for (int i = 0; i < g_nconns; i++) {
    g_conns[i].id = (uint32_t)i;
    g_conns[i].dst = (uint8_t)(i < g_opt.conns ? i % g_opt.ndst : 0); /* --spread */
  }
  g_pub = &g_conns[g_opt.conns];
  /* the publisher's buffer fits a full window, allocated once; subscribers only
   * write their close frame */
  size_t cap = (EWS_FRAME_MAX_HEADER + g_opt.size) * (size_t)g_opt.window;
  if (cap < 512) cap = 512;
  g_pub->out[0] = malloc(cap);
  g_pub->out_cap[0] = (uint32_t)cap;
  if (!g_pub->out[0]) return -1;

  g_phase_id = PH_OPENING;
  opener_begin(g_conns, g_opt.conns, subscribers_opened);
  uv_run(g_loop, UV_RUN_DEFAULT);

  for (int i = 0; i < g_nconns; i++) conn_free(&g_conns[i]);
  free(g_conns);
  free(g_remaining);
  free(g_letters);
  return g_res.seconds > 0 ? 0 : -1;
}
