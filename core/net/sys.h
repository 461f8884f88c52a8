/* sys.h — the socket reads and writes of the connection hot paths, straight to the
 * kernel. glibc's read() and sendmsg() are thread-cancellation points: in a process
 * with more than one thread each call brackets the system call with two atomic
 * updates of the thread's cancellation state. The server never cancels a thread, so
 * the connections call the kernel through syscall(2), which skips that (same results,
 * errno set the same way). Sanitizer builds keep glibc's calls: ASan checks the
 * buffers of intercepted read and sendmsg, TSan orders threads through them. */
#ifndef EWS_NET_SYS_H
#define EWS_NET_SYS_H

#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define EWS_SYS_VIA_LIBC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define EWS_SYS_VIA_LIBC 1
#endif
#endif

static inline ssize_t ews_sys_read(int fd, void *buf, size_t n) {
#ifdef EWS_SYS_VIA_LIBC
  return read(fd, buf, n);
#else
  return (ssize_t)syscall(SYS_read, fd, buf, n);
#endif
}

static inline ssize_t ews_sys_sendmsg(int fd, const struct msghdr *m, int flags) {
#ifdef EWS_SYS_VIA_LIBC
  return sendmsg(fd, m, flags);
#else
  return (ssize_t)syscall(SYS_sendmsg, fd, m, flags);
#endif
}

#endif
