/* test_hub_ratelimit.c — the token bucket (hub/ratelimit.h): its arithmetic, the
 * per-worker keyed limiter (answers, the sweep, memory O(active keys)), and the
 * shared buckets of hub/buckets.h, which must answer exactly as the limiter does:
 * a cost above burst never fits (retry_after = INFINITY), a clock that goes back
 * mints no tokens, and a take that leaves a bucket full records nothing. The Lua
 * side (lua/edgews/ratelimit.lua) is checked against a pure-Lua model by
 * spec/unit/ratelimit_spec.lua. */
#include <math.h>

#include "hub/buckets.h"
#include "hub/hash.h"
#include "hub/ratelimit.h"
#include "test.h"

#define CHECK_NUM(a, b)                                                                     \
  do {                                                                                      \
    double a_ = (a), b_ = (b);                                                              \
    TEST_COUNT_(test_checks_);                                                              \
    if (!(a_ == b_)) {                                                                      \
      TEST_COUNT_(test_failures_);                                                          \
      fprintf(stderr, "%s:%d: CHECK_NUM failed: %s == %s (%.17g != %.17g)\n", __FILE__,    \
              __LINE__, #a, #b, a_, b_);                                                    \
    }                                                                                       \
  } while (0)

TEST(arithmetic) {
  CHECK_NUM(ews_tb_refill(1, 10, 11, 2, 5), 3);
  CHECK_NUM(ews_tb_refill(1, 10, 13, 2, 5), 5);
  CHECK_NUM(ews_tb_refill(1, 10, 9, 2, 5), 1); /* the clock went back: nothing */
  CHECK_NUM(ews_tb_refill(0, -INFINITY, 0, 2, 5), 5);
  double out[2];
  CHECK_EQ(ews_tb_consume(5, 3, 1, 5, out), 1);
  CHECK_NUM(out[0], 2);
  CHECK_NUM(out[1], 0);
  CHECK_EQ(ews_tb_consume(1, 3, 2, 5, out), 0);
  CHECK_NUM(out[0], 1);
  CHECK_NUM(out[1], 1);
  CHECK_EQ(ews_tb_consume(5, 6, 1, 5, out), 0); /* above burst: never */
  CHECK_NUM(out[0], 5);
  CHECK_NUM(out[1], INFINITY);

  ews_tb_t b = {4, -INFINITY};
  double retry = -1;
  CHECK_EQ(ews_tb_take(&b, 4, 100, 2, 4, &retry), 1);
  CHECK_EQ(ews_tb_take(&b, 1, 100, 2, 4, &retry), 0);
  CHECK_NUM(retry, 0.5);
  CHECK_EQ(ews_tb_take(&b, 1, 50, 2, 4, &retry), 0); /* back in time */
  CHECK_NUM(b.last, 100);                            /* last does not move back */
  CHECK_EQ(ews_tb_take(&b, 1, 100.25, 2, 4, &retry), 0);
  CHECK_EQ(ews_tb_take(&b, 1, 100.5, 2, 4, &retry), 1);
}

/* A cost above burst: refused with INFINITY, whether the key has a bucket or not,
 * and nothing is recorded for it (before: a finite retry_after and a full bucket
 * kept in the table). */
TEST(shared_cost_above_burst) {
  size_t before = ews_buckets_count();
  double retry = 0;
  CHECK_EQ(ews_bucket_take("above", 5, 1, 5, 6, 1000, &retry), 0);
  CHECK_NUM(retry, INFINITY);
  CHECK_EQ(ews_buckets_count(), before);
  CHECK_EQ(ews_bucket_take("above", 5, 1, 5, 2, 1000, &retry), 1); /* 3 left */
  CHECK_EQ(ews_buckets_count(), before + 1);
  CHECK_EQ(ews_bucket_take("above", 5, 1, 5, 4, 1000.5, &retry), 0); /* 3.5 < 4 <= burst */
  CHECK_NUM(retry, 0.5);
  retry = 0;
  CHECK_EQ(ews_bucket_take("above", 5, 1, 5, 6, 1000.5, &retry), 0); /* tracked: still never */
  CHECK_NUM(retry, INFINITY);
  /* a free take of a new key records nothing either */
  CHECK_EQ(ews_bucket_take("free", 4, 1, 5, 0, 1000, NULL), 1);
  CHECK_EQ(ews_buckets_count(), before + 1);
}

/* A clock that goes back mints no tokens (before: `last` moved back with it, and
 * the time from the earlier point counted again). */
TEST(shared_clock_back) {
  double retry;
  CHECK_EQ(ews_bucket_take("clock", 5, 1, 2, 2, 100, &retry), 1);
  CHECK_EQ(ews_bucket_take("clock", 5, 1, 2, 1, 50, &retry), 0);
  CHECK_EQ(ews_bucket_take("clock", 5, 1, 2, 1, 100.5, &retry), 0); /* 0.5 s since 100 */
  CHECK_NUM(retry, 0.5);
  CHECK_EQ(ews_bucket_take("clock", 5, 1, 2, 1, 101, &retry), 1);
}

static uint64_t rng = 42;
static double uniform(void) { return (double)(ews_splitmix64(&rng) >> 11) / 9007199254740992.0; }

/* The shared buckets and a per-worker limiter answer alike: random costs (0,
 * fractions, burst, above burst), random steps of time, a few keys. (Time only
 * moves forward here: each drops buckets that are full at the time of a take on
 * its own schedule, which is lossless for a clock that never goes back, as theirs
 * do — uv_hrtime, the loop's clock. Going back is checked above.) */
TEST(shared_matches_limiter) {
  int mismatches = 0;
  for (int seq = 0; seq < 200; seq++) {
    double rate = 0.5 + uniform() * 20, burst = 1 + floor(uniform() * 10);
    ews_limiter_t *l = ews_limiter_new(rate, burst);
    CHECK(l != NULL);
    if (!l) return;
    double now = 1000;
    for (int op = 0; op < 300; op++) {
      double r = uniform();
      if (r < 0.05) now += 0;
      else if (r < 0.6) now += uniform() * 0.2;
      else if (r < 0.65) now += uniform() * 100;
      double c = uniform(), n;
      if (c < 0.1) n = 0;
      else if (c < 0.2) n = burst;
      else if (c < 0.3) n = burst + 0.5 + floor(uniform() * 3);
      else if (c < 0.6) n = 1;
      else n = uniform() * burst * 1.2;
      char key[32];
      int kl = snprintf(key, sizeof key, "m%d:%d", seq, (int)(uniform() * 4));
      double r1 = -1, r2 = -1;
      int a = ews_limiter_take(l, EWS_LIMITER_STRING, key, (size_t)kl, n, now, &r1);
      int b = ews_bucket_take(key, (size_t)kl, rate, burst, n, now, &r2);
      if (a != b || (!a && !(r1 == r2))) {
        if (mismatches++ < 5)
          fprintf(stderr, "  mismatch: key %s n %.17g now %.17g: limiter %d %.17g, shared %d %.17g\n",
                  key, n, now, a, r1, b, r2);
      }
    }
    ews_limiter_free(l);
  }
  CHECK_EQ(mismatches, 0);
}

TEST(limiter) {
  ews_limiter_t *l = ews_limiter_new(2, 3);
  double retry = 0;
  for (int i = 0; i < 3; i++) CHECK_EQ(ews_limiter_take(l, 0, "ip", 2, 1, 10, &retry), 1);
  CHECK_EQ(ews_limiter_take(l, 0, "ip", 2, 1, 10, &retry), 0);
  CHECK_NUM(retry, 0.5);
  CHECK_NUM(ews_limiter_tokens(l, 0, "ip", 2, 10.25), 0.5);
  CHECK_NUM(ews_limiter_tokens(l, 0, "other", 5, 10.25), 3); /* untracked: full */
  /* kinds are namespaces: the same bytes as a number key are another key */
  CHECK_EQ(ews_limiter_take(l, EWS_LIMITER_NUMBER, "ip", 2, 3, 10, &retry), 1);
  CHECK_EQ(ews_limiter_size(l), 2);
  ews_limiter_reset(l, 0, "ip", 2);
  CHECK_NUM(ews_limiter_tokens(l, 0, "ip", 2, 10), 3);
  CHECK_EQ(ews_limiter_size(l), 1);
  ews_limiter_reset(l, 0, "nobody", 6);
  CHECK_EQ(ews_limiter_take(l, 0, "ip", 2, 4, 10, &retry), 0);
  CHECK_NUM(retry, INFINITY);
  CHECK_EQ(ews_limiter_size(l), 1); /* a refused take of a full bucket records nothing */
  ews_limiter_free(l);
}

/* 100,000 keys, one new key every millisecond; buckets refill in 0.1 s, so ~100 are
 * ever not full: the limiter tracks about that many and its memory follows. */
TEST(limiter_memory) {
  ews_limiter_t *l = ews_limiter_new(10, 20);
  size_t max_size = 0, max_mem = 0;
  double now = 0;
  for (int i = 0; i < 100000; i++) {
    char key[16];
    int kl = snprintf(key, sizeof key, "10.0.%d", i);
    now += 0.001;
    CHECK_EQ(ews_limiter_take(l, 0, key, (size_t)kl, 1, now, NULL), 1);
    if (ews_limiter_size(l) > max_size) max_size = ews_limiter_size(l);
    if (ews_limiter_memory(l) > max_mem) max_mem = ews_limiter_memory(l);
  }
  CHECK(max_size <= 200);
  CHECK(max_mem <= 1024 + 256 * 200);
  fprintf(stderr, "  100,000 keys: at most %zu tracked, %zu bytes\n", max_size, max_mem);
  /* much later, every bucket is full: takes sweep them all away */
  for (int i = 0; i < 100; i++) ews_limiter_take(l, 0, "late", 4, 0, now + 100, NULL);
  CHECK_EQ(ews_limiter_size(l), 0);
  ews_limiter_free(l);
}

int main(void) {
  RUN(arithmetic);
  RUN(shared_cost_above_burst);
  RUN(shared_clock_back);
  RUN(shared_matches_limiter);
  RUN(limiter);
  RUN(limiter_memory);
  return TEST_EXIT();
}
