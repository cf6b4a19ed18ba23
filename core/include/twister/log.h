/* twister/log.h — the error log. One line per event:
 *   2026-11-27T10:00:00.123Z [error] 1234 worker/3: message
 * The log is per process (set up by the server before any plugin runs);
 * plugins only call the functions below. */
#ifndef TWISTER_LOG_H
#define TWISTER_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TW_LOG_ERROR = 0,
    TW_LOG_WARN = 1,
    TW_LOG_INFO = 2,
    TW_LOG_DEBUG = 3,
} tw_log_level_t;

/* Writes one line at level if level is enabled; never fails visibly. */
void tw_log(tw_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True if messages at level would be written (to skip costly formatting). */
int tw_log_enabled(tw_log_level_t level);

#define tw_log_error(...) tw_log(TW_LOG_ERROR, __VA_ARGS__)
#define tw_log_warn(...) tw_log(TW_LOG_WARN, __VA_ARGS__)
#define tw_log_info(...) tw_log(TW_LOG_INFO, __VA_ARGS__)
#define tw_log_debug(...) tw_log(TW_LOG_DEBUG, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif
