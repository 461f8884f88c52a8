/* test_handshake.c — the WebSocket opening handshake (core/proto/handshake.c): the
 * RFC 6455 accept vector, upgrade validation with each failure's exact code, token
 * case-insensitivity, subprotocol choice, and the exact bytes of the 101 and error
 * responses, including output buffers exactly one byte too small. Requests are parsed
 * from guarded copies; responses are written into buffers that end at a PROT_NONE
 * page, so a write past cap crashes. */
#include "proto/handshake.h"

#include "err.h"
#include "test.h"

static const ews_http_limits_t LIM = {8192, EWS_HTTP_MAX_HEADERS};

#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* Parses `head` (must be complete) and runs the upgrade check on it. */
static int check_head(const char *head, ews_upgrade_t *up_out, char **keep) {
  size_t n = strlen(head);
  char *g = guard_copy(head, n);
  ews_http_request_t req;
  int r = ews_http_parse(g, n, &LIM, &req);
  if (r != (int)n) {
    fprintf(stderr, "  head did not parse (%d): %s\n", r, head);
    guard_free(g, n);
    return 1000;
  }
  ews_upgrade_t up;
  r = ews_upgrade_check(&req, &up);
  if (up_out) *up_out = up;
  if (keep) *keep = g;
  else guard_free(g, n);
  return r;
}

static int span_is(const char *p, size_t n, const char *want) {
  return p != NULL && n == strlen(want) && memcmp(p, want, n) == 0;
}

TEST(accept_vector) {
  char out[EWS_ACCEPT_LEN + 1];
  memset(out, 'x', sizeof out);
  char *key = guard_copy(RFC_KEY, 24);
  CHECK_EQ(ews_accept_key(key, 24, out), 0);
  CHECK_STR(out, RFC_ACCEPT);
  guard_free(key, 24);
  CHECK_EQ(ews_accept_key(NULL, 0, out), EWS_EINVAL);
  char big[65];
  memset(big, 'A', sizeof big);
  CHECK_EQ(ews_accept_key(big, 65, out), EWS_EINVAL);
  CHECK_EQ(ews_accept_key(big, 64, out), 0);
  CHECK_EQ(strlen(out), EWS_ACCEPT_LEN);
}

#define L_GET "GET /chat HTTP/1.1\r\n"
#define L_HOST "Host: server.example.com\r\n"
#define L_UPG "Upgrade: websocket\r\n"
#define L_CONN "Connection: Upgrade\r\n"
#define L_KEY "Sec-WebSocket-Key: " RFC_KEY "\r\n"
#define L_VER "Sec-WebSocket-Version: 13\r\n"
#define GOOD L_GET L_HOST L_UPG L_CONN L_KEY L_VER

TEST(upgrade_ok) {
  static const char head[] = L_GET L_HOST L_UPG L_CONN L_KEY
      "Origin: http://example.com\r\n"
      "Sec-WebSocket-Protocol: chat, superchat\r\n"
      "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
      "Sec-WebSocket-Protocol: ignored\r\n" L_VER "\r\n";
  ews_upgrade_t up;
  char *g = NULL;
  CHECK_EQ(check_head(head, &up, &g), 0);
  CHECK(span_is(up.key, up.key_len, RFC_KEY));
  CHECK(span_is(up.host, up.host_len, "server.example.com"));
  CHECK(span_is(up.origin, up.origin_len, "http://example.com"));
  CHECK(span_is(up.protocols, up.protocols_len, "chat, superchat"));
  CHECK(span_is(up.extensions, up.extensions_len,
                "permessage-deflate; client_max_window_bits"));
  if (g) guard_free(g, strlen(head));

  /* Minimal: no protocol, extensions or origin. */
  CHECK_EQ(check_head(GOOD "\r\n", &up, NULL), 0);
  CHECK(up.protocols == NULL && up.protocols_len == 0);
  CHECK(up.extensions == NULL);
  CHECK(up.origin == NULL);
}

