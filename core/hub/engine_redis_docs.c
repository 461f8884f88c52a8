/* engine_redis_docs.c — the Redis engine's collaborative documents (see engine.h:
 * ews_docs_engine_t; the committing, transforming and publishing is
 * lua/edgews/docs.lua's). A document lives on one shard (its name, as topics) as
 *   ews:dm:NAME  a hash: rev (the last revision), first (the first revision in the
 *                log), srev and snap (the last snapshot: its revision and text)
 *   ews:dl:NAME  a list: the log, element i = revision first + i, each
 *                "REV SEQ KEYLEN:KEY" + the operation's JSON
 *   ews:dk:NAME  a hash: client key -> "SEQ:REV", its last committed operation
 *   ews:dp:NAME  while a committer that lost the race holds the document's turn: its
 *                token (expires after CLAIM_MS)
 * One script commits (compare-and-append): it appends the operation only when the
 * stored revision is the one the committer transformed it to, records the client's
 * seq, stores the snapshot it is given, trims the log and PUBLISHes the committer's
 * message on ews:d:NAME; otherwise it answers with what the committer lacks (the
 * operations since its revision) or with the revision of a resend already
 * committed. Fairness: a committer that lost once asks for the turn with its next
 * try; once it lost again it holds it, and the others' commits are answered 'busy'
 * (they wait a little and try again) until its commit succeeds (which gives the turn
 * back), it releases it, or it expires: an instance whose copy is always a little
 * behind (it applies what the others committed before it retries) is never starved
 * by one that commits back to back. Every call is one round trip from the calling worker's thread on its
 * blocking connection to the shard (ews_rengine_sync, as pub/sub's history reads);
 * an acknowledged revision is as durable as Redis makes it (appendfsync always).
 *
 * Cursors (selections without an edit) are PUBLISHed the same way, from the redis
 * thread (fire and forget: a cursor that does not cross is replaced by the next).
 *
 * Delivery: an instance SUBSCRIBEs ews:d:NAME on the document's shard while its
 * owner of the document has it loaded (hold / release: engine_redis.c's records, as
 * for topics; no pattern subscription), so it receives only the revisions and
 * cursors of the documents it has editors of. A message is posted, as the bus
 * message the committer built, to the worker of this instance that owns the
 * document (the same hash as lua/edgews/docs.lua's owner). Once the SUBSCRIBE takes
 * effect the owner is posted the message it gave to hold (it reads from the log
 * what was committed between its load and then). When a shard's subscriber
 * connection becomes ready, every worker is posted the resync message the Lua side
 * registered (it reads what its documents missed). */
#include <hiredis/hiredis.h>
#include <mbedtls/sha1.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub/engine_redis_int.h"
#include "log.h"

#define CHANNEL_PREFIX_LEN (sizeof EWS_RDOC_CHAN - 1)
#define MAX_NAME 500

enum { N_SCRIPTS = 3 };

static struct {
  uv_mutex_t lock; /* guards resync */
  int started;
  char sha[N_SCRIPTS + 1][41]; /* the scripts' SHA1s (hex), by EWS_DOCS_* */
  char *resync;    /* the Lua side's resync bus message */
  size_t resync_len;
} D;

#define CLAIM_MS "200"

/* KEYS dm, dl, dk, dp; ARGV expected rev, entry, message, client key ('' none), seq (0
 * none), snapshot? ('1'), snapshot text, history, channel, token, claim? ('1') ->
 *   {'ok', rev} | {'dup', rev} | {'stale', seq} | {'conflict', rev, claimed ('1' when
 *   the caller now holds the turn), entries after expected...} | {'busy', rev}
 *   (another committer holds the turn) | {'old', rev} (expected is older than the
 *   log) | {'behind', rev} (expected is past the stored revision: the store lost
 *   revisions) */
