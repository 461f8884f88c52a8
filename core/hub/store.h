/* store.h — durable storage for pub/sub history, per-user notifications and the
 * operation logs of collaborative documents: one SQLite database file,
 * <dir>/edgews.db, shared by every worker of the process.
 *
 * Threads
 *   Writes never run on an event loop. One writer thread owns the only read-write
 *   connection. A worker submits write requests (append, notification, mark, ...)
 *   through its own ews_store_client_t; they go on one FIFO queue (mutex + condvar).
 *   When the writer wakes it takes EVERY request queued at that moment (up to
 *   max_batch) and runs them in ONE transaction, BEGIN IMMEDIATE ... COMMIT, then
 *   completes all of them: throughput comes from batching, while a request waits
 *   at most for the batch in progress plus its own, i.e. about two fsyncs.
 *   Completions go back to the submitting thread: the writer appends the finished
 *   request to its client's inbox and calls the client's wake function (for a
 *   worker: uv_async_send on its loop; for a test: a condvar). The client's thread
 *   then calls ews_store_client_drain, which runs the done callbacks there. The
 *   store includes no uv.h. A client's callbacks run in its submission order.
 *
 *   Reads (history, pending and listed notifications) run synchronously on the
 *   calling thread, on the client's own read-only connection. In WAL mode a reader
 *   never waits for the writer (it reads the last committed snapshot), every query
 *   walks an index and is bounded by LIMIT (at most EWS_STORE_MAX_LIMIT rows), so a
 *   read costs about 0.1 ms for 100 rows when its pages are cached (each client's
 *   connection keeps its own page cache) and a few page reads more when not.
 *
 * Durability
 *   journal_mode=WAL, synchronous=FULL, and a request is completed (its done
 *   callback may tell the client "stored") only after the COMMIT of its batch has
 *   returned SQLITE_OK. In WAL mode with FULL, COMMIT appends the transaction's
 *   frames to the -wal file and fsyncs it before returning, so an acknowledged
 *   item is on stable storage: it survives SIGKILL of the process right after the
 *   callback, and also a kernel crash or power loss. On the next open SQLite
 *   replays the committed frames of the WAL and ignores a torn, uncommitted tail.
 *   Why not NORMAL: with synchronous=NORMAL a WAL commit only write(2)s the frames
 *   and fsyncs at checkpoints. A SIGKILL alone would not lose them (they are in the
 *   kernel's page cache, which outlives the process), but a power loss, kernel
 *   panic or VM host crash loses every transaction since the last checkpoint,
 *   which we would already have acknowledged. FULL costs one fsync per batch,
 *   which batching amortises. busy_timeout covers another process (a second
 *   edgews on the same directory, or the sqlite3 shell) holding the lock briefly.
 *
 * Schema (user_version 1)
 *   topics(id, name UNIQUE, epoch, last_offset, max_queue_size, message_ttl,
 *          created_at)
 *   messages(topic_id, offset, created_at, payload, PRIMARY KEY(topic_id, offset))
 *   notifications(id, user, payload, created_at, state, expires_at), indexed by
 *          (user, id), pending ones by a partial index, expiring ones by expires_at.
 *   docs(id, name UNIQUE, rev, snapshot, snapshot_rev, created_at, updated_at)
 *   doc_ops(doc_id, rev, client, seq, op, created_at, PRIMARY KEY(doc_id, rev))
 *   A document (lua/edgews/docs.lua) is its snapshot (the text at snapshot_rev)
 *   plus the operations after it; rev is the newest committed revision. The store
 *   does no OT: it appends what the document's one committer (its owning worker)
 *   hands it, and refuses an append that does not continue the stored revisions
 *   exactly (EWS_ECONFLICT), so a failed commit can never leave a hole that a later
 *   one papers over. Ops are kept from min(snapshot_rev, rev - keep) on.
 *   A topic's epoch is a random non-zero 64-bit value chosen when the topic is
 *   created or reset; offsets count from 1 per topic and never go back within an
 *   epoch, even when retention removes every message (last_offset is kept in the
 *   topic row). Retention always removes a prefix, so the retained offsets of a
 *   topic are exactly first_offset..last_offset. Times are milliseconds since the
 *   Unix epoch (the config's clock); TTLs are seconds. The epoch uses all 64 bits:
 *   give it to Lua and JSON as a string (e.g. hex), never as a double.
 *
 * Retention
 *   Messages: max_queue_size (keep the N newest per topic) and message_ttl (drop
 *   those older than T seconds), global from the config and overridable per topic.
 *   The writer applies both to the topic it appends to (a delete of offsets below
 *   the cut, one index range) and, every sweep_interval_ms, to up to 512 topics per
 *   sweep in turn, so an expired message may be returned for at most about a sweep
 *   round longer than its TTL. Notifications: notif_max_per_user (the oldest of a
 *   user are dropped on insert) and a TTL per notification; expired notifications
 *   are never returned by reads and are deleted by the sweep.
 *
 * A full disk (or a read-only one, or any refused write)
 *   A batch whose writes fail is rolled back whole: its requests complete with the
 *   error, took no offset or id (the topic's last_offset is bumped inside the
 *   transaction) and never reach on_commit, so nothing of them is delivered.
 *   Everything committed before stays (the WAL's committed frames are untouched by
 *   a failed append to it). Reads go on from the last committed snapshot. The
 *   writer keeps taking requests and the first batch that commits after the space
 *   returns works as before: offsets continue from the last committed one, no gap.
 *   The writer logs one error line when writes start failing and one line when a
 *   write works again, not one per failed batch.
 *
 * Errors are negative EWS_E* codes (core/err.h). SQLite errors are mapped at this
 * edge: SQLITE_NOMEM -> EWS_ENOMEM; SQLITE_FULL, or an I/O error whose errno is
 * ENOSPC, EDQUOT or EFBIG -> EWS_ENOSPACE; every other failure -> EWS_EIO (SQLite
 * reports most refused writes, e.g. EROFS or a quota, as I/O errors). Each is
 * logged with SQLite's message. Invalid arguments -> EWS_EINVAL. */
