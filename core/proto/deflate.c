/* deflate.c — permessage-deflate (RFC 7692): negotiation, compressor, bounded
 * decompressor. See deflate.h for the API and the memory model.
 *
 * zlib's allocations (zlib 1.2.13, x86-64), which the header's numbers come from:
 *  deflate: deflate_state (~6 KB), window 2 << wbits, prev 2 << wbits (16-bit
 *           entries), head 2 << (memLevel + 7), pending_buf 4 << (memLevel + 6);
 *           total (1 << (wbits + 2)) + (1 << (memLevel + 9)) + struct.
 *  inflate: inflate_state (~7 KB) at init, window 1 << wbits at the first output. */
#define ZLIB_CONST
#include "proto/deflate.h"

#include <libdeflate.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "err.h"
#include "proto/frame.h"
#include "proto/http_head.h"

#define ZCHUNK ((size_t)1 << 30) /* zlib counts in uInt: feed at most this at once */
#define IDLE_STREAMS_MAX 8       /* idle inflate streams a worker keeps */

/* ---- allocation ---- */

static void za_set(ews_zalloc_t *dst, const ews_zalloc_t *src) {
  if (src && src->alloc && src->free) *dst = *src;
  else memset(dst, 0, sizeof *dst);
}

static void *za_alloc(const ews_zalloc_t *za, size_t n) {
  return za->alloc ? za->alloc(za->ud, n) : malloc(n);
}

static void za_free(const ews_zalloc_t *za, void *p) {
  if (!p) return;
  if (za->free) za->free(za->ud, p);
  else free(p);
}

static voidpf z_alloc_cb(voidpf opaque, uInt items, uInt size) {
  return za_alloc(opaque, (size_t)items * size);
}

static void z_free_cb(voidpf opaque, voidpf p) { za_free(opaque, p); }

static void z_hook(z_stream *z, ews_zalloc_t *za) {
  z->zalloc = z_alloc_cb;
  z->zfree = z_free_cb;
  z->opaque = za;
}

int ews_zbuf_reserve(ews_zbuf_t *b, size_t need) {
  if (!b) return EWS_EINVAL;
  if (need <= b->cap) return 0;
  if (b->grow) {
    if (b->grow(b, need) != 0 || !b->p || b->cap < need) return EWS_ENOMEM;
    return 0;
  }
  uint8_t *p = realloc(b->p, need);
  if (!p) return EWS_ENOMEM;
  b->p = p;
  b->cap = need;
  return 0;
}

void ews_zbuf_free(ews_zbuf_t *b) {
  if (!b) return;
  if (!b->grow) free(b->p);
  memset(b, 0, sizeof *b);
}

/* ---- configuration ---- */

void ews_pmd_config_default(ews_pmd_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->enabled = 0;
  cfg->mode = EWS_PMD_SHARED;
  cfg->level = 1;
  cfg->mem_level = 8;
  cfg->server_window_bits = 15;
  cfg->client_window_bits = 0;
  cfg->client_no_context_takeover = 1;
  cfg->threshold = 128;
}

int ews_pmd_config_check(const ews_pmd_config_t *cfg) {
  if (!cfg) return EWS_EINVAL;
  if (cfg->enabled > 1 || cfg->client_no_context_takeover > 1) return EWS_EINVAL;
  if (cfg->mode != EWS_PMD_SHARED && cfg->mode != EWS_PMD_DEDICATED) return EWS_EINVAL;
  if (cfg->engine != EWS_PMD_ENGINE_ZLIB &&
      (cfg->engine != EWS_PMD_ENGINE_LIBDEFLATE || cfg->mode != EWS_PMD_SHARED))
    return EWS_EINVAL;
  if (cfg->level > 9 || cfg->mem_level < 1 || cfg->mem_level > 9) return EWS_EINVAL;
  if (cfg->server_window_bits < 8 || cfg->server_window_bits > 15) return EWS_EINVAL;
  if (cfg->client_window_bits != 0 &&
      (cfg->client_window_bits < 8 || cfg->client_window_bits > 15))
    return EWS_EINVAL;
  return 0;
}

/* ---- negotiation ---- */

static int is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
    return 1;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int eq_nocase(const char *a, size_t n, const char *lit) {
  size_t i = 0;
  for (; i < n && lit[i]; i++) {
    unsigned char x = (unsigned char)a[i], y = (unsigned char)lit[i];
    if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
    if (x != y) return 0;
  }
  return i == n && lit[i] == 0;
}

