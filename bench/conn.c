/* conn.c — the WebSocket client connection of edgews-bench: TCP connect, the TLS
 * handshake on wss:// (tls.c), the upgrade request with the permessage-deflate offer
 * (pmd.c) and verification of the 101 response (Sec-WebSocket-Accept via
 * ews_accept_key, the extension answer), the double-buffered batched write path
 * (on wss:// WebSocket bytes are staged as plaintext and sealed into records once
 * per flush), reading into one shared buffer and parsing server frames with ews_rx,
 * inflating compressed messages, control frames, and closing. The modes see
 * connections only through conn_hooks_t. */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench.h"
#include "err.h"

const conn_hooks_t *g_hooks;
uv_loop_t *g_loop;
uint64_t g_now;
int g_live;
uint64_t g_pings_rx;

#define READ_BUF_SIZE (256 * 1024)
static uint8_t g_rbuf[READ_BUF_SIZE];

static const ews_rx_config_t g_rx_cfg = {
    .max_frame = 0, .max_message = 0, .expect_masked = 0, .allow_rsv1 = 0};
static const ews_rx_config_t g_rx_cfg_pmd = {
    .max_frame = 0, .max_message = 0, .expect_masked = 0, .allow_rsv1 = 1};

static void on_close(uv_handle_t *h);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* ---- write path ----------------------------------------------------------------- */

/* Room for n more bytes after len in *buf (grown by doubling). */
static uint8_t *buf_reserve(uint8_t **buf, uint32_t len, uint32_t *cap, size_t n) {
  size_t need = (size_t)len + n;
  if (need > *cap) {
    size_t ncap = *cap ? *cap : 512;
    while (ncap < need) ncap *= 2;
    if (ncap > UINT32_MAX) {
      fprintf(stderr, "edgews-bench: output buffer over 4 GiB\n");
      exit(3);
    }
    uint8_t *p = realloc(*buf, ncap);
    if (!p) {
      fprintf(stderr, "edgews-bench: out of memory\n");
      exit(3);
    }
    *buf = p;
    *cap = (uint32_t)ncap;
  }
  return *buf + len;
}

uint8_t *conn_out_reserve(conn_t *c, size_t n) {
  if (g_opt.tls) return buf_reserve(&c->pt, c->pt_len, &c->pt_cap, n);
  unsigned f = c->fill;
  return buf_reserve(&c->out[f], c->out_len[f], &c->out_cap[f], n);
}

void conn_out_commit(conn_t *c, size_t n) {
  if (g_opt.tls)
    c->pt_len += (uint32_t)n;
  else
    c->out_len[c->fill] += (uint32_t)n;
}

void conn_wire_append(conn_t *c, const uint8_t *p, size_t n) {
  unsigned f = c->fill;
  memcpy(buf_reserve(&c->out[f], c->out_len[f], &c->out_cap[f], n), p, n);
  c->out_len[f] += (uint32_t)n;
}

static void on_write(uv_write_t *req, int status) {
  conn_t *c = req->data;
  c->out_len[c->wbuf] = 0;
  c->wbusy = 0;
  if (status < 0) {
    if (status != UV_ECANCELED) conn_fail(c, "write: %s", uv_strerror(status));
    return;
  }
  conn_flush(c);
}

void conn_flush(conn_t *c) {
  if (c->closing) return;
  if (c->pt_len && c->tls) { /* one seal per flush: as few records as possible */
    uint32_t n = c->pt_len;
    c->pt_len = 0;
    tls_seal(c, c->pt, n);
    if (c->closing) return;
  }
  if (c->wbusy) return;
  unsigned f = c->fill;
  size_t len = c->out_len[f];
  if (len == 0) return;
  uv_buf_t b = uv_buf_init((char *)c->out[f], (unsigned)len);
  int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (r == (int)len) {
    c->out_len[f] = 0;
    return;
  }
  if (r < 0 && r != UV_EAGAIN) {
    c->out_len[f] = 0;
    conn_fail(c, "write: %s", uv_strerror(r));
    return;
  }
  size_t off = r > 0 ? (size_t)r : 0;
  b = uv_buf_init((char *)c->out[f] + off, (unsigned)(len - off));
  c->wreq.data = c;
  r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (r < 0) {
    c->out_len[f] = 0;
    conn_fail(c, "write: %s", uv_strerror(r));
    return;
  }
  c->wbusy = 1;
  c->wbuf = (uint8_t)f;
  c->fill = (uint8_t)(f ^ 1);
  c->out_len[c->fill] = 0;
}

