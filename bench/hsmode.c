/* hsmode.c — handshake mode of edgews-bench: C slots each loop connect -> (TLS
 * handshake on wss://) -> upgrade request -> verified 101 -> close frame -> server's
 * close (or EOF) -> close, and the 101s completed during the measured interval are
 * counted, with the latency from connect start to verified 101 in the histogram.
 * On wss:// every handshake is a full one unless --resume; the full and resumed
 * TLS handshakes of the interval are reported. */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

enum { PH_RUN, PH_STOPPING, PH_DONE };

static conn_t *g_slots;
static int g_ph;
static int g_measuring;
static uint64_t g_count, g_total_ok;
static uint64_t g_t_begin;
static uint64_t g_full0, g_resumed0; /* TLS counters at the start of the interval */

static void finish(void) {
  if (g_ph == PH_DONE) return;
  g_ph = PH_DONE;
  phase_timer_close();
}

static void force_close(void) {
  for (int i = 0; i < g_opt.conns; i++) conn_abort(&g_slots[i]);
  if (g_live == 0) finish();
}

static void stop(void) {
  g_ph = PH_STOPPING;
  if (g_live == 0)
    finish();
  else
    phase_timer(3.0, force_close); /* slots in progress finish on their own */
}

static void end_measure(void) {
  uint64_t t_end = uv_hrtime();
  g_measuring = 0;
  sample_end();
  g_res.done = g_count;
  g_res.seconds = (double)(t_end - g_t_begin) / 1e9;
  g_res.tls_full = g_tls_full - g_full0;
  g_res.tls_resumed = g_tls_resumed - g_resumed0;
  stop();
}

static void begin_measure(void) {
  hist_reset(&g_hist);
  g_count = 0;
  g_full0 = g_tls_full;
  g_resumed0 = g_tls_resumed;
  sample_begin();
  g_t_begin = uv_hrtime();
  g_measuring = 1;
  phase_timer(g_opt.duration, end_measure);
}

static void hs_on_open(conn_t *c) {
  g_total_ok++;
  if (g_measuring) {
    g_count++;
    hist_add(&g_hist, g_now - c->t_start);
  }
  conn_close_ws(c, 1000);
}

static int hs_on_data(conn_t *c, int opcode, uint8_t *p, size_t n, int first, int last) {
  (void)opcode, (void)p, (void)n, (void)first, (void)last;
  conn_fail(c, "unexpected data message after the handshake");
  return 1;
}

static void hs_on_fail(conn_t *c, const char *what) {
  if (g_ph != PH_RUN) return;
  bench_error("slot %u: %s", c->id, what);
  if (g_res.errors >= 1000 && g_total_ok == 0) {
    bench_error("too many failures, giving up");
    phase_timer_stop();
    if (g_measuring) end_measure(); else stop();
  }
}

static void hs_on_closed(conn_t *c) {
  if (g_ph == PH_RUN) {
    conn_start(c);
  } else if (g_live == 0) {
    finish();
  }
}

static const conn_hooks_t g_hs_hooks = {
    .on_open = hs_on_open,
    .on_data = hs_on_data,
    .on_pong = NULL,
    .on_fail = hs_on_fail,
    .on_closed = hs_on_closed,
};

int run_handshake(void) {
  g_hooks = &g_hs_hooks;
  g_slots = calloc((size_t)g_opt.conns, sizeof(conn_t));
  if (!g_slots) return -1;
  g_ph = PH_RUN;
  for (int i = 0; i < g_opt.conns; i++) {
    g_slots[i].id = (uint32_t)i;
    conn_start(&g_slots[i]);
  }
  if (g_opt.warmup > 0)
    phase_timer(g_opt.warmup, begin_measure);
  else
    begin_measure();
  uv_run(g_loop, UV_RUN_DEFAULT);
  for (int i = 0; i < g_opt.conns; i++) conn_free(&g_slots[i]);
  free(g_slots);
  return g_res.seconds > 0 ? 0 : -1;
}
