/* engine_redis_presence.c — the Redis engine's presence (see engine.h,
 * engine_redis_int.h): members, counts, lists and the join/leave batches are the
 * cluster's. Each instance keeps its own members in the in-process tables
 * (hub/presence.c: connections, heartbeats, pending diffs) and mirrors them, batch
 * by batch, into Redis on the channel's shard:
 *   ews:ym:CH    hash: field INSTANCE:USER -> "CONNS\nUSERJSON\nSTATUSLEN:STATUS" + META
 *                (that instance's member), and field "!" -> the channel as JSON
 *   ews:yu:CH    hash: field USER -> the instances holding the user (16 hex each)
 *   ews:yx:INST  set: the channels (of this shard) where INST has members
 *   ews:yi       set: the instances with members on this shard
 * and on the user's shard
 *   ews:yg:USER  hash: field INSTANCE:CH -> 1 (for presence.get's channels)
 * One script per channel and batch (BATCH_LUA) applies this instance's changes
 * (each one the member as it is now, or its absence: applying one twice changes
 * nothing) and announces, atomically, only what changes for the cluster: a user's
 * first instance joins it, its last one leaves it, so a user on two instances is
 * joined and left once. The script PUBLISHes the event on the channel (ews:c:CH,
 * as a channel publish of this instance: the other instances' subscribers get it
 * there) and returns it, and the redis thread hands it to this instance's workers.
 *
 * An instance that stops removes its members and its liveness key (GOODBYE, the
 * leaves announced). An instance that dies (kill -9) stops renewing ews:i:INST (5 s, engine_redis_users.c):
 * every read script and a sweep every second (REAP) remove the members of instances
 * whose key expired and PUBLISH their leaves (as a "presence-reaper!" publisher,
 * delivered by every instance). When a shard's command connection comes back, this
 * instance writes its members there again (REPLACE: its own entries become exactly
 * the local tables', leaves and joins announced for the difference) and drops its
 * entries of channels it no longer has (PRUNE).
 *
 * Reads (count, list, get; join's is_new and leave's user_left) combine the local
 * tables with the other live instances' entries, read from the worker's thread over
 * its own connection to the shard (one round trip; presence.get: one per shard of
 * the users asked). While the shard is down they see this instance's members only,
 * and batches are announced to this instance's subscribers only (as a channel
 * publish during an outage). presence.set is applied here and PUBLISHed on ews:ys
 * to every other instance, which applies it to its own tables. */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub/engine_redis_int.h"
#include "hub/presence.h"
#include "log.h"
#include "proto/frame.h"
#include "proto/json.h"

#define CHUNK_BYTES (64u * 1024u) /* of entries per script (and event) */
#define REAP_MS 1000
#define REAPER_ID "presence-reaper!"
#define MAX_NAME 600

/* ---- scripts ----------------------------------------------------------------------- */

#define LUA_COMMON                                                                         \
  "local function hdel(h, inst)\n"                                                         \
  "  for i = 1, #h, 16 do\n"                                                               \
  "    if string.sub(h, i, i + 15) == inst then return string.sub(h, 1, i - 1) .. "        \
  "string.sub(h, i + 16) end\n"                                                            \
  "  end\n"                                                                                \
  "  return h\n"                                                                           \
  "end\n"                                                                                  \
  "local function hhas(h, inst)\n"                                                         \
  "  for i = 1, #h, 16 do if string.sub(h, i, i + 15) == inst then return true end end\n"  \
  "  return false\n"                                                                       \
  "end\n"                                                                                  \
  "local function drop(ch, inst, keep)\n"                                                  \
  "  local ym, yu, pre, leaves = 'ews:ym:' .. ch, 'ews:yu:' .. ch, inst .. ':', {}\n"       \
  "  local all = redis.call('HGETALL', ym)\n"                                              \
  "  for i = 1, #all, 2 do\n"                                                              \
  "    local f = all[i]\n"                                                                 \
  "    if string.sub(f, 1, 17) == pre and not (keep and keep[string.sub(f, 18)]) then\n"   \
  "      local user = string.sub(f, 18)\n"                                                 \
  "      redis.call('HDEL', ym, f)\n"                                                      \
  "      local h = hdel(redis.call('HGET', yu, user) or '', inst)\n"                       \
  "      if h == '' then\n"                                                                \
  "        redis.call('HDEL', yu, user)\n"                                                 \
  "        leaves[#leaves + 1] = string.match(all[i + 1], '^[^\\n]*\\n([^\\n]*)')\n"        \
  "      else redis.call('HSET', yu, user, h) end\n"                                       \
  "    end\n"                                                                              \
  "  end\n"                                                                                \
  "  return leaves\n"                                                                      \
  "end\n"                                                                                  \
  "local function announce(ch, chj, id, t, joins, leaves, updates)\n"                      \
  "  local ym = 'ews:ym:' .. ch\n"                                                         \
  "  if redis.call('HLEN', ym) <= 1 then redis.call('DEL', ym) end\n"                      \
  "  if #joins + #leaves + #updates == 0 then return false end\n"                          \
  "  local ev = '{\"type\":\"presence\",\"channel\":' .. chj .. ',\"joins\":[' .. "          \
  "table.concat(joins, ',') .. '],\"leaves\":[' .. table.concat(leaves, ',') .. ']'\n"      \
  "  if #updates > 0 then ev = ev .. ',\"updates\":[' .. table.concat(updates, ',') .. ']' end\n" \
  "  ev = ev .. '}'\n"                                                                     \
  "  redis.call('PUBLISH', 'ews:c:' .. ch, id .. 't' .. t .. ev)\n"                         \
  "  return ev\n"                                                                          \
  "end\n"                                                                                  \
  "local function reap(me)\n"                                                              \
  "  for _, inst in ipairs(redis.call('SMEMBERS', 'ews:yi')) do\n"                         \
  "    if inst ~= me and redis.call('EXISTS', 'ews:i:' .. inst) == 0 then\n"               \
  "      for _, ch in ipairs(redis.call('SMEMBERS', 'ews:yx:' .. inst)) do\n"               \
  "        local chj = redis.call('HGET', 'ews:ym:' .. ch, '!') or cjson.encode(ch)\n"     \
  "        announce(ch, chj, '" REAPER_ID "', '0000000000000000', {}, drop(ch, inst, nil), {})\n" \
  "      end\n"                                                                            \
  "      redis.call('DEL', 'ews:yx:' .. inst)\n"                                           \
  "      redis.call('SREM', 'ews:yi', inst)\n"                                             \
  "    end\n"                                                                              \
  "  end\n"                                                                                \
  "end\n"

