/* engine_redis.c — the Redis engine (see engine.h): several instances act as one
 * server for channels. A channel publish reaches this process's other workers as
 * with the in-process engine and every other instance through Redis PUBLISH on the
 * channel's shard (consistent hashing of its name, hub/redis_ring.h); an instance
 * holds one Redis SUBSCRIBE per channel that has subscribers on any of its workers,
 * and a message from another instance is framed once and the same buffer posted to
 * every worker. Pub/sub is engine_redis_pubsub.c's (streams; the same thread and
 * queue), the user registry engine_redis_users.c's, notifications
 * engine_redis_notify.c's, presence engine_redis_presence.c's, app connection
 * counts engine_redis_apps.c's, collaborative documents engine_redis_docs.c's
 * (README: Running a cluster).
 *
 * Threads: one thread ("redis") with its own libuv loop owns every Redis connection
 * (per shard a command connection and a subscriber connection, hub/redis_conn.h).
 * Workers hand it publishes and subscription changes through a queue under the
 * engine's lock, woken by a uv_async_t. The channel records (name -> holders,
 * subscription state) are created by workers under the lock and freed only by the
 * redis thread, under the lock, once no worker holds them and Redis no longer has
 * them subscribed. */
#include "hub/engine.h"
#include "hub/engine_redis_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "err.h"
#include "hub/bus.h"
#include "hub/channels.h"
#include "hub/names.h"
#include "hub/redis_conn.h"
#include "hub/redis_ring.h"
#include "log.h"
#include "net/fanout.h"
#include "proto/frame.h"

#define KEY_PREFIX "ews:c:" /* Redis channel of edgews channel NAME: ews:c:NAME */
#define KEY_PREFIX_LEN 6
#define ID_LEN 16 /* the instance id (hex) that starts every message */
#define TIME_LEN 16 /* then the opcode byte, then the PUBLISH's wall-clock time (hex us) */
#define HEAD_LEN (ID_LEN + 1 + TIME_LEN)
#define MAX_QUEUED_BYTES (64u << 20) /* publishes waiting for the redis thread */

enum { ST_NONE, ST_SUBSCRIBING, ST_SUBSCRIBED, ST_UNSUBSCRIBING };

/* One channel, pub/sub topic or document this instance holds (or held until Redis
 * lets go of it): its Redis channel is ews:c:NAME, ews:p:TOPIC or ews:d:DOC. */
typedef struct rec {
  ews_named_t n;          /* first: in E.recs by its Redis channel (under the lock) */
  int topic;              /* a pub/sub topic (no count in Redis) */
  int doc;                /* a document (no count in Redis) */
  char *blob;             /* a document's: posted to its owner once subscribed */
  size_t blob_len;
  int delayed;            /* the test hook's delay: 1 waiting, 2 over */
  int refs;               /* workers holding it (lock) */
  int queued;             /* on the dirty list (lock) */
  struct rec *dirty_next; /* (lock) */
  struct rec *run_next;   /* the redis thread's list of those it took */
  int state;              /* ST_*: the redis thread's */
  int64_t written;        /* the count last sent to ews:cc:NAME (-1: send it again);
                             the redis thread's */
  int shard;
  size_t keylen;
  char key[];             /* KEY_PREFIX + name */
} rec_t;

/* A channel publish on its way to Redis: key then payload (id, opcode byte, the
 * time of the PUBLISH, written when it is sent, data). */
typedef struct {
  ews_rjob_t job; /* first */
  int shard;
  size_t klen, plen;
  char data[];
} pub_t;

typedef struct {
  int idx;
  ews_redis_url_t url;
  ews_rconn_t cmd, sub;
  /* Under the lock, for status(): */
  int up;
  char err[160];
} shard_t;

static struct {
  int started;
  uv_thread_t thread;
  uv_loop_t loop;
  uv_async_t wake;
  uv_mutex_t lock;
  int stopping;                   /* lock */
  ews_rjob_t *job_head, *job_tail; /* lock */
  size_t queued_bytes;            /* lock */
  rec_t *dirty_head, *dirty_tail; /* lock */
  ews_names_t recs;               /* lock */
  shard_t *shards;
  int nshards;
  ews_redis_ring_t ring;
  ews_hub_t *const *hubs;
  int nworkers;
  char id[ID_LEN + 1];
  /* Test hooks (EDGEWS_TEST_TOPIC_SUBSCRIBE_DELAY_MS, EDGEWS_TEST_DOC_SUBSCRIBE_DELAY_MS):
   * a topic's (a document's) SUBSCRIBE goes out this long after it is wanted, so
   * that specs can publish inside the window between a subscriber's arrival (a
   * document's load) and the subscription's taking effect. */
  uint64_t topic_delay_ms, doc_delay_ms;
  uv_timer_t delay_timer;
  /* atomics */
  uint64_t published, dropped, received, subscriptions, lat_sum, lat_n, dlat_sum, dlat_n;
} E;

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

