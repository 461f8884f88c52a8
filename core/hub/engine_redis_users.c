/* engine_redis_users.c — the Redis engine's user registry (see engine.h,
 * engine_redis_int.h): edgews.user_sockets finds a user's sockets on every instance,
 * and a message for a socket of another instance reaches its worker there.
 *   ews:u:USER   a hash on the user's shard: field "INSTANCE:WORKER:SOCKET" per socket
 *   ews:i:ID     instance ID is alive: set for 5 s on every shard, renewed every second
 *                by its redis thread; entries of an instance whose key expired (it died) are not
 *                listed and are deleted by the next lookup
 *   ews:w:ID     instance ID's inbox channel (on its shard): "WORKER:" + the message,
 *                run on that worker as a core.post message
 *   ews:b        every instance's channel: "ID" + a message for each of its workers
 *                (app:broadcast), ignored by instance ID itself
 * This instance's own sockets come from the in-process registry (hub/users.c); the
 * hash is written behind it by the redis thread, and written again whole when a
 * shard's command connection is (re)established (a Redis that lost its data learns
 * them again). Lookups of other instances' sockets read the hash from the calling
 * worker's thread (one round trip); while the user's shard is down only this
 * instance's sockets are found. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub/engine_redis_int.h"
#include "hub/users.h"
#include "log.h"

#define USER_KEY "ews:u:"
#define ALIVE_KEY "ews:i:"
#define ALIVE_MS 5000
#define RENEW_MS 1000

static struct {
  uv_timer_t renew;
  int started;
} U;

/* KEYS[1] the user's hash; ARGV[1] this instance. -> fields of live other instances */
static const char LIST_LUA[] =
    "local out = {}\n"
    "for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do\n"
    "  local inst = string.sub(f, 1, 16)\n"
    "  if inst ~= ARGV[1] then\n"
    "    if redis.call('EXISTS', 'ews:i:' .. inst) == 1 then out[#out + 1] = f\n"
    "    else redis.call('HDEL', KEYS[1], f) end\n"
    "  end\n"
    "end\n"
    "return out\n";

/* ---- writes (queued for the redis thread) ---------------------------------------------- */

typedef struct {
  ews_rjob_t job; /* first */
  int shard;
  int argc;
  size_t lens[4];
  char buf[];     /* the arguments, one after the other */
} cmd_t;

static void cmd_run(ews_rjob_t *j, int stopping) {
  cmd_t *c = (cmd_t *)j;
  if (!stopping) {
    const char *argv[4];
    const char *p = c->buf;
    for (int i = 0; i < c->argc; i++) {
      argv[i] = p;
      p += c->lens[i];
    }
    /* A write that cannot be sent now is made again at the next (re)connection
     * (ews_rus_cmd_ready); a post is lost (its sender was told it is on its way). */
    ews_rconn_command(ews_rengine_cmd(c->shard), NULL, NULL, c->argc, argv, c->lens);
  }
  free(c);
}

int ews_rengine_command(int shard, int argc, const char *const *argv, const size_t *lens) {
  size_t total = 0;
  for (int i = 0; i < argc; i++) total += lens[i];
  cmd_t *c = malloc(sizeof *c + total);
  if (!c) return EWS_ENOMEM;
  c->job.run = cmd_run;
  c->job.size = sizeof *c + total;
  c->shard = shard;
  c->argc = argc;
  char *p = c->buf;
  for (int i = 0; i < argc; i++) {
    c->lens[i] = lens[i];
    memcpy(p, argv[i], lens[i]);
    p += lens[i];
  }
  int r = ews_rengine_submit(&c->job);
  if (r != 0) free(c);
  return r;
}

/* "ews:u:" + uid into key (cap bytes); its length, or 0 when too long. */
static size_t user_key(char *key, size_t cap, const char *uid, size_t len) {
  if (len + sizeof USER_KEY > cap) return 0;
  memcpy(key, USER_KEY, sizeof USER_KEY - 1);
  memcpy(key + sizeof USER_KEY - 1, uid, len);
  return sizeof USER_KEY - 1 + len;
}

static size_t field_of(char *f, size_t cap, const char *inst, int worker, double socket_id) {
  return (size_t)snprintf(f, cap, "%s:%d:%.17g", inst, worker, socket_id);
}

