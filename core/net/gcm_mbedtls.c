/* gcm_mbedtls.c — mbedtls_gcm_crypt_and_tag() and mbedtls_gcm_auth_decrypt() routed to
 * our AES-GCM (aes_gcm.c) where it applies, and to libmbedcrypto's own functions
 * otherwise (see aes_gcm.h).
 *
 * How it is reached: these definitions are in the executable, which comes first in
 * symbol lookup, so they interpose the shared library's: tls.c's calls bind to them at
 * link time, and libmbedcrypto's own calls (mbedtls_cipher_auth_encrypt_ext /
 * _decrypt_ext, which mbedTLS's record layer uses during the handshake) go through its
 * PLT and land here too. test_net_aes_gcm checks both paths with a call counter, and
 * the CTest gcm_interposed_in_server that edgews-lua exports both symbols.
 *
 * When: the context's cipher is AES (mbedtls_gcm_setkey with MBEDTLS_CIPHER_ID_AES:
 * an AES ECB cipher_info, the mbedtls_aes_context holding nr and the FIPS-197
 * encryption schedule at rk), the IV is 12 bytes, the tag 4..16 bytes, the buffers do
 * not overlap other than in place, and the CPU has AES-NI and PCLMULQDQ. Everything
 * else (ARIA, Camellia, other IV sizes, bad arguments) goes to the library, which
 * checks and reports as before. Written for mbedTLS 2.28's public structures. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <mbedtls/aes.h>
#include <mbedtls/gcm.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/version.h>

#include "net/aes_gcm.h"

#if MBEDTLS_VERSION_NUMBER < 0x021C0000 || MBEDTLS_VERSION_NUMBER >= 0x03000000
#error "gcm_mbedtls.c reads mbedTLS 2.28's gcm and aes contexts"
#endif

typedef int (*crypt_and_tag_fn)(mbedtls_gcm_context *, int, size_t, const unsigned char *,
                                size_t, const unsigned char *, size_t, const unsigned char *,
                                unsigned char *, size_t, unsigned char *);
typedef int (*auth_decrypt_fn)(mbedtls_gcm_context *, size_t, const unsigned char *, size_t,
                               const unsigned char *, size_t, const unsigned char *, size_t,
                               const unsigned char *, unsigned char *);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static crypt_and_tag_fn lib_crypt_and_tag;
static auth_decrypt_fn lib_auth_decrypt;
static int fast_ok;
static _Thread_local uint64_t calls;

static void resolve(void) {
  lib_crypt_and_tag = (crypt_and_tag_fn)dlsym(RTLD_NEXT, "mbedtls_gcm_crypt_and_tag");
  lib_auth_decrypt = (auth_decrypt_fn)dlsym(RTLD_NEXT, "mbedtls_gcm_auth_decrypt");
  fast_ok = ews_aes_gcm_supported();
}

uint64_t ews_aes_gcm_calls(void) {
  return calls;
}

/* The AES context behind ctx when our code can take this call, else NULL. */
static const mbedtls_aes_context *fast_aes(const mbedtls_gcm_context *ctx, size_t iv_len,
                                          size_t tag_len, const unsigned char *in,
                                          const unsigned char *out, size_t length) {
  pthread_once(&once, resolve);
  if (!fast_ok || iv_len != 12 || tag_len < 4 || tag_len > 16) return NULL;
  if (length > (((uint64_t)1) << 36) - 32) return NULL;
  if (length && (!in || !out)) return NULL;
  if (out > in && (size_t)(out - in) < length) return NULL;
  if (in > out && (size_t)(in - out) < length) return NULL;
  const mbedtls_cipher_info_t *ci = ctx->cipher_ctx.cipher_info;
  if (!ci || !ctx->cipher_ctx.cipher_ctx) return NULL;
  if (ci->type != MBEDTLS_CIPHER_AES_128_ECB && ci->type != MBEDTLS_CIPHER_AES_192_ECB &&
      ci->type != MBEDTLS_CIPHER_AES_256_ECB)
    return NULL;
  const mbedtls_aes_context *aes = ctx->cipher_ctx.cipher_ctx;
  int want = ci->type == MBEDTLS_CIPHER_AES_128_ECB   ? 10
             : ci->type == MBEDTLS_CIPHER_AES_192_ECB ? 12
                                                      : 14;
  if (aes->nr != want || !aes->rk) return NULL;
  return aes;
}

