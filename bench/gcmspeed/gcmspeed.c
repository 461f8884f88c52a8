/* gcmspeed.c — edgews-gcmspeed: AES-GCM speed of our code (net/aes_gcm.c, through
 * mbedtls_gcm_crypt_and_tag / mbedtls_gcm_auth_decrypt as the record layer calls them)
 * against libmbedcrypto's own functions, on one core, CPU time of this thread.
 * Usage: edgews-gcmspeed [bytes=16384] [iterations=20000]. Not a test (speed targets
 * belong in bench/); results in bench/PROFILE.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/gcm.h>

#include "net/aes_gcm.h"

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef int (*seal_fn)(void *, int, size_t, const unsigned char *, size_t, const unsigned char *,
                       size_t, const unsigned char *, unsigned char *, size_t, unsigned char *);
typedef int (*open_fn)(void *, size_t, const unsigned char *, size_t, const unsigned char *,
                       size_t, const unsigned char *, size_t, const unsigned char *,
                       unsigned char *);

static int ours_seal(void *g, int mode, size_t n, const unsigned char *iv, size_t ivn,
                     const unsigned char *a, size_t an, const unsigned char *in,
                     unsigned char *out, size_t tn, unsigned char *tag) {
  return mbedtls_gcm_crypt_and_tag(g, mode, n, iv, ivn, a, an, in, out, tn, tag);
}
static int ours_open(void *g, size_t n, const unsigned char *iv, size_t ivn,
                     const unsigned char *a, size_t an, const unsigned char *tag, size_t tn,
                     const unsigned char *in, unsigned char *out) {
  return mbedtls_gcm_auth_decrypt(g, n, iv, ivn, a, an, tag, tn, in, out);
}

static void run(const char *name, unsigned bits, size_t n, long iters, seal_fn seal,
                open_fn open) {
  unsigned char key[32] = {1, 2, 3}, iv[12] = {4}, aad[13] = {5}, tag[16];
  unsigned char *buf = malloc(n ? n : 1);
  if (!buf) exit(1);
  memset(buf, 0x5a, n);
  mbedtls_gcm_context g;
  mbedtls_gcm_init(&g);
  if (mbedtls_gcm_setkey(&g, MBEDTLS_CIPHER_ID_AES, key, bits)) exit(1);
  double t0 = cpu_now();
  for (long i = 0; i < iters; i++) {
    iv[11] = (unsigned char)i;
    seal(&g, MBEDTLS_GCM_ENCRYPT, n, iv, 12, aad, 13, buf, buf, 16, tag);
  }
  double t1 = cpu_now();
  /* open what was sealed last, repeatedly (in a copy, so each call sees ciphertext) */
  unsigned char *ct = malloc(n ? n : 1);
  if (!ct) exit(1);
  memcpy(ct, buf, n);
  int bad = 0;
  double t2 = cpu_now();
  for (long i = 0; i < iters; i++) bad |= open(&g, n, iv, 12, aad, 13, tag, 16, ct, buf);
  double t3 = cpu_now();
  mbedtls_gcm_free(&g);
  free(buf);
  free(ct);
  double es = (t1 - t0) / (double)iters, ds = (t3 - t2) / (double)iters;
  printf("| %s | AES-%u | %zu | %.0f | %.2f | %.0f | %.2f |%s\n", name, bits, n,
         (double)n / es / 1e6, es * 1e6, (double)n / ds / 1e6, ds * 1e6,
         bad ? " (tag check FAILED)" : "");
}

int main(int argc, char **argv) {
  size_t n = argc > 1 ? (size_t)atol(argv[1]) : 16384;
  long iters = argc > 2 ? atol(argv[2]) : 20000;
  printf("our code: %s\n\n", ews_aes_gcm_supported() ? "AES-NI + PCLMULQDQ" : "not supported here");
  printf("| code | key | bytes | seal MB/s | seal us | open MB/s | open us |\n");
  printf("|---|---|---|---|---|---|---|\n");
  int wide = ews_aes_gcm_wide();
  for (unsigned bits = 128; bits <= 256; bits += 128) {
    static const char *names[] = {"ours, AES-NI/PCLMULQDQ", "ours, VAES/VPCLMULQDQ ymm",
                                  "ours, VAES/VPCLMULQDQ zmm"};
    for (int level = wide; level >= 0; level--) {
      ews_aes_gcm_set_wide(level);
      run(names[level], bits, n, iters, ours_seal, ours_open);
    }
    ews_aes_gcm_set_wide(2);
    run("mbedTLS 2.28", bits, n, iters / 20 + 1, ews_gcm_lib_crypt_and_tag,
        ews_gcm_lib_auth_decrypt);
  }
  return 0;
}
