/*
 * log.h - one logging interface for every program: stderr in the foreground
 * (or for command-line tools), syslog for the daemon. Messages are written for
 * a system administrator. Never pass a secret to these functions.
 */
#ifndef PIGEON_LOG_H
#define PIGEON_LOG_H

#include <stdbool.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARNING, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* to_stderr: write to stderr; otherwise to syslog with the given ident. */
void log_init(const char *ident, bool to_stderr, enum log_level level);
void log_set_level(enum log_level level);
bool log_level_enabled(enum log_level level);
int log_parse_level(const char *name, enum log_level *out);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
