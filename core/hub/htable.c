/* htable.c — the hub's hash table (see htable.h). Chains rather than open
 * addressing because the records are intrusive and move nowhere: a pointer to a
 * record stays valid across growth, which the owners (channels, presence members,
 * counters held by connections) rely on. */
#include "hub/htable.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

#define MIN_BUCKETS 8u

/* Moves every record into a new array of nb buckets. 0 or EWS_ENOMEM (then the
 * table is unchanged). */
static int rehash(ews_htable_t *t, size_t nb) {
  ews_hnode_t **b = calloc(nb, sizeof *b);
  if (!b) return EWS_ENOMEM;
  for (size_t i = 0; i < t->nb; i++) {
    for (ews_hnode_t *x = t->b[i], *next; x; x = next) {
      next = x->next;
      x->next = b[x->hash & (nb - 1)];
      b[x->hash & (nb - 1)] = x;
    }
  }
  free(t->b);
  t->b = b;
  t->nb = nb;
  return 0;
}

/* Halves the buckets while fewer than an eighth are used: a table keeps about as
 * many buckets as the most records it held recently, never many times more. */
static void shrink_to_fit(ews_htable_t *t) {
  size_t nb = t->nb;
  while (nb > MIN_BUCKETS && t->n < nb / 8) nb /= 2;
  if (nb != t->nb) rehash(t, nb); /* out of memory: stay sparse, which is harmless */
}

ews_hnode_t *ews_ht_find(const ews_htable_t *t, const char *key, size_t len, uint32_t hash) {
  if (!t->nb) return NULL;
  for (ews_hnode_t *x = t->b[hash & (t->nb - 1)]; x; x = x->next)
    if (x->hash == hash && x->len == len && memcmp(x->key, key, len) == 0) return x;
  return NULL;
}

int ews_ht_insert(ews_htable_t *t, ews_hnode_t *n) {
  if (t->n >= t->nb && !t->walking) rehash(t, t->nb ? t->nb * 2 : MIN_BUCKETS);
  if (!t->nb) return EWS_ENOMEM;
  ews_hnode_t **b = &t->b[n->hash & (t->nb - 1)];
  n->next = *b;
  *b = n;
  t->n++;
  return 0;
}

int ews_ht_remove(ews_htable_t *t, ews_hnode_t *n) {
  if (!t->nb) return 0;
  ews_hnode_t **pp = &t->b[n->hash & (t->nb - 1)];
  while (*pp && *pp != n) pp = &(*pp)->next;
  if (!*pp) return 0;
  *pp = n->next;
  n->next = NULL;
  t->n--;
  if (!t->walking) shrink_to_fit(t);
  return 1;
}

size_t ews_ht_walk(ews_htable_t *t, size_t from, size_t nbuckets,
                   void (*fn)(ews_hnode_t *n, void *ud), void *ud) {
  if (!t->nb) return 0;
  size_t i = from & (t->nb - 1);
  size_t end = nbuckets >= t->nb - i ? t->nb : i + nbuckets;
  t->walking++;
  for (; i < end; i++) {
    for (ews_hnode_t *x = t->b[i], *next; x; x = next) {
      next = x->next; /* fn may unlink and free x */
      fn(x, ud);
    }
  }
  t->walking--;
  size_t nb = t->nb;
  if (!t->walking) shrink_to_fit(t);
  return i == nb ? 0 : i;
}

void ews_ht_clear(ews_htable_t *t, void (*fn)(ews_hnode_t *n)) {
  for (size_t i = 0; fn && i < t->nb; i++) {
    for (ews_hnode_t *x = t->b[i], *next; x; x = next) {
      next = x->next;
      fn(x);
    }
  }
  free(t->b);
  memset(t, 0, sizeof *t);
}

void ews_ht_stats(const ews_htable_t *t, ews_ht_stats_t *out) {
  size_t longest = 0;
  double sum = 0;
  for (size_t i = 0; i < t->nb; i++) {
    size_t len = 0;
    for (const ews_hnode_t *x = t->b[i]; x; x = x->next) len++;
    if (len > longest) longest = len;
    sum += (double)len * (double)(len + 1) / 2; /* the k-th record costs k visits */
  }
  out->count = t->n;
  out->buckets = t->nb;
  out->longest = longest;
  out->probes = t->n ? sum / (double)t->n : 0;
}
