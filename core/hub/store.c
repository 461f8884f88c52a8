/* store.c — the SQLite store for history, notifications and document logs (see
 * store.h). */
#include "hub/store.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "hub/hash.h"
#include "log.h"

#define DB_NAME "edgews.db"
#define SCHEMA_VERSION 1
#define SWEEP_TOPICS 512      /* topics visited per periodic sweep */
#define SWEEP_ROWS 10000      /* rows a sweep deletes per topic / notification pass */
#define MAX_PAYLOAD 1000000000u
#define MAX_MARK_IDS 1000

/* ---- statements ------------------------------------------------------------------ */

enum {
  W_BEGIN,
  W_COMMIT,
  W_ROLLBACK,
  W_TOPIC_BUMP,
  W_TOPIC_ENSURE,
  W_TOPIC_GET,
  W_TOPIC_RESET,
  W_TOPIC_RETENTION,
  W_TOPIC_PAGE,
  W_MSG_INSERT,
  W_MSG_CUT,
  W_MSG_OLDEST,
  W_MSG_CLEAR,
  W_NOTIF_INSERT,
  W_NOTIF_CAP,
  W_NOTIF_MARK,
  W_NOTIF_EXPIRE,
  W_DOC_CREATE,
  W_DOC_BUMP,
  W_DOC_OP,
  W_DOC_SNAPSHOT,
  W_DOC_TRIM,
  W_COUNT
};

static const char *const writer_sql[W_COUNT] = {
  [W_BEGIN] = "BEGIN IMMEDIATE",
  [W_COMMIT] = "COMMIT",
  [W_ROLLBACK] = "ROLLBACK",
  /* ?2 (the epoch) is only used when the topic is created by this append. */
  [W_TOPIC_BUMP] =
      "INSERT INTO topics(name, epoch, last_offset, created_at) VALUES(?1, ?2, 1, ?3) "
      "ON CONFLICT(name) DO UPDATE SET last_offset = last_offset + 1 "
      "RETURNING id, epoch, last_offset, max_queue_size, message_ttl",
  [W_TOPIC_ENSURE] =
      "INSERT INTO topics(name, epoch, last_offset, created_at) VALUES(?1, ?2, 0, ?3) "
      "ON CONFLICT(name) DO NOTHING",
  [W_TOPIC_GET] =
      "SELECT id, epoch, last_offset, max_queue_size, message_ttl FROM topics "
      "WHERE name = ?1",
  [W_TOPIC_RESET] = "UPDATE topics SET epoch = ?2, last_offset = 0 WHERE id = ?1",
  [W_TOPIC_RETENTION] =
      "UPDATE topics SET max_queue_size = ?2, message_ttl = ?3 WHERE id = ?1",
  [W_TOPIC_PAGE] =
      "SELECT id, last_offset, max_queue_size, message_ttl FROM topics WHERE id > ?1 "
      "ORDER BY id LIMIT ?2",
  [W_MSG_INSERT] =
      "INSERT INTO messages(topic_id, offset, created_at, payload) VALUES(?1, ?2, ?3, ?4)",
  [W_MSG_CUT] = "DELETE FROM messages WHERE topic_id = ?1 AND offset <= ?2",
  [W_MSG_OLDEST] =
      "SELECT offset, created_at FROM messages WHERE topic_id = ?1 ORDER BY offset "
      "LIMIT ?2",
  [W_MSG_CLEAR] = "DELETE FROM messages WHERE topic_id = ?1",
  [W_NOTIF_INSERT] =
      "INSERT INTO notifications(user, payload, created_at, state, expires_at) "
      "VALUES(?1, ?2, ?3, 0, ?4)",
  /* Drops everything older than the user's ?2-th newest: walks at most ?2 index
   * entries of (user, id). */
  [W_NOTIF_CAP] =
      "DELETE FROM notifications WHERE user = ?1 AND id <= (SELECT id FROM "
      "notifications WHERE user = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
  [W_NOTIF_MARK] =
      "UPDATE notifications SET state = ?1 WHERE id = ?2 AND state < ?1 "
      "AND (?3 IS NULL OR user = ?3)",
  [W_NOTIF_EXPIRE] =
      "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications "
      "WHERE expires_at <= ?1 LIMIT ?2)",
  /* Documents: revision 1 creates the row; every later one moves rev from exactly
   * rev - 1 (no row returned: a conflict). */
  [W_DOC_CREATE] =
      "INSERT INTO docs(name, rev, snapshot, snapshot_rev, created_at, updated_at) "
      "VALUES(?1, 1, X'', 0, ?2, ?2) ON CONFLICT(name) DO NOTHING RETURNING id",
  [W_DOC_BUMP] =
      "UPDATE docs SET rev = ?2, updated_at = ?3 WHERE name = ?1 AND rev = ?2 - 1 "
      "RETURNING id",
  [W_DOC_OP] =
      "INSERT INTO doc_ops(doc_id, rev, client, seq, op, created_at) "
      "VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
  [W_DOC_SNAPSHOT] = "UPDATE docs SET snapshot = ?2, snapshot_rev = ?3 WHERE id = ?1",
  [W_DOC_TRIM] = "DELETE FROM doc_ops WHERE doc_id = ?1 AND rev <= ?2",
};

enum {
  R_BEGIN,
  R_COMMIT,
  R_TOPIC,
  R_FIRST,
  R_MSGS,
  R_PENDING,
  R_PENDING_COUNT,
  R_LIST,
  R_LIST_COUNT,
  R_DOC,
  R_DOC_OPS,
  R_COUNT
};

