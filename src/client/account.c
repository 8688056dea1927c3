/* account.c - fetch.conf: accounts, defaults, checks. */
#include "client/account.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/ini.h"
#include "common/strutil.h"
#include "common/xmalloc.h"

char *expand_home(const char *path)
{
	if (strncmp(path, "~/", 2) == 0) {
		const char *home = getenv("HOME");
		return xasprintf("%s/%s", home ? home : "", path + 2);
	}
	return xstrdup(path);
}

char *accounts_default_path(void)
{
	const char *xdg = getenv("XDG_CONFIG_HOME");
	if (xdg != NULL && xdg[0] == '/')
		return xasprintf("%s/pigeon/fetch.conf", xdg);
	return expand_home("~/.config/pigeon/fetch.conf");
}

static void defaults(struct account *a, const char *name, unsigned line)
{
	memset(a, 0, sizeof(*a));
	a->name = xstrdup(name);
	a->line = line;
	a->tls = ACCOUNT_TLS_IMPLICIT;
	a->dest = DEST_MAILDIR;
	a->dest_arg = expand_home("~/Mail/INBOX");
	a->connect_timeout_ms = 60000;
	a->timeout_ms = 180000;
	a->pipelining = true;
	a->window = 50;
	a->max_sessions = 10;
	a->fsync = true;
}

static void free_account(struct account *a)
{
	char **strs[] = {&a->name, &a->host, &a->ca_file, &a->fingerprint, &a->user, &a->password,
			 &a->password_command, &a->dest_arg, &a->lmtp_recipient, &a->uidl_store};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		free(*strs[i]);
		*strs[i] = NULL;
	}
}

void accounts_free(struct account_list *list)
{
	for (size_t i = 0; i < list->n; i++)
		free_account(&list->items[i]);
	free(list->items);
	free(list->path);
	memset(list, 0, sizeof(*list));
}

static int on_section(void *arg, const char *name, unsigned line, char *err, size_t errlen)
{
	struct account_list *list = arg;
	if (strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@+") !=
	    strlen(name)) {
		snprintf(err, errlen, "account name '%.64s': letters, digits and ._-@+ only", name);
		return -1;
	}
	for (size_t i = 0; i < list->n; i++) {
		if (strcmp(list->items[i].name, name) == 0) {
			snprintf(err, errlen, "account [%s] appears twice", name);
			return -1;
		}
	}
	list->items = xreallocarray(list->items, list->n + 1, sizeof(*list->items));
	defaults(&list->items[list->n++], name, line);
	return 0;
}

static int set_string(char **field, const char *value, bool path)
{
	free(*field);
	*field = path ? expand_home(value) : xstrdup(value);
	return 0;
}

static int parse_choice(const char *value, const char *const *names, int n)
{
	for (int i = 0; i < n; i++)
		if (strcasecmp(value, names[i]) == 0)
			return i;
	return -1;
}

static int set_destination(struct account *a, const char *value, char *err, size_t errlen)
{
	static const struct {
		const char *prefix;
		enum account_dest dest;
		bool path;
	} kinds[] = {{"maildir:", DEST_MAILDIR, true}, {"mbox:", DEST_MBOX, true},
		     {"mda:", DEST_MDA, false}, {"lmtp:", DEST_LMTP, false}};
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		size_t n = strlen(kinds[i].prefix);
		if (strncmp(value, kinds[i].prefix, n) == 0 && value[n] != '\0') {
			a->dest = kinds[i].dest;
			return set_string(&a->dest_arg, value + n, kinds[i].path);
		}
	}
	snprintf(err, errlen, "destination must be maildir:PATH, mbox:PATH, mda:COMMAND or "
			      "lmtp:ADDRESS, not '%.64s'", value);
	return -1;
}