static const char COMMIT_LUA[] =
    "local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')\n"
    "local key, seq = ARGV[4], tonumber(ARGV[5])\n"
    "if key ~= '' and seq > 0 then\n"
    "  local d = redis.call('HGET', KEYS[3], key)\n"
    "  if d then\n"
    "    local ds, dr = string.match(d, '^(%d+):(%d+)$')\n"
    "    ds = tonumber(ds)\n"
    "    if seq == ds then return {'dup', dr} end\n"
    "    if seq < ds then return {'stale', tostring(ds)} end\n"
    "  end\n"
    "end\n"
    "local holder = redis.call('GET', KEYS[4])\n"
    "if holder and holder ~= ARGV[10] then return {'busy', tostring(rev)} end\n"
    "local exp = tonumber(ARGV[1])\n"
    "local first = tonumber(redis.call('HGET', KEYS[1], 'first') or '1')\n"
    "if exp ~= rev then\n"
    "  if exp > rev then return {'behind', tostring(rev)} end\n"
    "  if exp + 1 < first then return {'old', tostring(rev)} end\n"
    "  local claimed = '0'\n"
    "  if holder or ARGV[11] == '1' then\n"
    "    redis.call('SET', KEYS[4], ARGV[10], 'PX', " CLAIM_MS ")\n"
    "    claimed = '1'\n"
    "  end\n"
    "  local out = {'conflict', tostring(rev), claimed}\n"
    "  for _, e in ipairs(redis.call('LRANGE', KEYS[2], exp + 1 - first, -1)) do\n"
    "    out[#out + 1] = e\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "rev = rev + 1\n"
    "redis.call('RPUSH', KEYS[2], ARGV[2])\n"
    "if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'srev', rev, 'snap', ARGV[7]) end\n"
    "if key ~= '' and seq > 0 then redis.call('HSET', KEYS[3], key, seq .. ':' .. rev) end\n"
    "local srev = tonumber(redis.call('HGET', KEYS[1], 'srev') or '0')\n"
    "local keep = math.min(srev, rev - tonumber(ARGV[8]))\n"
    "if keep + 1 > first then\n"
    "  redis.call('LTRIM', KEYS[2], keep + 1 - first, -1)\n"
    "  first = keep + 1\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'rev', rev, 'first', first)\n"
    "if rev % 256 == 0 and redis.call('HLEN', KEYS[3]) > 256 then\n"
    "  local all = redis.call('HGETALL', KEYS[3])\n"
    "  for i = 1, #all, 2 do\n"
    "    local r = tonumber(string.match(all[i + 1], ':(%d+)$'))\n"
    "    if r < first then redis.call('HDEL', KEYS[3], all[i]) end\n"
    "  end\n"
    "end\n"
    "if holder then redis.call('DEL', KEYS[4]) end\n"
    "redis.call('PUBLISH', ARGV[9], ARGV[3])\n"
    "return {'ok', tostring(rev)}\n";

/* KEYS dm, dl, dk, dp; ARGV token -> {'ok'}: gives the turn back (a commit that
 * holds it and ends without committing). */
static const char RELEASE_LUA[] =
    "if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end\n"
    "return {'ok'}\n";

/* KEYS dm, dl, dk; ARGV since (-1: the whole document) ->
 *   {rev, first, srev, snap | '', entries from max(since + 1, first)...}
 * (snap only for the whole document). */
static const char READ_LUA[] =
    "local m = redis.call('HMGET', KEYS[1], 'rev', 'first', 'srev')\n"
    "local rev, first, srev = tonumber(m[1] or '0'), tonumber(m[2] or '1'), tonumber(m[3] or '0')\n"
    "local since = tonumber(ARGV[1])\n"
    "local out = {tostring(rev), tostring(first), tostring(srev), ''}\n"
    "if since < 0 then\n"
    "  out[4] = redis.call('HGET', KEYS[1], 'snap') or ''\n"
    "  since = first - 1\n"
    "end\n"
    "if since + 1 < first then since = first - 1 end\n"
    "if since < rev then\n"
    "  for _, e in ipairs(redis.call('LRANGE', KEYS[2], since + 1 - first, -1)) do\n"
    "    out[#out + 1] = e\n"
    "  end\n"
    "end\n"
    "return out\n";

