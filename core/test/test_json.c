/* test_json.c — the one JSON string writer (proto/json.c): a table of inputs and the
 * exact strings written (escapes, control bytes, UTF-8 copied or escaped), the
 * measured length equal to what is written and nothing written past it (guard
 * page), and every byte value round-tripping through a decoder of the escapes. */
#include <stdlib.h>
#include <string.h>

#include "proto/json.h"
#include "test.h"

typedef struct {
  const char *in;
  size_t n;
  int utf8;
  const char *out;
} vec_t;

#define V(in, utf8, out) {in, sizeof(in) - 1, utf8, out}

static const vec_t vecs[] = {
    V("", EWS_JSON_CHECK, "\"\""),
    V("plain", EWS_JSON_CHECK, "\"plain\""),
    V("a\"b\\c", EWS_JSON_CHECK, "\"a\\\"b\\\\c\""),
    V("\n\r\t\b\f", EWS_JSON_CHECK, "\"\\n\\r\\t\\b\\f\""),
    V("\x01\x1f\x00", EWS_JSON_CHECK, "\"\\u0001\\u001f\\u0000\""),
    V("\x7f/", EWS_JSON_CHECK, "\"\x7f/\""),               /* DEL and / need no escape */
    V("caf\xc3\xa9", EWS_JSON_CHECK, "\"caf\xc3\xa9\""),     /* valid UTF-8 is copied */
    V("caf\xc3\xa9", EWS_JSON_UTF8, "\"caf\xc3\xa9\""),
    V("\xff" "a\xc3", EWS_JSON_CHECK, "\"\\u00ffa\\u00c3\""), /* invalid: byte by byte */
    V("\xe2\x82\xac\xff", EWS_JSON_CHECK, "\"\\u00e2\\u0082\\u00ac\\u00ff\""),
    V("\xc3\xa9", EWS_JSON_UTF8, "\"\xc3\xa9\""),
};

TEST(vectors) {
  for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
    const vec_t *v = &vecs[i];
    size_t want = strlen(v->out);
    char *in = guard_copy(v->in, v->n); /* a read past the input crashes */
    CHECK_EQ(ews_json_str(NULL, in, v->n, v->utf8), want);
    char *out = malloc(want);
    size_t n = ews_json_str(out, in, v->n, v->utf8);
    CHECK_EQ(n, want);
    CHECK_MEM(out, v->out, want);
    free(out);
    guard_free(in, v->n);
  }
}

/* Writes exactly the measured length: the output ends right at a guard page. */
TEST(writes_only_what_it_measured) {
  static const char *const ins[] = {"x", "\"\\", "\x01\n", "\xff\xfe", "h\xc3\xa9llo"};
  for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++) {
    size_t n = strlen(ins[i]);
    size_t len = ews_json_str(NULL, ins[i], n, EWS_JSON_CHECK);
    char *zeros = calloc(1, len);
    char *out = guard_copy(zeros, len);
    free(zeros);
    CHECK_EQ(ews_json_str(out, ins[i], n, EWS_JSON_CHECK), len);
    CHECK(out[0] == '"' && out[len - 1] == '"');
    guard_free(out, len);
  }
}

/* Decodes the escapes json.c writes (a JSON decoder's job, for these forms). */
static size_t decode(const char *s, size_t n, char *out) {
  size_t k = 0;
  for (size_t i = 1; i + 1 < n; i++) {
    if (s[i] != '\\') {
      out[k++] = s[i];
      continue;
    }
    char e = s[++i];
    switch (e) {
      case 'n': out[k++] = '\n'; break;
      case 'r': out[k++] = '\r'; break;
      case 't': out[k++] = '\t'; break;
      case 'b': out[k++] = '\b'; break;
      case 'f': out[k++] = '\f'; break;
      case 'u': out[k++] = (char)strtol((char[]){s[i + 3], s[i + 4], 0}, NULL, 16); i += 4; break;
      default: out[k++] = e;
    }
  }
  return k;
}

/* Every byte value, alone: written as valid JSON that decodes back to it (a high
 * byte alone is invalid UTF-8: escaped), with no raw control byte, " or \ inside. */
TEST(every_byte_round_trips) {
  for (int b = 0; b < 256; b++) {
    char in = (char)b, out[8], back[8];
    size_t n = ews_json_str(out, &in, 1, EWS_JSON_CHECK);
    int clean = 1;
    for (size_t i = 1; i + 1 < n; i++) {
      unsigned char ch = (unsigned char)out[i];
      if (ch < 0x20 || ch >= 0x80 || (ch == '"' && out[i - 1] != '\\')) clean = 0;
    }
    CHECK(clean);
    CHECK_EQ(decode(out, n, back), 1);
    CHECK_EQ((unsigned char)back[0], (unsigned)b);
  }
}

int main(void) {
  RUN(vectors);
  RUN(writes_only_what_it_measured);
  RUN(every_byte_round_trips);
  return TEST_EXIT();
}
