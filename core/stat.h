/* stat.h — per-worker counters: each is written by its worker's thread only and read
 * by others (/metrics, edgews.stats(true)). The writer stores with a relaxed atomic
 * store (a plain load and add, no locked instruction); readers load atomically. Every
 * layer keeps its own counters in its own per-worker context and bumps them with
 * EWS_STAT_ADD; a counter written by several threads uses __atomic_add_fetch instead. */
#ifndef EWS_STAT_H
#define EWS_STAT_H

#define EWS_STAT_ADD(field, n)                              \
  do {                                                      \
    __typeof__(field) ews_v_ = (field) + (n);               \
    __atomic_store(&(field), &ews_v_, __ATOMIC_RELAXED);    \
  } while (0)
#define EWS_STAT_LOAD(field)                                \
  __extension__({                                           \
    __typeof__((field) + 0) ews_v_;                         \
    __atomic_load(&(field), &ews_v_, __ATOMIC_RELAXED);     \
    ews_v_;                                                 \
  })

#endif
