/* fuzz_deflate.c — libFuzzer target for permessage-deflate: the negotiation parser
 * and the bounded decompressor. Byte 0 picks which (bit 0) and the configuration.
 *
 * Negotiation oracles (input: a Sec-WebSocket-Extensions value):
 *  - a deliberately naive reference written here (split the list, then the
 *    parameters, trim, unquote, check) chooses the same offer and the same response;
 *  - the response is itself an acceptable offer, carries client_max_window_bits only
 *    when the input mentions it, server_no_context_takeover in shared mode, and
 *    window bits consistent with the parameters and the configuration.
 *
 * Decompressor oracles (input: two compressed messages, split at a byte chosen by
 * the input):
 *  - feeding whole, in two pieces and byte by byte gives the same results and bytes;
 *  - no message inflates past the limit and the output buffer never grows past it;
 *  - text that is accepted is valid UTF-8;
 *  - the input used as plain data survives compress -> decompress, twice (context
 *    takeover) with the fuzzed window and level. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "proto/deflate.h"

/* ======================= negotiation ======================= */

static int tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
    return 1;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

typedef struct {
  const char *p;
  size_t n;
} span_t;

static span_t trim(span_t s) {
  while (s.n && (s.p[0] == ' ' || s.p[0] == '\t')) s.p++, s.n--;
  while (s.n && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t')) s.n--;
  return s;
}

/* Splits s at `sep` outside double quotes (a backslash inside quotes escapes the
 * next byte). Returns the number of parts (at most max). */
static size_t split(span_t s, char sep, span_t *parts, size_t max) {
  size_t k = 0, start = 0;
  int q = 0;
  for (size_t i = 0; i <= s.n; i++) {
    if (i < s.n) {
      char c = s.p[i];
      if (q) {
        if (c == '\\' && i + 1 < s.n) i++;
        else if (c == '"') q = 0;
        continue;
      }
      if (c == '"') {
        q = 1;
        continue;
      }
      if (c != sep) continue;
    }
    if (k < max) parts[k] = (span_t){s.p + start, i - start};
    k++;
    start = i + 1;
  }
  return k;
}

static int is_name(span_t s, const char *lit) {
  return s.n == strlen(lit) && strncasecmp(s.p, lit, s.n) == 0;
}

static int all_tchar(const char *p, size_t n) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (!tchar((unsigned char)p[i])) return 0;
  return 1;
}

/* value -> unquoted text in buf; returns its length, or -1 when malformed */
static long unquote(span_t v, char *buf, size_t cap) {
  if (v.n == 0) return -1;
  if (v.p[0] != '"') {
    if (v.n > cap) return (long)cap + 1;
    memcpy(buf, v.p, v.n);
    return (long)v.n;
  }
  size_t k = 0, i = 1;
  for (;;) {
    if (i >= v.n) return -1;
    char c = v.p[i++];
    if (c == '"') break;
    if (c == '\\') {
      if (i >= v.n) return -1;
      c = v.p[i++];
    }
    if (k < cap) buf[k] = c;
    k++;
  }
  if (i != v.n) return -1; /* something after the closing quote */
  return (long)k;
}

static int bits_of(const char *p, long n) {
  if (n < 1 || n > 2 || p[0] == '0') return 0;
  int v = 0;
  for (long i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return 0;
    v = v * 10 + (p[i] - '0');
  }
  return v >= 8 && v <= 15 ? v : 0;
}

