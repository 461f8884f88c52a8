/* pubsub.c — topics with offsets, epochs and history across workers: the
 * sequencers (memory ring or the store's commit hook), the frames built once per
 * message, each worker's subscribers, recovery and history reads (see pubsub.h). */
#include "hub/pubsub.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "err.h"
#include "hub/bus.h"
#include "hub/hash.h"
#include "log.h"
#include "lua/tasks.h"
#include "net/conn.h"
#include "net/fanout.h"
#include "proto/frame.h"
#include "proto/utf8.h"
#include "worker.h"

/* ---- frames ------------------------------------------------------------------- */

/* Length of s as a JSON string, quotes included. */
static size_t json_str_len(const char *s, size_t n) {
  size_t k = 2;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\' || ch == '\n' || ch == '\r' || ch == '\t' || ch == '\b' || ch == '\f') k += 2;
    else if (ch < 0x20) k += 6;
    else k++;
  }
  return k;
}

static uint8_t *json_str_put(uint8_t *o, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    char e = ch == '"' ? '"' : ch == '\\' ? '\\' : ch == '\n' ? 'n' : ch == '\r' ? 'r'
           : ch == '\t' ? 't' : ch == '\b' ? 'b' : ch == '\f' ? 'f' : 0;
    if (e) {
      *o++ = '\\';
      *o++ = (uint8_t)e;
    } else if (ch < 0x20) {
      memcpy(o, "\\u00", 4);
      o[4] = (uint8_t)hex[ch >> 4];
      o[5] = (uint8_t)hex[ch & 15];
      o += 6;
    } else {
      *o++ = ch;
    }
  }
  *o++ = '"';
  return o;
}

void ews_pubsub_epoch_hex(uint64_t epoch, char out[17]) {
  snprintf(out, 17, "%016llx", (unsigned long long)epoch);
}

int ews_pubsub_epoch_parse(const char *s, size_t n, uint64_t *out) {
  if (n == 0 || n > 16) return EWS_EINVAL;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return EWS_EINVAL;
    v = v << 4 | (uint64_t)d;
  }
  *out = v;
  return 0;
}

/* A text frame of pre[0..pl) + (json ? data : "data") + post[0..ql) in a fresh
 * shared buffer, where `name` (a JSON string) sits between pre0 and pre. */
static ews_buf_t *build_text(const char *head, size_t hl0, const char *name, size_t nl,
                             const char *mid, size_t ml, int json, const char *data,
                             size_t dl, const char *tail, size_t tl, size_t *hlp) {
  size_t total = hl0 + json_str_len(name, nl) + ml + (json ? dl : json_str_len(data, dl)) + tl;
  uint8_t hdr[EWS_FRAME_MAX_HEADER];
  size_t hl = ews_frame_header(hdr, EWS_OP_TEXT, 1, 0, total, NULL);
  ews_buf_t *b = ews_buf_new(NULL, hl + total);
  if (!b) return NULL;
  uint8_t *o = b->data;
  memcpy(o, hdr, hl);
  o += hl;
  memcpy(o, head, hl0);
  o += hl0;
  o = json_str_put(o, name, nl);
  memcpy(o, mid, ml);
  o += ml;
  if (json) {
    memcpy(o, data, dl);
    o += dl;
  } else {
    o = json_str_put(o, data, dl);
  }
  memcpy(o, tail, tl);
  o += tl;
  b->len = (uint32_t)(o - b->data);
  *hlp = hl;
  return b;
}

static const char PUB_HEAD[] = "{\"type\":\"pub\",\"topic\":";

static ews_buf_t *build_envelope(const char *topic, size_t tl, uint64_t epoch, int64_t offset,
                                 int64_t time, int json, const char *data, size_t n, size_t *hl) {
  char mid[128];
  int ml = snprintf(mid, sizeof mid, ",\"epoch\":\"%016llx\",\"offset\":%lld,\"time\":%lld,\"data\":",
                    (unsigned long long)epoch, (long long)offset, (long long)time);
  return build_text(PUB_HEAD, sizeof PUB_HEAD - 1, topic, tl, mid, (size_t)ml, json, data, n,
                    "}", 1, hl);
}

static ews_buf_t *build_gap(const char *topic, size_t tl, uint64_t epoch, int64_t from,
                            int64_t to, const char *reason, size_t *hl) {
  static const char head[] = "{\"type\":\"gap\",\"topic\":";
  char mid[160];
  int ml = snprintf(mid, sizeof mid, ",\"epoch\":\"%016llx\",\"from\":%lld,\"to\":%lld,\"reason\":\"%s\"}",
                    (unsigned long long)epoch, (long long)from, (long long)to, reason);
  return build_text(head, sizeof head - 1, topic, tl, mid, (size_t)ml, 1, "", 0, "", 0, hl);
}

