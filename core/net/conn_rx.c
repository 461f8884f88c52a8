/* conn_rx.c — a connection's receive path (see conn.h): reads land in the loop's
 * shared read buffer, TLS records are decrypted in place, then the bytes go to the
 * request head (http.c) or to the frame receiver. Frames are parsed and unmasked in
 * place; a message that arrived as one frame is handed to the owner straight from the
 * read buffer, and only fragmented or split messages are gathered in a per-connection
 * buffer (`in`) that exists just for that message. Pausing stops reading (the
 * socket's EPOLLIN interest on the loop's poller). */
#include "net/conn_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "net/client.h"
#include "net/msgmem.h"
#include "net/sys.h"
#include "net/tls.h"
#include "proto/close_codes.h"
#include "stat.h"

/* ---- the message buffer ------------------------------------------------------- */

/* `in` (the request head, then a message being reassembled or inflated) is charged
 * to the process-wide message memory budget (net/msgmem.h). */
void ews_conn_free_in(ews_conn_t *c) {
  ews_msgmem_free(c->in, c->in_cap);
  c->in = NULL;
  c->in_len = c->in_cap = 0;
}

int ews_conn_in_append(ews_conn_t *c, const uint8_t *p, size_t n) {
  if (n > SIZE_MAX - c->in_len) return EWS_ENOMEM;
  int r = ews_msgmem_reserve(&c->in, &c->in_cap, c->in_len + n, 0);
  if (r != 0) return r;
  memcpy(c->in + c->in_len, p, n);
  c->in_len += n;
  return 0;
}

/* The inflater's output grows `in` under the budget too. */
static int grow_in(ews_zbuf_t *b, size_t need) {
  ews_conn_t *c = b->ud;
  c->in = b->p;
  c->in_cap = b->cap;
  int r = ews_msgmem_reserve(&c->in, &c->in_cap, need, 1);
  b->p = c->in;
  b->cap = c->in_cap;
  if (r == EWS_EBUDGET) c->flags |= EWS_CF_BUDGET;
  return r;
}

/* ---- frames in ------------------------------------------------------------------ */

static void deliver_in(ews_conn_t *c, int opcode) {
  EWS_STAT_ADD(c->net->stats.msgs_in, 1);
  ews_conn_ops(c)->message(c, c->in ? c->in : (const uint8_t *)"", c->in_len, opcode == EWS_OP_BINARY);
  /* An idle connection holds no buffer: with glibc's trimming off (main.c), the
   * next message's malloc is cheap. */
  ews_conn_free_in(c);
}

static int on_data(void *ud, int opcode, uint8_t *p, size_t n, int first, int last,
                   int compressed) {
  ews_conn_t *c = ud;
  if (c->state != EWS_CS_OPEN) return 0; /* after our close: discard data */
  if (compressed) {
    /* Inflate into `in`, bounded by max_message (a bomb costs no more than that),
     * UTF-8-checking text as it comes out. */
    ews_pmd_worker_t *pw;
    int r = ews_app_pmd(c->app, &pw);
    if (r < 0) return r;
    ews_zbuf_t out = {c->in, c->in_len, c->in_cap, grow_in, c};
    r = ews_inflate(&ews_conn_pmd(c)->inf, pw, p, n, first, last, opcode == EWS_OP_TEXT, &out);
    c->in = out.p;
    c->in_len = out.len;
    c->in_cap = out.cap;
    /* the inflater reports a refused growth as ENOMEM: say what it was */
    if (r == EWS_ENOMEM && (c->flags & EWS_CF_BUDGET)) r = EWS_EBUDGET;
    if (r < 0) return r;
    if (last) deliver_in(c, opcode);
    return c->state >= EWS_CS_DRAINING ? EWS_ESTOPPED : 0;
  }
  if (first && last) {
    EWS_STAT_ADD(c->net->stats.msgs_in, 1);
    ews_conn_ops(c)->message(c, p, n, opcode == EWS_OP_BINARY);
  } else {
    int r = n ? ews_conn_in_append(c, p, n) : 0;
    if (r != 0) return r;
    if (!last) return 0;
    deliver_in(c, opcode);
  }
  return c->state >= EWS_CS_DRAINING ? EWS_ESTOPPED : 0;
}

