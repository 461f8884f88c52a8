/* conn_tx.c — a connection's send path (see conn.h): a frame is written into the
 * connection's write queue (compressed first into the loop's scratch buffer when the
 * connection negotiated permessage-deflate), under the app's slow-consumer policy,
 * and the connection goes on the loop's flush list. The flush (once per loop
 * iteration) seals the plaintext into TLS records for wss://, writes with one
 * sendmsg (a writev that cannot raise SIGPIPE) and, when the kernel does not take
 * everything, keeps the rest queued and asks the loop's poller for EPOLLOUT
 * (EWS_CF_WRITING), whose event brings the flush back; a draining connection then
 * sends its FIN. */
#include "net/conn_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "err.h"
#include "log.h"
#include "net/static_files.h"
#include "net/client.h"
#include "net/sys.h"
#include "net/tls.h"
#include "proto/close_codes.h"
#include "stat.h"

/* Writes iov to the socket: the bytes written, UV_EAGAIN when the kernel took none,
 * or a libuv error. */
static ssize_t sock_writev(ews_conn_t *c, struct iovec *iov, int n) {
  if (c->fd < 0 || (c->io & (EWS_IO_CONNECTING | EWS_IO_CLOSED))) return UV_EAGAIN;
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = iov;
  m.msg_iovlen = (size_t)n;
  ssize_t r;
  do r = ews_sys_sendmsg(c->fd, &m, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r >= 0) return r;
  return errno == EAGAIN || errno == EWOULDBLOCK ? UV_EAGAIN : uv_translate_sys_error(errno);
}

int ews_conn_queue_raw(ews_conn_t *c, const void *a, size_t alen, const void *b, size_t blen) {
  int r = ews_wq_append(&c->wq, &c->net->pool, a, alen, b, blen);
  if (r == 0) ews_conn_schedule_flush(c);
  return r;
}

/* A large frame for a connection with nothing queued skips the write queue, so its
 * payload is not copied there: on ws:// it is written at once (one writev of header
 * and payload; only what the kernel does not take is queued), on wss:// it is sealed
 * straight into TLS records. Only the first one of a loop iteration: it puts the
 * connection on the flush list, and what the handler sends after it is queued and
 * goes out with one writev (one run of records) at the flush, as small frames do,
 * rather than one syscall per message. Frames queued behind others and client frames
 * (masked while copied) take the queue too. */
#define EWS_DIRECT_MIN 4096u

static int direct_ok(const ews_conn_t *c, size_t n) {
  return n >= EWS_DIRECT_MIN && !c->wq.bytes && !ews_conn_body(c) &&
         !(c->flags & (EWS_CF_WRITING | EWS_CF_CLIENT | EWS_CF_FLUSH_QUEUED)) &&
         (!c->tls || ews_tls_handshake_done(c->tls->tls));
}

/* Sends a (alen bytes, the frame header) then b (blen) as direct_ok() allows. */
static int send_direct(ews_conn_t *c, const void *a, size_t alen, const void *b, size_t blen) {
  struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
  if (c->tls) {
    int r = ews_tls_write(c->tls->tls, iov, 2);
    ews_conn_tls_rearm(c); /* the record may have rebuilt a released cipher context */
    if (r < 0) {
      /* as the flush would: a failed record layer ends the connection */
      EWS_DEBUG("conn %llu: TLS write: %s", (unsigned long long)c->id, ews_strerror(r));
      ews_conn_abort(c);
      return r;
    }
    ews_conn_schedule_flush(c);
    return 0;
  }
  ssize_t r = sock_writev(c, iov, 2);
  if (r < 0) r = 0; /* EAGAIN, or an error the flush will meet: queue it all */
  size_t done = (size_t)r;
  if (done) EWS_STAT_ADD(c->net->stats.bytes_out, (uint64_t)done);
  if (done == alen + blen) {
    ews_conn_schedule_flush(c); /* later sends of this iteration coalesce */
    return 0;
  }
  if (done >= alen) return ews_conn_queue_raw(c, (const uint8_t *)b + (done - alen), blen - (done - alen), NULL, 0);
  return ews_conn_queue_raw(c, (const uint8_t *)a + done, alen - done, b, blen);
}

/* A client's frame: a fresh random mask (RFC 6455 5.3), the payload masked while it
 * is copied into the queue (the caller's bytes stay as they are). */
static int queue_masked(ews_conn_t *c, int opcode, int rsv1, const void *p, size_t n) {
  uint8_t key[4], hdr[EWS_FRAME_MAX_HEADER];
  ews_client_mask_key(key);
  size_t hl = ews_frame_header(hdr, opcode, 1, rsv1, n, key);
  uint8_t *dst = ews_wq_reserve(&c->wq, &c->net->pool, hl + n);
  if (!dst) return EWS_ENOMEM;
  memcpy(dst, hdr, hl);
  if (n) {
    memcpy(dst + hl, p, n);
    ews_mask(dst + hl, n, key, 0);
  }
  ews_wq_commit(&c->wq, hl + n);
  ews_conn_schedule_flush(c);
  return 0;
}