/* Both frames of a message. 0 or EWS_ENOMEM. */
static int build_frames(const char *topic, size_t tl, uint64_t epoch, int64_t offset,
                        int64_t time, int json, const char *data, size_t n, ews_buf_t **env,
                        size_t *env_hl, ews_buf_t **raw, size_t *raw_hl) {
  *env = build_envelope(topic, tl, epoch, offset, time, json, data, n, env_hl);
  *raw = *env ? ews_fanout_plain(EWS_OP_TEXT, data, n, raw_hl) : NULL;
  if (*raw) return 0;
  if (*env) ews_buf_unref(*env);
  *env = NULL;
  return EWS_ENOMEM;
}

/* ---- process-wide state ------------------------------------------------------- */

typedef struct {
  int64_t offset, time;
  int json;
  ews_buf_t *env, *raw;
  size_t env_hl, raw_hl;
} ring_ent_t;

typedef struct {
  ews_named_t n; /* first */
  uint64_t epoch;
  int64_t last;
  ring_ent_t *ring;
  uint32_t cap, head, count; /* ring[(head + i) % cap], i < count, oldest first */
  uint32_t maxq;             /* retention of this topic (pubsub.retention) */
  int64_t ttl_ms;            /* 0 = forever */
  char name[];
} mtopic_t;

static struct {
  uv_mutex_t lock;
  int inited;
  ews_names_t topics; /* memory topics, under lock */
  ews_store_t *store;
  int persistent;
  ews_worker_t *workers;
  int nworkers;
  uint32_t max_queue;  /* memory ring size */
  int64_t ttl_ms;      /* 0 = forever */
  uint32_t max_recover;
  uint64_t seed;
} G;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t random_epoch(void) {
  /* splitmix64 over a seed mixed from the clock and the address space. */
  uint64_t z = ews_splitmix64(&G.seed);
  return z ? z : 1;
}

void ews_pubsub_init(const ews_config_t *cfg, ews_store_t *store, int persistent,
                     ews_worker_t *workers, int nworkers) {
  if (!G.inited) uv_mutex_init(&G.lock);
  G.inited = 1;
  G.store = store;
  G.persistent = persistent && store;
  G.workers = workers;
  G.nworkers = nworkers;
  G.max_queue = cfg->pubsub_max_queue > 0 ? (uint32_t)cfg->pubsub_max_queue : 10000;
  G.ttl_ms = (int64_t)cfg->pubsub_ttl * 1000;
  G.max_recover = cfg->pubsub_max_recover;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  G.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)(uintptr_t)&ts;
}

int ews_pubsub_persistent(void) { return G.persistent; }

static void ring_drop_oldest(mtopic_t *t) {
  ring_ent_t *e = &t->ring[t->head];
  ews_buf_unref(e->env);
  ews_buf_unref(e->raw);
  t->head = (t->head + 1) % t->cap;
  t->count--;
}

static void ring_expire(mtopic_t *t, int64_t now) {
  if (!t->ttl_ms) return;
  while (t->count && t->ring[t->head].time + t->ttl_ms <= now) ring_drop_oldest(t);
}

static void free_mtopic(ews_named_t *r) {
  mtopic_t *t = (mtopic_t *)r;
  while (t->count) ring_drop_oldest(t);
  free(t->ring);
  free(t);
}

void ews_pubsub_shutdown(void) {
  if (!G.inited) return;
  uv_mutex_lock(&G.lock);
  ews_names_clear(&G.topics, free_mtopic);
  __atomic_store_n(&G.nworkers, 0, __ATOMIC_RELEASE); /* the workers are gone */
  uv_mutex_unlock(&G.lock);
}

/* Under G.lock. */
static mtopic_t *mtopic_get(const char *name, size_t len, int create) {
  mtopic_t *t = (mtopic_t *)ews_names_find(&G.topics, name, len);
  if (t || !create) return t;
  t = calloc(1, sizeof *t + len);
  if (!t) return NULL;
  memcpy(t->name, name, len);
  ews_named_init(&t->n, t->name, len);
  t->epoch = random_epoch();
  t->maxq = G.max_queue;
  t->ttl_ms = G.ttl_ms;
  if (ews_names_insert(&G.topics, &t->n) != 0) {
    free(t);
    return NULL;
  }
  return t;
}

