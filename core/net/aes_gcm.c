/* aes_gcm.c — AES-GCM with AES-NI and PCLMULQDQ (see aes_gcm.h): the cipher behind
 * TLS record protection when the CPU has them.
 *
 * GHASH works on byte-reflected blocks (Gueron & Kounavis, "Intel Carry-Less
 * Multiplication Instruction and its Usage for Computing the GCM Mode", algorithm 5):
 * a 256-bit carry-less product, shifted left by one bit, reduced modulo
 * x^128 + x^7 + x^2 + x + 1. Shift and reduction are linear, so 8 blocks are
 * multiplied by H^8 .. H^1, their products XORed, and reduced once. CTR keeps 8 blocks
 * in flight (one AES round key applied to 8 independent blocks), and encryption hashes
 * the previous 8 ciphertext blocks while the next 8 are encrypted.
 *
 * Only this file is compiled for these instructions (function target attributes), and
 * nothing here runs unless ews_aes_gcm_supported(); the build keeps baseline flags.
 * All loads and stores are unaligned (loadu / storeu). */
#include "net/aes_gcm.h"

#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

#define TGT __attribute__((target("aes,pclmul,ssse3,sse4.1")))

int ews_aes_gcm_supported(void) {
  return __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul") &&
         __builtin_cpu_supports("sse4.1");
}

