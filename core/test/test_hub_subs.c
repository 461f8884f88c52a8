/* test_hub_subs.c — subscriber arrays with back-indexes (hub/subs.c): with a
 * back-index kept the way channels.c and pubsub_subs.c keep theirs, any sequence of
 * joins and leaves leaves the array holding exactly the members, each at the index it
 * knows; a leave costs one move. */
#include <stdlib.h>

#include "err.h"
#include "hub/subs.h"
#include "test.h"

#define N 1000

static ews_conn_t *conn_of(int i) { return (ews_conn_t *)(uintptr_t)(0x1000 + 16 * i); }
static int id_of(const ews_conn_t *c) { return (int)(((uintptr_t)c - 0x1000) / 16); }

static uint32_t back[N]; /* each member's index, as a service keeps it */
static int member[N];

static void leave(ews_subs_t *s, int i) {
  ews_conn_t *moved = ews_subs_remove(s, back[i]);
  if (moved) back[id_of(moved)] = back[i];
  member[i] = 0;
}

static int consistent(const ews_subs_t *s) {
  uint32_t count = 0;
  for (int i = 0; i < N; i++) {
    if (!member[i]) continue;
    count++;
    if (back[i] >= s->n || s->v[back[i]] != conn_of(i)) return 0;
  }
  return count == s->n && s->n <= s->cap;
}

TEST(joins_and_leaves_keep_every_back_index) {
  ews_subs_t s = {0};
  unsigned seed = 7;
  int ok = 1;
  for (int step = 0; step < 20000; step++) {
    seed = seed * 1103515245u + 12345u;
    int i = (int)((seed >> 8) % N);
    if (member[i]) {
      leave(&s, i);
    } else {
      back[i] = s.n;
      CHECK_EQ(ews_subs_add(&s, conn_of(i)), 0);
      member[i] = 1;
    }
    if (step % 97 == 0) ok &= consistent(&s);
  }
  CHECK(ok);
  CHECK(consistent(&s));
  for (int i = 0; i < N; i++)
    if (member[i]) leave(&s, i);
  CHECK_EQ(s.n, 0);
  ews_subs_free(&s);
  CHECK(s.v == NULL && s.cap == 0);
}

TEST(removing_the_last_moves_nobody) {
  ews_subs_t s = {0};
  CHECK_EQ(ews_subs_add(&s, conn_of(1)), 0);
  CHECK_EQ(ews_subs_add(&s, conn_of(2)), 0);
  CHECK(ews_subs_remove(&s, 1) == NULL);
  CHECK(ews_subs_remove(&s, 0) == NULL);
  CHECK_EQ(s.n, 0);
  CHECK_EQ(ews_subs_reserve(&s, 100), 0);
  CHECK(s.cap >= 100);
  ews_subs_free(&s);
}

int main(void) {
  RUN(joins_and_leaves_keep_every_back_index);
  RUN(removing_the_last_moves_nobody);
  return TEST_EXIT();
}
