/* hash.h — the string hash of the hub's tables (FNV-1a, 32 bits): channel names,
 * counter keys, user ids, rate-limit keys. Short keys, no adversarial collisions
 * beyond what a chained table absorbs. */
#ifndef EWS_HASH_H
#define EWS_HASH_H

#include <stddef.h>
#include <stdint.h>

static inline uint32_t ews_hash(const char *k, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)k[i]) * 16777619u;
  return h;
}

#endif
