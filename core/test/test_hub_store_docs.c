/* test_hub_store_docs.c — the document logs of the SQLite store (hub/store.h:
 * EWS_STORE_DOC_APPEND, ews_store_doc_load): revisions continue exactly or the
 * append is refused, a failed append in a batch fails alone and its successors
 * with it, snapshots and trimming, reopening, the pipeline of many appends in
 * flight. A plain thread stands in for a worker. */
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>

#include "err.h"
#include "hub/store.h"
#include "test.h"

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
  (void)sb, (void)flag, (void)f;
  return remove(p);
}

static void rm_rf(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

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

static void waiter_open(waiter_t *w, ews_store_t *s) {
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->m, NULL);
  pthread_cond_init(&w->cv, NULL);
  if (ews_store_client_open(s, waiter_wake, w, &w->c) != 0) abort();
}

static void waiter_close(waiter_t *w) {
  ews_store_client_close(w->c);
  pthread_mutex_destroy(&w->m);
  pthread_cond_destroy(&w->cv);
}

static void waiter_step(waiter_t *w) {
  pthread_mutex_lock(&w->m);
  while (!w->woken) pthread_cond_wait(&w->cv, &w->m);
  w->woken = 0;
  pthread_mutex_unlock(&w->m);
  ews_store_client_drain(w->c);
}

typedef struct {
  int done, status, order;
  int64_t created_at;
} result_t;

static int completions; /* order in which callbacks ran */

static void copy_result(ews_store_req_t *r, void *ud) {
  result_t *res = ud;
  res->done = 1;
  res->status = r->status;
  res->created_at = r->created_at;
  res->order = ++completions;
}

static ews_store_req_t *req(const char *doc, int64_t rev, const char *client, int64_t seq,
                            const char *op, const char *snap, int64_t keep) {
  ews_store_req_t *r;
  int e = ews_store_req_doc_append(&r, doc, strlen(doc), rev, client, strlen(client), seq, op,
                                   strlen(op), snap, snap ? strlen(snap) : 0, keep);
  if (e) abort();
  return r;
}

static int append(waiter_t *w, const char *doc, int64_t rev, const char *op, const char *snap,
                  int64_t keep) {
  result_t res = {0};
  int e = ews_store_submit(w->c, req(doc, rev, "c1", rev, op, snap, keep), copy_result, &res);
  if (e) return e;
  while (!res.done) waiter_step(w);
  return res.status;
}

static ews_store_t *open_store(const char *dir) {
  ews_store_config_t cfg = {.dir = dir, .sweep_interval_ms = 3600000};
  ews_store_t *s = NULL;
  CHECK_EQ(ews_store_open(&cfg, &s), 0);
  if (!s) abort();
  return s;
}

static ews_store_doc_t load(waiter_t *w, const char *doc, int64_t history) {
  ews_store_doc_t d;
  CHECK_EQ(ews_store_doc_load(w->c, doc, strlen(doc), history, &d), 0);
  return d;
}

static int op_is(const ews_store_doc_op_t *o, const char *s) {
  return o->len == strlen(s) && memcmp(o->op, s, o->len) == 0;
}

