/* htable.h — the hub's one hash table: records keyed by a byte string (channel and
 * topic names, user ids, counter and rate-limit keys, connection ids), every one
 * hashed with the process's keyed hash (hub/hash.h), so clients that choose names
 * cannot choose collisions.
 *
 * Intrusive and chained: a record embeds an ews_hnode_t (usually as its first
 * member) that points at the record's own key bytes; the table owns only its bucket
 * array and never allocates or frees records. A zeroed ews_htable_t is an empty
 * table. The bucket count is a power of two that doubles when the table holds more
 * records than buckets and halves when it holds fewer than an eighth (never below
 * 8), so a lookup visits about 1.5 records whatever the size, and a table that
 * emptied gives its memory back. Not thread-safe: the owner's lock covers it. */
#ifndef EWS_HTABLE_H
#define EWS_HTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "hub/hash.h"

typedef struct ews_hnode {
  struct ews_hnode *next;
  const char *key; /* the record's key bytes: owned by the record, not copied */
  uint32_t hash, len;
} ews_hnode_t;

typedef struct {
  ews_hnode_t **b;
  size_t nb;        /* buckets: 0 or a power of two */
  size_t n;         /* records */
  unsigned walking; /* > 0 inside ews_ht_walk: no resizing */
} ews_htable_t;

/* Sets n's key (not copied: it must live as long as n is linked) and its hash. */
static inline void ews_hnode_init(ews_hnode_t *n, const char *key, size_t len) {
  n->next = NULL;
  n->key = key;
  n->hash = ews_hash(key, len);
  n->len = (uint32_t)len;
}

/* The record keyed key[0..len) whose hash is `hash` (= ews_hash(key, len), for
 * callers that look the same key up in several tables), or NULL. */
ews_hnode_t *ews_ht_find(const ews_htable_t *t, const char *key, size_t len, uint32_t hash);
static inline ews_hnode_t *ews_ht_get(const ews_htable_t *t, const char *key, size_t len) {
  return t->n ? ews_ht_find(t, key, len, ews_hash(key, len)) : NULL;
}

/* Links n (key and hash set). The caller makes sure no record has the same key.
 * 0, or EWS_ENOMEM when the table has no buckets and none can be allocated (a
 * growth that fails only leaves the chains longer until the next insert). */
int ews_ht_insert(ews_htable_t *t, ews_hnode_t *n);
/* Unlinks n. 1 when it was linked here, 0 when not (then nothing changes). */
int ews_ht_remove(ews_htable_t *t, ews_hnode_t *n);

/* Visits the records of up to `nbuckets` buckets starting at bucket `from`, calling
 * fn(node, ud) for each. fn may remove (and free) the node it is given and change
 * other tables, but must not insert into this one nor remove other records from
 * it. Returns the bucket to continue from, 0 after the last bucket: so
 * ews_ht_walk(t, 0, SIZE_MAX, fn, ud) visits everything once. A cursor kept across
 * a resize is only approximate (it is reduced modulo the new bucket count). */
size_t ews_ht_walk(ews_htable_t *t, size_t from, size_t nbuckets,
                   void (*fn)(ews_hnode_t *n, void *ud), void *ud);

/* Calls fn on every record (fn may free it; NULL: none), then frees the buckets and
 * leaves an empty table. */
void ews_ht_clear(ews_htable_t *t, void (*fn)(ews_hnode_t *n));
/* Frees the buckets without visiting the records (their owner frees them). */
static inline void ews_ht_free(ews_htable_t *t) { ews_ht_clear(t, NULL); }

/* The table's shape, the work its lookups cost: for tests and diagnostics
 * (O(buckets)). */
typedef struct {
  size_t count, buckets;
  size_t longest; /* the longest chain: the most records any lookup visits */
  double probes;  /* records a successful lookup visits, on average (1 is ideal) */
} ews_ht_stats_t;
void ews_ht_stats(const ews_htable_t *t, ews_ht_stats_t *out);

#endif