/* ARGV: me, ch, chjson, time, mode ('b' batch, 'r' replace: me's entries become
 * exactly these), then per change: flag ('0' absent, '1' present, '2' present and
 * updated, '3' present and showing a new global status: every instance holding the
 * user has it, the first of them announces it), user, value, entry. -> the event
 * announced, or nil. */
static const char BATCH_LUA[] = LUA_COMMON
    "local me, ch = ARGV[1], ARGV[2]\n"
    "local ym, yu = 'ews:ym:' .. ch, 'ews:yu:' .. ch\n"
    "local joins, leaves, updates, any = {}, {}, {}, false\n"
    "local keep = ARGV[5] == 'r' and {} or nil\n"
    "for i = 6, #ARGV, 4 do\n"
    "  local flag, user, val, entry = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]\n"
    "  local f = me .. ':' .. user\n"
    "  if flag ~= '0' then\n"
    "    any = true\n"
    "    if keep then keep[user] = true end\n"
    "    if redis.call('HSET', ym, f, val) == 1 then\n"
    "      local h = redis.call('HGET', yu, user) or ''\n"
    "      if h == '' then joins[#joins + 1] = entry end\n"
    "      if not hhas(h, me) then redis.call('HSET', yu, user, h .. me) end\n"
    "    elseif flag == '2' or (flag == '3' and string.sub(redis.call('HGET', yu, user) or '', 1, 16) == me) then\n"
    "      updates[#updates + 1] = entry\n"
    "    end\n"
    "  elseif redis.call('HDEL', ym, f) == 1 then\n"
    "    local h = hdel(redis.call('HGET', yu, user) or '', me)\n"
    "    if h == '' then redis.call('HDEL', yu, user); leaves[#leaves + 1] = entry\n"
    "    else redis.call('HSET', yu, user, h) end\n"
    "  end\n"
    "end\n"
    "if keep then for _, l in ipairs(drop(ch, me, keep)) do leaves[#leaves + 1] = l end end\n"
    "if any then\n"
    "  redis.call('HSET', ym, '!', ARGV[3])\n"
    "  redis.call('SADD', 'ews:yx:' .. me, ch)\n"
    "  redis.call('SADD', 'ews:yi', me)\n"
    "end\n"
    "return announce(ch, ARGV[3], me, ARGV[4], joins, leaves, updates)\n";

/* ARGV: me, time, the channels (of this shard) me has members in: me's entries of
 * any other channel are dropped, their leaves announced. */
static const char PRUNE_LUA[] = LUA_COMMON
    "local me, keep = ARGV[1], {}\n"
    "for i = 3, #ARGV do keep[ARGV[i]] = true end\n"
    "for _, ch in ipairs(redis.call('SMEMBERS', 'ews:yx:' .. me)) do\n"
    "  if not keep[ch] then\n"
    "    local chj = redis.call('HGET', 'ews:ym:' .. ch, '!') or cjson.encode(ch)\n"
    "    announce(ch, chj, me, ARGV[2], {}, drop(ch, me, nil), {})\n"
    "    redis.call('SREM', 'ews:yx:' .. me, ch)\n"
    "  end\n"
    "end\n"
    "return 0\n";

static const char REAP_LUA[] = LUA_COMMON "reap(ARGV[1])\nreturn 0\n";

/* ARGV: me. An instance that stops: its members leave (announced as the reaper's,
 * so that every instance delivers them) and its liveness key goes, so that the
 * others stop listing its sockets and counts at once. */
static const char GOODBYE_LUA[] = LUA_COMMON
    "local me = ARGV[1]\n"
    "for _, ch in ipairs(redis.call('SMEMBERS', 'ews:yx:' .. me)) do\n"
    "  local chj = redis.call('HGET', 'ews:ym:' .. ch, '!') or cjson.encode(ch)\n"
    "  announce(ch, chj, '" REAPER_ID "', '0000000000000000', {}, drop(ch, me, nil), {})\n"
    "end\n"
    "redis.call('DEL', 'ews:yx:' .. me, 'ews:i:' .. me)\n"
    "redis.call('SREM', 'ews:yi', me)\n"
    "return 0\n";

