/* static_path.h — the I/O-free half of serving static files (net/static_files.c does
 * the I/O): turning the part of a request path below a mount into a relative file
 * path that cannot leave the mount's directory, the Content-Type of a file name, and
 * ETag / If-None-Match. Pure functions over (buf, len): no allocation, no file system.
 *
 * What a path may be is decided here, once, before any file is looked at: the
 * relative path that comes out has no "." or ".." segment, no empty segment, no
 * NUL, no control character, no backslash and no '/' other than the separators the
 * client wrote, so joining it under the root cannot climb out of it by name
 * (symlinks are the caller's check: realpath). */
#ifndef EWS_STATIC_PATH_H
#define EWS_STATIC_PATH_H

#include <stddef.h>
#include <stdint.h>

/* The longest request path (the whole path, before decoding, without the query)
 * a static mount answers; longer ones get 414. */
#define EWS_STATIC_MAX_PATH 1024

/* Decodes and checks `raw[0..len)`, the request path below a mount as sent (either
 * empty or starting with '/'), into out (NUL-terminated; cap >= len + 1 always
 * suffices, decoding never lengthens): the relative path without the leading '/',
 * e.g. "css/app.css", "docs/" (a directory: ends with '/'), or "" (the mount's root).
 * Returns 0 and sets *out_len, or:
 *   EWS_EHTTP_PATH (400)      a "." or ".." segment (also percent-encoded: %2e%2e),
 *                              an empty segment ("a//b"), a percent-encoded '/' or
 *                              '\' (%2f, %5c), a raw '\', a NUL or other control
 *                              character (raw or %00..%1f, %7f), a malformed escape
 *                              ("%", "%4", "%zz");
 *   EWS_EHTTP_NOT_FOUND (404) a segment that starts with '.' (hidden files: .git,
 *                              .env) after decoding;
 *   EWS_EHTTP_URI_TOO_LONG    len > EWS_STATIC_MAX_PATH;
 *   EWS_EINVAL                out too small (cap < len + 1) or NULL arguments. */
int ews_static_path(const char *raw, size_t len, char *out, size_t cap, size_t *out_len);

/* The Content-Type for a file name by its extension (case-insensitive): html/htm,
 * css, js/mjs, json, map, svg, png, jpg/jpeg, gif, webp, ico, txt, wasm, woff2;
 * text types with "; charset=utf-8". Anything else: "application/octet-stream".
 * Never NULL. */
const char *ews_static_content_type(const char *name, size_t len);

/* Writes the entity tag of a file version into out (quotes included) and returns its
 * length: "<inode>-<size>-<mtime ns>" in hex, so a file replaced (new inode), grown
 * or touched gets a new tag. cap >= 64 suffices; EWS_EINVAL when it does not fit. */
int ews_static_etag(char *out, size_t cap, uint64_t ino, uint64_t size, uint64_t mtime_ns);

/* 1 when an If-None-Match value (a comma-separated list of entity tags, or "*")
 * matches etag under the weak comparison (RFC 9110 13.1.2: a W/ prefix is ignored),
 * else 0. A malformed element matches nothing. */
int ews_static_etag_match(const char *value, size_t len, const char *etag, size_t etag_len);

#endif