static void hset(const char *op, const char *uid, size_t len, int worker, double socket_id) {
  char key[600], f[80];
  size_t kl = user_key(key, sizeof key, uid, len);
  if (!kl) return;
  size_t fl = field_of(f, sizeof f, ews_rengine_id(), worker, socket_id);
  int shard = ews_rengine_shard_of(uid, len);
  const char *argv[4] = {op, key, f, "1"};
  size_t lens[4] = {4, kl, fl, 1};
  ews_rengine_command(shard, !strcmp(op, "HSET") ? 4 : 3, argv, lens);
}

static int rus_add(const char *uid, size_t len, int worker, double socket_id) {
  int r = ews_users_add(uid, len, worker, socket_id);
  if (r == 0) hset("HSET", uid, len, worker, socket_id);
  return r;
}

static void rus_remove(const char *uid, size_t len, int worker, double socket_id) {
  ews_users_remove(uid, len, worker, socket_id);
  hset("HDEL", uid, len, worker, socket_id);
}

/* ---- lookups (the calling worker's thread) --------------------------------------------- */

static size_t rus_list(const char *uid, size_t len, ews_user_entry_t *out, size_t cap) {
  size_t n = ews_engine_local_users.list(uid, len, out, cap);
  char key[600];
  size_t kl = user_key(key, sizeof key, uid, len);
  if (!kl) return n;
  int shard = ews_rengine_shard_of(uid, len);
  if (!ews_rengine_shard_up(shard)) return n;
  const char *id = ews_rengine_id();
  const char *argv[5] = {"EVAL", LIST_LUA, "1", key, id};
  size_t lens[5] = {4, sizeof LIST_LUA - 1, 1, kl, strlen(id)};
  redisReply *r = ews_rengine_sync(shard, 5, argv, lens);
  if (!r) return n;
  if (r->type == REDIS_REPLY_ARRAY)
    for (size_t i = 0; i < r->elements; i++) {
      const redisReply *e = r->element[i];
      char inst[17];
      int worker;
      double sid;
      if (e->type != REDIS_REPLY_STRING || e->len < 20 || e->str[16] != ':') continue;
      memcpy(inst, e->str, 16);
      inst[16] = 0;
      if (sscanf(e->str + 17, "%d:%lf", &worker, &sid) != 2) continue;
      if (n < cap) {
        out[n].worker = worker;
        out[n].socket_id = sid;
        memcpy(out[n].instance, inst, 17);
      }
      n++;
    }
  freeReplyObject(r);
  return n;
}

