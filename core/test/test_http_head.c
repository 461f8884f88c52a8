/* test_http_head.c — the HTTP/1.1 request-head parser (core/proto/http_head.c):
 * valid heads with their parsed fields, every error class with its exact code and
 * the byte at which it must be detected, partial input, and the two limits at their
 * boundaries. Every input goes through guard_copy so an over-read crashes. */
#include "proto/http_head.h"

#include "err.h"
#include "test.h"

static const ews_http_limits_t LIM = {8192, EWS_HTTP_MAX_HEADERS};

/* A byte string with an explicit length (inputs contain NULs). */
typedef struct {
  const char *s;
  size_t n;
} bytes_t;
#define B(lit) {lit, sizeof(lit) - 1}

static int parse_n(const char *s, size_t n, const ews_http_limits_t *lim) {
  ews_http_request_t req;
  char *g = guard_copy(s, n);
  int r = ews_http_parse(g, n, lim, &req);
  guard_free(g, n);
  return r;
}

/* Holds a guarded copy alive while the parsed request points into it. */
typedef struct {
  char *g;
  size_t n;
  int r;
  ews_http_request_t req;
} parsed_t;

static void parse_keep(parsed_t *p, const char *s, size_t n, const ews_http_limits_t *lim) {
  p->g = guard_copy(s, n);
  p->n = n;
  p->r = ews_http_parse(p->g, n, lim, &p->req);
}
static void parsed_free(parsed_t *p) { guard_free(p->g, p->n); }

static int span_is(const char *p, size_t n, const char *want) {
  return p != NULL && n == strlen(want) && memcmp(p, want, n) == 0;
}
static int hdr_is(const ews_http_request_t *r, size_t i, const char *name, const char *val) {
  return i < r->num_headers && span_is(r->headers[i].name, r->headers[i].name_len, name) &&
         span_is(r->headers[i].value, r->headers[i].value_len, val);
}

#define RFC_HEAD                                  \
  "GET /chat HTTP/1.1\r\n"                        \
  "Host: server.example.com\r\n"                  \
  "Upgrade: websocket\r\n"                        \
  "Connection: Upgrade\r\n"                       \
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" \
  "Origin: http://example.com\r\n"                \
  "Sec-WebSocket-Protocol: chat, superchat\r\n"   \
  "Sec-WebSocket-Version: 13\r\n"                 \
  "\r\n"

/* Valid heads: each is a complete head (no trailing bytes). */
static const bytes_t valid_heads[] = {
    B(RFC_HEAD),
    B("GET / HTTP/1.1\r\n\r\n"),
    B("GET / HTTP/1.0\r\n\r\n"),
    B("GET /a/b?x=1&y=%20z HTTP/1.1\r\nHost: h\r\n\r\n"),
    B("GET /? HTTP/1.1\r\nHost: h\r\n\r\n"),
    B("M-SEARCH /x HTTP/1.1\r\nX: \t v \t \r\n\r\n"),
    B("GET /~user/a;b=c,d!$&'()*+:@-._ HTTP/1.1\r\n\r\n"),
    B("GET / HTTP/1.1\r\nX-Empty:\r\nX-Ws:   \t\r\nX-Tab:\tv\r\n\r\n"),
    B("GET / HTTP/1.1\r\nX-Text: caf\xc3\xa9 \"q\" (c)\r\n\r\n"),
    B("GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09azAZ: x\r\n\r\n"),
};

TEST(valid_heads_and_partials) {
  for (size_t i = 0; i < sizeof valid_heads / sizeof valid_heads[0]; i++) {
    const bytes_t *h = &valid_heads[i];
    /* Every strict prefix wants more; the whole head is complete. */
    for (size_t k = 0; k < h->n; k++) {
      int r = parse_n(h->s, k, &LIM);
      if (r != 0) fprintf(stderr, "  case %zu prefix %zu -> %d\n", i, k, r);
      CHECK_EQ(r, 0);
    }
    CHECK_EQ(parse_n(h->s, h->n, &LIM), h->n);
    /* Bytes after the head (a first frame, a pipelined request) are not consumed. */
    char buf[1024];
    memcpy(buf, h->s, h->n);
    memcpy(buf + h->n, "\x81\x85garbage\r\n\r\n", 13);
    CHECK_EQ(parse_n(buf, h->n + 13, &LIM), h->n);
    for (size_t extra = 1; extra <= 13; extra++)
      CHECK_EQ(parse_n(buf, h->n + extra, &LIM), h->n);
  }
}

