/* engine.h — where the real-time services keep what they share across workers (and,
 * for an engine that spans processes, across instances): one table of functions per
 * service. The Lua API and the connection code call only this interface and the
 * worker-side tables, so another engine (Redis for a cluster) is added beside the
 * in-process one without touching either.
 *
 * What is the engine's and what is not:
 *   channels  Subscribers stay in each worker's table (hub/channels.c). The engine
 *             carries a publish to the channel's subscribers on the other workers
 *             (and instances), where it arrives through ews_chan_deliver(), and
 *             keeps the channel's subscriber count everywhere.
 *   pub/sub   Socket subscriptions, skip marks and replays stay per worker
 *             (hub/pubsub_subs.c). The engine sequences (offsets and epochs),
 *             keeps the history and hands every sequenced message to every worker
 *             in offset order through ews_ps_post() (hub/pubsub_int.h); replays
 *             read their pages from it (view, page).
 *   presence  All of it: members, statuses, the batched join/leave events.
 *   users     The user -> sockets registry, and the app layer's messages to the
 *             worker that holds a socket (user delivery, app-wide broadcasts,
 *             notifications): they arrive through the worker's hub->app_message.
 *
 * Threads: every function may be called from any worker's thread; start and stop on
 * the main thread only. Errors are EWS_E* codes (err.h), as documented for the
 * in-process engine's functions each entry points to.
 *
 * The in-process engine is ews_engine_local (hub/engine_local.c): memory and SQLite
 * (hub/pubsub.c, hub/store.c), the process-wide tables of hub/presence.c,
 * hub/users.c and hub/counters.c, and the workers' inboxes (hub/bus.h). README
 * (Architecture: "How to add an engine") says how another one plugs in. */
#ifndef EWS_ENGINE_H
#define EWS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "hub/hub.h"
#include "hub/presence.h"
#include "hub/pubsub.h"
#include "hub/pubsub_int.h"
#include "hub/redis_url.h"
#include "hub/store.h"
#include "hub/users.h"
#include "net/buf.h"

/* What an engine is started with (main thread, before any worker runs). */
typedef struct {
  ews_pubsub_config_t pubsub;
  ews_store_t *store;       /* the data directory's store, or NULL */
  int persistent;           /* pub/sub history goes to the store */
  ews_hub_t *const *hubs;   /* every worker's hub, by number */
  int nworkers;
  const ews_redis_url_t *redis; /* the Redis shards (engine_redis.c), and how many */
  int nredis;
  int32_t notif_max_per_user;   /* notifications kept per user (0: unlimited) */
  int32_t notif_ttl;            /* their default TTL, seconds (0: none) */
} ews_engine_config_t;

/* A cluster engine's state, for /health and /metrics (ews_engine_t.status). */
#define EWS_ENGINE_MAX_SHARDS 16
typedef struct {
  int shards;            /* configured */
  int connected;         /* shards whose connections are all ready */
  uint64_t published;    /* channel publishes sent to Redis */
  uint64_t dropped;      /* channel publishes not sent (shard down, queue full) */
  uint64_t received;     /* channel messages from other instances */
  uint64_t subscriptions; /* Redis channel subscriptions of this instance */
  uint64_t latency_us_sum, latency_n; /* PUBLISH round trips */
  /* Messages of other instances (channels, pub/sub): from the PUBLISH (its time,
   * carried in the message) to their arrival here, before the workers get them. */
  uint64_t delivery_us_sum, delivery_n;
  struct {
    char name[300];
    int up;
    uint64_t losses;     /* times a ready connection was lost */
    char last_error[160];
  } shard[EWS_ENGINE_MAX_SHARDS];
} ews_engine_status_t;

typedef struct {
  /* The rest of a publish: frame (complete, built once: take references as needed)
   * to the channel's subscribers on every worker but h's (and every other
   * instance), except connection exclude_id. Failures are logged and counted. */
  void (*publish)(ews_hub_t *h, const char *name, size_t len, ews_buf_t *frame, size_t hl,
                  int opcode, uint64_t exclude_id);
  /* The channel's subscriber count everywhere: a worker holds the channel's handle
   * while it has subscribers of it, and adds +1 / -1 per subscriber. hold returns
   * NULL when out of memory. */
  void *(*hold)(const char *name, size_t len);
  void (*add)(void *handle, int delta);
  void (*release)(void *handle);
  uint32_t (*count)(const char *name, size_t len);
} ews_chan_engine_t;