/* ARGV: me, ch, then per user whose membership here changed since the last batch
 * (what the hash may not know yet): '1' | '0' (a member here now or not), user.
 * -> the users present: those the hash knows (HLEN), corrected for each user of the
 * list: it counts when it is a member here now or another live instance holds it.
 * O(users listed), not O(members). */
static const char COUNT_LUA[] = LUA_COMMON
    "reap(ARGV[1])\n"
    "local me, yu = ARGV[1], 'ews:yu:' .. ARGV[2]\n"
    "local n = redis.call('HLEN', yu)\n"
    "for i = 3, #ARGV, 2 do\n"
    "  local h = redis.call('HGET', yu, ARGV[i + 1])\n"
    "  local other = h and (#h > 16 or (#h == 16 and h ~= me))\n"
    "  n = n + ((ARGV[i] == '1' or other) and 1 or 0) - (h and 1 or 0)\n"
    "end\n"
    "return n\n";

/* ARGV: me, ch, cursor ('' with ARGV[4] '0': none), has cursor, limit -> {more,
 * user, conns, "STATUSLEN:STATUS"+META, ...}: the first `limit` users after the
 * cursor held by live instances other than me, their connections there and the
 * status and meta one of them shows. */
static const char LIST_LUA[] = LUA_COMMON
    "reap(ARGV[1])\n"
    "local me, ch, cur, hascur, lim = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1', tonumber(ARGV[5])\n"
    "local all = redis.call('HGETALL', 'ews:yu:' .. ch)\n"
    "local users, holders = {}, {}\n"
    "for i = 1, #all, 2 do\n"
    "  local u, h = all[i], all[i + 1]\n"
    "  if (#h > 16 or (#h == 16 and h ~= me)) and (not hascur or u > cur) then\n"
    "    users[#users + 1] = u; holders[u] = h\n"
    "  end\n"
    "end\n"
    "table.sort(users)\n"
    "local out = {#users > lim and 1 or 0}\n"
    "for i = 1, math.min(lim, #users) do\n"
    "  local u, h, conns, first = users[i], holders[users[i]], 0, nil\n"
    "  for k = 1, #h, 16 do\n"
    "    local inst = string.sub(h, k, k + 15)\n"
    "    if inst ~= me then\n"
    "      local v = redis.call('HGET', 'ews:ym:' .. ch, inst .. ':' .. u)\n"
    "      if v then\n"
    "        local c, rest = string.match(v, '^(%d+)\\n[^\\n]*\\n(.*)$')\n"
    "        conns = conns + (tonumber(c) or 0)\n"
    "        first = first or rest\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  out[#out + 1] = u; out[#out + 1] = conns; out[#out + 1] = first or '7:offline{}'\n"
    "end\n"
    "return out\n";

/* ARGV: me, ch, user -> 1 when a live instance other than me holds the user. */
static const char HELD_LUA[] =
    "local h, me = redis.call('HGET', 'ews:yu:' .. ARGV[2], ARGV[3]) or '', ARGV[1]\n"
    "for i = 1, #h, 16 do\n"
    "  local inst = string.sub(h, i, i + 15)\n"
    "  if inst ~= me and redis.call('EXISTS', 'ews:i:' .. inst) == 1 then return 1 end\n"
    "end\n"
    "return 0\n";

/* ARGV: me, users... -> per user: online (another live instance has a member or an
 * authenticated socket of it), {channels of other live instances}. */
static const char GET_LUA[] =
    "local me, out, alive = ARGV[1], {}, {}\n"
    "local function live(inst)\n"
    "  if alive[inst] == nil then alive[inst] = redis.call('EXISTS', 'ews:i:' .. inst) == 1 end\n"
    "  return alive[inst]\n"
    "end\n"
    "for i = 2, #ARGV do\n"
    "  local u, chs, seen, online = ARGV[i], {}, {}, 0\n"
    "  for _, f in ipairs(redis.call('HKEYS', 'ews:yg:' .. u)) do\n"
    "    local inst = string.sub(f, 1, 16)\n"
    "    if inst ~= me then\n"
    "      if live(inst) then\n"
    "        local ch = string.sub(f, 18)\n"
    "        if not seen[ch] then seen[ch] = true; chs[#chs + 1] = ch end\n"
    "      else redis.call('HDEL', 'ews:yg:' .. u, f) end\n"
    "    end\n"
    "  end\n"
    "  if #chs > 0 then online = 1 else\n"
    "    for _, f in ipairs(redis.call('HKEYS', 'ews:u:' .. u)) do\n"
    "      local inst = string.sub(f, 1, 16)\n"
    "      if inst ~= me and live(inst) then online = 1; break end\n"
    "    end\n"
    "  end\n"
    "  out[#out + 1] = online; out[#out + 1] = chs\n"
    "end\n"
    "return out\n";

#define STATUS_CHAN "ews:ys"

static struct {
  uv_timer_t reap;
  int started;
} R;

/* ---- batches (the redis thread) ------------------------------------------------------ */

typedef struct {
  ews_rjob_t job; /* first */
  ews_presence_diff_t *diff;
  int shard;
  int replace;
  int pending; /* replies still to come */
  int failed;
} batch_t;