TEST(rfc_fields) {
  parsed_t p;
  parse_keep(&p, RFC_HEAD, sizeof RFC_HEAD - 1, &LIM);
  CHECK_EQ(p.r, sizeof RFC_HEAD - 1);
  CHECK(span_is(p.req.method, p.req.method_len, "GET"));
  CHECK(span_is(p.req.target, p.req.target_len, "/chat"));
  CHECK(span_is(p.req.path, p.req.path_len, "/chat"));
  CHECK(p.req.query == NULL);
  CHECK_EQ(p.req.query_len, 0);
  CHECK_EQ(p.req.version_minor, 1);
  CHECK_EQ(p.req.num_headers, 7);
  CHECK(hdr_is(&p.req, 0, "Host", "server.example.com"));
  CHECK(hdr_is(&p.req, 1, "Upgrade", "websocket"));
  CHECK(hdr_is(&p.req, 2, "Connection", "Upgrade"));
  CHECK(hdr_is(&p.req, 3, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="));
  CHECK(hdr_is(&p.req, 4, "Origin", "http://example.com"));
  CHECK(hdr_is(&p.req, 5, "Sec-WebSocket-Protocol", "chat, superchat"));
  CHECK(hdr_is(&p.req, 6, "Sec-WebSocket-Version", "13"));

  const ews_http_header_t *h = ews_http_header(&p.req, "sec-websocket-KEY");
  CHECK(h == &p.req.headers[3]);
  CHECK(ews_http_header(&p.req, "Sec-WebSocket-Ke") == NULL);
  CHECK(ews_http_header(&p.req, "Sec-WebSocket-Keys") == NULL);
  CHECK(ews_http_header(&p.req, "X") == NULL);
  CHECK_EQ(ews_http_header_count(&p.req, "HOST"), 1);
  CHECK_EQ(ews_http_header_count(&p.req, "Cookie"), 0);
  /* Pointers point into the caller's buffer. */
  CHECK(p.req.method == p.g);
  CHECK(p.req.headers[0].value == p.g + strlen("GET /chat HTTP/1.1\r\nHost: "));
  parsed_free(&p);
}

TEST(target_and_query) {
  static const char *in = "GET /a/b?x=1&y=%20z HTTP/1.1\r\nHost: h\r\n\r\n";
  parsed_t p;
  parse_keep(&p, in, strlen(in), &LIM);
  CHECK_EQ(p.r, strlen(in));
  CHECK(span_is(p.req.target, p.req.target_len, "/a/b?x=1&y=%20z"));
  CHECK(span_is(p.req.path, p.req.path_len, "/a/b"));
  CHECK(span_is(p.req.query, p.req.query_len, "x=1&y=%20z"));
  parsed_free(&p);

  in = "GET /? HTTP/1.1\r\n\r\n"; /* empty query is not "no query" */
  parse_keep(&p, in, strlen(in), &LIM);
  CHECK_EQ(p.r, strlen(in));
  CHECK(span_is(p.req.path, p.req.path_len, "/"));
  CHECK(p.req.query != NULL && p.req.query_len == 0);
  parsed_free(&p);

  in = "GET /p?a?b=/c HTTP/1.1\r\n\r\n"; /* only the first '?' splits */
  parse_keep(&p, in, strlen(in), &LIM);
  CHECK_EQ(p.r, strlen(in));
  CHECK(span_is(p.req.path, p.req.path_len, "/p"));
  CHECK(span_is(p.req.query, p.req.query_len, "a?b=/c"));
  parsed_free(&p);

  in = "GET / HTTP/1.0\r\n\r\n";
  parse_keep(&p, in, strlen(in), &LIM);
  CHECK_EQ(p.r, strlen(in));
  CHECK_EQ(p.req.version_minor, 0);
  CHECK_EQ(p.req.num_headers, 0);
  parsed_free(&p);
}

TEST(value_trimming) {
  static const char in[] =
      "GET / HTTP/1.1\r\n"
      "A:   \t value with  inner \t space \t  \r\n"
      "B:\r\n"
      "C: \t \r\n"
      "D:x\r\n"
      "E: caf\xc3\xa9\r\n"
      "\r\n";
  parsed_t p;
  parse_keep(&p, in, sizeof in - 1, &LIM);
  CHECK_EQ(p.r, sizeof in - 1);
  CHECK_EQ(p.req.num_headers, 5);
  CHECK(hdr_is(&p.req, 0, "A", "value with  inner \t space"));
  CHECK(hdr_is(&p.req, 1, "B", ""));
  CHECK(hdr_is(&p.req, 2, "C", ""));
  CHECK(hdr_is(&p.req, 3, "D", "x"));
  CHECK(hdr_is(&p.req, 4, "E", "caf\xc3\xa9"));
  parsed_free(&p);
}

/* Error cases: `ok` is still a valid (incomplete) prefix; the first byte of `rest`
 * is where the error must be reported. So every prefix up to ok must answer 0 and
 * every longer prefix must answer `err`: this checks early detection and that the
 * verdict never changes as bytes arrive. */
typedef struct {
  bytes_t ok, rest;
  int err;
} err_case_t;

#define RL "GET / HTTP/1.1\r\n"
static const err_case_t err_cases[] = {
    /* request line: method */
    {B(""), B(" / HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},          /* empty method */
    {B("G"), B("(T / HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},        /* non-token byte */
    {B("GET"), B("\t/ HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},       /* HTAB is not SP */
    {B("GE"), B("\0T / HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},      /* NUL */
    {B(""), B("\r\nGET / HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},    /* leading empty line */
    {B(""), B("\nGET / HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},
    /* request line: target */
    {B("GET "), B(" / HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},       /* two spaces */
    {B("GET "), B("http://h/ HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD}, /* absolute-form */
    {B("OPTIONS "), B("* HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},    /* asterisk-form */
    {B("CONNECT "), B("h:443 HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD}, /* authority-form */
    {B("GET /a"), B("\x01 HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},
    {B("GET /a"), B("\x7f HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},
    {B("GET /a"), B("\x80 HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},
    {B("GET /a"), B("\0 HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},
    {B("GET /a"), B("\tb HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},
    {B("GET /a"), B("\n HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},
    {B("GET / "), B(" HTTP/1.1\r\n\r\n"), EWS_EHTTP_BAD},       /* two spaces */
    /* request line: version */
    {B("GET / "), B("\r\n\r\n"), EWS_EHTTP_BAD},                /* empty version */
    {B("GET / "), B("http/1.1\r\n\r\n"), EWS_EHTTP_BAD},
    {B("GET / HTTP"), B(" /1.1\r\n\r\n"), EWS_EHTTP_BAD},
    {B("GET / HTTP/"), B("x.1\r\n\r\n"), EWS_EHTTP_BAD},
    {B("GET / HTTP/1"), B("1.1\r\n\r\n"), EWS_EHTTP_BAD},       /* HTTP/11.1 */
    {B("GET / HTTP/1"), B("\r\n\r\n"), EWS_EHTTP_BAD},
    {B("GET / HTTP/1."), B("x\r\n\r\n"), EWS_EHTTP_BAD},
    {B("GET / HTTP/1.1"), B("1\r\n\r\n"), EWS_EHTTP_BAD},       /* HTTP/1.11 */
    {B("GET / HTTP/1.1"), B(" \r\n\r\n"), EWS_EHTTP_BAD},       /* trailing space */
    {B("GET / HTTP/1.1"), B("\n\r\n"), EWS_EHTTP_BAD},          /* bare LF */
    {B("GET / HTTP/1.1\r"), B("\r\n\r\n"), EWS_EHTTP_BAD},
    {B("GET / HTTP/"), B("2.0\r\n\r\n"), EWS_EHTTP_VERSION},
    {B("GET / HTTP/"), B("0.9\r\n\r\n"), EWS_EHTTP_VERSION},
    {B("GET / HTTP/"), B("3\r\n\r\n"), EWS_EHTTP_VERSION},
    {B("GET / HTTP/1."), B("2\r\n\r\n"), EWS_EHTTP_VERSION},
    {B("GET / HTTP/1."), B("9\r\n\r\n"), EWS_EHTTP_VERSION},
    {B("GET /"), B("\r\n\r\n"), EWS_EHTTP_VERSION},             /* HTTP/0.9 style */
    {B("GET /index.html"), B("\r\n"), EWS_EHTTP_VERSION},
    /* header names */
    {B(RL "Host"), B(" : h\r\n\r\n"), EWS_EHTTP_BAD},          /* SP before colon */
    {B(RL "Host"), B("\t: h\r\n\r\n"), EWS_EHTTP_BAD},         /* HTAB before colon */
    {B(RL "Host"), B(" h\r\n\r\n"), EWS_EHTTP_BAD},            /* no colon */
    {B(RL "Host"), B("\r\n\r\n"), EWS_EHTTP_BAD},
    {B(RL), B(": h\r\n\r\n"), EWS_EHTTP_BAD},                   /* empty name */
    {B(RL "X"), B("@Y: z\r\n\r\n"), EWS_EHTTP_BAD},
    {B(RL "X"), B("(: z\r\n\r\n"), EWS_EHTTP_BAD},
    {B(RL "X"), B("\0: z\r\n\r\n"), EWS_EHTTP_BAD},
    {B(RL "X"), B("\xc3\xa9: z\r\n\r\n"), EWS_EHTTP_BAD},
    /* header values */
    {B(RL "X: a"), B("\x01" "b\r\n\r\n"), EWS_EHTTP_BAD},
    {B(RL "X: a"), B("\x7f\r\n\r\n"), EWS_EHTTP_BAD},
    {B(RL "X: a"), B("\0b\r\n\r\n"), EWS_EHTTP_BAD},
    {B(RL "X: a"), B("\x1b[0m\r\n\r\n"), EWS_EHTTP_BAD},
    {B(RL "X: "), B("\x0b\r\n\r\n"), EWS_EHTTP_BAD},
    {B(RL "X: a\r"), B("b\r\n\r\n"), EWS_EHTTP_BAD},           /* bare CR */
    {B(RL "X: a\r"), B("\r\n\r\n"), EWS_EHTTP_BAD},
    {B(RL "X: a"), B("\nY: b\r\n\r\n"), EWS_EHTTP_BAD},        /* bare LF */
    {B(RL "X:"), B("\n\r\n"), EWS_EHTTP_BAD},
    /* line structure */
    {B(RL "X: a\r\n"), B(" b\r\n\r\n"), EWS_EHTTP_BAD},        /* obs-fold SP */
    {B(RL "X: a\r\n"), B("\tb\r\n\r\n"), EWS_EHTTP_BAD},       /* obs-fold HTAB */
    {B(RL), B(" X: a\r\n\r\n"), EWS_EHTTP_BAD},                /* WS after start line */
    {B(RL "X: a\r\n"), B("\n"), EWS_EHTTP_BAD},                /* bare LF ends head */
    {B(RL), B("\n"), EWS_EHTTP_BAD},
    {B(RL "X: a\r\n\r"), B("\r"), EWS_EHTTP_BAD},
    {B(RL "X: a\r\n\r"), B("X"), EWS_EHTTP_BAD},
    {B(RL "X: a\r\n"), B("\0"), EWS_EHTTP_BAD},
};

TEST(errors_exact_and_early) {
  for (size_t i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
    const err_case_t *c = &err_cases[i];
    char buf[256];
    size_t n = c->ok.n + c->rest.n;
    memcpy(buf, c->ok.s, c->ok.n);
    memcpy(buf + c->ok.n, c->rest.s, c->rest.n);
    int bad = 0;
    for (size_t k = 0; k <= n; k++) {
      int want = k <= c->ok.n ? 0 : c->err;
      int got = parse_n(buf, k, &LIM);
      if (got != want) {
        fprintf(stderr, "  error case %zu prefix %zu: got %d (%s) want %d\n", i, k, got,
                ews_err_name(got), want);
        bad = 1;
      }
    }
    CHECK(!bad);
    /* The HTTP status each error maps to. */
    int st = ews_err_http_status(c->err);
    CHECK(st == 400 || st == 505);
  }
}

/* Builds "GET / HTTP/1.1\r\n" + nh headers "H<i>: v\r\n" + "\r\n" into buf. */
static size_t build_head(char *buf, size_t cap, size_t nh, size_t pad) {
  size_t n = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\n");
  for (size_t i = 0; i < nh; i++) n += (size_t)snprintf(buf + n, cap - n, "H%zu: v\r\n", i);
  if (pad) {
    n += (size_t)snprintf(buf + n, cap - n, "Pad: ");
    memset(buf + n, 'p', pad);
    n += pad;
    n += (size_t)snprintf(buf + n, cap - n, "\r\n");
  }
  n += (size_t)snprintf(buf + n, cap - n, "\r\n");
  return n;
}

TEST(max_head_boundary) {
  char buf[4096];
  size_t n = build_head(buf, sizeof buf, 3, 1000);
  ews_http_limits_t lim = {n, EWS_HTTP_MAX_HEADERS};
  /* Exactly at the limit: accepted, even with more bytes after it. */
  CHECK_EQ(parse_n(buf, n, &lim), n);
  memcpy(buf + n, "GET", 3);
  CHECK_EQ(parse_n(buf, n + 3, &lim), n);
  CHECK_EQ(parse_n(buf, n - 1, &lim), 0);

  /* One byte under: the head can never fit. */
  lim.max_head = n - 1;
  CHECK_EQ(parse_n(buf, n - 2, &lim), 0);
  CHECK_EQ(parse_n(buf, n - 1, &lim), EWS_EHTTP_TOO_LARGE);
  CHECK_EQ(parse_n(buf, n, &lim), EWS_EHTTP_TOO_LARGE);
  CHECK_EQ(parse_n(buf, n + 3, &lim), EWS_EHTTP_TOO_LARGE);

  /* Bytes beyond max_head are never looked at: a bad byte there still means "too
   * large", while a bad byte inside the window is a syntax error. */
  lim.max_head = 100;
  buf[150] = '\0';
  CHECK_EQ(parse_n(buf, 200, &lim), EWS_EHTTP_TOO_LARGE);
  buf[150] = 'p';
  buf[60] = '\x01';
  CHECK_EQ(parse_n(buf, 200, &lim), EWS_EHTTP_BAD);
  CHECK_EQ(parse_n(buf, 60, &lim), 0);

  /* Tiny limits. */
  lim.max_head = 0;
  CHECK_EQ(parse_n(buf, 0, &lim), EWS_EHTTP_TOO_LARGE);
  lim.max_head = 1;
  CHECK_EQ(parse_n(buf, 0, &lim), 0);
  CHECK_EQ(parse_n(buf, 1, &lim), EWS_EHTTP_TOO_LARGE);
  CHECK_EQ(parse_n("\r", 1, &lim), EWS_EHTTP_BAD);
  lim.max_head = 18;
  CHECK_EQ(parse_n("GET / HTTP/1.1\r\n\r\n", 18, &lim), 18);
  lim.max_head = 17;
  CHECK_EQ(parse_n("GET / HTTP/1.1\r\n\r\n", 18, &lim), EWS_EHTTP_TOO_LARGE);
}

TEST(max_headers_boundary) {
  char buf[4096];
  for (size_t m = 0; m <= 5; m++) {
    size_t n = build_head(buf, sizeof buf, m, 0);
    ews_http_limits_t lim = {8192, m};
    parsed_t p;
    parse_keep(&p, buf, n, &lim);
    CHECK_EQ(p.r, n);
    CHECK_EQ(p.req.num_headers, m);
    parsed_free(&p);
    if (m > 0) {
      lim.max_headers = m - 1;
      CHECK_EQ(parse_n(buf, n, &lim), EWS_EHTTP_HEADERS);
      /* Early: the first byte of the extra line is enough. */
      size_t at = (size_t)(strstr(buf, "\r\n\r\n") - buf); /* end of last header */
      char *last = buf;
      for (char *q = buf; q < buf + at; q++)
        if (q[0] == '\r' && q[1] == '\n') last = q + 2;
      size_t start = (size_t)(last - buf);
      CHECK_EQ(parse_n(buf, start, &lim), 0);
      CHECK_EQ(parse_n(buf, start + 1, &lim), EWS_EHTTP_HEADERS);
    }
  }

  /* The hard cap: 64 is fine, 65 is too many even if the limit says more. */
  size_t n = build_head(buf, sizeof buf, EWS_HTTP_MAX_HEADERS, 0);
  ews_http_limits_t lim = {8192, 1000};
  parsed_t p;
  parse_keep(&p, buf, n, &lim);
  CHECK_EQ(p.r, n);
  CHECK_EQ(p.req.num_headers, EWS_HTTP_MAX_HEADERS);
  CHECK(hdr_is(&p.req, 63, "H63", "v"));
  parsed_free(&p);
  n = build_head(buf, sizeof buf, EWS_HTTP_MAX_HEADERS + 1, 0);
  CHECK_EQ(parse_n(buf, n, &lim), EWS_EHTTP_HEADERS);
  /* When the window ends before the extra header is reached, it is "too large". */
  lim.max_head = 30;
  CHECK_EQ(parse_n(buf, n, &lim), EWS_EHTTP_TOO_LARGE);
}

TEST(bad_args) {
  ews_http_request_t req;
  CHECK_EQ(ews_http_parse("GET", 3, NULL, &req), EWS_EINVAL);
  CHECK_EQ(ews_http_parse("GET", 3, &LIM, NULL), EWS_EINVAL);
  CHECK_EQ(ews_http_parse(NULL, 3, &LIM, &req), EWS_EINVAL);
  CHECK_EQ(ews_http_parse(NULL, 0, &LIM, &req), 0);
}

static int list_is(const char *v, const char *const *want, size_t nwant) {
  size_t n = strlen(v), pos = 0, i = 0, len;
  const char *e;
  char *g = guard_copy(v, n);
  int ok = 1;
  while (ews_http_list_next(g, n, &pos, &e, &len)) {
    if (i >= nwant || !span_is(e, len, want[i])) ok = 0;
    i++;
  }
  if (i != nwant || pos != n) ok = 0;
  CHECK(!ews_http_list_next(g, n, &pos, &e, &len)); /* stays at the end */
  guard_free(g, n);
  return ok;
}

TEST(lists) {
  {
    static const char *const w[] = {"keep-alive", "Upgrade"};
    CHECK(list_is("keep-alive, Upgrade", w, 2));
    CHECK(list_is(" ,keep-alive ,\t, Upgrade\t,,", w, 2));
  }
  {
    static const char *const w[] = {"a", "b=\"x, y\"", "c"};
    CHECK(list_is("a, b=\"x, y\", c", w, 3));
  }
  {
    static const char *const w[] = {"a=\"q\\\", r\"", "z"};
    CHECK(list_is("a=\"q\\\", r\", z", w, 2)); /* escaped quote does not close */
  }
  {
    static const char *const w[] = {"\"unterminated, x"};
    CHECK(list_is("\"unterminated, x", w, 1));
  }
  CHECK(list_is("", NULL, 0));
  CHECK(list_is(" , ,\t", NULL, 0));
  {
    static const char *const w[] = {"x\\"};
    CHECK(list_is("x\\", w, 1));
  }

  CHECK(ews_http_list_has("keep-alive, Upgrade", 19, "upgrade"));
  CHECK(ews_http_list_has("WebSocket", 9, "websocket"));
  CHECK(ews_http_list_has("h2c,  websocket ", 16, "websocket"));
  CHECK(!ews_http_list_has("websockets", 10, "websocket"));
  CHECK(!ews_http_list_has("websocket/13", 12, "websocket"));
  CHECK(!ews_http_list_has("upgradex, xupgrade", 18, "upgrade"));
  CHECK(!ews_http_list_has("", 0, "upgrade"));
  CHECK(!ews_http_list_has("\"a, upgrade\"", 12, "upgrade"));
}

TEST(reasons) {
  static const struct {
    int code;
    const char *reason;
  } t[] = {
      {101, "Switching Protocols"},   {200, "OK"},
      {204, "No Content"},            {400, "Bad Request"},
      {401, "Unauthorized"},          {403, "Forbidden"},
      {404, "Not Found"},             {405, "Method Not Allowed"},
      {408, "Request Timeout"},       {413, "Content Too Large"},
      {426, "Upgrade Required"},      {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {500, "Internal Server Error"}, {503, "Service Unavailable"},
      {505, "HTTP Version Not Supported"},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) CHECK_STR(ews_http_reason(t[i].code), t[i].reason);
  CHECK(ews_http_reason(0) != NULL);
  CHECK(ews_http_reason(-1) != NULL);
  CHECK(ews_http_reason(499) != NULL);
  CHECK(ews_http_reason(1000) != NULL);
}

int main(void) {
  RUN(valid_heads_and_partials);
  RUN(rfc_fields);
  RUN(target_and_query);
  RUN(value_trimming);
  RUN(errors_exact_and_early);
  RUN(max_head_boundary);
  RUN(max_headers_boundary);
  RUN(bad_args);
  RUN(lists);
  RUN(reasons);
  return TEST_EXIT();
}