TEST(upgrade_case_insensitive) {
  static const char *const ok[] = {
      "GET / HTTP/1.1\r\nhost: h\r\nupgrade: WebSocket\r\nconnection: UPGRADE\r\n"
      "sec-websocket-key: " RFC_KEY "\r\nsec-websocket-version: 13\r\n\r\n",
      "GET / HTTP/1.1\r\nHOST: h\r\nUPGRADE: WEBSOCKET\r\nCONNECTION: keep-alive, Upgrade\r\n"
      "SEC-WEBSOCKET-KEY: " RFC_KEY "\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n",
      /* lists, whitespace, repeated field lines */
      "GET /x?y HTTP/1.1\r\nHost: h:8080\r\nUpgrade: h2c , websocket\r\n"
      "Connection: keep-alive\r\nConnection: ,upgrade,\r\n"
      "Sec-WebSocket-Key:\t " RFC_KEY " \t\r\nSec-WebSocket-Version:  13 \r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: foo\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\n" L_KEY L_VER "\r\n",
      /* any 16-byte key, not only the RFC's */
      "GET / HTTP/1.1\r\nHost: h\r\n" L_UPG L_CONN
      "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n" L_VER "\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\n" L_UPG L_CONN
      "Sec-WebSocket-Key: +/+/+/+/+/+/+/+/+/+/+w==\r\n" L_VER "\r\n",
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int r = check_head(ok[i], NULL, NULL);
    if (r != 0) fprintf(stderr, "  ok case %zu -> %d\n", i, r);
    CHECK_EQ(r, 0);
  }
}

typedef struct {
  const char *head;
  int err;
} fail_case_t;