/* The reference negotiation: returns the response length (0: none). */
static int ref_negotiate(const ews_pmd_config_t *cfg, const char *s, size_t n,
                         ews_pmd_params_t *out, char *resp) {
  static span_t elems[4096];
  size_t ne = split((span_t){s, n}, ',', elems, 4096);
  if (ne > 4096) ne = 4096; /* inputs are shorter than this many commas */
  for (size_t e = 0; e < ne; e++) {
    span_t el = trim(elems[e]);
    if (el.n == 0) continue;
    static span_t parts[4096];
    size_t np = split(el, ';', parts, 4096);
    if (np > 4096) continue;
    if (!is_name(trim(parts[0]), "permessage-deflate")) continue;
    int snct = 0, cnct = 0, smwb = 0, cmwb = -1, ok = 1;
    for (size_t k = 1; k < np && ok; k++) {
      span_t prm = trim(parts[k]);
      const char *eq = memchr(prm.p, '=', prm.n);
      span_t name = {prm.p, eq ? (size_t)(eq - prm.p) : prm.n};
      name = trim(name);
      if (!all_tchar(name.p, name.n)) { ok = 0; break; }
      int has_val = eq != NULL;
      char val[8];
      long vl = 0;
      if (has_val) {
        span_t v = trim((span_t){eq + 1, prm.n - (size_t)(eq + 1 - prm.p)});
        vl = unquote(v, val, sizeof val);
        if (vl <= 0) { ok = 0; break; }
        if (vl <= (long)sizeof val && !all_tchar(val, (size_t)vl)) { ok = 0; break; }
        if (vl > (long)sizeof val) {
          /* long values: still must be tokens to parse, but are never valid bits */
          vl = 3;
          memcpy(val, "999", 3);
        }
      }
      if (is_name(name, "server_no_context_takeover")) {
        if (snct || has_val) ok = 0;
        snct = 1;
      } else if (is_name(name, "client_no_context_takeover")) {
        if (cnct || has_val) ok = 0;
        cnct = 1;
      } else if (is_name(name, "server_max_window_bits")) {
        if (smwb || !has_val || !(smwb = bits_of(val, vl))) ok = 0;
      } else if (is_name(name, "client_max_window_bits")) {
        if (cmwb >= 0) ok = 0;
        cmwb = has_val ? bits_of(val, vl) : 0;
        if (has_val && !cmwb) ok = 0;
      } else {
        ok = 0;
      }
    }
    if (!ok) continue;
    ews_pmd_params_t p;
    p.server_no_context_takeover = cfg->mode == EWS_PMD_SHARED || snct;
    p.client_no_context_takeover = cfg->client_no_context_takeover || cnct;
    p.server_window_bits = smwb && smwb < cfg->server_window_bits ? smwb : cfg->server_window_bits;
    p.client_window_bits = cmwb > 0 ? cmwb : 15;
    int send_c = 0;
    if (cmwb >= 0 && cfg->client_window_bits && cfg->client_window_bits < p.client_window_bits) {
      p.client_window_bits = cfg->client_window_bits;
      send_c = 1;
    }
    int len = sprintf(resp, "permessage-deflate%s%s", p.server_no_context_takeover ? "; server_no_context_takeover" : "",
                      p.client_no_context_takeover ? "; client_no_context_takeover" : "");
    if (smwb || p.server_window_bits < 15)
      len += sprintf(resp + len, "; server_max_window_bits=%d", p.server_window_bits);
    if (send_c) len += sprintf(resp + len, "; client_max_window_bits=%d", p.client_window_bits);
    *out = p;
    return len;
  }
  return 0;
}

static int mentions(const char *s, size_t n, const char *what) {
  size_t l = strlen(what);
  for (size_t i = 0; i + l <= n; i++)
    if (strncasecmp(s + i, what, l) == 0) return 1;
  return 0;
}

