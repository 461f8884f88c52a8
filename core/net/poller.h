/* poller.h — the connections' readiness on one loop: ONE inner epoll descriptor
 * (level-triggered) that every connection's non-blocking socket is registered in,
 * with the connection as its data, and ONE uv_poll_t that watches that descriptor
 * in libuv's loop. When it is readable the callback takes up to EWS_POLLER_BATCH
 * ready sockets from it (epoll_wait with no wait) and hands each to the owner's
 * callback with its epoll event bits. A connection thus costs its socket's entry
 * in the kernel's epoll and no libuv handle (a uv_tcp_t is 248 bytes; see
 * bench/PROFILE.md "Idle connection"). Linux only (epoll).
 *
 * The owner (net.c, for conn_rx.c / conn_tx.c / client.c) decides the interest of
 * each socket (ews_poller_set) and must not free what a registered socket's data
 * points to while the callback may still run for it: remove the socket first, and
 * free only from a point outside the callback (net.c reaps closed connections from
 * an idle handle). A callback may remove or close any socket, including others of
 * the same batch: the owner's callback must then ignore events for a connection it
 * has already closed (the events of one batch were taken before). */
#ifndef EWS_POLLER_H
#define EWS_POLLER_H

#include <stdint.h>
#include <uv.h>

#define EWS_POLLER_BATCH 1024 /* ready sockets taken per wake-up (libuv takes 1024 too) */

typedef void (*ews_poller_cb)(void *ud, void *data, uint32_t events);

typedef struct {
  int epfd;       /* the inner epoll descriptor, or -1 */
  uv_poll_t poll; /* watches epfd in the loop (closed with the loop's handles) */
  ews_poller_cb cb;
  void *ud;
} ews_poller_t;

/* Creates the inner epoll descriptor and starts watching it on loop. 0, or a libuv
 * error (then nothing is left open). */
int ews_poller_init(ews_poller_t *p, uv_loop_t *loop, ews_poller_cb cb, void *ud);
/* Changes fd's interest from `have` to `want` (EPOLLIN and/or EPOLLOUT; 0: not
 * registered): adds, modifies or removes it. 0, or a libuv error (interest
 * unchanged). */
int ews_poller_set(ews_poller_t *p, int fd, void *data, uint32_t have, uint32_t want);
/* After the loop closed its handles: closes the epoll descriptor. */
void ews_poller_free(ews_poller_t *p);

#endif
