/* test_static_path.c — static files' I/O-free half (proto/static_path.c): a table of
 * request paths below a mount and what each becomes (the relative path, or 400 / 404 /
 * 414), every escape attempt refused, every byte value through the decoder, the input
 * read up to a guard page and never past it; content types by extension; entity tags
 * and If-None-Match under the weak comparison. */
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "proto/static_path.h"
#include "test.h"

typedef struct {
  const char *in;
  int want; /* 0 or the error */
  const char *out;
} pvec_t;

static const pvec_t paths[] = {
    {"", 0, ""},
    {"/", 0, ""},
    {"/index.html", 0, "index.html"},
    {"/css/app.css", 0, "css/app.css"},
    {"/docs/", 0, "docs/"},
    {"/a/b/c/", 0, "a/b/c/"},
    {"/%41b%63", 0, "Abc"},
    {"/with%20space.txt", 0, "with space.txt"},
    {"/caf%C3%A9.txt", 0, "caf\xc3\xa9.txt"},
    {"/a..b", 0, "a..b"},          /* dots inside a name are fine */
    {"/a./b", 0, "a./b"},
    {"/...x", EWS_EHTTP_NOT_FOUND, NULL}, /* starts with a dot: hidden */
    {"/.git/config", EWS_EHTTP_NOT_FOUND, NULL},
    {"/.env", EWS_EHTTP_NOT_FOUND, NULL},
    {"/a/.hidden/", EWS_EHTTP_NOT_FOUND, NULL},
    {"/%2eenv", EWS_EHTTP_NOT_FOUND, NULL},
    /* escapes */
    {"/..", EWS_EHTTP_PATH, NULL},
    {"/../etc/passwd", EWS_EHTTP_PATH, NULL},
    {"/a/../../etc/passwd", EWS_EHTTP_PATH, NULL},
    {"/a/..", EWS_EHTTP_PATH, NULL},
    {"/a/../", EWS_EHTTP_PATH, NULL},
    {"/.", EWS_EHTTP_PATH, NULL},
    {"/./a", EWS_EHTTP_PATH, NULL},
    {"/%2e%2e/etc/passwd", EWS_EHTTP_PATH, NULL},
    {"/%2E%2E/etc/passwd", EWS_EHTTP_PATH, NULL},
    {"/.%2e/x", EWS_EHTTP_PATH, NULL},
    {"/%2e./x", EWS_EHTTP_PATH, NULL},
    {"/%2e", EWS_EHTTP_PATH, NULL},
    {"/a%2f..%2f..%2fetc%2fpasswd", EWS_EHTTP_PATH, NULL},
    {"/..%2fetc", EWS_EHTTP_PATH, NULL},
    {"/a%2Fb", EWS_EHTTP_PATH, NULL},
    {"/a%5cb", EWS_EHTTP_PATH, NULL},
    {"/a\\..\\b", EWS_EHTTP_PATH, NULL},
    {"/..\\etc", EWS_EHTTP_PATH, NULL},
    {"/%252e%252e/x", 0, "%2e%2e/x"}, /* decoded once: a file literally named so */
    {"/a//b", EWS_EHTTP_PATH, NULL},
    {"//etc/passwd", EWS_EHTTP_PATH, NULL},
    {"/index.html%00.png", EWS_EHTTP_PATH, NULL},
    {"/%00", EWS_EHTTP_PATH, NULL},
    {"/a%0d%0aSet-Cookie:x", EWS_EHTTP_PATH, NULL},
    {"/a%7f", EWS_EHTTP_PATH, NULL},
    {"/.x/%00", EWS_EHTTP_PATH, NULL}, /* a NUL wins over hidden */
    /* malformed escapes */
    {"/%", EWS_EHTTP_PATH, NULL},
    {"/%4", EWS_EHTTP_PATH, NULL},
    {"/%zz", EWS_EHTTP_PATH, NULL},
    {"/a%g0", EWS_EHTTP_PATH, NULL},
    {"no-slash", EWS_EHTTP_PATH, NULL},
};

TEST(paths) {
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
    const pvec_t *v = &paths[i];
    size_t n = strlen(v->in);
    char *in = guard_copy(v->in, n); /* a read past the path crashes */
    char out[EWS_STATIC_MAX_PATH + 1];
    size_t ol = 12345;
    int r = ews_static_path(in, n, out, n + 1, &ol);
    if (r != v->want) fprintf(stderr, "  path %s: got %d, want %d\n", v->in, r, v->want);
    CHECK_EQ(r, v->want);
    if (v->want == 0 && r == 0) {
      CHECK_EQ(ol, strlen(v->out));
      CHECK_STR(out, v->out);
    }
    guard_free(in, n);
  }
}

/* A raw NUL inside the path (the head parser refuses it first; this is the second
 * line of defence). */
TEST(raw_nul) {
  static const char p[] = "/index.html\0.png";
  char out[64];
  size_t ol;
  CHECK_EQ(ews_static_path(p, sizeof p - 1, out, sizeof out, &ol), EWS_EHTTP_PATH);
}

