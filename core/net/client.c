/* client.c — outbound connections (see client.h): resolve, connect, TLS client
 * handshake, the upgrade request and the check of the 101; then the connection is an
 * ordinary OPEN ews_conn_t whose frames are masked. A connection's client state is a
 * close hook (ews_conn_hook_t), so ews_conn_t carries nothing for it. */
#include "net/client.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "net/conn_int.h"
#include "net/msgmem.h"
#include "net/tls.h"
#include "proto/client_handshake.h"
#include "stat.h"

#define DEFAULT_TIMEOUT_MS 10000u
#define MAX_RESPONSE_HEAD (16u * 1024u)

typedef struct resolve resolve_t;

typedef struct {
  ews_conn_hook_t hook; /* first: the hook is the state */
  char host[256];       /* NUL-terminated: DNS, SNI, certificate name */
  char key[EWS_CLIENT_KEY_LEN + 1];
  char *protocols;      /* offered, owned */
  size_t protocols_len;
  uint32_t timeout_ms;
  uint8_t offered_pmd;
  uint8_t reported;     /* the owner heard open or failed */
  uint8_t probe;        /* an HTTP probe, not a WebSocket */
  resolve_t *resolve;   /* a pending name resolution, or NULL */
  int connect_err;      /* a refusal connect(2) reported at once (libuv error), for the
                           connect event */
} client_t;

/* A resolution outlives its connection when the connection goes first: c is then
 * cleared and the callback only frees it. */
struct resolve {
  uv_getaddrinfo_t req;
  ews_conn_t *c;
  int port;
};

static void client_closed(ews_conn_t *c, ews_conn_hook_t *h);

static client_t *client_of(ews_conn_t *c) {
  return (client_t *)ews_conn_hook_find(c, client_closed);
}

/* ---- masking keys ----------------------------------------------------------------
 * RFC 6455 10.3: unpredictable keys. The kernel's generator, drawn 256 bytes at a
 * time per thread (64 frames a system call). */
void ews_client_mask_key(uint8_t key[4]) {
  static _Thread_local uint8_t pool[256];
  static _Thread_local size_t left;
  if (left < 4) {
    size_t got = 0;
    while (got < sizeof pool) {
      ssize_t r = getrandom(pool + got, sizeof pool - got, 0);
      if (r <= 0) break;
      got += (size_t)r;
    }
    if (got < sizeof pool) { /* no kernel generator: still vary (never happens on Linux) */
      uint64_t x = uv_hrtime() ^ (uintptr_t)key;
      for (size_t i = got; i < sizeof pool; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        pool[i] = (uint8_t)x;
      }
    }
    left = sizeof pool;
  }
  left -= 4;
  memcpy(key, pool + left, 4);
}

/* ---- failure ---------------------------------------------------------------------- */

void ews_client_fail(ews_conn_t *c, int err, const char *reason) {
  client_t *cl = client_of(c);
  EWS_DEBUG("client %llu: %s", (unsigned long long)c->id, reason);
  if (cl && !cl->reported) {
    cl->reported = 1;
    const ews_conn_ops_t *ops = ews_conn_ops(c);
    if (ops && ops->failed) ops->failed(c, err, reason);
  }
  ews_conn_abort(c);
}

void ews_client_on_timer(ews_conn_t *c) {
  client_t *cl = client_of(c);
  uint32_t limit = cl ? cl->timeout_ms : DEFAULT_TIMEOUT_MS;
  uint32_t in_state = ews_conn_now(c) - c->since_ms;
  if (in_state >= limit) ews_client_fail(c, EWS_ETIMEDOUT, "timeout");
  else ews_conn_set_timer(c, limit - in_state);
}

static void client_closed(ews_conn_t *c, ews_conn_hook_t *h) {
  client_t *cl = (client_t *)h;
  if (!cl->reported) { /* an abort that did not go through ews_client_fail */
    cl->reported = 1;
    const ews_conn_ops_t *ops = ews_conn_ops(c);
    if (ops && ops->failed) ops->failed(c, EWS_ECONNECT, "connection lost");
  }
  if (cl->resolve) {
    cl->resolve->c = NULL;
    uv_cancel((uv_req_t *)&cl->resolve->req);
  }
  free(cl->protocols);
  free(cl);
}

/* ---- the 101 ---------------------------------------------------------------------- */

