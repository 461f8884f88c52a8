/* test_net_tls.c — the TLS module against an in-process mbedTLS client, through memory
 * pipes: full handshake with certificate verification for each AEAD suite (also fed a
 * byte at a time), data both ways up to 1 MiB in many read sizes, coalescing of small
 * writes into few records (record counts asserted), garbage and truncated handshakes,
 * a client with the wrong CA, reload with bad files, close_notify both ways, tampered
 * records, ticket resumption with application data in the same read as the client's
 * Finished, max_fragment_length, a renegotiation attempt, sharing one ctx between
 * threads, and the heap cost of an idle connection (printed).
 *
 * Certificates are made at run time by scripts/gen-test-cert (openssl) in a temp dir:
 * two independent CAs, A and B. */
#include <malloc.h>
#include <pthread.h>
#include <sys/stat.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>

#include "err.h"
#include "net/tls.h"
#include "net/writeq.h"

#include "test.h"

/* ---- heap accounting -------------------------------------------------------
 * Debian's mbedTLS has no MBEDTLS_PLATFORM_MEMORY, so mbedtls_platform_set_calloc_free
 * does not exist. Under ASan the allocator reports exact live bytes; otherwise glibc's
 * mallinfo2 (which includes chunk headers). */
#if defined(__SANITIZE_ADDRESS__)
#define HEAP_EXACT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_EXACT 1
#endif
#endif
#ifdef HEAP_EXACT
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_now(void) { return __sanitizer_get_current_allocated_bytes(); }
#define HEAP_HOW "exact, ASan allocator"
#define HEAP_CHECK(cond) CHECK(cond)
#else
static size_t heap_now(void) { return mallinfo2().uordblks; }
#define HEAP_HOW "glibc mallinfo2, incl. chunk headers"
/* mallinfo2 counts chunks cached in glibc's tcache as in use: report, do not assert. */
#define HEAP_CHECK(cond) ((void)(cond))
#endif

/* ---- fixtures -------------------------------------------------------------- */

static char tmpdir[64];
static char a_ca[128], a_crt[128], a_key[128], a_chain[128];
static char b_ca[128], b_crt[128], b_key[128];
static ews_tls_ctx_t *ctx_a;
static mbedtls_entropy_context g_ent;
static mbedtls_ctr_drbg_context g_drbg;
static _Thread_local ews_bufpool_t g_pool; /* one per thread, like a worker's */

#define RBUF (64u * 1024u)


typedef struct {
  mbedtls_ssl_context ssl;
  mbedtls_ssl_config conf;
  mbedtls_x509_crt ca;
  test_bytes_t *tx, *rx;
} cli_t;

typedef struct {
  ews_tls_t *t;
  ews_writeq_t out;
  uint8_t *rbuf;
  test_bytes_t got;
  int st;
  size_t chunk;
  size_t max_reserve;
} srv_t;

typedef struct {
  cli_t c;
  srv_t s;
  test_bytes_t c2s, s2c;
} pair_t;

typedef struct {
  const char *ca;
  const int *suites;
  int mfl;        /* MBEDTLS_SSL_MAX_FRAG_LEN_* or 0 */
  int reneg;      /* client allows renegotiation */
  size_t chunk;   /* server read size, 0 = RBUF */
  mbedtls_ssl_session *session;
} opts_t;

static int cli_send(void *p, const unsigned char *b, size_t n) {
  cli_t *c = p;
  test_bytes_put(c->tx, b, n);
  return (int)n;
}

static int cli_recv(void *p, unsigned char *b, size_t n) {
  cli_t *c = p;
  size_t a = c->rx->n - c->rx->rd;
  if (!a) return MBEDTLS_ERR_SSL_WANT_READ;
  if (n > a) n = a;
  memcpy(b, c->rx->p + c->rx->rd, n);
  c->rx->rd += n;
  return (int)n;
}

static void cli_init(cli_t *c, const opts_t *o, test_bytes_t *tx, test_bytes_t *rx) {
  mbedtls_ssl_init(&c->ssl);
  mbedtls_ssl_config_init(&c->conf);
  mbedtls_x509_crt_init(&c->ca);
  c->tx = tx;
  c->rx = rx;
  if (mbedtls_x509_crt_parse_file(&c->ca, o->ca ? o->ca : a_ca) != 0) abort();
  if (mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                  MBEDTLS_SSL_PRESET_DEFAULT) != 0)
    abort();
  mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
  mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
  mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &g_drbg);
  mbedtls_ssl_conf_min_version(&c->conf, 3, 3);
  if (o->suites) mbedtls_ssl_conf_ciphersuites(&c->conf, o->suites);
  if (o->mfl) mbedtls_ssl_conf_max_frag_len(&c->conf, (unsigned char)o->mfl);
  if (o->reneg) mbedtls_ssl_conf_renegotiation(&c->conf, MBEDTLS_SSL_RENEGOTIATION_ENABLED);
  if (mbedtls_ssl_setup(&c->ssl, &c->conf) != 0) abort();
  mbedtls_ssl_set_hostname(&c->ssl, "localhost");
  mbedtls_ssl_set_bio(&c->ssl, c, cli_send, cli_recv, NULL);
  if (o->session && mbedtls_ssl_set_session(&c->ssl, o->session) != 0) abort();
}

static void cli_free(cli_t *c) {
  mbedtls_ssl_free(&c->ssl);
  mbedtls_ssl_config_free(&c->conf);
  mbedtls_x509_crt_free(&c->ca);
}

static void srv_init(srv_t *s, ews_tls_ctx_t *ctx, size_t chunk) {
  memset(s, 0, sizeof *s);
  s->t = ews_tls_new(ctx, &s->out, &g_pool);
  s->rbuf = malloc(RBUF);
  if (!s->t || !s->rbuf) abort();
  s->chunk = chunk ? chunk : RBUF;
  s->st = EWS_EAGAIN;
}

static void srv_free(srv_t *s) {
  ews_tls_free(s->t);
  ews_wq_free(&s->out);
  free(s->rbuf);
  test_bytes_free(&s->got);
}

static int terminal(int st) { return st == EWS_ETLS || st == EWS_ECLOSED || st == EWS_ENOMEM; }

/* Reads everything unread in `in` the way conn.c would: each read lands after the
 * reserve, in pieces of at most s->chunk bytes. */
