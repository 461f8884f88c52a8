/* conn.h — one client connection, from accept to free: the request head, the HTTP
 * routes and the upgrade, then WebSocket frames in (rx) and out (write queue), the
 * close handshake and timeouts on the loop's timer wheel. The connection's events go
 * to its owner through the loop's ews_conn_ops_t (net/net.h); it never includes the
 * layers above.
 *
 * Lifecycle: HEAD -> OPEN -> CLOSING (we sent close, await the peer's) -> DRAINING
 * (the WebSocket is over: flush, FIN, discard input until EOF or timeout) -> CLOSED
 * (socket closed by the sweep; the struct freed later by the loop's reaper, outside
 * any connection callback). Ending is never done from inside a callback that may
 * still use the connection: ews_conn_end() only queues it on the loop's sweep list,
 * and the sweep (a safe point) runs the owner's close event and closes the socket.
 *
 * I/O: a connection is a non-blocking socket descriptor (`fd`) registered in the
 * loop's inner epoll (net/poller.h), not a libuv handle: reads are read(2) into the
 * loop's shared buffer, writes sendmsg(2) from the write queue, and EPOLLOUT is
 * asked for only while the kernel refuses bytes (EWS_CF_WRITING). Functions an owner calls from inside one of its own events
 * (send, close, ...) never call back into the owner: events are deferred to the sweep.
 *
 * The code is split along the connection's seams: conn.c (lifecycle, timers, close
 * hooks), conn_rx.c (reads, TLS unwrap, frames in), conn_tx.c (frames out,
 * backpressure, flushing, TLS seal), http.c (request head, GET /health and /metrics,
 * HTTP answers), upgrade.c (negotiation, limits, pending authentication, the 101);
 * conn_int.h is what they share. */
#ifndef EWS_CONN_H
#define EWS_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/app.h"
#include "net/net.h"
#include "net/timers.h"
#include "net/writeq.h"
#include "proto/deflate.h"
#include "proto/frame.h"
#include "proto/http_head.h"

struct ews_tls;
struct ews_tls_ctx;

/* What a connection asks of its owner (net->ops). Each is one call per event, from a
 * libuv callback or the sweep, never from inside a function the owner called. */
struct ews_conn_ops {
  /* HEAD: the upgrade passed every check and the app has an authenticator (has_auth):
   * decide, then answer with ews_conn_auth_done (now or later; reading is paused). */
  void (*authenticate)(ews_conn_t *c, const ews_http_request_t *req, const char *ip,
                       int port);
  /* The 101 was queued: the connection is OPEN (protocol: the selected subprotocol, or
   * NULL). */
  void (*open)(ews_conn_t *c, const char *protocol);
  /* A complete message (text already UTF-8-checked); p is valid during the call. */
  void (*message)(ews_conn_t *c, const uint8_t *p, size_t n, int binary);
  /* After open: the session ended (ews_conn_close_status says how). From the sweep. */
  void (*close)(ews_conn_t *c);
  /* The connection is about to be freed, after its close hooks ran: release what the
   * owner holds for it (udata, uref). */
  void (*free)(ews_conn_t *c);
  /* Client connections only (net/client.h): the connect, TLS or opening handshake
   * failed before open (err: EWS_ERESOLVE, EWS_ECONNECT, EWS_ETIMEDOUT, EWS_ETLS,
   * EWS_ECERT, EWS_EHANDSHAKE, ...; reason: a sentence, valid during the call). The
   * connection is then aborted; `free` follows. */
  void (*failed)(ews_conn_t *c, int err, const char *reason);
  /* Client connections only, may be NULL: a pong arrived (payload valid during the
   * call). */
  void (*pong)(ews_conn_t *c, const uint8_t *p, size_t n);
  /* Client HTTP probes only (ews_client_opts_t.probe_path): the status line's code
   * of the answer; the connection is then aborted (`free` follows). */
  void (*http_status)(ews_conn_t *c, int status);
};