#ifndef EWS_STORE_H
#define EWS_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct ews_store ews_store_t;
typedef struct ews_store_client ews_store_client_t;
typedef struct ews_store_req ews_store_req_t;

#define EWS_STORE_MAX_KEY 1024     /* topic names and user ids: 1..1024 bytes */
#define EWS_STORE_MAX_LIMIT 1000   /* rows per read */
#define EWS_STORE_INHERIT (-1)     /* per-topic retention: use the global value */

typedef struct {
  const char *dir;             /* data directory, created (one level) if missing;
                                  NULL = "./data" */
  int32_t max_queue_size;      /* messages kept per topic, 0 = unlimited */
  int32_t message_ttl;         /* seconds a message is kept, 0 = forever */
  int32_t notif_max_per_user;  /* notifications kept per user, 0 = unlimited */
  int32_t notif_ttl;           /* default notification TTL (s), 0 = forever */
  uint32_t busy_timeout_ms;    /* 0 = 5000 */
  uint32_t sweep_interval_ms;  /* periodic retention, 0 = 1000 */
  uint32_t max_batch;          /* requests per transaction, 0 = 1024;
                                  1 = one transaction per request */
  uint32_t max_pending;        /* queued requests before submit refuses, 0 = 65536 */
  /* Clock in ms since the Unix epoch, called on the writer and reader threads;
   * NULL = CLOCK_REALTIME. Tests use it to move time. */
  int64_t (*clock_ms)(void *ud);
  void *clock_ud;
  /* Called on the WRITER thread after each committed batch, once per request of it
   * that succeeded, in commit order (so APPENDs of a topic come in offset order),
   * before the requests are completed to their clients. The request is read-only
   * there. Pub/sub uses it to post each stored message to every worker in order.
   * NULL = none. */
  void (*on_commit)(void *ud, const ews_store_req_t *req);
  void *commit_ud;
} ews_store_config_t;

