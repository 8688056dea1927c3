/*
 * login.h - the login job: check the credentials, enforce LOGIN-DELAY, find
 * and lock the maildrop. Runs on a worker thread (password hashing and the
 * maildrop scan block); conn.c submits it and handles the result.
 */
#ifndef PIGEON_LOGIN_H
#define PIGEON_LOGIN_H

#include "pop3/session.h"
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
	char mechanism[16];
	char *user;
	char *secret;
	char *apop_timestamp;
	/* output */
	enum pop3_login_result result;
	struct maildir *md;
	const char *why; /* failure detail for the log; never secret */
};

struct login_job *login_job_new(struct server *srv, struct conn *conn,
				const struct pop3_request *req, const char *apop_timestamp);
/* The worker-thread part; sets result, md and why. */
void login_job_run(struct login_job *job);
/* Frees the job; the maildrop (if any) must have been taken or closed. */
void login_job_free(struct login_job *job);

struct login_delays *login_delays_new(unsigned seconds);
void login_delays_free(struct login_delays *d);

#endif
