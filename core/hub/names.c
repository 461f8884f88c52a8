/* names.c — the hub's intrusive name table (see names.h). */
#include "hub/names.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub/hash.h"

void ews_named_init(ews_named_t *r, const char *name, size_t len) {
  r->next = NULL;
  r->hash = ews_hash(name, len);
  r->len = (uint32_t)len;
  r->name = name;
}

static ews_named_t **slot(const ews_names_t *t, const char *name, size_t len, uint32_t h) {
  ews_named_t **pp = &t->buckets[h % t->nbuckets];
  while (*pp && !((*pp)->hash == h && (*pp)->len == len && !memcmp((*pp)->name, name, len)))
    pp = &(*pp)->next;
  return pp;
}

ews_named_t *ews_names_find(const ews_names_t *t, const char *name, size_t len) {
  if (!t->nbuckets) return NULL;
  return *slot(t, name, len, ews_hash(name, len));
}

static int grow(ews_names_t *t) {
  size_t nb = t->nbuckets ? t->nbuckets * 2 : 64;
  ews_named_t **b = calloc(nb, sizeof *b);
  if (!b) return EWS_ENOMEM;
  for (size_t i = 0; i < t->nbuckets; i++) {
    for (ews_named_t *r = t->buckets[i], *next; r; r = next) {
      next = r->next;
      r->next = b[r->hash % nb];
      b[r->hash % nb] = r;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = nb;
  return 0;
}

int ews_names_insert(ews_names_t *t, ews_named_t *r) {
  if ((t->count + 1) * 2 > t->nbuckets * 3 && grow(t) != 0) return EWS_ENOMEM;
  ews_named_t **b = &t->buckets[r->hash % t->nbuckets];
  r->next = *b;
  *b = r;
  t->count++;
  return 0;
}

void ews_names_remove(ews_names_t *t, ews_named_t *r) {
  if (!t->nbuckets) return;
  ews_named_t **pp = slot(t, r->name, r->len, r->hash);
  if (*pp != r) return;
  *pp = r->next;
  r->next = NULL;
  t->count--;
}

void ews_names_clear(ews_names_t *t, void (*fn)(ews_named_t *r)) {
  for (size_t i = 0; i < t->nbuckets; i++) {
    for (ews_named_t *r = t->buckets[i], *next; r; r = next) {
      next = r->next;
      if (fn) fn(r);
    }
  }
  free(t->buckets);
  memset(t, 0, sizeof *t);
}