int mbedtls_gcm_crypt_and_tag(mbedtls_gcm_context *ctx, int mode, size_t length,
                              const unsigned char *iv, size_t iv_len, const unsigned char *add,
                              size_t add_len, const unsigned char *input, unsigned char *output,
                              size_t tag_len, unsigned char *tag) {
  const mbedtls_aes_context *aes = fast_aes(ctx, iv_len, tag_len, input, output, length);
  if (!aes || !iv || !tag || (add_len && !add) ||
      (mode != MBEDTLS_GCM_ENCRYPT && mode != MBEDTLS_GCM_DECRYPT))
    return ews_gcm_lib_crypt_and_tag(ctx, mode, length, iv, iv_len, add, add_len, input, output,
                                     tag_len, tag);
  calls++;
  ews_aes_gcm(mode == MBEDTLS_GCM_ENCRYPT, (const uint8_t *)aes->rk, aes->nr, iv, add, add_len,
              input, output, length, tag, tag_len);
  return 0;
}

int mbedtls_gcm_auth_decrypt(mbedtls_gcm_context *ctx, size_t length, const unsigned char *iv,
                             size_t iv_len, const unsigned char *add, size_t add_len,
                             const unsigned char *tag, size_t tag_len,
                             const unsigned char *input, unsigned char *output) {
  const mbedtls_aes_context *aes = fast_aes(ctx, iv_len, tag_len, input, output, length);
  if (!aes || !iv || !tag || (add_len && !add))
    return ews_gcm_lib_auth_decrypt(ctx, length, iv, iv_len, add, add_len, tag, tag_len, input,
                                    output);
  calls++;
  if (ews_aes_gcm_open((const uint8_t *)aes->rk, aes->nr, iv, add, add_len, input, output,
                       length, tag, tag_len))
    return MBEDTLS_ERR_GCM_AUTH_FAILED;
  return 0;
}

int ews_gcm_lib_crypt_and_tag(void *ctx, int mode, size_t length, const unsigned char *iv,
                              size_t iv_len, const unsigned char *add, size_t add_len,
                              const unsigned char *input, unsigned char *output, size_t tag_len,
                              unsigned char *tag) {
  pthread_once(&once, resolve);
  if (!lib_crypt_and_tag) return MBEDTLS_ERR_GCM_BAD_INPUT;
  return lib_crypt_and_tag(ctx, mode, length, iv, iv_len, add, add_len, input, output, tag_len,
                           tag);
}

int ews_gcm_lib_auth_decrypt(void *ctx, size_t length, const unsigned char *iv, size_t iv_len,
                             const unsigned char *add, size_t add_len, const unsigned char *tag,
                             size_t tag_len, const unsigned char *input, unsigned char *output) {
  /* The library's mbedtls_gcm_auth_decrypt() calls mbedtls_gcm_crypt_and_tag() through
   * the PLT, i.e. ours: the reference does what it does (2.28 gcm.c) with the library's
   * crypt_and_tag. */
  pthread_once(&once, resolve);
  if (!lib_crypt_and_tag) return MBEDTLS_ERR_GCM_BAD_INPUT;
  unsigned char check[16];
  if (tag_len > 16) return MBEDTLS_ERR_GCM_BAD_INPUT;
  int r = lib_crypt_and_tag(ctx, MBEDTLS_GCM_DECRYPT, length, iv, iv_len, add, add_len, input,
                            output, tag_len, check);
  if (r) return r;
  unsigned char diff = 0;
  for (size_t i = 0; i < tag_len; i++) diff |= tag[i] ^ check[i];
  if (diff) {
    mbedtls_platform_zeroize(output, length);
    return MBEDTLS_ERR_GCM_AUTH_FAILED;
  }
  return 0;
}

int ews_gcm_seal_split(void *ctx_, const unsigned char iv[12], const unsigned char *add,
                       size_t add_len, unsigned char *out, size_t len,
                       const unsigned char *in2, size_t len2, unsigned char *tag,
                       size_t tag_len) {
  mbedtls_gcm_context *ctx = ctx_;
  const unsigned char *end2 = in2 + len2, *o = out, *oend = out + len + len2;
  int apart = !len2 || end2 <= o || in2 >= oend; /* in2 must not overlap the record */
  const mbedtls_aes_context *aes =
      len % 16 == 0 && apart ? fast_aes(ctx, 12, tag_len, out, out, len + len2) : NULL;
  if (!aes || !iv || !tag || (add_len && !add)) {
    if (len2) memmove(out + len, in2, len2);
    return mbedtls_gcm_crypt_and_tag(ctx, MBEDTLS_GCM_ENCRYPT, len + len2, iv, 12, add, add_len,
                                     out, out, tag_len, tag);
  }
  calls++;
  ews_aes_gcm_seal2((const uint8_t *)aes->rk, aes->nr, iv, add, add_len, out, out, len, in2,
                    out + len, len2, tag, tag_len);
  return 0;
}
