/* static_files.c — static files under path prefixes (see static_files.h): the mount
 * table, the answer to one request, and the body's way out (sendfile, or reads into
 * the write queue for TLS). What a request path may name is decided by
 * proto/static_path.c; here the file system is asked, and a file whose real path
 * (symlinks resolved) is not under the mount's root is not found. */
#include "net/static_files.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "net/conn_int.h"
#include "proto/handshake.h"
#include "proto/static_path.h"
#include "stat.h"

#define SENDFILE_TURN (1u << 20)    /* bytes sendfile moves per connection per loop turn */
#define COPY_PIECE EWS_BUF_BLOCK    /* one read into the queue (a pool block) */
#define TLS_TURN (64u * 1024u)      /* bytes read for a TLS connection per loop turn */

struct ews_static_body {
  int fd;
  uint64_t off, end;
};

/* ---- the mount table ------------------------------------------------------------- */

static void mount_free(ews_static_mount_t *m) {
  free(m->prefix);
  free(m->root);
  free(m->cache_control);
  free(m->index);
}

int ews_static_mounts_add(ews_static_mounts_t *t, const char *prefix, const char *root,
                          const char *cache_control, const char *index) {
  if (!prefix || prefix[0] != '/' || !root || root[0] != '/') return EWS_EINVAL;
  ews_static_mount_t m = {0};
  size_t pl = strlen(prefix);
  while (pl > 0 && prefix[pl - 1] == '/') pl--;
  m.prefix = strndup(prefix, pl);
  m.prefix_len = pl;
  m.root = strdup(root);
  m.root_len = strlen(root);
  m.cache_control = cache_control ? strdup(cache_control) : NULL;
  m.index = index ? strdup(index) : NULL;
  ews_static_mount_t *nm = realloc(t->m, (t->n + 1) * sizeof *nm);
  if (!m.prefix || !m.root || (cache_control && !m.cache_control) || (index && !m.index) || !nm) {
    mount_free(&m);
    if (nm) t->m = nm;
    return EWS_ENOMEM;
  }
  t->m = nm;
  t->m[t->n++] = m;
  return 0;
}

void ews_static_mounts_clear(ews_static_mounts_t *t) {
  for (size_t i = 0; i < t->n; i++) mount_free(&t->m[i]);
  free(t->m);
  t->m = NULL;
  t->n = 0;
}

const ews_static_mount_t *ews_static_find(const ews_static_mounts_t *t, const char *path,
                                          size_t len) {
  const ews_static_mount_t *best = NULL;
  for (size_t i = 0; i < t->n; i++) {
    const ews_static_mount_t *m = &t->m[i];
    if (len < m->prefix_len || memcmp(path, m->prefix, m->prefix_len) != 0) continue;
    if (len > m->prefix_len && path[m->prefix_len] != '/') continue; /* "/app" vs "/apple" */
    if (!best || m->prefix_len > best->prefix_len) best = m;
  }
  return best;
}

/* ---- answers --------------------------------------------------------------------- */

static void count(ews_conn_t *c, int status) {
  int cls = status / 100 - 2;
  if (cls >= 0 && cls < 4) EWS_STAT_ADD(c->net->stats.static_requests[cls], 1);
}

static int is_head(const ews_http_request_t *req) {
  return req->method_len == 4 && !memcmp(req->method, "HEAD", 4);
}

/* Queues a complete response (only its head for HEAD) and drains. */
static void send_response(ews_conn_t *c, const ews_http_request_t *req, const char *resp, int n,
                          int status) {
  count(c, status);
  if (n > 0) {
    size_t len = (size_t)n;
    if (is_head(req)) {
      const char *end = memmem(resp, len, "\r\n\r\n", 4);
      if (end) len = (size_t)(end - resp) + 4;
    }
    if (ews_conn_queue_raw(c, resp, len, NULL, 0) != 0) {
      ews_conn_abort(c);
      return;
    }
  }
  ews_conn_enter_draining(c);
}

static void respond_error(ews_conn_t *c, const ews_http_request_t *req, int err) {
  char buf[1024];
  int n = ews_write_error(buf, sizeof buf, err);
  EWS_DEBUG("conn %llu: static %.*s: HTTP %d: %s", (unsigned long long)c->id,
            (int)(req->path_len > 200 ? 200 : req->path_len), req->path,
            ews_err_http_status(err), ews_strerror(err));
  send_response(c, req, buf, n, ews_err_http_status(err));
}

static void respond_method(ews_conn_t *c, const ews_http_request_t *req) {
  static const char body[] = "{\"error\":\"http_method\",\"message\":\"method not allowed\"}";
  char buf[512];
  int n = ews_write_response(buf, sizeof buf, 405, "Allow: GET, HEAD\r\n", "application/json",
                             body, sizeof body - 1);
  send_response(c, req, buf, n, 405);
}

