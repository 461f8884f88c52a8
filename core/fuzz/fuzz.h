/* fuzz.h — small helpers shared by the newer fuzz targets: an invariant check that
 * aborts with file:line (libFuzzer then saves the input), a reader that takes bytes
 * from the front of the input (zeros once it runs out, so every input is valid), a
 * growable byte buffer, and a tiny PRNG for choices that need not be mutated
 * byte by byte (chunk sizes). Header-only: each target is one translation unit, and
 * the gcc replay driver (replay.c) links the same file. */
#ifndef EWS_FUZZ_H
#define EWS_FUZZ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)                                                                  \
  do {                                                                              \
    if (!(c)) {                                                                     \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);     \
      abort();                                                                      \
    }                                                                               \
  } while (0)

typedef struct {
  const uint8_t *p;
  size_t n;
} fz_in_t;

static inline uint8_t fz_u8(fz_in_t *in) {
  if (!in->n) return 0;
  in->n--;
  return *in->p++;
}

static inline uint16_t fz_u16(fz_in_t *in) {
  uint16_t hi = fz_u8(in);
  return (uint16_t)(hi << 8 | fz_u8(in));
}

/* Takes up to n bytes; returns how many were available (at *out). */
static inline size_t fz_take(fz_in_t *in, size_t n, const uint8_t **out) {
  if (n > in->n) n = in->n;
  *out = in->p;
  in->p += n;
  in->n -= n;
  return n;
}

typedef struct {
  uint8_t *p;
  size_t n, cap;
} fz_buf_t;

static inline void fz_put(fz_buf_t *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->n + n) cap *= 2;
    b->p = realloc(b->p, cap);
    REQUIRE(b->p);
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, d, n);
  b->n += n;
}

static inline void fz_free(fz_buf_t *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

static inline uint32_t fz_rand(uint32_t *s) { /* xorshift32; *s must not be 0 */
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

#endif
