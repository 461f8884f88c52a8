/* test_net_timers.c — the per-worker timer wheel: nodes fire at (not before) their
 * tick, in any order of scheduling, across several turns of the wheel, can be
 * rescheduled or cancelled (also from inside their callback), schedule_min only
 * ever moves a deadline earlier, the longest delay (UINT32_MAX ms) does not wrap,
 * and a long stall fires everything that is due once. */
#include "net/timers.h"
#include "test.h"

typedef struct {
  ews_tnode_t node;
  int fired;
  uint64_t fired_at;
  int reschedule_ms; /* > 0: reschedule from the callback */
} item_t;

static uint64_t now_ms;
static ews_wheel_t wheel;

static void on_fire(ews_tnode_t *n, void *ud) {
  (void)ud;
  item_t *it = (item_t *)n;
  it->fired++;
  it->fired_at = now_ms;
  if (it->reschedule_ms > 0) {
    int d = it->reschedule_ms;
    it->reschedule_ms = 0;
    ews_wheel_schedule(&wheel, n, (uint32_t)d);
  }
}

static void advance_to(uint64_t ms) {
  while (now_ms < ms) {
    now_ms += EWS_TICK_MS;
    ews_wheel_advance(&wheel, now_ms, on_fire, NULL);
  }
}

TEST(fires_on_time_never_early) {
  now_ms = 1000;
  ews_wheel_init(&wheel, now_ms);
  item_t items[5] = {0};
  uint32_t delays[5] = {1, 50, 120, 12800 + 70, 40000}; /* last two span turns */
  for (int i = 4; i >= 0; i--) ews_wheel_schedule(&wheel, &items[i].node, delays[i]);
  CHECK_EQ(wheel.count, 5);
  advance_to(1000 + 41000);
  for (int i = 0; i < 5; i++) {
    CHECK_EQ(items[i].fired, 1);
    CHECK(items[i].fired_at >= 1000 + delays[i]);
    CHECK(items[i].fired_at < 1000 + delays[i] + 2 * EWS_TICK_MS);
    CHECK(!ews_wheel_scheduled(&items[i].node));
  }
  CHECK_EQ(wheel.count, 0);
}

TEST(reschedule_and_cancel) {
  now_ms = 0;
  ews_wheel_init(&wheel, now_ms);
  item_t a = {0}, b = {0}, c = {0};
  ews_wheel_schedule(&wheel, &a.node, 100);
  ews_wheel_schedule(&wheel, &b.node, 100);
  ews_wheel_schedule(&wheel, &c.node, 100);
  ews_wheel_schedule(&wheel, &a.node, 1000); /* moves, not duplicates */
  ews_wheel_cancel(&wheel, &b.node);
  ews_wheel_cancel(&wheel, &b.node); /* idempotent */
  CHECK_EQ(wheel.count, 2);
  c.reschedule_ms = 300;            /* from inside its own callback */
  advance_to(200);
  CHECK_EQ(a.fired, 0);
  CHECK_EQ(b.fired, 0);
  CHECK_EQ(c.fired, 1);
  CHECK(ews_wheel_scheduled(&c.node));
  advance_to(1100);
  CHECK_EQ(a.fired, 1);
  CHECK_EQ(c.fired, 2);
  CHECK(c.fired_at >= 100 + 300);
  CHECK_EQ(wheel.count, 0);
}

TEST(a_long_stall_fires_everything_due_once) {
  now_ms = 5000;
  ews_wheel_init(&wheel, now_ms);
  item_t items[300] = {0};
  for (int i = 0; i < 300; i++) ews_wheel_schedule(&wheel, &items[i].node, (uint32_t)(i * 37 + 1));
  now_ms += 60000; /* one jump of far more than a turn */
  ews_wheel_advance(&wheel, now_ms, on_fire, NULL);
  int all = 1;
  for (int i = 0; i < 300; i++) all &= items[i].fired == 1;
  CHECK(all);
  CHECK_EQ(wheel.count, 0);
}

TEST(schedule_min_only_moves_earlier) {
  now_ms = 0;
  ews_wheel_init(&wheel, now_ms);
  item_t a = {0}, b = {0};
  ews_wheel_schedule_min(&wheel, &a.node, 500); /* not scheduled: schedules */
  CHECK(ews_wheel_scheduled(&a.node));
  ews_wheel_schedule_min(&wheel, &a.node, 5000); /* later: stays at 500 */
  ews_wheel_schedule(&wheel, &b.node, 30000);
  ews_wheel_schedule_min(&wheel, &b.node, 200); /* earlier: moves */
  CHECK_EQ(wheel.count, 2);
  advance_to(300);
  CHECK_EQ(b.fired, 1);
  CHECK_EQ(a.fired, 0);
  advance_to(600);
  CHECK_EQ(a.fired, 1);
  CHECK(a.fired_at >= 500);
  CHECK_EQ(wheel.count, 0);
}

TEST(the_longest_delay_does_not_wrap) {
  now_ms = 77;
  ews_wheel_init(&wheel, now_ms);
  item_t a = {0};
  ews_wheel_schedule(&wheel, &a.node, UINT32_MAX); /* ~49.7 days */
  advance_to(77 + 100000);
  CHECK_EQ(a.fired, 0);
  CHECK((int32_t)(a.node.due - wheel.now) > 0);
  ews_wheel_cancel(&wheel, &a.node);
  CHECK_EQ(wheel.count, 0);
}

int main(void) {
  RUN(schedule_min_only_moves_earlier);
  RUN(the_longest_delay_does_not_wrap);
  RUN(fires_on_time_never_early);
  RUN(reschedule_and_cancel);
  RUN(a_long_stall_fires_everything_due_once);
  return TEST_EXIT();
}