static const fail_case_t fails[] = {
    /* method: first, whatever else is wrong */
    {"POST /chat HTTP/1.1\r\n" L_HOST L_UPG L_CONN L_KEY L_VER "\r\n", EWS_EHTTP_METHOD},
    {"get /chat HTTP/1.1\r\n" L_HOST L_UPG L_CONN L_KEY L_VER "\r\n", EWS_EHTTP_METHOD},
    {"GETX /chat HTTP/1.1\r\n" L_HOST L_UPG L_CONN L_KEY L_VER "\r\n", EWS_EHTTP_METHOD},
    {"HEAD / HTTP/1.0\r\n\r\n", EWS_EHTTP_METHOD},
    /* version */
    {"GET /chat HTTP/1.0\r\n" L_HOST L_UPG L_CONN L_KEY L_VER "\r\n", EWS_EHTTP_BAD},
    /* Host */
    {L_GET L_UPG L_CONN L_KEY L_VER "\r\n", EWS_EHTTP_HOST},
    {L_GET L_HOST L_HOST L_UPG L_CONN L_KEY L_VER "\r\n", EWS_EHTTP_HOST},
    {L_GET "Host: a\r\nhost: a\r\n" L_UPG L_CONN L_KEY L_VER "\r\n", EWS_EHTTP_HOST},
    {L_GET "Host: \r\n" L_UPG L_CONN L_KEY L_VER "\r\n", EWS_EHTTP_HOST},
    {L_GET "\r\n", EWS_EHTTP_HOST},
    /* Upgrade / Connection */
    {L_GET L_HOST L_CONN L_KEY L_VER "\r\n", EWS_EHTTP_UPGRADE},
    {L_GET L_HOST "Upgrade: h2c\r\n" L_CONN L_KEY L_VER "\r\n", EWS_EHTTP_UPGRADE},
    {L_GET L_HOST "Upgrade: websockets\r\n" L_CONN L_KEY L_VER "\r\n", EWS_EHTTP_UPGRADE},
    {L_GET L_HOST "Upgrade: websocket/13\r\n" L_CONN L_KEY L_VER "\r\n", EWS_EHTTP_UPGRADE},
    {L_GET L_HOST "Upgrade:\r\n" L_CONN L_KEY L_VER "\r\n", EWS_EHTTP_UPGRADE},
    {L_GET L_HOST L_UPG L_KEY L_VER "\r\n", EWS_EHTTP_UPGRADE},
    {L_GET L_HOST L_UPG "Connection: keep-alive\r\n" L_KEY L_VER "\r\n", EWS_EHTTP_UPGRADE},
    {L_GET L_HOST L_UPG "Connection: upgraded\r\n" L_KEY L_VER "\r\n", EWS_EHTTP_UPGRADE},
    {L_GET L_HOST L_UPG "X-Connection: upgrade\r\n" L_KEY L_VER "\r\n", EWS_EHTTP_UPGRADE},
    {L_GET L_HOST "Connection: websocket\r\nUpgrade: upgrade\r\n" L_KEY L_VER "\r\n",
     EWS_EHTTP_UPGRADE},
    /* Sec-WebSocket-Version: checked before the key */
    {L_GET L_HOST L_UPG L_CONN L_KEY "\r\n", EWS_EHTTP_WS_VERSION},
    {L_GET L_HOST L_UPG L_CONN "\r\n", EWS_EHTTP_WS_VERSION},
    {L_GET L_HOST L_UPG L_CONN L_KEY "Sec-WebSocket-Version: 8\r\n\r\n", EWS_EHTTP_WS_VERSION},
    {L_GET L_HOST L_UPG L_CONN L_KEY "Sec-WebSocket-Version: 013\r\n\r\n", EWS_EHTTP_WS_VERSION},
    {L_GET L_HOST L_UPG L_CONN L_KEY "Sec-WebSocket-Version: 13, 8\r\n\r\n",
     EWS_EHTTP_WS_VERSION},
    {L_GET L_HOST L_UPG L_CONN L_KEY "Sec-WebSocket-Version:\r\n\r\n", EWS_EHTTP_WS_VERSION},
    {L_GET L_HOST L_UPG L_CONN L_KEY L_VER L_VER "\r\n", EWS_EHTTP_WS_VERSION},
    /* Sec-WebSocket-Key */
    {L_GET L_HOST L_UPG L_CONN L_VER "\r\n", EWS_EHTTP_WS_KEY},
    {L_GET L_HOST L_UPG L_CONN L_KEY L_KEY L_VER "\r\n", EWS_EHTTP_WS_KEY},
    {L_GET L_HOST L_UPG L_CONN "Sec-WebSocket-Key:\r\n" L_VER "\r\n", EWS_EHTTP_WS_KEY},
    {L_GET L_HOST L_UPG L_CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n" L_VER "\r\n",
     EWS_EHTTP_WS_KEY}, /* 23 */
    {L_GET L_HOST L_UPG L_CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n" L_VER "\r\n",
     EWS_EHTTP_WS_KEY}, /* 25 */
    {L_GET L_HOST L_UPG L_CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQAA\r\n" L_VER "\r\n",
     EWS_EHTTP_WS_KEY}, /* 18 bytes */
    {L_GET L_HOST L_UPG L_CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQA=\r\n" L_VER "\r\n",
     EWS_EHTTP_WS_KEY}, /* 17 bytes */
    {L_GET L_HOST L_UPG L_CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZ!==\r\n" L_VER "\r\n",
     EWS_EHTTP_WS_KEY},
    {L_GET L_HOST L_UPG L_CONN "Sec-WebSocket-Key: dGhlIHNhbXBs ZSBub25jZQ=\r\n" L_VER "\r\n",
     EWS_EHTTP_WS_KEY}, /* embedded space */
    {L_GET L_HOST L_UPG L_CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j=Q==\r\n" L_VER "\r\n",
     EWS_EHTTP_WS_KEY}, /* padding in the middle */
    {L_GET L_HOST L_UPG L_CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ-_\r\n" L_VER "\r\n",
     EWS_EHTTP_WS_KEY}, /* base64url is not base64 */
    {L_GET L_HOST L_UPG L_CONN "Sec-WebSocket-Key: the sample nonce\r\n" L_VER "\r\n",
     EWS_EHTTP_WS_KEY},
};

