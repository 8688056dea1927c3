/*
 * uidstore.h - what pigeon fetch has already delivered, per account, by UIDL
 * (clients.md B.1). A text file rewritten atomically at the end of a good
 * session, plus an append-only journal written during it:
 *
 *   FETCH <uidl> <local name>   before RETR (where the copy will appear)
 *   DONE <first seen> <flag> <uidl>   after the copy is durable; fsync'd
 *                                     before any DELE for it is sent
 *   GONE <uidl>                 after the server confirmed the deletion
 *
 * FETCH and DONE records are written through to the kernel at once (a
 * kill -9 cannot lose them; only a system crash before the fsync can).
 * A crash at any point loses nothing: the journal is replayed at the next
 * start, and a FETCH without DONE is looked up in the destination. The
 * store file keeps such FETCH records too ("fetch" lines) until they are
 * settled, so rewriting the store never forgets one.
 *
 * The store names the account its UIDLs came from ("account" line: port,
 * host, user; B.1 item 10): UIDLs mean nothing on another server or for
 * another user. Stores written before that line existed have none and are
 * taken to be the account's own.
 * An exclusive lock keeps two runs for one account apart.
 */
#ifndef PIGEON_UIDSTORE_H
#define PIGEON_UIDSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#define UID_DELIVERED 'D'
#define UID_HEADERS 'H' /* only the headers were fetched (max_size) */

/* Entries not seen on the server for this long are forgotten. */
#define UIDSTORE_GRACE (30 * 86400)

struct uid_entry {
	char *uidl;
	time_t first_seen;
	time_t last_seen;
	char flag;
};

struct uid_pending {
	char *uidl;
	char *name;
};

struct uidstore {
	char *path;
	int lock_fd;
	FILE *journal;
	struct uid_entry *e;
	size_t n, cap;
	size_t *slots;       /* hash: index + 1, 0 empty */
	size_t nslots;
	struct uid_pending *pending;  /* FETCH records without DONE */
	size_t n_pending;
	bool dirty;
	/* whose UIDLs these are; host NULL: not recorded (an older store) */
	char *host;
	unsigned port;
	char *user;
};

/* Lock, load, replay the journal. -1 with a message (1 in *busy when another
 * run holds the lock). */
int uidstore_open(struct uidstore *s, const char *path, bool *busy, char *err, size_t errlen);
void uidstore_close(struct uidstore *s);
/* Check that the store belongs to host, port and user (host compared
 * ignoring case). A store naming none is claimed: the identity is written
 * at the next save. -1 with a message saying what to do if it belongs to
 * another account. */
int uidstore_claim(struct uidstore *s, const char *host, unsigned port, const char *user,
		   char *err, size_t errlen);

struct uid_entry *uidstore_find(struct uidstore *s, const char *uidl);
int uidstore_fetching(struct uidstore *s, const char *uidl, const char *name);
int uidstore_done(struct uidstore *s, const char *uidl, char flag, time_t now);
int uidstore_gone(struct uidstore *s, const char *uidl);
/* Forget a FETCH record without DONE: its message is known not to have
 * arrived (recovery), so it will be fetched again. */
void uidstore_settled(struct uidstore *s, const char *uidl);
/* fsync the journal: everything DONE so far survives a crash. */
int uidstore_sync(struct uidstore *s);
/* Rewrite the store atomically (FETCH records without DONE included) and
 * empty the journal. If prune, entries not seen on the server (last_seen)
 * within the grace period are dropped. */
int uidstore_save(struct uidstore *s, bool prune, time_t now);

#endif
