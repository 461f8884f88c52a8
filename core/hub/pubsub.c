/* pubsub.c — the in-process engine's pub/sub (see pubsub.h, engine.h): the memory
 * sequencer (topics, rings, the ordered hand-off of each message to every worker),
 * the store's commit hook (the SQLite sequencer), publish / reset / retention, and
 * history reads (pages for replays and for pubsub.history). The frames are built by
 * pubsub_frames.c; a worker's subscribers and replays are in pubsub_subs.c. */
#include "hub/pubsub.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "err.h"
#include "hub/hash.h"
#include "hub/pubsub_int.h"
#include "log.h"
#include "net/fanout.h"
#include "proto/utf8.h"
#include "stat.h"

/* ---- process-wide state ------------------------------------------------------- */

typedef struct {
  int64_t offset, time;
  int json;
  ews_buf_t *env, *raw;
  size_t env_hl, raw_hl;
} ring_ent_t;

/* A memory topic. Created on first use and kept for the life of the process (so
 * that its offsets never go back): a pointer to it stays valid without the table
 * lock. Every field below `n` is under the topic's stripe lock. */
typedef struct {
  ews_named_t n; /* first */
  /* Reservations: the epoch and last offset handed out to publishers, and the
   * tickets that order their hand-off to the workers. */
  uint64_t epoch;
  int64_t last;
  uint64_t tickets, serving;
  /* What was handed off (in ring and inboxes), i.e. what readers see. */
  uint64_t view_epoch;
  int64_t view_last;
  ring_ent_t *ring;
  uint32_t cap, head, count; /* ring[(head + i) % cap], i < count, oldest first;
                                offsets are consecutive */
  uint32_t maxq;             /* retention of this topic (pubsub.retention) */
  int64_t ttl_ms;            /* 0 = forever */
  char name[];
} mtopic_t;

/* Topics share 64 locks (by address): a lock (and its condition variable, for
 * the turns) per topic would cost ~100 bytes a topic. */
#define NSTRIPES 64
typedef struct {
  uv_mutex_t lock;
  uv_cond_t turn;
} stripe_t;

static struct {
  uv_mutex_t lock;    /* the table of memory topics: find and insert only */
  int inited;
  ews_names_t topics;
  stripe_t stripes[NSTRIPES];
  ews_store_t *store;
  int persistent;
  ews_hub_t *const *hubs;
  int nworkers;
  uint32_t max_queue;  /* memory ring size */
  int64_t ttl_ms;      /* 0 = forever */
  uint32_t max_recover;
  uint64_t seed;       /* atomic */
} G;

static stripe_t *stripe_of(const mtopic_t *t) {
  return &G.stripes[((uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ull) >> 58];
}

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

void ews_pubsub_init(const ews_pubsub_config_t *cfg, ews_store_t *store, int persistent,
                     ews_hub_t *const *hubs, int nworkers) {
  if (!G.inited) {
    uv_mutex_init(&G.lock);
    for (int i = 0; i < NSTRIPES; i++) {
      uv_mutex_init(&G.stripes[i].lock);
      uv_cond_init(&G.stripes[i].turn);
    }
  }
  G.inited = 1;
  G.store = store;
  G.persistent = persistent && store;
  G.hubs = hubs;
  G.nworkers = nworkers;
  G.max_queue = cfg->max_queue > 0 ? (uint32_t)cfg->max_queue : 10000;
  G.ttl_ms = (int64_t)cfg->ttl * 1000;
  G.max_recover = cfg->max_recover;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  G.seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)(uintptr_t)&ts;
}

int ews_pubsub_persistent(void) { return G.persistent; }
uint32_t ews_ps_max_recover(void) { return G.max_recover; }

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