TGT static inline __m128i bswap128(__m128i x) {
  return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

/* ---- GHASH ------------------------------------------------------------------ */

typedef struct {
  __m128i lo, mid, hi;
} acc_t;

TGT static inline void acc_zero(acc_t *a) {
  a->lo = a->mid = a->hi = _mm_setzero_si128();
}

/* a += x * h, unreduced (x, h reflected). */
TGT static inline void mul_acc(acc_t *a, __m128i x, __m128i h) {
  a->lo = _mm_xor_si128(a->lo, _mm_clmulepi64_si128(x, h, 0x00));
  a->hi = _mm_xor_si128(a->hi, _mm_clmulepi64_si128(x, h, 0x11));
  a->mid = _mm_xor_si128(a->mid, _mm_xor_si128(_mm_clmulepi64_si128(x, h, 0x10),
                                               _mm_clmulepi64_si128(x, h, 0x01)));
}

TGT static inline __m128i reduce(const acc_t *a) {
  __m128i t3 = _mm_xor_si128(a->lo, _mm_slli_si128(a->mid, 8));
  __m128i t6 = _mm_xor_si128(a->hi, _mm_srli_si128(a->mid, 8));
  /* shift the 256-bit t6:t3 left by one bit */
  __m128i t7 = _mm_srli_epi32(t3, 31);
  __m128i t8 = _mm_srli_epi32(t6, 31);
  t3 = _mm_slli_epi32(t3, 1);
  t6 = _mm_slli_epi32(t6, 1);
  __m128i t9 = _mm_srli_si128(t7, 12);
  t8 = _mm_slli_si128(t8, 4);
  t7 = _mm_slli_si128(t7, 4);
  t3 = _mm_or_si128(t3, t7);
  t6 = _mm_or_si128(t6, t8);
  t6 = _mm_or_si128(t6, t9);
  /* reduce t3 into t6 */
  t7 = _mm_slli_epi32(t3, 31);
  t8 = _mm_slli_epi32(t3, 30);
  t9 = _mm_slli_epi32(t3, 25);
  t7 = _mm_xor_si128(t7, t8);
  t7 = _mm_xor_si128(t7, t9);
  t8 = _mm_srli_si128(t7, 4);
  t7 = _mm_slli_si128(t7, 12);
  t3 = _mm_xor_si128(t3, t7);
  __m128i t2 = _mm_srli_epi32(t3, 1);
  __m128i t4 = _mm_srli_epi32(t3, 2);
  __m128i t5 = _mm_srli_epi32(t3, 7);
  t2 = _mm_xor_si128(t2, t4);
  t2 = _mm_xor_si128(t2, t5);
  t2 = _mm_xor_si128(t2, t8);
  t3 = _mm_xor_si128(t3, t2);
  return _mm_xor_si128(t6, t3);
}

TGT static inline __m128i gfmul(__m128i x, __m128i h) {
  acc_t a;
  acc_zero(&a);
  mul_acc(&a, x, h);
  return reduce(&a);
}

/* a += x * h, unreduced, Karatsuba: hk = h.hi ^ h.lo in both halves; the middle term
 * lacks lo ^ hi, which karatsuba_fix() adds once for all the blocks. */
TGT static inline void mul_acc_k(acc_t *a, __m128i x, __m128i h, __m128i hk) {
  a->lo = _mm_xor_si128(a->lo, _mm_clmulepi64_si128(x, h, 0x00));
  a->hi = _mm_xor_si128(a->hi, _mm_clmulepi64_si128(x, h, 0x11));
  __m128i xk = _mm_xor_si128(x, _mm_shuffle_epi32(x, 0x4E));
  a->mid = _mm_xor_si128(a->mid, _mm_clmulepi64_si128(xk, hk, 0x00));
}

TGT static inline void karatsuba_fix(acc_t *a) {
  a->mid = _mm_xor_si128(a->mid, _mm_xor_si128(a->lo, a->hi));
}

/* y = (y ^ b0) * H^8 ^ b1 * H^7 ^ ... ^ b7 * H (blocks as stored, not reflected). */
TGT static inline __m128i ghash8(__m128i y, const __m128i *b, const __m128i *hp,
                                 const __m128i *hk) {
  acc_t a;
  acc_zero(&a);
  mul_acc_k(&a, _mm_xor_si128(y, bswap128(b[0])), hp[7], hk[7]);
#pragma GCC unroll 8
  for (int i = 1; i < 8; i++) mul_acc_k(&a, bswap128(b[i]), hp[7 - i], hk[7 - i]);
  karatsuba_fix(&a);
  return reduce(&a);
}

/* pw[k] = H^(k+1) for k < n (n = 8, 16 or 32): a chain of 3 multiplies, then each
 * doubling multiplies the known powers by the highest one, independently (a short
 * dependency chain instead of n - 1 multiplies in a row). */
TGT static inline void powers(__m128i *pw, int n, __m128i h) {
  pw[0] = h;
  for (int p = 1; p < 4; p++) pw[p] = gfmul(pw[p - 1], h);
  for (int have = 4; have < n; have *= 2)
    for (int p = 0; p < have; p++) pw[have + p] = gfmul(pw[p], pw[have - 1]);
}

/* y over data[0 .. n), the last partial block zero-padded. */
TGT static __m128i ghash_bytes(__m128i y, __m128i h, const uint8_t *data, size_t n) {
  for (; n >= 16; data += 16, n -= 16)
    y = gfmul(_mm_xor_si128(y, bswap128(_mm_loadu_si128((const __m128i *)data))), h);
  if (n) {
    uint8_t pad[16] = {0};
    memcpy(pad, data, n);
    y = gfmul(_mm_xor_si128(y, bswap128(_mm_loadu_si128((const __m128i *)pad))), h);
  }
  return y;
}

/* ---- AES -------------------------------------------------------------------- */

TGT static inline __m128i aes1(const __m128i *k, int nr, __m128i b) {
  b = _mm_xor_si128(b, k[0]);
  for (int r = 1; r < nr; r++) b = _mm_aesenc_si128(b, k[r]);
  return _mm_aesenclast_si128(b, k[nr]);
}

/* b[0..8) = E(counter blocks c+1 .. c+8); c (byte-reflected, 32-bit counter in lane 0)
 * advances by 8. */
TGT static inline void ctr8(const __m128i *k, int nr, __m128i *c, __m128i *b) {
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++)
    b[i] = _mm_xor_si128(bswap128(_mm_add_epi32(*c, _mm_set_epi32(0, 0, 0, i + 1))), k[0]);
  *c = _mm_add_epi32(*c, _mm_set_epi32(0, 0, 0, 8));
  for (int r = 1; r < nr; r++) {
    __m128i kr = k[r];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) b[i] = _mm_aesenc_si128(b[i], kr);
  }
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++) b[i] = _mm_aesenclast_si128(b[i], k[nr]);
}

