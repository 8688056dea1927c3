/*
 * conn.h - one client connection: the libevent glue between a socket and the
 * POP3 core. Line framing, back-pressure, streaming RETR/TOP through the
 * transform, timeouts, jobs on the worker pool, and the session log line.
 */
#ifndef PIGEON_CONN_H
#define PIGEON_CONN_H

#include <sys/socket.h>

struct server;

/* Take over an accepted socket. */
void conn_accept(struct server *srv, int fd, const struct sockaddr *peer, socklen_t peerlen);
/* Drop every connection (server shutdown). Nothing is committed. */
void conn_close_all(struct server *srv);

#endif