#define STAT_ADD(f, v) __atomic_fetch_add(&E.f, (v), __ATOMIC_RELAXED)
#define STAT_LOAD(f) __atomic_load_n(&E.f, __ATOMIC_RELAXED)

uint64_t ews_rengine_wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void ews_rengine_delivered(uint64_t pub_us) {
  uint64_t now = ews_rengine_wall_us();
  /* Clocks of other machines may be off: a time in the future, or over an hour
   * old, says nothing about the delivery. */
  if (!pub_us || now < pub_us || now - pub_us > 3600ull * 1000000) return;
  STAT_ADD(dlat_sum, now - pub_us);
  STAT_ADD(dlat_n, 1);
}

void ews_rengine_hex_time(char *out16, uint64_t us) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--, us >>= 4) out16[i] = hex[us & 15];
}

uint64_t ews_rengine_parse_hex_time(const char *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return 0;
    v = v << 4 | (uint64_t)d;
  }
  return v;
}

/* ---- delivery to this instance's workers --------------------------------------------- */

typedef struct {
  ews_bus_msg_t base; /* first */
  ews_buf_t *frame;
  size_t header_len;
  int opcode;
  size_t len;
  char name[];
} chan_msg_t;

static void chan_msg_run(void *ud, ews_bus_msg_t *m) {
  chan_msg_t *cm = (chan_msg_t *)m;
  ews_chan_deliver(ud, cm->name, cm->len, cm->frame, cm->header_len, cm->opcode, 0);
}

static void chan_msg_free(ews_bus_msg_t *m) {
  ews_buf_unref(((chan_msg_t *)m)->frame);
  free(m);
}

static const ews_bus_kind_t chan_kind = {"channel (redis)", chan_msg_run, chan_msg_free, NULL};

/* A message of another instance: framed once, the frame shared by every worker. */
static void deliver(const char *name, size_t len, const char *payload, size_t n) {
  if (n < HEAD_LEN || !memcmp(payload, E.id, ID_LEN)) return; /* ours: already local */
  int opcode = payload[ID_LEN] == 'b' ? EWS_OP_BINARY : EWS_OP_TEXT;
  ews_rengine_delivered(ews_rengine_parse_hex_time(payload + ID_LEN + 1, TIME_LEN));
  STAT_ADD(received, 1);
  ews_rengine_post_frame(name, len, opcode, payload + HEAD_LEN, n - HEAD_LEN);
}

void ews_rengine_post_frame(const char *name, size_t len, int opcode, const char *data,
                            size_t n) {
  size_t hl;
  ews_buf_t *frame = ews_fanout_plain(opcode, data, n, &hl);
  if (!frame) {
    EWS_ERROR("channel %.*s: out of memory framing a message from Redis",
              (int)(len > 200 ? 200 : len), name);
    return;
  }
  for (int i = 0; i < E.nworkers; i++) {
    chan_msg_t *m = malloc(sizeof *m + len);
    if (!m) {
      EWS_ERROR("channel: out of memory posting to worker %d", i);
      continue;
    }
    m->base.kind = &chan_kind;
    m->frame = frame;
    ews_buf_ref(frame);
    m->header_len = hl;
    m->opcode = opcode;
    m->len = len;
    memcpy(m->name, name, len);
    ews_bus_post(&E.hubs[i]->inbox, &m->base);
  }
  ews_buf_unref(frame);
}

/* ---- subscriptions (redis thread) ------------------------------------------------------ */

/* The redis thread: the shard is up when both its connections are ready. When it
 * comes up, the workers check their pub/sub topics against the streams. */
static void update_status(shard_t *s, const char *err) {
  uv_mutex_lock(&E.lock);
  int was = s->up;
  s->up = ews_rconn_ready(&s->cmd) && ews_rconn_ready(&s->sub);
  if (err && *err) snprintf(s->err, sizeof s->err, "%s", err);
  int now = s->up;
  uv_mutex_unlock(&E.lock);
  if (now && !was) ews_rps_shard_up(s->idx);
}

/* Lock held. */
static int enqueue_dirty(rec_t *r) {
  if (r->queued) return 0;
  r->queued = 1;
  r->dirty_next = NULL;
  if (E.dirty_tail) E.dirty_tail->dirty_next = r;
  else E.dirty_head = r;
  E.dirty_tail = r;
  return 1;
}

