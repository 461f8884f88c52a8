/* redis_conn.h — one connection to one Redis server that stays up, on one libuv
 * loop (hiredis's async API and its libuv adapter). It connects within the URL's
 * connect timeout, authenticates (AUTH), selects the database (SELECT) and is then
 * ready; when it is lost (the server closes, a read fails, the connect or a PING
 * health check times out) it reconnects after a delay drawn uniformly from
 * [0, min(EWS_RCONN_BACKOFF_CAP_MS, EWS_RCONN_BACKOFF_BASE_MS * 2^attempt)]
 * ("full jitter"), attempt counting the failures since it was last ready.
 *
 * Everything here runs on the loop's thread. A command's callback gets a NULL reply
 * when the connection is lost before the reply came (hiredis's rule), so its
 * privdata is freed there too. on_ready runs each time the connection becomes ready,
 * on_down each time a ready connection is lost (its commands' callbacks have run by
 * then). Never call ews_rconn_close from inside a hiredis callback. */
#ifndef EWS_REDIS_CONN_H
#define EWS_REDIS_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "hub/redis_url.h"

#define EWS_RCONN_BACKOFF_BASE_MS 50
#define EWS_RCONN_BACKOFF_CAP_MS 2000

struct redisAsyncContext;
typedef struct ews_rconn ews_rconn_t;
typedef void (*ews_rconn_fn)(ews_rconn_t *c, void *ud);
/* hiredis's redisCallbackFn. */
typedef void (*ews_rconn_reply_fn)(struct redisAsyncContext *ac, void *reply, void *privdata);

enum { EWS_RCONN_DOWN, EWS_RCONN_CONNECTING, EWS_RCONN_HANDSHAKE, EWS_RCONN_READY,
       EWS_RCONN_CLOSED };

struct ews_rconn {
  uv_loop_t *loop;
  const ews_redis_url_t *url;
  const char *role;              /* for the log: "commands", "subscriber" */
  struct redisAsyncContext *ac;  /* NULL while down */
  int state;
  int health_ping;               /* PING every so often, drop on timeout */
  uv_timer_t retry;              /* backoff, or the connect deadline */
  uv_timer_t ping;
  uint64_t ping_sent_ms;         /* 0: no PING outstanding */
  uint32_t attempt;              /* failures since last ready */
  uint64_t rng;
  ews_rconn_fn on_ready, on_down;
  void *ud;
  char last_error[160];          /* "" until something failed */
  uint64_t losses;               /* times a ready connection was lost */
  uint64_t connects;             /* times it became ready */
};

/* Prepares c on loop (timers initialised); nothing is connected until
 * ews_rconn_start. url must outlive c. */
void ews_rconn_init(ews_rconn_t *c, uv_loop_t *loop, const ews_redis_url_t *url, const char *role,
                    int health_ping, ews_rconn_fn on_ready, ews_rconn_fn on_down, void *ud);
void ews_rconn_start(ews_rconn_t *c);
static inline int ews_rconn_ready(const ews_rconn_t *c) { return c->state == EWS_RCONN_READY; }
/* Sends a command (argv as hiredis's redisAsyncCommandArgv). 0, or EWS_ECLOSED when
 * not ready / EWS_EIO when hiredis refused it: then fn is not called. fn may be NULL. */
int ews_rconn_command(ews_rconn_t *c, ews_rconn_reply_fn fn, void *privdata, int argc,
                      const char **argv, const size_t *lens);
/* Treats the connection as lost now (why: for last_error): it reconnects. */
void ews_rconn_drop(ews_rconn_t *c, const char *why);
/* Stops for good and closes its handles (the loop must run to finish closing). */
void ews_rconn_close(ews_rconn_t *c);

#endif
