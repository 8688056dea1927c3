/* login.c - authentication and maildrop opening, off the event loop. */
#include "server/login.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/passwd_file.h"
#include "auth/password.h"
#include "common/bounds.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/xmalloc.h"
#include "server/server.h"
#include "store/location.h"
#include "store/maildir.h"

/* ---- the login job ----------------------------------------------------------- */

struct login_job *login_job_new(struct server *srv, struct conn *conn,
				const struct pop3_request *req, const struct shared_key *addr_key)
{
	struct login_job *job = xcalloc(1, sizeof(*job));
	job->srv = srv;
	job->conn = conn;
	job->method = req->method;
	snprintf(job->mechanism, sizeof(job->mechanism), "%s", req->mechanism);
	job->user = xstrdup(req->user);
	job->secret = xstrdup(req->secret ? req->secret : "");
	job->challenge = req->challenge ? xstrdup(req->challenge) : NULL;
	job->verified = req->verified;
	job->addr_key = *addr_key;
	return job;
}

void login_job_free(struct login_job *job)
{
	if (job == NULL)
		return;
	OPENSSL_cleanse(job->secret, strlen(job->secret));
	free(job->secret);
	free(job->user);
	free(job->challenge);
	free(job);
}

static void to_hex(const unsigned char *in, size_t len, char *out)
{
	for (size_t i = 0; i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", in[i]);
}

/* Compare a client's hex digest with ours, case-insensitively, in constant time. */
static bool digest_matches(const unsigned char *md, size_t mdlen, const char *given)
{
	char hex[2 * EVP_MAX_MD_SIZE + 1], lower[2 * EVP_MAX_MD_SIZE + 1];
	size_t n = strlen(given);
	if (n != 2 * mdlen)
		return false;
	to_hex(md, mdlen, hex);
	for (size_t i = 0; i <= n; i++)
		lower[i] = (char)(given[i] >= 'A' && given[i] <= 'F' ? given[i] + 32 : given[i]);
	bool eq = const_time_eq(hex, n, lower, n);
	OPENSSL_cleanse(hex, sizeof(hex));
	return eq;
}

/* RFC 1939 §7: digest = lower-case hex MD5(timestamp || secret). */
static bool apop_matches(const char *timestamp, const char *secret, const char *digest)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
		  EVP_DigestUpdate(ctx, timestamp, strlen(timestamp)) == 1 &&
		  EVP_DigestUpdate(ctx, secret, strlen(secret)) == 1 &&
		  EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
	EVP_MD_CTX_free(ctx);
	return ok && digest_matches(md, mdlen, digest);
}

/* RFC 2195: digest = hex HMAC-MD5(key = secret, challenge). */
static bool cram_matches(const char *challenge, const char *secret, const char *digest)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (HMAC(EVP_md5(), secret, (int)strlen(secret), (const unsigned char *)challenge,
		 strlen(challenge), md, &mdlen) == NULL)
		return false;
	return digest_matches(md, mdlen, digest);
}

