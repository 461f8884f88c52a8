/* test_hub_store.c — the SQLite store for history and notifications (hub/store.h).
 *
 * Plain threads stand in for workers: a client's wake function signals a condvar
 * and the thread drains its inbox. `test_hub_store bench [DIR]` measures append
 * throughput and completion latency instead of testing. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "err.h"
#include "hub/store.h"
#include "test.h"

/* ---- helpers ---------------------------------------------------------------------- */

static int64_t fake_now = 1700000000000; /* ms; atomic */

static int64_t fake_clock(void *ud) {
  (void)ud;
  return __atomic_load_n(&fake_now, __ATOMIC_ACQUIRE);
}

static void advance(int64_t ms) { __atomic_add_fetch(&fake_now, ms, __ATOMIC_ACQ_REL); }

static int64_t mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
  (void)sb, (void)flag, (void)f;
  return remove(p);
}

static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static char *new_dir(char *buf, size_t cap) {
  snprintf(buf, cap, "/tmp/ews-store-XXXXXX");
  if (!mkdtemp(buf)) abort();
  return buf;
}

/* A thread's stand-in for a worker loop: wake signals, wait_for drains. */
typedef struct {
  pthread_mutex_t m;
  pthread_cond_t cv;
  int woken;
  ews_store_client_t *c;
} waiter_t;

static void waiter_wake(void *ud) {
  waiter_t *w = ud;
  pthread_mutex_lock(&w->m);
  w->woken = 1;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->m);
}

static ews_store_client_t *waiter_open(waiter_t *w, ews_store_t *s) {
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->m, NULL);
  pthread_cond_init(&w->cv, NULL);
  if (ews_store_client_open(s, waiter_wake, w, &w->c) != 0) abort();
  return w->c;
}

static void waiter_close(waiter_t *w) {
  ews_store_client_close(w->c);
  pthread_mutex_destroy(&w->m);
  pthread_cond_destroy(&w->cv);
}

/* Waits for a wake-up, then drains. */
static size_t waiter_step(waiter_t *w) {
  pthread_mutex_lock(&w->m);
  while (!w->woken) pthread_cond_wait(&w->cv, &w->m);
  w->woken = 0;
  pthread_mutex_unlock(&w->m);
  return ews_store_client_drain(w->c);
}

typedef struct {
  int done;
  int status;
  uint64_t epoch;
  int64_t offset, id, created_at, changed;
} result_t;

static void copy_result(ews_store_req_t *r, void *ud) {
  result_t *res = ud;
  res->done = 1;
  res->status = r->status;
  res->epoch = r->epoch;
  res->offset = r->offset;
  res->id = r->id;
  res->created_at = r->created_at;
  res->changed = r->changed;
}

/* Submits and waits for the completion. */
static result_t run_req(waiter_t *w, ews_store_req_t *req) {
  result_t res = {0};
  int e = ews_store_submit(w->c, req, copy_result, &res);
  if (e) {
    res.done = 1;
    res.status = e;
    return res;
  }
  while (!res.done) waiter_step(w);
  return res;
}

static result_t append(waiter_t *w, const char *topic, const char *payload) {
  ews_store_req_t *r;
  if (ews_store_req_append(&r, topic, strlen(topic), payload, strlen(payload))) abort();
  return run_req(w, r);
}

static result_t notify(waiter_t *w, const char *user, const char *payload, int32_t ttl) {
  ews_store_req_t *r;
  if (ews_store_req_notif(&r, user, strlen(user), payload, strlen(payload), ttl)) abort();
  return run_req(w, r);
}

static result_t mark(waiter_t *w, const char *user, const int64_t *ids, size_t n, int state) {
  ews_store_req_t *r;
  if (ews_store_req_mark(&r, user, user ? strlen(user) : 0, ids, n,
                         (ews_notif_state_t)state))
    abort();
  return run_req(w, r);
}

static result_t retention(waiter_t *w, const char *topic, int32_t maxq, int32_t ttl) {
  ews_store_req_t *r;
  if (ews_store_req_retention(&r, topic, strlen(topic), maxq, ttl)) abort();
  return run_req(w, r);
}

static result_t reset_topic(waiter_t *w, const char *topic) {
  ews_store_req_t *r;
  if (ews_store_req_reset(&r, topic, strlen(topic))) abort();
  return run_req(w, r);
}

static result_t sweep(waiter_t *w) {
  ews_store_req_t *r;
  if (ews_store_req_sweep(&r)) abort();
  return run_req(w, r);
}

static ews_store_history_t history(waiter_t *w, const char *topic, int64_t since,
                                   uint32_t limit) {
  ews_store_history_t h;
  int e = ews_store_history(w->c, topic, strlen(topic), since, limit, &h);
  CHECK_EQ(e, 0);
  return h;
}

static ews_store_config_t base_cfg(const char *dir) {
  /* No periodic sweep unless a test asks for one: explicit sweeps stay exact. */
  ews_store_config_t cfg = {.dir = dir, .clock_ms = fake_clock, .sweep_interval_ms = 3600000};
  return cfg;
}

static ews_store_t *open_store(const ews_store_config_t *cfg) {
  ews_store_t *s = NULL;
  int e = ews_store_open(cfg, &s);
  CHECK_EQ(e, 0);
  if (!s) abort();
  return s;
}

/* ---- tests --------------------------------------------------------------------------- */

TEST(offsets_per_topic) {
  char dir[64];
  ews_store_config_t cfg = base_cfg(new_dir(dir, sizeof dir));
  ews_store_t *s = open_store(&cfg);
  waiter_t w;
  waiter_open(&w, s);
  uint64_t ea = 0, eb = 0;
  int64_t na = 0, nb = 0;
  for (int i = 0; i < 12; i++) {
    int to_a = i % 3 != 2;
    result_t r = append(&w, to_a ? "a" : "b", "x");
    CHECK_EQ(r.status, 0);
    CHECK(r.epoch != 0);
    if (to_a) {
      CHECK_EQ(r.offset, ++na);
      if (!ea) ea = r.epoch;
      CHECK(r.epoch == ea);
    } else {
      CHECK_EQ(r.offset, ++nb);
      if (!eb) eb = r.epoch;
      CHECK(r.epoch == eb);
    }
  }
  CHECK_EQ(na, 8);
  CHECK_EQ(nb, 4);
  CHECK(ea != eb);
  /* An empty payload is stored as an empty blob, not NULL. */
  result_t r = append(&w, "a", "");
  CHECK_EQ(r.status, 0);
  CHECK_EQ(r.offset, 9);
  ews_store_history_t h = history(&w, "a", 8, 10);
  CHECK_EQ(h.n, 1);
  if (h.n == 1) CHECK_EQ(h.msgs[0].len, 0);
  ews_store_history_free(&h);
  waiter_close(&w);
  ews_store_close(s);
  rm_rf(dir);
}

typedef struct {
  ews_store_t *s;
  int n;
  const char *topic;
  int64_t *offsets; /* in completion order */
  int got;
  int failed;
} batch_thread_t;

static void batch_done(ews_store_req_t *r, void *ud) {
  batch_thread_t *t = ud;
  if (r->status) t->failed++;
  t->offsets[t->got++] = r->offset;
}

static void *batch_thread(void *arg) {
  batch_thread_t *t = arg;
  waiter_t w;
  waiter_open(&w, t->s);
  for (int i = 0; i < t->n; i++) {
    ews_store_req_t *r;
    char payload[32];
    int len = snprintf(payload, sizeof payload, "m%d", i);
    if (ews_store_req_append(&r, t->topic, strlen(t->topic), payload, (size_t)len)) abort();
    if (ews_store_submit(w.c, r, batch_done, t)) t->failed++;
  }
  while (t->got < t->n) waiter_step(&w);
  waiter_close(&w);
  return NULL;
}

