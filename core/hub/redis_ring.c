/* redis_ring.c — consistent hashing over Redis shards (see redis_ring.h). */
#include "hub/redis_ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

uint64_t ews_redis_ring_hash(const void *p, size_t len) {
  const unsigned char *s = p;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < len; i++) {
    h ^= s[i];
    h *= 0x100000001b3ull;
  }
  /* splitmix64's finaliser: FNV alone clusters short names with a common prefix. */
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

typedef struct {
  uint64_t point;
  uint16_t shard;
} pt_t;

static int cmp_pt(const void *a, const void *b) {
  const pt_t *x = a, *y = b;
  if (x->point != y->point) return x->point < y->point ? -1 : 1;
  return (int)x->shard - (int)y->shard;
}

int ews_redis_ring_init(ews_redis_ring_t *r, const char *const *names, int n) {
  memset(r, 0, sizeof *r);
  if (n < 1 || n > 1024) return EWS_EINVAL;
  uint32_t total = (uint32_t)n * EWS_RING_POINTS;
  pt_t *tmp = malloc(total * sizeof *tmp);
  r->point = malloc(total * sizeof *r->point);
  r->shard = malloc(total * sizeof *r->shard);
  if (!tmp || !r->point || !r->shard) {
    free(tmp);
    ews_redis_ring_free(r);
    return EWS_ENOMEM;
  }
  for (int s = 0; s < n; s++)
    for (int i = 0; i < EWS_RING_POINTS; i++) {
      char key[400];
      int kl = snprintf(key, sizeof key, "%s#%d", names[s], i);
      tmp[s * EWS_RING_POINTS + i] = (pt_t){ews_redis_ring_hash(key, (size_t)kl), (uint16_t)s};
    }
  qsort(tmp, total, sizeof *tmp, cmp_pt);
  for (uint32_t i = 0; i < total; i++) {
    r->point[i] = tmp[i].point;
    r->shard[i] = tmp[i].shard;
  }
  free(tmp);
  r->n = total;
  r->nshards = n;
  return 0;
}

int ews_redis_ring_pick(const ews_redis_ring_t *r, const char *key, size_t len) {
  if (r->nshards <= 1) return 0;
  uint64_t h = ews_redis_ring_hash(key, len);
  /* The first point at or after h, wrapping around. */
  uint32_t lo = 0, hi = r->n;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (r->point[mid] < h) lo = mid + 1;
    else hi = mid;
  }
  return r->shard[lo == r->n ? 0 : lo];
}

void ews_redis_ring_free(ews_redis_ring_t *r) {
  free(r->point);
  free(r->shard);
  r->point = NULL;
  r->shard = NULL;
  r->n = 0;
}