static void batch_free(batch_t *b) {
  ews_presence_diffs_free(b->diff);
  free(b);
}

/* A batch that did not reach Redis: this instance's subscribers get its events
 * as the in-process engine would announce them. */
static void fall_back(const ews_presence_diff_t *d) {
  ews_presence_event_t *e = ews_presence_events_of(d->channel, d->channel_len, d->changes, NULL);
  for (ews_presence_event_t *x = e; x; x = x->next)
    ews_rengine_post_frame(x->channel, x->channel_len, EWS_OP_TEXT, x->json, x->json_len);
  ews_presence_events_free(e);
}

/* One reply (or the sender's hold) less: the last one frees the batch. */
static void batch_done(batch_t *b) {
  if (--b->pending > 0) return;
  if (b->failed && !b->replace) fall_back(b->diff);
  batch_free(b);
}

static void on_batch(struct redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  batch_t *b = priv;
  redisReply *r = reply;
  if (!r || r->type == REDIS_REPLY_ERROR) {
    if (r) EWS_ERROR("presence %.*s: Redis: %s", (int)(b->diff->channel_len > 200 ? 200 : b->diff->channel_len),
                     b->diff->channel, r->str);
    b->failed = 1;
  } else if (r->type == REDIS_REPLY_STRING) {
    ews_rengine_post_frame(b->diff->channel, b->diff->channel_len, EWS_OP_TEXT, r->str, r->len);
  }
  batch_done(b);
}

static size_t json_of(char **out, const char *s, size_t n) {
  size_t len = ews_json_str(NULL, s, n, EWS_JSON_CHECK);
  if (!(*out = malloc(len + 1))) return 0;
  ews_json_str(*out, s, n, EWS_JSON_CHECK);
  return len;
}

/* The stored value of a present member: "CONNS\nUSERJSON\nSTATUSLEN:STATUS" + META. */
static char *value_of(const ews_presence_change_t *x, size_t *len) {
  char *uj;
  size_t ujl = json_of(&uj, x->user, x->user_len);
  if (!uj) return NULL;
  size_t cap = 40 + ujl + x->status_len + x->meta_len;
  char *v = malloc(cap);
  if (v) {
    int h = snprintf(v, cap, "%u\n%.*s\n%zu:", x->connections, (int)ujl, uj, x->status_len);
    size_t n = (size_t)h;
    memcpy(v + n, x->status, x->status_len);
    n += x->status_len;
    memcpy(v + n, x->meta, x->meta_len);
    n += x->meta_len;
    *len = n;
  }
  free(uj);
  return v;
}

/* The user's channel index (ews:yg:USER on the user's shard) follows each change. */
static void write_index(const ews_presence_diff_t *d) {
  for (const ews_presence_change_t *x = d->changes; x; x = x->next) {
    int shard = ews_rengine_shard_of(x->user, x->user_len);
    char key[MAX_NAME + 16], f[MAX_NAME + 32];
    if (x->user_len > MAX_NAME || d->channel_len > MAX_NAME) continue;
    int kl = snprintf(key, sizeof key, "ews:yg:%.*s", (int)x->user_len, x->user);
    int fl = snprintf(f, sizeof f, "%s:%.*s", ews_rengine_id(), (int)d->channel_len, d->channel);
    const char *argv[4] = {x->present ? "HSET" : "HDEL", key, f, "1"};
    size_t lens[4] = {4, (size_t)kl, (size_t)fl, 1};
    ews_rconn_command(ews_rengine_cmd(shard), NULL, NULL, x->present ? 4 : 3, argv, lens);
  }
}

/* Sends the changes [from, to) as one script. 0 or an error (nothing sent). */
static int send_chunk(batch_t *b, const ews_presence_change_t *from, const ews_presence_change_t *to,
                      const char *chj, size_t chjl) {
  size_t n = 0;
  for (const ews_presence_change_t *x = from; x != to; x = x->next) n++;
  size_t argc = 8 + 4 * n;
  const char **argv = calloc(argc, sizeof *argv);
  size_t *lens = calloc(argc, sizeof *lens);
  char **vals = calloc(n ? n : 1, sizeof *vals);
  int rc = EWS_ENOMEM;
  char t[16];
  if (!argv || !lens || !vals) goto out;
  ews_rengine_hex_time(t, ews_rengine_wall_us());
  size_t k = 0;
#define ARG(p, l) (argv[k] = (p), lens[k] = (l), k++)
  ARG("EVAL", 4);
  ARG(BATCH_LUA, sizeof BATCH_LUA - 1);
  ARG("0", 1);
  ARG(ews_rengine_id(), 16);
  ARG(b->diff->channel, b->diff->channel_len);
  ARG(chj, chjl);
  ARG(t, 16);
  ARG(b->replace ? "r" : "b", 1);
  size_t i = 0;
  for (const ews_presence_change_t *x = from; x != to; x = x->next, i++) {
    size_t vl = 0;
    if (x->present && !(vals[i] = value_of(x, &vl))) goto out;
    ARG(!x->present ? "0" : x->global_update ? "3" : x->updated ? "2" : "1", 1);
    ARG(x->user, x->user_len);
    ARG(vals[i] ? vals[i] : "", vl);
    ARG(x->entry, x->entry_len);
  }
#undef ARG
  rc = ews_rconn_command(ews_rengine_cmd(b->shard), on_batch, b, (int)k, argv, lens);
  if (rc == 0) b->pending++;
out:
  for (size_t j = 0; vals && j < n; j++) free(vals[j]);
  free(vals);
  free(argv);
  free(lens);
  return rc;
}