typedef struct {
  uint8_t snct, cnct;       /* server_/client_no_context_takeover present */
  uint8_t has_smwb, smwb;   /* server_max_window_bits and its value */
  uint8_t has_cmwb, cmwb;   /* client_max_window_bits and its value (0: none) */
} offer_t;

/* Window bits: "8".."15", no leading zero. Returns the value or 0. */
static int parse_bits(const char *v, size_t n) {
  if (n == 1 && (v[0] == '8' || v[0] == '9')) return v[0] - '0';
  if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + (v[1] - '0');
  return 0;
}

/* Parses one list element. Returns 1 for an acceptable permessage-deflate offer
 * (*o filled), 0 for another extension (or no extension token), -1 for a declined
 * permessage-deflate offer. */
static int parse_offer(const char *e, size_t n, offer_t *o) {
  size_t i = 0;
  while (i < n && is_tchar((unsigned char)e[i])) i++;
  if (i == 0 || !eq_nocase(e, i, "permessage-deflate")) return 0;
  memset(o, 0, sizeof *o);
  for (;;) {
    while (i < n && (e[i] == ' ' || e[i] == '\t')) i++;
    if (i == n) return 1;
    if (e[i] != ';') return -1;
    i++;
    while (i < n && (e[i] == ' ' || e[i] == '\t')) i++;
    size_t name = i;
    while (i < n && is_tchar((unsigned char)e[i])) i++;
    size_t name_len = i - name;
    if (name_len == 0) return -1;
    while (i < n && (e[i] == ' ' || e[i] == '\t')) i++;
    /* the value, unescaped: only short ones can be valid, keep up to 3 bytes */
    char val[3];
    size_t val_len = 0;
    int has_val = 0;
    if (i < n && e[i] == '=') {
      has_val = 1;
      i++;
      while (i < n && (e[i] == ' ' || e[i] == '\t')) i++;
      if (i < n && e[i] == '"') {
        i++;
        for (;;) {
          if (i == n) return -1; /* unterminated */
          unsigned char c = (unsigned char)e[i++];
          if (c == '"') break;
          if (c == '\\') {
            if (i == n) return -1;
            c = (unsigned char)e[i++];
          }
          /* the unescaped value must be a token (RFC 6455 section 9.1) */
          if (!is_tchar(c)) return -1;
          if (val_len < sizeof val) val[val_len] = (char)c;
          val_len++;
        }
      } else {
        while (i < n && is_tchar((unsigned char)e[i])) {
          if (val_len < sizeof val) val[val_len] = e[i];
          val_len++;
          i++;
        }
      }
      if (val_len == 0) return -1;
    }
    const char *nm = e + name;
    size_t vl = val_len > sizeof val ? sizeof val : val_len; /* > 2 fails parse_bits */
    if (eq_nocase(nm, name_len, "server_no_context_takeover")) {
      if (o->snct || has_val) return -1;
      o->snct = 1;
    } else if (eq_nocase(nm, name_len, "client_no_context_takeover")) {
      if (o->cnct || has_val) return -1;
      o->cnct = 1;
    } else if (eq_nocase(nm, name_len, "server_max_window_bits")) {
      if (o->has_smwb || !has_val) return -1;
      int b = parse_bits(val, vl);
      if (!b) return -1;
      o->has_smwb = 1;
      o->smwb = (uint8_t)b;
    } else if (eq_nocase(nm, name_len, "client_max_window_bits")) {
      if (o->has_cmwb) return -1;
      o->has_cmwb = 1;
      if (has_val) {
        int b = parse_bits(val, vl);
        if (!b) return -1;
        o->cmwb = (uint8_t)b;
      }
    } else {
      return -1; /* unknown parameter */
    }
  }
}

typedef struct {
  char *p;
  size_t n, cap;
  int overflow;
} wr_t;

static void wr_str(wr_t *w, const char *s) {
  size_t l = strlen(s);
  if (w->n + l > w->cap) {
    w->overflow = 1;
    return;
  }
  memcpy(w->p + w->n, s, l);
  w->n += l;
}

static void wr_bits(wr_t *w, const char *name, int bits) {
  char num[4] = {0};
  if (bits >= 10) {
    num[0] = '1';
    num[1] = (char)('0' + bits - 10);
  } else {
    num[0] = (char)('0' + bits);
  }
  wr_str(w, "; ");
  wr_str(w, name);
  wr_str(w, "=");
  wr_str(w, num);
}