/* Posts a sequenced message to every worker (the caller holds the order). */
static void post_all(const char *topic, size_t tl, ews_buf_t *env, size_t env_hl, ews_buf_t *raw,
                     size_t raw_hl, uint64_t epoch, int64_t offset, int64_t time, int json) {
  int n = __atomic_load_n(&G.nworkers, __ATOMIC_ACQUIRE);
  for (int i = 0; i < n; i++) {
    int r = ews_bus_post_pubsub(&G.workers[i], topic, tl, env, env_hl, raw, raw_hl, epoch, offset,
                                time, json);
    if (r == EWS_ENOMEM) EWS_ERROR("pubsub: out of memory posting %.*s#%lld to worker %d", (int)tl,
                                   topic, (long long)offset, i);
  }
}

/* Stored payloads are one kind byte ('j' JSON, 's' string) and the data. */
void ews_pubsub_on_commit(void *ud, const ews_store_req_t *r) {
  (void)ud;
  if (r->op != EWS_STORE_APPEND || r->payload_len < 1) return;
  const char *p = r->payload;
  int json = p[0] == 'j';
  ews_buf_t *env, *raw;
  size_t ehl, rhl;
  if (build_frames(r->key, r->key_len, r->epoch, r->offset, r->created_at, json, p + 1,
                   r->payload_len - 1, &env, &ehl, &raw, &rhl) != 0) {
    EWS_ERROR("pubsub: out of memory: %.*s#%lld stored but not delivered live", (int)r->key_len,
              r->key, (long long)r->offset);
    return;
  }
  post_all(r->key, r->key_len, env, ehl, raw, rhl, r->epoch, r->offset, r->created_at, json);
  ews_buf_unref(env);
  ews_buf_unref(raw);
}

/* ---- publish -------------------------------------------------------------------- */

typedef struct {
  ews_worker_t *w;
  ews_pubsub_done_fn done;
  void *ud;
} pub_ctx_t;

static void on_stored(ews_store_req_t *req, void *ud) {
  pub_ctx_t *pc = ud;
  if (pc->done) {
    ews_pubsub_pos_t pos = {req->epoch, req->offset, req->created_at};
    pc->done(pc->w, pc->ud, req->status, &pos);
  }
  free(pc);
}

/* Queues req for the writer; done(w, ud, ...) runs on w once it is committed.
 * Takes req in every case. 1, or an error (nothing queued). */
static int submit(ews_worker_t *w, ews_store_req_t *req, ews_pubsub_done_fn done, void *ud) {
  pub_ctx_t *pc = malloc(sizeof *pc);
  if (!pc) {
    ews_store_req_free(req);
    return EWS_ENOMEM;
  }
  *pc = (pub_ctx_t){w, done, ud};
  int r = ews_store_submit(w->store, req, on_stored, pc);
  if (r < 0) free(pc);
  return r < 0 ? r : 1;
}

static int valid_topic(const char *t, size_t n) {
  return n > 0 && n <= EWS_PUBSUB_MAX_TOPIC && ews_utf8_valid((const uint8_t *)t, n);
}

int ews_pubsub_publish(ews_worker_t *w, const char *topic, size_t tl, int json, const void *data,
                       size_t n, ews_pubsub_done_fn done, void *ud, ews_pubsub_pos_t *pos) {
  if (!valid_topic(topic, tl) || !ews_utf8_valid(data, n)) return EWS_EINVAL;
  if (G.persistent) {
    if (!w->store) return EWS_ENOSTORE;
    char *buf = malloc(n + 1);
    if (!buf) return EWS_ENOMEM;
    buf[0] = json ? 'j' : 's';
    memcpy(buf + 1, data, n);
    ews_store_req_t *req;
    int r = ews_store_req_append(&req, topic, tl, buf, n + 1);
    free(buf);
    if (r < 0) return r;
    r = submit(w, req, done, ud);
    if (r > 0) EWS_STAT_ADD(w->stats.published, 1);
    return r;
  }
  if (w) EWS_STAT_ADD(w->stats.published, 1);
  int64_t now = now_ms();
  uv_mutex_lock(&G.lock);
  mtopic_t *t = mtopic_get(topic, tl, 1);
  if (!t) {
    uv_mutex_unlock(&G.lock);
    return EWS_ENOMEM;
  }
  int64_t offset = t->last + 1;
  ews_buf_t *env, *raw;
  size_t ehl, rhl;
  if (build_frames(topic, tl, t->epoch, offset, now, json, data, n, &env, &ehl, &raw, &rhl) != 0) {
    uv_mutex_unlock(&G.lock);
    return EWS_ENOMEM;
  }
  if (t->count == t->cap && t->cap < t->maxq) {
    uint32_t cap = t->cap ? (t->cap > UINT32_MAX / 2 ? UINT32_MAX : t->cap * 2) : 16;
    if (cap > t->maxq) cap = t->maxq;
    ring_ent_t *ring = malloc(cap * sizeof *ring);
    if (ring) {
      for (uint32_t i = 0; i < t->count; i++) ring[i] = t->ring[(t->head + i) % t->cap];
      free(t->ring);
      t->ring = ring;
      t->cap = cap;
      t->head = 0;
    }
  }
  while (t->count && (t->count >= t->maxq || t->count == t->cap)) ring_drop_oldest(t);
  ring_expire(t, now);
  if (t->cap) {
    ring_ent_t *e = &t->ring[(t->head + t->count) % t->cap];
    *e = (ring_ent_t){offset, now, json, env, raw, ehl, rhl};
    ews_buf_ref(env);
    ews_buf_ref(raw);
    t->count++;
  }
  t->last = offset;
  post_all(topic, tl, env, ehl, raw, rhl, t->epoch, offset, now, json);
  if (pos) *pos = (ews_pubsub_pos_t){t->epoch, offset, now};
  uv_mutex_unlock(&G.lock);
  ews_buf_unref(env);
  ews_buf_unref(raw);
  return 0;
}

