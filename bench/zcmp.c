/* zcmp.c — `edgews-bench zcmp`: zlib against libdeflate on the benchmark's JSON
 * messages, each compressed on its own as `shared` permessage-deflate does (window 15,
 * memLevel 8, no context takeover) and inflated on its own as a message without
 * context takeover is: compression ratio, CPU (thread CPU time) per message for
 * compression and decompression, at the same levels. One thread, no network.
 *
 *   edgews-bench zcmp [-s SIZE[,SIZE...]] [--levels 1,6] [--messages N]
 *
 * zlib compresses with deflateReset + deflate(Z_SYNC_FLUSH) (what proto/deflate.c
 * does), libdeflate with libdeflate_deflate_compress (a whole buffer, ending with a
 * final block). Inflation: zlib with inflateReset + inflate(Z_SYNC_FLUSH) over the
 * message and the 00 00 FF FF tail, libdeflate with libdeflate_deflate_decompress_ex
 * over the message, the tail and an empty final block (proto/deflate.c's fast path),
 * each on the output of its own compressor and on zlib's (what clients send). */
#include <getopt.h>
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "bench.h"

static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct {
  uint8_t *p;
  size_t n;
} blob_t;

static int zlib_compress(z_stream *z, const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                         size_t *len) {
  deflateReset(z);
  z->next_in = (Bytef *)in;
  z->avail_in = (uInt)n;
  z->next_out = out;
  z->avail_out = (uInt)cap;
  if (deflate(z, Z_SYNC_FLUSH) != Z_OK || z->avail_in) return -1;
  *len = cap - z->avail_out - 4; /* without 00 00 FF FF */
  return 0;
}

static int zlib_inflate(z_stream *z, const uint8_t *in, size_t n, uint8_t *out, size_t cap,
                        size_t *len) {
  static const uint8_t tail[4] = {0, 0, 0xff, 0xff};
  inflateReset(z);
  z->next_out = out;
  z->avail_out = (uInt)cap;
  z->next_in = (Bytef *)in;
  z->avail_in = (uInt)n;
  int rc = inflate(z, Z_SYNC_FLUSH);
  if (rc != Z_OK && rc != Z_BUF_ERROR) return -1;
  z->next_in = (Bytef *)tail;
  z->avail_in = 4;
  rc = inflate(z, Z_SYNC_FLUSH);
  if (rc != Z_OK && rc != Z_BUF_ERROR) return -1;
  *len = cap - z->avail_out;
  return 0;
}

static int ld_inflate(struct libdeflate_decompressor *d, uint8_t *scratch, const uint8_t *in,
                      size_t n, uint8_t *out, size_t cap, size_t *len) {
  static const uint8_t end[9] = {0, 0, 0xff, 0xff, 0x01, 0, 0, 0xff, 0xff};
  memcpy(scratch, in, n);
  memcpy(scratch + n, end, sizeof end);
  size_t used;
  if (libdeflate_deflate_decompress_ex(d, scratch, n + sizeof end, out, cap, &used, len) !=
      LIBDEFLATE_SUCCESS)
    return -1;
  return used == n + sizeof end ? 0 : -1;
}

static int parse_list(const char *s, size_t *v, int max) {
  int k = 0;
  while (*s && k < max) {
    char *e;
    double x = strtod(s, &e);
    if (e == s || x <= 0) return -1;
    if (*e == 'k' || *e == 'K') x *= 1024, e++;
    v[k++] = (size_t)x;
    s = *e == ',' ? e + 1 : e;
  }
  return k;
}

