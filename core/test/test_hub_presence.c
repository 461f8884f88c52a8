/* test_hub_presence.c — the process-wide presence tables (hub/presence.h): members
 * with several connections, batched diffs (a join and leave in one batch cancel),
 * event JSON and its escaping, global status with expiry, get/list/count with
 * cursor pagination, the heartbeat sweep, channels freed when empty, threads
 * joining the same channel at once, and the diffs a cluster engine mirrors. Times are fake seconds passed in. */
#include <pthread.h>

#include "err.h"
#include "hub/presence.h"
#include "test.h"

#define S(s) s, sizeof s - 1

static double now = 1000;

/* Takes the next batch (forced) and returns its events' JSON joined by '\n'. */
static char *take_all(void) {
  static char buf[1 << 16];
  buf[0] = 0;
  size_t n = 0;
  ews_presence_event_t *e = ews_presence_take(now, 1);
  for (ews_presence_event_t *x = e; x; x = x->next) {
    if (n + x->json_len + 2 < sizeof buf) {
      memcpy(buf + n, x->json, x->json_len);
      n += x->json_len;
      buf[n++] = '\n';
      buf[n] = 0;
    }
  }
  ews_presence_events_free(e);
  return buf;
}

static int join(const char *ch, const char *uid, uint64_t conn) {
  return ews_presence_join(ch, strlen(ch), uid, strlen(uid), NULL, 0, NULL, 0, 0, conn,
                           (void *)(uintptr_t)conn, now);
}

TEST(multi_connection_membership) {
  CHECK_EQ(join("room", "alice", 1), 1);
  CHECK_EQ(join("room", "alice", 2), 0); /* a second tab: not a new join */
  CHECK_EQ(join("room", "alice", 2), 0); /* the same connection again */
  CHECK_EQ(ews_presence_count(S("room")), 1);
  CHECK_STR(take_all(), "{\"type\":\"presence\",\"channel\":\"room\",\"joins\":[{\"user\":\"alice\","
                        "\"status\":\"online\",\"meta\":{}}],\"leaves\":[]}\n");
  CHECK_EQ(ews_presence_leave(S("room"), 1), 0); /* one tab of two: still present */
  CHECK_EQ(ews_presence_leave(S("room"), 1), EWS_EINVAL);
  CHECK_STR(take_all(), "");
  CHECK_EQ(ews_presence_count(S("room")), 1);
  CHECK_EQ(ews_presence_drop_conn(2), 1); /* the last one closes */
  CHECK_EQ(ews_presence_count(S("room")), 0);
  CHECK_STR(take_all(), "{\"type\":\"presence\",\"channel\":\"room\",\"joins\":[],\"leaves\":[\"alice\"]}\n");
  CHECK_EQ(ews_presence_channels(), 0);
  CHECK_EQ(ews_presence_conns(), 0);
  CHECK_EQ(ews_presence_users(), 0);
}

TEST(batch_cancels_and_orders) {
  CHECK_EQ(join("b", "u1", 10), 1);
  CHECK_EQ(join("b", "u2", 11), 1);
  CHECK_EQ(ews_presence_drop_conn(10), 1); /* u1 joined and left within the batch */
  CHECK_EQ(join("b2", "u3", 12), 1);
  CHECK_STR(take_all(), "{\"type\":\"presence\",\"channel\":\"b\",\"joins\":[{\"user\":\"u2\",\"status\":"
                        "\"online\",\"meta\":{}}],\"leaves\":[]}\n"
                        "{\"type\":\"presence\",\"channel\":\"b2\",\"joins\":[{\"user\":\"u3\",\"status\":"
                        "\"online\",\"meta\":{}}],\"leaves\":[]}\n");
  /* A leave and a re-join in one batch: no change to announce. */
  CHECK_EQ(ews_presence_drop_conn(11), 1);
  CHECK_EQ(join("b", "u2", 13), 1);
  CHECK_STR(take_all(), "");
  /* Not forced: at most one batch per interval for the whole process. */
  CHECK_EQ(join("b", "u4", 14), 1);
  ews_presence_event_t *e = ews_presence_take(now, 0);
  CHECK(e == NULL);
  now += 0.2;
  e = ews_presence_take(now, 0);
  CHECK(e != NULL && e->next == NULL);
  ews_presence_events_free(e);
  ews_presence_drop_conn(12);
  ews_presence_drop_conn(13);
  ews_presence_drop_conn(14);
  take_all();
  CHECK_EQ(ews_presence_channels(), 0);
}