static bool credentials_ok(struct login_job *job, const struct user_record *rec, bool found)
{
	switch (job->method) {
	case POP3_LOGIN_VERIFIED:
		/* SCRAM: the core checked the proof against the stored keys. */
		if (!job->verified)
			job->why = found ? "wrong SCRAM proof (or no SCRAM keys stored)"
					 : "unknown user";
		return job->verified && found;
	case POP3_LOGIN_APOP:
	case POP3_LOGIN_CRAM: {
		const char *plain = found ? password_plaintext(rec->password) : NULL;
		if (plain == NULL) {
			job->why = found ? "digest login needs a {PLAIN} secret" : "unknown user";
			return false;
		}
		bool ok = job->challenge != NULL &&
			  (job->method == POP3_LOGIN_APOP
				   ? apop_matches(job->challenge, plain, job->secret)
				   : cram_matches(job->challenge, plain, job->secret));
		if (!ok)
			job->why = "wrong digest";
		return ok;
	}
	default:
		break;
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

/* The growing delay: failure_delay doubled for each recent failure from the
 * address, up to max_failure_delay. */
static unsigned penalty_delay(const struct config *cfg, unsigned failures)
{
	uint64_t ms = cfg->failure_delay_ms;
	for (unsigned i = 1; i < failures && ms < cfg->max_failure_delay_ms; i++)
		ms *= 2;
	if (ms > cfg->max_failure_delay_ms && cfg->max_failure_delay_ms >= cfg->failure_delay_ms)
		ms = cfg->max_failure_delay_ms;
	return (unsigned)ms;
}

/* The brute-force limits: the reason for refusing, or NULL. */
static const char *throttled(struct server *srv, const struct shared_key *addr_key,
			     const struct shared_key *user_key, time_t now)
{
	const struct config *cfg = srv->cfg;
	unsigned window = cfg->penalty_window_ms / 1000;
	if (shared_failures(srv->shared, addr_key, now, window) >= cfg->ip_failure_limit)
		return "too many failed logins from this address";
	if (shared_failures(srv->shared, user_key, now, window) >= cfg->user_failure_limit)
		return "too many failed logins for this user";
	return NULL;
}

static unsigned elapsed_ms(const struct timespec *since)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long long ms = (now.tv_sec - since->tv_sec) * 1000LL + (now.tv_nsec - since->tv_nsec) / 1000000;
	return ms < 0 ? 0 : ms > UINT32_MAX ? UINT32_MAX : (unsigned)ms;
}

void login_job_run(struct login_job *job)
{
	struct server *srv = job->srv;
	const struct config *cfg = srv->cfg;
	unsigned window = cfg->penalty_window_ms / 1000;
	time_t now = time(NULL);
	struct timespec started;
	clock_gettime(CLOCK_MONOTONIC, &started);
	struct shared_key user_key;
	shared_key_user(job->user, &user_key);
	struct user_record rec = {0};

	/* Brute-force limits first: a refused attempt costs no hashing. */
	job->why = throttled(srv, &job->addr_key, &user_key, now);
	if (job->why != NULL) {
		job->result = POP3_LOGIN_THROTTLED;
		job->delay_ms = cfg->max_failure_delay_ms;
		return;
	}
	int found = passwd_db_lookup(srv->users, job->user, &rec);
	if (found < 0) {
		job->result = POP3_LOGIN_TEMPFAIL;
		job->why = "user database unavailable";
		return;
	}
	if (!credentials_ok(job, &rec, found == 1)) {
		job->result = POP3_LOGIN_FAILED;
		unsigned n = shared_add_failure(srv->shared, &job->addr_key, now, window);
		shared_add_failure(srv->shared, &user_key, now, window);
		/* The delay counts from the start of the check: a cheap hash
		 * (or none, for an unknown user) and a costly one are answered
		 * after the same time, as long as the hash takes less than
		 * failure_delay. */
		unsigned spent = elapsed_ms(&started);
		unsigned delay = penalty_delay(cfg, n);
		job->delay_ms = delay > spent ? delay - spent : 0;
		goto out;
	}
	shared_clear_failures(srv->shared, &user_key);
	/* pop3.md §10: delay and lock answers only after the credentials were
	 * found good (they confirm the password to whoever sent it). */
	if (!shared_login_allowed(srv->shared, &user_key, now, cfg->login_delay, false)) {
		job->result = POP3_LOGIN_DELAYED;
		job->why = "login delay";
		goto out;
	}
	char path[4096];
	if (location_expand(cfg->mail_location, rec.name, rec.home, path, sizeof(path)) < 0) {
		log_error("user %s: cannot build a safe maildrop path from [mail] location", rec.name);
		job->result = POP3_LOGIN_PERMFAIL;
		job->why = "no maildrop path";
		goto out;
	}
	job->result = store_result(maildir_open(path, &job->md));
	/* Only a login that got its maildrop starts the LOGIN-DELAY clock: a
	 * client told [IN-USE] may retry at once. */
	if (job->result == POP3_LOGIN_OK)
		shared_login_allowed(srv->shared, &user_key, now, cfg->login_delay, true);
	if (job->result == POP3_LOGIN_IN_USE)
		job->why = "maildrop in use";
	else if (job->result != POP3_LOGIN_OK)
		job->why = "maildrop unavailable";
out:
	user_record_clear(&rec);
}

/* ---- the SCRAM lookup job -------------------------------------------------------- */

struct lookup_job *lookup_job_new(struct server *srv, struct conn *conn, const char *user,
				  const struct shared_key *addr_key)
{
	struct lookup_job *job = xcalloc(1, sizeof(*job));
	job->srv = srv;
	job->conn = conn;
	job->user = xstrdup(user);
	job->addr_key = *addr_key;
	return job;
}

void lookup_job_free(struct lookup_job *job)
{
	if (job == NULL)
		return;
	OPENSSL_cleanse(&job->record, sizeof(job->record));
	free(job->user);
	free(job);
}

/* Keys that cannot match, the same for the same user every time (a salt that
 * changed between attempts would reveal that the user does not exist). */
static void stand_in_record(struct server *srv, const char *user, struct scram_record *rec)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	memset(rec, 0, sizeof(*rec));
	/* The count real entries use: a different one would tell who exists. */
	unsigned common = passwd_db_scram_iterations(srv->users);
	rec->iterations = common ? common : SCRAM_DEFAULT_ITERATIONS;
	HMAC(EVP_sha256(), srv->secret, sizeof(srv->secret), (const unsigned char *)user,
	     strlen(user), md, &len);
	memcpy(rec->salt, md, 16);
	rec->salt_len = 16;
	memcpy(rec->stored_key, md, SCRAM_KEY_LEN); /* no password hashes to this */
	memset(rec->server_key, 0, SCRAM_KEY_LEN);
}

void lookup_job_run(struct lookup_job *job)
{
	struct user_record rec = {0};
	struct shared_key user_key;
	shared_key_user(job->user, &user_key);
	if (passwd_db_lookup(job->srv->users, job->user, &rec) == 1 &&
	    strncmp(rec.password, "{SCRAM-SHA-256}", 15) == 0 &&
	    scram_parse_record(rec.password + 15, &job->record) == 0) {
		job->real = true;
	} else {
		stand_in_record(job->srv, job->user, &job->record);
	}
	/* A throttled client must not learn from the server's final SCRAM
	 * message that its guess was right: it gets keys that cannot match
	 * (and the login job then refuses it as throttled). The salt and
	 * iteration count stay what they always are for this name, so being
	 * throttled does not tell who exists either. */
	if (job->real && throttled(job->srv, &job->addr_key, &user_key, time(NULL)) != NULL) {
		struct scram_record fake;
		stand_in_record(job->srv, job->user, &fake);
		memcpy(job->record.stored_key, fake.stored_key, SCRAM_KEY_LEN);
		memcpy(job->record.server_key, fake.server_key, SCRAM_KEY_LEN);
		OPENSSL_cleanse(&fake, sizeof(fake));
		job->real = false;
	}
	user_record_clear(&rec);
}