/* A service's per-connection state ends with the connection: the service embeds a
 * hook in that state and registers it (ews_conn_hook_add); when the connection is
 * freed, every hook's `closed` runs once (most recently added first), before the
 * owner's free. A service finds its own hook again by its `closed` function. */
typedef struct ews_conn_hook {
  struct ews_conn_hook *next;
  void (*closed)(ews_conn_t *c, struct ews_conn_hook *h);
} ews_conn_hook_t;

/* permessage-deflate state of a connection that negotiated it (allocated only for
 * those). The inflater streams the client's compressed messages into conn->in. */
typedef struct {
  ews_pmd_params_t params;
  ews_inflater_t inf;
  ews_deflater_t *own; /* dedicated (context takeover) compressor, lazy */
} ews_conn_pmd_t;

/* The TLS side of a wss:// connection: allocated only for those, so a plain
 * connection pays one pointer. `out` holds ciphertext; conn->wq holds plaintext
 * until the flush encrypts it. */
typedef struct {
  struct ews_tls *tls;
  ews_writeq_t out;
} ews_conn_tls_t;

enum {
  EWS_CS_HEAD = 0,
  EWS_CS_OPEN,
  EWS_CS_CLOSING,
  EWS_CS_DRAINING,
  EWS_CS_CLOSED
};

enum {
  EWS_CF_FLUSH_QUEUED = 1u << 0,
  EWS_CF_SWEEP_QUEUED = 1u << 1,
  EWS_CF_PING_OUT = 1u << 2,   /* heartbeat ping sent, pong not yet seen */
  EWS_CF_OPENED = 1u << 3,     /* the owner's open event ran */
  EWS_CF_WRITING = 1u << 4,    /* the socket refused bytes: waiting for EPOLLOUT */
  EWS_CF_SHUT = 1u << 5,       /* FIN sent */
  EWS_CF_EOF = 1u << 6,        /* peer's FIN seen */
  EWS_CF_CLOSE_EVENT = 1u << 7, /* the owner's close event is due/done */
  EWS_CF_PAUSED = 1u << 8,      /* reading stopped: too many queued events */
  EWS_CF_TLS_NOTIFY = 1u << 9,  /* close_notify queued */
  EWS_CF_COUNTED = 1u << 10,    /* counted in app->total */
  EWS_CF_AUTHING = 1u << 11,    /* the owner's authenticator runs (state HEAD) */
  EWS_CF_ADMIN = 1u << 12,      /* accepted on the admin listener: /health, /metrics only */
  EWS_CF_CLOSE_DONE = 1u << 13, /* both close frames exchanged: no need to linger */
  EWS_CF_BUDGET = 1u << 14,     /* a growth of `in` was refused by the memory budget */
  EWS_CF_CLIENT = 1u << 15      /* an outbound connection (net/client.h): we mask, the
                                   owner is net->client_ops, not counted in nconns */
};

/* Between a valid upgrade request and the 101 while the owner's authenticator runs:
 * the response is ready, the bytes after the head are kept. */
typedef struct {
  char *resp;
  size_t resp_len;
  uint8_t *rest;
  size_t rest_len;
  char *proto;       /* the selected subprotocol (owned), or NULL */
  char ip[64];       /* the client's address, for the authenticator and limits */
  int port;
} ews_pending_t;

/* Authentication deadlines of an open connection (the application layer's): */
enum {
  EWS_AUTH_DL_NONE = 0,
  EWS_AUTH_DL_TIMEOUT, /* first-message auth not done in time: close 4408 */
  EWS_AUTH_DL_EXPIRY   /* the token expired (exp + leeway): close 4403 */
};

/* Rarely used per-connection state, allocated on first use and freed when the
 * session ends: the per-IP and per-user connection counters a connection is counted
 * in, and its authentication deadline. */
