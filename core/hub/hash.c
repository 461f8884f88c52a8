/* hash.c — SipHash and the process's hash key (see hash.h).
 *
 * SipHash (Aumasson and Bernstein) keeps four 64-bit words of state; each 8-byte
 * word of input is xored in around c "SipRounds", the last word carries the length,
 * and d more rounds finish. 1-3 (as in Rust's HashMap and Python's str hash) is
 * enough for hash-flooding resistance: an attacker who never sees the key cannot
 * predict which names share a bucket. */
#include "hub/hash.h"

#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

static inline uint64_t load_le64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

#define SIPROUND()                                                                         \
  do {                                                                                     \
    v0 += v1, v1 = rotl(v1, 13), v1 ^= v0, v0 = rotl(v0, 32);                              \
    v2 += v3, v3 = rotl(v3, 16), v3 ^= v2;                                                 \
    v0 += v3, v3 = rotl(v3, 21), v3 ^= v0;                                                 \
    v2 += v1, v1 = rotl(v1, 17), v1 ^= v2, v2 = rotl(v2, 32);                              \
  } while (0)

/* Inlined into each caller with constant round counts, so the loops unroll. */
static inline uint64_t siphash(uint64_t k0, uint64_t k1, const uint8_t *p, size_t len, int c,
                               int d) {
  uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
  const uint8_t *end = p + (len & ~(size_t)7);
  for (; p != end; p += 8) {
    uint64_t m = load_le64(p);
    v3 ^= m;
    for (int i = 0; i < c; i++) SIPROUND();
    v0 ^= m;
  }
  uint64_t m = (uint64_t)len << 56; /* the last word: the tail bytes and the length */
  switch (len & 7) {
  case 7: m |= (uint64_t)p[6] << 48; /* fall through */
  case 6: m |= (uint64_t)p[5] << 40; /* fall through */
  case 5: m |= (uint64_t)p[4] << 32; /* fall through */
  case 4: m |= (uint64_t)p[3] << 24; /* fall through */
  case 3: m |= (uint64_t)p[2] << 16; /* fall through */
  case 2: m |= (uint64_t)p[1] << 8;  /* fall through */
  case 1: m |= (uint64_t)p[0];
  }
  v3 ^= m;
  for (int i = 0; i < c; i++) SIPROUND();
  v0 ^= m;
  v2 ^= 0xff;
  for (int i = 0; i < d; i++) SIPROUND();
  return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t ews_siphash13(uint64_t k0, uint64_t k1, const void *p, size_t len) {
  return siphash(k0, k1, p, len, 1, 3);
}

uint64_t ews_siphash24(uint64_t k0, uint64_t k1, const void *p, size_t len) {
  return siphash(k0, k1, p, len, 2, 4);
}

/* ---- the process key -------------------------------------------------------- */

static uint64_t key[2];
static int key_ready; /* atomic: key is set */
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void draw_key(void) {
  if (getrandom(key, sizeof key, 0) == (ssize_t)sizeof key) goto done;
  /* No kernel randomness (a seccomp filter, a very old kernel): the clock and the
   * address space are far weaker, but still unknown to a remote client. */
  struct timespec rt, mt;
  clock_gettime(CLOCK_REALTIME, &rt);
  clock_gettime(CLOCK_MONOTONIC, &mt);
  uint64_t s = (uint64_t)rt.tv_nsec ^ ((uint64_t)rt.tv_sec << 30) ^ ((uint64_t)mt.tv_nsec << 17) ^
               (uint64_t)(uintptr_t)&rt ^ ((uint64_t)getpid() << 48);
  key[0] = ews_splitmix64(&s);
  key[1] = ews_splitmix64(&s);
done:
  __atomic_store_n(&key_ready, 1, __ATOMIC_RELEASE);
}

uint64_t ews_hash64(const void *p, size_t len) {
  if (__builtin_expect(!__atomic_load_n(&key_ready, __ATOMIC_ACQUIRE), 0))
    pthread_once(&key_once, draw_key);
  return siphash(key[0], key[1], p, len, 1, 3);
}
