/* conn.c — one client connection from accept to free (see conn.h for the states).
 *
 * Reads land in the worker's shared read buffer. The request head is parsed in place
 * when it arrives whole (the usual case) and copied only when split across reads.
 * Frames are parsed and unmasked in place by the receiver; a message that arrived as
 * one frame is handed to Lua straight from the read buffer, and only fragmented or
 * split messages are gathered in a per-connection buffer that exists just for that
 * message. Writes are queued and flushed by the worker once per loop iteration. */
#include "net/conn.h"

#include "net/msgmem.h"
#include "net/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "err.h"
#include "log.h"
#include "hub/channels.h"
#include "hub/pubsub.h"
#include "hub/presence.h"
#include "hub/counters.h"
#include "lua/events.h"
#include "net/metrics.h"
#include "lua/tasks.h"
#include "proto/close_codes.h"
#include "proto/handshake.h"
#include "proto/http_head.h"
#include "worker.h"

#define LUA_NOREF_C (-2) /* LUA_NOREF, without lua.h in the net layer */
#define CONN_OF_TNODE(n) ((ews_conn_t *)((char *)(n) - offsetof(ews_conn_t, tnode)))
/* The application layer's close codes for authentication deadlines. */
#define CLOSE_AUTH_TIMEOUT 4408
#define CLOSE_TOKEN_EXPIRED 4403
/* A far deadline (a token valid for years) is re-armed on the wheel in steps. */
#define AUTH_STEP_MS (24u * 3600u * 1000u)

static inline uint32_t now_ms(const ews_conn_t *c) { return (uint32_t)uv_now(&c->w->loop); }

static void schedule_flush(ews_conn_t *c) {
  if (c->flags & EWS_CF_FLUSH_QUEUED) return;
  c->flags |= EWS_CF_FLUSH_QUEUED;
  c->flush_next = c->w->flush_head;
  c->w->flush_head = c;
}

static void schedule_sweep(ews_conn_t *c) {
  if (c->flags & EWS_CF_SWEEP_QUEUED) return;
  c->flags |= EWS_CF_SWEEP_QUEUED;
  c->sweep_next = c->w->sweep_head;
  c->w->sweep_head = c;
}

static void set_timer(ews_conn_t *c, uint32_t delay_ms) {
  ews_wheel_schedule(&c->w->wheel, &c->tnode, delay_ms);
}

static int queue_raw(ews_conn_t *c, const void *a, size_t alen, const void *b, size_t blen) {
  int r = ews_wq_append(&c->wq, &c->w->pool, a, alen, b, blen);
  if (r == 0) schedule_flush(c);
  return r;
}

static int queue_frame(ews_conn_t *c, int opcode, const void *p, size_t n) {
  uint8_t hdr[EWS_FRAME_MAX_HEADER];
  size_t hl = ews_frame_header(hdr, opcode, 1, 0, n, NULL);
  return queue_raw(c, hdr, hl, p, n);
}

/* Compresses one message into the worker's scratch buffer (frame header written in
 * front of the payload without a copy) and queues the frame. */
static int queue_compressed(ews_conn_t *c, int opcode, const void *p, size_t n) {
  ews_pmd_worker_t *pw;
  ews_deflater_t *d;
  int r = ews_app_pmd(c->app, &pw);
  if (r == 0) r = ews_pmd_deflater_for(pw, &c->pmd->params, &c->pmd->own, &d);
  if (r < 0) return r;
  ews_zbuf_t *z = &c->w->zscratch;
  z->len = 0;
  size_t off;
  r = ews_deflate_frame(d, opcode, p, n, z, &off);
  if (r < 0) return r;
  EWS_STAT_ADD(c->w->stats.compressed, 1);
  r = queue_raw(c, z->p + off, z->len - off, NULL, 0);
  if (z->cap > 256 * 1024) ews_zbuf_free(z); /* do not keep a huge scratch */
  return r;
}

/* `in` (the request head, then a message being reassembled or inflated) is charged
 * to the process-wide message memory budget (net/msgmem.h). */
static void free_in(ews_conn_t *c) {
  ews_msgmem_free(c->in, c->in_cap);
  c->in = NULL;
  c->in_len = c->in_cap = 0;
}

