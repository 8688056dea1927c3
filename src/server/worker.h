/* worker.h - one pigeond worker process: drops privileges, then serves
 * clients on the listening sockets the master opened, until told to stop. */
#ifndef PIGEON_WORKER_H
#define PIGEON_WORKER_H

#include "server/server.h"

/*
 * Runs in a child of the master; never returns to the master's code.
 * srv holds the configuration, listeners (fds), TLS contexts, shared table
 * and secret the master prepared. Returns the process exit status.
 *   SIGTERM/SIGINT: drop every session (nothing is committed) and exit.
 *   SIGQUIT: stop accepting, let open sessions finish, then exit (reload).
 */
int worker_main(struct server *srv);

#endif