TEST(upgrade_failures) {
  for (size_t i = 0; i < sizeof fails / sizeof fails[0]; i++) {
    int r = check_head(fails[i].head, NULL, NULL);
    if (r != fails[i].err)
      fprintf(stderr, "  fail case %zu -> %d (%s), want %s\n", i, r, ews_err_name(r),
              ews_err_name(fails[i].err));
    CHECK_EQ(r, fails[i].err);
  }
  ews_upgrade_t up;
  CHECK_EQ(ews_upgrade_check(NULL, &up), EWS_EINVAL);
}

TEST(is_upgrade) {
  static const struct {
    const char *head;
    int want;
  } t[] = {
      {GOOD "\r\n", 1},
      {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 0},
      {"GET / HTTP/1.1\r\nUpgrade: h2c\r\nUpgrade: foo, WebSocket\r\n\r\n", 1},
      {"POST / HTTP/1.0\r\nupgrade: websocket\r\n\r\n", 1}, /* asks, even if invalid */
      {"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", 0},
      {"GET / HTTP/1.1\r\nX-Upgrade: websocket\r\n\r\n", 0},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    size_t n = strlen(t[i].head);
    char *g = guard_copy(t[i].head, n);
    ews_http_request_t req;
    CHECK_EQ(ews_http_parse(g, n, &LIM, &req), n);
    CHECK_EQ(ews_is_upgrade(&req), t[i].want);
    guard_free(g, n);
  }
}

static int choose(const char *offered, const char *const *sup, size_t n) {
  size_t len = strlen(offered);
  char *g = guard_copy(offered, len);
  int r = ews_choose_protocol(g, len, sup, n);
  guard_free(g, len);
  return r;
}

TEST(choose_protocol) {
  static const char *const sup[] = {"superchat", "chat", "v2.json"};
  CHECK_EQ(choose("chat, superchat", sup, 3), 1); /* the client's first choice */
  CHECK_EQ(choose("superchat, chat", sup, 3), 0);
  CHECK_EQ(choose("mqtt, v2.json, chat", sup, 3), 2);
  CHECK_EQ(choose(" , mqtt ,\tchat\t,", sup, 3), 1);
  CHECK_EQ(choose("mqtt", sup, 3), -1);
  CHECK_EQ(choose("Chat", sup, 3), -1); /* case-sensitive */
  CHECK_EQ(choose("cha, chats, superchat2", sup, 3), -1);
  CHECK_EQ(choose("", sup, 3), -1);
  CHECK_EQ(choose("chat", sup, 0), -1);
  CHECK_EQ(choose("chat", sup, 1), -1);
  static const char *const with_null[] = {NULL, "chat"};
  CHECK_EQ(choose("chat", with_null, 2), 1);
  CHECK_EQ(ews_choose_protocol(NULL, 0, sup, 3), -1);
}

/* ews_select_protocol on a guarded copy; the selection as a string in out ("" for
 * none), the return code as the result. */
static int select_proto(const char *offered, const char *const *sup, size_t n,
                        const char *prefix, char out[64]) {
  size_t len = offered ? strlen(offered) : 0;
  char *g = offered ? guard_copy(offered, len) : NULL;
  const char *sel = (const char *)1;
  size_t sl = 99;
  int r = ews_select_protocol(g, len, sup, n, prefix, &sel, &sl);
  out[0] = 0;
  if (sel) snprintf(out, 64, "%.*s", (int)sl, sel);
  else CHECK_EQ(sl, 0);
  if (g) guard_free(g, len);
  return r;
}

