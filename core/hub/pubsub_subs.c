/* pubsub_subs.c — a worker's side of pub/sub (see pubsub.h): its subscribers per
 * topic, the delivery of sequenced messages with the skip marks that join a
 * replay to the live stream, subscribe / unsubscribe, and replays: read in pages
 * over loop turns within a per-iteration budget, paced by each socket's queue.
 *
 * A socket's subscription to a topic is live (in the topic's env or raw array)
 * or replaying (a replay_t on the worker's list; not in the arrays, so the live
 * stream does not reach it). A replay goes live only right after a page read in
 * the same turn brought it up to the topic's last offset L: it then gets the mark
 * (epoch, L), which the inbox's copies of offsets <= L meet and skip. */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "err.h"
#include "hub/bus.h"
#include "hub/engine.h"
#include "hub/pubsub.h"
#include "hub/pubsub_int.h"
#include "hub/subs.h"
#include "log.h"
#include "net/conn.h"
#include "net/fanout.h"

#define REPLAY_PAGE 256   /* messages read at a time */
#define REPLAY_BUDGET 512 /* messages (and gaps) replayed per worker loop iteration */

/* ---- a worker's topics ---------------------------------------------------------- */

/* A socket that got offsets <= off of `epoch` from history skips their live
 * copies. off 0 = no mark. */
typedef struct {
  uint64_t epoch;
  int64_t off;
} mark_t;

typedef struct {
  ews_subs_t s;  /* the live subscribers (hub/subs.h), handed to the fan-out */
  mark_t *marks; /* parallel to s.v; allocated with the first mark */
  uint32_t mcap;
} connv_t;

typedef struct replay replay_t;

typedef struct {
  ews_named_t n; /* first */
  uint64_t epoch; /* of the last message delivered here (0: none yet) */
  int64_t seen;   /* the highest offset of `epoch` delivered here (0: none yet) */
  connv_t env, raw;
  uint32_t nmarks;  /* marks set in env and raw */
  uint32_t ndrop;   /* live sockets whose app drops on backpressure */
  uint32_t nreplay; /* sockets replaying */
  uint32_t njobs;   /* replays referring to this topic (ended ones too, until freed) */
  int lua;
  const ews_pubsub_engine_t *pe; /* the engine that holds it for this worker */
  void *held;                    /* its handle (NULL: not held) */
  char name[];
} wtopic_t;

/* A connection's topics. A live one has its index in the topic's array, so that
 * leaving costs O(topics of the connection), not O(subscribers). */
typedef struct {
  wtopic_t *t;
  uint32_t idx;
  int raw;
  replay_t *job;       /* replaying: not in the arrays */
  uint64_t from_epoch; /* the socket has been sent, or told about (gap), every */
  int64_t from;        /* message after `from` of from_epoch (0 epoch: any) */
} tsub_t;

typedef struct {
  ews_conn_hook_t hook; /* first: the subscriptions end with the connection */
  ews_hub_t *w;
  tsub_t *v;
  uint32_t n, cap;
} conn_topics_t;

static void conn_closed(ews_conn_t *c, ews_conn_hook_t *h);

static conn_topics_t *topics_of(const ews_conn_t *c) {
  return (conn_topics_t *)ews_conn_hook_find(c, conn_closed);
}

struct replay {
  replay_t *prev, *next;
  ews_conn_t *c; /* NULL once it ended: the socket left, or unsubscribed */
  wtopic_t *t;
  ews_pubsub_sub_fn done;
  void *ud;
  int status;        /* the outcome once c is NULL */
  int raw, blocked, fresh, started, catchup;
  int waiting;       /* blocked until ews_pubsub_resync: history was unavailable */
  size_t need;       /* blocked: bytes the next frame needs */
  uint64_t epoch;    /* being replayed (0: take the topic's at the first read) */
  int64_t cursor;    /* last offset sent, or covered by a gap */
  int64_t page_last; /* the topic's last offset when the page in hand was read */
  uint64_t from_epoch;
  int64_t from;
  ews_ps_entry_t *page; /* REPLAY_PAGE entries; [pi, pn) not yet sent */
  uint32_t pn, pi;
  ews_pubsub_sub_result_t res;
};

/* The worker's replays (w->pubsub), created with the first one. */
typedef struct ews_pubsub_w {
  uv_idle_t idle; /* on while a replay can go on: the loop does not block */
  int idle_on;
  replay_t *head, *tail;
  uint32_t budget; /* what this loop iteration may still replay */
} psw_t;

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

static wtopic_t *wtopic_get(ews_hub_t *w, const char *name, size_t len, int create) {
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
  t->pe = w->engine->pubsub;
  if (t->pe->hold && !(t->held = t->pe->hold(name, len)))
    EWS_ERROR("pubsub %.*s: out of memory: this worker may miss its messages from other "
              "instances", (int)(len > 200 ? 200 : len), name);
  return t;
}