static void open_session(ews_conn_t *c, client_t *cl, const ews_client_result_t *res,
                         uint8_t *rest, size_t rest_len) {
  if (res->pmd) {
    ews_conn_pmd_t *pmd = c->cold->pmd = calloc(1, sizeof *pmd); /* cold: since connect */
    if (!pmd) {
      ews_client_fail(c, EWS_ENOMEM, "out of memory");
      return;
    }
    pmd->params = res->params;
    ews_inflater_init(&pmd->inf, &res->params, c->app->rx.max_message);
  }
  char *proto = res->protocol ? strndup(res->protocol, res->protocol_len) : NULL;
  if (res->protocol && !proto) {
    ews_client_fail(c, EWS_ENOMEM, "out of memory");
    return;
  }
  c->state = EWS_CS_OPEN;
  c->since_ms = c->last_rx_ms = ews_conn_now(c);
  ews_conn_set_ping_ms(c, c->since_ms);
  ews_rx_init(&c->rx, ews_conn_rx_config(c, 1));
  ews_wheel_cancel(&c->net->wheel, &c->tnode);
  ews_conn_on_timer(&c->tnode, NULL); /* arms the ping deadlines, if any */
  c->flags |= EWS_CF_OPENED;
  cl->reported = 1;
  ews_conn_ops(c)->open(c, proto);
  free(proto);
  if (rest_len && c->state == EWS_CS_OPEN) ews_conn_feed_frames(c, rest, rest_len);
}

void ews_client_on_head_bytes(ews_conn_t *c, uint8_t *p, size_t n) {
  client_t *cl = client_of(c);
  if (!cl) return;
  uint8_t *data = p;
  size_t len = n;
  if (c->in_len) {
    if (ews_conn_in_append(c, p, n) != 0) {
      ews_client_fail(c, EWS_ENOMEM, "out of memory");
      return;
    }
    data = c->in;
    len = c->in_len;
  }
  ews_http_response_t resp;
  int r = ews_http_response_parse((const char *)data, len, MAX_RESPONSE_HEAD, &resp);
  if (r == 0) {
    if (data == p && ews_conn_in_append(c, p, n) != 0)
      ews_client_fail(c, EWS_ENOMEM, "out of memory");
    return;
  }
  if (r < 0) {
    ews_client_fail(c, EWS_EHANDSHAKE, "handshake: malformed HTTP response");
    return;
  }
  if (cl->probe) {
    cl->reported = 1;
    const ews_conn_ops_t *ops = ews_conn_ops(c);
    if (ops->http_status) ops->http_status(c, resp.status);
    ews_conn_abort(c);
    return;
  }
  char why[300], msg[320];
  ews_client_result_t res;
  int cr = ews_client_check(&resp, cl->key, cl->protocols, cl->protocols_len, cl->offered_pmd,
                            &res, why, sizeof why);
  if (cr != 0) {
    snprintf(msg, sizeof msg, "handshake: %s", why);
    ews_client_fail(c, EWS_EHANDSHAKE, msg);
    return;
  }
  /* The bytes after the head are frames; `in` is the message buffer from now on. */
  uint8_t *owned = data == p ? NULL : c->in;
  size_t owned_cap = owned ? c->in_cap : 0;
  if (owned) {
    c->in = NULL;
    c->in_len = c->in_cap = 0;
  }
  open_session(c, cl, &res, data + r, len - (size_t)r);
  ews_msgmem_free(owned, owned_cap);
}

/* ---- connect ---------------------------------------------------------------------- */

/* The connect finished (status: 0 or a libuv error). */
static void on_connect(ews_conn_t *c, int status) {
  if (c->state != EWS_CS_HEAD) return;
  client_t *cl = client_of(c);
  if (!cl) return;
  char msg[320];
  if (status < 0) {
    snprintf(msg, sizeof msg, "connect: %s", uv_strerror(status));
    ews_client_fail(c, EWS_ECONNECT, msg);
    return;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int r = ews_conn_read_start(c);
  if (r < 0) {
    snprintf(msg, sizeof msg, "connect: %s", uv_strerror(r));
    ews_client_fail(c, EWS_ECONNECT, msg);
    return;
  }
  if (c->tls) {
    r = ews_tls_client_start(c->tls->tls, cl->host);
    if (r != 0) {
      char why[300];
      snprintf(msg, sizeof msg, "tls: %s", ews_tls_reason(c->tls->tls, why, sizeof why));
      ews_client_fail(c, r, msg);
      return;
    }
  }
  ews_conn_schedule_flush(c); /* the request (plain), or the ClientHello */
}

void ews_client_on_connectable(ews_conn_t *c) {
  client_t *cl = client_of(c);
  int err = cl ? cl->connect_err : 0;
  if (!err) {
    int so = 0;
    socklen_t len = sizeof so;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &so, &len) != 0) so = errno;
    err = so ? uv_translate_sys_error(so) : 0;
  }
  c->io &= (uint8_t)~EWS_IO_CONNECTING;
  c->flags &= (uint16_t)~EWS_CF_WRITING;
  if (ews_conn_io_update(c) < 0 && !err) err = UV_EIO;
  on_connect(c, err);
}