/* Frees r when no worker holds it and nothing is pending for it. */
static void maybe_free(rec_t *r) {
  if (r->written != 0) return; /* its count in Redis goes first */
  uv_mutex_lock(&E.lock);
  int gone = r->refs == 0 && !r->queued;
  if (gone) ews_names_remove(&E.recs, &r->n);
  uv_mutex_unlock(&E.lock);
  if (gone) {
    free(r->blob);
    free(r);
  }
}

static void on_sub_msg(struct redisAsyncContext *ac, void *reply, void *priv);
static void on_delay(uv_timer_t *t);

/* Brings Redis's subscription of r to what the workers want, one command in flight
 * at a time (hiredis forgets a channel's callback on UNSUBSCRIBE's reply, so a
 * SUBSCRIBE must not overtake a pending UNSUBSCRIBE). */
/* This instance's subscriber count of r's channel in ews:cc:NAME (field: the
 * instance id), when it changed since it was last sent. */
static void write_count(rec_t *r) {
  if (r->topic || r->doc) return;
  ews_rconn_t *cmd = &E.shards[r->shard].cmd;
  const char *name = r->key + KEY_PREFIX_LEN;
  size_t len = r->keylen - KEY_PREFIX_LEN;
  int64_t n = ews_engine_local.chan->count(name, len);
  if (n == r->written || !ews_rconn_ready(cmd)) return;
  char key[600], v[24];
  if (len > 500) return;
  int kl = snprintf(key, sizeof key, "ews:cc:%.*s", (int)len, name);
  int vl = snprintf(v, sizeof v, "%lld", (long long)n);
  const char *argv[4] = {n ? "HSET" : "HDEL", key, E.id, v};
  size_t lens[4] = {4, (size_t)kl, ID_LEN, (size_t)vl};
  if (ews_rconn_command(cmd, NULL, NULL, n ? 4 : 3, argv, lens) == 0) r->written = n;
}

static void reconcile(rec_t *r) {
  write_count(r);
  uv_mutex_lock(&E.lock);
  int want = r->refs > 0;
  uv_mutex_unlock(&E.lock);
  uint64_t delay = r->topic ? E.topic_delay_ms : r->doc ? E.doc_delay_ms : 0;
  if (want && delay && r->state == ST_NONE && r->delayed != 2) {
    if (!r->delayed) {
      r->delayed = 1;
      if (!uv_is_active((uv_handle_t *)&E.delay_timer))
        uv_timer_start(&E.delay_timer, on_delay, delay, 0);
    }
    return;
  }
  ews_rconn_t *sub = &E.shards[r->shard].sub;
  if (!ews_rconn_ready(sub)) {
    r->state = ST_NONE; /* resubscribed when it is ready again */
    if (!want) maybe_free(r);
    return;
  }
  if (want && r->state == ST_NONE) {
    const char *argv[2] = {"SUBSCRIBE", r->key};
    size_t lens[2] = {9, r->keylen};
    if (ews_rconn_command(sub, on_sub_msg, NULL, 2, argv, lens) == 0) r->state = ST_SUBSCRIBING;
  } else if (!want && r->state == ST_SUBSCRIBED) {
    const char *argv[2] = {"UNSUBSCRIBE", r->key};
    size_t lens[2] = {11, r->keylen};
    if (ews_rconn_command(sub, NULL, NULL, 2, argv, lens) == 0) r->state = ST_UNSUBSCRIBING;
  } else if (!want && r->state == ST_NONE) {
    maybe_free(r);
  }
}

static rec_t *find_rec(const char *key, size_t klen) {
  uv_mutex_lock(&E.lock);
  rec_t *r = (rec_t *)ews_names_find(&E.recs, key, klen);
  uv_mutex_unlock(&E.lock);
  return r;
}

static void undelay_one(ews_hnode_t *n, void *ud) {
  (void)ud;
  rec_t *r = (rec_t *)n;
  if (r->delayed == 1) {
    r->delayed = 2;
    enqueue_dirty(r);
  }
}

static void on_delay(uv_timer_t *t) {
  (void)t;
  uv_mutex_lock(&E.lock);
  ews_ht_walk(&E.recs, 0, SIZE_MAX, undelay_one, NULL);
  uv_mutex_unlock(&E.lock);
  uv_async_send(&E.wake);
}

/* Every reply on a subscriber connection: "message", "subscribe", "unsubscribe" (no
 * pattern subscriptions: each channel, topic and document has its own). */