/* Sends a channel's changes in scripts of at most CHUNK_BYTES of entries. Takes b. */
static void send_batch(batch_t *b) {
  ews_presence_diff_t *d = b->diff;
  char *chj;
  size_t chjl = json_of(&chj, d->channel, d->channel_len);
  b->pending = 1; /* held until every chunk is sent */
  if (!chj) {
    b->failed = 1;
  } else {
    const ews_presence_change_t *from = d->changes;
    while (from) {
      size_t bytes = 0;
      const ews_presence_change_t *to = from;
      while (to && (to == from || bytes + to->entry_len < CHUNK_BYTES)) {
        bytes += to->entry_len + to->meta_len + to->status_len;
        to = to->next;
      }
      if (send_chunk(b, from, to, chj, chjl) != 0) {
        b->failed = 1;
        break;
      }
      from = to;
    }
    if (!b->failed) write_index(d);
  }
  free(chj);
  batch_done(b); /* the sender's hold */
}

static void batch_run(ews_rjob_t *j, int stopping) {
  batch_t *b = (batch_t *)j;
  if (stopping) {
    batch_free(b);
    return;
  }
  send_batch(b);
}

/* ---- the redis thread: sweeps and resync ----------------------------------------------- */

static void on_ignored(struct redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  (void)priv;
  redisReply *r = reply;
  if (r && r->type == REDIS_REPLY_ERROR) EWS_ERROR("presence: Redis: %s", r->str);
}

static void reap(uv_timer_t *t) {
  (void)t;
  for (int i = 0; i < ews_rengine_nshards(); i++) {
    const char *argv[5] = {"EVAL", REAP_LUA, "0", ews_rengine_id()};
    size_t lens[5] = {4, sizeof REAP_LUA - 1, 1, 16};
    ews_rconn_command(ews_rengine_cmd(i), on_ignored, NULL, 4, argv, lens);
  }
}

static int on_shard(const char *ch, size_t chl, void *ud) {
  return ews_rengine_shard_of(ch, chl) == *(int *)ud;
}

void ews_rpr_cmd_ready(int shard) {
  /* This instance's members of the shard's channels, as they are now. */
  ews_presence_diff_t *all = ews_presence_snapshot(on_shard, &shard);
  size_t n = 0;
  for (ews_presence_diff_t *d = all; d; d = d->next) n++;
  const char **argv = calloc(n + 5, sizeof *argv);
  size_t *lens = calloc(n + 5, sizeof *lens);
  char t[16];
  ews_rengine_hex_time(t, ews_rengine_wall_us());
  if (argv && lens) {
    argv[0] = "EVAL", lens[0] = 4;
    argv[1] = PRUNE_LUA, lens[1] = sizeof PRUNE_LUA - 1;
    argv[2] = "0", lens[2] = 1;
    argv[3] = ews_rengine_id(), lens[3] = 16;
    argv[4] = t, lens[4] = 16;
    size_t k = 5;
    for (ews_presence_diff_t *d = all; d; d = d->next) {
      argv[k] = d->channel;
      lens[k++] = d->channel_len;
    }
    ews_rconn_command(ews_rengine_cmd(shard), on_ignored, NULL, (int)k, argv, lens);
  }
  free(argv);
  free(lens);
  while (all) {
    ews_presence_diff_t *d = all;
    all = d->next;
    d->next = NULL;
    batch_t *b = calloc(1, sizeof *b);
    if (!b) {
      ews_presence_diffs_free(d);
      continue;
    }
    b->diff = d;
    b->shard = shard;
    b->replace = 1;
    send_batch(b);
  }
}

void ews_rpr_sub_ready(int shard, ews_rconn_reply_fn on_message) {
  if (ews_rengine_shard_of(STATUS_CHAN, sizeof STATUS_CHAN - 1) != shard) return;
  const char *argv[2] = {"SUBSCRIBE", STATUS_CHAN};
  size_t lens[2] = {9, sizeof STATUS_CHAN - 1};
  ews_rconn_command(ews_rengine_sub(shard), on_message, NULL, 2, argv, lens);
}

int ews_rpr_is_status_chan(const char *chan, size_t len) {
  return len == sizeof STATUS_CHAN - 1 && !memcmp(chan, STATUS_CHAN, len);
}

static double mono_now(void) { return (double)uv_hrtime() / 1e9; }

/* ID(16) + "EXPIRE\n" + "ULEN:" + user + "S" | "-" + "SLEN:" + status + "M" | "-" + meta */
void ews_rpr_status_message(const char *p, size_t n) {
  if (n < 16 || !memcmp(p, ews_rengine_id(), 16)) return; /* ours: applied */
  const char *e = p + n, *q = p + 16;
  char *end;
  double expire = strtod(q, &end);
  if (end >= e || *end != '\n') return;
  q = end + 1;
  size_t ul = strtoul(q, &end, 10);
  if (end >= e || *end != ':' || (size_t)(e - end - 1) < ul + 2) return;
  const char *uid = end + 1;
  q = uid + ul;
  const char *status = NULL, *meta = NULL;
  size_t sl = 0, ml = 0;
  if (*q++ == 'S') {
    sl = strtoul(q, &end, 10);
    if (end >= e || *end != ':' || (size_t)(e - end - 1) < sl + 1) return;
    status = end + 1;
    q = status + sl;
  }
  if (q >= e) return;
  if (*q++ == 'M') {
    meta = q;
    ml = (size_t)(e - q);
  }
  ews_presence_set_status(uid, ul, status, sl, meta, ml, expire, mono_now());
}