TEST(batching) {
  enum { THREADS = 4, PER = 500 };
  char dir[64];
  ews_store_config_t cfg = base_cfg(new_dir(dir, sizeof dir));
  ews_store_t *s = open_store(&cfg);
  ews_store_stats_t before, after;
  ews_store_stats(s, &before);
  pthread_t th[THREADS];
  batch_thread_t bt[THREADS];
  for (int i = 0; i < THREADS; i++) {
    bt[i] = (batch_thread_t){.s = s, .n = PER, .topic = "shared",
                             .offsets = calloc(PER, sizeof(int64_t))};
    pthread_create(&th[i], NULL, batch_thread, &bt[i]);
  }
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  ews_store_stats(s, &after);
  /* Each thread sees its offsets increase in completion order (its own submission
   * order); together they are exactly 1..THREADS*PER. */
  char *seen = calloc(THREADS * PER + 1, 1);
  int dup = 0, out_of_range = 0, not_increasing = 0;
  for (int i = 0; i < THREADS; i++) {
    CHECK_EQ(bt[i].failed, 0);
    CHECK_EQ(bt[i].got, PER);
    for (int j = 0; j < PER; j++) {
      int64_t o = bt[i].offsets[j];
      if (o < 1 || o > THREADS * PER) out_of_range++;
      else if (seen[o]++) dup++;
      if (j && o <= bt[i].offsets[j - 1]) not_increasing++;
    }
    free(bt[i].offsets);
  }
  free(seen);
  CHECK_EQ(dup, 0);
  CHECK_EQ(out_of_range, 0);
  CHECK_EQ(not_increasing, 0);
  uint64_t commits = after.commits - before.commits;
  CHECK_EQ(after.requests - before.requests, THREADS * PER);
  fprintf(stderr, "  batching: %d appends from %d threads in %llu transactions "
                  "(largest batch %llu)\n",
          THREADS * PER, THREADS, (unsigned long long)commits,
          (unsigned long long)after.max_batch);
  CHECK(commits >= 1);
  CHECK(commits <= THREADS * PER / 4);
  CHECK(after.max_batch > 1);
  ews_store_close(s);
  rm_rf(dir);
}

TEST(history) {
  char dir[64];
  ews_store_config_t cfg = base_cfg(new_dir(dir, sizeof dir));
  ews_store_t *s = open_store(&cfg);
  waiter_t w;
  waiter_open(&w, s);
  uint64_t epoch = 0;
  for (int i = 1; i <= 10; i++) {
    char p[16];
    snprintf(p, sizeof p, "p%d", i);
    result_t r = append(&w, "h", p);
    CHECK_EQ(r.offset, i);
    epoch = r.epoch;
  }
  ews_store_history_t h = history(&w, "h", 0, 100);
  CHECK(h.epoch == epoch);
  CHECK_EQ(h.last_offset, 10);
  CHECK_EQ(h.first_offset, 1);
  CHECK_EQ(h.gap, 0);
  CHECK_EQ(h.n, 10);
  for (size_t i = 0; i < h.n; i++) {
    char p[16];
    int len = snprintf(p, sizeof p, "p%zu", i + 1);
    CHECK_EQ(h.msgs[i].offset, (int64_t)i + 1);
    CHECK_EQ(h.msgs[i].len, len);
    CHECK_MEM(h.msgs[i].payload, p, (size_t)len);
    CHECK_EQ(h.msgs[i].created_at, fake_now);
  }
  ews_store_history_free(&h);

  h = history(&w, "h", 5, 3); /* since + limit */
  CHECK_EQ(h.n, 3);
  if (h.n == 3) {
    CHECK_EQ(h.msgs[0].offset, 6);
    CHECK_EQ(h.msgs[2].offset, 8);
    CHECK_MEM(h.msgs[0].payload, "p6", 2);
  }
  CHECK_EQ(h.gap, 0);
  ews_store_history_free(&h);

  h = history(&w, "h", 10, 100); /* up to date */
  CHECK_EQ(h.n, 0);
  CHECK_EQ(h.gap, 0);
  ews_store_history_free(&h);

  h = history(&w, "h", 0, 0); /* metadata only */
  CHECK_EQ(h.n, 0);
  CHECK_EQ(h.last_offset, 10);
  CHECK(h.epoch == epoch);
  ews_store_history_free(&h);

  h = history(&w, "nope", 3, 10); /* unknown topic */
  CHECK(h.epoch == 0);
  CHECK_EQ(h.last_offset, 0);
  CHECK_EQ(h.n, 0);
  CHECK_EQ(h.gap, 0);
  ews_store_history_free(&h);

  /* Keep the 4 newest: 7..10 retained, a client at 2 missed 3..6. */
  result_t r = retention(&w, "h", 4, EWS_STORE_INHERIT);
  CHECK_EQ(r.status, 0);
  CHECK(r.epoch == epoch);
  CHECK_EQ(r.changed, 6);
  h = history(&w, "h", 2, 100);
  CHECK_EQ(h.gap, 1);
  CHECK_EQ(h.first_offset, 7);
  CHECK_EQ(h.n, 4);
  if (h.n) CHECK_EQ(h.msgs[0].offset, 7);
  ews_store_history_free(&h);
  h = history(&w, "h", 6, 100); /* saw 6: nothing missed */
  CHECK_EQ(h.gap, 0);
  CHECK_EQ(h.n, 4);
  ews_store_history_free(&h);
  h = history(&w, "h", 0, 100); /* from the start: 1..6 are gone */
  CHECK_EQ(h.gap, 1);
  ews_store_history_free(&h);
  h = history(&w, "h", 12, 100); /* beyond last (another epoch's offset) */
  CHECK_EQ(h.gap, 0);
  CHECK_EQ(h.n, 0);
  ews_store_history_free(&h);

  /* The limit is clamped, never an error. */
  h = history(&w, "h", 0, 1000000);
  CHECK_EQ(h.n, 4);
  ews_store_history_free(&h);
  ews_store_history_t bad;
  CHECK_EQ(ews_store_history(w.c, "", 0, 0, 10, &bad), EWS_EINVAL);
  waiter_close(&w);
  ews_store_close(s);
  rm_rf(dir);
}

TEST(max_queue_size) {
  char dir[64];
  ews_store_config_t cfg = base_cfg(new_dir(dir, sizeof dir));
  cfg.max_queue_size = 3;
  ews_store_t *s = open_store(&cfg);
  waiter_t w;
  waiter_open(&w, s);
  CHECK_EQ(retention(&w, "big", 0, EWS_STORE_INHERIT).status, 0); /* unlimited */
  CHECK_EQ(retention(&w, "five", 5, EWS_STORE_INHERIT).status, 0);
  for (int i = 0; i < 10; i++) {
    append(&w, "q", "x");
    append(&w, "big", "x");
    append(&w, "five", "x");
  }
  ews_store_history_t h = history(&w, "q", 0, 100);
  CHECK_EQ(h.n, 3);
  CHECK_EQ(h.first_offset, 8);
  CHECK_EQ(h.last_offset, 10);
  CHECK_EQ(h.gap, 1);
  if (h.n == 3) CHECK_EQ(h.msgs[0].offset, 8);
  ews_store_history_free(&h);
  h = history(&w, "big", 0, 100);
  CHECK_EQ(h.n, 10);
  ews_store_history_free(&h);
  h = history(&w, "five", 0, 100);
  CHECK_EQ(h.n, 5);
  CHECK_EQ(h.first_offset, 6);
  ews_store_history_free(&h);
  /* Back to the global setting: applied at once. */
  result_t r = retention(&w, "big", EWS_STORE_INHERIT, EWS_STORE_INHERIT);
  CHECK_EQ(r.changed, 7);
  h = history(&w, "big", 0, 100);
  CHECK_EQ(h.n, 3);
  ews_store_history_free(&h);
  /* Offsets keep counting after retention. */
  CHECK_EQ(append(&w, "q", "y").offset, 11);
  waiter_close(&w);
  ews_store_close(s);
  rm_rf(dir);
}

TEST(message_ttl) {
  char dir[64];
  ews_store_config_t cfg = base_cfg(new_dir(dir, sizeof dir));
  cfg.message_ttl = 60;
  cfg.sweep_interval_ms = 3600000; /* no periodic sweep in the first part */
  ews_store_t *s = open_store(&cfg);
  waiter_t w;
  waiter_open(&w, s);
  for (int i = 0; i < 3; i++) append(&w, "t", "old"); /* 1..3 at T */
  advance(30000);
  for (int i = 0; i < 2; i++) append(&w, "t", "mid"); /* 4..5 at T+30 */
  advance(31000); /* T+61: 1..3 expired */
  ews_store_history_t h = history(&w, "t", 0, 100);
  CHECK_EQ(h.n, 5); /* not swept yet: the writer enforces retention, reads do not */
  ews_store_history_free(&h);
  append(&w, "t", "new"); /* 6 at T+61; the insert drops the expired prefix */
  h = history(&w, "t", 0, 100);
  CHECK_EQ(h.first_offset, 4);
  CHECK_EQ(h.n, 3);
  CHECK_EQ(h.gap, 1);
  ews_store_history_free(&h);

  /* Per-topic TTL, enforced by an explicit sweep. */
  CHECK_EQ(retention(&w, "short", EWS_STORE_INHERIT, 10).status, 0);
  append(&w, "short", "a");
  append(&w, "short", "b");
  advance(11000);
  result_t r = sweep(&w); /* T+72: "short" expired; "t" 4..5 (T+30) are 42 s old */
  CHECK_EQ(r.status, 0);
  CHECK_EQ(r.changed, 2);
  h = history(&w, "short", 0, 100);
  CHECK_EQ(h.n, 0);
  CHECK_EQ(h.last_offset, 2);
  CHECK_EQ(h.first_offset, 3);
  ews_store_history_free(&h);
  CHECK_EQ(append(&w, "short", "c").offset, 3); /* offsets go on */

  /* Periodic sweep: nothing written, time passes, the writer deletes on its own. */
  waiter_close(&w);
  ews_store_close(s);
  cfg.sweep_interval_ms = 20;
  s = open_store(&cfg);
  waiter_open(&w, s);
  ews_store_stats_t st0, st1;
  ews_store_stats(s, &st0);
  advance(60000); /* T+132: everything of "t" is older than 60 s */
  int64_t deadline = mono_us() + 5000000;
  size_t left = 1;
  while (left && mono_us() < deadline) {
    usleep(20000);
    h = history(&w, "t", 0, 100);
    left = h.n;
    ews_store_history_free(&h);
  }
  ews_store_stats(s, &st1);
  CHECK_EQ(left, 0);
  CHECK(st1.sweeps > st0.sweeps);
  h = history(&w, "t", 0, 100);
  CHECK_EQ(h.last_offset, 6);
  CHECK_EQ(h.first_offset, 7);
  ews_store_history_free(&h);
  waiter_close(&w);
  ews_store_close(s);
  rm_rf(dir);
}

