/* buckets.c — the shared token-bucket table (see buckets.h), one hub hash table
 * (hub/htable.h) under one mutex.
 *
 * Full buckets are dropped by a sweep that visits SWEEP_BUCKETS buckets every
 * SWEEP_EVERY takes, wrapping around. The sweep must outpace creation: if each take
 * made a new key, a pass over nb buckets takes nb * SWEEP_EVERY / SWEEP_BUCKETS =
 * nb / 4 takes, so at most a quarter of the table is keys that are not yet swept;
 * the rest are keys still refilling. With a ratio of 1 or less the table could keep
 * growing faster than the sweep comes round. */
#include "hub/buckets.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_EVERY 64u
#define SWEEP_BUCKETS 256u

typedef struct bucket {
  ews_hnode_t n; /* first; key: the limit's key */
  double tokens, last, rate, burst;
  char key[];
} bucket_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static ews_htable_t table;
static unsigned takes;
static size_t sweep_at;

static double refill(const bucket_t *b, double now) {
  double t = b->tokens + (now > b->last ? now - b->last : 0) * b->rate;
  return t > b->burst ? b->burst : t;
}

static void drop_if_full(ews_hnode_t *n, void *ud) {
  bucket_t *b = (bucket_t *)n;
  if (refill(b, *(const double *)ud) >= b->burst) {
    ews_ht_remove(&table, n);
    free(b);
  }
}

int ews_bucket_take(const char *key, size_t len, double rate, double burst, double n, double now,
                    double *retry_after) {
  uint32_t h = ews_hash(key, len);
  int ok;
  pthread_mutex_lock(&lock);
  if (++takes % SWEEP_EVERY == 0) /* a full bucket is the same as none */
    sweep_at = ews_ht_walk(&table, sweep_at, SWEEP_BUCKETS, drop_if_full, &now);
  bucket_t *b = (bucket_t *)ews_ht_find(&table, key, len, h);
  if (!b && (b = malloc(sizeof *b + len))) {
    memcpy(b->key, key, len);
    b->n = (ews_hnode_t){NULL, b->key, h, (uint32_t)len};
    b->tokens = burst;
    b->last = now;
    if (ews_ht_insert(&table, &b->n) != 0) {
      free(b);
      b = NULL;
    }
  }
  if (!b) { /* out of memory: fail open rather than block everyone */
    pthread_mutex_unlock(&lock);
    return 1;
  }
  b->rate = rate;
  b->burst = burst;
  b->tokens = refill(b, now);
  b->last = now;
  if (b->tokens >= n) {
    b->tokens -= n;
    ok = 1;
  } else {
    ok = 0;
    if (retry_after) *retry_after = rate > 0 ? (n - b->tokens) / rate : -1;
  }
  pthread_mutex_unlock(&lock);
  return ok;
}

size_t ews_buckets_count(void) {
  pthread_mutex_lock(&lock);
  size_t n = table.n;
  pthread_mutex_unlock(&lock);
  return n;
}

void ews_buckets_stats(ews_ht_stats_t *out) {
  pthread_mutex_lock(&lock);
  ews_ht_stats(&table, out);
  pthread_mutex_unlock(&lock);
}