TEST(one_event_for_many_joins) {
  char uid[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(uid, sizeof uid, "user%04d", i);
    CHECK_EQ(join("big", uid, 1000 + (uint64_t)i), 1);
  }
  ews_presence_event_t *e = ews_presence_take(now, 1);
  CHECK(e && !e->next);
  int joins = 0;
  for (const char *p = e ? e->json : ""; (p = strstr(p, "\"user\":")); p++) joins++;
  CHECK_EQ(joins, 1000);
  ews_presence_events_free(e);
  CHECK_EQ(ews_presence_count(S("big")), 1000);
  /* list pages through all of them in id order */
  ews_presence_result_t r;
  char cursor[32] = "";
  size_t curl = 0, seen = 0;
  int pages = 0, in_order = 1;
  char last[32] = "";
  do {
    CHECK_EQ(ews_presence_list(S("big"), pages ? cursor : NULL, curl, 300, now, &r), 0);
    for (size_t i = 0; i < r.n; i++) {
      char id[32];
      snprintf(id, sizeof id, "%.*s", (int)r.v[i].user_len, r.v[i].user);
      if (strcmp(id, last) <= 0) in_order = 0;
      strcpy(last, id);
      CHECK_EQ(r.v[i].connections, 1);
    }
    seen += r.n;
    pages++;
    curl = r.next_cursor_len;
    if (r.next_cursor) memcpy(cursor, r.next_cursor, curl);
    int more = r.next_cursor != NULL;
    ews_presence_result_free(&r);
    if (!more) break;
  } while (pages < 10);
  CHECK_EQ(seen, 1000);
  CHECK_EQ(pages, 4);
  CHECK(in_order);
  CHECK_STR(last, "user0999");
  for (int i = 0; i < 1000; i++) CHECK_EQ(ews_presence_drop_conn(1000 + (uint64_t)i), 1);
  e = ews_presence_take(now, 1);
  CHECK(e && !e->next && strstr(e->json, "\"joins\":[],\"leaves\":[\"user0000\""));
  ews_presence_events_free(e);
  CHECK_EQ(ews_presence_channels(), 0);
}

TEST(json_escaping) {
  const char ch[] = "q\"\\\n\x01";
  const char uid[] = "\xc3\xa9t\xe9"; /* "ét" then a lone 0xe9: not UTF-8 */
  CHECK_EQ(ews_presence_join(ch, sizeof ch - 1, uid, sizeof uid - 1, S("a\"b"), S("{\"x\":[1,2]}"),
                             0, 50, NULL, now), 1);
  CHECK_STR(take_all(), "{\"type\":\"presence\",\"channel\":\"q\\\"\\\\\\n\\u0001\",\"joins\":[{\"user\":"
                        "\"\\u00c3\\u00a9t\\u00e9\",\"status\":\"a\\\"b\",\"meta\":{\"x\":[1,2]}}],"
                        "\"leaves\":[]}\n");
  CHECK_EQ(ews_presence_join(S("x"), S("u"), NULL, 0, S("\xff"), 0, 51, NULL, now), EWS_EINVAL);
  ews_presence_drop_conn(50);
  take_all();
}