static const char *const reader_sql[R_COUNT] = {
  [R_BEGIN] = "BEGIN",
  [R_COMMIT] = "COMMIT",
  [R_TOPIC] = "SELECT id, epoch, last_offset FROM topics WHERE name = ?1",
  [R_FIRST] = "SELECT offset FROM messages WHERE topic_id = ?1 ORDER BY offset LIMIT 1",
  [R_MSGS] =
      "SELECT offset, created_at, payload FROM messages WHERE topic_id = ?1 "
      "AND offset > ?2 ORDER BY offset LIMIT ?3",
  [R_PENDING] =
      "SELECT id, created_at, expires_at, state, payload FROM notifications "
      "WHERE user = ?1 AND state = 0 AND (expires_at IS NULL OR expires_at > ?2) "
      "ORDER BY id LIMIT ?3",
  [R_PENDING_COUNT] =
      "SELECT count(*) FROM notifications WHERE user = ?1 AND state = 0 "
      "AND (expires_at IS NULL OR expires_at > ?2)",
  [R_LIST] =
      "SELECT id, created_at, expires_at, state, payload FROM notifications "
      "WHERE user = ?1 AND (expires_at IS NULL OR expires_at > ?2) "
      "ORDER BY id DESC LIMIT ?3 OFFSET ?4",
  [R_LIST_COUNT] =
      "SELECT count(*) FROM notifications WHERE user = ?1 "
      "AND (expires_at IS NULL OR expires_at > ?2)",
  [R_DOC] = "SELECT id, rev, snapshot_rev, snapshot FROM docs WHERE name = ?1",
  [R_DOC_OPS] =
      "SELECT rev, seq, client, op FROM doc_ops WHERE doc_id = ?1 AND rev > ?2 ORDER BY rev",
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS topics("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  epoch INTEGER NOT NULL,"
    "  last_offset INTEGER NOT NULL,"
    "  max_queue_size INTEGER," /* NULL = the global setting */
    "  message_ttl INTEGER,"
    "  created_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS messages("
    "  topic_id INTEGER NOT NULL,"
    "  offset INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  payload BLOB NOT NULL,"
    "  PRIMARY KEY(topic_id, offset));"
    "CREATE TABLE IF NOT EXISTS notifications("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT," /* ids are never reused */
    "  user TEXT NOT NULL,"
    "  payload BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  state INTEGER NOT NULL,"
    "  expires_at INTEGER);" /* NULL = never */
    "CREATE INDEX IF NOT EXISTS notif_user ON notifications(user, id);"
    "CREATE INDEX IF NOT EXISTS notif_pending ON notifications(user, id) WHERE state = 0;"
    "CREATE INDEX IF NOT EXISTS notif_expiry ON notifications(expires_at) "
    "  WHERE expires_at IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS docs("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL UNIQUE,"
    "  rev INTEGER NOT NULL,"          /* newest committed revision */
    "  snapshot BLOB NOT NULL,"        /* the text at snapshot_rev */
    "  snapshot_rev INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS doc_ops("
    "  doc_id INTEGER NOT NULL,"
    "  rev INTEGER NOT NULL,"          /* the revision this op made */
    "  client TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  op BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY(doc_id, rev));";

/* ---- types ------------------------------------------------------------------------ */

struct ews_store {
  ews_store_config_t cfg;
  char *dir;
  char *path;
  sqlite3 *db; /* the writer's; touched only by the writer thread after open */
  sqlite3_stmt *st[W_COUNT];
  pthread_t thread;
  int thread_started;

  pthread_mutex_t lock; /* queue, stopping */
  pthread_cond_t cond;
  ews_store_req_t *head, *tail;
  size_t nq;
  int stopping;

  /* writer-thread state */
  uint64_t rng;
  int64_t last_now;
  int64_t sweep_cursor;
  uint64_t batch_gen;

  int clients; /* atomic */
  ews_store_stats_t stats; /* fields updated with atomics */
};

struct ews_store_client {
  ews_store_t *store;
  sqlite3 *db;
  sqlite3_stmt *st[R_COUNT];
  ews_store_wake_fn wake;
  void *wake_ud;
  pthread_mutex_t lock; /* inbox, pending */
  pthread_cond_t cond;
  ews_store_req_t *head, *tail;
  size_t pending; /* submitted, not yet in the inbox */
  int closing;
  /* writer thread only */
  uint64_t wake_gen;
  size_t batch_count;
  ews_store_client_t *wake_next;
};

/* ---- helpers ------------------------------------------------------------------------ */

/* The writer thread's error log. While writes keep failing (a full disk fails every
 * batch) the errors are counted here instead of logged one by one: the writer logs
 * one line when the failures start and one when a write works again. */
static __thread struct {
  int failing;        /* every request since `since` failed */
  uint64_t refused;   /* requests failed meanwhile */
  uint64_t quiet;     /* errors not logged meanwhile */
  int64_t since;      /* ms, CLOCK_MONOTONIC */
} wlog;

/* SQLite's result -> EWS_E*: out of space (SQLITE_FULL, or a write refused with
 * ENOSPC, EDQUOT or EFBIG) -> EWS_ENOSPACE, out of memory -> EWS_ENOMEM, anything
 * else -> EWS_EIO; logs every error but memory (see wlog). */
static int map_rc(sqlite3 *db, int rc, const char *what) {
  if (rc == SQLITE_NOMEM) return EWS_ENOMEM;
  int xrc = db ? sqlite3_extended_errcode(db) : rc;
  int sys = db ? sqlite3_system_errno(db) : 0;
  int space = (rc & 0xff) == SQLITE_FULL ||
              ((rc & 0xff) == SQLITE_IOERR && (sys == ENOSPC || sys == EDQUOT || sys == EFBIG));
  if (wlog.failing) wlog.quiet++;
  else if (sys)
    EWS_ERROR("store: %s: %s (%d, %s)", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), xrc,
              strerror(sys));
  else
    EWS_ERROR("store: %s: %s (%d)", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), xrc);
  return space ? EWS_ENOSPACE : EWS_EIO;
}

static void stat_add(uint64_t *field, uint64_t v) { __atomic_add_fetch(field, v, __ATOMIC_RELAXED); }

static int64_t real_clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t store_now(const ews_store_t *s) {
  return s->cfg.clock_ms ? s->cfg.clock_ms(s->cfg.clock_ud) : real_clock_ms();
}

static int64_t new_epoch(ews_store_t *s) {
  uint64_t e;
  do e = ews_splitmix64(&s->rng);
  while (e == 0);
  return (int64_t)e; /* stored as SQLite's signed 64-bit integer, read back as uint64 */
}

static int prepare_all(sqlite3 *db, const char *const *sql, sqlite3_stmt **st, int n) {
  for (int i = 0; i < n; i++) {
    int rc = sqlite3_prepare_v3(db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL);
    if (rc != SQLITE_OK) return map_rc(db, rc, sql[i]);
  }
  return 0;
}

static void finalize_all(sqlite3_stmt **st, int n) {
  for (int i = 0; i < n; i++) {
    sqlite3_finalize(st[i]);
    st[i] = NULL;
  }
}

/* Runs a statement that returns no rows (or whose rows are ignored) to completion. */
static int run(sqlite3 *db, sqlite3_stmt *st) {
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? 0 : map_rc(db, rc, sqlite3_sql(st));
}

