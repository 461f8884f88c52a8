/* test_net_aes_gcm.c — our AES-GCM (net/aes_gcm.c) behind mbedtls_gcm_crypt_and_tag /
 * mbedtls_gcm_auth_decrypt (net/gcm_mbedtls.c): the McGrew-Viega / NIST test vectors
 * (AES-128 and AES-256, empty plaintext, AAD only, lengths not a multiple of 16),
 * with each VAES/VPCLMULQDQ variant the CPU has (zmm, ymm) and without,
 * differential tests against libmbedcrypto's own functions (every length 0..1100 and
 * 16 KiB and more, random keys, IVs and AAD, unaligned and in-place buffers, encrypt
 * and decrypt, tampered tag / ciphertext / AAD refused with the output zeroed), the
 * fallback for what our code does not take (non-AES cipher, IV not 12 bytes), and that
 * the interposition is live: mbedtls_cipher_auth_encrypt_ext / _decrypt_ext, inside
 * libmbedcrypto (the path of mbedTLS's own record layer), reach our code (call
 * counter). When the CPU lacks AES-NI or PCLMULQDQ everything goes to the library and
 * the counter checks are skipped (said on stderr). */
#include <mbedtls/aes.h>
#include <mbedtls/cipher.h>
#include <mbedtls/gcm.h>

#include "net/aes_gcm.h"

#include "test.h"

static size_t unhex(const char *h, uint8_t *out) {
  size_t n = 0;
  for (; h[0] && h[1]; h += 2) {
    unsigned v;
    sscanf(h, "%2x", &v);
    out[n++] = (uint8_t)v;
  }
  return n;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}
static void fill(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)next();
}

typedef struct {
  const char *key, *iv, *aad, *pt, *ct, *tag;
} vec_t;

static const char P64[] =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
static const char P60[] =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
static const char A20[] = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
static const char K128[] = "feffe9928665731c6d6a8f9467308308";
static const char K256[] = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
static const char IV[] = "cafebabefacedbaddecaf888";
static const char Z12[] = "000000000000000000000000";

