/* test_deflate.c — permessage-deflate (RFC 7692): the negotiation table (RFC
 * examples, every parameter with and without values, declined offers falling
 * through to the next one, responses carrying only allowed parameters, shared vs
 * dedicated), RFC 7692 section 7.2.3 vectors, round trips of many sizes with and
 * without context takeover on both sides, byte-by-byte feeding, window bits 8..15,
 * the decompression-bomb limit with counted allocations, invalid data, fail-fast
 * UTF-8, frames built in place, the worker's shared compressors and stream cache,
 * and allocation failures. Inputs to the decompressor sit right before a PROT_NONE
 * page (guard_copy) so that any over-read crashes. */
#include <zlib.h>

#include "err.h"
#include "proto/deflate.h"
#include "proto/frame.h"

#include "test.h"

/* ---- a counting allocator (hooks for zlib and the module) ---- */

typedef struct {
  size_t cur, peak, count;
  long fail_after; /* fail the allocation after this many more; -1: never */
} counter_t;

static void *c_alloc(void *ud, size_t n) {
  counter_t *c = ud;
  if (c->fail_after == 0) return NULL;
  if (c->fail_after > 0) c->fail_after--;
  size_t *p = malloc(n + 16);
  if (!p) return NULL;
  p[0] = n;
  c->cur += n;
  c->count++;
  if (c->cur > c->peak) c->peak = c->cur;
  return (uint8_t *)p + 16;
}

static void c_free(void *ud, void *q) {
  counter_t *c = ud;
  if (!q) return;
  size_t *p = (size_t *)((uint8_t *)q - 16);
  c->cur -= p[0];
  free(p);
}

static ews_zalloc_t counting(counter_t *c) {
  memset(c, 0, sizeof *c);
  c->fail_after = -1;
  ews_zalloc_t za = {c_alloc, c_free, c};
  return za;
}

/* a zbuf whose growth is counted (and can be capped) */
typedef struct {
  size_t peak_cap;
  size_t max_cap; /* 0: no cap */
  int grows;
} growrec_t;

static int rec_grow(ews_zbuf_t *b, size_t need) {
  growrec_t *g = b->ud;
  if (g->max_cap && need > g->max_cap) return -1;
  uint8_t *p = realloc(b->p, need);
  if (!p) return -1;
  b->p = p;
  b->cap = need;
  g->grows++;
  if (need > g->peak_cap) g->peak_cap = need;
  return 0;
}

/* ---- data ---- */

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)rng;
}

static void fill_random(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rnd();
}

/* JSON-like text: records with repeated keys and varying values */
static void fill_json(uint8_t *p, size_t n, unsigned seed) {
  static const char *names[] = {"alice", "bob", "carol", "dave", "eve", "mallory"};
  size_t i = 0;
  unsigned k = seed;
  while (i < n) {
    char rec[160];
    int l = snprintf(rec, sizeof rec,
                     "{\"id\":%u,\"user\":\"%s\",\"score\":%u.%02u,\"online\":%s,"
                     "\"tags\":[\"t%u\",\"x\"]},",
                     k * 7919u % 100000u, names[k % 6], k * 31u % 1000u, k % 100u,
                     (k & 1) ? "true" : "false", k % 13u);
    for (int j = 0; j < l && i < n; j++) p[i++] = (uint8_t)rec[j];
    k++;
  }
}

static uint8_t *hex(const char *s, size_t *n) {
  uint8_t *p = malloc(strlen(s) / 2 + 1);
  size_t k = 0;
  while (*s) {
    if (*s == ' ') {
      s++;
      continue;
    }
    unsigned v;
    if (sscanf(s, "%2x", &v) != 1) abort();
    p[k++] = (uint8_t)v;
    s += 2;
  }
  *n = k;
  return p;
}

/* ---- helpers ---- */

static ews_pmd_params_t params_of(int snct, int cnct, int sbits, int cbits) {
  ews_pmd_params_t p = {(uint8_t)snct, (uint8_t)cnct, (uint8_t)sbits, (uint8_t)cbits};
  return p;
}

/* Inflates one message given as one chunk (in a guarded copy). */
static int inflate_msg(ews_inflater_t *inf, ews_pmd_worker_t *w, const uint8_t *p,
                       size_t n, int text, ews_zbuf_t *out) {
  uint8_t *g = guard_copy(p, n);
  int rc = ews_inflate(inf, w, g, n, 1, 1, text, out);
  guard_free(g, n);
  return rc;
}

/* Inflates one message fed in pieces of `step` bytes (then an empty last chunk when
 * the data divides evenly, as the frame receiver may do). */
static int inflate_steps(ews_inflater_t *inf, ews_pmd_worker_t *w, const uint8_t *p,
                         size_t n, size_t step, int text, ews_zbuf_t *out) {
  size_t at = 0;
  int first = 1;
  do {
    size_t len = n - at < step ? n - at : step;
    int last = at + len == n && (len < step || n == 0);
    uint8_t *g = guard_copy(p + at, len);
    int rc = ews_inflate(inf, w, g, len, first, last, text, out);
    guard_free(g, len);
    if (rc) return rc;
    first = 0;
    at += len;
    if (at == n && !last) {
      rc = ews_inflate(inf, w, NULL, 0, 0, 1, text, out);
      return rc;
    }
    if (last) return 0;
  } while (1);
}

/* ---- negotiation ---- */

typedef struct {
  const char *offer;
  const char *resp; /* NULL: no extension */
  int snct, cnct, sbits, cbits;
} neg_case_t;

static ews_pmd_config_t cfg_of(int mode, int sbits, int cbits, int cnct) {
  ews_pmd_config_t c;
  ews_pmd_config_default(&c);
  c.enabled = 1;
  c.mode = (uint8_t)mode;
  c.server_window_bits = (uint8_t)sbits;
  c.client_window_bits = (uint8_t)cbits;
  c.client_no_context_takeover = (uint8_t)cnct;
  return c;
}

static int contains_nocase(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  for (; *hay; hay++)
    if (strncasecmp(hay, needle, n) == 0) return 1;
  return 0;
}

static void run_cases(const ews_pmd_config_t *cfg, const neg_case_t *cs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const neg_case_t *c = &cs[i];
    char resp[EWS_PMD_RESPONSE_MAX];
    ews_pmd_params_t p;
    memset(&p, 0xEE, sizeof p);
    size_t len = strlen(c->offer);
    char *g = guard_copy(c->offer, len);
    int rc = ews_pmd_negotiate(cfg, g, len, &p, resp, sizeof resp);
    guard_free(g, len);
    if (!c->resp) {
      if (rc != 0) fprintf(stderr, "  offer [%s] rc %d\n", c->offer, rc);
      CHECK_EQ(rc, 0);
      continue;
    }
    if (rc <= 0) {
      fprintf(stderr, "  offer [%s] declined (%d)\n", c->offer, rc);
      CHECK(0);
      continue;
    }
    if ((size_t)rc != strlen(c->resp) || memcmp(resp, c->resp, (size_t)rc) != 0) {
      fprintf(stderr, "  offer [%s]\n   got  [%.*s]\n   want [%s]\n", c->offer, rc, resp,
              c->resp);
      CHECK(0);
    }
    CHECK_EQ(p.server_no_context_takeover, c->snct);
    CHECK_EQ(p.client_no_context_takeover, c->cnct);
    CHECK_EQ(p.server_window_bits, c->sbits);
    CHECK_EQ(p.client_window_bits, c->cbits);
    /* never a parameter the client did not allow */
    char r[EWS_PMD_RESPONSE_MAX + 1];
    memcpy(r, resp, (size_t)rc);
    r[rc] = 0;
    if (strstr(r, "client_max_window_bits")) CHECK(contains_nocase(c->offer, "client_max_window_bits"));
    if (cfg->mode == EWS_PMD_SHARED) CHECK(strstr(r, "server_no_context_takeover") != NULL);
  }
}

#define NCASES(a) (sizeof(a) / sizeof((a)[0]))
#define PMD "permessage-deflate"
#define SNCT "; server_no_context_takeover"
#define CNCT "; client_no_context_takeover"

TEST(negotiate_shared) {
  ews_pmd_config_t cfg = cfg_of(EWS_PMD_SHARED, 15, 0, 0);
  static const neg_case_t cs[] = {
      {PMD, PMD SNCT, 1, 0, 15, 15},
      /* RFC 7692 section 5 / 7.1.3 style offers */
      {PMD "; client_max_window_bits", PMD SNCT, 1, 0, 15, 15},
      {PMD "; client_max_window_bits=10", PMD SNCT, 1, 0, 15, 10},
      {PMD "; server_max_window_bits=10", PMD SNCT "; server_max_window_bits=10", 1, 0, 10, 15},
      {PMD "; server_no_context_takeover", PMD SNCT, 1, 0, 15, 15},
      {PMD "; client_no_context_takeover", PMD SNCT CNCT, 1, 1, 15, 15},
      {PMD "; server_no_context_takeover; client_no_context_takeover; "
           "server_max_window_bits=9; client_max_window_bits=8",
       PMD SNCT CNCT "; server_max_window_bits=9", 1, 1, 9, 8},
      {PMD "; server_max_window_bits=8", PMD SNCT "; server_max_window_bits=8", 1, 0, 8, 15},
  };
  run_cases(&cfg, cs, NCASES(cs));

  /* asking for client_no_context_takeover (always allowed in a response) */
  cfg = cfg_of(EWS_PMD_SHARED, 15, 0, 1);
  static const neg_case_t cs2[] = {
      {PMD, PMD SNCT CNCT, 1, 1, 15, 15},
      {PMD "; client_max_window_bits", PMD SNCT CNCT, 1, 1, 15, 15},
  };
  run_cases(&cfg, cs2, NCASES(cs2));
}

