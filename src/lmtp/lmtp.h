/*
 * lmtp.h - the LMTP server protocol core (RFC 2033 with RFC 5321, 2920, 2034,
 * 1870, 6152), sans I/O like the POP3 core: lines in; reply bytes, message
 * bytes and requests out. The caller (src/server/lmtp_conn.c):
 *
 *   - reads command lines (CRLF or LF) while not in DATA, and only CRLF-ended
 *     lines while lmtp_session_in_data() (a bare LF never ends a line there,
 *     so "\n.\n" can never end the data: no SMTP smuggling);
 *   - feeds them only while the request is LMTP_REQ_NONE;
 *   - sends lmtp_session_output(), writes lmtp_session_body() (message bytes,
 *     dot-unstuffed, CRLF line ends) to every recipient's file, clears both;
 *   - answers the requests.
 */
#ifndef PIGEON_LMTP_H
#define PIGEON_LMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

struct lmtp_settings {
	const char *hostname;
	uint64_t max_message_size; /* octets, CRLF counted; 0 = no limit */
	unsigned max_recipients;
	unsigned max_bad_commands;
};

enum lmtp_request_kind {
	LMTP_REQ_NONE,
	LMTP_REQ_RCPT,       /* look up address: lmtp_session_rcpt_done() */
	LMTP_REQ_DATA_BEGIN, /* open a file per recipient: lmtp_session_data_ready() */
	LMTP_REQ_DATA_END,   /* store durably: lmtp_session_data_done() */
	LMTP_REQ_CLOSE,      /* send the output, then close */
};

struct lmtp_request {
	enum lmtp_request_kind kind;
	const char *address;   /* RCPT: the recipient, without <> and quoting (lookup form) */
	uint64_t declared_size;/* RCPT: MAIL FROM's SIZE=, 0 if none */
	size_t recipients;     /* DATA_*: accepted recipients */
};

enum lmtp_rcpt_result {
	LMTP_RCPT_OK,
	LMTP_RCPT_UNKNOWN,     /* 550 5.1.1 */
	LMTP_RCPT_TEMPFAIL,    /* 451 4.3.0 */
	LMTP_RCPT_QUOTA,       /* 552 5.2.2 */
	LMTP_RCPT_QUOTA_TEMP,  /* 452 4.2.2 */
};

/* Outcome of storing the message for one accepted recipient. */
enum lmtp_store_result {
	LMTP_STORED,           /* 250 2.0.0 */
	LMTP_STORE_TEMPFAIL,   /* 451 4.3.0 */
	LMTP_STORE_NOSPACE,    /* 452 4.3.1 */
	LMTP_STORE_QUOTA,      /* 552 5.2.2 */
	LMTP_STORE_QUOTA_TEMP, /* 452 4.2.2 */
	LMTP_STORE_PERM,       /* 550 5.2.0: mailbox cannot be created */
};

struct lmtp_session;

struct lmtp_session *lmtp_session_new(const struct lmtp_settings *settings);
void lmtp_session_free(struct lmtp_session *s);

void lmtp_session_input(struct lmtp_session *s, const char *line, size_t len);
/* A line over lmtp_session_line_limit() was dropped by the caller. */
void lmtp_session_input_overlong(struct lmtp_session *s);
size_t lmtp_session_line_limit(const struct lmtp_session *s);
bool lmtp_session_in_data(const struct lmtp_session *s);
/* The message can no longer be stored (too big, bad line): the caller may
 * drop the files it writes now; the core still reads to the final ".". */
bool lmtp_session_discarding(const struct lmtp_session *s);

const struct lmtp_request *lmtp_session_request(const struct lmtp_session *s);
struct buf *lmtp_session_output(struct lmtp_session *s);
struct buf *lmtp_session_body(struct lmtp_session *s);

/* Envelope, for trace headers and logs: addresses as the client wrote them,
 * quoted local parts kept (RFC 5321 §4.1.2). */
const char *lmtp_session_helo(const struct lmtp_session *s);
const char *lmtp_session_sender(const struct lmtp_session *s);
const char *lmtp_session_recipient(const struct lmtp_session *s, size_t i);
/* Changes whenever a transaction is reset (RSET, LHLO, end of DATA), so the
 * caller can drop what it prepared for the old recipients. */
unsigned lmtp_session_generation(const struct lmtp_session *s);
/* Recipient i's message already has "Delivered-To: <it>" (a mail loop). */
bool lmtp_session_recipient_loops(const struct lmtp_session *s, size_t i);

void lmtp_session_rcpt_done(struct lmtp_session *s, enum lmtp_rcpt_result result);
void lmtp_session_data_ready(struct lmtp_session *s);
/* results[i] for each accepted recipient, in RCPT order. */
void lmtp_session_data_done(struct lmtp_session *s, const enum lmtp_store_result *results);
/* The server is stopping: 421 and close (RFC 5321 §3.8). */
void lmtp_session_shutdown(struct lmtp_session *s);

#endif
