/* conn.c — a connection's lifecycle (see conn.h for the states): accept, the close
 * handshake, failing and aborting, the sweep and the free, close hooks, and the
 * deadlines on the loop's timer wheel (handshake, authentication, idle, heartbeat,
 * close). Reading is conn_rx.c, writing conn_tx.c, the request head http.c and the
 * upgrade upgrade.c; the socket's registration on the loop's poller is here
 * (ews_conn_io_update, ews_conn_on_io). */
#include "net/conn_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "net/static_files.h"
#include "net/client.h"
#include "net/connlog.h"
#include "net/tls.h"
#include "proto/close_codes.h"
#include "stat.h"

#define CONN_OF_TNODE(n) ((ews_conn_t *)((char *)(n) - offsetof(ews_conn_t, tnode)))
/* The application layer's close codes for authentication deadlines. */
#define CLOSE_AUTH_TIMEOUT 4408
#define CLOSE_TOKEN_EXPIRED 4403
/* A far deadline (a token valid for years) is re-armed on the wheel in steps. */
#define AUTH_STEP_MS (24u * 3600u * 1000u)

/* Every way out of OPEN comes through here first (close, fail, abort, the peer's close
 * frame, a TLS failure), so this is where the cold part keeps the session's start for
 * the closed log line (since_ms is the 101's time while OPEN). Out of memory, the
 * close event reports 1005 and the log line the time since the last state change. */
void ews_conn_set_close_reason(ews_conn_t *c, unsigned code, const char *reason, size_t len) {
  ews_conn_cold_t *k = ews_conn_cold_get(c);
  if (!k) return;
  if (c->state == EWS_CS_OPEN) k->opened_ms = c->since_ms;
  k->close_code = (uint16_t)code;
  free(k->close_reason);
  k->close_reason = NULL;
  k->close_reason_len = 0;
  if (len > 123) len = 123;
  if (len && (k->close_reason = malloc(len))) {
    memcpy(k->close_reason, reason, len);
    k->close_reason_len = (uint8_t)len;
  }
}

void ews_conn_cold_trim(ews_conn_t *c) {
  ews_conn_cold_t *k = c->cold;
  if (k && !k->hooks && !k->pmd && !k->pend && !k->acct && !k->body && !k->close_reason &&
      !k->close_code) {
    free(k);
    c->cold = NULL;
  }
}

/* The WebSocket session (or HTTP exchange) is over: flush what is queued, send FIN,
 * discard input until the peer's FIN or the linger timeout, then close. The owner's
 * close event runs at the next sweep. */
void ews_conn_enter_draining(ews_conn_t *c) {
  if (c->state >= EWS_CS_DRAINING) return;
  c->state = EWS_CS_DRAINING;
  c->since_ms = ews_conn_now(c);
  ews_conn_uncount(c); /* the slot is free as soon as the session ends, not after the linger */
  ews_conn_free_in(c);
  ews_conn_unpause(c);
  ews_conn_set_timer(c, c->net->cfg.close_timeout_ms);
  if (c->flags & EWS_CF_OPENED) ews_conn_schedule_sweep(c);
  ews_conn_schedule_flush(c); /* sends FIN once the queue is empty */
}

void ews_conn_abort(ews_conn_t *c) {
  if (c->state == EWS_CS_CLOSED) return;
  /* No close frame came from the peer: RFC 6455 7.1.5 calls that 1006. */
  if (c->state == EWS_CS_OPEN || c->state == EWS_CS_CLOSING)
    ews_conn_set_close_reason(c, EWS_CLOSE_ABNORMAL, NULL, 0);
  c->state = EWS_CS_CLOSED;
  ews_conn_schedule_sweep(c);
}

int ews_conn_close(ews_conn_t *c, unsigned code, const char *reason, size_t len) {
  if (c->state != EWS_CS_OPEN) return EWS_ECLOSED;
  ews_conn_send_close_frame(c, code, reason, len);
  ews_conn_set_close_reason(c, code ? code : EWS_CLOSE_NO_STATUS, reason, len);
  c->state = EWS_CS_CLOSING;
  c->since_ms = ews_conn_now(c);
  ews_conn_set_timer(c, c->net->cfg.close_timeout_ms);
  return 0;
}

