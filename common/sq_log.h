/*  sq_log: structured logs to stderr, one logfmt line per event:
 *
 *    ts=2026-11-29T14:00:00.123Z level=info proc=broker pid=42 msg="lease granted" task=7
 *
 *  Only main programs log; libraries return errors (STYLE.md). The level
 *  comes from sq_log_init() or SHARDQ_LOG_LEVEL (debug|info|warn|error);
 *  SHARDQ_LOG_FORMAT=json switches to one JSON object per line.
 */
#ifndef SQ_LOG_H
#define SQ_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { SQ_LOG_DEBUG = 0, SQ_LOG_INFO, SQ_LOG_WARN, SQ_LOG_ERROR } sq_log_level_t;

/* Set the process name shown as proc=...; reads SHARDQ_LOG_LEVEL/FORMAT. */
void sq_log_init(const char *proc);
void sq_log_set_level(sq_log_level_t level);
/* "debug", "info", "warn" or "error" into *level: 0, or -1 for another
 * word (the caller says so, naming where the word came from) */
int sq_log_level_parse(const char *name, sq_log_level_t *level);
int sq_log_enabled(sq_log_level_t level);

/* msg is a short fixed phrase; kv_fmt builds extra "key=value" pairs
 * (may be NULL). Values with spaces should be quoted by the caller with
 * sq_log_quote(). */
void sq_log(sq_log_level_t level, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Quote s for a logfmt value into buf (escapes quotes, backslashes and
 * control bytes, truncates to size). Returns buf. */
char *sq_log_quote(const char *s, char *buf, unsigned size);

#define SQ_DEBUG(msg, ...) sq_log(SQ_LOG_DEBUG, msg, __VA_ARGS__)
#define SQ_INFO(msg, ...) sq_log(SQ_LOG_INFO, msg, __VA_ARGS__)
#define SQ_WARN(msg, ...) sq_log(SQ_LOG_WARN, msg, __VA_ARGS__)
#define SQ_ERROR(msg, ...) sq_log(SQ_LOG_ERROR, msg, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
