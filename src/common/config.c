/*
 * config.c - the settings table and the INI loader (inih underneath).
 *
 * inih's handler gets no line number, so the reader below counts lines as it
 * hands them to inih; inih calls the handler for a line right after reading
 * it, so the count is the line of the setting.
 */
#include "common/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "common/bounds.h"
#include "common/strutil.h"
#include "common/xmalloc.h"

enum setting_type {
	SET_STRING,
	SET_BOOL,
	SET_UINT,
	SET_DURATION_MS,
	SET_LISTEN,
	SET_NETWORKS,
	SET_LOG_LEVEL,
	SET_EXPIRE,
};

struct setting {
	const char *section;
	const char *name;
	enum setting_type type;
	size_t offset;
	uint64_t min, max; /* SET_UINT and SET_DURATION_MS (ms) */
};

#define OFF(field) offsetof(struct config, field)

_Static_assert(offsetof(struct config, n_pop3_listen) ==
		       offsetof(struct config, pop3_listen) + sizeof(void *),
	       "list count must follow its pointer");
_Static_assert(offsetof(struct config, n_trusted_networks) ==
		       offsetof(struct config, trusted_networks) + sizeof(void *),
	       "list count must follow its pointer");

static const struct setting settings[] = {
	{"server", "pop3_listen", SET_LISTEN, OFF(pop3_listen), 0, 0},
	{"server", "max_sessions", SET_UINT, OFF(max_sessions), 1, 1000000},
	{"server", "worker_threads", SET_UINT, OFF(worker_threads), 1, 64},
	{"pop3", "greeting", SET_STRING, OFF(greeting), 0, 0},
	{"pop3", "implementation", SET_STRING, OFF(implementation), 0, 0},
	{"pop3", "preauth_timeout", SET_DURATION_MS, OFF(preauth_timeout_ms), 1000, 3600000},
	/* RFC 1939 §3: an autologout timer MUST be at least 10 minutes. */
	{"pop3", "idle_timeout", SET_DURATION_MS, OFF(idle_timeout_ms), MIN_IDLE_TIMEOUT * 1000ULL,
	 86400000},
	{"pop3", "send_timeout", SET_DURATION_MS, OFF(send_timeout_ms), 1000, 86400000},
	{"pop3", "max_bad_commands", SET_UINT, OFF(max_bad_commands), 1, 1000},
	{"pop3", "login_delay", SET_UINT, OFF(login_delay), 0, 86400},
	{"pop3", "expire", SET_EXPIRE, OFF(expire), 0, 0},
	{"pop3", "outlook_no_nuls", SET_BOOL, OFF(outlook_no_nuls), 0, 0},
	{"auth", "passwd_file", SET_STRING, OFF(passwd_file), 0, 0},
	{"auth", "apop", SET_BOOL, OFF(apop), 0, 0},
	{"auth", "max_failures", SET_UINT, OFF(max_auth_failures), 1, 100},
	{"auth", "failure_delay", SET_DURATION_MS, OFF(failure_delay_ms), 0, 60000},
	{"auth", "trusted_networks", SET_NETWORKS, OFF(trusted_networks), 0, 0},
	{"mail", "location", SET_STRING, OFF(mail_location), 0, 0},
	{"mail", "mark_seen", SET_BOOL, OFF(mark_seen), 0, 0},
	{"log", "level", SET_LOG_LEVEL, OFF(log_level), 0, 0},
};

void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_sessions = DEFAULT_MAX_SESSIONS;
	cfg->worker_threads = DEFAULT_WORKER_THREADS;
	cfg->greeting = xstrdup("Pigeon POP3 server ready");
	cfg->implementation = xstrdup("");
	cfg->preauth_timeout_ms = DEFAULT_PREAUTH_TIMEOUT * 1000;
	cfg->idle_timeout_ms = DEFAULT_IDLE_TIMEOUT * 1000;
	cfg->send_timeout_ms = DEFAULT_SEND_TIMEOUT * 1000;
	cfg->max_bad_commands = DEFAULT_MAX_BAD_COMMANDS;
	cfg->expire = EXPIRE_UNSET;
	cfg->outlook_no_nuls = true;
	cfg->passwd_file = xstrdup("/etc/pigeon/users");
	cfg->max_auth_failures = DEFAULT_MAX_AUTH_FAILURES;
	cfg->failure_delay_ms = DEFAULT_AUTH_FAILURE_DELAY_MS;
	cfg->mail_location = xstrdup("");
	cfg->mark_seen = true;
	cfg->log_level = LOG_LEVEL_INFO;
	struct net_addr def[2];
	net_parse_listen("127.0.0.1:110", &def[0]);
	net_parse_listen("[::1]:110", &def[1]);
	cfg->pop3_listen = xcalloc(2, sizeof(struct net_addr));
	memcpy(cfg->pop3_listen, def, sizeof(def));
	cfg->n_pop3_listen = 2;
}

