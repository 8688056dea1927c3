/* deliver.c - recipient lookup, quota, trace headers. */
#include "deliver/deliver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/passwd_file.h"
#include "common/bounds.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/xmalloc.h"
#include "deliver/maildir_deliver.h"
#include "store/location.h"

void deliver_target_clear(struct deliver_target *t)
{
	free(t->user);
	free(t->maildir);
	memset(t, 0, sizeof(*t));
}

/* "quota=1G" among the passwd-file entry's extra fields overrides [delivery]. */
static uint64_t user_quota(const char *extra, uint64_t fallback)
{
	char *copy = xstrdup(extra), *save = NULL;
	uint64_t q = fallback;
	for (char *tok = strtok_r(copy, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		uint64_t v;
		if (strncmp(tok, "quota=", 6) == 0 && parse_size(tok + 6, &v) == 0)
			q = v;
	}
	free(copy);
	return q;
}

static int lookup(struct passwd_db *db, const struct config *cfg, const char *name,
		  struct deliver_target *t)
{
	struct user_record rec;
	int rc = passwd_db_lookup(db, name, &rec);
	if (rc != 1)
		return rc;
	char path[4096];
	if (location_expand(cfg->mail_location, rec.name, rec.home, path, sizeof(path)) < 0) {
		log_error("user %s: cannot build a safe maildrop path from [mail] location", rec.name);
		user_record_clear(&rec);
		return -1;
	}
	t->user = xstrdup(rec.name);
	t->maildir = xstrdup(path);
	t->quota = user_quota(rec.extra, cfg->quota);
	user_record_clear(&rec);
	return 1;
}

int deliver_resolve(struct passwd_db *db, const struct config *cfg, const char *address,
		    struct deliver_target *t)
{
	memset(t, 0, sizeof(*t));
	const char *at = strrchr(address, '@');
	size_t local_len = at ? (size_t)(at - address) : strlen(address);
	const char *delim = cfg->recipient_delimiter;
	if (delim[0] != '\0') {
		const char *d = memchr(address, delim[0], local_len);
		if (d != NULL)
			local_len = (size_t)(d - address);
	}
	char *local = xstrndup(address, local_len);
	char *full = at ? xasprintf("%s%s", local, at) : xstrdup(local);
	int rc = lookup(db, cfg, full, t);
	if (rc == 0 && at != NULL)
		rc = lookup(db, cfg, local, t);
	free(local);
	free(full);
	return rc;
}

int deliver_over_quota(const struct deliver_target *t, uint64_t incoming)
{
	if (t->quota == 0)
		return 0;
	uint64_t used;
	if (maildir_usage(t->maildir, &used) < 0)
		return -1;
	return used + incoming > t->quota ? 1 : 0;
}

/* The maildrop's delivery lock, waiting at most *budget_ms (which is reduced
 * by the time waited). Returns the descriptor (closing it releases the lock)
 * or -1. */
static int take_delivery_lock(const char *maildir, long *budget_ms)
{
	char path[4096];
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", maildir, DELIVER_LOCK_FILE) >= sizeof(path)) {
		log_error("maildir %s: path too long for the delivery lock", maildir);
		return -1;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_error("maildir %s: cannot open %s: %s", maildir, DELIVER_LOCK_FILE, strerror(errno));
		return -1;
	}
	/* OFD locks conflict between threads of one process too (the LMTP
	 * store jobs) and map to POSIX locks on NFS. Polled, to bound the wait. */
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
	long waited_ms = 0, step_ms = 1;
	while (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
		if ((errno != EAGAIN && errno != EACCES && errno != EINTR) ||
		    waited_ms >= *budget_ms) {
			*budget_ms = waited_ms >= *budget_ms ? 0 : *budget_ms - waited_ms;
			log_error("maildir %s: cannot take %s: %s", maildir, DELIVER_LOCK_FILE,
				  errno == EAGAIN || errno == EACCES ? "held too long" : strerror(errno));
			close(fd);
			return -1;
		}
		struct timespec ts = {0, step_ms * 1000 * 1000};
		nanosleep(&ts, NULL);
		waited_ms += step_ms;
		if (step_ms < 50)
			step_ms *= 2;
	}
	*budget_ms -= waited_ms < *budget_ms ? waited_ms : *budget_ms;
	return fd;
}

enum deliver_status deliver_store(const struct deliver_target *t, struct maildir_delivery *d,
				  long *lock_budget_ms)
{
	maildir_delivery_finish(d);
	if (t->quota == 0)
		return maildir_delivery_publish(d);
	/* The slow part (the message's own fsync) outside the lock. */
	maildir_delivery_sync(d);
	int lock = take_delivery_lock(t->maildir, lock_budget_ms);
	if (lock < 0) {
		maildir_delivery_abort(d);
		return DELIVER_TEMP;
	}
	enum deliver_status st;
	if (deliver_over_quota(t, d->stored) > 0) {
		maildir_delivery_abort(d);
		st = DELIVER_QUOTA;
	} else {
		st = maildir_delivery_publish(d); /* usage unknown: as before, deliver */
	}
	close(lock); /* after the fsync of new/: the next holder counts this message */
	return st;
}

void deliver_trace_headers(struct buf *out, const struct trace_info *tr)
{
	if (tr->sender != NULL)
		buf_printf(out, "Return-Path: <%s>\r\n", tr->sender);
	if (tr->recipient != NULL)
		buf_printf(out, "Delivered-To: %s\r\n", tr->recipient);
	if (tr->helo != NULL) {
		char host[256], date[64];
		if (gethostname(host, sizeof(host)) < 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		time_t now = time(NULL);
		struct tm tm;
		localtime_r(&now, &tm);
		strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
		/* RFC 5321 §4.4; "with LMTP" from RFC 3848. The "for" clause only
		 * names this copy's own recipient. */
		buf_printf(out, "Received: from %s (%s)\r\n\tby %s (Pigeon) with %s id %s", tr->helo,
			   tr->peer, host, tr->protocol, tr->id);
		if (tr->recipient != NULL)
			buf_printf(out, "\r\n\tfor <%s>", tr->recipient);
		buf_printf(out, "; %s\r\n", date);
	}
}