static int in_append(ews_conn_t *c, const uint8_t *p, size_t n) {
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

static void set_close_reason(ews_conn_t *c, unsigned code, const char *reason, size_t len) {
  c->close_code = (uint16_t)code;
  free(c->close_reason);
  c->close_reason = NULL;
  c->close_reason_len = 0;
  if (len > 123) len = 123;
  if (len && (c->close_reason = malloc(len))) {
    memcpy(c->close_reason, reason, len);
    c->close_reason_len = (uint8_t)len;
  }
}

static void uncount(ews_conn_t *c) {
  if (c->flags & EWS_CF_COUNTED) {
    c->flags &= (uint16_t)~EWS_CF_COUNTED;
    ews_counter_dec(c->app->total);
  }
  if (c->acct) {
    ews_counter_t *ctr[2] = {c->acct->ip, c->acct->user};
    for (int i = 0; i < 2; i++) {
      if (!ctr[i]) continue;
      ews_counter_dec(ctr[i]);
      ews_counter_put(ctr[i]);
    }
    free(c->acct);
    c->acct = NULL;
  }
}

/* The WebSocket session (or HTTP exchange) is over: flush what is queued, send FIN,
 * discard input until the peer's FIN or the linger timeout, then close. The Lua
 * close event runs at the next sweep. */
static void enter_draining(ews_conn_t *c) {
  if (c->state >= EWS_CS_DRAINING) return;
  c->state = EWS_CS_DRAINING;
  c->since_ms = now_ms(c);
  uncount(c); /* the slot is free as soon as the session ends, not after the linger */
  free_in(c);
  ews_conn_unpause(c);
  set_timer(c, c->w->server->cfg->close_timeout_ms);
  if (c->flags & EWS_CF_OPENED) schedule_sweep(c);
  schedule_flush(c); /* sends FIN once the queue is empty */
}

void ews_conn_abort(ews_conn_t *c) {
  if (c->state == EWS_CS_CLOSED) return;
  /* No close frame came from the peer: RFC 6455 7.1.5 calls that 1006. */
  if (c->state == EWS_CS_OPEN || c->state == EWS_CS_CLOSING)
    set_close_reason(c, EWS_CLOSE_ABNORMAL, NULL, 0);
  c->state = EWS_CS_CLOSED;
  schedule_sweep(c);
}

static void respond_http(ews_conn_t *c, const char *resp, int len) {
  if (len > 0) queue_raw(c, resp, (size_t)len, NULL, 0);
  enter_draining(c);
}

static void count_rejection(ews_conn_t *c, int err) {
  int reason;
  switch (err) {
    case EWS_EORIGIN: reason = EWS_RJ_origin; break;
    case EWS_EFULL: reason = EWS_RJ_max_connections; break;
    case EWS_ELIMIT_IP: reason = EWS_RJ_per_ip; break;
    case EWS_ELIMIT_USER: reason = EWS_RJ_per_user; break;
    case EWS_EAUTH: reason = EWS_RJ_unauthorized; break;
    case EWS_EAUTH_TIMEOUT: reason = EWS_RJ_auth_timeout; break;
    case EWS_ESHUTDOWN: reason = EWS_RJ_shutting_down; break;
    default: reason = EWS_RJ_bad_request;
  }
  EWS_STAT_ADD(c->w->stats.rejected[reason], 1);
}

static void respond_error(ews_conn_t *c, int err) {
  char buf[1024];
  if (err != EWS_EHTTP_NOT_FOUND) count_rejection(c, err);
  int n = ews_write_error(buf, sizeof buf, err);
  EWS_DEBUG("conn %llu: HTTP %d: %s", (unsigned long long)c->id, ews_err_http_status(err),
            ews_strerror(err));
  respond_http(c, buf, n);
}

/* The slow-consumer policy: 0 when n more bytes may be queued, else
 * EWS_EBACKPRESSURE (and, under the "close" policy, the connection is failed). */
static int check_backpressure(ews_conn_t *c, size_t n) {
  const ews_app_t *app = c->app;
  size_t queued = ews_conn_buffered(c);
  if (!queued || queued + n <= app->max_buffered) return 0;
  /* Slow consumer: the queue already holds more than the limit allows. */
  if (app->drop_on_backpressure) return EWS_EBACKPRESSURE;
  EWS_DEBUG("conn %llu: slow consumer (%zu bytes queued), closing 1008",
            (unsigned long long)c->id, queued);
  ews_conn_fail(c, EWS_EBACKPRESSURE, NULL);
  return EWS_EBACKPRESSURE;
}

int ews_conn_send_frame(ews_conn_t *c, ews_buf_t *frame) {
  if (c->state != EWS_CS_OPEN) return EWS_ECLOSED;
  int r = check_backpressure(c, frame->len);
  if (r == 0) r = ews_wq_append_shared(&c->wq, frame, 0, frame->len);
  if (r == 0) {
    schedule_flush(c);
    EWS_STAT_ADD(c->w->stats.msgs_out, 1);
  }
  return r;
}

int ews_conn_send(ews_conn_t *c, int opcode, const void *p, size_t n) {
  if (c->state != EWS_CS_OPEN) return EWS_ECLOSED;
  const ews_app_t *app = c->app;
  if (check_backpressure(c, n) != 0) return EWS_EBACKPRESSURE;
  int r;
  if (c->pmd && n >= app->pmd_cfg.threshold) r = queue_compressed(c, opcode, p, n);
  else r = queue_frame(c, opcode, p, n);
  if (r == 0) {
    EWS_STAT_ADD(c->w->stats.msgs_out, 1);
  }
  return r;
}

int ews_conn_ping(ews_conn_t *c, const void *p, size_t n) {
  if (c->state != EWS_CS_OPEN) return EWS_ECLOSED;
  if (n > EWS_CONTROL_MAX) return EWS_EINVAL;
  return queue_frame(c, EWS_OP_PING, p, n);
}

static void send_close_frame(ews_conn_t *c, unsigned code, const char *reason, size_t len) {
  uint8_t payload[EWS_CONTROL_MAX];
  size_t n = ews_close_build(payload, code, reason, len);
  queue_frame(c, EWS_OP_CLOSE, payload, n);
}

int ews_conn_close(ews_conn_t *c, unsigned code, const char *reason, size_t len) {
  if (c->state != EWS_CS_OPEN) return EWS_ECLOSED;
  send_close_frame(c, code, reason, len);
  set_close_reason(c, code ? code : EWS_CLOSE_NO_STATUS, reason, len);
  c->state = EWS_CS_CLOSING;
  c->since_ms = now_ms(c);
  set_timer(c, c->w->server->cfg->close_timeout_ms);
  return 0;
}

void ews_conn_fail(ews_conn_t *c, int err, const char *reason) {
  if (!reason) reason = ews_strerror(err);
  switch (c->state) {
    case EWS_CS_HEAD:
      if (ews_err_http_status(err)) respond_error(c, err);
      else enter_draining(c);
      return;
    case EWS_CS_OPEN: {
      int code = ews_err_close_code(err);
      if (code == 0 || code == EWS_CLOSE_ABNORMAL) code = EWS_CLOSE_INTERNAL;
      EWS_DEBUG("conn %llu: failing with %d: %s", (unsigned long long)c->id, code, reason);
      send_close_frame(c, (unsigned)code, reason, strlen(reason));
      set_close_reason(c, (unsigned)code, reason, strlen(reason));
      enter_draining(c);
      return;
    }
    case EWS_CS_CLOSING:
      enter_draining(c);
      return;
    default:
      return;
  }
}

void ews_conn_pause(ews_conn_t *c) {
  if (c->flags & EWS_CF_PAUSED) return;
  c->flags |= EWS_CF_PAUSED;
  uv_read_stop((uv_stream_t *)&c->tcp);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

void ews_conn_unpause(ews_conn_t *c) {
  if (!(c->flags & EWS_CF_PAUSED)) return;
  c->flags &= (uint16_t)~EWS_CF_PAUSED;
  c->last_rx_ms = now_ms(c);
  /* Draining reads too: it must see the client's FIN to let go early. */
  if (c->state < EWS_CS_CLOSED && !(c->flags & EWS_CF_EOF))
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* The frame limits of an open connection: an app with first-message auth holds a
 * connection that has not authenticated yet to its small auth limit. */
static const ews_rx_config_t *rx_config(const ews_conn_t *c, int authenticated) {
  const ews_app_t *a = c->app;
  if (a->auth_max_message && !authenticated) return c->pmd ? &a->rx_auth_pmd : &a->rx_auth;
  return c->pmd ? &a->rx_pmd : &a->rx;
}

void ews_conn_authenticated(ews_conn_t *c) {
  if (!c->app || !c->app->auth_max_message || c->state == EWS_CS_HEAD) return;
  /* Read at the next frame header; a message in progress is held to the new limit. */
  c->rx.cfg = rx_config(c, 1);
  if (c->pmd) ews_inflater_set_limit(&c->pmd->inf, c->app->rx.max_message);
}

int ews_conn_auth_deadline(ews_conn_t *c, int kind, uint64_t delay_ms) {
  if (c->state != EWS_CS_OPEN) return EWS_ECLOSED;
  if (kind == EWS_AUTH_DL_NONE) {
    if (c->acct) {
      c->acct->auth_kind = EWS_AUTH_DL_NONE;
      if (!c->acct->ip && !c->acct->user) {
        free(c->acct);
        c->acct = NULL;
      }
    }
    return 0; /* the wheel node fires as planned and finds nothing to do */
  }
  if (!c->acct && !(c->acct = calloc(1, sizeof *c->acct))) return EWS_ENOMEM;
  /* The loop's cached time may be a long iteration old (10,000 refreshes in one
   * read): a deadline measured from it would come early. */
  uv_update_time(&c->w->loop);
  uint64_t now = uv_now(&c->w->loop);
  c->acct->auth_kind = (uint8_t)kind;
  c->acct->auth_due_ms = delay_ms > UINT64_MAX - now ? UINT64_MAX : now + delay_ms;
  ews_wheel_schedule_min(&c->w->wheel, &c->tnode,
                         delay_ms < AUTH_STEP_MS ? (uint32_t)delay_ms : AUTH_STEP_MS);
  return 0;
}

/* An OPEN connection's authentication deadline: 0 when it passed (the connection is
 * then closing), else the milliseconds until the wheel should look again. */
static uint32_t check_auth_deadline(ews_conn_t *c) {
  ews_acct_t *a = c->acct;
  if (!a || a->auth_kind == EWS_AUTH_DL_NONE) return UINT32_MAX;
  uint64_t now = uv_now(&c->w->loop);
  if (now < a->auth_due_ms) {
    uint64_t left = a->auth_due_ms - now;
    return left < AUTH_STEP_MS ? (uint32_t)left : AUTH_STEP_MS;
  }
  static const char expired[] = "token expired", late[] = "authentication timeout";
  int expiry = a->auth_kind == EWS_AUTH_DL_EXPIRY;
  a->auth_kind = EWS_AUTH_DL_NONE;
  EWS_STAT_ADD(c->w->stats.lua[expiry ? EWS_LC_auth_expired : EWS_LC_auth_failures], 1);
  EWS_DEBUG("conn %llu: %s", (unsigned long long)c->id, expiry ? expired : late);
  if (expiry) ews_conn_close(c, CLOSE_TOKEN_EXPIRED, expired, sizeof expired - 1);
  else ews_conn_close(c, CLOSE_AUTH_TIMEOUT, late, sizeof late - 1);
  return 0;
}

void ews_conn_shutdown(ews_conn_t *c) {
  if (c->state == EWS_CS_HEAD) {
    ews_conn_abort(c);
  } else if (c->state == EWS_CS_OPEN) {
    static const char why[] = "server shutting down";
    ews_conn_close(c, EWS_CLOSE_GOING_AWAY, why, sizeof why - 1);
  }
}

/* ---- timers ---------------------------------------------------------------- */

void ews_conn_on_timer(ews_tnode_t *node, void *ud) {
  (void)ud;
  ews_conn_t *c = CONN_OF_TNODE(node);
  const ews_config_t *cfg = c->w->server->cfg;
  uint32_t now = now_ms(c);
  uint32_t in_state = now - c->since_ms;
  switch (c->state) {
    case EWS_CS_HEAD:
      if (c->flags & EWS_CF_AUTHING) {
        if (in_state >= c->app->auth_timeout_ms) respond_error(c, EWS_EAUTH_TIMEOUT);
        else set_timer(c, c->app->auth_timeout_ms - in_state);
        return;
      }
      if (in_state >= cfg->handshake_timeout_ms) {
        int tls_pending = c->tls && !ews_tls_handshake_done(c->tls->tls);
        EWS_DEBUG("conn %llu: %s timeout", (unsigned long long)c->id,
                  tls_pending ? "TLS handshake" : "request head");
        if (tls_pending) ews_conn_abort(c); /* no 408 without TLS */
        else respond_error(c, EWS_EHTTP_TIMEOUT);
      } else {
        set_timer(c, cfg->handshake_timeout_ms - in_state);
      }
      return;
    case EWS_CS_OPEN: {
      const ews_app_t *app = c->app;
      uint32_t next = check_auth_deadline(c);
      if (next == 0) return;
      if (c->flags & EWS_CF_PAUSED) { /* we are not reading: neither idle nor deaf */
        c->last_rx_ms = now;
        c->flags &= (uint16_t)~EWS_CF_PING_OUT;
      }
      uint32_t idle = now - c->last_rx_ms;
      if (app->idle_timeout_ms && idle >= app->idle_timeout_ms) {
        static const char why[] = "idle timeout";
        EWS_DEBUG("conn %llu: idle timeout", (unsigned long long)c->id);
        ews_conn_close(c, EWS_CLOSE_GOING_AWAY, why, sizeof why - 1);
        return;
      }
      if (app->idle_timeout_ms && app->idle_timeout_ms - idle < next)
        next = app->idle_timeout_ms - idle;
      if (app->heartbeat_interval_ms) {
        if (c->flags & EWS_CF_PING_OUT) {
          uint32_t waited = now - c->ping_ms;
          if (waited >= app->heartbeat_timeout_ms) {
            EWS_DEBUG("conn %llu: no pong within %u ms", (unsigned long long)c->id,
                      app->heartbeat_timeout_ms);
            ews_conn_fail(c, EWS_ETIMEDOUT, "ping timeout");
            return;
          }
          if (app->heartbeat_timeout_ms - waited < next) next = app->heartbeat_timeout_ms - waited;
        } else if (idle >= app->heartbeat_interval_ms) {
          /* Ping only a quiet peer: traffic already proves it is alive. */
          queue_frame(c, EWS_OP_PING, NULL, 0);
          c->flags |= EWS_CF_PING_OUT;
          c->ping_ms = now;
          if (app->heartbeat_timeout_ms < next) next = app->heartbeat_timeout_ms;
        } else if (app->heartbeat_interval_ms - idle < next) {
          next = app->heartbeat_interval_ms - idle;
        }
      }
      if (next != UINT32_MAX) set_timer(c, next);
      return;
    }
    case EWS_CS_CLOSING:
    case EWS_CS_DRAINING:
      if (in_state >= cfg->close_timeout_ms) {
        EWS_DEBUG("conn %llu: close timeout", (unsigned long long)c->id);
        ews_conn_abort(c);
      } else {
        set_timer(c, cfg->close_timeout_ms - in_state);
      }
      return;
    default:
      return;
  }
}

/* ---- frames in ------------------------------------------------------------- */

static void deliver_in(ews_conn_t *c, int opcode) {
  EWS_STAT_ADD(c->w->stats.msgs_in, 1);
  ews_lua_on_message(c, c->in ? c->in : (const uint8_t *)"", c->in_len, opcode == EWS_OP_BINARY);
  /* An idle connection holds no buffer: with glibc's trimming off (main.c), the
   * next message's malloc is cheap. */
  free_in(c);
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
    r = ews_inflate(&c->pmd->inf, pw, p, n, first, last, opcode == EWS_OP_TEXT, &out);
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
    EWS_STAT_ADD(c->w->stats.msgs_in, 1);
    ews_lua_on_message(c, p, n, opcode == EWS_OP_BINARY);
  } else {
    int r = n ? in_append(c, p, n) : 0;
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
      if (c->state == EWS_CS_OPEN) queue_frame(c, EWS_OP_PONG, p, n);
      return 0;
    case EWS_OP_PONG:
      return 0;
    case EWS_OP_CLOSE: {
      unsigned code;
      const uint8_t *reason;
      size_t rlen;
      if (ews_close_parse(p, n, &code, &reason, &rlen) != 0) return EWS_ECLOSE_CODE;
      if (c->state == EWS_CS_OPEN) {
        /* Echo the status code (RFC 6455 5.5.1); an empty close gets an empty one. */
        uint8_t echo[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        queue_frame(c, EWS_OP_CLOSE, echo, n ? 2 : 0);
      }
      set_close_reason(c, code, (const char *)reason, rlen);
      c->flags |= EWS_CF_CLOSE_DONE;
      enter_draining(c);
      return EWS_ESTOPPED;
    }
    default:
      return 0;
  }
}

static const ews_rx_handler_t rx_handler = {on_data, on_control};

static void feed_frames(ews_conn_t *c, uint8_t *p, size_t n) {
  c->last_rx_ms = now_ms(c);
  c->flags &= (uint16_t)~EWS_CF_PING_OUT;
  int r = ews_rx_feed(&c->rx, p, n, &rx_handler, c);
  if (r < 0 && r != EWS_ESTOPPED) {
    EWS_DEBUG("conn %llu: %s", (unsigned long long)c->id, ews_strerror(r));
    ews_conn_fail(c, r, NULL);
  }
}

/* ---- request head and upgrade ---------------------------------------------- */

static int path_is(const ews_http_request_t *req, const char *path) {
  size_t n = strlen(path);
  return req->path_len == n && memcmp(req->path, path, n) == 0;
}

static void respond_metrics(ews_conn_t *c) {
  char *body = NULL;
  size_t bl = 0;
  if (ews_metrics_text(c->w->server, &body, &bl) != 0) {
    respond_error(c, EWS_ENOMEM);
    return;
  }
  size_t cap = bl + 512;
  char *resp = malloc(cap);
  int n = resp ? ews_write_response(resp, cap, 200, NULL, "text/plain; version=0.0.4", body, bl) : -1;
  respond_http(c, resp, n);
  free(resp);
  free(body);
}

static void respond_health(ews_conn_t *c) {
  ews_worker_t *w = c->w;
  char body[256], resp[512];
  struct timeval tv;
  gettimeofday(&tv, NULL);
  uint64_t now = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
  uint64_t up = now > w->server->started_ms ? now - w->server->started_ms : 0;
  int bl = snprintf(body, sizeof body,
                    "{\"status\":\"%s\",\"uptime\":%llu,\"workers\":%d,\"connections\":%u,"
                    "\"worker\":%d}",
                    w->stopping ? "draining" : "ok", (unsigned long long)(up / 1000),
                    w->server->nworkers, __atomic_load_n(&w->server->nconns, __ATOMIC_RELAXED),
                    w->id);
  int n = ews_write_response(resp, sizeof resp, w->stopping ? 503 : 200, NULL,
                             "application/json", body, (size_t)bl);
  respond_http(c, resp, n);
}

static void respond_json(ews_conn_t *c, int status, const char *error, const char *msg) {
  char body[512], resp[1024];
  /* msg comes from the app's authenticator: keep the JSON valid whatever it holds. */
  char clean[300];
  size_t j = 0;
  for (const char *p = msg ? msg : ""; *p && j < sizeof clean - 1; p++)
    clean[j++] = (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) ? ' ' : *p;
  clean[j] = 0;
  int bl = snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":\"%s\"}", error, clean);
  int n = ews_write_response(resp, sizeof resp, status, NULL, "application/json", body,
                             (size_t)bl);
  EWS_DEBUG("conn %llu: HTTP %d: %s", (unsigned long long)c->id, status, clean);
  respond_http(c, resp, n);
}

/* Browsers always send Origin, so a cross-site page cannot hide it; a request
 * without one comes from a non-browser client, which the allow-list is not about. */
static int origin_allowed(const ews_app_t *app, const char *origin, size_t len) {
  if (!app->n_origins || !origin) return 1;
  for (size_t i = 0; i < app->n_origins; i++) {
    const char *o = app->origins[i];
    if (!strcmp(o, "*")) return 1;
    if (origin && strlen(o) == len && strncasecmp(o, origin, len) == 0) return 1;
  }
  return 0;
}

static void peer_addr(ews_conn_t *c, char *ip, size_t cap, int *port) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  *port = 0;
  snprintf(ip, cap, "?");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&ss, ip, cap);
    *port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  } else {
    uv_ip4_name((struct sockaddr_in *)&ss, ip, cap);
    *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
}