typedef struct {
  struct ews_counter *ip, *user;
  uint64_t auth_due_ms; /* loop time (uv_now) of the deadline */
  uint8_t auth_kind;    /* EWS_AUTH_DL_* */
} ews_acct_t;

/* The cold part of a connection: what few connections need, allocated on first need
 * (ews_conn_cold_get, conn_int.h) and freed with the connection, so that the struct
 * of an idle plain connection fits a 512-byte glibc chunk. */
typedef struct {
  ews_conn_hook_t *hooks;       /* services' close hooks */
  ews_conn_pmd_t *pmd;          /* NULL without permessage-deflate */
  ews_pending_t *pend;          /* upgrade waiting for authentication */
  ews_acct_t *acct;             /* per-IP / per-user counters, when limited */
  struct ews_static_body *body; /* a static file being sent (net/static_files.h), or NULL */
  char *close_reason;           /* for the close event */
  uint32_t opened_ms;           /* when the 101 went out (set as the session ends) */
  uint16_t close_code;          /* for the close event; 0: none */
  uint8_t close_reason_len;
} ews_conn_cold_t;

/* uref before the owner set it: LUA_NOREF's value, so that a Lua owner keeps registry
 * references there as they are. */
#define EWS_CONN_NOREF (-2)

/* The fields are the net layer's; other layers read them through the functions below,
 * and own only `udata` and `uref` (the net layer never reads those). */
/* c->io: the socket's state on the loop's poller (net/poller.h). */
enum {
  EWS_IO_READING = 1u << 0,    /* reading is on (read_start .. read_stop) */
  EWS_IO_CONNECTING = 1u << 1, /* an outbound connect is in progress (EPOLLOUT) */
  EWS_IO_IN = 1u << 2,         /* registered with EPOLLIN */
  EWS_IO_OUT = 1u << 3,        /* registered with EPOLLOUT */
  EWS_IO_CLOSED = 1u << 4      /* socket closed by the sweep; waiting for the reaper */
};

typedef struct ews_conn {
  ews_net_t *net;
  ews_app_t *app;          /* set at upgrade; referenced */
  struct ews_conn *prev, *next;
  struct ews_conn *flush_next, *sweep_next;
  ews_tnode_t tnode;       /* tnode.spare: when the last heartbeat ping went out
                              (ews_conn_ping_ms) */
  void *udata;             /* the owner's (Lua: the handler task this connection waits on) */
  ews_conn_tls_t *tls;     /* NULL for plain ws:// */
  ews_conn_cold_t *cold;   /* NULL until something rare needs it (see above) */
  ews_writeq_t wq;
  ews_rx_t rx;
  uint8_t *in;             /* request head, then a message being reassembled */
  size_t in_len, in_cap;
  uint64_t id;
  int uref;                /* the owner's (Lua: the socket table's registry reference;
                              before open, the authenticated user's) */
  uint32_t since_ms;       /* when the current state began (OPEN: the 101) */
  uint32_t last_rx_ms;     /* last frame from the peer */
  uint8_t state;
  uint8_t io;              /* EWS_IO_* */
  uint16_t flags;
  int fd;                  /* the non-blocking socket, or -1 (client before connect) */
} ews_conn_t;
/* An idle plain connection is one glibc chunk of 272 bytes (264 + the 8-byte header):
 * a field more moves it to the next size class (see bench/PROFILE.md). */
_Static_assert(sizeof(ews_conn_t) <= 264, "ews_conn_t outgrew its 272-byte malloc chunk");

/* Takes one accepted socket (fd, non-blocking) from the listener; with `tls` it
 * starts with a TLS handshake. 0, EWS_ENOMEM, or EWS_EIO when the socket could not
 * be set up (logged at debug level); on failure the socket is closed and nothing
 * stays allocated. */
int ews_conn_accept(ews_net_t *net, int fd, struct ews_tls_ctx *tls, int admin);