int ews_pubsub_reset(ews_worker_t *w, const char *topic, size_t tl, ews_pubsub_done_fn done,
                     void *ud, ews_pubsub_pos_t *pos) {
  if (!valid_topic(topic, tl)) return EWS_EINVAL;
  if (G.persistent) {
    if (!w->store) return EWS_ENOSTORE;
    ews_store_req_t *req;
    int r = ews_store_req_reset(&req, topic, tl);
    if (r < 0) return r;
    return submit(w, req, done, ud);
  }
  uv_mutex_lock(&G.lock);
  mtopic_t *t = mtopic_get(topic, tl, 1);
  if (t) {
    while (t->count) ring_drop_oldest(t);
    t->head = 0;
    t->last = 0;
    uint64_t e;
    do e = random_epoch();
    while (e == t->epoch);
    t->epoch = e;
    if (pos) *pos = (ews_pubsub_pos_t){e, 0, now_ms()};
  }
  uv_mutex_unlock(&G.lock);
  return t ? 0 : EWS_ENOMEM;
}

int ews_pubsub_retention(ews_worker_t *w, const char *topic, size_t tl, int32_t max_queue_size,
                         int32_t message_ttl, ews_pubsub_done_fn done, void *ud,
                         ews_pubsub_pos_t *pos) {
  if (!valid_topic(topic, tl) || max_queue_size < EWS_STORE_INHERIT ||
      message_ttl < EWS_STORE_INHERIT)
    return EWS_EINVAL;
  if (G.persistent) {
    if (!w->store) return EWS_ENOSTORE;
    ews_store_req_t *req;
    int r = ews_store_req_retention(&req, topic, tl, max_queue_size, message_ttl);
    if (r < 0) return r;
    return submit(w, req, done, ud);
  }
  uv_mutex_lock(&G.lock);
  mtopic_t *t = mtopic_get(topic, tl, 1);
  if (t) {
    t->maxq = max_queue_size == EWS_STORE_INHERIT ? G.max_queue
            : max_queue_size == 0 ? UINT32_MAX : (uint32_t)max_queue_size;
    t->ttl_ms = message_ttl == EWS_STORE_INHERIT ? G.ttl_ms : (int64_t)message_ttl * 1000;
    while (t->count > t->maxq) ring_drop_oldest(t);
    ring_expire(t, now_ms());
    if (pos) *pos = (ews_pubsub_pos_t){t->epoch, t->last, now_ms()};
  }
  uv_mutex_unlock(&G.lock);
  return t ? 0 : EWS_ENOMEM;
}

/* ---- a worker's topics ---------------------------------------------------------- */

typedef struct {
  ews_conn_t *c;
  int64_t skip; /* offsets <= skip are not for this socket (it got them from history) */
} skip_t;

typedef struct {
  ews_conn_t **v;
  uint32_t n, cap;
} connv_t;

typedef struct {
  ews_named_t n; /* first */
  uint64_t epoch;
  connv_t env, raw;
  skip_t *skips;
  uint32_t nskip, capskip;
  int lua;
  char name[];
} wtopic_t;

/* A connection's topics: each with the connection's index in that topic's env or
 * raw array, so that leaving costs O(topics of the connection), not O(subscribers). */
typedef struct {
  wtopic_t *t;
  uint32_t idx;
  int raw;
} tsub_t;

typedef struct {
  tsub_t *v;
  uint32_t n, cap;
} conn_topics_t;

