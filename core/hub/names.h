/* names.h — an intrusive hash table keyed by name, for the hub's per-name records
 * (pub/sub topics on a worker and in the process). A record embeds ews_named_t as
 * its first member and owns the name bytes; the table only links records. Grows at
 * a load factor of 1.5; never shrinks (empty records are removed by their owner). */
#ifndef EWS_NAMES_H
#define EWS_NAMES_H

#include <stddef.h>
#include <stdint.h>

typedef struct ews_named {
  struct ews_named *next;
  uint32_t hash;
  uint32_t len;
  const char *name;
} ews_named_t;

typedef struct {
  ews_named_t **buckets;
  size_t nbuckets, count;
} ews_names_t;

/* The record named name[0..len), or NULL. */
ews_named_t *ews_names_find(const ews_names_t *t, const char *name, size_t len);
/* Links r (its hash, len and name set by ews_named_init). 0 or EWS_ENOMEM. */
int ews_names_insert(ews_names_t *t, ews_named_t *r);
void ews_names_remove(ews_names_t *t, ews_named_t *r);
void ews_named_init(ews_named_t *r, const char *name, size_t len);
/* Calls fn on every record (fn may free it) and frees the buckets. */
void ews_names_clear(ews_names_t *t, void (*fn)(ews_named_t *r));

#endif
