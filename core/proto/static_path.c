/* static_path.c — request paths of static files, content types, entity tags (see
 * static_path.h). Refuses rather than normalises: a client that sends "a/../b" or
 * "%2e%2e" is not a browser following a link, so it gets 400 instead of a guess. */
#include "proto/static_path.h"

#include <stdio.h>
#include <string.h>

#include "err.h"

static int hexval(unsigned char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Checks the segment out[start..end) just completed. */
static int check_segment(const char *out, size_t start, size_t end) {
  size_t n = end - start;
  if (n == 0) return EWS_EHTTP_PATH; /* "a//b" */
  if (out[start] != '.') return 0;
  if (n == 1 || (n == 2 && out[start + 1] == '.')) return EWS_EHTTP_PATH; /* "." ".." */
  return EWS_EHTTP_NOT_FOUND; /* hidden: ".git", ".env" */
}

int ews_static_path(const char *raw, size_t len, char *out, size_t cap, size_t *out_len) {
  if (!out || !out_len || (!raw && len)) return EWS_EINVAL;
  if (len > EWS_STATIC_MAX_PATH) return EWS_EHTTP_URI_TOO_LONG;
  if (cap < len + 1) return EWS_EINVAL;
  size_t i = 0, o = 0, seg = 0;
  if (len > 0) {
    if (raw[0] != '/') return EWS_EHTTP_PATH;
    i = 1;
  }
  int hidden = 0; /* a hidden segment is reported after the whole path is checked, so
                     that "/.x/%00" is a 400 like any path with a NUL */
  while (i < len) {
    unsigned char ch = (unsigned char)raw[i];
    if (ch == '/') {
      int r = check_segment(out, seg, o);
      if (r == EWS_EHTTP_PATH) return r;
      if (r) hidden = 1;
      out[o++] = '/';
      seg = o;
      i++;
      continue;
    }
    if (ch == '%') {
      int hi = i + 2 < len ? hexval((unsigned char)raw[i + 1]) : -1;
      int lo = i + 2 < len ? hexval((unsigned char)raw[i + 2]) : -1;
      if (hi < 0 || lo < 0) return EWS_EHTTP_PATH; /* "%", "%4", "%zz" */
      ch = (unsigned char)(hi * 16 + lo);
      if (ch == '/' || ch == '\\') return EWS_EHTTP_PATH; /* %2f %5c: not a separator */
      i += 3;
    } else {
      i++;
      if (ch == '\\') return EWS_EHTTP_PATH;
    }
    if (ch < 0x20 || ch == 0x7f) return EWS_EHTTP_PATH; /* NUL and control characters */
    out[o++] = (char)ch;
  }
  /* The last segment: empty means the path ended with '/' (a directory) or was empty. */
  if (o > seg) {
    int r = check_segment(out, seg, o);
    if (r == EWS_EHTTP_PATH) return r;
    if (r) hidden = 1;
  }
  out[o] = 0;
  if (hidden) return EWS_EHTTP_NOT_FOUND;
  *out_len = o;
  return 0;
}

typedef struct {
  const char *ext;
  const char *type;
} ctype_t;

static const ctype_t ctypes[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"txt", "text/plain; charset=utf-8"},
    {"wasm", "application/wasm"},
    {"woff2", "font/woff2"},
};

const char *ews_static_content_type(const char *name, size_t len) {
  size_t dot = len;
  while (dot > 0 && name[dot - 1] != '.' && name[dot - 1] != '/') dot--;
  if (dot == 0 || name[dot - 1] != '.') return "application/octet-stream";
  const char *ext = name + dot;
  size_t el = len - dot;
  for (size_t k = 0; k < sizeof ctypes / sizeof ctypes[0]; k++) {
    const char *e = ctypes[k].ext;
    if (strlen(e) != el) continue;
    size_t j = 0;
    while (j < el) {
      unsigned char ch = (unsigned char)ext[j];
      if (ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch + 32);
      if (ch != (unsigned char)e[j]) break;
      j++;
    }
    if (j == el) return ctypes[k].type;
  }
  return "application/octet-stream";
}

int ews_static_etag(char *out, size_t cap, uint64_t ino, uint64_t size, uint64_t mtime_ns) {
  if (!out) return EWS_EINVAL;
  int n = snprintf(out, cap, "\"%llx-%llx-%llx\"", (unsigned long long)ino,
                   (unsigned long long)size, (unsigned long long)mtime_ns);
  if (n < 0 || (size_t)n >= cap) return EWS_EINVAL;
  return n;
}

/* Skips optional whitespace. */
static size_t ows(const char *v, size_t len, size_t i) {
  while (i < len && (v[i] == ' ' || v[i] == '\t')) i++;
  return i;
}

int ews_static_etag_match(const char *v, size_t len, const char *etag, size_t etag_len) {
  if (!v || !etag) return 0;
  /* The tag we compare with, without a W/ prefix: "opaque" (quotes included). */
  if (etag_len >= 2 && etag[0] == 'W' && etag[1] == '/') {
    etag += 2;
    etag_len -= 2;
  }
  size_t i = ows(v, len, 0);
  if (i < len && v[i] == '*' && ows(v, len, i + 1) == len) return 1;
  while (i < len) {
    i = ows(v, len, i);
    if (i < len && v[i] == ',') {
      i++;
      continue;
    }
    if (i + 1 < len && v[i] == 'W' && v[i + 1] == '/') i += 2;
    if (i >= len || v[i] != '"') return 0; /* malformed: stop, nothing more matches */
    size_t start = i++;
    while (i < len && v[i] != '"') i++;
    if (i >= len) return 0;
    size_t end = ++i; /* past the closing quote */
    i = ows(v, len, i);
    if (i < len && v[i] != ',') return 0; /* "tag"x: malformed */
    if (end - start == etag_len && memcmp(v + start, etag, etag_len) == 0) return 1;
  }
  return 0;
}