TEST(negotiate_dedicated) {
  ews_pmd_config_t cfg = cfg_of(EWS_PMD_DEDICATED, 15, 0, 0);
  static const neg_case_t cs[] = {
      {PMD, PMD, 0, 0, 15, 15},
      {PMD "; server_no_context_takeover", PMD SNCT, 1, 0, 15, 15},
      {PMD "; client_no_context_takeover", PMD CNCT, 0, 1, 15, 15},
      {PMD "; server_max_window_bits=10", PMD "; server_max_window_bits=10", 0, 0, 10, 15},
      {PMD "; server_max_window_bits=15", PMD "; server_max_window_bits=15", 0, 0, 15, 15},
      {PMD "; server_max_window_bits=8", PMD "; server_max_window_bits=8", 0, 0, 8, 15},
      {PMD "; client_max_window_bits", PMD, 0, 0, 15, 15},
      {PMD "; client_max_window_bits=12", PMD, 0, 0, 15, 12},
      /* RFC 7692 section 7.1.3: a small window with a fallback offer */
      {PMD "; client_max_window_bits; server_max_window_bits=10, " PMD
           "; client_max_window_bits",
       PMD "; server_max_window_bits=10", 0, 0, 10, 15},
      /* RFC 7692 section 5.1 style: server_max_window_bits=10 first, plain second */
      {PMD "; server_max_window_bits=10, " PMD, PMD "; server_max_window_bits=10", 0, 0, 10,
       15},
  };
  run_cases(&cfg, cs, NCASES(cs));

  /* our window 12, asking the client for 10 */
  cfg = cfg_of(EWS_PMD_DEDICATED, 12, 10, 0);
  static const neg_case_t cs2[] = {
      /* server_max_window_bits may be declared unasked; client_max_window_bits not */
      {PMD, PMD "; server_max_window_bits=12", 0, 0, 12, 15},
      {PMD "; client_max_window_bits",
       PMD "; server_max_window_bits=12; client_max_window_bits=10", 0, 0, 12, 10},
      {PMD "; client_max_window_bits=11",
       PMD "; server_max_window_bits=12; client_max_window_bits=10", 0, 0, 12, 10},
      {PMD "; client_max_window_bits=9", PMD "; server_max_window_bits=12", 0, 0, 12, 9},
      {PMD "; client_max_window_bits=10", PMD "; server_max_window_bits=12", 0, 0, 12, 10},
      {PMD "; server_max_window_bits=14", PMD "; server_max_window_bits=12", 0, 0, 12, 15},
      {PMD "; server_max_window_bits=9", PMD "; server_max_window_bits=9", 0, 0, 9, 15},
  };
  run_cases(&cfg, cs2, NCASES(cs2));
}

TEST(negotiate_declines) {
  ews_pmd_config_t cfg = cfg_of(EWS_PMD_DEDICATED, 15, 0, 0);
  /* each declined offer is followed by an acceptable one that must be chosen */
  static const char *bad[] = {
      PMD "; foo",
      PMD "; foo=1",
      PMD "; x-unknown; client_no_context_takeover",
      PMD "; server_no_context_takeover; server_no_context_takeover",
      PMD "; client_no_context_takeover; client_no_context_takeover",
      PMD "; server_max_window_bits=10; server_max_window_bits=10",
      PMD "; client_max_window_bits; client_max_window_bits=10",
      PMD "; server_no_context_takeover=1",
      PMD "; client_no_context_takeover=true",
      PMD "; client_no_context_takeover=\"x\"",
      PMD "; server_max_window_bits",
      PMD "; server_max_window_bits=",
      PMD "; server_max_window_bits=7",
      PMD "; server_max_window_bits=16",
      PMD "; server_max_window_bits=08",
      PMD "; server_max_window_bits=010",
      PMD "; server_max_window_bits=1O",
      PMD "; server_max_window_bits=-9",
      PMD "; server_max_window_bits=+9",
      PMD "; server_max_window_bits=10 11",
      PMD "; server_max_window_bits=\"\"",
      PMD "; server_max_window_bits=\"1 0\"",
      PMD "; server_max_window_bits=\"10\"x",
      PMD "; client_max_window_bits=0",
      PMD "; client_max_window_bits=7",
      PMD "; client_max_window_bits=100",
      PMD "; client_max_window_bits=99999999999999999999",
      PMD "; client_max_window_bits=",
      PMD ";",
      PMD ";; client_no_context_takeover",
      PMD " client_no_context_takeover",
      PMD "=1",
      PMD "; =10",
      PMD "; server_max_window_bits==10",
      PMD "; @",
  };
  for (size_t i = 0; i < NCASES(bad); i++) {
    char offer[256];
    snprintf(offer, sizeof offer, "%s, " PMD "; client_no_context_takeover", bad[i]);
    neg_case_t c = {offer, PMD CNCT, 0, 1, 15, 15};
    run_cases(&cfg, &c, 1);
    neg_case_t alone = {bad[i], NULL, 0, 0, 0, 0};
    run_cases(&cfg, &alone, 1);
  }

  static const neg_case_t cs[] = {
      /* offers with only unacceptable parameters: no extension at all */
      {PMD "; foo, " PMD "; server_max_window_bits=7", NULL, 0, 0, 0, 0},
      /* an unterminated quote swallows the rest of the list */
      {PMD "; server_max_window_bits=\"10, " PMD, NULL, 0, 0, 0, 0},
      /* other extensions are ignored, whatever their parameters */
      {"x-webkit-deflate-frame", NULL, 0, 0, 0, 0},
      {"x-webkit-deflate-frame, " PMD, PMD, 0, 0, 15, 15},
      {"foo; bar=\"a,b\"; baz, " PMD "; server_max_window_bits=11",
       PMD "; server_max_window_bits=11", 0, 0, 11, 15},
      {"permessage-deflatex, " PMD "; server_no_context_takeover", PMD SNCT, 1, 0, 15, 15},
      {"permessage-deflatex", NULL, 0, 0, 0, 0},
      {"", NULL, 0, 0, 0, 0},
      {" , ,, ", NULL, 0, 0, 0, 0},
      /* quoted values, case, whitespace */
      {PMD "; server_max_window_bits=\"10\"", PMD "; server_max_window_bits=10", 0, 0, 10, 15},
      {PMD "; client_max_window_bits=\"1\\1\"", PMD, 0, 0, 15, 11},
      {"PerMessage-Deflate; Server_Max_Window_Bits=9; CLIENT_NO_CONTEXT_TAKEOVER",
       PMD CNCT "; server_max_window_bits=9", 0, 1, 9, 15},
      {"  " PMD " ;\tserver_max_window_bits = 13 ; client_no_context_takeover  ",
       PMD CNCT "; server_max_window_bits=13", 0, 1, 13, 15},
  };
  run_cases(&cfg, cs, NCASES(cs));
}

TEST(negotiate_args) {
  ews_pmd_config_t cfg = cfg_of(EWS_PMD_SHARED, 15, 0, 1);
  ews_pmd_params_t p;
  char resp[EWS_PMD_RESPONSE_MAX];
  const char *o = PMD;
  CHECK_EQ(ews_pmd_negotiate(&cfg, o, strlen(o), &p, resp, sizeof resp),
           (int)strlen(PMD SNCT CNCT));
  /* too small a response buffer */
  CHECK_EQ(ews_pmd_negotiate(&cfg, o, strlen(o), &p, resp, 20), EWS_EINVAL);
  CHECK_EQ(ews_pmd_negotiate(NULL, o, strlen(o), &p, resp, sizeof resp), EWS_EINVAL);
  CHECK_EQ(ews_pmd_negotiate(&cfg, NULL, 3, &p, resp, sizeof resp), EWS_EINVAL);
  CHECK_EQ(ews_pmd_negotiate(&cfg, NULL, 0, &p, resp, sizeof resp), 0);
  /* disabled */
  cfg.enabled = 0;
  CHECK_EQ(ews_pmd_negotiate(&cfg, o, strlen(o), &p, resp, sizeof resp), 0);
  /* invalid configurations */
  static const struct {
    int field, value;
  } badcfg[] = {{0, 2}, {1, 2}, {2, 10}, {3, 0}, {3, 10}, {4, 7}, {4, 16}, {5, 7}, {5, 16}, {6, 2}};
  for (size_t i = 0; i < NCASES(badcfg); i++) {
    ews_pmd_config_t c = cfg_of(EWS_PMD_SHARED, 15, 0, 1);
    uint8_t v = (uint8_t)badcfg[i].value;
    switch (badcfg[i].field) {
      case 0: c.enabled = v; break;
      case 1: c.mode = v; break;
      case 2: c.level = v; break;
      case 3: c.mem_level = v; break;
      case 4: c.server_window_bits = v; break;
      case 5: c.client_window_bits = v; break;
      default: c.client_no_context_takeover = v; break;
    }
    CHECK_EQ(ews_pmd_config_check(&c), EWS_EINVAL);
    CHECK_EQ(ews_pmd_negotiate(&c, o, strlen(o), &p, resp, sizeof resp), EWS_EINVAL);
  }
  ews_pmd_config_t d;
  ews_pmd_config_default(&d);
  CHECK_EQ(ews_pmd_config_check(&d), 0);
  CHECK_EQ(d.enabled, 0);
  /* the longest response fits EWS_PMD_RESPONSE_MAX */
  cfg = cfg_of(EWS_PMD_SHARED, 10, 9, 1);
  const char *all = PMD "; server_max_window_bits=12; client_max_window_bits=14";
  int rc = ews_pmd_negotiate(&cfg, all, strlen(all), &p, resp, sizeof resp);
  CHECK(rc > 0 && rc <= EWS_PMD_RESPONSE_MAX);
  CHECK_EQ(rc, (int)strlen(PMD SNCT CNCT "; server_max_window_bits=10; client_max_window_bits=9"));
}

/* ---- RFC 7692 section 7.2.3 vectors ---- */

static void check_inflates(ews_inflater_t *inf, ews_pmd_worker_t *w, const char *hx,
                           const char *want) {
  size_t n;
  uint8_t *p = hex(hx, &n);
  ews_zbuf_t out = {0};
  int rc = inflate_msg(inf, w, p, n, 1, &out);
  CHECK_EQ(rc, 0);
  CHECK_EQ(out.len, strlen(want));
  if (rc == 0 && out.len == strlen(want) && out.len) CHECK_MEM(out.p, want, out.len);
  ews_zbuf_free(&out);
  free(p);
}