void ews_conn_fail(ews_conn_t *c, int err, const char *reason) {
  if (!reason) reason = ews_strerror(err);
  switch (c->state) {
    case EWS_CS_HEAD:
      if (ews_err_http_status(err)) ews_conn_respond_error(c, err);
      else ews_conn_enter_draining(c);
      return;
    case EWS_CS_OPEN: {
      int code = ews_err_close_code(err);
      if (code == 0 || code == EWS_CLOSE_ABNORMAL) code = EWS_CLOSE_INTERNAL;
      EWS_DEBUG("conn %llu: failing with %d: %s", (unsigned long long)c->id, code, reason);
      ews_conn_send_close_frame(c, (unsigned)code, reason, strlen(reason));
      ews_conn_set_close_reason(c, (unsigned)code, reason, strlen(reason));
      ews_conn_enter_draining(c);
      return;
    }
    case EWS_CS_CLOSING:
      ews_conn_enter_draining(c);
      return;
    default:
      return;
  }
}

void ews_conn_shutdown(ews_conn_t *c) {
  if (c->state == EWS_CS_HEAD) {
    ews_conn_abort(c);
  } else if (c->state == EWS_CS_OPEN) {
    static const char why[] = "server shutting down";
    ews_conn_close(c, EWS_CLOSE_GOING_AWAY, why, sizeof why - 1);
  }
}

/* ---- close hooks ---------------------------------------------------------------- */

int ews_conn_hook_add(ews_conn_t *c, ews_conn_hook_t *h) {
  ews_conn_cold_t *k = ews_conn_cold_get(c);
  if (!k) return EWS_ENOMEM;
  h->next = k->hooks;
  k->hooks = h;
  return 0;
}

void ews_conn_hook_remove(ews_conn_t *c, ews_conn_hook_t *h) {
  if (!c->cold) return;
  for (ews_conn_hook_t **pp = &c->cold->hooks; *pp; pp = &(*pp)->next) {
    if (*pp == h) {
      *pp = h->next;
      h->next = NULL;
      return;
    }
  }
}

/* ---- deadlines ------------------------------------------------------------------ */

int ews_conn_auth_deadline(ews_conn_t *c, int kind, uint64_t delay_ms) {
  if (c->state != EWS_CS_OPEN) return EWS_ECLOSED;
  ews_conn_cold_t *k = c->cold;
  if (kind == EWS_AUTH_DL_NONE) {
    if (k && k->acct) {
      k->acct->auth_kind = EWS_AUTH_DL_NONE;
      if (!k->acct->ip && !k->acct->user) {
        free(k->acct);
        k->acct = NULL;
      }
    }
    return 0; /* the wheel node fires as planned and finds nothing to do */
  }
  if (!(k = ews_conn_cold_get(c))) return EWS_ENOMEM;
  if (!k->acct && !(k->acct = calloc(1, sizeof *k->acct))) return EWS_ENOMEM;
  /* The loop's cached time may be a long iteration old (10,000 refreshes in one
   * read): a deadline measured from it would come early. */
  uv_update_time(c->net->loop);
  uint64_t now = uv_now(c->net->loop);
  k->acct->auth_kind = (uint8_t)kind;
  k->acct->auth_due_ms = delay_ms > UINT64_MAX - now ? UINT64_MAX : now + delay_ms;
  ews_wheel_schedule_min(&c->net->wheel, &c->tnode,
                         delay_ms < AUTH_STEP_MS ? (uint32_t)delay_ms : AUTH_STEP_MS);
  return 0;
}

/* An OPEN connection's authentication deadline: 0 when it passed (the connection is
 * then closing), else the milliseconds until the wheel should look again. */
