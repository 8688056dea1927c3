/*
 * config.c - the settings table and the INI reader.
 *
 * The reader is ours, not inih: Debian's libinih is built with 200-octet
 * lines (too short for a TLS cipher list) and no line numbers for the
 * handler, and every error here must name its line. It stops at the first
 * problem.
 */
#include "common/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "auth/sasl.h"
#include "common/bounds.h"
#include "common/buf.h"
#include "common/ini.h"
#include "common/strutil.h"
#include "common/xmalloc.h"
#include "store/location.h"

enum setting_type {
	SET_STRING,
	SET_PATH, /* a string that is empty or an absolute path */
	SET_CIPHERS, /* an OpenSSL cipher list (min 0) or TLS 1.3 suites (min 1) */
	SET_LOCATION, /* a maildrop path template (store/location.h) */
	SET_BOOL,
	SET_UINT,
	SET_DURATION_MS,
	SET_LISTEN,
	SET_NETWORKS,
	SET_LOG_LEVEL,
	SET_EXPIRE,
	SET_TLS_VERSION,
	SET_SIZE,
	SET_OCTAL,
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
_Static_assert(offsetof(struct config, n_pop3s_listen) ==
		       offsetof(struct config, pop3s_listen) + sizeof(void *),
	       "list count must follow its pointer");
_Static_assert(offsetof(struct config, n_lmtp_listen) ==
		       offsetof(struct config, lmtp_listen) + sizeof(void *),
	       "list count must follow its pointer");
_Static_assert(offsetof(struct config, n_trusted_networks) ==
		       offsetof(struct config, trusted_networks) + sizeof(void *),
	       "list count must follow its pointer");

static const struct setting settings[] = {
	/* For SET_LISTEN, min is the port of an address given without one. */
	{"server", "pop3_listen", SET_LISTEN, OFF(pop3_listen), 110, 0},
	{"server", "pop3s_listen", SET_LISTEN, OFF(pop3s_listen), 995, 0},
	{"server", "max_sessions", SET_UINT, OFF(max_sessions), 1, 1000000},
	{"server", "max_sessions_per_ip", SET_UINT, OFF(max_sessions_per_ip), 1, 1000000},
	{"server", "workers", SET_UINT, OFF(workers), 0, 256},
	{"server", "worker_threads", SET_UINT, OFF(worker_threads), 1, 64},
	{"server", "user", SET_STRING, OFF(user), 0, 0},
	{"server", "group", SET_STRING, OFF(group), 0, 0},
	{"tls", "cert", SET_PATH, OFF(tls_cert), 0, 0},
	{"tls", "key", SET_PATH, OFF(tls_key), 0, 0},
	{"tls", "min_version", SET_TLS_VERSION, OFF(tls_min_version), 0, 0},
	{"tls", "ciphers", SET_CIPHERS, OFF(tls_ciphers), 0, 0},
	{"tls", "ciphersuites", SET_CIPHERS, OFF(tls_ciphersuites), 1, 0},
	{"tls", "stls", SET_BOOL, OFF(stls), 0, 0},
	{"tls", "handshake_timeout", SET_DURATION_MS, OFF(tls_handshake_timeout_ms), 1000, 600000},
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
	{"auth", "passwd_file", SET_PATH, OFF(passwd_file), 0, 0},
	{"auth", "apop", SET_BOOL, OFF(apop), 0, 0},
	{"auth", "cram_md5", SET_BOOL, OFF(cram_md5), 0, 0},
	{"auth", "mechanisms", SET_STRING, OFF(mechanisms), 0, 0},
	{"auth", "max_failures", SET_UINT, OFF(max_auth_failures), 1, 100},
	{"auth", "failure_delay", SET_DURATION_MS, OFF(failure_delay_ms), 0, 60000},
	{"auth", "max_failure_delay", SET_DURATION_MS, OFF(max_failure_delay_ms), 0, 300000},
	{"auth", "ip_failure_limit", SET_UINT, OFF(ip_failure_limit), 1, 1000000},
	{"auth", "user_failure_limit", SET_UINT, OFF(user_failure_limit), 1, 1000000},
	{"auth", "penalty_window", SET_DURATION_MS, OFF(penalty_window_ms), 1000, 86400000},
	{"auth", "trusted_networks", SET_NETWORKS, OFF(trusted_networks), 0, 0},
	{"lmtp", "listen", SET_LISTEN, OFF(lmtp_listen), 24, 0},
	{"lmtp", "socket_user", SET_STRING, OFF(lmtp_socket_user), 0, 0},
	{"lmtp", "socket_group", SET_STRING, OFF(lmtp_socket_group), 0, 0},
	{"lmtp", "socket_mode", SET_OCTAL, OFF(lmtp_socket_mode), 0, 0777},
	{"lmtp", "max_recipients", SET_UINT, OFF(lmtp_max_recipients), 1, 100000},
	{"lmtp", "timeout", SET_DURATION_MS, OFF(lmtp_timeout_ms), DEFAULT_LMTP_TIMEOUT * 1000ULL,
	 86400000},
	{"delivery", "max_message_size", SET_SIZE, OFF(max_message_size), 0, 0},
	{"delivery", "quota", SET_SIZE, OFF(quota), 0, 0},
	{"delivery", "quota_tempfail", SET_BOOL, OFF(quota_tempfail), 0, 0},
	{"delivery", "delivered_to", SET_BOOL, OFF(delivered_to), 0, 0},
	{"delivery", "recipient_delimiter", SET_STRING, OFF(recipient_delimiter), 0, 0},
	{"mail", "location", SET_LOCATION, OFF(mail_location), 0, 0},
	{"mail", "mark_seen", SET_BOOL, OFF(mark_seen), 0, 0},
	{"log", "level", SET_LOG_LEVEL, OFF(log_level), 0, 0},
};

void config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_sessions = DEFAULT_MAX_SESSIONS;
	cfg->max_sessions_per_ip = DEFAULT_MAX_SESSIONS_PER_IP;
	cfg->workers = 0;
	cfg->worker_threads = DEFAULT_WORKER_THREADS;
	cfg->user = xstrdup("pigeon");
	cfg->group = xstrdup("");
	cfg->tls_cert = xstrdup("");
	cfg->tls_key = xstrdup("");
	cfg->tls_min_version = 12;
	cfg->tls_ciphers = xstrdup("");
	cfg->tls_ciphersuites = xstrdup("");
	cfg->stls = true;
	cfg->tls_handshake_timeout_ms = DEFAULT_TLS_HANDSHAKE_TIMEOUT * 1000;
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
	/* SCRAM only where users have SCRAM keys: the administrator adds it. */
	cfg->mechanisms = xstrdup("PLAIN LOGIN");
	cfg->failure_delay_ms = DEFAULT_AUTH_FAILURE_DELAY_MS;
	cfg->max_failure_delay_ms = DEFAULT_MAX_FAILURE_DELAY_MS;
	cfg->ip_failure_limit = DEFAULT_IP_FAILURE_LIMIT;
	cfg->user_failure_limit = DEFAULT_USER_FAILURE_LIMIT;
	cfg->penalty_window_ms = DEFAULT_PENALTY_WINDOW * 1000;
	cfg->lmtp_socket_user = xstrdup("");
	cfg->lmtp_socket_group = xstrdup("");
	cfg->lmtp_socket_mode = 0660;
	cfg->lmtp_max_recipients = DEFAULT_LMTP_MAX_RECIPIENTS;
	cfg->lmtp_timeout_ms = DEFAULT_LMTP_TIMEOUT * 1000;
	cfg->max_message_size = DEFAULT_MAX_MESSAGE_SIZE;
	cfg->delivered_to = true;
	cfg->recipient_delimiter = xstrdup("+");
	cfg->mail_location = xstrdup("");
	cfg->mark_seen = true;
	cfg->log_level = LOG_LEVEL_INFO;
	struct net_addr def[2];
	net_parse_listen("127.0.0.1:110", &def[0]);
	net_parse_listen("[::1]:110", &def[1]);
	cfg->pop3_listen = xcalloc(2, sizeof(struct net_addr));
	memcpy(cfg->pop3_listen, def, sizeof(def));
	cfg->n_pop3_listen = 2;
	/* Loopback is trusted unless trusted_networks says otherwise. */
	cfg->trusted_networks = xcalloc(2, sizeof(struct net_prefix));
	net_parse_prefix("127.0.0.0/8", &cfg->trusted_networks[0]);
	net_parse_prefix("::1/128", &cfg->trusted_networks[1]);
	cfg->n_trusted_networks = 2;
}

