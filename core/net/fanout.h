/* fanout.h — one message to many connections of a worker, encoded once.
 *
 * The plain frame is built once into one reference-counted buffer that every
 * receiver's write queue points at (no copy per receiver). Receivers that
 * negotiated permessage-deflate get a compressed frame built once per (app,
 * window size) with the shared, no-context-takeover compressor: a broadcast to ten
 * thousand compressing clients is compressed once, not ten thousand times. A
 * receiver with a dedicated (context-takeover) compressor gets the same shared
 * frame, and its own compressor is re-based on the message so its next message
 * stays valid for the client. Each receiver's slow-consumer policy applies as for
 * ews_conn_send. This is the loop-local half of broadcasts and channels; other
 * workers are reached by sending them the message. */
#ifndef EWS_FANOUT_H
#define EWS_FANOUT_H

#include <stddef.h>

#include "net/conn.h"

/* Sends p[0..n) as one `opcode` (TEXT or BINARY) message to conns[0..count) (NULL
 * entries and connections that are not open are skipped). Returns how many
 * connections it was queued for, or a negative error when nothing could be built
 * (EWS_ENOMEM). */
int ews_fanout(ews_net_t *net, ews_conn_t *const *conns, size_t count, int opcode,
               const void *p, size_t n);
/* The same with the plain frame already built (`plain`, referenced, not consumed;
 * its payload is p[0..n)) and connection id exclude_id (0: none) skipped. */
int ews_fanout_frame(ews_net_t *net, ews_conn_t *const *conns, size_t count, int opcode,
                     const void *p, size_t n, ews_buf_t *plain, uint64_t exclude_id);
/* A plain (uncompressed, FIN) frame of p[0..n) in a fresh shared buffer; *hl gets
 * the header length. NULL when out of memory. */
ews_buf_t *ews_fanout_plain(int opcode, const void *p, size_t n, size_t *hl);

#endif