void ews_rpr_goodbye(void) {
  for (int i = 0; i < ews_rengine_nshards(); i++) {
    const char *argv[4] = {"EVAL", GOODBYE_LUA, "0", ews_rengine_id()};
    size_t lens[4] = {4, sizeof GOODBYE_LUA - 1, 1, 16};
    redisReply *r = ews_rengine_sync(i, 4, argv, lens); /* NULL when the shard is down */
    if (r && r->type == REDIS_REPLY_ERROR) EWS_WARN("presence: leaving Redis: %s", r->str);
    if (r) freeReplyObject(r);
  }
}

void ews_rpr_start(uv_loop_t *loop) {
  uv_timer_init(loop, &R.reap);
  uv_timer_start(&R.reap, reap, REAP_MS, REAP_MS);
  R.started = 1;
}

void ews_rpr_close(void) {
  if (!R.started) return;
  uv_timer_stop(&R.reap);
  uv_close((uv_handle_t *)&R.reap, NULL);
  R.started = 0;
}

/* ---- the engine (any worker's thread) --------------------------------------------------- */

static int shard_of(const char *ch, size_t chl) { return ews_rengine_shard_of(ch, chl); }

/* 1 when a live instance other than this one holds the user in the channel (0
 * when none does, or the shard cannot say). */
static int held_elsewhere(const char *ch, size_t chl, const char *uid, size_t ul) {
  int shard = shard_of(ch, chl);
  if (!ews_rengine_shard_up(shard)) return 0;
  const char *argv[6] = {"EVAL", HELD_LUA, "0", ews_rengine_id(), ch, uid};
  size_t lens[6] = {4, sizeof HELD_LUA - 1, 1, 16, chl, ul};
  redisReply *r = ews_rengine_sync(shard, 6, argv, lens);
  if (!r) return 0;
  int held = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
  freeReplyObject(r);
  return held;
}

static int rp_join(const char *ch, size_t chl, const char *uid, size_t ul, const char *status,
                   size_t sl, const char *meta, size_t ml, int worker, uint64_t conn_id,
                   void *conn, double now) {
  int r = ews_presence_join(ch, chl, uid, ul, status, sl, meta, ml, worker, conn_id, conn, now);
  if (r == 1 && held_elsewhere(ch, chl, uid, ul)) r = 0;
  return r;
}

static int rp_leave(const char *ch, size_t chl, uint64_t conn_id) {
  /* The user, to ask whether another instance still holds it: the local tables
   * forget it with its last connection here. */
  char uid[300];
  size_t ul = 0;
  int r = ews_presence_leave_user(ch, chl, conn_id, uid, sizeof uid, &ul);
  if (r == 1 && ul && held_elsewhere(ch, chl, uid, ul)) r = 0;
  return r;
}

static int rp_set_status(const char *uid, size_t ul, const char *status, size_t sl,
                         const char *meta, size_t ml, double expire_s, double now) {
  int r = ews_presence_set_status(uid, ul, status, sl, meta, ml, expire_s, now);
  if (r != 0) return r;
  int shard = ews_rengine_shard_of(STATUS_CHAN, sizeof STATUS_CHAN - 1);
  if (!ews_rengine_shard_up(shard)) return 0;
  size_t cap = 64 + ul + sl + ml;
  char *msg = malloc(cap);
  if (!msg) return 0;
  memcpy(msg, ews_rengine_id(), 16);
  size_t n = 16;
  n += (size_t)snprintf(msg + n, cap - n, "%.17g\n%zu:", expire_s, ul);
  memcpy(msg + n, uid, ul);
  n += ul;
  if (status) n += (size_t)snprintf(msg + n, cap - n, "S%zu:", sl);
  else msg[n++] = '-';
  if (status) {
    memcpy(msg + n, status, sl);
    n += sl;
  }
  msg[n++] = meta ? 'M' : '-';
  if (meta) {
    memcpy(msg + n, meta, ml);
    n += ml;
  }
  const char *argv[3] = {"PUBLISH", STATUS_CHAN, msg};
  size_t lens[3] = {7, sizeof STATUS_CHAN - 1, n};
  ews_rengine_command(shard, 3, argv, lens);
  free(msg);
  return 0;
}

