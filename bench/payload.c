/* payload.c — message payloads of edgews-bench, deterministic per (connection,
 * sequence number) so that every echo can be verified:
 *  - pattern (default): a 16-byte token (hex of sequence number and connection id)
 *    followed by a slice of a random pattern chosen by the sequence number;
 *    printable ASCII for text, any byte for binary. Hardly compressible.
 *  - json: JSON-like text as an application would send it. V distinct messages
 *    ("variants", V = 1024, fewer for messages over 64 KiB so that they take at
 *    most 64 MiB) are built at start: an array that starts with {"v":N} and goes
 *    on with objects picked by a hash of (variant, position) from a pool of 1024
 *    objects with the same keys and varying numbers and strings, padded with spaces
 *    to the exact size. Message `seq` of connection `id` is variant
 *    (seq + 7919 * id) mod V: consecutive messages of a connection differ, and
 *    connections are out of step. Everything comes from a fixed seed, so every run
 *    (and every server) sees the same data and the same compressibility. A fixed
 *    set of messages also lets the generator compress each one only once
 *    (pmd.c), which keeps the generator's CPU per message well below the server's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

uint8_t *g_pattern;

#define PATTERN_SLACK 256
#define POOL_N 1024

static char *g_pool;             /* the objects, back to back */
static uint8_t *g_variants;      /* g_nvariants messages of g_opt.size bytes */
static uint32_t g_nvariants;
static uint32_t g_off[POOL_N];   /* offset of object i in g_pool */
static uint16_t g_len[POOL_N];   /* its length */
static uint16_t g_min_len;       /* shortest object */

/* The token of message `seq` on connection `id`: 16 hex digits of
 * (seq << 20 | id), least significant digit first, so that a payload shorter than
 * 16 bytes still carries the low bits of the sequence number. */
void payload_token(uint8_t tok[TOKEN_LEN], uint64_t seq, uint32_t id) {
  static const char hex[] = "0123456789abcdef";
  uint64_t v = seq << 20 | (id & 0xFFFFF);
  for (int i = 0; i < TOKEN_LEN; i++, v >>= 4) tok[i] = (uint8_t)hex[v & 15];
}

uint32_t payload_pattern_offset(uint64_t seq, uint32_t id) {
  return (uint32_t)(((seq * 0x9E3779B97F4A7C15ULL) >> 32 ^ id) % 251);
}