void config_free(struct config *cfg)
{
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		if (settings[i].type == SET_STRING)
			free(*(char **)((char *)cfg + settings[i].offset));
	free(cfg->pop3_listen);
	free(cfg->trusted_networks);
	free(cfg->path);
	memset(cfg, 0, sizeof(*cfg));
}

struct parse_state {
	struct config *cfg;
	const char *name;
	unsigned line;
	unsigned error_line;
	char error[256];
	bool line_too_long;
	/* for ini_parse_stream readers */
	FILE *file;
	const char *text;
};

struct list_acc {
	void *items;
	size_t n;
	size_t size;
	int (*parse)(const char *, void *);
	const char *bad;
};

static int list_item(const char *item, void *arg)
{
	struct list_acc *acc = arg;
	if (acc->n >= 64) {
		acc->bad = "too many entries (at most 64)";
		return -1;
	}
	acc->items = xreallocarray(acc->items, acc->n + 1, acc->size);
	if (acc->parse(item, (char *)acc->items + acc->n * acc->size) < 0) {
		acc->bad = item;
		return -1;
	}
	acc->n++;
	return 0;
}

static int parse_listen_cb(const char *s, void *out)
{
	return net_parse_listen(s, out);
}

static int parse_prefix_cb(const char *s, void *out)
{
	return net_parse_prefix(s, out);
}

static int set_error(struct parse_state *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int set_error(struct parse_state *st, const char *fmt, ...)
{
	if (st->error_line == 0) {
		va_list ap;
		va_start(ap, fmt);
		st->error_line = st->line;
		vsnprintf(st->error, sizeof(st->error), fmt, ap);
		va_end(ap);
	}
	return 0; /* inih: 0 = error on this line */
}

static int parse_list(struct parse_state *st, const struct setting *set, const char *value,
		      size_t size, int (*parse)(const char *, void *))
{
	char *copy = xstrdup(value);
	struct list_acc acc = {NULL, 0, size, parse, NULL};
	int rc = str_split_list(copy, list_item, &acc);
	if (rc < 0) {
		set_error(st, "bad entry '%s' in %s", acc.bad, set->name);
		free(copy);
		free(acc.items);
		return -1;
	}
	free(copy);
	/* Every list field is a pointer followed by its count (asserted below). */
	void **items = (void **)((char *)st->cfg + set->offset);
	size_t *count = (size_t *)((char *)items + sizeof(void *));
	free(*items);
	*items = acc.items;
	*count = acc.n;
	return 0;
}

static int apply(struct parse_state *st, const struct setting *set, const char *value)
{
	void *field = (char *)st->cfg + set->offset;
	uint64_t v;
	switch (set->type) {
	case SET_STRING:
		if (strlen(value) > CONFIG_MAX_LINE)
			return set_error(st, "value of %s is too long", set->name);
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return 1;
	case SET_BOOL:
		if (parse_bool(value, (bool *)field) < 0)
			return set_error(st, "%s must be yes or no, not '%s'", set->name, value);
		return 1;
	case SET_UINT:
		if (parse_u64(value, UINT64_MAX, &v) < 0 || v < set->min || v > set->max) {
			char range[128];
			snprintf(range, sizeof(range), "%llu..%llu, not '%.64s'",
				 (unsigned long long)set->min, (unsigned long long)set->max, value);
			return set_error(st, "%s must be a number in %s", set->name, range);
		}
		*(unsigned *)field = (unsigned)v;
		return 1;
	case SET_DURATION_MS:
		if (parse_duration_ms(value, &v) < 0)
			return set_error(st, "%s must be a duration such as 30s, 10m or 1h, not '%s'",
					 set->name, value);
		if (v < set->min || v > set->max) {
			char range[96];
			snprintf(range, sizeof(range), "between %llums and %llums",
				 (unsigned long long)set->min, (unsigned long long)set->max);
			return set_error(st, "%s must be %s", set->name, range);
		}
		*(unsigned *)field = (unsigned)v;
		return 1;
	case SET_LISTEN:
		if (parse_list(st, set, value, sizeof(struct net_addr), parse_listen_cb) < 0)
			return 0;
		return 1;
	case SET_NETWORKS:
		if (parse_list(st, set, value, sizeof(struct net_prefix), parse_prefix_cb) < 0)
			return 0;
		return 1;
	case SET_LOG_LEVEL:
		if (log_parse_level(value, (enum log_level *)field) < 0)
			return set_error(st, "%s must be error, warning, info or debug, not '%s'",
					 set->name, value);
		return 1;
	case SET_EXPIRE:
		if (strcasecmp(value, "never") == 0)
			*(int *)field = EXPIRE_NEVER;
		else if (strcasecmp(value, "none") == 0 || value[0] == '\0')
			*(int *)field = EXPIRE_UNSET;
		else if (parse_u64(value, 100000, &v) == 0)
			*(int *)field = (int)v;
		else
			return set_error(st, "%s must be a number of days, never or none, not '%s'",
					 set->name, value);
		return 1;
	}
	return 0;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parse_state *st = user;
	if (st->error_line != 0)
		return 1; /* report only the first problem */
	if (name == NULL)
		return 1; /* empty section */
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		const struct setting *set = &settings[i];
		if (strcmp(set->section, section) == 0 && strcmp(set->name, name) == 0)
			return apply(st, set, value);
	}
	if (section[0] == '\0')
		return set_error(st, "setting '%s' outside any [section]", name);
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		if (strcmp(settings[i].section, section) == 0)
			return set_error(st, "unknown setting '%s' in [%s]", name, section);
	return set_error(st, "unknown section [%s] (setting '%s')", section, name);
}