static void run(size_t size, int level, int messages) {
  g_opt.payload = PAYLOAD_JSON;
  g_opt.size = size;
  if (payload_init() != 0) {
    fprintf(stderr, "zcmp: payload_init failed\n");
    exit(1);
  }
  int nv = messages;
  blob_t *msg = calloc((size_t)nv, sizeof *msg), *zc = calloc((size_t)nv, sizeof *zc),
         *lc = calloc((size_t)nv, sizeof *lc);
  size_t cap = size + size / 8 + 1024;
  uint8_t *out = malloc(cap), *scratch = malloc(cap + 16);
  z_stream zd, zi;
  memset(&zd, 0, sizeof zd);
  memset(&zi, 0, sizeof zi);
  deflateInit2(&zd, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  inflateInit2(&zi, -15);
  struct libdeflate_compressor *lcomp = libdeflate_alloc_compressor(level);
  struct libdeflate_decompressor *ldec = libdeflate_alloc_decompressor();
  for (int i = 0; i < nv; i++) {
    msg[i].p = (uint8_t *)payload_json((uint64_t)i, 0, NULL);
    msg[i].n = size;
  }
  size_t zin = 0, zout = 0, lout = 0;
  /* compression */
  double t0 = cpu_now();
  for (int i = 0; i < nv; i++) {
    size_t len;
    if (zlib_compress(&zd, msg[i].p, msg[i].n, out, cap, &len) != 0) exit(1);
    zc[i].p = malloc(len);
    memcpy(zc[i].p, out, len);
    zc[i].n = len;
    zin += msg[i].n;
    zout += len;
  }
  double tz = cpu_now() - t0;
  t0 = cpu_now();
  for (int i = 0; i < nv; i++) {
    size_t len = libdeflate_deflate_compress(lcomp, msg[i].p, msg[i].n, out, cap);
    if (!len) exit(1);
    lc[i].p = malloc(len);
    memcpy(lc[i].p, out, len);
    lc[i].n = len;
    lout += len;
  }
  double tl = cpu_now() - t0;
  /* decompression: zlib and libdeflate on zlib's output; libdeflate on its own */
  double tzi, tli;
  int bad = 0;
  t0 = cpu_now();
  for (int i = 0; i < nv; i++) {
    size_t len;
    if (zlib_inflate(&zi, zc[i].p, zc[i].n, out, cap, &len) != 0 || len != msg[i].n ||
        memcmp(out, msg[i].p, len) != 0)
      bad++;
  }
  tzi = cpu_now() - t0;
  t0 = cpu_now();
  for (int i = 0; i < nv; i++) {
    size_t len;
    if (ld_inflate(ldec, scratch, zc[i].p, zc[i].n, out, cap, &len) != 0 || len != msg[i].n ||
        memcmp(out, msg[i].p, len) != 0)
      bad++;
  }
  tli = cpu_now() - t0;
  for (int i = 0; i < nv; i++) {
    size_t len;
    if (libdeflate_deflate_decompress(ldec, lc[i].p, lc[i].n, out, cap, &len) !=
            LIBDEFLATE_SUCCESS ||
        len != msg[i].n || memcmp(out, msg[i].p, len) != 0)
      bad++;
  }
  printf("| %zu B | %d | %.2f | %.2f | %.1f | %.1f | %.2fx | %.1f | %.1f | %.2fx |%s\n", size,
         level, (double)zin / (double)zout, (double)zin / (double)lout, tz / nv * 1e6,
         tl / nv * 1e6, tz / tl, tzi / nv * 1e6, tli / nv * 1e6, tzi / tli,
         bad ? " MISMATCH" : "");
  for (int i = 0; i < nv; i++) {
    free(zc[i].p);
    free(lc[i].p);
  }
  free(msg);
  free(zc);
  free(lc);
  free(out);
  free(scratch);
  deflateEnd(&zd);
  inflateEnd(&zi);
  libdeflate_free_compressor(lcomp);
  libdeflate_free_decompressor(ldec);
  payload_free();
  if (bad) exit(1);
}

int zcmp_main(int argc, char **argv) {
  size_t sizes[8] = {1024, 16384};
  size_t levels[8] = {1, 6};
  int ns = 2, nl = 2, messages = 1024;
  static const struct option longopts[] = {{"size", required_argument, NULL, 's'},
                                           {"levels", required_argument, NULL, 'l'},
                                           {"messages", required_argument, NULL, 'm'},
                                           {NULL, 0, NULL, 0}};
  optind = 2;
  int o;
  while ((o = getopt_long(argc, argv, "s:l:m:", longopts, NULL)) != -1) {
    switch (o) {
      case 's': ns = parse_list(optarg, sizes, 8); break;
      case 'l': nl = parse_list(optarg, levels, 8); break;
      case 'm': messages = atoi(optarg); break;
      default: return 2;
    }
    if (ns <= 0 || nl <= 0 || messages <= 0) {
      fprintf(stderr, "zcmp: bad option\n");
      return 2;
    }
  }
  printf("| message | level | ratio zlib | ratio libdeflate | compress zlib µs | compress "
         "libdeflate µs | speed-up | inflate zlib µs | inflate libdeflate µs | speed-up |\n");
  printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (int i = 0; i < ns; i++)
    for (int j = 0; j < nl; j++) run(sizes[i], (int)levels[j], messages);
  return 0;
}