static void wtopic_free(ews_named_t *r) {
  wtopic_t *t = (wtopic_t *)r;
  if (t->held) t->pe->release(t->held);
  ews_subs_free(&t->env.s);
  free(t->env.marks);
  ews_subs_free(&t->raw.s);
  free(t->raw.marks);
  free(t);
}

static void wtopic_release_if_empty(ews_hub_t *w, wtopic_t *t) {
  if (t->env.s.n || t->raw.s.n || t->lua || t->njobs) return;
  ews_names_remove(&w->topics, &t->n);
  wtopic_free(&t->n);
}

void ews_topics_free(ews_names_t *t) { ews_names_clear(t, wtopic_free); }

static tsub_t *tsub_of(ews_conn_t *c, const wtopic_t *t) {
  conn_topics_t *ct = topics_of(c);
  if (ct)
    for (uint32_t i = 0; i < ct->n; i++)
      if (ct->v[i].t == t) return &ct->v[i];
  return NULL;
}

/* A new entry in c's topics (not live yet). NULL when out of memory. */
static tsub_t *tsub_add(ews_hub_t *w, ews_conn_t *c, wtopic_t *t, int raw) {
  conn_topics_t *ct = topics_of(c);
  if (!ct) {
    if (!(ct = calloc(1, sizeof *ct))) return NULL;
    ct->hook.closed = conn_closed;
    ct->w = w;
    if (ews_conn_hook_add(c, &ct->hook) != 0) {
      free(ct);
      return NULL;
    }
  }
  if (grow((void **)&ct->v, &ct->cap, ct->n + 1, sizeof *ct->v)) return NULL;
  tsub_t *e = &ct->v[ct->n++];
  *e = (tsub_t){.t = t, .raw = raw};
  return e;
}

/* Removes entry e (a pointer into c's topics) from c's topics. */
static void tsub_del(ews_conn_t *c, tsub_t *e) {
  conn_topics_t *ct = topics_of(c);
  *e = ct->v[--ct->n];
}

static int drops(const ews_conn_t *c) {
  const ews_app_t *app = ews_conn_app(c);
  return app && app->drop_on_backpressure;
}

/* Puts c (entry e) in its topic's array, with the mark (epoch, off) when off > 0. */
static int live_add(ews_conn_t *c, tsub_t *e, uint64_t epoch, int64_t off) {
  wtopic_t *t = e->t;
  connv_t *cv = e->raw ? &t->raw : &t->env;
  if (ews_subs_reserve(&cv->s, cv->s.n + 1)) return EWS_ENOMEM;
  if (off > 0 || cv->marks) {
    uint32_t had = cv->mcap;
    if (grow((void **)&cv->marks, &cv->mcap, cv->s.cap, sizeof *cv->marks)) return EWS_ENOMEM;
    if (!had) memset(cv->marks, 0, cv->mcap * sizeof *cv->marks); /* nobody had one */
  }
  e->idx = cv->s.n;
  if (cv->marks) cv->marks[cv->s.n] = (mark_t){epoch, off > 0 ? off : 0};
  ews_subs_add(&cv->s, c); /* room reserved: cannot fail */
  if (off > 0) t->nmarks++;
  if (drops(c)) t->ndrop++;
  return 0;
}

/* Takes live entry e (of connection c) out of its topic's array: the last
 * subscriber moves into its slot and its own entry learns the new index. */
static void live_remove(ews_conn_t *c, const tsub_t *e) {
  wtopic_t *t = e->t;
  connv_t *cv = e->raw ? &t->raw : &t->env;
  uint32_t i = e->idx, last = cv->s.n - 1;
  if (cv->marks && cv->marks[i].off) t->nmarks--;
  if (drops(c)) t->ndrop--;
  ews_conn_t *moved = ews_subs_remove(&cv->s, i);
  if (moved) {
    if (cv->marks) cv->marks[i] = cv->marks[last];
    tsub_of(moved, t)->idx = i;
  }
}

uint32_t ews_pubsub_local_count(ews_hub_t *w, const char *topic, size_t tl) {
  wtopic_t *t = wtopic_get(w, topic, tl, 0);
  return t ? t->env.s.n + t->raw.s.n + t->nreplay : 0;
}

int ews_pubsub_lua_subs(ews_hub_t *w, const char *topic, size_t tl, int delta) {
  wtopic_t *t = wtopic_get(w, topic, tl, delta > 0);
  if (!t) return delta > 0 ? EWS_ENOMEM : 0;
  t->lua += delta;
  if (t->lua < 0) t->lua = 0;
  wtopic_release_if_empty(w, t);
  return 0;
}

/* ---- replays: the worker's list --------------------------------------------------- */

static void on_idle(uv_idle_t *h);