/* Counts the connection in a per-IP or per-user counter of its app; 0 or err. */
static int count_in(ews_conn_t *c, ews_counter_t **slot, const char *kind, const char *id,
                    uint32_t limit, int err) {
  char key[512];
  int kl = snprintf(key, sizeof key, "%s:%s:%s", kind, c->app->path, id);
  if (kl < 0 || (size_t)kl >= sizeof key) kl = sizeof key - 1;
  ews_counter_t *ctr = ews_counter_get(key, (size_t)kl);
  if (!ctr) return EWS_ENOMEM;
  if (!ews_counter_inc(ctr, limit)) {
    ews_counter_put(ctr);
    return err;
  }
  *slot = ctr;
  return 0;
}


static void free_pending(ews_conn_t *c) {
  if (!c->pend) return;
  if (c->pend->user_ref != LUA_NOREF_C) ews_lua_unref(c->w, c->pend->user_ref);
  free(c->pend->resp);
  free(c->pend->rest);
  free(c->pend->proto);
  free(c->pend);
  c->pend = NULL;
}

/* The 101 goes out and the WebSocket session starts. */
static void finish_upgrade(ews_conn_t *c) {
  ews_pending_t *pd = c->pend;
  ews_worker_t *w = c->w;
  c->flags &= (uint16_t)~EWS_CF_AUTHING;
  if (queue_raw(c, pd->resp, pd->resp_len, NULL, 0) != 0) {
    ews_conn_abort(c);
    return;
  }
  c->state = EWS_CS_OPEN;
  c->since_ms = c->last_rx_ms = c->ping_ms = now_ms(c);
  ews_rx_init(&c->rx, rx_config(c, 0));
  ews_wheel_cancel(&w->wheel, &c->tnode);
  ews_conn_on_timer(&c->tnode, NULL); /* arms idle/heartbeat deadlines */
  int user_ref = pd->user_ref;
  pd->user_ref = LUA_NOREF_C;
  uint8_t *rest = pd->rest;
  size_t rest_len = pd->rest_len;
  pd->rest = NULL;
  char *proto = pd->proto;
  pd->proto = NULL;
  free_pending(c);
  ews_conn_unpause(c);
  ews_lua_on_open(c, proto, user_ref);
  free(proto);
  if (rest_len && c->state == EWS_CS_OPEN) feed_frames(c, rest, rest_len);
  free(rest);
}