TEST(revisions_continue_exactly) {
  char dir[] = "/tmp/ews-docs-XXXXXX";
  if (!mkdtemp(dir)) abort();
  ews_store_t *s = open_store(dir);
  waiter_t w;
  waiter_open(&w, s);

  ews_store_doc_t d = load(&w, "a", 10);
  CHECK_EQ(d.exists, 0);
  CHECK_EQ(d.n, 0);
  ews_store_doc_free(&d);

  CHECK_EQ(append(&w, "a", 2, "[\"x\"]", NULL, 0), EWS_ECONFLICT); /* no revision 1 yet */
  CHECK_EQ(append(&w, "a", 1, "[\"a\"]", NULL, 0), 0);
  CHECK_EQ(append(&w, "a", 1, "[\"b\"]", NULL, 0), EWS_ECONFLICT); /* 1 again */
  CHECK_EQ(append(&w, "a", 3, "[1,\"c\"]", NULL, 0), EWS_ECONFLICT); /* skips 2 */
  CHECK_EQ(append(&w, "a", 2, "[1,\"b\"]", NULL, 0), 0);
  CHECK_EQ(append(&w, "b", 1, "[\"other\"]", NULL, 0), 0); /* documents are independent */

  d = load(&w, "a", 10);
  CHECK_EQ(d.exists, 1);
  CHECK_EQ(d.rev, 2);
  CHECK_EQ(d.snapshot_rev, 0);
  CHECK_EQ(d.snapshot_len, 0);
  CHECK_EQ(d.n, 2);
  if (d.n == 2) {
    CHECK_EQ(d.ops[0].rev, 1);
    CHECK(op_is(&d.ops[0], "[\"a\"]"));
    CHECK_EQ(d.ops[1].rev, 2);
    CHECK_EQ(d.ops[1].seq, 2);
    CHECK(op_is(&d.ops[1], "[1,\"b\"]"));
    CHECK_STR(d.ops[1].client, "c1");
    CHECK_EQ(d.ops[1].client_len, 2);
  }
  ews_store_doc_free(&d);

  /* Bad arguments are refused by the constructor. */
  ews_store_req_t *r = NULL;
  CHECK_EQ(ews_store_req_doc_append(&r, "a", 1, 0, "c", 1, 1, "[]", 2, NULL, 0, 0), EWS_EINVAL);
  CHECK_EQ(ews_store_req_doc_append(&r, "", 0, 1, "c", 1, 1, "[]", 2, NULL, 0, 0), EWS_EINVAL);
  CHECK_EQ(ews_store_req_doc_append(&r, "a", 1, 1, "c", 1, 1, "[]", 2, NULL, 0, -1), EWS_EINVAL);
  CHECK(r == NULL);

  waiter_close(&w);
  ews_store_close(s);
  rm_rf(dir);
}

/* Many appends in flight at once (the owner does not wait for one before the next):
 * they complete in order, in few transactions; when one in the middle is refused
 * (here: a hole in the revisions), every later one is refused too, so the log never
 * has a hole that a later revision covers up. */
TEST(pipeline_and_a_refused_append) {
  char dir[] = "/tmp/ews-docs-XXXXXX";
  if (!mkdtemp(dir)) abort();
  ews_store_t *s = open_store(dir);
  waiter_t w;
  waiter_open(&w, s);

  enum { N = 200 };
  static result_t res[N];
  memset(res, 0, sizeof res);
  completions = 0;
  char op[32];
  for (int i = 0; i < N; i++) {
    snprintf(op, sizeof op, "[%d,\"x\"]", i);
    /* revision 151 is never submitted: 152.. cannot follow */
    int64_t rev = i < 150 ? i + 1 : i + 2;
    CHECK_EQ(ews_store_submit(w.c, req("p", rev, "c", rev, op, NULL, 0), copy_result, &res[i]), 0);
  }
  int done = 0;
  while (!done) {
    waiter_step(&w);
    done = 1;
    for (int i = 0; i < N; i++) done &= res[i].done;
  }
  for (int i = 0; i < N; i++) {
    CHECK_EQ(res[i].order, i + 1);
    CHECK_EQ(res[i].status, i < 150 ? 0 : EWS_ECONFLICT);
  }
  ews_store_doc_t d = load(&w, "p", 1000);
  CHECK_EQ(d.rev, 150);
  CHECK_EQ(d.n, 150);
  for (size_t i = 0; i < d.n; i++) CHECK_EQ(d.ops[i].rev, (int64_t)i + 1);
  ews_store_doc_free(&d);
  ews_store_stats_t st;
  ews_store_stats(s, &st);
  CHECK(st.failed >= 50);

  waiter_close(&w);
  ews_store_close(s);
  rm_rf(dir);
}

/* A snapshot replaces the stored text and trims the log to `keep` ops before it;
 * load returns the snapshot, the ops after it and at least `history` recent ones
 * when retained. */