static const vec_t vecs[] = {
    /* McGrew & Viega test cases 1-4 (AES-128) */
    {"00000000000000000000000000000000", Z12, "", "", "", "58e2fccefa7e3061367f1d57a4e7455a"},
    {"00000000000000000000000000000000", Z12, "", "00000000000000000000000000000000",
     "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf"},
    {K128, IV, "", P64,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
     "4d5c2af327cd64a62cf35abd2ba6fab4"},
    {K128, IV, A20, P60,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47"},
    /* test cases 13-16 (AES-256) */
    {"0000000000000000000000000000000000000000000000000000000000000000", Z12, "", "", "",
     "530f8afbc74536b9a963b4f1c4cb738b"},
    {"0000000000000000000000000000000000000000000000000000000000000000", Z12, "",
     "00000000000000000000000000000000", "cea7403d4d606b6e074ec5d3baf39d18",
     "d0d1c8a799996bf0265b98b5d48ab919"},
    {K256, IV, "", P64,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"},
    {K256, IV, A20, P60,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"},
    /* NIST CAVS gcmEncryptExtIV128, PTlen 0, AADlen 128, count 0: AAD only */
    {"77be63708971c4e240d1cb79e8d77feb", "e0e00f19fed7ba0136a797f3",
     "7a43ec1d9c0a5a78a0b16533a6213cab", "", "", "209fcc8d3675ed938e9c7166709dd946"},
};

static int fast;

TEST(vectors) {
  for (size_t v = 0; v < sizeof vecs / sizeof vecs[0]; v++) {
    uint8_t key[32], iv[12], aad[32], pt[64], ct[64], tag[16], out[64], t[16];
    size_t kn = unhex(vecs[v].key, key), an = unhex(vecs[v].aad, aad);
    size_t pn = unhex(vecs[v].pt, pt);
    unhex(vecs[v].iv, iv);
    CHECK_EQ(unhex(vecs[v].ct, ct), pn);
    unhex(vecs[v].tag, tag);
    mbedtls_gcm_context g;
    mbedtls_gcm_init(&g);
    CHECK_EQ(mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, (unsigned)kn * 8), 0);
    uint64_t before = ews_aes_gcm_calls();
    CHECK_EQ(mbedtls_gcm_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, pn, iv, 12, an ? aad : NULL, an,
                                       pn ? pt : NULL, pn ? out : NULL, 16, t),
             0);
    if (pn) CHECK_MEM(out, ct, pn);
    CHECK_MEM(t, tag, 16);
    CHECK_EQ(mbedtls_gcm_auth_decrypt(&g, pn, iv, 12, an ? aad : NULL, an, tag, 16,
                                      pn ? ct : NULL, pn ? out : NULL),
             0);
    if (pn) CHECK_MEM(out, pt, pn);
    if (fast) CHECK_EQ(ews_aes_gcm_calls() - before, 2);
    /* the direct entry points */
    if (fast) {
      const mbedtls_aes_context *aes = g.cipher_ctx.cipher_ctx;
      ews_aes_gcm(1, (const uint8_t *)aes->rk, aes->nr, iv, aad, an, pt, out, pn, t, 16);
      if (pn) CHECK_MEM(out, ct, pn);
      CHECK_MEM(t, tag, 16);
    }
    mbedtls_gcm_free(&g);
  }
}

/* One random case of length n through ours and the library's, both directions. */
static void diff_case(size_t n, unsigned keybits, size_t aad_n, size_t tag_n, size_t align,
                      int in_place) {
  uint8_t key[32], iv[12], aad[64], tag_a[16], tag_b[16];
  fill(key, sizeof key);
  fill(iv, sizeof iv);
  fill(aad, sizeof aad);
  uint8_t *pt = malloc(n + 16), *a = malloc(n + 16), *b = malloc(n + 16), *d = malloc(n + 16);
  if (!pt || !a || !b || !d) abort();
  fill(pt, n + 16);
  uint8_t *ia = pt + align, *oa = in_place ? a + align : a + (align ^ 5) % 16;
  mbedtls_gcm_context g;
  mbedtls_gcm_init(&g);
  CHECK_EQ(mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, keybits), 0);
  if (in_place) memcpy(oa, ia, n);
  uint64_t before = ews_aes_gcm_calls();
  int r = mbedtls_gcm_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, n, iv, 12, aad, aad_n,
                                    in_place ? oa : ia, oa, tag_n, tag_a);
  CHECK_EQ(r, 0);
  if (fast) CHECK_EQ(ews_aes_gcm_calls() - before, 1);
  CHECK_EQ(ews_gcm_lib_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, n, iv, 12, aad, aad_n, ia, b, tag_n,
                                     tag_b),
           0);
  CHECK_MEM(oa, b, n);
  CHECK_MEM(tag_a, tag_b, tag_n);
  /* crypt_and_tag in decrypt mode: plaintext and the tag over the ciphertext */
  CHECK_EQ(mbedtls_gcm_crypt_and_tag(&g, MBEDTLS_GCM_DECRYPT, n, iv, 12, aad, aad_n, b, d, tag_n,
                                     tag_a),
           0);
  CHECK_MEM(d, ia, n);
  CHECK_MEM(tag_a, tag_b, tag_n);
  /* auth_decrypt: ours in place of a copy, and the library's */
  uint8_t *da = d + align;
  memcpy(da, b, n);
  CHECK_EQ(mbedtls_gcm_auth_decrypt(&g, n, iv, 12, aad, aad_n, tag_b, tag_n, da, da), 0);
  CHECK_MEM(da, ia, n);
  CHECK_EQ(ews_gcm_lib_auth_decrypt(&g, n, iv, 12, aad, aad_n, tag_b, tag_n, b, a), 0);
  CHECK_MEM(a, ia, n);
  /* tampering: tag, ciphertext, AAD; refused and the output zeroed (as the library) */
  for (int what = 0; what < 3; what++) {
    uint8_t t2[16], *c2 = malloc(n + 1), a2[64];
    if (!c2) abort();
    memcpy(t2, tag_b, 16);
    memcpy(c2, b, n);
    memcpy(a2, aad, sizeof a2);
    if (what == 0) t2[next() % tag_n] ^= (uint8_t)(1 + next() % 255);
    else if (what == 1 && n) c2[next() % n] ^= (uint8_t)(1 + next() % 255);
    else if (what == 2 && aad_n) a2[next() % aad_n] ^= (uint8_t)(1 + next() % 255);
    else t2[0] ^= 0x80;
    memset(d, 0xAA, n + 16);
    CHECK_EQ(mbedtls_gcm_auth_decrypt(&g, n, iv, 12, a2, aad_n, t2, tag_n, c2, d),
             MBEDTLS_ERR_GCM_AUTH_FAILED);
    size_t nz = 0;
    for (size_t i = 0; i < n; i++) nz += d[i] != 0;
    CHECK_EQ(nz, 0);
    CHECK_EQ(ews_gcm_lib_auth_decrypt(&g, n, iv, 12, a2, aad_n, t2, tag_n, c2, a),
             MBEDTLS_ERR_GCM_AUTH_FAILED);
    free(c2);
  }
  mbedtls_gcm_free(&g);
  free(pt);
  free(a);
  free(b);
  free(d);
}

TEST(differential_every_length) {
  static const unsigned bits[] = {128, 256, 192};
  static const size_t tags[] = {16, 12, 8, 4, 15};
  for (size_t n = 0; n <= 1100; n++)
    diff_case(n, bits[n % 3], n % 7 == 0 ? 0 : n % 5 == 0 ? 13 : next() % 65, tags[n % 5],
              n % 16, (int)(n % 2));
}