/* 301 to the same path with a '/' added (and the query kept). */
static void respond_slash(ews_conn_t *c, const ews_http_request_t *req) {
  char hdr[EWS_STATIC_MAX_PATH + 64], buf[EWS_STATIC_MAX_PATH + 256];
  int hl = snprintf(hdr, sizeof hdr, "Location: %.*s/%s%.*s\r\n", (int)req->path_len, req->path,
                    req->query ? "?" : "", req->query ? (int)req->query_len : 0,
                    req->query ? req->query : "");
  if (hl < 0 || (size_t)hl >= sizeof hdr) { /* a long query: drop it */
    hl = snprintf(hdr, sizeof hdr, "Location: %.*s/\r\n", (int)req->path_len, req->path);
  }
  int n = ews_write_response(buf, sizeof buf, 301, hdr, NULL, NULL, 0);
  send_response(c, req, buf, n, 301);
}

/* Errors of realpath/open: a file that is not there (or not ours to read) is 404;
 * running out of descriptors or memory is 503. */
static int fs_err(int e) {
  return (e == EMFILE || e == ENFILE || e == ENOMEM) ? EWS_ENOMEM : EWS_EHTTP_NOT_FOUND;
}

/* Opens `path` if its real path is under the mount's root. Returns the descriptor
 * or a negative EWS error. */
static int open_under(const ews_static_mount_t *m, const char *path, struct stat *st) {
  char real[PATH_MAX];
  if (!realpath(path, real)) return fs_err(errno);
  size_t rl = strlen(real);
  int under = m->root_len == 1 ? real[0] == '/'
                               : rl > m->root_len && memcmp(real, m->root, m->root_len) == 0 &&
                                     real[m->root_len] == '/';
  if (!under) {
    EWS_DEBUG("static: %s resolves to %s, outside %s", path, real, m->root);
    return EWS_EHTTP_NOT_FOUND;
  }
  /* O_NOFOLLOW: the name just resolved must not have become a symlink since. */
  int fd = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
  if (fd < 0) return fs_err(errno);
  if (fstat(fd, st) != 0) {
    close(fd);
    return EWS_EHTTP_NOT_FOUND;
  }
  return fd;
}

void ews_static_serve(ews_conn_t *c, const ews_static_mount_t *m, const ews_http_request_t *req) {
  int head = is_head(req);
  if (!head && !(req->method_len == 3 && !memcmp(req->method, "GET", 3))) {
    respond_method(c, req);
    return;
  }
  /* RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one in HTTP/1.0. */
  size_t hosts = ews_http_header_count(req, "Host");
  if (hosts > 1 || (hosts == 0 && req->version_minor >= 1)) {
    respond_error(c, req, EWS_EHTTP_HOST);
    return;
  }
  if (req->path_len > EWS_STATIC_MAX_PATH) {
    respond_error(c, req, EWS_EHTTP_URI_TOO_LONG);
    return;
  }
  const char *raw = req->path + m->prefix_len;
  size_t raw_len = req->path_len - m->prefix_len;
  if (raw_len == 0) { /* "/docs" for the mount "/docs": its directory, without the '/' */
    respond_slash(c, req);
    return;
  }
  /* root + '/' + relative path + index: built in one buffer. */
  char path[PATH_MAX];
  size_t il = m->index ? strlen(m->index) : 0;
  if (m->root_len + 1 + raw_len + il + 1 > sizeof path) {
    respond_error(c, req, EWS_EHTTP_NOT_FOUND);
    return;
  }
  memcpy(path, m->root, m->root_len);
  size_t pl = m->root_len;
  if (pl > 1) path[pl++] = '/';
  size_t rel_len;
  int r = ews_static_path(raw, raw_len, path + pl, sizeof path - pl, &rel_len);
  if (r < 0) {
    respond_error(c, req, r);
    return;
  }
  pl += rel_len;
  int dir_request = rel_len == 0 || path[pl - 1] == '/';
  if (dir_request) {
    if (!m->index) {
      respond_error(c, req, EWS_EHTTP_NOT_FOUND); /* no directory listing */
      return;
    }
    memcpy(path + pl, m->index, il + 1);
    pl += il;
  }
  struct stat st;
  int fd = open_under(m, path, &st);
  if (fd < 0) {
    respond_error(c, req, fd);
    return;
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    if (dir_request) respond_error(c, req, EWS_EHTTP_NOT_FOUND); /* the index is a directory */
    else respond_slash(c, req);
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    respond_error(c, req, EWS_EHTTP_NOT_FOUND);
    return;
  }
  char etag[64];
  uint64_t mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec;
  int el = ews_static_etag(etag, sizeof etag, (uint64_t)st.st_ino, (uint64_t)st.st_size, mtime_ns);
  char cc[512] = "";
  if (m->cache_control) snprintf(cc, sizeof cc, "Cache-Control: %s\r\n", m->cache_control);
  const ews_http_header_t *inm = ews_http_header(req, "If-None-Match");
  char hdr[1024];
  int hl;
  if (inm && el > 0 && ews_static_etag_match(inm->value, inm->value_len, etag, (size_t)el)) {
    close(fd);
    hl = snprintf(hdr, sizeof hdr, "HTTP/1.1 304 Not Modified\r\nETag: %s\r\n%sConnection: close\r\n\r\n",
                  etag, cc);
    send_response(c, req, hdr, hl, 304);
    return;
  }
  hl = snprintf(hdr, sizeof hdr,
                "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %llu\r\nETag: %s\r\n%s"
                "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
                ews_static_content_type(path, pl), (unsigned long long)st.st_size, etag, cc);
  if (hl < 0 || (size_t)hl >= sizeof hdr || ews_conn_queue_raw(c, hdr, (size_t)hl, NULL, 0) != 0) {
    close(fd);
    ews_conn_abort(c);
    return;
  }
  count(c, 200);
  if (!head && st.st_size > 0) {
    ews_conn_cold_t *k = ews_conn_cold_get(c);
    struct ews_static_body *b = k ? malloc(sizeof *b) : NULL;
    if (!b) {
      close(fd);
      ews_conn_abort(c);
      return;
    }
    b->fd = fd;
    b->off = 0;
    b->end = (uint64_t)st.st_size;
    k->body = b;
  } else {
    close(fd);
  }
  ews_conn_enter_draining(c);
}

