/* fuzz_static_path.c — libFuzzer target for static files' request paths, content
 * types and If-None-Match (proto/static_path.h).
 *
 * Oracles for a path that is accepted: (1) what comes out can be joined under a root
 * without leaving it: no leading '/', no empty segment but a final one, no "." or
 * ".." segment, no segment starting with '.', no NUL, control byte or '\'; (2) it is
 * never longer than the input; (3) percent-encoding every byte of it again and
 * decoding gives the same path (decoding is exact). For any input: the answer is 0
 * or one of the documented errors, and an input over the limit is always 414.
 * If-None-Match: a value made of the tag alone always matches, and the matcher reads
 * nothing past the value (ASan). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "fuzz.h"
#include "proto/static_path.h"

static void check_clean(const char *out, size_t n) {
  REQUIRE(n == 0 || out[0] != '/');
  REQUIRE(out[n] == 0);
  size_t seg = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && out[i] != '/') {
      unsigned char ch = (unsigned char)out[i];
      REQUIRE(ch >= 0x20 && ch != 0x7f && ch != '\\');
      continue;
    }
    size_t len = i - seg;
    if (i < n) REQUIRE(len > 0); /* only the last segment may be empty */
    if (len > 0) REQUIRE(out[seg] != '.');
    seg = i + 1;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *raw = (const char *)data;
  char *out = malloc(size + 1);
  REQUIRE(out);
  size_t ol = 0;
  int r = ews_static_path(raw, size, out, size + 1, &ol);
  REQUIRE(r == 0 || r == EWS_EHTTP_PATH || r == EWS_EHTTP_NOT_FOUND ||
          r == EWS_EHTTP_URI_TOO_LONG);
  REQUIRE((r == EWS_EHTTP_URI_TOO_LONG) == (size > EWS_STATIC_MAX_PATH));
  if (r == 0) {
    REQUIRE(ol <= size);
    check_clean(out, ol);
    /* re-encode every byte but the separators: decodes to the same path */
    char *enc = malloc(3 * ol + 2), *again = malloc(3 * ol + 2);
    REQUIRE(enc && again);
    size_t el = 0;
    enc[el++] = '/';
    for (size_t i = 0; i < ol; i++) {
      if (out[i] == '/') {
        enc[el++] = '/';
      } else {
        static const char hex[] = "0123456789ABCDEF";
        enc[el++] = '%';
        enc[el++] = hex[(unsigned char)out[i] >> 4];
        enc[el++] = hex[(unsigned char)out[i] & 15];
      }
    }
    size_t al = 0;
    int r2 = ews_static_path(enc, el, again, 3 * ol + 2, &al);
    if (el <= EWS_STATIC_MAX_PATH) {
      REQUIRE(r2 == 0);
      REQUIRE(al == ol && memcmp(again, out, ol) == 0);
    }
    free(enc);
    free(again);
  }
  free(out);
  (void)ews_static_content_type(raw, size);
  /* the input as an If-None-Match value, against a fixed tag and against itself */
  (void)ews_static_etag_match(raw, size, "\"1-2-3\"", 7);
  if (size >= 2 && data[0] == '"' && data[size - 1] == '"' && !memchr(data + 1, '"', size - 2))
    REQUIRE(ews_static_etag_match(raw, size, raw, size) == 1);
  return 0;
}
