/*
 * shared.h - state every worker process must agree on, in one shared memory
 * table created by the master before it forks: failed logins per client
 * address (IPv6 per /64) and per account, sessions per address, and the last
 * login per user (LOGIN-DELAY). A fixed number of slots; when full, the least
 * recently used idle slot is reused, so memory never grows with attackers.
 * Every operation takes one process-shared robust mutex for a few
 * microseconds; a worker that dies holding it does not block the others.
 */
#ifndef PIGEON_SHARED_H
#define PIGEON_SHARED_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#define SHARED_KEY_LEN 16

struct shared_key {
	unsigned char k[SHARED_KEY_LEN];
};

struct shared_table;

/* MAP_SHARED anonymous memory: create before fork(). NULL on failure. */
struct shared_table *shared_create(unsigned slots);
void shared_destroy(struct shared_table *t);

void shared_key_addr(const struct sockaddr *sa, struct shared_key *out);
void shared_key_user(const char *user, struct shared_key *out);

/* Failures remembered within window_s; returns the count after decay. */
unsigned shared_failures(struct shared_table *t, const struct shared_key *key, time_t now,
			 unsigned window_s);
/* Count one more failure; returns the new count. */
unsigned shared_add_failure(struct shared_table *t, const struct shared_key *key, time_t now,
			    unsigned window_s);
void shared_clear_failures(struct shared_table *t, const struct shared_key *key);

/* POP3 sessions, in all and per address: anything but SHARED_ENTER_OK (and
 * nothing counted) when a limit is reached. */
enum shared_enter { SHARED_ENTER_OK, SHARED_ENTER_TOTAL, SHARED_ENTER_KEY };
enum shared_enter shared_session_enter(struct shared_table *t, const struct shared_key *key,
				       unsigned per_key_limit, unsigned total_limit);
void shared_session_leave(struct shared_table *t, const struct shared_key *key);
/* After a worker died without cleaning up: forget every session count (the
 * survivors' sessions are then undercounted until they end). */
void shared_reset_sessions(struct shared_table *t);

/* LOGIN-DELAY: true if delay_s passed since the last recorded login; with
 * record, this login is recorded too. */
bool shared_login_allowed(struct shared_table *t, const struct shared_key *key, time_t now,
			  unsigned delay_s, bool record);

#endif