TEST(epochs) {
  char dir[64];
  ews_store_config_t cfg = base_cfg(new_dir(dir, sizeof dir));
  ews_store_t *s = open_store(&cfg);
  waiter_t w;
  waiter_open(&w, s);
  result_t r1 = append(&w, "e", "one");
  waiter_close(&w);
  ews_store_close(s);

  s = open_store(&cfg); /* reopened: same epoch, offsets go on */
  waiter_open(&w, s);
  result_t r2 = append(&w, "e", "two");
  CHECK(r2.epoch == r1.epoch);
  CHECK_EQ(r2.offset, 2);
  ews_store_history_t h = history(&w, "e", 0, 10);
  CHECK(h.epoch == r1.epoch);
  CHECK_EQ(h.n, 2);
  ews_store_history_free(&h);

  result_t rr = reset_topic(&w, "e"); /* reset: new epoch, empty, offsets restart */
  CHECK_EQ(rr.status, 0);
  CHECK(rr.epoch != 0 && rr.epoch != r1.epoch);
  h = history(&w, "e", 0, 10);
  CHECK(h.epoch == rr.epoch);
  CHECK_EQ(h.n, 0);
  CHECK_EQ(h.last_offset, 0);
  CHECK_EQ(h.gap, 0);
  ews_store_history_free(&h);
  h = history(&w, "e", 2, 10); /* a client of the old epoch: the caller compares */
  CHECK(h.epoch != r1.epoch);
  CHECK_EQ(h.n, 0);
  ews_store_history_free(&h);
  result_t r3 = append(&w, "e", "three");
  CHECK(r3.epoch == rr.epoch);
  CHECK_EQ(r3.offset, 1);
  result_t rn = reset_topic(&w, "fresh"); /* reset creates */
  CHECK(rn.epoch != 0);
  CHECK_EQ(append(&w, "fresh", "x").offset, 1);
  CHECK(append(&w, "fresh", "x").epoch == rn.epoch);
  waiter_close(&w);
  ews_store_close(s);

  s = open_store(&cfg);
  waiter_open(&w, s);
  h = history(&w, "e", 0, 10);
  CHECK(h.epoch == rr.epoch);
  CHECK_EQ(h.n, 1);
  if (h.n) CHECK_MEM(h.msgs[0].payload, "three", 5);
  ews_store_history_free(&h);
  waiter_close(&w);
  ews_store_close(s);
  rm_rf(dir);
}

static int64_t ids_of(const ews_store_notifs_t *r, size_t i) { return i < r->n ? r->rows[i].id : -1; }

TEST(notifications) {
  char dir[64];
  ews_store_config_t cfg = base_cfg(new_dir(dir, sizeof dir));
  cfg.notif_max_per_user = 5;
  ews_store_t *s = open_store(&cfg);
  waiter_t w;
  waiter_open(&w, s);
  int64_t id[3];
  for (int i = 0; i < 3; i++) {
    char p[8];
    snprintf(p, sizeof p, "n%d", i);
    result_t r = notify(&w, "u1", p, 0);
    CHECK_EQ(r.status, 0);
    id[i] = r.id;
    if (i) CHECK(id[i] > id[i - 1]);
  }
  CHECK_EQ(notify(&w, "u2", "other", 0).status, 0);

  ews_store_notifs_t r;
  CHECK_EQ(ews_store_notif_pending(w.c, "u1", 2, 100, &r), 0);
  CHECK_EQ(r.n, 3);
  CHECK_EQ(r.total, 3);
  CHECK_EQ(ids_of(&r, 0), id[0]); /* oldest first */
  CHECK_EQ(ids_of(&r, 2), id[2]);
  if (r.n == 3) {
    CHECK_EQ(r.rows[1].len, 2);
    CHECK_MEM(r.rows[1].payload, "n1", 2);
    CHECK_EQ(r.rows[1].state, EWS_NOTIF_PENDING);
    CHECK_EQ(r.rows[1].expires_at, 0);
  }
  ews_store_notifs_free(&r);

  int64_t m1[] = {id[0]};
  CHECK_EQ(mark(&w, "u1", m1, 1, EWS_NOTIF_DELIVERED).changed, 1);
  int64_t m2[] = {id[1]};
  CHECK_EQ(mark(&w, "u1", m2, 1, EWS_NOTIF_READ).changed, 1);
  CHECK_EQ(mark(&w, "u1", m2, 1, EWS_NOTIF_DELIVERED).changed, 0); /* never back */
  CHECK_EQ(mark(&w, "u2", m1, 1, EWS_NOTIF_READ).changed, 0);      /* not u2's */
  int64_t missing[] = {999999};
  CHECK_EQ(mark(&w, NULL, missing, 1, EWS_NOTIF_READ).changed, 0);

  CHECK_EQ(ews_store_notif_pending(w.c, "u1", 2, 100, &r), 0);
  CHECK_EQ(r.n, 1);
  CHECK_EQ(r.total, 1);
  CHECK_EQ(ids_of(&r, 0), id[2]);
  ews_store_notifs_free(&r);

  /* Paginated list, newest first, any state. */
  CHECK_EQ(ews_store_notif_list(w.c, "u1", 2, 2, 0, &r), 0);
  CHECK_EQ(r.total, 3);
  CHECK_EQ(r.n, 2);
  CHECK_EQ(ids_of(&r, 0), id[2]);
  CHECK_EQ(ids_of(&r, 1), id[1]);
  if (r.n == 2) CHECK_EQ(r.rows[1].state, EWS_NOTIF_READ);
  ews_store_notifs_free(&r);
  CHECK_EQ(ews_store_notif_list(w.c, "u1", 2, 2, 2, &r), 0);
  CHECK_EQ(r.n, 1);
  CHECK_EQ(ids_of(&r, 0), id[0]);
  if (r.n == 1) CHECK_EQ(r.rows[0].state, EWS_NOTIF_DELIVERED);
  ews_store_notifs_free(&r);
  CHECK_EQ(ews_store_notif_list(w.c, "u1", 2, 2, 4, &r), 0);
  CHECK_EQ(r.n, 0);
  ews_store_notifs_free(&r);

  /* Max per user: 7 more -> the 5 newest are kept. */
  int64_t last[7];
  for (int i = 0; i < 7; i++) last[i] = notify(&w, "u1", "more", 0).id;
  CHECK_EQ(ews_store_notif_list(w.c, "u1", 2, 100, 0, &r), 0);
  CHECK_EQ(r.total, 5);
  CHECK_EQ(r.n, 5);
  CHECK_EQ(ids_of(&r, 0), last[6]);
  CHECK_EQ(ids_of(&r, 4), last[2]);
  ews_store_notifs_free(&r);
  CHECK_EQ(ews_store_notif_list(w.c, "u2", 2, 100, 0, &r), 0); /* u2 untouched */
  CHECK_EQ(r.total, 1);
  ews_store_notifs_free(&r);
  /* Marking several at once. */
  result_t mr = mark(&w, "u1", last + 2, 5, EWS_NOTIF_DELIVERED);
  CHECK_EQ(mr.changed, 5);
  CHECK_EQ(ews_store_notif_pending(w.c, "u1", 2, 100, &r), 0);
  CHECK_EQ(r.n, 0);
  CHECK_EQ(r.total, 0);
  ews_store_notifs_free(&r);

  /* Bad arguments. */
  ews_store_req_t *bad = NULL;
  CHECK_EQ(ews_store_req_mark(&bad, "u1", 2, m1, 0, EWS_NOTIF_READ), EWS_EINVAL);
  CHECK_EQ(ews_store_req_mark(&bad, "u1", 2, m1, 1, (ews_notif_state_t)7), EWS_EINVAL);
  CHECK_EQ(ews_store_req_notif(&bad, "", 0, "x", 1, 0), EWS_EINVAL);
  CHECK_EQ(ews_store_req_notif(&bad, "u", 1, "x", 1, -2), EWS_EINVAL);
  CHECK(bad == NULL);
  waiter_close(&w);
  ews_store_close(s);
  rm_rf(dir);
}

