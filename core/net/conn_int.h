/* conn_int.h — what the files of one connection share (conn.c, conn_rx.c, conn_tx.c,
 * http.c, upgrade.c; see conn.h). Private to the net layer. */
#ifndef EWS_CONN_INT_H
#define EWS_CONN_INT_H

#include <stdlib.h>

#include "net/conn.h"
#include "net/tls.h"
#include "proto/http_head.h"

/* Loop time in ms (32-bit, wrapping: differences are what count). */
static inline uint32_t ews_conn_now(const ews_conn_t *c) { return (uint32_t)uv_now(c->net->loop); }

static inline void ews_conn_schedule_flush(ews_conn_t *c) {
  if (c->flags & EWS_CF_FLUSH_QUEUED) return;
  c->flags |= EWS_CF_FLUSH_QUEUED;
  c->flush_next = c->net->flush_head;
  c->net->flush_head = c;
}

static inline void ews_conn_schedule_sweep(ews_conn_t *c) {
  if (c->flags & EWS_CF_SWEEP_QUEUED) return;
  c->flags |= EWS_CF_SWEEP_QUEUED;
  c->sweep_next = c->net->sweep_head;
  c->net->sweep_head = c;
}

static inline void ews_conn_set_timer(ews_conn_t *c, uint32_t delay_ms) {
  ews_wheel_schedule(&c->net->wheel, &c->tnode, delay_ms);
}

/* The cold part (conn.h), allocated on first call; NULL when out of memory. */
static inline ews_conn_cold_t *ews_conn_cold_get(ews_conn_t *c) {
  if (!c->cold) c->cold = calloc(1, sizeof *c->cold);
  return c->cold;
}
/* After TLS records went through: cipher contexts that a record rebuilt on a quiet
 * connection are looked at again within EWS_TLS_QUIET_MS (open_timer in conn.c drops
 * them once the connection is quiet again). */
static inline void ews_conn_tls_rearm(ews_conn_t *c) {
  if (ews_tls_take_rebuilt(c->tls->tls) && c->state == EWS_CS_OPEN)
    ews_wheel_schedule_min(&c->net->wheel, &c->tnode, EWS_TLS_QUIET_MS);
}

/* Frees the cold part when nothing is left in it (conn.c). */
void ews_conn_cold_trim(ews_conn_t *c);
/* Heartbeat: when the last ping went out (kept in the timer node's spare bytes). */
static inline uint32_t ews_conn_ping_ms(const ews_conn_t *c) { return c->tnode.spare; }
static inline void ews_conn_set_ping_ms(ews_conn_t *c, uint32_t ms) { c->tnode.spare = ms; }

/* conn.c: the lifecycle */
/* The WebSocket session (or HTTP exchange) is over: flush, FIN, linger, close. */
void ews_conn_enter_draining(ews_conn_t *c);
void ews_conn_set_close_reason(ews_conn_t *c, unsigned code, const char *reason, size_t len);
/* The socket's interest on the loop's poller from c->io's READING and CONNECTING and
 * EWS_CF_WRITING (EPOLLIN while reading, EPOLLOUT while waiting to write or to
 * connect; unregistered with neither). 0 or a libuv error (registration unchanged). */
int ews_conn_io_update(ews_conn_t *c);
/* Unregisters and closes the socket (from the sweep): c->io becomes EWS_IO_CLOSED. */
void ews_conn_io_close(ews_conn_t *c);

/* net.c: c's socket is closed; the loop's reaper frees c (ews_conn_free) from its
 * idle phase, never from inside a callback. */
void ews_net_reap_later(ews_net_t *net, ews_conn_t *c);

/* conn_rx.c: reading */
int ews_conn_read_start(ews_conn_t *c); /* 0 or a libuv error */
void ews_conn_read_stop(ews_conn_t *c);
/* The socket is readable (or hung up): reads, at most EWS_READS_PER_EVENT buffers. */
void ews_conn_on_readable(ews_conn_t *c);
/* Frames that followed the 101 (or arrived in a read). */
void ews_conn_feed_frames(ews_conn_t *c, uint8_t *p, size_t n);
/* `in` is charged to the message memory budget (net/msgmem.h). */
int ews_conn_in_append(ews_conn_t *c, const uint8_t *p, size_t n);
void ews_conn_free_in(ews_conn_t *c);

/* conn_tx.c: writing */
/* Copies a (then b) into the write queue and schedules a flush. 0 or EWS_ENOMEM. */
int ews_conn_queue_raw(ews_conn_t *c, const void *a, size_t alen, const void *b, size_t blen);
int ews_conn_queue_frame(ews_conn_t *c, int opcode, const void *p, size_t n);
void ews_conn_send_close_frame(ews_conn_t *c, unsigned code, const char *reason, size_t len);

/* http.c: the request head and HTTP answers */
void ews_conn_on_head_bytes(ews_conn_t *c, uint8_t *p, size_t n);
/* Answers err's HTTP status with the JSON error body (counted as a rejection unless
 * it is a 404), then drains. */
void ews_conn_respond_error(ews_conn_t *c, int err);
/* Answers status with {"error":error,"message":msg}, then drains. */
void ews_conn_respond_json(ews_conn_t *c, int status, const char *error, const char *msg);
void ews_conn_count_rejection(ews_conn_t *c, int err);

/* upgrade.c: from a valid upgrade request to the 101 */
void ews_conn_upgrade(ews_conn_t *c, const ews_http_request_t *req, uint8_t *rest,
                      size_t rest_len);
/* The frame limits of an open connection (auth: it has authenticated). */
const ews_rx_config_t *ews_conn_rx_config(const ews_conn_t *c, int authenticated);
/* Gives back the connection's slots in the limit counters (idempotent). */
void ews_conn_uncount(ews_conn_t *c);
void ews_conn_free_pending(ews_conn_t *c);

#endif
