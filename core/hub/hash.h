/* hash.h — the process's keyed string hash and its one small mixing function.
 *
 * ews_hash64 is SipHash-1-3 under a 128-bit key drawn from getrandom() the first
 * time any thread hashes (once per process, so every worker hashes a name alike).
 * Names in the hub's tables (channels, topics, presence, user ids, counter and
 * rate-limit keys) come from clients: without a secret key a client can choose
 * names that all land in one bucket and make each lookup a walk over all of them.
 * The hub's tables (hub/htable.h) hash with this and nothing else.
 *
 * ews_splitmix64 is a fast, non-cryptographic generator step (Steele, Lea and
 * Flood), for ids that must differ but need not be secret (pub/sub epochs). */
#ifndef EWS_HASH_H
#define EWS_HASH_H

#include <stddef.h>
#include <stdint.h>

/* The keyed hash of key[0..len). Never fails; thread-safe. */
uint64_t ews_hash64(const void *key, size_t len);

/* 32 bits of ews_hash64: what the tables store and index by. */
static inline uint32_t ews_hash(const char *key, size_t len) {
  return (uint32_t)ews_hash64(key, len);
}

/* SipHash with an explicit key (k0, k1 = the key's two little-endian halves):
 * 1-3 is the table hash; 2-4 exists so the tests can check the shared rounds
 * against the reference vectors. */
uint64_t ews_siphash13(uint64_t k0, uint64_t k1, const void *p, size_t len);
uint64_t ews_siphash24(uint64_t k0, uint64_t k1, const void *p, size_t len);

/* Advances *state and returns the next of a sequence of well-mixed 64-bit values. */
static inline uint64_t ews_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

#endif