typedef struct {
  /* 0: memory (a publish completes at once); 1: durable in the store (a publish
   * completes later; a worker needs its store client); 2: durable elsewhere (Redis:
   * a publish completes later). */
  int (*persistent)(void);
  uint32_t (*max_recover)(void);
  /* As ews_pubsub_publish / _reset / _retention / _history (hub/pubsub.h). */
  int (*publish)(ews_hub_t *h, const char *topic, size_t tl, int json, const void *data,
                 size_t n, ews_pubsub_done_fn done, void *ud, ews_pubsub_pos_t *pos);
  int (*reset)(ews_hub_t *h, const char *topic, size_t tl, ews_pubsub_done_fn done, void *ud,
               ews_pubsub_pos_t *pos);
  int (*retention)(ews_hub_t *h, const char *topic, size_t tl, int32_t max_queue_size,
                   int32_t message_ttl, ews_pubsub_done_fn done, void *ud, ews_pubsub_pos_t *pos);
  int (*history)(ews_hub_t *h, const char *topic, size_t tl, int64_t since, uint32_t limit,
                 ews_pubsub_history_t *out);
  void (*history_free)(ews_pubsub_history_t *hist);
  /* For replays: where the topic stands, and a page of frames after `since` (as
   * ews_ps_view / ews_ps_page, hub/pubsub_int.h). */
  int (*view)(ews_hub_t *h, const char *topic, size_t tl, ews_ps_view_t *v);
  int (*page)(ews_hub_t *h, const char *topic, size_t tl, int64_t since, uint32_t limit,
              int raw, ews_ps_view_t *v, ews_ps_entry_t *out, uint32_t *n);
  /* A worker holds a topic while it has subscribers of it (sockets, replays or Lua
   * subscribers): an engine that spans instances receives the topic's messages
   * only while some worker holds it (NULL: every topic reaches every worker).
   * hold returns NULL when out of memory. */
  void *(*hold)(const char *topic, size_t tl);
  void (*release)(void *handle);
} ews_pubsub_engine_t;

typedef struct {
  /* As the functions of hub/presence.h of the same names. */
  void (*configure)(const ews_presence_config_t *cfg);
  void (*get_config)(ews_presence_config_t *out);
  int (*join)(const char *ch, size_t chl, const char *uid, size_t ul, const char *status,
              size_t sl, const char *meta, size_t ml, int worker, uint64_t conn_id, void *conn,
              double now);
  int (*leave)(const char *ch, size_t chl, uint64_t conn_id);
  int (*drop_conn)(uint64_t conn_id);
  int (*set_status)(const char *uid, size_t ul, const char *status, size_t sl, const char *meta,
                    size_t ml, double expire_s, double now);
  int (*get)(const char *const *uids, const size_t *lens, size_t n, double now,
             ews_presence_result_t *out);
  int (*list)(const char *ch, size_t chl, const char *cursor, size_t curl, size_t limit,
              double now, ews_presence_result_t *out);
  void (*result_free)(ews_presence_result_t *r);
  uint32_t (*count)(const char *ch, size_t chl);
  ews_presence_event_t *(*take)(double now, int force);
  void (*events_free)(ews_presence_event_t *e);
  size_t (*sweep)(int worker, ews_presence_probe_fn probe, void *ud);
  size_t (*conns)(void);
} ews_presence_engine_t;

/* A socket of a user: on worker `worker` of this instance (instance "") or of the
 * cluster's instance `instance` (16 hex digits). */
typedef struct {
  int worker;
  double socket_id;
  char instance[17];
} ews_user_entry_t;

typedef struct {
  /* As ews_users_add / _remove (hub/users.h). */
  int (*add)(const char *uid, size_t len, int worker, double socket_id);
  void (*remove)(const char *uid, size_t len, int worker, double socket_id);
  /* The user's sockets everywhere: this instance's first. Copies up to cap entries;
   * returns how many there are (may be > cap). */
  size_t (*list)(const char *uid, size_t len, ews_user_entry_t *out, size_t cap);
  /* An app-layer message (data[0..len), copied) for worker `to`: it runs there
   * through hub->app_message. 0, EWS_EINVAL (no such worker), EWS_ENOMEM,
   * EWS_EINBOX_FULL, EWS_ECLOSED (the worker is gone). */
  int (*post)(ews_hub_t *h, int to, const char *data, size_t len);
  /* The same for worker `to` of another instance (NULL: one instance only). 0 once
   * it is on its way (delivery is not confirmed), EWS_EUNAVAILABLE, EWS_ENOMEM,
   * EWS_EBACKPRESSURE. */
  int (*post_remote)(ews_hub_t *h, const char *instance, int to, const char *data, size_t len);
  /* The same for every worker of every other instance (NULL: one instance only). */
  int (*post_all)(ews_hub_t *h, const char *data, size_t len);
} ews_users_engine_t;

/* Completion of a notification store (a = id, b = created_at) or mark (a = the
 * number changed), on the worker that asked. status 0 or an EWS_E* code. */
typedef void (*ews_notify_done_fn)(ews_hub_t *h, void *ud, int status, int64_t a, int64_t b);

