/* counters.c — the process-wide counter table (see counters.h), one hub hash table
 * (hub/htable.h) under one mutex. */
#include "hub/counters.h"

#include <pthread.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

struct ews_counter {
  ews_hnode_t n;    /* first; key: the counter's name */
  uint32_t count;   /* atomic */
  uint32_t holders; /* under table_lock */
  char key[];
};

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static ews_htable_t table;

ews_counter_t *ews_counter_get(const char *key, size_t len) {
  uint32_t h = ews_hash(key, len);
  pthread_mutex_lock(&table_lock);
  ews_counter_t *c = (ews_counter_t *)ews_ht_find(&table, key, len, h);
  if (!c && (c = calloc(1, sizeof *c + len))) {
    memcpy(c->key, key, len);
    c->n = (ews_hnode_t){NULL, c->key, h, (uint32_t)len};
    if (ews_ht_insert(&table, &c->n) != 0) {
      free(c);
      c = NULL;
    }
  }
  if (c) c->holders++;
  pthread_mutex_unlock(&table_lock);
  return c;
}

void ews_counter_put(ews_counter_t *c) {
  if (!c) return;
  pthread_mutex_lock(&table_lock);
  if (--c->holders == 0) {
    ews_ht_remove(&table, &c->n);
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
  ews_counter_t *c = (ews_counter_t *)ews_ht_find(&table, key, len, h);
  if (c) v = ews_counter_value(c);
  pthread_mutex_unlock(&table_lock);
  return v;
}

typedef struct {
  const char *prefix;
  size_t pl;
  void (*fn)(const char *key, size_t len, uint32_t value, void *ud);
  void *ud;
} each_t;

static void each_one(ews_hnode_t *n, void *ud) {
  each_t *e = ud;
  ews_counter_t *c = (ews_counter_t *)n;
  if (n->len >= e->pl && !memcmp(c->key, e->prefix, e->pl))
    e->fn(c->key, n->len, ews_counter_value(c), e->ud);
}

void ews_counters_each(const char *prefix, size_t pl,
                       void (*fn)(const char *key, size_t len, uint32_t value, void *ud),
                       void *ud) {
  each_t e = {prefix, pl, fn, ud};
  pthread_mutex_lock(&table_lock);
  ews_ht_walk(&table, 0, SIZE_MAX, each_one, &e);
  pthread_mutex_unlock(&table_lock);
}

void ews_counters_stats(ews_ht_stats_t *out) {
  pthread_mutex_lock(&table_lock);
  ews_ht_stats(&table, out);
  pthread_mutex_unlock(&table_lock);
}

const ews_limit_ops_t ews_counter_limit_ops = {ews_counter_get, ews_counter_put, ews_counter_inc,
                                               ews_counter_dec};
