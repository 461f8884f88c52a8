/* hist.c — the latency histogram: log-linear buckets over nanoseconds (1 ns steps
 * below 1024 ns, then 512 sub-buckets per power of two), quantiles and mean. */
#include <string.h>

#include "bench.h"

hist_t g_hist;

void hist_reset(hist_t *h) {
  memset(h, 0, sizeof(*h));
  h->min_ns = UINT64_MAX;
}

/* Midpoint of the values that map to bucket i. */
static double bucket_value(unsigned i) {
  const unsigned half = 1u << (HIST_SUB_BITS - 1);
  if (i < (1u << HIST_SUB_BITS)) return (double)i;
  unsigned shift = i / half - 1;
  uint64_t mant = i - (uint64_t)shift * half;
  uint64_t lo = mant << shift;
  return (double)lo + (double)((1ull << shift) - 1) / 2.0;
}

double hist_quantile_us(const hist_t *h, double q) {
  if (h->total == 0) return 0;
  uint64_t rank = (uint64_t)(q * (double)h->total + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > h->total) rank = h->total;
  uint64_t seen = 0;
  for (unsigned i = 0; i < HIST_BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= rank) {
      double v = bucket_value(i);
      if (v > (double)h->max_ns) v = (double)h->max_ns;
      if (v < (double)h->min_ns) v = (double)h->min_ns;
      return v / 1000.0;
    }
  }
  return (double)h->max_ns / 1000.0;
}

double hist_mean_us(const hist_t *h) {
  return h->total ? h->sum_ns / (double)h->total / 1000.0 : 0;
}

double hist_max_us(const hist_t *h) { return h->total ? (double)h->max_ns / 1000.0 : 0; }
