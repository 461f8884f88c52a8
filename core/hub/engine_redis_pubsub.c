/* engine_redis_pubsub.c — the Redis engine's pub/sub (see engine.h, engine_redis_int.h):
 * offsets and epochs are the cluster's. A topic lives on one shard (by its name) as
 *   ews:pm:TOPIC  a hash: epoch (16 hex), last (the last offset), maxq and ttl (the
 *                 topic's own retention, when set)
 *   ews:ps:TOPIC  a stream: entry "OFFSET-0" = {d = 'j'|'s' + data, t = ms}, capped
 *                 at the topic's max_queue_size, entries older than its message_ttl
 *                 trimmed at each publish
 * One script (EVALSHA; SCRIPT LOAD is sent first on every new command connection)
 * takes the next offset, appends to the stream and PUBLISHes
 * "EPOCH:OFFSET:MS:US:" + 'j'|'s' + data on ews:p:TOPIC (US: the sending instance's
 * clock when it sent the script, 16 hex digits, for the delivery latency),
 * atomically: every instance that has subscribers of the topic (one SUBSCRIBE
 * ews:p:TOPIC while some worker holds it, engine_redis.c) receives its messages in
 * offset order, builds their frames once and posts them to every worker
 * (ews_ps_post), where
 * pubsub_subs.c delivers, skips and catches up as with the in-process sequencer.
 *
 * Publishes run on the redis thread and complete on the publishing worker (a bus
 * message to its inbox runs `done`). Replays and history read the stream from the
 * worker's thread over a blocking connection of that thread (one per shard, with the
 * URL's timeouts): one round trip per page; while a shard is down these return
 * EWS_EUNAVAILABLE at once. When a shard's subscriber connection comes back, every
 * worker resyncs its topics (ews_pubsub_resync): subscribers below a topic's last
 * offset catch up from the stream, or get the gap the stream no longer covers. */
#include <hiredis/hiredis.h>
#include <mbedtls/sha1.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>

#include "err.h"
#include "hub/engine_redis_int.h"
#include "hub/pubsub_int.h"
#include "log.h"
#include "net/fanout.h"
#include "proto/frame.h"
#include "proto/utf8.h"
#include "stat.h"

#define META "ews:pm:"
#define STREAM "ews:ps:"
#define CHAN "ews:p:"
#define PFX_LEN 7 /* META and STREAM */
#define CHAN_LEN 6

static const char PUBLISH_LUA[] =
    "local epoch = redis.call('HGET', KEYS[1], 'epoch')\n"
    "if not epoch then epoch = ARGV[5]; redis.call('HSET', KEYS[1], 'epoch', epoch) end\n"
    "local off = redis.call('HINCRBY', KEYS[1], 'last', 1)\n"
    "local tm = redis.call('TIME')\n"
    "local ms = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)\n"
    "local maxq = tonumber(redis.call('HGET', KEYS[1], 'maxq') or ARGV[2])\n"
    "local ttl = tonumber(redis.call('HGET', KEYS[1], 'ttl') or ARGV[3])\n"
    "if maxq > 0 then\n"
    "  redis.call('XADD', KEYS[2], 'MAXLEN', maxq, off .. '-0', 'd', ARGV[1], 't', ms)\n"
    "else\n"
    "  redis.call('XADD', KEYS[2], off .. '-0', 'd', ARGV[1], 't', ms)\n"
    "end\n"
    "if ttl > 0 then\n"
    "  for i = 1, 100 do\n"
    "    local e = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]\n"
    "    if not e or tonumber(e[2][4]) >= ms - ttl * 1000 then break end\n"
    "    redis.call('XDEL', KEYS[2], e[1])\n"
    "  end\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[4], epoch .. ':' .. off .. ':' .. ms .. ':' .. ARGV[6] .. ':' .. ARGV[1])\n"
    "return {epoch, off, ms}\n";

static const char RESET_LUA[] =
    "redis.call('DEL', KEYS[2])\n"
    "redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'last', 0)\n"
    "return {ARGV[1], 0, 0}\n";