static int rdoc_call(const char *name, size_t nl, int op, int argc, const char *const *argv,
                     const size_t *lens, ews_docs_reply_t *out) {
  memset(out, 0, sizeof *out);
  if (nl == 0 || nl > MAX_NAME || argc < 0 || argc > 16) return EWS_EINVAL;
  int shard = ews_rengine_shard_of(name, nl);
  char dm[MAX_NAME + 8], dl[MAX_NAME + 8], dk[MAX_NAME + 8], dp[MAX_NAME + 8];
  int ml = snprintf(dm, sizeof dm, "ews:dm:%.*s", (int)nl, name);
  int ll = snprintf(dl, sizeof dl, "ews:dl:%.*s", (int)nl, name);
  int kl = snprintf(dk, sizeof dk, "ews:dk:%.*s", (int)nl, name);
  int pl = snprintf(dp, sizeof dp, "ews:dp:%.*s", (int)nl, name);
  const char *a[24];
  size_t al[24];
  const char *script;
  size_t sl;
  if (op == EWS_DOCS_COMMIT) script = COMMIT_LUA, sl = sizeof COMMIT_LUA - 1;
  else if (op == EWS_DOCS_READ) script = READ_LUA, sl = sizeof READ_LUA - 1;
  else if (op == EWS_DOCS_RELEASE) script = RELEASE_LUA, sl = sizeof RELEASE_LUA - 1;
  else return EWS_EINVAL;
  /* EVALSHA (the script's text is sent once per connection: EVAL on NOSCRIPT) */
  a[0] = "EVALSHA", al[0] = 7;
  a[1] = D.sha[op], al[1] = 40;
  a[2] = "4", al[2] = 1;
  a[3] = dm, al[3] = (size_t)ml;
  a[4] = dl, al[4] = (size_t)ll;
  a[5] = dk, al[5] = (size_t)kl;
  a[6] = dp, al[6] = (size_t)pl;
  for (int i = 0; i < argc; i++) a[7 + i] = argv[i], al[7 + i] = lens[i];
  redisReply *r = ews_rengine_sync(shard, 7 + argc, a, al);
  if (r && r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "NOSCRIPT", 8)) {
    freeReplyObject(r);
    a[0] = "EVAL", al[0] = 4;
    a[1] = script, al[1] = sl;
    r = ews_rengine_sync(shard, 7 + argc, a, al);
  }
  if (!r) return EWS_EUNAVAILABLE;
  if (r->type != REDIS_REPLY_ARRAY) {
    if (r->type == REDIS_REPLY_ERROR) EWS_ERROR("documents %.*s: Redis: %s", (int)nl, name, r->str);
    freeReplyObject(r);
    return EWS_EIO;
  }
  size_t bytes = 0;
  for (size_t i = 0; i < r->elements; i++) bytes += r->element[i]->len + 1;
  out->s = malloc(r->elements * (sizeof *out->s + sizeof *out->len) + bytes + 1);
  if (!out->s) {
    freeReplyObject(r);
    return EWS_ENOMEM;
  }
  out->len = (size_t *)(out->s + r->elements);
  char *tail = (char *)(out->len + r->elements);
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply *e = r->element[i];
    size_t n = 0;
    if (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS) {
      n = e->len;
      memcpy(tail, e->str, n);
    } else if (e->type == REDIS_REPLY_INTEGER) {
      n = (size_t)snprintf(tail, 24, "%lld", e->integer);
    }
    tail[n] = 0;
    out->s[i] = tail;
    out->len[i] = n;
    tail += n + 1;
  }
  out->n = r->elements;
  freeReplyObject(r);
  return 0;
}

static void rdoc_reply_free(ews_docs_reply_t *r) {
  free(r->s);
  memset(r, 0, sizeof *r);
}

static void rdoc_set_resync(const char *blob, size_t n) {
  if (!D.started) return;
  uv_mutex_lock(&D.lock);
  if (!D.resync) {
    D.resync = malloc(n ? n : 1);
    if (D.resync) {
      memcpy(D.resync, blob, n);
      D.resync_len = n;
    }
  }
  uv_mutex_unlock(&D.lock);
}

/* ---- a message for every instance's owner (cursors): PUBLISH on the redis thread --- */

typedef struct {
  ews_rjob_t job; /* first */
  int shard;
  size_t klen, plen;
  char data[];
} dpub_t;

static void dpub_run(ews_rjob_t *j, int stopping) {
  dpub_t *p = (dpub_t *)j;
  if (!stopping) {
    const char *argv[3] = {"PUBLISH", p->data, p->data + p->klen};
    size_t lens[3] = {7, p->klen, p->plen};
    ews_rconn_command(ews_rengine_cmd(p->shard), NULL, NULL, 3, argv, lens);
  }
  free(p);
}