/* 0, or a libuv error (not reported: the caller decides). The outcome comes as the
 * socket's first poller event (ews_client_on_connectable), never from here. */
static int start_connect(ews_conn_t *c, client_t *cl, const struct sockaddr *sa) {
  int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return uv_translate_sys_error(errno);
  socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  int r;
  do r = connect(fd, sa, len);
  while (r < 0 && errno == EINTR);
  /* As libuv: a refusal reported at once comes with the connect event. */
  if (r < 0 && errno != EINPROGRESS) {
    if (errno != ECONNREFUSED) {
      int e = uv_translate_sys_error(errno);
      close(fd);
      return e;
    }
    cl->connect_err = UV_ECONNREFUSED;
  }
  c->fd = fd;
  c->io |= EWS_IO_CONNECTING;
  r = ews_conn_io_update(c);
  if (r < 0) {
    c->io &= (uint8_t)~EWS_IO_CONNECTING;
    c->fd = -1;
    close(fd);
  }
  return r;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  resolve_t *rs = req->data;
  ews_conn_t *c = rs->c;
  int port = rs->port;
  free(rs);
  if (!c) {
    if (res) uv_freeaddrinfo(res);
    return;
  }
  client_t *cl = client_of(c);
  if (cl) cl->resolve = NULL;
  if (!cl || c->state != EWS_CS_HEAD) {
    if (res) uv_freeaddrinfo(res);
    return;
  }
  if (status < 0 || !res) {
    char msg[320];
    snprintf(msg, sizeof msg, "resolve %s: %s", cl->host, uv_strerror(status));
    if (res) uv_freeaddrinfo(res);
    ews_client_fail(c, EWS_ERESOLVE, msg);
    return;
  }
  /* IPv4 first: "localhost" often lists ::1 first while servers listen on 127.0.0.1. */
  struct addrinfo *pick = res;
  for (struct addrinfo *a = res; a; a = a->ai_next)
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  struct sockaddr_storage ss;
  memcpy(&ss, pick->ai_addr, pick->ai_addrlen);
  if (ss.ss_family == AF_INET) ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
  else ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
  uv_freeaddrinfo(res);
  int r = start_connect(c, cl, (const struct sockaddr *)&ss);
  if (r < 0) {
    char msg[320];
    snprintf(msg, sizeof msg, "connect: %s", uv_strerror(r));
    ews_client_fail(c, EWS_ECONNECT, msg);
  }
}

/* A failure inside ews_client_connect: the owner hears nothing (it gets the error
 * code as the return value, and `free` with udata NULL later). */
static int fail_sync(ews_conn_t *c, client_t *cl, int err, const char *what, int uverr) {
  EWS_DEBUG("client %llu: %s: %s", (unsigned long long)c->id, what, uv_strerror(uverr));
  cl->reported = 1;
  c->udata = NULL;
  ews_conn_abort(c);
  return err;
}

static ews_app_t *client_app(const ews_client_opts_t *o) {
  ews_app_t *a = calloc(1, sizeof *a);
  if (!a || !(a->path = strdup("(client)"))) {
    free(a);
    return NULL;
  }
  a->refs = 1;
  uint64_t maxm = o->max_message;
  a->rx.max_message = maxm;
  a->rx.max_frame = o->max_frame; /* 0: only the message limit applies */
  a->rx.expect_masked = 0;
  a->rx_pmd = a->rx;
  a->rx_pmd.allow_rsv1 = 1;
  ews_pmd_config_default(&a->pmd_cfg);
  a->pmd_cfg.enabled = (uint8_t)(o->compression != 0);
  a->pmd_cfg.mode = EWS_PMD_DEDICATED; /* our window is the connection's own */
  a->pmd_cfg.threshold = o->compress_threshold;
  a->heartbeat_interval_ms = o->ping_interval_ms;
  a->heartbeat_timeout_ms = o->ping_timeout_ms ? o->ping_timeout_ms : 10000;
  a->max_buffered = o->max_buffered ? o->max_buffered : (4u << 20);
  a->drop_on_backpressure = 1; /* a send that does not fit fails; the owner decides */
  a->handler_budget_ns = UINT64_MAX;
  return a;
}

static void free_new(ews_conn_t *c, client_t *cl) {
  if (c->tls) {
    ews_tls_free(c->tls->tls);
    free(c->tls);
  }
  if (c->app) ews_app_unref(c->app);
  ews_wq_free(&c->wq);
  if (cl) free(cl->protocols);
  free(cl);
  free(c->cold);
  free(c);
}