TEST(status_and_expiry) {
  ews_presence_result_t r;
  const char *ids[] = {"carol", "dave"};
  size_t lens[] = {5, 4};
  CHECK_EQ(ews_presence_set_status(S("carol"), S("busy"), S("{\"m\":1}"), 10, now), 0);
  CHECK_EQ(join("r", "carol", 60), 1);
  CHECK_EQ(ews_presence_get(ids, lens, 2, now, &r), 0);
  CHECK_EQ(r.n, 2);
  CHECK_MEM(r.v[0].status, "busy", 4);
  CHECK_MEM(r.v[0].meta, "{\"m\":1}", 7);
  CHECK_EQ(r.v[0].online, 1);
  CHECK_EQ(r.v[0].nchannels, 1);
  CHECK_STR(r.v[0].channels, "r");
  CHECK_EQ(r.v[1].status_len, 7);
  CHECK_MEM(r.v[1].status, "offline", 7);
  CHECK(r.v[1].meta == NULL);
  CHECK_EQ(r.v[1].online, 0);
  ews_presence_result_free(&r);
  /* a member without a status of its own shows the global one */
  CHECK(strstr(take_all(), "\"status\":\"busy\""));
  now += 11; /* expired: back to the default */
  CHECK_EQ(ews_presence_get(ids, lens, 1, now, &r), 0);
  CHECK_EQ(r.v[0].status_len, 6);
  CHECK_MEM(r.v[0].status, "online", 6);
  CHECK(r.v[0].meta == NULL);
  ews_presence_result_free(&r);
  CHECK_EQ(ews_presence_list(S("r"), NULL, 0, 10, now, &r), 0);
  CHECK_EQ(r.n, 1);
  CHECK_MEM(r.v[0].status, "online", 6);
  CHECK(r.next_cursor == NULL);
  ews_presence_result_free(&r);
  ews_presence_drop_conn(60);
  take_all();
  CHECK_EQ(ews_presence_get(ids, lens, 1, now, &r), 0);
  CHECK_MEM(r.v[0].status, "offline", 7);
  CHECK_EQ(r.v[0].nchannels, 0);
  ews_presence_result_free(&r);
  /* a status without members lives until it expires, then is collected */
  CHECK_EQ(ews_presence_set_status(S("erin"), S("away"), NULL, 0, 5, now), 0);
  CHECK_EQ(ews_presence_users(), 1);
  now += 6;
  ews_presence_events_free(ews_presence_take(now, 1));
  CHECK_EQ(ews_presence_users(), 0);
  /* clearing */
  CHECK_EQ(ews_presence_set_status(S("erin"), S("away"), NULL, 0, 0, now), 0);
  CHECK_EQ(ews_presence_set_status(S("erin"), NULL, 0, NULL, 0, 0, now), 0);
  CHECK_EQ(ews_presence_users(), 0);
}

TEST(member_status_and_rejoin_as_other_user) {
  ews_presence_result_t r;
  CHECK_EQ(ews_presence_join(S("s"), S("u1"), S("typing"), S("{\"a\":1}"), 1, 70, NULL, now), 1);
  CHECK_EQ(ews_presence_join(S("s"), S("u1"), S("idle"), NULL, 0, 1, 71, NULL, now), 0);
  CHECK_EQ(ews_presence_list(S("s"), NULL, 0, 10, now, &r), 0);
  CHECK_EQ(r.n, 1);
  CHECK_EQ(r.v[0].connections, 2);
  CHECK_MEM(r.v[0].status, "idle", 4); /* the latest join wins */
  CHECK_MEM(r.v[0].meta, "{\"a\":1}", 7);
  ews_presence_result_free(&r);
  /* connection 71 joins again as u2: u1 keeps connection 70 */
  CHECK_EQ(ews_presence_join(S("s"), S("u2"), NULL, 0, NULL, 0, 1, 71, NULL, now), 1);
  CHECK_EQ(ews_presence_count(S("s")), 2);
  CHECK_EQ(ews_presence_drop_conn(70), 1);
  CHECK_EQ(ews_presence_drop_conn(71), 1);
  take_all();
  CHECK_EQ(ews_presence_channels(), 0);
}