void config_free(struct config *cfg)
{
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		if (settings[i].type == SET_STRING || settings[i].type == SET_PATH ||
		    settings[i].type == SET_CIPHERS || settings[i].type == SET_LOCATION)
			free(*(char **)((char *)cfg + settings[i].offset));
	free(cfg->pop3_listen);
	free(cfg->pop3s_listen);
	free(cfg->lmtp_listen);
	free(cfg->trusted_networks);
	for (size_t i = 0; i < cfg->n_sni; i++) {
		free(cfg->sni[i].name);
		free(cfg->sni[i].cert);
		free(cfg->sni[i].key);
	}
	free(cfg->sni);
	free(cfg->path);
	memset(cfg, 0, sizeof(*cfg));
}

struct parse_state {
	struct config *cfg;
	unsigned line;
	char *err;       /* the message for the INI reader */
	size_t errlen;
};

struct list_acc {
	void *items;
	size_t n;
	size_t size;
	int (*parse)(const char *, unsigned, void *);
	unsigned arg; /* passed to parse */
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
	if (acc->parse(item, acc->arg, (char *)acc->items + acc->n * acc->size) < 0) {
		acc->bad = item;
		return -1;
	}
	acc->n++;
	return 0;
}

static int parse_listen_cb(const char *s, unsigned default_port, void *out)
{
	return net_parse_listen_port(s, default_port, out);
}

