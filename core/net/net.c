/* net.c — one loop's net context (see net.h): set-up and tear-down, the ticker of
 * the timer wheel, the connections' poller (its events go to ews_conn_on_io), the
 * per-iteration flush and sweep of its connections, and the reaper that frees the
 * connections whose sockets the sweep closed. */
#include "net/net.h"

#include <stdlib.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "err.h"
#include "net/conn_int.h"
#include "net/connlog.h"

void ews_net_trim_later(ews_net_t *net) {
  if (!net->trim_at) net->trim_at = uv_now(net->loop) + EWS_TRIM_QUIET_MS;
}

static void on_tick(uv_timer_t *t) {
  ews_net_t *net = t->data;
  ews_wheel_advance(&net->wheel, uv_now(net->loop), ews_conn_on_timer, net);
  if (net->trim_at && uv_now(net->loop) >= net->trim_at) {
    net->trim_at = 0;
#ifdef __GLIBC__
    malloc_trim(0);
#endif
  }
  ews_connlog_tick(net);
  if (net->hooks.tick) net->hooks.tick(net->hooks.ud);
}

static void on_io(void *ud, void *data, uint32_t events) {
  (void)ud;
  ews_conn_on_io(data, events);
}

void ews_net_reap(ews_net_t *net) {
  /* The sweep and flush lists first: nothing freed may still be on them. Freeing
   * runs hooks and the owner's `free`, which may end other connections: repeat. */
  for (;;) {
    ews_net_run_pending(net);
    ews_conn_t *c = net->reap_head;
    if (!c) break;
    net->reap_head = NULL;
    while (c) {
      ews_conn_t *next = c->sweep_next;
      ews_conn_free(c);
      c = next;
    }
  }
  if (uv_is_active((uv_handle_t *)&net->reaper)) uv_idle_stop(&net->reaper);
}

static void on_reap(uv_idle_t *h) { ews_net_reap(h->data); }

void ews_net_reap_later(ews_net_t *net, ews_conn_t *c) {
  /* The sweep flag stays set while c waits, so nothing queues it for a sweep again
   * (sweep_next links the reap list). */
  c->flags |= EWS_CF_SWEEP_QUEUED;
  c->sweep_next = net->reap_head;
  net->reap_head = c;
  if (!uv_is_active((uv_handle_t *)&net->reaper)) uv_idle_start(&net->reaper, on_reap);
}

int ews_net_init(ews_net_t *net, uv_loop_t *loop, int id) {
  net->loop = loop;
  net->id = id;
  net->poller.epfd = -1;
  net->rbuf = malloc(EWS_READ_BUF);
  if (!net->rbuf) return EWS_ENOMEM;
  ews_wheel_init(&net->wheel, uv_now(loop));
  uv_timer_init(loop, &net->ticker);
  net->ticker.data = net;
  uv_timer_start(&net->ticker, on_tick, EWS_TICK_MS, EWS_TICK_MS);
  uv_idle_init(loop, &net->reaper);
  net->reaper.data = net;
  if (ews_poller_init(&net->poller, loop, on_io, net) != 0) return EWS_EIO;
  return 0;
}

void ews_net_free(ews_net_t *net) {
  for (ews_conn_t *c = net->conns; c; c = c->next)
    if (c->fd >= 0 && !(c->io & EWS_IO_CLOSED)) close(c->fd);
  ews_poller_free(&net->poller);
  ews_routes_clear(&net->routes);
  ews_static_mounts_clear(&net->statics);
  ews_bufpool_drain(&net->pool);
  ews_zbuf_free(&net->zscratch);
  free(net->rbuf);
  net->rbuf = NULL;
}

void ews_net_run_pending(ews_net_t *net) {
  /* Sweeps can queue flushes (a close handler sending) and flushes can queue sweeps
   * (a write error): repeat until both lists are empty. */
  while (net->sweep_head || net->flush_head) {
    while (net->sweep_head) {
      ews_conn_t *c = net->sweep_head;
      net->sweep_head = c->sweep_next;
      c->flags &= (uint16_t)~EWS_CF_SWEEP_QUEUED;
      ews_conn_sweep(c);
    }
    while (net->flush_head) {
      ews_conn_t *c = net->flush_head;
      net->flush_head = c->flush_next;
      c->flags &= (uint16_t)~EWS_CF_FLUSH_QUEUED;
      ews_conn_flush(c);
    }
  }
}

void ews_net_shutdown(ews_net_t *net) {
  for (ews_conn_t *c = net->conns; c; c = c->next) ews_conn_shutdown(c);
}

void ews_net_abort_all(ews_net_t *net) {
  for (ews_conn_t *c = net->conns; c; c = c->next) ews_conn_abort(c);
}