TEST(rfc_vectors_inflate) {
  ews_pmd_params_t take = params_of(0, 0, 15, 15), reset = params_of(0, 1, 15, 15);
  ews_inflater_t inf;
  /* 7.2.3.1 a message compressed */
  ews_inflater_init(&inf, &take, 0);
  check_inflates(&inf, NULL, "f2 48 cd c9 c9 07 00", "Hello");
  /* 7.2.3.2 sharing the window: the second "Hello" is a back reference */
  check_inflates(&inf, NULL, "f2 00 11 00 00", "Hello");
  ews_inflater_free(&inf, NULL);
  /* without takeover the reference points before the window: invalid */
  ews_inflater_init(&inf, &reset, 0);
  check_inflates(&inf, NULL, "f2 48 cd c9 c9 07 00", "Hello");
  size_t n;
  uint8_t *p = hex("f2 00 11 00 00", &n);
  ews_zbuf_t out = {0};
  CHECK_EQ(inflate_msg(&inf, NULL, p, n, 1, &out), EWS_EINFLATE);
  free(p);
  ews_zbuf_free(&out);
  ews_inflater_free(&inf, NULL);

  /* 7.2.3.1 fragmented: f2 48 cd | c9 c9 07 00 */
  ews_inflater_init(&inf, &take, 0);
  uint8_t a[] = {0xf2, 0x48, 0xcd}, b[] = {0xc9, 0xc9, 0x07, 0x00};
  CHECK_EQ(ews_inflate(&inf, NULL, a, sizeof a, 1, 0, 1, &out), 0);
  CHECK_EQ(ews_inflate(&inf, NULL, b, sizeof b, 0, 1, 1, &out), 0);
  CHECK(out.len == 5 && memcmp(out.p, "Hello", 5) == 0);
  ews_zbuf_free(&out);
  /* 7.2.3.3 a stored (uncompressed) block */
  check_inflates(&inf, NULL, "00 05 00 fa ff 48 65 6c 6c 6f 00", "Hello");
  /* 7.2.3.4 a block with BFINAL set, then the 0x00 the RFC adds */
  check_inflates(&inf, NULL, "f3 48 cd c9 c9 07 00 00", "Hello");
  /* the window survives the end of that DEFLATE stream */
  check_inflates(&inf, NULL, "f2 00 11 00 00", "Hello");
  /* BFINAL without the extra 0x00: the appended tail follows a final block */
  check_inflates(&inf, NULL, "f3 48 cd c9 c9 07 00", "Hello");
  check_inflates(&inf, NULL, "f2 00 11 00 00", "Hello");
  /* 7.2.3.5 two DEFLATE blocks in one message */
  check_inflates(&inf, NULL, "f2 48 05 00 00 00 ff ff ca c9 c9 07 00", "Hello");
  /* 7.2.3.6 an empty last fragment: 00 */
  p = hex("f2 48 cd c9 c9 07 00 00 00 ff ff", &n);
  uint8_t z = 0;
  CHECK_EQ(ews_inflate(&inf, NULL, p, n, 1, 0, 0, &out), 0);
  CHECK_EQ(ews_inflate(&inf, NULL, &z, 1, 0, 1, 0, &out), 0);
  CHECK(out.len == 5 && memcmp(out.p, "Hello", 5) == 0);
  free(p);
  ews_zbuf_free(&out);
  /* an empty message: 00, or no payload at all */
  check_inflates(&inf, NULL, "00", "");
  check_inflates(&inf, NULL, "", "");
  CHECK_EQ(ews_inflate(&inf, NULL, NULL, 0, 1, 0, 0, &out), 0);
  CHECK_EQ(ews_inflate(&inf, NULL, NULL, 0, 0, 1, 0, &out), 0);
  CHECK_EQ(out.len, 0);
  /* and the context is still intact after all that */
  check_inflates(&inf, NULL, "f2 00 11 00 00", "Hello");
  ews_inflater_free(&inf, NULL);
}

static void check_deflates(ews_deflater_t *d, const char *msg, const char *hx) {
  size_t n;
  uint8_t *want = hex(hx, &n);
  ews_zbuf_t out = {0};
  CHECK_EQ(ews_deflate_message(d, (const uint8_t *)msg, strlen(msg), &out), 0);
  if (out.len != n || memcmp(out.p, want, n) != 0) {
    fprintf(stderr, "  deflate(%s) = ", msg);
    for (size_t i = 0; i < out.len; i++) fprintf(stderr, "%02x ", out.p[i]);
    fprintf(stderr, " want %s\n", hx);
    CHECK(0);
  }
  ews_zbuf_free(&out);
  free(want);
}

TEST(rfc_vectors_deflate) {
  for (int level = 1; level <= 9; level += 5) {
    ews_deflater_t *d;
    /* with context takeover: "Hello" then the back reference */
    CHECK_EQ(ews_deflater_new(&d, level, 15, 8, 0, NULL), 0);
    check_deflates(d, "Hello", "f2 48 cd c9 c9 07 00");
    check_deflates(d, "Hello", "f2 00 11 00 00");
    ews_deflater_free(d);
    /* without: the same bytes every time */
    CHECK_EQ(ews_deflater_new(&d, level, 15, 8, 1, NULL), 0);
    check_deflates(d, "Hello", "f2 48 cd c9 c9 07 00");
    check_deflates(d, "Hello", "f2 48 cd c9 c9 07 00");
    /* an empty message is the single byte 00 */
    check_deflates(d, "", "00");
    ews_deflater_free(d);
  }
  /* level 0 gives the stored-block example of 7.2.3.3 */
  ews_deflater_t *d;
  CHECK_EQ(ews_deflater_new(&d, 0, 15, 8, 1, NULL), 0);
  check_deflates(d, "Hello", "00 05 00 fa ff 48 65 6c 6c 6f 00");
  ews_deflater_free(d);
}

/* ---- round trips ---- */

/* Compresses `count` messages of size n through d and inflates them through inf;
 * returns the total compressed size (or 0 on a failure, which is CHECKed). */
static size_t round_trip(ews_deflater_t *d, ews_inflater_t *inf, ews_pmd_worker_t *w,
                         const uint8_t *msg, size_t n, int count, size_t step,
                         size_t *first_len, size_t *second_len) {
  size_t total = 0;
  ews_zbuf_t c = {0}, out = {0};
  for (int k = 0; k < count; k++) {
    c.len = 0;
    out.len = 0;
    int drc = ews_deflate_message(d, msg, n, &c);
    if (drc != 0) {
      fprintf(stderr, "  deflate failed: n=%zu k=%d rc=%d\n", n, k, drc);
      CHECK(0);
      break;
    }
    CHECK(c.len <= ews_deflate_bound(d, n));
    if (k == 0 && first_len) *first_len = c.len;
    if (k == 1 && second_len) *second_len = c.len;
    total += c.len;
    int rc = step ? inflate_steps(inf, w, c.p, c.len, step, 0, &out)
                  : inflate_msg(inf, w, c.p, c.len, 0, &out);
    CHECK_EQ(rc, 0);
    CHECK_EQ(out.len, n);
    if (rc || out.len != n || (n && memcmp(out.p, msg, n) != 0)) {
      fprintf(stderr, "  round trip failed: n=%zu k=%d rc=%d\n", n, k, rc);
      CHECK(0);
      total = 0;
      break;
    }
  }
  ews_zbuf_free(&c);
  ews_zbuf_free(&out);
  return total;
}

TEST(round_trips) {
  static const size_t sizes[] = {0, 1, 125, 126, 16384, 1u << 20};
  uint8_t *json = malloc(1u << 20), *rnd_data = malloc(1u << 20);
  fill_json(json, 1u << 20, 1);
  fill_random(rnd_data, 1u << 20);
  /* (server keeps context, client inflater keeps context) combinations that agree:
   * an inflater may keep its window when the compressor does not */
  static const int modes[][2] = {{0, 0}, {1, 0}, {1, 1}};
  for (size_t m = 0; m < 3; m++) {
    int snct = modes[m][0], cnct = modes[m][1];
    for (size_t s = 0; s < NCASES(sizes); s++) {
      for (int kind = 0; kind < 2; kind++) {
        const uint8_t *msg = kind ? rnd_data : json;
        size_t n = sizes[s];
        int count = n >= (1u << 20) ? 3 : 10;
        ews_deflater_t *d;
        CHECK_EQ(ews_deflater_new(&d, 6, 15, 8, snct, NULL), 0);
        ews_inflater_t inf;
        ews_pmd_params_t p = params_of(snct, cnct, 15, 15);
        ews_inflater_init(&inf, &p, 0);
        size_t l1 = 0, l2 = 0;
        round_trip(d, &inf, NULL, msg, n, count, 0, &l1, &l2);
        /* takeover must shrink the second identical message (when it is not tiny) */
        if (n >= 125 && kind == 0) {
          if (!snct) CHECK(l2 < l1);
          else CHECK_EQ(l2, l1);
        }
        ews_inflater_free(&inf, NULL);
        ews_deflater_free(d);
      }
    }
  }
  /* the mismatch: the compressor keeps context, the inflater resets -> invalid */
  {
    ews_deflater_t *d;
    CHECK_EQ(ews_deflater_new(&d, 6, 15, 8, 0, NULL), 0);
    ews_inflater_t inf;
    ews_pmd_params_t p = params_of(0, 1, 15, 15);
    ews_inflater_init(&inf, &p, 0);
    ews_zbuf_t c = {0}, out = {0};
    CHECK_EQ(ews_deflate_message(d, json, 4096, &c), 0);
    CHECK_EQ(inflate_msg(&inf, NULL, c.p, c.len, 0, &out), 0);
    c.len = 0;
    CHECK_EQ(ews_deflate_message(d, json, 4096, &c), 0);
    CHECK_EQ(inflate_msg(&inf, NULL, c.p, c.len, 0, &out), EWS_EINFLATE);
    ews_zbuf_free(&c);
    ews_zbuf_free(&out);
    ews_inflater_free(&inf, NULL);
    ews_deflater_free(d);
  }
  free(json);
  free(rnd_data);
}

TEST(round_trip_levels_and_windows) {
  size_t n = 200000;
  uint8_t *msg = malloc(n);
  fill_json(msg, n, 7);
  for (int level = 0; level <= 9; level += 3) {
    for (int bits = 8; bits <= 15; bits++) {
      for (int mem = 1; mem <= 9; mem += 4) {
        ews_deflater_t *d;
        CHECK_EQ(ews_deflater_new(&d, level, bits, mem, 0, NULL), 0);
        CHECK_EQ(ews_deflater_window_bits(d), bits);
        ews_inflater_t inf;
        ews_pmd_params_t p = params_of(0, 0, bits, bits);
        ews_inflater_init(&inf, &p, 0);
        round_trip(d, &inf, NULL, msg, n, 3, 0, NULL, NULL);
        ews_inflater_free(&inf, NULL);
        ews_deflater_free(d);
      }
    }
  }
  free(msg);
}

/* zlib cannot deflate raw with a 256-byte window; our window-8 compressor runs zlib
 * at 9, whose matches never reach past 250 bytes, so a 256-byte window inflates it */
/* Inflates a raw DEFLATE message (+ 00 00 FF FF) with zlib at window `bits`, one
 * output byte per inflate() call: zlib then checks every match distance against its
 * window alone (not against what the same call produced), i.e. strictly. Returns
 * 0 when the message inflates to exactly want[0..wn), else -1. */
static int strict_inflate(int bits, const uint8_t *p, size_t n, const uint8_t *want,
                          size_t wn) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, -bits) != Z_OK) return -1;
  uint8_t *in = malloc(n + 4), *out = malloc(wn + 1);
  memcpy(in, p, n);
  memcpy(in + n, "\x00\x00\xff\xff", 4);
  z.next_in = in;
  z.avail_in = (uInt)(n + 4);
  size_t got = 0;
  int rc = Z_OK;
  while (z.avail_in > 0 && got <= wn) {
    z.next_out = out + got;
    z.avail_out = 1;
    rc = inflate(&z, Z_SYNC_FLUSH);
    got += 1 - z.avail_out;
    if (rc != Z_OK && rc != Z_BUF_ERROR) break;
  }
  int r = (rc == Z_OK || rc == Z_BUF_ERROR) && z.avail_in == 0 && got == wn &&
                  memcmp(out, want, wn) == 0
              ? 0
              : -1;
  inflateEnd(&z);
  free(in);
  free(out);
  return r;
}

