/*
 * lmtp_conn.h - one LMTP client (an MTA): the libevent glue between a socket
 * and the LMTP core. Recipient lookups and the final fsync/rename of each
 * copy run on the worker threads; message bytes are written to the
 * recipients' tmp/ files as they arrive, so memory never holds a message.
 */
#ifndef PIGEON_LMTP_CONN_H
#define PIGEON_LMTP_CONN_H

#include <sys/socket.h>

struct server;
struct listener;

void lmtp_conn_accept(struct server *srv, struct listener *li, int fd,
		      const struct sockaddr *peer, socklen_t peerlen);
/* Server shutdown: 421 to every LMTP client, nothing half-delivered. */
void lmtp_conn_close_all(struct server *srv);

#endif