static int grow(void **v, uint32_t *cap, uint32_t need, size_t size) {
  if (need <= *cap) return 0;
  uint32_t c = *cap ? *cap * 2 : 4;
  while (c < need) c *= 2;
  void *p = realloc(*v, c * size);
  if (!p) return EWS_ENOMEM;
  *v = p;
  *cap = c;
  return 0;
}

static wtopic_t *wtopic_get(ews_worker_t *w, const char *name, size_t len, int create) {
  wtopic_t *t = (wtopic_t *)ews_names_find(&w->topics, name, len);
  if (t || !create) return t;
  t = calloc(1, sizeof *t + len);
  if (!t) return NULL;
  memcpy(t->name, name, len);
  ews_named_init(&t->n, t->name, len);
  if (ews_names_insert(&w->topics, &t->n) != 0) {
    free(t);
    return NULL;
  }
  return t;
}

static void wtopic_free(ews_named_t *r) {
  wtopic_t *t = (wtopic_t *)r;
  free(t->env.v);
  free(t->raw.v);
  free(t->skips);
  free(t);
}

static void wtopic_release_if_empty(ews_worker_t *w, wtopic_t *t) {
  if (t->env.n || t->raw.n || t->lua) return;
  ews_names_remove(&w->topics, &t->n);
  wtopic_free(&t->n);
}

static void remove_skip(wtopic_t *t, ews_conn_t *c) {
  for (uint32_t i = 0; i < t->nskip; i++)
    if (t->skips[i].c == c) {
      t->skips[i] = t->skips[--t->nskip];
      return;
    }
}

static tsub_t *tsub_of(ews_conn_t *c, const wtopic_t *t) {
  conn_topics_t *ct = c->topics;
  if (ct)
    for (uint32_t i = 0; i < ct->n; i++)
      if (ct->v[i].t == t) return &ct->v[i];
  return NULL;
}

/* Takes subscription e (of connection c) out of its topic's array: the last
 * subscriber moves into its slot and its own entry learns the new index. */
static void topic_remove(ews_conn_t *c, const tsub_t *e) {
  wtopic_t *t = e->t;
  connv_t *cv = e->raw ? &t->raw : &t->env;
  ews_conn_t *last = cv->v[--cv->n];
  if (e->idx != cv->n) {
    cv->v[e->idx] = last;
    tsub_of(last, t)->idx = e->idx;
  }
  remove_skip(t, c);
}

void ews_topics_free(ews_names_t *t) { ews_names_clear(t, wtopic_free); }

uint32_t ews_pubsub_local_count(ews_worker_t *w, const char *topic, size_t tl) {
  wtopic_t *t = wtopic_get(w, topic, tl, 0);
  return t ? t->env.n + t->raw.n : 0;
}

int ews_pubsub_lua_subs(ews_worker_t *w, const char *topic, size_t tl, int delta) {
  wtopic_t *t = wtopic_get(w, topic, tl, delta > 0);
  if (!t) return delta > 0 ? EWS_ENOMEM : 0;
  t->lua += delta;
  if (t->lua < 0) t->lua = 0;
  wtopic_release_if_empty(w, t);
  return 0;
}

static int link_conn(wtopic_t *t, ews_conn_t *c, int raw, int64_t skip) {
  conn_topics_t *ct = c->topics;
  connv_t *cv = raw ? &t->raw : &t->env;
  if (!ct && !(ct = c->topics = calloc(1, sizeof *ct))) return EWS_ENOMEM;
  if (grow((void **)&ct->v, &ct->cap, ct->n + 1, sizeof *ct->v) ||
      grow((void **)&cv->v, &cv->cap, cv->n + 1, sizeof *cv->v) ||
      (skip > 0 && grow((void **)&t->skips, &t->capskip, t->nskip + 1, sizeof *t->skips)))
    return EWS_ENOMEM;
  ct->v[ct->n++] = (tsub_t){t, cv->n, raw};
  cv->v[cv->n++] = c;
  if (skip > 0) t->skips[t->nskip++] = (skip_t){c, skip};
  return 0;
}

int ews_pubsub_unsubscribe(ews_worker_t *w, ews_conn_t *c, const char *topic, size_t tl) {
  wtopic_t *t = wtopic_get(w, topic, tl, 0);
  tsub_t *e = t ? tsub_of(c, t) : NULL;
  if (!e) return EWS_EINVAL;
  conn_topics_t *ct = c->topics;
  tsub_t gone = *e;
  *e = ct->v[--ct->n];
  topic_remove(c, &gone);
  wtopic_release_if_empty(w, t);
  return 0;
}

void ews_pubsub_drop_conn(ews_worker_t *w, ews_conn_t *c) {
  conn_topics_t *ct = c->topics;
  if (!ct) return;
  while (ct->n) {
    tsub_t e = ct->v[--ct->n];
    topic_remove(c, &e);
    wtopic_release_if_empty(w, e.t);
  }
  free(ct->v);
  free(ct);
  c->topics = NULL;
}