static void fuzz_negotiate(uint8_t c, const uint8_t *d, size_t n) {
  ews_pmd_config_t cfg;
  ews_pmd_config_default(&cfg);
  cfg.enabled = 1;
  cfg.mode = (c >> 1) & 1;
  cfg.client_no_context_takeover = (c >> 2) & 1;
  cfg.server_window_bits = (uint8_t)(8 + ((c >> 3) & 7) + ((c >> 3) & 7 ? 1 : 0));
  if (cfg.server_window_bits > 15) cfg.server_window_bits = 15;
  cfg.client_window_bits = (c >> 6) ? (uint8_t)(8 + (c >> 6) * 2) : 0;

  char *s = malloc(n ? n : 1); /* exact size: ASan sees over-reads */
  if (!s) abort();
  memcpy(s, d, n);
  char resp[EWS_PMD_RESPONSE_MAX], want[512];
  ews_pmd_params_t p, q;
  memset(&p, 0, sizeof p);
  memset(&q, 0, sizeof q);
  int rc = ews_pmd_negotiate(&cfg, s, n, &p, resp, sizeof resp);
  int rr = ref_negotiate(&cfg, s, n, &q, want);
  if (rc < 0) abort();
  if (rc != rr || memcmp(resp, want, (size_t)rc) != 0 || memcmp(&p, &q, sizeof p) != 0)
    abort();
  if (rc > 0) {
    if (p.server_window_bits < 8 || p.server_window_bits > cfg.server_window_bits) abort();
    if (p.client_window_bits < 8 || p.client_window_bits > 15) abort();
    if (mentions(resp, (size_t)rc, "client_max_window_bits") &&
        !mentions(s, n, "client_max_window_bits"))
      abort();
    if (cfg.mode == EWS_PMD_SHARED && !mentions(resp, (size_t)rc, "server_no_context_takeover"))
      abort();
    /* the response is a well-formed offer */
    ews_pmd_config_t any = cfg;
    any.mode = EWS_PMD_DEDICATED;
    any.server_window_bits = 15;
    ews_pmd_params_t r;
    char resp2[EWS_PMD_RESPONSE_MAX];
    if (ews_pmd_negotiate(&any, resp, (size_t)rc, &r, resp2, sizeof resp2) <= 0) abort();
    if (r.server_window_bits != p.server_window_bits) abort();
  }
  free(s);
}

/* ======================= decompressor ======================= */

typedef struct {
  size_t max_cap;
} growrec_t;

static int rec_grow(ews_zbuf_t *b, size_t need) {
  growrec_t *g = b->ud;
  uint8_t *p = realloc(b->p, need);
  if (!p) return -1;
  b->p = p;
  b->cap = need;
  if (need > g->max_cap) g->max_cap = need;
  return 0;
}

typedef struct {
  int rc[2];
  size_t len[2];
  uint8_t *out[2];
} result_t;

/* Inflates the two messages; each message in pieces: an initial piece of `first`
 * bytes, then pieces of `step` (0: the rest at once). */
static void run(const ews_pmd_params_t *pp, uint64_t limit, int text, ews_pmd_worker_t *w,
                const uint8_t *const msg[2], const size_t len[2], size_t first, size_t step,
                result_t *res) {
  ews_inflater_t inf;
  ews_inflater_init(&inf, pp, limit);
  memset(res, 0, sizeof *res);
  int dead = 0;
  for (int m = 0; m < 2; m++) {
    growrec_t g = {0};
    ews_zbuf_t out = {NULL, 0, 0, rec_grow, &g};
    int rc = 0;
    if (dead) {
      rc = dead;
    } else {
      size_t at = 0, k = 0;
      do {
        size_t take = k++ == 0 ? first : step ? step : len[m] - at;
        if (take > len[m] - at) take = len[m] - at;
        uint8_t *piece = malloc(take ? take : 1);
        if (!piece) abort();
        memcpy(piece, msg[m] + at, take);
        rc = ews_inflate(&inf, w, piece, take, at == 0 && k == 1, at + take == len[m], text,
                         &out);
        free(piece);
        at += take;
      } while (rc == 0 && at < len[m]);
      if (rc) dead = rc;
    }
    if (rc == EWS_EZLIB || rc == EWS_EINVAL || rc == EWS_ENOMEM) abort();
    if (out.len > limit || (limit && g.max_cap > limit)) abort();
    if (rc == 0 && text && !ews_utf8_valid(out.p, out.len)) abort();
    if (rc == 0 && limit && out.len > limit) abort();
    res->rc[m] = rc;
    res->len[m] = out.len;
    res->out[m] = out.p;
  }
  ews_inflater_free(&inf, w);
}