static uint32_t rp_count(const char *ch, size_t chl) {
  uint32_t n = ews_presence_count(ch, chl);
  int shard = shard_of(ch, chl);
  if (!ews_rengine_shard_up(shard)) return n;
  ews_presence_pend_user_t *pend;
  size_t np = ews_presence_pending_users(ch, chl, &pend);
  const char **argv = calloc(5 + 2 * np, sizeof *argv);
  size_t *lens = calloc(5 + 2 * np, sizeof *lens);
  if (argv && lens) {
    size_t k = 0;
    argv[k] = "EVAL", lens[k++] = 4;
    argv[k] = COUNT_LUA, lens[k++] = sizeof COUNT_LUA - 1;
    argv[k] = "0", lens[k++] = 1;
    argv[k] = ews_rengine_id(), lens[k++] = 16;
    argv[k] = ch, lens[k++] = chl;
    for (size_t i = 0; i < np; i++) {
      argv[k] = pend[i].present ? "1" : "0", lens[k++] = 1;
      argv[k] = pend[i].user, lens[k++] = pend[i].len;
    }
    redisReply *r = ews_rengine_sync(shard, (int)k, argv, lens);
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer >= 0) n = (uint32_t)r->integer;
    if (r) freeReplyObject(r);
  }
  free(argv);
  free(lens);
  free(pend);
  return n;
}

static int cmp_key(const char *a, size_t al, const char *b, size_t bl) {
  int c = memcmp(a, b, al < bl ? al : bl);
  return c ? c : (al > bl) - (al < bl);
}

/* An entry of another instance's member: copies in one allocation. */
static int remote_entry(ews_presence_entry_t *e, const redisReply *u, long long conns,
                        const redisReply *rest) {
  /* rest: "STATUSLEN:STATUS" + META */
  const char *p = rest->str, *end = rest->str + rest->len;
  char *colon = memchr(p, ':', rest->len);
  size_t sl = colon ? strtoul(p, NULL, 10) : 0;
  const char *st = colon ? colon + 1 : "offline";
  if (!colon || (size_t)(end - st) < sl) sl = 7, st = "offline", colon = NULL;
  const char *meta = colon ? st + sl : "{}";
  size_t ml = colon ? (size_t)(end - meta) : 2;
  if (!ml) meta = "{}", ml = 2;
  char *m = malloc(u->len + sl + ml + 1);
  if (!m) return EWS_ENOMEM;
  memset(e, 0, sizeof *e);
  e->mem = m;
  e->user = memcpy(m, u->str, u->len), e->user_len = u->len, m += u->len;
  e->status = memcpy(m, st, sl), e->status_len = sl, m += sl;
  e->meta = memcpy(m, meta, ml), e->meta_len = ml;
  e->channels = "";
  e->connections = conns > 0 ? (uint32_t)conns : 0;
  e->online = 1;
  return 0;
}

static int rp_list(const char *ch, size_t chl, const char *cursor, size_t curl, size_t limit,
                   double now, ews_presence_result_t *out) {
  int rc = ews_presence_list(ch, chl, cursor, curl, limit, now, out);
  int shard = shard_of(ch, chl);
  if (rc != 0 || !ews_rengine_shard_up(shard)) return rc;
  char lim[24];
  int ll = snprintf(lim, sizeof lim, "%zu", limit);
  const char *argv[8] = {"EVAL", LIST_LUA, "0", ews_rengine_id(), ch, cursor ? cursor : "",
                         cursor ? "1" : "0", lim};
  size_t lens[8] = {4, sizeof LIST_LUA - 1, 1, 16, chl, cursor ? curl : 0, 1, (size_t)ll};
  redisReply *r = ews_rengine_sync(shard, 8, argv, lens);
  if (!r) return 0;
  if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 || (r->elements - 1) % 3) {
    freeReplyObject(r);
    return 0;
  }
  size_t nr = (r->elements - 1) / 3;
  int more = r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer;
  int local_more = out->next_cursor != NULL;
  ews_presence_entry_t *v = calloc(limit ? limit : 1, sizeof *v);
  if (!v) {
    freeReplyObject(r);
    ews_presence_result_free(out);
    return EWS_ENOMEM;
  }
  /* Merge two sorted pages; a user on both is one member (this instance's status
   * and meta, the connections of both). */
  size_t i = 0, k = 0, n = 0;
  while (n < limit && (i < out->n || k < nr)) {
    const redisReply *ru = k < nr ? r->element[1 + 3 * k] : NULL;
    int c = i >= out->n ? 1 : k >= nr ? -1
              : cmp_key(out->v[i].user, out->v[i].user_len, ru->str, ru->len);
    if (c <= 0) {
      v[n] = out->v[i];
      memset(&out->v[i], 0, sizeof out->v[i]);
      if (c == 0) {
        const redisReply *cn = r->element[2 + 3 * k];
        if (cn->type == REDIS_REPLY_INTEGER && cn->integer > 0) v[n].connections += (uint32_t)cn->integer;
        k++;
      }
      i++;
      n++;
    } else {
      const redisReply *cn = r->element[2 + 3 * k], *rest = r->element[3 + 3 * k];
      if (ru->type == REDIS_REPLY_STRING && rest->type == REDIS_REPLY_STRING &&
          remote_entry(&v[n], ru, cn->type == REDIS_REPLY_INTEGER ? cn->integer : 0, rest) == 0)
        n++;
      k++;
    }
  }
  int rest_left = i < out->n || k < nr || more || local_more;
  ews_presence_result_free(out);
  freeReplyObject(r);
  out->v = v;
  out->n = n;
  if (rest_left && n) {
    out->next_cursor = v[n - 1].user;
    out->next_cursor_len = v[n - 1].user_len;
  }
  return 0;
}

