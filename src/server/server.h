/*
 * server.h - the state of one pigeond worker process, shared by its
 * listeners, connections and login jobs. One event loop owns all of it; the
 * worker threads only touch what login.c documents as thread-safe.
 */
#ifndef PIGEON_SERVER_H
#define PIGEON_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/config.h"
#include "lmtp/lmtp.h"
#include "pop3/session.h"

struct event_base;
struct evconnlistener;
struct passwd_db;
struct workpool;
struct shared_table;
struct tls_server;
struct conn;
struct lmtp_conn;

enum listener_kind {
	LISTENER_POP3,  /* plain, STLS offered when TLS is configured */
	LISTENER_POP3S, /* implicit TLS (RFC 8314) */
	LISTENER_LMTP,  /* RFC 2033, TCP or a Unix socket */
};

struct listener {
	int fd;
	enum listener_kind kind;
	char name[64];                 /* "127.0.0.1:110", for logs */
	struct evconnlistener *ev;     /* in a worker */
	struct server *srv;
};

struct server {
	struct event_base *base;
	const struct config *cfg;
	struct pop3_settings pop3;
	struct lmtp_settings lmtp;
	struct tls_server *tls;        /* NULL when [tls] is not configured */
	struct passwd_db *users;
	struct workpool *pool;
	struct shared_table *shared;
	struct listener *listeners;
	size_t n_listeners;
	struct conn *conns;            /* every open POP3 session */
	struct lmtp_conn *lmtp_conns;  /* every open LMTP session */
	unsigned n_sessions;           /* both kinds */
	char hostname[256];
	uint64_t counter;              /* for APOP timestamps */
	unsigned char secret[32];      /* for stand-in SCRAM salts of unknown users */
	bool stopping;                 /* graceful stop: no new sessions */
};

#endif
