/* fuzz_tls_handshake.c — libFuzzer target for the TLS server from the first byte a
 * client sends to the first application records (core/net/tls.c: the gate that checks
 * the first record before mbedTLS gets any memory, the handshake driven through
 * memory callbacks, the switch to our own record layer in the same read as the
 * client's Finished, session tickets, and the close).
 *
 * The target compiles tls.c itself (#include below) for two things only: to make the
 * server's random numbers deterministic per input (mbedtls_ssl_conf_rng on the ctx's
 * configuration, so a crash replays) and to see whether a connection holds mbedTLS
 * state (t->hs). Everything else goes through the public API. The server certificate
 * (EC P-256, self-signed) is made at start-up with mbedTLS, in a temporary directory.
 *
 * Byte 0 picks the mode (bit 0); bytes past the end read as 0.
 *
 * Mode 0, hostile bytes: the rest of the input is what the client sends, fed once whole
 * and once in chunks of pseudo-random sizes (seed: byte 1). Oracles: a reference of
 * the gate written here (record type 22, major version 3, length 4..16384, message
 * type ClientHello, in that order and as soon as the byte arrives) gives the same
 * verdict and reason; until the first record is complete every read answers
 * EWS_EAGAIN, carries every byte (ews_tls_read_reserve), sends nothing and holds no
 * mbedTLS state; return codes are the documented ones, a failure is final and has a
 * reason, no plaintext comes out of a handshake, writes and close_notify wait for the
 * handshake, both runs end the same way.
 *
 * Mode 1, a real client: an mbedTLS client (deterministic random numbers too) with
 * the suite, curve, max_fragment_length and ticket resumption chosen by the input
 * (resumption unless byte 2 bit 0 asks for a full handshake, which costs ~20 ms of
 * ECDHE and ECDSA under ASan against ~1 ms) talks to the server through memory
 * pipes; the input also chooses the chunking of
 * what the server reads, up to three bytes of the client's stream to flip, junk after
 * the handshake, data both ways, close_notify from either side and trailing bytes.
 * Oracles: without flips or junk the handshake completes on both sides with the same
 * suite, resumption exactly when a ticket was offered, every byte arrives both ways
 * in order, and a close_notify is answered. With them, the server still never
 * delivers a byte the client did not send (what it delivers is a prefix of what the
 * client wrote), and the client never accepts a byte the server did not write. */
#include "../net/tls.c" /* the module under test, with its internals */

#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>
#include <unistd.h>

#include "fuzz.h"

/* ---- deterministic random numbers ---------------------------------------------- */

static int fixed_entropy(void *p, unsigned char *out, size_t n) {
  memset(out, *(const uint8_t *)p, n);
  return 0;
}

static void drbg_reset(mbedtls_ctr_drbg_context *d, const uint8_t *tag) {
  mbedtls_ctr_drbg_free(d);
  mbedtls_ctr_drbg_init(d);
  REQUIRE(mbedtls_ctr_drbg_seed(d, fixed_entropy, (void *)tag, tag, 1) == 0);
}

static mbedtls_ctr_drbg_context srv_rng, cli_rng;
static const uint8_t srv_tag = 0x5e, cli_tag = 0xc1;

/* ---- the server's ctx and a ticket from one full handshake ---------------------- */

static ews_tls_ctx_t *g_ctx;
static mbedtls_ssl_session g_ticket; /* a resumable session (with ticket) */

static void write_file(const char *path, const unsigned char *p, size_t n) {
  FILE *f = fopen(path, "wb");
  REQUIRE(f && fwrite(p, 1, n, f) == n && fclose(f) == 0);
}

