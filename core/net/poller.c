/* poller.c — the loop's inner epoll of connection sockets (see poller.h). */
#include "net/poller.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

static void on_ready(uv_poll_t *h, int status, int events) {
  (void)events;
  ews_poller_t *p = h->data;
  if (status < 0) return; /* the epoll descriptor cannot fail; nothing to take */
  struct epoll_event ev[EWS_POLLER_BATCH];
  int n;
  do n = epoll_wait(p->epfd, ev, EWS_POLLER_BATCH, 0);
  while (n < 0 && errno == EINTR);
  /* More than a batch ready: the descriptor stays readable and libuv comes back
   * in its next iteration, after its timers and the check phase (fairness). */
  for (int i = 0; i < n; i++) p->cb(p->ud, ev[i].data.ptr, ev[i].events);
}

int ews_poller_init(ews_poller_t *p, uv_loop_t *loop, ews_poller_cb cb, void *ud) {
  p->cb = cb;
  p->ud = ud;
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd < 0) return uv_translate_sys_error(errno);
  int r = uv_poll_init(loop, &p->poll, p->epfd);
  if (r == 0) {
    p->poll.data = p;
    r = uv_poll_start(&p->poll, UV_READABLE, on_ready);
    if (r < 0) uv_close((uv_handle_t *)&p->poll, NULL);
  }
  if (r < 0) {
    close(p->epfd);
    p->epfd = -1;
  }
  return r;
}

int ews_poller_set(ews_poller_t *p, int fd, void *data, uint32_t have, uint32_t want) {
  if (have == want) return 0;
  struct epoll_event e = {0};
  e.events = want;
  e.data.ptr = data;
  int op = !have ? EPOLL_CTL_ADD : !want ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  if (epoll_ctl(p->epfd, op, fd, &e) != 0) return uv_translate_sys_error(errno);
  return 0;
}

void ews_poller_free(ews_poller_t *p) {
  if (p->epfd >= 0) close(p->epfd);
  p->epfd = -1;
}