TEST(notification_ttl) {
  char dir[64];
  ews_store_config_t cfg = base_cfg(new_dir(dir, sizeof dir));
  cfg.notif_ttl = 100; /* default */
  ews_store_t *s = open_store(&cfg);
  waiter_t w;
  waiter_open(&w, s);
  int64_t t0 = fake_now;
  result_t a = notify(&w, "u", "short", 10);
  result_t b = notify(&w, "u", "default", 0);
  result_t c = notify(&w, "u", "forever", -1);
  ews_store_notifs_t r;
  CHECK_EQ(ews_store_notif_list(w.c, "u", 1, 10, 0, &r), 0);
  CHECK_EQ(r.n, 3);
  if (r.n == 3) {
    CHECK_EQ(r.rows[0].id, c.id);
    CHECK_EQ(r.rows[0].expires_at, 0);
    CHECK_EQ(r.rows[1].expires_at, t0 + 100000);
    CHECK_EQ(r.rows[2].expires_at, t0 + 10000);
  }
  ews_store_notifs_free(&r);
  advance(11000); /* "short" expired: no read returns it, even before a sweep */
  CHECK_EQ(ews_store_notif_pending(w.c, "u", 1, 10, &r), 0);
  CHECK_EQ(r.n, 2);
  CHECK_EQ(ids_of(&r, 0), b.id);
  ews_store_notifs_free(&r);
  CHECK_EQ(ews_store_notif_list(w.c, "u", 1, 10, 0, &r), 0);
  CHECK_EQ(r.total, 2);
  ews_store_notifs_free(&r);
  CHECK_EQ(sweep(&w).changed, 1);
  advance(90000); /* default TTL over */
  CHECK_EQ(sweep(&w).changed, 1);
  CHECK_EQ(ews_store_notif_list(w.c, "u", 1, 10, 0, &r), 0);
  CHECK_EQ(r.total, 1);
  CHECK_EQ(ids_of(&r, 0), c.id);
  ews_store_notifs_free(&r);
  (void)a;
  waiter_close(&w);
  ews_store_close(s);
  rm_rf(dir);
}

/* Another connection holds the write lock: the writer waits (busy_timeout), the
 * queue fills up to max_pending, then requests fail with EIO if the lock outlives
 * the timeout, and the store works again once it is released. */
TEST(busy_and_backpressure) {
  char dir[64];
  ews_store_config_t cfg = base_cfg(new_dir(dir, sizeof dir));
  cfg.busy_timeout_ms = 200;
  cfg.max_pending = 4;
  ews_store_t *s = open_store(&cfg);
  waiter_t w;
  waiter_open(&w, s);
  CHECK_EQ(append(&w, "b", "first").offset, 1);

  char path[128];
  snprintf(path, sizeof path, "%s/edgews.db", dir);
  sqlite3 *other;
  CHECK_EQ(sqlite3_open(path, &other), SQLITE_OK);
  CHECK_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

  result_t res[8];
  memset(res, 0, sizeof res);
  int accepted = 0, refused = 0;
  for (int i = 0; i < 8; i++) {
    ews_store_req_t *r;
    ews_store_req_append(&r, "b", 1, "x", 1);
    int e = ews_store_submit(w.c, r, copy_result, &res[i]);
    if (e == 0) accepted++;
    else {
      CHECK_EQ(e, EWS_EBACKPRESSURE);
      refused++;
    }
    usleep(10000); /* let the writer take the first into its (blocked) batch */
  }
  CHECK(refused > 0);
  CHECK(accepted >= 4);
  int done = 0, failed = 0;
  while (done < accepted) {
    size_t n = waiter_step(&w);
    done += (int)n;
  }
  for (int i = 0; i < 8; i++)
    if (res[i].done && res[i].status) {
      CHECK_EQ(res[i].status, EWS_EIO);
      failed++;
    }
  CHECK_EQ(failed, accepted); /* the lock outlived busy_timeout for every batch */
  sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
  sqlite3_close(other);
  result_t ok = append(&w, "b", "after");
  CHECK_EQ(ok.status, 0);
  CHECK_EQ(ok.offset, 2); /* failed appends assigned nothing */
  ews_store_stats_t st;
  ews_store_stats(s, &st);
  CHECK_EQ(st.failed, (uint64_t)failed);
  waiter_close(&w);
  ews_store_close(s);
  rm_rf(dir);
}

/* One request of a batch fails (a trigger refuses its payload): the batch is rolled
 * back and re-run one request per transaction, so only that request fails. */
TEST(one_bad_request_in_a_batch) {
  char dir[64];
  ews_store_config_t cfg = base_cfg(new_dir(dir, sizeof dir));
  ews_store_t *s = open_store(&cfg);
  waiter_t w;
  waiter_open(&w, s);
  char path[128];
  snprintf(path, sizeof path, "%s/edgews.db", dir);
  sqlite3 *other;
  CHECK_EQ(sqlite3_open(path, &other), SQLITE_OK);
  CHECK_EQ(sqlite3_exec(other,
                        "CREATE TRIGGER boom BEFORE INSERT ON messages "
                        "WHEN NEW.payload = CAST('bad' AS BLOB) "
                        "BEGIN SELECT RAISE(ABORT, 'refused'); END;",
                        NULL, NULL, NULL),
           SQLITE_OK);
  /* Hold the write lock so that the next three requests queue up behind the first. */
  CHECK_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  const char *payloads[] = {"g1", "g2", "bad", "g3"};
  result_t res[4];
  memset(res, 0, sizeof res);
  for (int i = 0; i < 4; i++) {
    ews_store_req_t *r;
    ews_store_req_append(&r, "x", 1, payloads[i], strlen(payloads[i]));
    CHECK_EQ(ews_store_submit(w.c, r, copy_result, &res[i]), 0);
    if (i == 0) usleep(50000); /* the writer takes g1 alone and blocks on the lock */
  }
  usleep(50000);
  sqlite3_exec(other, "COMMIT", NULL, NULL, NULL);
  int done = 0;
  while (done < 4) done += (int)waiter_step(&w);
  CHECK_EQ(res[0].status, 0);
  CHECK_EQ(res[1].status, 0);
  CHECK_EQ(res[2].status, EWS_EIO);
  CHECK_EQ(res[3].status, 0);
  CHECK_EQ(res[0].offset, 1);
  CHECK_EQ(res[1].offset, 2);
  CHECK_EQ(res[2].offset, 0);
  CHECK_EQ(res[3].offset, 3);
  ews_store_history_t h = history(&w, "x", 0, 10);
  CHECK_EQ(h.n, 3);
  if (h.n == 3) CHECK_MEM(h.msgs[2].payload, "g3", 2);
  ews_store_history_free(&h);
  ews_store_stats_t st;
  ews_store_stats(s, &st);
  CHECK_EQ(st.failed, 1);
  CHECK_EQ(st.requests, 3);
  sqlite3_close(other);
  waiter_close(&w);
  ews_store_close(s);
  rm_rf(dir);
}

TEST(clean_reopen) {
  char dir[64];
  ews_store_config_t cfg = base_cfg(new_dir(dir, sizeof dir));
  ews_store_t *s = open_store(&cfg);
  waiter_t w;
  waiter_open(&w, s);
  for (int i = 0; i < 50; i++) append(&w, "r", "payload");
  int64_t nid = notify(&w, "ru", "hello", -1).id;
  /* Requests still queued at client close and store close are committed first. */
  result_t tail[20];
  memset(tail, 0, sizeof tail);
  for (int i = 0; i < 20; i++) {
    ews_store_req_t *r;
    ews_store_req_append(&r, "r", 1, "tail", 4);
    CHECK_EQ(ews_store_submit(w.c, r, copy_result, &tail[i]), 0);
  }
  waiter_close(&w); /* waits and runs the 20 callbacks */
  int all = 1;
  for (int i = 0; i < 20; i++) all &= tail[i].done && tail[i].status == 0;
  CHECK(all);
  CHECK_EQ(tail[19].offset, 70);
  ews_store_close(s);
  char wal[128];
  snprintf(wal, sizeof wal, "%s/edgews.db-wal", dir);
  struct stat sb;
  CHECK(stat(wal, &sb) != 0 || sb.st_size == 0); /* checkpointed on clean close */

  s = open_store(&cfg);
  waiter_open(&w, s);
  ews_store_history_t h = history(&w, "r", 0, 1000);
  CHECK_EQ(h.n, 70);
  CHECK_EQ(h.last_offset, 70);
  if (h.n == 70) CHECK_MEM(h.msgs[69].payload, "tail", 4);
  ews_store_history_free(&h);
  ews_store_notifs_t r;
  CHECK_EQ(ews_store_notif_pending(w.c, "ru", 2, 10, &r), 0);
  CHECK_EQ(ids_of(&r, 0), nid);
  ews_store_notifs_free(&r);
  CHECK_EQ(append(&w, "r", "again").offset, 71);
  waiter_close(&w);
  ews_store_close(s);

  /* A data path that is not a directory fails cleanly. */
  char file[128];
  snprintf(file, sizeof file, "%s/edgews.db", dir);
  ews_store_config_t bad = base_cfg(file);
  ews_store_t *none = NULL;
  CHECK_EQ(ews_store_open(&bad, &none), EWS_EIO);
  CHECK(none == NULL);
  rm_rf(dir);
}