static uint32_t check_auth_deadline(ews_conn_t *c) {
  ews_acct_t *a = c->cold ? c->cold->acct : NULL;
  if (!a || a->auth_kind == EWS_AUTH_DL_NONE) return UINT32_MAX;
  uint64_t now = uv_now(c->net->loop);
  if (now < a->auth_due_ms) {
    uint64_t left = a->auth_due_ms - now;
    return left < AUTH_STEP_MS ? (uint32_t)left : AUTH_STEP_MS;
  }
  static const char expired[] = "token expired", late[] = "authentication timeout";
  int expiry = a->auth_kind == EWS_AUTH_DL_EXPIRY;
  a->auth_kind = EWS_AUTH_DL_NONE;
  if (expiry) EWS_STAT_ADD(c->net->stats.auth_expired, 1);
  else EWS_STAT_ADD(c->net->stats.auth_timeouts, 1);
  EWS_DEBUG("conn %llu: %s", (unsigned long long)c->id, expiry ? expired : late);
  if (expiry) ews_conn_close(c, CLOSE_TOKEN_EXPIRED, expired, sizeof expired - 1);
  else ews_conn_close(c, CLOSE_AUTH_TIMEOUT, late, sizeof late - 1);
  return 0;
}

/* Idle timeout and heartbeat of an OPEN connection. */
static void open_timer(ews_conn_t *c, uint32_t now) {
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
      uint32_t waited = now - ews_conn_ping_ms(c);
      if (waited >= app->heartbeat_timeout_ms) {
        EWS_DEBUG("conn %llu: no pong within %u ms", (unsigned long long)c->id,
                  app->heartbeat_timeout_ms);
        ews_conn_fail(c, EWS_ETIMEDOUT, "ping timeout");
        return;
      }
      if (app->heartbeat_timeout_ms - waited < next) next = app->heartbeat_timeout_ms - waited;
      /* The pong clears EWS_CF_PING_OUT without touching the timer: look again after
       * an interval too, so that a peer that answered is pinged after each quiet
       * interval even when the timeout is longer than the interval. */
      if (app->heartbeat_interval_ms < next) next = app->heartbeat_interval_ms;
    } else if (idle >= app->heartbeat_interval_ms) {
      /* Ping only a quiet peer: traffic already proves it is alive. */
      ews_conn_queue_frame(c, EWS_OP_PING, NULL, 0);
      c->flags |= EWS_CF_PING_OUT;
      ews_conn_set_ping_ms(c, now);
      if (app->heartbeat_timeout_ms < next) next = app->heartbeat_timeout_ms;
      if (app->heartbeat_interval_ms < next) next = app->heartbeat_interval_ms;
    } else if (app->heartbeat_interval_ms - idle < next) {
      next = app->heartbeat_interval_ms - idle;
    }
  }
  /* TLS: an idle connection gives up its record cipher contexts (after one to two
   * EWS_TLS_QUIET_MS periods without a record; they are rebuilt at the next one). */
  if (c->tls) {
    int r = ews_tls_quiet(c->tls->tls);
    if (r == 2) {
      EWS_DEBUG("conn %llu: quiet: TLS cipher contexts released", (unsigned long long)c->id);
      ews_net_trim_later(c->net);
    } else if (r == 1 && EWS_TLS_QUIET_MS < next) next = EWS_TLS_QUIET_MS;
  }
  if (next != UINT32_MAX) ews_conn_set_timer(c, next);
}

void ews_conn_on_timer(ews_tnode_t *node, void *ud) {
  (void)ud;
  ews_conn_t *c = CONN_OF_TNODE(node);
  const ews_net_config_t *cfg = &c->net->cfg;
  uint32_t now = ews_conn_now(c);
  uint32_t in_state = now - c->since_ms;
  switch (c->state) {
    case EWS_CS_HEAD:
      if (c->flags & EWS_CF_CLIENT) {
        ews_client_on_timer(c);
        return;
      }
      if (c->flags & EWS_CF_AUTHING) {
        if (in_state >= c->app->auth_timeout_ms) ews_conn_respond_error(c, EWS_EAUTH_TIMEOUT);
        else ews_conn_set_timer(c, c->app->auth_timeout_ms - in_state);
        return;
      }
      if (in_state >= cfg->handshake_timeout_ms) {
        int tls_pending = c->tls && !ews_tls_handshake_done(c->tls->tls);
        EWS_DEBUG("conn %llu: %s timeout", (unsigned long long)c->id,
                  tls_pending ? "TLS handshake" : "request head");
        if (tls_pending) ews_conn_abort(c); /* no 408 without TLS */
        else ews_conn_respond_error(c, EWS_EHTTP_TIMEOUT);
      } else {
        ews_conn_set_timer(c, cfg->handshake_timeout_ms - in_state);
      }
      return;
    case EWS_CS_OPEN:
      open_timer(c, now);
      return;
    case EWS_CS_CLOSING:
    case EWS_CS_DRAINING:
      if (in_state >= cfg->close_timeout_ms) {
        EWS_DEBUG("conn %llu: close timeout", (unsigned long long)c->id);
        ews_conn_abort(c);
      } else {
        ews_conn_set_timer(c, cfg->close_timeout_ms - in_state);
      }
      return;
    default:
      return;
  }
}

