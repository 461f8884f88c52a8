/* test_hub_pubsub.c — the memory sequencer of hub/pubsub.c without workers:
 * offsets and epochs, the history ring and its bound, paging, argument checks,
 * epoch hex, and offsets from concurrent publishers (every offset exactly once).
 * Worker delivery, recovery and the SQLite sequencer run end to end in
 * spec/integration/realtime_spec.lua. */
#include <pthread.h>

#include "config.h"
#include "err.h"
#include "hub/pubsub.h"
#include "test.h"

static ews_config_t cfg;

static void init(int max_queue) {
  ews_config_defaults(&cfg);
  cfg.pubsub_max_queue = max_queue;
  cfg.pubsub_max_recover = 100;
  ews_pubsub_shutdown();
  ews_pubsub_init(&cfg, NULL, 0, NULL, 0);
}

static int64_t pub(const char *topic, const char *data, int json, uint64_t *epoch) {
  ews_pubsub_pos_t pos = {0};
  int r = ews_pubsub_publish(NULL, topic, strlen(topic), json, data, strlen(data), NULL, NULL, &pos);
  if (r != 0) return r;
  if (epoch) *epoch = pos.epoch;
  return pos.offset;
}

TEST(offsets_and_epochs) {
  init(100);
  uint64_t e1 = 0, e2 = 0, e;
  CHECK_EQ(pub("a", "1", 1, &e1), 1);
  CHECK_EQ(pub("a", "x", 0, &e), 2);
  CHECK(e == e1 && e1 != 0);
  CHECK_EQ(pub("b", "{}", 1, &e2), 1); /* offsets are per topic */
  CHECK(e2 != e1);                     /* and so are epochs */
  CHECK_EQ(pub("a", "3", 1, NULL), 3);
  CHECK(!ews_pubsub_persistent());
}

TEST(history_ring_and_paging) {
  init(5);
  for (int i = 1; i <= 12; i++) {
    char d[16];
    snprintf(d, sizeof d, "%d", i);
    CHECK_EQ(pub("h", d, i % 2, NULL), i);
  }
  ews_pubsub_history_t h;
  CHECK_EQ(ews_pubsub_history(NULL, "h", 1, 0, 100, &h), 0);
  CHECK_EQ(h.first_offset, 8); /* the newest five are kept */
  CHECK_EQ(h.last_offset, 12);
  CHECK_EQ(h.n, 5);
  for (size_t i = 0; i < h.n; i++) {
    CHECK_EQ(h.items[i].offset, (int64_t)(8 + i));
    char d[16];
    snprintf(d, sizeof d, "%d", (int)(8 + i));
    CHECK(h.items[i].len == strlen(d) && !memcmp(h.items[i].data, d, h.items[i].len));
    CHECK_EQ(h.items[i].json, (8 + i) % 2);
  }
  ews_pubsub_history_free(&h);
  /* a page: the oldest `limit` after since_offset */
  CHECK_EQ(ews_pubsub_history(NULL, "h", 1, 9, 2, &h), 0);
  CHECK_EQ(h.n, 2);
  CHECK_EQ(h.items[0].offset, 10);
  CHECK_EQ(h.items[1].offset, 11);
  ews_pubsub_history_free(&h);
  /* past the end: nothing; an unknown topic exists from now on, empty */
  CHECK_EQ(ews_pubsub_history(NULL, "h", 1, 12, 10, &h), 0);
  CHECK_EQ(h.n, 0);
  ews_pubsub_history_free(&h);
  CHECK_EQ(ews_pubsub_history(NULL, "new", 3, 0, 10, &h), 0);
  CHECK_EQ(h.n, 0);
  CHECK_EQ(h.last_offset, 0);
  CHECK_EQ(h.first_offset, 1);
  CHECK(h.epoch != 0);
  ews_pubsub_history_free(&h);
}

TEST(bad_arguments) {
  init(10);
  ews_pubsub_pos_t pos;
  char big[600];
  memset(big, 't', sizeof big);
  CHECK_EQ(ews_pubsub_publish(NULL, "", 0, 1, "1", 1, NULL, NULL, &pos), EWS_EINVAL);
  CHECK_EQ(ews_pubsub_publish(NULL, big, sizeof big, 1, "1", 1, NULL, NULL, &pos), EWS_EINVAL);
  CHECK_EQ(ews_pubsub_publish(NULL, "t\xff", 2, 1, "1", 1, NULL, NULL, &pos), EWS_EINVAL);
  CHECK_EQ(ews_pubsub_publish(NULL, "t", 1, 0, "\xc3\x28", 2, NULL, NULL, &pos), EWS_EINVAL);
  ews_pubsub_history_t h;
  CHECK_EQ(ews_pubsub_history(NULL, "", 0, 0, 1, &h), EWS_EINVAL);
}

TEST(epoch_hex) {
  char hex[17];
  ews_pubsub_epoch_hex(0x0123456789abcdefull, hex);
  CHECK(!strcmp(hex, "0123456789abcdef"));
  uint64_t v = 0;
  CHECK_EQ(ews_pubsub_epoch_parse(hex, 16, &v), 0);
  CHECK(v == 0x0123456789abcdefull);
  CHECK_EQ(ews_pubsub_epoch_parse("ABC", 3, &v), 0);
  CHECK(v == 0xabc);
  CHECK_EQ(ews_pubsub_epoch_parse("", 0, &v), EWS_EINVAL);
  CHECK_EQ(ews_pubsub_epoch_parse("12345678901234567", 17, &v), EWS_EINVAL);
  CHECK_EQ(ews_pubsub_epoch_parse("12g", 3, &v), EWS_EINVAL);
}

#define THREADS 4
#define PER_THREAD 2000
static int64_t got[THREADS][PER_THREAD];

static void *publisher(void *arg) {
  int k = (int)(intptr_t)arg;
  for (int i = 0; i < PER_THREAD; i++) got[k][i] = pub("race", "{\"n\":1}", 1, NULL);
  return NULL;
}

TEST(concurrent_publishers_get_every_offset_once) {
  init(100);
  pthread_t t[THREADS];
  for (int k = 0; k < THREADS; k++) pthread_create(&t[k], NULL, publisher, (void *)(intptr_t)k);
  for (int k = 0; k < THREADS; k++) pthread_join(t[k], NULL);
  static unsigned char seen[THREADS * PER_THREAD + 1];
  int dups = 0, bad = 0;
  for (int k = 0; k < THREADS; k++) {
    for (int i = 0; i < PER_THREAD; i++) {
      int64_t o = got[k][i];
      if (o < 1 || o > THREADS * PER_THREAD) bad++;
      else if (seen[o]++) dups++;
      if (i && o <= got[k][i - 1]) bad++; /* each publisher's offsets increase */
    }
  }
  CHECK_EQ(dups, 0);
  CHECK_EQ(bad, 0);
  ews_pubsub_history_t h;
  CHECK_EQ(ews_pubsub_history(NULL, "race", 4, 0, 1000, &h), 0);
  CHECK_EQ(h.last_offset, THREADS * PER_THREAD);
  CHECK_EQ(h.n, 100);
  ews_pubsub_history_free(&h);
}

int main(void) {
  RUN(offsets_and_epochs);
  RUN(history_ring_and_paging);
  RUN(bad_arguments);
  RUN(epoch_hex);
  RUN(concurrent_publishers_get_every_offset_once);
  ews_pubsub_shutdown();
  return TEST_EXIT();
}