/* ---- durability: SIGKILL a writer process at a random moment ---------------------------- */

#define DUR_APPENDS 1500
#define DUR_NOTIFS 400

typedef struct {
  int fd;
  int outstanding;
  int iter;
} child_t;

static void child_done(ews_store_req_t *r, void *ud) {
  child_t *ch = ud;
  ch->outstanding--;
  if (r->status) return;
  char line[96];
  int n;
  if (r->op == EWS_STORE_APPEND)
    n = snprintf(line, sizeof line, "A %lld %llu\n", (long long)r->offset,
                 (unsigned long long)r->epoch);
  else
    n = snprintf(line, sizeof line, "N %lld\n", (long long)r->id);
  /* The acknowledgement: written only after the completion callback ran. */
  if (write(ch->fd, line, (size_t)n) != n) _exit(3);
}

static void child_main(const char *dir, int fd, int iter) {
  ews_store_config_t cfg = {.dir = dir};
  ews_store_t *s;
  if (ews_store_open(&cfg, &s)) _exit(2);
  waiter_t w;
  waiter_open(&w, s);
  child_t ch = {.fd = fd, .iter = iter};
  int a = 0, n = 0;
  while (a < DUR_APPENDS || n < DUR_NOTIFS || ch.outstanding) {
    while (ch.outstanding < 32 && (a < DUR_APPENDS || n < DUR_NOTIFS)) {
      ews_store_req_t *r;
      char p[64];
      int notif = n < DUR_NOTIFS && (a >= DUR_APPENDS || (a + n) % 4 == 3);
      if (notif) {
        int len = snprintf(p, sizeof p, "notif %d.%d", iter, n++);
        ews_store_req_notif(&r, "dur", 3, p, (size_t)len, -1);
      } else {
        int len = snprintf(p, sizeof p, "msg %d.%d", iter, a++);
        ews_store_req_append(&r, "dur", 3, p, (size_t)len);
      }
      if (ews_store_submit(w.c, r, child_done, &ch)) _exit(4);
      ch.outstanding++;
    }
    waiter_step(&w);
  }
  waiter_close(&w);
  ews_store_close(s);
  _exit(0);
}

/* Reads "A offset epoch" / "N id" lines; returns how many lines were complete. */
static void parse_acks(const char *buf, size_t len, int64_t *offs, uint64_t *epochs, int *na,
                       int64_t *ids, int *nn) {
  const char *p = buf, *end = buf + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) break; /* a torn line would be a bug: pipe writes this small are atomic */
    long long v;
    unsigned long long e;
    if (p[0] == 'A' && sscanf(p, "A %lld %llu", &v, &e) == 2) {
      offs[*na] = v;
      epochs[(*na)++] = e;
    } else if (p[0] == 'N' && sscanf(p, "N %lld", &v) == 1) {
      ids[(*nn)++] = v;
    }
    p = nl + 1;
  }
}

/* A completion that runs while its client closes and submits again (a Lua handler
 * resumed at shutdown publishing once more) is refused with EWS_ESHUTDOWN: the client
 * is freed with nothing left in flight (the writer used to complete the new request
 * into the freed client: a use-after-free under ASan/TSan). */
typedef struct {
  ews_store_client_t *c;
  int calls, resubmit_status;
} resubmit_t;

static void resubmit_done(ews_store_req_t *r, void *ud) {
  resubmit_t *x = ud;
  (void)r;
  x->calls++;
  ews_store_req_t *again;
  if (ews_store_req_append(&again, "again", 5, "x", 1)) abort();
  x->resubmit_status = ews_store_submit(x->c, again, copy_result, NULL);
}

TEST(submit_while_closing) {
  char dir[64];
  ews_store_config_t cfg = base_cfg(new_dir(dir, sizeof dir));
  ews_store_t *s = open_store(&cfg);
  for (int round = 0; round < 20; round++) {
    waiter_t w;
    waiter_open(&w, s);
    resubmit_t x = {w.c, 0, 1};
    ews_store_req_t *r;
    ews_store_req_append(&r, "first", 5, "p", 1);
    CHECK_EQ(ews_store_submit(w.c, r, resubmit_done, &x), 0);
    waiter_close(&w); /* runs resubmit_done, whose submit is refused */
    CHECK_EQ(x.calls, 1);
    CHECK_EQ(x.resubmit_status, EWS_ESHUTDOWN);
  }
  ews_store_close(s);
}

TEST(durability_sigkill) {
  char dir[64];
  new_dir(dir, sizeof dir);
  unsigned seed = (unsigned)(mono_us() ^ getpid());
  int64_t *offs = calloc(DUR_APPENDS, sizeof *offs);
  uint64_t *epochs = calloc(DUR_APPENDS, sizeof *epochs);
  int64_t *ids = calloc(DUR_NOTIFS, sizeof *ids);
  size_t cap = 256 * 1024;
  char *buf = malloc(cap);
  int64_t prev_last = 0;
  for (int iter = 0; iter < 6; iter++) {
    int pfd[2];
    if (pipe(pfd)) abort();
    pid_t pid = fork();
    if (pid == 0) {
      close(pfd[0]);
      child_main(dir, pfd[1], iter);
    }
    close(pfd[1]);
    /* Kill between 0 and ~250 ms in (a full run takes longer under ASan, but some
     * may finish: they still check the acknowledged items). Read while waiting so
     * the child never blocks on a full pipe. */
    int64_t kill_at = mono_us() + (int64_t)(rand_r(&seed) % 250000);
    size_t len = 0;
    int killed = 0, eof = 0;
    while (!eof) {
      int64_t now = mono_us();
      if (!killed && now >= kill_at) {
        kill(pid, SIGKILL);
        killed = 1;
      }
      struct pollfd pf = {.fd = pfd[0], .events = POLLIN};
      int ms = killed ? 1000 : (int)((kill_at - now) / 1000) + 1;
      if (poll(&pf, 1, ms) > 0) {
        if (len == cap) {
          cap *= 2;
          buf = realloc(buf, cap);
        }
        ssize_t n = read(pfd[0], buf + len, cap - len);
        if (n > 0) len += (size_t)n;
        else if (n == 0) eof = 1;
        else if (errno != EINTR) eof = 1;
      }
    }
    close(pfd[0]);
    int status;
    waitpid(pid, &status, 0);
    int finished = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    CHECK(finished || (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));

    int na = 0, nn = 0;
    parse_acks(buf, len, offs, epochs, &na, ids, &nn);
    if (finished) {
      CHECK_EQ(na, DUR_APPENDS);
      CHECK_EQ(nn, DUR_NOTIFS);
    }

    /* Reopen (recovers the WAL) and look for every acknowledged item. */
    ews_store_config_t cfg = {.dir = dir};
    ews_store_t *s = open_store(&cfg);
    waiter_t w;
    waiter_open(&w, s);
    ews_store_history_t h = history(&w, "dur", prev_last, 0);
    int64_t last = h.last_offset;
    uint64_t epoch = h.epoch;
    ews_store_history_free(&h);
    int missing = 0, wrong = 0;
    for (int i = 0; i < na; i++) {
      if (epochs[i] != epoch) wrong++;
      h = history(&w, "dur", offs[i] - 1, 1);
      if (h.n != 1 || h.msgs[0].offset != offs[i]) missing++;
      else {
        /* The i-th acknowledged append of this run: payloads were submitted in
         * order and offsets are assigned in order, so offset - prev_last - 1 is its
         * index in this run. */
        char p[64];
        int plen = snprintf(p, sizeof p, "msg %d.%lld", iter,
                            (long long)(offs[i] - prev_last - 1));
        if (h.msgs[0].len != (size_t)plen || memcmp(h.msgs[0].payload, p, (size_t)plen))
          wrong++;
      }
      ews_store_history_free(&h);
    }
    ews_store_notifs_t r;
    int64_t total = 0;
    for (uint32_t off = 0;; off += 1000) {
      CHECK_EQ(ews_store_notif_list(w.c, "dur", 3, 1000, off, &r), 0);
      total = r.total;
      for (int i = 0; i < nn; i++)
        for (size_t j = 0; j < r.n; j++)
          if (r.rows[j].id == ids[i]) ids[i] = 0; /* found */
      size_t got = r.n;
      ews_store_notifs_free(&r);
      if (got < 1000) break;
    }
    for (int i = 0; i < nn; i++)
      if (ids[i]) missing++;
    CHECK_EQ(missing, 0);
    CHECK_EQ(wrong, 0);
    CHECK(last >= prev_last + na); /* stored >= acknowledged */
    fprintf(stderr, "  run %d: %s, %d appends + %d notifications acknowledged, "
                    "%lld + (%lld total) stored\n",
            iter, finished ? "finished" : "killed", na, nn, (long long)(last - prev_last),
            (long long)total);
    prev_last = last;
    waiter_close(&w);
    ews_store_close(s);
  }
  free(offs);
  free(epochs);
  free(ids);
  free(buf);
  rm_rf(dir);
}