static int on_control(void *ud, int opcode, uint8_t *p, size_t n) {
  ews_conn_t *c = ud;
  switch (opcode) {
    case EWS_OP_PING:
      if (c->state == EWS_CS_OPEN) ews_conn_queue_frame(c, EWS_OP_PONG, p, n);
      return 0;
    case EWS_OP_PONG:
      if (c->flags & EWS_CF_CLIENT) {
        const ews_conn_ops_t *ops = ews_conn_ops(c);
        if (ops->pong) ops->pong(c, p, n);
      }
      return 0;
    case EWS_OP_CLOSE: {
      unsigned code;
      const uint8_t *reason;
      size_t rlen;
      if (ews_close_parse(p, n, &code, &reason, &rlen) != 0) return EWS_ECLOSE_CODE;
      if (c->state == EWS_CS_OPEN) {
        /* Echo the status code (RFC 6455 5.5.1); an empty close gets an empty one. */
        uint8_t echo[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        ews_conn_queue_frame(c, EWS_OP_CLOSE, echo, n ? 2 : 0);
      }
      ews_conn_set_close_reason(c, code, (const char *)reason, rlen);
      c->flags |= EWS_CF_CLOSE_DONE;
      ews_conn_enter_draining(c);
      return EWS_ESTOPPED;
    }
    default:
      return 0;
  }
}

static const ews_rx_handler_t rx_handler = {on_data, on_control};

void ews_conn_feed_frames(ews_conn_t *c, uint8_t *p, size_t n) {
  c->last_rx_ms = ews_conn_now(c);
  c->flags &= (uint16_t)~EWS_CF_PING_OUT;
  int r = ews_rx_feed(&c->rx, p, n, &rx_handler, c);
  if (r < 0 && r != EWS_ESTOPPED) {
    EWS_DEBUG("conn %llu: %s", (unsigned long long)c->id, ews_strerror(r));
    ews_conn_fail(c, r, NULL);
  }
}

/* ---- reading the socket ----------------------------------------------------------- */

/* Turns ciphertext that landed in the read buffer into plaintext, left where the first
 * record was decrypted (no copy to the front).
 * Returns 1 with *p and *n set when there is plaintext (maybe none) to process, 0 when
 * the read was all handshake or the connection failed. */
static int tls_unwrap(ews_conn_t *c, size_t nread, uint8_t **p, size_t *n, int *eof) {
  size_t plain = 0, at = 0;
  int r = ews_tls_read_at(c->tls->tls, c->net->rbuf, nread, &at, &plain);
  ews_conn_tls_rearm(c);
  /* A client's request waits in wq for the end of the handshake. */
  if (c->tls->out.bytes || (c->wq.bytes && ews_tls_handshake_done(c->tls->tls)))
    ews_conn_schedule_flush(c);
  *p = c->net->rbuf + at;
  *n = plain;
  *eof = r == EWS_ECLOSED;
  if (r == 0 || r == EWS_ECLOSED) return 1;
  if (r == EWS_EAGAIN) return 0;
  char why[320];
  ews_tls_reason(c->tls->tls, why, sizeof why); /* not inside EWS_DEBUG: used below */
  EWS_DEBUG("conn %llu: TLS: %s", (unsigned long long)c->id, why);
  if ((c->flags & EWS_CF_CLIENT) && c->state == EWS_CS_HEAD) {
    char msg[340];
    snprintf(msg, sizeof msg, "tls: %s", why);
    ews_client_fail(c, r == EWS_ECERT ? EWS_ECERT : EWS_ETLS, msg);
    return 0;
  }
  /* Let the alert (if any) go out, then close. */
  if (c->state == EWS_CS_OPEN || c->state == EWS_CS_CLOSING)
    ews_conn_set_close_reason(c, EWS_CLOSE_ABNORMAL, NULL, 0);
  ews_wq_free(&c->wq);
  c->flags |= EWS_CF_EOF | EWS_CF_TLS_NOTIFY;
  ews_conn_enter_draining(c);
  return 0;
}

/* One read's outcome: nread bytes at base, or UV_EOF, or a libuv error. */
static void on_read(ews_conn_t *c, ssize_t nread, uint8_t *base) {
  if (nread < 0) {
    if (nread != UV_EOF)
      EWS_DEBUG("conn %llu: read error: %s", (unsigned long long)c->id, uv_strerror((int)nread));
    c->flags |= EWS_CF_EOF;
    ews_conn_read_stop(c);
    if ((c->flags & EWS_CF_CLIENT) && c->state == EWS_CS_HEAD) {
      ews_client_fail(c, EWS_EHANDSHAKE, nread == UV_EOF
                                             ? "handshake: the server closed the connection"
                                             : "handshake: read error");
      return;
    }
    /* Draining: let the queued bytes (a close echo, an HTTP answer) go out first. */
    if (c->state == EWS_CS_DRAINING && nread == UV_EOF) ews_conn_schedule_flush(c);
    else ews_conn_abort(c);
    return;
  }
  if (nread == 0) return;
  EWS_STAT_ADD(c->net->stats.bytes_in, (uint64_t)nread);
  uint8_t *p = base;
  size_t n = (size_t)nread;
  int tls_eof = 0;
  if (c->tls && c->state < EWS_CS_DRAINING && !tls_unwrap(c, n, &p, &n, &tls_eof)) return;
  if (n) switch (c->state) {
    case EWS_CS_HEAD:
      if (c->flags & EWS_CF_CLIENT) ews_client_on_head_bytes(c, p, n);
      else ews_conn_on_head_bytes(c, p, n);
      break;
    case EWS_CS_OPEN:
    case EWS_CS_CLOSING:
      ews_conn_feed_frames(c, p, n);
      break;
    default:
      break; /* draining: discard until EOF */
  }
  if (tls_eof) {
    /* close_notify: like a FIN (our close_notify answer is already queued). */
    c->flags |= EWS_CF_EOF | EWS_CF_TLS_NOTIFY;
    if (c->state == EWS_CS_DRAINING) ews_conn_schedule_flush(c);
    else ews_conn_abort(c);
  }
}

/* Reads per readiness event: a connection that keeps its socket full gives the
 * others their turn after this many buffers (libuv's streams read up to 32). */
#define EWS_READS_PER_EVENT 16

void ews_conn_on_readable(ews_conn_t *c) {
  for (int i = 0; i < EWS_READS_PER_EVENT; i++) {
    /* Paused, stopped at EOF, or closed by what the last read delivered. */
    if (!(c->io & EWS_IO_READING) || c->state == EWS_CS_CLOSED) return;
    /* TLS keeps room at the front for an unfinished record from the last read. */
    size_t off = c->tls ? ews_tls_read_reserve(c->tls->tls) : 0;
    uint8_t *base = c->net->rbuf + off;
    size_t cap = EWS_READ_BUF - off;
    ssize_t n;
    do n = ews_sys_read(c->fd, base, cap);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      on_read(c, uv_translate_sys_error(errno), base);
      return;
    }
    on_read(c, n == 0 ? UV_EOF : n, base);
    if ((size_t)n < cap) return; /* drained (or EOF) */
  }
}

int ews_conn_read_start(ews_conn_t *c) {
  c->io |= EWS_IO_READING;
  int r = ews_conn_io_update(c);
  if (r < 0) c->io &= (uint8_t)~EWS_IO_READING;
  return r;
}

void ews_conn_read_stop(ews_conn_t *c) {
  if (!(c->io & EWS_IO_READING)) return;
  c->io &= (uint8_t)~EWS_IO_READING;
  ews_conn_io_update(c); /* removing cannot fail for a registered socket */
}

void ews_conn_pause(ews_conn_t *c) {
  if (c->flags & EWS_CF_PAUSED) return;
  c->flags |= EWS_CF_PAUSED;
  ews_conn_read_stop(c);
}

void ews_conn_unpause(ews_conn_t *c) {
  if (!(c->flags & EWS_CF_PAUSED)) return;
  c->flags &= (uint16_t)~EWS_CF_PAUSED;
  c->last_rx_ms = ews_conn_now(c);
  /* Draining reads too: it must see the client's FIN to let go early. */
  if (c->state < EWS_CS_CLOSED && !(c->flags & EWS_CF_EOF) && ews_conn_read_start(c) < 0)
    ews_conn_abort(c);
}
