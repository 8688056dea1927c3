/*
 * master.h - pigeond's master process.
 *
 *        root                             unprivileged ([server] user)
 *   +-------------+   fork, listening   +--------------------------------+
 *   |   master    | ------------------> | worker 1..N: event loop,       |
 *   | config, TLS |   sockets, TLS ctx, | sessions, worker threads       |
 *   | listeners,  |   shared table      +--------------------------------+
 *   | signals     |                        ^ shared memory: penalties,
 *   +-------------+                        | sessions per IP, LOGIN-DELAY
 *
 * The master never reads a byte from a client. It binds the ports and reads
 * the certificates as root, forks the workers (which drop privileges first
 * thing), restarts a worker that dies, and on SIGHUP reads the configuration
 * and certificates again and replaces the workers: the old ones stop
 * accepting and finish their open sessions, the new ones take new clients.
 */
#ifndef PIGEON_MASTER_H
#define PIGEON_MASTER_H

#include <stdbool.h>

#include "common/config.h"

/* Takes ownership of cfg. Returns the process exit status. */
int master_run(struct config *cfg, bool foreground);

#endif
