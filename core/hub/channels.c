/* channels.c — per-worker channel tables and cross-worker publish (see channels.h). */
#include "hub/channels.h"


#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub/engine.h"
#include "hub/hub.h"
#include "hub/subs.h"
#include "net/conn.h"
#include "net/fanout.h"

struct ews_chan {
  ews_named_t n; /* first: linked in the worker's table by name */
  ews_subs_t subs; /* handed to the fan-out as is */
  const ews_chan_engine_t *engine;
  void *count; /* the engine's count of subscribers everywhere (held) */
  char name[];
};

static ews_chan_t *get_chan(ews_hub_t *w, const char *name, size_t len, int create) {
  ews_chan_t *c = (ews_chan_t *)ews_names_find(&w->chans, name, len);
  if (c || !create) return c;
  c = calloc(1, sizeof *c + len);
  if (!c) return NULL;
  c->engine = w->engine->chan;
  c->count = c->engine->hold(name, len);
  memcpy(c->name, name, len);
  ews_named_init(&c->n, c->name, len);
  if (!c->count || ews_names_insert(&w->chans, &c->n) != 0) {
    if (c->count) c->engine->release(c->count);
    free(c);
    return NULL;
  }
  return c;
}

static void free_chan(ews_named_t *r) {
  ews_chan_t *c = (ews_chan_t *)r;
  c->engine->release(c->count);
  ews_subs_free(&c->subs);
  free(c);
}

static void free_chan_if_empty(ews_hub_t *w, ews_chan_t *c) {
  if (c->subs.n) return;
  ews_names_remove(&w->chans, &c->n);
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

/* Takes the subscriber at ch->subs.v[idx] out: the last one moves into its slot and
 * its own entry learns its new index. */
static void remove_at(ews_chan_t *ch, uint32_t idx) {
  ews_conn_t *moved = ews_subs_remove(&ch->subs, idx);
  if (moved) sub_of(moved, ch)->idx = idx;
  ch->engine->add(ch->count, -1);
}

int ews_chan_subscribe(ews_hub_t *w, ews_conn_t *c, const char *name, size_t len) {
  if (!ews_conn_is_open(c)) return EWS_ECLOSED;
  ews_chan_t *ch = get_chan(w, name, len, 1);
  if (!ch) return EWS_ENOMEM;
  if (sub_of(c, ch)) return 0;
  ews_conn_subs_t *s = subs_of(c);
  if (!s) {
    if (!(s = calloc(1, sizeof *s))) goto oom;
    s->hook.closed = conn_closed;
    s->w = w;
    if (ews_conn_hook_add(c, &s->hook) != 0) {
      free(s);
      goto oom;
    }
  }
  if (s->n == s->cap) {
    uint32_t cap = s->cap ? s->cap * 2 : 4;
    ews_chan_sub_t *l = realloc(s->list, cap * sizeof *l);
    if (!l) goto oom;
    s->list = l;
    s->cap = cap;
  }
  if (ews_subs_add(&ch->subs, c) != 0) goto oom;
  s->list[s->n++] = (ews_chan_sub_t){ch, ch->subs.n - 1};
  ch->engine->add(ch->count, 1);
  return 0;
oom:
  free_chan_if_empty(w, ch);
  return EWS_ENOMEM;
}

int ews_chan_unsubscribe(ews_hub_t *w, ews_conn_t *c, const char *name, size_t len) {
  ews_chan_t *ch = get_chan(w, name, len, 0);
  ews_chan_sub_t *e = ch ? sub_of(c, ch) : NULL;
  if (!e) return EWS_EINVAL;
  ews_conn_subs_t *s = subs_of(c);
  uint32_t idx = e->idx;
  *e = s->list[--s->n];
  remove_at(ch, idx);
  free_chan_if_empty(w, ch);
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
    free_chan_if_empty(w, e.ch);
  }
  free(s->list);
  free(s);
}

/* ---- publish ------------------------------------------------------------------ */

void ews_chan_deliver(ews_hub_t *w, const char *name, size_t len, ews_buf_t *frame,
                      size_t header_len, int opcode, uint64_t exclude_id) {
  ews_chan_t *ch = get_chan(w, name, len, 0);
  if (!ch) return;
  ews_fanout_frame(w->net, ch->subs.v, ch->subs.n, opcode, frame->data + header_len,
                   frame->len - header_len, frame, exclude_id);
}

int ews_chan_publish(ews_hub_t *w, const char *name, size_t len, int opcode, const void *p,
                     size_t n, uint64_t exclude_id) {
  size_t hl;
  ews_buf_t *frame = ews_fanout_plain(opcode, p, n, &hl);
  if (!frame) return EWS_ENOMEM;
  /* Other workers (and instances) first, so they work in parallel with our own
   * delivery. */
  w->engine->chan->publish(w, name, len, frame, hl, opcode, exclude_id);
  int sent = 0;
  ews_chan_t *ch = get_chan(w, name, len, 0);
  if (ch) sent = ews_fanout_frame(w->net, ch->subs.v, ch->subs.n, opcode, p, n, frame, exclude_id);
  ews_buf_unref(frame);
  return sent;
}

void ews_chans_free(ews_chans_t *t) { ews_names_clear(t, free_chan); }
