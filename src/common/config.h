/*
 * config.h - pigeond's settings: one struct, one table of every setting with
 * its type, default and bounds (config.c), and a loader that reports the
 * first problem as "FILE:LINE: problem".
 */
#ifndef PIGEON_CONFIG_H
#define PIGEON_CONFIG_H

#include <stdbool.h>
#include <sys/types.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "common/net.h"

#define EXPIRE_UNSET (-1)  /* do not advertise EXPIRE */
#define EXPIRE_NEVER (-2)  /* advertise EXPIRE NEVER */

/* A [tls:NAME] section: the certificate for clients asking for NAME (SNI). */
struct config_sni_cert {
	char *name;
	char *cert;
	char *key;
	unsigned line; /* where the section starts, for messages */
};

struct config {
	char *path;

	/* [server] */
	struct net_addr *pop3_listen;
	size_t n_pop3_listen;
	struct net_addr *pop3s_listen;  /* implicit TLS (RFC 8314) */
	size_t n_pop3s_listen;
	unsigned max_sessions;
	unsigned max_sessions_per_ip;   /* IPv6 counted per /64 */
	unsigned workers;               /* processes; 0: one per CPU */
	unsigned worker_threads;
	char *user;                     /* drop privileges to this user */
	char *group;                    /* empty: the user's primary group */

	/* [tls] */
	char *tls_cert;
	char *tls_key;
	unsigned tls_min_version;       /* 12 or 13 */
	char *tls_ciphers;
	char *tls_ciphersuites;
	bool stls;                      /* offer STLS on pop3_listen */
	unsigned tls_handshake_timeout_ms;
	struct config_sni_cert *sni;
	size_t n_sni;

	/* [pop3] */
	char *greeting;
	char *implementation;   /* empty: no IMPLEMENTATION capability */
	unsigned preauth_timeout_ms;
	unsigned idle_timeout_ms;
	unsigned send_timeout_ms;
	unsigned max_bad_commands;
	unsigned login_delay;   /* seconds; 0: LOGIN-DELAY not advertised */
	int expire;             /* days, EXPIRE_UNSET or EXPIRE_NEVER */
	bool outlook_no_nuls;

	/* [auth] */
	char *passwd_file;
	bool apop;
	bool cram_md5;                  /* adds CRAM-MD5 to mechanisms */
	char *mechanisms;               /* SASL mechanisms offered */
	unsigned max_auth_failures;
	unsigned failure_delay_ms;      /* first failure from an address */
	unsigned max_failure_delay_ms;  /* the growing delay stops here */
	unsigned ip_failure_limit;      /* then the address is refused for a while */
	unsigned user_failure_limit;    /* failures for one account, any address */
	unsigned penalty_window_ms;     /* how long failures are remembered */
	struct net_prefix *trusted_networks;
	size_t n_trusted_networks;

	/* [lmtp] */
	struct net_addr *lmtp_listen;   /* TCP or unix: sockets */
	size_t n_lmtp_listen;
	char *lmtp_socket_user;         /* owner of unix: sockets */
	char *lmtp_socket_group;
	unsigned lmtp_socket_mode;
	unsigned lmtp_max_recipients;
	unsigned lmtp_timeout_ms;

	/* [delivery] */
	uint64_t max_message_size;
	uint64_t quota;                 /* per maildrop, 0: none */
	bool quota_tempfail;            /* over quota: retry later, not bounce */
	bool delivered_to;              /* add Delivered-To: */
	char *recipient_delimiter;      /* "user+ext": strip "+ext" to find user */

	/* [mail] */
	char *mail_location;    /* template; empty: <home>/Maildir */
	bool mark_seen;

	/* [log] */
	enum log_level log_level;
};

/* Fill with the built-in defaults. */
void config_defaults(struct config *cfg);
/* Parse FILE over the current values. On failure returns -1 and writes
 * "FILE:LINE: problem" (or "FILE: problem") into err. */
int config_load(struct config *cfg, const char *path, char *err, size_t errlen);
/* Parse from a string (for tests and the fuzzer); name is used in messages. */
int config_load_string(struct config *cfg, const char *name, const char *text, char *err,
		       size_t errlen);
/* Is TLS configured (a certificate and key)? */
bool config_has_tls(const struct config *cfg);
/* The uid and gid pigeond's workers run as: [server] user, and [server] group
 * or else the user's primary group. -1 when the user is empty or either
 * does not exist (looked up in the system's user database). */
int config_server_ids(const struct config *cfg, uid_t *uid, gid_t *gid);
/* Checks that span settings (after loading). */
int config_validate(const struct config *cfg, char *err, size_t errlen);
void config_free(struct config *cfg);

#endif