/* EC P-256 key and a self-signed certificate for "localhost", as PEM files. */
static void make_cert(const char *crt_path, const char *key_path) {
  mbedtls_pk_context key;
  mbedtls_x509write_cert w;
  mbedtls_mpi serial;
  mbedtls_pk_init(&key);
  mbedtls_x509write_crt_init(&w);
  mbedtls_mpi_init(&serial);
  drbg_reset(&srv_rng, &srv_tag);
  REQUIRE(mbedtls_pk_setup(&key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) == 0);
  REQUIRE(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key), mbedtls_ctr_drbg_random,
                              &srv_rng) == 0);
  mbedtls_x509write_crt_set_subject_key(&w, &key);
  mbedtls_x509write_crt_set_issuer_key(&w, &key);
  REQUIRE(mbedtls_x509write_crt_set_subject_name(&w, "CN=localhost") == 0);
  REQUIRE(mbedtls_x509write_crt_set_issuer_name(&w, "CN=localhost") == 0);
  mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
  REQUIRE(mbedtls_mpi_lset(&serial, 1) == 0);
  REQUIRE(mbedtls_x509write_crt_set_serial(&w, &serial) == 0);
  REQUIRE(mbedtls_x509write_crt_set_validity(&w, "20240101000000", "21240101000000") == 0);
  static unsigned char pem[4096];
  REQUIRE(mbedtls_x509write_crt_pem(&w, pem, sizeof pem, mbedtls_ctr_drbg_random, &srv_rng) == 0);
  write_file(crt_path, pem, strlen((char *)pem));
  REQUIRE(mbedtls_pk_write_key_pem(&key, pem, sizeof pem) == 0);
  write_file(key_path, pem, strlen((char *)pem));
  mbedtls_mpi_free(&serial);
  mbedtls_x509write_crt_free(&w);
  mbedtls_pk_free(&key);
}

/* ---- pipes and the client -------------------------------------------------------- */

typedef struct {
  fz_buf_t b;
  size_t rd;
} pipe_t;

typedef struct {
  mbedtls_ssl_context ssl;
  mbedtls_ssl_config conf;
  int suites[2];
  mbedtls_ecp_group_id curves[3];
} cli_t;

static int cli_send(void *p, const unsigned char *b, size_t n) {
  fz_put(&((pipe_t *)p)[0].b, b, n); /* [0] = client to server */
  return (int)n;
}

static int cli_recv(void *p, unsigned char *b, size_t n) {
  pipe_t *s2c = &((pipe_t *)p)[1];
  size_t a = s2c->b.n - s2c->rd;
  if (!a) return MBEDTLS_ERR_SSL_WANT_READ;
  if (n > a) n = a;
  memcpy(b, s2c->b.p + s2c->rd, n);
  s2c->rd += n;
  return (int)n;
}

static const int all_suites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, 0};
static const uint8_t mfls[8] = {MBEDTLS_SSL_MAX_FRAG_LEN_NONE, MBEDTLS_SSL_MAX_FRAG_LEN_512,
                                MBEDTLS_SSL_MAX_FRAG_LEN_1024, MBEDTLS_SSL_MAX_FRAG_LEN_2048,
                                MBEDTLS_SSL_MAX_FRAG_LEN_4096, MBEDTLS_SSL_MAX_FRAG_LEN_NONE,
                                MBEDTLS_SSL_MAX_FRAG_LEN_NONE, MBEDTLS_SSL_MAX_FRAG_LEN_NONE};

/* cfg: bits 0-1 suite (3: all), 2-3 curves, 4-6 max_fragment_length */
static void cli_init(cli_t *c, pipe_t pipes[2], uint8_t cfg, int resume) {
  mbedtls_ssl_init(&c->ssl);
  mbedtls_ssl_config_init(&c->conf);
  REQUIRE(mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT) == 0);
  drbg_reset(&cli_rng, &cli_tag);
  mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &cli_rng);
  mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
  mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
  int s = cfg & 3;
  if (s < 3 && !resume) { /* a resuming client must offer the ticket's suite (RFC 5246) */
    c->suites[0] = all_suites[s];
    c->suites[1] = 0;
    mbedtls_ssl_conf_ciphersuites(&c->conf, c->suites);
  } else {
    mbedtls_ssl_conf_ciphersuites(&c->conf, all_suites);
  }
  /* P-256 is always offered: the certificate's curve must be acceptable to the
   * client. The key exchange uses the first one the server prefers (x25519). */
  int cv = (cfg >> 2) & 3;
  c->curves[0] = cv & 1 ? MBEDTLS_ECP_DP_SECP256R1 : MBEDTLS_ECP_DP_CURVE25519;
  c->curves[1] = cv & 1 ? (cv & 2 ? MBEDTLS_ECP_DP_CURVE25519 : MBEDTLS_ECP_DP_NONE)
                        : MBEDTLS_ECP_DP_SECP256R1;
  c->curves[2] = MBEDTLS_ECP_DP_NONE;
  mbedtls_ssl_conf_curves(&c->conf, c->curves);
  REQUIRE(mbedtls_ssl_conf_max_frag_len(&c->conf, mfls[(cfg >> 4) & 7]) == 0);
  REQUIRE(mbedtls_ssl_setup(&c->ssl, &c->conf) == 0);
  REQUIRE(mbedtls_ssl_set_hostname(&c->ssl, "localhost") == 0);
  mbedtls_ssl_set_bio(&c->ssl, pipes, cli_send, cli_recv, NULL);
  if (resume) REQUIRE(mbedtls_ssl_set_session(&c->ssl, &g_ticket) == 0);
}