int ews_conn_count_user(ews_conn_t *c, const char *user_id) {
  if (!c->app || !c->app->max_per_user) return 0;
  if (!c->acct && !(c->acct = calloc(1, sizeof *c->acct))) return EWS_ENOMEM;
  if (c->acct->user) return 0; /* counted already (a refresh) */
  return count_in(c, &c->acct->user, "user", user_id, c->app->max_per_user, EWS_ELIMIT_USER);
}

void ews_conn_auth_done(ews_conn_t *c, int ok, int user_ref, const char *user_id, int status,
                        const char *msg) {
  if (c->state != EWS_CS_HEAD || !c->pend || !(c->flags & EWS_CF_AUTHING)) {
    if (user_ref != LUA_NOREF_C) ews_lua_unref(c->w, user_ref);
    return;
  }
  if (!ok) {
    if (status != 403) status = 401;
    count_rejection(c, EWS_EAUTH);
    respond_json(c, status, status == 403 ? "forbidden" : "unauthorized",
                 msg ? msg : "authentication failed");
    return;
  }
  c->pend->user_ref = user_ref;
  if (user_id && c->app->max_per_user) {
    if (!c->acct && !(c->acct = calloc(1, sizeof *c->acct))) {
      ews_conn_abort(c);
      return;
    }
    int r = count_in(c, &c->acct->user, "user", user_id, c->app->max_per_user, EWS_ELIMIT_USER);
    if (r < 0) {
      respond_error(c, r);
      return;
    }
  }
  finish_upgrade(c);
}