static psw_t *psw(ews_hub_t *w) {
  if (w->pubsub) return w->pubsub;
  psw_t *ps = calloc(1, sizeof *ps);
  if (!ps) return NULL;
  if (uv_idle_init(w->net->loop, &ps->idle) != 0) {
    free(ps);
    return NULL;
  }
  ps->idle.data = w;
  ps->budget = REPLAY_BUDGET;
  w->pubsub = ps;
  return ps;
}

static void list_append(psw_t *ps, replay_t *j) {
  j->next = NULL;
  j->prev = ps->tail;
  if (ps->tail) ps->tail->next = j;
  else ps->head = j;
  ps->tail = j;
}

static void list_remove(psw_t *ps, replay_t *j) {
  if (j->prev) j->prev->next = j->next;
  else ps->head = j->next;
  if (j->next) j->next->prev = j->prev;
  else ps->tail = j->prev;
  j->prev = j->next = NULL;
}

static void idle_set(psw_t *ps, int on) {
  if (on == ps->idle_on || uv_is_closing((uv_handle_t *)&ps->idle)) return;
  ps->idle_on = on;
  if (on) uv_idle_start(&ps->idle, on_idle);
  else uv_idle_stop(&ps->idle);
}

/* Room in c's queue for n more bytes without the slow-consumer policy applying. */
static int fits(const ews_conn_t *c, size_t n) { return ews_conn_fits(c, n); }

static replay_t *job_new(ews_conn_t *c, wtopic_t *t, int raw) {
  replay_t *j = calloc(1, sizeof *j);
  if (j) j->page = malloc(REPLAY_PAGE * sizeof *j->page);
  if (!j || !j->page) {
    free(j);
    return NULL;
  }
  j->c = c;
  j->t = t;
  j->raw = raw;
  t->njobs++;
  t->nreplay++;
  return j;
}

/* The job no longer has a socket (it ended, or the socket left): status is its
 * outcome. Its entry in the socket's topics goes unless it went live. */
static void job_detach(replay_t *j, int status) {
  if (!j->c) return;
  tsub_t *e = tsub_of(j->c, j->t);
  if (e && e->job == j) tsub_del(j->c, e);
  j->c = NULL;
  j->status = status;
  j->t->nreplay--;
}

static void job_free(ews_hub_t *w, replay_t *j) {
  job_detach(j, j->status);
  ews_ps_release(j->page + j->pi, j->pn - j->pi);
  wtopic_t *t = j->t;
  t->njobs--;
  wtopic_release_if_empty(w, t);
  free(j->page);
  free(j);
}

/* Ends a job on the list: tells whoever waits, then frees it. */
static void job_finish(ews_hub_t *w, psw_t *ps, replay_t *j) {
  list_remove(ps, j);
  ews_pubsub_sub_fn done = j->done;
  void *ud = j->ud;
  int status = j->c ? 0 : j->status;
  ews_pubsub_sub_result_t res = j->res;
  job_free(w, j);
  if (done) done(w, ud, status, status == 0 ? &res : NULL);
}

/* ---- replays: one step ------------------------------------------------------------- */

enum { STEP_LATER = 0, STEP_DONE = 1, STEP_BLOCKED = 2, STEP_AGAIN = 3 };

/* Sends a gap now, or says the socket has no room for it yet. */
static int send_gap(replay_t *j, uint64_t epoch, int64_t from, int64_t to, const char *reason) {
  ews_buf_t *b = ews_ps_gap_frame(j->t->name, j->t->n.len, epoch, from, to, reason);
  if (!b) return EWS_ENOMEM;
  int r;
  if (!fits(j->c, b->len)) {
    j->blocked = 1;
    j->need = b->len;
    r = STEP_BLOCKED;
  } else {
    r = ews_conn_send_frame(j->c, b);
    j->res.gap = 1;
    j->res.recovered = 0;
  }
  ews_buf_unref(b);
  return r;
}

/* Reads the page after the cursor and settles what the client's position is
 * missing (gaps). STEP_LATER (page in hand), STEP_AGAIN (read again from the
 * moved cursor), STEP_BLOCKED (a gap waits for room), or an error. */