TGT static inline __m128i ctr1(const __m128i *k, int nr, __m128i *c) {
  *c = _mm_add_epi32(*c, _mm_set_epi32(0, 0, 0, 1));
  return aes1(k, nr, bswap128(*c));
}

/* ---- VAES / VPCLMULQDQ: 16 blocks per step in 8 ymm registers ---------------- */

#define TGT_WIDE \
  __attribute__((target("aes,pclmul,ssse3,sse4.1,avx,avx2,avx512f,avx512vl,vaes,vpclmulqdq")))

static int wide_max = 2; /* ews_aes_gcm_set_wide() */

static int cpu_wide = -1; /* what the CPU allows, found once (CPUID can trap in a VM) */

/* 2: 512-bit VAES/VPCLMULQDQ, 1: 256-bit, 0: neither. VAES and VPCLMULQDQ are read
 * from CPUID leaf 7 (ECX bits 9 and 10): clang's __builtin_cpu_supports does not know
 * them; the AVX checks include the OS's register state support. */
static int wide_ok(void) {
  int v = __atomic_load_n(&cpu_wide, __ATOMIC_RELAXED);
  if (v < 0) {
    unsigned a, b, c = 0, d;
    v = 0;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512vl") &&
        __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 9)) && (c & (1u << 10)))
      v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") ? 2 : 1;
    __atomic_store_n(&cpu_wide, v, __ATOMIC_RELAXED);
  }
  return v < wide_max ? v : wide_max < 0 ? 0 : wide_max;
}

int ews_aes_gcm_wide(void) {
  return ews_aes_gcm_supported() ? wide_ok() : 0;
}

void ews_aes_gcm_set_wide(int max_level) {
  wide_max = max_level;
}

TGT_WIDE static inline __m256i bswap256(__m256i x) {
  const __m256i m = _mm256_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1,
                                    2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  return _mm256_shuffle_epi8(x, m);
}

/* Whole 256-byte steps of in[0 .. len) (len >= 256): CTR and GHASH as the 8-block code,
 * two blocks per register, powers H^16 .. H^1, one reduction per step. c and y are
 * carried in and out; returns the bytes done. */
TGT_WIDE __attribute__((noinline)) static size_t bulk_wide(int enc, const __m128i *k, int nr,
                                                            __m128i *cp, __m128i *yp, __m128i h,
                                                            const uint8_t *in, uint8_t *out,
                                                            size_t len) {
  __m128i pw[16];
  powers(pw, 16, h);
  /* register j holds blocks 2j (low lane, times H^(16-2j)) and 2j+1 (H^(15-2j)) */
  __m256i hp[8], hk[8], kw[15];
  for (int j = 0; j < 8; j++) {
    hp[j] = _mm256_set_m128i(pw[14 - 2 * j], pw[15 - 2 * j]);
    hk[j] = _mm256_xor_si256(hp[j], _mm256_shuffle_epi32(hp[j], 0x4E));
  }
  for (int r = 0; r <= nr; r++) kw[r] = _mm256_broadcastsi128_si256(k[r]);
  __m256i c = _mm256_add_epi32(_mm256_broadcastsi128_si256(*cp),
                               _mm256_set_epi32(0, 0, 0, 2, 0, 0, 0, 1));
  const __m256i two = _mm256_set_epi32(0, 0, 0, 2, 0, 0, 0, 2);
  __m128i y = *yp;
  size_t i = 0;
  for (; i + 256 <= len; i += 256) {
    __m256i b[8], x[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
      b[j] = _mm256_xor_si256(bswap256(c), kw[0]);
      c = _mm256_add_epi32(c, two);
    }
    for (int r = 1; r < nr; r++) {
      __m256i kr = kw[r];
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++) b[j] = _mm256_aesenc_epi128(b[j], kr);
    }
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
      __m256i d = _mm256_loadu_si256((const __m256i *)(in + i + 32 * j));
      __m256i o = _mm256_xor_si256(_mm256_aesenclast_epi128(b[j], kw[nr]), d);
      _mm256_storeu_si256((__m256i *)(out + i + 32 * j), o);
      x[j] = bswap256(enc ? o : d);
    }
    x[0] = _mm256_xor_si256(x[0], _mm256_set_m128i(_mm_setzero_si128(), y));
    __m256i lo = _mm256_setzero_si256(), hi = lo, mid = lo;
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
      lo = _mm256_xor_si256(lo, _mm256_clmulepi64_epi128(x[j], hp[j], 0x00));
      hi = _mm256_xor_si256(hi, _mm256_clmulepi64_epi128(x[j], hp[j], 0x11));
      __m256i xk = _mm256_xor_si256(x[j], _mm256_shuffle_epi32(x[j], 0x4E));
      mid = _mm256_xor_si256(mid, _mm256_clmulepi64_epi128(xk, hk[j], 0x00));
    }
    acc_t a;
    a.lo = _mm_xor_si128(_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1));
    a.hi = _mm_xor_si128(_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1));
    a.mid = _mm_xor_si128(_mm256_castsi256_si128(mid), _mm256_extracti128_si256(mid, 1));
    karatsuba_fix(&a);
    y = reduce(&a);
  }
  /* the low lane of c is the next block's counter: step back to "last used" */
  *cp = _mm_sub_epi32(_mm256_castsi256_si128(c), _mm_set_epi32(0, 0, 0, 1));
  *yp = y;
  return i;
}