int ews_pmd_negotiate(const ews_pmd_config_t *cfg, const char *offers, size_t len,
                      ews_pmd_params_t *params, char *resp, size_t cap) {
  if (!cfg || !params || !resp || (!offers && len)) return EWS_EINVAL;
  if (ews_pmd_config_check(cfg) != 0) return EWS_EINVAL;
  if (!cfg->enabled || len == 0) return 0;
  size_t pos = 0, el;
  const char *e;
  offer_t o;
  while (ews_http_list_next(offers, len, &pos, &e, &el)) {
    if (parse_offer(e, el, &o) != 1) continue;
    ews_pmd_params_t p;
    p.server_no_context_takeover = cfg->mode == EWS_PMD_SHARED || o.snct;
    p.client_no_context_takeover = cfg->client_no_context_takeover || o.cnct;
    p.server_window_bits = cfg->server_window_bits;
    if (o.has_smwb && o.smwb < p.server_window_bits) p.server_window_bits = o.smwb;
    int send_smwb = o.has_smwb || p.server_window_bits < 15;
    int send_cmwb = 0;
    p.client_window_bits = 15;
    if (o.has_cmwb) {
      if (o.cmwb) p.client_window_bits = o.cmwb;
      if (cfg->client_window_bits && cfg->client_window_bits < p.client_window_bits) {
        p.client_window_bits = cfg->client_window_bits;
        send_cmwb = 1;
      }
    }
    wr_t w = {resp, 0, cap, 0};
    wr_str(&w, "permessage-deflate");
    if (p.server_no_context_takeover) wr_str(&w, "; server_no_context_takeover");
    if (p.client_no_context_takeover) wr_str(&w, "; client_no_context_takeover");
    if (send_smwb) wr_bits(&w, "server_max_window_bits", p.server_window_bits);
    if (send_cmwb) wr_bits(&w, "client_max_window_bits", p.client_window_bits);
    if (w.overflow) return EWS_EINVAL;
    *params = p;
    return (int)w.n;
  }
  return 0;
}

/* ---- compressor ---- */

struct ews_deflater {
  z_stream z;     /* unused (never initialised) when ldc is set */
  ews_zalloc_t za;
  uint8_t wbits;  /* as agreed, 8..15 */
  uint8_t no_ctx; /* reset after every message */
  struct libdeflate_compressor *ldc; /* the libdeflate engine (see below), else NULL */
};

/* The prologue both engines share: a zeroed deflater from za's allocator (malloc
 * when za is NULL or incomplete) with the allocator, window and takeover set; NULL
 * when out of memory. deflater_release frees the struct alone (an engine that
 * failed to start, or after ews_deflater_free has ended the engine). */
static ews_deflater_t *deflater_alloc(const ews_zalloc_t *za, int window_bits, int no_ctx) {
  ews_zalloc_t a;
  za_set(&a, za);
  ews_deflater_t *d = za_alloc(&a, sizeof *d);
  if (!d) return NULL;
  memset(d, 0, sizeof *d);
  d->za = a;
  d->wbits = (uint8_t)window_bits;
  d->no_ctx = no_ctx != 0;
  return d;
}

static void deflater_release(ews_deflater_t *d) {
  ews_zalloc_t a = d->za; /* d holds the allocator it is freed with */
  za_free(&a, d);
}

int ews_deflater_new(ews_deflater_t **out, int level, int window_bits, int mem_level,
                     int no_context_takeover, const ews_zalloc_t *za) {
  if (!out) return EWS_EINVAL;
  *out = NULL;
  if (level < 0 || level > 9 || window_bits < 8 || window_bits > 15 || mem_level < 1 ||
      mem_level > 9)
    return EWS_EINVAL;
  ews_deflater_t *d = deflater_alloc(za, window_bits, no_context_takeover);
  if (!d) return EWS_ENOMEM;
  z_hook(&d->z, &d->za);
  /* zlib rejects 8 for raw deflate; 9 never emits a distance above 250 (see .h) */
  int zbits = window_bits == 8 ? 9 : window_bits;
  int rc = deflateInit2(&d->z, level, Z_DEFLATED, -zbits, mem_level, Z_DEFAULT_STRATEGY);
  if (rc != Z_OK) {
    deflater_release(d);
    return rc == Z_MEM_ERROR ? EWS_ENOMEM : EWS_EZLIB;
  }
  *out = d;
  return 0;
}