static int probe_calls;
static int probe(void *conn, double *last_ping, void *ud) {
  (void)last_ping;
  probe_calls++;
  uintptr_t stale = *(uintptr_t *)ud;
  return (uintptr_t)conn == stale;
}

TEST(sweep) {
  CHECK_EQ(ews_presence_join(S("h"), S("a"), NULL, 0, NULL, 0, 1, 80, (void *)(uintptr_t)80, now), 1);
  CHECK_EQ(ews_presence_join(S("h"), S("a"), NULL, 0, NULL, 0, 2, 81, (void *)(uintptr_t)81, now), 0);
  CHECK_EQ(ews_presence_join(S("h2"), S("a"), NULL, 0, NULL, 0, 1, 80, (void *)(uintptr_t)80, now), 1);
  take_all();
  uintptr_t stale = 80;
  probe_calls = 0;
  CHECK_EQ(ews_presence_sweep(1, probe, &stale), 1); /* worker 1's connection only */
  CHECK_EQ(probe_calls, 1);
  CHECK_EQ(ews_presence_count(S("h")), 1);
  CHECK_EQ(ews_presence_count(S("h2")), 0);
  CHECK_STR(take_all(), "{\"type\":\"presence\",\"channel\":\"h2\",\"joins\":[],\"leaves\":[\"a\"]}\n");
  stale = 81;
  CHECK_EQ(ews_presence_sweep(2, probe, &stale), 1);
  CHECK_EQ(ews_presence_count(S("h")), 0);
  take_all();
  CHECK_EQ(ews_presence_conns(), 0);
  CHECK_EQ(ews_presence_channels(), 0);
}

/* Threads as workers: each joins 500 users (two connections each) into one channel,
 * then drops them. */
static void *thread_main(void *arg) {
  int t = (int)(intptr_t)arg;
  char uid[32];
  for (int i = 0; i < 500; i++) {
    snprintf(uid, sizeof uid, "t%d-%d", t, i);
    uint64_t id = ((uint64_t)i << 8) | (uint64_t)t;
    ews_presence_join(S("shared"), uid, strlen(uid), NULL, 0, NULL, 0, t, id * 2, NULL, now);
    ews_presence_join(S("shared"), uid, strlen(uid), NULL, 0, NULL, 0, t, id * 2 + 1, NULL, now);
  }
  return NULL;
}

TEST(threads) {
  pthread_t th[4];
  for (int t = 0; t < 4; t++) pthread_create(&th[t], NULL, thread_main, (void *)(intptr_t)t);
  for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
  CHECK_EQ(ews_presence_count(S("shared")), 2000);
  CHECK_EQ(ews_presence_conns(), 4000);
  ews_presence_event_t *e = ews_presence_take(now, 1);
  int joins = 0; /* ~90 KB of joins: in two events */
  for (ews_presence_event_t *x = e; x; x = x->next)
    for (const char *p = x->json; (p = strstr(p, "\"user\":")); p++) joins++;
  CHECK_EQ(joins, 2000);
  ews_presence_events_free(e);
  int left = 0;
  for (int t = 0; t < 4; t++)
    for (int i = 0; i < 500; i++) {
      uint64_t id = ((uint64_t)i << 8) | (uint64_t)t;
      left += ews_presence_drop_conn(id * 2);
      left += ews_presence_drop_conn(id * 2 + 1);
    }
  CHECK_EQ(left, 2000);
  take_all();
  CHECK_EQ(ews_presence_channels(), 0);
  CHECK_EQ(ews_presence_users(), 0);
}

