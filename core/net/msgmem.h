/* msgmem.h — the process-wide budget for incoming message memory: the buffers in
 * which connections reassemble fragmented or split messages and inflate compressed
 * ones. Per-connection limits (max_message_size) bound one message; this bounds
 * their sum over every connection of every worker, so a few thousand clients that
 * each start a large message and then stall cannot exhaust the server's memory.
 *
 * A buffer is charged by its capacity when it grows and credited when it is freed.
 * A growth that would pass the limit fails with EWS_EBUDGET (the connection is then
 * closed with 1013, "try again later") and is counted. Thread-safe (atomics). */
#ifndef EWS_MSGMEM_H
#define EWS_MSGMEM_H

#include <stddef.h>
#include <stdint.h>

#define EWS_MSGMEM_DEFAULT (256u << 20) /* 256 MiB */
#define EWS_MSGMEM_MAP_MIN (64u << 10)   /* buffers this large are mappings of their own */

/* Sets the limit in bytes (0: no limit). Call before workers start. */
void ews_msgmem_set_limit(uint64_t bytes);
uint64_t ews_msgmem_limit(void);
/* Bytes charged now, and growths refused since start. */
uint64_t ews_msgmem_used(void);
uint64_t ews_msgmem_refused(void);

/* Makes the buffer *p (capacity *cap, malloc'd or NULL) hold at least `need` bytes,
 * keeping its contents; the capacity grows to exactly `need` when `exact`, else by
 * doubling from 1 KiB. 0, EWS_EBUDGET (nothing changed, counted as refused) or
 * EWS_ENOMEM. */
int ews_msgmem_reserve(uint8_t **p, size_t *cap, size_t need, int exact);
/* Frees a buffer obtained through ews_msgmem_reserve (never free() it: large ones
 * are mappings) and credits its capacity. NULL is a no-op. */
void ews_msgmem_free(uint8_t *p, size_t cap);

#endif
