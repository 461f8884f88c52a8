/* listener.h — a listening TCP socket of a loop (SO_REUSEPORT, so every worker of
 * the process, each with its own listener on the same address, gets a share of the
 * connections from the kernel). Each accepted connection becomes an ews_conn_t of
 * the loop's net context, starting with a TLS handshake on a wss:// listener. */
#ifndef EWS_LISTENER_H
#define EWS_LISTENER_H

#include <uv.h>

#include "net/net.h"

typedef struct {
  uv_tcp_t tcp;
  ews_net_t *net;
  int tls;        /* connections accepted here start a TLS handshake (net->tls) */
  int admin;      /* connections accepted here serve /health and /metrics only */
  int active;     /* open and accepting */
  int bound_port; /* the port it got (port 0 asks for any free one) */
} ews_listener_t;

/* Binds host:port and listens (backlog). 0, or a libuv error (logged). */
int ews_listener_open(ews_listener_t *l, ews_net_t *net, const char *host, int port,
                      int backlog, int tls, int admin);
/* Stops accepting (closes the handle). A no-op when not open. */
void ews_listener_close(ews_listener_t *l);

#endif