/* Lua subscribers: edgews._pubsub(topic, epoch_hex, offset, time, data, is_json). */
static void run_lua(ews_worker_t *w, ews_bus_msg_t *m) {
  ews_task_t *task = w->L ? ews_task_get(w) : NULL;
  if (!task) {
    EWS_ERROR("pubsub: dropped a Lua delivery of %.*s (no task)", (int)m->len, m->data);
    return;
  }
  char hex[17];
  ews_pubsub_epoch_hex(m->epoch, hex);
  lua_State *co = task->co;
  lua_rawgeti(co, LUA_REGISTRYINDEX, w->refs.pubsub);
  lua_pushlstring(co, m->data, m->len);
  lua_pushstring(co, hex);
  lua_pushnumber(co, (lua_Number)m->offset);
  lua_pushnumber(co, (lua_Number)m->time);
  lua_pushlstring(co, (const char *)m->raw->data + m->raw_hl, m->raw->len - m->raw_hl);
  lua_pushboolean(co, m->json);
  ews_task_start(w, task, 6, NULL);
}

static void send_to(ews_worker_t *w, connv_t *cv, ews_buf_t *frame, size_t hl, wtopic_t *t,
                    int64_t offset) {
  if (!cv->n) return;
  const uint8_t *p = frame->data + hl;
  size_t n = frame->len - hl;
  if (!t->nskip) {
    ews_fanout_frame(w, cv->v, cv->n, EWS_OP_TEXT, p, n, frame, 0);
    return;
  }
  /* Some sockets got this offset from their history: leave them out (rare: only
   * right after a recovery, until the worker's inbox has caught up). */
  ews_conn_t *stackv[64] = {0}, **v = cv->n <= 64 ? stackv : malloc(cv->n * sizeof *v);
  if (!v) return;
  uint32_t k = 0;
  for (uint32_t i = 0; i < cv->n; i++) {
    int skip = 0;
    for (uint32_t j = 0; j < t->nskip; j++)
      if (t->skips[j].c == cv->v[i] && t->skips[j].skip >= offset) skip = 1;
    if (!skip) v[k++] = cv->v[i];
  }
  ews_fanout_frame(w, v, k, EWS_OP_TEXT, p, n, frame, 0);
  if (v != stackv) free(v);
}

void ews_pubsub_deliver(ews_worker_t *w, ews_bus_msg_t *m) {
  wtopic_t *t = wtopic_get(w, m->data, m->len, 0);
  if (!t) return;
  if (t->epoch != m->epoch) {
    /* A new epoch (or the first message seen): history marks of the old one do not
     * apply to its offsets. */
    t->epoch = m->epoch;
    t->nskip = 0;
  }
  send_to(w, &t->env, m->frame, m->header_len, t, m->offset);
  send_to(w, &t->raw, m->raw, m->raw_hl, t, m->offset);
  /* Marks at or below this offset are spent: the inbox brings offsets in order. */
  for (uint32_t j = 0; j < t->nskip;)
    if (t->skips[j].skip <= m->offset) t->skips[j] = t->skips[--t->nskip];
    else j++;
  if (t->lua) run_lua(w, m);
}

/* ---- history ---------------------------------------------------------------------- */

/* Memory: copies references to the retained messages after since (at most limit,
 * the newest ones when there are more: *skipped says how many were left out). */
static int mem_read(const char *topic, size_t tl, int64_t since, uint32_t limit, uint64_t *epoch,
                    int64_t *first, int64_t *last, ring_ent_t **out, size_t *n) {
  *out = NULL;
  *n = 0;
  uv_mutex_lock(&G.lock);
  mtopic_t *t = mtopic_get(topic, tl, 1); /* a subscriber fixes the epoch from now on */
  if (!t) {
    uv_mutex_unlock(&G.lock);
    return EWS_ENOMEM;
  }
  ring_expire(t, now_ms());
  *epoch = t->epoch;
  *last = t->last;
  *first = t->count ? t->ring[t->head].offset : t->last + 1;
  uint32_t start = 0;
  while (start < t->count && t->ring[(t->head + start) % t->cap].offset <= since) start++;
  uint32_t k = t->count - start;
  if (k > limit) start += k - limit, k = limit;
  if (k) {
    ring_ent_t *v = malloc(k * sizeof *v);
    if (!v) {
      uv_mutex_unlock(&G.lock);
      return EWS_ENOMEM;
    }
    for (uint32_t i = 0; i < k; i++) {
      v[i] = t->ring[(t->head + start + i) % t->cap];
      ews_buf_ref(v[i].env);
      ews_buf_ref(v[i].raw);
    }
    *out = v;
    *n = k;
  }
  uv_mutex_unlock(&G.lock);
  return 0;
}