/* Handles a complete request head; `rest` are the bytes that followed it. */
static void on_request(ews_conn_t *c, const ews_http_request_t *req, uint8_t *rest,
                       size_t rest_len) {
  ews_worker_t *w = c->w;
  const ews_config_t *cfg = w->server->cfg;
  /* /health and /metrics: on the admin listener when there is one, else here. */
  int admin_here = (c->flags & EWS_CF_ADMIN) || cfg->admin_port < 0;
  int is_get = req->method_len == 3 && !memcmp(req->method, "GET", 3);
  if (admin_here && is_get && cfg->health && path_is(req, "/health")) {
    respond_health(c);
    return;
  }
  if (admin_here && is_get && cfg->metrics && path_is(req, "/metrics")) {
    respond_metrics(c);
    return;
  }
  if (c->flags & EWS_CF_ADMIN) {
    respond_error(c, EWS_EHTTP_NOT_FOUND);
    return;
  }
  if (!ews_is_upgrade(req)) {
    if (ews_routes_find(&w->routes, req->path, req->path_len))
      respond_error(c, EWS_EHTTP_UPGRADE);
    else
      respond_error(c, EWS_EHTTP_NOT_FOUND);
    return;
  }
  ews_app_t *app = ews_routes_find(&w->routes, req->path, req->path_len);
  if (!app) {
    respond_error(c, EWS_EHTTP_NOT_FOUND);
    return;
  }
  ews_upgrade_t up;
  int r = ews_upgrade_check(req, &up);
  if (r != 0) {
    respond_error(c, r);
    return;
  }
  if (w->stopping) {
    respond_error(c, EWS_ESHUTDOWN);
    return;
  }
  /* Cross-site WebSocket hijacking: only listed origins (browsers always send one). */
  if (!origin_allowed(app, up.origin, up.origin_len)) {
    respond_error(c, EWS_EORIGIN);
    return;
  }
  ews_app_ref(app);
  c->app = app;
  ews_pending_t *pd = c->pend = calloc(1, sizeof *c->pend);
  if (!pd) {
    ews_conn_abort(c);
    return;
  }
  pd->user_ref = LUA_NOREF_C;
  peer_addr(c, pd->ip, sizeof pd->ip, &pd->port);
  /* Limits across all workers, answered before the upgrade. */
  if (!ews_counter_inc(app->total, app->max_connections)) {
    respond_error(c, EWS_EFULL);
    return;
  }
  c->flags |= EWS_CF_COUNTED;
  if (app->max_per_ip) {
    if (!(c->acct = calloc(1, sizeof *c->acct))) {
      ews_conn_abort(c);
      return;
    }
    if ((r = count_in(c, &c->acct->ip, "ip", pd->ip, app->max_per_ip, EWS_ELIMIT_IP)) < 0) {
      respond_error(c, r);
      return;
    }
  }
  const char *sel;
  size_t sel_len;
  r = ews_select_protocol(up.protocols, up.protocols_len, (const char *const *)app->protocols,
                          app->n_protocols, app->token_prefix, &sel, &sel_len);
  if (r != 0) {
    respond_error(c, r);
    return;
  }
  if (sel && !(pd->proto = strndup(sel, sel_len))) {
    ews_conn_abort(c);
    return;
  }
  char accept[EWS_ACCEPT_LEN + 1];
  if (ews_accept_key(up.key, up.key_len, accept) != 0) {
    respond_error(c, EWS_EHTTP_WS_KEY);
    return;
  }
  char ext[EWS_PMD_RESPONSE_MAX];
  int ext_len = 0;
  ews_pmd_params_t params;
  if (app->pmd_cfg.enabled && up.extensions) {
    /* RFC 6455 allows the header on several lines: negotiate over all of them. */
    char joined[2048];
    const char *offers = up.extensions;
    size_t offers_len = up.extensions_len;
    if (ews_http_header_count(req, "Sec-WebSocket-Extensions") > 1) {
      size_t jl = 0;
      for (size_t i = 0; i < req->num_headers; i++) {
        const ews_http_header_t *h = &req->headers[i];
        if (h->name_len != 24 || strncasecmp(h->name, "Sec-WebSocket-Extensions", 24)) continue;
        if (jl + h->value_len + 2 > sizeof joined) break;
        if (jl) joined[jl++] = ',';
        memcpy(joined + jl, h->value, h->value_len);
        jl += h->value_len;
      }
      offers = joined;
      offers_len = jl;
    }
    ext_len = ews_pmd_negotiate(&app->pmd_cfg, offers, offers_len, &params, ext, sizeof ext);
    if (ext_len < 0) ext_len = 0;
  }
  if (ext_len > 0) {
    c->pmd = calloc(1, sizeof *c->pmd);
    if (!c->pmd) {
      ews_conn_abort(c);
      return;
    }
    c->pmd->params = params;
    ews_inflater_init(&c->pmd->inf, &params,
                      app->auth_max_message ? app->rx_auth.max_message : app->rx.max_message);
  }
  size_t cap = 256 + sel_len + (size_t)(ext_len > 0 ? ext_len : 0);
  pd->resp = malloc(cap);
  int n = pd->resp ? ews_write_101(pd->resp, cap, accept, pd->proto, sel_len,
                                   ext_len > 0 ? ext : NULL, (size_t)(ext_len > 0 ? ext_len : 0))
                   : EWS_ENOMEM;
  pd->rest = rest_len ? malloc(rest_len) : NULL;
  if (n <= 0 || (rest_len && !pd->rest)) {
    ews_conn_abort(c);
    return;
  }
  pd->resp_len = (size_t)n;
  if (rest_len) memcpy(pd->rest, rest, rest_len);
  pd->rest_len = rest_len;
  if (!app->has_auth) {
    finish_upgrade(c);
    return;
  }
  /* The app's authenticator (Lua, possibly waiting) decides; no reading meanwhile. */
  c->flags |= EWS_CF_AUTHING;
  c->since_ms = now_ms(c);
  set_timer(c, app->auth_timeout_ms);
  ews_conn_pause(c);
  ews_lua_authenticate(c, req, pd->ip, pd->port);
}