static void on_sub_msg(struct redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  (void)priv;
  redisReply *r = reply;
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
      r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
    return;
  const char *type = r->element[0]->str;
  const char *key = r->element[1]->str;
  size_t klen = r->element[1]->len;
  if (!strcmp(type, "message") && klen == sizeof EWS_RUS_ALL - 1 &&
      !memcmp(key, EWS_RUS_ALL, klen)) {
    if (r->element[2]->type == REDIS_REPLY_STRING)
      ews_rus_all(r->element[2]->str, r->element[2]->len);
    return;
  }
  if (!strcmp(type, "message") && klen > sizeof EWS_RPS_CHAN - 1 &&
      !memcmp(key, EWS_RPS_CHAN, sizeof EWS_RPS_CHAN - 1)) {
    if (r->element[2]->type == REDIS_REPLY_STRING)
      ews_rps_message(key, klen, r->element[2]->str, r->element[2]->len);
    return;
  }
  if (!strcmp(type, "message") && klen > sizeof EWS_RDOC_CHAN - 1 &&
      !memcmp(key, EWS_RDOC_CHAN, sizeof EWS_RDOC_CHAN - 1)) {
    if (r->element[2]->type == REDIS_REPLY_STRING)
      ews_rdoc_message(key, klen, r->element[2]->str, r->element[2]->len);
    return;
  }
  if (!strcmp(type, "message") && ews_rpr_is_status_chan(key, klen)) {
    if (r->element[2]->type == REDIS_REPLY_STRING)
      ews_rpr_status_message(r->element[2]->str, r->element[2]->len);
    return;
  }
  if (!strcmp(type, "message") && klen > sizeof EWS_RUS_INBOX - 1 &&
      !memcmp(key, EWS_RUS_INBOX, sizeof EWS_RUS_INBOX - 1)) {
    if (r->element[2]->type == REDIS_REPLY_STRING)
      ews_rus_message(r->element[2]->str, r->element[2]->len);
    return;
  }
  if (!strcmp(type, "message")) {
    if (r->element[2]->type != REDIS_REPLY_STRING || klen < KEY_PREFIX_LEN) return;
    deliver(key + KEY_PREFIX_LEN, klen - KEY_PREFIX_LEN, r->element[2]->str, r->element[2]->len);
    return;
  }
  rec_t *rec = find_rec(key, klen);
  if (!rec) return;
  if (!strcmp(type, "subscribe")) {
    rec->state = ST_SUBSCRIBED;
    STAT_ADD(subscriptions, 1);
    /* What was published after the topic's subscribers read where it stood, and
     * before this, did not reach this instance: they catch it up. */
    if (rec->topic)
      ews_rps_topic_subscribed(rec->key + sizeof EWS_RPS_CHAN - 1,
                               rec->keylen - (sizeof EWS_RPS_CHAN - 1));
    /* The same for a document: its owner reads what was committed meanwhile. */
    if (rec->doc)
      ews_rdoc_subscribed(rec->key + sizeof EWS_RDOC_CHAN - 1,
                          rec->keylen - (sizeof EWS_RDOC_CHAN - 1), rec->blob, rec->blob_len);
  } else if (!strcmp(type, "unsubscribe")) {
    rec->state = ST_NONE;
    STAT_ADD(subscriptions, (uint64_t)-1);
  } else {
    return;
  }
  reconcile(rec);
}

typedef struct {
  int shard;
  int reset;   /* forget the subscription states (the connection is gone) */
  int recount; /* send every count again (a new command connection) */
} mark_t;

static void mark_one(ews_hnode_t *n, void *ud) {
  mark_t *m = ud;
  rec_t *r = (rec_t *)n;
  if (r->shard != m->shard) return;
  if (m->recount && !r->topic && !r->doc) r->written = -1; /* topics, documents: no count */
  if (m->reset && r->state != ST_NONE) {
    if (r->state == ST_SUBSCRIBED || r->state == ST_UNSUBSCRIBING)
      STAT_ADD(subscriptions, (uint64_t)-1);
    r->state = ST_NONE;
  }
  enqueue_dirty(r);
}

/* Every record of shard s goes on the dirty list (reset: its state is forgotten). */
static void mark_shard(int s, int reset, int recount) {
  mark_t m = {s, reset, recount};
  uv_mutex_lock(&E.lock);
  ews_ht_walk(&E.recs, 0, SIZE_MAX, mark_one, &m);
  uv_mutex_unlock(&E.lock);
  uv_async_send(&E.wake);
}

static void sub_ready(ews_rconn_t *c, void *ud) {
  (void)c;
  shard_t *s = ud;
  mark_shard(s->idx, 1, 0); /* channels and topics subscribe again */
  ews_rus_sub_ready(s->idx, on_sub_msg); /* this instance's inbox, on its shard */
  ews_rdoc_sub_ready(s->idx);            /* documents (engine_redis_docs.c) */
  ews_rpr_sub_ready(s->idx, on_sub_msg); /* presence.set of other instances */
  update_status(s, NULL);
}

