/*
 * conn.h - one client connection: the libevent glue between a socket (plain,
 * implicit TLS, or upgraded by STLS) and the POP3 core. Line framing,
 * back-pressure, streaming RETR/TOP through the transform, timeouts, jobs on
 * the worker pool, brute-force delays, and the session log line.
 */
#ifndef PIGEON_CONN_H
#define PIGEON_CONN_H

#include <sys/socket.h>

struct server;
struct listener;

/* Take over an accepted socket. */
void conn_accept(struct server *srv, struct listener *li, int fd, const struct sockaddr *peer,
		 socklen_t peerlen);
/* Drop every connection (server shutdown). Nothing is committed. */
void conn_close_all(struct server *srv);

#endif
