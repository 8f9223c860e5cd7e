/*
 * log — Postern's logger: one line per event to stderr or syslog.
 *
 * Called from every module. The log target is process-wide state (set once by
 * the program's main or the master before forking); everything else in
 * Postern passes its context explicitly. Messages are formatted with printf
 * rules; callers must never pass network data as the format string.
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARNING, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

enum log_target { LOG_TARGET_STDERR, LOG_TARGET_SYSLOG };

/* Sets where lines go. ident prefixes every line ("posternd"); facility is a
 * syslog facility name such as "mail" (unknown names fall back to mail). */
void log_setup(const char *ident, enum log_target target, const char *facility,
               enum log_level level);

/* Sets the per-process tag shown after the ident ("smtp[3]"), NULL for none. */
void log_set_process(const char *tag);

int log_level_parse(const char *name, enum log_level *level_r);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_msgv(enum log_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

/* Copies src into dst (size dstsize, always NUL-terminated) with control
 * characters and non-ASCII bytes escaped as \xNN, so that client-supplied text
 * can go into a log line. Returns dst. */
char *log_sanitize(char *dst, size_t dstsize, const char *src, size_t srclen);

#endif
