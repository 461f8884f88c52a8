/* hub.h — a worker's share of the hub: what the real-time services keep per worker
 * (its inbox on the bus, the channels and pub/sub topics its connections subscribe
 * to, its pub/sub replays, its client of the store, the hub's counters) and the way
 * to the other workers' (peers). The worker embeds one next to its net context and
 * fills it before its thread starts; everything but the inbox and the counters
 * belongs to the worker's thread.
 *
 * The hub calls only downward (net, proto); the layer above reaches in through
 * hooks it registers here: `up` (its own per-worker context, opaque), the handler of
 * pub/sub messages for its local (non-socket) subscribers (hub/pubsub.h) and the
 * handler of its own messages from other workers (hub/engine.h). What the services
 * share across workers goes through `engine` (hub/engine.h). */
#ifndef EWS_HUB_H
#define EWS_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "hub/bus.h"
#include "hub/names.h"
#include "net/net.h"

struct ews_pubsub_w;
struct ews_store_client;
struct ews_pubsub_event;
struct ews_engine;
typedef struct ews_hub ews_hub_t;

/* A sequenced pub/sub message for the worker's local subscribers (hub/pubsub.h). */
typedef void (*ews_pubsub_local_fn)(ews_hub_t *h, const struct ews_pubsub_event *e);
/* An app-layer message another worker posted to this one (hub/engine.h: users.post). */
typedef void (*ews_app_message_fn)(ews_hub_t *h, const char *data, size_t len);

typedef struct {
  uint64_t published; /* pub/sub messages published from this worker */
} ews_hub_stats_t;

struct ews_hub {
  int id;                          /* the worker's number */
  int nworkers;
  ews_hub_t *const *peers;         /* every worker's hub, by number (this one included) */
  ews_net_t *net;                  /* this worker's connections, loop and pool */
  const struct ews_engine *engine; /* where the services' shared state lives (hub/engine.h) */
  ews_inbox_t inbox;               /* other threads post here (ud: this hub) */
  ews_names_t chans;               /* channels with subscribers here (hub/channels.h) */
  ews_names_t topics;              /* topics with subscribers here (hub/pubsub.h) */
  struct ews_pubsub_w *pubsub;     /* replays in progress (hub/pubsub_subs.c), lazy */
  struct ews_store_client *store;  /* this worker's store client (hub/store.h), or NULL */
  ews_pubsub_local_fn pubsub_local; /* runs the local subscribers of a topic, or NULL */
  ews_app_message_fn app_message;   /* runs an app-layer message, or NULL */
  void *up;                        /* the layer above's per-worker context (opaque) */
  ews_hub_stats_t stats;           /* EWS_STAT_ADD (stat.h) */
};

/* Prepares worker `id`'s hub (zeroed first): its inbox (not open yet: other threads
 * find the worker gone until ews_inbox_open), its peers (peers[id] == h). Every hub
 * is initialised before any worker starts. 0 or EWS_ENOMEM. */
int ews_hub_init(ews_hub_t *h, int id, int nworkers, ews_hub_t *const *peers, ews_net_t *net,
                 const struct ews_engine *engine, uint32_t inbox_limit);
/* On the worker's thread at exit, after its loop closed every handle: frees the
 * channel and topic tables, the replays left and the inbox's messages. */
void ews_hub_free(ews_hub_t *h);
/* When no thread can post any more. */
void ews_hub_destroy(ews_hub_t *h);

#endif
