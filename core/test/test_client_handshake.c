/* test_client_handshake.c — the client side of the opening handshake: URLs, the
 * request, the response head parser (guard pages) and the checks, with RFC 6455's
 * own key/accept example (section 1.3) and RFC 7692 responses. */
#include "proto/client_handshake.h"

#include "err.h"
#include "test.h"

static int parse(const char *s, ews_url_t *u) { return ews_url_parse(s, strlen(s), u); }

TEST(urls) {
  ews_url_t u;
  CHECK_EQ(parse("ws://example.com/chat?x=1", &u), 0);
  CHECK_EQ(u.tls, 0);
  CHECK_EQ(u.port, 80);
  CHECK_EQ(u.default_port, 1);
  CHECK(u.host_len == 11 && !memcmp(u.host, "example.com", 11));
  CHECK(u.path_len == 9 && !memcmp(u.path, "/chat?x=1", 9));
  CHECK_EQ(parse("WSS://h:8443", &u), 0);
  CHECK_EQ(u.tls, 1);
  CHECK_EQ(u.port, 8443);
  CHECK(u.path_len == 1 && u.path[0] == '/');
  CHECK_EQ(parse("ws://[::1]:9000/a", &u), 0);
  CHECK(u.host_len == 3 && !memcmp(u.host, "::1", 3));
  CHECK_EQ(u.port, 9000);
  CHECK_EQ(parse("wss://h?q", &u), 0);
  CHECK_EQ(u.port, 443);
  const char *bad[] = {"http://h/", "ws://", "ws://:80/", "ws://h:0/", "ws://h:65536/",
                       "ws://h:x/", "ws://u@h/", "ws://h/#frag", "ws://h/a b", "ws://[::1/",
                       "ws://h:80x", "wss://h:443:1/"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (parse(bad[i], &u) != EWS_EURL) fprintf(stderr, "  accepted %s\n", bad[i]);
    CHECK_EQ(parse(bad[i], &u), EWS_EURL);
  }
}

TEST(request) {
  ews_url_t u;
  parse("ws://[::1]:9000/p?q=1", &u);
  ews_client_req_t r = {&u, "dGhlIHNhbXBsZSBub25jZQ==", "a, b", 4, 1, "X-A: 1\r\n", 8};
  char out[1024];
  int n = ews_client_request(out, sizeof out, &r);
  CHECK(n > 0);
  out[n > 0 ? n : 0] = 0;
  CHECK(strstr(out, "GET /p?q=1 HTTP/1.1\r\n") == out);
  CHECK(strstr(out, "\r\nHost: [::1]:9000\r\n") != NULL);
  CHECK(strstr(out, "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") != NULL);
  CHECK(strstr(out, "\r\nSec-WebSocket-Version: 13\r\n") != NULL);
  CHECK(strstr(out, "\r\nSec-WebSocket-Protocol: a, b\r\n") != NULL);
  CHECK(strstr(out, "permessage-deflate; client_max_window_bits\r\n") != NULL);
  CHECK(strstr(out, "\r\nX-A: 1\r\n\r\n") != NULL);
  CHECK_EQ(ews_client_request(out, 40, &r), EWS_EINVAL);
  uint8_t rnd[16] = {0};
  char key[EWS_CLIENT_KEY_LEN + 1];
  CHECK_EQ(ews_client_key(rnd, key), 0);
  CHECK(!strcmp(key, "AAAAAAAAAAAAAAAAAAAAAA=="));
}

/* RFC 6455 1.3: key dGhlIHNhbXBsZSBub25jZQ== -> accept s3pPLMBiTxaQ9kYGzzhZRbK+xOo= */
#define GOOD_101                                            \
  "HTTP/1.1 101 Switching Protocols\r\n"                   \
  "Upgrade: websocket\r\n"                                  \
  "Connection: Upgrade\r\n"                                 \
  "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

static int check(const char *head, const char *protos, int pmd, ews_client_result_t *res,
                 char *why) {
  ews_http_response_t resp;
  size_t len = strlen(head);
  char *g = guard_copy(head, len);
  int r = ews_http_response_parse(g, len, 16384, &resp);
  if (r <= 0) return r == 0 ? 1 : r;
  r = ews_client_check(&resp, KEY, protos, protos ? strlen(protos) : 0, pmd, res, why, 200);
  return r;
}

