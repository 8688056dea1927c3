/* worker.c - a pigeond worker: privileges dropped, one event loop. */
#include "server/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "auth/passwd_file.h"
#include "common/log.h"
#include "server/conn.h"
#include "server/privs.h"
#include "server/workpool.h"

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	(void)l;
	struct listener *li = arg;
	conn_accept(li->srv, li, fd, sa, (socklen_t)socklen);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	(void)l;
	struct listener *li = arg;
	/* EMFILE and friends: log and keep going; the listener stays armed. */
	log_error("accept on %s: %s", li->name, strerror(errno));
}

static void close_listeners(struct server *srv)
{
	for (size_t i = 0; i < srv->n_listeners; i++) {
		if (srv->listeners[i].ev != NULL) {
			evconnlistener_free(srv->listeners[i].ev); /* closes our copy */
			srv->listeners[i].ev = NULL;
		}
	}
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	(void)what;
	log_info("worker: signal %d, closing %u connections (POP3 sessions commit nothing; "
		 "deliveries under way finish first)",
		 (int)sig, srv->n_sessions);
	srv->stopping = true;
	close_listeners(srv);
	conn_close_all(srv);
	event_base_loopexit(srv->base, NULL);
}

static void graceful_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	(void)sig;
	(void)what;
	log_info("worker: finishing %u open sessions, accepting no more", srv->n_sessions);
	srv->stopping = true;
	close_listeners(srv);
	if (srv->n_sessions == 0)
		event_base_loopexit(srv->base, NULL);
	/* else conn.c ends the loop when the last session closes */
}

int worker_main(struct server *srv)
{
	pid_t master = getppid();
	sigset_t all;
	sigfillset(&all);
	sigprocmask(SIG_UNBLOCK, &all, NULL);
	signal(SIGPIPE, SIG_IGN);

	char err[256];
	if (privs_drop(srv->cfg->user, srv->cfg->group, err, sizeof(err)) < 0) {
		log_error("worker: %s", err);
		return 1;
	}
	/* Die with the master: an orphaned worker would hold the ports. (Set
	 * after the credential change, which clears it.) */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != master)
		return 1; /* the master is already gone */
	srv->base = event_base_new();
	if (srv->base == NULL)
		return 1;
	srv->users = passwd_db_new(srv->cfg->passwd_file);
	srv->pool = workpool_new(srv->base, srv->cfg->worker_threads);
	if (srv->pool == NULL)
		return 1;
	for (size_t i = 0; i < srv->n_listeners; i++) {
		struct listener *li = &srv->listeners[i];
		li->srv = srv;
		li->ev = evconnlistener_new(srv->base, accept_cb, li,
					    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, li->fd);
		if (li->ev == NULL) {
			log_error("worker: cannot use listener %s", li->name);
			return 1;
		}
		evconnlistener_set_error_cb(li->ev, accept_error_cb);
	}
	struct event *sigs[3] = {
		evsignal_new(srv->base, SIGTERM, stop_cb, srv),
		evsignal_new(srv->base, SIGINT, stop_cb, srv),
		evsignal_new(srv->base, SIGQUIT, graceful_cb, srv),
	};
	for (unsigned i = 0; i < 3; i++)
		event_add(sigs[i], NULL);
	log_debug("worker %ld serving", (long)getpid());

	event_base_dispatch(srv->base);

	/* The loop is over and this process is leaving: a further stop signal
	 * (the master's shutdown racing a graceful exit) must not kill it in
	 * the middle of its cleanup, once freeing the signal events below
	 * restores the default actions. The master still bounds the wait. */
	signal(SIGTERM, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	/* Let in-flight jobs finish and free their sessions. */
	workpool_free(srv->pool);
	close_listeners(srv);
	for (unsigned i = 0; i < 3; i++)
		event_free(sigs[i]);
	passwd_db_free(srv->users);
	event_base_free(srv->base);
	return 0;
}
