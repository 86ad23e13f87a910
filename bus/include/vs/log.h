/*
 * log.h - logging for every VibeShield program: logfmt lines on stderr.
 *
 * One line per event: ts=... level=... comp=... msg="..." so that logs can
 * be grepped and parsed by machines alike. The names follow OpenBSD daemons
 * (log_warn appends strerror(errno), fatal exits) because every daemon author
 * already knows them. Secrets never go through these functions: callers log
 * ids and sizes, never payloads or keys.
 */
#ifndef VS_LOG_H
#define VS_LOG_H

#include <stdarg.h>

#include "vs/api.h"

enum vs_log_level { VS_LOG_DEBUG = 0, VS_LOG_INFO = 1, VS_LOG_WARN = 2, VS_LOG_ERROR = 3 };

/* Set the component name shown as comp=... and the lowest level printed.
 * May be called again (e.g. after the config file has been read). */
VS_API void log_init(const char *component, enum vs_log_level level);
/* Parse "debug", "info", "warn", "error"; returns -EINVAL on anything else. */
VS_API int log_level_parse(const char *name, enum vs_log_level *out);

VS_API void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
VS_API void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Appends err="<strerror(errno)>". */
VS_API void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
VS_API void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Like log_warn, then exit(1). Only for start-up and for programs, never in
 * library code paths reached after start-up. */
VS_API void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
VS_API void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
