/* engine_redis_notify.c — the Redis engine's notifications (see engine.h,
 * engine_redis_int.h): stored in Redis, so every instance reads and marks the same
 * ones. On the user's shard:
 *   ews:nr:USER  a hash: "#seq" (the user's last id) and, per notification, its id ->
 *                "STATE:CREATED_MS:EXPIRES_MS:" + the JSON payload (expires 0: never)
 *   ews:nq:USER  a sorted set of the ids (score = id), for order and the per-user cap
 * Each operation is one script (atomic). store and mark run on the redis thread and
 * complete on the asking worker (acknowledged once Redis ran them: durable as
 * Redis's persistence, appendfsync always in the tests); pending and list read from
 * the worker's thread (one round trip). Expired ones are skipped when read and
 * dropped when the user's list is trimmed. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub/engine_redis_int.h"
#include "log.h"

#define MAX_IDS 1000

static struct {
  int32_t max_per_user, ttl;
} N;

/* KEYS nq, nr; ARGV payload, ttl seconds (0 none), max per user -> {id, created} */
static const char STORE_LUA[] =
    "local id = redis.call('HINCRBY', KEYS[2], '#seq', 1)\n"
    "local tm = redis.call('TIME')\n"
    "local ms = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)\n"
    "local exp = 0\n"
    "if tonumber(ARGV[2]) > 0 then exp = ms + tonumber(ARGV[2]) * 1000 end\n"
    "redis.call('HSET', KEYS[2], id, string.format('0:%d:%d:', ms, exp) .. ARGV[1])\n"
    "redis.call('ZADD', KEYS[1], id, id)\n"
    "local max = tonumber(ARGV[3])\n"
    "if max > 0 then\n"
    "  local n = redis.call('ZCARD', KEYS[1])\n"
    "  if n > max then\n"
    "    for _, o in ipairs(redis.call('ZRANGE', KEYS[1], 0, n - max - 1)) do\n"
    "      redis.call('HDEL', KEYS[2], o)\n"
    "    end\n"
    "    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - max - 1)\n"
    "  end\n"
    "end\n"
    "return {id, ms}\n";

/* KEYS nq, nr; ARGV state, ids... -> changed (states only move forward) */
static const char MARK_LUA[] =
    "local st, changed = tonumber(ARGV[1]), 0\n"
    "for i = 2, #ARGV do\n"
    "  local row = redis.call('HGET', KEYS[2], ARGV[i])\n"
    "  if row then\n"
    "    local old = tonumber(string.sub(row, 1, 1))\n"
    "    if st > old then\n"
    "      redis.call('HSET', KEYS[2], ARGV[i], st .. string.sub(row, 2))\n"
    "      changed = changed + 1\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return changed\n";

/* KEYS nq, nr; ARGV mode ('p': pending oldest first, 'l': all newest first), limit,
 * offset -> {total, id, row, id, row, ...} */
static const char READ_LUA[] =
    "local tm = redis.call('TIME')\n"
    "local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)\n"
    "local pend = ARGV[1] == 'p'\n"
    "local ids = pend and redis.call('ZRANGE', KEYS[1], 0, -1) or redis.call('ZREVRANGE', KEYS[1], 0, -1)\n"
    "local lim, off = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local out, total = {0}, 0\n"
    "for _, id in ipairs(ids) do\n"
    "  local row = redis.call('HGET', KEYS[2], id)\n"
    "  if row then\n"
    "    local st, exp = string.match(row, '^(%d):%d+:(%d+):')\n"
    "    exp = tonumber(exp)\n"
    "    if (exp == 0 or exp > now) and (not pend or st == '0') then\n"
    "      total = total + 1\n"
    "      if total > off and total <= off + lim then\n"
    "        out[#out + 1] = id; out[#out + 1] = row\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "out[1] = total\n"
    "return out\n";

static size_t keys_of(char nq[600], char nr[600], size_t *nrl, const char *user, size_t ul) {
  if (ul > 500) return 0;
  int a = snprintf(nq, 600, "ews:nq:%.*s", (int)ul, user);
  int b = snprintf(nr, 600, "ews:nr:%.*s", (int)ul, user);
  *nrl = (size_t)b;
  return (size_t)a;
}

/* ---- store and mark (the redis thread; completed on the worker) --------------------- */

typedef struct {
  ews_rjob_t job;     /* first */
  ews_bus_msg_t msg;  /* the completion */
  ews_hub_t *hub;
  ews_notify_done_fn done;
  void *ud;
  int status;
  int64_t a, b;
  int shard;
  int argc;
  const char **argv; /* into buf */
  size_t *lens;
  char buf[];
} nreq_t;

