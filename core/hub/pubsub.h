/* pubsub.h — topics with offsets, an epoch and history, across every worker.
 *
 * Sequencing (hub/pubsub.c)
 *   Every message of a topic gets the next offset (1, 2, ... within an epoch) from
 *   one sequencer, which then posts it to EVERY worker's inbox in offset order: so
 *   each worker sees a topic's messages in offset order, whichever worker
 *   published them.
 *     memory     (no store, or persistence off): a process-wide table of topics
 *                (its lock covers only finding or creating a topic). A publish
 *                takes a ticket and its offset under the topic's lock (a striped
 *                lock), builds its frames with no lock held, then waits for its
 *                turn (tickets are served in order), puts the message in the
 *                topic's ring and posts it to the workers while holding only the
 *                turn: publishes of other topics, history reads and subscribes
 *                never wait for a fan-out. The ring keeps the last max_queue_size
 *                messages (those older than message_ttl are dropped) for recovery;
 *                a message is in the ring before any worker can receive it. Epochs
 *                are random per topic and per process run, so a restart is seen as
 *                a new epoch.
 *     persistent (hub/store.h): the writer thread assigns offsets in commit order
 *                and, after the COMMIT (fsynced), posts each stored message from
 *                its commit hook. A message is delivered only once it is durable.
 *   The sequencer builds the message's frames once: the JSON envelope
 *     {"type":"pub","topic":T,"epoch":"<16 hex>","offset":N,"time":MS,"data":D}
 *   and the raw frame (the data alone), in shared buffers every worker's
 *   subscribers point at: no encoding or copy per worker or per subscriber.
 *
 * Subscribers (per worker, hub/pubsub_subs.c)
 *   A worker keeps, per topic it has subscribers for, its live sockets (envelope or
 *   raw frames) and a count of local subscribers (the Lua layer's callbacks, run
 *   through the handler it registers: hub->pubsub_local). A socket that recovers is not live until its replay is done: the
 *   history after the client's offset is read in pages (ring or SQLite, at most
 *   256 messages a page, at most 512 messages per worker loop iteration over all
 *   replays, so other sockets are served between pages) and queued to the socket
 *   only while its queue has room (max_buffered): a slow reader is paced, never
 *   closed or dropped for its replay. When a page read in the current turn brings
 *   the socket up to the topic's last offset L, it goes live in that same turn
 *   with a "skip" mark (epoch, L): messages still in the worker's inbox at or below
 *   it were in the history and are skipped for this socket, everything above is
 *   live. No gap, no duplicate. A live socket of an app with the "drop"
 *   backpressure policy whose queue has no room for a message is not dropped a
 *   message: it goes back to a replay from the offset it missed (catch-up), paced
 *   the same way. Wherever the client's position is not covered it first gets
 *     {"type":"gap","topic":T,"epoch":E,"from":A,"to":B,"reason":R}
 *   R = "retention" (A..B were dropped), "limit" (more than max_recover behind:
 *   A..B are skipped), "epoch" (the client's epoch is not the topic's: then E's
 *   history from its start follows) or "ahead" (the client's offset is past the
 *   topic's last: A..B do not exist here, the next message is A).
 *   A subscription ends with its socket. */
#ifndef EWS_PUBSUB_H
#define EWS_PUBSUB_H

#include <stddef.h>
#include <stdint.h>

#include "hub/names.h"
#include "hub/store.h"
#include "net/buf.h"

#include "hub/hub.h"
#include "net/conn.h"


#define EWS_PUBSUB_MAX_TOPIC 500

/* ---- process-wide (main thread) ------------------------------------------------ */

/* The defaults of memory topics (configure's pubsub table). */
typedef struct {
  int32_t max_queue;    /* messages kept per topic (<= 0: 10,000) */
  int32_t ttl;          /* seconds a message is kept (0: forever) */
  uint32_t max_recover; /* messages a recovering subscriber may replay */
} ews_pubsub_config_t;

/* Before the workers start. store may be NULL (memory history only); persistent
 * says whether topics go to the store. hubs[0..nworkers) are every worker's hub, by
 * number (each worker's peers). */
void ews_pubsub_init(const ews_pubsub_config_t *cfg, ews_store_t *store, int persistent,
                     ews_hub_t *const *hubs, int nworkers);
