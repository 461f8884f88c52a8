/* buckets.c — the shared token-bucket table (see buckets.h). */
#include "hub/buckets.h"

#include "hub/hash.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 4096u
#define SWEEP_EVERY 1024u

typedef struct bucket {
  struct bucket *next;
  double tokens, last, rate, burst;
  uint32_t hash;
  size_t len;
  char key[];
} bucket_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bucket_t *table[BUCKETS];
static unsigned takes, sweep_at;

static double refill(const bucket_t *b, double now) {
  double t = b->tokens + (now > b->last ? now - b->last : 0) * b->rate;
  return t > b->burst ? b->burst : t;
}

/* Drops the full buckets of a few slots (a full bucket is the same as none). */
static void sweep(double now) {
  for (unsigned i = 0; i < 16; i++) {
    bucket_t **pp = &table[sweep_at];
    while (*pp) {
      bucket_t *b = *pp;
      if (refill(b, now) >= b->burst) {
        *pp = b->next;
        free(b);
      } else {
        pp = &b->next;
      }
    }
    sweep_at = (sweep_at + 1) % BUCKETS;
  }
}

int ews_bucket_take(const char *key, size_t len, double rate, double burst, double n, double now,
                    double *retry_after) {
  uint32_t h = ews_hash(key, len);
  int ok;
  pthread_mutex_lock(&lock);
  if (++takes % SWEEP_EVERY == 0) sweep(now);
  bucket_t *b = table[h % BUCKETS];
  while (b && !(b->hash == h && b->len == len && memcmp(b->key, key, len) == 0)) b = b->next;
  if (!b && (b = malloc(sizeof *b + len))) {
    b->hash = h;
    b->len = len;
    memcpy(b->key, key, len);
    b->tokens = burst;
    b->last = now;
    b->next = table[h % BUCKETS];
    table[h % BUCKETS] = b;
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