/* ARGV: max_queue_size, message_ttl ("" = the default) */
static const char RETENTION_LUA[] =
    "if ARGV[1] == '' then redis.call('HDEL', KEYS[1], 'maxq')\n"
    "else redis.call('HSET', KEYS[1], 'maxq', ARGV[1]) end\n"
    "if ARGV[2] == '' then redis.call('HDEL', KEYS[1], 'ttl')\n"
    "else redis.call('HSET', KEYS[1], 'ttl', ARGV[2]) end\n"
    "local maxq = tonumber(redis.call('HGET', KEYS[1], 'maxq') or ARGV[3])\n"
    "if maxq > 0 then redis.call('XTRIM', KEYS[2], 'MAXLEN', maxq) end\n"
    "local e = redis.call('HGET', KEYS[1], 'epoch') or ''\n"
    "local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')\n"
    "return {e, last, 0}\n";

/* ARGV: since, limit. -> {epoch|'', last, first id|'', id, d, t, id, d, t, ...} */
static const char READ_LUA[] =
    "local m = redis.call('HMGET', KEYS[1], 'epoch', 'last')\n"
    "local f = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]\n"
    "local last = tonumber(m[2] or '0')\n"
    "local out = {m[1] or '', last, f and f[1] or ''}\n"
    "local since, lim = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "if lim > 0 and since < last then\n"
    "  local es = redis.call('XRANGE', KEYS[2], string.format('%d-0', since + 1), '+', 'COUNT', lim)\n"
    "  for _, e in ipairs(es) do\n"
    "    out[#out + 1] = e[1]; out[#out + 1] = e[2][2]; out[#out + 1] = e[2][4]\n"
    "  end\n"
    "end\n"
    "return out\n";

static struct {
  char sha[41];         /* of PUBLISH_LUA */
  int32_t max_queue, ttl;
  pthread_key_t conns;  /* a worker thread's blocking connections */
  int key_made;
  uint64_t rng;         /* the redis thread's */
} P;

/* ---- completions (a bus message to the publishing worker) ----------------------------- */

enum { OP_PUBLISH, OP_RESET, OP_RETENTION };

typedef struct {
  ews_rjob_t job;     /* the redis thread's part */
  ews_bus_msg_t msg;  /* then the completion on the worker */
  int op;
  ews_hub_t *hub;
  ews_pubsub_done_fn done;
  void *ud;
  int status;
  ews_pubsub_pos_t pos;
  int shard;
  int32_t maxq, ttl;  /* OP_RETENTION */
  size_t tl, n;
  char buf[];         /* topic, then ('j'|'s') + data */
} req_t;

static req_t *req_of_msg(ews_bus_msg_t *m) {
  return (req_t *)((char *)m - offsetof(req_t, msg));
}

static void done_run(void *ud, ews_bus_msg_t *m) {
  req_t *q = req_of_msg(m);
  if (q->done) q->done(ud, q->ud, q->status, &q->pos);
}

static void done_free(ews_bus_msg_t *m) { free(req_of_msg(m)); }

static const ews_bus_kind_t done_kind = {"pub/sub (redis)", done_run, done_free, NULL};

/* The redis thread: hands the result to the worker (or frees the request). */
static void complete(req_t *q, int status) {
  q->status = status;
  ews_rengine_complete(q, q->done != NULL, &q->msg, &done_kind, q->hub);
}

static void on_reply(struct redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  req_t *q = priv;
  redisReply *r = reply;
  if (!r) {
    complete(q, EWS_EUNAVAILABLE); /* the connection was lost first */
    return;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    EWS_ERROR("pubsub %.*s: Redis: %s", (int)(q->tl > 200 ? 200 : q->tl), q->buf, r->str);
    complete(q, EWS_EIO);
    return;
  }
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || r->element[0]->type != REDIS_REPLY_STRING) {
    complete(q, EWS_EIO);
    return;
  }
  uint64_t epoch = 0;
  if (r->element[0]->len) ews_pubsub_epoch_parse(r->element[0]->str, r->element[0]->len, &epoch);
  q->pos.epoch = epoch;
  q->pos.offset = r->element[1]->type == REDIS_REPLY_INTEGER ? r->element[1]->integer : 0;
  q->pos.time = r->element[2]->type == REDIS_REPLY_INTEGER ? r->element[2]->integer : 0;
  complete(q, 0);
}

static uint64_t new_epoch(void) {
  uint64_t e = ews_splitmix64(&P.rng);
  return e ? e : 1;
}

