/* owner.h — what one edgews-lua process owns exclusively: its listening addresses
 * and its data directory. A second process started on the same port or data
 * directory refuses to start instead of silently sharing them (SO_REUSEPORT would
 * let the kernel split connections between the two; two writers would interleave
 * offsets in one SQLite file).
 *
 * Ownership lasts until the process exits (the kernel releases both kinds of lock,
 * also after SIGKILL). Errors are negative errno values (libuv style). */
#ifndef EWS_OWNER_H
#define EWS_OWNER_H

/* Claims host:port for listening (port 0: nothing to claim, returns 0). First an
 * abstract Unix socket named after the address (held while the process lives: two
 * edgews-lua starting at once cannot both pass), then a probe bind without
 * SO_REUSEPORT (fails while any process listens there, whatever its options).
 * 0, UV_EADDRINUSE, or another negative errno. */
int ews_own_address(const char *host, int port);

/* Locks DIR/edgews.lock (created) with flock and writes this process's PID into it.
 * 0; UV_EBUSY when another process holds it (*holder = its PID, or 0 if unknown);
 * another negative errno when the file cannot be opened. */
int ews_own_data_dir(const char *dir, long *holder);

#endif