typedef struct {
  uint64_t commits;    /* write transactions committed */
  uint64_t requests;   /* requests completed successfully */
  uint64_t failed;     /* requests completed with an error */
  uint64_t max_batch;  /* largest batch committed in one transaction */
  uint64_t sweeps;     /* periodic retention passes */
  uint64_t queued;     /* requests waiting for the writer right now */
} ews_store_stats_t;

/* ---- the store ----------------------------------------------------------------- */

/* Opens (creating if needed) <dir>/edgews.db, sets WAL + synchronous=FULL +
 * busy_timeout, creates the schema and starts the writer thread. cfg is copied
 * (dir too). 0 and *out, or EWS_EINVAL (bad config), EWS_EIO (directory missing
 * and not creatable, not writable or read-only, file, schema, WAL not available,
 * newer schema version), EWS_ENOSPACE (no room for the WAL index), EWS_ENOMEM;
 * the reason is logged. */
int ews_store_open(const ews_store_config_t *cfg, ews_store_t **out);
/* Stops taking requests (submit then fails with EWS_ESHUTDOWN), commits and
 * completes every request already queued, joins the writer and closes the file.
 * Every client must have been closed before (their callbacks need their threads).
 * NULL is a no-op. */
void ews_store_close(ews_store_t *s);
/* A snapshot of the counters; any thread. */
void ews_store_stats(ews_store_t *s, ews_store_stats_t *out);

/* ---- clients: one per thread that uses the store (each worker) ------------------- */

/* Called on the WRITER thread after completions were added to the client's inbox
 * (at most once per batch per client); it must only wake the client's thread, which
 * then calls ews_store_client_drain (e.g. uv_async_send). */
typedef void (*ews_store_wake_fn)(void *ud);

/* Opens the client's read-only connection. The client is owned by the calling
 * thread: reads, drain and close must be called there (submit may be called from
 * any thread, but the done callback runs where drain runs). 0 and *out, or
 * EWS_EIO / EWS_ENOMEM. */
int ews_store_client_open(ews_store_t *s, ews_store_wake_fn wake, void *wake_ud,
                          ews_store_client_t **out);
/* Waits until the writer has completed every request this client submitted (at
 * most the batches in flight), runs their done callbacks, closes the connection
 * and frees the client. From the moment it is called, ews_store_submit on this client
 * fails with EWS_ESHUTDOWN (a done callback that submits again is refused, so nothing
 * can be left in flight when it is freed). Not from inside a done callback. NULL is a
 * no-op. */
void ews_store_client_close(ews_store_client_t *c);
/* Runs the done callback of every completed request in the inbox, in submission
 * order, freeing each request after its callback returns. Returns how many ran. */
size_t ews_store_client_drain(ews_store_client_t *c);

/* ---- write requests -------------------------------------------------------------- */

typedef enum {
  EWS_STORE_APPEND = 1, /* topic, payload          -> epoch, offset, created_at */
  EWS_STORE_RESET,      /* topic: drop its messages, new epoch, offsets restart
                           at 1 (created if missing) -> epoch */
  EWS_STORE_RETENTION,  /* topic, retention (created if missing) -> epoch */
  EWS_STORE_NOTIF,      /* user, payload, ttl      -> id, created_at */
  EWS_STORE_MARK,       /* user or NULL, ids, state -> changed */
  EWS_STORE_SWEEP,      /* run the periodic retention now -> changed (rows deleted) */
  EWS_STORE_DOC_APPEND  /* doc, rev, client, seq, op [, snapshot], keep -> created_at */
} ews_store_op_t;

typedef enum {
  EWS_NOTIF_PENDING = 0,
  EWS_NOTIF_DELIVERED = 1,
  EWS_NOTIF_READ = 2
} ews_notif_state_t;

/* A request is built by one of the constructors below (which copy every input),
 * handed to ews_store_submit, and read in its done callback: `op` and the fields
 * below the "results" line are valid there; the rest is private. */