static int parse_prefix_cb(const char *s, unsigned unused, void *out)
{
	(void)unused;
	return net_parse_prefix(s, out);
}

static int set_error(struct parse_state *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static bool cipher_list_ok(const char *list, bool tls13_suites)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	if (ctx == NULL)
		return true; /* cannot tell here; the TLS setup will */
	bool ok = tls13_suites ? SSL_CTX_set_ciphersuites(ctx, list) == 1
			       : SSL_CTX_set_cipher_list(ctx, list) == 1;
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/* Describe the problem for the INI reader; returns -1 to stop it. */
static int set_error(struct parse_state *st, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st->err, st->errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static int parse_list(struct parse_state *st, const struct setting *set, const char *value,
		      size_t size, int (*parse)(const char *, unsigned, void *))
{
	char *copy = xstrdup(value);
	struct list_acc acc = {NULL, 0, size, parse, (unsigned)set->min, NULL};
	if (str_split_list(copy, list_item, &acc) < 0) {
		set_error(st, "bad entry '%.64s' in %s", acc.bad, set->name);
		free(copy);
		free(acc.items);
		return -1;
	}
	free(copy);
	/* Every list field is a pointer followed by its count (asserted above). */
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
	case SET_CIPHERS:
		/* Checked here, where the line is known, not first when the
		 * TLS context is made. */
		if (value[0] != '\0' && !cipher_list_ok(value, set->min == 1))
			return set_error(st, "%s: OpenSSL knows no usable cipher in '%.128s'",
					 set->name, value);
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return 0;
	case SET_LOCATION: {
		/* A template no user could expand is found now, not as a
		 * [SYS/PERM] at every login: try it on a user with a domain and
		 * a home, which every %-variable accepts. */
		char sample[4096];
		if (location_expand(value, "user@example.org", "/home/user", sample,
				    sizeof(sample)) < 0)
			return set_error(st, "%s '%.128s' gives no absolute maildrop path (start with "
					     "/ or %%h; variables: %%u %%n %%d %%h %%%%)",
					 set->name, value);
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return 0;
	}
	case SET_PATH:
		/* pigeond works from / once it runs in the background, and
		 * reloads from there: a relative path would change meaning. */
		if (value[0] != '\0' && value[0] != '/')
			return set_error(st, "%s must be an absolute path, not '%.64s'", set->name,
					 value);
		/* fall through */
	case SET_STRING:
		free(*(char **)field);
		*(char **)field = xstrdup(value);
		return 0;
	case SET_BOOL:
		if (parse_bool(value, (bool *)field) < 0)
			return set_error(st, "%s must be yes or no, not '%.64s'", set->name, value);
		return 0;
	case SET_UINT:
		if (parse_u64(value, UINT64_MAX, &v) < 0 || v < set->min || v > set->max)
			return set_error(st, "%s must be a number in %llu..%llu, not '%.64s'",
					 set->name, (unsigned long long)set->min,
					 (unsigned long long)set->max, value);
		*(unsigned *)field = (unsigned)v;
		return 0;
	case SET_DURATION_MS:
		if (parse_duration_ms(value, &v) < 0)
			return set_error(st,
					 "%s must be a duration such as 30s, 10m or 1h, not '%.64s'",
					 set->name, value);
		if (v < set->min || v > set->max)
			return set_error(st, "%s must be between %llums and %llums", set->name,
					 (unsigned long long)set->min, (unsigned long long)set->max);
		*(unsigned *)field = (unsigned)v;
		return 0;
	case SET_LISTEN:
		return parse_list(st, set, value, sizeof(struct net_addr), parse_listen_cb);
	case SET_NETWORKS:
		return parse_list(st, set, value, sizeof(struct net_prefix), parse_prefix_cb);
	case SET_LOG_LEVEL:
		if (log_parse_level(value, (enum log_level *)field) < 0)
			return set_error(st, "%s must be error, warning, info or debug, not '%.64s'",
					 set->name, value);
		return 0;
	case SET_EXPIRE:
		if (strcasecmp(value, "never") == 0)
			*(int *)field = EXPIRE_NEVER;
		else if (strcasecmp(value, "none") == 0 || value[0] == '\0')
			*(int *)field = EXPIRE_UNSET;
		else if (parse_u64(value, 100000, &v) == 0)
			*(int *)field = (int)v;
		else
			return set_error(st, "%s must be a number of days, never or none, not '%.64s'",
					 set->name, value);
		return 0;
	case SET_SIZE:
		if (parse_size(value, (uint64_t *)field) < 0)
			return set_error(st, "%s must be a size such as 50M or 2G, not '%.64s'",
					 set->name, value);
		return 0;
	case SET_OCTAL: {
		char *end;
		unsigned long m = strtoul(value, &end, 8);
		if (value[0] == '\0' || *end != '\0' || m > set->max)
			return set_error(st, "%s must be an octal mode such as 0660, not '%.64s'",
					 set->name, value);
		*(unsigned *)field = (unsigned)m;
		return 0;
	}
	case SET_TLS_VERSION:
		if (strcasecmp(value, "TLSv1.2") == 0)
			*(unsigned *)field = 12;
		else if (strcasecmp(value, "TLSv1.3") == 0)
			*(unsigned *)field = 13;
		else
			return set_error(st, "%s must be TLSv1.2 or TLSv1.3, not '%.64s'", set->name,
					 value);
		return 0;
	}
	return set_error(st, "internal error: setting %s has no type", set->name);
}

/* A setting inside [tls:NAME]: the certificate for that SNI name. */
static int sni_setting(struct parse_state *st, const char *host, const char *name,
		       const char *value)
{
	struct config *cfg = st->cfg;
	struct config_sni_cert *c = &cfg->sni[cfg->n_sni - 1];
	(void)host;
	char **field = strcmp(name, "cert") == 0 ? &c->cert : strcmp(name, "key") == 0 ? &c->key : NULL;
	if (field == NULL)
		return set_error(st, "unknown setting '%.64s' in [tls:%.64s] (cert and key only)",
				 name, c->name);
	if (value[0] != '/')
		return set_error(st, "%s must be an absolute path, not '%.64s'", name, value);
	free(*field);
	*field = xstrdup(value);
	return 0;
}

static int setting(struct parse_state *st, const char *section, const char *name,
		   const char *value)
{
	if (strncmp(section, "tls:", 4) == 0)
		return sni_setting(st, section + 4, name, value);
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		const struct setting *set = &settings[i];
		if (strcmp(set->section, section) == 0 && strcmp(set->name, name) == 0)
			return apply(st, set, value);
	}
	if (section[0] == '\0')
		return set_error(st, "setting '%.64s' outside any [section]", name);
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		if (strcmp(settings[i].section, section) == 0)
			return set_error(st, "unknown setting '%.64s' in [%.64s]", name, section);
	return set_error(st, "unknown section [%.64s] (setting '%.64s')", section, name);
}