static void sub_down(ews_rconn_t *c, void *ud) {
  shard_t *s = ud;
  update_status(s, c->last_error);
  mark_shard(s->idx, 1, 0);
}

static void cmd_ready(ews_rconn_t *c, void *ud) {
  (void)c;
  shard_t *s = ud;
  ews_rps_cmd_ready(s->idx);
  ews_rus_cmd_ready(s->idx);
  ews_rap_cmd_ready(s->idx);
  ews_rpr_cmd_ready(s->idx);
  mark_shard(s->idx, 0, 1);
  update_status(s, NULL);
}

/* A command connection that stops answering means the server is gone or hung: the
 * subscriber connection is started over too. */
static void cmd_down(ews_rconn_t *c, void *ud) {
  shard_t *s = ud;
  update_status(s, c->last_error);
  ews_rconn_drop(&s->sub, c->last_error);
  update_status(s, NULL);
}

/* ---- publishes (redis thread) ------------------------------------------------------------ */

static void on_published(struct redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  redisReply *r = reply;
  if (!r || r->type == REDIS_REPLY_ERROR) {
    STAT_ADD(dropped, 1);
    return;
  }
  uint64_t t0 = (uint64_t)(uintptr_t)priv;
  STAT_ADD(published, 1);
  STAT_ADD(lat_sum, now_us() - t0);
  STAT_ADD(lat_n, 1);
}

static void send_pub(ews_rjob_t *j, int stopping) {
  pub_t *p = (pub_t *)j;
  if (stopping) {
    free(p);
    return;
  }
  ews_rconn_t *cmd = &E.shards[p->shard].cmd;
  ews_rengine_hex_time(p->data + p->klen + ID_LEN + 1, ews_rengine_wall_us());
  const char *argv[3] = {"PUBLISH", p->data, p->data + p->klen};
  size_t lens[3] = {7, p->klen, p->plen};
  if (ews_rconn_command(cmd, on_published, (void *)(uintptr_t)now_us(), 3, argv, lens) != 0)
    STAT_ADD(dropped, 1);
  free(p);
}

static void shutdown_thread(void) {
  ews_rus_close();
  ews_rap_close();
  ews_rpr_close();
  for (int i = 0; i < E.nshards; i++) {
    ews_rconn_close(&E.shards[i].cmd);
    ews_rconn_close(&E.shards[i].sub);
  }
  uv_close((uv_handle_t *)&E.wake, NULL);
  uv_close((uv_handle_t *)&E.delay_timer, NULL);
}

static void on_wake(uv_async_t *a) {
  (void)a;
  uv_mutex_lock(&E.lock);
  int stopping = E.stopping;
  ews_rjob_t *jobs = E.job_head;
  E.job_head = E.job_tail = NULL;
  E.queued_bytes = 0;
  /* The records taken are linked through run_next, which only this thread uses:
   * once unlocked, a worker may queue one of them again (dirty_next). */
  rec_t *dirty = E.dirty_head;
  for (rec_t *r = dirty; r; r = r->dirty_next) {
    r->queued = 0;
    r->run_next = r->dirty_next;
  }
  E.dirty_head = E.dirty_tail = NULL;
  uv_mutex_unlock(&E.lock);
  while (jobs) {
    ews_rjob_t *next = jobs->next;
    jobs->run(jobs, stopping);
    jobs = next;
  }
  if (stopping) {
    shutdown_thread();
    return;
  }
  while (dirty) {
    rec_t *next = dirty->run_next; /* reconcile may free dirty */
    reconcile(dirty);
    dirty = next;
  }
}

static void thread_main(void *arg) {
  (void)arg;
  ews_log_set_tag("redis");
  uv_run(&E.loop, UV_RUN_DEFAULT);
}

/* ---- the channel engine (any worker's thread) ----------------------------------------- */

typedef struct {
  void *local; /* the in-process engine's count */
  rec_t *rec;
} hold_t;