static nreq_t *of_msg(ews_bus_msg_t *m) { return (nreq_t *)((char *)m - offsetof(nreq_t, msg)); }

static void done_run(void *ud, ews_bus_msg_t *m) {
  nreq_t *q = of_msg(m);
  if (q->done) q->done(ud, q->ud, q->status, q->a, q->b);
}

static void done_free(ews_bus_msg_t *m) { free(of_msg(m)); }

static const ews_bus_kind_t done_kind = {"notifications (redis)", done_run, done_free, NULL};

static void complete(nreq_t *q, int status) {
  q->status = status;
  ews_rengine_complete(q, q->done != NULL, &q->msg, &done_kind, q->hub);
}

static void on_reply(struct redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  nreq_t *q = priv;
  redisReply *r = reply;
  if (!r) {
    complete(q, EWS_EUNAVAILABLE);
    return;
  }
  if (r->type == REDIS_REPLY_INTEGER) {
    q->a = r->integer;
  } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
    q->a = r->element[0]->integer;
    q->b = r->element[1]->integer;
  } else {
    if (r->type == REDIS_REPLY_ERROR) EWS_ERROR("notifications: Redis: %s", r->str);
    complete(q, EWS_EIO);
    return;
  }
  complete(q, 0);
}

static void nreq_run(ews_rjob_t *j, int stopping) {
  nreq_t *q = (nreq_t *)j;
  if (stopping) {
    free(q);
    return;
  }
  if (ews_rconn_command(ews_rengine_cmd(q->shard), on_reply, q, q->argc, q->argv, q->lens) != 0)
    complete(q, EWS_EUNAVAILABLE);
}

/* A request of argc arguments (copied). 1 (done later) or an error. */
static int submit(ews_hub_t *h, int shard, int argc, const char *const *argv, const size_t *lens,
                  ews_notify_done_fn done, void *ud) {
  if (!ews_rengine_shard_up(shard)) return EWS_EUNAVAILABLE;
  size_t total = 0;
  for (int i = 0; i < argc; i++) total += lens[i];
  size_t head = sizeof(nreq_t) + (size_t)argc * (sizeof(char *) + sizeof(size_t));
  nreq_t *q = malloc(head + total);
  if (!q) return EWS_ENOMEM;
  memset(q, 0, sizeof *q);
  q->argv = (const char **)((char *)q + sizeof *q);
  q->lens = (size_t *)((char *)q->argv + (size_t)argc * sizeof(char *));
  char *p = (char *)q + head;
  for (int i = 0; i < argc; i++) {
    memcpy(p, argv[i], lens[i]);
    q->argv[i] = p;
    q->lens[i] = lens[i];
    p += lens[i];
  }
  q->job.run = nreq_run;
  q->job.size = head + total;
  q->hub = h;
  q->done = done;
  q->ud = ud;
  q->shard = shard;
  q->argc = argc;
  int r = ews_rengine_submit(&q->job);
  if (r != 0) {
    free(q);
    return r;
  }
  return 1;
}

static int rno_store(ews_hub_t *h, const char *user, size_t ul, const char *p, size_t n, int ttl,
                     ews_notify_done_fn done, void *ud) {
  char nq[600], nr[600], t[24], m[24];
  size_t nrl, nql = keys_of(nq, nr, &nrl, user, ul);
  if (!nql || ul == 0) return EWS_EINVAL;
  int secs = ttl == 0 ? N.ttl : ttl < 0 ? 0 : ttl; /* 0: the default; -1: never */
  int tl = snprintf(t, sizeof t, "%d", secs);
  int ml = snprintf(m, sizeof m, "%ld", (long)(N.max_per_user > 0 ? N.max_per_user : 0));
  const char *argv[8] = {"EVAL", STORE_LUA, "2", nq, nr, p, t, m};
  size_t lens[8] = {4, sizeof STORE_LUA - 1, 1, nql, nrl, n, (size_t)tl, (size_t)ml};
  return submit(h, ews_rengine_shard_of(user, ul), 8, argv, lens, done, ud);
}