static void done_stmt(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

static int64_t col_or(sqlite3_stmt *st, int i, int64_t dflt) {
  return sqlite3_column_type(st, i) == SQLITE_NULL ? dflt : sqlite3_column_int64(st, i);
}

/* ---- requests ------------------------------------------------------------------------ */

static int valid_key(const char *k, size_t n) { return k && n > 0 && n <= EWS_STORE_MAX_KEY; }

static ews_store_req_t *req_new(ews_store_op_t op, const char *key, size_t key_len,
                                const void *payload, size_t len, const int64_t *ids,
                                size_t n_ids) {
  size_t ids_bytes = n_ids * sizeof(int64_t);
  size_t key_bytes = key ? key_len + 1 : 0;
  ews_store_req_t *r = calloc(1, sizeof *r + ids_bytes + key_bytes + len + 1);
  if (!r) return NULL;
  char *p = (char *)(r + 1); /* sizeof *r is a multiple of 8: ids stay aligned */
  if (n_ids) {
    memcpy(p, ids, ids_bytes);
    r->ids = (const int64_t *)(void *)p;
    r->n_ids = n_ids;
    p += ids_bytes;
  }
  if (key) {
    memcpy(p, key, key_len);
    p[key_len] = 0;
    r->key = p;
    r->key_len = key_len;
    p += key_bytes;
  }
  if (len && payload) memcpy(p, payload, len); /* NULL: the caller fills it */
  r->payload = p; /* never NULL, even when empty: SQLite binds NULL for a NULL blob */
  r->payload_len = len;
  r->op = op;
  return r;
}

int ews_store_req_append(ews_store_req_t **out, const char *topic, size_t topic_len,
                         const void *payload, size_t len) {
  *out = NULL;
  if (!valid_key(topic, topic_len) || len > MAX_PAYLOAD || (len && !payload))
    return EWS_EINVAL;
  *out = req_new(EWS_STORE_APPEND, topic, topic_len, payload, len, NULL, 0);
  return *out ? 0 : EWS_ENOMEM;
}

int ews_store_req_reset(ews_store_req_t **out, const char *topic, size_t topic_len) {
  *out = NULL;
  if (!valid_key(topic, topic_len)) return EWS_EINVAL;
  *out = req_new(EWS_STORE_RESET, topic, topic_len, NULL, 0, NULL, 0);
  return *out ? 0 : EWS_ENOMEM;
}

int ews_store_req_retention(ews_store_req_t **out, const char *topic, size_t topic_len,
                            int32_t max_queue_size, int32_t message_ttl) {
  *out = NULL;
  if (!valid_key(topic, topic_len) || max_queue_size < EWS_STORE_INHERIT ||
      message_ttl < EWS_STORE_INHERIT)
    return EWS_EINVAL;
  *out = req_new(EWS_STORE_RETENTION, topic, topic_len, NULL, 0, NULL, 0);
  if (!*out) return EWS_ENOMEM;
  (*out)->max_queue_size = max_queue_size;
  (*out)->message_ttl = message_ttl;
  return 0;
}

int ews_store_req_notif(ews_store_req_t **out, const char *user, size_t user_len,
                        const void *payload, size_t len, int32_t ttl) {
  *out = NULL;
  if (!valid_key(user, user_len) || len > MAX_PAYLOAD || (len && !payload) || ttl < -1)
    return EWS_EINVAL;
  *out = req_new(EWS_STORE_NOTIF, user, user_len, payload, len, NULL, 0);
  if (!*out) return EWS_ENOMEM;
  (*out)->ttl = ttl;
  return 0;
}

int ews_store_req_mark(ews_store_req_t **out, const char *user, size_t user_len,
                       const int64_t *ids, size_t n, ews_notif_state_t state) {
  *out = NULL;
  if ((user && !valid_key(user, user_len)) || !ids || n == 0 || n > MAX_MARK_IDS ||
      (state != EWS_NOTIF_PENDING && state != EWS_NOTIF_DELIVERED && state != EWS_NOTIF_READ))
    return EWS_EINVAL;
  *out = req_new(EWS_STORE_MARK, user, user_len, NULL, 0, ids, n);
  if (!*out) return EWS_ENOMEM;
  (*out)->state = (int)state;
  return 0;
}

int ews_store_req_sweep(ews_store_req_t **out) {
  *out = req_new(EWS_STORE_SWEEP, NULL, 0, NULL, 0, NULL, 0);
  return *out ? 0 : EWS_ENOMEM;
}

int ews_store_req_doc_append(ews_store_req_t **out, const char *doc, size_t doc_len, int64_t rev,
                             const char *client, size_t client_len, int64_t seq, const void *op,
                             size_t op_len, const void *snapshot, size_t snapshot_len,
                             int64_t keep) {
  *out = NULL;
  if (!valid_key(doc, doc_len) || rev < 1 || keep < 0 || client_len > EWS_STORE_MAX_KEY ||
      (client_len && !client) || op_len > MAX_PAYLOAD || (op_len && !op) ||
      snapshot_len > MAX_PAYLOAD || (snapshot_len && !snapshot))
    return EWS_EINVAL;
  /* The op is the payload; the client and the snapshot follow it in the same block. */
  size_t extra = client_len + 1 + (snapshot ? snapshot_len + 1 : 0);
  ews_store_req_t *r = req_new(EWS_STORE_DOC_APPEND, doc, doc_len, NULL, op_len + extra, NULL, 0);
  if (!r) return EWS_ENOMEM;
  char *p = (char *)r->payload;
  if (op_len) memcpy(p, op, op_len);
  p += op_len;
  r->payload_len = op_len;
  if (client_len) memcpy(p, client, client_len);
  p[client_len] = 0;
  r->author = p;
  r->author_len = client_len;
  p += client_len + 1;
  if (snapshot) {
    if (snapshot_len) memcpy(p, snapshot, snapshot_len);
    r->snapshot = p;
    r->snapshot_len = snapshot_len;
  }
  r->rev = rev;
  r->seq = seq;
  r->keep = keep;
  *out = r;
  return 0;
}

void ews_store_req_free(ews_store_req_t *req) { free(req); }

/* ---- the writer: executing requests --------------------------------------------------- */

typedef struct {
  int64_t id, epoch, last_offset, max_queue_size, message_ttl; /* -1: inherit */
} topic_row_t;

/* Effective retention of a topic: its own value unless it inherits the global one. */
static void effective(const ews_store_t *s, const topic_row_t *t, int64_t *maxq,
                      int64_t *ttl) {
  *maxq = t->max_queue_size >= 0 ? t->max_queue_size : s->cfg.max_queue_size;
  *ttl = t->message_ttl >= 0 ? t->message_ttl : s->cfg.message_ttl;
}

/* Deletes the prefix of a topic that retention no longer keeps; adds to *deleted. */
static int apply_retention(ews_store_t *s, const topic_row_t *t, int64_t now,
                           int64_t *deleted) {
  int64_t maxq, ttl;
  effective(s, t, &maxq, &ttl);
  int64_t cut = 0; /* delete offsets <= cut */
  if (maxq > 0 && t->last_offset > maxq) cut = t->last_offset - maxq;
  if (ttl > 0) {
    /* Oldest first, stopping at the first message still young enough: cheap when
     * nothing expired (one index seek), proportional to what is deleted otherwise.
     * Retention thus always removes a prefix. */
    int64_t expire_before = now - ttl * 1000;
    sqlite3_stmt *st = s->st[W_MSG_OLDEST];
    sqlite3_bind_int64(st, 1, t->id);
    sqlite3_bind_int64(st, 2, SWEEP_ROWS);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      if (sqlite3_column_int64(st, 1) >= expire_before) break;
      int64_t off = sqlite3_column_int64(st, 0);
      if (off > cut) cut = off;
    }
    done_stmt(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return map_rc(s->db, rc, "retention scan");
  }
  if (cut <= 0) return 0;
  sqlite3_stmt *st = s->st[W_MSG_CUT];
  sqlite3_bind_int64(st, 1, t->id);
  sqlite3_bind_int64(st, 2, cut);
  int r = run(s->db, st);
  if (r == 0 && deleted) *deleted += sqlite3_changes64(s->db);
  return r;
}

static int read_topic(sqlite3_stmt *st, topic_row_t *t) {
  t->id = sqlite3_column_int64(st, 0);
  t->epoch = sqlite3_column_int64(st, 1);
  t->last_offset = sqlite3_column_int64(st, 2);
  t->max_queue_size = col_or(st, 3, -1);
  t->message_ttl = col_or(st, 4, -1);
  return 0;
}

/* The topic's row, created (offset 0, new epoch) when missing. */
static int ensure_topic(ews_store_t *s, const ews_store_req_t *r, int64_t now, topic_row_t *t) {
  sqlite3_stmt *st = s->st[W_TOPIC_ENSURE];
  sqlite3_bind_text(st, 1, r->key, (int)r->key_len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, new_epoch(s));
  sqlite3_bind_int64(st, 3, now);
  int e = run(s->db, st);
  if (e) return e;
  st = s->st[W_TOPIC_GET];
  sqlite3_bind_text(st, 1, r->key, (int)r->key_len, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) read_topic(st, t);
  done_stmt(st);
  return rc == SQLITE_ROW ? 0 : map_rc(s->db, rc == SQLITE_DONE ? SQLITE_ERROR : rc, "topic");
}

static int do_append(ews_store_t *s, ews_store_req_t *r, int64_t now) {
  topic_row_t t;
  sqlite3_stmt *st = s->st[W_TOPIC_BUMP];
  sqlite3_bind_text(st, 1, r->key, (int)r->key_len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, new_epoch(s));
  sqlite3_bind_int64(st, 3, now);
  int rc = sqlite3_step(st), got = rc == SQLITE_ROW;
  if (got) {
    read_topic(st, &t);
    rc = sqlite3_step(st); /* run the statement to completion */
  }
  done_stmt(st);
  if (rc != SQLITE_DONE || !got)
    return map_rc(s->db, rc == SQLITE_DONE ? SQLITE_ERROR : rc, "append: topic");

  st = s->st[W_MSG_INSERT];
  sqlite3_bind_int64(st, 1, t.id);
  sqlite3_bind_int64(st, 2, t.last_offset);
  sqlite3_bind_int64(st, 3, now);
  sqlite3_bind_blob(st, 4, r->payload, (int)r->payload_len, SQLITE_STATIC);
  int e = run(s->db, st);
  if (e) return e;
  if ((e = apply_retention(s, &t, now, NULL))) return e;
  r->epoch = (uint64_t)t.epoch;
  r->offset = t.last_offset;
  r->created_at = now;
  return 0;
}

static int do_reset(ews_store_t *s, ews_store_req_t *r, int64_t now) {
  topic_row_t t;
  int e = ensure_topic(s, r, now, &t);
  if (e) return e;
  sqlite3_stmt *st = s->st[W_MSG_CLEAR];
  sqlite3_bind_int64(st, 1, t.id);
  if ((e = run(s->db, st))) return e;
  int64_t epoch = new_epoch(s);
  st = s->st[W_TOPIC_RESET];
  sqlite3_bind_int64(st, 1, t.id);
  sqlite3_bind_int64(st, 2, epoch);
  if ((e = run(s->db, st))) return e;
  r->epoch = (uint64_t)epoch;
  return 0;
}

static int do_retention(ews_store_t *s, ews_store_req_t *r, int64_t now) {
  topic_row_t t;
  int e = ensure_topic(s, r, now, &t);
  if (e) return e;
  sqlite3_stmt *st = s->st[W_TOPIC_RETENTION];
  sqlite3_bind_int64(st, 1, t.id);
  if (r->max_queue_size >= 0) sqlite3_bind_int64(st, 2, r->max_queue_size);
  if (r->message_ttl >= 0) sqlite3_bind_int64(st, 3, r->message_ttl);
  if ((e = run(s->db, st))) return e;
  t.max_queue_size = r->max_queue_size;
  t.message_ttl = r->message_ttl;
  r->epoch = (uint64_t)t.epoch;
  return apply_retention(s, &t, now, &r->changed);
}

static int do_notif(ews_store_t *s, ews_store_req_t *r, int64_t now) {
  int64_t ttl = r->ttl == 0 ? s->cfg.notif_ttl : r->ttl;
  sqlite3_stmt *st = s->st[W_NOTIF_INSERT];
  sqlite3_bind_text(st, 1, r->key, (int)r->key_len, SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, r->payload, (int)r->payload_len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, now);
  if (ttl > 0) sqlite3_bind_int64(st, 4, now + ttl * 1000);
  int e = run(s->db, st);
  if (e) return e;
  r->id = sqlite3_last_insert_rowid(s->db);
  r->created_at = now;
  if (s->cfg.notif_max_per_user > 0) {
    st = s->st[W_NOTIF_CAP];
    sqlite3_bind_text(st, 1, r->key, (int)r->key_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, s->cfg.notif_max_per_user);
    if ((e = run(s->db, st))) return e;
  }
  return 0;
}

static int do_mark(ews_store_t *s, ews_store_req_t *r) {
  sqlite3_stmt *st = s->st[W_NOTIF_MARK];
  for (size_t i = 0; i < r->n_ids; i++) {
    sqlite3_bind_int(st, 1, r->state);
    sqlite3_bind_int64(st, 2, r->ids[i]);
    if (r->key) sqlite3_bind_text(st, 3, r->key, (int)r->key_len, SQLITE_STATIC);
    int e = run(s->db, st);
    if (e) return e;
    r->changed += sqlite3_changes64(s->db);
  }
  return 0;
}

/* One operation of a document: the row's rev moves from exactly rev - 1 to rev (or
 * the row is created at rev 1), the op is logged, and with a snapshot the snapshot
 * is replaced and the log trimmed. A revision that does not continue the stored
 * ones is a conflict: nothing is written. */
static int do_doc_append(ews_store_t *s, ews_store_req_t *r, int64_t now) {
  sqlite3_stmt *st = s->st[r->rev == 1 ? W_DOC_CREATE : W_DOC_BUMP];
  sqlite3_bind_text(st, 1, r->key, (int)r->key_len, SQLITE_STATIC);
  if (r->rev == 1) {
    sqlite3_bind_int64(st, 2, now);
  } else {
    sqlite3_bind_int64(st, 2, r->rev);
    sqlite3_bind_int64(st, 3, now);
  }
  int rc = sqlite3_step(st), got = rc == SQLITE_ROW;
  int64_t id = got ? sqlite3_column_int64(st, 0) : 0;
  if (got) rc = sqlite3_step(st); /* run the statement to completion */
  done_stmt(st);
  if (rc != SQLITE_DONE) return map_rc(s->db, rc, "doc: revision");
  if (!got) return EWS_ECONFLICT;

  st = s->st[W_DOC_OP];
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_int64(st, 2, r->rev);
  sqlite3_bind_text(st, 3, r->author, (int)r->author_len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 4, r->seq);
  sqlite3_bind_blob(st, 5, r->payload, (int)r->payload_len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 6, now);
  int e = run(s->db, st);
  if (e || !r->snapshot) goto out;

  st = s->st[W_DOC_SNAPSHOT];
  sqlite3_bind_int64(st, 1, id);
  sqlite3_bind_blob64(st, 2, r->snapshot, r->snapshot_len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, r->rev);
  if ((e = run(s->db, st))) goto out;
  int64_t cut = r->rev - r->keep; /* the snapshot is at rev: cut = min(rev, rev - keep) */
  if (cut > 0) {
    st = s->st[W_DOC_TRIM];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, cut);
    e = run(s->db, st);
  }
out:
  if (e == 0) r->created_at = now;
  return e;
}

