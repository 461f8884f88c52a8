/* names.h — the hub's per-name records (pub/sub topics on a worker and in the
 * process, channels on a worker): the hub's hash table (hub/htable.h) under the
 * names its users know. A record embeds ews_named_t as its first member and owns
 * the name bytes; the table only links records. Grows and shrinks with its record
 * count (empty records are removed by their owner). A zeroed ews_names_t is empty. */
#ifndef EWS_NAMES_H
#define EWS_NAMES_H

#include <stddef.h>
#include <stdint.h>

#include "hub/htable.h"

typedef ews_hnode_t ews_named_t;
typedef ews_htable_t ews_names_t;

/* The record named name[0..len), or NULL. */
static inline ews_named_t *ews_names_find(const ews_names_t *t, const char *name, size_t len) {
  return ews_ht_get(t, name, len);
}
/* Links r (its hash, len and name set by ews_named_init). 0 or EWS_ENOMEM. */
static inline int ews_names_insert(ews_names_t *t, ews_named_t *r) { return ews_ht_insert(t, r); }
static inline void ews_names_remove(ews_names_t *t, ews_named_t *r) { ews_ht_remove(t, r); }
static inline void ews_named_init(ews_named_t *r, const char *name, size_t len) {
  ews_hnode_init(r, name, len);
}
/* Calls fn on every record (fn may free it) and frees the buckets. */
static inline void ews_names_clear(ews_names_t *t, void (*fn)(ews_named_t *r)) {
  ews_ht_clear(t, fn);
}

#endif
