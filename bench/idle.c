/* idle.c — connection-memory mode of edgews-bench: reads the server's RSS, opens N
 * WebSocket connections (paced), checks they are all open, with --prime has every
 * connection send one message (compressed with --deflate) and waits for its
 * verified echo (so the server has set up whatever a used connection keeps: its
 * compressor, its inflate window), lets the server settle, reads the RSS again,
 * then proves every connection alive with a ping/pong round, optionally holds them,
 * and closes them all. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

enum { PH_OPENING, PH_PRIME, PH_SETTLE, PH_PING, PH_HOLD, PH_CLOSING, PH_DONE };

static conn_t *g_conns;
static int g_ph;
static int g_pongs;
static uint8_t *g_ponged;
static int g_primed, g_prime_sent;
static uint8_t *g_msg, *g_exp; /* the message being sent / expected back */

static void finish(void) {
  if (g_ph == PH_DONE) return;
  g_ph = PH_DONE;
  phase_timer_close();
}

static void force_close(void) {
  for (int i = 0; i < g_opt.conns; i++) conn_abort(&g_conns[i]);
  if (g_live == 0) finish();
}

static void start_close(void) {
  if (g_ph >= PH_CLOSING) return;
  g_ph = PH_CLOSING;
  phase_timer_stop();
  conns_close_all(g_conns, g_opt.conns, 1001, 5.0, finish, force_close);
}

static int count_open(void) {
  int n = 0;
  for (int i = 0; i < g_opt.conns; i++) n += g_conns[i].state == CS_OPEN;
  return n;
}

static void ping_done(void) {
  g_res.alive = g_pongs;
  if (g_pongs < g_res.opened)
    bench_error("only %d of %d connections answered a ping", g_pongs, g_res.opened);
  bench_note(0, "%d connections answered a ping", g_pongs);
  if (g_opt.hold > 0) {
    g_ph = PH_HOLD;
    bench_note(0, "holding the connections for %.1f s", g_opt.hold);
    phase_timer(g_opt.hold, start_close);
  } else {
    start_close();
  }
}

static void settled(void) {
  int open = count_open();
  g_res.opened = open;
  if (open < g_opt.conns)
    bench_error("only %d of %d connections are still open after settling", open, g_opt.conns);
  if (g_opt.server_pid) {
    g_res.rss_after = proc_tree_rss(g_opt.server_pid);
    if (g_res.rss_after < 0) bench_error("server process %ld is gone", g_opt.server_pid);
  }
  /* liveness: one ping per connection, every one must be answered */
  g_ph = PH_PING;
  g_pongs = 0;
  for (int i = 0; i < g_opt.conns; i++) {
    conn_t *c = &g_conns[i];
    if (c->state != CS_OPEN) continue;
    uint8_t id[4];
    memcpy(id, &c->id, 4);
    conn_queue_frame(c, EWS_OP_PING, id, 4);
    conn_flush(c);
  }
  if (open == 0)
    ping_done();
  else
    phase_timer(10.0, ping_done);
}

static void settle(void) {
  g_ph = PH_SETTLE;
  phase_timer(g_opt.settle, settled);
}

static void prime_timeout(void) {
  bench_error("only %d of %d primed connections echoed their message within 30 s", g_primed,
              g_prime_sent);
  settle();
}

/* One message per connection; settle once every echo is back and verified. */
static void prime(void) {
  g_ph = PH_PRIME;
  g_primed = g_prime_sent = 0;
  for (int i = 0; i < g_opt.conns; i++) {
    conn_t *c = &g_conns[i];
    if (c->state != CS_OPEN) continue;
    payload_fill(g_msg, g_opt.size, 0, c->id);
    c->rx_off = 0;
    c->rx_bad = 0;
    uint32_t v = 0;
    if (g_opt.payload != PAYLOAD_PATTERN) payload_json(0, c->id, &v);
    conn_queue_message(c, g_opt.binary ? EWS_OP_BINARY : EWS_OP_TEXT, g_msg, g_opt.size,
                       g_opt.payload == PAYLOAD_JSON ? (long)v : -1);
    conn_flush(c);
    g_prime_sent++;
  }
  bench_note(0, "primed %d connections with one %zu-byte message each", g_prime_sent, g_opt.size);
  phase_timer(30.0, prime_timeout);
}