/* ---- the socket on the loop's poller --------------------------------------------- */

int ews_conn_io_update(ews_conn_t *c) {
  if (c->fd < 0 || (c->io & EWS_IO_CLOSED)) return 0;
  uint32_t want = 0, have = 0;
  if (c->io & EWS_IO_READING) want |= EPOLLIN;
  if ((c->flags & EWS_CF_WRITING) || (c->io & EWS_IO_CONNECTING)) want |= EPOLLOUT;
  if (c->io & EWS_IO_IN) have |= EPOLLIN;
  if (c->io & EWS_IO_OUT) have |= EPOLLOUT;
  int r = ews_poller_set(&c->net->poller, c->fd, c, have, want);
  if (r == 0)
    c->io = (uint8_t)((c->io & ~(EWS_IO_IN | EWS_IO_OUT)) | (want & EPOLLIN ? EWS_IO_IN : 0) |
                      (want & EPOLLOUT ? EWS_IO_OUT : 0));
  return r;
}

void ews_conn_io_close(ews_conn_t *c) {
  if (c->io & EWS_IO_CLOSED) return;
  if (c->fd >= 0) {
    /* close(2) alone would leave the registration while another descriptor (a dup)
     * referred to the socket; there is none, but removing first is what epoll wants */
    if (c->io & (EWS_IO_IN | EWS_IO_OUT))
      ews_poller_set(&c->net->poller, c->fd, c, EPOLLIN, 0);
    close(c->fd);
    c->fd = -1;
  }
  c->io = EWS_IO_CLOSED;
}

void ews_conn_on_io(ews_conn_t *c, uint32_t ev) {
  /* Closed by an earlier event of the same batch (the struct lives until the reaper). */
  if (c->io & EWS_IO_CLOSED) return;
  if (c->io & EWS_IO_CONNECTING) {
    ews_client_on_connectable(c);
    return;
  }
  int handled = 0;
  /* Errors and hang-ups go to whichever direction is on: read(2) or the writev
   * report them as today's libuv callbacks did. */
  if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) && (c->io & EWS_IO_READING)) {
    handled = 1;
    ews_conn_on_readable(c);
    if (c->io & EWS_IO_CLOSED) return;
  }
  if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && (c->flags & EWS_CF_WRITING)) {
    /* Writable again: the flush (this iteration's check phase) writes the queue; it
     * keeps EPOLLOUT asked for if the kernel refuses bytes again, or drops it. */
    handled = 1;
    c->flags &= (uint16_t)~EWS_CF_WRITING;
    ews_conn_schedule_flush(c);
  }
  /* An interest that is no longer wanted (EPOLLOUT after the flush was done by
   * other means): bring the registration in line, or level-triggered epoll repeats. */
  if (!handled && !(c->flags & EWS_CF_FLUSH_QUEUED)) ews_conn_io_update(c);
}

/* ---- sweep, free, accept -------------------------------------------------------- */

