/* login.c - authentication and maildrop opening, off the event loop. */
#include "server/login.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth/passwd_file.h"
#include "auth/password.h"
#include "common/bounds.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/xmalloc.h"
#include "server/server.h"
#include "store/location.h"
#include "store/maildir.h"

/* ---- LOGIN-DELAY bookkeeping (RFC 2449 §6.5) ------------------------------ */

struct delay_entry {
	char *user;
	time_t last;
};

struct login_delays {
	pthread_mutex_t lock;
	unsigned seconds;
	struct delay_entry *entries; /* unsorted; expired entries are reused */
	size_t count;
};

struct login_delays *login_delays_new(unsigned seconds)
{
	struct login_delays *d = xcalloc(1, sizeof(*d));
	pthread_mutex_init(&d->lock, NULL);
	d->seconds = seconds;
	return d;
}

void login_delays_free(struct login_delays *d)
{
	if (d == NULL)
		return;
	for (size_t i = 0; i < d->count; i++)
		free(d->entries[i].user);
	free(d->entries);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/* True if the user may log in now; records the login if so. The table only
 * holds users seen within the last `seconds`, so it stays small. */
static bool login_delay_pass(struct login_delays *d, const char *user)
{
	if (d == NULL || d->seconds == 0)
		return true;
	time_t now = time(NULL);
	bool ok = true;
	pthread_mutex_lock(&d->lock);
	struct delay_entry *slot = NULL;
	for (size_t i = 0; i < d->count; i++) {
		struct delay_entry *e = &d->entries[i];
		bool expired = now - e->last >= (time_t)d->seconds;
		if (strcmp(e->user, user) == 0) {
			ok = expired;
			slot = e;
			break;
		}
		if (expired && slot == NULL)
			slot = e;
	}
	if (ok) {
		if (slot == NULL) {
			d->entries = xreallocarray(d->entries, d->count + 1, sizeof(*d->entries));
			slot = &d->entries[d->count++];
			slot->user = NULL;
		}
		if (slot->user == NULL || strcmp(slot->user, user) != 0) {
			free(slot->user);
			slot->user = xstrdup(user);
		}
		slot->last = now;
	}
	pthread_mutex_unlock(&d->lock);
	return ok;
}

/* ---- the job -------------------------------------------------------------- */

struct login_job *login_job_new(struct server *srv, struct conn *conn,
				const struct pop3_request *req, const char *apop_timestamp)
{
	struct login_job *job = xcalloc(1, sizeof(*job));
	job->srv = srv;
	job->conn = conn;
	job->method = req->method;
	snprintf(job->mechanism, sizeof(job->mechanism), "%s", req->mechanism);
	job->user = xstrdup(req->user);
	job->secret = xstrdup(req->secret);
	job->apop_timestamp = apop_timestamp ? xstrdup(apop_timestamp) : NULL;
	return job;
}

void login_job_free(struct login_job *job)
{
	if (job == NULL)
		return;
	OPENSSL_cleanse(job->secret, strlen(job->secret));
	free(job->secret);
	free(job->user);
	free(job->apop_timestamp);
	free(job);
}

/* RFC 1939 §7: digest = lower-case hex MD5(timestamp || secret). */
static bool apop_matches(const char *timestamp, const char *secret, const char *digest)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
		  EVP_DigestUpdate(ctx, timestamp, strlen(timestamp)) == 1 &&
		  EVP_DigestUpdate(ctx, secret, strlen(secret)) == 1 &&
		  EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return false;
	for (unsigned i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	char given[33];
	size_t n = strlen(digest);
	if (n != 32)
		return false;
	for (size_t i = 0; i <= n; i++)
		given[i] = (char)(digest[i] >= 'A' && digest[i] <= 'F' ? digest[i] + 32 : digest[i]);
	bool eq = const_time_eq(hex, 2 * mdlen, given, n);
	OPENSSL_cleanse(hex, sizeof(hex));
	return eq;
}

static bool credentials_ok(struct login_job *job, const struct user_record *rec, bool found)
{
	if (job->method == POP3_LOGIN_APOP) {
		const char *plain = found ? password_plaintext(rec->password) : NULL;
		if (plain == NULL) {
			job->why = found ? "APOP needs a {PLAIN} secret" : "unknown user";
			return false;
		}
		if (!apop_matches(job->apop_timestamp, plain, job->secret)) {
			job->why = "wrong APOP digest";
			return false;
		}
		return true;
	}
	if (!found) {
		/* Same work and the same answer as a wrong password. */
		password_verify_dummy(job->secret);
		job->why = "unknown user";
		return false;
	}
	switch (password_verify(rec->password, job->secret)) {
	case PASSWORD_OK:
		return true;
	case PASSWORD_MISMATCH:
		job->why = "wrong password";
		return false;
	case PASSWORD_BAD_HASH:
	default:
		job->why = "unusable password hash";
		return false;
	}
}

static enum pop3_login_result store_result(enum store_status st)
{
	switch (st) {
	case STORE_OK:
		return POP3_LOGIN_OK;
	case STORE_IN_USE:
		return POP3_LOGIN_IN_USE;
	case STORE_PERM:
		return POP3_LOGIN_PERMFAIL;
	case STORE_TEMP:
	default:
		return POP3_LOGIN_TEMPFAIL;
	}
}

void login_job_run(struct login_job *job)
{
	struct server *srv = job->srv;
	struct user_record rec;
	int found = passwd_db_lookup(srv->users, job->user, &rec);
	if (found < 0) {
		job->result = POP3_LOGIN_TEMPFAIL;
		job->why = "user database unavailable";
		return;
	}
	if (!credentials_ok(job, &rec, found == 1)) {
		job->result = POP3_LOGIN_FAILED;
		goto out;
	}
	/* RFC 2449 §8.1.1 and pop3.md §10: delay and lock answers only after
	 * the credentials were found good. */
	if (!login_delay_pass(srv->delays, rec.name)) {
		job->result = POP3_LOGIN_DELAYED;
		job->why = "login delay";
		goto out;
	}
	char path[4096];
	if (location_expand(srv->cfg->mail_location, rec.name, rec.home, path, sizeof(path)) < 0) {
		log_error("user %s: cannot build a safe maildrop path from [mail] location", rec.name);
		job->result = POP3_LOGIN_PERMFAIL;
		job->why = "no maildrop path";
		goto out;
	}
	job->result = store_result(maildir_open(path, &job->md));
	if (job->result == POP3_LOGIN_IN_USE)
		job->why = "maildrop in use";
	else if (job->result != POP3_LOGIN_OK)
		job->why = "maildrop unavailable";
out:
	user_record_clear(&rec);
}
