/* channels.c — per-worker channel tables and cross-worker publish (see channels.h). */
#include "hub/channels.h"


#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "hub/bus.h"
#include "hub/counters.h"
#include "hub/hub.h"
#include "net/conn.h"
#include "net/fanout.h"

struct ews_chan {
  ews_named_t n; /* first: linked in the worker's table by name */
  ews_conn_t **subs;
  uint32_t nsubs, cap;
  ews_counter_t *count; /* subscribers on all workers: "chan:" + name */
  char name[];
};

static ews_chan_t *get_chan(ews_chans_t *t, const char *name, size_t len, int create) {
  ews_chan_t *c = (ews_chan_t *)ews_names_find(t, name, len);
  if (c || !create) return c;
  c = calloc(1, sizeof *c + len);
  if (!c) return NULL;
  char key[520];
  int kl = snprintf(key, sizeof key, "chan:%.*s", (int)(len > 500 ? 500 : len), name);
  c->count = ews_counter_get(key, (size_t)kl);
  memcpy(c->name, name, len);
  ews_named_init(&c->n, c->name, len);
  if (!c->count || ews_names_insert(t, &c->n) != 0) {
    if (c->count) ews_counter_put(c->count);
    free(c);
    return NULL;
  }
  return c;
}

static void free_chan(ews_named_t *r) {
  ews_chan_t *c = (ews_chan_t *)r;
  ews_counter_put(c->count);
  free(c->subs);
  free(c);
}

static void free_chan_if_empty(ews_chans_t *t, ews_chan_t *c) {
  if (c->nsubs) return;
  ews_names_remove(t, &c->n);
  free_chan(&c->n);
}

static void conn_closed(ews_conn_t *c, ews_conn_hook_t *h);

/* A connection's subscriptions, or NULL. */
static ews_conn_subs_t *subs_of(const ews_conn_t *c) {
  return (ews_conn_subs_t *)ews_conn_hook_find(c, conn_closed);
}

/* The entry of channel ch in connection c's list. */
static ews_chan_sub_t *sub_of(ews_conn_t *c, ews_chan_t *ch) {
  ews_conn_subs_t *s = subs_of(c);
  if (s)
    for (uint32_t i = 0; i < s->n; i++)
      if (s->list[i].ch == ch) return &s->list[i];
  return NULL;
}

/* Takes the subscriber at ch->subs[idx] out: the last one moves into its slot and
 * its own entry learns its new index. */
static void remove_at(ews_chan_t *ch, uint32_t idx) {
  ews_conn_t *last = ch->subs[--ch->nsubs];
  if (idx != ch->nsubs) {
    ch->subs[idx] = last;
    sub_of(last, ch)->idx = idx;
  }
  ews_counter_dec(ch->count);
}

int ews_chan_subscribe(ews_hub_t *w, ews_conn_t *c, const char *name, size_t len) {
  if (!ews_conn_is_open(c)) return EWS_ECLOSED;
  ews_chan_t *ch = get_chan(&w->chans, name, len, 1);
  if (!ch) return EWS_ENOMEM;
  if (sub_of(c, ch)) return 0;
  ews_conn_subs_t *s = subs_of(c);
  if (!s) {
    if (!(s = calloc(1, sizeof *s))) goto oom;
    s->hook.closed = conn_closed;
    s->w = w;
    ews_conn_hook_add(c, &s->hook);
  }
  if (s->n == s->cap) {
    uint32_t cap = s->cap ? s->cap * 2 : 4;
    ews_chan_sub_t *l = realloc(s->list, cap * sizeof *l);
    if (!l) goto oom;
    s->list = l;
    s->cap = cap;
  }
  if (ch->nsubs == ch->cap) {
    uint32_t cap = ch->cap ? ch->cap * 2 : 4;
    ews_conn_t **l = realloc(ch->subs, cap * sizeof *l);
    if (!l) goto oom;
    ch->subs = l;
    ch->cap = cap;
  }
  s->list[s->n++] = (ews_chan_sub_t){ch, ch->nsubs};
  ch->subs[ch->nsubs++] = c;
  ews_counter_inc(ch->count, 0);
  return 0;
oom:
  free_chan_if_empty(&w->chans, ch);
  return EWS_ENOMEM;
}

