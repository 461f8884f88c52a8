/* echo.c — echo mode of edgews-bench: C connections each keep D messages of S bytes
 * in flight, every echo is verified byte for byte against what was sent, and
 * round-trip latency is recorded in the histogram during the measured interval.
 * Pattern payloads (a token encoding the connection and sequence number, then a
 * slice of a shared pattern chosen by the sequence number) are built straight into
 * the output buffer and checked chunk by chunk against token and pattern; JSON
 * payloads are one of payload.c's fixed set of messages, compared in place.
 * With permessage-deflate the message is compressed (each JSON message once, see
 * pmd.c) and then framed and masked (conn_queue_message); echoes arrive inflated.
 *
 * Phases: open all connections (paced) -> send D per connection -> warmup ->
 * measure -> stop sending and drain outstanding echoes -> close handshakes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

enum { PH_OPENING, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_CLOSING, PH_DONE };

static conn_t *g_conns;
static int g_phase_id;
static int g_sending;
static int g_measuring;
static uint64_t g_in_flight; /* across all connections */
static uint64_t g_measured;  /* echoes completed while measuring */
static uint64_t g_completed; /* echoes completed in total */
static int g_opcode;
static uint8_t *g_msg;       /* scratch message (compressed sends) */
static uint64_t g_t_begin, g_t_end;


static void echo_send(conn_t *c) {
  size_t s = g_opt.size;
  uint64_t seq = c->send_seq++;
  if (c->pmd) {
    if (g_opt.payload != PAYLOAD_PATTERN) {
      uint32_t v;
      const uint8_t *m = payload_json(seq, c->id, &v);
      conn_queue_message(c, g_opcode, m, s, v);
    } else {
      payload_fill(g_msg, s, seq, c->id);
      conn_queue_message(c, g_opcode, g_msg, s, -1);
    }
  } else {
    uint8_t *p = conn_out_reserve(c, EWS_FRAME_MAX_HEADER + s);
    uint64_t r = rng64();
    uint8_t key[4];
    memcpy(key, &r, 4);
    size_t h = ews_frame_header(p, g_opcode, 1, 0, s, key);
    payload_fill(p + h, s, seq, c->id);
    ews_mask(p + h, s, key, 0);
    conn_out_commit(c, h + s);
  }
  c->ts[seq % (uint64_t)g_opt.depth] = g_now;
  c->in_flight++;
  g_in_flight++;
}

/* Reads the token back (for an error message); returns 0 when p is not a token. */
static int parse_token(const uint8_t *p, uint64_t *seq, uint32_t *id) {
  uint64_t v = 0;
  for (int i = TOKEN_LEN - 1; i >= 0; i--) {
    int d = p[i] >= '0' && p[i] <= '9' ? p[i] - '0' : p[i] >= 'a' && p[i] <= 'f' ? p[i] - 'a' + 10 : -1;
    if (d < 0) return 0;
    v = v << 4 | (uint64_t)d;
  }
  *seq = v >> 20;
  *id = (uint32_t)(v & 0xFFFFF);
  return 1;
}

static void mismatch(conn_t *c, const char *what, const uint8_t *p, size_t n) {
  if (c->rx_bad) return;
  c->rx_bad = 1;
  uint64_t seq;
  uint32_t id;
  if (g_opt.payload == PAYLOAD_PATTERN && c->rx_off == 0 && n >= TOKEN_LEN &&
      g_opt.size >= TOKEN_LEN && parse_token(p, &seq, &id))
    bench_error("conn %u: echo of seq %llu: %s%s (payload starts with conn %u seq %llu)",
                c->id, (unsigned long long)c->recv_seq, what,
                id != (c->id & 0xFFFFF) ? ", another connection's message"
                : seq != c->recv_seq    ? ", out of order"
                                        : "",
                id, (unsigned long long)seq);
  else if (g_opt.payload == PAYLOAD_JSON && c->rx_off == 0 && n > 6 && !memcmp(p, "[{\"v\":", 6)) {
    uint32_t want;
    payload_json(c->recv_seq, c->id, &want);
    char num[24];
    size_t k = n - 6 < sizeof num - 1 ? n - 6 : sizeof num - 1;
    memcpy(num, p + 6, k);
    num[k] = 0;
    unsigned long got = strtoul(num, NULL, 10); /* stops at the '}' */
    bench_error("conn %u: echo of seq %llu: %s (JSON message %lu, expected %u%s)", c->id,
                (unsigned long long)c->recv_seq, what, got, want,
                got != want ? ": another message" : "");
  } else
    bench_error("conn %u: echo of seq %llu: %s", c->id, (unsigned long long)c->recv_seq, what);
}

