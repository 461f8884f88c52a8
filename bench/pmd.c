/* pmd.c — the client side of permessage-deflate (RFC 7692) for edgews-bench, on top
 * of the server's own module (core/proto/deflate.h): the offer, a strict check of
 * the server's response, compression of outgoing messages and inflation of echoes.
 *
 * Offer: "permessage-deflate; client_max_window_bits", plus
 * "; client_no_context_takeover" in shared mode. The response may only contain
 * server_no_context_takeover, client_no_context_takeover, server_max_window_bits=N
 * and client_max_window_bits=N (8..15, each at most once); anything else, a second
 * extension, or no extension at all fails the handshake.
 *
 * Our compressor (zlib level --deflate-level, default 1, memLevel 8):
 *  - by default one compressor for all connections, reset after every message. A
 *    message that refers to nothing earlier is valid whatever was agreed (a peer
 *    that keeps context just never sees a back-reference into it), so this holds in
 *    takeover mode too. Messages of payload.c's fixed JSON set are compressed once
 *    and the compressed bytes reused (per window size): zlib needs about 20 us for a
 *    1 KiB JSON message on the test machine, as much as the server's own work, and
 *    the generator must stay well below the server's CPU per message.
 *  - with --client-context in takeover mode (echo only; unless the server asked for
 *    client_no_context_takeover) one compressor per connection keeps its context,
 *    as a browser does: faithful, but it costs the generator that 20 us a message.
 * Our inflater: the module's ews_inflater_t with the roles swapped (its "client"
 * parameters are the server's here); inflate streams are cached in one
 * ews_pmd_worker_t, so a connection whose server resets per message holds none
 * between messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bench.h"
#include "err.h"

typedef struct {
  uint8_t *p; /* compressed variant, NULL until first used */
  uint32_t n;
} cached_t;

typedef struct pmd_conn {
  ews_inflater_t inf;
  ews_deflater_t *own; /* context-keeping compressor, or NULL: the shared one */
  uint8_t client_bits; /* our window (<= what the server allowed) */
  uint8_t reset;       /* we compress every message on its own */
} pmd_conn_t;

static ews_pmd_worker_t *g_pmdw;          /* inflate stream cache */
static ews_deflater_t *g_shared[8];       /* by window bits - 8 */
static ews_zbuf_t g_zout, g_zin;          /* scratch output */
static cached_t *g_cache;                 /* by variant, for g_cache_bits */
static size_t g_cache_n;
static int g_cache_bits;

int pmd_global_init(void) {
  ews_pmd_config_t cfg;
  ews_pmd_config_default(&cfg);
  if (ews_pmd_worker_new(&g_pmdw, &cfg, NULL) != 0) {
    fprintf(stderr, "edgews-bench: cannot set up permessage-deflate\n");
    return -1;
  }
  return 0;
}

void pmd_global_free(void) {
  for (int i = 0; i < 8; i++) {
    ews_deflater_free(g_shared[i]);
    g_shared[i] = NULL;
  }
  ews_pmd_worker_free(g_pmdw);
  for (size_t i = 0; i < g_cache_n; i++) free(g_cache[i].p);
  free(g_cache);
  g_cache = NULL;
  g_cache_n = 0;
  g_pmdw = NULL;
  ews_zbuf_free(&g_zout);
  ews_zbuf_free(&g_zin);
}

const char *pmd_offer(void) {
  return g_opt.deflate == DEFLATE_SHARED
             ? "permessage-deflate; client_max_window_bits; client_no_context_takeover"
             : "permessage-deflate; client_max_window_bits";
}