/* After the workers stopped, before the store closes: frees the memory topics
 * and stops posting to workers. */
void ews_pubsub_shutdown(void);
/* The store's commit hook (ews_store_config_t.on_commit). */
void ews_pubsub_on_commit(void *ud, const ews_store_req_t *req);
/* 1 when topics are stored. */
int ews_pubsub_persistent(void);

/* ---- publishing (any worker) -------------------------------------------------- */

typedef struct {
  uint64_t epoch;
  int64_t offset;
  int64_t time; /* ms since the Unix epoch */
} ews_pubsub_pos_t;

/* Completion of a persistent publish, on the publishing worker. status 0 or an
 * EWS_E* code (then nothing was stored or delivered). */
typedef void (*ews_pubsub_done_fn)(ews_hub_t *w, void *ud, int status,
                                   const ews_pubsub_pos_t *pos);

/* Publishes data[0..n) to topic. json = 1: data is a JSON text (embedded as is in
 * the envelope); 0: a UTF-8 string (embedded as a JSON string). Memory: sequenced
 * and posted now, *pos filled, returns 0. Persistent: submitted to the store,
 * returns 1, and done(w, ud, ...) runs on this worker once it is committed (done
 * may be NULL: fire and forget, order still kept). Errors: EWS_EINVAL (bad topic
 * or not UTF-8), EWS_ENOMEM, EWS_EBACKPRESSURE (store queue full), EWS_ESHUTDOWN. */
int ews_pubsub_publish(ews_hub_t *w, const char *topic, size_t tl, int json,
                       const void *data, size_t n, ews_pubsub_done_fn done, void *ud,
                       ews_pubsub_pos_t *pos);

/* Starts a new epoch of the topic: its history is dropped and offsets restart at
 * 1 (created if missing). Subscribers keep their subscription and get the new
 * epoch's messages; recovering clients of the old epoch get a gap "epoch". Memory:
 * now (pos->epoch), returns 0; persistent: returns 1 and calls done once committed.
 * Errors as for publish. */
int ews_pubsub_reset(ews_hub_t *w, const char *topic, size_t tl,
                     ews_pubsub_done_fn done, void *ud, ews_pubsub_pos_t *pos);

/* The topic's own retention: max_queue_size messages (0 = unlimited) and
 * message_ttl seconds (0 = forever), each >= 0 or EWS_STORE_INHERIT (the
 * configured default). Applied at once. Memory: returns 0; persistent: 1 and done
 * once committed (the setting is stored with the topic). */
int ews_pubsub_retention(ews_hub_t *w, const char *topic, size_t tl,
                         int32_t max_queue_size, int32_t message_ttl,
                         ews_pubsub_done_fn done, void *ud, ews_pubsub_pos_t *pos);

/* ---- subscribing (the worker owning the socket) ------------------------------- */

typedef struct {
  int recover;          /* replay what the client missed after since_offset */
  int64_t since_offset; /* the last offset the client has (0: from the start) */
  int has_epoch;        /* epoch given: it must match, else the history restarts */
  uint64_t epoch;
  int raw;              /* frames carry the data alone, without the envelope */
} ews_pubsub_sub_opts_t;

typedef struct {
  uint64_t epoch;      /* the topic's epoch (0: nothing published yet, persistent) */
  int64_t offset;      /* the topic's last offset when the socket went live */
  int recovered;       /* everything after since_offset was replayed */
  int64_t replayed;    /* messages queued from history */
  int gap;             /* a gap message was sent */
  int already;         /* the socket was subscribed already (see below) */
} ews_pubsub_sub_result_t;

/* A replay that went on over later loop turns ended (on the socket's worker, from
 * the loop, never from inside ews_pubsub_subscribe). status 0 (res filled), or
 * EWS_ECLOSED (the socket closed first) / EWS_ESTOPPED (it was unsubscribed
 * first) / EWS_ENOMEM / EWS_EIO (res NULL; the socket is not subscribed). */
typedef void (*ews_pubsub_sub_fn)(ews_hub_t *w, void *ud, int status,
                                  const ews_pubsub_sub_result_t *res);

