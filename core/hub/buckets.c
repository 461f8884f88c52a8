/* buckets.c — the shared token-bucket table (see buckets.h), one hub hash table
 * (hub/htable.h) under one mutex.
 *
 * Full buckets are dropped by a sweep that visits SWEEP_BUCKETS buckets at a time,
 * wrapping around, when enough sweep work is owed: NEW_KEY_DEBT buckets for each
 * key created, so the sweep outpaces creation (a pass over nb buckets comes round
 * within nb / 4 new keys, so at most about a quarter of the table is keys that
 * are full but not yet swept; with one bucket per new key or less the table
 * could keep growing ahead of the sweep), and TAKE_DEBT per take so that a table
 * no longer growing is still emptied in the end (one bucket per 64 takes). A take
 * of a key that exists costs no sweep work of its own. */
#include "hub/buckets.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Debt in 1/64 buckets. */
#define SWEEP_BUCKETS 256u
#define NEW_KEY_DEBT (4u * 64)
#define TAKE_DEBT 1u

typedef struct bucket {
  ews_hnode_t n; /* first; key: the limit's key */
  double tokens, last, rate, burst;
  char key[];
} bucket_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static ews_htable_t table;
static unsigned debt;
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
  if ((debt += TAKE_DEBT) >= SWEEP_BUCKETS * 64) { /* a full bucket is the same as none */
    debt -= SWEEP_BUCKETS * 64;
    sweep_at = ews_ht_walk(&table, sweep_at, SWEEP_BUCKETS, drop_if_full, &now);
  }
  bucket_t *b = (bucket_t *)ews_ht_find(&table, key, len, h);
  if (!b && (b = malloc(sizeof *b + len))) {
    debt += NEW_KEY_DEBT;
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