TEST(window_bits_8) {
  z_stream z;
  memset(&z, 0, sizeof z);
  CHECK_EQ(deflateInit2(&z, 6, Z_DEFLATED, -8, 8, Z_DEFAULT_STRATEGY), Z_STREAM_ERROR);
  /* random blocks repeated with periods around the limits: 200 and 250 (zlib at 9
   * may match them), 251, 256, 257 and 300 (it must not) */
  static const size_t periods[] = {200, 250, 251, 256, 257, 300};
  size_t n = 36000;
  uint8_t *msg = malloc(n);
  for (size_t k = 0; k < 6; k++) {
    uint8_t blk[300];
    fill_random(blk, sizeof blk);
    for (size_t i = 0; i < 6000; i++) msg[k * 6000 + i] = blk[i % periods[k]];
  }
  for (int level = 1; level <= 9; level += 4) {
    ews_deflater_t *d;
    CHECK_EQ(ews_deflater_new(&d, level, 8, 8, 1, NULL), 0);
    ews_zbuf_t c = {0};
    CHECK_EQ(ews_deflate_message(d, msg, n, &c), 0);
    CHECK(c.len < n * 9 / 10); /* the short periods did compress (4/6 cannot) */
    /* what we send with an agreed window of 8 fits a 256-byte window */
    CHECK_EQ(strict_inflate(8, c.p, c.len, msg, n), 0);
    ews_zbuf_free(&c);
    ews_deflater_free(d);
    /* and our own inflater reads it, with and without takeover */
    CHECK_EQ(ews_deflater_new(&d, level, 8, 8, 0, NULL), 0);
    ews_inflater_t inf;
    ews_pmd_params_t p = params_of(0, 0, 8, 8);
    ews_inflater_init(&inf, &p, 0);
    round_trip(d, &inf, NULL, msg, n, 4, 0, NULL, NULL);
    ews_inflater_free(&inf, NULL);
    ews_deflater_free(d);
  }
  /* the converse check that strict_inflate has teeth: window-9 data with 300-byte
   * distances (zlib at 10) does not fit a 256-byte window */
  ews_deflater_t *d;
  CHECK_EQ(ews_deflater_new(&d, 6, 10, 8, 1, NULL), 0);
  ews_zbuf_t c = {0};
  CHECK_EQ(ews_deflate_message(d, msg, n, &c), 0);
  CHECK_EQ(strict_inflate(8, c.p, c.len, msg, n), -1);
  CHECK_EQ(strict_inflate(10, c.p, c.len, msg, n), 0);
  ews_zbuf_free(&c);
  ews_deflater_free(d);
  free(msg);
}

/* A client that agreed client_max_window_bits=8 and then refers back 300 bytes (the
 * fuzz_deflate crash reproducer's kind of input). Before the inflater always used a
 * 32 KiB window, zlib at 8 bits accepted that message when it came in one piece (the
 * referenced bytes were output by the same inflate() call) and refused it (1007)
 * when it came in two frames or reads. Now the verdict and output do not depend on
 * the split: accepted, as any distance within 32 KiB and the data so far. */
TEST(window_overreach_split) {
  uint8_t blk[300];
  fill_random(blk, sizeof blk);
  uint8_t msg[600];
  memcpy(msg, blk, 300);
  memcpy(msg + 300, blk, 300);
  /* part 1: the 300 literals, sync-flushed; part 2: one match at distance 300 */
  z_stream z;
  memset(&z, 0, sizeof z);
  CHECK_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  uint8_t comp[1024];
  z.next_out = comp;
  z.avail_out = sizeof comp;
  z.next_in = blk;
  z.avail_in = 300;
  CHECK_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);
  size_t cut = sizeof comp - z.avail_out;
  z.next_in = blk;
  z.avail_in = 300;
  CHECK_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);
  size_t clen = sizeof comp - z.avail_out - 4; /* without the final 00 00 FF FF */
  deflateEnd(&z);
  CHECK(clen - cut < 20); /* part 2 is a back reference, not literals */
  CHECK_EQ(strict_inflate(8, comp, clen, msg, sizeof msg), -1); /* it breaks the window */
  CHECK_EQ(strict_inflate(9, comp, clen, msg, sizeof msg), 0);
  ews_pmd_config_t cfg;
  ews_pmd_config_default(&cfg);
  ews_pmd_worker_t *w;
  CHECK_EQ(ews_pmd_worker_new(&w, &cfg, NULL), 0);
  for (int cnct = 0; cnct <= 1; cnct++) {
    for (int bits = 8; bits <= 15; bits += 7) {
      ews_pmd_params_t p = params_of(cnct, cnct, bits, bits);
      static const size_t steps[] = {0, 1, 7};
      for (size_t s = 0; s < NCASES(steps); s++) {
        for (int with_w = 0; with_w <= 1; with_w++) {
          ews_inflater_t inf;
          ews_inflater_init(&inf, &p, 0);
          ews_zbuf_t out = {0};
          ews_pmd_worker_t *pw = with_w ? w : NULL;
          int rc = steps[s] ? inflate_steps(&inf, pw, comp, clen, steps[s], 0, &out)
                            : inflate_msg(&inf, pw, comp, clen, 0, &out);
          CHECK_EQ(rc, 0);
          CHECK(out.len == sizeof msg && memcmp(out.p, msg, sizeof msg) == 0);
          ews_zbuf_free(&out);
          ews_inflater_free(&inf, pw);
        }
      }
      /* split exactly where the match starts, as two frames of one message */
      ews_inflater_t inf;
      ews_inflater_init(&inf, &p, 0);
      ews_zbuf_t out = {0};
      uint8_t *g1 = guard_copy(comp, cut), *g2 = guard_copy(comp + cut, clen - cut);
      CHECK_EQ(ews_inflate(&inf, w, g1, cut, 1, 0, 0, &out), 0);
      CHECK_EQ(ews_inflate(&inf, w, g2, clen - cut, 0, 1, 0, &out), 0);
      CHECK(out.len == sizeof msg && memcmp(out.p, msg, sizeof msg) == 0);
      guard_free(g1, cut);
      guard_free(g2, clen - cut);
      ews_zbuf_free(&out);
      ews_inflater_free(&inf, w);
    }
  }
  ews_pmd_worker_free(w);
}

TEST(chunked_feeding) {
  size_t n = 16384;
  uint8_t *msg = malloc(n);
  fill_json(msg, n, 3);
  static const size_t steps[] = {1, 2, 3, 7, 100, 4096};
  for (size_t s = 0; s < NCASES(steps); s++) {
    for (int snct = 0; snct <= 1; snct++) {
      ews_deflater_t *d;
      CHECK_EQ(ews_deflater_new(&d, 6, 15, 8, snct, NULL), 0);
      ews_inflater_t inf;
      ews_pmd_params_t p = params_of(snct, snct, 15, 15);
      ews_inflater_init(&inf, &p, 0);
      round_trip(d, &inf, NULL, msg, n, 3, steps[s], NULL, NULL);
      round_trip(d, &inf, NULL, msg, 1, 2, steps[s], NULL, NULL);
      round_trip(d, &inf, NULL, msg, 0, 2, steps[s], NULL, NULL);
      ews_inflater_free(&inf, NULL);
      ews_deflater_free(d);
    }
  }
  free(msg);
}

/* ---- limits and bombs ---- */

TEST(bomb) {
  size_t n = 10u << 20;
  uint8_t *zeros = calloc(1, n);
  ews_deflater_t *d;
  CHECK_EQ(ews_deflater_new(&d, 9, 15, 9, 1, NULL), 0);
  ews_zbuf_t c = {0};
  CHECK_EQ(ews_deflate_message(d, zeros, n, &c), 0);
  CHECK(c.len < 20000); /* ~10 KB */
  ews_deflater_free(d);

  for (int chunked = 0; chunked <= 1; chunked++) {
    counter_t cnt;
    ews_zalloc_t za = counting(&cnt);
    ews_pmd_config_t cfg = cfg_of(EWS_PMD_SHARED, 15, 0, 1);
    ews_pmd_worker_t *w;
    CHECK_EQ(ews_pmd_worker_new(&w, &cfg, &za), 0);
    ews_inflater_t inf;
    ews_pmd_params_t p = params_of(1, 1, 15, 15);
    ews_inflater_init(&inf, &p, 1u << 20);
    growrec_t g = {0, 0, 0};
    ews_zbuf_t out = {NULL, 0, 0, rec_grow, &g};
    int rc;
    size_t fed = 0;
    if (!chunked) {
      rc = inflate_msg(&inf, w, c.p, c.len, 0, &out);
      fed = c.len;
    } else {
      rc = 0;
      for (size_t at = 0; at < c.len && rc == 0; at += 100) {
        size_t len = c.len - at < 100 ? c.len - at : 100;
        rc = ews_inflate(&inf, w, c.p + at, len, at == 0, at + len == c.len, 0, &out);
        fed = at + len;
      }
      /* fails as soon as the limit is crossed, long before the end of the input */
      CHECK(fed < c.len / 5);
    }
    CHECK_EQ(rc, EWS_EMSG_TOO_BIG);
    CHECK_EQ(out.len, 1u << 20);
    CHECK(g.peak_cap <= (1u << 20)); /* never more than the limit */
    CHECK(cnt.peak < 48 * 1024);      /* zlib: ~7 KB state + 32 KB window */
    /* sticky */
    CHECK_EQ(ews_inflate(&inf, w, c.p, 1, 0, 0, 0, &out), EWS_EMSG_TOO_BIG);
    ews_inflater_free(&inf, w);
    ews_pmd_worker_free(w);
    CHECK_EQ(cnt.cur, 0);
    free(out.p);
  }

  /* exactly at the limit is fine; one byte less is not */
  size_t m = 100000;
  CHECK_EQ(ews_deflater_new(&d, 6, 15, 8, 1, NULL), 0);
  c.len = 0;
  CHECK_EQ(ews_deflate_message(d, zeros, m, &c), 0);
  ews_deflater_free(d);
  ews_pmd_params_t p = params_of(1, 1, 15, 15);
  ews_inflater_t inf;
  ews_zbuf_t out = {0};
  ews_inflater_init(&inf, &p, m);
  CHECK_EQ(inflate_msg(&inf, NULL, c.p, c.len, 0, &out), 0);
  CHECK_EQ(out.len, m);
  CHECK(out.cap <= m);
  out.len = 0;
  /* the limit is per message */
  CHECK_EQ(inflate_msg(&inf, NULL, c.p, c.len, 0, &out), 0);
  ews_inflater_free(&inf, NULL);
  ews_zbuf_free(&out);
  ews_inflater_init(&inf, &p, m - 1);
  CHECK_EQ(inflate_msg(&inf, NULL, c.p, c.len, 0, &out), EWS_EMSG_TOO_BIG);
  CHECK_EQ(out.len, m - 1);
  ews_inflater_free(&inf, NULL);
  ews_zbuf_free(&out);
  /* headroom the caller keeps in out does not count */
  ews_inflater_init(&inf, &p, m);
  CHECK_EQ(ews_zbuf_reserve(&out, 64), 0);
  out.len = 64;
  CHECK_EQ(inflate_msg(&inf, NULL, c.p, c.len, 0, &out), 0);
  CHECK_EQ(out.len, m + 64);
  ews_inflater_free(&inf, NULL);
  ews_zbuf_free(&out);
  ews_zbuf_free(&c);
  free(zeros);
}

/* ---- invalid data ---- */