/* The libdeflate engine: whole messages without context takeover, 32 KiB window.
 * libdeflate only writes complete DEFLATE streams, whose last block has BFINAL set,
 * and does not say at which bit that block starts, so the bit cannot be cleared.
 * Instead its stream is followed by an empty stored block with BFINAL clear (the
 * byte 00, then 00 00 FF FF) whose 00 00 FF FF is removed as RFC 7692 7.2.1 says:
 * the message is libdeflate's stream plus one 00 byte. The peer appends
 * 00 00 FF FF, starts a new stream after the final block (7.2.3.4 asks receivers to)
 * and ends the message on a complete empty non-final stored block: the state a
 * zlib sync flush leaves, so a receiver that keeps its inflate stream between
 * messages (as Chromium does) stays in step. libdeflate allocates with malloc, not
 * with the hooks. */
int ews_deflater_new_libdeflate(ews_deflater_t **out, int level, const ews_zalloc_t *za) {
  if (!out) return EWS_EINVAL;
  *out = NULL;
  if (level < 1 || level > 9) return EWS_EINVAL;
  ews_deflater_t *d = deflater_alloc(za, 15, 1);
  if (!d) return EWS_ENOMEM;
  d->ldc = libdeflate_alloc_compressor(level);
  if (!d->ldc) {
    deflater_release(d);
    return EWS_ENOMEM;
  }
  *out = d;
  return 0;
}

int ews_deflater_is_libdeflate(const ews_deflater_t *d) { return d && d->ldc != NULL; }

void ews_deflater_free(ews_deflater_t *d) {
  if (!d) return;
  if (d->ldc) libdeflate_free_compressor(d->ldc);
  else deflateEnd(&d->z);
  deflater_release(d);
}

int ews_deflater_window_bits(const ews_deflater_t *d) { return d->wbits; }

size_t ews_deflate_bound(const ews_deflater_t *d, size_t n) {
  if (d->ldc) { /* libdeflate's stream + the 00 byte (see ews_deflater_new_libdeflate) */
    size_t b = libdeflate_deflate_compress_bound(d->ldc, n) + 1;
    return b < n ? SIZE_MAX : b;
  }
  /* deflateBound assumes Z_FINISH; a sync flush adds at most an empty stored block
   * (3 bits, padding, 4 bytes) */
  uLong b = deflateBound((z_streamp)&d->z, (uLong)n);
  size_t r = (size_t)b + 16;
  return r < n ? SIZE_MAX : r;
}

static int deflate_into(ews_deflater_t *d, const uint8_t *p, size_t n, ews_zbuf_t *out,
                        size_t headroom) {
  size_t start = out->len;
  size_t bound = ews_deflate_bound(d, n);
  /* One allocation of the bound for small messages; a guess (then doubling) for big
   * ones, where the bound (about n) would mostly be wasted. libdeflate needs all its
   * output room up front: the bound. */
  size_t want = bound <= 65536 || d->ldc ? bound : n / 4 + 4096;
  if (bound == SIZE_MAX || out->len > SIZE_MAX - bound || headroom > SIZE_MAX - bound - out->len)
    return EWS_ENOMEM;
  if (out->cap - out->len < headroom + want &&
      ews_zbuf_reserve(out, out->len + headroom + want) != 0)
    return EWS_ENOMEM;
  out->len += headroom;
  size_t pay = out->len;
  if (n == 0) {
    /* An empty message is one empty stored block: its header byte 00 (zlib would
     * refuse a second sync flush without new input). The stream is byte-aligned
     * after the previous message, so this is valid with or without takeover. */
    out->p[out->len++] = 0x00;
    return 0;
  }
  if (d->ldc) {
    size_t k = libdeflate_deflate_compress(d->ldc, p, n, out->p + out->len, bound - 1);
    if (k == 0) { /* cannot happen with the bound */
      out->len = start;
      return EWS_EZLIB;
    }
    out->len += k;
    out->p[out->len++] = 0x00; /* empty non-final stored block, 00 00 FF FF removed */
    return 0;
  }
  z_stream *z = &d->z;
  int err = 0;
  size_t left = n;
  do {
    size_t take = left < ZCHUNK ? left : ZCHUNK;
    int flush = take == left ? Z_SYNC_FLUSH : Z_NO_FLUSH;
    z->next_in = p;
    z->avail_in = (uInt)take;
    do {
      /* more than 6 bytes of room, or a sync flush could be repeated */
      if (out->cap - out->len < 16) {
        size_t grow = out->len - pay;
        if (grow < 4096) grow = 4096;
        if (ews_zbuf_reserve(out, out->len + grow) != 0) {
          err = EWS_ENOMEM;
          goto fail;
        }
      }
      size_t room = out->cap - out->len;
      if (room > ZCHUNK) room = ZCHUNK;
      z->next_out = out->p + out->len;
      z->avail_out = (uInt)room;
      int rc = deflate(z, flush);
      out->len += room - z->avail_out;
      if (rc != Z_OK && rc != Z_BUF_ERROR) {
        err = rc == Z_MEM_ERROR ? EWS_ENOMEM : EWS_EZLIB;
        goto fail;
      }
    } while (z->avail_in > 0 || z->avail_out == 0);
    p += take;
    left -= take;
  } while (left > 0);
  /* a sync flush ends with an empty stored block: 00 00 FF FF after the header */
  if (out->len - pay < 5 || memcmp(out->p + out->len - 4, "\x00\x00\xff\xff", 4) != 0) {
    err = EWS_EZLIB;
    goto fail;
  }
  out->len -= 4;
  if (d->no_ctx && deflateReset(z) != Z_OK) {
    err = EWS_EZLIB;
    goto fail;
  }
  return 0;
fail:
  out->len = start;
  deflateReset(z);
  return err;
}

