/*
 * deliver_cmd.c - pigeon deliver [-c CONFIG] [-f SENDER] [-a RECIPIENT] [-u USER]
 *
 * One message on stdin into the user's Maildir. The exit status tells the
 * MTA what happened (lmtp.md §9): 0 delivered (durably); 67 unknown user;
 * 65 not a mail message / too big / a mail loop; 73 the mailbox cannot be
 * created or is over quota (permanent); 75 anything that may work later.
 * A one-line reason starting with an RFC 3463 code goes to stderr; Postfix
 * uses that code. Only a mailbox path that can never exist is 73: permission
 * problems, a read-only or full file system are 75 (4.x.x).
 */
#include "cli/deliver_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth/passwd_file.h"
#include "common/bounds.h"
#include "common/buf.h"
#include "common/config.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "deliver/deliver.h"
#include "deliver/maildir_deliver.h"

#define EX_OK 0
#define EX_USAGE 64
#define EX_DATAERR 65
#define EX_NOUSER 67
#define EX_CANTCREAT 73
#define EX_TEMPFAIL 75

#define DEFAULT_CONFIG "/etc/pigeon/pigeon.conf"
#define MAX_HEADER_SECTION (1024 * 1024)

static int fail(int status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(int status, const char *code, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s ", code);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return status;
}

/* Does line look like a header field "Name: ..." (RFC 5322 §2.2)? */
static bool is_header(const char *line, size_t len)
{
	size_t i = 0;
	while (i < len && line[i] > ' ' && line[i] < 0x7f && line[i] != ':')
		i++;
	return i > 0 && i < len && line[i] == ':';
}

static bool header_is(const char *line, size_t len, const char *name)
{
	size_t n = strlen(name);
	return len > n && strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* The value of a header line, trimmed, without <>. */
static void header_value(const char *line, size_t len, const char **v, size_t *vlen)
{
	const char *p = (const char *)memchr(line, ':', len) + 1;
	const char *end = line + len;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
		end--;
	if (end - p >= 2 && *p == '<' && end[-1] == '>') {
		p++;
		end--;
	}
	*v = p;
	*vlen = (size_t)(end - p);
}

/* Exit status and RFC 3463 code for a failed store (lmtp.md §9): only a
 * mailbox path that can never exist is permanent. */
static int store_failure(enum deliver_status st, const struct config *cfg, const char *maildir)
{
	switch (st) {
	case DELIVER_PERM:
		return fail(EX_CANTCREAT, "5.2.0", "cannot create %s", maildir);
	case DELIVER_QUOTA:
		return cfg->quota_tempfail ? fail(EX_TEMPFAIL, "4.2.2", "mailbox full")
					   : fail(EX_CANTCREAT, "5.2.2", "mailbox quota exceeded");
	case DELIVER_FULL:
		return fail(EX_TEMPFAIL, "4.2.2", "mailbox full (file system quota) in %s", maildir);
	case DELIVER_NOSPACE:
		return fail(EX_TEMPFAIL, "4.3.1", "insufficient system storage for %s", maildir);
	case DELIVER_OK:
	case DELIVER_TEMP:
	default:
		return fail(EX_TEMPFAIL, "4.3.0", "cannot store the message in %s", maildir);
	}
}

int cmd_deliver(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG, *sender = NULL, *recipient = NULL, *user = NULL;
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"from", required_argument, NULL, 'f'},
		{"recipient", required_argument, NULL, 'a'}, {"user", required_argument, NULL, 'u'},
		{NULL, 0, NULL, 0},
	};
	optind = 1;
	int opt;
	while ((opt = getopt_long(argc, argv, "c:f:a:u:d:", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'f': sender = optarg; break;
		case 'a': recipient = optarg; break;
		case 'u':
		case 'd': user = optarg; break;
		default:
			fprintf(stderr, "usage: pigeon deliver [-c CONFIG] [-f SENDER] [-a RECIPIENT] "
					"[-u USER] < message\n");
			return EX_USAGE;
		}
	}
	if (optind != argc)
		return fail(EX_USAGE, "5.3.0", "usage: pigeon deliver [-c CONFIG] [-f SENDER] "
					       "[-a RECIPIENT] [-u USER] < message");
	signal(SIGPIPE, SIG_IGN);
	/* Details go to syslog: the MTA reads one coded line from stderr. */
	log_init("pigeon-deliver", false, LOG_LEVEL_INFO);
	/* Only to syslog: stderr is the MTA's (one coded line on failure). */
	if (geteuid() == 0)
		log_warning("running as root: the Maildirs and %s it creates belong to root, "
			    "which pigeond's [server] user may not read or lock; run pigeon deliver "
			    "as that user (docs/delivery.md)",
			    DELIVER_LOCK_FILE);
	if (sender == NULL)
		sender = getenv("SENDER");
	if (recipient == NULL)
		recipient = getenv("RECIPIENT");
	if (user == NULL && recipient == NULL)
		user = getenv("USER");
	if (user == NULL && recipient == NULL)
		return fail(EX_USAGE, "5.3.0", "pigeon deliver: no user (-u) or recipient (-a)");

	struct config cfg;
	char err[768];
	config_defaults(&cfg);
	if (config_load(&cfg, config_path, err, sizeof(err)) < 0) {
		config_free(&cfg);
		/* The administrator can fix it; the MTA keeps the message meanwhile. */
		return fail(EX_TEMPFAIL, "4.3.5", "%s", err);
	}
	struct passwd_db *db = passwd_db_new(cfg.passwd_file);
	struct deliver_target target;
	int rc = deliver_resolve(db, &cfg, user ? user : recipient, &target);
	passwd_db_free(db);
	int status = EX_OK;
	struct maildir_delivery d = {.tmp_fd = -1, .dir_fd = -1};
	struct buf head = BUF_INIT;
	char *envelope_sender = NULL;
	if (rc < 0) {
		status = fail(EX_TEMPFAIL, "4.3.0", "user database unavailable");
		goto out_cfg;
	}
	if (rc == 0) {
		status = fail(EX_NOUSER, "5.1.1", "<%s>: user unknown", user ? user : recipient);
		goto out_cfg;
	}
	if (deliver_over_quota(&target, 0) > 0) {
		status = cfg.quota_tempfail ? fail(EX_TEMPFAIL, "4.2.2", "mailbox full")
					    : fail(EX_CANTCREAT, "5.2.2", "mailbox quota exceeded");
		goto out;
	}

	/* The header section: read whole (bounded) to drop a leading "From "
	 * envelope line and old Return-Path fields, and to spot a loop. */
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	bool first = true, envelope = false, skipping = false, in_headers = true;
	/* Postfix puts its own trace block (Return-Path, X-Original-To,
	 * Delivered-To) right after the From_ line; its Delivered-To names this
	 * recipient and is not a loop. Loops are looked for below that block. */
	bool mta_block = false, mta_delivered_to = false;
	uint64_t total = 0;
	while (in_headers && (n = getline(&line, &cap, stdin)) > 0) {
		size_t len = (size_t)n;
		total += len;
		if (first && !envelope && len >= 5 && strncmp(line, "From ", 5) == 0) {
			/* Postfix's mbox envelope line: the sender if -f was not given. */
			envelope = mta_block = true;
			if (sender == NULL) {
				size_t sl = strcspn(line + 5, " \t\r\n");
				envelope_sender = xstrndup(line + 5, sl);
				if (strcmp(envelope_sender, "MAILER-DAEMON") == 0)
					envelope_sender[0] = '\0';
				sender = envelope_sender;
			}
			continue;
		}
		bool blank = line[0] == '\n' || (line[0] == '\r' && line[1] == '\n');
		if (first && !is_header(line, len)) {
			free(line);
			status = fail(EX_DATAERR, "5.6.0", "not a mail message: no header section");
			goto out;
		}
		first = false;
		if (blank) {
			in_headers = false;
			buf_append(&head, line, len);
			break;
		}
		bool continuation = line[0] == ' ' || line[0] == '\t';
		if (!continuation) {
			if (mta_block && !header_is(line, len, "Return-Path") &&
			    !header_is(line, len, "X-Original-To") && !header_is(line, len, "Delivered-To"))
				mta_block = false;
			skipping = sender != NULL && header_is(line, len, "Return-Path");
			if (recipient != NULL && header_is(line, len, "Delivered-To")) {
				const char *v;
				size_t vlen;
				header_value(line, len, &v, &vlen);
				bool same = vlen == strlen(recipient) && strncasecmp(v, recipient, vlen) == 0;
				if (same && mta_block) {
					mta_delivered_to = true; /* the MTA's own: keep it, add none */
				} else if (same) {
					free(line);
					status = fail(EX_DATAERR, "5.4.6", "mail loop: already delivered to <%s>",
						      recipient);
					goto out;
				}
			}
		}
		if (!skipping)
			buf_append(&head, line, len);
		if (head.len > MAX_HEADER_SECTION)
			break; /* the rest is written as it comes */
	}
	if (ferror(stdin)) {
		free(line);
		status = fail(EX_TEMPFAIL, "4.3.0", "reading the message: %s", strerror(errno));
		goto out;
	}
	if (first) {
		free(line);
		status = fail(EX_DATAERR, "5.6.0", "empty message");
		goto out;
	}

	enum deliver_status st = maildir_delivery_begin(&d, target.maildir);
	if (st != DELIVER_OK) {
		maildir_delivery_abort(&d);
		free(line);
		status = store_failure(st, &cfg, target.maildir);
		goto out;
	}
	struct buf trace = BUF_INIT;
	struct trace_info tr = {
		.sender = sender,
		.recipient = recipient != NULL && cfg.delivered_to && !mta_delivered_to ? recipient : NULL,
	};
	deliver_trace_headers(&trace, &tr);
	maildir_delivery_write(&d, trace.data, trace.len);
	buf_free(&trace);
	maildir_delivery_write(&d, head.data, head.len);
	/* The body, streamed. */
	char chunk[65536];
	size_t got;
	while ((got = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
		total += got;
		if (cfg.max_message_size > 0 && total > cfg.max_message_size)
			break;
		maildir_delivery_write(&d, chunk, got);
	}
	free(line);
	if (ferror(stdin)) {
		status = fail(EX_TEMPFAIL, "4.3.0", "reading the message: %s", strerror(errno));
		goto out;
	}
	if (cfg.max_message_size > 0 && total > cfg.max_message_size) {
		status = fail(EX_DATAERR, "5.3.4", "message too big (at most %llu octets)",
			      (unsigned long long)cfg.max_message_size);
		goto out;
	}
	/* Quota check and publish under the maildrop's delivery lock. */
	long lock_budget_ms = DELIVER_LOCK_WAIT_MS;
	st = deliver_store(&target, &d, &lock_budget_ms);
	if (st != DELIVER_OK) {
		status = store_failure(st, &cfg, target.maildir);
		goto out;
	}
	/* Exit 0 only now: the message is durable in new/. */
out:
	maildir_delivery_abort(&d); /* nothing left if it was committed */
	deliver_target_clear(&target);
out_cfg:
	buf_free(&head);
	free(envelope_sender);
	config_free(&cfg);
	return status;
}
