/* handshake.c — owns the server side of the WebSocket opening handshake (RFC 6455
 * section 4.2) declared in handshake.h: upgrade validation of a parsed request head,
 * the Sec-WebSocket-Accept computation, subprotocol choice, and the exact bytes of
 * the 101 response and of the plain HTTP (JSON) error responses. No I/O, no
 * allocation: everything is written into caller buffers and bounded by their size. */
#include "handshake.h"

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "proto/json.h"

/* RFC 6455 section 1.3. */
static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#define WS_KEY_LEN 24 /* base64 of 16 bytes: 22 symbols and "==" */

/* 1 when any header called `name` has `token` in its list. Repeated field lines are
 * one comma-joined list (RFC 9110 section 5.3), so all of them count. */
static int any_list_has(const ews_http_request_t *req, const char *name, const char *token) {
  size_t n = strlen(name);
  for (size_t i = 0; i < req->num_headers; i++) {
    const ews_http_header_t *h = &req->headers[i];
    if (h->name_len != n) continue;
    size_t k = 0;
    while (k < n) {
      char a = h->name[k], b = name[k];
      if (a >= 'A' && a <= 'Z') a = (char)(a + 32);
      if (b >= 'A' && b <= 'Z') b = (char)(b + 32);
      if (a != b) break;
      k++;
    }
    if (k == n && ews_http_list_has(h->value, h->value_len, token)) return 1;
  }
  return 0;
}

int ews_is_upgrade(const ews_http_request_t *req) {
  return any_list_has(req, "Upgrade", "websocket");
}

static int is_b64(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '+' || c == '/';
}

/* The key must be the base64 of exactly 16 bytes. mbedTLS's decoder tolerates
 * embedded line breaks and trailing spaces, so the shape is checked first and the
 * decoder then confirms the length. */
static int key_valid(const char *k, size_t n) {
  if (n != WS_KEY_LEN) return 0;
  for (size_t i = 0; i < WS_KEY_LEN - 2; i++) {
    if (!is_b64(k[i])) return 0;
  }
  if (k[22] != '=' || k[23] != '=') return 0;
  unsigned char raw[18];
  size_t olen = 0;
  if (mbedtls_base64_decode(raw, sizeof raw, &olen, (const unsigned char *)k, n) != 0)
    return 0;
  return olen == 16;
}

int ews_upgrade_check(const ews_http_request_t *req, ews_upgrade_t *up) {
  if (req == NULL || up == NULL) return EWS_EINVAL;
  memset(up, 0, sizeof *up);

  /* Methods are case-sensitive (RFC 9110 section 9.1): "get" is not GET. */
  if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0) return EWS_EHTTP_METHOD;
  if (req->version_minor < 1) return EWS_EHTTP_BAD;

  const ews_http_header_t *host = ews_http_header(req, "Host");
  if (host == NULL || host->value_len == 0 || ews_http_header_count(req, "Host") != 1)
    return EWS_EHTTP_HOST;

  if (!any_list_has(req, "Upgrade", "websocket") ||
      !any_list_has(req, "Connection", "upgrade"))
    return EWS_EHTTP_UPGRADE;

  /* Checked before the key so a client speaking an older draft (version 8, with a
   * differently shaped handshake) learns which version to retry with. */
  const ews_http_header_t *ver = ews_http_header(req, "Sec-WebSocket-Version");
  if (ver == NULL || ews_http_header_count(req, "Sec-WebSocket-Version") != 1 ||
      ver->value_len != 2 || memcmp(ver->value, "13", 2) != 0)
    return EWS_EHTTP_WS_VERSION;

  const ews_http_header_t *key = ews_http_header(req, "Sec-WebSocket-Key");
  if (key == NULL || ews_http_header_count(req, "Sec-WebSocket-Key") != 1 ||
      !key_valid(key->value, key->value_len))
    return EWS_EHTTP_WS_KEY;

  up->key = key->value;
  up->key_len = key->value_len;
  up->host = host->value;
  up->host_len = host->value_len;
  const ews_http_header_t *h;
  if ((h = ews_http_header(req, "Sec-WebSocket-Protocol")) != NULL) {
    up->protocols = h->value;
    up->protocols_len = h->value_len;
  }
  if ((h = ews_http_header(req, "Sec-WebSocket-Extensions")) != NULL) {
    up->extensions = h->value;
    up->extensions_len = h->value_len;
  }
  if ((h = ews_http_header(req, "Origin")) != NULL) {
    up->origin = h->value;
    up->origin_len = h->value_len;
  }
  return 0;
}

