/* redis_ring.h — consistent hashing of names (channels, topics, users) over Redis
 * shards, so that adding a shard moves about 1/N of the names. Each shard is placed
 * at EWS_RING_POINTS points on a 64-bit ring, by the hash of its name (its URL's
 * redis_url.h `name`), so every instance configured with the same shards (in any
 * order) maps every name to the same shard. The hash is a fixed function (FNV-1a
 * with a 64-bit finaliser), not the hub's per-process keyed hash: instances must
 * agree. I/O-free; the caller owns the ring. */
#ifndef EWS_REDIS_RING_H
#define EWS_REDIS_RING_H

#include <stddef.h>
#include <stdint.h>

#define EWS_RING_POINTS 160

typedef struct {
  uint64_t *point;  /* sorted */
  uint16_t *shard;  /* the shard of each point */
  uint32_t n;
  int nshards;
} ews_redis_ring_t;

/* Places shards names[0..n) (1 <= n <= 1024). 0, EWS_EINVAL or EWS_ENOMEM. */
int ews_redis_ring_init(ews_redis_ring_t *r, const char *const *names, int n);
/* The shard of key[0..len): 0..nshards-1. */
int ews_redis_ring_pick(const ews_redis_ring_t *r, const char *key, size_t len);
void ews_redis_ring_free(ews_redis_ring_t *r);
/* The ring's hash (stable across processes and versions). */
uint64_t ews_redis_ring_hash(const void *p, size_t len);

#endif
