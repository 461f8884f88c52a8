/* test_hub_pubsub.c — the memory sequencer of hub/pubsub.c: offsets and epochs,
 * the history ring and its bound, paging, argument checks, epoch hex, offsets
 * from concurrent publishers (every offset exactly once), and, with stand-in
 * workers (an inbox each, nobody draining it), the hand-off: every worker gets a
 * topic's messages in the same order, resets included, and a publish waiting on
 * a worker's inbox holds neither the topic table nor the topic's history.
 * Worker delivery, recovery and the SQLite sequencer run end to end in
 * spec/integration/realtime_spec.lua. */
#include <pthread.h>
#include <time.h>

#include "err.h"
#include "hub/bus.h"
#include "hub/engine.h"
#include "hub/hub.h"
#include "hub/pubsub.h"
#include "hub/pubsub_int.h"
#include "test.h"

static ews_pubsub_config_t cfg;

static void init(int max_queue) {
  cfg = (ews_pubsub_config_t){.max_queue = max_queue, .max_recover = 100};
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

/* ---- stand-in workers: inboxes only ------------------------------------------------- */

#define NW 3
static ews_hub_t workers[NW];
static ews_hub_t *peers[NW];
static uv_async_t wakeups[NW];
static uv_loop_t wloop;

static void no_wakeup(uv_async_t *h) { (void)h; }

static void workers_init(void) {
  uv_loop_init(&wloop);
  for (int i = 0; i < NW; i++) {
    peers[i] = &workers[i];
    ews_hub_init(&workers[i], i, NW, peers, NULL, &ews_engine_local, 0);
    uv_async_init(&wloop, &wakeups[i], no_wakeup);
    ews_inbox_open(&workers[i].inbox, &wakeups[i]);
  }
  cfg = (ews_pubsub_config_t){.max_queue = 100, .max_recover = 10000};
  ews_pubsub_shutdown();
  ews_pubsub_init(&cfg, NULL, 0, peers, NW);
}

static void close_cb(uv_handle_t *h) { (void)h; }

static void workers_free(void) {
  ews_pubsub_shutdown(); /* stops posting to them */
  for (int i = 0; i < NW; i++) {
    ews_inbox_close(&workers[i].inbox);
    ews_bus_free(&workers[i].inbox);
    uv_close((uv_handle_t *)&wakeups[i], close_cb);
  }
  uv_run(&wloop, UV_RUN_DEFAULT);
  uv_loop_close(&wloop);
  for (int i = 0; i < NW; i++) ews_hub_destroy(&workers[i]);
}

/* The (epoch, offset) sequence of `topic` in worker i's inbox. */
static size_t inbox_seq(int i, const char *topic, uint64_t *ep, int64_t *off, size_t max) {
  size_t n = 0;
  for (ews_bus_msg_t *b = workers[i].inbox.head; b; b = b->next) {
    const ews_ps_msg_t *m = (const ews_ps_msg_t *)b;
    if (b->kind == &ews_ps_msg_kind && m->len == strlen(topic) &&
        !memcmp(m->topic, topic, m->len) && n < max) {
      ep[n] = m->epoch;
      off[n++] = m->offset;
    }
  }
  return n;
}

static void sleep_ms(int ms) {
  struct timespec ts = {0, ms * 1000000L};
  nanosleep(&ts, NULL);
}

static int flag_get(int *f) { return __atomic_load_n(f, __ATOMIC_ACQUIRE); }
static void flag_set(int *f) { __atomic_store_n(f, 1, __ATOMIC_RELEASE); }

/* Waits up to 10 s for *f (it is immediate when the code is right). */
static int wait_flag(int *f) {
  for (int i = 0; i < 10000 && !flag_get(f); i++) sleep_ms(1);
  return flag_get(f);
}

static int published_one, read_held, stop_reader;

static void *publish_held(void *arg) {
  (void)arg;
  pub("held", "1", 1, NULL);
  flag_set(&published_one);
  return NULL;
}

static void *publish_held_2(void *arg) {
  (void)arg;
  pub("held", "2", 1, NULL);
  return NULL;
}

/* Reads the history of the topic being posted, and another topic's, until the
 * message shows (the ring has it before any worker can receive it). */
static void *reader(void *arg) {
  (void)arg;
  while (!flag_get(&stop_reader)) {
    ews_pubsub_history_t h;
    if (ews_pubsub_history(NULL, "other", 5, 0, 10, &h) == 0) ews_pubsub_history_free(&h);
    if (ews_pubsub_history(NULL, "held", 4, 0, 10, &h) == 0) {
      int seen = h.last_offset == 1 && h.n == 1;
      ews_pubsub_history_free(&h);
      if (seen) {
        flag_set(&read_held);
        break;
      }
    }
    sleep_ms(1);
  }
  return NULL;
}

TEST(a_publish_waiting_on_an_inbox_blocks_no_reader) {
  workers_init();
  published_one = read_held = stop_reader = 0;
  uv_mutex_lock(&workers[1].inbox.lock); /* worker 1's inbox is busy */
  pthread_t p, p2, r;
  pthread_create(&p, NULL, publish_held, NULL);
  pthread_create(&r, NULL, reader, NULL);
  CHECK(wait_flag(&read_held)); /* the reads went through while the post waits */
  CHECK(!flag_get(&published_one));
  pthread_create(&p2, NULL, publish_held_2, NULL); /* waits for its turn */
  flag_set(&stop_reader);
  uv_mutex_unlock(&workers[1].inbox.lock);
  pthread_join(p, NULL);
  pthread_join(p2, NULL);
  pthread_join(r, NULL);
  for (int i = 0; i < NW; i++) {
    uint64_t ep[4];
    int64_t off[4];
    CHECK_EQ(inbox_seq(i, "held", ep, off, 4), 2);
    CHECK(off[0] == 1 && off[1] == 2 && ep[0] == ep[1]);
  }
  workers_free();
}

#define OT 4
#define OPER 1500
#define ORESETS 30
static int64_t pubs_off[OT][OPER];
static uint64_t pubs_ep[OT][OPER];

static void *order_publisher(void *arg) {
  int k = (int)(intptr_t)arg;
  for (int i = 0; i < OPER; i++) {
    ews_pubsub_pos_t pos = {0};
    const char *topic = i % 2 ? "o1" : "o2";
    ews_pubsub_publish(NULL, topic, 2, 1, "{}", 2, NULL, NULL, &pos);
    pubs_off[k][i] = pos.offset;
    pubs_ep[k][i] = pos.epoch;
  }
  return NULL;
}

static void *order_resetter(void *arg) {
  (void)arg;
  for (int i = 0; i < ORESETS; i++) {
    ews_pubsub_reset(NULL, "o1", 2, NULL, NULL, NULL);
    sleep_ms(1);
  }
  return NULL;
}

TEST(every_worker_gets_a_topic_in_the_same_order_resets_included) {
  workers_init();
  pthread_t t[OT], rs;
  for (int k = 0; k < OT; k++) pthread_create(&t[k], NULL, order_publisher, (void *)(intptr_t)k);
  pthread_create(&rs, NULL, order_resetter, NULL);
  for (int k = 0; k < OT; k++) pthread_join(t[k], NULL);
  pthread_join(rs, NULL);
  static uint64_t ep[NW][OT * OPER];
  static int64_t off[NW][OT * OPER];
  const char *topics[2] = {"o1", "o2"};
  for (int ti = 0; ti < 2; ti++) {
    size_t n[NW];
    for (int i = 0; i < NW; i++) n[i] = inbox_seq(i, topics[ti], ep[i], off[i], OT * OPER);
    CHECK_EQ(n[0], OT * OPER / 2);
    int same = 1, consecutive = 1;
    for (int i = 1; i < NW; i++)
      same &= n[i] == n[0] && !memcmp(ep[i], ep[0], n[0] * sizeof **ep) &&
              !memcmp(off[i], off[0], n[0] * sizeof **off);
    for (size_t j = 0; j < n[0]; j++) /* offsets count 1, 2, ... within each epoch */
      consecutive &= j == 0 || ep[0][j] != ep[0][j - 1] ? off[0][j] == 1
                                                         : off[0][j] == off[0][j - 1] + 1;
    CHECK(same);
    CHECK(consecutive);
    /* each publisher got the position its message was delivered with */
    int found = 1;
    for (int k = 0; k < OT; k++)
      for (int i = ti == 0 ? 1 : 0; i < OPER; i += 2) {
        int hit = 0;
        for (size_t j = 0; j < n[0] && !hit; j++) hit = ep[0][j] == pubs_ep[k][i] && off[0][j] == pubs_off[k][i];
        found &= hit;
      }
    CHECK(found);
  }
  workers_free();
}

int main(void) {
  RUN(offsets_and_epochs);
  RUN(history_ring_and_paging);
  RUN(bad_arguments);
  RUN(epoch_hex);
  RUN(concurrent_publishers_get_every_offset_once);
  RUN(a_publish_waiting_on_an_inbox_blocks_no_reader);
  RUN(every_worker_gets_a_topic_in_the_same_order_resets_included);
  ews_pubsub_shutdown();
  return TEST_EXIT();
}