int ews_deflate_message(ews_deflater_t *d, const uint8_t *p, size_t n, ews_zbuf_t *out) {
  if (!d || !out || (!p && n)) return EWS_EINVAL;
  return deflate_into(d, p, n, out, 0);
}

int ews_deflate_frame(ews_deflater_t *d, int opcode, const uint8_t *p, size_t n,
                      ews_zbuf_t *out, size_t *frame_off) {
  if (!d || !out || !frame_off || (!p && n)) return EWS_EINVAL;
  if (opcode != EWS_OP_TEXT && opcode != EWS_OP_BINARY) return EWS_EINVAL;
  size_t start = out->len;
  int rc = deflate_into(d, p, n, out, EWS_FRAME_MAX_HEADER);
  if (rc != 0) return rc;
  size_t pay = start + EWS_FRAME_MAX_HEADER;
  uint64_t plen = out->len - pay;
  size_t hl = ews_frame_header_len(plen);
  ews_frame_header(out->p + pay - hl, opcode, 1, 1, plen, NULL);
  *frame_off = pay - hl;
  return 0;
}

int ews_deflater_reset(ews_deflater_t *d, const uint8_t *sent, size_t n) {
  if (!d || (!sent && n)) return EWS_EINVAL;
  if (d->ldc) return 0; /* keeps no context */
  if (deflateReset(&d->z) != Z_OK) return EWS_EZLIB;
  if (!sent || n == 0) return 0;
  size_t w = (size_t)1 << (d->wbits == 8 ? 9 : d->wbits);
  if (n > w) {
    sent += n - w;
    n = w;
  }
  if (deflateSetDictionary(&d->z, sent, (uInt)n) != Z_OK) {
    deflateReset(&d->z);
    return EWS_EZLIB;
  }
  return 0;
}

/* ---- worker ---- */

struct ews_zstream {
  z_stream z;
  ews_zalloc_t za;
  struct ews_zstream *next; /* idle list */
  uint8_t wbits;
};

struct ews_pmd_worker {
  ews_pmd_config_t cfg;
  ews_zalloc_t za;
  ews_deflater_t *shared[8]; /* by window bits - 8 */
  ews_zstream_t *idle;
  unsigned n_idle;
  struct libdeflate_decompressor *ld; /* whole messages without takeover (below) */
  uint8_t *ld_in;                     /* a message's data + the end we append */
  size_t ld_in_cap;
};

int ews_pmd_worker_new(ews_pmd_worker_t **out, const ews_pmd_config_t *cfg,
                       const ews_zalloc_t *za) {
  if (!out) return EWS_EINVAL;
  *out = NULL;
  if (ews_pmd_config_check(cfg) != 0) return EWS_EINVAL;
  ews_zalloc_t a;
  za_set(&a, za);
  ews_pmd_worker_t *w = za_alloc(&a, sizeof *w);
  if (!w) return EWS_ENOMEM;
  memset(w, 0, sizeof *w);
  w->cfg = *cfg;
  w->za = a;
  *out = w;
  return 0;
}

static void stream_end(ews_zstream_t *s) {
  inflateEnd(&s->z);
  ews_zalloc_t a = s->za;
  za_free(&a, s);
}