/* ---- disk full: writes fail, nothing acknowledged is lost, recovery ------------------ */

/* How the test takes the space away and gives it back. Every method the machine
 * allows runs (each in a forked child, so that its mount namespace and limits die
 * with it); "fsize" needs no privilege, so the test never degrades to nothing:
 *   tmpfs  a 4 MiB tmpfs mounted in a private mount namespace (root with
 *          CAP_SYS_ADMIN): a filler file takes every free byte, so SQLite's writes
 *          fail with ENOSPC (SQLITE_FULL); deleting the filler gives the space back.
 *   fsize  RLIMIT_FSIZE with SIGXFSZ ignored: writes past the limit fail with
 *          EFBIG (SQLITE_IOERR_WRITE); raising the soft limit gives it back. */
typedef enum { FULL_TMPFS, FULL_FSIZE } full_method_t;

static const char *const full_names[] = {"tmpfs", "fsize"};
/* What a refused request says: SQLite reports ENOSPC as SQLITE_FULL, and any other
 * refused write (EFBIG here, EDQUOT, EROFS, EIO) as SQLITE_IOERR. */
static const int full_error[] = {EWS_ENOSPACE, EWS_EIO};

#define FULL_MAX 8192

static struct {
  pthread_mutex_t lock;
  int64_t offs[FULL_MAX]; /* offsets the commit hook saw, in its order */
  int n;
} hooked = {PTHREAD_MUTEX_INITIALIZER, {0}, 0};

static void record_commit(void *ud, const ews_store_req_t *r) {
  (void)ud;
  if (r->op != EWS_STORE_APPEND) return;
  pthread_mutex_lock(&hooked.lock);
  if (hooked.n < FULL_MAX) hooked.offs[hooked.n++] = r->offset;
  pthread_mutex_unlock(&hooked.lock);
}

static off_t file_size(const char *dir, const char *name) {
  char p[256];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  struct stat sb;
  return stat(p, &sb) == 0 ? sb.st_size : 0;
}

/* Takes the space away: 0, or -1 when the method is not available here. */
static int full_take(full_method_t m, const char *dir) {
  if (m == FULL_FSIZE) {
    off_t big = file_size(dir, "edgews.db");
    off_t wal = file_size(dir, "edgews.db-wal");
    if (wal > big) big = wal;
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = (rlim_t)big + 64 * 1024;
    return setrlimit(RLIMIT_FSIZE, &rl);
  }
  char p[256];
  snprintf(p, sizeof p, "%s/filler", dir);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) return -1;
  static char zero[65536];
  size_t chunk = sizeof zero;
  for (;;) { /* until not even one byte fits */
    ssize_t n = write(fd, zero, chunk);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (chunk == 1) break;
    chunk /= 2;
  }
  close(fd);
  return 0;
}

static void full_give_back(full_method_t m, const char *dir) {
  if (m == FULL_FSIZE) {
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = rl.rlim_max;
    CHECK_EQ(setrlimit(RLIMIT_FSIZE, &rl), 0);
    return;
  }
  char p[256];
  snprintf(p, sizeof p, "%s/filler", dir);
  CHECK_EQ(unlink(p), 0);
}

/* Sets up the method's directory in this (child) process: 0, or -1 when the
 * method is not available. */
static int full_setup(full_method_t m, char *dir, size_t cap) {
  new_dir(dir, cap);
  if (m == FULL_FSIZE) {
    signal(SIGXFSZ, SIG_IGN);
    return 0;
  }
  if (unshare(CLONE_NEWNS) != 0) return -1;
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return -1;
  if (mount("ews-full", dir, "tmpfs", 0, "size=4m,mode=0700") != 0) return -1;
  return 0;
}

static void full_payload(char *buf, size_t cap, int seq) {
  memset(buf, 'p', cap);
  snprintf(buf, cap, "m%06d", seq);
  buf[8] = 'p'; /* snprintf's NUL */
}

#define FULL_PAYLOAD 1024

typedef struct {
  int seq;        /* payload number */
  int64_t offset; /* its offset when acknowledged */
} acked_t;

/* The scenario: prints what happened; returns the number of failed checks. */
static int full_child(full_method_t m) {
  char dir[64];
  if (full_setup(m, dir, sizeof dir) != 0) {
    rm_rf(dir);
    return -1;
  }
  int before = test_failures_;
  ews_store_config_t cfg = base_cfg(dir);
  cfg.on_commit = record_commit;
  cfg.max_batch = 64;
  ews_store_t *s = open_store(&cfg);
  waiter_t w;
  waiter_open(&w, s);
  acked_t *acked = calloc(FULL_MAX, sizeof *acked);
  int64_t nids[FULL_MAX];
  int na = 0, nn = 0, seq = 0, failed = 0, nfailed = 0, other_errors = 0;
  char p[FULL_PAYLOAD];

  /* Room to spare. */
  for (int i = 0; i < 20; i++, seq++) {
    full_payload(p, sizeof p, seq);
    ews_store_req_t *r;
    ews_store_req_append(&r, "t", 1, p, sizeof p);
    result_t res = run_req(&w, r);
    CHECK_EQ(res.status, 0);
    if (res.status == 0) acked[na++] = (acked_t){seq, res.offset};
  }
  for (int i = 0; i < 3; i++) {
    result_t res = notify(&w, "u", "\"before\"", -1);
    CHECK_EQ(res.status, 0);
    if (res.status == 0) nids[nn++] = res.id;
  }

  if (full_take(m, dir) != 0) {
    CHECK(!"cannot take the space away");
    goto out;
  }
  /* Full: one request at a time, then bursts that the writer batches, until enough
   * have failed (a checkpoint may free WAL space now and then: some may succeed). */
  for (int round = 0; round < 200 && (failed < 40 || nfailed < 5); round++) {
    int burst = round % 2 ? 32 : 1;
    result_t res[32];
    int seqs[32];
    memset(res, 0, sizeof res);
    for (int i = 0; i < burst; i++, seq++) {
      ews_store_req_t *r;
      seqs[i] = seq;
      full_payload(p, sizeof p, seq);
      ews_store_req_append(&r, "t", 1, p, sizeof p);
      CHECK_EQ(ews_store_submit(w.c, r, copy_result, &res[i]), 0);
    }
    ews_store_req_t *nr;
    result_t nres = {0};
    ews_store_req_notif(&nr, "u", 1, p, 200, -1);
    CHECK_EQ(ews_store_submit(w.c, nr, copy_result, &nres), 0);
    while (!nres.done) waiter_step(&w); /* completions come in submission order */
    for (int i = 0; i < burst; i++) {
      CHECK(res[i].done);
      if (res[i].status == 0) {
        if (na < FULL_MAX) acked[na++] = (acked_t){seqs[i], res[i].offset};
      } else {
        failed++;
        CHECK_EQ(res[i].offset, 0);
        if (res[i].status != full_error[m]) other_errors++;
      }
    }
    if (nres.status == 0) {
      if (nn < FULL_MAX) nids[nn++] = nres.id;
    } else {
      nfailed++;
      if (nres.status != full_error[m]) other_errors++;
    }
  }
  CHECK(failed >= 40);
  CHECK(nfailed >= 5);
  CHECK_EQ(other_errors, 0);
  /* Reads go on while writes fail. */
  ews_store_history_t h = history(&w, "t", 0, 0);
  CHECK_EQ(h.last_offset, na);
  ews_store_history_free(&h);

  full_give_back(m, dir);
  for (int i = 0; i < 5; i++, seq++) {
    full_payload(p, sizeof p, seq);
    ews_store_req_t *r;
    ews_store_req_append(&r, "t", 1, p, sizeof p);
    result_t res = run_req(&w, r);
    CHECK_EQ(res.status, 0);
    CHECK_EQ(res.offset, na + 1); /* gap-free: failed appends took no offset */
    if (res.status == 0) acked[na++] = (acked_t){seq, res.offset};
  }
  result_t res = notify(&w, "u", "\"after\"", -1);
  CHECK_EQ(res.status, 0);
  if (res.status == 0) nids[nn++] = res.id;

  /* The commit hook (live delivery) saw exactly the acknowledged appends. */
  pthread_mutex_lock(&hooked.lock);
  CHECK_EQ(hooked.n, na);
  int hook_wrong = 0;
  for (int i = 0; i < na && i < hooked.n; i++) hook_wrong += hooked.offs[i] != acked[i].offset;
  pthread_mutex_unlock(&hooked.lock);
  CHECK_EQ(hook_wrong, 0);

  waiter_close(&w);
  ews_store_close(s);

  /* Reopened, the history is exactly the acknowledged appends, offsets 1..na. */
  cfg.on_commit = NULL;
  s = open_store(&cfg);
  waiter_open(&w, s);
  int wrong = 0;
  int64_t since = 0;
  int k = 0;
  for (;;) {
    h = history(&w, "t", since, 1000);
    for (size_t i = 0; i < h.n; i++, k++) {
      full_payload(p, sizeof p, k < na ? acked[k].seq : -1);
      if (k >= na || h.msgs[i].offset != k + 1 || h.msgs[i].offset != acked[k].offset ||
          h.msgs[i].len != sizeof p || memcmp(h.msgs[i].payload, p, sizeof p) != 0)
        wrong++;
    }
    CHECK_EQ(h.last_offset, na);
    size_t got = h.n;
    if (got) since = h.msgs[got - 1].offset;
    ews_store_history_free(&h);
    if (got < 1000) break;
  }
  CHECK_EQ(k, na);
  CHECK_EQ(wrong, 0);
  ews_store_notifs_t nl;
  CHECK_EQ(ews_store_notif_list(w.c, "u", 1, 1000, 0, &nl), 0);
  CHECK_EQ(nl.total, nn);
  int missing = 0;
  for (int i = 0; i < nn; i++) {
    int found = 0;
    for (size_t j = 0; j < nl.n; j++) found |= nl.rows[j].id == nids[i];
    missing += !found;
  }
  CHECK_EQ(missing, 0);
  ews_store_notifs_free(&nl);
  waiter_close(&w);
  ews_store_close(s);
  if (m == FULL_TMPFS) {
    /* Full when the server starts: the store cannot create its WAL index, and says
     * why; it opens again once there is room. */
    full_take(m, dir);
    ews_store_t *none = NULL;
    CHECK_EQ(ews_store_open(&cfg, &none), EWS_ENOSPACE);
    CHECK(none == NULL);
    full_give_back(m, dir);
    s = open_store(&cfg);
    ews_store_close(s);
  }
  fprintf(stderr, "  disk_full (%s): %d appends and %d notifications acknowledged, %d and %d "
                  "refused while full; all kept, offsets 1..%d\n",
          full_names[m], na, nn, failed, nfailed, na);
out:
  free(acked);
  if (m == FULL_TMPFS) umount2(dir, MNT_DETACH);
  rm_rf(dir);
  return test_failures_ - before;
}

