/* log.h — structured, thread-safe log lines on stderr:
 *   2026-11-26T04:30:00.123Z INFO [w0] message
 * Each line is formatted into a stack buffer and written with one write(2), so lines
 * from different workers never interleave. The thread's tag ("main", "w0", ...) is
 * set once per thread with ews_log_set_tag. */
#ifndef EWS_LOG_H
#define EWS_LOG_H

enum { EWS_LOG_DEBUG = 0, EWS_LOG_INFO, EWS_LOG_WARN, EWS_LOG_ERROR, EWS_LOG_OFF };

extern int ews_log_level; /* lines below this level are skipped */

/* "debug", "info", "warn", "error", "off" -> level, or -1. */
int ews_log_level_parse(const char *name);
const char *ews_log_level_name(int level);
void ews_log_set_tag(const char *tag); /* copied; per thread */

void ews_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like ews_log, but printed at every level except "off": for the few lines an
 * operator (or a test harness) always needs, such as "listening on". */
void ews_log_always(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define EWS_DEBUG(...) \
  do { if (ews_log_level <= EWS_LOG_DEBUG) ews_log(EWS_LOG_DEBUG, __VA_ARGS__); } while (0)
#define EWS_INFO(...) \
  do { if (ews_log_level <= EWS_LOG_INFO) ews_log(EWS_LOG_INFO, __VA_ARGS__); } while (0)
#define EWS_WARN(...) \
  do { if (ews_log_level <= EWS_LOG_WARN) ews_log(EWS_LOG_WARN, __VA_ARGS__); } while (0)
#define EWS_ERROR(...) \
  do { if (ews_log_level <= EWS_LOG_ERROR) ews_log(EWS_LOG_ERROR, __VA_ARGS__); } while (0)

#endif