TEST(invalid_data) {
  ews_pmd_params_t p = params_of(0, 0, 15, 15);
  static const char *bad[] = {
      "ff",                         /* BTYPE 11 */
      "07",                         /* BFINAL=1 BTYPE=11 */
      "f2 48 cd c9 c9 07",          /* truncated: does not end on a block boundary */
      "f2 48",                      /* truncated inside the block */
      "00 05 00 fa fe 48 65 6c 6c 6f 00", /* stored LEN/NLEN mismatch */
      "00 05 00 fa ff 48 65",       /* stored block cut short */
      "f2 00 11 00 00",             /* a reference before any data */
      "f3 48 cd c9 c9 07 00 ff",    /* after a final block: a bad block */
  };
  for (size_t i = 0; i < NCASES(bad); i++) {
    size_t n;
    uint8_t *d = hex(bad[i], &n);
    ews_inflater_t inf;
    ews_inflater_init(&inf, &p, 0);
    ews_zbuf_t out = {0};
    int rc = inflate_msg(&inf, NULL, d, n, 0, &out);
    if (rc != EWS_EINFLATE) fprintf(stderr, "  [%s] -> %d\n", bad[i], rc);
    CHECK_EQ(rc, EWS_EINFLATE);
    /* sticky, and it frees cleanly */
    CHECK_EQ(ews_inflate(&inf, NULL, d, n, 1, 1, 0, &out), EWS_EINFLATE);
    ews_inflater_free(&inf, NULL);
    ews_zbuf_free(&out);
    free(d);
  }
  /* random garbage: never anything but EINFLATE (or, rarely, valid), never a crash */
  int errors = 0;
  for (int k = 0; k < 2000; k++) {
    size_t n = 1 + rnd() % 300;
    uint8_t *d = malloc(n);
    fill_random(d, n);
    ews_inflater_t inf;
    ews_inflater_init(&inf, &p, 1u << 16);
    ews_zbuf_t out = {0};
    int rc = inflate_msg(&inf, NULL, d, n, 0, &out);
    CHECK(rc == 0 || rc == EWS_EINFLATE || rc == EWS_EMSG_TOO_BIG);
    CHECK(out.len <= (1u << 16));
    errors += rc != 0;
    ews_inflater_free(&inf, NULL);
    ews_zbuf_free(&out);
    free(d);
  }
  CHECK(errors > 1900);
  /* a too-far distance: data that refers to a preset dictionary (before the start
   * of the data), whole or in pieces, with any agreed window */
  size_t n = 50000;
  uint8_t *msg = malloc(n);
  fill_json(msg, n, 11);
  ews_zbuf_t c = {0}, out = {0};
  {
    z_stream z;
    memset(&z, 0, sizeof z);
    CHECK_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    CHECK_EQ(deflateSetDictionary(&z, msg, 4096), Z_OK);
    CHECK_EQ(ews_zbuf_reserve(&c, deflateBound(&z, n) + 16), 0);
    z.next_in = msg;
    z.avail_in = (uInt)n;
    z.next_out = c.p;
    z.avail_out = (uInt)c.cap;
    CHECK_EQ(deflate(&z, Z_SYNC_FLUSH), Z_OK);
    c.len = c.cap - z.avail_out - 4;
    deflateEnd(&z);
  }
  ews_inflater_t inf;
  for (int bits = 9; bits <= 15; bits += 6) {
    for (size_t step = 0; step <= 1000; step += 1000) {
      ews_pmd_params_t small = params_of(0, 0, 15, bits);
      ews_inflater_init(&inf, &small, 0);
      out.len = 0;
      CHECK_EQ(step ? inflate_steps(&inf, NULL, c.p, c.len, step, 0, &out)
                    : inflate_msg(&inf, NULL, c.p, c.len, 0, &out),
               EWS_EINFLATE);
      ews_inflater_free(&inf, NULL);
    }
  }
  ews_deflater_t *d;
  CHECK_EQ(ews_deflater_new(&d, 6, 15, 8, 1, NULL), 0);
  c.len = 0;
  CHECK_EQ(ews_deflate_message(d, msg, n, &c), 0);
  /* API misuse */
  ews_inflater_init(&inf, &p, 0);
  CHECK_EQ(ews_inflate(&inf, NULL, c.p, 1, 0, 0, 0, &out), EWS_EINVAL); /* no message */
  ews_inflater_init(&inf, &p, 0);
  CHECK_EQ(ews_inflate(&inf, NULL, c.p, 1, 1, 0, 0, &out), 0);
  CHECK_EQ(ews_inflate(&inf, NULL, c.p, 1, 1, 0, 0, &out), EWS_EINVAL); /* nested */
  ews_inflater_free(&inf, NULL);
  ews_zbuf_free(&c);
  ews_zbuf_free(&out);
  ews_deflater_free(d);
  free(msg);
}

/* ---- UTF-8 while inflating ---- */

TEST(utf8_fail_fast) {
  ews_pmd_params_t p = params_of(1, 1, 15, 15);
  ews_deflater_t *d;
  CHECK_EQ(ews_deflater_new(&d, 6, 15, 8, 1, NULL), 0);
  size_t n = 200000;
  uint8_t *msg = malloc(n);
  fill_json(msg, n, 5);
  memcpy(msg + 100, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9); /* é € 😀 */
  ews_zbuf_t c = {0}, out = {0};
  ews_inflater_t inf;
  /* valid text */
  CHECK_EQ(ews_deflate_message(d, msg, n, &c), 0);
  ews_inflater_init(&inf, &p, 0);
  CHECK_EQ(inflate_steps(&inf, NULL, c.p, c.len, 1000, 1, &out), 0);
  CHECK_EQ(out.len, n);
  ews_inflater_free(&inf, NULL);
  /* an invalid byte early: reported on the chunk that produces it */
  msg[50] = 0xff;
  c.len = out.len = 0;
  CHECK_EQ(ews_deflate_message(d, msg, n, &c), 0);
  ews_inflater_init(&inf, &p, 0);
  int rc = 0;
  size_t at = 0;
  for (; at < c.len && rc == 0; at += 100)
    rc = ews_inflate(&inf, NULL, c.p + at, c.len - at < 100 ? c.len - at : 100, at == 0,
                     at + 100 >= c.len, 1, &out);
  CHECK_EQ(rc, EWS_EUTF8);
  CHECK(at < c.len / 4);
  ews_inflater_free(&inf, NULL);
  /* binary: not checked */
  ews_inflater_init(&inf, &p, 0);
  out.len = 0;
  CHECK_EQ(inflate_msg(&inf, NULL, c.p, c.len, 0, &out), 0);
  ews_inflater_free(&inf, NULL);
  /* truncated code point at the end of the message */
  c.len = out.len = 0;
  CHECK_EQ(ews_deflate_message(d, (const uint8_t *)"abc\xe2\x82", 5, &c), 0);
  ews_inflater_init(&inf, &p, 0);
  CHECK_EQ(inflate_msg(&inf, NULL, c.p, c.len, 1, &out), EWS_EUTF8);
  ews_inflater_free(&inf, NULL);
  /* a code point split across two inflate calls is fine */
  c.len = out.len = 0;
  CHECK_EQ(ews_deflate_message(d, (const uint8_t *)"a\xf0\x9f\x98\x80z", 6, &c), 0);
  ews_inflater_init(&inf, &p, 0);
  CHECK_EQ(inflate_steps(&inf, NULL, c.p, c.len, 1, 1, &out), 0);
  CHECK_EQ(out.len, 6);
  ews_inflater_free(&inf, NULL);
  ews_zbuf_free(&c);
  ews_zbuf_free(&out);
  ews_deflater_free(d);
  free(msg);
}

/* ---- frames built in place ---- */

typedef struct {
  ews_inflater_t *inf;
  ews_zbuf_t out;
  int messages, rc, compressed;
} rx_rec_t;

static int rx_on_data(void *ud, int op, uint8_t *p, size_t n, int first, int last,
                      int comp) {
  rx_rec_t *r = ud;
  r->compressed = comp;
  r->rc = ews_inflate(r->inf, NULL, p, n, first, last, op == EWS_OP_TEXT, &r->out);
  if (last) r->messages++;
  return r->rc ? 1 : 0;
}

static int rx_on_control(void *ud, int op, uint8_t *p, size_t n) {
  (void)ud, (void)op, (void)p, (void)n;
  return 0;
}

TEST(frames) {
  static const size_t sizes[] = {0, 5, 100, 200, 70000};
  uint8_t *msg = malloc(70000);
  fill_json(msg, 70000, 9);
  for (size_t s = 0; s < NCASES(sizes); s++) {
    ews_deflater_t *d;
    CHECK_EQ(ews_deflater_new(&d, 1, 15, 8, 0, NULL), 0);
    growrec_t g = {0, 0, 0};
    ews_zbuf_t b = {NULL, 0, 0, rec_grow, &g};
    /* something already in the buffer stays untouched */
    CHECK_EQ(ews_zbuf_reserve(&b, 3), 0);
    memcpy(b.p, "abc", 3);
    b.len = 3;
    size_t off;
    g.grows = 0;
    CHECK_EQ(ews_deflate_frame(d, EWS_OP_TEXT, msg, sizes[s], &b, &off), 0);
    CHECK_MEM(b.p, "abc", 3);
    CHECK(off >= 3 && off <= 3 + EWS_FRAME_MAX_HEADER - 2);
    size_t plen = b.len - 3 - EWS_FRAME_MAX_HEADER;
    CHECK_EQ(off + ews_frame_header_len(plen), 3 + EWS_FRAME_MAX_HEADER);
    CHECK_EQ(b.p[off], 0xC1); /* FIN, RSV1, TEXT */
    if (sizes[s] <= 200) CHECK_EQ(g.grows, 1); /* the bound, once */
    /* a client-side receiver parses it, the inflater restores it */
    ews_rx_config_t rc = {0, 0, 0, 1};
    ews_rx_t rx;
    ews_rx_init(&rx, &rc);
    ews_inflater_t inf;
    ews_pmd_params_t p = params_of(0, 0, 15, 15);
    ews_inflater_init(&inf, &p, 0);
    rx_rec_t r = {&inf, {0}, 0, 0, 0};
    ews_rx_handler_t h = {rx_on_data, rx_on_control};
    size_t flen = b.len - off;
    CHECK_EQ(ews_rx_feed(&rx, b.p + off, flen, &h, &r), (int)flen);
    CHECK_EQ(r.messages, 1);
    CHECK_EQ(r.compressed, 1);
    CHECK_EQ(r.rc, 0);
    CHECK_EQ(r.out.len, sizes[s]);
    if (r.out.len == sizes[s] && sizes[s]) CHECK_MEM(r.out.p, msg, sizes[s]);
    ews_rx_free(&rx);
    ews_inflater_free(&inf, NULL);
    ews_zbuf_free(&r.out);
    CHECK_EQ(ews_deflate_frame(d, EWS_OP_CLOSE, msg, 1, &b, &off), EWS_EINVAL);
    free(b.p);
    ews_deflater_free(d);
  }
  free(msg);
}