static void all_opened(void) {
  double secs = (double)(uv_hrtime() - g_opener.t0) / 1e9;
  if (g_opener.failed)
    bench_error("%d of %d connections failed to open", g_opener.failed, g_opener.target);
  bench_note(0, "opened %d connections in %.2f s; settling %.1f s", g_opener.opened, secs,
             g_opt.settle);
  if (g_opener.opened == 0) {
    start_close();
    return;
  }
  if (g_opt.prime)
    prime();
  else
    settle();
}

static void idle_on_open(conn_t *c) {
  (void)c;
  if (g_ph == PH_OPENING) opener_on_open();
}

static int idle_on_data(conn_t *c, int opcode, uint8_t *p, size_t n, int first, int last) {
  if (g_ph != PH_PRIME || c->rx_bad == 2) {
    conn_fail(c, "unexpected data message on an idle connection");
    return 1;
  }
  (void)first;
  if (!c->rx_bad) {
    payload_fill(g_exp, g_opt.size, 0, c->id);
    if (opcode != (g_opt.binary ? EWS_OP_BINARY : EWS_OP_TEXT) || c->rx_off + n > g_opt.size ||
        memcmp(p, g_exp + c->rx_off, n) != 0) {
      bench_error("conn %u: the priming echo differs from the message", c->id);
      c->rx_bad = 1;
    }
  }
  c->rx_off += (uint32_t)n;
  if (!last) return 0;
  if (!c->rx_bad && c->rx_off != g_opt.size) bench_error("conn %u: priming echo too short", c->id);
  c->rx_bad = 2; /* one echo only */
  if (++g_primed == g_prime_sent) {
    phase_timer_stop();
    settle();
  }
  return 0;
}

static void idle_on_pong(conn_t *c, const uint8_t *p, size_t n) {
  if (g_ph != PH_PING) return;
  if (n != 4 || memcmp(p, &c->id, 4) != 0) {
    bench_error("conn %u: pong with the wrong payload", c->id);
    return;
  }
  if (g_ponged[c->id]) return;
  g_ponged[c->id] = 1;
  if (++g_pongs == g_res.opened) {
    phase_timer_stop();
    ping_done();
  }
}

static void idle_on_fail(conn_t *c, const char *what) {
  if (g_ph >= PH_CLOSING) return;
  bench_error("conn %u: %s", c->id, what);
  if (g_ph == PH_OPENING) opener_on_fail();
}

static void idle_on_closed(conn_t *c) {
  (void)c;
  if (g_ph >= PH_CLOSING && g_live == 0) finish();
}

static const conn_hooks_t g_idle_hooks = {
    .on_open = idle_on_open,
    .on_data = idle_on_data,
    .on_pong = idle_on_pong,
    .on_fail = idle_on_fail,
    .on_closed = idle_on_closed,
};

int run_idle(void) {
  g_hooks = &g_idle_hooks;
  g_res.rss_before = g_res.rss_after = -1;
  g_conns = calloc((size_t)g_opt.conns, sizeof(conn_t));
  g_ponged = calloc((size_t)g_opt.conns, 1);
  if (!g_conns || !g_ponged) return -1;
  for (int i = 0; i < g_opt.conns; i++) g_conns[i].id = (uint32_t)i;
  if (g_opt.prime) {
    if (payload_init() != 0 || !(g_msg = malloc(g_opt.size)) || !(g_exp = malloc(g_opt.size)))
      return -1;
  }
  if (g_opt.server_pid) {
    g_res.rss_before = proc_tree_rss(g_opt.server_pid);
    if (g_res.rss_before < 0) {
      bench_error("server process %ld not found", g_opt.server_pid);
      return -1;
    }
  }
  g_ph = PH_OPENING;
  opener_begin(g_conns, g_opt.conns, all_opened);
  uv_run(g_loop, UV_RUN_DEFAULT);
  for (int i = 0; i < g_opt.conns; i++) conn_free(&g_conns[i]);
  free(g_conns);
  free(g_ponged);
  free(g_msg);
  free(g_exp);
  payload_free();
  return g_res.opened > 0 ? 0 : -1;
}