static int read_page(ews_hub_t *w, psw_t *ps, replay_t *j) {
  wtopic_t *t = j->t;
  ews_ps_view_t v;
  uint32_t n, lim = ps->budget < REPLAY_PAGE ? ps->budget : REPLAY_PAGE;
  int r = w->engine->pubsub->page(w, t->name, t->n.len, j->cursor, lim ? lim : 1, j->raw, &v, j->page, &n);
  if (r < 0) return r;
  j->pn = n;
  j->pi = 0;
  j->fresh = 1;
  j->page_last = v.last;
  if (v.epoch && j->epoch && v.epoch != j->epoch) {
    /* The client's offsets (or the replay's so far) belong to another epoch: a
     * reset, or a memory topic across a restart. The current epoch from its start. */
    ews_ps_release(j->page, n);
    j->pn = 0;
    if ((r = send_gap(j, v.epoch, 1, v.last, "epoch")) != 0) return r;
    j->epoch = j->from_epoch = v.epoch;
    j->cursor = j->from = 0;
    j->started = 1;
    return STEP_AGAIN;
  }
  /* The same epoch, or one side has none yet (no epoch given; a stored topic
   * without messages so far): the topic's from now on. */
  if (!j->started) j->from_epoch = v.epoch;
  j->epoch = v.epoch;
  if (j->cursor > v.last) {
    /* The client has offsets this topic never had in this epoch (a client bug, or
     * a store restored from an older copy): they are not ours; the next message
     * will be last + 1. */
    if ((r = send_gap(j, v.epoch, v.last + 1, j->cursor, "ahead")) != 0) return r;
    j->cursor = j->from = v.last;
  }
  j->started = 1;
  if (j->cursor + 1 < v.first) {
    if ((r = send_gap(j, v.epoch, j->cursor + 1, v.first - 1, "retention")) != 0) {
      ews_ps_release(j->page, n);
      j->pn = 0;
      return r;
    }
    j->cursor = v.first - 1;
  }
  uint32_t maxrec = w->engine->pubsub->max_recover();
  if (v.last - j->cursor > (int64_t)maxrec) {
    int64_t to = v.last - (int64_t)maxrec;
    if ((r = send_gap(j, v.epoch, j->cursor + 1, to, "limit")) != 0) {
      ews_ps_release(j->page, n);
      j->pn = 0;
      return r;
    }
    j->cursor = to;
    /* The page was read from the old cursor: keep what is after the new one. */
    while (j->pi < j->pn && j->page[j->pi].offset <= j->cursor) {
      ews_ps_release(&j->page[j->pi], 1);
      j->pi++;
    }
    if (j->pi == j->pn && j->cursor < v.last) return STEP_AGAIN;
  }
  return STEP_LATER;
}

/* Goes live: the page read in this turn brought the socket up to the topic's last
 * offset, so the inbox holds (or will bring) only offsets <= page_last that it
 * has, or newer ones it needs. */
static int go_live(replay_t *j) {
  ews_conn_t *c = j->c;
  tsub_t *e = tsub_of(c, j->t);
  int r = e ? live_add(c, e, j->epoch, j->page_last) : EWS_EINVAL;
  if (r < 0) {
    job_detach(j, r);
    return STEP_DONE;
  }
  e->job = NULL;
  e->from_epoch = j->from_epoch;
  e->from = j->from;
  j->res.epoch = j->epoch;
  j->res.offset = j->page_last;
  j->c = NULL; /* done: the entry stays, live */
  j->status = 0;
  j->t->nreplay--;
  return STEP_DONE;
}

/* Runs job j as far as the budget and the socket's queue allow. */
static int step(ews_hub_t *w, psw_t *ps, replay_t *j) {
  j->fresh = 0;
  for (;;) {
    ews_conn_t *c = j->c;
    if (!c) return STEP_DONE;
    if (!ews_conn_is_open(c)) {
      job_detach(j, EWS_ECLOSED);
      return STEP_DONE;
    }
    while (j->pi < j->pn) {
      ews_ps_entry_t *m = &j->page[j->pi];
      if (m->offset <= j->cursor) { /* covered by a gap meanwhile */
        ews_ps_release(m, 1);
        j->pi++;
        continue;
      }
      if (!fits(c, m->frame->len)) {
        j->blocked = 1;
        j->need = m->frame->len;
        return STEP_LATER;
      }
      if (!ps->budget) return STEP_LATER;
      int r = ews_conn_send_frame(c, m->frame);
      ews_ps_release(m, 1);
      j->pi++;
      if (r < 0) {
        job_detach(j, r);
        return STEP_DONE;
      }
      j->cursor = m->offset;
      j->res.replayed++;
      ps->budget--;
    }
    j->pn = j->pi = 0;
    if (j->fresh && j->cursor >= j->page_last) return go_live(j);
    if (!ps->budget) return STEP_LATER;
    int r = read_page(w, ps, j);
    if (r == STEP_BLOCKED) return STEP_LATER;
    if (r == EWS_EUNAVAILABLE && j->catchup) {
      /* A live socket catching up while the engine cannot read (a cluster's Redis
       * shard is down): it waits, subscribed, for the engine's resync when the
       * history is back, rather than losing its subscription. */
      j->blocked = j->waiting = 1;
      return STEP_LATER;
    }
    if (r < 0) {
      job_detach(j, r);
      return STEP_DONE;
    }
    ps->budget--; /* a read (or a gap) costs like a message */
    if (r == STEP_LATER && j->pn == j->pi) {
      if (j->cursor >= j->page_last) return go_live(j);
      return STEP_LATER; /* nothing to read although behind: try again next turn */
    }
  }
}

