/*
 * deliver.h - what delivery needs besides writing the file, shared by the
 * LMTP listener and `pigeon deliver`: which user and maildrop an address
 * means, that user's quota, and the trace headers to prepend.
 */
#ifndef PIGEON_DELIVER_H
#define PIGEON_DELIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/config.h"
#include "deliver/maildir_deliver.h"

struct passwd_db;

struct deliver_target {
	char *user;
	char *maildir;
	uint64_t quota; /* 0: none */
};

/*
 * Find the user for a recipient address: "local+ext@domain" is looked up as
 * "local@domain", then as "local" (the delimiter from [delivery]); a name
 * without '@' is looked up as given. Returns 1 (found, t filled), 0 (no such
 * user), -1 (temporary: database unreadable, or no usable maildrop path).
 */
int deliver_resolve(struct passwd_db *db, const struct config *cfg, const char *address,
		    struct deliver_target *t);
void deliver_target_clear(struct deliver_target *t);

/* Would a message of `incoming` octets exceed t's quota? 1 yes, 0 no, -1 unknown.
 * Without the delivery lock this is only an early estimate. */
int deliver_over_quota(const struct deliver_target *t, uint64_t incoming);

/*
 * The quota is exact for deliveries through Pigeon: computing the usage and
 * publishing the message happen under an OFD lock on DELIVER_LOCK_FILE in the
 * Maildir, so concurrent deliveries (LMTP threads, `pigeon deliver`
 * processes) to one maildrop cannot both fit into the last free octets. It
 * is a separate file from the POP3 session lock: delivery never waits for a
 * POP3 session. Taken only when the target has a quota (no check, no race).
 */
#define DELIVER_LOCK_FILE "pigeon-deliver.lock"

/*
 * Finish d (begun for t) and store it: fsync the file, then under the
 * maildrop's delivery lock check the quota and publish. Returns DELIVER_OK,
 * DELIVER_QUOTA (nothing stored), or a failure status of maildir_deliver.h
 * (a lock timeout is DELIVER_TEMP). d is finished or aborted on every path.
 * The lock is waited for at most *lock_budget_ms, reduced by the wait: one
 * budget for all copies of a message keeps a delivery to many busy
 * maildrops within DELIVER_LOCK_WAIT_MS (and a stopping worker within the
 * time its master grants).
 */
enum deliver_status deliver_store(const struct deliver_target *t, struct maildir_delivery *d,
				  long *lock_budget_ms);

struct trace_info {
	const char *sender;      /* MAIL FROM / -f ("" for <>); NULL: no Return-Path */
	const char *recipient;   /* NULL: no Delivered-To */
	const char *helo;        /* LMTP: LHLO name; NULL: no Received */
	const char *peer;        /* "[192.0.2.1]" or "local" */
	const char *protocol;    /* "LMTP" */
	const char *id;          /* queue-less id for the Received line */
};

/* Return-Path, Delivered-To and Received lines (CRLF) for the top of a message. */
void deliver_trace_headers(struct buf *out, const struct trace_info *tr);

#endif