static void srv_feed(srv_t *s, test_bytes_t *in) {
  while (in->rd < in->n && !terminal(s->st)) {
    size_t res = ews_tls_read_reserve(s->t);
    if (res > s->max_reserve) s->max_reserve = res;
    size_t n = in->n - in->rd;
    if (n > s->chunk) n = s->chunk;
    if (n > RBUF - res) n = RBUF - res;
    memcpy(s->rbuf + res, in->p + in->rd, n);
    in->rd += n;
    size_t plain = 99, at = 99;
    s->st = ews_tls_read_at(s->t, s->rbuf, n, &at, &plain);
    if (s->st == EWS_EAGAIN) CHECK_EQ(plain, 0);
    if (!plain) CHECK_EQ(at, 0);
    CHECK(at + plain <= res + n);
    test_bytes_put(&s->got, s->rbuf + at, plain);
  }
}

/* Moves the server's ciphertext queue to the wire, as a flush would. */
static void srv_drain(srv_t *s, test_bytes_t *wire) {
  struct iovec iov[64];
  size_t total;
  while (s->out.bytes) {
    int n = ews_wq_iov(&s->out, iov, 64, &total);
    for (int i = 0; i < n; i++) test_bytes_put(wire, iov[i].iov_base, iov[i].iov_len);
    ews_wq_consume(&s->out, total);
  }
}

static void pump(pair_t *p) {
  srv_feed(&p->s, &p->c2s);
  srv_drain(&p->s, &p->s2c);
}

static int want(int r) { return r == MBEDTLS_ERR_SSL_WANT_READ || r == MBEDTLS_ERR_SSL_WANT_WRITE; }

/* Runs the handshake to the end. 0, the client's mbedTLS error, or EWS_ETLS. */
static int pair_handshake(pair_t *p) {
  int cr = MBEDTLS_ERR_SSL_WANT_READ;
  for (int i = 0; i < 64; i++) {
    if (cr != 0) cr = mbedtls_ssl_handshake(&p->c.ssl);
    pump(p);
    if (cr == 0 && ews_tls_handshake_done(p->s.t)) return 0;
    if (cr != 0 && !want(cr)) return cr;
    if (p->s.st == EWS_ETLS) return EWS_ETLS;
  }
  return -1;
}

static void pair_init(pair_t *p, ews_tls_ctx_t *ctx, const opts_t *o) {
  memset(p, 0, sizeof *p);
  cli_init(&p->c, o, &p->c2s, &p->s2c);
  srv_init(&p->s, ctx, o->chunk);
}

static int pair_open(pair_t *p, ews_tls_ctx_t *ctx, const opts_t *o) {
  pair_init(p, ctx, o);
  return pair_handshake(p);
}

static void pair_free(pair_t *p) {
  cli_free(&p->c);
  srv_free(&p->s);
  test_bytes_free(&p->c2s);
  test_bytes_free(&p->s2c);
}

static void cli_write(pair_t *p, const void *d, size_t n) {
  const uint8_t *b = d;
  while (n) {
    int r = mbedtls_ssl_write(&p->c.ssl, b, n);
    if (r <= 0) {
      fprintf(stderr, "client write: -0x%04x\n", (unsigned)-r);
      abort();
    }
    b += r;
    n -= (size_t)r;
  }
}

/* Reads all the client can; returns the last mbedTLS result (WANT_READ when drained). */
static int cli_read(pair_t *p, test_bytes_t *dst) {
  uint8_t tmp[8192];
  for (;;) {
    int r = mbedtls_ssl_read(&p->c.ssl, tmp, sizeof tmp);
    if (r > 0) {
      test_bytes_put(dst, tmp, (size_t)r);
      continue;
    }
    return r;
  }
}

/* Counts records on the wire from offset `from` (whole records only); the largest
 * record length of `type` goes to *maxlen. */
static int count_records(const test_bytes_t *w, size_t from, int type, size_t *maxlen) {
  int k = 0;
  size_t mx = 0;
  while (from + 5 <= w->n) {
    size_t len = ((size_t)w->p[from + 3] << 8) | w->p[from + 4];
    if (w->p[from] == type) {
      k++;
      if (len > mx) mx = len;
    }
    from += 5 + len;
  }
  if (maxlen) *maxlen = mx;
  return k;
}

static void fill(uint8_t *p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    p[i] = (uint8_t)(seed >> 16);
  }
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