static int rno_mark(ews_hub_t *h, const char *user, size_t ul, const int64_t *ids, size_t n,
                    int state, ews_notify_done_fn done, void *ud) {
  char nq[600], nr[600], st[8];
  size_t nrl, nql = keys_of(nq, nr, &nrl, user, ul);
  if (!nql || !user || n == 0 || n > MAX_IDS) return EWS_EINVAL;
  const char **argv = malloc((n + 6) * sizeof *argv);
  size_t *lens = malloc((n + 6) * sizeof *lens);
  char (*num)[24] = malloc(n * sizeof *num);
  int r = EWS_ENOMEM;
  if (argv && lens && num) {
    int sl = snprintf(st, sizeof st, "%d", state);
    argv[0] = "EVAL", lens[0] = 4;
    argv[1] = MARK_LUA, lens[1] = sizeof MARK_LUA - 1;
    argv[2] = "2", lens[2] = 1;
    argv[3] = nq, lens[3] = nql;
    argv[4] = nr, lens[4] = nrl;
    argv[5] = st, lens[5] = (size_t)sl;
    for (size_t i = 0; i < n; i++) {
      lens[6 + i] = (size_t)snprintf(num[i], sizeof num[i], "%lld", (long long)ids[i]);
      argv[6 + i] = num[i];
    }
    r = submit(h, ews_rengine_shard_of(user, ul), (int)n + 6, argv, lens, done, ud);
  }
  free(argv);
  free(lens);
  free(num);
  return r;
}

/* ---- reads (the worker's thread) -------------------------------------------------------- */

static int read_rows(const char *mode, const char *user, size_t ul, uint32_t limit,
                     uint32_t offset, ews_store_notifs_t *out) {
  memset(out, 0, sizeof *out);
  char nq[600], nr[600], l[16], o[16];
  size_t nrl, nql = keys_of(nq, nr, &nrl, user, ul);
  if (!nql) return EWS_EINVAL;
  if (limit > 1000) limit = 1000;
  int ll = snprintf(l, sizeof l, "%u", limit), ol = snprintf(o, sizeof o, "%u", offset);
  const char *argv[8] = {"EVAL", READ_LUA, "2", nq, nr, mode, l, o};
  size_t lens[8] = {4, sizeof READ_LUA - 1, 1, nql, nrl, 1, (size_t)ll, (size_t)ol};
  redisReply *r = ews_rengine_sync(ews_rengine_shard_of(user, ul), 8, argv, lens);
  if (!r) return EWS_EUNAVAILABLE;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || (r->elements - 1) % 2) {
    if (r->type == REDIS_REPLY_ERROR) EWS_ERROR("notifications: Redis: %s", r->str);
    freeReplyObject(r);
    return EWS_EIO;
  }
  size_t n = (r->elements - 1) / 2, bytes = 0;
  for (size_t i = 0; i < n; i++) bytes += r->element[2 + 2 * i]->len;
  out->rows = malloc(n * sizeof *out->rows + bytes + 1);
  if (!out->rows) {
    freeReplyObject(r);
    return EWS_ENOMEM;
  }
  char *tail = (char *)(out->rows + n);
  out->total = r->element[0]->integer;
  for (size_t i = 0; i < n; i++) {
    const redisReply *id = r->element[1 + 2 * i], *row = r->element[2 + 2 * i];
    long long created = 0, expires = 0;
    int st = 0, used = 0;
    if (row->type != REDIS_REPLY_STRING ||
        sscanf(row->str, "%d:%lld:%lld:%n", &st, &created, &expires, &used) < 3 || !used)
      continue;
    ews_store_notif_t *x = &out->rows[out->n++];
    x->id = strtoll(id->str, NULL, 10);
    x->created_at = created;
    x->expires_at = expires;
    x->state = (ews_notif_state_t)st;
    x->len = row->len - (size_t)used;
    memcpy(tail, row->str + used, x->len);
    x->payload = tail;
    tail += x->len;
  }
  freeReplyObject(r);
  return 0;
}

static int rno_pending(ews_hub_t *h, const char *user, size_t ul, uint32_t limit,
                       ews_store_notifs_t *out) {
  (void)h;
  return read_rows("p", user, ul, limit, 0, out);
}

static int rno_list(ews_hub_t *h, const char *user, size_t ul, uint32_t limit, uint32_t offset,
                    ews_store_notifs_t *out) {
  (void)h;
  return read_rows("l", user, ul, limit, offset, out);
}

static void rno_free(ews_store_notifs_t *r) {
  free(r->rows);
  memset(r, 0, sizeof *r);
}

const ews_notify_engine_t ews_rno_engine = {rno_store, rno_mark, rno_pending, rno_list, rno_free};

void ews_rno_start(int32_t max_per_user, int32_t ttl) {
  N.max_per_user = max_per_user;
  N.ttl = ttl;
}
