/* utf8.c — incremental UTF-8 validator (RFC 3629 section 4 / Unicode table 3-7).
 *
 * Owns the state encoding behind ews_utf8_state_t. Rather than a transition table,
 * each lead byte is mapped by range checks to the number of continuation bytes it
 * needs and the allowed range of the FIRST continuation byte. That one narrowed range
 * is all it takes to reject overlongs (E0 80..9F, F0 80..8F), surrogates (ED A0..BF)
 * and code points above U+10FFFF (F4 90..BF) at the earliest possible byte, which is
 * what RFC 6455 section 8.1 fail-fast needs. Later continuation bytes are always
 * 80..BF.
 *
 * In-progress state layout: bits 16-23 = continuation bytes still needed (1-3),
 * bits 8-15 = lowest allowed next byte, bits 0-7 = highest allowed next byte. The
 * high bound is always >= 0x8F, so such a state never equals ACCEPT (0) or REJECT (1).
 *
 * Text is mostly ASCII, so runs of ASCII are skipped 8 bytes per step. */
#include "utf8.h"

#include <string.h>

#define ASCII_MASK 0x8080808080808080ull

static inline ews_utf8_state_t pack(unsigned need, unsigned lo, unsigned hi) {
  return (ews_utf8_state_t)((need << 16) | (lo << 8) | hi);
}

/* For a non-ASCII lead byte: sets the continuation bytes needed and the range of
 * the first one; returns 0 for bytes that can never start a sequence (80..C1 are
 * continuation bytes or 2-byte overlong leads, F5..FF would exceed U+10FFFF). */
static inline unsigned lead(unsigned b, unsigned *lo, unsigned *hi) {
  *lo = 0x80;
  *hi = 0xBF;
  if (b < 0xC2) return 0;
  if (b < 0xE0) return 1;
  if (b < 0xF0) {
    if (b == 0xE0) *lo = 0xA0;      /* below U+0800 would be overlong */
    else if (b == 0xED) *hi = 0x9F; /* U+D800..DFFF are surrogates */
    return 2;
  }
  if (b < 0xF5) {
    if (b == 0xF0) *lo = 0x90;      /* below U+10000 would be overlong */
    else if (b == 0xF4) *hi = 0x8F; /* above U+10FFFF */
    return 3;
  }
  return 0;
}

ews_utf8_state_t ews_utf8_feed(ews_utf8_state_t state, const uint8_t *p, size_t n) {
  size_t i = 0;
  unsigned need = 0, lo = 0x80, hi = 0xBF;

  if (state == EWS_UTF8_REJECT) return EWS_UTF8_REJECT;
  if (state != EWS_UTF8_ACCEPT) { /* resume a code point split by the caller */
    need = (state >> 16) & 0xFF;
    lo = (state >> 8) & 0xFF;
    hi = state & 0xFF;
  }
  for (;;) {
    /* Finish the current code point. */
    for (; need; need--) {
      if (i == n) return pack(need, lo, hi);
      unsigned b = p[i];
      if (b < lo || b > hi) return EWS_UTF8_REJECT;
      i++;
      lo = 0x80;
      hi = 0xBF;
    }
    /* At a code point boundary: skip ASCII a word at a time. A word with a high
     * bit set drops to the byte loop, which steps over at most 7 ASCII bytes. */
    while (n - i >= 8) {
      uint64_t w;
      memcpy(&w, p + i, 8);
      if (w & ASCII_MASK) break;
      i += 8;
    }
    while (i < n && p[i] < 0x80) i++;
    if (i == n) return EWS_UTF8_ACCEPT;
    need = lead(p[i], &lo, &hi);
    if (!need) return EWS_UTF8_REJECT;
    i++;
  }
}

int ews_utf8_valid(const uint8_t *p, size_t n) {
  return ews_utf8_feed(EWS_UTF8_ACCEPT, p, n) == EWS_UTF8_ACCEPT;
}
