/* test_hub_flood.c — hash flooding: 100,000 names chosen so that all of them share
 * a prefix and one FNV-1a hash (the hub's hash before it was keyed), pushed
 * through every table of the hub: the name table of channels and topics
 * (hub/names.h), the counters, the user registry, the shared rate-limit buckets
 * and presence (channels and one channel's members). For each, the work a lookup
 * costs is counted from the table's shape (its longest chain and the records a
 * successful lookup visits on average) and must stay O(1), not O(names).
 *
 * The names are built the way an attacker would: FNV-1a's state after a block of
 * bytes depends only on the state before it, so a pair of 8-character blocks that
 * take some state to the same next state (a birthday search over ~80,000
 * candidates) can be used in either order; 17 such pairs in a row give 2^17
 * 141-byte names with one hash. With an unkeyed hash they share one bucket at any
 * table size. */
#include "err.h"
#include "hub/buckets.h"
#include "hub/counters.h"
#include "hub/htable.h"
#include "hub/names.h"
#include "hub/presence.h"
#include "hub/users.h"
#include "test.h"

#define N 100000
#define BLOCKS 17 /* 2^17 >= N */
#define BLOCK 8
#define PREFIX "room:"
#define NAME_LEN (sizeof PREFIX - 1 + BLOCK * BLOCKS)

/* A lookup visits at most this many records (expected ~8 for 100,000 random
 * keys at the table's load; over 16 has a probability of about 1e-12), and on
 * average fewer than PROBES (1 + load / 2 ~ 1.4). The old tables: 100,000 and
 * 50,000. */
#define LONGEST 16
#define PROBES 2.0

static char names[N][NAME_LEN];

static uint32_t fnv1a(uint32_t h, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
  return h;
}

/* Candidate block c: BLOCK letters and digits, spread pseudo-randomly (blocks
 * that differ in only a few positions never collide: FNV-1a is injective on 4
 * bytes). */