TEST(differential_large) {
  static const size_t lens[] = {16355, 16384, 16384 + 13, 16384 + 127, 65536 + 5, 300000};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
    for (unsigned bits = 128; bits <= 256; bits += 128)
      diff_case(lens[i], bits, 13, 16, i % 16, (int)(i % 2));
}

/* Encrypts pt[0 .. 100) with IV iv[0 .. iv_n) through the interposed call and through
 * the library's own: the same output and tag, and our code was not called. */
static void check_goes_to_library(mbedtls_gcm_context *g, const uint8_t *iv, size_t iv_n,
                                  const uint8_t *pt) {
  uint8_t a[100], b[100], ta[16], tb[16];
  uint64_t before = ews_aes_gcm_calls();
  CHECK_EQ(mbedtls_gcm_crypt_and_tag(g, MBEDTLS_GCM_ENCRYPT, 100, iv, iv_n, NULL, 0, pt, a, 16,
                                     ta),
           0);
  CHECK_EQ(ews_aes_gcm_calls(), before);
  CHECK_EQ(ews_gcm_lib_crypt_and_tag(g, MBEDTLS_GCM_ENCRYPT, 100, iv, iv_n, NULL, 0, pt, b, 16,
                                     tb),
           0);
  CHECK_MEM(a, b, 100);
  CHECK_MEM(ta, tb, 16);
}

/* What our code does not take goes to the library: no count, the library's result. */
TEST(fallback) {
  uint8_t key[16], iv[16], pt[100], a[100], ta[16];
  fill(key, sizeof key);
  fill(iv, sizeof iv);
  fill(pt, sizeof pt);
  mbedtls_gcm_context g;
  mbedtls_gcm_init(&g);
  CHECK_EQ(mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, 128), 0);
  check_goes_to_library(&g, iv, 16, pt); /* IV not 12 bytes */
  /* bad tag length: the library's error */
  uint64_t before = ews_aes_gcm_calls();
  CHECK_EQ(mbedtls_gcm_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, 100, iv, 12, NULL, 0, pt, a, 2, ta),
           MBEDTLS_ERR_GCM_BAD_INPUT);
  CHECK_EQ(ews_aes_gcm_calls(), before);
  mbedtls_gcm_free(&g);
#if defined(MBEDTLS_CAMELLIA_C)
  mbedtls_gcm_init(&g);
  CHECK_EQ(mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_CAMELLIA, key, 128), 0);
  check_goes_to_library(&g, iv, 12, pt); /* not AES */
  mbedtls_gcm_free(&g);
#endif
}

/* A record sealed from two pieces (gathered head in place + tail read where it is,
 * ews_gcm_seal_split / ews_aes_gcm_seal2) equals the one-buffer result: heads of
 * 0 .. 48 bytes (multiples of 16), tails of 1 .. 2,100 bytes and 16,355 - head, at odd
 * source offsets, AES-128/256, plus a head that is not a multiple of 16 (the library
 * path after a copy). */
static void split_case(size_t head, size_t tail, unsigned keybits, size_t src_off) {
  static uint8_t pt[16384 + 64], src[16384 + 64], one[16384 + 64], two[16384 + 64];
  uint8_t key[32], iv[12], aad[13], tag1[16], tag2[16], tag3[16];
  fill(key, sizeof key);
  fill(iv, sizeof iv);
  fill(aad, sizeof aad);
  fill(pt, head + tail);
  mbedtls_gcm_context g;
  mbedtls_gcm_init(&g);
  CHECK_EQ(mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, keybits), 0);
  CHECK_EQ(ews_gcm_lib_crypt_and_tag(&g, MBEDTLS_GCM_ENCRYPT, head + tail, iv, 12, aad, 13, pt,
                                     one, 16, tag1),
           0);
  memcpy(src + src_off, pt + head, tail);
  memcpy(two, pt, head);
  uint64_t before = ews_aes_gcm_calls();
  CHECK_EQ(ews_gcm_seal_split(&g, iv, aad, 13, two, head, src + src_off, tail, tag2, 16), 0);
  if (fast) CHECK_EQ(ews_aes_gcm_calls() - before, 1);
  CHECK_MEM(two, one, head + tail);
  CHECK_MEM(tag2, tag1, 16);
  if (fast && head % 16 == 0) {
    const mbedtls_aes_context *aes = g.cipher_ctx.cipher_ctx;
    memcpy(two, pt, head);
    memset(two + head, 0, tail);
    ews_aes_gcm_seal2((const uint8_t *)aes->rk, aes->nr, iv, aad, 13, two, two, head,
                      src + src_off, two + head, tail, tag3, 12);
    CHECK_MEM(two, one, head + tail);
    CHECK_MEM(tag3, tag1, 12);
  }
  mbedtls_gcm_free(&g);
}

