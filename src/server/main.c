/*
 * main.c - pigeond: load the configuration, open the listeners, run one
 * event loop over every session until SIGTERM/SIGINT.
 *
 *   pigeond [-f] [-c FILE]
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "auth/passwd_file.h"
#include "common/config.h"
#include "common/log.h"
#include "common/net.h"
#include "common/xmalloc.h"
#include "server/conn.h"
#include "server/login.h"
#include "server/server.h"
#include "server/workpool.h"

#define DEFAULT_CONFIG "/etc/pigeon/pigeon.conf"

static void usage(FILE *out)
{
	fprintf(out, "usage: pigeond [-f] [-c FILE]\n"
		     "  -c FILE  configuration file (default " DEFAULT_CONFIG ")\n"
		     "  -f       stay in the foreground and log to stderr\n"
		     "  -V       print the version\n");
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	(void)l;
	conn_accept(arg, fd, sa, (socklen_t)socklen);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	(void)l;
	(void)arg;
	/* EMFILE and friends: log and keep going; the listener stays armed. */
	log_error("accept: %s", strerror(errno));
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	(void)what;
	log_info("signal %d: shutting down (%u sessions dropped, nothing committed)", (int)sig,
		 srv->n_sessions);
	srv->stopping = true;
	for (size_t i = 0; i < srv->n_listeners; i++)
		evconnlistener_disable(srv->listeners[i]);
	conn_close_all(srv);
	event_base_loopexit(srv->base, NULL);
}

static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	log_info("SIGHUP: nothing to reload (the passwd-file is re-read when it changes)");
}

static int open_listeners(struct server *srv)
{
	const struct config *cfg = srv->cfg;
	srv->listeners = xcalloc(cfg->n_pop3_listen, sizeof(*srv->listeners));
	for (size_t i = 0; i < cfg->n_pop3_listen; i++) {
		const struct net_addr *a = &cfg->pop3_listen[i];
		char name[INET6_ADDRSTRLEN + 8];
		net_format_addr((const struct sockaddr *)&a->ss, name, sizeof(name));
		struct evconnlistener *l = evconnlistener_new_bind(
			srv->base, accept_cb, srv,
			LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC |
				(a->ss.ss_family == AF_INET6 ? LEV_OPT_BIND_IPV6ONLY : 0),
			1024, (const struct sockaddr *)&a->ss, (int)a->len);
		if (l == NULL) {
			log_error("cannot listen on %s: %s", name, strerror(errno));
			return -1;
		}
		evconnlistener_set_error_cb(l, accept_error_cb);
		srv->listeners[srv->n_listeners++] = l;
		log_info("listening for POP3 on %s", name);
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG;
	bool foreground = false;
	int opt;
	while ((opt = getopt(argc, argv, "c:fhV")) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 'V':
			printf("pigeond %s\n", PIGEON_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	struct config cfg;
	char err[512];
	config_defaults(&cfg);
	if (config_load(&cfg, config_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "pigeond: %s\n", err);
		config_free(&cfg);
		return 78; /* EX_CONFIG */
	}
	log_init("pigeond", true, cfg.log_level);

	struct server srv = {0};
	srv.cfg = &cfg;
	srv.pop3 = (struct pop3_settings){
		.greeting = cfg.greeting,
		.implementation = cfg.implementation,
		.login_delay = cfg.login_delay,
		.expire = cfg.expire,
		.max_bad_commands = cfg.max_bad_commands,
		.max_auth_failures = cfg.max_auth_failures,
		.apop = cfg.apop,
		.stls = false,
	};
	if (gethostname(srv.hostname, sizeof(srv.hostname) - 1) < 0)
		snprintf(srv.hostname, sizeof(srv.hostname), "localhost");
	signal(SIGPIPE, SIG_IGN);

	int rc = 1;
	srv.base = event_base_new();
	if (srv.base == NULL || open_listeners(&srv) < 0)
		goto out;
	if (access(cfg.passwd_file, R_OK) < 0)
		log_warning("passwd-file %s: %s (every login will fail until it is readable)",
			    cfg.passwd_file, strerror(errno));
	if (!foreground) {
		if (daemon(0, 0) < 0) {
			log_error("cannot daemonize: %s", strerror(errno));
			goto out;
		}
		log_init("pigeond", false, cfg.log_level);
		event_reinit(srv.base);
	}
	srv.users = passwd_db_new(cfg.passwd_file);
	srv.delays = login_delays_new(cfg.login_delay);
	srv.pool = workpool_new(srv.base, cfg.worker_threads);
	if (srv.pool == NULL)
		goto out;

	struct event *sigs[3] = {
		evsignal_new(srv.base, SIGTERM, stop_cb, &srv),
		evsignal_new(srv.base, SIGINT, stop_cb, &srv),
		evsignal_new(srv.base, SIGHUP, hup_cb, &srv),
	};
	for (unsigned i = 0; i < 3; i++)
		event_add(sigs[i], NULL);
	log_info("pigeond %s ready", PIGEON_VERSION);
	event_base_dispatch(srv.base);
	/* Let in-flight jobs finish and free their sessions. */
	workpool_free(srv.pool);
	srv.pool = NULL;
	for (unsigned i = 0; i < 3; i++)
		event_free(sigs[i]);
	rc = 0;
out:
	workpool_free(srv.pool);
	for (size_t i = 0; i < srv.n_listeners; i++)
		evconnlistener_free(srv.listeners[i]);
	free(srv.listeners);
	login_delays_free(srv.delays);
	passwd_db_free(srv.users);
	if (srv.base)
		event_base_free(srv.base);
	config_free(&cfg);
	return rc;
}