static void cli_free(cli_t *c) {
  mbedtls_ssl_free(&c->ssl);
  mbedtls_ssl_config_free(&c->conf);
}

/* ---- the server side ------------------------------------------------------------- */

typedef struct {
  ews_tls_t *t;
  ews_writeq_t out;
  ews_bufpool_t pool;
  uint32_t rng;
  int term;        /* EWS_ETLS / EWS_ECLOSED once final */
  fz_buf_t plain;  /* everything ews_tls_read delivered */
} srv_t;

static void srv_init(srv_t *s, uint32_t seed) {
  memset(s, 0, sizeof *s);
  drbg_reset(&srv_rng, &srv_tag);
  s->t = ews_tls_new(g_ctx, &s->out, &s->pool);
  REQUIRE(s->t);
  s->rng = seed | 1u;
}

static size_t chunk(uint32_t *rng, size_t n) {
  uint32_t r = fz_rand(rng), k;
  switch (r & 3) {
    case 0: k = 1 + (r >> 8) % 8; break;
    case 1: k = 1 + (r >> 8) % 300; break;
    case 2: k = 1 + (r >> 8) % 5000; break;
    default: k = (uint32_t)n; break;
  }
  return k < n ? k : n;
}

/* One read of n bytes; checks what every read must satisfy. */
static int srv_read(srv_t *s, const uint8_t *p, size_t n) {
  size_t reserve = ews_tls_read_reserve(s->t);
  REQUIRE(reserve <= EWS_TLS_MAX_RESERVE);
  int was_done = ews_tls_handshake_done(s->t);
  uint8_t *buf = malloc(reserve + n); /* exactly: ASan sees any overrun */
  REQUIRE(buf);
  memcpy(buf + reserve, p, n);
  size_t plain = 999;
  int rc = ews_tls_read(s->t, buf, n, &plain);
  REQUIRE(rc == 0 || rc == EWS_EAGAIN || rc == EWS_ETLS || rc == EWS_ECLOSED || rc == EWS_ENOMEM);
  REQUIRE(plain <= reserve + n);
  if (s->term) REQUIRE(rc == s->term && plain == 0);
  if (rc == EWS_EAGAIN) REQUIRE(plain == 0 && !ews_tls_handshake_done(s->t) && !was_done);
  if (rc == 0) REQUIRE(ews_tls_handshake_done(s->t));
  if (plain) REQUIRE(ews_tls_handshake_done(s->t) || rc == EWS_ETLS);
  fz_put(&s->plain, buf, plain);
  free(buf);
  if (rc == EWS_ETLS || rc == EWS_ECLOSED || rc == EWS_ENOMEM) {
    s->term = rc == EWS_ENOMEM ? EWS_ETLS : rc;
    REQUIRE(ews_tls_read_reserve(s->t) == 0);
    REQUIRE(s->t->hs == NULL); /* mbedTLS state is freed at once */
  }
  if (rc == EWS_ETLS) {
    char why[256];
    REQUIRE(ews_tls_reason(s->t, why, sizeof why)[0] != 0);
    REQUIRE(!ews_tls_handshake_done(s->t));
  }
  if (!ews_tls_handshake_done(s->t)) { /* nothing to protect yet */
    struct iovec v = {"x", 1};
    int w = ews_tls_write(s->t, &v, 1);
    REQUIRE(w == (s->term == EWS_ETLS ? EWS_ETLS : EWS_EAGAIN));
    REQUIRE(ews_tls_close_notify(s->t) == (s->term == EWS_ETLS ? EWS_ETLS : EWS_EAGAIN));
  }
  return rc;
}

static void srv_free(srv_t *s) {
  ews_tls_free(s->t);
  ews_wq_free(&s->out);
  ews_bufpool_drain(&s->pool);
  fz_free(&s->plain);
}