TEST(updates_of_present_members) {
  CHECK_EQ(join("up", "ann", 40), 1);
  CHECK_EQ(join("up", "bo", 41), 1);
  take_all();
  /* ann's socket joins again with a status of its own: an update, not a join */
  CHECK_EQ(ews_presence_join(S("up"), S("ann"), S("away"), S("{\"x\":1}"), 0, 40, NULL, now), 0);
  /* bo shows the global status: setting it is announced in bo's channels */
  CHECK_EQ(ews_presence_set_status(S("bo"), S("busy"), NULL, 0, 0, now), 0);
  CHECK_STR(take_all(), "{\"type\":\"presence\",\"channel\":\"up\",\"joins\":[],\"leaves\":[],"
                        "\"updates\":[{\"user\":\"ann\",\"status\":\"away\",\"meta\":{\"x\":1}},"
                        "{\"user\":\"bo\",\"status\":\"busy\",\"meta\":{}}]}\n");
  /* the expiry of a shown global status is announced (checked once a second) */
  CHECK_EQ(ews_presence_set_status(S("bo"), S("brb"), NULL, 0, 5, now), 0);
  take_all();
  now += 6;
  CHECK_STR(take_all(), "{\"type\":\"presence\",\"channel\":\"up\",\"joins\":[],\"leaves\":[],"
                        "\"updates\":[{\"user\":\"bo\",\"status\":\"online\",\"meta\":{}}]}\n");
  /* a member with its own status does not follow the global one */
  CHECK_EQ(ews_presence_set_status(S("ann"), S("gone"), NULL, 0, 0, now), 0);
  CHECK_STR(take_all(), "");
  /* a join and an update in one batch: one join with the latest status */
  CHECK_EQ(join("up2", "cy", 42), 1);
  CHECK_EQ(ews_presence_join(S("up2"), S("cy"), S("here"), NULL, 0, 0, 42, NULL, now), 0);
  CHECK_STR(take_all(), "{\"type\":\"presence\",\"channel\":\"up2\",\"joins\":[{\"user\":\"cy\","
                        "\"status\":\"here\",\"meta\":{}}],\"leaves\":[]}\n");
  ews_presence_drop_conn(40);
  ews_presence_drop_conn(41);
  ews_presence_drop_conn(42);
  ews_presence_set_status(S("bo"), NULL, 0, NULL, 0, 0, now);
  ews_presence_set_status(S("ann"), NULL, 0, NULL, 0, 0, now);
  take_all();
}

TEST(big_batches_are_split) {
  char uid[32];
  for (int i = 0; i < 6000; i++) {
    snprintf(uid, sizeof uid, "split-user-%05d", i);
    CHECK_EQ(join("huge", uid, 50000 + (uint64_t)i), 1);
  }
  ews_presence_event_t *e = ews_presence_take(now, 1);
  int events = 0, joins = 0, small = 1;
  for (ews_presence_event_t *x = e; x; x = x->next) {
    events++;
    if (x->json_len > 80 * 1024) small = 0;
    CHECK(x->json[x->json_len - 1] == '}' && !strncmp(x->json, "{\"type\":\"presence\"", 18));
    for (const char *p = x->json; (p = strstr(p, "\"user\":")); p++) joins++;
  }
  CHECK(events >= 4);   /* ~380 KB of joins in chunks of about 64 KB */
  CHECK(small);
  CHECK_EQ(joins, 6000); /* every user once */
  ews_presence_events_free(e);
  for (int i = 0; i < 6000; i++) ews_presence_drop_conn(50000 + (uint64_t)i);
  e = ews_presence_take(now, 1);
  int leaves = 0;
  for (ews_presence_event_t *x = e; x; x = x->next)
    for (const char *p = x->json; (p = strstr(p, "split-user-")); p++) leaves++;
  CHECK_EQ(leaves, 6000);
  ews_presence_events_free(e);
  CHECK_EQ(ews_presence_channels(), 0);
}

/* What a cluster engine mirrors: the diffs with each member as it is now (its
 * connections too, which events do not announce), the users pending per channel,
 * a snapshot of every member, leave_user's user, and events of chosen kinds. */
