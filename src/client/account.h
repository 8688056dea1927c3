/*
 * account.h - pigeon fetch's accounts: one [section] each in fetch.conf
 * ($XDG_CONFIG_HOME/pigeon/fetch.conf unless -c says otherwise). Paths may
 * start with "~/". A file holding a password must not be readable by others.
 */
#ifndef PIGEON_ACCOUNT_H
#define PIGEON_ACCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum account_tls { ACCOUNT_TLS_IMPLICIT, ACCOUNT_TLS_STARTTLS, ACCOUNT_TLS_NONE };
enum account_auth {
	AUTH_AUTO,
	AUTH_SCRAM_PLUS,
	AUTH_SCRAM,
	AUTH_PLAIN,
	AUTH_LOGIN,
	AUTH_USER,
	AUTH_APOP,
	AUTH_XOAUTH2,
	AUTH_OAUTHBEARER,
};
enum account_dest { DEST_MAILDIR, DEST_MBOX, DEST_MDA, DEST_LMTP };
enum account_oversize { OVERSIZE_SKIP, OVERSIZE_HEADERS };

struct account {
	char *name;
	unsigned line;              /* where its section starts */
	char *host;
	unsigned port;              /* 0: 995 for implicit TLS, else 110 */
	enum account_tls tls;
	bool allow_plaintext;
	char *ca_file;
	char *fingerprint;
	char *user;
	char *password;             /* literal (discouraged) */
	char *password_command;     /* e.g. "pass show mail" */
	enum account_auth auth;
	bool keep;
	uint64_t delete_after_s;    /* with keep: delete once this old; 0: never */
	uint64_t max_size;          /* 0: no limit */
	enum account_oversize oversize;
	enum account_dest dest;
	char *dest_arg;             /* path, command, or LMTP address */
	char *lmtp_recipient;       /* LMTP: RCPT TO (default: the user) */
	unsigned connect_timeout_ms;
	unsigned timeout_ms;
	bool pipelining;            /* when the server offers it */
	unsigned window;            /* commands in flight */
	char *uidl_store;
	unsigned max_sessions;      /* sessions per run while new mail keeps coming */
	bool fsync;                 /* make every message durable before DELE */
};

struct account_list {
	struct account *items;
	size_t n;
	char *path;
};

/* Load and check. -1 with "FILE:LINE: problem" in err. */
int accounts_load(const char *path, struct account_list *list, char *err, size_t errlen);
void accounts_free(struct account_list *list);
/* The default configuration file path. */
char *accounts_default_path(void);
/* "~/x" -> "$HOME/x". */
char *expand_home(const char *path);

#endif