/* ---- the worker: shared compressors, stream cache, memory ---- */

TEST(worker_memory) {
  counter_t cnt;
  ews_zalloc_t za = counting(&cnt);
  ews_pmd_config_t cfg = cfg_of(EWS_PMD_SHARED, 15, 0, 1);
  ews_pmd_worker_t *w;
  CHECK_EQ(ews_pmd_worker_new(&w, &cfg, &za), 0);
  CHECK(ews_pmd_worker_config(w)->mode == EWS_PMD_SHARED);
  size_t base = cnt.cur;
  ews_pmd_params_t p1 = params_of(1, 1, 15, 15), p2 = params_of(1, 1, 15, 15);
  ews_deflater_t *c1 = NULL, *c2 = NULL, *d1, *d2;
  CHECK_EQ(ews_pmd_deflater_for(w, &p1, &c1, &d1), 0);
  CHECK_EQ(ews_pmd_deflater_for(w, &p2, &c2, &d2), 0);
  CHECK(d1 == d2 && c1 == NULL && c2 == NULL); /* one shared compressor */
  size_t shared_bytes = cnt.cur - base;
  fprintf(stderr, "  shared compressor (15/8): %zu bytes per worker\n", shared_bytes);
  /* a connection limiting the window gets another shared compressor */
  ews_pmd_params_t p3 = params_of(1, 1, 10, 15);
  ews_deflater_t *d3;
  CHECK_EQ(ews_pmd_deflater_for(w, &p3, &c1, &d3), 0);
  CHECK(d3 != d1 && c1 == NULL);
  CHECK_EQ(ews_deflater_window_bits(d3), 10);

  /* "compress once, send to many": one output inflates on every connection */
  uint8_t msg[3000];
  fill_json(msg, sizeof msg, 2);
  ews_zbuf_t c = {0}, out = {0};
  CHECK_EQ(ews_deflate_message(d1, msg, sizeof msg, &c), 0);
  enum { CONNS = 50 };
  ews_inflater_t infs[CONNS];
  size_t before = cnt.cur;
  for (int i = 0; i < CONNS; i++) {
    ews_inflater_init(&infs[i], &p1, 0);
    out.len = 0;
    CHECK_EQ(inflate_msg(&infs[i], w, c.p, c.len, 1, &out), 0);
    CHECK(out.len == sizeof msg && memcmp(out.p, msg, sizeof msg) == 0);
    /* client_no_context_takeover: no state held between messages */
    CHECK(!ews_inflater_holds_state(&infs[i]));
  }
  size_t after = cnt.cur;
  fprintf(stderr, "  inflate stream (window 15), cached per worker: %zu bytes\n",
          after - before);
  CHECK(after - before < 48 * 1024); /* one stream reused by all 50 */
  for (int i = 0; i < CONNS; i++) ews_inflater_free(&infs[i], w);

  /* with takeover the connection keeps its stream */
  ews_pmd_params_t pt = params_of(1, 0, 15, 15);
  ews_inflater_t keep;
  ews_inflater_init(&keep, &pt, 0);
  CHECK(!ews_inflater_holds_state(&keep)); /* nothing until the first message */
  CHECK_EQ(inflate_msg(&keep, w, c.p, c.len, 1, &out), 0);
  CHECK(ews_inflater_holds_state(&keep));
  ews_inflater_free(&keep, w);
  CHECK(!ews_inflater_holds_state(&keep));

  /* dedicated: created on first use, owned by the connection */
  ews_pmd_params_t pd = params_of(0, 1, 15, 15);
  ews_deflater_t *conn = NULL, *dd;
  before = cnt.cur;
  CHECK_EQ(ews_pmd_deflater_for(w, &pd, &conn, &dd), 0);
  CHECK(conn != NULL && dd == conn);
  fprintf(stderr, "  dedicated compressor (15/8): %zu bytes per connection\n",
          cnt.cur - before);
  CHECK_EQ(ews_pmd_deflater_for(w, &pd, &conn, &dd), 0);
  CHECK(dd == conn);
  ews_deflater_free(conn);
  ews_zbuf_free(&c);
  ews_zbuf_free(&out);
  ews_pmd_worker_free(w);
  CHECK_EQ(cnt.cur, 0);
}

/* Measured zlib memory of each setting (printed for the docs, loosely checked). */
TEST(memory_table) {
  static const int combos[][2] = {{15, 8}, {15, 7}, {14, 7}, {13, 6}, {12, 5}, {9, 1}};
  for (size_t i = 0; i < NCASES(combos); i++) {
    counter_t cnt;
    ews_zalloc_t za = counting(&cnt);
    ews_deflater_t *d;
    CHECK_EQ(ews_deflater_new(&d, 6, combos[i][0], combos[i][1], 0, &za), 0);
    size_t formula = ((size_t)1 << (combos[i][0] + 2)) + ((size_t)1 << (combos[i][1] + 9));
    fprintf(stderr, "  deflate window %d memLevel %d: %zu bytes (formula %zu)\n",
            combos[i][0], combos[i][1], cnt.cur, formula);
    CHECK(cnt.cur >= formula && cnt.cur < formula + 8192);
    ews_deflater_free(d);
    CHECK_EQ(cnt.cur, 0);
  }
  for (int bits = 9; bits <= 15; bits += 3) {
    counter_t cnt;
    ews_zalloc_t za = counting(&cnt);
    ews_pmd_config_t cfg = cfg_of(EWS_PMD_SHARED, 15, 0, 0);
    ews_pmd_worker_t *w;
    CHECK_EQ(ews_pmd_worker_new(&w, &cfg, &za), 0);
    size_t base = cnt.cur;
    ews_inflater_t inf;
    ews_pmd_params_t p = params_of(1, 0, 15, bits);
    ews_inflater_init(&inf, &p, 0);
    ews_zbuf_t out = {0};
    size_t n;
    uint8_t *h = hex("f2 48 cd c9 c9 07 00", &n);
    CHECK_EQ(inflate_msg(&inf, w, h, n, 1, &out), 0);
    fprintf(stderr, "  inflate (agreed window %d): %zu bytes\n", bits, cnt.cur - base);
    /* 32 KiB whatever the agreed window (see ews_inflater_init) */
    CHECK(cnt.cur - base >= ((size_t)1 << 15) && cnt.cur - base < ((size_t)1 << 15) + 8192);
    free(h);
    ews_zbuf_free(&out);
    ews_inflater_free(&inf, w);
    ews_pmd_worker_free(w);
    CHECK_EQ(cnt.cur, 0);
  }
}

/* A broadcast from the shared compressor sent to a connection whose dedicated
 * compressor keeps context: the dedicated one must be reset (optionally primed with
 * what was sent), or the peer's window and ours disagree. */
TEST(dedicated_after_broadcast) {
  size_t n = 4000;
  uint8_t *m1 = malloc(n), *bc = malloc(n), *m2 = malloc(n);
  fill_json(m1, n, 100);
  fill_json(bc, n, 200);
  fill_json(m2, n, 200); /* like the broadcast */
  m2[0] = '[';
  size_t sizes[3];
  for (int variant = 0; variant < 3; variant++) { /* 0: no reset, 1: reset, 2: primed */
    ews_deflater_t *own, *shared;
    CHECK_EQ(ews_deflater_new(&own, 6, 15, 8, 0, NULL), 0);
    CHECK_EQ(ews_deflater_new(&shared, 6, 15, 8, 1, NULL), 0);
    ews_inflater_t peer;
    ews_pmd_params_t p = params_of(0, 0, 15, 15);
    ews_inflater_init(&peer, &p, 0);
    ews_zbuf_t c = {0}, out = {0};
    CHECK_EQ(ews_deflate_message(own, m1, n, &c), 0);
    CHECK_EQ(inflate_msg(&peer, NULL, c.p, c.len, 0, &out), 0);
    c.len = out.len = 0;
    CHECK_EQ(ews_deflate_message(shared, bc, n, &c), 0);
    CHECK_EQ(inflate_msg(&peer, NULL, c.p, c.len, 0, &out), 0);
    CHECK(out.len == n && memcmp(out.p, bc, n) == 0);
    if (variant == 1) CHECK_EQ(ews_deflater_reset(own, NULL, 0), 0);
    if (variant == 2) CHECK_EQ(ews_deflater_reset(own, bc, n), 0);
    c.len = out.len = 0;
    CHECK_EQ(ews_deflate_message(own, m2, n, &c), 0);
    sizes[variant] = c.len;
    int rc = inflate_msg(&peer, NULL, c.p, c.len, 0, &out);
    int ok = rc == 0 && out.len == n && memcmp(out.p, m2, n) == 0;
    if (variant == 0) CHECK(!ok); /* out of step: garbage or an error */
    else CHECK(ok);
    ews_zbuf_free(&c);
    ews_zbuf_free(&out);
    ews_inflater_free(&peer, NULL);
    ews_deflater_free(own);
    ews_deflater_free(shared);
  }
  CHECK(sizes[2] < sizes[1] / 2); /* priming with the broadcast pays off */
  free(m1);
  free(bc);
  free(m2);
}

/* ---- allocation failures ---- */

static int grow_never(ews_zbuf_t *b, size_t need) {
  (void)b, (void)need;
  return -1;
}

