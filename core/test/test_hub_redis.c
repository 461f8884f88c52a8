/* test_hub_redis.c — the cluster engine's I/O-free parts: Redis URLs
 * (hub/redis_url.h: TCP, unix sockets, credentials, databases, timeouts, and what is
 * refused) and the consistent-hash ring of shards (hub/redis_ring.h: the same shard
 * whatever the order the shards are listed in, an even spread, and about 1/N of
 * the names moving when a shard is added). */
#include "err.h"
#include "hub/redis_ring.h"
#include "hub/redis_url.h"
#include "test.h"

TEST(url_tcp) {
  ews_redis_url_t u;
  const char *why = NULL;
  CHECK_EQ(ews_redis_url_parse("redis://127.0.0.1:6390/2", &u, &why), 0);
  CHECK_STR(u.host, "127.0.0.1");
  CHECK_EQ(u.port, 6390);
  CHECK_EQ(u.db, 2);
  CHECK_STR(u.path, "");
  CHECK_STR(u.password, "");
  CHECK_EQ(u.connect_timeout_ms, 2000);
  CHECK_EQ(u.timeout_ms, 3000);
  CHECK_STR(u.name, "127.0.0.1:6390/2");
  CHECK_EQ(ews_redis_url_parse("redis://localhost", &u, &why), 0);
  CHECK_EQ(u.port, 6379);
  CHECK_EQ(u.db, 0);
  CHECK_STR(u.name, "localhost:6379/0");
  CHECK_EQ(ews_redis_url_parse("redis://[::1]:7000/", &u, &why), 0);
  CHECK_STR(u.host, "::1");
  CHECK_EQ(u.port, 7000);
}

TEST(url_credentials_and_options) {
  ews_redis_url_t u;
  const char *why = NULL;
  CHECK_EQ(ews_redis_url_parse("redis://:s%40cret@h:1/3?connect_timeout=0.5&timeout=7", &u, &why), 0);
  CHECK_STR(u.user, "");
  CHECK_STR(u.password, "s@cret");
  CHECK_EQ(u.connect_timeout_ms, 500);
  CHECK_EQ(u.timeout_ms, 7000);
  CHECK_EQ(ews_redis_url_parse("redis://ada:pw@h", &u, &why), 0);
  CHECK_STR(u.user, "ada");
  CHECK_STR(u.password, "pw");
  /* the last @ ends the credentials: a password may contain @ unencoded */
  CHECK_EQ(ews_redis_url_parse("redis://:a@b@h:5", &u, &why), 0);
  CHECK_STR(u.password, "a@b");
  CHECK_STR(u.host, "h");
}

TEST(url_unix) {
  ews_redis_url_t u;
  const char *why = NULL;
  CHECK_EQ(ews_redis_url_parse("unix:/run/redis.sock?db=4&password=x", &u, &why), 0);
  CHECK_STR(u.path, "/run/redis.sock");
  CHECK_EQ(u.db, 4);
  CHECK_STR(u.password, "x");
  CHECK_STR(u.name, "unix:/run/redis.sock/4");
  CHECK_EQ(ews_redis_url_parse("unix:///tmp/r.sock", &u, &why), 0);
  CHECK_STR(u.path, "/tmp/r.sock");
}

TEST(url_refused) {
  static const char *const bad[] = {
      "", "http://h:1", "redis://", "redis://h:0", "redis://h:65536", "redis://h:x",
      "redis://h/abc", "redis://user@h", "redis://[::1", "unix:relative.sock", "unix:",
      "redis://h?timeout=0", "redis://h?timeout=abc", "redis://h?color=red", "redis://h?db",
      "redis://:%zz@h", "redis://:%4@h", NULL};
  for (int i = 0; bad[i]; i++) {
    ews_redis_url_t u;
    const char *why = NULL;
    int r = ews_redis_url_parse(bad[i], &u, &why);
    if (r != EWS_EINVAL) fprintf(stderr, "accepted: '%s'\n", bad[i]);
    CHECK_EQ(r, EWS_EINVAL);
    CHECK(why && *why);
  }
}

TEST(ring_order_independent) {
  const char *a[3] = {"r1:6379/0", "r2:6379/0", "r3:6379/0"};
  const char *b[3] = {"r3:6379/0", "r1:6379/0", "r2:6379/0"};
  ews_redis_ring_t ra, rb;
  CHECK_EQ(ews_redis_ring_init(&ra, a, 3), 0);
  CHECK_EQ(ews_redis_ring_init(&rb, b, 3), 0);
  int counts[3] = {0, 0, 0};
  for (int i = 0; i < 30000; i++) {
    char k[32];
    int n = snprintf(k, sizeof k, "room:%d", i);
    int sa = ews_redis_ring_pick(&ra, k, (size_t)n);
    int sb = ews_redis_ring_pick(&rb, k, (size_t)n);
    CHECK(sa >= 0 && sa < 3);
    if (strcmp(a[sa], b[sb])) {
      CHECK(!"a name maps to different shards");
      break;
    }
    counts[sa]++;
  }
  /* 160 points per shard: each gets its third within a few percent */
  for (int s = 0; s < 3; s++) CHECK(counts[s] > 8000 && counts[s] < 12000);
  ews_redis_ring_free(&ra);
  ews_redis_ring_free(&rb);
}

TEST(ring_adding_a_shard_moves_a_share) {
  const char *three[3] = {"r1:6379/0", "r2:6379/0", "r3:6379/0"};
  const char *four[4] = {"r1:6379/0", "r2:6379/0", "r3:6379/0", "r4:6379/0"};
  ews_redis_ring_t r3, r4;
  CHECK_EQ(ews_redis_ring_init(&r3, three, 3), 0);
  CHECK_EQ(ews_redis_ring_init(&r4, four, 4), 0);
  int moved = 0, wrong = 0;
  for (int i = 0; i < 40000; i++) {
    char k[32];
    int n = snprintf(k, sizeof k, "user:%d", i);
    int s3 = ews_redis_ring_pick(&r3, k, (size_t)n), s4 = ews_redis_ring_pick(&r4, k, (size_t)n);
    if (s3 != s4) {
      moved++;
      if (s4 != 3) wrong++; /* a name only ever moves to the new shard */
    }
  }
  CHECK_EQ(wrong, 0);
  CHECK(moved > 40000 / 4 - 2000 && moved < 40000 / 4 + 2000);
  ews_redis_ring_free(&r3);
  ews_redis_ring_free(&r4);
  /* one shard: everything on it; bad counts refused */
  ews_redis_ring_t r1;
  CHECK_EQ(ews_redis_ring_init(&r1, three, 1), 0);
  CHECK_EQ(ews_redis_ring_pick(&r1, "x", 1), 0);
  ews_redis_ring_free(&r1);
  CHECK_EQ(ews_redis_ring_init(&r1, three, 0), EWS_EINVAL);
  /* the hash is fixed: instances of other builds must agree */
  CHECK(ews_redis_ring_hash("room:1", 6) == ews_redis_ring_hash("room:1", 6));
  CHECK(ews_redis_ring_hash("", 0) != 0);
}

int main(void) {
  RUN(url_tcp);
  RUN(url_credentials_and_options);
  RUN(url_unix);
  RUN(url_refused);
  RUN(ring_order_independent);
  RUN(ring_adding_a_shard_moves_a_share);
  return TEST_EXIT();
}