void ews_pmd_worker_free(ews_pmd_worker_t *w) {
  if (!w) return;
  for (int i = 0; i < 8; i++) ews_deflater_free(w->shared[i]);
  while (w->idle) {
    ews_zstream_t *s = w->idle;
    w->idle = s->next;
    stream_end(s);
  }
  if (w->ld) libdeflate_free_decompressor(w->ld);
  ews_zalloc_t a = w->za;
  za_free(&a, w->ld_in);
  za_free(&a, w);
}

const ews_pmd_config_t *ews_pmd_worker_config(const ews_pmd_worker_t *w) {
  return &w->cfg;
}

int ews_pmd_deflater_for(ews_pmd_worker_t *w, const ews_pmd_params_t *params,
                         ews_deflater_t **conn, ews_deflater_t **out) {
  if (!w || !params || !conn || !out) return EWS_EINVAL;
  int bits = params->server_window_bits;
  if (bits < 8 || bits > 15) return EWS_EINVAL;
  ews_deflater_t **slot = params->server_no_context_takeover ? &w->shared[bits - 8] : conn;
  if (!*slot) {
    int rc;
    if (params->server_no_context_takeover && bits == 15 &&
        w->cfg.engine == EWS_PMD_ENGINE_LIBDEFLATE && w->cfg.level >= 1)
      rc = ews_deflater_new_libdeflate(slot, w->cfg.level, &w->za);
    else
      rc = ews_deflater_new(slot, w->cfg.level, bits, w->cfg.mem_level,
                            params->server_no_context_takeover, &w->za);
    if (rc != 0) return rc;
  }
  *out = *slot;
  return 0;
}

/* ---- decompressor ---- */

static int stream_take(ews_pmd_worker_t *w, int wbits, ews_zstream_t **out) {
  if (w && w->idle) {
    ews_zstream_t *s = w->idle;
    w->idle = s->next;
    w->n_idle--;
    if (s->wbits == wbits || inflateReset2(&s->z, -wbits) == Z_OK) {
      s->wbits = (uint8_t)wbits;
      s->next = NULL;
      *out = s;
      return 0;
    }
    stream_end(s);
  }
  ews_zalloc_t a;
  za_set(&a, w ? &w->za : NULL);
  ews_zstream_t *s = za_alloc(&a, sizeof *s);
  if (!s) return EWS_ENOMEM;
  memset(s, 0, sizeof *s);
  s->za = a;
  s->wbits = (uint8_t)wbits;
  z_hook(&s->z, &s->za);
  int rc = inflateInit2(&s->z, -wbits);
  if (rc != Z_OK) {
    za_free(&a, s);
    return rc == Z_MEM_ERROR ? EWS_ENOMEM : EWS_EZLIB;
  }
  *out = s;
  return 0;
}

static void stream_give(ews_pmd_worker_t *w, ews_zstream_t *s) {
  if (w && w->n_idle < IDLE_STREAMS_MAX && inflateReset(&s->z) == Z_OK) {
    s->next = w->idle;
    w->idle = s;
    w->n_idle++;
    return;
  }
  stream_end(s);
}

void ews_inflater_init(ews_inflater_t *inf, const ews_pmd_params_t *params,
                       uint64_t max_message) {
  memset(inf, 0, sizeof *inf);
  inf->limit = max_message ? max_message : UINT64_MAX;
  /* Always a 32 KiB window, whatever client_max_window_bits was agreed: zlib below 15
   * bits checks a match distance against its window plus what the same inflate() call
   * has produced, so data that breaks a smaller window would be accepted when it
   * arrives in one piece and refused (1007) when split into reads or frames. At 15
   * bits the check is exact (at most 32 KiB, and within the data so far), so the
   * verdict never depends on how the message was split; every client that keeps its
   * promise is inflated alike. */
  inf->window_bits = 15;
  inf->no_context_takeover = params->client_no_context_takeover;
  inf->utf8 = EWS_UTF8_ACCEPT;
}

void ews_inflater_free(ews_inflater_t *inf, ews_pmd_worker_t *w) {
  if (!inf) return;
  if (inf->zs) {
    if (inf->err || inf->in_msg) stream_end(inf->zs); /* mid-message: not reusable */
    else stream_give(w, inf->zs);
  }
  inf->zs = NULL;
  inf->in_msg = 0;
}

/* After the end of a DEFLATE stream (a block with BFINAL): start a new one, keeping
 * the window (harmless without takeover: the message's own data only). */