/* ---- 512-bit VAES / VPCLMULQDQ: 32 blocks per step in 8 zmm registers ------- */

#define TGT_ZMM                                                                             \
  __attribute__((target("aes,pclmul,ssse3,sse4.1,avx,avx2,avx512f,avx512vl,avx512bw,vaes," \
                        "vpclmulqdq")))

TGT_ZMM static inline __m512i bswap512(__m512i x) {
  const __m512i m = _mm512_broadcast_i32x4(
      _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  return _mm512_shuffle_epi8(x, m);
}

TGT_ZMM static inline __m128i fold4(__m512i v) {
  __m128i a = _mm_xor_si128(_mm512_extracti32x4_epi32(v, 0), _mm512_extracti32x4_epi32(v, 1));
  __m128i b = _mm_xor_si128(_mm512_extracti32x4_epi32(v, 2), _mm512_extracti32x4_epi32(v, 3));
  return _mm_xor_si128(a, b);
}

/* y = (y ^ x0.0) * H^32 ^ ... ^ x7.3 * H (x: reflected blocks, register j lane l =
 * block 4j+l, hp / hk: its powers and Karatsuba halves). */
TGT_ZMM static inline __m128i ghash_zmm(__m128i y, const __m512i *x, const __m512i *hp,
                                        const __m512i *hk) {
  __m512i x0 = _mm512_xor_si512(x[0], _mm512_zextsi128_si512(y));
  __m512i lo = _mm512_setzero_si512(), hi = lo, mid = lo;
#pragma GCC unroll 8
  for (int j = 0; j < 8; j++) {
    __m512i v = j ? x[j] : x0;
    lo = _mm512_xor_si512(lo, _mm512_clmulepi64_epi128(v, hp[j], 0x00));
    hi = _mm512_xor_si512(hi, _mm512_clmulepi64_epi128(v, hp[j], 0x11));
    __m512i vk = _mm512_xor_si512(v, _mm512_shuffle_epi32(v, (_MM_PERM_ENUM)0x4E));
    mid = _mm512_xor_si512(mid, _mm512_clmulepi64_epi128(vk, hk[j], 0x00));
  }
  acc_t a;
  a.lo = fold4(lo);
  a.hi = fold4(hi);
  a.mid = fold4(mid);
  karatsuba_fix(&a);
  return reduce(&a);
}

/* As bulk_wide, with 512-byte steps: register j holds blocks 4j .. 4j+3 (lane l times
 * H^(32-4j-l)). The CTR and AES-round loops repeat bulk_wide's on purpose: __m256i and
 * __m512i have their own intrinsics and target sets (bulk_wide must run without
 * AVX512BW), so only a macro could write both; and here GHASH of the previous step
 * sits between the counter blocks and the rounds, where bulk_wide hashes after them. */
TGT_ZMM __attribute__((noinline)) static size_t bulk_zmm(int enc, const __m128i *k, int nr,
                                                          __m128i *cp, __m128i *yp, __m128i h,
                                                          const uint8_t *in, uint8_t *out,
                                                          size_t len) {
  __m128i pw[32];
  powers(pw, 32, h);
  __m512i hp[8], hk[8], kw[15];
  for (int j = 0; j < 8; j++) {
    __m512i v = _mm512_castsi128_si512(pw[31 - 4 * j]);
    v = _mm512_inserti32x4(v, pw[30 - 4 * j], 1);
    v = _mm512_inserti32x4(v, pw[29 - 4 * j], 2);
    hp[j] = _mm512_inserti32x4(v, pw[28 - 4 * j], 3);
    hk[j] = _mm512_xor_si512(hp[j], _mm512_shuffle_epi32(hp[j], (_MM_PERM_ENUM)0x4E));
  }
  for (int r = 0; r <= nr; r++) kw[r] = _mm512_broadcast_i32x4(k[r]);
  __m512i c = _mm512_add_epi32(_mm512_broadcast_i32x4(*cp),
                               _mm512_set_epi32(0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1));
  const __m512i four = _mm512_set_epi32(0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 4);
  __m128i y = *yp;
  size_t i = 0;
  __m512i x[8];
  /* decryption hashes each step's input; encryption hashes the previous step's output
   * while this step's blocks go through AES */
  for (; i + 512 <= len; i += 512) {
    __m512i b[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
      b[j] = _mm512_xor_si512(bswap512(c), kw[0]);
      c = _mm512_add_epi32(c, four);
    }
    if (!enc)
      for (int j = 0; j < 8; j++)
        x[j] = bswap512(_mm512_loadu_si512((const void *)(in + i + 64 * j)));
    if (!enc || i) y = ghash_zmm(y, x, hp, hk);
    for (int r = 1; r < nr; r++) {
      __m512i kr = kw[r];
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++) b[j] = _mm512_aesenc_epi128(b[j], kr);
    }
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
      __m512i d = _mm512_loadu_si512((const void *)(in + i + 64 * j));
      __m512i o = _mm512_xor_si512(_mm512_aesenclast_epi128(b[j], kw[nr]), d);
      _mm512_storeu_si512((void *)(out + i + 64 * j), o);
      if (enc) x[j] = bswap512(o);
    }
  }
  if (enc && i) y = ghash_zmm(y, x, hp, hk);
  *cp = _mm_sub_epi32(_mm512_castsi512_si128(c), _mm_set_epi32(0, 0, 0, 1));
  *yp = y;
  return i;
}