static int valid_id(const char *s) {
  if (strlen(s) != 16) return 0;
  for (int i = 0; i < 16; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

static int rus_post_remote(ews_hub_t *h, const char *inst, int to, const char *data, size_t len) {
  (void)h;
  if (!valid_id(inst) || to < 0) return EWS_EINVAL;
  int shard = ews_rengine_shard_of(inst, 16);
  if (!ews_rengine_shard_up(shard)) return EWS_EUNAVAILABLE;
  char chan[32], head[16];
  int cl = snprintf(chan, sizeof chan, EWS_RUS_INBOX "%s", inst);
  int hl = snprintf(head, sizeof head, "%d:", to);
  char *msg = malloc((size_t)hl + len);
  if (!msg) return EWS_ENOMEM;
  memcpy(msg, head, (size_t)hl);
  memcpy(msg + hl, data, len);
  const char *argv[3] = {"PUBLISH", chan, msg};
  size_t lens[3] = {7, (size_t)cl, (size_t)hl + len};
  int r = ews_rengine_command(shard, 3, argv, lens);
  free(msg);
  return r;
}

static int rus_post(ews_hub_t *h, int to, const char *data, size_t len) {
  return ews_engine_local_users.post(h, to, data, len);
}

/* PUBLISH ews:b ID + data: every other instance posts data to each of its workers. */
static int rus_post_all(ews_hub_t *h, const char *data, size_t len) {
  (void)h;
  int shard = ews_rengine_shard_of(EWS_RUS_ALL, sizeof EWS_RUS_ALL - 1);
  if (!ews_rengine_shard_up(shard)) return EWS_EUNAVAILABLE;
  char *msg = malloc(16 + len);
  if (!msg) return EWS_ENOMEM;
  memcpy(msg, ews_rengine_id(), 16);
  memcpy(msg + 16, data, len);
  const char *argv[3] = {"PUBLISH", EWS_RUS_ALL, msg};
  size_t lens[3] = {7, sizeof EWS_RUS_ALL - 1, 16 + len};
  int r = ews_rengine_command(shard, 3, argv, lens);
  free(msg);
  return r;
}

const ews_users_engine_t ews_rus_engine = {rus_add, rus_remove, rus_list, rus_post,
                                           rus_post_remote, rus_post_all};

/* ---- the redis thread ---------------------------------------------------------------- */

/* The liveness key goes to every shard: the scripts that skip dead instances'
 * entries (users, counts, presence) read it on the shard of their own keys. */
static void renew_on(int shard) {
  char key[32], ms[16];
  int kl = snprintf(key, sizeof key, ALIVE_KEY "%s", ews_rengine_id());
  int ml = snprintf(ms, sizeof ms, "%d", ALIVE_MS);
  const char *argv[5] = {"SET", key, "1", "PX", ms};
  size_t lens[5] = {3, (size_t)kl, 1, 2, (size_t)ml};
  ews_rconn_command(ews_rengine_cmd(shard), NULL, NULL, 5, argv, lens);
}

static void renew(uv_timer_t *t) {
  (void)t;
  for (int i = 0; i < ews_rengine_nshards(); i++) renew_on(i);
}

typedef struct {
  int shard;
} walk_t;

static void register_one(const char *uid, size_t len, const ews_user_socket_t *s, void *ud) {
  walk_t *w = ud;
  if (ews_rengine_shard_of(uid, len) != w->shard) return;
  char key[600], f[80];
  size_t kl = user_key(key, sizeof key, uid, len);
  if (!kl) return;
  size_t fl = field_of(f, sizeof f, ews_rengine_id(), s->worker, s->socket_id);
  const char *argv[4] = {"HSET", key, f, "1"};
  size_t lens[4] = {4, kl, fl, 1};
  ews_rconn_command(ews_rengine_cmd(w->shard), NULL, NULL, 4, argv, lens);
}

void ews_rus_cmd_ready(int shard) {
  renew_on(shard);
  walk_t w = {shard};
  ews_users_each(register_one, &w);
}

void ews_rus_sub_ready(int shard, ews_rconn_reply_fn on_message) {
  const char *id = ews_rengine_id();
  if (ews_rengine_shard_of(EWS_RUS_ALL, sizeof EWS_RUS_ALL - 1) == shard) {
    const char *argv[2] = {"SUBSCRIBE", EWS_RUS_ALL};
    size_t lens[2] = {9, sizeof EWS_RUS_ALL - 1};
    ews_rconn_command(ews_rengine_sub(shard), on_message, NULL, 2, argv, lens);
  }
  if (ews_rengine_shard_of(id, 16) != shard) return;
  char chan[32];
  int cl = snprintf(chan, sizeof chan, EWS_RUS_INBOX "%s", id);
  const char *argv[2] = {"SUBSCRIBE", chan};
  size_t lens[2] = {9, (size_t)cl};
  ews_rconn_command(ews_rengine_sub(shard), on_message, NULL, 2, argv, lens);
}

void ews_rus_message(const char *p, size_t n) {
  const char *colon = memchr(p, ':', n < 12 ? n : 12);
  if (!colon) return;
  int to = atoi(p);
  int nw;
  ews_hub_t *const *hubs = ews_rengine_hubs(&nw);
  if (to < 0 || to >= nw || !nw) return;
  size_t hl = (size_t)(colon - p) + 1;
  ews_engine_local_users.post(hubs[0], to, p + hl, n - hl);
}

void ews_rus_all(const char *p, size_t n) {
  if (n < 16 || !memcmp(p, ews_rengine_id(), 16)) return; /* ours: posted locally */
  int nw;
  ews_hub_t *const *hubs = ews_rengine_hubs(&nw);
  for (int w = 0; w < nw; w++) ews_engine_local_users.post(hubs[0], w, p + 16, n - 16);
}

void ews_rus_start(uv_loop_t *loop) {
  uv_timer_init(loop, &U.renew);
  uv_timer_start(&U.renew, renew, RENEW_MS, RENEW_MS);
  U.started = 1;
}

void ews_rus_close(void) {
  if (!U.started) return;
  uv_timer_stop(&U.renew);
  uv_close((uv_handle_t *)&U.renew, NULL);
  U.started = 0;
}
