/*
 * session.h - the POP3 server protocol core, sans I/O.
 *
 * It takes command lines and completion events and produces response bytes
 * and requests; it never touches a socket, a file or a clock, so the unit
 * tests and the fuzzer drive it directly. The caller (src/server/conn.c):
 *
 *   1. feeds one line at a time with pop3_session_input(), but only while
 *      pop3_session_request()->kind is POP3_REQ_NONE (this keeps pipelined
 *      commands in order: RFC 2449 §6.6);
 *   2. sends whatever pop3_session_output() holds, then clears it;
 *   3. carries out the pending request and reports back with the matching
 *      *_done / *_begin / *_end / continue call.
 */
#ifndef PIGEON_POP3_SESSION_H
#define PIGEON_POP3_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/sasl.h"
#include "common/buf.h"

struct pop3_settings {
	const char *greeting;       /* text of the +OK greeting */
	const char *implementation; /* "" = no IMPLEMENTATION capability */
	unsigned login_delay;       /* seconds; 0 = no LOGIN-DELAY capability */
	int expire;                 /* days, -1 = not advertised, -2 = NEVER */
	unsigned max_bad_commands;
	unsigned max_auth_failures;
	bool apop;                  /* APOP offered (greeting has a timestamp) */
	unsigned mechanisms;        /* bit (1 << enum sasl_mech) for each offered */
	bool stls;                  /* STLS offered on this listener */
};

struct pop3_conn_info {
	bool secure;                /* TLS is active (implicit TLS) */
	bool plaintext_ok;          /* loopback or trusted network (RFC 8314 policy) */
	const char *apop_timestamp; /* "<...@...>" when APOP is on */
	const struct sasl_channel_binding *cb; /* with secure: for SCRAM-PLUS */
};

enum pop3_state {
	POP3_STATE_AUTHORIZATION,
	POP3_STATE_TRANSACTION,
	POP3_STATE_UPDATE,
	POP3_STATE_CLOSED,
};

enum pop3_request_kind {
	POP3_REQ_NONE,      /* ready for the next command line */
	POP3_REQ_LOGIN,     /* check credentials, lock + open the maildrop */
	POP3_REQ_SASL_LOOKUP, /* SCRAM: fetch the user's stored keys */
	POP3_REQ_RETRIEVE,  /* open message, then _begin, stream, _end */
	POP3_REQ_CONTINUE,  /* call pop3_session_continue() when output drained */
	POP3_REQ_COMMIT,    /* UPDATE state: apply deletions and flags */
	POP3_REQ_STARTTLS,  /* start TLS, then pop3_session_tls_done() */
	POP3_REQ_CLOSE,     /* send the output, then close the connection */
};

enum pop3_login_method {
	POP3_LOGIN_USERPASS, /* secret: the password */
	POP3_LOGIN_APOP,     /* secret: the digest; challenge: the greeting timestamp */
	POP3_LOGIN_SASL,     /* PLAIN, LOGIN; secret: the password */
	POP3_LOGIN_CRAM,     /* secret: the digest; challenge: the CRAM-MD5 challenge */
	POP3_LOGIN_VERIFIED, /* SCRAM: the core checked the proof; see verified */
};

struct pop3_request {
	enum pop3_request_kind kind;
	/* LOGIN */
	enum pop3_login_method method;
	const char *mechanism; /* "USER", "APOP", "PLAIN", ... (for logs) */
	const char *user;
	const char *secret;    /* password, or the APOP/CRAM-MD5 digest */
	const char *challenge; /* APOP timestamp or CRAM-MD5 challenge */
	bool verified;         /* POP3_LOGIN_VERIFIED: proof good */
	/* RETRIEVE */
	size_t msg;            /* 0-based */
	uint64_t body_lines;   /* TOP's n, or UINT64_MAX for RETR */
	bool is_retr;
	/* COMMIT: per message, 1 = remove / 1 = add the Seen flag */
	const uint8_t *deleted;
	const uint8_t *seen;
};