static const int S_AES128[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 0};
static const int S_AES256[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, 0};
static const int S_CHACHA[] = {MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, 0};
static const struct {
  const int *suites;
  const char *name;
} SUITES[] = {
    {S_AES128, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
    {S_AES256, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
    {S_CHACHA, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
};
#define NSUITES (int)(sizeof SUITES / sizeof SUITES[0])

/* ---- tests ----------------------------------------------------------------- */

TEST(handshake_each_suite) {
  for (int i = 0; i < NSUITES; i++) {
    pair_t p;
    opts_t o = {.suites = SUITES[i].suites};
    CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
    CHECK_EQ(mbedtls_ssl_get_verify_result(&p.c.ssl), 0);
    CHECK(ews_tls_handshake_done(p.s.t));
    CHECK(ews_tls_cipher(p.s.t) && strcmp(ews_tls_cipher(p.s.t), SUITES[i].name) == 0);
    CHECK_EQ(ews_tls_resumed(p.s.t), 0);
    CHECK_EQ(ews_tls_read_reserve(p.s.t), 0);

    cli_write(&p, "hello server", 12);
    pump(&p);
    CHECK_EQ(p.s.st, 0);
    CHECK(p.s.got.n == 12 && memcmp(p.s.got.p, "hello server", 12) == 0);

    struct iovec v[2] = {{"hello ", 6}, {"client", 6}};
    CHECK_EQ(ews_tls_write(p.s.t, v, 2), 0);
    pump(&p);
    test_bytes_t got = {0};
    CHECK_EQ(cli_read(&p, &got), MBEDTLS_ERR_SSL_WANT_READ);
    CHECK(got.n == 12 && memcmp(got.p, "hello client", 12) == 0);
    test_bytes_free(&got);
    pair_free(&p);
  }
  /* A client offering everything gets the server's first choice. */
  pair_t p;
  opts_t o = {0};
  CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
  CHECK(ews_tls_cipher(p.s.t) &&
        strcmp(ews_tls_cipher(p.s.t), "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256") == 0);
  pair_free(&p);
}

TEST(handshake_byte_at_a_time) {
  for (int i = 0; i < NSUITES; i++) {
    pair_t p;
    opts_t o = {.suites = SUITES[i].suites, .chunk = 1};
    CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
    /* 20 KB a byte at a time: every record straddles reads. */
    size_t n = 20000;
    uint8_t *d = malloc(n);
    fill(d, n, 7 + (uint32_t)i);
    cli_write(&p, d, n);
    pump(&p);
    CHECK_EQ(p.s.st, 0);
    CHECK(p.s.got.n == n && memcmp(p.s.got.p, d, n) == 0);
    CHECK(p.s.max_reserve > 16000 && p.s.max_reserve <= EWS_TLS_MAX_RESERVE);
    free(d);
    pair_free(&p);
  }
}

TEST(transfer_1mib_both_ways) {
  const size_t N = 1u << 20;
  uint8_t *d = malloc(N);
  fill(d, N, 42);
  static const size_t chunks[] = {RBUF, 1000, 17};
  for (int s = 0; s < NSUITES; s++) {
    for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
      size_t n = chunks[k] == 17 ? 100000 : N; /* 17-byte reads: a shorter run */
      pair_t p;
      opts_t o = {.suites = SUITES[s].suites, .chunk = chunks[k]};
      CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
      cli_write(&p, d, n);
      pump(&p);
      CHECK_EQ(p.s.st, 0);
      CHECK(p.s.got.n == n && memcmp(p.s.got.p, d, n) == 0);
      CHECK(p.s.max_reserve <= EWS_TLS_MAX_RESERVE);
      pair_free(&p);
    }
    /* Server to client: one write of 1 MiB from three uneven iovecs becomes full-size
     * records, each filling one pool block exactly. */
    pair_t p;
    opts_t o = {.suites = SUITES[s].suites};
    CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
    size_t from = p.s2c.n;
    struct iovec v[3] = {{d, 1}, {d + 1, 300000}, {d + 300001, N - 300001}};
    CHECK_EQ(ews_tls_write(p.s.t, v, 3), 0);
    pump(&p);
    size_t mx;
    int recs = count_records(&p.s2c, from, 23, &mx);
    CHECK_EQ(recs, (N + EWS_TLS_MAX_PLAIN - 1) / EWS_TLS_MAX_PLAIN); /* 65 */
    CHECK(mx <= EWS_BUF_BLOCK - 5);
    test_bytes_t got = {0};
    CHECK_EQ(cli_read(&p, &got), MBEDTLS_ERR_SSL_WANT_READ);
    CHECK(got.n == N && memcmp(got.p, d, N) == 0);
    test_bytes_free(&got);
    pair_free(&p);
  }
  free(d);
}

/* Frame header + payload writes (the payload sealed where it is, only the header and
 * the bytes up to a block boundary gathered): header lengths 0..14, payloads around the
 * record size and the split threshold, at odd offsets, alone and several per write
 * (records then start inside a payload); the client gets the bytes in order. */
TEST(header_payload_writes_at_odd_offsets) {
  const size_t N = 70000;
  uint8_t *d = malloc(N + 64);
  fill(d, N + 64, 7);
  static const size_t hdrs[] = {0, 2, 4, 10, 14, 16, 17};
  static const size_t pays[] = {1, 255, 256, 257, 271, 272, 4000, 16340, 16341, 16355, 16369,
                                16384, 40000};
  for (int s = 0; s < NSUITES; s++) {
    pair_t p;
    opts_t o = {.suites = SUITES[s].suites};
    CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
    test_bytes_t want = {0}, got = {0};
    for (size_t h = 0; h < sizeof hdrs / sizeof hdrs[0]; h++)
      for (size_t q = 0; q < sizeof pays / sizeof pays[0]; q++) {
        size_t off = 1 + (h * 7 + q * 3) % 13;
        struct iovec v[4] = {{d + 60000 + off, hdrs[h]}, {d + off, pays[q]},
                             {d + 60100 + off, hdrs[h]}, {d + 3 + off, pays[q] / 3}};
        int cnt = (q % 2) ? 4 : 2; /* odd ones: two messages in one write */
        for (int i = 0; i < cnt; i++) test_bytes_put(&want, v[i].iov_base, v[i].iov_len);
        CHECK_EQ(ews_tls_write(p.s.t, v, cnt), 0);
        pump(&p);
        CHECK_EQ(cli_read(&p, &got), MBEDTLS_ERR_SSL_WANT_READ);
      }
    CHECK_EQ(got.n, want.n);
    CHECK(got.n == want.n && memcmp(got.p, want.p, want.n) == 0);
    test_bytes_free(&want);
    test_bytes_free(&got);
    pair_free(&p);
  }
  free(d);
}

/* Three records (16,384 + 100 + 5,000 bytes of data) arrive in two reads split at
 * every byte boundary, with ews_tls_read_at (plaintext left where it was decrypted)
 * and ews_tls_read (moved to the front) in turns: the data comes out whole and in
 * order whichever record the split cuts, header or body. */
TEST(records_split_at_every_byte) {
  const size_t A = 16384, B = 100, C = 5000;
  uint8_t *d = malloc(A + B + C);
  fill(d, A + B + C, 99);
  pair_t p;
  opts_t o = {0};
  CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
  size_t L = 0;
  for (size_t k = 1;; k++) {
    size_t from = p.c2s.n;
    cli_write(&p, d, A);
    cli_write(&p, d + A, B);
    cli_write(&p, d + A + B, C);
    if (!L) {
      L = p.c2s.n - from;
      CHECK_EQ(count_records(&p.c2s, from, 23, NULL), 3);
    }
    CHECK_EQ(p.c2s.n - from, L);
    if (k >= L) break;
    test_bytes_t got = {0};
    size_t piece[2] = {k, L - k}, pos = from;
    for (int i = 0; i < 2; i++) {
      size_t res = ews_tls_read_reserve(p.s.t);
      CHECK(res + piece[i] <= RBUF);
      memcpy(p.s.rbuf + res, p.c2s.p + pos, piece[i]);
      pos += piece[i];
      size_t plain = 0, at = 0;
      if (k % 2) {
        CHECK_EQ(ews_tls_read_at(p.s.t, p.s.rbuf, piece[i], &at, &plain), 0);
        CHECK(at + plain <= res + piece[i]);
      } else {
        CHECK_EQ(ews_tls_read(p.s.t, p.s.rbuf, piece[i], &plain), 0);
      }
      test_bytes_put(&got, p.s.rbuf + at, plain);
    }
    p.c2s.rd = p.c2s.n;
    CHECK_EQ(ews_tls_read_reserve(p.s.t), 0);
    CHECK(got.n == A + B + C && memcmp(got.p, d, A + B + C) == 0);
    test_bytes_free(&got);
  }
  pair_free(&p);
  free(d);
}

/* A quiet connection drops its record cipher contexts (ews_tls_quiet: the first call
 * after traffic only notes that there was some, the next one frees them) and the next
 * record in either direction builds them again from the traffic keys. */
TEST(quiet_drops_and_rebuilds_cipher_contexts) {
  for (int i = 0; i < NSUITES; i++) {
    pair_t p;
    opts_t o = {.suites = SUITES[i].suites};
    CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
    CHECK_EQ(ews_tls_quiet(p.s.t), 1); /* the handshake's end used them */
    CHECK_EQ(ews_tls_quiet(p.s.t), 2); /* freed now */
    CHECK_EQ(ews_tls_quiet(p.s.t), 0); /* none held */
    ews_tls_take_rebuilt(p.s.t);
    for (int round = 0; round < 3; round++) {
      /* client -> server: the peer's direction is rebuilt */
      size_t before = p.s.got.n;
      cli_write(&p, "ping", 4);
      pump(&p);
      CHECK_EQ(p.s.st, 0);
      CHECK(p.s.got.n == before + 4 && memcmp(p.s.got.p + before, "ping", 4) == 0);
      CHECK_EQ(ews_tls_take_rebuilt(p.s.t), 1);
      CHECK_EQ(ews_tls_take_rebuilt(p.s.t), 0);
      /* server -> client: ours too, and the sequence numbers carry on */
      struct iovec v = {"pong", 4};
      CHECK_EQ(ews_tls_write(p.s.t, &v, 1), 0);
      pump(&p);
      test_bytes_t got = {0};
      CHECK_EQ(cli_read(&p, &got), MBEDTLS_ERR_SSL_WANT_READ);
      CHECK(got.n == 4 && memcmp(got.p, "pong", 4) == 0);
      test_bytes_free(&got);
      CHECK_EQ(ews_tls_take_rebuilt(p.s.t), 1);
      CHECK_EQ(ews_tls_quiet(p.s.t), 1);
      CHECK_EQ(ews_tls_quiet(p.s.t), 2);
    }
    /* a close_notify after a quiet spell is still protected */
    CHECK_EQ(ews_tls_close_notify(p.s.t), 0);
    pump(&p);
    test_bytes_t got = {0};
    CHECK_EQ(cli_read(&p, &got), MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
    test_bytes_free(&got);
    pair_free(&p);
  }
}

TEST(small_writes_coalesce) {
  pair_t p;
  opts_t o = {0};
  CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
  ews_writeq_t plain = {0};
  test_bytes_t expect = {0}, got = {0};

  /* 1000 frames of 10 bytes queued in one loop iteration -> one record. */
  size_t from = p.s2c.n;
  for (int i = 0; i < 1000; i++) {
    uint8_t hdr[2] = {0x82, 8}, pay[8];
    fill(pay, 8, (uint32_t)i);
    CHECK_EQ(ews_wq_append(&plain, &g_pool, hdr, 2, pay, 8), 0);
    test_bytes_put(&expect, hdr, 2);
    test_bytes_put(&expect, pay, 8);
  }
  CHECK_EQ(ews_tls_write_wq(p.s.t, &plain), 0);
  CHECK_EQ(plain.bytes, 0);
  pump(&p);
  CHECK_EQ(count_records(&p.s2c, from, 23, NULL), 1);

  /* 200 frames of 1000 bytes -> ceil(200000 / max) records. */
  from = p.s2c.n;
  for (int i = 0; i < 200; i++) {
    uint8_t pay[1000];
    fill(pay, sizeof pay, 1000u + (uint32_t)i);
    CHECK_EQ(ews_wq_append(&plain, &g_pool, pay, sizeof pay, NULL, 0), 0);
    test_bytes_put(&expect, pay, sizeof pay);
  }
  CHECK_EQ(ews_tls_write_wq(p.s.t, &plain), 0);
  pump(&p);
  CHECK_EQ(count_records(&p.s2c, from, 23, NULL), (200000 + EWS_TLS_MAX_PLAIN - 1) / EWS_TLS_MAX_PLAIN);

  /* A broadcast frame shared by reference 300 times (more segments than one iovec
   * batch) -> 30000 bytes in 2 records. */
  from = p.s2c.n;
  ews_buf_t *shared = ews_buf_new(NULL, 100);
  fill(shared->data, 100, 5);
  shared->len = 100;
  for (int i = 0; i < 300; i++) {
    CHECK_EQ(ews_wq_append_shared(&plain, shared, 0, 100), 0);
    test_bytes_put(&expect, shared->data, 100);
  }
  ews_buf_unref(shared);
  CHECK_EQ(plain.n, 300);
  CHECK_EQ(ews_tls_write_wq(p.s.t, &plain), 0);
  CHECK_EQ(plain.n, 0);
  pump(&p);
  CHECK_EQ(count_records(&p.s2c, from, 23, NULL), 2);

  /* Separate small writes are separate records but share the worker's current
   * block: at most two segments (one if the block had room). */
  from = p.s2c.n;
  for (int i = 0; i < 50; i++) {
    struct iovec v = {(void *)"twenty bytes of data", 20};
    CHECK_EQ(ews_tls_write(p.s.t, &v, 1), 0);
    test_bytes_put(&expect, "twenty bytes of data", 20);
  }
  CHECK(p.s.out.n <= 2);
  pump(&p);
  CHECK_EQ(count_records(&p.s2c, from, 23, NULL), 50);

  CHECK_EQ(cli_read(&p, &got), MBEDTLS_ERR_SSL_WANT_READ);
  CHECK(got.n == expect.n && memcmp(got.p, expect.p, got.n) == 0);
  ews_wq_free(&plain);
  test_bytes_free(&expect);
  test_bytes_free(&got);
  pair_free(&p);
}

TEST(garbage_fails_fast) {
  char why[256];
  /* Plain HTTP on the TLS port: rejected on the first byte, no mbedTLS state. */
  {
    ews_writeq_t out = {0};
    ews_tls_t *t = ews_tls_new(ctx_a, &out, &g_pool);
    size_t h0 = heap_now();
    uint8_t buf[256];
    static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    memcpy(buf, req, sizeof req - 1);
    size_t plain = 1;
    CHECK_EQ(ews_tls_read(t, buf, sizeof req - 1, &plain), EWS_ETLS);
    CHECK_EQ(plain, 0);
    HEAP_CHECK(heap_now() <= h0);
    CHECK_EQ(out.bytes, 0);
    CHECK(contains(ews_tls_reason(t, why, sizeof why), "plain HTTP"));
    CHECK_EQ(ews_tls_read(t, buf, 10, &plain), EWS_ETLS);
    struct iovec v = {buf, 1};
    CHECK_EQ(ews_tls_write(t, &v, 1), EWS_ETLS);
    CHECK_EQ(ews_tls_close_notify(t), EWS_ETLS);
    CHECK(!ews_tls_handshake_done(t));
    ews_tls_free(t);
    ews_wq_free(&out);
  }
  /* Binary junk. */
  {
    ews_writeq_t out = {0};
    ews_tls_t *t = ews_tls_new(ctx_a, &out, &g_pool);
    uint8_t buf[64];
    fill(buf, sizeof buf, 3);
    buf[0] = 0x05;
    size_t plain;
    CHECK_EQ(ews_tls_read(t, buf, sizeof buf, &plain), EWS_ETLS);
    CHECK(contains(ews_tls_reason(t, why, sizeof why), "not TLS"));
    ews_tls_free(t);
    ews_wq_free(&out);
  }
  /* A handshake record header with junk inside: mbedTLS rejects it, and everything it
   * allocated is freed at once (the connection object is all that is left). */
  static const size_t lens[] = {5, 64, 4000};
  for (size_t k = 0; k < 3; k++) {
    ews_writeq_t out = {0};
    ews_tls_t *t = ews_tls_new(ctx_a, &out, &g_pool);
    size_t h0 = heap_now();
    uint8_t buf[4096];
    size_t n = lens[k] + 5;
    fill(buf, n, 11 + (uint32_t)k);
    buf[0] = 22, buf[1] = 3, buf[2] = 1;
    buf[3] = (uint8_t)(lens[k] >> 8), buf[4] = (uint8_t)lens[k];
    buf[5] = 1; /* "ClientHello" with a junk body */
    size_t plain;
    CHECK_EQ(ews_tls_read(t, buf, n, &plain), EWS_ETLS);
    /* An alert mbedTLS queued lives in `out` and the pool's block: drop those too. */
    ews_wq_free(&out);
    ews_bufpool_drain(&g_pool);
    HEAP_CHECK(heap_now() <= h0);
    CHECK(contains(ews_tls_reason(t, why, sizeof why), "handshake"));
    ews_tls_free(t);
  }
  /* Caught by the first bytes, before any mbedTLS state: an oversized first record,
   * a handshake record that is not a ClientHello, a wrong major version. */
  static const uint8_t early[][6] = {
      {22, 3, 1, 0xff, 0xff, 1}, {22, 3, 1, 0, 0, 1}, {22, 3, 1, 0, 50, 2}, {22, 2, 0, 0, 50, 1}};
  static const char *const why_early[] = {"record length", "record length", "not a ClientHello",
                                          "record version"};
  for (size_t k = 0; k < 4; k++) {
    ews_writeq_t out = {0};
    ews_tls_t *t = ews_tls_new(ctx_a, &out, &g_pool);
    size_t h0 = heap_now();
    uint8_t buf[6];
    memcpy(buf, early[k], 6);
    size_t plain;
    CHECK_EQ(ews_tls_read(t, buf, 6, &plain), EWS_ETLS);
    HEAP_CHECK(heap_now() <= h0);
    CHECK_EQ(out.bytes, 0);
    CHECK(contains(ews_tls_reason(t, why, sizeof why), why_early[k]));
    ews_tls_free(t);
    ews_wq_free(&out);
  }
}

TEST(truncated_handshake_waits) {
  pair_t p;
  opts_t o = {0};
  pair_init(&p, ctx_a, &o);
  CHECK_EQ(mbedtls_ssl_handshake(&p.c.ssl), MBEDTLS_ERR_SSL_WANT_READ);
  size_t hello = p.c2s.n;
  CHECK(hello > 50);
  /* Half a ClientHello: need more, nothing to send, and no mbedTLS state yet: the
   * connection holds just the bytes it got. */
  size_t h0 = heap_now();
  p.c2s.n = hello / 2;
  pump(&p);
  CHECK_EQ(p.s.st, EWS_EAGAIN);
  CHECK_EQ(p.s2c.n, 0);
  CHECK_EQ(ews_tls_read_reserve(p.s.t), hello / 2);
  HEAP_CHECK(heap_now() - h0 == hello / 2);
  /* ... also when it trickles in a byte at a time. */
  p.s.chunk = 1;
  p.c2s.n = hello - 1;
  pump(&p);
  CHECK_EQ(p.s.st, EWS_EAGAIN);
  CHECK_EQ(ews_tls_read_reserve(p.s.t), hello - 1);
  HEAP_CHECK(heap_now() - h0 == hello - 1);
  p.s.chunk = RBUF;
  /* The rest: the server's flight goes out, then it waits for the client. */
  p.c2s.n = hello;
  pump(&p);
  CHECK_EQ(p.s.st, EWS_EAGAIN);
  CHECK(p.s2c.n > 300);
  CHECK(!ews_tls_handshake_done(p.s.t));
  /* The client answers, but only part of it arrives. */
  CHECK_EQ(mbedtls_ssl_handshake(&p.c.ssl), MBEDTLS_ERR_SSL_WANT_READ);
  size_t full = p.c2s.n;
  p.c2s.n = p.c2s.rd + (full - p.c2s.rd) / 2;
  pump(&p);
  CHECK_EQ(p.s.st, EWS_EAGAIN);
  size_t plain = 1;
  CHECK_EQ(ews_tls_read(p.s.t, p.s.rbuf, 0, &plain), EWS_EAGAIN);
  CHECK_EQ(plain, 0);
  struct iovec v = {(void *)"x", 1};
  CHECK_EQ(ews_tls_write(p.s.t, &v, 1), EWS_EAGAIN);
  CHECK_EQ(ews_tls_close_notify(p.s.t), EWS_EAGAIN);
  /* The caller's handshake timer gives up: freeing mid-handshake releases it all. */
  h0 = heap_now();
  ews_tls_free(p.s.t);
  p.s.t = NULL;
  fprintf(stderr, "  memory: a connection in mid-handshake holds %zu bytes (%s)\n",
          h0 - heap_now(), HEAP_HOW);
  pair_free(&p);
}

TEST(wrong_ca_fails_verification) {
  pair_t p;
  opts_t o = {.ca = b_ca};
  int r = pair_open(&p, ctx_a, &o);
  CHECK_EQ(r, MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
  CHECK(mbedtls_ssl_get_verify_result(&p.c.ssl) & MBEDTLS_X509_BADCERT_NOT_TRUSTED);
  /* The client's fatal alert reaches the server, which fails with a reason. */
  pump(&p);
  CHECK_EQ(p.s.st, EWS_ETLS);
  char why[256];
  ews_tls_reason(p.s.t, why, sizeof why);
  CHECK(contains(why, "alert"));
  fprintf(stderr, "  wrong CA: server says \"%s\"\n", why);
  pair_free(&p);
}

static void write_file(const char *path, const char *s) {
  FILE *f = fopen(path, "w");
  if (!f) abort();
  fputs(s, f);
  fclose(f);
}

TEST(reload_keeps_old_ctx_on_bad_files) {
  char *err = NULL;
  char junk[128];
  snprintf(junk, sizeof junk, "%s/junk.pem", tmpdir);
  write_file(junk, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n");

  CHECK(ews_tls_ctx_new("/nonexistent/cert.pem", a_key, &err) == NULL);
  CHECK(err && contains(err, "/nonexistent/cert.pem"));
  fprintf(stderr, "  missing file: %s\n", err ? err : "(null)");
  free(err);
  CHECK(ews_tls_ctx_new(junk, a_key, &err) == NULL);
  CHECK(err && contains(err, junk));
  fprintf(stderr, "  junk cert: %s\n", err ? err : "(null)");
  free(err);
  CHECK(ews_tls_ctx_new(a_crt, junk, &err) == NULL);
  CHECK(err && contains(err, junk));
  free(err);
  CHECK(ews_tls_ctx_new(a_crt, b_key, &err) == NULL);
  CHECK(err && contains(err, "does not match"));
  fprintf(stderr, "  mismatched key: %s\n", err ? err : "(null)");
  free(err);
  ews_tls_ctx_t *ok = ews_tls_ctx_new(a_crt, a_key, NULL); /* err may be NULL */
  CHECK(ok != NULL);
  ews_tls_ctx_unref(ok);

  ews_tls_ctx_t *slot = ews_tls_ctx_new(a_chain, a_key, &err);
  CHECK(slot != NULL);
  if (!slot) return;
  /* A connection starts on the old ctx and is mid-handshake during the reloads. */
  pair_t old;
  opts_t oa = {0};
  pair_init(&old, slot, &oa);
  CHECK_EQ(mbedtls_ssl_handshake(&old.c.ssl), MBEDTLS_ERR_SSL_WANT_READ);
  pump(&old);
  CHECK_EQ(old.s.st, EWS_EAGAIN);

  ews_tls_ctx_t *before = slot;
  CHECK_EQ(ews_tls_ctx_reload(&slot, junk, a_key, &err), EWS_ETLS);
  CHECK(slot == before);
  CHECK(err && contains(err, junk));
  free(err);
  CHECK_EQ(ews_tls_ctx_reload(&slot, b_crt, b_key, &err), 0);
  CHECK(err == NULL);
  CHECK(slot != before); /* the old ctx lives on only through `old` */

  /* The old connection finishes on the old certificate (CA A). */
  CHECK_EQ(pair_handshake(&old), 0);
  cli_write(&old, "still here", 10);
  pump(&old);
  CHECK(old.s.got.n == 10);
  pair_free(&old);
  /* New connections get the new certificate: CA A fails, CA B verifies. */
  pair_t p;
  CHECK_EQ(pair_open(&p, slot, &oa), MBEDTLS_ERR_X509_CERT_VERIFY_FAILED);
  pair_free(&p);
  opts_t ob = {.ca = b_ca};
  CHECK_EQ(pair_open(&p, slot, &ob), 0);
  pair_free(&p);
  ews_tls_ctx_unref(slot);
}

TEST(close_notify_both_ways) {
  /* Server closes: data, then close_notify, then nothing more can be written. */
  pair_t p;
  opts_t o = {0};
  CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
  struct iovec v = {(void *)"bye", 3};
  CHECK_EQ(ews_tls_write(p.s.t, &v, 1), 0);
  CHECK_EQ(ews_tls_close_notify(p.s.t), 0);
  size_t queued = p.s.out.bytes;
  CHECK_EQ(ews_tls_close_notify(p.s.t), 0); /* once */
  CHECK_EQ(p.s.out.bytes, queued);
  CHECK_EQ(ews_tls_write(p.s.t, &v, 1), EWS_ECLOSED);
  pump(&p);
  test_bytes_t got = {0};
  CHECK_EQ(cli_read(&p, &got), MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
  CHECK(got.n == 3 && memcmp(got.p, "bye", 3) == 0);
  test_bytes_free(&got);
  pair_free(&p);

  /* Client closes: its last data arrives with EWS_ECLOSED, and the server answers
   * with its own close_notify. */
  CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
  cli_write(&p, "last words", 10);
  CHECK_EQ(mbedtls_ssl_close_notify(&p.c.ssl), 0);
  size_t from = p.s2c.n;
  pump(&p);
  CHECK_EQ(p.s.st, EWS_ECLOSED);
  CHECK(p.s.got.n == 10 && memcmp(p.s.got.p, "last words", 10) == 0);
  CHECK_EQ(count_records(&p.s2c, from, 21, NULL), 1);
  CHECK_EQ(cli_read(&p, &got), MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
  size_t plain;
  CHECK_EQ(ews_tls_read(p.s.t, p.s.rbuf, 0, &plain), EWS_ECLOSED);
  CHECK_EQ(ews_tls_write(p.s.t, &v, 1), EWS_ECLOSED);
  test_bytes_free(&got);
  pair_free(&p);
}

TEST(tampered_record_is_fatal) {
  for (int i = 0; i < NSUITES; i++) {
    pair_t p;
    opts_t o = {.suites = SUITES[i].suites};
    CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
    cli_write(&p, "ok", 2);
    pump(&p);
    CHECK(p.s.got.n == 2);
    size_t at = p.c2s.n;
    cli_write(&p, "secret", 6);
    p.c2s.p[at + 5 + 3] ^= 0x40; /* a ciphertext (or explicit nonce) byte */
    size_t from = p.s2c.n;
    pump(&p);
    CHECK_EQ(p.s.st, EWS_ETLS);
    CHECK_EQ(p.s.got.n, 2);
    char why[256];
    CHECK(contains(ews_tls_reason(p.s.t, why, sizeof why), "bad record MAC"));
    CHECK_EQ(count_records(&p.s2c, from, 21, NULL), 1); /* our fatal alert */
    test_bytes_t got = {0};
    CHECK_EQ(cli_read(&p, &got), MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE);
    test_bytes_free(&got);
    pair_free(&p);
  }
  /* A record header claiming more than TLS allows. */
  pair_t p;
  opts_t o = {0};
  CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
  static const uint8_t big[5] = {23, 3, 3, 0x48, 0x01};
  test_bytes_put(&p.c2s, big, 5);
  pump(&p);
  CHECK_EQ(p.s.st, EWS_ETLS);
  pair_free(&p);
}

TEST(ticket_resumption_with_data_after_finished) {
  for (int i = 0; i < NSUITES; i++) {
    pair_t p;
    opts_t o = {.suites = SUITES[i].suites};
    CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
    mbedtls_ssl_session sess;
    mbedtls_ssl_session_init(&sess);
    CHECK_EQ(mbedtls_ssl_get_session(&p.c.ssl, &sess), 0);
    pair_free(&p);

    o.session = &sess;
    pair_init(&p, ctx_a, &o);
    CHECK_EQ(mbedtls_ssl_handshake(&p.c.ssl), MBEDTLS_ERR_SSL_WANT_READ);
    pump(&p); /* ServerHello, ChangeCipherSpec, Finished: abbreviated */
    CHECK_EQ(p.s.st, EWS_EAGAIN);
    CHECK_EQ(mbedtls_ssl_handshake(&p.c.ssl), 0);
    /* The client's Finished and its first data arrive in one read. */
    cli_write(&p, "resumed hello", 13);
    pump(&p);
    CHECK_EQ(p.s.st, 0);
    CHECK(ews_tls_handshake_done(p.s.t));
    CHECK_EQ(ews_tls_resumed(p.s.t), 1);
    CHECK(p.s.got.n == 13 && memcmp(p.s.got.p, "resumed hello", 13) == 0);
    struct iovec v = {(void *)"welcome back", 12};
    CHECK_EQ(ews_tls_write(p.s.t, &v, 1), 0);
    pump(&p);
    test_bytes_t got = {0};
    CHECK_EQ(cli_read(&p, &got), MBEDTLS_ERR_SSL_WANT_READ);
    CHECK(got.n == 12 && memcmp(got.p, "welcome back", 12) == 0);
    test_bytes_free(&got);
    pair_free(&p);
    mbedtls_ssl_session_free(&sess);
  }
}

TEST(max_fragment_length_respected) {
  pair_t p;
  opts_t o = {.mfl = MBEDTLS_SSL_MAX_FRAG_LEN_512};
  CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
  uint8_t d[4000];
  fill(d, sizeof d, 9);
  size_t from = p.s2c.n;
  struct iovec v = {d, sizeof d};
  CHECK_EQ(ews_tls_write(p.s.t, &v, 1), 0);
  pump(&p);
  size_t mx;
  CHECK_EQ(count_records(&p.s2c, from, 23, &mx), 8);
  CHECK(mx <= 512 + 24);
  test_bytes_t got = {0};
  CHECK_EQ(cli_read(&p, &got), MBEDTLS_ERR_SSL_WANT_READ);
  CHECK(got.n == sizeof d && memcmp(got.p, d, sizeof d) == 0);
  test_bytes_free(&got);
  pair_free(&p);
}

TEST(renegotiation_declined) {
  pair_t p;
  opts_t o = {.reneg = 1};
  CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
  int r = mbedtls_ssl_renegotiate(&p.c.ssl);
  CHECK(want(r));
  size_t from = p.s2c.n;
  pump(&p);
  CHECK_EQ(p.s.st, 0); /* still open */
  CHECK_EQ(count_records(&p.s2c, from, 21, NULL), 1); /* no_renegotiation warning */
  struct iovec v = {(void *)"still", 5};
  CHECK_EQ(ews_tls_write(p.s.t, &v, 1), 0);
  pair_free(&p);
}

/* Workers share one ctx: handshakes and traffic on several threads at once. */
static void *worker_main(void *arg) {
  int *fails = arg;
  for (int i = 0; i < 6; i++) {
    pair_t p;
    opts_t o = {.suites = SUITES[i % NSUITES].suites};
    if (pair_open(&p, ctx_a, &o) != 0) {
      (*fails)++;
      pair_free(&p);
      continue;
    }
    char msg[32];
    int n = snprintf(msg, sizeof msg, "thread message %d", i);
    cli_write(&p, msg, (size_t)n);
    pump(&p);
    if (p.s.got.n != (size_t)n || memcmp(p.s.got.p, msg, (size_t)n) != 0) (*fails)++;
    pair_free(&p);
  }
  ews_bufpool_drain(&g_pool);
  return NULL;
}

TEST(shared_ctx_across_threads) {
  CHECK_EQ(ews_tls_ctx_shareable(), 1);
  pthread_t th[4];
  int fails[4] = {0};
  for (int i = 0; i < 4; i++) CHECK_EQ(pthread_create(&th[i], NULL, worker_main, &fails[i]), 0);
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    CHECK_EQ(fails[i], 0);
  }
}

/* A plain mbedTLS server context after the handshake, for comparison. */
static size_t mbedtls_native_idle(void) {
  mbedtls_ssl_config conf;
  mbedtls_x509_crt crt;
  mbedtls_pk_context key;
  mbedtls_ssl_config_init(&conf);
  mbedtls_x509_crt_init(&crt);
  mbedtls_pk_init(&key);
  if (mbedtls_x509_crt_parse_file(&crt, a_crt) || mbedtls_pk_parse_keyfile(&key, a_key, NULL) ||
      mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                  MBEDTLS_SSL_PRESET_DEFAULT) ||
      mbedtls_ssl_conf_own_cert(&conf, &crt, &key))
    abort();
  mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &g_drbg);
  test_bytes_t c2s = {0}, s2c = {0};
  cli_t c;
  opts_t o = {0};
  cli_init(&c, &o, &c2s, &s2c);
  cli_t s; /* reuse the pipe callbacks: server sends to s2c, reads c2s */
  memset(&s, 0, sizeof s);
  s.tx = &s2c;
  s.rx = &c2s;
  mbedtls_ssl_init(&s.ssl);
  if (mbedtls_ssl_setup(&s.ssl, &conf)) abort();
  mbedtls_ssl_set_bio(&s.ssl, &s, cli_send, cli_recv, NULL);
  int cr = -1, sr = -1;
  for (int i = 0; i < 32 && (cr || sr); i++) {
    if (cr) cr = mbedtls_ssl_handshake(&c.ssl);
    if (sr) sr = mbedtls_ssl_handshake(&s.ssl);
  }
  size_t cost = 0;
  if (!cr && !sr) {
    size_t h0 = heap_now();
    mbedtls_ssl_free(&s.ssl);
    cost = h0 - heap_now() + sizeof(mbedtls_ssl_context);
  } else {
    mbedtls_ssl_free(&s.ssl);
  }
  cli_free(&c);
  test_bytes_free(&c2s);
  test_bytes_free(&s2c);
  mbedtls_ssl_config_free(&conf);
  mbedtls_x509_crt_free(&crt);
  mbedtls_pk_free(&key);
  return cost;
}

TEST(idle_connection_memory) {
  ews_writeq_t out = {0};
  size_t h0 = heap_now();
  ews_tls_t *t = ews_tls_new(ctx_a, &out, &g_pool);
  size_t fresh = heap_now() - h0;
  ews_tls_free(t);
  ews_wq_free(&out);

  for (int i = 0; i < NSUITES; i++) {
    pair_t p;
    opts_t o = {.suites = SUITES[i].suites};
    CHECK_EQ(pair_open(&p, ctx_a, &o), 0);
    cli_write(&p, "x", 1);
    pump(&p);
    struct iovec v = {(void *)"y", 1};
    ews_tls_write(p.s.t, &v, 1);
    pump(&p);
    CHECK_EQ(p.s.out.bytes, 0);
    CHECK_EQ(ews_tls_read_reserve(p.s.t), 0);
    size_t before = heap_now();
    ews_tls_free(p.s.t);
    p.s.t = NULL;
    size_t idle = before - heap_now();
    fprintf(stderr, "  memory: idle %s connection after the handshake: %zu bytes (%s)\n",
            SUITES[i].name + 4, idle, HEAP_HOW);
    HEAP_CHECK(idle <= 2048);
    pair_free(&p);
  }
  fprintf(stderr, "  memory: before the first byte: %zu bytes\n", fresh);
  fprintf(stderr, "  memory: a plain mbedTLS server context after the handshake: %zu bytes\n",
          mbedtls_native_idle());
}

/* ---- main ------------------------------------------------------------------ */

static int make_certs(void) {
  const char *root = getenv("EWS_SOURCE_DIR");
  char rootbuf[512];
  if (!root) {
    /* __FILE__ is absolute under CMake: <root>/core/test/test_net_tls.c */
    snprintf(rootbuf, sizeof rootbuf, "%s", __FILE__);
    char *cut = strstr(rootbuf, "/core/test/test_net_tls.c");
    if (cut) *cut = 0;
    else snprintf(rootbuf, sizeof rootbuf, ".");
    root = rootbuf;
  }
  snprintf(tmpdir, sizeof tmpdir, "/tmp/ews-tls-XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  char cmd[2400];
  snprintf(cmd, sizeof cmd, "'%s/scripts/gen-test-cert' '%s/a' >/dev/null && "
           "'%s/scripts/gen-test-cert' '%s/b' >/dev/null", root, tmpdir, root, tmpdir);
  if (system(cmd) != 0) return -1;
  snprintf(a_ca, sizeof a_ca, "%s/a/ca.crt", tmpdir);
  snprintf(a_crt, sizeof a_crt, "%s/a/server.crt", tmpdir);
  snprintf(a_key, sizeof a_key, "%s/a/server.key", tmpdir);
  snprintf(a_chain, sizeof a_chain, "%s/a/chain.crt", tmpdir);
  snprintf(b_ca, sizeof b_ca, "%s/b/ca.crt", tmpdir);
  snprintf(b_crt, sizeof b_crt, "%s/b/server.crt", tmpdir);
  snprintf(b_key, sizeof b_key, "%s/b/server.key", tmpdir);
  return 0;
}

int main(void) {
  if (make_certs() != 0) {
    fprintf(stderr, "cannot generate test certificates with scripts/gen-test-cert\n");
    return 1;
  }
  mbedtls_entropy_init(&g_ent);
  mbedtls_ctr_drbg_init(&g_drbg);
  if (mbedtls_ctr_drbg_seed(&g_drbg, mbedtls_entropy_func, &g_ent, NULL, 0) != 0) abort();
  char *err = NULL;
  ctx_a = ews_tls_ctx_new(a_crt, a_key, &err);
  if (!ctx_a) {
    fprintf(stderr, "ews_tls_ctx_new: %s\n", err ? err : "?");
    return 1;
  }

  RUN(handshake_each_suite);
  RUN(handshake_byte_at_a_time);
  RUN(transfer_1mib_both_ways);
  RUN(header_payload_writes_at_odd_offsets);
  RUN(records_split_at_every_byte);
  RUN(small_writes_coalesce);
  RUN(garbage_fails_fast);
  RUN(truncated_handshake_waits);
  RUN(wrong_ca_fails_verification);
  RUN(reload_keeps_old_ctx_on_bad_files);
  RUN(close_notify_both_ways);
  RUN(tampered_record_is_fatal);
  RUN(ticket_resumption_with_data_after_finished);
  RUN(max_fragment_length_respected);
  RUN(renegotiation_declined);
  RUN(shared_ctx_across_threads);
  RUN(quiet_drops_and_rebuilds_cipher_contexts);
  RUN(idle_connection_memory);

  ews_tls_ctx_unref(ctx_a);
  ews_bufpool_drain(&g_pool);
  mbedtls_ctr_drbg_free(&g_drbg);
  mbedtls_entropy_free(&g_ent);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return TEST_EXIT();
}