static void req_run(ews_rjob_t *j, int stopping) {
  req_t *q = (req_t *)j;
  if (stopping) {
    free(q);
    return;
  }
  char meta[EWS_PUBSUB_MAX_TOPIC + 16], stream[EWS_PUBSUB_MAX_TOPIC + 16],
      chan[EWS_PUBSUB_MAX_TOPIC + 16];
  int ml = snprintf(meta, sizeof meta, META "%.*s", (int)q->tl, q->buf);
  int sl = snprintf(stream, sizeof stream, STREAM "%.*s", (int)q->tl, q->buf);
  int cl = snprintf(chan, sizeof chan, CHAN "%.*s", (int)q->tl, q->buf);
  char a[3][24], hex[17], sent[16];
  ews_pubsub_epoch_hex(new_epoch(), hex);
  const char *argv[12];
  size_t lens[12];
  int argc = 0;
#define ARG(p, l) (argv[argc] = (p), lens[argc] = (l), argc++)
  if (q->op == OP_PUBLISH) {
    ARG("EVALSHA", 7);
    ARG(P.sha, 40);
  } else {
    const char *lua = q->op == OP_RESET ? RESET_LUA : RETENTION_LUA;
    ARG("EVAL", 4);
    ARG(lua, strlen(lua));
  }
  ARG("2", 1);
  ARG(meta, (size_t)ml);
  ARG(stream, (size_t)sl);
  if (q->op == OP_PUBLISH) {
    ARG(q->buf + q->tl, q->n);
    ARG(a[0], (size_t)snprintf(a[0], sizeof a[0], "%ld", (long)P.max_queue));
    ARG(a[1], (size_t)snprintf(a[1], sizeof a[1], "%ld", (long)P.ttl));
    ARG(chan, (size_t)cl);
    ARG(hex, 16);
    ews_rengine_hex_time(sent, ews_rengine_wall_us());
    ARG(sent, 16);
  } else if (q->op == OP_RESET) {
    ARG(hex, 16);
  } else {
    ARG(a[0], q->maxq < 0 ? 0 : (size_t)snprintf(a[0], sizeof a[0], "%ld", (long)q->maxq));
    ARG(a[1], q->ttl < 0 ? 0 : (size_t)snprintf(a[1], sizeof a[1], "%ld", (long)q->ttl));
    ARG(a[2], (size_t)snprintf(a[2], sizeof a[2], "%ld", (long)P.max_queue));
  }
#undef ARG
  if (ews_rconn_command(ews_rengine_cmd(q->shard), on_reply, q, argc, argv, lens) != 0)
    complete(q, EWS_EUNAVAILABLE);
}

/* A request for the redis thread. 1 (done runs later), or an error (nothing sent). */
static int submit(int op, ews_hub_t *h, const char *topic, size_t tl, int json, const void *data,
                  size_t n, int32_t maxq, int32_t ttl, ews_pubsub_done_fn done, void *ud) {
  if (!ews_ps_valid_topic(topic, tl)) return EWS_EINVAL;
  int shard = ews_rengine_shard_of(topic, tl);
  if (!ews_rengine_shard_up(shard)) return EWS_EUNAVAILABLE;
  size_t payload = op == OP_PUBLISH ? n + 1 : 0;
  req_t *q = malloc(sizeof *q + tl + payload);
  if (!q) return EWS_ENOMEM;
  memset(q, 0, sizeof *q);
  q->job.run = req_run;
  q->job.size = sizeof *q + tl + payload;
  q->op = op;
  q->hub = h;
  q->done = done;
  q->ud = ud;
  q->shard = shard;
  q->maxq = maxq;
  q->ttl = ttl;
  q->tl = tl;
  q->n = payload;
  memcpy(q->buf, topic, tl);
  if (op == OP_PUBLISH) {
    q->buf[tl] = json ? 'j' : 's';
    if (n) memcpy(q->buf + tl + 1, data, n);
  }
  int r = ews_rengine_submit(&q->job);
  if (r != 0) {
    free(q);
    return r;
  }
  return 1;
}

static int rps_publish(ews_hub_t *h, const char *topic, size_t tl, int json, const void *data,
                       size_t n, ews_pubsub_done_fn done, void *ud, ews_pubsub_pos_t *pos) {
  (void)pos;
  if (!ews_utf8_valid(data, n)) return EWS_EINVAL;
  int r = submit(OP_PUBLISH, h, topic, tl, json, data, n, 0, 0, done, ud);
  if (r > 0 && h) EWS_STAT_ADD(h->stats.published, 1);
  return r;
}

static int rps_reset(ews_hub_t *h, const char *topic, size_t tl, ews_pubsub_done_fn done,
                     void *ud, ews_pubsub_pos_t *pos) {
  (void)pos;
  return submit(OP_RESET, h, topic, tl, 0, NULL, 0, 0, 0, done, ud);
}