enum pop3_login_result {
	POP3_LOGIN_OK,
	POP3_LOGIN_FAILED,    /* bad credentials (or unknown user: same answer) */
	POP3_LOGIN_IN_USE,    /* maildrop locked by another session */
	POP3_LOGIN_DELAYED,   /* LOGIN-DELAY not yet expired */
	POP3_LOGIN_TEMPFAIL,  /* try again later */
	POP3_LOGIN_PERMFAIL,  /* contact the administrator */
	POP3_LOGIN_REFUSED,   /* plaintext on an insecure connection */
	POP3_LOGIN_THROTTLED, /* too many failures from this address or for this user */
};

/* Read-only view of the opened maildrop; the caller owns it for the session. */
struct pop3_maildrop {
	size_t count;
	uint64_t (*size)(const void *ctx, size_t i);
	const char *(*uidl)(const void *ctx, size_t i);
	const void *ctx;
};

struct pop3_stats {
	uint64_t retrieved;       /* complete RETRs */
	uint64_t retrieved_bytes; /* octets sent for RETR and TOP bodies */
	uint64_t deleted;         /* messages removed in UPDATE */
	uint64_t bad_commands;
	uint64_t auth_failures;
	uint64_t commands;
	/* SASL exchanges refused before any credential check (malformed, wrong
	 * channel binding: worth a log line, a possible man in the middle) */
	uint64_t sasl_failures;
	const char *last_sasl_mechanism; /* static strings */
	const char *last_sasl_error;
};

struct pop3_session;

/* Creates the session and queues the greeting. */
struct pop3_session *pop3_session_new(const struct pop3_settings *settings,
				      const struct pop3_conn_info *info);
void pop3_session_free(struct pop3_session *s);

void pop3_session_input(struct pop3_session *s, const char *line, size_t len);
/* The caller saw a line longer than pop3_session_line_limit() and dropped it. */
void pop3_session_input_overlong(struct pop3_session *s);
/* Longest acceptable line, CRLF included (commands vs SASL responses). */
size_t pop3_session_line_limit(const struct pop3_session *s);

const struct pop3_request *pop3_session_request(const struct pop3_session *s);
struct buf *pop3_session_output(struct pop3_session *s);

void pop3_session_login_done(struct pop3_session *s, enum pop3_login_result result,
			     const struct pop3_maildrop *maildrop);
/* ok=false: the message could not be opened (-ERR, nothing sent). */
void pop3_session_retrieve_begin(struct pop3_session *s, bool ok);
/* complete=false: the body could not be read to its end; the response cannot
 * be finished, so the session closes (the client sees a truncated reply and
 * nothing is deleted). */
void pop3_session_retrieve_end(struct pop3_session *s, bool complete, uint64_t octets);
void pop3_session_continue(struct pop3_session *s);
void pop3_session_commit_done(struct pop3_session *s, size_t failed);
/* After STLS: ok=true when the handshake completed; cb: its channel-binding
 * data (copied). */
void pop3_session_tls_done(struct pop3_session *s, bool ok, const struct sasl_channel_binding *cb);
/* SCRAM: the stored keys for the user named in the request (a record that
 * cannot match for unknown users). */
void pop3_session_sasl_lookup_done(struct pop3_session *s, const struct scram_record *rec);

enum pop3_state pop3_session_state(const struct pop3_session *s);
/* Why the core asked to close ("quit", "too many bad commands", ...). */
const char *pop3_session_close_reason(const struct pop3_session *s);
/* The timestamp sent in the greeting, or NULL when APOP is off. */
const char *pop3_session_apop_timestamp(const struct pop3_session *s);
/* The authenticated user, or the last user name tried, or NULL. */
const char *pop3_session_user(const struct pop3_session *s);
const struct pop3_stats *pop3_session_stats(const struct pop3_session *s);

#endif
