/* log.c - stderr or syslog logging, safe to call from worker threads. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static const char *log_ident = "pigeon";
static bool log_stderr = true;
static enum log_level log_max = LOG_LEVEL_INFO;

void log_init(const char *ident, bool to_stderr, enum log_level level)
{
	log_ident = ident;
	log_stderr = to_stderr;
	log_max = level;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_level(enum log_level level)
{
	log_max = level;
}

bool log_level_enabled(enum log_level level)
{
	return level <= log_max;
}

int log_parse_level(const char *name, enum log_level *out)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

static void log_write(enum log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void log_write(enum log_level level, const char *fmt, va_list ap)
{
	static const int priority[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	static const char *const prefix[] = {"error: ", "warning: ", "", "debug: "};
	if (level > log_max)
		return;
	char msg[1024];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* Never let a control character from the network reach the log. */
	for (char *p = msg; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (!log_stderr) {
		syslog(priority[level], "%s%s", prefix[level], msg);
		return;
	}
	struct timespec ts;
	struct tm tm;
	char stamp[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ld %s: %s%s\n", stamp, ts.tv_nsec / 1000000, log_ident,
		prefix[level], msg);
}

#define LOG_FN(name, level)                                                                \
	void name(const char *fmt, ...)                                                    \
	{                                                                                  \
		va_list ap;                                                                \
		va_start(ap, fmt);                                                         \
		log_write(level, fmt, ap);                                                 \
		va_end(ap);                                                                \
	}

LOG_FN(log_error, LOG_LEVEL_ERROR)
LOG_FN(log_warning, LOG_LEVEL_WARNING)
LOG_FN(log_info, LOG_LEVEL_INFO)
LOG_FN(log_debug, LOG_LEVEL_DEBUG)