void ews_conn_free(ews_conn_t *c) {
  ews_net_t *net = c->net;
  /* Services first (channels, pub/sub, presence, ...), then the owner. */
  while (c->cold && c->cold->hooks) {
    ews_conn_hook_t *hk = c->cold->hooks;
    c->cold->hooks = hk->next;
    hk->next = NULL;
    hk->closed(c, hk);
  }
  const ews_conn_ops_t *ops = ews_conn_ops(c);
  if (ops && ops->free) ops->free(c);
  if (c->prev) c->prev->next = c->next;
  else net->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  ews_conn_uncount(c);
  ews_conn_free_pending(c);
  ews_static_body_free(c);
  ews_wq_free(&c->wq);
  if (c->tls) {
    ews_tls_free(c->tls->tls);
    ews_wq_free(&c->tls->out);
    free(c->tls);
  }
  ews_rx_free(&c->rx);
  ews_conn_pmd_t *pmd = ews_conn_pmd(c);
  if (pmd) {
    ews_inflater_free(&pmd->inf, c->app ? c->app->pmd : NULL);
    ews_deflater_free(pmd->own);
    free(pmd);
  }
  ews_conn_free_in(c);
  if (c->cold) {
    free(c->cold->close_reason);
    free(c->cold);
  }
  if (c->app) ews_app_unref(c->app);
  int client = (c->flags & EWS_CF_CLIENT) != 0;
  free(c);
  if (client) return; /* outbound connections are not in the server's counts */
  EWS_STAT_ADD(net->nconns, -1);
  if (net->total_conns) __atomic_sub_fetch(net->total_conns, 1, __ATOMIC_RELAXED);
  if (net->hooks.conn_freed) net->hooks.conn_freed(net->hooks.ud);
}

void ews_conn_sweep(ews_conn_t *c) {
  if ((c->flags & EWS_CF_OPENED) && !(c->flags & EWS_CF_CLOSE_EVENT) &&
      c->state >= EWS_CS_DRAINING) {
    c->flags |= EWS_CF_CLOSE_EVENT;
    ews_connlog_closed(c);
    const ews_conn_ops_t *ops = ews_conn_ops(c);
    if (ops && ops->close) ops->close(c);
  }
  if (c->state == EWS_CS_CLOSED && !(c->io & EWS_IO_CLOSED)) {
    ews_net_t *net = c->net;
    ews_wheel_cancel(&net->wheel, &c->tnode);
    ews_conn_io_close(c);
    ews_net_reap_later(net, c); /* freed outside any callback that may still hold c */
  }
}

int ews_conn_peer(const ews_conn_t *c, char *ip, size_t cap, int *port) {
  struct sockaddr_storage ss;
  *port = 0;
  if (cap >= 2) memcpy(ip, "?", 2); /* not snprintf: this runs once per upgrade */
  socklen_t len = sizeof ss;
  if (c->fd < 0 || getpeername(c->fd, (struct sockaddr *)&ss, &len) != 0)
    return c->fd < 0 ? UV_ENOTCONN : uv_translate_sys_error(errno);
  if (ss.ss_family == AF_INET6) {
    uv_ip6_name((struct sockaddr_in6 *)&ss, ip, cap);
    *port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  } else {
    uv_ip4_name((struct sockaddr_in *)&ss, ip, cap);
    *port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
  return 0;
}

int ews_conn_accept(ews_net_t *net, int fd, struct ews_tls_ctx *tls, int admin) {
  ews_conn_t *c = calloc(1, sizeof *c);
  if (!c) {
    close(fd);
    return EWS_ENOMEM;
  }
  if (admin) c->flags |= EWS_CF_ADMIN;
  if (tls) {
    c->tls = calloc(1, sizeof *c->tls);
    if (c->tls) c->tls->tls = ews_tls_new(tls, &c->tls->out, &net->pool);
    if (!c->tls || !c->tls->tls) {
      free(c->tls);
      free(c);
      close(fd);
      return EWS_ENOMEM;
    }
  }
  c->fd = fd;
  c->net = net;
  c->uref = EWS_CONN_NOREF;
  c->id = (++net->conn_seq << 8) | (uint64_t)(net->id & 0xff);
  c->next = net->conns;
  if (net->conns) net->conns->prev = c;
  net->conns = c;
  EWS_STAT_ADD(net->nconns, 1);
  EWS_STAT_ADD(net->stats.conns_total, 1);
  if (net->total_conns) __atomic_add_fetch(net->total_conns, 1, __ATOMIC_RELAXED);
  int one = 1, r = 0;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
    r = uv_translate_sys_error(errno);
  if (r == 0) r = ews_conn_read_start(c);
  if (r < 0) {
    /* the sweep closes the socket, the reaper frees c (the free hook runs) */
    c->state = EWS_CS_CLOSED;
    ews_conn_schedule_sweep(c);
    EWS_DEBUG("accept: %s", uv_strerror(r));
    return EWS_EIO;
  }
  c->since_ms = ews_conn_now(c);
  ews_conn_set_timer(c, net->cfg.handshake_timeout_ms);
  return 0;
}