TEST(length_limit) {
  char *p = malloc(EWS_STATIC_MAX_PATH + 2);
  char *out = malloc(EWS_STATIC_MAX_PATH + 2);
  p[0] = '/';
  memset(p + 1, 'a', EWS_STATIC_MAX_PATH + 1);
  size_t ol;
  /* exactly the limit: fine (a 1023-byte name is the file system's business) */
  CHECK_EQ(ews_static_path(p, EWS_STATIC_MAX_PATH, out, EWS_STATIC_MAX_PATH + 1, &ol), 0);
  CHECK_EQ(ol, EWS_STATIC_MAX_PATH - 1);
  CHECK_EQ(ews_static_path(p, EWS_STATIC_MAX_PATH + 1, out, EWS_STATIC_MAX_PATH + 2, &ol),
           EWS_EHTTP_URI_TOO_LONG);
  /* the output must have room for the input */
  CHECK_EQ(ews_static_path(p, 10, out, 10, &ol), EWS_EINVAL);
  CHECK_EQ(ews_static_path(NULL, 1, out, 10, &ol), EWS_EINVAL);
  free(p);
  free(out);
}

/* Every byte value, raw and percent-encoded, as a one-character name: what passes
 * is exactly the visible bytes other than '/', '\', '%' raw (an escape start) and
 * a lone '.', and the decoded byte comes out unchanged. */
TEST(every_byte) {
  for (int b = 0; b < 256; b++) {
    char raw[8], out[8];
    size_t ol;
    /* percent-encoded */
    int n = snprintf(raw, sizeof raw, "/x%%%02X", b);
    int r = ews_static_path(raw, (size_t)n, out, sizeof out, &ol);
    int ok = b >= 0x20 && b != 0x7f && b != '/' && b != '\\';
    CHECK_EQ(r == 0, ok);
    if (ok && r == 0) {
      CHECK_EQ(ol, 2);
      CHECK_EQ((unsigned char)out[1], b);
    }
    /* raw, as the second byte of a name */
    raw[0] = '/';
    raw[1] = 'x';
    raw[2] = (char)b;
    r = ews_static_path(raw, 3, out, sizeof out, &ol);
    ok = b >= 0x20 && b != 0x7f && b != '\\' && b != '%';
    CHECK_EQ(r == 0, ok);
    if (b == '/' && r == 0) CHECK_STR(out, "x/");
  }
}

TEST(content_types) {
  static const struct {
    const char *name, *type;
  } v[] = {
      {"index.html", "text/html; charset=utf-8"},
      {"INDEX.HTM", "text/html; charset=utf-8"},
      {"app.css", "text/css; charset=utf-8"},
      {"edgews.js", "text/javascript; charset=utf-8"},
      {"mod.mjs", "text/javascript; charset=utf-8"},
      {"data.json", "application/json"},
      {"edgews.js.map", "application/json"},
      {"logo.svg", "image/svg+xml"},
      {"a.png", "image/png"},
      {"a.JPG", "image/jpeg"},
      {"a.jpeg", "image/jpeg"},
      {"favicon.ico", "image/x-icon"},
      {"notes.txt", "text/plain; charset=utf-8"},
      {"m.wasm", "application/wasm"},
      {"edgews.d.ts", "application/octet-stream"},
      {"Makefile", "application/octet-stream"},
      {"dir.html/file", "application/octet-stream"}, /* the extension is the name's */
      {"a.", "application/octet-stream"},
      {"", "application/octet-stream"},
      {"x.htmlx", "application/octet-stream"},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
    CHECK_STR(ews_static_content_type(v[i].name, strlen(v[i].name)), v[i].type);
}

TEST(etags) {
  char tag[64];
  int n = ews_static_etag(tag, sizeof tag, 0x1234, 5, 0xabc);
  CHECK_EQ(n, (int)strlen("\"1234-5-abc\""));
  CHECK_STR(tag, "\"1234-5-abc\"");
  CHECK_EQ(ews_static_etag(tag, 8, 0x1234, 5, 0xabc), EWS_EINVAL);
  n = ews_static_etag(tag, sizeof tag, UINT64_MAX, UINT64_MAX, UINT64_MAX);
  CHECK(n > 0 && n < 64);
  /* distinct versions, distinct tags */
  char a[64], b[64];
  ews_static_etag(a, sizeof a, 1, 10, 100);
  ews_static_etag(b, sizeof b, 1, 10, 101);
  CHECK(strcmp(a, b) != 0);
  ews_static_etag(b, sizeof b, 2, 10, 100);
  CHECK(strcmp(a, b) != 0);
}

TEST(if_none_match) {
  static const char et[] = "\"1-2-3\"";
  static const struct {
    const char *v;
    int want;
  } v[] = {
      {"\"1-2-3\"", 1},
      {"W/\"1-2-3\"", 1},
      {" \"x\" , \"1-2-3\" ", 1},
      {"\"x\",W/\"1-2-3\"", 1},
      {"*", 1},
      {" * ", 1},
      {"\"1-2-4\"", 0},
      {"1-2-3", 0},          /* not quoted */
      {"\"1-2-3", 0},        /* unterminated */
      {"\"1-2-3\"x", 0},
      {"", 0},
      {"\"x\" \"1-2-3\"", 0}, /* a missing comma: malformed */
      {"*, \"x\"", 0},
      {",,\"1-2-3\"", 1},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    size_t n = strlen(v[i].v);
    char *in = guard_copy(v[i].v, n);
    int r = ews_static_etag_match(in, n, et, sizeof et - 1);
    if (r != v[i].want) fprintf(stderr, "  If-None-Match %s: got %d\n", v[i].v, r);
    CHECK_EQ(r, v[i].want);
    guard_free(in, n);
  }
  /* our tag given with W/ compares the same way */
  CHECK_EQ(ews_static_etag_match("\"1-2-3\"", 7, "W/\"1-2-3\"", 9), 1);
}

int main(void) {
  RUN(paths);
  RUN(raw_nul);
  RUN(length_limit);
  RUN(every_byte);
  RUN(content_types);
  RUN(etags);
  RUN(if_none_match);
  return TEST_EXIT();
}
