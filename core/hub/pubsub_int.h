/* pubsub_int.h — what the engines' pub/sub (sequencers and history: hub/pubsub.c in
 * the in-process engine) and the worker side (hub/pubsub_subs.c: a worker's
 * subscribers and replays) share: the view and the pages a replay reads, the message
 * a sequencer posts to every worker (ews_ps_post), and the frames both build. The
 * Lua API uses hub/pubsub.h and hub/engine.h. */
#ifndef EWS_PUBSUB_INT_H
#define EWS_PUBSUB_INT_H

#include <stddef.h>
#include <stdint.h>

#include "hub/bus.h"
#include "hub/pubsub.h"
#include "net/buf.h"

/* Where a topic stands: its epoch (0: a stored topic that never had a message),
 * the oldest retained offset (last + 1 when none is) and the last offset. */
typedef struct {
  uint64_t epoch;
  int64_t first, last;
} ews_ps_view_t;

/* One message of a page: its frame (a reference) and header length. */
typedef struct {
  int64_t offset, time;
  int json;
  ews_buf_t *frame;
  size_t hl;
} ews_ps_entry_t;

int ews_ps_valid_topic(const char *t, size_t n);
uint32_t ews_ps_max_recover(void);

/* Where the topic stands (a memory topic is created: its epoch holds from now
 * on). Memory: O(1) under the topic's lock; stored: a read of no rows.
 * 0, EWS_ENOMEM, EWS_EIO, EWS_ENOSTORE. */
int ews_ps_view(ews_hub_t *w, const char *topic, size_t tl, ews_ps_view_t *v);

/* Up to limit messages after `since`, oldest first, as envelope frames (raw = 0)
 * or raw frames, into out[0..*n) (references: release with ews_ps_release), and
 * the view of the same snapshot. Memory: O(limit) under the topic's lock. Errors
 * as for ews_ps_view. */
int ews_ps_page(ews_hub_t *w, const char *topic, size_t tl, int64_t since,
                uint32_t limit, int raw, ews_ps_view_t *v, ews_ps_entry_t *out, uint32_t *n);
/* A history (ews_pubsub_history_t) of the oldest `limit` messages after `since`, read
 * as one page of raw frames through `page` (an engine's ews_ps_page): the frames'
 * references move into out->refs. Errors: page's, or EWS_ENOMEM (out zeroed). */
typedef int (*ews_ps_page_fn)(ews_hub_t *w, const char *topic, size_t tl, int64_t since,
                              uint32_t limit, int raw, ews_ps_view_t *v, ews_ps_entry_t *out,
                              uint32_t *n);
int ews_ps_history_paged(ews_hub_t *w, ews_ps_page_fn page, const char *topic, size_t tl,
                         int64_t since, uint32_t limit, ews_pubsub_history_t *out);
/* Drops the frames of page entries v[0..n) (pubsub_frames.c). */
void ews_ps_release(ews_ps_entry_t *v, uint32_t n);

/* A sequenced message on its way to a worker (pubsub_subs.c runs it there): both
 * frames referenced, the topic's name copied. */
typedef struct {
  ews_bus_msg_t base; /* first; kind: ews_ps_msg_kind */
  ews_buf_t *env;     /* the envelope frame */
  size_t env_hl;
  ews_buf_t *raw;     /* the frame of the data alone */
  size_t raw_hl;
  uint64_t epoch;
  int64_t offset, time;
  int json;
  size_t len;
  char topic[];
} ews_ps_msg_t;

extern const ews_bus_kind_t ews_ps_msg_kind;

/* Posts a sequenced message to worker `to` (takes references on both frames). 0 or
 * an error of ews_bus_post, or EWS_ENOMEM. */
int ews_ps_post(ews_hub_t *to, const char *topic, size_t tl, ews_buf_t *env, size_t env_hl,
                ews_buf_t *raw, size_t raw_hl, uint64_t epoch, int64_t offset, int64_t time,
                int json);

/* ---- frames (pubsub_frames.c) -------------------------------------------------- */

/* The envelope frame of a message ({"type":"pub",...}) in a fresh shared buffer; *hl
 * gets the frame header's length. NULL when out of memory. */
ews_buf_t *ews_ps_envelope(const char *topic, size_t tl, uint64_t epoch, int64_t offset,
                           int64_t time, int json, const char *data, size_t n, size_t *hl);
/* The same in two steps, so that a sequencer can allocate before it takes an offset:
 * a buffer with room for the envelope at any position, then the envelope written
 * into it (cannot fail). */
ews_buf_t *ews_ps_envelope_alloc(const char *topic, size_t tl, int json, const char *data,
                                 size_t n);
void ews_ps_envelope_fill(ews_buf_t *b, const char *topic, size_t tl, uint64_t epoch,
                          int64_t offset, int64_t time, int json, const char *data, size_t n,
                          size_t *hl);
/* Both frames of a message: the envelope and the raw frame (the data alone). 0 or
 * EWS_ENOMEM (then neither). */
int ews_ps_frames(const char *topic, size_t tl, uint64_t epoch, int64_t offset, int64_t time,
                  int json, const char *data, size_t n, ews_buf_t **env, size_t *env_hl,
                  ews_buf_t **raw, size_t *raw_hl);
/* {"type":"gap",...} as a text frame (epoch 0 is written as null). NULL when out
 * of memory. */
ews_buf_t *ews_ps_gap_frame(const char *topic, size_t tl, uint64_t epoch, int64_t from,
                            int64_t to, const char *reason);

#endif