static void queue_frame(conn_t *c, int opcode, int rsv1, const uint8_t *payload, size_t n) {
  uint8_t *p = conn_out_reserve(c, EWS_FRAME_MAX_HEADER + n);
  uint64_t r = rng64();
  uint8_t key[4];
  memcpy(key, &r, 4);
  size_t h = ews_frame_header(p, opcode, 1, rsv1, n, key);
  if (n) {
    memcpy(p + h, payload, n);
    ews_mask(p + h, n, key, 0);
  }
  conn_out_commit(c, h + n);
}

void conn_queue_frame(conn_t *c, int opcode, const uint8_t *payload, size_t n) {
  queue_frame(c, opcode, 0, payload, n);
}

void conn_queue_message(conn_t *c, int opcode, const uint8_t *payload, size_t n, long variant) {
  if (!c->pmd) {
    queue_frame(c, opcode, 0, payload, n);
    return;
  }
  const uint8_t *z;
  size_t zn;
  int r = pmd_compress(c, payload, n, variant, &z, &zn);
  if (r != 0) {
    conn_fail(c, "compress: %s", ews_strerror(r));
    return;
  }
  queue_frame(c, opcode, 1, z, zn); /* masking after compression */
}

/* ---- lifecycle ------------------------------------------------------------------ */

