/* test_hub_htable.c — the hub's hash table (hub/htable.h) and its keyed hash
 * (hub/hash.h): SipHash against the reference vectors, the process key, insert /
 * find / remove, growth and shrinking by load factor, walks that remove as they go,
 * clear, and 100,000 random keys with the work per lookup counted. Flooding with
 * chosen names through every table of the hub is test_hub_flood.c. */
#include "err.h"
#include "hub/htable.h"
#include "test.h"

/* A record as the hub's users embed the node: first member, key bytes owned. */
typedef struct {
  ews_hnode_t n;
  int value;
  char key[24];
} rec_t;

static rec_t *rec_new(const char *fmt, int i) {
  rec_t *r = calloc(1, sizeof *r);
  if (!r) abort();
  int len = snprintf(r->key, sizeof r->key, fmt, i);
  ews_hnode_init(&r->n, r->key, (size_t)len);
  r->value = i;
  return r;
}

static rec_t *get(const ews_htable_t *t, const char *fmt, int i) {
  char k[24];
  int len = snprintf(k, sizeof k, fmt, i);
  return (rec_t *)ews_ht_get(t, k, (size_t)len);
}

static uint64_t le64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* The reference implementation's vectors (github.com/veorq/SipHash): key 00..0f,
 * message 00 01 02 ... of each length. 2-4 checks the rounds and the tail/length
 * word that 1-3 shares. */
TEST(siphash_vectors) {
  static const struct {
    size_t len;
    uint64_t h24;
  } v[] = {
      {0, 0x726fdb47dd0e0e31ull},  {1, 0x74f839c593dc67fdull},  {2, 0x0d6c8009d9a94f5aull},
      {3, 0x85676696d7fb7e2dull},  {4, 0xcf2794e0277187b7ull},  {5, 0x18765564cd99a68dull},
      {6, 0xcbc9466e58fee3ceull},  {7, 0xab0200f58b01d137ull},  {8, 0x93f5f5799a932462ull},
      {9, 0x9e0082df0ba9e4b0ull},  {10, 0x7a5dbbc594ddb9f3ull}, {11, 0xf4b32f46226bada7ull},
      {12, 0x751e8fbc860ee5fbull}, {13, 0x14ea5627c0843d90ull}, {14, 0xf723ca908e7af2eeull},
      {15, 0xa129ca6149be45e5ull}, {16, 0x3f2acc7f57c29bdbull}, {17, 0x699ae9f52cbe4794ull},
      {63, 0x958a324ceb064572ull},
  };
  uint8_t key[16], msg[64];
  for (int i = 0; i < 16; i++) key[i] = (uint8_t)i;
  for (int i = 0; i < 64; i++) msg[i] = (uint8_t)i;
  uint64_t k0 = le64(key), k1 = le64(key + 8);
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
    CHECK(ews_siphash24(k0, k1, msg, v[i].len) == v[i].h24);
  /* SipHash-1-3, zero key (the reference built with cROUNDS 1, dROUNDS 3) */
  static const uint64_t h13[] = {0xd1fba762150c532cull, 0x68a914128e01e473ull,
                                 0x010bac45c41e3669ull, 0x4d4c9a4a8ef6e0adull};
  for (size_t i = 0; i < sizeof h13 / sizeof h13[0]; i++)
    CHECK(ews_siphash13(0, 0, msg, i) == h13[i]);
}

/* The process key is secret and fixed: the table hash is neither SipHash under
 * the zero key nor FNV, and a name hashes alike every time (every worker agrees). */
TEST(keyed_hash) {
  const char *names[] = {"", "a", "room:lobby", "user-12345678901234567890"};
  int differs = 0;
  for (size_t i = 0; i < 4; i++) {
    size_t n = strlen(names[i]);
    CHECK(ews_hash64(names[i], n) == ews_hash64(names[i], n));
    CHECK(ews_hash(names[i], n) == (uint32_t)ews_hash64(names[i], n));
    if (ews_hash64(names[i], n) != ews_siphash13(0, 0, names[i], n)) differs++;
  }
  CHECK_EQ(differs, 4);
  uint64_t s = 1, a = ews_splitmix64(&s), b = ews_splitmix64(&s);
  CHECK(a != b && s == 1 + 2 * 0x9E3779B97F4A7C15ull);
}