int ews_accept_key(const char *key, size_t key_len, char out[EWS_ACCEPT_LEN + 1]) {
  /* A valid key is 24 bytes; the bound only keeps the concatenation on the stack. */
  unsigned char cat[64 + sizeof ws_guid - 1];
  if (key == NULL || out == NULL || key_len > 64) return EWS_EINVAL;
  memcpy(cat, key, key_len);
  memcpy(cat + key_len, ws_guid, sizeof ws_guid - 1);
  unsigned char sha[20];
  if (mbedtls_sha1_ret(cat, key_len + sizeof ws_guid - 1, sha) != 0) return EWS_EINVAL;
  size_t olen = 0;
  /* mbedtls_base64_encode needs room for the NUL it appends: 28 + 1. */
  if (mbedtls_base64_encode((unsigned char *)out, EWS_ACCEPT_LEN + 1, &olen, sha,
                            sizeof sha) != 0 ||
      olen != EWS_ACCEPT_LEN)
    return EWS_EINVAL;
  return 0;
}

int ews_choose_protocol(const char *offered, size_t offered_len,
                        const char *const *supported, size_t n_supported) {
  if (offered == NULL || supported == NULL) return -1;
  size_t pos = 0, n;
  const char *e;
  /* The client's order wins: RFC 6455 lists the values "ordered by preference". */
  while (ews_http_list_next(offered, offered_len, &pos, &e, &n)) {
    for (size_t i = 0; i < n_supported; i++) {
      if (supported[i] != NULL && strlen(supported[i]) == n && memcmp(supported[i], e, n) == 0)
        return (int)i;
    }
  }
  return -1;
}

static int has_prefix(const char *e, size_t n, const char *prefix) {
  size_t pl = prefix ? strlen(prefix) : 0;
  return pl > 0 && n >= pl && memcmp(e, prefix, pl) == 0;
}

int ews_select_protocol(const char *offered, size_t offered_len,
                        const char *const *supported, size_t n_supported,
                        const char *token_prefix, const char **sel, size_t *sel_len) {
  *sel = NULL;
  *sel_len = 0;
  if (offered == NULL) return 0;
  size_t pos = 0, n, count = 0;
  const char *e;
  while (ews_http_list_next(offered, offered_len, &pos, &e, &n)) {
    count++;
    if (n_supported > 0) {
      int i = ews_choose_protocol(e, n, supported, n_supported);
      if (i >= 0) {
        *sel = supported[i];
        *sel_len = strlen(supported[i]);
        return 0;
      }
    } else if (!has_prefix(e, n, "bearer.") && !has_prefix(e, n, token_prefix)) {
      *sel = e;
      *sel_len = n;
      return 0;
    }
  }
  return count ? EWS_EHTTP_PROTOCOL : 0;
}

/* A bounded output cursor: writes are dropped once the buffer is full, and the
 * overflow is reported once at the end instead of after every piece. */
typedef struct {
  char *p;
  size_t cap, len;
  int overflow;
} wbuf_t;

static void put(wbuf_t *w, const void *s, size_t n) {
  if (w->overflow || n > w->cap - w->len) {
    w->overflow = 1;
    return;
  }
  if (n) memcpy(w->p + w->len, s, n);
  w->len += n;
}

static void puts_(wbuf_t *w, const char *s) { put(w, s, strlen(s)); }

static void put_uint(wbuf_t *w, size_t v) {
  char tmp[24];
  int n = snprintf(tmp, sizeof tmp, "%zu", v);
  put(w, tmp, (size_t)n);
}

static int finish(const wbuf_t *w) {
  if (w->overflow || w->len > (size_t)INT32_MAX) return EWS_EINVAL;
  return (int)w->len;
}

/* A header value we echo must not be able to end the line or the head early
 * (response splitting): field-value bytes only, i.e. no CTL except HTAB. */
static int value_safe(const char *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if ((c < 0x20 && c != '\t') || c == 0x7f) return 0;
  }
  return 1;
}