/* Appends a message (its offset follows view_last) and applies the bounds. */
static void ring_put(mtopic_t *t, const ring_ent_t *m) {
  if (t->count == t->cap && t->cap < t->maxq) {
    uint32_t cap = t->cap ? (t->cap > UINT32_MAX / 2 ? UINT32_MAX : t->cap * 2) : 16;
    if (cap > t->maxq) cap = t->maxq;
    ring_ent_t *ring = malloc(cap * sizeof *ring);
    if (ring) { /* else the ring keeps its size: older messages go sooner */
      for (uint32_t i = 0; i < t->count; i++) ring[i] = t->ring[(t->head + i) % t->cap];
      free(t->ring);
      t->ring = ring;
      t->cap = cap;
      t->head = 0;
    }
  }
  while (t->count && (t->count >= t->maxq || t->count == t->cap)) ring_drop_oldest(t);
  ring_expire(t, m->time);
  if (t->cap) {
    t->ring[(t->head + t->count) % t->cap] = *m;
    ews_buf_ref(m->env);
    ews_buf_ref(m->raw);
    t->count++;
  }
  t->view_last = m->offset;
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

/* The memory topic named name, created if missing; NULL when out of memory. */
static mtopic_t *mtopic_get(const char *name, size_t len) {
  uv_mutex_lock(&G.lock);
  mtopic_t *t = (mtopic_t *)ews_names_find(&G.topics, name, len);
  if (!t && (t = calloc(1, sizeof *t + len))) {
    memcpy(t->name, name, len);
    ews_named_init(&t->n, t->name, len);
    t->epoch = t->view_epoch = random_epoch();
    t->maxq = G.max_queue;
    t->ttl_ms = G.ttl_ms;
    if (ews_names_insert(&G.topics, &t->n) != 0) {
      free(t);
      t = NULL;
    }
  }
  uv_mutex_unlock(&G.lock);
  return t;
}

/* Takes the next ticket of t (under its stripe lock). */
static uint64_t take_ticket(mtopic_t *t) { return t->tickets++; }

/* Waits (stripe lock held) until it is ticket's turn. */
static void wait_turn(stripe_t *s, mtopic_t *t, uint64_t ticket) {
  while (t->serving != ticket) uv_cond_wait(&s->turn, &s->lock);
}

/* Ends the current turn (stripe lock held). */
static void end_turn(stripe_t *s, mtopic_t *t) {
  t->serving++;
  uv_cond_broadcast(&s->turn);
}

/* Posts a sequenced message to every worker (the caller holds the order). */
static void post_all(const char *topic, size_t tl, ews_buf_t *env, size_t env_hl, ews_buf_t *raw,
                     size_t raw_hl, uint64_t epoch, int64_t offset, int64_t time, int json) {
  int n = __atomic_load_n(&G.nworkers, __ATOMIC_ACQUIRE);
  for (int i = 0; i < n; i++) {
    int r = ews_ps_post(G.hubs[i], topic, tl, env, env_hl, raw, raw_hl, epoch, offset, time, json);
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
  if (ews_ps_frames(r->key, r->key_len, r->epoch, r->offset, r->created_at, json, p + 1,
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
  ews_hub_t *w;
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
static int submit(ews_hub_t *w, ews_store_req_t *req, ews_pubsub_done_fn done, void *ud) {
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

int ews_ps_valid_topic(const char *t, size_t n) {
  return n > 0 && n <= EWS_PUBSUB_MAX_TOPIC && ews_utf8_valid((const uint8_t *)t, n);
}

/* Memory publish: everything that can fail (allocations) comes before the offset
 * is taken, so an offset handed out is always delivered. The envelope is written
 * with no lock held; the lock is taken for the ticket and for the ring. */
static int mem_publish(const char *topic, size_t tl, int json, const void *data, size_t n,
                       ews_pubsub_pos_t *pos) {
  size_t rhl, ehl;
  ews_buf_t *env = ews_ps_envelope_alloc(topic, tl, json, data, n);
  ews_buf_t *raw = env ? ews_fanout_plain(EWS_OP_TEXT, data, n, &rhl) : NULL;
  mtopic_t *t = raw ? mtopic_get(topic, tl) : NULL;
  if (!t) {
    if (env) ews_buf_unref(env);
    if (raw) ews_buf_unref(raw);
    return EWS_ENOMEM;
  }
  stripe_t *s = stripe_of(t);
  uv_mutex_lock(&s->lock);
  uint64_t ticket = take_ticket(t);
  int64_t offset = ++t->last, now = now_ms();
  uint64_t epoch = t->epoch;
  uv_mutex_unlock(&s->lock);

  ews_ps_envelope_fill(env, topic, tl, epoch, offset, now, json, data, n, &ehl);

  uv_mutex_lock(&s->lock);
  wait_turn(s, t, ticket);
  ring_ent_t e = {offset, now, json, env, raw, ehl, rhl};
  ring_put(t, &e);
  uv_mutex_unlock(&s->lock);
  /* Our turn until end_turn: nobody else posts this topic meanwhile, so every
   * worker gets its messages in offset order. */
  post_all(topic, tl, env, ehl, raw, rhl, epoch, offset, now, json);
  uv_mutex_lock(&s->lock);
  end_turn(s, t);
  uv_mutex_unlock(&s->lock);
  ews_buf_unref(env);
  ews_buf_unref(raw);
  if (pos) *pos = (ews_pubsub_pos_t){epoch, offset, now};
  return 0;
}

int ews_pubsub_publish(ews_hub_t *w, const char *topic, size_t tl, int json, const void *data,
                       size_t n, ews_pubsub_done_fn done, void *ud, ews_pubsub_pos_t *pos) {
  if (!ews_ps_valid_topic(topic, tl) || !ews_utf8_valid(data, n)) return EWS_EINVAL;
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
  int r = mem_publish(topic, tl, json, data, n, pos);
  if (r == 0 && w) EWS_STAT_ADD(w->stats.published, 1);
  return r;
}

int ews_pubsub_reset(ews_hub_t *w, const char *topic, size_t tl, ews_pubsub_done_fn done,
                     void *ud, ews_pubsub_pos_t *pos) {
  if (!ews_ps_valid_topic(topic, tl)) return EWS_EINVAL;
  if (G.persistent) {
    if (!w->store) return EWS_ENOSTORE;
    ews_store_req_t *req;
    int r = ews_store_req_reset(&req, topic, tl);
    if (r < 0) return r;
    return submit(w, req, done, ud);
  }
  mtopic_t *t = mtopic_get(topic, tl);
  if (!t) return EWS_ENOMEM;
  stripe_t *s = stripe_of(t);
  uv_mutex_lock(&s->lock);
  /* Publishes that took their offset before us are handed off first, in the old
   * epoch; those after us get offsets of the new one. */
  uint64_t ticket = take_ticket(t), e;
  do e = random_epoch();
  while (e == t->epoch);
  t->epoch = e;
  t->last = 0;
  wait_turn(s, t, ticket);
  while (t->count) ring_drop_oldest(t);
  t->head = 0;
  t->view_epoch = e;
  t->view_last = 0;
  end_turn(s, t);
  uv_mutex_unlock(&s->lock);
  if (pos) *pos = (ews_pubsub_pos_t){e, 0, now_ms()};
  return 0;
}

int ews_pubsub_retention(ews_hub_t *w, const char *topic, size_t tl, int32_t max_queue_size,
                         int32_t message_ttl, ews_pubsub_done_fn done, void *ud,
                         ews_pubsub_pos_t *pos) {
  if (!ews_ps_valid_topic(topic, tl) || max_queue_size < EWS_STORE_INHERIT ||
      message_ttl < EWS_STORE_INHERIT)
    return EWS_EINVAL;
  if (G.persistent) {
    if (!w->store) return EWS_ENOSTORE;
    ews_store_req_t *req;
    int r = ews_store_req_retention(&req, topic, tl, max_queue_size, message_ttl);
    if (r < 0) return r;
    return submit(w, req, done, ud);
  }
  mtopic_t *t = mtopic_get(topic, tl);
  if (!t) return EWS_ENOMEM;
  stripe_t *s = stripe_of(t);
  uv_mutex_lock(&s->lock);
  t->maxq = max_queue_size == EWS_STORE_INHERIT ? G.max_queue
          : max_queue_size == 0 ? UINT32_MAX : (uint32_t)max_queue_size;
  t->ttl_ms = message_ttl == EWS_STORE_INHERIT ? G.ttl_ms : (int64_t)message_ttl * 1000;
  while (t->count > t->maxq) ring_drop_oldest(t);
  ring_expire(t, now_ms());
  if (pos) *pos = (ews_pubsub_pos_t){t->view_epoch, t->view_last, now_ms()};
  uv_mutex_unlock(&s->lock);
  return 0;
}

/* ---- history -------------------------------------------------------------------- */

/* Memory: the view of t and references to up to limit retained messages after
 * since, oldest first (envelopes, or raw frames). */
static int mem_page(const char *topic, size_t tl, int64_t since, uint32_t limit, int raw,
                    ews_ps_view_t *v, ews_ps_entry_t *out, uint32_t *n) {
  *n = 0;
  mtopic_t *t = mtopic_get(topic, tl); /* a reader fixes the epoch from now on */
  if (!t) return EWS_ENOMEM;
  stripe_t *s = stripe_of(t);
  uv_mutex_lock(&s->lock);
  ring_expire(t, now_ms());
  v->epoch = t->view_epoch;
  v->last = t->view_last;
  v->first = t->count ? t->ring[t->head].offset : t->view_last + 1;
  /* Retained offsets are consecutive: the first one after since is at index
   * since + 1 - first. */
  int64_t start = since + 1 - v->first;
  if (start < 0) start = 0;
  uint32_t k = start < (int64_t)t->count ? t->count - (uint32_t)start : 0;
  if (k > limit) k = limit;
  for (uint32_t i = 0; i < k; i++) {
    const ring_ent_t *e = &t->ring[(t->head + (uint32_t)start + i) % t->cap];
    ews_buf_t *b = raw ? e->raw : e->env;
    ews_buf_ref(b);
    out[i] = (ews_ps_entry_t){e->offset, e->time, e->json, b, raw ? e->raw_hl : e->env_hl};
  }
  *n = k;
  uv_mutex_unlock(&s->lock);
  return 0;
}

int ews_ps_view(ews_hub_t *w, const char *topic, size_t tl, ews_ps_view_t *v) {
  uint32_t n;
  return ews_ps_page(w, topic, tl, INT64_MAX - 1, 0, 0, v, NULL, &n);
}

int ews_ps_page(ews_hub_t *w, const char *topic, size_t tl, int64_t since, uint32_t limit,
                int raw, ews_ps_view_t *v, ews_ps_entry_t *out, uint32_t *n) {
  *n = 0;
  if (!G.persistent) return mem_page(topic, tl, since, limit, raw, v, out, n);
  if (!w->store) return EWS_ENOSTORE;
  ews_store_history_t h;
  int r = ews_store_history(w->store, topic, tl, since, limit, &h);
  if (r < 0) return r;
  *v = (ews_ps_view_t){h.epoch, h.first_offset, h.last_offset};
  for (size_t i = 0; i < h.n && r == 0; i++) {
    const ews_store_msg_t *m = &h.msgs[i];
    const char *p = m->payload;
    int json = m->len > 0 && p[0] == 'j';
    const char *d = m->len ? p + 1 : "";
    size_t dl = m->len ? m->len - 1 : 0, hl;
    ews_buf_t *b = raw ? ews_fanout_plain(EWS_OP_TEXT, d, dl, &hl)
                       : ews_ps_envelope(topic, tl, h.epoch, m->offset, m->created_at, json, d, dl, &hl);
    if (!b) {
      ews_ps_release(out, *n);
      *n = 0;
      r = EWS_ENOMEM;
      break;
    }
    out[(*n)++] = (ews_ps_entry_t){m->offset, m->created_at, json, b, hl};
  }
  ews_store_history_free(&h);
  return r;
}

int ews_pubsub_history(ews_hub_t *w, const char *topic, size_t tl, int64_t since, uint32_t limit,
                       ews_pubsub_history_t *out) {
  memset(out, 0, sizeof *out);
  if (!ews_ps_valid_topic(topic, tl)) return EWS_EINVAL;
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
  /* The oldest `limit` after since (a page), not the newest. */
  return ews_ps_history_paged(w, ews_ps_page, topic, tl, since, limit, out);
}

int ews_ps_history_paged(ews_hub_t *w, ews_ps_page_fn page, const char *topic, size_t tl,
                         int64_t since, uint32_t limit, ews_pubsub_history_t *out) {
  ews_ps_entry_t *v = calloc(limit ? limit : 1, sizeof *v);
  out->items = calloc(limit ? limit : 1, sizeof *out->items);
  out->refs = calloc(limit ? limit : 1, sizeof *out->refs);
  ews_ps_view_t view;
  uint32_t n = 0;
  int r = v && out->items && out->refs ? page(w, topic, tl, since, limit, 1, &view, v, &n)
                                       : EWS_ENOMEM;
  if (r < 0) {
    free(v);
    free(out->items);
    free(out->refs);
    memset(out, 0, sizeof *out);
    return r;
  }
  out->epoch = view.epoch;
  out->first_offset = view.first;
  out->last_offset = view.last;
  for (uint32_t i = 0; i < n; i++) {
    ews_buf_t *raw = v[i].frame; /* the reference moves to refs */
    out->refs[i] = raw;
    out->items[i] = (ews_pubsub_item_t){v[i].offset, v[i].time, v[i].json,
                                        (const char *)raw->data + v[i].hl, raw->len - v[i].hl};
  }
  out->n = n;
  free(v);
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
