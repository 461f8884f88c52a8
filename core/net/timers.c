/* timers.c — the hashed timer wheel (see timers.h). */
#include "net/timers.h"

#include <stddef.h>

static void unlink_node(ews_tnode_t *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = NULL;
}

void ews_wheel_init(ews_wheel_t *w, uint64_t now_ms) {
  for (uint32_t i = 0; i < EWS_WHEEL_SLOTS; i++)
    w->slots[i].next = w->slots[i].prev = &w->slots[i];
  w->now = ews_wheel_ms_to_tick(now_ms);
  w->count = 0;
}

/* Round up so a node never fires early; at least one tick ahead. */
static uint32_t due_tick(const ews_wheel_t *w, uint32_t delay_ms) {
  uint32_t ticks = delay_ms / EWS_TICK_MS + (delay_ms % EWS_TICK_MS != 0);
  return w->now + (ticks ? ticks : 1);
}

void ews_wheel_schedule(ews_wheel_t *w, ews_tnode_t *n, uint32_t delay_ms) {
  if (n->next) {
    unlink_node(n);
    w->count--;
  }
  n->due = due_tick(w, delay_ms);
  ews_tnode_t *head = &w->slots[n->due % EWS_WHEEL_SLOTS];
  n->next = head;
  n->prev = head->prev;
  head->prev->next = n;
  head->prev = n;
  w->count++;
}

void ews_wheel_schedule_min(ews_wheel_t *w, ews_tnode_t *n, uint32_t delay_ms) {
  if (n->next && (int32_t)(n->due - due_tick(w, delay_ms)) <= 0) return;
  ews_wheel_schedule(w, n, delay_ms);
}

void ews_wheel_cancel(ews_wheel_t *w, ews_tnode_t *n) {
  if (!n->next) return;
  unlink_node(n);
  w->count--;
}

void ews_wheel_advance(ews_wheel_t *w, uint64_t now_ms, ews_timer_fire_cb cb, void *ud) {
  uint32_t target = ews_wheel_ms_to_tick(now_ms);
  /* After a long stall (debugger, suspended VM) visit each slot once, not each tick. */
  if ((int32_t)(target - w->now) > (int32_t)EWS_WHEEL_SLOTS) w->now = target - EWS_WHEEL_SLOTS;
  while ((int32_t)(target - w->now) > 0) {
    w->now++;
    ews_tnode_t *head = &w->slots[w->now % EWS_WHEEL_SLOTS];
    /* Move the due nodes to a local list first: callbacks may reschedule into this
     * same slot (a full turn later) and must not be visited again in this pass. */
    ews_tnode_t due = {&due, &due, 0, 0};
    for (ews_tnode_t *n = head->next, *next; n != head; n = next) {
      next = n->next;
      if ((int32_t)(n->due - w->now) <= 0) {
        unlink_node(n);
        n->next = &due;
        n->prev = due.prev;
        due.prev->next = n;
        due.prev = n;
      }
    }
    while (due.next != &due) {
      ews_tnode_t *n = due.next;
      unlink_node(n);
      w->count--;
      cb(n, ud);
    }
  }
}