static int rdoc_publish(const char *name, size_t nl, const char *data, size_t n) {
  if (nl == 0 || nl > MAX_NAME) return EWS_EINVAL;
  int shard = ews_rengine_shard_of(name, nl);
  if (!ews_rengine_shard_up(shard)) return EWS_EUNAVAILABLE;
  size_t klen = CHANNEL_PREFIX_LEN + nl, size = sizeof(dpub_t) + klen + n;
  dpub_t *p = malloc(size);
  if (!p) return EWS_ENOMEM;
  p->job = (ews_rjob_t){NULL, dpub_run, size};
  p->shard = shard;
  p->klen = klen;
  p->plen = n;
  memcpy(p->data, "ews:d:", CHANNEL_PREFIX_LEN);
  memcpy(p->data + CHANNEL_PREFIX_LEN, name, nl);
  memcpy(p->data + klen, data, n);
  int r = ews_rengine_submit(&p->job);
  if (r != 0) free(p);
  return r;
}

const ews_docs_engine_t ews_rdoc_engine = {rdoc_call,    rdoc_reply_free,
                                           rdoc_set_resync, rdoc_publish,
                                           ews_rengine_doc_hold, ews_rengine_doc_release};

/* ---- delivery (the redis thread) ----------------------------------------------------- */

/* The worker of this instance that commits the document: lua/edgews/docs.lua's owner. */
static int owner_of(const char *name, size_t len, int nworkers) {
  uint32_t h = 5381;
  for (size_t i = 0; i < len; i++) h = h * 33 + (unsigned char)name[i];
  return (int)(h % (uint32_t)nworkers);
}

static void to_owner(const char *name, size_t nl, const char *p, size_t n, const char *what) {
  int nw;
  ews_hub_t *const *hubs = ews_rengine_hubs(&nw);
  if (nw < 1) return;
  int to = owner_of(name, nl, nw);
  int rc = ews_engine_local.users->post(hubs[0], to, p, n);
  if (rc < 0) /* the owner resyncs when it sees the gap (the next revision, or a join) */
    EWS_WARN("documents %.*s: %s not posted to worker %d: %s", (int)(nl > 200 ? 200 : nl), name,
             what, to, ews_strerror(rc));
}

void ews_rdoc_message(const char *channel, size_t clen, const char *payload, size_t n) {
  if (clen <= CHANNEL_PREFIX_LEN) return;
  to_owner(channel + CHANNEL_PREFIX_LEN, clen - CHANNEL_PREFIX_LEN, payload, n,
           "a revision from Redis");
}

void ews_rdoc_subscribed(const char *name, size_t nl, const char *blob, size_t n) {
  if (blob) to_owner(name, nl, blob, n, "the catch-up after its subscription");
}

void ews_rdoc_sub_ready(int shard) {
  (void)shard;
  /* Revisions published while the connection was down are in the log: every worker
   * reads what its documents missed. */
  int n;
  ews_hub_t *const *hubs = ews_rengine_hubs(&n);
  uv_mutex_lock(&D.lock);
  for (int i = 0; D.resync && i < n; i++)
    ews_engine_local.users->post(hubs[0], i, D.resync, D.resync_len);
  uv_mutex_unlock(&D.lock);
}

static void sha_of(char out[41], const char *script, size_t n) {
  unsigned char sum[20];
  if (mbedtls_sha1_ret((const unsigned char *)script, n, sum) != 0) memset(sum, 0, sizeof sum);
  for (int i = 0; i < 20; i++) snprintf(out + 2 * i, 3, "%02x", sum[i]);
}

void ews_rdoc_start(void) {
  memset(&D, 0, sizeof D);
  sha_of(D.sha[EWS_DOCS_COMMIT], COMMIT_LUA, sizeof COMMIT_LUA - 1);
  sha_of(D.sha[EWS_DOCS_READ], READ_LUA, sizeof READ_LUA - 1);
  sha_of(D.sha[EWS_DOCS_RELEASE], RELEASE_LUA, sizeof RELEASE_LUA - 1);
  uv_mutex_init(&D.lock);
  D.started = 1;
}

void ews_rdoc_stop(void) {
  if (!D.started) return;
  free(D.resync);
  uv_mutex_destroy(&D.lock);
  memset(&D, 0, sizeof D);
}