TEST(alloc_failures) {
  uint8_t msg[5000];
  fill_json(msg, sizeof msg, 4);
  /* every allocation point of a compressor and a decompressor fails in turn */
  for (long k = 0; k < 12; k++) {
    counter_t cnt;
    ews_zalloc_t za = counting(&cnt);
    cnt.fail_after = k;
    ews_deflater_t *d = NULL;
    int rc = ews_deflater_new(&d, 6, 15, 8, 0, &za);
    CHECK(rc == 0 || rc == EWS_ENOMEM);
    if (rc == 0) {
      ews_zbuf_t c = {0};
      CHECK_EQ(ews_deflate_message(d, msg, sizeof msg, &c), 0);
      ews_pmd_config_t cfg = cfg_of(EWS_PMD_SHARED, 15, 0, 0);
      ews_pmd_worker_t *w = NULL;
      rc = ews_pmd_worker_new(&w, &cfg, &za);
      CHECK(rc == 0 || rc == EWS_ENOMEM);
      if (rc == 0) {
        ews_inflater_t inf;
        ews_pmd_params_t p = params_of(0, 0, 15, 15);
        ews_inflater_init(&inf, &p, 0);
        ews_zbuf_t out = {0};
        rc = inflate_msg(&inf, w, c.p, c.len, 0, &out);
        CHECK(rc == 0 || rc == EWS_ENOMEM);
        if (rc == 0) CHECK(out.len == sizeof msg && memcmp(out.p, msg, sizeof msg) == 0);
        ews_inflater_free(&inf, w);
        ews_zbuf_free(&out);
        ews_pmd_worker_free(w);
      }
      ews_zbuf_free(&c);
      ews_deflater_free(d);
    }
    CHECK_EQ(cnt.cur, 0);
  }
  /* an output buffer that cannot grow: ENOMEM, nothing appended, still usable */
  ews_deflater_t *d;
  CHECK_EQ(ews_deflater_new(&d, 6, 15, 8, 0, NULL), 0);
  uint8_t fixed[64];
  ews_zbuf_t b = {fixed, 10, sizeof fixed, grow_never, NULL};
  CHECK_EQ(ews_deflate_message(d, msg, sizeof msg, &b), EWS_ENOMEM);
  CHECK_EQ(b.len, 10);
  size_t off;
  CHECK_EQ(ews_deflate_frame(d, EWS_OP_BINARY, msg, sizeof msg, &b, &off), EWS_ENOMEM);
  CHECK_EQ(b.len, 10);
  CHECK_EQ(ews_deflate_message(d, (const uint8_t *)"Hello", 5, &b), 0);
  CHECK_EQ(b.len, 17);
  CHECK_MEM(fixed + 10, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7); /* reset: fresh context */
  ews_deflater_free(d);
  /* an inflate output that cannot grow */
  ews_inflater_t inf;
  ews_pmd_params_t p = params_of(0, 0, 15, 15);
  ews_inflater_init(&inf, &p, 0);
  ews_zbuf_t c = {0};
  CHECK_EQ(ews_deflater_new(&d, 6, 15, 8, 0, NULL), 0);
  CHECK_EQ(ews_deflate_message(d, msg, sizeof msg, &c), 0);
  b.len = 0;
  CHECK_EQ(inflate_msg(&inf, NULL, c.p, c.len, 0, &b), EWS_ENOMEM);
  CHECK_EQ(b.len, sizeof fixed);
  ews_inflater_free(&inf, NULL);
  ews_zbuf_free(&c);
  ews_deflater_free(d);
  /* argument checks */
  CHECK_EQ(ews_deflater_new(&d, 10, 15, 8, 0, NULL), EWS_EINVAL);
  CHECK_EQ(ews_deflater_new(&d, 6, 7, 8, 0, NULL), EWS_EINVAL);
  CHECK_EQ(ews_deflater_new(&d, 6, 16, 8, 0, NULL), EWS_EINVAL);
  CHECK_EQ(ews_deflater_new(&d, 6, 15, 0, 0, NULL), EWS_EINVAL);
  CHECK_EQ(ews_deflater_new(&d, 6, 15, 10, 0, NULL), EWS_EINVAL);
  ews_pmd_config_t bad = cfg_of(EWS_PMD_SHARED, 15, 0, 0);
  bad.level = 11;
  ews_pmd_worker_t *w;
  CHECK_EQ(ews_pmd_worker_new(&w, &bad, NULL), EWS_EINVAL);
}

/* Final blocks: a message may end its DEFLATE stream a few times (a window copy each),
 * not once per two bytes. */
TEST(final_blocks) {
  counter_t cnt;
  ews_zalloc_t za = counting(&cnt);
  ews_pmd_config_t cfg = cfg_of(EWS_PMD_SHARED, 15, 0, 0);
  ews_pmd_worker_t *w;
  CHECK_EQ(ews_pmd_worker_new(&w, &cfg, &za), 0);
  ews_pmd_params_t p = params_of(1, 0, 15, 15);
  ews_zbuf_t out = {0};
  /* 2,000 empty fixed-Huffman final blocks ("03 00"): refused after the free restarts,
   * having allocated a window for each of those only */
  size_t n = 4000;
  uint8_t *empty = malloc(n);
  for (size_t i = 0; i < n; i += 2) empty[i] = 0x03, empty[i + 1] = 0x00;
  for (size_t step = 1; step <= n; step = step * 7 + 1) {
    ews_inflater_t inf;
    ews_inflater_init(&inf, &p, 1 << 20);
    size_t before = cnt.count;
    out.len = 0;
    CHECK_EQ(inflate_steps(&inf, w, empty, n, step, 0, &out), EWS_EINFLATE_BLOCKS);
    CHECK(cnt.count - before <= EWS_INFLATE_FREE_RESTARTS + 2); /* + the stream itself */
    CHECK_EQ(out.len, 0);
    CHECK_EQ(ews_err_close_code(EWS_EINFLATE_BLOCKS), 1007);
    ews_inflater_free(&inf, w);
  }
  free(empty);
  /* 20 streams of 8 KiB of random bytes, each ended with BFINAL (Z_FINISH), as one
   * message: every byte comes back */
  enum { STREAMS = 20, PART = 8192 };
  uint8_t *plain = malloc(STREAMS * PART);
  fill_random(plain, STREAMS * PART);
  ews_zbuf_t wire = {0};
  for (int k = 0; k < STREAMS; k++) {
    z_stream z;
    memset(&z, 0, sizeof z);
    CHECK_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    CHECK_EQ(ews_zbuf_reserve(&wire, wire.len + deflateBound(&z, PART)), 0);
    z.next_in = plain + (size_t)k * PART;
    z.avail_in = PART;
    z.next_out = wire.p + wire.len;
    z.avail_out = (uInt)(wire.cap - wire.len);
    CHECK_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
    wire.len = wire.cap - z.avail_out;
    deflateEnd(&z);
  }
  ews_inflater_t inf;
  ews_inflater_init(&inf, &p, 1 << 20);
  out.len = 0;
  CHECK_EQ(inflate_steps(&inf, w, wire.p, wire.len, 1000, 0, &out), 0);
  CHECK_EQ(out.len, (size_t)STREAMS * PART);
  CHECK(memcmp(out.p, plain, out.len) == 0);
  ews_inflater_free(&inf, w);
  free(plain);
  ews_zbuf_free(&wire);
  ews_zbuf_free(&out);
  ews_pmd_worker_free(w);
}

/* ---- whole messages (libdeflate) ---- */

/* Inflates payload[0..n) as one single-frame message on a fresh inflater with the
 * given params and limit; returns the result code, the output in *out. */
static int inflate_fresh(ews_pmd_worker_t *w, ews_pmd_params_t p, uint64_t limit,
                         const uint8_t *payload, size_t n, int text, ews_zbuf_t *out) {
  ews_inflater_t inf;
  ews_inflater_init(&inf, &p, limit);
  out->len = 0;
  int rc = inflate_msg(&inf, w, payload, n, text, out);
  ews_inflater_free(&inf, w);
  return rc;
}

/* A single-frame message without context takeover and with a 32 KiB window is
 * inflated whole by libdeflate: no zlib stream is taken for it. Whatever that path
 * does not take (a final block inside the message, output over 8x the input or over
 * the limit, bad data, a message not ending on a block boundary) gets exactly the
 * answer zlib gives: every payload is inflated both ways (the takeover inflater
 * always runs zlib) and compared, codes and bytes. */
TEST(whole_messages) {
  counter_t cnt;
  ews_zalloc_t za = counting(&cnt);
  ews_pmd_config_t cfg = cfg_of(EWS_PMD_SHARED, 15, 0, 1);
  ews_pmd_worker_t *w;
  CHECK_EQ(ews_pmd_worker_new(&w, &cfg, &za), 0);
  ews_pmd_params_t fast = params_of(1, 1, 15, 15), ref = params_of(1, 0, 15, 15);
  ews_deflater_t *d;
  CHECK_EQ(ews_deflater_new(&d, 1, 15, 8, 1, NULL), 0);
  ews_zbuf_t a = {0}, b = {0}, c = {0};

  /* JSON of many sizes, text: the fast path, no zlib stream (~40 KB) allocated */
  static const size_t sizes[] = {1, 100, 3000, 16384, 65536, 200000};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    uint8_t *msg = malloc(sizes[i]);
    fill_json(msg, sizes[i], (unsigned)i);
    c.len = 0;
    CHECK_EQ(ews_deflate_message(d, msg, sizes[i], &c), 0);
    size_t peak0 = cnt.cur;
    cnt.peak = cnt.cur;
    CHECK_EQ(inflate_fresh(w, fast, 0, c.p, c.len, 1, &a), 0);
    CHECK(a.len == sizes[i] && memcmp(a.p, msg, sizes[i]) == 0);
    if (c.len <= 64 * 1024) CHECK(cnt.peak - peak0 <= c.len + 1024 + 16); /* the scratch only */
    free(msg);
  }

  /* the limit: exactly the limit inflates, one byte less is too big */
  uint8_t msg[3000];
  fill_json(msg, sizeof msg, 7);
  c.len = 0;
  CHECK_EQ(ews_deflate_message(d, msg, sizeof msg, &c), 0);
  CHECK_EQ(inflate_fresh(w, fast, sizeof msg, c.p, c.len, 1, &a), 0);
  CHECK(a.len == sizeof msg && memcmp(a.p, msg, sizeof msg) == 0);
  CHECK_EQ(inflate_fresh(w, fast, sizeof msg - 1, c.p, c.len, 1, &a), EWS_EMSG_TOO_BIG);
  CHECK_EQ(inflate_fresh(w, ref, sizeof msg - 1, c.p, c.len, 1, &b), EWS_EMSG_TOO_BIG);

  /* zeros: far more than 8x; invalid UTF-8 as text */
  uint8_t *zeros = calloc(1, 300000);
  c.len = 0;
  CHECK_EQ(ews_deflate_message(d, zeros, 300000, &c), 0);
  CHECK_EQ(inflate_fresh(w, fast, 0, c.p, c.len, 0, &a), 0);
  CHECK(a.len == 300000 && memcmp(a.p, zeros, 300000) == 0);
  free(zeros);
  static const uint8_t bad_utf8[] = {'a', 0xff, 0xfe, 'b', 0xc3};
  c.len = 0;
  CHECK_EQ(ews_deflate_message(d, bad_utf8, sizeof bad_utf8, &c), 0);
  CHECK_EQ(inflate_fresh(w, fast, 0, c.p, c.len, 1, &a), EWS_EUTF8);
  CHECK_EQ(inflate_fresh(w, fast, 0, c.p, c.len, 0, &a), 0);
  CHECK(a.len == sizeof bad_utf8 && memcmp(a.p, bad_utf8, sizeof bad_utf8) == 0);

  /* RFC 7692 7.2.3.4 (a final block, then the start of a stored block) and 7.2.3.5
   * (two blocks), a message cut inside a block, and 2,000 corruptions of a JSON
   * message: the same code and bytes both ways */
  static const uint8_t rfc_final[] = {0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00};
  static const uint8_t rfc_two[] = {0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff,
                                    0xca, 0xc9, 0xc9, 0x07, 0x00};
  const uint8_t *vec[] = {rfc_final, rfc_two};
  size_t vlen[] = {sizeof rfc_final, sizeof rfc_two};
  for (int v = 0; v < 2; v++) {
    CHECK_EQ(inflate_fresh(w, fast, 0, vec[v], vlen[v], 1, &a), 0);
    CHECK_EQ(inflate_fresh(w, ref, 0, vec[v], vlen[v], 1, &b), 0);
    CHECK(a.len == 5 && b.len == 5 && memcmp(a.p, "Hello", 5) == 0 && memcmp(b.p, "Hello", 5) == 0);
  }
  c.len = 0;
  CHECK_EQ(ews_deflate_message(d, msg, sizeof msg, &c), 0);
  uint8_t *m = malloc(c.len);
  uint32_t seed = 1;
  int differ = 0, ok = 0;
  for (int k = 0; k < 2000; k++) {
    memcpy(m, c.p, c.len);
    size_t n = c.len;
    seed = seed * 1103515245u + 12345u;
    size_t at = (seed >> 8) % c.len;
    if (k % 3 == 0) n = at; /* cut */
    else m[at] ^= (uint8_t)(1u << ((seed >> 4) % 8)); /* one bit flipped */
    int ra = inflate_fresh(w, fast, 1 << 20, m, n, k % 2, &a);
    int rb = inflate_fresh(w, ref, 1 << 20, m, n, k % 2, &b);
    if (ra != rb || (ra == 0 && (a.len != b.len || memcmp(a.p, b.p, a.len) != 0))) differ++;
    if (ra == 0) ok++;
  }
  CHECK_EQ(differ, 0);
  free(m);

  ews_deflater_free(d);
  ews_pmd_worker_free(w);
  CHECK_EQ(cnt.cur, 0);
  free(a.p);
  free(b.p);
  free(c.p);
}

