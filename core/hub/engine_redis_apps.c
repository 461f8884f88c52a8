/* engine_redis_apps.c — the Redis engine's app connection counts (see engine.h,
 * engine_redis_int.h): app:connection_count() adds the other live instances'.
 *   ews:ac:PATH  a hash on the path's shard: field INSTANCE -> that instance's open
 *                connections of the app
 * The redis thread writes this instance's counts (hub/counters.c "conns:PATH")
 * behind them, every WRITE_MS, only those that changed since they were last
 * written (and all of them again when a shard's command connection comes back): a
 * count costs nothing per connection. A reader adds the fields of the other live
 * instances (those whose ews:i: key has not expired; the others' fields are
 * deleted), from the worker's thread, one round trip; while the path's shard is
 * down, this instance's own only. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub/counters.h"
#include "hub/engine_redis_int.h"
#include "log.h"

#define COUNTER_PREFIX "conns:"
#define KEY_PREFIX "ews:ac:"
#define WRITE_MS 100
#define MAX_PATH 400

/* An app path whose count this instance wrote (the redis thread's). */
typedef struct app {
  struct app *next;
  int64_t written; /* -1: write it again */
  uint32_t now;    /* the count seen by this walk */
  int seen;
  size_t len;
  char path[];
} app_t;

static struct {
  uv_timer_t timer;
  int started;
  app_t *apps;
} A;

static void seen_one(const char *key, size_t len, uint32_t value, void *ud) {
  (void)ud;
  const char *path = key + sizeof COUNTER_PREFIX - 1;
  size_t pl = len - (sizeof COUNTER_PREFIX - 1);
  if (pl > MAX_PATH) return;
  app_t *a = A.apps;
  while (a && (a->len != pl || memcmp(a->path, path, pl))) a = a->next;
  if (!a) {
    if (!(a = calloc(1, sizeof *a + pl))) return;
    memcpy(a->path, path, pl);
    a->len = pl;
    a->written = 0; /* nothing in Redis yet: a count of 0 is not written */
    a->next = A.apps;
    A.apps = a;
  }
  a->now = value;
  a->seen = 1;
}

/* Sends a's count when it changed; 1 when it was sent (or need not be). */
static int write_one(app_t *a) {
  if ((int64_t)a->now == a->written) return 1;
  int shard = ews_rengine_shard_of(a->path, a->len);
  ews_rconn_t *cmd = ews_rengine_cmd(shard);
  if (!ews_rconn_ready(cmd)) return 0;
  char key[MAX_PATH + 16], v[16];
  int kl = snprintf(key, sizeof key, KEY_PREFIX "%.*s", (int)a->len, a->path);
  int vl = snprintf(v, sizeof v, "%u", a->now);
  const char *argv[4] = {a->now ? "HSET" : "HDEL", key, ews_rengine_id(), v};
  size_t lens[4] = {4, (size_t)kl, 16, (size_t)vl};
  if (ews_rconn_command(cmd, NULL, NULL, a->now ? 4 : 3, argv, lens) != 0) return 0;
  a->written = a->now;
  return 1;
}

static void on_timer(uv_timer_t *t) {
  (void)t;
  for (app_t *a = A.apps; a; a = a->next) a->seen = 0;
  ews_counters_each(COUNTER_PREFIX, sizeof COUNTER_PREFIX - 1, seen_one, NULL);
  for (app_t **pp = &A.apps; *pp;) {
    app_t *a = *pp;
    if (!a->seen) a->now = 0; /* its counter is gone: no connection holds it */
    if (write_one(a) && !a->seen && a->written == 0) {
      *pp = a->next;
      free(a);
      continue;
    }
    pp = &a->next;
  }
}

void ews_rap_cmd_ready(int shard) {
  for (app_t *a = A.apps; a; a = a->next)
    if (ews_rengine_shard_of(a->path, a->len) == shard) a->written = -1;
}

void ews_rap_start(uv_loop_t *loop) {
  uv_timer_init(loop, &A.timer);
  uv_timer_start(&A.timer, on_timer, WRITE_MS, WRITE_MS);
  A.started = 1;
}

void ews_rap_close(void) {
  if (!A.started) return;
  uv_timer_stop(&A.timer);
  uv_close((uv_handle_t *)&A.timer, NULL);
  while (A.apps) {
    app_t *a = A.apps;
    A.apps = a->next;
    free(a);
  }
  A.started = 0;
}

uint32_t ews_rap_connections(const char *path, size_t len) {
  char key[MAX_PATH + 16];
  if (len > MAX_PATH) return 0;
  int kl = snprintf(key, sizeof key, COUNTER_PREFIX "%.*s", (int)len, path);
  uint32_t n = ews_counter_peek(key, (size_t)kl);
  kl = snprintf(key, sizeof key, KEY_PREFIX "%.*s", (int)len, path);
  int64_t others = ews_rengine_count_others(ews_rengine_shard_of(path, len), key, (size_t)kl);
  return others > 0 ? n + (uint32_t)others : n;
}