int ews_conn_queue_frame(ews_conn_t *c, int opcode, const void *p, size_t n) {
  if (c->flags & EWS_CF_CLIENT) return queue_masked(c, opcode, 0, p, n);
  uint8_t hdr[EWS_FRAME_MAX_HEADER];
  size_t hl = ews_frame_header(hdr, opcode, 1, 0, n, NULL);
  return ews_conn_queue_raw(c, hdr, hl, p, n);
}

/* Compresses one message into the loop's scratch buffer (frame header written in
 * front of the payload without a copy) and queues the frame. */
static int queue_compressed(ews_conn_t *c, int opcode, const void *p, size_t n) {
  ews_pmd_worker_t *pw;
  ews_deflater_t *d;
  int r = ews_app_pmd(c->app, &pw);
  ews_conn_pmd_t *pmd = ews_conn_pmd(c);
  if (r == 0) r = ews_pmd_deflater_for(pw, &pmd->params, &pmd->own, &d);
  if (r < 0) return r;
  ews_zbuf_t *z = &c->net->zscratch;
  z->len = 0;
  size_t off;
  if (c->flags & EWS_CF_CLIENT) {
    r = ews_deflate_message(d, p, n, z);
    if (r == 0) r = queue_masked(c, opcode, 1, z->p, z->len);
    if (r == 0) EWS_STAT_ADD(c->net->stats.compressed, 1);
    if (z->cap > 256 * 1024) ews_zbuf_free(z);
    return r;
  }
  r = ews_deflate_frame(d, opcode, p, n, z, &off);
  if (r < 0) return r;
  EWS_STAT_ADD(c->net->stats.compressed, 1);
  if (direct_ok(c, z->len - off)) r = send_direct(c, z->p + off, z->len - off, NULL, 0);
  else r = ews_conn_queue_raw(c, z->p + off, z->len - off, NULL, 0);
  if (z->cap > 256 * 1024) ews_zbuf_free(z); /* do not keep a huge scratch */
  return r;
}

/* The slow-consumer policy: 0 when n more bytes may be queued, else
 * EWS_EBACKPRESSURE (and, under the "close" policy, the connection is failed). */
static int check_backpressure(ews_conn_t *c, size_t n) {
  if (ews_conn_fits(c, n)) return 0;
  /* Slow consumer: the queue already holds more than the limit allows. */
  if (c->app->drop_on_backpressure) return EWS_EBACKPRESSURE;
  EWS_DEBUG("conn %llu: slow consumer (%zu bytes queued), closing 1008",
            (unsigned long long)c->id, ews_conn_buffered(c));
  ews_conn_fail(c, EWS_EBACKPRESSURE, NULL);
  return EWS_EBACKPRESSURE;
}

int ews_conn_send_frame(ews_conn_t *c, ews_buf_t *frame) {
  if (c->state != EWS_CS_OPEN) return EWS_ECLOSED;
  int r = check_backpressure(c, frame->len);
  if (r == 0) r = ews_wq_append_shared(&c->wq, frame, 0, frame->len);
  if (r == 0) {
    ews_conn_schedule_flush(c);
    EWS_STAT_ADD(c->net->stats.msgs_out, 1);
  }
  return r;
}

int ews_conn_send(ews_conn_t *c, int opcode, const void *p, size_t n) {
  if (c->state != EWS_CS_OPEN) return EWS_ECLOSED;
  const ews_app_t *app = c->app;
  if (check_backpressure(c, n) != 0) return EWS_EBACKPRESSURE;
  int r;
  if (ews_conn_pmd(c) && n >= app->pmd_cfg.threshold) {
    r = queue_compressed(c, opcode, p, n);
  } else if (direct_ok(c, n)) {
    uint8_t hdr[EWS_FRAME_MAX_HEADER];
    size_t hl = ews_frame_header(hdr, opcode, 1, 0, n, NULL);
    r = send_direct(c, hdr, hl, p, n);
  } else {
    r = ews_conn_queue_frame(c, opcode, p, n);
  }
  if (r == 0) {
    EWS_STAT_ADD(c->net->stats.msgs_out, 1);
  }
  return r;
}

int ews_conn_ping(ews_conn_t *c, const void *p, size_t n) {
  if (c->state != EWS_CS_OPEN) return EWS_ECLOSED;
  if (n > EWS_CONTROL_MAX) return EWS_EINVAL;
  return ews_conn_queue_frame(c, EWS_OP_PING, p, n);
}