static int rps_retention(ews_hub_t *h, const char *topic, size_t tl, int32_t maxq, int32_t ttl,
                         ews_pubsub_done_fn done, void *ud, ews_pubsub_pos_t *pos) {
  (void)pos;
  return submit(OP_RETENTION, h, topic, tl, 0, NULL, 0, maxq, ttl, done, ud);
}

/* ---- reads (the worker's thread, blocking) ------------------------------------------- */

typedef struct {
  redisContext *c[EWS_ENGINE_MAX_SHARDS];
} conns_t;

static void conns_free(void *p) {
  conns_t *t = p;
  for (int i = 0; i < EWS_ENGINE_MAX_SHARDS; i++)
    if (t->c[i]) redisFree(t->c[i]);
  free(t);
}

static struct timeval tv_of(uint32_t ms) {
  return (struct timeval){(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
}

/* This thread's connection to the shard, or NULL (unavailable). */
static redisContext *sync_conn(int shard) {
  if (!ews_rengine_shard_up(shard)) return NULL;
  conns_t *t = pthread_getspecific(P.conns);
  if (!t) {
    if (!(t = calloc(1, sizeof *t))) return NULL;
    pthread_setspecific(P.conns, t);
  }
  if (t->c[shard] && t->c[shard]->err) {
    redisFree(t->c[shard]);
    t->c[shard] = NULL;
  }
  if (t->c[shard]) return t->c[shard];
  const ews_redis_url_t *u = ews_rengine_url(shard);
  redisContext *c = u->path[0] ? redisConnectUnixWithTimeout(u->path, tv_of(u->connect_timeout_ms))
                               : redisConnectWithTimeout(u->host, u->port, tv_of(u->connect_timeout_ms));
  if (!c || c->err) {
    if (c) redisFree(c);
    return NULL;
  }
  redisSetTimeout(c, tv_of(u->timeout_ms));
  int ok = 1;
  if (u->password[0]) {
    redisReply *r = u->user[0] ? redisCommand(c, "AUTH %s %s", u->user, u->password)
                               : redisCommand(c, "AUTH %s", u->password);
    ok = r && r->type != REDIS_REPLY_ERROR;
    if (r) freeReplyObject(r);
  }
  if (ok && u->db) {
    redisReply *r = redisCommand(c, "SELECT %d", u->db);
    ok = r && r->type != REDIS_REPLY_ERROR;
    if (r) freeReplyObject(r);
  }
  if (!ok) {
    redisFree(c);
    return NULL;
  }
  t->c[shard] = c;
  return c;
}

redisReply *ews_rengine_sync(int shard, int argc, const char **argv, const size_t *lens) {
  redisReply *r = NULL;
  /* A connection made before the server restarted fails its first command: one
   * more try on a new one. */
  for (int attempt = 0; attempt < 2 && !r; attempt++) {
    redisContext *c = sync_conn(shard);
    if (!c) return NULL;
    r = redisCommandArgv(c, argc, argv, lens); /* NULL: c->err is set, dropped next call */
  }
  return r;
}

static int64_t num_of(const redisReply *r) {
  if (r->type == REDIS_REPLY_INTEGER) return r->integer;
  if (r->type == REDIS_REPLY_STRING) return strtoll(r->str, NULL, 10);
  return 0;
}

static int rps_page(ews_hub_t *h, const char *topic, size_t tl, int64_t since, uint32_t limit,
                    int raw, ews_ps_view_t *v, ews_ps_entry_t *out, uint32_t *n) {
  (void)h;
  *n = 0;
  if (!ews_ps_valid_topic(topic, tl)) return EWS_EINVAL;
  int shard = ews_rengine_shard_of(topic, tl);
  char meta[EWS_PUBSUB_MAX_TOPIC + 16], stream[EWS_PUBSUB_MAX_TOPIC + 16], s[24], l[16];
  int ml = snprintf(meta, sizeof meta, META "%.*s", (int)tl, topic);
  int sl = snprintf(stream, sizeof stream, STREAM "%.*s", (int)tl, topic);
  if (since < 0) since = 0;
  if (since > ((int64_t)1 << 52)) since = (int64_t)1 << 52; /* Lua numbers are doubles */
  int sn = snprintf(s, sizeof s, "%lld", (long long)since);
  int ln = snprintf(l, sizeof l, "%u", out ? limit : 0);
  const char *argv[7] = {"EVAL", READ_LUA, "2", meta, stream, s, l};
  size_t lens[7] = {4, sizeof READ_LUA - 1, 1, (size_t)ml, (size_t)sl, (size_t)sn, (size_t)ln};
  redisReply *r = ews_rengine_sync(shard, 7, argv, lens);
  if (!r) return EWS_EUNAVAILABLE;
  int rc = 0;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || (r->elements - 3) % 3) {
    if (r->type == REDIS_REPLY_ERROR) EWS_ERROR("pubsub %.*s: Redis: %s", (int)tl, topic, r->str);
    freeReplyObject(r);
    return EWS_EIO;
  }
  uint64_t epoch = 0;
  if (r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len)
    ews_pubsub_epoch_parse(r->element[0]->str, r->element[0]->len, &epoch);
  int64_t last = num_of(r->element[1]);
  int64_t first = r->element[2]->type == REDIS_REPLY_STRING && r->element[2]->len
                      ? num_of(r->element[2]) : last + 1;
  *v = (ews_ps_view_t){epoch, first, last};
  for (size_t i = 3; out && i + 2 < r->elements && *n < limit; i += 3) {
    const redisReply *d = r->element[i + 1];
    if (d->type != REDIS_REPLY_STRING) continue;
    int64_t off = num_of(r->element[i]), ms = num_of(r->element[i + 2]);
    int json = d->len > 0 && d->str[0] == 'j';
    const char *p = d->len ? d->str + 1 : "";
    size_t dl = d->len ? d->len - 1 : 0, hl;
    ews_buf_t *b = raw ? ews_fanout_plain(EWS_OP_TEXT, p, dl, &hl)
                       : ews_ps_envelope(topic, tl, epoch, off, ms, json, p, dl, &hl);
    if (!b) {
      ews_ps_release(out, *n);
      *n = 0;
      rc = EWS_ENOMEM;
      break;
    }
    out[(*n)++] = (ews_ps_entry_t){off, ms, json, b, hl};
  }
  freeReplyObject(r);
  return rc;
}

static int rps_view(ews_hub_t *h, const char *topic, size_t tl, ews_ps_view_t *v) {
  uint32_t n;
  return rps_page(h, topic, tl, 0, 0, 0, v, NULL, &n);
}

static int rps_history(ews_hub_t *h, const char *topic, size_t tl, int64_t since, uint32_t limit,
                       ews_pubsub_history_t *out) {
  memset(out, 0, sizeof *out);
  if (!ews_ps_valid_topic(topic, tl)) return EWS_EINVAL;
  if (limit > EWS_STORE_MAX_LIMIT) limit = EWS_STORE_MAX_LIMIT;
  return ews_ps_history_paged(h, rps_page, topic, tl, since, limit, out);
}

static int rps_persistent(void) { return 2; }

const ews_pubsub_engine_t ews_rps_engine = {
    rps_persistent, ews_ps_max_recover,      rps_publish, rps_reset,
    rps_retention,  rps_history,             ews_pubsub_history_free,
    rps_view,       rps_page,                ews_rengine_topic_hold,
    ews_rengine_topic_release};

/* ---- the redis thread --------------------------------------------------------------- */

static void on_script_loaded(struct redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  (void)priv;
  redisReply *r = reply;
  if (r && r->type == REDIS_REPLY_ERROR) EWS_ERROR("pubsub: SCRIPT LOAD: %s", r->str);
}

void ews_rps_cmd_ready(int shard) {
  const char *argv[3] = {"SCRIPT", "LOAD", PUBLISH_LUA};
  size_t lens[3] = {6, 4, sizeof PUBLISH_LUA - 1};
  ews_rconn_command(ews_rengine_cmd(shard), on_script_loaded, NULL, 3, argv, lens);
}

typedef struct {
  ews_bus_msg_t base;
} resync_msg_t;

static void resync_run(void *ud, ews_bus_msg_t *m) {
  (void)m;
  ews_pubsub_resync(ud);
}

static void resync_free(ews_bus_msg_t *m) { free(m); }

static const ews_bus_kind_t resync_kind = {"pub/sub resync (redis)", resync_run, resync_free, NULL};

void ews_rps_shard_up(int shard) {
  (void)shard;
  int nw;
  ews_hub_t *const *hubs = ews_rengine_hubs(&nw);
  for (int i = 0; i < nw; i++) {
    resync_msg_t *m = malloc(sizeof *m);
    if (!m) continue;
    m->base.kind = &resync_kind;
    ews_bus_post(&hubs[i]->inbox, &m->base);
  }
}

typedef struct {
  ews_bus_msg_t base;
  size_t tl;
  char topic[];
} topic_msg_t;

static void topic_run(void *ud, ews_bus_msg_t *m) {
  topic_msg_t *t = (topic_msg_t *)m;
  ews_pubsub_resync_topic(ud, t->topic, t->tl);
}

static const ews_bus_kind_t topic_kind = {"pub/sub topic resync (redis)", topic_run, resync_free,
                                          NULL};

void ews_rps_topic_subscribed(const char *topic, size_t tl) {
  int nw;
  ews_hub_t *const *hubs = ews_rengine_hubs(&nw);
  for (int i = 0; i < nw; i++) {
    topic_msg_t *m = malloc(sizeof *m + tl);
    if (!m) continue;
    m->base.kind = &topic_kind;
    m->tl = tl;
    memcpy(m->topic, topic, tl);
    ews_bus_post(&hubs[i]->inbox, &m->base);
  }
}

void ews_rps_message(const char *channel, size_t clen, const char *p, size_t n) {
  if (clen <= CHAN_LEN || memcmp(channel, CHAN, CHAN_LEN)) return;
  const char *topic = channel + CHAN_LEN;
  size_t tl = clen - CHAN_LEN;
  /* EPOCH:OFFSET:MS:US:('j'|'s')DATA */
  const char *c1 = memchr(p, ':', n);
  const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(p + n - c1 - 1)) : NULL;
  const char *c3 = c2 ? memchr(c2 + 1, ':', (size_t)(p + n - c2 - 1)) : NULL;
  const char *c4 = c3 ? memchr(c3 + 1, ':', (size_t)(p + n - c3 - 1)) : NULL;
  uint64_t epoch;
  if (!c4 || c4 + 1 >= p + n || ews_pubsub_epoch_parse(p, (size_t)(c1 - p), &epoch) != 0) {
    EWS_WARN("pubsub %.*s: a malformed message from Redis", (int)(tl > 200 ? 200 : tl), topic);
    return;
  }
  int64_t off = strtoll(c1 + 1, NULL, 10), ms = strtoll(c2 + 1, NULL, 10);
  ews_rengine_delivered(ews_rengine_parse_hex_time(c3 + 1, (size_t)(c4 - c3 - 1)));
  int json = c4[1] == 'j';
  const char *d = c4 + 2;
  size_t dl = (size_t)(p + n - d);
  ews_buf_t *env, *raw;
  size_t ehl, rhl;
  if (ews_ps_frames(topic, tl, epoch, off, ms, json, d, dl, &env, &ehl, &raw, &rhl) != 0) {
    EWS_ERROR("pubsub %.*s: out of memory framing #%lld", (int)(tl > 200 ? 200 : tl), topic,
              (long long)off);
    return; /* the workers catch up from the stream at the next message */
  }
  int nw;
  ews_hub_t *const *hubs = ews_rengine_hubs(&nw);
  for (int i = 0; i < nw; i++)
    ews_ps_post(hubs[i], topic, tl, env, ehl, raw, rhl, epoch, off, ms, json);
  ews_buf_unref(env);
  ews_buf_unref(raw);
}

void ews_rps_start(const ews_pubsub_config_t *cfg) {
  P.max_queue = cfg->max_queue;
  P.ttl = cfg->ttl;
  unsigned char sum[20];
  if (mbedtls_sha1_ret((const unsigned char *)PUBLISH_LUA, sizeof PUBLISH_LUA - 1, sum) != 0)
    memset(sum, 0, sizeof sum);
  for (int i = 0; i < 20; i++) snprintf(P.sha + 2 * i, 3, "%02x", sum[i]);
  if (getrandom(&P.rng, sizeof P.rng, 0) != sizeof P.rng) P.rng = (uint64_t)(uintptr_t)&P;
  P.key_made = pthread_key_create(&P.conns, conns_free) == 0;
}

void ews_rps_stop(void) {
  if (P.key_made) {
    /* The workers have ended (their connections were freed with them); the main
     * thread never read. */
    conns_t *t = pthread_getspecific(P.conns);
    if (t) conns_free(t);
    pthread_key_delete(P.conns);
  }
  P.key_made = 0;
}