/* ---- GCM -------------------------------------------------------------------- */

/* CTR and GHASH over one piece: in[0 .. len) to out, counter c and hash y carried in
 * and out. Only the last piece of a message may end inside a block. */
TGT static inline __attribute__((always_inline)) void
gcm_piece(int enc, int wide, const __m128i *k, int nr, __m128i *cp, __m128i *yp, __m128i h,
          const uint8_t *in, uint8_t *out, size_t len) {
  __m128i c = *cp, y = *yp;
  size_t i = 0;
  /* zmm from 2 KiB: below, its 32 powers of H cost more than its wider steps save */
  if (wide >= 2 && len >= 2048) i = bulk_zmm(enc, k, nr, &c, &y, h, in, out, len);
  if (wide >= 1 && len - i >= 256) i += bulk_wide(enc, k, nr, &c, &y, h, in + i, out + i, len - i);
  if (len - i >= 128) {
    __m128i hp[8], hk[8];
    powers(hp, 8, h);
    for (int p = 0; p < 8; p++) hk[p] = _mm_xor_si128(hp[p], _mm_shuffle_epi32(hp[p], 0x4E));
    __m128i b[8], x[8];
    if (enc) {
      /* encrypt batch i, then each loop hashes batch i while encrypting batch i + 1 */
      ctr8(k, nr, &c, b);
      for (int j = 0; j < 8; j++)
        _mm_storeu_si128((__m128i *)(out + i + 16 * j),
                         _mm_xor_si128(b[j], _mm_loadu_si128((const __m128i *)(in + i + 16 * j))));
      for (; i + 256 <= len; i += 128) {
        for (int j = 0; j < 8; j++)
          x[j] = _mm_loadu_si128((const __m128i *)(out + i + 16 * j));
        ctr8(k, nr, &c, b);
        y = ghash8(y, x, hp, hk);
        for (int j = 0; j < 8; j++)
          _mm_storeu_si128(
              (__m128i *)(out + i + 128 + 16 * j),
              _mm_xor_si128(b[j], _mm_loadu_si128((const __m128i *)(in + i + 128 + 16 * j))));
      }
      for (int j = 0; j < 8; j++) x[j] = _mm_loadu_si128((const __m128i *)(out + i + 16 * j));
      y = ghash8(y, x, hp, hk);
      i += 128;
    } else {
      for (; i + 128 <= len; i += 128) {
        for (int j = 0; j < 8; j++) x[j] = _mm_loadu_si128((const __m128i *)(in + i + 16 * j));
        ctr8(k, nr, &c, b);
        y = ghash8(y, x, hp, hk);
        for (int j = 0; j < 8; j++)
          _mm_storeu_si128((__m128i *)(out + i + 16 * j), _mm_xor_si128(b[j], x[j]));
      }
    }
  }
  for (; i + 16 <= len; i += 16) {
    __m128i x = _mm_loadu_si128((const __m128i *)(in + i));
    __m128i o = _mm_xor_si128(x, ctr1(k, nr, &c));
    _mm_storeu_si128((__m128i *)(out + i), o);
    y = gfmul(_mm_xor_si128(y, bswap128(enc ? o : x)), h);
  }
  if (i < len) {
    size_t n = len - i;
    uint8_t pad[16] = {0}, ct[16] = {0};
    memcpy(pad, in + i, n);
    if (!enc) memcpy(ct, pad, n); /* before out (maybe == in) is written */
    __m128i x = _mm_loadu_si128((const __m128i *)pad);
    __m128i o = _mm_xor_si128(x, ctr1(k, nr, &c));
    _mm_storeu_si128((__m128i *)pad, o);
    memcpy(out + i, pad, n);
    if (enc) memcpy(ct, pad, n);
    y = gfmul(_mm_xor_si128(y, bswap128(_mm_loadu_si128((const __m128i *)ct))), h);
  }
  *cp = c;
  *yp = y;
}