/* Steps every runnable job once, in turn, while the budget lasts; a job that
 * used its turn goes to the back. */
static void on_idle(uv_idle_t *h) {
  ews_hub_t *w = h->data;
  psw_t *ps = w->pubsub;
  replay_t *j = ps->head, *end = ps->tail;
  while (j && ps->budget) {
    replay_t *next = j == end ? NULL : j->next;
    if (!j->blocked || !j->c) {
      j->blocked = 0;
      if (step(w, ps, j) == STEP_DONE) {
        job_finish(w, ps, j); /* may run Lua, which may add jobs at the tail */
      } else if (j != ps->tail) {
        list_remove(ps, j);
        list_append(ps, j);
      }
    }
    j = next;
  }
}

void ews_pubsub_tick(ews_hub_t *w, int end) {
  psw_t *ps = w->pubsub;
  if (!ps) return;
  if (end) ps->budget = REPLAY_BUDGET;
  int runnable = 0;
  for (replay_t *j = ps->head; j; j = j->next) {
    if (j->blocked && (!j->c || !ews_conn_is_open(j->c) || (!j->waiting && fits(j->c, j->need))))
      j->blocked = j->waiting = 0;
    if (!j->blocked) runnable = 1;
  }
  idle_set(ps, runnable);
}

void ews_pubsub_worker_free(ews_hub_t *w) {
  psw_t *ps = w->pubsub;
  if (!ps) return;
  while (ps->head) {
    replay_t *j = ps->head;
    list_remove(ps, j);
    job_free(w, j); /* nobody is told: the worker's VM is gone */
  }
  free(ps); /* its idle handle was closed with the loop's others */
  w->pubsub = NULL;
}

/* Cancels the replay of entry e (the socket left or unsubscribed). */
static void job_cancel(ews_hub_t *w, tsub_t *e, int status) {
  replay_t *j = e->job;
  job_detach(j, status); /* removes e */
  j->blocked = 0;
  if (w->pubsub) idle_set(w->pubsub, 1); /* it ends at its next step */
}

/* ---- live delivery ------------------------------------------------------------------ */

/* The local (Lua) subscribers, through the handler the layer above registered. */
static void run_local(ews_hub_t *w, const ews_ps_msg_t *m) {
  if (!w->pubsub_local) return;
  ews_pubsub_event_t e = {m->topic, m->len, m->epoch, m->offset, m->time,
                          (const char *)m->raw->data + m->raw_hl, m->raw->len - m->raw_hl,
                          m->json};
  w->pubsub_local(w, &e);
}

/* Bytes a frame of plain length n may take on the wire (a compressed frame can be
 * a little longer than the plain one). */
static size_t wire_bound(size_t n) { return n + n / 256 + 64; }

/* Queues frame to the live subscribers of cv, except those whose mark says they
 * got this offset from history. A subscriber of a "drop" app whose queue has no
 * room for it would lose it: it is put in behind[] instead (to catch up from
 * history). */
static void send_to(ews_hub_t *w, wtopic_t *t, connv_t *cv, ews_buf_t *frame, size_t hl,
                    const ews_ps_msg_t *m, ews_conn_t ***behind, uint32_t *nbehind) {
  if (!cv->s.n) return;
  const uint8_t *p = frame->data + hl;
  size_t n = frame->len - hl;
  if (!t->nmarks && !t->ndrop) {
    ews_fanout_frame(w->net, cv->s.v, cv->s.n, EWS_OP_TEXT, p, n, frame, 0);
    return;
  }
  ews_conn_t *stackv[64], **v = cv->s.n <= 64 ? stackv : malloc(cv->s.n * sizeof *v);
  if (!v) return;
  uint32_t k = 0;
  size_t room = wire_bound(frame->len);
  for (uint32_t i = 0; i < cv->s.n; i++) {
    ews_conn_t *c = cv->s.v[i];
    if (cv->marks && cv->marks[i].off && cv->marks[i].epoch == m->epoch &&
        m->offset <= cv->marks[i].off)
      continue; /* it has this one from history */
    if (t->ndrop && drops(c) && ews_conn_is_open(c) && !fits(c, room)) {
      ews_conn_t **b = realloc(*behind, (*nbehind + 1) * sizeof **behind);
      if (b) {
        *behind = b;
        b[(*nbehind)++] = c;
        continue;
      }
    }
    v[k++] = c;
  }
  ews_fanout_frame(w->net, v, k, EWS_OP_TEXT, p, n, frame, 0);
  if (v != stackv) free(v);
}

/* Marks of `epoch` at or below offset are spent (off = INT64_MAX: all of it). */
static void spend_marks(wtopic_t *t, connv_t *cv, uint64_t epoch, int64_t offset) {
  if (!cv->marks) return;
  for (uint32_t i = 0; i < cv->s.n && t->nmarks; i++)
    if (cv->marks[i].off && cv->marks[i].epoch == epoch && cv->marks[i].off <= offset) {
      cv->marks[i].off = 0;
      t->nmarks--;
    }
}

