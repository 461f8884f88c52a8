/* test_utf8.c — the incremental UTF-8 validator: RFC 3629 valid/invalid vectors,
 * every split of every vector, fail-fast position, and the ASCII word fast path. */
#include "proto/utf8.h"

#include "test.h"

typedef struct {
  const char *s;
  size_t n;  /* 0: strlen(s) */
  int valid;
  int bad_at; /* for invalid: index of the first byte that must be rejected, or -1
                 when the input is only truncated (rejected at end of message) */
} vec_t;

#define V(str, ok, at) {str, sizeof(str) - 1, ok, at}

static const vec_t vecs[] = {
    V("", 1, 0),
    V("hello", 1, 0),
    V("\x7F", 1, 0),
    V("\xC2\x80", 1, 0),             /* U+0080, smallest 2-byte */
    V("\xDF\xBF", 1, 0),             /* U+07FF */
    V("\xE0\xA0\x80", 1, 0),         /* U+0800, smallest 3-byte */
    V("\xED\x9F\xBF", 1, 0),         /* U+D7FF, just below the surrogates */
    V("\xEE\x80\x80", 1, 0),         /* U+E000, just above */
    V("\xEF\xBF\xBF", 1, 0),         /* U+FFFF */
    V("\xF0\x90\x80\x80", 1, 0),     /* U+10000, smallest 4-byte */
    V("\xF4\x8F\xBF\xBF", 1, 0),     /* U+10FFFF, the maximum */
    V("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", 1, 0), /* Autobahn "κόσμε" */
    V("a\xC3\xA9z\xE2\x82\xAC\xF0\x9F\x98\x80!", 1, 0),
    V("\x00", 1, 0),
    /* overlongs */
    V("\xC0\x80", 0, 0),
    V("\xC1\xBF", 0, 0),
    V("\xE0\x80\x80", 0, 1),
    V("\xE0\x9F\xBF", 0, 1),
    V("\xF0\x80\x80\x80", 0, 1),
    V("\xF0\x8F\xBF\xBF", 0, 1),
    /* surrogates */
    V("\xED\xA0\x80", 0, 1),
    V("\xED\xBF\xBF", 0, 1),
    V("\xED\xA0\x80\xED\xB0\x80", 0, 1), /* CESU-8 pair */
    /* above U+10FFFF */
    V("\xF4\x90\x80\x80", 0, 1),
    V("\xF4\x90", 0, 1),
    V("\xF5\x80\x80\x80", 0, 0),
    V("\xF8\x88\x80\x80\x80", 0, 0),
    V("\xFC\x84\x80\x80\x80\x80", 0, 0),
    V("\xFE", 0, 0),
    V("\xFF", 0, 0),
    V("ab\xFF", 0, 2),
    /* lone / extra continuation bytes */
    V("\x80", 0, 0),
    V("\xBF", 0, 0),
    V("a\x80", 0, 1),
    V("\xC3\xA9\x80", 0, 2),
    V("\xE2\x82\xAC\xAC", 0, 3),
    /* a lead byte where a continuation was needed */
    V("\xC3\x41", 0, 1),
    V("\xE2\x82\x41", 0, 2),
    V("\xF0\x9F\x98\xC3\xA9", 0, 3),
    /* truncated at the end */
    V("\xC3", 0, -1),
    V("\xE2\x82", 0, -1),
    V("\xF0\x9F\x98", 0, -1),
    V("\xF4\x8F\xBF", 0, -1),
    V("hello\xE2", 0, -1),
    /* Autobahn 6.3.1: "κόσμε" with an invalid byte inside */
    V("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80\x65\x64\x69\x74\x65\x64",
      0, 12),
};

#define NVEC (sizeof vecs / sizeof vecs[0])

/* Feeds one byte at a time; returns the index at which the state became REJECT, or
 * -1 when it never did. *end gets the final state. */
static int reject_index(const uint8_t *p, size_t n, ews_utf8_state_t *end) {
  ews_utf8_state_t st = EWS_UTF8_ACCEPT;
  int at = -1;
  for (size_t i = 0; i < n; i++) {
    st = ews_utf8_feed(st, p + i, 1);
    if (st == EWS_UTF8_REJECT && at < 0) at = (int)i;
  }
  *end = st;
  return at;
}