/* Queues a data frame. 0, EWS_ECLOSED (not OPEN), EWS_EBACKPRESSURE (dropped or
 * connection closing under the policy), EWS_EMSG_TOO_BIG, EWS_ENOMEM. */
int ews_conn_send(ews_conn_t *c, int opcode, const void *p, size_t n);
/* Queues a complete, already encoded data frame shared with other connections (a
 * reference is taken; no copy), under the same state and slow-consumer rules as
 * ews_conn_send. Used by fan-out. */
int ews_conn_send_frame(ews_conn_t *c, ews_buf_t *frame);
/* Queues a ping (payload at most 125 bytes). 0, EWS_ECLOSED, EWS_EINVAL. */
int ews_conn_ping(ews_conn_t *c, const void *p, size_t n);
/* Starts the close handshake with code/reason (code 0: no status). 0 or EWS_ECLOSED
 * (already closing). */
int ews_conn_close(ews_conn_t *c, unsigned code, const char *reason, size_t len);
/* Fails the connection: sends a close frame for err's close code (if OPEN) and drains. */
void ews_conn_fail(ews_conn_t *c, int err, const char *reason);
/* Aborts: closes the TCP connection right away (no close handshake). */
void ews_conn_abort(ews_conn_t *c);

/* 1 while the owner's authenticator decides on this connection (HEAD, before the
 * 101): the owner may then keep the user in c->uref and answer. */
int ews_conn_awaiting_auth(const ews_conn_t *c);
/* The owner's authenticator finished (a no-op unless ews_conn_awaiting_auth):
 * user_id (for the per-user limit; may be NULL) on success, or an HTTP status and
 * a message for the JSON answer. */
void ews_conn_auth_done(ews_conn_t *c, int ok, const char *user_id, int status, const char *msg);

/* Counts an open connection in its app's per-user counter (authentication after
 * the upgrade). 0, or EWS_ELIMIT_USER when the user is at max_connections_per_user. */
int ews_conn_count_user(ews_conn_t *c, const char *user_id);

/* Sets (or, with EWS_AUTH_DL_NONE, clears) the authentication deadline of an open
 * connection, delay_ms from now (any length: long deadlines are re-armed on the
 * wheel in steps). When it passes, the server closes the connection with 4408
 * "authentication timeout" (counted in net stats auth_timeouts) or 4403 "token
 * expired" (auth_expired). 0, EWS_ECLOSED (not OPEN) or EWS_ENOMEM. */
int ews_conn_auth_deadline(ews_conn_t *c, int kind, uint64_t delay_ms);
/* First-message authentication succeeded: the app's full message limits apply from
 * the next frame on (until then, the app's auth_max_message). */
void ews_conn_authenticated(ews_conn_t *c);

/* Stops reading from the client (its queued events are being worked off), and
 * starts again. A paused connection is not timed out by the heartbeat. */
void ews_conn_pause(ews_conn_t *c);
void ews_conn_unpause(ews_conn_t *c);

/* Graceful shutdown of one connection: HEAD is dropped, OPEN gets close 1001. */
void ews_conn_shutdown(ews_conn_t *c);

/* Adds a close hook (see ews_conn_hook_t); h stays the service's. 0, or EWS_ENOMEM
 * (the connection's cold part, which holds the list, could not be allocated: h was
 * not added). Re-adding a hook from inside its own `closed` cannot fail. */
int ews_conn_hook_add(ews_conn_t *c, ews_conn_hook_t *h);
/* Takes h out again (its `closed` will not run). */
void ews_conn_hook_remove(ews_conn_t *c, ews_conn_hook_t *h);
/* The hook registered with this `closed` function, or NULL. */
static inline ews_conn_hook_t *ews_conn_hook_find(const ews_conn_t *c,
                                                  void (*closed)(ews_conn_t *, ews_conn_hook_t *)) {
  ews_conn_hook_t *h = c->cold ? c->cold->hooks : NULL;
  while (h && h->closed != closed) h = h->next;
  return h;
}