/* Adds the channels in chs (an array reply) that e does not list yet. */
static int add_channels(ews_presence_entry_t *e, const redisReply *chs) {
  size_t add = 0;
  for (size_t i = 0; i < chs->elements; i++)
    if (chs->element[i]->type == REDIS_REPLY_STRING) add += chs->element[i]->len + 1;
  if (!add) return 0;
  size_t base = e->user_len + e->status_len + e->meta_len;
  char *m = malloc(base + e->channels_len + add + 1);
  if (!m) return EWS_ENOMEM;
  char *p = m;
  memcpy(p, e->user, e->user_len);
  memcpy(p + e->user_len, e->status, e->status_len);
  if (e->meta) memcpy(p + e->user_len + e->status_len, e->meta, e->meta_len);
  char *cp = p + base;
  memcpy(cp, e->channels, e->channels_len);
  size_t cl = e->channels_len;
  uint32_t nch = e->nchannels;
  for (size_t i = 0; i < chs->elements; i++) {
    const redisReply *c = chs->element[i];
    if (c->type != REDIS_REPLY_STRING) continue;
    int dup = 0;
    for (const char *q = cp, *qe = cp + cl; q < qe && !dup; q += strlen(q) + 1)
      dup = strlen(q) == c->len && !memcmp(q, c->str, c->len);
    if (dup) continue;
    memcpy(cp + cl, c->str, c->len);
    cl += c->len;
    cp[cl++] = 0;
    nch++;
  }
  free(e->mem);
  e->mem = m;
  e->user = p;
  e->status = p + e->user_len;
  if (e->meta) e->meta = p + e->user_len + e->status_len;
  e->channels = cp;
  e->channels_len = cl;
  e->nchannels = nch;
  return 0;
}

/* A default status follows the user's being online anywhere. */
static void set_default_online(ews_presence_entry_t *e) {
  if (e->explicit_status || e->online) return;
  e->online = 1;
  /* "offline" -> "online": the same allocation has room (one byte less) */
  memcpy((char *)e->status, "online", 6);
  e->status_len = 6;
}

static int rp_get(const char *const *uids, const size_t *lens, size_t n, double now,
                  ews_presence_result_t *out) {
  int rc = ews_presence_get(uids, lens, n, now, out);
  if (rc != 0 || !n) return rc;
  int nshards = ews_rengine_nshards();
  const char **argv = calloc(n + 4, sizeof *argv);
  size_t *alens = calloc(n + 4, sizeof *alens), *idx = calloc(n, sizeof *idx);
  if (!argv || !alens || !idx) goto out;
  for (int s = 0; s < nshards; s++) {
    if (!ews_rengine_shard_up(s)) continue;
    size_t k = 0, m = 0;
    argv[k] = "EVAL", alens[k++] = 4;
    argv[k] = GET_LUA, alens[k++] = sizeof GET_LUA - 1;
    argv[k] = "0", alens[k++] = 1;
    argv[k] = ews_rengine_id(), alens[k++] = 16;
    for (size_t i = 0; i < n && i < out->n; i++)
      if (ews_rengine_shard_of(uids[i], lens[i]) == s) {
        argv[k] = uids[i], alens[k++] = lens[i];
        idx[m++] = i;
      }
    if (!m) continue;
    redisReply *r = ews_rengine_sync(s, (int)k, argv, alens);
    if (!r) continue;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 * m)
      for (size_t j = 0; j < m; j++) {
        ews_presence_entry_t *e = &out->v[idx[j]];
        const redisReply *on = r->element[2 * j], *chs = r->element[2 * j + 1];
        if (on->type == REDIS_REPLY_INTEGER && on->integer) set_default_online(e);
        if (chs->type == REDIS_REPLY_ARRAY) add_channels(e, chs);
      }
    freeReplyObject(r);
  }
out:
  free(argv);
  free(alens);
  free(idx);
  return 0;
}

static ews_presence_event_t *rp_take(double now, int force) {
  ews_presence_diff_t *d = ews_presence_take_diffs(now, force);
  ews_presence_event_t *local = NULL, **tail = &local;
  while (d) {
    ews_presence_diff_t *x = d;
    d = d->next;
    x->next = NULL;
    int shard = shard_of(x->channel, x->channel_len);
    batch_t *b = ews_rengine_shard_up(shard) ? calloc(1, sizeof *b) : NULL;
    if (b) {
      size_t bytes = sizeof *b + x->channel_len;
      for (const ews_presence_change_t *c = x->changes; c; c = c->next)
        bytes += sizeof *c + c->entry_len + c->user_len + c->status_len + c->meta_len;
      b->job = (ews_rjob_t){NULL, batch_run, bytes};
      b->diff = x;
      b->shard = shard;
      if (ews_rengine_submit(&b->job) == 0) continue;
      free(b);
    }
    /* The shard is down: this instance's subscribers hear of it (the publish of
     * the event reaches no other instance). */
    *tail = ews_presence_events_of(x->channel, x->channel_len, x->changes, NULL);
    while (*tail) tail = &(*tail)->next;
    ews_presence_diffs_free(x);
  }
  return local;
}

const ews_presence_engine_t ews_rpr_engine = {
    ews_presence_configure, ews_presence_get_config, rp_join,
    rp_leave,               ews_presence_drop_conn,  rp_set_status,
    rp_get,                 rp_list,                 ews_presence_result_free,
    rp_count,               rp_take,                 ews_presence_events_free,
    ews_presence_sweep,     ews_presence_conns};