/* A live socket that could not take message m goes back to a replay from the
 * offset before it: it gets the rest from history as its queue drains. */
static void fall_behind(ews_hub_t *w, wtopic_t *t, ews_conn_t *c, const ews_ps_msg_t *m,
                        size_t need) {
  tsub_t *e = tsub_of(c, t);
  psw_t *ps = psw(w);
  replay_t *j = e && ps ? job_new(c, t, e->raw) : NULL;
  if (!j) {
    EWS_ERROR("pubsub: out of memory: conn %llu misses %.*s#%lld", (unsigned long long)ews_conn_id(c),
              (int)t->n.len, t->name, (long long)m->offset);
    return;
  }
  live_remove(c, e);
  e->job = j;
  j->catchup = j->started = 1;
  j->epoch = m->epoch;
  j->cursor = m->offset - 1;
  j->from_epoch = e->from_epoch;
  j->from = e->from;
  j->blocked = 1;
  j->need = need;
  list_append(ps, j);
}

/* Where the live subscriber at index i of cv stands in `epoch`: it has had (or was
 * told of a gap for) every message up to the returned offset, at least `base`. */
static int64_t live_position(wtopic_t *t, const connv_t *cv, uint32_t i, uint64_t epoch,
                             int64_t base) {
  int64_t p = base;
  const tsub_t *e = tsub_of(cv->s.v[i], t);
  if (e && (e->from_epoch == epoch || !e->from_epoch) && e->from > p) p = e->from;
  if (cv->marks && cv->marks[i].off && cv->marks[i].epoch == epoch && cv->marks[i].off > p)
    p = cv->marks[i].off;
  return p;
}

/* A live socket that stands at `cursor` of `epoch` while the worker is past it goes
 * back to a replay from there (history has every message the sequencer posted). 0,
 * or EWS_ENOMEM (logged; it stays live). */
static int rewind_to(ews_hub_t *w, wtopic_t *t, ews_conn_t *c, uint64_t epoch,
                     int64_t cursor) {
  tsub_t *e = tsub_of(c, t);
  psw_t *ps = psw(w);
  replay_t *j = e && ps ? job_new(c, t, e->raw) : NULL;
  if (!j) {
    EWS_ERROR("pubsub: out of memory: conn %llu misses %.*s after #%lld",
              (unsigned long long)ews_conn_id(c), (int)t->n.len, t->name, (long long)cursor);
    return EWS_ENOMEM;
  }
  live_remove(c, e);
  e->job = j;
  j->catchup = j->started = 1;
  j->epoch = epoch;
  j->cursor = cursor;
  j->from_epoch = e->from_epoch;
  j->from = e->from;
  list_append(ps, j);
  idle_set(ps, 1);
  return 0;
}

/* Messages posted to this worker were lost before offset `upto` + 1 of `epoch` (its
 * inbox was full, or the sequencer could not build them): the live subscribers that
 * stand below `upto` catch up from history, so none of them has a silent hole. */
static void catch_up(ews_hub_t *w, wtopic_t *t, connv_t *cv, uint64_t epoch, int64_t upto,
                     int64_t base) {
  for (uint32_t i = 0; i < cv->s.n;) {
    ews_conn_t *c = cv->s.v[i];
    if (ews_conn_is_open(c) && live_position(t, cv, i, epoch, base) < upto &&
        rewind_to(w, t, c, epoch, live_position(t, cv, i, epoch, base)) == 0)
      continue; /* c left the array: slot i holds another subscriber now */
    i++;
  }
}

/* Checks a topic against the sequencer after messages to this worker were lost:
 * those who stand below its last offset catch up. */
static void resync_topic(ews_hnode_t *n, void *ud) {
  ews_hub_t *w = ud;
  wtopic_t *t = (wtopic_t *)n;
  ews_ps_view_t v;
  if ((!t->env.s.n && !t->raw.s.n && !t->lua) || w->engine->pubsub->view(w, t->name, t->n.len, &v) != 0) return;
  if (!v.epoch) return;
  int64_t base = t->epoch == v.epoch ? t->seen : 0;
  if (v.last <= base) return;
  catch_up(w, t, &t->env, v.epoch, v.last, base);
  catch_up(w, t, &t->raw, v.epoch, v.last, base);
  if (t->lua && base) /* (a topic new here starts from now) */
    EWS_ERROR("pubsub: %.*s: this worker's Lua subscribers missed messages after #%lld"
              " (the worker's inbox was full)", (int)t->n.len, t->name, (long long)base);
}

void ews_pubsub_resync_topic(ews_hub_t *w, const char *topic, size_t tl) {
  wtopic_t *t = wtopic_get(w, topic, tl, 0);
  if (t) resync_topic(&t->n, w);
}