static void mem_release(ring_ent_t *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    ews_buf_unref(v[i].env);
    ews_buf_unref(v[i].raw);
  }
  free(v);
}

int ews_pubsub_history(ews_worker_t *w, const char *topic, size_t tl, int64_t since, uint32_t limit,
                       ews_pubsub_history_t *out) {
  memset(out, 0, sizeof *out);
  if (!valid_topic(topic, tl)) return EWS_EINVAL;
  if (limit > EWS_STORE_MAX_LIMIT) limit = EWS_STORE_MAX_LIMIT;
  if (G.persistent) {
    if (!w->store) return EWS_ENOSTORE;
    int r = ews_store_history(w->store, topic, tl, since, limit, &out->h);
    if (r < 0) return r;
    out->epoch = out->h.epoch;
    out->first_offset = out->h.first_offset;
    out->last_offset = out->h.last_offset;
    out->items = calloc(out->h.n ? out->h.n : 1, sizeof *out->items);
    if (!out->items) {
      ews_store_history_free(&out->h);
      return EWS_ENOMEM;
    }
    for (size_t i = 0; i < out->h.n; i++) {
      const ews_store_msg_t *m = &out->h.msgs[i];
      const char *p = m->payload;
      size_t len = m->len;
      int json = len > 0 && p[0] == 'j';
      out->items[i] = (ews_pubsub_item_t){m->offset, m->created_at, json, len ? p + 1 : "",
                                          len ? len - 1 : 0};
    }
    out->n = out->h.n;
    return 0;
  }
  ring_ent_t *v;
  size_t n;
  /* The oldest `limit` after since (a page), not the newest. */
  int r = mem_read(topic, tl, since, UINT32_MAX, &out->epoch, &out->first_offset,
                   &out->last_offset, &v, &n);
  if (r < 0) return r;
  size_t k = n < limit ? n : limit;
  out->items = calloc(k ? k : 1, sizeof *out->items);
  out->refs = calloc(k ? k : 1, sizeof *out->refs);
  if (!out->items || !out->refs) {
    mem_release(v, n);
    free(out->items);
    free(out->refs);
    memset(out, 0, sizeof *out);
    return EWS_ENOMEM;
  }
  for (size_t i = 0; i < k; i++) {
    ews_buf_t *raw = v[i].raw;
    ews_buf_ref(raw);
    out->refs[i] = raw;
    out->items[i] = (ews_pubsub_item_t){v[i].offset, v[i].time, v[i].json,
                                        (const char *)raw->data + v[i].raw_hl,
                                        raw->len - v[i].raw_hl};
  }
  out->n = k;
  mem_release(v, n);
  return 0;
}

void ews_pubsub_history_free(ews_pubsub_history_t *h) {
  if (h->refs)
    for (size_t i = 0; i < h->n; i++) ews_buf_unref(h->refs[i]);
  free(h->refs);
  free(h->items);
  ews_store_history_free(&h->h);
  memset(h, 0, sizeof *h);
}

/* ---- subscribe and recover -------------------------------------------------------- */

static int send_gap(ews_conn_t *c, const char *topic, size_t tl, uint64_t epoch, int64_t from,
                    int64_t to, const char *reason) {
  size_t hl;
  ews_buf_t *b = build_gap(topic, tl, epoch, from, to, reason, &hl);
  if (!b) return EWS_ENOMEM;
  int r = ews_conn_send_frame(c, b);
  ews_buf_unref(b);
  return r;
}

/* Persistent recovery: pages through the store after `since`, queueing each
 * message to c. *last gets the newest offset of the last snapshot read. */
static int store_replay(ews_worker_t *w, ews_conn_t *c, const char *topic, size_t tl, int64_t since,
                        int raw, uint64_t epoch, int64_t *last, int64_t *sent) {
  for (;;) {
    ews_store_history_t h;
    int r = ews_store_history(w->store, topic, tl, since, EWS_STORE_MAX_LIMIT, &h);
    if (r < 0) return r;
    *last = h.last_offset;
    if (h.epoch != epoch) { /* reset between our reads: the caller's view is stale */
      ews_store_history_free(&h);
      return EWS_EAGAIN;
    }
    for (size_t i = 0; i < h.n && r == 0; i++) {
      const ews_store_msg_t *m = &h.msgs[i];
      const char *p = m->payload;
      int json = m->len > 0 && p[0] == 'j';
      const char *d = m->len ? p + 1 : "";
      size_t dl = m->len ? m->len - 1 : 0;
      size_t hl;
      ews_buf_t *b = raw ? ews_fanout_plain(EWS_OP_TEXT, d, dl, &hl)
                         : build_envelope(topic, tl, h.epoch, m->offset, m->created_at, json, d, dl, &hl);
      if (!b) r = EWS_ENOMEM;
      else {
        r = ews_conn_send_frame(c, b);
        ews_buf_unref(b);
        (*sent)++;
        since = m->offset;
      }
    }
    size_t n = h.n;
    ews_store_history_free(&h);
    if (r < 0) return r;
    if (n < EWS_STORE_MAX_LIMIT) return 0;
  }
}

