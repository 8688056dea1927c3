/*
 * server.h - pigeond's process-wide state, shared by the listeners, the
 * connections and the login jobs. One event loop owns all of it; the worker
 * threads only touch what login.c documents as thread-safe.
 */
#ifndef PIGEON_SERVER_H
#define PIGEON_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/config.h"
#include "pop3/session.h"

struct event_base;
struct evconnlistener;
struct passwd_db;
struct workpool;
struct login_delays;
struct conn;

struct server {
	struct event_base *base;
	struct config *cfg;
	struct pop3_settings pop3;
	struct passwd_db *users;
	struct workpool *pool;
	struct login_delays *delays;
	struct evconnlistener **listeners;
	size_t n_listeners;
	struct conn *conns; /* every open session */
	unsigned n_sessions;
	char hostname[256];
	uint64_t counter;   /* for APOP timestamps */
	bool stopping;
};

#endif