/* ---- the body -------------------------------------------------------------------- */

void ews_static_body_free(ews_conn_t *c) {
  struct ews_static_body *b = ews_conn_body(c);
  if (!b) return;
  close(b->fd);
  free(b);
  c->cold->body = NULL;
}

/* Reads up to `max` bytes of the body into the connection's queue, in pieces of a
 * pool block. 1 (queued), or EWS_EIO. */
static int copy_into_queue(ews_conn_t *c, size_t max) {
  struct ews_static_body *b = ews_conn_body(c);
  size_t done = 0;
  while (done < max && b->off < b->end) {
    size_t n = COPY_PIECE;
    if (n > b->end - b->off) n = (size_t)(b->end - b->off);
    if (n > max - done) n = max - done;
    uint8_t *p = ews_wq_reserve(&c->wq, &c->net->pool, n);
    if (!p) return EWS_ENOMEM;
    ssize_t r = pread(b->fd, p, n, (off_t)b->off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      EWS_DEBUG("conn %llu: static body: %s", (unsigned long long)c->id,
                r < 0 ? strerror(errno) : "the file shrank");
      return EWS_EIO;
    }
    ews_wq_commit(&c->wq, (size_t)r);
    b->off += (uint64_t)r;
    done += (size_t)r;
  }
  EWS_STAT_ADD(c->net->stats.static_bytes_copied, done);
  if (b->off == b->end) ews_static_body_free(c);
  return 1;
}

int ews_static_body_send(ews_conn_t *c) {
  struct ews_static_body *b = ews_conn_body(c);
  if (!b) return 0;
  c->since_ms = ews_conn_now(c); /* progress: the close timeout counts from here */
  if (c->tls) return copy_into_queue(c, TLS_TURN);
  int sock = c->fd;
  if (sock < 0) return EWS_EIO;
  size_t sent = 0;
  while (b->off < b->end && sent < SENDFILE_TURN) {
    size_t want = SENDFILE_TURN - sent;
    if (want > b->end - b->off) want = (size_t)(b->end - b->off);
    off_t off = (off_t)b->off;
    ssize_t r = sendfile(sock, b->fd, &off, want);
    if (r > 0) {
      b->off += (uint64_t)r;
      sent += (size_t)r;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) break;
    EWS_DEBUG("conn %llu: sendfile: %s", (unsigned long long)c->id,
              r < 0 ? strerror(errno) : "the file shrank");
    return EWS_EIO;
  }
  EWS_STAT_ADD(c->net->stats.bytes_out, sent);
  EWS_STAT_ADD(c->net->stats.static_bytes_sendfile, sent);
  if (b->off == b->end) {
    ews_static_body_free(c);
    return 0;
  }
  /* The socket is full (or this turn's share is used): a piece through the queue,
   * written when the socket is writable again (the poller's EPOLLOUT). */
  return copy_into_queue(c, COPY_PIECE);
}