/* Subscribes socket c. Without recover: live from the topic's last offset, 0.
 * With recover: a replay after since_offset (see the top of this file); returns 0
 * when it was done in this call (*res filled), or 1 when it goes on over later
 * loop turns: done(w, ud, ...) runs once at its end (done may be NULL: nobody
 * waits), *res has what is known so far.
 * Already subscribed (live): nothing changes and res says already = 1 with the
 * topic's epoch and last offset, unless recover asks for offsets the
 * subscription does not cover (since_offset below where it started, another
 * epoch, or past the topic's last offset): then the subscription restarts as a
 * new one from since_offset (its replay may repeat offsets the socket was sent
 * before, in order). EWS_EAGAIN while a replay of it on that topic is going on
 * (its first one, or a catch-up).
 * Errors: EWS_ECLOSED, EWS_ENOMEM, EWS_EINVAL, EWS_EIO (history unreadable: not
 * subscribed), EWS_ENOSTORE. */
int ews_pubsub_subscribe(ews_hub_t *w, ews_conn_t *c, const char *topic,
                         size_t tl, const ews_pubsub_sub_opts_t *o, ews_pubsub_sub_fn done,
                         void *ud, ews_pubsub_sub_result_t *res);
/* 0, or EWS_EINVAL when it was not subscribed. */
int ews_pubsub_unsubscribe(ews_hub_t *w, ews_conn_t *c, const char *topic,
                           size_t tl);
/* Local (Lua) subscribers of this worker: delta +1 / -1. 0 or EWS_ENOMEM. While a
 * topic has some, each of its messages is handed to hub->pubsub_local. */
int ews_pubsub_lua_subs(ews_hub_t *w, const char *topic, size_t tl, int delta);
/* Sockets subscribed to the topic on this worker (replaying ones included). */
uint32_t ews_pubsub_local_count(ews_hub_t *w, const char *topic, size_t tl);

/* The worker's loop hooks (worker.c): from its prepare and check callbacks, after
 * the flushes. Replays waiting for their socket's queue to drain go on when it
 * has; end = 1 (the check, once per loop iteration) renews the replay budget. */
void ews_pubsub_tick(ews_hub_t *w, int end);
/* Worker exit, after its loop closed every handle: frees the replays left. */
void ews_pubsub_worker_free(ews_hub_t *w);

/* What the local subscribers get (strings valid during the call only). */
typedef struct ews_pubsub_event {
  const char *topic;
  size_t topic_len;
  uint64_t epoch;
  int64_t offset, time;
  const char *data; /* the message alone, as published */
  size_t len;
  int json;         /* data is a JSON text (else a string) */
} ews_pubsub_event_t;

/* After messages to this worker were refused (its inbox was full), or when the
 * engine's history is readable again (a cluster's Redis shard is back): every
 * topic's live subscribers that stand below the topic's last offset catch up from
 * history (a delivery that finds offsets missing does the same for its topic), and
 * catch-ups that waited for the history go on. */
void ews_pubsub_resync(ews_hub_t *w);
/* The same for one topic (a cluster's subscription of it became effective: what
 * was published before it, after the subscribers read where the topic stood, is
 * caught up from history). */
void ews_pubsub_resync_topic(ews_hub_t *w, const char *topic, size_t tl);
/* Frees the table (worker exit). */
void ews_topics_free(ews_names_t *t);

/* ---- history reads (any worker) ------------------------------------------------ */

typedef struct {
  int64_t offset, time;
  int json;
  const char *data;
  size_t len;
} ews_pubsub_item_t;

typedef struct {
  uint64_t epoch;
  int64_t first_offset, last_offset;
  size_t n;
  ews_pubsub_item_t *items;
  /* private */
  ews_store_history_t h;
  ews_buf_t **refs;
} ews_pubsub_history_t;

/* Up to limit (<= EWS_STORE_MAX_LIMIT) messages after since_offset, oldest first.
 * Release with ews_pubsub_history_free. 0 or EWS_EINVAL / EWS_EIO / EWS_ENOMEM. */
int ews_pubsub_history(ews_hub_t *w, const char *topic, size_t tl, int64_t since,
                       uint32_t limit, ews_pubsub_history_t *out);
void ews_pubsub_history_free(ews_pubsub_history_t *h);

/* Hex form of an epoch (17 bytes with the NUL) and back (0 on success). */
void ews_pubsub_epoch_hex(uint64_t epoch, char out[17]);
int ews_pubsub_epoch_parse(const char *s, size_t n, uint64_t *out);

#endif