int ews_pubsub_subscribe(ews_worker_t *w, ews_conn_t *c, const char *topic, size_t tl,
                         const ews_pubsub_sub_opts_t *o, ews_pubsub_sub_result_t *res) {
  memset(res, 0, sizeof *res);
  if (!valid_topic(topic, tl)) return EWS_EINVAL;
  if (c->state != EWS_CS_OPEN) return EWS_ECLOSED;
  if (G.persistent && !w->store) return EWS_ENOSTORE;
  wtopic_t *t = wtopic_get(w, topic, tl, 1);
  if (!t) return EWS_ENOMEM;
  if (tsub_of(c, t)) return 0;

  /* Where the topic stands, and what the client is missing. */
  uint64_t epoch;
  int64_t first, last;
  ring_ent_t *v = NULL;
  size_t nv = 0;
  int r;
  if (G.persistent) {
    ews_store_history_t h;
    r = ews_store_history(w->store, topic, tl, 0, 0, &h);
    epoch = h.epoch;
    first = h.first_offset;
    last = h.last_offset;
    if (r == 0) ews_store_history_free(&h);
  } else {
    uint32_t lim = o->recover ? (G.max_recover ? G.max_recover : 1) : 0;
    r = mem_read(topic, tl, o->recover ? o->since_offset : INT64_MAX, lim, &epoch, &first, &last,
                 &v, &nv);
  }
  if (r < 0) {
    wtopic_release_if_empty(w, t);
    return r;
  }
  res->epoch = epoch;
  res->offset = last;
  int64_t since = o->since_offset;
  if (o->recover) {
    res->recovered = 1;
    if (o->has_epoch && epoch && o->epoch != epoch) {
      /* The client's offsets belong to another epoch (a reset, or a restart of a
       * memory topic): everything it holds is stale. Replay the new epoch. */
      r = send_gap(c, topic, tl, epoch, 1, last, "epoch");
      res->gap = 1;
      res->recovered = 0;
      since = 0;
      if (!G.persistent) { /* the read above used the client's offset: read again */
        mem_release(v, nv);
        v = NULL;
        nv = 0;
        r = mem_read(topic, tl, 0, G.max_recover ? G.max_recover : 1, &epoch, &first, &last, &v, &nv);
      }
    } else if (since > last) {
      since = last; /* ahead of us (another epoch without one given): nothing to replay */
    }
    if (r == 0 && !res->gap && since + 1 < first) {
      r = send_gap(c, topic, tl, epoch, since + 1, first - 1, "retention");
      res->gap = 1;
      res->recovered = 0;
      since = first - 1;
    }
    if (r == 0 && last - since > (int64_t)G.max_recover) {
      int64_t to = last - (int64_t)G.max_recover;
      r = send_gap(c, topic, tl, epoch, since + 1, to, "limit");
      res->gap = 1;
      res->recovered = 0;
      since = to;
    }
    if (r == 0 && G.persistent && last > since) {
      int64_t sent = 0, seen = last;
      r = store_replay(w, c, topic, tl, since, o->raw, epoch, &seen, &sent);
      res->replayed = sent;
      if (seen > last) last = seen;
      if (r == EWS_EAGAIN) r = 0; /* reset meanwhile: the new epoch arrives live */
    } else if (r == 0) {
      for (size_t i = 0; i < nv && r == 0; i++) {
        if (v[i].offset <= since) continue;
        r = ews_conn_send_frame(c, o->raw ? v[i].raw : v[i].env);
        res->replayed++;
      }
    }
  }
  if (v) mem_release(v, nv);
  if (r < 0 && r != EWS_EBACKPRESSURE) {
    wtopic_release_if_empty(w, t);
    return r;
  }
  if (t->epoch != epoch && epoch) {
    t->epoch = epoch;
    t->nskip = 0;
  }
  r = link_conn(t, c, o->raw, last);
  if (r < 0) wtopic_release_if_empty(w, t);
  return r;
}
