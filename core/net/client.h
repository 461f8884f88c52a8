/* client.h — outbound WebSocket connections (ws:// and wss://) on a loop's net
 * context: the same ews_conn_t as an accepted connection, started by a connect and a
 * client handshake instead of a listener's accept and upgrade. After the 101 the
 * receive path (conn_rx.c: frames, reassembly, inflation, UTF-8, limits) and the send
 * path (conn_tx.c: queueing, writev, TLS sealing; every frame masked with a fresh
 * random key) are the server's, and so are the close handshake and the timers.
 *
 * The owner is net->client_ops (ews_conn_ops_t): `open` when the handshake
 * succeeded, `failed` when it did not (then `free`), and afterwards `message`,
 * `close` and `free` exactly as for an accepted connection. Client connections are on
 * net->conns (a shutdown closes them with 1001) but not in net->nconns or the
 * process-wide connection count. Everything runs on the loop's thread.
 *
 * The connect is ours too (no libuv handle at any phase): a non-blocking socket,
 * connect(2), and the loop's poller (net/poller.h) reports it writable when the
 * connect finished (EWS_IO_CONNECTING); SO_ERROR says how. Then the socket reads
 * and writes like an accepted one. */
#ifndef EWS_CLIENT_H
#define EWS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "net/conn.h"

struct ews_tls_ctx;

typedef struct {
  const char *url;            /* ws://host[:port]/path?query or wss://... */
  const char *headers;        /* extra "Name: value\r\n" lines, or NULL */
  size_t headers_len;
  const char *protocols;      /* offered subprotocols "a, b", or NULL */
  size_t protocols_len;
  uint32_t timeout_ms;        /* resolve + connect + TLS + handshake; 0: 10 s */
  uint64_t max_message;       /* incoming message limit (inflated too); 0: none */
  uint64_t max_frame;         /* incoming frame limit; 0: none (max_message applies) */
  int compression;            /* offer permessage-deflate */
  size_t compress_threshold;  /* messages shorter than this are sent uncompressed */
  size_t max_buffered;        /* queued outgoing bytes before sends fail; 0: 4 MiB */
  uint32_t ping_interval_ms;  /* ping a quiet server this often; 0: never */
  uint32_t ping_timeout_ms;   /* ... and fail the connection without a pong */
  struct ews_tls_ctx *tls;    /* client ctx (ews_tls_client_ctx_new) for wss:// */
  const char *probe_path;     /* not NULL: no WebSocket, an HTTP GET of this path (a
                                 health check; https for wss://): the owner hears
                                 http_status (or failed) and the connection ends */
} ews_client_opts_t;

/* Starts connecting; *out is the connection (state HEAD), with udata set, whose
 * owner will hear open or failed. Returns 0, EWS_EURL (bad URL, or wss:// without
 * a tls ctx), EWS_EINVAL (headers too long), EWS_ECONNECT / EWS_ERESOLVE (libuv
 * refused at once) or EWS_ENOMEM; then no open or failed comes (a connection that
 * was already set up is aborted with udata NULL, and its `free` still comes). */
int ews_client_connect(ews_net_t *net, const ews_client_opts_t *o, void *udata,
                       ews_conn_t **out);

/* Net-internal: bytes of the server's response head (conn_rx.c), the handshake
 * deadline (conn.c), a failure before open (reported to the owner once, then the
 * connection is aborted), and a fresh masking key (conn_tx.c). */
void ews_client_on_head_bytes(ews_conn_t *c, uint8_t *p, size_t n);
void ews_client_on_timer(ews_conn_t *c);
void ews_client_fail(ews_conn_t *c, int err, const char *reason);
/* The poller's event for a connection whose connect is in progress (conn.c). */
void ews_client_on_connectable(ews_conn_t *c);
void ews_client_mask_key(uint8_t key[4]);

#endif