/* Expired notifications, then retention of the next SWEEP_TOPICS topics. */
static int do_sweep(ews_store_t *s, int64_t now, int64_t *deleted) {
  sqlite3_stmt *st = s->st[W_NOTIF_EXPIRE];
  sqlite3_bind_int64(st, 1, now);
  sqlite3_bind_int64(st, 2, SWEEP_ROWS);
  int e = run(s->db, st);
  if (e) return e;
  *deleted += sqlite3_changes64(s->db);

  topic_row_t page[SWEEP_TOPICS];
  int n = 0, rc;
  st = s->st[W_TOPIC_PAGE];
  sqlite3_bind_int64(st, 1, s->sweep_cursor);
  sqlite3_bind_int(st, 2, SWEEP_TOPICS);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < SWEEP_TOPICS) {
    topic_row_t *t = &page[n++];
    t->id = sqlite3_column_int64(st, 0);
    t->epoch = 0;
    t->last_offset = sqlite3_column_int64(st, 1);
    t->max_queue_size = col_or(st, 2, -1);
    t->message_ttl = col_or(st, 3, -1);
  }
  done_stmt(st);
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return map_rc(s->db, rc, "sweep: topics");
  for (int i = 0; i < n; i++)
    if ((e = apply_retention(s, &page[i], now, deleted))) return e;
  /* The cursor only moves on commit would be exact; moving it here is harmless: a
   * failed sweep skips those topics until the next round. */
  s->sweep_cursor = n == SWEEP_TOPICS ? page[n - 1].id : 0;
  return 0;
}

static int exec_req(ews_store_t *s, ews_store_req_t *r, int64_t now) {
  r->epoch = 0;
  r->offset = r->id = r->created_at = r->changed = 0;
  switch (r->op) {
    case EWS_STORE_APPEND: return do_append(s, r, now);
    case EWS_STORE_RESET: return do_reset(s, r, now);
    case EWS_STORE_RETENTION: return do_retention(s, r, now);
    case EWS_STORE_NOTIF: return do_notif(s, r, now);
    case EWS_STORE_MARK: return do_mark(s, r);
    case EWS_STORE_SWEEP: return do_sweep(s, now, &r->changed);
    case EWS_STORE_DOC_APPEND: return do_doc_append(s, r, now);
  }
  return EWS_EINVAL;
}

static int tx_begin(ews_store_t *s) { return run(s->db, s->st[W_BEGIN]); }