static int on_setting(void *arg, const char *section, const char *name, const char *value,
		      unsigned line, char *err, size_t errlen)
{
	struct account_list *list = arg;
	(void)line;
	if (section[0] == '\0') {
		snprintf(err, errlen, "setting '%.64s' outside any [account] section", name);
		return -1;
	}
	struct account *a = &list->items[list->n - 1];
	uint64_t v;
	bool b;
	if (strcmp(name, "host") == 0)
		return set_string(&a->host, value, false);
	if (strcmp(name, "port") == 0) {
		if (parse_u64(value, 65535, &v) < 0 || v == 0)
			goto bad_number;
		a->port = (unsigned)v;
		return 0;
	}
	if (strcmp(name, "tls") == 0) {
		static const char *const names[] = {"implicit", "starttls", "none"};
		int c = parse_choice(value, names, 3);
		if (c < 0) {
			snprintf(err, errlen, "tls must be implicit, starttls or none, not '%.64s'", value);
			return -1;
		}
		a->tls = (enum account_tls)c;
		return 0;
	}
	if (strcmp(name, "auth") == 0) {
		static const char *const names[] = {"auto", "scram-sha-256-plus", "scram-sha-256",
						    "plain", "login", "user", "apop", "xoauth2",
						    "oauthbearer"};
		int c = parse_choice(value, names, 9);
		if (c < 0) {
			snprintf(err, errlen, "auth must be auto, scram-sha-256-plus, scram-sha-256, "
					      "plain, login, user, apop, xoauth2 or oauthbearer");
			return -1;
		}
		a->auth = (enum account_auth)c;
		return 0;
	}
	static const struct {
		const char *name;
		size_t off;
	} bools[] = {
		{"allow_plaintext", offsetof(struct account, allow_plaintext)},
		{"keep", offsetof(struct account, keep)},
		{"pipelining", offsetof(struct account, pipelining)},
		{"fsync", offsetof(struct account, fsync)},
	};
	for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
		if (strcmp(name, bools[i].name) == 0) {
			if (parse_bool(value, &b) < 0) {
				snprintf(err, errlen, "%s must be yes or no, not '%.64s'", name, value);
				return -1;
			}
			*(bool *)((char *)a + bools[i].off) = b;
			return 0;
		}
	}
	static const struct {
		const char *name;
		size_t off;
		bool path;
	} strings[] = {
		{"ca_file", offsetof(struct account, ca_file), true},
		{"fingerprint", offsetof(struct account, fingerprint), false},
		{"user", offsetof(struct account, user), false},
		{"password", offsetof(struct account, password), false},
		{"password_command", offsetof(struct account, password_command), false},
		{"uidl_store", offsetof(struct account, uidl_store), true},
		{"lmtp_recipient", offsetof(struct account, lmtp_recipient), false},
	};
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		if (strcmp(name, strings[i].name) == 0)
			return set_string((char **)((char *)a + strings[i].off), value, strings[i].path);
	if (strcmp(name, "destination") == 0)
		return set_destination(a, value, err, errlen);
	if (strcmp(name, "delete_after") == 0) {
		if (parse_duration_ms(value, &v) < 0 || v == 0) {
			snprintf(err, errlen, "delete_after must be a duration such as 7d, not '%.64s'",
				 value);
			return -1;
		}
		a->delete_after_s = v / 1000;
		return 0;
	}
	if (strcmp(name, "max_size") == 0) {
		if (parse_size(value, &a->max_size) < 0) {
			snprintf(err, errlen, "max_size must be a size such as 10M, not '%.64s'", value);
			return -1;
		}
		return 0;
	}
	if (strcmp(name, "max_size_action") == 0) {
		static const char *const names[] = {"skip", "headers"};
		int c = parse_choice(value, names, 2);
		if (c < 0) {
			snprintf(err, errlen, "max_size_action must be skip or headers");
			return -1;
		}
		a->oversize = (enum account_oversize)c;
		return 0;
	}
	if (strcmp(name, "connect_timeout") == 0 || strcmp(name, "timeout") == 0) {
		if (parse_duration_ms(value, &v) < 0 || v < 1000 || v > 3600000) {
			snprintf(err, errlen, "%s must be a duration between 1s and 1h", name);
			return -1;
		}
		*(name[0] == 'c' ? &a->connect_timeout_ms : &a->timeout_ms) = (unsigned)v;
		return 0;
	}
	if (strcmp(name, "window") == 0 || strcmp(name, "max_sessions") == 0) {
		if (parse_u64(value, 1000, &v) < 0 || v == 0)
			goto bad_number;
		*(name[0] == 'w' ? &a->window : &a->max_sessions) = (unsigned)v;
		return 0;
	}
	snprintf(err, errlen, "unknown setting '%.64s' in [%s]", name, a->name);
	return -1;
bad_number:
	snprintf(err, errlen, "%s must be a number, not '%.64s'", name, value);
	return -1;
}

static char *default_store(const char *account)
{
	const char *xdg = getenv("XDG_STATE_HOME");
	if (xdg != NULL && xdg[0] == '/')
		return xasprintf("%s/pigeon/%s.uidl", xdg, account);
	char *base = expand_home("~/.local/state/pigeon");
	char *path = xasprintf("%s/%s.uidl", base, account);
	free(base);
	return path;
}

int accounts_load(const char *path, struct account_list *list, char *err, size_t errlen)
{
	static const struct ini_handler handler = {on_section, on_setting};
	memset(list, 0, sizeof(*list));
	list->path = xstrdup(path);
	struct buf text = BUF_INIT;
	if (ini_read_file(path, &text, err, errlen) < 0 ||
	    ini_parse(path, text.data, &handler, list, err, errlen) < 0) {
		buf_free(&text);
		return -1;
	}
	buf_free(&text);
	struct stat sb;
	bool private_file = stat(path, &sb) == 0 && (sb.st_mode & 077) == 0;
	for (size_t i = 0; i < list->n; i++) {
		struct account *a = &list->items[i];
		if (a->host == NULL || a->user == NULL) {
			snprintf(err, errlen, "%s:%u: account [%s] needs host and user", path, a->line,
				 a->name);
			return -1;
		}
		if (a->password != NULL && !private_file) {
			snprintf(err, errlen, "%s: holds a password for [%s] but others may read it: "
					      "chmod 600 %s (or use password_command)",
				 path, a->name, path);
			return -1;
		}
		if (a->tls == ACCOUNT_TLS_NONE && !a->allow_plaintext) {
			snprintf(err, errlen, "%s:%u: [%s] tls = none sends the password in the clear: "
					      "add allow_plaintext = yes to really do that",
				 path, a->line, a->name);
			return -1;
		}
		if (a->port == 0)
			a->port = a->tls == ACCOUNT_TLS_IMPLICIT ? 995 : 110;
		if (a->uidl_store == NULL)
			a->uidl_store = default_store(a->name);
		if (a->delete_after_s > 0)
			a->keep = true; /* delete_after means: keep until then */
	}
	return 0;
}