static void on_head_bytes(ews_conn_t *c, uint8_t *p, size_t n) {
  const ews_config_t *cfg = c->w->server->cfg;
  ews_http_limits_t lim = {cfg->max_head, cfg->max_headers};
  ews_http_request_t req;
  uint8_t *data = p, *owned = NULL;
  size_t len = n;
  size_t owned_cap = 0;
  if (c->in_len) {
    /* The head was split across reads: parse the accumulated copy. */
    if (in_append(c, p, n) != 0) {
      ews_conn_abort(c);
      return;
    }
    data = owned = c->in;
    len = c->in_len;
  }
  int r = ews_http_parse((const char *)data, len, &lim, &req);
  if (r == 0) {
    if (!owned && in_append(c, p, n) != 0) ews_conn_abort(c);
    return;
  }
  /* Detach the head buffer: the bytes after the head may be frames, and `in` is
   * about to be reused for message reassembly. */
  if (owned) {
    owned_cap = c->in_cap;
    c->in = NULL;
    c->in_len = c->in_cap = 0;
  }
  if (r < 0) respond_error(c, r);
  else on_request(c, &req, data + r, len - (size_t)r);
  ews_msgmem_free(owned, owned_cap);
}

/* ---- libuv callbacks ------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  ews_conn_t *c = h->data;
  /* TLS keeps room at the front for an unfinished record from the last read. */
  size_t off = c->tls ? ews_tls_read_reserve(c->tls->tls) : 0;
  buf->base = (char *)c->w->rbuf + off;
  buf->len = EWS_READ_BUF - off;
}

