/*
 * maildir.h - a POP3 maildrop kept in a Maildir (new/ and cur/; tmp/ is never
 * read). Opening takes the maildrop's exclusive lock (RFC 1939 §8) and builds
 * the message list once; the list is then fixed for the session (§4).
 * Everything here does blocking file I/O: pigeond calls it from its worker
 * threads, except maildir_open_message() (one openat per RETR).
 */
#ifndef PIGEON_MAILDIR_H
#define PIGEON_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/bounds.h"

enum store_status {
	STORE_OK,
	STORE_IN_USE, /* another session holds the lock */
	STORE_TEMP,   /* try again later (I/O error, out of resources) */
	STORE_PERM,   /* will not work without an administrator */
};

struct maildir_msg {
	char *name;                   /* current file name in new/ or cur/ */
	char uidl[POP3_UIDL_MAX + 1]; /* RFC 1939 §7 unique-id */
	uint64_t size;                /* octets RETR sends, before stuffing */
	int64_t sort_key;             /* delivery time, for the order */
	bool in_cur;
};

struct maildir {
	char *path;
	int dir_fd;
	int new_fd;
	int cur_fd;
	int lock_fd;
	struct maildir_msg *msgs;
	size_t count;
	uint64_t total_size;
	/* what the scan did, for logs and tests */
	size_t sizes_computed; /* messages read to learn their size */
	size_t sizes_cached;   /* sizes found in the cache file */
};

#define MAILDIR_LOCK_FILE "pigeon-pop3.lock"
#define MAILDIR_SIZE_CACHE "pigeon-sizes"

/* Lock and scan. Creates the Maildir (mode 0700) if it does not exist.
 * On failure *out is NULL and the status says why; detail is logged. */
enum store_status maildir_open(const char *path, struct maildir **out);
/* Open message i for reading; follows it if it moved (new/ -> cur/, flags
 * changed). Returns a file descriptor or -1. */
int maildir_open_message(struct maildir *md, size_t i);
/*
 * UPDATE state (RFC 1939 §6): unlink the messages marked in deleted[], add
 * the Seen flag to those marked in seen[] (moving them new/ -> cur/), then
 * fsync the directories. Returns how many deletions failed.
 */
size_t maildir_commit(struct maildir *md, const uint8_t *deleted, const uint8_t *seen);
/* Release the lock and free everything. NULL is fine. */
void maildir_close(struct maildir *md);

/* The RFC 1939 unique-id for a Maildir base name (the part before ':'). */
void maildir_uidl_for(const char *base, size_t baselen, char out[POP3_UIDL_MAX + 1]);
/* The CRLF size from a ",W=<n>" field of the base name, if there is one. */
bool maildir_name_size(const char *name, uint64_t *out);

#endif
