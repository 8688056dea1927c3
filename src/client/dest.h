/*
 * dest.h - where pigeon fetch puts a message: a Maildir (default), an mbox
 * (mboxrd quoting, fcntl + dotlock like the MTA, truncated back on failure),
 * an MDA command (message on stdin; exit 75 = try later), or an LMTP server.
 * A message is "committed" only when the destination has it durably: the
 * caller records it and may DELE it on the server only after that.
 */
#ifndef PIGEON_DEST_H
#define PIGEON_DEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "client/account.h"
#include "client/net.h"
#include "common/buf.h"
#include "deliver/maildir_deliver.h"

enum dest_result {
	DEST_OK,      /* durable now */
	DEST_PENDING, /* durable after dest_sync() says so (Maildir) */
	DEST_TEMP,
	DEST_PERM,
};


struct dest {
	const struct account *a;
	/* Maildir: finished messages waiting for their batch's group commit */
	struct maildir_delivery **pending;
	size_t *pending_tags;
	int *pending_status;
	size_t n_pending, cap_pending;
	bool lmtp_open;
	struct client_conn lmtp;
	char error[512];
};

struct dest_msg {
	struct dest *d;
	/* maildir */
	struct maildir_delivery *md;
	/* mbox */
	int mbox_fd;
	off_t mbox_start;
	char *dotlock;
	/* mda */
	pid_t pid;
	int pipe_fd;
	bool pipe_broken;
	/* lmtp */
	bool lmtp_data;
	bool at_line_start;
	bool failed;
	struct buf out;  /* mbox, MDA, LMTP: gathered writes */
	char name[300];  /* maildir: the base name the message will get */
};

int dest_open(struct dest *d, const struct account *a);
void dest_close(struct dest *d);
/* Start a message; sender is for mbox From_ lines and LMTP (may be ""). */
enum dest_result dest_begin(struct dest *d, struct dest_msg *m);
/* One line of the message (eol=false: more of the same line follows). */
void dest_write(struct dest_msg *m, const char *data, size_t len, bool eol);
/* tag identifies the message in dest_sync's report. */
enum dest_result dest_commit(struct dest_msg *m, size_t tag);
void dest_abort(struct dest_msg *m);
/* Wait until every DEST_PENDING message is durable (or failed): done() is
 * called for each with its tag and DEST_OK or DEST_TEMP; then the Maildir's
 * new/ is fsync'd. -1 if that last fsync fails (nothing is durable then). */
int dest_sync(struct dest *d, void (*done)(void *arg, size_t tag, enum dest_result r), void *arg);
/* Recovery: did a message that was to be called name arrive? (Maildir only.) */
bool dest_has(struct dest *d, const char *name);

#endif
