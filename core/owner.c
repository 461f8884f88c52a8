/* owner.c — exclusive ownership of listening addresses and of the data directory
 * (see owner.h). The descriptors are kept open for the life of the process on
 * purpose: closing them would release the claim. */
#include "owner.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

static int probe_bind(const char *host, int port) {
  struct sockaddr_storage ss;
  socklen_t len;
  memset(&ss, 0, sizeof ss);
  if (strchr(host, ':')) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) return UV_EINVAL;
    len = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return UV_EINVAL;
    len = sizeof *a;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  /* SO_REUSEADDR as the listeners use it: connections of an earlier process still
   * in TIME_WAIT do not count, a listening socket does. No SO_REUSEPORT: that is
   * what would let us join another process's listener. */
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  int r = bind(fd, (struct sockaddr *)&ss, len) == 0 ? 0 : -errno;
  close(fd);
  return r;
}

int ews_own_address(const char *host, int port) {
  if (port == 0) return 0;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  struct sockaddr_un un;
  memset(&un, 0, sizeof un);
  un.sun_family = AF_UNIX;
  /* Abstract namespace (leading NUL): no file, gone when the process is. */
  int n = snprintf(un.sun_path + 1, sizeof un.sun_path - 1, "edgews-lua/listen/%s:%d", host, port);
  if (n < 0 || (size_t)n >= sizeof un.sun_path - 1) n = (int)sizeof un.sun_path - 2;
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
  if (bind(fd, (struct sockaddr *)&un, len) != 0) {
    int e = errno;
    close(fd);
    return e == EADDRINUSE ? UV_EADDRINUSE : -e;
  }
  int r = probe_bind(host, port);
  if (r != 0) close(fd);
  return r; /* on success fd stays open: the claim */
}

int ews_own_data_dir(const char *dir, long *holder) {
  *holder = 0;
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/edgews.lock", dir);
  if (n < 0 || (size_t)n >= sizeof path) return UV_ENAMETOOLONG;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return -errno;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    if (e == EWOULDBLOCK) {
      char buf[32] = {0};
      if (pread(fd, buf, sizeof buf - 1, 0) > 0) *holder = strtol(buf, NULL, 10);
    }
    close(fd);
    return e == EWOULDBLOCK ? UV_EBUSY : -e;
  }
  char buf[32];
  int bl = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)bl, 0) != bl) {
    /* The lock holds without the PID; a second process just cannot name us. */
  }
  return 0; /* fd stays open: the lock */
}