static int stream_restart(ews_inflater_t *inf) {
  z_stream *z = &inf->zs->z;
  size_t wsize = (size_t)1 << inf->zs->wbits;
  uint8_t *dict = za_alloc(&inf->zs->za, wsize);
  if (!dict) return EWS_ENOMEM;
  uInt dlen = 0;
  int rc = inflateGetDictionary(z, dict, &dlen);
  if (rc == Z_OK) rc = inflateReset(z);
  if (rc == Z_OK && dlen) rc = inflateSetDictionary(z, dict, dlen);
  za_free(&inf->zs->za, dict);
  return rc == Z_OK ? 0 : EWS_EZLIB;
}

/* Grows out for more inflated output, never past the message's limit. */
static int grow_out(ews_zbuf_t *out, uint64_t budget) {
  size_t step = out->cap > 4096 ? out->cap : 4096;
  if ((uint64_t)step > budget) step = (size_t)budget;
  if (step > SIZE_MAX - out->len) return EWS_ENOMEM;
  return ews_zbuf_reserve(out, out->len + step);
}

/* Inflates p[0..n): message data, or (tail) the appended 00 00 FF FF, which is fed
 * with Z_BLOCK so that inflate stops on the block boundary it must end on. Returns
 * when all input is consumed and inflate has no more output for it. */
static int inflate_run(ews_inflater_t *inf, const uint8_t *p, size_t n, int tail,
                       ews_zbuf_t *out) {
  z_stream *z = &inf->zs->z;
  int flush = tail ? Z_BLOCK : Z_SYNC_FLUSH;
  for (;;) {
    size_t take = n < ZCHUNK ? n : ZCHUNK;
    z->next_in = p;
    z->avail_in = (uInt)take;
    uint64_t budget = inf->limit - inf->total;
    uint8_t probe;
    uint8_t *dst;
    size_t room;
    if (budget == 0) {
      /* at the limit: any further byte is one too many */
      dst = &probe;
      room = 1;
    } else {
      if (out->cap == out->len) {
        int rc = grow_out(out, budget);
        if (rc != 0) return rc;
      }
      room = out->cap - out->len;
      if ((uint64_t)room > budget) room = (size_t)budget;
      if (room > ZCHUNK) room = ZCHUNK;
      dst = out->p + out->len;
    }
    z->next_out = dst;
    z->avail_out = (uInt)room;
    int rc = inflate(z, flush);
    size_t used = take - z->avail_in, got = room - z->avail_out;
    p += used;
    n -= used;
    inf->consumed += used;
    if (used) inf->fresh = 0;
    if (got) {
      if (budget == 0) return EWS_EMSG_TOO_BIG;
      if (inf->text) {
        inf->utf8 = ews_utf8_feed(inf->utf8, dst, got);
        if (inf->utf8 == EWS_UTF8_REJECT) return EWS_EUTF8;
      }
      out->len += got;
      inf->total += got;
    }
    switch (rc) {
      case Z_OK:
      case Z_BUF_ERROR:
        break;
      case Z_STREAM_END: {
        if (++inf->restarts >
            EWS_INFLATE_FREE_RESTARTS + inf->consumed / EWS_INFLATE_BYTES_PER_RESTART)
          return EWS_EINFLATE_BLOCKS;
        int r = stream_restart(inf);
        if (r != 0) return r;
        inf->fresh = 1;
        if (tail) return 0; /* what is left of the tail follows a final block */
        break;
      }
      case Z_DATA_ERROR:
      case Z_NEED_DICT:
        return EWS_EINFLATE;
      case Z_MEM_ERROR:
        return EWS_ENOMEM;
      default:
        return EWS_EZLIB;
    }
    if (n == 0 && z->avail_out > 0) return 0;
    if (!used && !got && rc != Z_STREAM_END) return EWS_EZLIB; /* no progress */
  }
}

/* A whole message (one frame) without context takeover and with a full window is
 * inflated in one call by libdeflate (about twice zlib's speed), straight into out.
 * libdeflate wants a complete DEFLATE stream, so the message gets the 00 00 FF FF
 * tail and then an empty final stored block (01 00 00 FF FF); it must use all of
 * that, or the message had a final block of its own inside (RFC 7692 7.2.3.4), and
 * zlib, which handles those, runs instead. So does zlib whenever libdeflate does not
 * succeed (bad data, more output than the guess or the limit allows: zlib then
 * reports the error the streaming path reports). Returns 1 when the message was
 * inflated (out and inf->total, inf->utf8 updated), 0 when zlib must do it (out
 * unchanged). */
