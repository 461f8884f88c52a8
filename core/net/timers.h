/* timers.h — a per-worker hashed timer wheel for connection deadlines.
 *
 * One uv_timer_t per worker ticks the wheel; connections embed an ews_tnode_t and are
 * never given a timer handle of their own. Each node sits in at most one slot, for its
 * earliest deadline. Deadlines are coarse (one tick, EWS_TICK_MS) and the owner
 * re-evaluates on expiry: activity such as an incoming frame only updates a timestamp
 * in the connection, and the wheel finds out lazily when the old deadline comes up,
 * so the per-message path never touches the wheel. The wheel itself does no I/O and
 * includes no uv.h; time is passed in by the caller (milliseconds, 32-bit wrapping). */
#ifndef EWS_TIMERS_H
#define EWS_TIMERS_H

#include <stdint.h>

#define EWS_TICK_MS 50u
#define EWS_WHEEL_SLOTS 256u /* one turn = 12.8 s; longer deadlines stay a few turns */

typedef struct ews_tnode {
  struct ews_tnode *next, *prev; /* NULL when not scheduled */
  uint32_t due;                  /* tick at which it fires */
  uint32_t spare;                /* not the wheel's: 4 bytes the node's owner may use
                                    (they would be padding otherwise) */
} ews_tnode_t;

typedef void (*ews_timer_fire_cb)(ews_tnode_t *node, void *ud);

typedef struct {
  ews_tnode_t slots[EWS_WHEEL_SLOTS]; /* list heads (circular, sentinel) */
  uint32_t now;                       /* current tick */
  uint32_t count;                     /* scheduled nodes */
} ews_wheel_t;

void ews_wheel_init(ews_wheel_t *w, uint64_t now_ms);
static inline uint32_t ews_wheel_ms_to_tick(uint64_t ms) { return (uint32_t)(ms / EWS_TICK_MS); }

/* Schedules (or reschedules) node to fire at the first tick at or after now + delay. */
void ews_wheel_schedule(ews_wheel_t *w, ews_tnode_t *node, uint32_t delay_ms);
/* Schedules node for now + delay unless it is already scheduled to fire no later
 * than that (a new, earlier deadline of its owner; the owner re-evaluates the rest
 * when it fires). */
void ews_wheel_schedule_min(ews_wheel_t *w, ews_tnode_t *node, uint32_t delay_ms);
void ews_wheel_cancel(ews_wheel_t *w, ews_tnode_t *node);
static inline int ews_wheel_scheduled(const ews_tnode_t *n) { return n->next != 0; }

/* Advances to now_ms, firing every node whose tick has come (each is unlinked before
 * its callback runs, so the callback may reschedule it or free it). */
void ews_wheel_advance(ews_wheel_t *w, uint64_t now_ms, ews_timer_fire_cb cb, void *ud);

#endif