static int tx_commit(ews_store_t *s) {
  int e = run(s->db, s->st[W_COMMIT]);
  if (e == 0) stat_add(&s->stats.commits, 1);
  return e;
}

static void tx_rollback(ews_store_t *s) {
  /* Some errors (SQLITE_FULL, IOERR, ...) have rolled the transaction back already. */
  if (!sqlite3_get_autocommit(s->db)) run(s->db, s->st[W_ROLLBACK]);
}

/* A monotonic "now" for the writer: retention relies on created_at never going
 * back within a topic. */
static int64_t writer_now(ews_store_t *s) {
  int64_t now = store_now(s);
  if (now < s->last_now) now = s->last_now;
  s->last_now = now;
  return now;
}

static void fail_all(ews_store_t *s, ews_store_req_t *batch, size_t n, int e) {
  for (ews_store_req_t *r = batch; r; r = r->next) {
    r->status = e;
    r->epoch = 0;
    r->offset = r->id = r->created_at = r->changed = 0;
  }
  stat_add(&s->stats.failed, n);
}

/* Runs the whole batch in one transaction. If one request fails, the transaction is
 * rolled back and the requests are run again one transaction each, so that the bad
 * request fails alone. If BEGIN or COMMIT fails (lock held past busy_timeout, disk
 * full, I/O error), the whole batch fails: nothing of it is stored. Sets every
 * request's status. */
static void run_batch(ews_store_t *s, ews_store_req_t *batch, size_t n) {
  int64_t now = writer_now(s);
  int e = tx_begin(s);
  if (e) {
    fail_all(s, batch, n, e);
    return;
  }
  for (ews_store_req_t *r = batch; r && e == 0; r = r->next) e = exec_req(s, r, now);
  if (e == 0) {
    if ((e = tx_commit(s))) {
      tx_rollback(s);
      fail_all(s, batch, n, e);
      return;
    }
    for (ews_store_req_t *r = batch; r; r = r->next) r->status = 0;
    uint64_t m = __atomic_load_n(&s->stats.max_batch, __ATOMIC_RELAXED);
    if (n > m) __atomic_store_n(&s->stats.max_batch, n, __ATOMIC_RELAXED);
    stat_add(&s->stats.requests, n);
    return;
  }
  tx_rollback(s);
  if (n == 1) {
    fail_all(s, batch, n, e);
    return;
  }
  for (ews_store_req_t *r = batch; r; r = r->next) {
    int x = tx_begin(s);
    if (x == 0) x = exec_req(s, r, now);
    if (x == 0) x = tx_commit(s);
    if (x) {
      tx_rollback(s);
      r->epoch = 0;
      r->offset = r->id = r->created_at = r->changed = 0;
    }
    r->status = x;
    stat_add(x ? &s->stats.failed : &s->stats.requests, 1);
  }
}

/* Hands every finished request to its client's inbox, then wakes each client once.
 * A client's pending count drops only after its wake call: until then a closing
 * client waits, so it is still alive when woken. The requests themselves are not
 * touched once they are in an inbox (the client may drain and free them). */
static void complete_batch(ews_store_t *s, ews_store_req_t *batch) {
  uint64_t gen = ++s->batch_gen;
  ews_store_client_t *to_wake = NULL;
  for (ews_store_req_t *r = batch, *next; r; r = next) {
    next = r->next;
    ews_store_client_t *c = r->client;
    if (c->wake_gen != gen) {
      c->wake_gen = gen;
      c->batch_count = 0;
      c->wake_next = to_wake;
      to_wake = c;
    }
    c->batch_count++;
    r->next = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->tail) c->tail->next = r;
    else c->head = r;
    c->tail = r;
    pthread_mutex_unlock(&c->lock);
  }
  for (ews_store_client_t *c = to_wake, *next; c; c = next) {
    next = c->wake_next;
    size_t k = c->batch_count;
    if (c->wake) c->wake(c->wake_ud);
    pthread_mutex_lock(&c->lock);
    c->pending -= k;
    if (c->pending == 0 && c->closing) pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
  }
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* After each batch or sweep that wrote: ok writes committed, bad refused (the last
 * with error e). One error line when writes start failing (everything refused),
 * one line when a write works again (see wlog). */
static void note_outcome(uint64_t ok, uint64_t bad, int e) {
  if (ok && wlog.failing) {
    EWS_WARN("store: writes work again after %.1f s; %llu request(s) were refused meanwhile "
             "(%llu more error(s) not logged)",
             (double)(mono_ms() - wlog.since) / 1000.0, (unsigned long long)wlog.refused,
             (unsigned long long)wlog.quiet);
    memset(&wlog, 0, sizeof wlog);
  } else if (!ok && !wlog.failing && (e == EWS_ENOSPACE || e == EWS_EIO)) {
    wlog.failing = 1;
    wlog.since = mono_ms();
    EWS_ERROR("store: writes are failing (%s): each publish and notification is refused "
              "(nil, err to its script) and not delivered until a write works again; further "
              "errors are not logged until then",
              ews_strerror(e));
  }
  if (wlog.failing) wlog.refused += bad;
}

static void log_outcome(const ews_store_req_t *batch) {
  uint64_t ok = 0, bad = 0;
  int e = 0;
  for (const ews_store_req_t *r = batch; r; r = r->next) {
    if (r->status == 0) ok++;
    else {
      bad++;
      e = r->status;
    }
  }
  note_outcome(ok, bad, e);
}

static void add_ms(struct timespec *t, uint32_t ms) {
  t->tv_sec += ms / 1000;
  t->tv_nsec += (long)(ms % 1000) * 1000000L;
  if (t->tv_nsec >= 1000000000L) {
    t->tv_sec++;
    t->tv_nsec -= 1000000000L;
  }
}

static int reached(const struct timespec *now, const struct timespec *t) {
  return now->tv_sec > t->tv_sec || (now->tv_sec == t->tv_sec && now->tv_nsec >= t->tv_nsec);
}

static void periodic_sweep(ews_store_t *s) {
  int64_t deleted = 0;
  int e = tx_begin(s);
  if (e == 0) e = do_sweep(s, writer_now(s), &deleted);
  if (e == 0) e = tx_commit(s);
  if (e) tx_rollback(s);
  stat_add(&s->stats.sweeps, 1);
  /* A sweep that deleted nothing wrote nothing: it says nothing about the disk. */
  if (e || deleted) note_outcome(e == 0, 0, e);
}

static void *writer_main(void *arg) {
  ews_store_t *s = arg;
  ews_log_set_tag("store");
  struct timespec next_sweep, now;
  clock_gettime(CLOCK_MONOTONIC, &next_sweep);
  add_ms(&next_sweep, s->cfg.sweep_interval_ms);

  pthread_mutex_lock(&s->lock);
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    int sweep_due = reached(&now, &next_sweep);
    if (!s->head && !sweep_due) {
      if (s->stopping) break;
      pthread_cond_timedwait(&s->cond, &s->lock, &next_sweep);
      continue;
    }
    /* Take every request queued now, up to max_batch, in FIFO order. */
    ews_store_req_t *batch = s->head, *last = NULL;
    size_t n = 0;
    if (s->nq <= s->cfg.max_batch) { /* the usual case: all of it */
      last = s->tail;
      n = s->nq;
    } else {
      for (ews_store_req_t *r = s->head; r && n < s->cfg.max_batch; r = r->next) {
        last = r;
        n++;
      }
    }
    if (last) {
      s->head = last->next;
      if (!s->head) s->tail = NULL;
      last->next = NULL;
      s->nq -= n;
      __atomic_store_n(&s->stats.queued, s->nq, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&s->lock);

    if (sweep_due) {
      periodic_sweep(s);
      clock_gettime(CLOCK_MONOTONIC, &next_sweep);
      add_ms(&next_sweep, s->cfg.sweep_interval_ms);
    }
    if (n) {
      run_batch(s, batch, n);
      log_outcome(batch);
      if (s->cfg.on_commit)
        for (ews_store_req_t *r = batch; r; r = r->next)
          if (r->status == 0) s->cfg.on_commit(s->cfg.commit_ud, r);
      complete_batch(s, batch);
    }
    pthread_mutex_lock(&s->lock);
  }
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

/* ---- open / close ---------------------------------------------------------------------- */

static int exec_sql(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK) {
    if (rc != SQLITE_NOMEM)
      EWS_ERROR("store: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc == SQLITE_NOMEM ? EWS_ENOMEM : EWS_EIO;
  }
  return 0;
}

/* Runs a one-row pragma and returns its integer value in *v, its text in buf. */
static int pragma_value(sqlite3 *db, const char *sql, int64_t *v, char *buf, size_t cap) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK) return map_rc(db, rc, sql);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    if (v) *v = sqlite3_column_int64(st, 0);
    if (buf && cap) {
      const unsigned char *t = sqlite3_column_text(st, 0);
      snprintf(buf, cap, "%s", t ? (const char *)t : "");
    }
    rc = SQLITE_OK;
  }
  sqlite3_finalize(st);
  return rc == SQLITE_OK || rc == SQLITE_DONE ? 0 : map_rc(db, rc, sql);
}

