/* static_files.h — files served from a directory under a path prefix (a "mount"):
 * the loop's mount table, the answer to a GET or HEAD below a mount, and the body's
 * trip to the socket. The table is built by the connections' owner (the Lua layer,
 * from edgews.static at each (re)load) and swapped whole into net->statics; a request
 * is answered synchronously from it (realpath, open, fstat: small system calls on a
 * local file system), so an in-flight body holds only its file descriptor and never
 * a mount: a reload may free the old table at once.
 *
 * The body goes out with sendfile(2) from the page cache to the socket (no copy in
 * user space) on plain connections; when the socket is full, or after 1 MiB in one
 * loop turn, a 16 KiB piece is read and queued the ordinary way so that libuv's
 * write callback brings the connection back on a later turn, when the socket has
 * room again (libuv has no "tell me when writable" for a stream it owns). On TLS
 * connections (no sendfile through our record layer) the file is read in 16 KiB
 * pieces, at most 64 KiB per loop turn, into the plaintext queue, and sealed. */
#ifndef EWS_STATIC_FILES_H
#define EWS_STATIC_FILES_H

#include <stddef.h>
#include <stdint.h>

#include "proto/http_head.h"

typedef struct ews_conn ews_conn_t;

typedef struct {
  char *prefix;        /* "" for "/", else "/x/y" (no trailing '/'): what it matches */
  size_t prefix_len;
  char *root;          /* the directory, absolute and resolved (realpath) */
  size_t root_len;
  char *cache_control; /* the Cache-Control value, or NULL for none */
  char *index;         /* the file served for a path ending in '/', or NULL for none */
} ews_static_mount_t;

/* A loop's mounts (owned; swapped whole on reload). */
typedef struct {
  ews_static_mount_t *m;
  size_t n;
} ews_static_mounts_t;

/* Adds a mount. prefix: "/" or "/x" or "/x/" (the trailing '/' is dropped); root: an
 * absolute directory path, already resolved (the caller's realpath); cache_control
 * and index may be NULL. 0, EWS_EINVAL (prefix not starting with '/') or EWS_ENOMEM
 * (then t is unchanged). */
int ews_static_mounts_add(ews_static_mounts_t *t, const char *prefix, const char *root,
                          const char *cache_control, const char *index);
/* Frees every mount; t is empty and reusable. */
void ews_static_mounts_clear(ews_static_mounts_t *t);
/* The mount with the longest prefix that path[0..len) is under (the prefix itself,
 * or the prefix followed by '/'), or NULL. */
const ews_static_mount_t *ews_static_find(const ews_static_mounts_t *t, const char *path,
                                          size_t len);

/* Answers a request that is not an upgrade, for a path under m: the file, 304, 301
 * (a directory without its '/'), 400 (the path; no or several Host), 404, 405 (with
 * Allow: GET, HEAD), 414 or 503
 * (out of file descriptors or memory); then the connection drains (Connection: close).
 * Counted in net->stats.static_requests by status class. */
void ews_static_serve(ews_conn_t *c, const ews_static_mount_t *m, const ews_http_request_t *req);

/* For the flush (conn_tx.c), when the connection has a body (c->body) and nothing is
 * queued or being written: moves the next part of the body. Returns 0 when the body
 * is done (and freed), 1 when it queued bytes in c->wq that wait for the socket's
 * next EPOLLOUT (not written directly: that event is what brings the rest), or a negative
 * error (EWS_EIO: the file shrank or could not be read; the caller aborts). */
int ews_static_body_send(ews_conn_t *c);
/* Closes the body's file and frees it (c->body = NULL). */
void ews_static_body_free(ews_conn_t *c);

#endif