TEST(response_parse) {
  ews_http_response_t resp;
  const char *h = GOOD_101 "\r\nframes";
  size_t len = strlen(h);
  /* Every prefix before the blank line needs more; the whole head parses. */
  for (size_t i = 0; i < len - 6; i++) {
    char *g = guard_copy(h, i);
    CHECK_EQ(ews_http_response_parse(g, i, 16384, &resp), 0);
  }
  char *g = guard_copy(h, len);
  CHECK_EQ(ews_http_response_parse(g, len, 16384, &resp), (int)(len - 6));
  CHECK_EQ(resp.status, 101);
  CHECK_EQ(resp.num_headers, 3);
  CHECK_EQ(ews_http_response_parse(g, len, 20, &resp), EWS_EHANDSHAKE);
  const char *bad[] = {"HTTP/2 101 X\r\n\r\n", "HTTP/1.1 1x1 X\r\n\r\n", "HTTP/1.1 101 X\r\nNo colon\r\n\r\n",
                       "HTTP/1.1 101 X\r\nBad Name: v\r\n\r\n", "garbage\r\n\r\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    CHECK_EQ(ews_http_response_parse(bad[i], strlen(bad[i]), 16384, &resp), EWS_EHANDSHAKE);
}

TEST(checks) {
  ews_client_result_t res;
  char why[200];
  CHECK_EQ(check(GOOD_101 "\r\n", NULL, 0, &res, why), 0);
  CHECK(res.protocol == NULL && res.pmd == 0);
  CHECK_EQ(check("HTTP/1.1 404 Not Found\r\n\r\n", NULL, 0, &res, why), EWS_EHANDSHAKE);
  CHECK(!strcmp(why, "server answered 404 Not Found"));
  CHECK_EQ(check("HTTP/1.1 101 S\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n", NULL, 0, &res, why),
           EWS_EHANDSHAKE);
  CHECK(strstr(why, "Accept") != NULL);
  CHECK_EQ(check("HTTP/1.1 101 S\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", NULL, 0, &res, why),
           EWS_EHANDSHAKE);
  /* subprotocols */
  CHECK_EQ(check(GOOD_101 "Sec-WebSocket-Protocol: b\r\n\r\n", "a, b", 0, &res, why), 0);
  CHECK(res.protocol_len == 1 && res.protocol[0] == 'b');
  CHECK_EQ(check(GOOD_101 "Sec-WebSocket-Protocol: c\r\n\r\n", "a, b", 0, &res, why), EWS_EHANDSHAKE);
  CHECK_EQ(check(GOOD_101 "Sec-WebSocket-Protocol: a\r\n\r\n", NULL, 0, &res, why), EWS_EHANDSHAKE);
  /* permessage-deflate, turned round to our side */
  CHECK_EQ(check(GOOD_101 "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
                 "client_max_window_bits=10; server_max_window_bits=12\r\n\r\n", NULL, 1, &res, why), 0);
  CHECK_EQ(res.pmd, 1);
  CHECK_EQ(res.params.client_no_context_takeover, 1); /* the server resets */
  CHECK_EQ(res.params.server_no_context_takeover, 0);
  CHECK_EQ(res.params.server_window_bits, 10);        /* our compressor */
  CHECK_EQ(res.params.client_window_bits, 12);        /* our inflater */
  CHECK_EQ(check(GOOD_101 "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n",
                 NULL, 1, &res, why), 0);
  CHECK_EQ(res.params.server_no_context_takeover, 1);
  CHECK_EQ(res.params.server_window_bits, 15);
  const char *bad_ext[] = {
      "permessage-deflate; server_max_window_bits=7", "permessage-deflate; server_max_window_bits=08",
      "permessage-deflate; server_max_window_bits", "permessage-deflate; foo",
      "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
      "permessage-deflate; client_no_context_takeover=1", "x-webkit-deflate-frame",
      "permessage-deflate, permessage-deflate"};
  for (size_t i = 0; i < sizeof bad_ext / sizeof bad_ext[0]; i++) {
    char head[512];
    snprintf(head, sizeof head, GOOD_101 "Sec-WebSocket-Extensions: %s\r\n\r\n", bad_ext[i]);
    CHECK_EQ(check(head, NULL, 1, &res, why), EWS_EHANDSHAKE);
  }
  /* not offered */
  CHECK_EQ(check(GOOD_101 "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n", NULL, 0, &res, why),
           EWS_EHANDSHAKE);
}

int main(void) {
  RUN(urls);
  RUN(request);
  RUN(response_parse);
  RUN(checks);
  return TEST_EXIT();
}
