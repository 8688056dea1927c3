/*
 * maildir_deliver.h - writing one message into a Maildir safely (maildir.md
 * §3): a unique name, the message written to tmp/ (line ends stored as LF,
 * the Maildir convention), fsync, rename into new/ under a name carrying
 * ",S=<stored size>,W=<POP3 size>", fsync new/. Only after that may the
 * delivery be acknowledged. A crash at any point leaves new/ with complete
 * messages only (at worst a stray file in tmp/, which readers ignore).
 *
 * The write and commit steps are separate so an event loop can write as data
 * arrives and do the fsyncs on a worker thread.
 */
#ifndef PIGEON_MAILDIR_DELIVER_H
#define PIGEON_MAILDIR_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/transform.h"

enum deliver_status {
	DELIVER_OK,
	DELIVER_TEMP,      /* try again later (I/O error, permissions, lock timeout) */
	DELIVER_NOSPACE,   /* the file system is full (ENOSPC): try again later */
	DELIVER_FULL,      /* the file system quota is used up (EDQUOT): try again later */
	DELIVER_PERM,      /* the mailbox path can never exist (ENOTDIR, ELOOP, ...) */
	DELIVER_QUOTA,     /* over the mailbox quota */
};

/* What an errno from creating or writing a Maildir means. Only a path that
 * cannot exist is permanent; anything an administrator can fix (EACCES,
 * EPERM, EROFS, ...) is temporary, so the MTA retries instead of bouncing
 * (lmtp.md checklist 16). */
enum deliver_status deliver_status_from_errno(int err);

struct maildir_delivery {
	int dir_fd;
	int tmp_fd;
	char tmp_name[256];
	char *path;
	uint64_t stored;        /* octets written (LF line ends) */
	struct transform size;  /* counts the POP3 (CRLF) size of what is stored */
	bool pending_cr;        /* a CR that may start a CRLF */
	int error;              /* first write errno, 0 if none */
	bool defer_dir_sync;    /* the caller fsyncs new/ once for many messages */
	bool no_fsync;          /* the caller chose speed over durability */
	bool synced;            /* maildir_delivery_sync done: publish skips the file fsync */
	char wbuf[16384];       /* small writes are gathered into one write(2) */
	size_t wlen;
	char final_name[300];   /* set by commit */
};

/* Create the Maildir if needed (mode 0700; every directory made is fsynced
 * into its parent) and open a new file in tmp/. On failure d->error holds
 * the errno. */
enum deliver_status maildir_delivery_begin(struct maildir_delivery *d, const char *maildir);
/* Append message bytes; CRLF is stored as LF. Errors are remembered and
 * reported by commit. */
void maildir_delivery_write(struct maildir_delivery *d, const void *data, size_t len);
/* fsync, move into new/, fsync new/. The file is gone from tmp/ on any path.
 * Same as finish (in the writing thread) then publish (in any thread). */
enum deliver_status maildir_delivery_commit(struct maildir_delivery *d);
/* The last bytes and the final name (final_name), no I/O but the flush. */
void maildir_delivery_finish(struct maildir_delivery *d);
/* fsync the file now (optional: publish does it otherwise), e.g. before
 * taking a lock that publish must hold. Errors are reported by publish. */
void maildir_delivery_sync(struct maildir_delivery *d);
/* fsync, close, rename into new/ (and fsync new/ unless deferred). */
enum deliver_status maildir_delivery_publish(struct maildir_delivery *d);
/* Drop the temporary file (nothing was delivered). */
void maildir_delivery_abort(struct maildir_delivery *d);

/* fsync new/ of a Maildir (after commits with defer_dir_sync). */
int maildir_sync_new(const char *maildir);
/* Octets used by the messages in new/ and cur/ (from S= or the file size). */
int maildir_usage(const char *maildir, uint64_t *bytes);

#endif
