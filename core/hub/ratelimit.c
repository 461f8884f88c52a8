/* ratelimit.c — the token bucket and the keyed per-thread limiter (see ratelimit.h).
 *
 * The limiter keeps only buckets that are not full, in a dense array of records
 * (slot -> record) indexed by one hub hash table per key kind (key -> record, which
 * knows its slot). Each take also examines the next SWEEP slots of an incremental
 * sweep (a cursor over the dense array) and drops the buckets there that are full
 * by now; removing slot i moves the last record into it, so the sweep looks at i
 * again. A take adds at most one key, so in a steady state one examination per
 * take goes to the removal matching that insertion and a pass over S slots takes
 * about S / (SWEEP - 1) takes; a full bucket waits at most that long. Hence S stays
 * within about A * (SWEEP - 1) / (SWEEP - 2) = 1.5 A, where A is the number of keys
 * whose buckets are not full (keys that took tokens within the last burst / rate
 * seconds, fewer when they took little): memory is O(active keys), however large
 * the keyspace. The dense array shrinks when a quarter or less of it is used, and
 * the hash tables shrink by themselves.
 *
 * Not thread-safe: a limiter belongs to one worker. */
#include "hub/ratelimit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hub/htable.h"

#define EWS_EXPORT __attribute__((visibility("default"), used))

#define SWEEP 4       /* slots examined per take */
#define MIN_SLOTS 16u /* the dense array never shrinks below this */

/* ---- one bucket ---------------------------------------------------------------- */

EWS_EXPORT double ews_tb_refill(double tokens, double last, double now, double rate, double burst) {
  return ews_tb_refill_inline(tokens, last, now, rate, burst);
}

EWS_EXPORT int ews_tb_consume(double tokens, double n, double rate, double burst, double out[2]) {
  return ews_tb_consume_inline(tokens, n, rate, burst, &out[0], &out[1]);
}

EWS_EXPORT int ews_tb_take(ews_tb_t *b, double n, double now, double rate, double burst,
                           double *retry_after) {
  return ews_tb_take_inline(b, n, now, rate, burst, retry_after);
}

/* ---- the keyed limiter ------------------------------------------------------------- */

typedef struct {
  ews_hnode_t n; /* key: the record's own bytes below */
  ews_tb_t b;
  size_t slot;
  unsigned char kind;
  char key[];
} rec_t;

struct ews_limiter {
  double rate, burst;
  rec_t **slots; /* [0, count): the tracked buckets */
  size_t count, cap, cursor;
  ews_htable_t by_key[EWS_LIMITER_KINDS];
};

EWS_EXPORT ews_limiter_t *ews_limiter_new(double rate, double burst) {
  ews_limiter_t *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->rate = rate;
  l->burst = burst;
  return l;
}

EWS_EXPORT void ews_limiter_free(ews_limiter_t *l) {
  if (!l) return;
  for (size_t i = 0; i < l->count; i++) free(l->slots[i]);
  for (int k = 0; k < EWS_LIMITER_KINDS; k++) ews_ht_free(&l->by_key[k]);
  free(l->slots);
  free(l);
}

static rec_t *find(const ews_limiter_t *l, int kind, const char *key, size_t len) {
  if ((unsigned)kind >= EWS_LIMITER_KINDS) return NULL;
  return (rec_t *)ews_ht_get(&l->by_key[kind], key, len);
}

/* Resizes the dense array to cap slots (>= count). 0, or -1 when out of memory
 * (then nothing changed). */
static int resize(ews_limiter_t *l, size_t cap) {
  rec_t **s = realloc(l->slots, cap * sizeof *s);
  if (!s) return -1;
  l->slots = s;
  l->cap = cap;
  return 0;
}

/* Records a bucket for the key, in the last slot. 0, or -1 when out of memory. */
static int add(ews_limiter_t *l, int kind, const char *key, size_t len, double tokens, double now) {
  if ((unsigned)kind >= EWS_LIMITER_KINDS || len > UINT32_MAX) return -1;
  if (l->count == l->cap && resize(l, l->cap ? l->cap * 2 : MIN_SLOTS) != 0) return -1;
  rec_t *r = malloc(sizeof *r + len);
  if (!r) return -1;
  if (len) memcpy(r->key, key, len);
  ews_hnode_init(&r->n, r->key, len);
  r->b.tokens = tokens;
  r->b.last = now;
  r->kind = (unsigned char)kind;
  r->slot = l->count;
  if (ews_ht_insert(&l->by_key[kind], &r->n) != 0) {
    free(r);
    return -1;
  }
  l->slots[l->count++] = r;
  return 0;
}

/* Drops the record of slot i: the last record moves into it. */
static void remove_slot(ews_limiter_t *l, size_t i) {
  rec_t *r = l->slots[i];
  ews_ht_remove(&l->by_key[r->kind], &r->n);
  free(r);
  size_t last = --l->count;
  if (i != last) {
    l->slots[i] = l->slots[last];
    l->slots[i]->slot = i;
  }
  if (l->cap > MIN_SLOTS && l->count <= l->cap / 4) resize(l, l->cap / 2); /* may fail: harmless */
}

/* Examines up to SWEEP slots from the cursor, dropping buckets full at now. */
static void sweep(ews_limiter_t *l, double now) {
  size_t c = l->cursor;
  for (int i = 0; i < SWEEP; i++) {
    if (c >= l->count) {
      c = 0;
      if (l->count == 0) break;
    }
    const ews_tb_t *b = &l->slots[c]->b;
    if (ews_tb_refill_inline(b->tokens, b->last, now, l->rate, l->burst) >= l->burst)
      remove_slot(l, c); /* another record moved into slot c: examine it next */
    else
      c++;
  }
  l->cursor = c;
}

EWS_EXPORT int ews_limiter_take(ews_limiter_t *l, int kind, const char *key, size_t len, double n,
                                double now, double *retry_after) {
  double retry;
  int ok;
  rec_t *r = find(l, kind, key, len);
  if (r) {
    ok = ews_tb_take_inline(&r->b, n, now, l->rate, l->burst, &retry);
  } else {
    double left;
    ok = ews_tb_consume_inline(l->burst, n, l->rate, l->burst, &left, &retry);
    if (left < l->burst) add(l, kind, key, len, left, now); /* out of memory: untracked */
  }
  sweep(l, now);
  if (!ok && retry_after) *retry_after = retry;
  return ok;
}

EWS_EXPORT double ews_limiter_tokens(const ews_limiter_t *l, int kind, const char *key, size_t len,
                                     double now) {
  const rec_t *r = find(l, kind, key, len);
  if (!r) return l->burst;
  return ews_tb_refill_inline(r->b.tokens, r->b.last, now, l->rate, l->burst);
}

EWS_EXPORT void ews_limiter_reset(ews_limiter_t *l, int kind, const char *key, size_t len) {
  rec_t *r = find(l, kind, key, len);
  if (r) remove_slot(l, r->slot);
}

EWS_EXPORT size_t ews_limiter_size(const ews_limiter_t *l) { return l->count; }

EWS_EXPORT size_t ews_limiter_memory(const ews_limiter_t *l) {
  size_t m = sizeof *l + l->cap * sizeof *l->slots;
  for (int k = 0; k < EWS_LIMITER_KINDS; k++) m += l->by_key[k].nb * sizeof(ews_hnode_t *);
  for (size_t i = 0; i < l->count; i++) m += sizeof(rec_t) + l->slots[i]->n.len;
  return m;
}