struct ews_store_req {
  ews_store_op_t op;
  /* private */
  ews_store_req_t *next;
  ews_store_client_t *client;
  void (*done)(ews_store_req_t *req, void *ud);
  void *done_ud;
  int32_t ttl, max_queue_size, message_ttl;
  int state;
  const char *key;      /* topic or user, NUL-terminated copy (NULL for MARK: any) */
  size_t key_len;
  const void *payload;  /* copy */
  size_t payload_len;
  const int64_t *ids;   /* copy */
  size_t n_ids;
  /* DOC_APPEND */
  int64_t rev, seq, keep;
  const char *author;   /* copy, NUL-terminated (may be empty): the op's client */
  size_t author_len;
  const void *snapshot; /* copy, or NULL: no snapshot with this append */
  size_t snapshot_len;
  /* results */
  int status;           /* 0, or a negative EWS_E* code: nothing of it was stored */
  uint64_t epoch;       /* APPEND, RESET, RETENTION: the topic's epoch */
  int64_t offset;       /* APPEND: the message's offset (1, 2, ... per epoch) */
  int64_t id;           /* NOTIF: the notification's id */
  int64_t created_at;   /* APPEND, NOTIF: ms since the Unix epoch */
  int64_t changed;      /* MARK: notifications whose state changed;
                           SWEEP: rows deleted */
};

/* Called on the client's thread from ews_store_client_drain. req is freed when it
 * returns: copy out what you need. status 0 = committed and fsynced. */
typedef void (*ews_store_done_cb)(ews_store_req_t *req, void *ud);

/* Constructors: 0 and *out (free it with ews_store_req_free unless submitted), or
 * EWS_EINVAL (empty or over EWS_STORE_MAX_KEY key, bad state, no ids, payload over
 * 1e9 bytes) or EWS_ENOMEM. Every buffer is copied; the caller keeps its own. */
int ews_store_req_append(ews_store_req_t **out, const char *topic, size_t topic_len,
                         const void *payload, size_t len);
int ews_store_req_reset(ews_store_req_t **out, const char *topic, size_t topic_len);
/* max_queue_size / message_ttl: a value >= 0 (0 = unlimited / forever) or
 * EWS_STORE_INHERIT for the global setting. Applied at once to the topic. */
int ews_store_req_retention(ews_store_req_t **out, const char *topic, size_t topic_len,
                            int32_t max_queue_size, int32_t message_ttl);
/* ttl in seconds; 0 = the config's notif_ttl; -1 = never expires. */
int ews_store_req_notif(ews_store_req_t **out, const char *user, size_t user_len,
                        const void *payload, size_t len, int32_t ttl);
/* Moves each id to `state` if that is forward (pending -> delivered -> read; a
 * notification never goes back). user non-NULL restricts it to that user's ids
 * (an id of another user is left alone); NULL touches any. n 1..1000. */
int ews_store_req_mark(ews_store_req_t **out, const char *user, size_t user_len,
                       const int64_t *ids, size_t n, ews_notif_state_t state);
int ews_store_req_sweep(ews_store_req_t **out);
/* Appends operation `rev` of document `doc` (the op as the caller encodes it, e.g.
 * JSON) with its author (client, 0..EWS_STORE_MAX_KEY bytes) and sequence number.
 * rev must be the stored revision + 1 (1 creates the document), else the request
 * fails with EWS_ECONFLICT and changes nothing. With a snapshot (the text after
 * `rev`; NULL = none) the document's snapshot becomes it, and the log is trimmed to
 * the operations after min(rev, rev - keep) (keep >= 0: how many ops to retain
 * before the snapshot, so that clients that far behind can still catch up). The
 * document's name is 1..EWS_STORE_MAX_KEY bytes; op and snapshot at most 1e9. */
int ews_store_req_doc_append(ews_store_req_t **out, const char *doc, size_t doc_len, int64_t rev,
                             const char *client, size_t client_len, int64_t seq, const void *op,
                             size_t op_len, const void *snapshot, size_t snapshot_len,
                             int64_t keep);
void ews_store_req_free(ews_store_req_t *req);

/* Queues req for the writer; takes ownership of req in every case. 0: done will be
 * called exactly once, on the client's thread, from ews_store_client_drain. On
 * error req has been freed and done is never called: EWS_ESHUTDOWN (store
 * closing), EWS_EBACKPRESSURE (max_pending requests already queued; retry later),
 * EWS_EINVAL (NULL argument). */