void ews_pubsub_resync(ews_hub_t *w) {
  psw_t *ps = w->pubsub;
  int any = 0;
  for (replay_t *j = ps ? ps->head : NULL; j; j = j->next)
    if (j->waiting) {
      j->waiting = j->blocked = 0;
      any = 1;
    }
  if (any) idle_set(ps, 1);
  ews_ht_walk(&w->topics, 0, SIZE_MAX, resync_topic, w);
}

/* Runs a sequenced message on this worker (the kind's run). */
static void deliver(ews_hub_t *w, ews_ps_msg_t *m) {
  wtopic_t *t = wtopic_get(w, m->topic, m->len, 0);
  if (!t) return;
  if (t->epoch != m->epoch) {
    /* A new epoch: no message of the previous one comes after this, so its marks
     * are spent. (Marks of this one, set while the inbox still held the old
     * epoch, stay.) */
    if (t->nmarks && t->epoch) {
      spend_marks(t, &t->env, t->epoch, INT64_MAX);
      spend_marks(t, &t->raw, t->epoch, INT64_MAX);
    }
    t->epoch = m->epoch;
    t->seen = 0;
  }
  if (m->offset > t->seen + 1 && (t->env.s.n || t->raw.s.n)) {
    /* Offsets before this one that this worker never got (or, before its first
     * delivery here, that a subscriber's position does not cover): catch up. */
    catch_up(w, t, &t->env, m->epoch, m->offset - 1, t->seen);
    catch_up(w, t, &t->raw, m->epoch, m->offset - 1, t->seen);
    if (t->lua && t->seen)
      EWS_ERROR("pubsub: %.*s: this worker's Lua subscribers missed #%lld..#%lld", (int)t->n.len,
                t->name, (long long)t->seen + 1, (long long)m->offset - 1);
  }
  if (m->offset > t->seen) t->seen = m->offset;
  ews_conn_t **behind = NULL;
  uint32_t nbehind = 0, nenv = 0;
  send_to(w, t, &t->env, m->env, m->env_hl, m, &behind, &nbehind);
  nenv = nbehind;
  send_to(w, t, &t->raw, m->raw, m->raw_hl, m, &behind, &nbehind);
  if (t->nmarks) {
    /* The inbox brings offsets in order: marks at or below this one are spent. */
    spend_marks(t, &t->env, m->epoch, m->offset);
    spend_marks(t, &t->raw, m->epoch, m->offset);
  }
  for (uint32_t i = 0; i < nbehind; i++)
    fall_behind(w, t, behind[i], m, wire_bound(i < nenv ? m->env->len : m->raw->len));
  free(behind);
  if (t->lua) run_local(w, m);
}

/* ---- the bus's pub/sub messages --------------------------------------------------- */

static void msg_run(void *ud, ews_bus_msg_t *m) { deliver(ud, (ews_ps_msg_t *)m); }

static void msg_free(ews_bus_msg_t *m) {
  ews_ps_msg_t *pm = (ews_ps_msg_t *)m;
  ews_buf_unref(pm->env);
  ews_buf_unref(pm->raw);
  free(pm);
}

/* A message to this worker was refused (its inbox was full): resync. */
static void msg_refused(void *ud) { ews_pubsub_resync(ud); }

const ews_bus_kind_t ews_ps_msg_kind = {"pub/sub", msg_run, msg_free, msg_refused};

int ews_ps_post(ews_hub_t *to, const char *topic, size_t tl, ews_buf_t *env, size_t env_hl,
                ews_buf_t *raw, size_t raw_hl, uint64_t epoch, int64_t offset, int64_t time,
                int json) {
  ews_ps_msg_t *m = malloc(sizeof *m + tl);
  if (!m) return EWS_ENOMEM;
  m->base.kind = &ews_ps_msg_kind;
  m->env = env;
  m->env_hl = env_hl;
  m->raw = raw;
  m->raw_hl = raw_hl;
  m->epoch = epoch;
  m->offset = offset;
  m->time = time;
  m->json = json;
  m->len = tl;
  memcpy(m->topic, topic, tl);
  ews_buf_ref(env);
  ews_buf_ref(raw);
  return ews_bus_post(&to->inbox, &m->base);
}

/* ---- subscribe, unsubscribe ------------------------------------------------------- */

/* Ends a live or replaying subscription entry e of c. */
static void end_sub(ews_hub_t *w, ews_conn_t *c, tsub_t *e, int status) {
  wtopic_t *t = e->t;
  if (e->job) {
    job_cancel(w, e, status);
  } else {
    live_remove(c, e);
    tsub_del(c, e);
  }
  wtopic_release_if_empty(w, t);
}

int ews_pubsub_unsubscribe(ews_hub_t *w, ews_conn_t *c, const char *topic, size_t tl) {
  wtopic_t *t = wtopic_get(w, topic, tl, 0);
  tsub_t *e = t ? tsub_of(c, t) : NULL;
  if (!e) return EWS_EINVAL;
  end_sub(w, c, e, EWS_ESTOPPED);
  return 0;
}