static int echo_on_data(conn_t *c, int opcode, uint8_t *p, size_t n, int first, int last) {
  size_t size = g_opt.size;
  if (first) {
    c->rx_off = 0;
    c->rx_bad = 0;
    if (c->in_flight == 0) {
      bench_error("conn %u: unexpected message (nothing in flight)", c->id);
      c->rx_bad = 2; /* counted; not a completion */
    } else {
      if (g_opt.payload != PAYLOAD_PATTERN) {
        c->expect = payload_json(c->recv_seq, c->id, NULL);
      } else {
        payload_token(c->tok, c->recv_seq, c->id);
        c->poff = payload_pattern_offset(c->recv_seq, c->id);
      }
      if (opcode != g_opcode)
        mismatch(c, opcode == EWS_OP_TEXT ? "text echo of a binary message"
                                          : "binary echo of a text message", p, n);
    }
  }
  if (!c->rx_bad) {
    size_t off = c->rx_off;
    if (off + n > size) {
      mismatch(c, "echo longer than the message", p, n);
    } else if (g_opt.payload != PAYLOAD_PATTERN) {
      if (memcmp(p, c->expect + off, n) != 0) mismatch(c, "payload bytes differ", p, n);
    } else {
      size_t i = 0;
      for (; off + i < TOKEN_LEN && i < n; i++)
        if (p[i] != c->tok[off + i]) break;
      if (off + i < TOKEN_LEN && i < n)
        mismatch(c, "wrong payload", p, n);
      else if (i < n && memcmp(p + i, g_pattern + c->poff + off + i, n - i) != 0)
        mismatch(c, "payload bytes differ", p, n);
    }
  }
  c->rx_off += (uint32_t)n;
  if (!last) return 0;
  if (!c->rx_bad && c->rx_off != size) mismatch(c, "echo shorter than the message", p, 0);
  if (c->rx_bad == 2) return 0;
  /* one message completed (even a bad one: it answers one in flight) */
  uint64_t lat = g_now - c->ts[c->recv_seq % (uint64_t)g_opt.depth];
  c->recv_seq++;
  c->in_flight--;
  g_in_flight--;
  g_completed++;
  if (g_measuring) {
    hist_add(&g_hist, lat);
    g_measured++;
  }
  if (g_sending) {
    echo_send(c);
  } else if (g_phase_id == PH_DRAIN && g_in_flight == 0) {
    run_close();
  }
  return 0;
}

/* ---- phases ----------------------------------------------------------------------- */

static void drain_timeout(void) {
  bench_error("%llu echoes did not arrive within 5 s after the run",
              (unsigned long long)g_in_flight);
  g_res.errors += g_in_flight ? g_in_flight - 1 : 0;
  run_close();
}

static void end_measure(void) {
  g_t_end = uv_hrtime();
  g_measuring = 0;
  g_sending = 0;
  sample_end();
  g_res.done = g_measured;
  g_res.seconds = (double)(g_t_end - g_t_begin) / 1e9;
  g_phase_id = PH_DRAIN;
  bench_note(0, "measured %llu echoes in %.2f s; draining %llu in flight",
             (unsigned long long)g_measured, g_res.seconds, (unsigned long long)g_in_flight);
  if (g_in_flight == 0)
    run_close();
  else
    phase_timer(5.0, drain_timeout);
}

static void begin_measure(void) {
  g_phase_id = PH_MEASURE;
  hist_reset(&g_hist);
  g_measured = 0;
  sample_begin();
  g_t_begin = uv_hrtime();
  g_measuring = 1;
  phase_timer(g_opt.duration, end_measure);
}

static void all_opened(void) {
  double secs = (double)(uv_hrtime() - g_opener.t0) / 1e9;
  if (g_opener.failed) {
    bench_error("%d of %d connections failed to open", g_opener.failed, g_opener.target);
    run_close();
    return;
  }
  bench_note(0, "opened %d connections in %.2f s", g_opener.opened, secs);
  g_phase_id = PH_WARMUP;
  g_sending = 1;
  g_now = uv_hrtime();
  for (int i = 0; i < g_opt.conns; i++) {
    conn_t *c = &g_conns[i];
    for (int d = 0; d < g_opt.depth; d++) echo_send(c);
    conn_flush(c);
  }
  if (g_opt.warmup > 0)
    phase_timer(g_opt.warmup, begin_measure);
  else
    begin_measure();
}

/* ---- hooks ------------------------------------------------------------------------ */

static void echo_on_fail(conn_t *c, const char *what) {
  if (run_on_fail(c, "conn", what)) return;
  /* a connection lost while running: its messages in flight are lost too */
  g_in_flight -= c->in_flight;
  c->in_flight = 0;
  if (g_phase_id == PH_DRAIN && g_in_flight == 0) run_close();
}

static const conn_hooks_t g_echo_hooks = {
    .on_open = run_on_open,
    .on_data = echo_on_data,
    .on_pong = NULL,
    .on_fail = echo_on_fail,
    .on_closed = run_on_closed,
};

int run_echo(void) {
  g_hooks = &g_echo_hooks;
  g_opcode = g_opt.binary ? EWS_OP_BINARY : EWS_OP_TEXT;
  if (payload_init() != 0) return -1;
  if (g_opt.deflate && !(g_msg = malloc(g_opt.size))) return -1;

  g_conns = calloc((size_t)g_opt.conns, sizeof(conn_t));
  if (!g_conns) return -1;
  size_t frame = EWS_FRAME_MAX_HEADER + g_opt.size;
  for (int i = 0; i < g_opt.conns; i++) {
    conn_t *c = &g_conns[i];
    c->id = (uint32_t)i;
    c->ts = calloc((size_t)g_opt.depth, sizeof(uint64_t));
    /* room for a full window in the buffer being filled, allocated once */
    size_t cap = frame * (size_t)g_opt.depth;
    if (cap < 512) cap = 512;
    if (g_opt.tls) { /* WebSocket bytes are staged as plaintext */
      c->pt = malloc(cap);
      c->pt_cap = (uint32_t)cap;
      cap += cap / 64 + 64; /* records: 29 bytes per 16 KiB at most */
    }
    c->out[0] = malloc(cap);
    c->out_cap[0] = (uint32_t)cap;
    if (!c->ts || !c->out[0] || (g_opt.tls && !c->pt)) return -1;
  }

  run_init(&g_phase_id, PH_OPENING, PH_CLOSING, PH_DONE, &g_sending, g_conns, g_opt.conns);
  opener_begin(g_conns, g_opt.conns, all_opened);
  uv_run(g_loop, UV_RUN_DEFAULT);

  for (int i = 0; i < g_opt.conns; i++) conn_free(&g_conns[i]);
  free(g_conns);
  free(g_msg);
  payload_free();
  return g_res.seconds > 0 ? 0 : -1;
}
