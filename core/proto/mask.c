/* mask.c — RFC 6455 section 5.3 masking: XOR of a payload with a 4-byte key, in
 * place (ews_mask, frame.h). Every masked byte a server receives goes through here
 * (a 16 KiB message is unmasked right after it lands in the read buffer), so on
 * x86-64 the bulk of a long run is done 64 bytes at a time with AVX-512 (CPUs that
 * also have VAES) or AVX2 (picked at run time), on 64-byte aligned stores; the
 * unaligned head, the tail and short runs take the portable word loop. */
#include "frame.h"

#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define EWS_MASK_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

/* Bytewise up to 8-byte alignment, then 8 bytes at a time. */
static void mask_words(uint8_t *p, size_t n, const uint8_t key[4], size_t offset) {
  /* Head: bytewise up to 8-byte alignment so the word loop does aligned accesses
   * (memcpy keeps it legal either way; alignment just keeps it fast everywhere). */
  while (n && ((uintptr_t)p & 7)) {
    *p++ ^= key[offset];
    offset = (offset + 1) & 3;
    n--;
  }
  if (n >= 8) {
    /* The key rotated to start at `offset`, repeated to 8 bytes in memory order:
     * byte-order independent, and a word covers a whole number of key periods so
     * the offset is unchanged after each word. */
    uint8_t kb[8];
    for (int i = 0; i < 8; i++) kb[i] = key[(offset + (size_t)i) & 3];
    uint64_t k;
    memcpy(&k, kb, 8);
    while (n >= 32) {
      uint64_t w[4];
      memcpy(w, p, 32);
      w[0] ^= k;
      w[1] ^= k;
      w[2] ^= k;
      w[3] ^= k;
      memcpy(p, w, 32);
      p += 32;
      n -= 32;
    }
    while (n >= 8) {
      uint64_t w;
      memcpy(&w, p, 8);
      w ^= k;
      memcpy(p, &w, 8);
      p += 8;
      n -= 8;
    }
  }
  while (n) {
    *p++ ^= key[offset];
    offset = (offset + 1) & 3;
    n--;
  }
}

#ifdef EWS_MASK_X86
/* Below this many bytes the word loop is as fast (the head and tail dominate). */
#define EWS_MASK_WIDE_MIN 256

/* p is 64-byte aligned, n a multiple of 64; k is the key as it lies in memory. */
__attribute__((target("avx512f"))) static void body_avx512(uint8_t *p, size_t n, uint32_t k) {
  const __m512i K = _mm512_set1_epi32((int)k);
  for (; n >= 256; p += 256, n -= 256) {
    __m512i a = _mm512_load_si512(p), b = _mm512_load_si512(p + 64);
    __m512i c = _mm512_load_si512(p + 128), d = _mm512_load_si512(p + 192);
    _mm512_store_si512(p, _mm512_xor_si512(a, K));
    _mm512_store_si512(p + 64, _mm512_xor_si512(b, K));
    _mm512_store_si512(p + 128, _mm512_xor_si512(c, K));
    _mm512_store_si512(p + 192, _mm512_xor_si512(d, K));
  }
  for (; n; p += 64, n -= 64) _mm512_store_si512(p, _mm512_xor_si512(_mm512_load_si512(p), K));
}

__attribute__((target("avx2"))) static void body_avx2(uint8_t *p, size_t n, uint32_t k) {
  const __m256i K = _mm256_set1_epi32((int)k);
  for (; n >= 128; p += 128, n -= 128) {
    __m256i a = _mm256_load_si256((const __m256i *)p);
    __m256i b = _mm256_load_si256((const __m256i *)(p + 32));
    __m256i c = _mm256_load_si256((const __m256i *)(p + 64));
    __m256i d = _mm256_load_si256((const __m256i *)(p + 96));
    _mm256_store_si256((__m256i *)p, _mm256_xor_si256(a, K));
    _mm256_store_si256((__m256i *)(p + 32), _mm256_xor_si256(b, K));
    _mm256_store_si256((__m256i *)(p + 64), _mm256_xor_si256(c, K));
    _mm256_store_si256((__m256i *)(p + 96), _mm256_xor_si256(d, K));
  }
  for (; n; p += 32, n -= 32)
    _mm256_store_si256((__m256i *)p, _mm256_xor_si256(_mm256_load_si256((const __m256i *)p), K));
}

static int cpu_variant = -1; /* what the CPU allows, found once */
static int max_variant = 2;  /* ews_mask_set_variant() */

static int variant(void) {
  int v = __atomic_load_n(&cpu_variant, __ATOMIC_RELAXED);
  if (v < 0) {
    /* __builtin_cpu_supports includes the OS's support for the registers' state.
     * 512-bit registers only where VAES exists too (CPUID leaf 7, ECX bit 9: Ice Lake
     * and later): on the first AVX-512 CPUs (Skylake-SP, Cascade Lake) any zmm use
     * lowers the core's clock for a while, which would cost the rest of the loop more
     * than 64-byte steps save here (glibc avoids AVX-512 there for the same reason). */
    unsigned a, b, c = 0, d;
    int vaes = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 9));
    v = __builtin_cpu_supports("avx512f") && vaes ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
    __atomic_store_n(&cpu_variant, v, __ATOMIC_RELAXED);
  }
  int m = __atomic_load_n(&max_variant, __ATOMIC_RELAXED);
  return v < m ? v : m < 0 ? 0 : m;
}
#endif

int ews_mask_variant(void) {
#ifdef EWS_MASK_X86
  return variant();
#else
  return 0;
#endif
}

void ews_mask_set_variant(int max_variant_) {
#ifdef EWS_MASK_X86
  __atomic_store_n(&max_variant, max_variant_, __ATOMIC_RELAXED);
#else
  (void)max_variant_;
#endif
}

void ews_mask(uint8_t *p, size_t n, const uint8_t key[4], size_t offset) {
  offset &= 3;
#ifdef EWS_MASK_X86
  int v;
  if (n >= EWS_MASK_WIDE_MIN && (v = variant()) > 0) {
    size_t head = (size_t)(-(uintptr_t)p & 63); /* < 64 <= n - 64 */
    mask_words(p, head, key, offset);
    offset = (offset + head) & 3;
    size_t body = (n - head) & ~(size_t)63; /* a whole number of key periods */
    uint8_t kb[4];
    for (int i = 0; i < 4; i++) kb[i] = key[(offset + (size_t)i) & 3];
    uint32_t k;
    memcpy(&k, kb, 4);
    if (v == 2) body_avx512(p + head, body, k);
    else body_avx2(p + head, body, k);
    mask_words(p + head + body, n - head - body, key, offset);
    return;
  }
#endif
  mask_words(p, n, key, offset);
}