static int open_db(const char *path, int flags, uint32_t busy_ms, sqlite3 **out) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    int e = rc == SQLITE_NOMEM ? EWS_ENOMEM : EWS_EIO;
    if (e == EWS_EIO)
      EWS_ERROR("store: open %s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return e;
  }
  sqlite3_busy_timeout(db, (int)busy_ms);
  *out = db;
  return 0;
}

static int setup_schema(sqlite3 *db) {
  char mode[16];
  int64_t version = 0;
  int e = pragma_value(db, "PRAGMA journal_mode=WAL", NULL, mode, sizeof mode);
  if (e) return e;
  if (strcmp(mode, "wal") != 0) {
    EWS_ERROR("store: the database cannot use WAL (journal_mode=%s)", mode);
    return EWS_EIO;
  }
  if ((e = exec_sql(db,
                    "PRAGMA synchronous=FULL;"
                    "PRAGMA journal_size_limit=67108864;" /* truncate the WAL to 64 MiB */
                    "PRAGMA secure_delete=FAST;")))
    return e;
  if ((e = exec_sql(db, "BEGIN IMMEDIATE"))) return e;
  e = pragma_value(db, "PRAGMA user_version", &version, NULL, 0);
  if (e == 0 && version > SCHEMA_VERSION) {
    EWS_ERROR("store: schema version %lld is newer than this build's (%d)",
              (long long)version, SCHEMA_VERSION);
    e = EWS_EIO;
  }
  if (e == 0) e = exec_sql(db, schema_sql);
  if (e == 0) e = exec_sql(db, "PRAGMA user_version=1");
  if (e == 0) e = exec_sql(db, "COMMIT");
  if (e && !sqlite3_get_autocommit(db)) exec_sql(db, "ROLLBACK");
  return e;
}

static int init_sync(pthread_mutex_t *m, pthread_cond_t *c) {
  pthread_condattr_t a;
  if (pthread_condattr_init(&a)) return EWS_ENOMEM;
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  int r = pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
  if (r) return EWS_ENOMEM;
  if (pthread_mutex_init(m, NULL)) {
    pthread_cond_destroy(c);
    return EWS_ENOMEM;
  }
  return 0;
}

static void store_free(ews_store_t *s) {
  finalize_all(s->st, W_COUNT);
  if (s->db) sqlite3_close(s->db);
  free(s->dir);
  free(s->path);
  free(s);
}

int ews_store_open(const ews_store_config_t *cfg, ews_store_t **out) {
  *out = NULL;
  if (!cfg || cfg->max_queue_size < 0 || cfg->message_ttl < 0 ||
      cfg->notif_max_per_user < 0 || cfg->notif_ttl < 0)
    return EWS_EINVAL;
  ews_store_t *s = calloc(1, sizeof *s);
  if (!s) return EWS_ENOMEM;
  s->cfg = *cfg;
  if (!s->cfg.busy_timeout_ms) s->cfg.busy_timeout_ms = 5000;
  if (!s->cfg.sweep_interval_ms) s->cfg.sweep_interval_ms = 1000;
  if (!s->cfg.max_batch) s->cfg.max_batch = 1024;
  if (!s->cfg.max_pending) s->cfg.max_pending = 65536;
  const char *dir = cfg->dir && cfg->dir[0] ? cfg->dir : "./data";
  size_t dl = strlen(dir);
  s->dir = strdup(dir);
  s->path = malloc(dl + sizeof "/" DB_NAME);
  if (!s->dir || !s->path) {
    store_free(s);
    return EWS_ENOMEM;
  }
  memcpy(s->path, dir, dl);
  memcpy(s->path + dl, "/" DB_NAME, sizeof "/" DB_NAME);
  s->cfg.dir = s->dir;

  struct stat sb;
  if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
    EWS_ERROR("store: mkdir %s: %s", dir, strerror(errno));
    store_free(s);
    return EWS_EIO;
  }
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    EWS_ERROR("store: %s is not a directory", dir);
    store_free(s);
    return EWS_EIO;
  }

  /* The database, its WAL and its shared-memory index are written in dir: say so
   * now rather than with SQLite's "unable to open database file". access() also
   * sees a read-only filesystem for root. */
  if (access(dir, W_OK | X_OK) != 0) {
    EWS_ERROR("store: the data directory %s is not writable (%s)", dir, strerror(errno));
    store_free(s);
    return EWS_EIO;
  }
  int e = open_db(s->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, s->cfg.busy_timeout_ms,
                  &s->db);
  if (e == 0 && sqlite3_db_readonly(s->db, "main") == 1) {
    EWS_ERROR("store: %s is read-only", s->path);
    e = EWS_EIO;
  }
  if (e == 0) e = setup_schema(s->db);
  if (e == 0) e = prepare_all(s->db, writer_sql, s->st, W_COUNT);
  if (e) {
    struct statvfs fs;
    if (e == EWS_EIO && statvfs(dir, &fs) == 0 && fs.f_bavail == 0) {
      EWS_ERROR("store: no space left in %s", dir);
      e = EWS_ENOSPACE;
    }
    store_free(s);
    return e;
  }
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    seed = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)real_clock_ms() ^
           (uint64_t)(uintptr_t)s;
  }
  s->rng = seed;
  if ((e = init_sync(&s->lock, &s->cond))) {
    store_free(s);
    return e;
  }
  if (pthread_create(&s->thread, NULL, writer_main, s) != 0) {
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    store_free(s);
    return EWS_ENOMEM;
  }
  s->thread_started = 1;
  *out = s;
  return 0;
}

void ews_store_close(ews_store_t *s) {
  if (!s) return;
  int clients = __atomic_load_n(&s->clients, __ATOMIC_ACQUIRE);
  if (clients) EWS_ERROR("store: closed with %d client(s) still open", clients);
  pthread_mutex_lock(&s->lock);
  s->stopping = 1;
  pthread_cond_signal(&s->cond);
  pthread_mutex_unlock(&s->lock);
  if (s->thread_started) pthread_join(s->thread, NULL);
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->cond);
  store_free(s);
}

void ews_store_stats(ews_store_t *s, ews_store_stats_t *out) {
  out->commits = __atomic_load_n(&s->stats.commits, __ATOMIC_RELAXED);
  out->requests = __atomic_load_n(&s->stats.requests, __ATOMIC_RELAXED);
  out->failed = __atomic_load_n(&s->stats.failed, __ATOMIC_RELAXED);
  out->max_batch = __atomic_load_n(&s->stats.max_batch, __ATOMIC_RELAXED);
  out->sweeps = __atomic_load_n(&s->stats.sweeps, __ATOMIC_RELAXED);
  out->queued = __atomic_load_n(&s->stats.queued, __ATOMIC_RELAXED);
}