TEST(select_protocol) {
  static const char *const sup[] = {"superchat", "chat"};
  char got[64];
  /* Nothing offered: no protocol, whatever the app lists. */
  CHECK_EQ(select_proto(NULL, sup, 2, NULL, got), 0);
  CHECK_STR(got, "");
  CHECK_EQ(select_proto(" , ", NULL, 0, NULL, got), 0);
  CHECK_STR(got, "");
  /* The app lists protocols: the client's first listed one, else 400. */
  CHECK_EQ(select_proto("bearer.abc, chat, superchat", sup, 2, NULL, got), 0);
  CHECK_STR(got, "chat");
  CHECK_EQ(select_proto("mqtt, v9", sup, 2, NULL, got), EWS_EHTTP_PROTOCOL);
  CHECK_STR(got, "");
  CHECK_EQ(select_proto("bearer.abc", sup, 2, NULL, got), EWS_EHTTP_PROTOCOL);
  /* The app lists none: the first offered entry that is not a credential. */
  CHECK_EQ(select_proto("chat, superchat", NULL, 0, NULL, got), 0);
  CHECK_STR(got, "chat");
  CHECK_EQ(select_proto("bearer.eyJ0.x.y , graphql-ws", NULL, 0, NULL, got), 0);
  CHECK_STR(got, "graphql-ws");
  CHECK_EQ(select_proto("tok.secret, bearer.x, v1", NULL, 0, "tok.", got), 0);
  CHECK_STR(got, "v1");
  CHECK_EQ(select_proto("bearer.only", NULL, 0, NULL, got), EWS_EHTTP_PROTOCOL);
  CHECK_EQ(select_proto("tok.a, bearer.b", NULL, 0, "tok.", got), EWS_EHTTP_PROTOCOL);
  /* "bearer" alone is a name like any other; an empty prefix excludes nothing more. */
  CHECK_EQ(select_proto("bearer", NULL, 0, "", got), 0);
  CHECK_STR(got, "bearer");
}

/* A zeroed output buffer of cap bytes that ends at a PROT_NONE page. */
static char *out_buf(size_t cap) {
  static const char zeros[8192];
  return guard_copy(zeros, cap);
}

/* Writes with fn at exactly the needed size (must give `want`), and at one byte less
 * (must give EWS_EINVAL without touching past the end). */
#define CHECK_WRITE(want, call_with_out_cap)                  \
  do {                                                        \
    size_t wl_ = strlen(want);                                \
    char *out = out_buf(wl_);                                 \
    size_t cap = wl_;                                         \
    int r_ = (call_with_out_cap);                             \
    CHECK_EQ(r_, wl_);                                        \
    if (r_ == (int)wl_) CHECK_MEM(out, want, wl_);            \
    else fprintf(stderr, "  got: %.*s\n", r_ > 0 ? r_ : 0, out); \
    guard_free(out, wl_);                                     \
    cap = wl_ - 1;                                            \
    out = out_buf(cap);                                       \
    CHECK_EQ((call_with_out_cap), EWS_EINVAL);                \
    guard_free(out, cap);                                     \
    cap = 0;                                                  \
    out = out_buf(1);                                         \
    CHECK_EQ((call_with_out_cap), EWS_EINVAL);                \
    guard_free(out, 1);                                       \
  } while (0)

TEST(write_101) {
  char accept[EWS_ACCEPT_LEN + 1];
  CHECK_EQ(ews_accept_key(RFC_KEY, 24, accept), 0);
  CHECK_WRITE("HTTP/1.1 101 Switching Protocols\r\n"
              "Upgrade: websocket\r\n"
              "Connection: Upgrade\r\n"
              "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
              "\r\n",
              ews_write_101(out, cap, accept, NULL, 0, NULL, 0));
  CHECK_WRITE("HTTP/1.1 101 Switching Protocols\r\n"
              "Upgrade: websocket\r\n"
              "Connection: Upgrade\r\n"
              "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
              "Sec-WebSocket-Protocol: chat\r\n"
              "\r\n",
              ews_write_101(out, cap, accept, "chatX", 4, NULL, 0));
  CHECK_WRITE("HTTP/1.1 101 Switching Protocols\r\n"
              "Upgrade: websocket\r\n"
              "Connection: Upgrade\r\n"
              "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
              "Sec-WebSocket-Protocol: chat\r\n"
              "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
              "\r\n",
              ews_write_101(out, cap, accept, "chat", 4,
                            "permessage-deflate; server_no_context_takeover", 46));
  CHECK_WRITE("HTTP/1.1 101 Switching Protocols\r\n"
              "Upgrade: websocket\r\n"
              "Connection: Upgrade\r\n"
              "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
              "\r\n",
              ews_write_101(out, cap, accept, "", 0, "", 0));
  /* Header injection through an echoed value is refused. */
  char big[512];
  CHECK_EQ(ews_write_101(big, sizeof big, accept, "a\r\nX: y", 7, NULL, 0), EWS_EINVAL);
  CHECK_EQ(ews_write_101(big, sizeof big, accept, NULL, 0, "x\n", 2), EWS_EINVAL);
  CHECK_EQ(ews_write_101(big, sizeof big, accept, "a\0b", 3, NULL, 0), EWS_EINVAL);
  CHECK_EQ(ews_write_101(NULL, 10, accept, NULL, 0, NULL, 0), EWS_EINVAL);
}