int ews_chan_unsubscribe(ews_hub_t *w, ews_conn_t *c, const char *name, size_t len) {
  ews_chan_t *ch = get_chan(&w->chans, name, len, 0);
  ews_chan_sub_t *e = ch ? sub_of(c, ch) : NULL;
  if (!e) return EWS_EINVAL;
  ews_conn_subs_t *s = subs_of(c);
  uint32_t idx = e->idx;
  *e = s->list[--s->n];
  remove_at(ch, idx);
  free_chan_if_empty(&w->chans, ch);
  return 0;
}

/* The connection closed: every subscription ends. */
static void conn_closed(ews_conn_t *c, ews_conn_hook_t *h) {
  (void)c;
  ews_conn_subs_t *s = (ews_conn_subs_t *)h;
  ews_hub_t *w = s->w;
  /* Last first: remove_at may look up another connection's entries, never ours
   * (a connection is in a channel once), so our list can shrink as we go. */
  while (s->n) {
    ews_chan_sub_t e = s->list[--s->n];
    remove_at(e.ch, e.idx);
    free_chan_if_empty(&w->chans, e.ch);
  }
  free(s->list);
  free(s);
}

/* ---- publish ------------------------------------------------------------------ */

/* A publish on its way to another worker: the frame built once (referenced). */
typedef struct {
  ews_bus_msg_t base; /* first */
  ews_buf_t *frame;
  size_t header_len;
  int opcode;
  uint64_t exclude_id;
  size_t len;
  char name[];
} chan_msg_t;

/* Queues a frame published on another worker to this worker's subscribers. */
static void deliver(ews_hub_t *w, const char *name, size_t len, ews_buf_t *frame,
                    size_t header_len, int opcode, uint64_t exclude_id) {
  ews_chan_t *ch = get_chan(&w->chans, name, len, 0);
  if (!ch) return;
  ews_fanout_frame(w->net, ch->subs, ch->nsubs, opcode, frame->data + header_len,
                   frame->len - header_len, frame, exclude_id);
}

static void msg_run(void *ud, ews_bus_msg_t *m) {
  chan_msg_t *cm = (chan_msg_t *)m;
  deliver(ud, cm->name, cm->len, cm->frame, cm->header_len, cm->opcode, cm->exclude_id);
}

static void msg_free(ews_bus_msg_t *m) {
  ews_buf_unref(((chan_msg_t *)m)->frame);
  free(m);
}

static const ews_bus_kind_t chan_kind = {"channel", msg_run, msg_free, NULL};

static int post(ews_hub_t *to, const char *name, size_t len, ews_buf_t *frame, size_t hl,
                int opcode, uint64_t exclude_id) {
  chan_msg_t *m = malloc(sizeof *m + len);
  if (!m) return EWS_ENOMEM;
  m->base.kind = &chan_kind;
  m->frame = frame;
  ews_buf_ref(frame);
  m->header_len = hl;
  m->opcode = opcode;
  m->exclude_id = exclude_id;
  m->len = len;
  memcpy(m->name, name, len);
  return ews_bus_post(&to->inbox, &m->base);
}

int ews_chan_publish(ews_hub_t *w, const char *name, size_t len, int opcode, const void *p,
                     size_t n, uint64_t exclude_id) {
  size_t hl;
  ews_buf_t *frame = ews_fanout_plain(opcode, p, n, &hl);
  if (!frame) return EWS_ENOMEM;
  /* Other workers first, so they work in parallel with our own delivery. A worker
   * that is gone (shutdown) has no subscribers left; one whose inbox is full has the
   * drop counted (bus.c); out of memory is logged here. */
  for (int i = 0; i < w->nworkers; i++) {
    if (i == w->id) continue;
    int r = post(w->peers[i], name, len, frame, hl, opcode, exclude_id);
    if (r == EWS_ENOMEM)
      EWS_ERROR("channel %.*s: out of memory posting to worker %d", (int)(len > 200 ? 200 : len),
                name, i);
  }
  int sent = 0;
  ews_chan_t *ch = get_chan(&w->chans, name, len, 0);
  if (ch) sent = ews_fanout_frame(w->net, ch->subs, ch->nsubs, opcode, p, n, frame, exclude_id);
  ews_buf_unref(frame);
  return sent;
}

uint32_t ews_chan_count(const char *name, size_t len) {
  char key[520];
  int kl = snprintf(key, sizeof key, "chan:%.*s", (int)(len > 500 ? 500 : len), name);
  return ews_counter_peek(key, (size_t)kl);
}

void ews_chans_free(ews_chans_t *t) { ews_names_clear(t, free_chan); }
