/* engine_redis_int.h — what the Redis engine's files share (engine_redis.c: the
 * redis thread, its queue, the shards and channels; engine_redis_pubsub.c: pub/sub
 * over Redis streams). Not for other users. */
#ifndef EWS_ENGINE_REDIS_INT_H
#define EWS_ENGINE_REDIS_INT_H

#include <stddef.h>
#include <stdint.h>

#include "hub/bus.h"
#include "hub/engine.h"
#include "hub/redis_conn.h"

/* Work for the redis thread: run(j, stopping) runs there, in submission order, and
 * frees j (stopping: the engine is stopping, only clean up). */
typedef struct ews_rjob {
  struct ews_rjob *next;
  void (*run)(struct ews_rjob *j, int stopping);
  size_t size; /* counted against the queue's byte limit */
} ews_rjob_t;

/* Any thread. 0, or EWS_EBACKPRESSURE (queue full) / EWS_ESHUTDOWN: then j is the
 * caller's to free. */
int ews_rengine_submit(ews_rjob_t *j);

/* The redis thread: a request (req, freed with free()) is done. With a callback to
 * run (wanted), msg, of kind, is posted to hub's inbox: kind->run completes it on
 * the worker and kind->free frees req; without one, req is freed here. */
void ews_rengine_complete(void *req, int wanted, ews_bus_msg_t *msg, const ews_bus_kind_t *kind,
                          ews_hub_t *hub);

int ews_rengine_nshards(void);
/* The shard of a name (channels and topics alike). */
int ews_rengine_shard_of(const char *name, size_t len);
/* Any thread: the shard's connections are ready (as /health counts them). */
int ews_rengine_shard_up(int shard);
const ews_redis_url_t *ews_rengine_url(int shard);
/* The redis thread only. */
ews_rconn_t *ews_rengine_cmd(int shard);
ews_rconn_t *ews_rengine_sub(int shard);
ews_hub_t *const *ews_rengine_hubs(int *nworkers);

/* Any thread but the redis thread: a blocking command on this thread's own
 * connection to the shard (its URL's timeouts). The reply (freeReplyObject), or
 * NULL when the shard is down or did not answer. */
struct redisReply *ews_rengine_sync(int shard, int argc, const char **argv, const size_t *lens);
/* Delivery latency through Redis: the wall clock in microseconds, a time in a
 * message (16 hex digits), and the delivery of a message PUBLISHed at pub_us
 * (counted in the status's delivery_us_sum / delivery_n). Any thread. */
uint64_t ews_rengine_wall_us(void);
void ews_rengine_hex_time(char *out16, uint64_t us);
uint64_t ews_rengine_parse_hex_time(const char *p, size_t n);
void ews_rengine_delivered(uint64_t pub_us);
/* The redis thread: a text or binary message for the local subscribers of channel
 * name[0..len) (framed once, the frame posted to every worker). */
void ews_rengine_post_frame(const char *name, size_t len, int opcode, const char *data,
                            size_t n);
/* This instance's id (16 hex digits). */
const char *ews_rengine_id(void);

/* engine_redis_users.c: the user registry across instances. */
extern const ews_users_engine_t ews_rus_engine;
void ews_rus_start(uv_loop_t *loop); /* main thread, before the redis thread runs */
void ews_rus_close(void);            /* the redis thread, at its end */
void ews_rus_cmd_ready(int shard);   /* registers this instance's users again, alive */
void ews_rus_sub_ready(int shard, ews_rconn_reply_fn on_message); /* its inbox channel */
/* A message on an instance's inbox channel (EWS_RUS_INBOX + id). */
void ews_rus_message(const char *payload, size_t n);
#define EWS_RUS_INBOX "ews:w:"
/* A message on the channel of posts to every instance (EWS_RUS_ALL): ID + data. */
void ews_rus_all(const char *payload, size_t n);
#define EWS_RUS_ALL "ews:b"

/* Any thread: queues a command of argc (<= 4) arguments for the shard's command
 * connection (no reply; a command that cannot be sent is dropped). 0 or an error
 * (EWS_ENOMEM, EWS_EBACKPRESSURE, EWS_ESHUTDOWN). */