static int is_tchar(int ch) {
  return ch > 32 && ch < 127 && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

/* "8".."15" without leading zeros, else -1. */
static int parse_bits(const char *v, size_t n) {
  if (n == 1 && v[0] >= '8' && v[0] <= '9') return v[0] - '0';
  if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + v[1] - '0';
  return -1;
}

const char *pmd_accept(conn_t *c, const char *v, size_t n) {
  if (!v || n == 0) return "server did not accept permessage-deflate";
  static char msg[200];
  const char *end = v + n, *s = v;
  int snct = 0, cnct = 0, sbits = 0, cbits = 0;
  /* the extension name */
  while (s < end && (*s == ' ' || *s == '\t')) s++;
  const char *name = s;
  while (s < end && is_tchar((unsigned char)*s)) s++;
  if ((size_t)(s - name) != 18 || strncasecmp(name, "permessage-deflate", 18) != 0) {
    snprintf(msg, sizeof msg, "server answered with another extension: '%.*s'",
             (int)(n > 100 ? 100 : n), v);
    return msg;
  }
  for (;;) {
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    if (s == end) break;
    if (*s == ',') return "server accepted more than one extension";
    if (*s != ';') return "malformed permessage-deflate response";
    s++;
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    const char *pn = s;
    while (s < end && is_tchar((unsigned char)*s)) s++;
    size_t pl = (size_t)(s - pn);
    while (s < end && (*s == ' ' || *s == '\t')) s++;
    const char *val = NULL;
    size_t vl = 0;
    if (s < end && *s == '=') {
      s++;
      while (s < end && (*s == ' ' || *s == '\t')) s++;
      int quoted = s < end && *s == '"';
      if (quoted) s++;
      val = s;
      while (s < end && is_tchar((unsigned char)*s)) s++;
      vl = (size_t)(s - val);
      if (quoted) {
        if (s == end || *s != '"') return "malformed quoted value in the response";
        s++;
      }
    }
    int *slot = NULL, is_bits = 0;
    if (pl == 26 && !strncasecmp(pn, "server_no_context_takeover", pl)) slot = &snct;
    else if (pl == 26 && !strncasecmp(pn, "client_no_context_takeover", pl)) slot = &cnct;
    else if (pl == 22 && !strncasecmp(pn, "server_max_window_bits", pl)) slot = &sbits, is_bits = 1;
    else if (pl == 22 && !strncasecmp(pn, "client_max_window_bits", pl)) slot = &cbits, is_bits = 1;
    if (!slot) {
      snprintf(msg, sizeof msg, "unknown permessage-deflate parameter '%.*s'", (int)(pl > 60 ? 60 : pl), pn);
      return msg;
    }
    if (*slot) return "duplicate permessage-deflate parameter";
    if (is_bits) {
      int b = val ? parse_bits(val, vl) : -1;
      if (b < 0) return "window bits in the response not 8..15";
      *slot = b;
    } else {
      if (val) return "value on a no_context_takeover parameter";
      *slot = 1;
    }
  }
  pmd_conn_t *p = calloc(1, sizeof *p);
  if (!p) return "out of memory";
  /* the inflater sees the server as its "client" */
  ews_pmd_params_t inf_params = {0};
  inf_params.client_no_context_takeover = (uint8_t)snct;
  inf_params.client_window_bits = (uint8_t)(sbits ? sbits : 15);
  ews_inflater_init(&p->inf, &inf_params, 0);
  p->client_bits = (uint8_t)(cbits ? cbits : 15);
  p->reset = !(g_opt.client_context && g_opt.deflate == DEFLATE_TAKEOVER && !cnct &&
               g_opt.mode == MODE_ECHO);
  c->pmd = p;
  if (!g_res.pmd_response[0])
    snprintf(g_res.pmd_response, sizeof g_res.pmd_response, "%.*s", (int)n, v);
  return NULL;
}

int pmd_compress(conn_t *c, const uint8_t *p, size_t n, long variant, const uint8_t **out,
                 size_t *out_n) {
  pmd_conn_t *z = c->pmd;
  ews_deflater_t *d;
  int r;
  cached_t *slot = NULL;
  if (z->reset && variant >= 0) {
    if (!g_cache) {
      g_cache_n = 4096;
      g_cache = calloc(g_cache_n, sizeof *g_cache);
      g_cache_bits = z->client_bits;
      if (!g_cache) return EWS_ENOMEM;
    }
    if ((size_t)variant < g_cache_n && z->client_bits == g_cache_bits) {
      slot = &g_cache[variant];
      if (slot->p) {
        *out = slot->p;
        *out_n = slot->n;
        g_res.tx_raw += n;
        g_res.tx_wire += slot->n;
        return 0;
      }
    }
  }
  if (z->reset) {
    ews_deflater_t **slot = &g_shared[z->client_bits - 8];
    if (!*slot && (r = ews_deflater_new(slot, g_opt.deflate_level, z->client_bits, 8, 1, NULL)) != 0)
      return r;
    d = *slot;
  } else {
    if (!z->own && (r = ews_deflater_new(&z->own, g_opt.deflate_level, z->client_bits, 8, 0, NULL)) != 0)
      return r;
    d = z->own;
  }
  g_zout.len = 0;
  if ((r = ews_deflate_message(d, p, n, &g_zout)) != 0) return r;
  if (slot && (slot->p = malloc(g_zout.len ? g_zout.len : 1)) != NULL) {
    memcpy(slot->p, g_zout.p, g_zout.len);
    slot->n = (uint32_t)g_zout.len;
  }
  *out = g_zout.p;
  *out_n = g_zout.len;
  g_res.tx_raw += n;
  g_res.tx_wire += g_zout.len;
  return 0;
}

int pmd_inflate(conn_t *c, int opcode, const uint8_t *p, size_t n, int first, int last,
                uint8_t **out, size_t *out_n) {
  g_zin.len = 0;
  int r = ews_inflate(&c->pmd->inf, g_pmdw, p, n, first, last, opcode == EWS_OP_TEXT, &g_zin);
  if (r != 0) return r;
  *out = g_zin.p ? g_zin.p : (uint8_t *)"";
  *out_n = g_zin.len;
  g_res.rx_wire += n;
  g_res.rx_raw += g_zin.len;
  return 0;
}

void pmd_conn_free(conn_t *c) {
  if (!c->pmd) return;
  ews_inflater_free(&c->pmd->inf, g_pmdw);
  ews_deflater_free(c->pmd->own);
  free(c->pmd);
  c->pmd = NULL;
}