/* Moves the server's queued output to the client's pipe. */
static void srv_flush(srv_t *s, pipe_t *s2c) {
  struct iovec iov[64];
  while (s->out.bytes) {
    size_t total;
    int n = ews_wq_iov(&s->out, iov, 64, &total);
    for (int i = 0; i < n; i++) fz_put(&s2c->b, iov[i].iov_base, iov[i].iov_len);
    ews_wq_consume(&s->out, total);
  }
}

/* ---- mode 0: hostile bytes -------------------------------------------------------- */

/* The gate's verdict on the first n bytes: NULL while acceptable so far, else the
 * reason; *complete when the first record is whole. */
static const char *gate(const uint8_t *p, size_t n, int *complete) {
  *complete = 0;
  if (n == 0) return NULL;
  if (p[0] != 22)
    return p[0] >= 'A' && p[0] <= 'Z' ? "not TLS (plain HTTP on a TLS port?)"
                                      : "not TLS (no handshake record)";
  if (n > 1 && p[1] != 3) return "not TLS (record version)";
  size_t rl = n >= 5 ? (size_t)p[3] << 8 | p[4] : 0;
  if (n >= 5 && (rl < 4 || rl > 16384)) return "not a ClientHello (record length)";
  if (n >= 6 && p[5] != 1) return "not a ClientHello";
  *complete = n >= 5 && n >= 5 + rl;
  return NULL;
}

typedef struct {
  int rc;
  char why[256];
} end_t;

static end_t raw_run(const uint8_t *p, size_t n, int chunked, uint32_t seed) {
  srv_t s;
  srv_init(&s, seed);
  pipe_t sink = {0};
  size_t pos = 0;
  int rc = EWS_EAGAIN;
  while (pos < n) {
    size_t k = chunked ? chunk(&s.rng, n - pos) : n - pos;
    int was_complete, complete;
    gate(p, pos, &was_complete); /* acceptable so far, or we would have stopped */
    const char *bad = gate(p, pos + k, &complete);
    rc = srv_read(&s, p + pos, k);
    pos += k;
    if (!was_complete && bad) { /* the gate decides, alone */
      char why[256];
      REQUIRE(rc == EWS_ETLS);
      REQUIRE(strcmp(ews_tls_reason(s.t, why, sizeof why), bad) == 0);
      REQUIRE(s.out.bytes == 0);
    } else if (!complete) { /* still gathering the first record: no mbedTLS yet */
      REQUIRE(rc == EWS_EAGAIN);
      REQUIRE(ews_tls_read_reserve(s.t) == pos);
      REQUIRE(s.t->hs == NULL && s.out.bytes == 0);
    } else if (!was_complete) { /* the gate let it through: mbedTLS has it now */
      char why[256];
      ews_tls_reason(s.t, why, sizeof why);
      REQUIRE(rc == EWS_EAGAIN ? s.t->hs != NULL : strncmp(why, "handshake", 9) == 0);
    }
    if (rc != EWS_EAGAIN && rc != 0) break;
    srv_flush(&s, &sink);
  }
  REQUIRE(s.plain.n == 0); /* hostile bytes never finish a handshake */
  end_t e = {rc, ""};
  ews_tls_reason(s.t, e.why, sizeof e.why);
  fz_free(&sink.b);
  srv_free(&s);
  return e;
}

static void mode_raw(const uint8_t *data, size_t size) {
  fz_in_t in = {data, size};
  uint32_t seed = 0x2545F491u ^ fz_u8(&in);
  end_t a = raw_run(in.p, in.n, 0, seed), b = raw_run(in.p, in.n, 1, seed);
  REQUIRE(a.rc == b.rc);
  REQUIRE(strcmp(a.why, b.why) == 0);
}

/* ---- mode 1: a real client ------------------------------------------------------- */

typedef struct {
  pipe_t pipes[2]; /* client to server, server to client */
  cli_t c;
  srv_t s;
  struct { size_t pos; uint8_t x; int done; } flip[3];
  int nflip;
  int cli_done, cli_fail;
  fz_buf_t cli_got;
} duo_t;

/* Delivers what the client sent to the server, flipping the chosen bytes first. */
static void to_server(duo_t *d) {
  pipe_t *c2s = &d->pipes[0];
  while (c2s->rd < c2s->b.n && !d->s.term) {
    size_t k = chunk(&d->s.rng, c2s->b.n - c2s->rd);
    for (int i = 0; i < d->nflip; i++) {
      if (!d->flip[i].done && d->flip[i].pos >= c2s->rd && d->flip[i].pos < c2s->rd + k) {
        c2s->b.p[d->flip[i].pos] ^= d->flip[i].x;
        d->flip[i].done = 1;
      }
    }
    srv_read(&d->s, c2s->b.p + c2s->rd, k);
    c2s->rd += k;
  }
  if (d->s.term) c2s->rd = c2s->b.n; /* the server stopped reading */
  srv_flush(&d->s, &d->pipes[1]);
}