/* ---- the libdeflate engine for the shared compressor ---- */

/* A receiver as Chromium's (net/websockets/websocket_inflater.cc): ONE raw zlib
 * stream for the whole connection, fed each message with 00 00 FF FF appended and
 * Z_SYNC_FLUSH, restarting (inflateReset) whenever a final block ends a stream and
 * input remains. Returns 0 when the message inflates to exactly want[0..wn), all
 * input is used and the stream is left on a block boundary outside a final block
 * (as after a sync flush, so the next message starts cleanly); else -1. */
static int persistent_inflate(z_stream *z, const uint8_t *p, size_t n,
                              const uint8_t *want, size_t wn, int *finals) {
  uint8_t *in = malloc(n + 4), *out = malloc(wn + 64);
  memcpy(in, p, n);
  memcpy(in + n, "\x00\x00\xff\xff", 4);
  z->next_in = in;
  z->avail_in = (uInt)(n + 4);
  z->next_out = out;
  z->avail_out = (uInt)(wn + 64);
  int ok = 0;
  for (;;) {
    int rc = inflate(z, Z_SYNC_FLUSH);
    if (rc == Z_STREAM_END) {
      (*finals)++;
      if (inflateReset(z) != Z_OK) break;
      if (z->avail_in == 0) break;
      continue;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) break;
    if (z->avail_in == 0) {
      ok = 1;
      break;
    }
    if (rc == Z_BUF_ERROR) break;
  }
  size_t got = wn + 64 - z->avail_out;
  int r = ok && got == wn && memcmp(out, want, wn) == 0 && z->avail_in == 0 &&
                  (z->data_type & (64 | 128)) == 128
              ? 0
              : -1;
  free(in);
  free(out);
  return r;
}

/* engine = libdeflate: the worker's shared 15-bit compressor runs libdeflate (other
 * windows, level 0, dedicated mode stay zlib); every message, of many sizes,
 * compressible or not, holds a final block followed by the empty non-final stored
 * block (the payload ends in 00), and inflates byte-exact (a) through one zlib
 * stream kept across all messages as Chromium keeps it, which must end every
 * message on a block boundary, (b) through our own inflater with and without
 * context takeover, (c) as a frame. */
TEST(libdeflate_engine) {
  ews_pmd_config_t cfg;
  ews_pmd_config_default(&cfg);
  cfg.enabled = 1;
  cfg.engine = EWS_PMD_ENGINE_LIBDEFLATE;
  CHECK_EQ(ews_pmd_config_check(&cfg), 0);
  cfg.mode = EWS_PMD_DEDICATED;
  CHECK_EQ(ews_pmd_config_check(&cfg), EWS_EINVAL);
  cfg.mode = EWS_PMD_SHARED;
  cfg.engine = 2;
  CHECK_EQ(ews_pmd_config_check(&cfg), EWS_EINVAL);
  cfg.engine = EWS_PMD_ENGINE_LIBDEFLATE;
  ews_deflater_t *bad = NULL;
  CHECK_EQ(ews_deflater_new_libdeflate(&bad, 0, NULL), EWS_EINVAL);
  CHECK_EQ(ews_deflater_new_libdeflate(&bad, 10, NULL), EWS_EINVAL);
  CHECK(bad == NULL);

  counter_t cnt;
  ews_zalloc_t za = counting(&cnt);
  ews_pmd_worker_t *w;
  CHECK_EQ(ews_pmd_worker_new(&w, &cfg, &za), 0);
  ews_pmd_params_t shared = params_of(1, 1, 15, 15), small = params_of(1, 1, 12, 15);
  ews_deflater_t *own = NULL, *d = NULL, *dz = NULL;
  CHECK_EQ(ews_pmd_deflater_for(w, &shared, &own, &d), 0);
  CHECK(ews_deflater_is_libdeflate(d));
  CHECK_EQ(ews_deflater_window_bits(d), 15);
  CHECK_EQ(ews_deflater_reset(d, NULL, 0), 0);
  CHECK_EQ(ews_pmd_deflater_for(w, &small, &own, &dz), 0);
  CHECK(!ews_deflater_is_libdeflate(dz)); /* libdeflate's window is 32 KiB */
  CHECK(own == NULL);

  /* the same data as zlib's engine would send, compared for size */
  ews_pmd_config_t zcfg = cfg;
  zcfg.engine = EWS_PMD_ENGINE_ZLIB;
  ews_pmd_worker_t *wz;
  CHECK_EQ(ews_pmd_worker_new(&wz, &zcfg, NULL), 0);
  ews_deflater_t *ref = NULL;
  CHECK_EQ(ews_pmd_deflater_for(wz, &shared, &own, &ref), 0);
  CHECK(!ews_deflater_is_libdeflate(ref));

  z_stream chromium;
  memset(&chromium, 0, sizeof chromium);
  CHECK_EQ(inflateInit2(&chromium, -15), Z_OK);
  ews_pmd_params_t keep = params_of(1, 0, 15, 15), reset = params_of(1, 1, 15, 15);
  ews_inflater_t inf_keep;
  ews_inflater_init(&inf_keep, &keep, 0);

  static const size_t sizes[] = {0, 1, 2, 5, 100, 1000, 4096, 16384, 65535, 65536,
                                 65537, 200000, 1u << 20};
  size_t nsz = sizeof sizes / sizeof sizes[0];
  uint8_t *msg = malloc(1u << 20);
  ews_zbuf_t c = {0}, a = {0}, zc = {0};
  int finals = 0, bad_persist = 0, bad_own = 0, bad_tail = 0, bad_final = 0, msgs = 0;
  size_t ld_bytes = 0, z_bytes = 0;
  for (int kind = 0; kind < 2; kind++) {
    for (size_t i = 0; i < nsz; i++) {
      size_t n = sizes[i];
      if (kind == 0) fill_json(msg, n, (unsigned)i);
      else fill_random(msg, n); /* incompressible */
      c.len = 0;
      CHECK_EQ(ews_deflate_message(d, msg, n, &c), 0);
      CHECK(c.len <= ews_deflate_bound(d, n));
      msgs++;
      /* the tail: an empty non-final stored block (header byte 00, aligned) */
      if (c.len == 0 || c.p[c.len - 1] != 0x00) bad_tail++;
      /* libdeflate's stream is complete on its own: it holds a final block */
      if (n > 0) {
        z_stream f;
        memset(&f, 0, sizeof f);
        inflateInit2(&f, -15);
        uint8_t *sink = malloc(n + 16);
        f.next_in = c.p;
        f.avail_in = (uInt)(c.len - 1);
        f.next_out = sink;
        f.avail_out = (uInt)(n + 16);
        if (inflate(&f, Z_FINISH) != Z_STREAM_END || f.avail_in != 0) bad_final++;
        inflateEnd(&f);
        free(sink);
      }
      if (persistent_inflate(&chromium, c.p, c.len, msg, n, &finals) != 0) bad_persist++;
      /* our inflater: with takeover (zlib, kept across messages) and without */
      a.len = 0;
      if (inflate_msg(&inf_keep, w, c.p, c.len, 0, &a) != 0 || a.len != n ||
          (n && memcmp(a.p, msg, n) != 0))
        bad_own++;
      a.len = 0;
      if (inflate_fresh(w, reset, 0, c.p, c.len, 0, &a) != 0 || a.len != n ||
          (n && memcmp(a.p, msg, n) != 0))
        bad_own++;
      if (kind == 0 && n >= 1000) {
        zc.len = 0;
        CHECK_EQ(ews_deflate_message(ref, msg, n, &zc), 0);
        ld_bytes += c.len;
        z_bytes += zc.len;
      }
    }
  }
  CHECK_EQ(bad_tail, 0);
  CHECK_EQ(bad_final, 0);
  CHECK_EQ(bad_persist, 0);
  CHECK_EQ(bad_own, 0);
  CHECK_EQ(finals, msgs - 2); /* one final block per non-empty message */
  CHECK(ld_bytes < z_bytes);  /* the reason for the engine: a better ratio */

  /* as a frame: FIN, RSV1, the payload as above */
  size_t off = 0;
  c.len = 0;
  fill_json(msg, 3000, 3);
  CHECK_EQ(ews_deflate_frame(d, EWS_OP_TEXT, msg, 3000, &c, &off), 0);
  CHECK_EQ(c.p[off], 0xC1);
  size_t plen = c.p[off + 1] == 126 ? ((size_t)c.p[off + 2] << 8 | c.p[off + 3]) : c.p[off + 1];
  size_t hl = c.p[off + 1] == 126 ? 4 : 2;
  CHECK_EQ(plen, c.len - off - hl);
  CHECK_EQ(persistent_inflate(&chromium, c.p + off + hl, plen, msg, 3000, &finals), 0);

  inflateEnd(&chromium);
  ews_inflater_free(&inf_keep, w);
  ews_pmd_worker_free(w);
  ews_pmd_worker_free(wz);
  CHECK_EQ(cnt.cur, 0);
  free(msg);
  free(c.p);
  free(a.p);
  free(zc.p);
}

int main(void) {
  RUN(negotiate_shared);
  RUN(negotiate_dedicated);
  RUN(negotiate_declines);
  RUN(negotiate_args);
  RUN(rfc_vectors_inflate);
  RUN(rfc_vectors_deflate);
  RUN(round_trips);
  RUN(round_trip_levels_and_windows);
  RUN(window_bits_8);
  RUN(window_overreach_split);
  RUN(chunked_feeding);
  RUN(bomb);
  RUN(invalid_data);
  RUN(utf8_fail_fast);
  RUN(frames);
  RUN(worker_memory);
  RUN(memory_table);
  RUN(dedicated_after_broadcast);
  RUN(alloc_failures);
  RUN(final_blocks);
  RUN(whole_messages);
  RUN(libdeflate_engine);
  return TEST_EXIT();
}
