/* fuzz_utf8.c — libFuzzer target for the UTF-8 validator.
 *
 * Oracles: (1) feeding in two pieces (split chosen from the first byte) or byte by
 * byte ends in exactly the state of one whole feed; (2) ews_utf8_valid agrees with a
 * deliberately naive decoder written here (decode the code point, then check its
 * range); (3) fail fast: the byte at which byte-by-byte feeding rejects is the first
 * one after which no completion of the input can be valid, again judged by the
 * naive decoder. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/utf8.h"

/* Decodes every code point the slow, obvious way. */
static int naive_valid(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint32_t b = p[i], cp;
    size_t len;
    if (b < 0x80) { len = 1; cp = b; }
    else if ((b & 0xE0) == 0xC0) { len = 2; cp = b & 0x1F; }
    else if ((b & 0xF0) == 0xE0) { len = 3; cp = b & 0x0F; }
    else if ((b & 0xF8) == 0xF0) { len = 4; cp = b & 0x07; }
    else return 0;
    if (len > n - i) return 0;
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xC0) != 0x80) return 0;
      cp = cp << 6 | (p[i + k] & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    i += len;
  }
  return 1;
}

/* Whether some continuation of p[0..n) is valid: try appending 0-3 continuation
 * bytes, the first one from a few values that satisfy every lead's constraint. */
static int naive_viable(const uint8_t *p, size_t n) {
  uint8_t *q = malloc(n + 3);
  if (!q) abort();
  if (n) memcpy(q, p, n);
  static const uint8_t firsts[] = {0x80, 0x90, 0xA0};
  int ok = naive_valid(q, n);
  for (size_t k = 1; k <= 3 && !ok; k++) {
    for (size_t f = 0; f < sizeof firsts && !ok; f++) {
      q[n] = firsts[f];
      for (size_t j = 1; j < k; j++) q[n + j] = 0x80;
      ok = naive_valid(q, n + k);
    }
  }
  free(q);
  return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t split = data[0] % size;
  const uint8_t *p = data + 1;
  size_t n = size - 1;
  if (split > n) split = n;

  ews_utf8_state_t whole = ews_utf8_feed(EWS_UTF8_ACCEPT, p, n);
  ews_utf8_state_t two = ews_utf8_feed(ews_utf8_feed(EWS_UTF8_ACCEPT, p, split), p + split,
                                       n - split);
  if (two != whole) abort();

  ews_utf8_state_t st = EWS_UTF8_ACCEPT;
  size_t reject_at = n; /* n: never rejected */
  for (size_t i = 0; i < n; i++) {
    st = ews_utf8_feed(st, p + i, 1);
    if (st == EWS_UTF8_REJECT && reject_at == n) reject_at = i;
  }
  if (st != whole) abort();

  int valid = ews_utf8_valid(p, n);
  if (valid != (whole == EWS_UTF8_ACCEPT)) abort();
  if (valid != naive_valid(p, n)) abort();

  if (reject_at < n) {
    /* the prefix before the rejected byte is viable, with it it is not */
    if (!naive_viable(p, reject_at)) abort();
    if (naive_viable(p, reject_at + 1)) abort();
  } else if (!naive_viable(p, n)) {
    abort();
  }
  return 0;
}
