/* redis_conn.c — a Redis connection that reconnects with backoff (see redis_conn.h).
 * Owns the hiredis async context while it is up, its libuv poll handle (hiredis's
 * libuv adapter, with a fix), its two timers, the handshake (AUTH, SELECT, PING) and
 * the health PINGs. */
#include "hub/redis_conn.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "err.h"
#include "hub/hash.h"
#include "log.h"

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void set_error(ews_rconn_t *c, const char *why) {
  snprintf(c->last_error, sizeof c->last_error, "%s", why ? why : "unknown error");
}

static void on_retry(uv_timer_t *t);

/* ---- hiredis on libuv ----------------------------------------------------------------
 * As hiredis's adapters/libuv.h, with one difference: when libuv reports an error on
 * the socket (POLLERR: it then stops the poll and passes UV_EBADF), hiredis 0.14's
 * adapter returns without telling hiredis, so a connection reset by a server killed
 * mid-write would look alive until the PING timeout. Here hiredis is handed the
 * event it waited for, finds the error and disconnects at once. */

typedef struct {
  redisAsyncContext *ac;
  uv_poll_t handle;
  int events;
} ev_t;

static void ev_poll(uv_poll_t *h, int status, int events) {
  ev_t *p = h->data;
  int ev = status ? p->events : events;
  if (p->ac && (ev & UV_READABLE)) redisAsyncHandleRead(p->ac);
  if (p->ac && (ev & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

static void ev_update(ev_t *p) {
  if (p->events) uv_poll_start(&p->handle, p->events, ev_poll);
  else uv_poll_stop(&p->handle);
}

static void ev_add_read(void *d) {
  ev_t *p = d;
  p->events |= UV_READABLE;
  ev_update(p);
}

static void ev_del_read(void *d) {
  ev_t *p = d;
  p->events &= ~UV_READABLE;
  ev_update(p);
}

static void ev_add_write(void *d) {
  ev_t *p = d;
  p->events |= UV_WRITABLE;
  ev_update(p);
}

static void ev_del_write(void *d) {
  ev_t *p = d;
  p->events &= ~UV_WRITABLE;
  ev_update(p);
}

static void ev_closed(uv_handle_t *h) { free(h->data); }

/* hiredis frees the context: the handle goes, its memory in the close callback. */
static void ev_cleanup(void *d) {
  ev_t *p = d;
  p->ac = NULL;
  uv_close((uv_handle_t *)&p->handle, ev_closed);
}

static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  if (ac->ev.data) return REDIS_ERR;
  ev_t *p = calloc(1, sizeof *p);
  if (!p) return REDIS_ERR;
  if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
    free(p);
    return REDIS_ERR;
  }
  p->handle.data = p;
  p->ac = ac;
  ac->ev.data = p;
  ac->ev.addRead = ev_add_read;
  ac->ev.delRead = ev_del_read;
  ac->ev.addWrite = ev_add_write;
  ac->ev.delWrite = ev_del_write;
  ac->ev.cleanup = ev_cleanup;
  return REDIS_OK;
}

/* The context is gone (or going, freed by hiredis): forget it, tell the owner if it
 * was ready, and schedule the next attempt. */
static void lost(ews_rconn_t *c, const char *why) {
  if (c->state == EWS_RCONN_CLOSED) return;
  int was_ready = c->state == EWS_RCONN_READY;
  c->ac = NULL;
  c->state = EWS_RCONN_DOWN;
  c->ping_sent_ms = 0;
  uv_timer_stop(&c->ping);
  if (why) set_error(c, why);
  if (was_ready) {
    c->losses++;
    EWS_WARN("redis %s (%s): connection lost: %s", c->url->name, c->role, c->last_error);
    if (c->on_down) c->on_down(c, c->ud);
  } else if (c->attempt == 0 || c->attempt % 20 == 0) {
    EWS_WARN("redis %s (%s): cannot connect: %s (retrying)", c->url->name, c->role,
             c->last_error);
  }
  uint32_t shift = c->attempt < 16 ? c->attempt : 16;
  uint64_t ceil = (uint64_t)EWS_RCONN_BACKOFF_BASE_MS << shift;
  if (ceil > EWS_RCONN_BACKOFF_CAP_MS) ceil = EWS_RCONN_BACKOFF_CAP_MS;
  uint64_t delay = ews_splitmix64(&c->rng) % (ceil + 1);
  c->attempt++;
  uv_timer_start(&c->retry, on_retry, delay, 0);
}

/* Detaches and frees the context (not from inside a hiredis callback on it: hiredis
 * defers the free then). Our callbacks see ac->data == NULL and do nothing. */
static void discard(ews_rconn_t *c) {
  redisAsyncContext *ac = c->ac;
  c->ac = NULL;
  if (!ac) return;
  ac->data = NULL;
  redisAsyncFree(ac);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  ews_rconn_t *c = ac->data;
  if (!c) return;
  (void)status;
  lost(c, ac->errstr[0] ? ac->errstr : "closed by the server");
}

static void on_ping_reply(redisAsyncContext *ac, void *r, void *priv) {
  (void)priv;
  ews_rconn_t *c = ac->data;
  if (!c || !r) return;
  c->ping_sent_ms = 0;
}

static void on_ping_timer(uv_timer_t *t) {
  ews_rconn_t *c = t->data;
  if (c->state != EWS_RCONN_READY) return;
  uint64_t now = now_ms();
  if (c->ping_sent_ms) {
    if (now - c->ping_sent_ms >= c->url->timeout_ms) {
      discard(c);
      lost(c, "timed out (no answer to PING)");
    }
    return;
  }
  const char *argv[1] = {"PING"};
  size_t lens[1] = {4};
  if (redisAsyncCommandArgv(c->ac, on_ping_reply, NULL, 1, argv, lens) == REDIS_OK)
    c->ping_sent_ms = now;
}

static void became_ready(ews_rconn_t *c) {
  uv_timer_stop(&c->retry);
  c->state = EWS_RCONN_READY;
  c->attempt = 0;
  c->connects++;
  if (c->connects > 1) EWS_INFO("redis %s (%s): reconnected", c->url->name, c->role);
  else EWS_INFO("redis %s (%s): connected", c->url->name, c->role);
  if (c->health_ping) {
    uint64_t every = c->url->timeout_ms / 3;
    if (every < 100) every = 100;
    if (every > 1000) every = 1000;
    uv_timer_start(&c->ping, on_ping_timer, every, every);
  }
  if (c->on_ready) c->on_ready(c, c->ud);
}

/* Handshake replies: privdata 1 for the final PING. An error drops the connection. */
static void on_handshake(redisAsyncContext *ac, void *r, void *priv) {
  ews_rconn_t *c = ac->data;
  redisReply *reply = r;
  if (!c || !reply || c->state != EWS_RCONN_HANDSHAKE) return;
  if (reply->type == REDIS_REPLY_ERROR) {
    char why[160];
    snprintf(why, sizeof why, "%s", reply->str);
    discard(c);
    lost(c, why);
    return;
  }
  if (priv) became_ready(c);
}

static void on_connect(const redisAsyncContext *ac, int status) {
  ews_rconn_t *c = ac->data;
  if (!c) return;
  if (status != REDIS_OK) {
    /* hiredis frees the context after this callback. */
    lost(c, ac->errstr[0] ? ac->errstr : "connect failed");
    return;
  }
  c->state = EWS_RCONN_HANDSHAKE;
  redisAsyncContext *a = c->ac;
  if (c->url->password[0]) {
    if (c->url->user[0]) {
      const char *argv[3] = {"AUTH", c->url->user, c->url->password};
      size_t lens[3] = {4, strlen(c->url->user), strlen(c->url->password)};
      redisAsyncCommandArgv(a, on_handshake, NULL, 3, argv, lens);
    } else {
      const char *argv[2] = {"AUTH", c->url->password};
      size_t lens[2] = {4, strlen(c->url->password)};
      redisAsyncCommandArgv(a, on_handshake, NULL, 2, argv, lens);
    }
  }
  if (c->url->db) {
    char db[16];
    int n = snprintf(db, sizeof db, "%d", c->url->db);
    const char *argv[2] = {"SELECT", db};
    size_t lens[2] = {6, (size_t)n};
    redisAsyncCommandArgv(a, on_handshake, NULL, 2, argv, lens);
  }
  const char *argv[1] = {"PING"};
  size_t lens[1] = {4};
  redisAsyncCommandArgv(a, on_handshake, (void *)1, 1, argv, lens);
}

/* The retry timer: connect now; while connecting, the same timer is the deadline. */
static void on_retry(uv_timer_t *t) {
  ews_rconn_t *c = t->data;
  if (c->state == EWS_RCONN_CONNECTING || c->state == EWS_RCONN_HANDSHAKE) {
    discard(c);
    lost(c, "connect timed out");
    return;
  }
  if (c->state != EWS_RCONN_DOWN) return;
  redisAsyncContext *ac = c->url->path[0] ? redisAsyncConnectUnix(c->url->path)
                                          : redisAsyncConnect(c->url->host, c->url->port);
  if (!ac) {
    lost(c, "out of memory");
    return;
  }
  if (ac->err) {
    char why[160];
    snprintf(why, sizeof why, "%s", ac->errstr);
    redisAsyncFree(ac);
    lost(c, why);
    return;
  }
  if (ev_attach(ac, c->loop) != REDIS_OK) {
    redisAsyncFree(ac);
    lost(c, "cannot attach to the loop");
    return;
  }
  ac->data = c;
  c->ac = ac;
  c->state = EWS_RCONN_CONNECTING;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  uv_timer_start(&c->retry, on_retry, c->url->connect_timeout_ms, 0);
}

void ews_rconn_init(ews_rconn_t *c, uv_loop_t *loop, const ews_redis_url_t *url, const char *role,
                    int health_ping, ews_rconn_fn on_ready, ews_rconn_fn on_down, void *ud) {
  memset(c, 0, sizeof *c);
  c->loop = loop;
  c->url = url;
  c->role = role;
  c->health_ping = health_ping;
  c->on_ready = on_ready;
  c->on_down = on_down;
  c->ud = ud;
  c->state = EWS_RCONN_DOWN;
  if (getrandom(&c->rng, sizeof c->rng, 0) != sizeof c->rng)
    c->rng = now_ms() ^ (uint64_t)(uintptr_t)c;
  uv_timer_init(loop, &c->retry);
  uv_timer_init(loop, &c->ping);
  c->retry.data = c->ping.data = c;
}

void ews_rconn_start(ews_rconn_t *c) {
  if (c->state == EWS_RCONN_DOWN) on_retry(&c->retry);
}

int ews_rconn_command(ews_rconn_t *c, ews_rconn_reply_fn fn, void *privdata, int argc,
                      const char **argv, const size_t *lens) {
  if (c->state != EWS_RCONN_READY) return EWS_ECLOSED;
  if (redisAsyncCommandArgv(c->ac, (redisCallbackFn *)fn, privdata, argc, argv, lens) != REDIS_OK)
    return EWS_EIO;
  return 0;
}

void ews_rconn_drop(ews_rconn_t *c, const char *why) {
  if (c->state == EWS_RCONN_CLOSED || c->state == EWS_RCONN_DOWN) return;
  discard(c);
  lost(c, why);
}

void ews_rconn_close(ews_rconn_t *c) {
  c->state = EWS_RCONN_CLOSED;
  discard(c);
  uv_timer_stop(&c->retry);
  uv_timer_stop(&c->ping);
  uv_close((uv_handle_t *)&c->retry, NULL);
  uv_close((uv_handle_t *)&c->ping, NULL);
}
