/* bus.h — messages between workers. Each worker has an inbox (a list under a lock)
 * and a uv_async_t that wakes its loop; another thread posts a message, the worker
 * runs it on its own loop at its next wakeup, in the order they were posted. The bus
 * moves messages and knows nothing of what they carry: each message has a kind, a
 * small table of functions defined by whoever sends that kind (channels.c: a channel
 * publish; pubsub_subs.c: a sequenced pub/sub message; lua/api_bus.c: a blob of Lua
 * values run by the Lua dispatcher), which runs and frees it.
 *
 * An inbox holds at most `limit` messages (configure's worker_inbox_limit; 0:
 * EWS_INBOX_DEFAULT): a post beyond it is refused with EWS_EINBOX_FULL, counted in the
 * inbox's `dropped` and logged (at most once per 100,000), and the kind's `refused`
 * function runs on the target at its next drain (pub/sub resyncs its subscribers
 * from history there). */
#ifndef EWS_BUS_H
#define EWS_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define EWS_INBOX_DEFAULT (1u << 20)

typedef struct ews_bus_msg ews_bus_msg_t;

typedef struct {
  const char *name;                        /* for the log: "channel", "pub/sub", "Lua" */
  /* Runs the message on the target worker (ud: the target inbox's). Not freed here. */
  void (*run)(void *ud, ews_bus_msg_t *m);
  /* Frees a message: after run, when refused, or when left in an inbox at exit. */
  void (*free)(ews_bus_msg_t *m);
  /* A message of this kind to this inbox was refused (full): called once at the
   * target's next drain, after its messages ran. May be NULL. */
  void (*refused)(void *ud);
} ews_bus_kind_t;

/* The head of every message; a kind's message embeds it as its first member. */
struct ews_bus_msg {
  ews_bus_msg_t *next;
  const ews_bus_kind_t *kind;
};

#define EWS_INBOX_KINDS 8 /* distinct kinds whose refusal an inbox remembers */

typedef struct ews_inbox {
  uv_mutex_t lock;
  int alive;                  /* under lock: `wake` may be signalled */
  uv_async_t *wake;           /* the owner's loop handle */
  ews_bus_msg_t *head, *tail; /* under lock */
  uint32_t n;                 /* messages in it, under lock */
  uint32_t limit;             /* at most; 0: EWS_INBOX_DEFAULT */
  uint32_t nrefused;          /* kinds refused since the last drain, under lock */
  const ews_bus_kind_t *refused[EWS_INBOX_KINDS];
  uint64_t dropped;           /* messages refused (atomic: written by the posters) */
  int id;                     /* the worker's number, for the log */
  void *ud;                   /* given to every message's run and kind's refused */
} ews_inbox_t;

/* Prepares an inbox (not alive: posts fail with EWS_ECLOSED until ews_inbox_open).
 * Every inbox is initialised before any thread may post to it. 0 or EWS_ENOMEM. */
int ews_inbox_init(ews_inbox_t *in, int id, uint32_t limit, void *ud);
/* Its owner's loop runs: posts wake `wake` from now on. */
void ews_inbox_open(ews_inbox_t *in, uv_async_t *wake);
/* Its owner stops: posts fail with EWS_ECLOSED from now on (the lock stays valid). */
void ews_inbox_close(ews_inbox_t *in);
/* Only once no thread can post any more. */
void ews_inbox_destroy(ews_inbox_t *in);

/* Queues m (its kind set) for the inbox's owner and wakes it. Takes m in every case:
 * 0, or EWS_EINBOX_FULL / EWS_ECLOSED (then m was freed). */
int ews_bus_post(ews_inbox_t *to, ews_bus_msg_t *m);
/* Wakes the owner without a message (a completion of its own, a request). */
void ews_bus_wake(ews_inbox_t *in);
/* On the owner's loop: runs every message queued so far, in order, then the refused
 * kinds' functions. */
void ews_bus_drain(ews_inbox_t *in);
/* At the owner's exit: frees what is left. */
void ews_bus_free(ews_inbox_t *in);

#endif
