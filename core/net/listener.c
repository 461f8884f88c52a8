/* listener.c — listening sockets (see listener.h): libuv's uv_tcp_t listens and
 * accepts (its accept loop, its EMFILE reserve descriptor); each accepted socket
 * becomes a connection (net/conn.h) that owns the bare descriptor. */
#include "net/listener.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "err.h"
#include "log.h"
#include "net/conn.h"

static void on_connection(uv_stream_t *server, int status) {
  ews_listener_t *l = server->data;
  ews_net_t *net = l->net;
  if (status < 0) {
    /* EMFILE/ENFILE: libuv has already accepted and closed the pending connection
     * with its reserve descriptor, so we shed load instead of spinning. Log at most
     * once a second. */
    uint64_t now = uv_now(net->loop);
    if (now - net->last_emfile_log >= 1000) {
      net->last_emfile_log = now;
      EWS_WARN("accept failed: %s (shedding connections)", uv_strerror(status));
    }
    return;
  }
  /* libuv accepted the socket (accept4, non-blocking, close-on-exec) and keeps it
   * for uv_accept: the connection takes the descriptor itself instead, with no
   * libuv handle (net/poller.h). libuv goes on accepting as after a uv_accept. */
  int fd = server->accepted_fd;
  server->accepted_fd = -1;
  if (fd < 0) return;
  int r = ews_conn_accept(net, fd, l->tls ? net->tls : NULL, l->admin);
  if (r == EWS_ENOMEM) EWS_WARN("accept: %s", ews_strerror(r)); /* EWS_EIO was logged */
}

int ews_listener_open(ews_listener_t *l, ews_net_t *net, const char *host, int port,
                      int backlog, int tls, int admin) {
  struct sockaddr_storage ss;
  int r;
  if (strchr(host, ':')) r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  else r = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (r < 0) return r;
  r = uv_tcp_init_ex(net->loop, &l->tcp, ss.ss_family);
  if (r < 0) return r;
  l->tcp.data = l;
  l->net = net;
  l->tls = tls;
  l->admin = admin;
  l->active = 1;
  uv_os_fd_t fd;
  int one = 1;
  r = uv_fileno((uv_handle_t *)&l->tcp, &fd);
  if (r == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
    r = uv_translate_sys_error(errno);
  if (r == 0) r = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&l->tcp, backlog, on_connection);
  if (r == 0) {
    int len = sizeof ss;
    r = uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len);
    l->bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
  }
  if (r < 0) EWS_ERROR("cannot listen on %s:%d: %s", host, port, uv_strerror(r));
  return r;
}

void ews_listener_close(ews_listener_t *l) {
  if (!l->active) return;
  l->active = 0;
  uv_close((uv_handle_t *)&l->tcp, NULL);
}