int ews_rengine_command(int shard, int argc, const char *const *argv, const size_t *lens);

/* Any worker's thread: the sum of the fields of hash key[0..kl) on the shard that
 * other live instances wrote (field: instance id; the fields of dead instances are
 * deleted), one round trip; -1 when the shard is down or did not answer. */
int64_t ews_rengine_count_others(int shard, const char *key, size_t kl);

/* engine_redis_apps.c: app connection counts across instances. */
void ews_rap_start(uv_loop_t *loop); /* main thread, before the redis thread runs */
void ews_rap_close(void);            /* the redis thread, at its end */
void ews_rap_cmd_ready(int shard);   /* writes this instance's counts again */
uint32_t ews_rap_connections(const char *path, size_t len);

/* engine_redis_presence.c: presence across instances. */
extern const ews_presence_engine_t ews_rpr_engine;
void ews_rpr_start(uv_loop_t *loop); /* main thread, before the redis thread runs */
void ews_rpr_close(void);            /* the redis thread, at its end */
void ews_rpr_cmd_ready(int shard);   /* writes this instance's members there again */
void ews_rpr_sub_ready(int shard, ews_rconn_reply_fn on_message); /* presence.set's channel */
int ews_rpr_is_status_chan(const char *chan, size_t len);
/* Main thread, once the redis thread has ended: on every shard that is up, this
 * instance's members leave (announced) and its liveness key goes. */
void ews_rpr_goodbye(void);
void ews_rpr_status_message(const char *payload, size_t n);

/* engine_redis_notify.c: notifications in Redis. */
extern const ews_notify_engine_t ews_rno_engine;
void ews_rno_start(int32_t max_per_user, int32_t ttl); /* main thread */

/* engine_redis_docs.c: collaborative documents in Redis. */
extern const ews_docs_engine_t ews_rdoc_engine;
void ews_rdoc_start(void);                          /* main thread */
void ews_rdoc_stop(void);                           /* main thread, after the thread ended */
void ews_rdoc_sub_ready(int shard);                 /* every worker resyncs its documents */
/* A message on a document's channel (EWS_RDOC_CHAN + name): posted to its owner. */
void ews_rdoc_message(const char *channel, size_t clen, const char *payload, size_t n);
/* This instance's SUBSCRIBE of the document's channel took effect: blob (what the
 * Lua side gave to hold) is posted to the document's owner, which catches up. */
void ews_rdoc_subscribed(const char *name, size_t nl, const char *blob, size_t n);
#define EWS_RDOC_CHAN "ews:d:"
/* engine_redis.c: the document's Redis subscription (ews_docs_engine_t.hold). */
void *ews_rengine_doc_hold(const char *name, size_t nl, const char *blob, size_t n);
void ews_rengine_doc_release(void *handle);

/* engine_redis_pubsub.c, called by engine_redis.c on the redis thread: */
void ews_rps_start(const ews_pubsub_config_t *cfg); /* main thread, before the thread runs */
void ews_rps_stop(void);                             /* main thread, after it ended */
void ews_rps_cmd_ready(int shard);   /* loads the scripts */
void ews_rps_shard_up(int shard);    /* the shard is up again: every worker resyncs */
/* A message on a pub/sub channel (ews:p:TOPIC). */
void ews_rps_message(const char *channel, size_t clen, const char *payload, size_t n);
/* This instance's SUBSCRIBE of ews:p:TOPIC took effect: every worker catches up
 * its subscribers of the topic from the stream. */
void ews_rps_topic_subscribed(const char *topic, size_t tl);
#define EWS_RPS_CHAN "ews:p:"
extern const ews_pubsub_engine_t ews_rps_engine;
/* engine_redis.c: the topic's Redis subscription, held while a worker has
 * subscribers of it (ews_pubsub_engine_t.hold / release). */
void *ews_rengine_topic_hold(const char *topic, size_t tl);
void ews_rengine_topic_release(void *handle);

#endif
