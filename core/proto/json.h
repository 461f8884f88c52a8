/* json.h — the one JSON string writer of the core (RFC 8259): every JSON text the C
 * code builds (pub/sub envelopes and gaps, presence events, HTTP error bodies) writes
 * its strings with it. I/O-free, no allocation: measure with out = NULL, then write
 * into a buffer of that size.
 *
 * Escapes: " and \ and the short forms \b \f \n \r \t, every other byte below 0x20
 * as \u00XX (lower-case hex). Bytes from 0x80 on are copied when the input is valid
 * UTF-8; when it is not, each of them is written as \u00XX, so the output is always
 * valid UTF-8 and valid JSON (a text frame may carry it). */
#ifndef EWS_JSON_H
#define EWS_JSON_H

#include <stddef.h>

/* What the caller knows of the input's UTF-8. */
enum {
  EWS_JSON_UTF8 = 1,   /* valid UTF-8 (checked before): high bytes are copied */
  EWS_JSON_CHECK = 0   /* unknown: checked here (one more pass over the input) */
};

/* Writes s[0..n) as a JSON string, quotes included, at out (when out is not NULL,
 * it has room for the returned length). Returns the length. */
size_t ews_json_str(char *out, const char *s, size_t n, int utf8);

#endif