TEST(empty_table) {
  ews_htable_t t = {0};
  CHECK(ews_ht_get(&t, "x", 1) == NULL);
  CHECK(ews_ht_find(&t, "x", 1, ews_hash("x", 1)) == NULL);
  rec_t *r = rec_new("k%d", 1);
  CHECK_EQ(ews_ht_remove(&t, &r->n), 0);
  CHECK_EQ(ews_ht_walk(&t, 0, SIZE_MAX, NULL, NULL), 0);
  ews_ht_stats_t st;
  ews_ht_stats(&t, &st);
  CHECK_EQ(st.count, 0);
  CHECK_EQ(st.buckets, 0);
  CHECK_EQ(st.longest, 0);
  ews_ht_free(&t);
  free(r);
}

TEST(insert_find_remove) {
  ews_htable_t t = {0};
  rec_t *r[100];
  for (int i = 0; i < 100; i++) {
    r[i] = rec_new("key-%d", i);
    CHECK_EQ(ews_ht_insert(&t, &r[i]->n), 0);
  }
  CHECK_EQ(t.n, 100);
  for (int i = 0; i < 100; i++) CHECK(get(&t, "key-%d", i) == r[i]);
  CHECK(get(&t, "key-%d", 100) == NULL);
  CHECK(ews_ht_get(&t, "key-1", 4) == NULL); /* a prefix is another key */
  CHECK(ews_ht_get(&t, "key-10", 6) == &r[10]->n);
  for (int i = 0; i < 100; i += 2) CHECK_EQ(ews_ht_remove(&t, &r[i]->n), 1);
  CHECK_EQ(ews_ht_remove(&t, &r[0]->n), 0); /* not linked any more */
  CHECK_EQ(t.n, 50);
  for (int i = 0; i < 100; i++) CHECK(get(&t, "key-%d", i) == (i % 2 ? r[i] : NULL));
  /* the same key again after removal, and a record whose key is empty */
  CHECK_EQ(ews_ht_insert(&t, &r[0]->n), 0);
  CHECK(get(&t, "key-%d", 0) == r[0]);
  rec_t *empty = rec_new("%.0d", 0);
  CHECK_EQ(empty->n.len, 0);
  CHECK_EQ(ews_ht_insert(&t, &empty->n), 0);
  CHECK(ews_ht_get(&t, "", 0) == &empty->n);
  ews_ht_free(&t);
  CHECK(t.b == NULL && t.n == 0 && t.nb == 0);
  for (int i = 0; i < 100; i++) free(r[i]);
  free(empty);
}

/* Buckets double past one record per bucket and halve below one in eight. */
TEST(grows_and_shrinks) {
  enum { N = 5000 };
  ews_htable_t t = {0};
  static rec_t *r[N];
  size_t grown = 0;
  for (int i = 0; i < N; i++) {
    r[i] = rec_new("g%d", i);
    size_t before = t.nb;
    CHECK_EQ(ews_ht_insert(&t, &r[i]->n), 0);
    if (t.nb != before) grown++;
    if (t.n > t.nb || (t.nb & (t.nb - 1))) {
      CHECK(!"load over 1 or buckets not a power of two");
      break;
    }
  }
  CHECK_EQ(t.nb, 8192); /* 8 .. 8192: ten doublings */
  CHECK_EQ(grown, 11);
  for (int i = 0; i < N; i++) CHECK(get(&t, "g%d", i) == r[i]);
  for (int i = 0; i < N - 3; i++) {
    CHECK_EQ(ews_ht_remove(&t, &r[i]->n), 1);
    if (t.nb > 8 && t.n < t.nb / 8) {
      CHECK(!"did not shrink");
      break;
    }
  }
  CHECK_EQ(t.n, 3);
  CHECK_EQ(t.nb, 16); /* 3 of 16 is not under an eighth */
  CHECK_EQ(ews_ht_remove(&t, &r[N - 3]->n), 1);
  CHECK_EQ(ews_ht_remove(&t, &r[N - 2]->n), 1);
  CHECK_EQ(t.nb, 8); /* 1 of 16 is; and never below 8 */
  CHECK_EQ(ews_ht_remove(&t, &r[N - 1]->n), 1);
  CHECK_EQ(t.nb, 8);
  CHECK_EQ(ews_ht_insert(&t, &r[N - 3]->n), 0);
  CHECK(get(&t, "g%d", N - 3) == r[N - 3]);
  CHECK(get(&t, "g%d", N - 1) == NULL);
  ews_ht_free(&t);
  for (int i = 0; i < N; i++) free(r[i]);
}

static int cleared;
static void count_and_free(ews_hnode_t *n) {
  cleared++;
  free(n);
}

typedef struct {
  ews_htable_t *t;
  int visits, removed;
  int seen[1000];
} walk_t;

/* Removes (and frees) the records with an even value. */
static void remove_even(ews_hnode_t *n, void *ud) {
  walk_t *w = ud;
  rec_t *r = (rec_t *)n;
  w->visits++;
  w->seen[r->value]++;
  if (r->value % 2 == 0) {
    CHECK_EQ(ews_ht_remove(w->t, n), 1);
    memset(r, 0xa5, sizeof *r); /* a later use of it would read garbage (and ASan: free) */
    free(r);
    w->removed++;
  }
}