static uint64_t mix64(uint64_t z) { /* splitmix64 finaliser */
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static int build_pool(void) {
  static const char *events[] = {"trade", "quote", "cancel", "fill", "order", "update"};
  static const char *syms[] = {"BTC-USD", "ETH-USD", "SOL-USD", "EUR-USD", "AAPL", "MSFT",
                               "NVDA", "TSLA"};
  size_t cap = POOL_N * 200;
  g_pool = malloc(cap);
  if (!g_pool) return -1;
  size_t off = 0;
  uint64_t s = 0x5EEDF00DULL;
  g_min_len = UINT16_MAX;
  for (int i = 0; i < POOL_N; i++) {
    uint64_t r1 = mix64(s += 0x9E3779B97F4A7C15ULL), r2 = mix64(s += 0x9E3779B97F4A7C15ULL);
    int n = snprintf(g_pool + off, cap - off,
                     "{\"id\":%u,\"user\":\"user_%04u\",\"event\":\"%s\",\"symbol\":\"%s\","
                     "\"price\":%u.%02u,\"qty\":%u,\"side\":\"%s\",\"ts\":%llu,\"live\":%s}",
                     (unsigned)(100000 + r1 % 900000), (unsigned)(r1 >> 20) % 5000,
                     events[(r1 >> 33) % 6], syms[(r1 >> 37) % 8],
                     (unsigned)(r2 % 50000), (unsigned)(r2 >> 16) % 100,
                     (unsigned)(1 + (r2 >> 24) % 500), (r2 >> 40) & 1 ? "buy" : "sell",
                     1764115200000ULL + (unsigned long long)i * 1000 + (r2 >> 44) % 1000,
                     (r1 >> 50) & 1 ? "true" : "false");
    if (n <= 0 || (size_t)n >= cap - off) return -1;
    g_off[i] = (uint32_t)off;
    g_len[i] = (uint16_t)n;
    if (n < g_min_len) g_min_len = (uint16_t)n;
    off += (size_t)n;
  }
  return 0;
}

static void fill_json(uint8_t *dst, size_t size, uint32_t v);

/* {"type":"echo","v":<v>,"d":"<letters>"} padded to exactly `size` bytes. */
static void fill_route(uint8_t *dst, size_t size, uint32_t v) {
  char head[64];
  int hl = snprintf(head, sizeof head, "{\"type\":\"echo\",\"v\":%u,\"d\":\"", v);
  memcpy(dst, head, (size_t)hl);
  uint64_t h = mix64((uint64_t)v + 1);
  for (size_t i = (size_t)hl; i + 2 < size; i++) dst[i] = (uint8_t)('a' + mix64(h + i) % 26);
  dst[size - 2] = '"';
  dst[size - 1] = '}';
}

int payload_init(void) {
  if (g_opt.payload != PAYLOAD_PATTERN) {
    if (build_pool() != 0) return -1;
    size_t n = (64u << 20) / g_opt.size;
    g_nvariants = (uint32_t)(n > 1024 ? 1024 : n < 16 ? 16 : n);
    g_variants = malloc((size_t)g_nvariants * g_opt.size);
    if (!g_variants) return -1;
    for (uint32_t v = 0; v < g_nvariants; v++) {
      if (g_opt.payload == PAYLOAD_ROUTE) fill_route(g_variants + (size_t)v * g_opt.size, g_opt.size, v);
      else fill_json(g_variants + (size_t)v * g_opt.size, g_opt.size, v);
    }
    return 0;
  }
  size_t plen = g_opt.size + PATTERN_SLACK;
  g_pattern = malloc(plen);
  if (!g_pattern) return -1;
  for (size_t i = 0; i < plen; i++) {
    uint64_t r = rng64();
    g_pattern[i] = g_opt.binary ? (uint8_t)(r >> 32) : (uint8_t)(' ' + (r >> 32) % 95);
  }
  return 0;
}

void payload_free(void) {
  free(g_pattern);
  free(g_pool);
  free(g_variants);
  g_pattern = NULL;
  g_pool = NULL;
  g_variants = NULL;
}

static size_t put_u64(char *dst, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) dst[i] = tmp[n - 1 - i];
  return n;
}

static void fill_json(uint8_t *dst, size_t size, uint32_t v) {
  char *d = (char *)dst;
  size_t n = 0;
  memcpy(d, "[{\"v\":", 6);
  n = 6;
  n += put_u64(d + n, v);
  d[n++] = '}';
  /* objects while one more (with its comma) still leaves room for the ']' */
  uint64_t h = mix64((uint64_t)v * 0xD6E8FEB86659FD93ULL + 1);
  for (uint64_t k = 0; n + 1 + g_min_len + 1 <= size; k++) {
    unsigned i = (unsigned)(mix64(h + k) % POOL_N);
    size_t len = g_len[i];
    if (n + 1 + len + 1 > size) {
      /* this one does not fit: the shortest does */
      unsigned j = i;
      while (n + 1 + g_len[j] + 1 > size) j = (j + 1) % POOL_N;
      i = j;
      len = g_len[i];
    }
    d[n++] = ',';
    memcpy(d + n, g_pool + g_off[i], len);
    n += len;
  }
  memset(d + n, ' ', size - 1 - n);
  d[size - 1] = ']';
}

const uint8_t *payload_json(uint64_t seq, uint32_t id, uint32_t *variant) {
  uint32_t v = (uint32_t)((seq + 7919ull * id) % g_nvariants);
  if (variant) *variant = v;
  return g_variants + (size_t)v * g_opt.size;
}

void payload_fill(uint8_t *dst, size_t size, uint64_t seq, uint32_t id) {
  if (g_opt.payload != PAYLOAD_PATTERN) {
    memcpy(dst, payload_json(seq, id, NULL), size);
    return;
  }
  uint8_t tok[TOKEN_LEN];
  payload_token(tok, seq, id);
  memcpy(dst, tok, size < TOKEN_LEN ? size : TOKEN_LEN);
  if (size > TOKEN_LEN)
    memcpy(dst + TOKEN_LEN, g_pattern + payload_pattern_offset(seq, id) + TOKEN_LEN,
           size - TOKEN_LEN);
}