/* The log while the disk is full: one line when writes start failing and one when
 * they work again, not a line per refused write. The periodic sweep alone (expired
 * messages to delete, every 20 ms here, no request in flight) must not flood it
 * either. stderr goes to a file meanwhile (not on the full filesystem). */
static int count_lines(const char *text, const char *what) {
  int n = 0;
  for (const char *p = text; (p = strstr(p, what)); p += strlen(what)) n++;
  return n;
}

static int full_log_child(full_method_t m) {
  char dir[64];
  if (full_setup(m, dir, sizeof dir) != 0) {
    rm_rf(dir);
    return -1;
  }
  int before = test_failures_;
  ews_store_config_t cfg = base_cfg(dir);
  cfg.message_ttl = 1;
  cfg.sweep_interval_ms = 20;
  ews_store_t *s = open_store(&cfg);
  waiter_t w;
  waiter_open(&w, s);
  char p[FULL_PAYLOAD];
  for (int i = 0; i < 40; i++) {
    full_payload(p, sizeof p, i);
    ews_store_req_t *r;
    ews_store_req_append(&r, "exp", 3, p, sizeof p);
    CHECK_EQ(run_req(&w, r).status, 0);
  }
  char logpath[] = "/dev/shm/ews-store-log-XXXXXX";
  int lfd = mkstemp(logpath);
  if (lfd < 0) {
    strcpy(logpath, "/var/tmp/ews-store-log-XXXXXX");
    lfd = mkstemp(logpath);
  }
  CHECK(lfd >= 0);
  fflush(stderr);
  int saved = dup(2);
  dup2(lfd, 2);

  CHECK_EQ(full_take(m, dir), 0);
  advance(5000); /* every message has expired: each sweep tries to delete them */
  usleep(400 * 1000);
  int refused = 0;
  for (int i = 0; i < 20; i++) {
    full_payload(p, sizeof p, 100 + i);
    ews_store_req_t *r;
    ews_store_req_append(&r, "exp", 3, p, sizeof p);
    refused += run_req(&w, r).status != 0;
  }
  usleep(200 * 1000);
  full_give_back(m, dir);
  full_payload(p, sizeof p, 200);
  ews_store_req_t *r;
  ews_store_req_append(&r, "exp", 3, p, sizeof p);
  CHECK_EQ(run_req(&w, r).status, 0);
  usleep(100 * 1000);

  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  off_t len = lseek(lfd, 0, SEEK_END);
  char *text = calloc(1, (size_t)len + 1);
  if (text && pread(lfd, text, (size_t)len, 0) != len) text[0] = 0;
  close(lfd);
  unlink(logpath);
  int errors = text ? count_lines(text, " ERROR ") : -1;
  CHECK(refused >= 10);
  CHECK_EQ(text ? count_lines(text, "store: writes are failing") : 0, 1);
  CHECK_EQ(text ? count_lines(text, "store: writes work again") : 0, 1);
  CHECK(errors >= 1 && errors <= 3);
  fprintf(stderr, "  disk_full_log (%s): %d refused, %d error line(s) logged:\n%s", full_names[m],
          refused, errors, text ? text : "");
  free(text);
  waiter_close(&w);
  ews_store_close(s);
  if (m == FULL_TMPFS) umount2(dir, MNT_DETACH);
  rm_rf(dir);
  return test_failures_ - before;
}

typedef int (*full_child_fn)(full_method_t);

/* Runs fn in a forked child per method; fsize must always be available. */
static void run_full_methods(const char *name, full_child_fn fn) {
  int ran = 0;
  for (int m = FULL_TMPFS; m <= FULL_FSIZE; m++) {
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
      int r = fn((full_method_t)m);
      fflush(stderr);
      _exit(r < 0 ? 200 : r > 100 ? 100 : r);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (code == 200) {
      fprintf(stderr, "  %s (%s): not available here (needs root with CAP_SYS_ADMIN to mount "
                      "a tmpfs)\n", name, full_names[m]);
      CHECK(m == FULL_TMPFS); /* fsize must always run */
      continue;
    }
    ran++;
    CHECK_EQ(code, 0);
  }
  CHECK(ran >= 1);
}

TEST(disk_full_log) { run_full_methods("disk_full_log", full_log_child); }

TEST(disk_full) { run_full_methods("disk_full", full_child); }

/* A read-only data directory: the store refuses to open and says so (the server
 * then refuses to start), and opens with every item once it is writable again.
 * Root with CAP_SYS_ADMIN: a tmpfs remounted read-only in a private mount
 * namespace; otherwise the directory's modes (root without that capability first
 * becomes "nobody", since modes do not bind root). In a forked child, as for
 * disk_full. EWS_TEST_RO_METHOD=chmod forces the second way. */