/* Notifications kept outside the data directory's store (a cluster's Redis). As
 * the store's functions of the same names (hub/store.h); store and mark return 1
 * and complete through done (NULL: nobody waits), or an error. */
typedef struct {
  int (*store)(ews_hub_t *h, const char *user, size_t ul, const char *p, size_t n, int ttl,
               ews_notify_done_fn done, void *ud);
  int (*mark)(ews_hub_t *h, const char *user, size_t ul, const int64_t *ids, size_t n,
              int state, ews_notify_done_fn done, void *ud);
  int (*pending)(ews_hub_t *h, const char *user, size_t ul, uint32_t limit,
                 ews_store_notifs_t *out);
  int (*list)(ews_hub_t *h, const char *user, size_t ul, uint32_t limit, uint32_t offset,
              ews_store_notifs_t *out);
  void (*notifs_free)(ews_store_notifs_t *r);
} ews_notify_engine_t;

/* A reply of the documents' store: flat strings (integers as decimal text). */
typedef struct {
  size_t n;
  const char **s;
  size_t *len;
} ews_docs_reply_t;

enum { EWS_DOCS_COMMIT = 1, EWS_DOCS_READ = 2, EWS_DOCS_RELEASE = 3 };

/* Collaborative documents committed outside the process (a cluster's Redis:
 * hub/engine_redis_docs.c, whose header comment gives the scripts' arguments and
 * replies). call runs script op for document name on the calling worker's thread
 * (one round trip): 0 and *out (free with reply_free), EWS_EUNAVAILABLE (the shard
 * is down or did not answer), EWS_EIO (Redis refused it), EWS_EINVAL, EWS_ENOMEM.
 * set_resync registers the bus message every worker is posted when a shard's
 * subscription is made again (the first one registered is kept). Any worker's
 * thread. */
typedef struct {
  int (*call)(const char *name, size_t nl, int op, int argc, const char *const *argv,
              const size_t *lens, ews_docs_reply_t *out);
  void (*reply_free)(ews_docs_reply_t *r);
  void (*set_resync)(const char *blob, size_t n);
  /* A bus message for the document's owner on every instance (cursors), sent by the
   * engine's thread: 0 once queued, EWS_EUNAVAILABLE, EWS_EBACKPRESSURE, EWS_ENOMEM. */
  int (*publish)(const char *name, size_t nl, const char *data, size_t n);
  /* The document's owner on this instance has it loaded: the instance receives its
   * revisions and cursors (one Redis SUBSCRIBE per document, held while some worker
   * holds it). Once that subscription takes effect, the owner is posted the bus
   * message blob[0..n) (it reads from the log what was committed before). A handle
   * for release, or NULL (out of memory, or a name over 500 bytes). */
  void *(*hold)(const char *name, size_t nl, const char *blob, size_t n);
  void (*release)(void *handle);
} ews_docs_engine_t;

typedef struct ews_engine {
  const char *name;
  /* Main thread: before the workers start, and after they stopped (before the
   * store closes). start: 0 or an error. */
  int (*start)(const ews_engine_config_t *cfg);
  void (*stop)(void);
  const ews_chan_engine_t *chan;
  const ews_pubsub_engine_t *pubsub;
  const ews_presence_engine_t *presence;
  const ews_users_engine_t *users;
  /* Any thread: the cluster's state (NULL: not a cluster engine). */
  void (*status)(ews_engine_status_t *out);
  /* Notifications (NULL: the data directory's store, hub/store.h). */
  const ews_notify_engine_t *notify;
  /* Collaborative documents (NULL: each process commits its own, lua/edgews/docs.lua). */
  const ews_docs_engine_t *docs;
  /* Any worker's thread: the open connections of the app at path[0..len) everywhere
   * (app:connection_count). NULL: this process's (counters.c "conns:PATH"). */
  uint32_t (*app_connections)(const char *path, size_t len);
} ews_engine_t;

/* The in-process engine: memory and SQLite, one process. */
extern const ews_engine_t ews_engine_local;
/* Its services' tables, for engines that keep some services in process. */
extern const ews_pubsub_engine_t ews_engine_local_pubsub;
extern const ews_presence_engine_t ews_engine_local_presence;
extern const ews_users_engine_t ews_engine_local_users;
/* The Redis engine (hub/engine_redis.c): channels across instances through Redis
 * PUBLISH/SUBSCRIBE, pub/sub over Redis streams (hub/engine_redis_pubsub.c), the
 * user registry (hub/engine_redis_users.c), notifications (hub/engine_redis_notify.c),
 * presence (hub/engine_redis_presence.c: the in-process tables mirrored into Redis),
 * app connection counts (hub/engine_redis_apps.c) and collaborative documents
 * (hub/engine_redis_docs.c), sharded over cfg->redis (README: Running a cluster). */
extern const ews_engine_t ews_engine_redis;

#endif