TEST(seal_split_matches_one_buffer) {
  for (size_t head = 0; head <= 48; head += 16)
    for (size_t tail = 1; tail <= 2100; tail += tail < 300 ? 1 : 37) {
      split_case(head, tail, 128, tail % 7);
      if (tail % 5 == 0) split_case(head, tail, 256, 3);
    }
  for (size_t head = 0; head <= 48; head += 16) {
    split_case(head, 16355 - head, 128, 1);
    split_case(head, 16355 - head, 256, 5);
  }
  split_case(5, 1000, 128, 3);   /* head not a multiple of 16: copied, sealed in one piece */
  split_case(14, 16341, 128, 0);
}

/* mbedTLS's record layer seals and opens through the cipher API inside libmbedcrypto,
 * which calls mbedtls_gcm_* through its PLT: those calls must reach our code. */
TEST(interposed_through_libmbedcrypto) {
  static const mbedtls_cipher_type_t types[] = {MBEDTLS_CIPHER_AES_128_GCM,
                                                MBEDTLS_CIPHER_AES_256_GCM};
  for (int ti = 0; ti < 2; ti++) {
    uint8_t key[32], iv[12], aad[13], pt[1000], ct[1016], back[1016], ref[1000], rtag[16];
    fill(key, sizeof key);
    fill(iv, sizeof iv);
    fill(aad, sizeof aad);
    fill(pt, sizeof pt);
    mbedtls_cipher_context_t c;
    mbedtls_cipher_init(&c);
    const mbedtls_cipher_info_t *info = mbedtls_cipher_info_from_type(types[ti]);
    CHECK(info != NULL);
    CHECK_EQ(mbedtls_cipher_setup(&c, info), 0);
    CHECK_EQ(mbedtls_cipher_setkey(&c, key, (int)info->key_bitlen, MBEDTLS_ENCRYPT), 0);
    uint64_t before = ews_aes_gcm_calls();
    size_t olen = 0;
    CHECK_EQ(mbedtls_cipher_auth_encrypt_ext(&c, iv, 12, aad, 13, pt, sizeof pt, ct, sizeof ct,
                                             &olen, 16),
             0);
    CHECK_EQ(olen, sizeof pt + 16);
    if (fast) CHECK_EQ(ews_aes_gcm_calls() - before, 1);
    else fprintf(stderr, "no AES-NI/PCLMULQDQ: the library's GCM is used, counts skipped\n");
    /* the result is the library's */
    CHECK_EQ(ews_gcm_lib_crypt_and_tag(c.cipher_ctx, MBEDTLS_GCM_ENCRYPT, sizeof pt, iv, 12, aad,
                                       13, pt, ref, 16, rtag),
             0);
    CHECK_MEM(ct, ref, sizeof pt);
    CHECK_MEM(ct + sizeof pt, rtag, 16);
    CHECK_EQ(mbedtls_cipher_auth_decrypt_ext(&c, iv, 12, aad, 13, ct, sizeof pt + 16, back,
                                             sizeof back, &olen, 16),
             0);
    CHECK_EQ(olen, sizeof pt);
    CHECK_MEM(back, pt, sizeof pt);
    if (fast) CHECK_EQ(ews_aes_gcm_calls() - before, 2);
    ct[3] ^= 1;
    CHECK_EQ(mbedtls_cipher_auth_decrypt_ext(&c, iv, 12, aad, 13, ct, sizeof pt + 16, back,
                                             sizeof back, &olen, 16),
             MBEDTLS_ERR_CIPHER_AUTH_FAILED);
    if (fast) CHECK_EQ(ews_aes_gcm_calls() - before, 3);
    mbedtls_cipher_free(&c);
  }
}

int main(void) {
  fast = ews_aes_gcm_supported();
  fprintf(stderr, "AES-NI+PCLMULQDQ: %s\n", fast ? "yes (our GCM)" : "no (library GCM)");
  int wide = ews_aes_gcm_wide();
  fprintf(stderr, "VAES+VPCLMULQDQ variant: %d (2 zmm, 1 ymm, 0 none); each level down to 0 runs\n",
          wide);
  for (int level = wide; level >= 0; level--) {
    ews_aes_gcm_set_wide(level);
    CHECK_EQ(ews_aes_gcm_wide(), level);
    fprintf(stderr, "level %d:\n", level);
    RUN(vectors);
    RUN(differential_every_length);
    RUN(differential_large);
    RUN(seal_split_matches_one_buffer);
  }
  ews_aes_gcm_set_wide(2);
  RUN(fallback);
  RUN(interposed_through_libmbedcrypto);
  return TEST_EXIT();
}