/* ---- clients ----------------------------------------------------------------------------- */

int ews_store_client_open(ews_store_t *s, ews_store_wake_fn wake, void *wake_ud,
                          ews_store_client_t **out) {
  *out = NULL;
  if (!s) return EWS_EINVAL;
  ews_store_client_t *c = calloc(1, sizeof *c);
  if (!c) return EWS_ENOMEM;
  c->store = s;
  c->wake = wake;
  c->wake_ud = wake_ud;
  int e = open_db(s->path, SQLITE_OPEN_READONLY, s->cfg.busy_timeout_ms, &c->db);
  if (e == 0) e = prepare_all(c->db, reader_sql, c->st, R_COUNT);
  if (e == 0) e = init_sync(&c->lock, &c->cond);
  if (e) {
    finalize_all(c->st, R_COUNT);
    sqlite3_close(c->db);
    free(c);
    return e;
  }
  __atomic_add_fetch(&s->clients, 1, __ATOMIC_ACQ_REL);
  *out = c;
  return 0;
}

size_t ews_store_client_drain(ews_store_client_t *c) {
  pthread_mutex_lock(&c->lock);
  ews_store_req_t *r = c->head;
  c->head = c->tail = NULL;
  pthread_mutex_unlock(&c->lock);
  size_t n = 0;
  while (r) {
    ews_store_req_t *next = r->next;
    if (r->done) r->done(r, r->done_ud);
    free(r);
    n++;
    r = next;
  }
  return n;
}

void ews_store_client_close(ews_store_client_t *c) {
  if (!c) return;
  pthread_mutex_lock(&c->lock);
  c->closing = 1;
  while (c->pending) pthread_cond_wait(&c->cond, &c->lock);
  pthread_mutex_unlock(&c->lock);
  ews_store_client_drain(c);
  finalize_all(c->st, R_COUNT);
  sqlite3_close(c->db);
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->cond);
  __atomic_sub_fetch(&c->store->clients, 1, __ATOMIC_ACQ_REL);
  free(c);
}

int ews_store_submit(ews_store_client_t *c, ews_store_req_t *req, ews_store_done_cb done,
                     void *done_ud) {
  if (!req) return EWS_EINVAL;
  if (!c) {
    free(req);
    return EWS_EINVAL;
  }
  ews_store_t *s = c->store;
  req->client = c;
  req->done = done;
  req->done_ud = done_ud;
  req->next = NULL;
  req->status = 0;
  pthread_mutex_lock(&c->lock);
  if (c->closing) {
    /* A completion run by ews_store_client_close submits again: refused, so the
     * client can be freed once what was pending has completed. */
    pthread_mutex_unlock(&c->lock);
    free(req);
    return EWS_ESHUTDOWN;
  }
  c->pending++;
  pthread_mutex_unlock(&c->lock);

  int e = 0;
  pthread_mutex_lock(&s->lock);
  if (s->stopping) e = EWS_ESHUTDOWN;
  else if (s->nq >= s->cfg.max_pending) e = EWS_EBACKPRESSURE;
  else {
    if (s->tail) s->tail->next = req;
    else {
      s->head = req;
      pthread_cond_signal(&s->cond); /* the writer only sleeps on an empty queue */
    }
    s->tail = req;
    s->nq++;
    __atomic_store_n(&s->stats.queued, s->nq, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&s->lock);
  if (e) {
    pthread_mutex_lock(&c->lock);
    if (--c->pending == 0 && c->closing) pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    free(req);
  }
  return e;
}

/* ---- reads -------------------------------------------------------------------------------- */

/* Rows of `size` bytes, each with a payload, gathered into one allocation. */
typedef struct {
  char *rows;
  size_t n, cap, size;
  size_t *offs; /* payload offset in bytes, per row */
  char *bytes;
  size_t blen, bcap;
} coll_t;

static void *coll_add(coll_t *k, const void *payload, size_t len) {
  if (k->n == k->cap) {
    size_t cap = k->cap ? k->cap * 2 : 16;
    char *rows = realloc(k->rows, cap * k->size);
    if (!rows) return NULL;
    k->rows = rows;
    size_t *offs = realloc(k->offs, cap * sizeof *offs);
    if (!offs) return NULL;
    k->offs = offs;
    k->cap = cap;
  }
  if (k->blen + len > k->bcap) {
    size_t cap = k->bcap ? k->bcap : 256;
    while (cap < k->blen + len) cap *= 2;
    char *b = realloc(k->bytes, cap);
    if (!b) return NULL;
    k->bytes = b;
    k->bcap = cap;
  }
  if (len && payload) memcpy(k->bytes + k->blen, payload, len); /* NULL: the caller fills it */
  k->offs[k->n] = k->blen;
  k->blen += len;
  void *row = k->rows + k->n * k->size;
  memset(row, 0, k->size);
  k->n++;
  return row;
}

/* One block: the rows, then the payloads; sets each row's payload pointer (at byte
 * offset ptr_at of the row). NULL (and *err) on failure, or when there are no rows. */
static void *coll_finish(coll_t *k, size_t ptr_at, int *err) {
  void *block = NULL;
  if (k->n) {
    size_t rows_bytes = k->n * k->size;
    block = malloc(rows_bytes + k->blen + 1);
    if (!block) *err = EWS_ENOMEM;
    else {
      char *b = block;
      memcpy(b, k->rows, rows_bytes);
      if (k->blen) memcpy(b + rows_bytes, k->bytes, k->blen);
      for (size_t i = 0; i < k->n; i++) {
        const void *p = b + rows_bytes + k->offs[i];
        memcpy(b + i * k->size + ptr_at, &p, sizeof p);
      }
    }
  }
  free(k->rows);
  free(k->offs);
  free(k->bytes);
  return block;
}

static void coll_discard(coll_t *k) {
  free(k->rows);
  free(k->offs);
  free(k->bytes);
}

static int rd_begin(ews_store_client_t *c) { return run(c->db, c->st[R_BEGIN]); }

static void rd_end(ews_store_client_t *c) {
  for (int i = 0; i < R_COUNT; i++) done_stmt(c->st[i]);
  if (!sqlite3_get_autocommit(c->db)) run(c->db, c->st[R_COMMIT]);
}

int ews_store_history(ews_store_client_t *c, const char *topic, size_t topic_len,
                      int64_t since_offset, uint32_t limit, ews_store_history_t *out) {
  memset(out, 0, sizeof *out);
  if (!c || !valid_key(topic, topic_len)) return EWS_EINVAL;
  if (since_offset < 0) since_offset = 0;
  if (limit > EWS_STORE_MAX_LIMIT) limit = EWS_STORE_MAX_LIMIT;
  int e = rd_begin(c);
  if (e) return e;
  sqlite3_stmt *st = c->st[R_TOPIC];
  sqlite3_bind_text(st, 1, topic, (int)topic_len, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) { /* no such topic */
    out->first_offset = 1;
    rd_end(c);
    return 0;
  }
  if (rc != SQLITE_ROW) {
    e = map_rc(c->db, rc, "history: topic");
    rd_end(c);
    return e;
  }
  int64_t tid = sqlite3_column_int64(st, 0);
  out->epoch = (uint64_t)sqlite3_column_int64(st, 1);
  out->last_offset = sqlite3_column_int64(st, 2);
  done_stmt(st);

  st = c->st[R_FIRST];
  sqlite3_bind_int64(st, 1, tid);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) out->first_offset = sqlite3_column_int64(st, 0);
  else if (rc == SQLITE_DONE) out->first_offset = out->last_offset + 1;
  else {
    e = map_rc(c->db, rc, "history: first");
    rd_end(c);
    memset(out, 0, sizeof *out);
    return e;
  }
  done_stmt(st);
  out->gap = since_offset < out->last_offset && since_offset + 1 < out->first_offset;

  coll_t k = {.size = sizeof(ews_store_msg_t)};
  if (limit) {
    st = c->st[R_MSGS];
    sqlite3_bind_int64(st, 1, tid);
    sqlite3_bind_int64(st, 2, since_offset);
    sqlite3_bind_int(st, 3, (int)limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      size_t len = (size_t)sqlite3_column_bytes(st, 2);
      const void *p = sqlite3_column_blob(st, 2);
      ews_store_msg_t *m = coll_add(&k, p, len);
      if (!m) {
        rc = SQLITE_NOMEM;
        break;
      }
      m->offset = sqlite3_column_int64(st, 0);
      m->created_at = sqlite3_column_int64(st, 1);
      m->len = len;
    }
    if (rc != SQLITE_DONE) e = map_rc(c->db, rc, "history: messages");
  }
  rd_end(c);
  if (e) {
    coll_discard(&k);
    memset(out, 0, sizeof *out);
    return e;
  }
  out->n = k.n;
  out->msgs = coll_finish(&k, offsetof(ews_store_msg_t, payload), &e);
  if (e) memset(out, 0, sizeof *out);
  return e;
}

