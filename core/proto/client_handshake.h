/* client_handshake.h — the client side of the WebSocket opening handshake (RFC 6455
 * section 4.1), I/O-free: parsing a ws:// or wss:// URL, writing the upgrade request
 * (key, subprotocols, the permessage-deflate offer, the caller's headers), parsing
 * the server's response head and checking it (101, Upgrade, Connection,
 * Sec-WebSocket-Accept, the selected subprotocol, the agreed extension). Nothing is
 * allocated: every string points into the caller's buffers. */
#ifndef EWS_CLIENT_HANDSHAKE_H
#define EWS_CLIENT_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "deflate.h"
#include "http_head.h"

#define EWS_CLIENT_KEY_LEN 24 /* base64 of 16 random bytes */

typedef struct {
  int tls;          /* wss:// */
  const char *host; /* without brackets for an IPv6 literal; not NUL-terminated */
  size_t host_len;
  int port;         /* explicit or the scheme's default (80, 443) */
  int default_port; /* 1 when the URL named no port */
  const char *path; /* "/..." with the query; "/" when the URL has none */
  size_t path_len;
} ews_url_t;

/* Parses "ws://host[:port][/path][?query]" (or wss://; scheme case-insensitive;
 * [v6] literals; no userinfo, no fragment). 0 or EWS_EURL. */
int ews_url_parse(const char *url, size_t len, ews_url_t *u);

/* Writes the 24-character key for 16 random bytes (plus a NUL). 0 or EWS_EINVAL. */
int ews_client_key(const uint8_t rnd[16], char out[EWS_CLIENT_KEY_LEN + 1]);

typedef struct {
  const ews_url_t *url;
  const char *key;        /* EWS_CLIENT_KEY_LEN characters */
  const char *protocols;  /* "a, b" or NULL */
  size_t protocols_len;
  int offer_pmd;          /* offer permessage-deflate; client_max_window_bits */
  const char *headers;    /* extra "Name: value\r\n" lines (already checked), or NULL */
  size_t headers_len;
} ews_client_req_t;

/* Writes the request head into out[0..cap). Returns its length, or EWS_EINVAL when
 * it does not fit. */
int ews_client_request(char *out, size_t cap, const ews_client_req_t *r);

/* Writes a plain "GET path" request (Connection: close) for an HTTP health probe of
 * the URL's host. Its length, or EWS_EINVAL when it does not fit. */
int ews_client_probe_request(char *out, size_t cap, const ews_url_t *u, const char *path);

/* A parsed response head (strings point into the caller's buffer). */
typedef struct {
  int status;
  const char *reason;
  size_t reason_len;
  size_t num_headers;
  ews_http_header_t headers[EWS_HTTP_MAX_HEADERS];
} ews_http_response_t;

/* Parses a response head in buf[0..len): its length (> 0) when complete, 0 when more
 * bytes are needed (and len < max_head), EWS_EHANDSHAKE for a malformed head, one
 * longer than max_head or with more than EWS_HTTP_MAX_HEADERS headers. Stateless:
 * call again with the whole prefix. */
int ews_http_response_parse(const char *buf, size_t len, size_t max_head,
                            ews_http_response_t *resp);

/* What the handshake agreed. */
typedef struct {
  const char *protocol; /* selected subprotocol (into the response), or NULL */
  size_t protocol_len;
  int pmd;              /* permessage-deflate is on */
  /* The agreed parameters in the server's terms of deflate.h, turned round for our
   * side: server_* describe OUR compressor (what the server called client_*), client_*
   * the peer's (our inflater). So the server-side compressor and inflater code work
   * unchanged on a client connection. */
  ews_pmd_params_t params;
} ews_client_result_t;

/* Checks a parsed response against the request: status 101, Upgrade: websocket,
 * Connection: upgrade, Sec-WebSocket-Accept for key, a Sec-WebSocket-Protocol that
 * is one of the offered ones (none offered: none allowed), an extension only when
 * offered and only permessage-deflate with valid parameters. 0 and *res, or
 * EWS_EHANDSHAKE with a reason written into why[0..cap) ("server answered 404 Not
 * Found", "Sec-WebSocket-Accept does not match", ...). */
int ews_client_check(const ews_http_response_t *resp, const char *key, const char *protocols,
                     size_t protocols_len, int offered_pmd, ews_client_result_t *res,
                     char *why, size_t cap);

#endif