/* The whole message: in[0 .. len) then, when len2 > 0 (len then a multiple of 16),
 * in2[0 .. len2), to out and out2. */
TGT static inline __attribute__((always_inline)) void
gcm_body(int enc, int wide, const uint8_t *rk, int nr, const uint8_t iv[12], const uint8_t *aad,
         size_t aad_len, const uint8_t *in, uint8_t *out, size_t len, const uint8_t *in2,
         uint8_t *out2, size_t len2, uint8_t full_tag[16]) {
  __m128i k[15];
  if (nr < 10 || nr > 14) __builtin_unreachable(); /* callers pass 10, 12 or 14 */
  for (int i = 0; i <= nr; i++) k[i] = _mm_loadu_si128((const __m128i *)(rk + 16 * i));
  uint8_t j0b[16];
  memcpy(j0b, iv, 12);
  j0b[12] = j0b[13] = j0b[14] = 0;
  j0b[15] = 1;
  __m128i j0 = _mm_loadu_si128((const __m128i *)j0b);
  __m128i c = bswap128(j0); /* counter 1; data starts at 2 */
  __m128i h = bswap128(aes1(k, nr, _mm_setzero_si128()));
  __m128i y = _mm_setzero_si128();
  if (aad_len) y = ghash_bytes(y, h, aad, aad_len);
  if (len) gcm_piece(enc, wide, k, nr, &c, &y, h, in, out, len);
  if (len2) gcm_piece(enc, wide, k, nr, &c, &y, h, in2, out2, len2);
  len += len2;
  __m128i lens = _mm_set_epi64x((long long)((uint64_t)aad_len * 8), (long long)((uint64_t)len * 8));
  y = gfmul(_mm_xor_si128(y, lens), h);
  _mm_storeu_si128((__m128i *)full_tag, _mm_xor_si128(bswap128(y), aes1(k, nr, j0)));
}