static void block_of(uint32_t c, char out[BLOCK]) {
  static const char abc[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  uint64_t x = c;
  x = ews_splitmix64(&x);
  for (int i = 0; i < BLOCK; i++, x /= 36) out[i] = abc[x % 36];
}

/* Two different blocks that take FNV state h to the same state: a birthday search
 * (~80,000 candidates for 32 bits). 0, or -1. */
static int find_pair(uint32_t h, char a[BLOCK], char b[BLOCK]) {
  enum { SLOTS = 1 << 19 };
  static uint32_t key[SLOTS], cand[SLOTS]; /* cand + 1, 0: empty */
  memset(cand, 0, sizeof cand);
  for (uint32_t c = 0; c < SLOTS / 2; c++) {
    char blk[BLOCK];
    block_of(c, blk);
    uint32_t to = fnv1a(h, blk, BLOCK), s = (to * 2654435761u) >> 13;
    while (cand[s] && key[s] != to) s = (s + 1) & (SLOTS - 1);
    if (cand[s]) {
      block_of(cand[s] - 1, a);
      if (!memcmp(a, blk, BLOCK)) continue; /* the same block twice */
      memcpy(b, blk, BLOCK);
      return 0;
    }
    key[s] = to;
    cand[s] = c + 1;
  }
  return -1;
}

/* Fills names[] with N distinct names of one FNV-1a hash. 0, or -1. */
static int make_names(void) {
  static char pair[BLOCKS][2][BLOCK];
  uint32_t h = fnv1a(2166136261u, PREFIX, sizeof PREFIX - 1);
  for (int j = 0; j < BLOCKS; j++) {
    if (find_pair(h, pair[j][0], pair[j][1]) != 0) return -1;
    h = fnv1a(h, pair[j][0], BLOCK);
  }
  for (int i = 0; i < N; i++) {
    memcpy(names[i], PREFIX, sizeof PREFIX - 1);
    for (int j = 0; j < BLOCKS; j++)
      memcpy(names[i] + sizeof PREFIX - 1 + BLOCK * j, pair[j][(i >> j) & 1], BLOCK);
  }
  return 0;
}

/* Checks one table's shape; returns 1 when lookups stayed O(1), else 0 (the
 * caller then skips the rest of its work, which would be quadratic). */
static int check_shape(const char *what, const ews_ht_stats_t *st, size_t count) {
  fprintf(stderr, "  %-9s %zu records in %zu buckets: longest chain %zu, %.2f per lookup\n",
          what, st->count, st->buckets, st->longest, st->probes);
  CHECK_EQ(st->count, count);
  CHECK(st->longest <= LONGEST);
  CHECK(st->probes < PROBES);
  return st->longest <= LONGEST;
}

/* The generator does what it claims: N different names, one old hash, one prefix. */
TEST(names_collide_under_fnv) {
  uint32_t h0 = fnv1a(2166136261u, names[0], NAME_LEN);
  int same = 0, prefixed = 0;
  for (int i = 0; i < N; i++) {
    same += fnv1a(2166136261u, names[i], NAME_LEN) == h0;
    prefixed += !memcmp(names[i], PREFIX, sizeof PREFIX - 1);
  }
  CHECK_EQ(same, N);
  CHECK_EQ(prefixed, N);
  CHECK(memcmp(names[0], names[1], NAME_LEN) != 0);
  CHECK(memcmp(names[N - 2], names[N - 1], NAME_LEN) != 0);
}

/* The name table of channels and topics (hub/names.h): each worker's channel
 * subscribers and pub/sub topics, and the process's memory topics. A publish
 * looks its name up here on every worker. */
TEST(names_table) {
  ews_names_t t = {0};
  ews_named_t *r = calloc(N, sizeof *r);
  if (!r) abort();
  for (int i = 0; i < N; i++) {
    ews_named_init(&r[i], names[i], NAME_LEN);
    CHECK_EQ(ews_names_insert(&t, &r[i]), 0);
  }
  ews_ht_stats_t st;
  ews_ht_stats(&t, &st);
  if (check_shape("names", &st, N)) {
    int found = 0;
    for (int i = 0; i < N; i++) found += ews_names_find(&t, names[i], NAME_LEN) == &r[i];
    CHECK_EQ(found, N);
    for (int i = 0; i < N; i++) ews_names_remove(&t, &r[i]);
    ews_ht_stats(&t, &st);
    CHECK_EQ(st.count, 0);
    CHECK_EQ(st.buckets, 8);
  }
  ews_names_clear(&t, NULL);
  free(r);
}

/* Connection counters (per app, IP, user, and "chan:" + name per channel). */
TEST(counters) {
  static ews_counter_t *c[N];
  for (int i = 0; i < N; i++) CHECK(c[i] = ews_counter_get(names[i], NAME_LEN));
  ews_ht_stats_t st;
  ews_counters_stats(&st);
  if (check_shape("counters", &st, N)) {
    for (int i = 0; i < N; i++) ews_counter_inc(c[i], 0);
    int ones = 0;
    for (int i = 0; i < N; i++) ones += ews_counter_peek(names[i], NAME_LEN) == 1;
    CHECK_EQ(ones, N);
    for (int i = 0; i < N; i++) ews_counter_put(c[i]);
    ews_counters_stats(&st);
    CHECK_EQ(st.count, 0);
    CHECK_EQ(st.buckets, 8);
  }
}

/* The user -> sockets registry. */
TEST(users) {
  for (int i = 0; i < N; i++) CHECK_EQ(ews_users_add(names[i], NAME_LEN, 0, i), 0);
  ews_ht_stats_t st;
  ews_users_stats(&st);
  if (check_shape("users", &st, N)) {
    int found = 0;
    for (int i = 0; i < N; i++) {
      ews_user_socket_t s;
      found += ews_users_list(names[i], NAME_LEN, &s, 1) == 1 && s.socket_id == i;
    }
    CHECK_EQ(found, N);
    for (int i = 0; i < N; i++) ews_users_remove(names[i], NAME_LEN, 0, i);
    ews_users_stats(&st);
    CHECK_EQ(st.count, 0);
    CHECK_EQ(st.buckets, 8);
  }
}

/* Shared rate-limit buckets: keyed by user or IP; and they are swept away once
 * full, within a bounded number of new keys or takes. */
TEST(buckets) {
  int allowed = 0;
  for (int i = 0; i < N; i++) allowed += ews_bucket_take(names[i], NAME_LEN, 1, 10, 1, 0, NULL);
  CHECK_EQ(allowed, N);
  ews_ht_stats_t st;
  ews_buckets_stats(&st);
  if (check_shape("buckets", &st, ews_buckets_count())) {
    CHECK(ews_buckets_count() > N * 9 / 10); /* a sweep may have run: none was full */
    double retry = 0;
    CHECK_EQ(ews_bucket_take(names[0], NAME_LEN, 1, 10, 10, 0, &retry), 0); /* 9 left */
    CHECK(retry > 0.9 && retry < 1.1);
    /* Much later every bucket is full again (the same as none): new keys pay for a
     * sweep of 4 buckets each, so ~131072 / 4 of them drop all the old ones; takes
     * of a key that exists sweep one bucket per 64. */
    int fresh = 0;
    char k[16];
    while (ews_buckets_count() > (size_t)fresh && fresh < N) {
      int kl = snprintf(k, sizeof k, "k%d", fresh++);
      ews_bucket_take(k, (size_t)kl, 1, 10, 1, 1000, NULL);
    }
    CHECK_EQ(ews_buckets_count(), fresh);
    CHECK(fresh <= 131072 / 4 + 256);
    size_t kl = (size_t)snprintf(k, sizeof k, "k%d", 0);
    for (int i = 0; i < 64 * 1024; i++) /* 1024 buckets' worth of sweeping */
      ews_bucket_take(k, kl, 1, 10, 0, 2000, NULL);
    CHECK(ews_buckets_count() < (size_t)fresh - 100); /* ~250 of them */
  }
}

/* Presence: 100,000 channels (one member each), then one channel of 100,000
 * members. */
TEST(presence) {
  double now = 1;
  int ok = 1;
  for (int i = 0; i < N; i++)
    ok &= ews_presence_join(names[i], NAME_LEN, "u", 1, NULL, 0, NULL, 0, 0, (uint64_t)i + 1,
                            NULL, now) >= 0;
  CHECK(ok);
  ews_ht_stats_t st;
  CHECK_EQ(ews_presence_stats(NULL, 0, &st), 0);
  int flat = check_shape("channels", &st, N);
  if (flat) {
    for (int i = 0; i < N; i++) ok &= ews_presence_count(names[i], NAME_LEN) == 1;
    CHECK(ok);
  }
  for (int i = 0; i < N && flat; i++) ews_presence_drop_conn((uint64_t)i + 1);
  if (flat) ews_presence_events_free(ews_presence_take(now, 1));

  for (int i = 0; i < N && flat; i++)
    ok &= ews_presence_join("lobby", 5, names[i], NAME_LEN, NULL, 0, NULL, 0, 0,
                            (uint64_t)N + i + 1, NULL, now) == 1;
  CHECK(ok);
  if (flat && ews_presence_stats("lobby", 5, &st) == 0 && check_shape("members", &st, N)) {
    CHECK_EQ(ews_presence_count("lobby", 5), N);
    ews_presence_result_t r;
    CHECK_EQ(ews_presence_get((const char *const[]){names[N - 1]}, (const size_t[]){NAME_LEN}, 1,
                              now, &r),
             0);
    CHECK(r.n == 1 && r.v[0].nchannels == 1);
    ews_presence_result_free(&r);
    for (int i = 0; i < N; i++) ews_presence_drop_conn((uint64_t)N + i + 1);
    ews_presence_events_free(ews_presence_take(now, 1));
    CHECK_EQ(ews_presence_channels(), 0);
    CHECK_EQ(ews_presence_users(), 0);
    CHECK_EQ(ews_presence_stats(NULL, 0, &st), 0);
    CHECK_EQ(st.buckets, 8);
  }
}

int main(void) {
  if (make_names() != 0) {
    fprintf(stderr, "no FNV-1a collision found: the generator is broken\n");
    return 1;
  }
  RUN(names_collide_under_fnv);
  RUN(names_table);
  RUN(counters);
  RUN(users);
  RUN(buckets);
  RUN(presence);
  return TEST_EXIT();
}