/* The connection closed: every subscription ends (a replay's waiter hears
 * EWS_ECLOSED). Its hook is already off the connection's list; end_sub finds the
 * entries through ct itself. */
static void conn_closed(ews_conn_t *c, ews_conn_hook_t *h) {
  conn_topics_t *ct = (conn_topics_t *)h;
  (void)ews_conn_hook_add(c, &ct->hook); /* tsub_of / tsub_del look it up while it ends
                                            (cannot fail: the list was on the connection) */
  while (ct->n) end_sub(ct->w, c, &ct->v[ct->n - 1], EWS_ECLOSED);
  ews_conn_hook_remove(c, &ct->hook);
  free(ct->v);
  free(ct);
}

/* A subscription without replay: live from the topic's last offset. */
static int subscribe_live(ews_hub_t *w, ews_conn_t *c, wtopic_t *t, int raw,
                          ews_pubsub_sub_result_t *res) {
  ews_ps_view_t v;
  int r = w->engine->pubsub->view(w, t->name, t->n.len, &v);
  tsub_t *e = r == 0 ? tsub_add(w, c, t, raw) : NULL;
  if (r == 0 && !e) r = EWS_ENOMEM;
  if (r == 0 && (r = live_add(c, e, v.epoch, v.last)) < 0) tsub_del(c, e);
  if (r < 0) return r;
  e->from_epoch = v.epoch;
  e->from = v.last;
  res->epoch = v.epoch;
  res->offset = v.last;
  return 0;
}

/* A socket that is subscribed already. 0 (answered) or 1 (restart it). */
static int subscribed_again(ews_hub_t *w, tsub_t *e, const ews_pubsub_sub_opts_t *o,
                            ews_pubsub_sub_result_t *res) {
  ews_ps_view_t v;
  int r = w->engine->pubsub->view(w, e->t->name, e->t->n.len, &v);
  if (r < 0) return r;
  res->epoch = v.epoch;
  res->offset = v.last;
  res->already = 1;
  if (!o->recover) return 0;
  /* What the subscription has covered: from `from` of from_epoch on; once the
   * worker delivered a newer epoch (a reset), all of that one. */
  uint64_t ep = e->from_epoch;
  int64_t from = e->from;
  if (e->t->epoch && ep && e->t->epoch != ep) ep = e->t->epoch, from = 0;
  if (!ep) ep = v.epoch;
  int covered = ep == v.epoch && (!o->has_epoch || o->epoch == ep || !v.epoch) &&
                o->since_offset >= from && o->since_offset <= v.last;
  if (!covered) return 1;
  res->recovered = 1;
  return 0;
}

int ews_pubsub_subscribe(ews_hub_t *w, ews_conn_t *c, const char *topic, size_t tl,
                         const ews_pubsub_sub_opts_t *o, ews_pubsub_sub_fn done, void *ud,
                         ews_pubsub_sub_result_t *res) {
  memset(res, 0, sizeof *res);
  if (!ews_ps_valid_topic(topic, tl)) return EWS_EINVAL;
  if (!ews_conn_is_open(c)) return EWS_ECLOSED;
  if (w->engine->pubsub->persistent() == 1 && !w->store) return EWS_ENOSTORE;
  wtopic_t *t = wtopic_get(w, topic, tl, 1);
  if (!t) return EWS_ENOMEM;
  tsub_t *e = tsub_of(c, t);
  if (e) {
    if (e->job) return EWS_EAGAIN;
    int r = subscribed_again(w, e, o, res);
    if (r <= 0) return r;
    /* Restart: a new subscription from since_offset. */
    live_remove(c, e);
    tsub_del(c, e);
    memset(res, 0, sizeof *res);
  }
  if (!o->recover) {
    int r = subscribe_live(w, c, t, o->raw, res);
    wtopic_release_if_empty(w, t);
    return r;
  }
  psw_t *ps = psw(w);
  replay_t *j = ps ? job_new(c, t, o->raw) : NULL;
  if (j && !(e = tsub_add(w, c, t, o->raw))) {
    job_free(w, j);
    j = NULL;
  }
  if (!j) {
    wtopic_release_if_empty(w, t);
    return EWS_ENOMEM;
  }
  e->job = j;
  j->cursor = j->from = o->since_offset;
  j->epoch = j->from_epoch = o->has_epoch ? o->epoch : 0;
  j->res.recovered = 1;
  if (step(w, ps, j) == STEP_DONE) {
    int status = j->c ? 0 : j->status;
    *res = j->res;
    job_free(w, j);
    return status;
  }
  j->done = done;
  j->ud = ud;
  *res = j->res;
  list_append(ps, j);
  if (!j->blocked) idle_set(ps, 1);
  return 1;
}