int ews_write_101(char *out, size_t cap, const char accept[EWS_ACCEPT_LEN],
                  const char *protocol, size_t protocol_len, const char *extensions,
                  size_t extensions_len) {
  if (out == NULL || accept == NULL) return EWS_EINVAL;
  if (protocol != NULL && !value_safe(protocol, protocol_len)) return EWS_EINVAL;
  if (extensions != NULL && !value_safe(extensions, extensions_len)) return EWS_EINVAL;
  wbuf_t w = {out, cap, 0, 0};
  puts_(&w,
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Accept: ");
  put(&w, accept, EWS_ACCEPT_LEN);
  puts_(&w, "\r\n");
  /* An empty value would be a header announcing nothing: leave it out. */
  if (protocol != NULL && protocol_len > 0) {
    puts_(&w, "Sec-WebSocket-Protocol: ");
    put(&w, protocol, protocol_len);
    puts_(&w, "\r\n");
  }
  if (extensions != NULL && extensions_len > 0) {
    puts_(&w, "Sec-WebSocket-Extensions: ");
    put(&w, extensions, extensions_len);
    puts_(&w, "\r\n");
  }
  puts_(&w, "\r\n");
  return finish(&w);
}

/* extra_headers must be whole CRLF-terminated, non-empty lines with no bare CR or
 * LF, or it would corrupt (or end) the response head. */
static int header_block_valid(const char *s, size_t n) {
  size_t line_start = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\r') {
      if (i + 1 >= n || s[i + 1] != '\n' || i == line_start) return 0;
      i++;
      line_start = i + 1;
    } else if ((c < 0x20 && c != '\t') || c == 0x7f) {
      return 0;
    }
  }
  return line_start == n;
}

int ews_write_response(char *out, size_t cap, int status, const char *extra_headers,
                       const char *content_type, const char *body, size_t body_len) {
  if (out == NULL || status < 100 || status > 999) return EWS_EINVAL;
  if (body == NULL && body_len > 0) return EWS_EINVAL;
  size_t extra_len = extra_headers ? strlen(extra_headers) : 0;
  if (!header_block_valid(extra_headers, extra_len)) return EWS_EINVAL;
  if (content_type != NULL && !value_safe(content_type, strlen(content_type)))
    return EWS_EINVAL;
  /* 1xx, 204 and 304 responses have no body and must not carry Content-Length
   * (RFC 9110 sections 8.6 and 15). */
  int bodyless = status < 200 || status == 204 || status == 304;
  if (bodyless && body_len > 0) return EWS_EINVAL;

  wbuf_t w = {out, cap, 0, 0};
  char line[64];
  int n = snprintf(line, sizeof line, "HTTP/1.1 %d ", status);
  put(&w, line, (size_t)n);
  puts_(&w, ews_http_reason(status));
  puts_(&w, "\r\n");
  put(&w, extra_headers, extra_len);
  if (!bodyless) {
    if (content_type != NULL) {
      puts_(&w, "Content-Type: ");
      puts_(&w, content_type);
      puts_(&w, "\r\n");
    }
    puts_(&w, "Content-Length: ");
    put_uint(&w, body_len);
    puts_(&w, "\r\n");
  }
  puts_(&w, "Connection: close\r\n\r\n");
  put(&w, body, body_len);
  return finish(&w);
}

/* Appends s as a JSON string, quotes included (proto/json.h). */
static void put_json_str(wbuf_t *w, const char *s) {
  char esc[512];
  size_t n = strlen(s);
  if (ews_json_str(NULL, s, n, EWS_JSON_CHECK) > sizeof esc) {
    w->overflow = 1;
    return;
  }
  put(w, esc, ews_json_str(esc, s, n, EWS_JSON_CHECK));
}

int ews_write_error(char *out, size_t cap, int err) {
  int status = ews_err_http_status(err);
  if (status == 0) return EWS_EINVAL;

  const char *extra = NULL;
  switch (err) {
    case EWS_EHTTP_WS_VERSION: extra = "Sec-WebSocket-Version: 13\r\n"; break;
    case EWS_EHTTP_UPGRADE: extra = "Upgrade: websocket\r\n"; break;
    case EWS_EHTTP_METHOD: extra = "Allow: GET\r\n"; break;
    default: break;
  }

  /* The machine-readable name is the table name without "EWS_E", lowercased
   * ("EWS_EHTTP_WS_VERSION" -> "http_ws_version"), so it never drifts from err.h. */
  const char *name = ews_err_name(err);
  if (strncmp(name, "EWS_E", 5) == 0) name += 5;
  char lname[64];
  size_t i = 0;
  for (; name[i] && i < sizeof lname - 1; i++) {
    char c = name[i];
    lname[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
  }
  lname[i] = '\0';

  char body[256];
  wbuf_t b = {body, sizeof body, 0, 0};
  puts_(&b, "{\"error\":");
  put_json_str(&b, lname);
  puts_(&b, ",\"message\":");
  put_json_str(&b, ews_strerror(err));
  puts_(&b, "}");
  if (b.overflow) return EWS_EINVAL;
  return ews_write_response(out, cap, status, extra, "application/json", body, b.len);
}