#define EWS_INFLATE_WHOLE_MAX (64u * 1024u) /* compressed bytes: a bounded scratch */

static int inflate_whole(ews_inflater_t *inf, ews_pmd_worker_t *w, const uint8_t *p, size_t n,
                         ews_zbuf_t *out) {
  static const uint8_t end[9] = {0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff};
  size_t need = n + sizeof end;
  if (!w->ld && !(w->ld = libdeflate_alloc_decompressor())) return 0;
  if (need > w->ld_in_cap) { /* grows to the largest message seen, at most ~64 KiB */
    size_t cap = (need + 1023) & ~(size_t)1023;
    uint8_t *b = za_alloc(&w->za, cap);
    if (!b) return 0;
    za_free(&w->za, w->ld_in);
    w->ld_in = b;
    w->ld_in_cap = cap;
  }
  memcpy(w->ld_in, p, n);
  memcpy(w->ld_in + n, end, sizeof end);
  /* room for 8x (JSON shrinks ~3-5x at level 1); more goes to zlib */
  uint64_t room = (uint64_t)n * 8 + 256;
  if (room > inf->limit) room = inf->limit;
  if (room > SIZE_MAX - out->len || ews_zbuf_reserve(out, out->len + (size_t)room) != 0) return 0;
  size_t used = 0, got = 0;
  enum libdeflate_result r = libdeflate_deflate_decompress_ex(
      w->ld, w->ld_in, need, out->p + out->len, (size_t)room, &used, &got);
  if (r != LIBDEFLATE_SUCCESS || used != need) {
    /* zlib takes over: the worker holds one or the other, not both */
    za_free(&w->za, w->ld_in);
    w->ld_in = NULL;
    w->ld_in_cap = 0;
    return 0;
  }
  if (inf->text) inf->utf8 = ews_utf8_feed(inf->utf8, out->p + out->len, got);
  out->len += got;
  inf->total = got;
  inf->consumed = n;
  return 1;
}

static int inf_fail(ews_inflater_t *inf, int err) {
  inf->err = err;
  return err;
}

int ews_inflate(ews_inflater_t *inf, ews_pmd_worker_t *w, const uint8_t *p, size_t n,
                int first, int last, int text, ews_zbuf_t *out) {
  if (!inf) return EWS_EINVAL;
  if (inf->err) return inf->err;
  if (!out || (!p && n)) return inf_fail(inf, EWS_EINVAL);
  if (first) {
    if (inf->in_msg) return inf_fail(inf, EWS_EINVAL);
    inf->in_msg = 1;
    inf->total = 0;
    inf->restarts = 0;
    inf->consumed = 0;
    inf->utf8 = EWS_UTF8_ACCEPT;
    inf->text = text != 0;
    inf->fresh = 1;
  } else if (!inf->in_msg) {
    return inf_fail(inf, EWS_EINVAL);
  }
  int rc;
  if (first && last && n && n <= EWS_INFLATE_WHOLE_MAX && inf->no_context_takeover &&
      inf->window_bits == 15 && !inf->zs && w && inflate_whole(inf, w, p, n, out)) {
    if (inf->text && inf->utf8 != EWS_UTF8_ACCEPT) return inf_fail(inf, EWS_EUTF8);
    inf->in_msg = 0;
    return 0;
  }
  if (n) {
    if (!inf->zs && (rc = stream_take(w, inf->window_bits, &inf->zs)) != 0)
      return inf_fail(inf, rc);
    if ((rc = inflate_run(inf, p, n, 0, out)) != 0) return inf_fail(inf, rc);
  }
  if (!last) return 0;
  if (!inf->fresh) {
    static const uint8_t tail[4] = {0x00, 0x00, 0xff, 0xff};
    if ((rc = inflate_run(inf, tail, sizeof tail, 1, out)) != 0) return inf_fail(inf, rc);
    /* the message must end on a block boundary (data_type bit 7) */
    if (!inf->fresh && !(inf->zs->z.data_type & 128)) return inf_fail(inf, EWS_EINFLATE);
  }
  if (inf->text && inf->utf8 != EWS_UTF8_ACCEPT) return inf_fail(inf, EWS_EUTF8);
  inf->in_msg = 0;
  if (inf->no_context_takeover && inf->zs) {
    stream_give(w, inf->zs);
    inf->zs = NULL;
  }
  return 0;
}