TEST(snapshots_and_trimming) {
  char dir[] = "/tmp/ews-docs-XXXXXX";
  if (!mkdtemp(dir)) abort();
  ews_store_t *s = open_store(dir);
  waiter_t w;
  waiter_open(&w, s);

  char op[32], snap[64];
  for (int rev = 1; rev <= 30; rev++) {
    snprintf(op, sizeof op, "[%d,\"x\"]", rev - 1);
    snprintf(snap, sizeof snap, "text at %d", rev);
    /* a snapshot every 10 revisions, keeping 5 ops before it */
    CHECK_EQ(append(&w, "s", rev, op, rev % 10 == 0 ? snap : NULL, 5), 0);
  }
  CHECK_EQ(append(&w, "s", 31, "[30,\"y\"]", NULL, 5), 0);
  CHECK_EQ(append(&w, "s", 32, "[31,\"z\"]", NULL, 5), 0);

  /* history 0: the snapshot and the ops after it */
  ews_store_doc_t d = load(&w, "s", 0);
  CHECK_EQ(d.rev, 32);
  CHECK_EQ(d.snapshot_rev, 30);
  CHECK(d.snapshot_len == strlen("text at 30") && !memcmp(d.snapshot, "text at 30", d.snapshot_len));
  CHECK_EQ(d.n, 2);
  if (d.n == 2) {
    CHECK_EQ(d.ops[0].rev, 31);
    CHECK(op_is(&d.ops[0], "[30,\"y\"]"));
  }
  ews_store_doc_free(&d);

  /* history 10: ops 23..32 wanted; 26..32 are retained (25 was trimmed at 30) */
  d = load(&w, "s", 10);
  CHECK_EQ(d.n, 7);
  if (d.n) CHECK_EQ(d.ops[0].rev, 26);
  ews_store_doc_free(&d);

  /* keep 0 trims everything up to the snapshot */
  for (int rev = 33; rev <= 40; rev++) {
    snprintf(op, sizeof op, "[%d,\"x\"]", rev - 1);
    CHECK_EQ(append(&w, "s", rev, op, rev == 40 ? "forty" : NULL, 0), 0);
  }
  d = load(&w, "s", 100);
  CHECK_EQ(d.snapshot_rev, 40);
  CHECK_EQ(d.n, 0);
  ews_store_doc_free(&d);

  /* an empty snapshot is a snapshot (the empty text) */
  CHECK_EQ(append(&w, "s", 41, "[-5]", "", 0), 0);
  d = load(&w, "s", 0);
  CHECK_EQ(d.snapshot_rev, 41);
  CHECK_EQ(d.snapshot_len, 0);
  ews_store_doc_free(&d);

  waiter_close(&w);
  ews_store_close(s);

  /* Everything is there after reopening. */
  s = open_store(dir);
  waiter_open(&w, s);
  d = load(&w, "s", 0);
  CHECK_EQ(d.rev, 41);
  CHECK_EQ(d.snapshot_rev, 41);
  ews_store_doc_free(&d);
  CHECK_EQ(append(&w, "s", 42, "[\"again\"]", NULL, 0), 0);
  waiter_close(&w);
  ews_store_close(s);
  rm_rf(dir);
}

/* Binary-safe payloads (the op and snapshot are whatever the caller encodes), and a
 * large snapshot. */
TEST(large_and_binary) {
  char dir[] = "/tmp/ews-docs-XXXXXX";
  if (!mkdtemp(dir)) abort();
  ews_store_t *s = open_store(dir);
  waiter_t w;
  waiter_open(&w, s);

  size_t big = 3u << 20;
  char *text = malloc(big);
  if (!text) abort();
  for (size_t i = 0; i < big; i++) text[i] = (char)('a' + i % 26);
  text[17] = 0; /* NUL inside */
  ews_store_req_t *r;
  CHECK_EQ(ews_store_req_doc_append(&r, "big", 3, 1, "", 0, 0, "[\"..\"]", 6, text, big, 5), 0);
  result_t res = {0};
  CHECK_EQ(ews_store_submit(w.c, r, copy_result, &res), 0);
  while (!res.done) waiter_step(&w);
  CHECK_EQ(res.status, 0);
  ews_store_doc_t d = load(&w, "big", 0);
  CHECK_EQ(d.snapshot_len, big);
  CHECK(d.snapshot_len == big && memcmp(d.snapshot, text, big) == 0);
  CHECK_EQ(d.n, 0);
  ews_store_doc_free(&d);
  d = load(&w, "big", 5);
  CHECK_EQ(d.n, 1);
  if (d.n) {
    CHECK_EQ(d.ops[0].client_len, 0);
    CHECK_STR(d.ops[0].client, "");
  }
  ews_store_doc_free(&d);
  free(text);

  waiter_close(&w);
  ews_store_close(s);
  rm_rf(dir);
}

int main(void) {
  RUN(revisions_continue_exactly);
  RUN(pipeline_and_a_refused_append);
  RUN(snapshots_and_trimming);
  RUN(large_and_binary);
  return TEST_EXIT();
}