/* Runs both handshakes until neither side can move. Stops without delivering the
 * client's last flight when the client finishes first (a resumption), so that its
 * first data can follow in the same read as its Finished. */
static void pump(duo_t *d) {
  for (int i = 0; i < 32; i++) {
    size_t before = d->pipes[0].b.n + d->pipes[1].b.n;
    if (!d->cli_done && !d->cli_fail) {
      int r = mbedtls_ssl_handshake(&d->c.ssl);
      if (r == 0) {
        d->cli_done = 1;
        if (!ews_tls_handshake_done(d->s.t)) return;
      } else if (r != MBEDTLS_ERR_SSL_WANT_READ) {
        d->cli_fail = 1;
      }
    }
    to_server(d);
    if (d->pipes[0].b.n + d->pipes[1].b.n == before) break;
  }
}

/* Reads what the client can read now; returns the last mbedTLS code. */
static int cli_read(duo_t *d) {
  unsigned char b[4096];
  for (;;) {
    int r = mbedtls_ssl_read(&d->c.ssl, b, sizeof b);
    if (r > 0) {
      fz_put(&d->cli_got, b, (size_t)r);
      continue;
    }
    return r;
  }
}

static uint8_t *pattern_data(size_t n, uint8_t salt) {
  uint8_t *p = malloc(n ? n : 1);
  REQUIRE(p);
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 7u + salt);
  return p;
}

/* IANA name (ours) against mbedTLS's spelling of it (dashes). */
static int same_suite(const char *iana, const char *mbed) {
  if (!iana || !mbed || strlen(iana) != strlen(mbed)) return 0;
  for (size_t i = 0; iana[i]; i++)
    if (iana[i] != (mbed[i] == '-' ? '_' : mbed[i])) return 0;
  return 1;
}

static int is_prefix(const fz_buf_t *a, const fz_buf_t *b) {
  return a->n <= b->n && (a->n == 0 || memcmp(a->p, b->p, a->n) == 0);
}