TEST(diffs_for_a_mirror) {
  ews_presence_events_free(ews_presence_take(now, 1));
  CHECK_EQ(ews_presence_join(S("m"), S("ann"), S("busy"), S("{\"a\":1}"), 0, 70, (void *)70, now), 1);
  CHECK_EQ(join("m", "bob", 71), 1);
  ews_presence_pend_user_t *pu;
  size_t np = ews_presence_pending_users(S("m"), &pu);
  CHECK_EQ(np, 2);
  CHECK(np == 2 && pu[0].present && pu[1].present && pu[0].len == 3);
  free(pu);
  ews_presence_diff_t *d = ews_presence_take_diffs(now, 1);
  CHECK(d && !d->next && d->channel_len == 1 && d->channel[0] == 'm');
  const ews_presence_change_t *x = d ? d->changes : NULL;
  CHECK(x && x->present && !x->was_present && x->connections == 1 && x->user_len == 3 &&
        !memcmp(x->user, "ann", 3) && x->status_len == 4 && !memcmp(x->status, "busy", 4) &&
        x->meta_len == 7 && ews_presence_kind(x) == 'j');
  CHECK(x && x->entry_len == strlen("{\"user\":\"ann\",\"status\":\"busy\",\"meta\":{\"a\":1}}") &&
        !memcmp(x->entry, "{\"user\":\"ann\",\"status\":\"busy\",\"meta\":{\"a\":1}}", x->entry_len));
  /* announced as chosen: ann as a join, bob not at all */
  ews_presence_event_t *e = d ? ews_presence_events_of(d->channel, d->channel_len, d->changes, "j\0") : NULL;
  CHECK(e && !e->next && strstr(e->json, "\"ann\"") && !strstr(e->json, "bob"));
  ews_presence_events_free(e);
  ews_presence_diffs_free(d);
  np = ews_presence_pending_users(S("m"), &pu);
  CHECK_EQ(np, 0);
  free(pu);
  /* a second connection of ann: a change for a mirror (its count), no event */
  CHECK_EQ(join("m", "ann", 72), 0);
  d = ews_presence_take_diffs(now, 1);
  x = d ? d->changes : NULL;
  CHECK(x && x->present && x->was_present && x->connections == 2 && ews_presence_kind(x) == 0);
  e = d ? ews_presence_events_of(d->channel, d->channel_len, d->changes, NULL) : NULL;
  CHECK(e == NULL);
  ews_presence_diffs_free(d);
  /* a snapshot: every member as present */
  d = ews_presence_snapshot(NULL, NULL);
  int n = 0;
  for (x = d ? d->changes : NULL; x; x = x->next) n++;
  CHECK(d && !d->next);
  CHECK_EQ(n, 2);
  ews_presence_diffs_free(d);
  /* leave_user tells whose leave it was */
  char uid[8];
  size_t ul;
  CHECK_EQ(ews_presence_leave_user(S("m"), 71, uid, sizeof uid, &ul), 1);
  CHECK(ul == 3 && !memcmp(uid, "bob", 3));
  d = ews_presence_take_diffs(now, 1);
  x = d ? d->changes : NULL;
  CHECK(x && !x->present && x->was_present && ews_presence_kind(x) == 'l' && x->entry_len == 5 &&
        !memcmp(x->entry, "\"bob\"", 5));
  ews_presence_diffs_free(d);
  ews_presence_drop_conn(70);
  ews_presence_drop_conn(72);
  ews_presence_events_free(ews_presence_take(now, 1));
  CHECK_EQ(ews_presence_channels(), 0);
}

int main(void) {
  RUN(multi_connection_membership);
  RUN(batch_cancels_and_orders);
  RUN(one_event_for_many_joins);
  RUN(json_escaping);
  RUN(status_and_expiry);
  RUN(member_status_and_rejoin_as_other_user);
  RUN(sweep);
  RUN(threads);
  RUN(updates_of_present_members);
  RUN(big_batches_are_split);
  RUN(diffs_for_a_mirror);
  return TEST_EXIT();
}