static void chan_publish(ews_hub_t *h, const char *name, size_t len, ews_buf_t *frame, size_t hl,
                         int opcode, uint64_t exclude_id) {
  ews_engine_local.chan->publish(h, name, len, frame, hl, opcode, exclude_id);
  size_t n = frame->len - hl;
  size_t klen = KEY_PREFIX_LEN + len, plen = HEAD_LEN + n;
  size_t size = sizeof(pub_t) + klen + plen;
  pub_t *p = malloc(size);
  if (!p) {
    STAT_ADD(dropped, 1);
    return;
  }
  p->job = (ews_rjob_t){NULL, send_pub, size};
  p->shard = ews_redis_ring_pick(&E.ring, name, len);
  p->klen = klen;
  p->plen = plen;
  memcpy(p->data, KEY_PREFIX, KEY_PREFIX_LEN);
  memcpy(p->data + KEY_PREFIX_LEN, name, len);
  char *pl = p->data + klen;
  memcpy(pl, E.id, ID_LEN);
  pl[ID_LEN] = opcode == EWS_OP_BINARY ? 'b' : 't';
  memcpy(pl + HEAD_LEN, frame->data + hl, n);
  if (ews_rengine_submit(&p->job) != 0) {
    free(p);
    STAT_ADD(dropped, 1);
  }
}

/* ---- what the pub/sub part uses ------------------------------------------------------ */

int ews_rengine_submit(ews_rjob_t *j) {
  j->next = NULL;
  uv_mutex_lock(&E.lock);
  int r = E.stopping ? EWS_ESHUTDOWN
                     : E.queued_bytes + j->size > MAX_QUEUED_BYTES ? EWS_EBACKPRESSURE : 0;
  if (r == 0) {
    if (E.job_tail) E.job_tail->next = j;
    else E.job_head = j;
    E.job_tail = j;
    E.queued_bytes += j->size;
  }
  uv_mutex_unlock(&E.lock);
  if (r == 0) uv_async_send(&E.wake);
  return r;
}

void ews_rengine_complete(void *req, int wanted, ews_bus_msg_t *msg, const ews_bus_kind_t *kind,
                          ews_hub_t *hub) {
  if (!wanted) {
    free(req);
    return;
  }
  msg->kind = kind;
  ews_bus_post(&hub->inbox, msg);
}

int ews_rengine_nshards(void) { return E.nshards; }

int ews_rengine_shard_of(const char *name, size_t len) {
  return ews_redis_ring_pick(&E.ring, name, len);
}

int ews_rengine_shard_up(int shard) {
  uv_mutex_lock(&E.lock);
  int up = E.shards[shard].up;
  uv_mutex_unlock(&E.lock);
  return up;
}

const ews_redis_url_t *ews_rengine_url(int shard) { return &E.shards[shard].url; }
ews_rconn_t *ews_rengine_cmd(int shard) { return &E.shards[shard].cmd; }
ews_rconn_t *ews_rengine_sub(int shard) { return &E.shards[shard].sub; }
const char *ews_rengine_id(void) { return E.id; }

ews_hub_t *const *ews_rengine_hubs(int *nworkers) {
  *nworkers = E.nworkers;
  return E.hubs;
}

/* The record of Redis channel prefix + name, with one more holder (created when
 * missing). NULL when out of memory. */
static rec_t *rec_hold(const char *prefix, size_t pl, const char *name, size_t len, int topic,
                       const char *blob, size_t bl) {
  char key[700];
  if (pl + len > sizeof key) return NULL;
  memcpy(key, prefix, pl);
  memcpy(key + pl, name, len);
  uv_mutex_lock(&E.lock);
  rec_t *r = (rec_t *)ews_names_find(&E.recs, key, pl + len);
  if (!r) {
    r = calloc(1, sizeof *r + pl + len + 1);
    if (r) {
      memcpy(r->key, key, pl + len);
      r->keylen = pl + len;
      r->topic = topic == 1;
      r->doc = topic == 2;
      r->shard = ews_redis_ring_pick(&E.ring, name, len);
      ews_named_init(&r->n, r->key, r->keylen);
      if (r->doc && !(r->blob = malloc(bl ? bl : 1))) {
        free(r);
        r = NULL;
      } else if (ews_names_insert(&E.recs, &r->n) != 0) {
        free(r->blob);
        free(r);
        r = NULL;
      } else if (r->doc) {
        memcpy(r->blob, blob, bl);
        r->blob_len = bl;
      }
    }
  }
  int wake = 0;
  if (r && ++r->refs == 1) wake = enqueue_dirty(r);
  uv_mutex_unlock(&E.lock);
  if (wake) uv_async_send(&E.wake);
  return r;
}

static void rec_release(rec_t *r) {
  uv_mutex_lock(&E.lock);
  int wake = --r->refs == 0 ? enqueue_dirty(r) : 0;
  uv_mutex_unlock(&E.lock);
  if (wake) uv_async_send(&E.wake);
}

void *ews_rengine_topic_hold(const char *topic, size_t tl) {
  return rec_hold(EWS_RPS_CHAN, sizeof EWS_RPS_CHAN - 1, topic, tl, 1, NULL, 0);
}