#define JSON_RESP(status_line, extra, body)                  \
  "HTTP/1.1 " status_line "\r\n" extra                      \
  "Content-Type: application/json\r\n"                      \
  "Content-Length: %zu\r\n"                                 \
  "Connection: close\r\n"                                   \
  "\r\n" body

TEST(write_error_exact) {
  static const struct {
    int err;
    const char *fmt, *body;
  } t[] = {
      {EWS_EHTTP_WS_VERSION,
       JSON_RESP("426 Upgrade Required", "Sec-WebSocket-Version: 13\r\n", "%s"),
       "{\"error\":\"http_ws_version\",\"message\":\"unsupported Sec-WebSocket-Version\"}"},
      {EWS_EHTTP_METHOD, JSON_RESP("405 Method Not Allowed", "Allow: GET\r\n", "%s"),
       "{\"error\":\"http_method\",\"message\":\"method not allowed\"}"},
      {EWS_EHTTP_UPGRADE, JSON_RESP("426 Upgrade Required", "Upgrade: websocket\r\n", "%s"),
       "{\"error\":\"http_upgrade\",\"message\":\"upgrade required\"}"},
      {EWS_EHTTP_WS_KEY, JSON_RESP("400 Bad Request", "", "%s"),
       "{\"error\":\"http_ws_key\",\"message\":\"missing or malformed Sec-WebSocket-Key\"}"},
      {EWS_EHTTP_BAD, JSON_RESP("400 Bad Request", "", "%s"),
       "{\"error\":\"http_bad\",\"message\":\"malformed HTTP request\"}"},
      {EWS_EHTTP_TOO_LARGE, JSON_RESP("431 Request Header Fields Too Large", "", "%s"),
       "{\"error\":\"http_too_large\",\"message\":\"request head too large\"}"},
      {EWS_EHTTP_VERSION, JSON_RESP("505 HTTP Version Not Supported", "", "%s"),
       "{\"error\":\"http_version\",\"message\":\"HTTP version not supported\"}"},
      {EWS_EHTTP_TIMEOUT, JSON_RESP("408 Request Timeout", "", "%s"),
       "{\"error\":\"http_timeout\",\"message\":\"request head not complete in time\"}"},
      {EWS_ENOMEM, JSON_RESP("503 Service Unavailable", "", "%s"),
       "{\"error\":\"nomem\",\"message\":\"out of memory\"}"},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    char want[1024];
    snprintf(want, sizeof want, t[i].fmt, strlen(t[i].body), t[i].body);
    CHECK_WRITE(want, ews_write_error(out, cap, t[i].err));
  }
}

