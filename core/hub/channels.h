/* channels.h — named channels and their subscribers, for fan-out across workers.
 *
 * Each worker keeps its own subscribers per channel (a hash table of channels; a
 * channel exists on a worker only while it has subscribers there, so idle names
 * cost nothing). A publish builds the frame once into one reference-counted
 * buffer: the publishing worker queues it to its subscribers and hands the same
 * buffer to the engine (hub/engine.h), which carries it to every other worker (the
 * in-process engine posts it to their inboxes), where ews_chan_deliver queues it to
 * theirs, so no worker re-encodes and no subscriber gets a copy. Compressing
 * subscribers get a frame compressed once per worker (per window size). Messages
 * from one publisher reach every subscriber in publish order (a worker's inbox is
 * FIFO). A subscription ends with its connection (a close hook). The subscriber
 * count of a channel everywhere is the engine's (ews_chan_engine_t.count). */
#ifndef EWS_CHANNELS_H
#define EWS_CHANNELS_H

#include <stddef.h>
#include <stdint.h>

#include "hub/names.h"
#include "net/buf.h"
#include "net/conn.h"

struct ews_hub;

typedef struct ews_chan ews_chan_t;

/* A worker's channels with subscribers (hub/names.h). */
typedef ews_names_t ews_chans_t;

/* A connection's subscriptions (allocated on its first subscribe): each channel
 * and the connection's index in that channel's subscriber array, so that leaving
 * costs O(subscriptions of the connection), not O(subscribers of the channel). */
typedef struct {
  ews_chan_t *ch;
  uint32_t idx;
} ews_chan_sub_t;

typedef struct {
  ews_conn_hook_t hook; /* first: the subscriptions end with the connection */
  struct ews_hub *w;
  ews_chan_sub_t *list;
  uint32_t n, cap;
} ews_conn_subs_t;

/* 0 (also when already subscribed), EWS_ENOMEM or EWS_ECLOSED. */
int ews_chan_subscribe(struct ews_hub *w, ews_conn_t *c, const char *name, size_t len);
/* 0, or EWS_EINVAL when it was not subscribed. */
int ews_chan_unsubscribe(struct ews_hub *w, ews_conn_t *c, const char *name, size_t len);
/* Publishes p[0..n) (opcode TEXT or BINARY) to every subscriber on every worker but
 * the connection with id exclude_id (0: none). Returns the number of local
 * subscribers it was queued for, or EWS_ENOMEM. */
int ews_chan_publish(struct ews_hub *w, const char *name, size_t len, int opcode,
                     const void *p, size_t n, uint64_t exclude_id);
/* A publish arriving from another worker (or instance) through the engine
 * (hub/engine.h): queues the frame (referenced; its payload after header_len) to this
 * worker's subscribers of the channel but connection exclude_id. */
void ews_chan_deliver(struct ews_hub *w, const char *name, size_t len, ews_buf_t *frame,
                      size_t header_len, int opcode, uint64_t exclude_id);
/* Frees the table (worker exit; every connection is gone). */
void ews_chans_free(ews_chans_t *t);

#endif