int ews_store_submit(ews_store_client_t *c, ews_store_req_t *req, ews_store_done_cb done,
                     void *done_ud);

/* ---- reads (synchronous, on the client's thread) -------------------------------- */

typedef struct {
  int64_t offset;
  int64_t created_at;
  const void *payload; /* points into the result; valid until it is freed */
  size_t len;
} ews_store_msg_t;

typedef struct {
  uint64_t epoch;        /* 0 when the topic does not exist */
  int64_t last_offset;   /* newest offset assigned (0: none yet) */
  int64_t first_offset;  /* oldest retained; last_offset + 1 when none is */
  int gap;               /* 1: since_offset + 1 < first_offset, i.e. messages the
                            client has not seen were dropped by retention */
  size_t n;
  ews_store_msg_t *msgs; /* offsets > since_offset, ascending */
} ews_store_history_t;

/* Messages of `topic` with offset > since_offset, oldest first, at most `limit`
 * (clamped to EWS_STORE_MAX_LIMIT; 0 = only the epoch and offsets), read in one
 * snapshot. since_offset 0 = from the start. A since_offset above last_offset
 * gives no rows and no gap: the caller compares epochs (a client whose epoch
 * differs must treat its history as reset). On 0 *out is filled and must be
 * released with ews_store_history_free; on error (EWS_EINVAL, EWS_EIO,
 * EWS_ENOMEM) *out is empty. */
int ews_store_history(ews_store_client_t *c, const char *topic, size_t topic_len,
                      int64_t since_offset, uint32_t limit, ews_store_history_t *out);
void ews_store_history_free(ews_store_history_t *h);

typedef struct {
  int64_t id;
  int64_t created_at;
  int64_t expires_at;    /* 0 = never */
  ews_notif_state_t state;
  const void *payload;   /* points into the result */
  size_t len;
} ews_store_notif_t;

typedef struct {
  int64_t total;         /* how many match in all (pending: the user's pending
                            ones; list: all the user's), for counts and paging */
  size_t n;
  ews_store_notif_t *rows;
} ews_store_notifs_t;

/* The user's pending, unexpired notifications, oldest first, at most limit
 * (clamped to EWS_STORE_MAX_LIMIT). Release with ews_store_notifs_free. Errors as
 * for history. Reading does not mark them: submit a MARK after delivering. */
int ews_store_notif_pending(ews_store_client_t *c, const char *user, size_t user_len,
                            uint32_t limit, ews_store_notifs_t *out);
/* The user's unexpired notifications in any state, newest first: rows
 * [offset, offset + limit) of that order, and the total count for pagination. */
int ews_store_notif_list(ews_store_client_t *c, const char *user, size_t user_len,
                         uint32_t limit, uint32_t offset, ews_store_notifs_t *out);
void ews_store_notifs_free(ews_store_notifs_t *r);

typedef struct {
  int64_t rev, seq;
  const char *client;   /* points into the result; NUL-terminated */
  size_t client_len;
  const void *op;       /* points into the result */
  size_t len;
} ews_store_doc_op_t;

typedef struct {
  int exists;           /* 0: no such document (everything else is empty) */
  int64_t rev;          /* newest committed revision */
  int64_t snapshot_rev; /* the snapshot is the text at this revision (0: "") */
  const void *snapshot; /* points into the result */
  size_t snapshot_len;
  size_t n;
  ews_store_doc_op_t *ops; /* revisions > min(snapshot_rev, rev - history) that
                              are retained, ascending */
  void *block_;         /* private */
} ews_store_doc_t;

/* A document as stored, read in one snapshot: enough to rebuild its text
 * (snapshot + the ops after it) and its last `history` operations. Release with
 * ews_store_doc_free. Errors as for history. */
int ews_store_doc_load(ews_store_client_t *c, const char *doc, size_t doc_len, int64_t history,
                       ews_store_doc_t *out);
void ews_store_doc_free(ews_store_doc_t *d);

#endif