void conn_abort(conn_t *c) {
  if (!c->handle_live || c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

void conn_fail(conn_t *c, const char *fmt, ...) {
  if (!c->failed && !c->closing) {
    c->failed = 1;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (g_hooks->on_fail) g_hooks->on_fail(c, msg);
  }
  conn_abort(c);
}

static void on_close(uv_handle_t *h) {
  conn_t *c = h->data;
  c->handle_live = 0;
  c->closing = 0;
  c->state = CS_IDLE;
  c->wbusy = 0;
  c->out_len[0] = c->out_len[1] = 0;
  c->pt_len = 0;
  ews_rx_free(&c->rx);
  pmd_conn_free(c);
  g_live--;
  if (g_hooks->on_closed) g_hooks->on_closed(c);
}

void conn_free(conn_t *c) {
  tls_conn_free(c);
  pmd_conn_free(c);
  free(c->out[0]);
  free(c->out[1]);
  free(c->pt);
  free(c->ts);
  free(c->acc);
  c->acc = NULL;
  c->acc_len = 0;
  c->out[0] = c->out[1] = c->pt = NULL;
  c->expect = NULL;
  c->out_cap[0] = c->out_cap[1] = c->pt_cap = 0;
  c->ts = NULL;
}

void conn_close_ws(conn_t *c, unsigned code) {
  if (c->state != CS_OPEN || c->closing) return;
  uint8_t payload[EWS_CONTROL_MAX];
  size_t n = ews_close_build(payload, code, NULL, 0);
  conn_queue_frame(c, EWS_OP_CLOSE, payload, n);
  c->state = CS_CLOSING;
  conn_flush(c);
}

static void base64_16(const uint8_t in[16], char out[25]) {
  static const char tab[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  int j = 0;
  for (int i = 0; i < 15; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[j++] = tab[v >> 18];
    out[j++] = tab[(v >> 12) & 63];
    out[j++] = tab[(v >> 6) & 63];
    out[j++] = tab[v & 63];
  }
  uint32_t v = (uint32_t)in[15] << 16;
  out[j++] = tab[v >> 18];
  out[j++] = tab[(v >> 12) & 63];
  out[j++] = '=';
  out[j++] = '=';
  out[j] = 0;
}

/* Queues the upgrade request (with our permessage-deflate offer) and flushes. */
static void send_upgrade(conn_t *c) {
  uint8_t raw[16];
  uint64_t a = rng64(), b = rng64();
  memcpy(raw, &a, 8);
  memcpy(raw + 8, &b, 8);
  char key[25];
  base64_16(raw, key);
  if (ews_accept_key(key, 24, c->accept) != 0) {
    conn_fail(c, "ews_accept_key failed");
    return;
  }
  const char *ext = g_opt.deflate ? pmd_offer() : NULL;
  const char *target = c->target ? c->target : g_opt.path;
  char *p = (char *)conn_out_reserve(c, 600 + strlen(target) + strlen(g_opt.host_header));
  int n = sprintf(p,
                  "GET %s HTTP/1.1\r\n"
                  "Host: %s\r\n"
                  "Upgrade: websocket\r\n"
                  "Connection: Upgrade\r\n"
                  "Sec-WebSocket-Key: %s\r\n"
                  "Sec-WebSocket-Version: 13\r\n"
                  "%s%s%s"
                  "\r\n",
                  target, g_opt.host_header, key, ext ? "Sec-WebSocket-Extensions: " : "",
                  ext ? ext : "", ext ? "\r\n" : "");
  conn_out_commit(c, (size_t)n);
  c->state = CS_HANDSHAKE;
  c->hs_len = 0;
  conn_flush(c);
}

void conn_tls_ready(conn_t *c) { send_upgrade(c); }

static void on_connect(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  if (status < 0) {
    if (status != UV_ECANCELED) conn_fail(c, "connect: %s", uv_strerror(status));
    return;
  }
  if (c->closing) return;
  uv_tcp_nodelay(&c->tcp, 1);
  int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (r < 0) {
    conn_fail(c, "read start: %s", uv_strerror(r));
    return;
  }
  if (g_opt.tls)
    tls_begin(c); /* the upgrade follows from conn_tls_ready */
  else
    send_upgrade(c);
}

/* uv_read_start needs an alloc callback; every connection reads into g_rbuf, which
 * is safe because each read is fully processed before the next one. */
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  *buf = uv_buf_init((char *)g_rbuf, READ_BUF_SIZE);
}

int conn_start(conn_t *c) {
  const struct sockaddr *dst = (const struct sockaddr *)(g_opt.ndst ? &g_opt.dst[c->dst % g_opt.ndst]
                                                                     : &g_opt.addr);
  int r = g_opt.nsrc ? uv_tcp_init_ex(g_loop, &c->tcp, dst->sa_family)
                     : uv_tcp_init(g_loop, &c->tcp);
  if (r < 0) { /* no handle: report the failure here, there will be no close */
    char msg[120];
    snprintf(msg, sizeof(msg), "socket: %s", uv_strerror(r));
    c->failed = 1;
    if (g_hooks->on_fail) g_hooks->on_fail(c, msg);
    return r;
  }
  c->tcp.data = c;
  c->creq.data = c;
  c->handle_live = 1;
  c->closing = 0;
  c->failed = 0;
  c->wbusy = 0;
  c->fill = 0;
  c->out_len[0] = c->out_len[1] = 0;
  c->pt_len = 0;
  c->state = CS_CONNECTING;
  c->t_start = uv_hrtime();
  ews_rx_init(&c->rx, &g_rx_cfg);
  g_live++;
  if (g_opt.nsrc) {
    /* the source address now, its port at connect: the kernel then needs the 4-tuple
     * alone to be unique, not the port per address */
    uv_os_fd_t fd;
    int one = 1;
    r = uv_fileno((uv_handle_t *)&c->tcp, &fd);
    if (r == 0 && setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0)
      r = uv_translate_sys_error(errno);
    if (r == 0)
      r = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&g_opt.src[c->id % (uint32_t)g_opt.nsrc], 0);
    if (r < 0) {
      conn_fail(c, "bind to the source address: %s", uv_strerror(r));
      return r;
    }
  }
  r = uv_tcp_connect(&c->creq, &c->tcp, dst, on_connect);
  if (r < 0) {
    conn_fail(c, "connect: %s", uv_strerror(r));
    return r;
  }
  return 0;
}

/* ---- reading -------------------------------------------------------------------- */

static int rx_on_data(void *ud, int opcode, uint8_t *p, size_t n, int first, int last,
                      int compressed) {
  conn_t *c = ud;
  if (c->state == CS_CLOSING) return 0; /* late data after our close: ignore */
  if (compressed) {
    if (!c->pmd) { /* ews_rx refuses RSV1 without negotiation; belt and braces */
      conn_fail(c, "server sent a compressed frame (RSV1) without negotiation");
      return 1;
    }
    uint8_t *z;
    size_t zn;
    int r = pmd_inflate(c, opcode, p, n, first, last, &z, &zn);
    if (r != 0) {
      conn_fail(c, "inflating a message from the server: %s", ews_strerror(r));
      return 1;
    }
    return g_hooks->on_data(c, opcode, z, zn, first, last);
  }
  return g_hooks->on_data(c, opcode, p, n, first, last);
}

static int rx_on_control(void *ud, int opcode, uint8_t *p, size_t n) {
  conn_t *c = ud;
  switch (opcode) {
    case EWS_OP_PING:
      g_pings_rx++;
      conn_queue_frame(c, EWS_OP_PONG, p, n);
      return 0;
    case EWS_OP_PONG:
      if (g_hooks->on_pong) g_hooks->on_pong(c, p, n);
      return 0;
    case EWS_OP_CLOSE:
      if (c->state == CS_CLOSING) { /* the server answered our close */
        conn_abort(c);
        return 1;
      } else {
        unsigned code = 1005;
        const uint8_t *reason = NULL;
        size_t rlen = 0;
        ews_close_parse(p, n, &code, &reason, &rlen);
        char msg[160];
        snprintf(msg, sizeof(msg), "server closed the connection: code %u '%.*s'", code,
                 (int)(rlen > 100 ? 100 : rlen), reason ? (const char *)reason : "");
        /* answer the close, then drop the connection */
        conn_queue_frame(c, EWS_OP_CLOSE, p, n >= 2 ? 2 : 0);
        conn_flush(c);
        conn_fail(c, "%s", msg);
        return 1;
      }
  }
  return 0;
}

static const ews_rx_handler_t g_rx_handler = {rx_on_data, rx_on_control};

/* Case-insensitive search of a token in a header value. */
static int value_has(const char *v, size_t n, const char *tok) {
  size_t t = strlen(tok);
  for (size_t i = 0; i + t <= n; i++)
    if (strncasecmp(v + i, tok, t) == 0) return 1;
  return 0;
}

/* Parses the 101 response head in c->hs[0..head). Returns NULL when it is a valid
 * upgrade for our key, else a description of what is wrong. */
static const char *check_response(conn_t *c, size_t head) {
  const char *s = c->hs, *end = c->hs + head;
  const char *eol = memchr(s, '\r', (size_t)(end - s));
  if (!eol) return "malformed status line";
  if ((size_t)(eol - s) < 12 || strncmp(s, "HTTP/1.", 7) != 0) return "malformed status line";
  if (strncmp(s + 8, " 101", 4) != 0) {
    static char msg[160];
    snprintf(msg, sizeof(msg), "expected 101, got '%.*s'", (int)(eol - s > 100 ? 100 : eol - s), s);
    return msg;
  }
  int upgrade = 0, connection = 0, accept = 0;
  char ext[512];
  size_t ext_len = 0;
  int ext_seen = 0;
  s = eol + 2;
  while (s < end) {
    eol = memchr(s, '\r', (size_t)(end - s));
    if (!eol || eol == s) break;
    const char *colon = memchr(s, ':', (size_t)(eol - s));
    if (colon) {
      size_t nlen = (size_t)(colon - s);
      const char *v = colon + 1;
      while (v < eol && (*v == ' ' || *v == '\t')) v++;
      const char *ve = eol;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      size_t vlen = (size_t)(ve - v);
      if (nlen == 7 && strncasecmp(s, "upgrade", 7) == 0)
        upgrade = value_has(v, vlen, "websocket");
      else if (nlen == 10 && strncasecmp(s, "connection", 10) == 0)
        connection = value_has(v, vlen, "upgrade");
      else if (nlen == 20 && strncasecmp(s, "sec-websocket-accept", 20) == 0) {
        if (vlen != EWS_ACCEPT_LEN || memcmp(v, c->accept, EWS_ACCEPT_LEN) != 0)
          return "wrong Sec-WebSocket-Accept";
        accept = 1;
      } else if (nlen == 24 && strncasecmp(s, "sec-websocket-extensions", 24) == 0 && vlen) {
        if (!g_opt.deflate) return "server negotiated an extension that was not offered";
        /* several header lines form one list */
        if (ext_len + vlen + 2 > sizeof ext) return "Sec-WebSocket-Extensions too long";
        if (ext_seen++) {
          memcpy(ext + ext_len, ", ", 2);
          ext_len += 2;
        }
        memcpy(ext + ext_len, v, vlen);
        ext_len += vlen;
      }
    }
    s = eol + 2;
  }
  if (!upgrade) return "101 without 'Upgrade: websocket'";
  if (!connection) return "101 without 'Connection: Upgrade'";
  if (!accept) return "101 without Sec-WebSocket-Accept";
  if (g_opt.deflate) {
    const char *bad = pmd_accept(c, ext_seen ? ext : NULL, ext_len);
    if (bad) return bad;
    ews_rx_init(&c->rx, &g_rx_cfg_pmd); /* nothing fed yet: RSV1 now allowed */
  }
  return NULL;
}

static void feed(conn_t *c, uint8_t *p, size_t n) {
  if (n == 0) return;
  int r = ews_rx_feed(&c->rx, p, n, &g_rx_handler, c);
  if (r < 0) conn_fail(c, "protocol error from server: %s", ews_strerror(r));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  if (nread == 0) return;
  if (c->closing) return;
  if (nread < 0) {
    if (c->state == CS_CLOSING) {
      conn_abort(c); /* the server closed after our close frame: normal */
    } else if (nread == UV_EOF) {
      conn_fail(c, "connection closed by the server (EOF) %s",
                c->state == CS_TLS         ? "during the TLS handshake"
                : c->state == CS_HANDSHAKE ? "during the handshake"
                                           : "while open");
    } else {
      conn_fail(c, "read: %s", uv_strerror((int)nread));
    }
    return;
  }
  g_now = uv_hrtime();
  if (g_opt.tls)
    tls_read(c, (const uint8_t *)buf->base, (size_t)nread);
  else
    conn_plain_in(c, (uint8_t *)buf->base, (size_t)nread);
  if (!c->closing) conn_flush(c);
}

void conn_plain_in(conn_t *c, uint8_t *p, size_t n) {
  if (c->closing) return;
  if (c->state == CS_HANDSHAKE) {
    size_t room = CONN_HS_MAX - c->hs_len;
    size_t take = n < room ? n : room;
    memcpy(c->hs + c->hs_len, p, take);
    size_t old = c->hs_len;
    c->hs_len = (uint16_t)(c->hs_len + take);
    /* look for the end of the head, starting a little before the new bytes */
    size_t from = old >= 3 ? old - 3 : 0;
    size_t head = 0;
    for (size_t i = from; i + 4 <= c->hs_len; i++)
      if (memcmp(c->hs + i, "\r\n\r\n", 4) == 0) {
        head = i + 4;
        break;
      }
    if (!head) {
      if (c->hs_len == CONN_HS_MAX) conn_fail(c, "handshake response head too large");
      return;
    }
    const char *bad = check_response(c, head);
    if (bad) {
      conn_fail(c, "handshake: %s", bad);
      return;
    }
    c->state = CS_OPEN;
    g_hooks->on_open(c);
    if (c->closing) return;
    /* bytes after the head are frames: they are still in buf, at head - old */
    size_t used = head - old;
    if (c->state == CS_OPEN || c->state == CS_CLOSING) feed(c, p + used, n - used);
  } else if (c->state == CS_OPEN || c->state == CS_CLOSING) {
    feed(c, p, n);
  }
}

/* ---- opening many connections ---------------------------------------------------- */

opener_t g_opener;

static void opener_fill(void) {
  opener_t *o = &g_opener;
  while (o->started < o->target && o->started - o->opened - o->failed < g_opt.max_pending) {
    conn_t *c = &o->conns[o->started++];
    conn_start(c); /* a failure is reported through on_fail */
  }
}

static void opener_check(void) {
  opener_t *o = &g_opener;
  if (o->opened + o->failed == o->target && o->done) {
    void (*done)(void) = o->done;
    o->done = NULL;
    done();
  } else {
    opener_fill();
  }
}

void opener_begin(conn_t *conns, int target, void (*done)(void)) {
  memset(&g_opener, 0, sizeof(g_opener));
  g_opener.conns = conns;
  g_opener.target = target;
  g_opener.done = done;
  g_opener.t0 = uv_hrtime();
  if (target == 0) {
    opener_check();
    return;
  }
  opener_fill();
}

void opener_on_open(void) {
  g_opener.opened++;
  opener_check();
}

void opener_on_fail(void) {
  g_opener.failed++;
  opener_check();
}

/* ---- phase timer ---------------------------------------------------------------- */

static uv_timer_t g_phase;
static int g_phase_init;
static void (*g_phase_cb)(void);

static void on_phase(uv_timer_t *t) {
  (void)t;
  void (*cb)(void) = g_phase_cb;
  g_phase_cb = NULL;
  if (cb) cb();
}

void conns_close_all(conn_t *conns, int n, unsigned code, double grace, void (*done)(void),
                     void (*on_timeout)(void)) {
  for (int i = 0; i < n; i++) {
    conn_t *c = &conns[i];
    if (c->state == CS_OPEN) conn_close_ws(c, code);
    else conn_abort(c);
  }
  if (g_live == 0) done();
  else phase_timer(grace, on_timeout);
}

/* ---- a mode's opening and end (run_*) -------------------------------------------- */

static struct {
  int *phase, opening, closing, done, *sending;
  conn_t *conns;
  int n;
} g_end;

void run_init(int *phase, int opening, int closing, int done, int *sending, conn_t *conns, int n) {
  g_end.phase = phase, g_end.opening = opening, g_end.closing = closing, g_end.done = done;
  g_end.sending = sending, g_end.conns = conns, g_end.n = n;
  *phase = opening;
}

void run_on_open(conn_t *c) {
  (void)c;
  if (*g_end.phase == g_end.opening) opener_on_open();
}

int run_on_fail(conn_t *c, const char *who, const char *what) {
  if (*g_end.phase >= g_end.closing) return 1;
  bench_error("%s %u: %s", who, c->id, what);
  if (*g_end.phase == g_end.opening) {
    opener_on_fail();
    return 1;
  }
  return 0;
}

static void end_finish(void) {
  if (*g_end.phase == g_end.done) return;
  *g_end.phase = g_end.done;
  phase_timer_close();
}

static void end_force(void) {
  for (int i = 0; i < g_end.n; i++) conn_abort(&g_end.conns[i]);
  if (g_live == 0) end_finish();
}

void run_close(void) {
  if (*g_end.phase >= g_end.closing) return;
  *g_end.phase = g_end.closing;
  *g_end.sending = 0;
  conns_close_all(g_end.conns, g_end.n, 1000, 3.0, end_finish, end_force);
}

void run_on_closed(conn_t *c) {
  (void)c;
  if (*g_end.phase >= g_end.closing && g_live == 0) end_finish();
}

void phase_timer(double seconds, void (*cb)(void)) {
  if (!g_phase_init) {
    uv_timer_init(g_loop, &g_phase);
    g_phase_init = 1;
  }
  g_phase_cb = cb;
  uint64_t ms = seconds <= 0 ? 0 : (uint64_t)(seconds * 1000.0 + 0.5);
  uv_timer_start(&g_phase, on_phase, ms, 0);
}

void phase_timer_stop(void) {
  if (g_phase_init) uv_timer_stop(&g_phase);
  g_phase_cb = NULL;
}

void phase_timer_close(void) {
  if (g_phase_init) {
    uv_timer_stop(&g_phase);
    uv_close((uv_handle_t *)&g_phase, NULL);
    g_phase_init = 0;
  }
  g_phase_cb = NULL;
}