/* Shared by both readers: count the line, flag lines inih would split. */
static char *finish_line(struct parse_state *st, char *str, int num)
{
	st->line++;
	size_t n = strlen(str);
	if (n + 1 >= (size_t)num && str[n - 1] != '\n' && !st->line_too_long) {
		st->line_too_long = true;
		if (st->error_line == 0) {
			st->error_line = st->line;
			snprintf(st->error, sizeof(st->error), "line is too long (at most %d characters)",
				 num - 2);
		}
	}
	return str;
}

static char *file_reader(char *str, int num, void *stream)
{
	struct parse_state *st = stream;
	if (fgets(str, num, st->file) == NULL)
		return NULL;
	return finish_line(st, str, num);
}

static char *string_reader(char *str, int num, void *stream)
{
	struct parse_state *st = stream;
	if (*st->text == '\0')
		return NULL;
	size_t n = 0;
	while (st->text[n] != '\0' && st->text[n] != '\n' && n + 1 < (size_t)num - 1)
		n++;
	if (st->text[n] == '\n')
		n++;
	memcpy(str, st->text, n);
	str[n] = '\0';
	st->text += n;
	return finish_line(st, str, num);
}

static int finish(struct parse_state *st, int rc, char *err, size_t errlen)
{
	if (st->error_line != 0) {
		snprintf(err, errlen, "%s:%u: %s", st->name, st->error_line, st->error);
		return -1;
	}
	if (rc > 0) {
		snprintf(err, errlen, "%s:%d: syntax error (expected [section] or name = value)",
			 st->name, rc);
		return -1;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s: cannot parse (out of memory)", st->name);
		return -1;
	}
	return 0;
}

int config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
	struct parse_state st = {.cfg = cfg, .name = path};
	st.file = fopen(path, "re");
	if (st.file == NULL) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	int rc = ini_parse_stream(file_reader, &st, handler, &st);
	fclose(st.file);
	free(cfg->path);
	cfg->path = xstrdup(path);
	if (finish(&st, rc, err, errlen) < 0)
		return -1;
	return config_validate(cfg, err, errlen);
}

int config_load_string(struct config *cfg, const char *name, const char *text, char *err,
		       size_t errlen)
{
	struct parse_state st = {.cfg = cfg, .name = name, .text = text};
	int rc = ini_parse_stream(string_reader, &st, handler, &st);
	if (finish(&st, rc, err, errlen) < 0)
		return -1;
	return config_validate(cfg, err, errlen);
}

int config_validate(const struct config *cfg, char *err, size_t errlen)
{
	const char *name = cfg->path ? cfg->path : "configuration";
	if (cfg->n_pop3_listen == 0) {
		snprintf(err, errlen, "%s: [server] pop3_listen names no address", name);
		return -1;
	}
	if (cfg->passwd_file[0] == '\0') {
		snprintf(err, errlen, "%s: [auth] passwd_file is empty", name);
		return -1;
	}
	if (strlen(cfg->greeting) > 200 || strpbrk(cfg->greeting, "<>\r\n") != NULL) {
		snprintf(err, errlen, "%s: [pop3] greeting must be at most 200 characters without < or >",
			 name);
		return -1;
	}
	for (const char *p = cfg->implementation; *p; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e || p - cfg->implementation > 200) {
			snprintf(err, errlen, "%s: [pop3] implementation must be short printable ASCII",
				 name);
			return -1;
		}
	}
	const char *loc = cfg->mail_location;
	if (loc[0] != '\0' && loc[0] != '/' && loc[0] != '%') {
		snprintf(err, errlen, "%s: [mail] location must be an absolute path template", name);
		return -1;
	}
	return 0;
}