void ews_rengine_topic_release(void *handle) { rec_release(handle); }

void *ews_rengine_doc_hold(const char *name, size_t nl, const char *blob, size_t n) {
  if (nl == 0 || nl > 500) return NULL;
  return rec_hold(EWS_RDOC_CHAN, sizeof EWS_RDOC_CHAN - 1, name, nl, 2, blob, n);
}

void ews_rengine_doc_release(void *handle) { rec_release(handle); }

static void *chan_hold(const char *name, size_t len) {
  hold_t *h = malloc(sizeof *h);
  if (!h) return NULL;
  h->local = ews_engine_local.chan->hold(name, len);
  if (!h->local) {
    free(h);
    return NULL;
  }
  if (!(h->rec = rec_hold(KEY_PREFIX, KEY_PREFIX_LEN, name, len, 0, NULL, 0))) {
    ews_engine_local.chan->release(h->local);
    free(h);
    return NULL;
  }
  return h;
}

static void chan_add(void *handle, int delta) {
  hold_t *h = handle;
  ews_engine_local.chan->add(h->local, delta);
  uv_mutex_lock(&E.lock);
  int wake = enqueue_dirty(h->rec); /* its count goes to Redis */
  uv_mutex_unlock(&E.lock);
  if (wake) uv_async_send(&E.wake);
}

static void chan_release(void *handle) {
  hold_t *h = handle;
  ews_engine_local.chan->release(h->local);
  rec_release(h->rec);
  free(h);
}

/* KEYS[1] ews:cc:NAME; ARGV[1] this instance -> the other live instances' counts,
 * summed (entries of dead instances are deleted). */
static const char COUNT_LUA[] =
    "local sum, all = 0, redis.call('HGETALL', KEYS[1])\n"
    "for i = 1, #all, 2 do\n"
    "  if all[i] ~= ARGV[1] then\n"
    "    if redis.call('EXISTS', 'ews:i:' .. all[i]) == 1 then sum = sum + tonumber(all[i + 1])\n"
    "    else redis.call('HDEL', KEYS[1], all[i]) end\n"
    "  end\n"
    "end\n"
    "return sum\n";

int64_t ews_rengine_count_others(int shard, const char *key, size_t kl) {
  if (!ews_rengine_shard_up(shard)) return -1;
  const char *argv[5] = {"EVAL", COUNT_LUA, "1", key, E.id};
  size_t lens[5] = {4, sizeof COUNT_LUA - 1, 1, kl, ID_LEN};
  redisReply *r = ews_rengine_sync(shard, 5, argv, lens);
  if (!r) return -1;
  int64_t n = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  freeReplyObject(r);
  return n;
}

/* This instance's subscribers, and the other live instances' as they last wrote
 * them (one round trip from the calling worker's thread; while the channel's shard
 * is down, this instance's only). */
static uint32_t chan_count(const char *name, size_t len) {
  uint32_t n = ews_engine_local.chan->count(name, len);
  if (len > 500) return n;
  char key[600];
  int kl = snprintf(key, sizeof key, "ews:cc:%.*s", (int)len, name);
  int64_t others = ews_rengine_count_others(ews_redis_ring_pick(&E.ring, name, len), key,
                                            (size_t)kl);
  return others > 0 ? n + (uint32_t)others : n;
}

static const ews_chan_engine_t chan_engine = {chan_publish, chan_hold, chan_add, chan_release,
                                              chan_count};

/* ---- the engine ---------------------------------------------------------------------- */

static void status(ews_engine_status_t *out) {
  memset(out, 0, sizeof *out);
  out->published = STAT_LOAD(published);
  out->dropped = STAT_LOAD(dropped);
  out->received = STAT_LOAD(received);
  out->subscriptions = STAT_LOAD(subscriptions);
  out->latency_us_sum = STAT_LOAD(lat_sum);
  out->latency_n = STAT_LOAD(lat_n);
  out->delivery_us_sum = STAT_LOAD(dlat_sum);
  out->delivery_n = STAT_LOAD(dlat_n);
  uv_mutex_lock(&E.lock);
  out->shards = E.nshards;
  for (int i = 0; i < E.nshards && i < EWS_ENGINE_MAX_SHARDS; i++) {
    shard_t *s = &E.shards[i];
    snprintf(out->shard[i].name, sizeof out->shard[i].name, "%s", s->url.name);
    out->shard[i].up = s->up;
    out->shard[i].losses = __atomic_load_n(&s->cmd.losses, __ATOMIC_RELAXED) +
                           __atomic_load_n(&s->sub.losses, __ATOMIC_RELAXED);
    snprintf(out->shard[i].last_error, sizeof out->shard[i].last_error, "%s", s->err);
    if (s->up) out->connected++;
  }
  uv_mutex_unlock(&E.lock);
}