/* Turns ciphertext that landed in the read buffer into plaintext at its start.
 * Returns 1 with *p and *n set when there is plaintext (maybe none) to process, 0 when
 * the read was all handshake or the connection failed. */
static int tls_unwrap(ews_conn_t *c, size_t nread, uint8_t **p, size_t *n, int *eof) {
  size_t plain = 0;
  int r = ews_tls_read(c->tls->tls, c->w->rbuf, nread, &plain);
  if (c->tls->out.bytes) schedule_flush(c);
  *p = c->w->rbuf;
  *n = plain;
  *eof = r == EWS_ECLOSED;
  if (r == 0 || r == EWS_ECLOSED) return 1;
  if (r == EWS_EAGAIN) return 0;
  char why[256];
  EWS_DEBUG("conn %llu: TLS: %s", (unsigned long long)c->id,
            ews_tls_reason(c->tls->tls, why, sizeof why));
  /* Let the alert (if any) go out, then close. */
  if (c->state == EWS_CS_OPEN || c->state == EWS_CS_CLOSING)
    set_close_reason(c, EWS_CLOSE_ABNORMAL, NULL, 0);
  ews_wq_free(&c->wq);
  c->flags |= EWS_CF_EOF | EWS_CF_TLS_NOTIFY;
  enter_draining(c);
  return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  ews_conn_t *c = s->data;
  if (nread < 0) {
    if (nread != UV_EOF)
      EWS_DEBUG("conn %llu: read error: %s", (unsigned long long)c->id, uv_strerror((int)nread));
    c->flags |= EWS_CF_EOF;
    uv_read_stop(s);
    /* Draining: let the queued bytes (a close echo, an HTTP answer) go out first. */
    if (c->state == EWS_CS_DRAINING && nread == UV_EOF) schedule_flush(c);
    else ews_conn_abort(c);
    return;
  }
  if (nread == 0) return;
  EWS_STAT_ADD(c->w->stats.bytes_in, (uint64_t)nread);
  uint8_t *p = (uint8_t *)buf->base;
  size_t n = (size_t)nread;
  int tls_eof = 0;
  if (c->tls && c->state < EWS_CS_DRAINING && !tls_unwrap(c, n, &p, &n, &tls_eof)) return;
  if (n) switch (c->state) {
    case EWS_CS_HEAD:
      on_head_bytes(c, p, n);
      break;
    case EWS_CS_OPEN:
    case EWS_CS_CLOSING:
      feed_frames(c, p, n);
      break;
    default:
      break; /* draining: discard until EOF */
  }
  if (tls_eof) {
    /* close_notify: like a FIN (our close_notify answer is already queued). */
    c->flags |= EWS_CF_EOF | EWS_CF_TLS_NOTIFY;
    if (c->state == EWS_CS_DRAINING) schedule_flush(c);
    else ews_conn_abort(c);
  }
}

static void on_closed(uv_handle_t *h) {
  ews_conn_t *c = h->data;
  ews_worker_t *w = c->w;
  if (c->task) ews_task_detach(c->task);
  ews_chan_drop_conn(w, c);
  ews_pubsub_drop_conn(w, c);
  ews_presence_drop_conn(c->id);
  if (c->prev) c->prev->next = c->next;
  else w->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  uncount(c);
  free_pending(c);
  ews_wq_free(&c->wq);
  if (c->tls) {
    ews_tls_free(c->tls->tls);
    ews_wq_free(&c->tls->out);
    free(c->tls);
  }
  ews_rx_free(&c->rx);
  if (c->pmd) {
    ews_inflater_free(&c->pmd->inf, c->app ? c->app->pmd : NULL);
    ews_deflater_free(c->pmd->own);
    free(c->pmd);
  }
  free_in(c);
  free(c->close_reason);
  if (c->app) ews_app_unref(c->app);
  free(c);
  EWS_STAT_ADD(w->nconns, -1);
  __atomic_sub_fetch(&w->server->nconns, 1, __ATOMIC_RELAXED);
  ews_worker_conn_closed(w);
}

static void on_write(uv_write_t *req, int status) {
  ews_conn_t *c = req->handle->data;
  size_t total = (size_t)(uintptr_t)req->data;
  free(req);
  c->flags &= (uint16_t)~EWS_CF_WRITING;
  if (status == UV_ECANCELED) return; /* handle closing */
  if (status < 0) {
    EWS_DEBUG("conn %llu: write error: %s", (unsigned long long)c->id, uv_strerror(status));
    ews_conn_abort(c);
    return;
  }
  ews_wq_consume(c->tls ? &c->tls->out : &c->wq, total);
  EWS_STAT_ADD(c->w->stats.bytes_out, total);
  schedule_flush(c);
}

