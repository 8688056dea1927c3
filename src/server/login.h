/*
 * login.h - the jobs that authenticate, run on a worker thread (password
 * hashing and the maildrop scan block):
 *
 *   login job:  brute-force limits, credential check (password, APOP or
 *               CRAM-MD5 digest, or a SCRAM verdict), LOGIN-DELAY, then find
 *               and lock the maildrop;
 *   lookup job: the stored SCRAM keys of a user (or stand-in keys that
 *               cannot match, for users without them).
 *
 * conn.c submits them and handles the results on the event loop.
 */
#ifndef PIGEON_LOGIN_H
#define PIGEON_LOGIN_H

#include "auth/scram.h"
#include "pop3/session.h"
#include "server/shared.h"
#include "server/workpool.h"

struct server;
struct conn;
struct maildir;

struct login_job {
	struct work work;
	struct server *srv;
	struct conn *conn;
	/* input */
	enum pop3_login_method method;
	char mechanism[24];
	char *user;
	char *secret;
	char *challenge;
	bool verified;
	struct shared_key addr_key;
	/* output */
	enum pop3_login_result result;
	struct maildir *md;
	unsigned delay_ms; /* answer a failure after this long */
	const char *why;   /* failure detail for the log; never secret */
};

struct login_job *login_job_new(struct server *srv, struct conn *conn,
				const struct pop3_request *req, const struct shared_key *addr_key);
void login_job_run(struct login_job *job);
/* Frees the job; the maildrop (if any) must have been taken or closed. */
void login_job_free(struct login_job *job);

struct lookup_job {
	struct work work;
	struct server *srv;
	struct conn *conn;
	char *user;
	struct shared_key addr_key;
	struct scram_record record;
	bool real; /* the user has SCRAM keys */
};

struct lookup_job *lookup_job_new(struct server *srv, struct conn *conn, const char *user,
				  const struct shared_key *addr_key);
void lookup_job_run(struct lookup_job *job);
void lookup_job_free(struct lookup_job *job);

#endif