/* The same code compiled twice: for SSE4.1 (16 xmm registers) and, picked at run time,
 * with AVX-512VL (VEX/EVEX three-operand forms and 32 registers: the 8 counter blocks,
 * 8 ciphertext blocks, round key and GHASH sums stay in registers). */
#define GCM_ARGS                                                                            \
  int enc, const uint8_t *rk, int nr, const uint8_t iv[12], const uint8_t *aad,             \
      size_t aad_len, const uint8_t *in, uint8_t *out, size_t len, const uint8_t *in2,      \
      uint8_t *out2, size_t len2, uint8_t full_tag[16]
TGT static void gcm_sse(GCM_ARGS) {
  gcm_body(enc, 0, rk, nr, iv, aad, aad_len, in, out, len, in2, out2, len2, full_tag);
}

__attribute__((target("aes,pclmul,ssse3,sse4.1,avx,avx2,avx512f,avx512vl"))) static void
gcm_avx512(GCM_ARGS) {
  gcm_body(enc, wide_ok(), rk, nr, iv, aad, aad_len, in, out, len, in2, out2, len2, full_tag);
}

static void gcm128(GCM_ARGS) {
  if (__builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2"))
    gcm_avx512(enc, rk, nr, iv, aad, aad_len, in, out, len, in2, out2, len2, full_tag);
  else
    gcm_sse(enc, rk, nr, iv, aad, aad_len, in, out, len, in2, out2, len2, full_tag);
}

void ews_aes_gcm(int enc, const uint8_t *rk, int nr, const uint8_t iv[12], const uint8_t *aad,
                 size_t aad_len, const uint8_t *in, uint8_t *out, size_t len, uint8_t *tag,
                 size_t tag_len) {
  uint8_t t[16];
  gcm128(enc, rk, nr, iv, aad, aad_len, in, out, len, NULL, NULL, 0, t);
  memcpy(tag, t, tag_len);
}

void ews_aes_gcm_seal2(const uint8_t *rk, int nr, const uint8_t iv[12], const uint8_t *aad,
                       size_t aad_len, const uint8_t *in, uint8_t *out, size_t len,
                       const uint8_t *in2, uint8_t *out2, size_t len2, uint8_t *tag,
                       size_t tag_len) {
  uint8_t t[16];
  gcm128(1, rk, nr, iv, aad, aad_len, in, out, len, in2, out2, len2, t);
  memcpy(tag, t, tag_len);
}

int ews_aes_gcm_open(const uint8_t *rk, int nr, const uint8_t iv[12], const uint8_t *aad,
                     size_t aad_len, const uint8_t *in, uint8_t *out, size_t len,
                     const uint8_t *tag, size_t tag_len) {
  uint8_t t[16];
  gcm128(0, rk, nr, iv, aad, aad_len, in, out, len, NULL, NULL, 0, t);
  uint8_t diff = 0;
  for (size_t i = 0; i < tag_len; i++) diff |= (uint8_t)(t[i] ^ tag[i]);
  if (diff) {
    /* volatile stores: not optimised away, the caller must not see plaintext */
    volatile uint8_t *v = out;
    for (size_t i = 0; i < len; i++) v[i] = 0;
    return -1;
  }
  return 0;
}