int ews_client_connect(ews_net_t *net, const ews_client_opts_t *o, void *udata,
                       ews_conn_t **out) {
  ews_url_t u;
  if (!o->url || ews_url_parse(o->url, strlen(o->url), &u) != 0) return EWS_EURL;
  if (u.tls && !o->tls) return EWS_EURL;
  if (u.host_len >= sizeof ((client_t *)0)->host) return EWS_EURL;
  ews_conn_t *c = calloc(1, sizeof *c);
  client_t *cl = calloc(1, sizeof *cl);
  /* the cold part now: the client's hook lives in it (ews_conn_hook_add cannot fail) */
  if (!c || !cl || !ews_conn_cold_get(c)) {
    if (c) free(c->cold);
    free(c);
    free(cl);
    return EWS_ENOMEM;
  }
  c->net = net;
  c->fd = -1;
  c->flags = EWS_CF_CLIENT;
  c->uref = EWS_CONN_NOREF;
  c->udata = udata;
  memcpy(cl->host, u.host, u.host_len);
  cl->host[u.host_len] = 0;
  cl->timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
  cl->offered_pmd = (uint8_t)(o->compression != 0);
  if (o->protocols_len && !(cl->protocols = strndup(o->protocols, o->protocols_len))) {
    free_new(c, cl);
    return EWS_ENOMEM;
  }
  cl->protocols_len = o->protocols_len;
  if (!(c->app = client_app(o))) {
    free_new(c, cl);
    return EWS_ENOMEM;
  }
  if (u.tls) {
    c->tls = calloc(1, sizeof *c->tls);
    if (c->tls) c->tls->tls = ews_tls_client_new(o->tls, &c->tls->out, &net->pool);
    if (!c->tls || !c->tls->tls) {
      free_new(c, cl);
      return EWS_ENOMEM;
    }
  }
  /* The request goes into the queue now; with TLS it waits for the handshake. */
  uint8_t rnd[16];
  ews_client_mask_key(rnd);
  ews_client_mask_key(rnd + 4);
  ews_client_mask_key(rnd + 8);
  ews_client_mask_key(rnd + 12);
  ews_client_key(rnd, cl->key);
  ews_client_req_t rq = {&u,          cl->key, cl->protocols, cl->protocols_len, cl->offered_pmd,
                         o->headers, o->headers_len};
  size_t cap = 1024 + u.path_len + u.host_len + o->protocols_len + o->headers_len +
               (o->probe_path ? strlen(o->probe_path) : 0);
  char *req = malloc(cap);
  cl->probe = o->probe_path != NULL;
  int n = !req ? EWS_ENOMEM
          : cl->probe ? ews_client_probe_request(req, cap, &u, o->probe_path)
                      : ews_client_request(req, cap, &rq);
  if (n > 0) n = ews_wq_append(&c->wq, &net->pool, req, (size_t)n, NULL, 0) == 0 ? n : EWS_ENOMEM;
  free(req);
  if (n < 0) {
    free_new(c, cl);
    return n;
  }
  int r;
  c->id = (++net->conn_seq << 8) | (uint64_t)(net->id & 0xff);
  c->next = net->conns;
  if (net->conns) net->conns->prev = c;
  net->conns = c;
  (void)ews_conn_hook_add(c, &cl->hook); /* the cold part exists */
  cl->hook.closed = client_closed;
  c->state = EWS_CS_HEAD;
  c->since_ms = ews_conn_now(c);
  ews_conn_set_timer(c, cl->timeout_ms);

  /* An address literal connects at once; a name is resolved first. */
  struct sockaddr_storage ss;
  if (uv_ip4_addr(cl->host, u.port, (struct sockaddr_in *)&ss) == 0 ||
      uv_ip6_addr(cl->host, u.port, (struct sockaddr_in6 *)&ss) == 0) {
    r = start_connect(c, cl, (const struct sockaddr *)&ss);
    if (r < 0) return fail_sync(c, cl, EWS_ECONNECT, "connect", r);
    *out = c;
    return 0;
  }
  resolve_t *rs = calloc(1, sizeof *rs);
  if (!rs) return fail_sync(c, cl, EWS_ENOMEM, "resolve", UV_ENOMEM);
  rs->c = c;
  rs->port = u.port;
  rs->req.data = rs;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  r = uv_getaddrinfo(net->loop, &rs->req, on_resolved, cl->host, NULL, &hints);
  if (r < 0) {
    free(rs);
    return fail_sync(c, cl, EWS_ERESOLVE, "resolve", r);
  }
  cl->resolve = rs;
  *out = c;
  return 0;
}
