/* json.c — JSON strings (see json.h). */
#include "proto/json.h"

#include <stdint.h>

#include "proto/utf8.h"

/* The short escape of c, or 0 when it has none. */
static char short_escape(unsigned char c) {
  switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    case '\b': return 'b';
    case '\f': return 'f';
    default: return 0;
  }
}

size_t ews_json_str(char *out, const char *s, size_t n, int utf8) {
  static const char hex[] = "0123456789abcdef";
  int raw_high = utf8 == EWS_JSON_UTF8 || ews_utf8_valid((const uint8_t *)s, n);
  size_t k = 0;
  if (out) out[k] = '"';
  k++;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char e = short_escape(c);
    if (e) {
      if (out) out[k] = '\\', out[k + 1] = e;
      k += 2;
    } else if (c < 0x20 || (c >= 0x80 && !raw_high)) {
      if (out) {
        out[k] = '\\', out[k + 1] = 'u', out[k + 2] = '0', out[k + 3] = '0';
        out[k + 4] = hex[c >> 4], out[k + 5] = hex[c & 15];
      }
      k += 6;
    } else {
      if (out) out[k] = (char)c;
      k++;
    }
  }
  if (out) out[k] = '"';
  return k + 1;
}
