/* counters.c — the process-wide counter table (see counters.h). */
#include "hub/counters.h"

#include "hub/hash.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 1024u

struct ews_counter {
  struct ews_counter *next;
  uint32_t count;   /* atomic */
  uint32_t holders; /* under table_lock */
  uint32_t hash;
  size_t len;
  char key[];
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static ews_counter_t *table[BUCKETS];

static ews_counter_t *find(uint32_t h, const char *key, size_t len) {
  for (ews_counter_t *c = table[h % BUCKETS]; c; c = c->next)
    if (c->hash == h && c->len == len && memcmp(c->key, key, len) == 0) return c;
  return NULL;
}

ews_counter_t *ews_counter_get(const char *key, size_t len) {
  uint32_t h = ews_hash(key, len);
  pthread_mutex_lock(&table_lock);
  ews_counter_t *c = find(h, key, len);
  if (!c && (c = calloc(1, sizeof *c + len))) {
    c->hash = h;
    c->len = len;
    memcpy(c->key, key, len);
    c->next = table[h % BUCKETS];
    table[h % BUCKETS] = c;
  }
  if (c) c->holders++;
  pthread_mutex_unlock(&table_lock);
  return c;
}

void ews_counter_put(ews_counter_t *c) {
  if (!c) return;
  pthread_mutex_lock(&table_lock);
  if (--c->holders == 0) {
    ews_counter_t **pp = &table[c->hash % BUCKETS];
    while (*pp != c) pp = &(*pp)->next;
    *pp = c->next;
    free(c);
  }
  pthread_mutex_unlock(&table_lock);
}

int ews_counter_inc(ews_counter_t *c, uint32_t limit) {
  uint32_t v = __atomic_load_n(&c->count, __ATOMIC_RELAXED);
  do {
    if (limit && v >= limit) return 0;
  } while (!__atomic_compare_exchange_n(&c->count, &v, v + 1, 1, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED));
  return 1;
}

void ews_counter_dec(ews_counter_t *c) { __atomic_sub_fetch(&c->count, 1, __ATOMIC_ACQ_REL); }

uint32_t ews_counter_value(const ews_counter_t *c) {
  return __atomic_load_n(&c->count, __ATOMIC_ACQUIRE);
}

uint32_t ews_counter_peek(const char *key, size_t len) {
  uint32_t h = ews_hash(key, len), v = 0;
  pthread_mutex_lock(&table_lock);
  ews_counter_t *c = find(h, key, len);
  if (c) v = ews_counter_value(c);
  pthread_mutex_unlock(&table_lock);
  return v;
}