TEST(write_error_all_codes) {
  /* Every error with an HTTP status gives a well-formed response for that status. */
  for (int err = -1; err >= -100; err--) {
    int st = ews_err_http_status(err);
    char out[1024];
    int n = ews_write_error(out, sizeof out, err);
    if (st == 0) {
      CHECK_EQ(n, EWS_EINVAL);
      continue;
    }
    CHECK(n > 0);
    if (n <= 0) continue;
    out[n] = '\0';
    char line[64];
    snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", st, ews_http_reason(st));
    CHECK(strncmp(out, line, strlen(line)) == 0);
    char *body = strstr(out, "\r\n\r\n");
    CHECK(body != NULL);
    if (!body) continue;
    body += 4;
    char cl[64];
    snprintf(cl, sizeof cl, "\r\nContent-Length: %zu\r\n", strlen(body));
    CHECK(strstr(out, cl) != NULL);
    CHECK(strstr(out, "\r\nConnection: close\r\n") != NULL);
    CHECK(strncmp(body, "{\"error\":\"", 10) == 0);
    CHECK(strstr(body, ews_strerror(err)) != NULL);
    CHECK_EQ(body[strlen(body) - 1], '}');
  }
  char out[16];
  CHECK_EQ(ews_write_error(out, sizeof out, EWS_EPROTO), EWS_EINVAL);
  CHECK_EQ(ews_write_error(out, sizeof out, 12345), EWS_EINVAL);
}

TEST(write_response) {
  CHECK_WRITE("HTTP/1.1 200 OK\r\n"
              "Content-Type: text/plain\r\n"
              "Content-Length: 5\r\n"
              "Connection: close\r\n"
              "\r\n"
              "hello",
              ews_write_response(out, cap, 200, NULL, "text/plain", "hello", 5));
  CHECK_WRITE("HTTP/1.1 429 Too Many Requests\r\n"
              "Retry-After: 1\r\nX-A: b\r\n"
              "Content-Length: 0\r\n"
              "Connection: close\r\n"
              "\r\n",
              ews_write_response(out, cap, 429, "Retry-After: 1\r\nX-A: b\r\n", NULL, NULL, 0));
  CHECK_WRITE("HTTP/1.1 204 No Content\r\n"
              "Connection: close\r\n"
              "\r\n",
              ews_write_response(out, cap, 204, NULL, "text/plain", "", 0));
  CHECK_WRITE("HTTP/1.1 299 Success\r\n"
              "Content-Length: 0\r\n"
              "Connection: close\r\n"
              "\r\n",
              ews_write_response(out, cap, 299, "", NULL, "", 0));
  char out[256];
  CHECK_EQ(ews_write_response(out, sizeof out, 204, NULL, NULL, "x", 1), EWS_EINVAL);
  CHECK_EQ(ews_write_response(out, sizeof out, 99, NULL, NULL, NULL, 0), EWS_EINVAL);
  CHECK_EQ(ews_write_response(out, sizeof out, 1000, NULL, NULL, NULL, 0), EWS_EINVAL);
  CHECK_EQ(ews_write_response(out, sizeof out, 200, NULL, NULL, NULL, 3), EWS_EINVAL);
  /* Malformed extra header blocks would corrupt the head. */
  CHECK_EQ(ews_write_response(out, sizeof out, 200, "X: y", NULL, NULL, 0), EWS_EINVAL);
  CHECK_EQ(ews_write_response(out, sizeof out, 200, "X: y\n", NULL, NULL, 0), EWS_EINVAL);
  CHECK_EQ(ews_write_response(out, sizeof out, 200, "X: y\r\n\r\n", NULL, NULL, 0),
           EWS_EINVAL);
  CHECK_EQ(ews_write_response(out, sizeof out, 200, "\r\n", NULL, NULL, 0), EWS_EINVAL);
  CHECK_EQ(ews_write_response(out, sizeof out, 200, "X: a\rb\r\n", NULL, NULL, 0),
           EWS_EINVAL);
  CHECK_EQ(ews_write_response(out, sizeof out, 200, NULL, "text/plain\r\nX: y", "", 0),
           EWS_EINVAL);
}

int main(void) {
  RUN(accept_vector);
  RUN(upgrade_ok);
  RUN(upgrade_case_insensitive);
  RUN(upgrade_failures);
  RUN(is_upgrade);
  RUN(choose_protocol);
  RUN(select_protocol);
  RUN(write_101);
  RUN(write_error_exact);
  RUN(write_error_all_codes);
  RUN(write_response);
  return TEST_EXIT();
}
