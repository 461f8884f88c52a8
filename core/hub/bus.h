/* bus.h — messages between workers. Each worker has an inbox (a list under the
 * worker's post lock) and a uv_async_t that wakes it; a message is a blob of Lua
 * values serialised with LuaJIT's string.buffer, run on the target worker by the
 * Lua dispatcher `_bus` in a task of its own. Cross-worker sends to a user's
 * sockets and app-wide broadcasts travel this way; workers share no Lua state. */
#ifndef EWS_BUS_H
#define EWS_BUS_H

#include <stddef.h>

struct ews_worker;

#define EWS_INBOX_DEFAULT (1u << 20)

#include <stdint.h>

#include "net/buf.h"

enum { EWS_BUS_LUA = 0, EWS_BUS_PUBLISH = 1, EWS_BUS_PUBSUB = 2 };

typedef struct ews_bus_msg {
  struct ews_bus_msg *next;
  int kind;
  /* EWS_BUS_PUBLISH: a frame built once by the publishing worker (referenced);
   * data = the channel name. */
  ews_buf_t *frame;
  size_t header_len;
  int opcode;
  uint64_t exclude_id;
  /* EWS_BUS_PUBSUB (hub/pubsub.h): frame = the envelope, raw = the data alone
   * (both referenced); data = the topic name. */
  ews_buf_t *raw;
  size_t raw_hl;
  uint64_t epoch;
  int64_t offset, time;
  int json;
  size_t len;
  char data[];
} ews_bus_msg_t;

/* Posts a channel publish: the worker queues `frame` to its subscribers of the
 * channel name[0..len). Takes a reference on frame. 0 or an error. */
int ews_bus_post_publish(struct ews_worker *to, const char *name, size_t len, ews_buf_t *frame,
                         size_t header_len, int opcode, uint64_t exclude_id);

/* Posts a pub/sub message (see the fields above); takes a reference on both
 * buffers. 0 or an error. */
int ews_bus_post_pubsub(struct ews_worker *to, const char *topic, size_t tl, ews_buf_t *env,
                        size_t env_hl, ews_buf_t *raw, size_t raw_hl, uint64_t epoch,
                        int64_t offset, int64_t time, int json);

/* A worker's inbox holds at most w->inbox_limit messages (configure's
 * worker_inbox_limit; 0: EWS_INBOX_DEFAULT); posts beyond it fail with EWS_EINBOX_FULL
 * (counted in the target's stats.bus_dropped; a refused pub/sub message makes the
 * worker resync its topics' subscribers from history at its next drain). */

/* Copies data[0..len) into a message for worker `to`. 0, EWS_ENOMEM, EWS_EINBOX_FULL,
 * or EWS_ECLOSED when the worker is gone. (The post functions above fail the same
 * ways.) */
int ews_bus_post(struct ews_worker *to, const char *data, size_t len);
/* On the worker's wakeup: runs every message in its inbox, in order. */
void ews_bus_drain(struct ews_worker *w);
/* At worker exit: frees what is left. */
void ews_bus_free(struct ews_worker *w);

#endif