TEST(walk_removing) {
  ews_htable_t t = {0};
  for (int i = 0; i < 1000; i++) CHECK_EQ(ews_ht_insert(&t, &rec_new("w%d", i)->n), 0);
  size_t nb = t.nb;
  walk_t w = {&t, 0, 0, {0}};
  CHECK_EQ(ews_ht_walk(&t, 0, SIZE_MAX, remove_even, &w), 0);
  CHECK_EQ(w.visits, 1000);
  CHECK_EQ(w.removed, 500);
  int once = 1;
  for (int i = 0; i < 1000; i++) once &= w.seen[i] == 1;
  CHECK(once);
  CHECK_EQ(t.n, 500);
  CHECK_EQ(t.nb, nb); /* 500 of 1024: no shrink due */
  for (int i = 0; i < 1000; i++) CHECK((get(&t, "w%d", i) != NULL) == (i % 2 == 1));

  /* A walk in steps of 100 buckets with a cursor visits everything once. */
  memset(&w, 0, sizeof w);
  w.t = &t;
  size_t at = 0;
  int steps = 0;
  do {
    at = ews_ht_walk(&t, at, 100, remove_even, &w);
    steps++;
  } while (at != 0 && steps < 100);
  CHECK_EQ(steps, (int)((t.nb + 99) / 100));
  CHECK_EQ(w.visits, 500);
  CHECK_EQ(w.removed, 0);

  /* Removing nearly everything in a walk shrinks once the walk is over. */
  for (int i = 1; i < 1000; i += 2) {
    rec_t *r = get(&t, "w%d", i);
    if (i > 5) r->value = 0; /* "even": removed by the walk (seen[] counts index 0) */
  }
  memset(&w, 0, sizeof w);
  w.t = &t;
  ews_ht_walk(&t, 0, SIZE_MAX, remove_even, &w);
  CHECK_EQ(w.removed, 497);
  CHECK_EQ(t.n, 3);
  CHECK_EQ(t.nb, 16); /* from 1024, in one step after the walk */
  ews_ht_clear(&t, count_and_free);
}

TEST(clear_frees_every_record) {
  ews_htable_t t = {0};
  for (int i = 0; i < 300; i++) CHECK_EQ(ews_ht_insert(&t, &rec_new("c%d", i)->n), 0);
  cleared = 0;
  ews_ht_clear(&t, count_and_free);
  CHECK_EQ(cleared, 300);
  CHECK(t.b == NULL && t.n == 0 && t.nb == 0);
  CHECK_EQ(ews_ht_insert(&t, &rec_new("again%d", 0)->n), 0); /* usable after a clear */
  CHECK(get(&t, "again%d", 0) != NULL);
  ews_ht_clear(&t, count_and_free);
}

/* 100,000 keys: every one found, and a lookup visits O(1) records however many
 * there are (counted, not timed). */
TEST(many_keys) {
  enum { N = 100000 };
  ews_htable_t t = {0};
  rec_t *r = calloc(N, sizeof *r);
  if (!r) abort();
  for (int i = 0; i < N; i++) {
    int len = snprintf(r[i].key, sizeof r[i].key, "topic/%d", i * 7919);
    ews_hnode_init(&r[i].n, r[i].key, (size_t)len);
    CHECK_EQ(ews_ht_insert(&t, &r[i].n), 0);
  }
  int found = 0;
  for (int i = 0; i < N; i++) found += get(&t, "topic/%d", i * 7919) == &r[i];
  CHECK_EQ(found, N);
  ews_ht_stats_t st;
  ews_ht_stats(&t, &st);
  CHECK_EQ(st.count, N);
  CHECK_EQ(st.buckets, 131072);
  CHECK(st.longest <= 16);  /* expected ~8 at this load; over 16 is ~1e-12 */
  CHECK(st.probes < 1.6);   /* 1 + load / 2 = 1.38 expected */
  for (int i = 0; i < N; i++) ews_ht_remove(&t, &r[i].n);
  CHECK_EQ(t.n, 0);
  CHECK_EQ(t.nb, 8);
  ews_ht_free(&t);
  free(r);
}

int main(void) {
  RUN(siphash_vectors);
  RUN(keyed_hash);
  RUN(empty_table);
  RUN(insert_find_remove);
  RUN(grows_and_shrinks);
  RUN(walk_removing);
  RUN(clear_frees_every_record);
  RUN(many_keys);
  return TEST_EXIT();
}
