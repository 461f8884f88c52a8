/* utf8.h — incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF). I/O-free. The state carries a partial code point across
 * calls, so a text message split over any number of frames and reads is validated
 * as one stream, and an invalid byte is reported as soon as it is seen (fail fast,
 * RFC 6455 section 8.1). ASCII runs are checked a machine word at a time. */
#ifndef EWS_UTF8_H
#define EWS_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* The state is 0 (EWS_UTF8_ACCEPT) between complete code points, EWS_UTF8_REJECT
 * once invalid input was seen (sticky), and anything else inside a code point. */
#define EWS_UTF8_ACCEPT 0u
#define EWS_UTF8_REJECT 1u
typedef uint32_t ews_utf8_state_t;

/* Feed n bytes; returns the new state. Returns EWS_UTF8_REJECT at the first byte
 * that cannot continue any valid sequence (including a truncated 4-byte prefix such
 * as F4 90 that could only encode > U+10FFFF). */
ews_utf8_state_t ews_utf8_feed(ews_utf8_state_t state, const uint8_t *p, size_t n);

/* 1 when p[0..n) is complete, valid UTF-8; 0 otherwise. */
int ews_utf8_valid(const uint8_t *p, size_t n);

#endif
