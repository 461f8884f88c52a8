/* buckets.c — the shared token-bucket table (see buckets.h), one hub hash table
 * (hub/htable.h) under one mutex; each bucket is the token bucket of
 * hub/ratelimit.h, so a shared limit answers exactly as a per-worker one.
 *
 * Full buckets are dropped by a sweep that visits SWEEP_BUCKETS buckets at a time,
 * wrapping around, when enough sweep work is owed: NEW_KEY_DEBT buckets for each
 * key created, so the sweep outpaces creation (a pass over nb buckets comes round
 * within nb / 4 new keys, so at most about a quarter of the table is keys that
 * are full but not yet swept; with one bucket per new key or less the table
 * could keep growing ahead of the sweep), and TAKE_DEBT per take so that a table
 * no longer growing is still emptied in the end (one bucket per 64 takes). A take
 * of a key that exists costs no sweep work of its own. A take that leaves a new
 * key's bucket full (a cost of 0, or one above burst, which never fits) records
 * nothing. */
#include "hub/buckets.h"

#include "hub/ratelimit.h"

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
  ews_tb_t b;
  double rate, burst; /* of the latest take (a reload may change a limit) */
  char key[];
} bucket_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static ews_htable_t table;
static unsigned debt;
static size_t sweep_at;

static void drop_if_full(ews_hnode_t *n, void *ud) {
  bucket_t *b = (bucket_t *)n;
  if (ews_tb_refill_inline(b->b.tokens, b->b.last, *(const double *)ud, b->rate, b->burst) >= b->burst) {
    ews_ht_remove(&table, n);
    free(b);
  }
}

int ews_bucket_take(const char *key, size_t len, double rate, double burst, double n, double now,
                    double *retry_after) {
  uint32_t h = ews_hash(key, len);
  double retry = 0;
  int ok;
  pthread_mutex_lock(&lock);
  if ((debt += TAKE_DEBT) >= SWEEP_BUCKETS * 64) { /* a full bucket is the same as none */
    debt -= SWEEP_BUCKETS * 64;
    sweep_at = ews_ht_walk(&table, sweep_at, SWEEP_BUCKETS, drop_if_full, &now);
  }
  bucket_t *b = (bucket_t *)ews_ht_find(&table, key, len, h);
  if (b) {
    b->rate = rate;
    b->burst = burst;
    ok = ews_tb_take_inline(&b->b, n, now, rate, burst, &retry);
  } else {
    double left;
    ok = ews_tb_consume_inline(burst, n, rate, burst, &left, &retry);
    /* Record the bucket unless it is still full. Out of memory: the answer stands
     * and the key stays untracked (full), erring on the side of letting through
     * rather than blocking everyone. */
    if (left < burst && (b = malloc(sizeof *b + len))) {
      memcpy(b->key, key, len);
      b->n = (ews_hnode_t){NULL, b->key, h, (uint32_t)len};
      b->b = (ews_tb_t){left, now};
      b->rate = rate;
      b->burst = burst;
      if (ews_ht_insert(&table, &b->n) == 0) debt += NEW_KEY_DEBT;
      else free(b);
    }
  }
  pthread_mutex_unlock(&lock);
  if (!ok && retry_after) *retry_after = retry;
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