static void result_free(result_t *r) {
  free(r->out[0]);
  free(r->out[1]);
}

/* Exact agreement, also for windows below 15 bits: the inflater always runs zlib
 * with a 32 KiB window, whose distance check does not depend on how the input was
 * split (before it did, crash-window8-overreach-split). */
static int same(const result_t *a, const result_t *b) {
  for (int m = 0; m < 2; m++) {
    if (a->rc[m] != b->rc[m]) return 0;
    /* after an error, how much was appended may depend on the chunking */
    if (a->rc[m] == 0 &&
        (a->len[m] != b->len[m] || (a->len[m] && memcmp(a->out[m], b->out[m], a->len[m]))))
      return 0;
  }
  return 1;
}

static void fuzz_inflate(uint8_t c, const uint8_t *d, size_t n) {
  if (n < 2) return;
  uint8_t c2 = d[0], c3 = d[1];
  d += 2;
  n -= 2;
  static const uint64_t limits[4] = {0, 1, 100, 4096};
  int bits = 8 + ((c >> 1) & 7);
  int cnct = (c >> 4) & 1;
  uint64_t limit = limits[(c >> 5) & 3];
  int text = (c >> 7) & 1;
  ews_pmd_params_t pp = {(uint8_t)cnct, (uint8_t)cnct, (uint8_t)bits, (uint8_t)bits};
  size_t cut = n ? c2 % (n + 1) : 0;
  const uint8_t *msg[2] = {d, d + cut};
  size_t len[2] = {cut, n - cut};
  ews_pmd_config_t cfg;
  ews_pmd_config_default(&cfg);
  ews_pmd_worker_t *w;
  if (ews_pmd_worker_new(&w, &cfg, NULL) != 0) abort();

  result_t whole, two, bytes;
  run(&pp, limit ? limit : UINT64_MAX, text, w, msg, len, SIZE_MAX, 0, &whole);
  run(&pp, limit ? limit : UINT64_MAX, text, NULL, msg, len, c3, 0, &two);
  if (!same(&whole, &two)) abort();
  if (n <= 1024) {
    run(&pp, limit ? limit : UINT64_MAX, text, w, msg, len, 1, 1, &bytes);
    if (!same(&whole, &bytes)) abort();
    result_free(&bytes);
  }
  result_free(&whole);
  result_free(&two);

  /* round trip of the input as plain data, with the fuzzed window and takeover; at
   * window 15 and level >= 1, half the time on the libdeflate engine */
  ews_deflater_t *def;
  if (bits == 15 && c3 % 10 >= 1 && (c2 & 0x80)) {
    if (ews_deflater_new_libdeflate(&def, c3 % 10, NULL) != 0) abort();
  } else if (ews_deflater_new(&def, c3 % 10, bits, 1 + c2 % 9, cnct, NULL) != 0) {
    abort();
  }
  ews_inflater_t inf;
  ews_inflater_init(&inf, &pp, 0);
  for (int k = 0; k < 2; k++) {
    ews_zbuf_t z = {0}, out = {0};
    if (ews_deflate_message(def, d, n, &z) != 0) abort();
    if (z.len > ews_deflate_bound(def, n)) abort();
    if (ews_inflate(&inf, w, z.p, z.len, 1, 1, 0, &out) != 0) abort();
    if (out.len != n || (n && memcmp(out.p, d, n) != 0)) abort();
    ews_zbuf_free(&z);
    ews_zbuf_free(&out);
  }
  ews_inflater_free(&inf, w);
  ews_deflater_free(def);
  ews_pmd_worker_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (data[0] & 1) fuzz_negotiate(data[0], data + 1, size - 1);
  else fuzz_inflate(data[0], data + 1, size - 1);
  return 0;
}