static void free_rec(ews_named_t *n) {
  free(((rec_t *)n)->blob);
  free(n);
}

static void cleanup(void) {
  ews_names_clear(&E.recs, free_rec);
  ews_redis_ring_free(&E.ring);
  free(E.shards);
  uv_mutex_destroy(&E.lock);
  memset(&E, 0, sizeof E);
}

static int start(const ews_engine_config_t *cfg) {
  if (cfg->nredis < 1 || cfg->nredis > EWS_ENGINE_MAX_SHARDS) return EWS_EINVAL;
  int r = ews_engine_local.start(cfg);
  if (r != 0) return r;
  memset(&E, 0, sizeof E);
  uint8_t raw[ID_LEN / 2];
  if (getrandom(raw, sizeof raw, 0) != sizeof raw) {
    uint64_t t = now_us() ^ ((uint64_t)getpid() << 32);
    memcpy(raw, &t, sizeof raw);
  }
  for (int i = 0; i < ID_LEN / 2; i++) snprintf(E.id + 2 * i, 3, "%02x", raw[i]);
  E.hubs = cfg->hubs;
  E.nworkers = cfg->nworkers;
  E.nshards = cfg->nredis;
  ews_rps_start(&cfg->pubsub);
  ews_rno_start(cfg->notif_max_per_user, cfg->notif_ttl);
  ews_rdoc_start();
  E.shards = calloc((size_t)cfg->nredis, sizeof *E.shards);
  const char *names[EWS_ENGINE_MAX_SHARDS];
  if (!E.shards) goto oom;
  for (int i = 0; i < cfg->nredis; i++) names[i] = cfg->redis[i].name;
  if (ews_redis_ring_init(&E.ring, names, cfg->nredis) != 0) goto oom;
  uv_mutex_init(&E.lock);
  uv_loop_init(&E.loop);
  uv_async_init(&E.loop, &E.wake, on_wake);
  uv_timer_init(&E.loop, &E.delay_timer);
  const char *delay = getenv("EDGEWS_TEST_TOPIC_SUBSCRIBE_DELAY_MS");
  E.topic_delay_ms = delay ? strtoull(delay, NULL, 10) : 0;
  delay = getenv("EDGEWS_TEST_DOC_SUBSCRIBE_DELAY_MS");
  E.doc_delay_ms = delay ? strtoull(delay, NULL, 10) : 0;
  ews_rus_start(&E.loop);
  ews_rap_start(&E.loop);
  ews_rpr_start(&E.loop);
  for (int i = 0; i < E.nshards; i++) {
    shard_t *s = &E.shards[i];
    s->idx = i;
    s->url = cfg->redis[i];
    ews_rconn_init(&s->cmd, &E.loop, &s->url, "commands", 1, cmd_ready, cmd_down, s);
    ews_rconn_init(&s->sub, &E.loop, &s->url, "subscriber", 0, sub_ready, sub_down, s);
    ews_rconn_start(&s->cmd);
    ews_rconn_start(&s->sub);
  }
  if (uv_thread_create(&E.thread, thread_main, NULL) != 0) {
    EWS_ERROR("cannot start the redis thread");
    return EWS_ENOMEM;
  }
  E.started = 1;
  EWS_INFO("cluster: instance %s over %d Redis shard%s; channels, pub/sub, presence, user "
           "sockets, broadcasts, app connection counts, notifications and documents span "
           "instances (README: Running a cluster)",
           E.id, E.nshards, E.nshards == 1 ? "" : "s");
  return 0;
oom:
  free(E.shards);
  ews_engine_local.stop();
  return EWS_ENOMEM;
}

static void stop(void) {
  if (E.started) {
    uv_mutex_lock(&E.lock);
    E.stopping = 1;
    uv_mutex_unlock(&E.lock);
    uv_async_send(&E.wake);
    uv_thread_join(&E.thread);
    uv_loop_close(&E.loop);
    ews_rpr_goodbye(); /* before ews_rps_stop frees this thread's connections */
    ews_rps_stop();
    ews_rdoc_stop();
    cleanup();
  }
  ews_engine_local.stop();
}

const ews_engine_t ews_engine_redis = {"redis", start, stop, &chan_engine,
                                       &ews_rps_engine, &ews_rpr_engine,
                                       &ews_rus_engine, status, &ews_rno_engine,
                                       &ews_rdoc_engine, ews_rap_connections};