void ews_conn_send_close_frame(ews_conn_t *c, unsigned code, const char *reason, size_t len) {
  uint8_t payload[EWS_CONTROL_MAX];
  size_t n = ews_close_build(payload, code, reason, len);
  ews_conn_queue_frame(c, EWS_OP_CLOSE, payload, n);
}

/* ---- flushing ------------------------------------------------------------------- */

static void maybe_finish_draining(ews_conn_t *c) {
  if (c->state != EWS_CS_DRAINING || ews_conn_buffered(c) || (c->flags & EWS_CF_WRITING) ||
      ews_conn_body(c))
    return;
  if (!(c->flags & EWS_CF_SHUT)) {
    /* The queue is empty, so shutdown(2) cannot overtake queued bytes. */
    c->flags |= EWS_CF_SHUT;
    if (c->fd >= 0 && !(c->io & (EWS_IO_CONNECTING | EWS_IO_CLOSED))) shutdown(c->fd, SHUT_WR);
  }
  /* After a completed close handshake the client has nothing more to send: close
   * now (the server closes first, RFC 6455 7.1.1). After a failure or an HTTP
   * answer, linger for the client's FIN so that unread input cannot turn our last
   * bytes into a reset. */
  /* A client waits for the server's FIN (RFC 6455 7.1.1: the server closes first),
   * bounded by the close timeout. */
  uint16_t done = (c->flags & EWS_CF_CLIENT) ? EWS_CF_EOF : (EWS_CF_EOF | EWS_CF_CLOSE_DONE);
  if (c->flags & done) ews_conn_abort(c);
}

/* Encrypts the plaintext queued this iteration into as few records as possible,
 * and the close_notify once the session is over. Returns the queue to write. */
static ews_writeq_t *tls_seal(ews_conn_t *c) {
  ews_tls_t *t = c->tls->tls;
  if (!ews_tls_handshake_done(t)) return &c->tls->out;
  if (c->wq.bytes) {
    int r = ews_tls_write_wq(t, &c->wq);
    ews_conn_tls_rearm(c);
    if (r == EWS_ECLOSED) {
      ews_wq_free(&c->wq);
    } else if (r < 0 && r != EWS_EAGAIN) {
      EWS_DEBUG("conn %llu: TLS write: %s", (unsigned long long)c->id, ews_strerror(r));
      ews_conn_abort(c);
      return NULL;
    }
  }
  if (c->state == EWS_CS_DRAINING && !c->wq.bytes && !ews_conn_body(c) &&
      !(c->flags & EWS_CF_TLS_NOTIFY)) {
    c->flags |= EWS_CF_TLS_NOTIFY;
    ews_tls_close_notify(t);
  }
  return &c->tls->out;
}

static void flush(ews_conn_t *c) {
  /* WRITING: the kernel refused bytes; the poller's EPOLLOUT brings the flush back. */
  if (c->state == EWS_CS_CLOSED || (c->flags & EWS_CF_WRITING)) return;
  /* A client before its connect completed: its connect event schedules the flush. */
  if (c->fd < 0 || (c->io & EWS_IO_CONNECTING)) return;
  /* A static file's body (net/static_files.h) follows the queue: when the queue is
   * empty the body moves on (sendfile); a part of it queued here waits for the
   * socket's next EPOLLOUT, which brings the rest on a later loop turn. */
  int async = 0;
again:;
  ews_writeq_t *q = &c->wq;
  if (c->tls && !(q = tls_seal(c))) return;
  struct iovec iov[64];
  size_t total;
  while (q->bytes && !async) {
    int n = ews_wq_iov(q, iov, 64, &total);
    ssize_t r = sock_writev(c, iov, n);
    if (r == UV_EAGAIN) break;
    if (r < 0) {
      EWS_DEBUG("conn %llu: write error: %s", (unsigned long long)c->id, uv_strerror((int)r));
      ews_conn_abort(c);
      return;
    }
    ews_wq_consume(q, (size_t)r);
    EWS_STAT_ADD(c->net->stats.bytes_out, (uint64_t)r);
    if ((size_t)r < total) break;
  }
  if (q->bytes) {
    /* The socket is full: the rest stays queued until the poller says writable. */
    c->flags |= EWS_CF_WRITING;
    return;
  }
  if (ews_conn_body(c)) {
    int r = ews_static_body_send(c);
    if (r < 0) {
      ews_conn_abort(c);
      return;
    }
    if (r > 0) {
      async = 1;
      goto again;
    }
  }
  maybe_finish_draining(c);
}

void ews_conn_flush(ews_conn_t *c) {
  flush(c);
  /* EPOLLOUT on while WRITING, off otherwise (a no-op when unchanged). */
  if (c->state != EWS_CS_CLOSED && ews_conn_io_update(c) < 0) ews_conn_abort(c);
}
