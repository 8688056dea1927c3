/*
 * fetch.h - fetching one account: sessions, the message plan (new, known,
 * too big, to delete), pipelined RETR into the destination, the UIDL store,
 * DELE only for what is durable and recorded, QUIT to commit (clients.md B).
 */
#ifndef PIGEON_FETCH_H
#define PIGEON_FETCH_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "client/account.h"
#include "client/status.h"

struct fetch_options {
	bool check;     /* count what waits, download nothing */
	bool probe;     /* describe the server, log in to nothing */
	bool verbose;   /* protocol dialogue on stderr (secrets hidden) */
	bool progress;  /* progress line on the terminal */
	bool quiet;
};

struct fetch_result {
	enum fetch_status status;
	unsigned listed;          /* messages on the server */
	unsigned waiting;         /* new ones */
	uint64_t waiting_bytes;
	unsigned fetched;
	uint64_t bytes;
	unsigned deleted;
	unsigned skipped;         /* over max_size */
	unsigned failed;          /* not delivered (destination refused) */
	unsigned sessions;
	double seconds;
	char message[1536];       /* why it failed, or a note */
};

/* Set by the first SIGINT: request no more messages; receive what was
 * requested, commit it (DELE), QUIT, stop. */
extern volatile sig_atomic_t fetch_interrupted;
/* Set by the second SIGINT: give up the transfer in progress at once (the
 * message being received is discarded, nothing is deleted, no QUIT). */
extern volatile sig_atomic_t fetch_aborted;

enum fetch_status fetch_account(const struct account *a, const struct fetch_options *o,
				struct fetch_result *r);

#endif