static void maybe_finish_draining(ews_conn_t *c) {
  if (c->state != EWS_CS_DRAINING || ews_conn_buffered(c) || (c->flags & EWS_CF_WRITING)) return;
  if (!(c->flags & EWS_CF_SHUT)) {
    /* The queue is empty and nothing is in flight, so a direct shutdown(2) cannot
     * overtake queued bytes; it saves a uv_shutdown_t per connection. */
    uv_os_fd_t fd;
    c->flags |= EWS_CF_SHUT;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) shutdown(fd, SHUT_WR);
  }
  /* After a completed close handshake the client has nothing more to send: close
   * now (the server closes first, RFC 6455 7.1.1). After a failure or an HTTP
   * answer, linger for the client's FIN so that unread input cannot turn our last
   * bytes into a reset. */
  if (c->flags & (EWS_CF_EOF | EWS_CF_CLOSE_DONE)) ews_conn_abort(c);
}

/* Encrypts the plaintext queued this iteration into as few records as possible,
 * and the close_notify once the session is over. Returns the queue to write. */
static ews_writeq_t *tls_seal(ews_conn_t *c) {
  ews_tls_t *t = c->tls->tls;
  if (!ews_tls_handshake_done(t)) return &c->tls->out;
  if (c->wq.bytes) {
    int r = ews_tls_write_wq(t, &c->wq);
    if (r == EWS_ECLOSED) {
      ews_wq_free(&c->wq);
    } else if (r < 0 && r != EWS_EAGAIN) {
      EWS_DEBUG("conn %llu: TLS write: %s", (unsigned long long)c->id, ews_strerror(r));
      ews_conn_abort(c);
      return NULL;
    }
  }
  if (c->state == EWS_CS_DRAINING && !c->wq.bytes && !(c->flags & EWS_CF_TLS_NOTIFY)) {
    c->flags |= EWS_CF_TLS_NOTIFY;
    ews_tls_close_notify(t);
  }
  return &c->tls->out;
}

void ews_conn_flush(ews_conn_t *c) {
  if (c->state == EWS_CS_CLOSED || (c->flags & EWS_CF_WRITING)) return;
  ews_writeq_t *q = &c->wq;
  if (c->tls && !(q = tls_seal(c))) return;
  struct iovec iov[64];
  size_t total;
  while (q->bytes) {
    int n = ews_wq_iov(q, iov, 64, &total);
    int r = uv_try_write((uv_stream_t *)&c->tcp, (const uv_buf_t *)iov, (unsigned)n);
    if (r == UV_EAGAIN) break;
    if (r < 0) {
      EWS_DEBUG("conn %llu: write error: %s", (unsigned long long)c->id, uv_strerror(r));
      ews_conn_abort(c);
      return;
    }
    ews_wq_consume(q, (size_t)r);
    EWS_STAT_ADD(c->w->stats.bytes_out, (uint64_t)r);
    if ((size_t)r < total) break;
  }
  if (q->bytes) {
    /* The socket is full: hand the rest to libuv, which writes when it can. */
    uv_write_t *req = malloc(sizeof *req);
    if (!req) {
      ews_conn_abort(c);
      return;
    }
    int n = ews_wq_iov(q, iov, 64, &total);
    req->data = (void *)(uintptr_t)total;
    int r = uv_write(req, (uv_stream_t *)&c->tcp, (const uv_buf_t *)iov, (unsigned)n, on_write);
    if (r < 0) {
      free(req);
      ews_conn_abort(c);
      return;
    }
    c->flags |= EWS_CF_WRITING;
    return;
  }
  maybe_finish_draining(c);
}

void ews_conn_sweep(ews_conn_t *c) {
  if ((c->flags & EWS_CF_OPENED) && !(c->flags & EWS_CF_CLOSE_EVENT) &&
      c->state >= EWS_CS_DRAINING) {
    c->flags |= EWS_CF_CLOSE_EVENT;
    ews_lua_on_close(c);
  }
  if (c->state == EWS_CS_CLOSED && !uv_is_closing((uv_handle_t *)&c->tcp)) {
    ews_wheel_cancel(&c->w->wheel, &c->tnode);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
  }
}

int ews_conn_accept(ews_worker_t *w, uv_stream_t *listener, ews_tls_ctx_t *tls, int admin) {
  ews_conn_t *c = calloc(1, sizeof *c);
  if (!c) return EWS_ENOMEM;
  if (admin) c->flags |= EWS_CF_ADMIN;
  if (tls) {
    c->tls = calloc(1, sizeof *c->tls);
    if (c->tls) c->tls->tls = ews_tls_new(tls, &c->tls->out, &w->pool);
    if (!c->tls || !c->tls->tls) {
      free(c->tls);
      free(c);
      return EWS_ENOMEM;
    }
  }
  int r = uv_tcp_init(&w->loop, &c->tcp);
  if (r < 0) {
    if (c->tls) {
      ews_tls_free(c->tls->tls);
      free(c->tls);
    }
    free(c);
    EWS_DEBUG("accept: %s", uv_strerror(r));
    return EWS_EIO;
  }
  c->tcp.data = c;
  c->w = w;
  c->sock_ref = -2; /* LUA_NOREF */
  c->id = (++w->conn_seq << 8) | (uint64_t)(w->id & 0xff);
  c->next = w->conns;
  if (w->conns) w->conns->prev = c;
  w->conns = c;
  EWS_STAT_ADD(w->nconns, 1);
  EWS_STAT_ADD(w->stats.conns_total, 1);
  __atomic_add_fetch(&w->server->nconns, 1, __ATOMIC_RELAXED);
  r = uv_accept(listener, (uv_stream_t *)&c->tcp);
  if (r == 0) r = uv_tcp_nodelay(&c->tcp, 1);
  if (r == 0) r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (r < 0) {
    c->state = EWS_CS_CLOSED;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    EWS_DEBUG("accept: %s", uv_strerror(r));
    return EWS_EIO;
  }
  c->since_ms = now_ms(c);
  set_timer(c, w->server->cfg->handshake_timeout_ms);
  return 0;
}