static int readonly_child(void) {
  char dir[64];
  new_dir(dir, sizeof dir);
  const char *force = getenv("EWS_TEST_RO_METHOD");
  int use_mount = geteuid() == 0 && !(force && strcmp(force, "chmod") == 0) &&
                  unshare(CLONE_NEWNS) == 0 &&
                  mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
                  mount("ews-ro", dir, "tmpfs", 0, "size=4m,mode=0700") == 0;
  if (!use_mount && geteuid() == 0) {
    /* nobody must own the directory and be able to reach it */
    if (chown(dir, 65534, 65534) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
      fprintf(stderr, "  readonly: cannot become nobody: %s\n", strerror(errno));
      return 1;
    }
  }
  int before = test_failures_;
  char sub[96];
  snprintf(sub, sizeof sub, "%s/data", dir);
  ews_store_config_t cfg = base_cfg(sub);
  ews_store_t *s = open_store(&cfg);
  waiter_t w;
  waiter_open(&w, s);
  CHECK_EQ(append(&w, "ro", "kept").offset, 1);
  waiter_close(&w);
  ews_store_close(s);

  if (use_mount) CHECK_EQ(mount(NULL, dir, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
  else CHECK_EQ(chmod(sub, 0500), 0);
  ews_store_t *none = NULL;
  CHECK_EQ(ews_store_open(&cfg, &none), EWS_EIO);
  CHECK(none == NULL);
  /* Not even the data directory can be created. */
  char sub2[128];
  snprintf(sub2, sizeof sub2, "%s/%s", use_mount ? dir : sub, "new");
  ews_store_config_t cfg2 = base_cfg(sub2);
  CHECK_EQ(ews_store_open(&cfg2, &none), EWS_EIO);
  CHECK(none == NULL);

  if (use_mount) CHECK_EQ(mount(NULL, dir, NULL, MS_REMOUNT, NULL), 0);
  else CHECK_EQ(chmod(sub, 0750), 0);
  s = open_store(&cfg);
  waiter_open(&w, s);
  CHECK_EQ(append(&w, "ro", "again").offset, 2);
  ews_store_history_t h = history(&w, "ro", 0, 10);
  CHECK_EQ(h.n, 2);
  if (h.n == 2) CHECK_MEM(h.msgs[0].payload, "kept", 4);
  ews_store_history_free(&h);
  waiter_close(&w);
  ews_store_close(s);
  fprintf(stderr, "  readonly (%s): refused to open, then opened with its history\n",
          use_mount ? "tmpfs remounted read-only" : "chmod");
  if (use_mount) umount2(dir, MNT_DETACH);
  rm_rf(dir); /* as nobody: the directory is nobody's */
  return test_failures_ - before;
}

TEST(readonly_dir) {
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    int r = readonly_child();
    fflush(stderr);
    _exit(r > 100 ? 100 : r);
  }
  int status = 0;
  CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WIFEXITED(status) ? WEXITSTATUS(status) : 1, 0);
}

/* ---- bench ---------------------------------------------------------------------------- */

typedef struct {
  ews_store_t *s;
  int n, window;
  int64_t *start, *lat; /* per request, us */
  int got;
  int failed;
} bench_thread_t;

/* A client's completions come in its submission order: the got-th completion is
 * the got-th request submitted. */
static void bench_done(ews_store_req_t *r, void *ud) {
  bench_thread_t *b = ud;
  if (r->status) b->failed++;
  b->lat[b->got] = mono_us() - b->start[b->got];
  b->got++;
}

static void *bench_thread(void *arg) {
  bench_thread_t *b = arg;
  waiter_t w;
  waiter_open(&w, b->s);
  char payload[128];
  memset(payload, 'x', sizeof payload);
  int sent = 0;
  while (b->got < b->n) {
    while (sent < b->n && sent - b->got < b->window) {
      ews_store_req_t *r;
      ews_store_req_append(&r, "bench", 5, payload, sizeof payload);
      b->start[sent++] = mono_us();
      if (ews_store_submit(w.c, r, bench_done, b)) abort();
    }
    waiter_step(&w);
  }
  waiter_close(&w);
  return NULL;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static void bench_run(const char *base, int threads, int window, uint32_t max_batch, int per) {
  char dir[256];
  snprintf(dir, sizeof dir, "%s/bench-%d-%d-%u", base, threads, window, max_batch);
  rm_rf(dir);
  ews_store_config_t cfg = {.dir = dir, .max_batch = max_batch};
  ews_store_t *s;
  if (ews_store_open(&cfg, &s)) abort();
  bench_thread_t b[8];
  pthread_t th[8];
  int64_t t0 = mono_us();
  for (int i = 0; i < threads; i++) {
    b[i] = (bench_thread_t){.s = s, .n = per, .window = window,
                            .start = calloc((size_t)per, 8), .lat = calloc((size_t)per, 8)};
    pthread_create(&th[i], NULL, bench_thread, &b[i]);
  }
  for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
  int64_t elapsed = mono_us() - t0;
  ews_store_stats_t st;
  ews_store_stats(s, &st);
  ews_store_close(s);
  int total = threads * per;
  int64_t *all = calloc((size_t)total, 8);
  int failed = 0;
  for (int i = 0; i < threads; i++) {
    memcpy(all + (size_t)i * per, b[i].lat, (size_t)per * 8);
    failed += b[i].failed;
    free(b[i].start);
    free(b[i].lat);
  }
  qsort(all, (size_t)total, 8, cmp_i64);
  printf("%-7s threads=%d window=%-3d  %8.0f appends/s  p50 %6.2f ms  p99 %6.2f ms  "
         "%6llu commits (%.1f per commit)%s\n",
         max_batch == 1 ? "1/tx" : "batched", threads, window, total / (elapsed / 1e6),
         all[total / 2] / 1000.0, all[(size_t)total * 99 / 100] / 1000.0,
         (unsigned long long)st.commits, (double)total / (double)(st.commits ? st.commits : 1),
         failed ? "  FAILURES" : "");
  fflush(stdout);
  free(all);
  rm_rf(dir);
}

/* Reads on a client's connection, as a worker would do them on its loop. */
static void bench_reads(const char *base) {
  char dir[256];
  snprintf(dir, sizeof dir, "%s/bench-reads", base);
  rm_rf(dir);
  ews_store_config_t cfg = {.dir = dir};
  ews_store_t *s;
  if (ews_store_open(&cfg, &s)) abort();
  waiter_t w;
  waiter_open(&w, s);
  char payload[128];
  memset(payload, 'x', sizeof payload);
  int sent = 0, got = 0;
  result_t sink;
  /* 100 topics x 1000 messages, 1000 users x 50 notifications. */
  while (got < 150000) {
    while (sent < 150000 && sent - got < 512) {
      ews_store_req_t *r;
      char key[16];
      int kl;
      if (sent < 100000) {
        kl = snprintf(key, sizeof key, "topic%d", sent % 100);
        ews_store_req_append(&r, key, (size_t)kl, payload, sizeof payload);
      } else {
        kl = snprintf(key, sizeof key, "user%d", sent % 1000);
        ews_store_req_notif(&r, key, (size_t)kl, payload, sizeof payload, -1);
      }
      ews_store_submit(w.c, r, copy_result, &sink);
      sent++;
    }
    got += (int)waiter_step(&w);
  }
  unsigned seed = 1;
  enum { N = 20000 };
  int64_t *lat = calloc(N, 8);
  for (int kind = 0; kind < 3; kind++) {
    for (int i = 0; i < N; i++) {
      char key[16];
      int64_t t0 = mono_us();
      if (kind == 0) {
        int kl = snprintf(key, sizeof key, "topic%u", rand_r(&seed) % 100);
        ews_store_history_t h;
        ews_store_history(w.c, key, (size_t)kl, rand_r(&seed) % 1000, 100, &h);
        ews_store_history_free(&h);
      } else {
        int kl = snprintf(key, sizeof key, "user%u", rand_r(&seed) % 1000);
        ews_store_notifs_t r;
        if (kind == 1) ews_store_notif_pending(w.c, key, (size_t)kl, 20, &r);
        else ews_store_notif_list(w.c, key, (size_t)kl, 20, 20, &r);
        ews_store_notifs_free(&r);
      }
      lat[i] = mono_us() - t0;
    }
    qsort(lat, N, 8, cmp_i64);
    printf("read: %-36s p50 %5lld us  p99 %5lld us  max %5lld us\n",
           kind == 0 ? "history(since random, limit 100)"
                     : kind == 1 ? "notif_pending(limit 20) of 50" : "notif_list(limit 20, offset 20)",
           (long long)lat[N / 2], (long long)lat[N * 99 / 100], (long long)lat[N - 1]);
  }
  free(lat);
  waiter_close(&w);
  ews_store_close(s);
  rm_rf(dir);
}

static int bench(const char *base) {
  mkdir(base, 0750);
  for (int threads = 1; threads <= 2; threads++) {
    bench_run(base, threads, 1, 1024, 2000);
    bench_run(base, threads, 64, 1024, 20000);
    bench_run(base, threads, 256, 1024, 50000);
    bench_run(base, threads, 64, 1, 3000);
  }
  bench_reads(base);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "bench") == 0) return bench(argc > 2 ? argv[2] : "./bench-data");
  RUN(offsets_per_topic);
  RUN(batching);
  RUN(history);
  RUN(max_queue_size);
  RUN(message_ttl);
  RUN(epochs);
  RUN(notifications);
  RUN(notification_ttl);
  RUN(busy_and_backpressure);
  RUN(one_bad_request_in_a_batch);
  RUN(clean_reopen);
  RUN(submit_while_closing);
  RUN(durability_sigkill);
  RUN(disk_full);
  RUN(disk_full_log);
  RUN(readonly_dir);
  return TEST_EXIT();
}