static void mode_client(const uint8_t *data, size_t size) {
  fz_in_t in = {data, size};
  uint8_t cfg = fz_u8(&in), flags = fz_u8(&in), seed = fz_u8(&in), nflip = fz_u8(&in) & 3;
  int resume = !(flags & 1), cli_close = flags & 2, srv_close = flags & 4, junk = flags & 8;
  int nwrites = flags >> 4;
  duo_t *d = calloc(1, sizeof *d);
  REQUIRE(d);
  d->nflip = nflip;
  for (int i = 0; i < nflip; i++) {
    d->flip[i].pos = fz_u16(&in);
    uint8_t x = fz_u8(&in);
    d->flip[i].x = x ? x : 0x01;
  }
  cli_init(&d->c, d->pipes, cfg, resume);
  srv_init(&d->s, 0x6A09E667u ^ seed);
  int clean = nflip == 0 && !junk;

  pump(d);
  if (junk) {
    const uint8_t *j;
    size_t n = fz_take(&in, fz_u8(&in), &j);
    fz_put(&d->pipes[0].b, j, n);
  }
  /* client -> server data; the first write goes out before the server read the
   * client's last handshake flight when the handshake was a resumption */
  fz_buf_t sent = {0};
  for (int i = 0; i < nwrites && d->cli_done; i++) {
    size_t n = fz_u16(&in) % 20000u;
    uint8_t *p = pattern_data(n, (uint8_t)i);
    size_t off = 0;
    while (off < n) {
      int r = mbedtls_ssl_write(&d->c.ssl, p + off, n - off);
      if (r <= 0) break;
      fz_put(&sent, p + off, (size_t)r);
      off += (size_t)r;
    }
    free(p);
  }
  to_server(d);
  if (clean) {
    REQUIRE(d->cli_done && !d->cli_fail);
    REQUIRE(ews_tls_handshake_done(d->s.t) && d->s.t->hs == NULL && d->s.term == 0);
    REQUIRE(same_suite(ews_tls_cipher(d->s.t), mbedtls_ssl_get_ciphersuite(&d->c.ssl)));
    REQUIRE(ews_tls_resumed(d->s.t) == (resume ? 1 : 0));
    REQUIRE(d->s.plain.n == sent.n);
  }
  REQUIRE(is_prefix(&d->s.plain, &sent)); /* never a byte the client did not send */

  /* server -> client data */
  fz_buf_t wrote = {0};
  size_t n = fz_u16(&in) % 40000u;
  if (ews_tls_handshake_done(d->s.t) && n) {
    uint8_t *p = pattern_data(n, 0x33);
    struct iovec v[2] = {{p, n / 2}, {p + n / 2, n - n / 2}};
    int w = ews_tls_write(d->s.t, v, 2);
    REQUIRE(w == 0 || w == EWS_ETLS || w == EWS_ECLOSED);
    if (w == 0) fz_put(&wrote, p, n);
    free(p);
    srv_flush(&d->s, &d->pipes[1]);
  }
  if (d->cli_done) cli_read(d);
  REQUIRE(is_prefix(&d->cli_got, &wrote));
  if (clean) REQUIRE(d->cli_got.n == wrote.n);

  if (srv_close && ews_tls_handshake_done(d->s.t)) {
    REQUIRE(ews_tls_close_notify(d->s.t) == 0);
    struct iovec v = {"late", 4};
    REQUIRE(ews_tls_write(d->s.t, &v, 1) == EWS_ECLOSED);
    srv_flush(&d->s, &d->pipes[1]);
    if (clean) REQUIRE(cli_read(d) == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
  }
  if (cli_close && d->cli_done) {
    mbedtls_ssl_close_notify(&d->c.ssl);
    to_server(d);
    if (clean) {
      REQUIRE(d->s.term == EWS_ECLOSED);
      if (!srv_close) REQUIRE(cli_read(d) == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY);
    }
  }
  /* trailing bytes: ignored after a close_notify, else parsed as records */
  const uint8_t *tail;
  size_t tn = fz_take(&in, in.n, &tail);
  fz_put(&d->pipes[0].b, tail, tn);
  size_t before = d->s.plain.n;
  to_server(d);
  REQUIRE(d->s.plain.n == before); /* forged records deliver nothing */

  fz_free(&sent);
  fz_free(&wrote);
  fz_free(&d->cli_got);
  fz_free(&d->pipes[0].b);
  fz_free(&d->pipes[1].b);
  cli_free(&d->c);
  srv_free(&d->s);
  free(d);
}

/* ---- entry points ---------------------------------------------------------------- */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  char dir[] = "/tmp/edgews-fuzz-tls.XXXXXX", crt[64], key[64];
  REQUIRE(mkdtemp(dir));
  snprintf(crt, sizeof crt, "%s/server.crt", dir);
  snprintf(key, sizeof key, "%s/server.key", dir);
  make_cert(crt, key);
  char *err = NULL;
  g_ctx = ews_tls_ctx_new(crt, key, &err);
  if (!g_ctx) fprintf(stderr, "fuzz_tls_handshake: %s\n", err ? err : "?");
  REQUIRE(g_ctx);
  unlink(crt);
  unlink(key);
  rmdir(dir);
  mbedtls_ssl_conf_rng(&g_ctx->conf, mbedtls_ctr_drbg_random, &srv_rng);

  /* One full handshake for a session ticket that inputs may resume. */
  duo_t *d = calloc(1, sizeof *d);
  REQUIRE(d);
  cli_init(&d->c, d->pipes, 3, 0);
  srv_init(&d->s, 1);
  pump(d);
  if (!d->cli_done || !ews_tls_handshake_done(d->s.t)) {
    char why[256];
    fprintf(stderr, "fuzz_tls_handshake: set-up handshake failed: client %s, server %s\n",
            d->cli_fail ? "failed" : "unfinished", ews_tls_reason(d->s.t, why, sizeof why));
    abort();
  }
  mbedtls_ssl_session_init(&g_ticket);
  REQUIRE(mbedtls_ssl_get_session(&d->c.ssl, &g_ticket) == 0);
  REQUIRE(g_ticket.ticket != NULL);
  fz_free(&d->pipes[0].b);
  fz_free(&d->pipes[1].b);
  cli_free(&d->c);
  srv_free(&d->s);
  free(d);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!size) return 0;
  if (data[0] & 1) mode_client(data + 1, size - 1);
  else mode_raw(data + 1, size - 1);
  return 0;
}