TEST(vectors_whole) {
  for (size_t v = 0; v < NVEC; v++) {
    uint8_t *p = guard_copy(vecs[v].s, vecs[v].n);
    int ok = ews_utf8_valid(p, vecs[v].n);
    if (ok != vecs[v].valid) fprintf(stderr, "  vector %zu\n", v);
    CHECK_EQ(ok, vecs[v].valid);
    ews_utf8_state_t st = ews_utf8_feed(EWS_UTF8_ACCEPT, p, vecs[v].n);
    if (vecs[v].valid) CHECK_EQ(st, EWS_UTF8_ACCEPT);
    else if (vecs[v].bad_at >= 0) CHECK_EQ(st, EWS_UTF8_REJECT);
    else CHECK(st != EWS_UTF8_ACCEPT && st != EWS_UTF8_REJECT);
    guard_free(p, vecs[v].n);
  }
}

TEST(fail_fast_position) {
  for (size_t v = 0; v < NVEC; v++) {
    ews_utf8_state_t end;
    int at = reject_index((const uint8_t *)vecs[v].s, vecs[v].n, &end);
    if (vecs[v].valid) {
      CHECK_EQ(at, -1);
      CHECK_EQ(end, EWS_UTF8_ACCEPT);
    } else {
      if (at != vecs[v].bad_at) fprintf(stderr, "  vector %zu\n", v);
      CHECK_EQ(at, vecs[v].bad_at);
    }
  }
}

/* Every 2-way and 3-way split gives the same final state class as the whole. */
TEST(every_split) {
  for (size_t v = 0; v < NVEC; v++) {
    const uint8_t *s = (const uint8_t *)vecs[v].s;
    size_t n = vecs[v].n;
    ews_utf8_state_t whole = ews_utf8_feed(EWS_UTF8_ACCEPT, s, n);
    for (size_t a = 0; a <= n; a++) {
      for (size_t b = a; b <= n; b++) {
        uint8_t *p1 = guard_copy(s, a), *p2 = guard_copy(s + a, b - a),
                *p3 = guard_copy(s + b, n - b);
        ews_utf8_state_t st = ews_utf8_feed(EWS_UTF8_ACCEPT, p1, a);
        st = ews_utf8_feed(st, p2, b - a);
        st = ews_utf8_feed(st, p3, n - b);
        CHECK_EQ(st, whole);
        guard_free(p1, a);
        guard_free(p2, b - a);
        guard_free(p3, n - b);
      }
    }
  }
}

TEST(reject_is_sticky) {
  ews_utf8_state_t st = ews_utf8_feed(EWS_UTF8_ACCEPT, (const uint8_t *)"\xFF", 1);
  CHECK_EQ(st, EWS_UTF8_REJECT);
  CHECK_EQ(ews_utf8_feed(st, (const uint8_t *)"abc", 3), EWS_UTF8_REJECT);
  CHECK_EQ(ews_utf8_feed(st, NULL, 0), EWS_UTF8_REJECT);
  CHECK_EQ(ews_utf8_feed(EWS_UTF8_ACCEPT, NULL, 0), EWS_UTF8_ACCEPT);
}

/* ASCII runs of every length with one bad byte at every position: exercises the
 * word-at-a-time path, its fallback and the tail. */
TEST(ascii_runs) {
  uint8_t buf[64];
  for (size_t n = 1; n <= 48; n++) {
    memset(buf, 'a', n);
    uint8_t *p = guard_copy(buf, n);
    CHECK(ews_utf8_valid(p, n));
    guard_free(p, n);
    for (size_t bad = 0; bad < n && bad <= 40; bad++) {
      static const uint8_t bads[] = {0x80, 0xC0, 0xFF, 0xF5};
      for (size_t b = 0; b < sizeof bads; b++) {
        memset(buf, 'a', n);
        buf[bad] = bads[b];
        p = guard_copy(buf, n);
        CHECK(!ews_utf8_valid(p, n));
        ews_utf8_state_t end;
        CHECK_EQ(reject_index(p, n, &end), (int)bad);
        guard_free(p, n);
      }
      /* A valid multibyte char at the same spot keeps the run valid. */
      if (bad + 3 <= n) {
        memset(buf, 'a', n);
        memcpy(buf + bad, "\xE2\x82\xAC", 3);
        p = guard_copy(buf, n);
        CHECK(ews_utf8_valid(p, n));
        guard_free(p, n);
      }
    }
  }
}