/* The client's address as text (at most cap bytes) and port. 0, or a libuv error
 * (not connected any more): then ip is "?" and *port 0. */
int ews_conn_peer(const ews_conn_t *c, char *ip, size_t cap, int *port);

/* ---- what other layers read (cheap: inline) -------------------------------------- */

static inline uint64_t ews_conn_id(const ews_conn_t *c) { return c->id; }
/* A static file being sent (net/static_files.h), or NULL. */
static inline struct ews_static_body *ews_conn_body(const ews_conn_t *c) {
  return c->cold ? c->cold->body : NULL;
}
/* The permessage-deflate state, or NULL without it. */
static inline ews_conn_pmd_t *ews_conn_pmd(const ews_conn_t *c) {
  return c->cold ? c->cold->pmd : NULL;
}
/* The owner's events of this connection: net->client_ops for outbound connections,
 * else net->ops. */
static inline const ews_conn_ops_t *ews_conn_ops(const ews_conn_t *c) {
  return (c->flags & EWS_CF_CLIENT) ? c->net->client_ops : c->net->ops;
}
static inline int ews_conn_is_client(const ews_conn_t *c) { return (c->flags & EWS_CF_CLIENT) != 0; }
/* The owner's context of the connection's loop (net->owner). */
static inline void *ews_conn_owner(const ews_conn_t *c) { return c->net->owner; }
static inline int ews_conn_is_open(const ews_conn_t *c) { return c->state == EWS_CS_OPEN; }
/* 1 from the owner's open event until its close event (the connection is the
 * owner's to show). */
static inline int ews_conn_opened(const ews_conn_t *c) {
  return (c->flags & (EWS_CF_OPENED | EWS_CF_CLOSE_EVENT)) == EWS_CF_OPENED;
}
/* The app the connection was upgraded for (NULL before the upgrade). */
static inline ews_app_t *ews_conn_app(const ews_conn_t *c) { return c->app; }
/* The next connection of the loop (start from net->conns). */
static inline ews_conn_t *ews_conn_next(const ews_conn_t *c) { return c->next; }
/* Bytes queued for the client and not yet written (plaintext and ciphertext). */
static inline size_t ews_conn_buffered(const ews_conn_t *c) {
  return c->wq.bytes + (c->tls ? c->tls->out.bytes : 0);
}
/* 1 when n more bytes may be queued without the slow-consumer policy applying. */
static inline int ews_conn_fits(const ews_conn_t *c, size_t n) {
  size_t q = ews_conn_buffered(c);
  return q == 0 || q + n <= c->app->max_buffered;
}
/* Milliseconds since the last frame from the peer (pongs included); 0 while reading
 * is paused (the silence is ours, not the peer's). */
static inline uint32_t ews_conn_idle_ms(const ews_conn_t *c) {
  if (c->flags & EWS_CF_PAUSED) return 0;
  return (uint32_t)uv_now(c->net->loop) - c->last_rx_ms;
}
/* How the session ended, for the close event: the close code (1005 when there was
 * none) and reason (not NUL-terminated). */
static inline unsigned ews_conn_close_status(const ews_conn_t *c, const char **reason,
                                             size_t *len) {
  const ews_conn_cold_t *k = c->cold;
  *reason = k && k->close_reason ? k->close_reason : "";
  *len = k ? k->close_reason_len : 0;
  return k && k->close_code ? k->close_code : 1005;
}

/* Loop internals (net.c). */
void ews_conn_flush(ews_conn_t *c);    /* writev the queue (from the flush list) */
void ews_conn_sweep(ews_conn_t *c);    /* close event + closing the socket (from the sweep list) */
void ews_conn_free(ews_conn_t *c);     /* close hooks, owner's free, free (net.c's reaper) */
/* The poller's event for a connection's socket (net.c). */
void ews_conn_on_io(ews_conn_t *c, uint32_t events);
void ews_conn_on_timer(ews_tnode_t *node, void *ud);

#endif