static bool known_section(const char *section)
{
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
		if (strcmp(settings[i].section, section) == 0)
			return true;
	return false;
}

static int on_section(void *arg, const char *name, unsigned line, char *err, size_t errlen)
{
	struct parse_state *st = arg;
	st->line = line;
	st->err = err;
	st->errlen = errlen;
	if (strncmp(name, "tls:", 4) == 0) {
		const char *host = name + 4;
		if (host[0] == '\0' || strspn(host, "abcdefghijklmnopqrstuvwxyz"
						 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*") != strlen(host))
			return set_error(st, "[tls:NAME] needs a host name, not '%.64s'", host);
		struct config *cfg = st->cfg;
		if (cfg->n_sni >= 64)
			return set_error(st, "too many [tls:NAME] sections (at most 64)");
		cfg->sni = xreallocarray(cfg->sni, cfg->n_sni + 1, sizeof(*cfg->sni));
		cfg->sni[cfg->n_sni++] = (struct config_sni_cert){xstrdup(host), NULL, NULL, line};
		return 0;
	}
	if (!known_section(name))
		return set_error(st, "unknown section [%.64s]", name);
	return 0;
}

static int on_setting(void *arg, const char *section, const char *name, const char *value,
		      unsigned line, char *err, size_t errlen)
{
	struct parse_state *st = arg;
	st->line = line;
	st->err = err;
	st->errlen = errlen;
	return setting(st, section, name, value);
}

int config_load_string(struct config *cfg, const char *name, const char *text, char *err,
		       size_t errlen)
{
	static const struct ini_handler handler = {on_section, on_setting};
	struct parse_state st = {.cfg = cfg};
	free(cfg->path);
	cfg->path = xstrdup(name);
	if (ini_parse(name, text, &handler, &st, err, errlen) < 0)
		return -1;
	return config_validate(cfg, err, errlen);
}

int config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
	struct buf text = BUF_INIT;
	int rc = ini_read_file(path, &text, err, errlen);
	/* Remember where it is from anywhere: SIGHUP reloads it from /. */
	char *abs = rc == 0 ? realpath(path, NULL) : NULL;
	if (rc == 0)
		rc = config_load_string(cfg, abs ? abs : path, text.data, err, errlen);
	free(abs);
	buf_free(&text);
	return rc;
}

int config_server_ids(const struct config *cfg, uid_t *uid, gid_t *gid)
{
	struct passwd *pw = cfg->user[0] != '\0' ? getpwnam(cfg->user) : NULL;
	if (pw == NULL)
		return -1;
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	if (cfg->group[0] != '\0') {
		struct group *gr = getgrnam(cfg->group);
		if (gr == NULL)
			return -1;
		*gid = gr->gr_gid;
	}
	return 0;
}

bool config_has_tls(const struct config *cfg)
{
	return cfg->tls_cert[0] != '\0';
}

int config_validate(const struct config *cfg, char *err, size_t errlen)
{
	const char *name = cfg->path ? cfg->path : "configuration";
	if ((cfg->tls_cert[0] == '\0') != (cfg->tls_key[0] == '\0')) {
		snprintf(err, errlen, "%s: [tls] needs both cert and key", name);
		return -1;
	}
	if (cfg->n_pop3s_listen > 0 && !config_has_tls(cfg)) {
		snprintf(err, errlen, "%s: [server] pop3s_listen needs [tls] cert and key", name);
		return -1;
	}
	for (size_t i = 0; i < cfg->n_sni; i++) {
		if (cfg->sni[i].cert == NULL || cfg->sni[i].key == NULL) {
			snprintf(err, errlen, "%s:%u: [tls:%s] needs both cert and key", name,
				 cfg->sni[i].line, cfg->sni[i].name);
			return -1;
		}
		if (!config_has_tls(cfg)) {
			snprintf(err, errlen, "%s:%u: [tls:%s] needs a default [tls] cert and key",
				 name, cfg->sni[i].line, cfg->sni[i].name);
			return -1;
		}
	}
	char *mechs = xstrdup(cfg->mechanisms), *save = NULL;
	for (char *m = strtok_r(mechs, " ,\t", &save); m; m = strtok_r(NULL, " ,\t", &save)) {
		if (sasl_mech_by_name(m, strlen(m)) < 0) {
			snprintf(err, errlen, "%s: [auth] mechanisms: unknown mechanism %.64s (known: "
					      "SCRAM-SHA-256-PLUS SCRAM-SHA-256 PLAIN LOGIN CRAM-MD5)",
				 name, m);
			free(mechs);
			return -1;
		}
	}
	free(mechs);
	if (strlen(cfg->recipient_delimiter) > 1) {
		snprintf(err, errlen, "%s: [delivery] recipient_delimiter is one character or empty",
			 name);
		return -1;
	}
	for (size_t i = 0; i < cfg->n_pop3_listen + cfg->n_pop3s_listen; i++) {
		const struct net_addr *a = i < cfg->n_pop3_listen
						   ? &cfg->pop3_listen[i]
						   : &cfg->pop3s_listen[i - cfg->n_pop3_listen];
		if (a->ss.ss_family == AF_UNIX) {
			snprintf(err, errlen, "%s: POP3 listeners must be TCP addresses", name);
			return -1;
		}
	}
	for (size_t i = 0; i < cfg->n_lmtp_listen; i++) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg->lmtp_listen[i].ss;
		/* RFC 2033 §1: LMTP MUST NOT be used on port 25 (same offset in v6). */
		if (sin->sin_family != AF_UNIX && ntohs(sin->sin_port) == 25) {
			snprintf(err, errlen, "%s: [lmtp] listen: LMTP must not use port 25 "
					      "(RFC 2033); port 24 is the convention", name);
			return -1;
		}
	}
	if (cfg->n_pop3_listen == 0 && cfg->n_pop3s_listen == 0) {
		snprintf(err, errlen, "%s: no listener: set [server] pop3_listen or pop3s_listen",
			 name);
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
	return 0;
}