/* Every code point encoded by a simple reference encoder must be accepted, and
 * every surrogate rejected; checks all lead/first-continuation boundaries. */
static size_t encode(uint32_t cp, uint8_t *o) {
  if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
  if (cp < 0x800) {
    o[0] = (uint8_t)(0xC0 | cp >> 6);
    o[1] = (uint8_t)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (uint8_t)(0xE0 | cp >> 12);
    o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (uint8_t)(0xF0 | cp >> 18);
  o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (uint8_t)(0x80 | (cp & 0x3F));
  return 4;
}

TEST(all_code_points) {
  int bad_accept = 0, bad_reject = 0;
  for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
    uint8_t b[4];
    size_t n = encode(cp, b);
    int ok = ews_utf8_valid(b, n);
    int surrogate = cp >= 0xD800 && cp <= 0xDFFF;
    if (surrogate && ok) bad_accept++;
    if (!surrogate && !ok) bad_reject++;
  }
  CHECK_EQ(bad_accept, 0);
  CHECK_EQ(bad_reject, 0);
  /* Overlong forms of a sample of code points: 2-, 3- and 4-byte encodings of
   * values that fit in fewer bytes. */
  for (uint32_t cp = 0; cp < 0x10000; cp += 7) {
    uint8_t b[4];
    if (cp < 0x80) {
      b[0] = (uint8_t)(0xC0 | cp >> 6);
      b[1] = (uint8_t)(0x80 | (cp & 0x3F));
      CHECK(!ews_utf8_valid(b, 2));
    }
    if (cp < 0x800) {
      b[0] = 0xE0;
      b[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
      b[2] = (uint8_t)(0x80 | (cp & 0x3F));
      CHECK(!ews_utf8_valid(b, 3));
    }
    b[0] = 0xF0;
    b[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (uint8_t)(0x80 | (cp & 0x3F));
    CHECK(!ews_utf8_valid(b, 4));
  }
  /* Above U+10FFFF: F4 90.. up to F7 BF BF BF. */
  uint8_t b[4] = {0xF4, 0x90, 0x80, 0x80};
  CHECK(!ews_utf8_valid(b, 4));
  b[0] = 0xF7; b[1] = 0xBF; b[2] = 0xBF; b[3] = 0xBF;
  CHECK(!ews_utf8_valid(b, 4));
}

/* A long mixed buffer at every alignment, fed whole and in 1..17-byte pieces. */
TEST(long_mixed) {
  static const char unit[] = "The quick brown fox \xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5 "
                             "\xF0\x9F\x98\x80 jumps \xE2\x82\xAC.";
  uint8_t buf[4096 + 8];
  size_t n = 0;
  while (n + sizeof unit - 1 <= 4096) {
    memcpy(buf + 8 + n, unit, sizeof unit - 1);
    n += sizeof unit - 1;
  }
  for (size_t align = 0; align < 8; align++) {
    uint8_t tmp[4096 + 8];
    memcpy(tmp + align, buf + 8, n);
    CHECK(ews_utf8_valid(tmp + align, n));
    for (size_t step = 1; step <= 17; step++) {
      ews_utf8_state_t st = EWS_UTF8_ACCEPT;
      for (size_t i = 0; i < n; i += step)
        st = ews_utf8_feed(st, tmp + align + i, i + step <= n ? step : n - i);
      CHECK_EQ(st, EWS_UTF8_ACCEPT);
    }
    tmp[align + n - 1] = 0xC3; /* truncate the end */
    CHECK(!ews_utf8_valid(tmp + align, n));
  }
}

int main(void) {
  RUN(vectors_whole);
  RUN(fail_fast_position);
  RUN(every_split);
  RUN(reject_is_sticky);
  RUN(ascii_runs);
  RUN(all_code_points);
  RUN(long_mixed);
  return TEST_EXIT();
}