void ews_store_history_free(ews_store_history_t *h) {
  if (!h) return;
  free(h->msgs);
  memset(h, 0, sizeof *h);
}

static int read_notifs(ews_store_client_t *c, int list, const char *user, size_t user_len,
                       uint32_t limit, uint32_t offset, ews_store_notifs_t *out) {
  memset(out, 0, sizeof *out);
  if (!c || !valid_key(user, user_len)) return EWS_EINVAL;
  if (limit > EWS_STORE_MAX_LIMIT) limit = EWS_STORE_MAX_LIMIT;
  int64_t now = store_now(c->store);
  int e = rd_begin(c);
  if (e) return e;
  sqlite3_stmt *st = c->st[list ? R_LIST_COUNT : R_PENDING_COUNT];
  sqlite3_bind_text(st, 1, user, (int)user_len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, now);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) out->total = sqlite3_column_int64(st, 0);
  else {
    e = map_rc(c->db, rc, "notifications: count");
    rd_end(c);
    memset(out, 0, sizeof *out);
    return e;
  }
  done_stmt(st);

  coll_t k = {.size = sizeof(ews_store_notif_t)};
  if (limit && out->total > (int64_t)(list ? offset : 0)) {
    st = c->st[list ? R_LIST : R_PENDING];
    sqlite3_bind_text(st, 1, user, (int)user_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int(st, 3, (int)limit);
    if (list) sqlite3_bind_int64(st, 4, offset);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      size_t len = (size_t)sqlite3_column_bytes(st, 4);
      const void *p = sqlite3_column_blob(st, 4);
      ews_store_notif_t *m = coll_add(&k, p, len);
      if (!m) {
        rc = SQLITE_NOMEM;
        break;
      }
      m->id = sqlite3_column_int64(st, 0);
      m->created_at = sqlite3_column_int64(st, 1);
      m->expires_at = col_or(st, 2, 0);
      m->state = (ews_notif_state_t)sqlite3_column_int(st, 3);
      m->len = len;
    }
    if (rc != SQLITE_DONE) e = map_rc(c->db, rc, "notifications: rows");
  }
  rd_end(c);
  if (e) {
    coll_discard(&k);
    memset(out, 0, sizeof *out);
    return e;
  }
  out->n = k.n;
  out->rows = coll_finish(&k, offsetof(ews_store_notif_t, payload), &e);
  if (e) memset(out, 0, sizeof *out);
  return e;
}

int ews_store_notif_pending(ews_store_client_t *c, const char *user, size_t user_len,
                            uint32_t limit, ews_store_notifs_t *out) {
  return read_notifs(c, 0, user, user_len, limit, 0, out);
}

int ews_store_notif_list(ews_store_client_t *c, const char *user, size_t user_len,
                         uint32_t limit, uint32_t offset, ews_store_notifs_t *out) {
  return read_notifs(c, 1, user, user_len, limit, offset, out);
}

void ews_store_notifs_free(ews_store_notifs_t *r) {
  if (!r) return;
  free(r->rows);
  memset(r, 0, sizeof *r);
}

int ews_store_doc_load(ews_store_client_t *c, const char *doc, size_t doc_len, int64_t history,
                       ews_store_doc_t *out) {
  memset(out, 0, sizeof *out);
  if (!c || !valid_key(doc, doc_len) || history < 0) return EWS_EINVAL;
  int e = rd_begin(c);
  if (e) return e;
  sqlite3_stmt *st = c->st[R_DOC];
  sqlite3_bind_text(st, 1, doc, (int)doc_len, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_DONE) { /* no such document */
    rd_end(c);
    return 0;
  }
  if (rc != SQLITE_ROW) {
    e = map_rc(c->db, rc, "doc: load");
    rd_end(c);
    return e;
  }
  int64_t id = sqlite3_column_int64(st, 0);
  out->exists = 1;
  out->rev = sqlite3_column_int64(st, 1);
  out->snapshot_rev = sqlite3_column_int64(st, 2);
  /* The snapshot is the block's first "row" (its payload), the ops follow. */
  coll_t k = {.size = sizeof(ews_store_doc_op_t)};
  ews_store_doc_op_t *snap =
      coll_add(&k, sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3));
  if (!snap) rc = SQLITE_NOMEM;
  else snap->len = (size_t)sqlite3_column_bytes(st, 3);
  done_stmt(st);

  int64_t from = out->rev - history;
  if (out->snapshot_rev < from) from = out->snapshot_rev;
  if (snap) {
    st = c->st[R_DOC_OPS];
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, from);
    /* Each op's payload is client, NUL, op: one payload per row in the block. */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const unsigned char *client = sqlite3_column_text(st, 2);
      size_t cl = (size_t)sqlite3_column_bytes(st, 2);
      const void *op = sqlite3_column_blob(st, 3);
      size_t ol = (size_t)sqlite3_column_bytes(st, 3);
      ews_store_doc_op_t *o = coll_add(&k, NULL, cl + 1 + ol);
      if (!o) {
        rc = SQLITE_NOMEM;
        break;
      }
      char *dst = k.bytes + k.offs[k.n - 1];
      if (cl) memcpy(dst, client, cl);
      dst[cl] = 0;
      if (ol) memcpy(dst + cl + 1, op, ol);
      o->rev = sqlite3_column_int64(st, 0);
      o->seq = sqlite3_column_int64(st, 1);
      o->client_len = cl;
      o->len = ol;
    }
  }
  if (rc != SQLITE_DONE) e = map_rc(c->db, rc, "doc: ops");
  rd_end(c);
  if (e) {
    coll_discard(&k);
    memset(out, 0, sizeof *out);
    return e;
  }
  size_t n = k.n;
  ews_store_doc_op_t *rows = coll_finish(&k, offsetof(ews_store_doc_op_t, client), &e);
  if (e) {
    memset(out, 0, sizeof *out);
    return e;
  }
  /* rows[0] is the snapshot; the others point at "client\0op". */
  out->block_ = rows;
  out->snapshot = rows[0].client;
  out->snapshot_len = rows[0].len;
  out->n = n - 1;
  out->ops = rows + 1;
  for (size_t i = 0; i < out->n; i++) out->ops[i].op = out->ops[i].client + out->ops[i].client_len + 1;
  return 0;
}

void ews_store_doc_free(ews_store_doc_t *d) {
  if (!d) return;
  free(d->block_);
  memset(d, 0, sizeof *d);
}
