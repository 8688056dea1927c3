/* master.c - listeners, TLS contexts, worker supervision, reload. */
#include "server/master.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "auth/sasl.h"
#include "common/log.h"
#include "common/net.h"
#include "common/xmalloc.h"
#include "server/server.h"
#include "server/shared.h"
#include "server/worker.h"
#include "tls/tls.h"

#define SHARED_SLOTS 65536
#define MAX_WORKERS 256

/* One generation of workers: what they were started with. */
struct generation {
	struct config *cfg;
	struct tls_server *tls;
	struct listener *listeners;
	size_t n_listeners;
	pid_t pids[MAX_WORKERS];
	unsigned n_workers;
	unsigned alive;
};

static struct shared_table *shared;
static unsigned char secret[32];
static struct master *the_master; /* for the child to close other generations */

/* ---- listeners ---------------------------------------------------------- */

/* A Unix socket for LMTP: remove a stale socket (never another kind of
 * file), bind, then give it the owner and mode the MTA needs (Postfix runs
 * its lmtp client as postfix). */
static int bind_unix(int fd, const struct net_addr *a, const struct config *cfg)
{
	const struct sockaddr_un *sun = (const struct sockaddr_un *)&a->ss;
	struct stat sb;
	if (lstat(sun->sun_path, &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode)) {
			errno = EEXIST;
			return -1;
		}
		unlink(sun->sun_path);
	}
	mode_t old = umask(0177);
	int rc = bind(fd, (const struct sockaddr *)sun, a->len);
	umask(old);
	if (rc < 0)
		return -1;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	if (cfg->lmtp_socket_user[0] != '\0') {
		struct passwd *pw = getpwnam(cfg->lmtp_socket_user);
		if (pw == NULL) {
			log_error("[lmtp] socket_user %s does not exist", cfg->lmtp_socket_user);
			errno = EINVAL;
			return -1;
		}
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	}
	if (cfg->lmtp_socket_group[0] != '\0') {
		struct group *gr = getgrnam(cfg->lmtp_socket_group);
		if (gr == NULL) {
			log_error("[lmtp] socket_group %s does not exist", cfg->lmtp_socket_group);
			errno = EINVAL;
			return -1;
		}
		gid = gr->gr_gid;
	}
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(sun->sun_path, uid, gid) < 0)
		return -1;
	return chmod(sun->sun_path, (mode_t)cfg->lmtp_socket_mode);
}

static int open_listener(const struct net_addr *a, enum listener_kind kind,
			 const struct config *cfg, struct listener *out)
{
	static const char *const what[] = {"POP3", "POP3S (implicit TLS)", "LMTP"};
	const struct sockaddr *sa = (const struct sockaddr *)&a->ss;
	memset(out, 0, sizeof(*out));
	out->kind = kind;
	net_format_addr(sa, out->name, sizeof(out->name));
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	int one = 1;
	if (sa->sa_family != AF_UNIX)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	int rc = sa->sa_family == AF_UNIX ? bind_unix(fd, a, cfg) : bind(fd, sa, a->len);
	if (rc < 0 || listen(fd, 1024) < 0) {
		int err = errno;
		close(fd);
		errno = err;
		goto fail;
	}
	out->fd = fd;
	log_info("listening for %s on %s", what[kind], out->name);
	return 0;
fail:
	log_error("cannot listen on %s: %s", out->name, strerror(errno));
	return -1;
}

static bool same_addr(const struct net_addr *a, const struct net_addr *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* The i-th configured listener, over all kinds. */
static const struct net_addr *nth_addr(const struct config *cfg, size_t i, enum listener_kind *kind)
{
	if (i < cfg->n_pop3_listen) {
		*kind = LISTENER_POP3;
		return &cfg->pop3_listen[i];
	}
	i -= cfg->n_pop3_listen;
	if (i < cfg->n_pop3s_listen) {
		*kind = LISTENER_POP3S;
		return &cfg->pop3s_listen[i];
	}
	*kind = LISTENER_LMTP;
	return &cfg->lmtp_listen[i - cfg->n_pop3s_listen];
}

static size_t n_addrs(const struct config *cfg)
{
	return cfg->n_pop3_listen + cfg->n_pop3s_listen + cfg->n_lmtp_listen;
}

/* Open the configured listeners, reusing those of prev that did not change. */
static int open_listeners(struct generation *g, const struct generation *prev)
{
	const struct config *cfg = g->cfg;
	size_t n = n_addrs(cfg);
	g->listeners = xcalloc(n ? n : 1, sizeof(struct listener));
	for (size_t i = 0; i < n; i++) {
		enum listener_kind kind, pkind;
		const struct net_addr *a = nth_addr(cfg, i, &kind);
		struct listener *li = &g->listeners[g->n_listeners];
		bool reused = false;
		for (size_t j = 0; prev != NULL && j < prev->n_listeners; j++) {
			const struct net_addr *pa = nth_addr(prev->cfg, j, &pkind);
			if (pkind == kind && same_addr(a, pa)) {
				*li = prev->listeners[j];
				li->fd = dup(prev->listeners[j].fd);
				reused = li->fd >= 0;
				break;
			}
		}
		if (!reused && open_listener(a, kind, cfg, li) < 0)
			return -1;
		g->n_listeners++;
	}
	return 0;
}

#define MAX_OLD 16

struct master {
	struct generation *current;
	struct generation *old[MAX_OLD]; /* finishing their sessions after a reload */
	bool stopping;
	int status;
	time_t respawn_window;
	unsigned respawns;
	bool give_up;
};

/* ---- generations ------------------------------------------------------- */

static void free_generation(struct generation *g)
{
	if (g == NULL)
		return;
	for (size_t i = 0; i < g->n_listeners; i++)
		close(g->listeners[i].fd);
	free(g->listeners);
	tls_server_free(g->tls);
	if (g->cfg != NULL) {
		config_free(g->cfg);
		free(g->cfg);
	}
	free(g);
}

/* As root, the workers must be able to become [server] user: find out now,
 * not after forking them. */
static int check_user(const struct config *cfg)
{
	if (geteuid() != 0)
		return 0;
	struct passwd *pw = cfg->user[0] ? getpwnam(cfg->user) : NULL;
	if (pw == NULL) {
		log_error("%s: [server] user '%s' does not exist; pigeond will not serve clients "
			  "as root",
			  cfg->path, cfg->user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		log_error("%s: [server] user %s is root: refusing to serve clients as root",
			  cfg->path, cfg->user);
		return -1;
	}
	if (cfg->group[0] != '\0' && getgrnam(cfg->group) == NULL) {
		log_error("%s: [server] group %s does not exist", cfg->path, cfg->group);
		return -1;
	}
	return 0;
}

static struct generation *prepare(struct config *cfg, const struct generation *prev)
{
	struct generation *g = xcalloc(1, sizeof(*g));
	g->cfg = cfg;
	if (check_user(cfg) < 0)
		goto fail;
	if (config_has_tls(cfg)) {
		char err[768];
		g->tls = tls_server_from_config(cfg, err, sizeof(err));
		if (g->tls == NULL) {
			log_error("%s: [tls] %s", cfg->path, err);
			goto fail;
		}
	}
	if (open_listeners(g, prev) < 0)
		goto fail;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	g->n_workers = cfg->workers ? cfg->workers : (unsigned)(cpus > 0 ? cpus : 1);
	if (g->n_workers > MAX_WORKERS)
		g->n_workers = MAX_WORKERS;
	return g;
fail:
	g->cfg = NULL; /* the caller still owns cfg */
	free_generation(g);
	return NULL;
}

/* [auth] mechanisms (checked by config_validate) as a bit mask. */
static unsigned mechanism_mask(const struct config *cfg)
{
	unsigned mask = cfg->cram_md5 ? 1u << SASL_MECH_CRAM_MD5 : 0;
	char *copy = xstrdup(cfg->mechanisms), *save = NULL;
	for (char *m = strtok_r(copy, " ,\t", &save); m; m = strtok_r(NULL, " ,\t", &save)) {
		int id = sasl_mech_by_name(m, strlen(m));
		if (id >= 0)
			mask |= 1u << id;
	}
	free(copy);
	return mask;
}

static pid_t spawn(struct generation *g)
{
	pid_t pid = fork();
	if (pid != 0) {
		if (pid < 0)
			log_error("cannot start a worker: %s", strerror(errno));
		return pid;
	}
	/* The listening sockets of other generations are not ours to hold. */
	struct generation *gens[MAX_OLD + 1] = {the_master->current};
	memcpy(gens + 1, the_master->old, sizeof(the_master->old));
	for (unsigned gi = 0; gi <= MAX_OLD; gi++)
		for (size_t i = 0; gens[gi] != NULL && gens[gi] != g && i < gens[gi]->n_listeners; i++)
			close(gens[gi]->listeners[i].fd);
	struct server srv = {0};
	srv.cfg = g->cfg;
	srv.tls = g->tls;
	srv.shared = shared;
	srv.listeners = g->listeners;
	srv.n_listeners = g->n_listeners;
	memcpy(srv.secret, secret, sizeof(secret));
	const struct config *cfg = g->cfg;
	srv.pop3 = (struct pop3_settings){
		.greeting = cfg->greeting,
		.implementation = cfg->implementation,
		.login_delay = cfg->login_delay,
		.expire = cfg->expire,
		.max_bad_commands = cfg->max_bad_commands,
		.max_auth_failures = cfg->max_auth_failures,
		.apop = cfg->apop,
		.mechanisms = mechanism_mask(cfg),
		.stls = g->tls != NULL && cfg->stls,
	};
	if (gethostname(srv.hostname, sizeof(srv.hostname) - 1) < 0)
		snprintf(srv.hostname, sizeof(srv.hostname), "localhost");
	srv.lmtp = (struct lmtp_settings){
		.hostname = srv.hostname,
		.max_message_size = cfg->max_message_size,
		.max_recipients = cfg->lmtp_max_recipients,
		.max_bad_commands = cfg->max_bad_commands,
	};
	int rc = worker_main(&srv);
	/* Free what the child inherited, so leak checkers see a clean exit. */
	struct generation *self = g;
	free_generation(self);
	shared_destroy(shared);
	exit(rc);
}

static void start_workers(struct generation *g)
{
	for (unsigned i = 0; i < g->n_workers; i++) {
		g->pids[i] = spawn(g);
		if (g->pids[i] > 0)
			g->alive++;
	}
}

static void signal_workers(struct generation *g, int sig)
{
	for (unsigned i = 0; g != NULL && i < g->n_workers; i++)
		if (g->pids[i] > 0)
			kill(g->pids[i], sig);
}

/* ---- the supervisor loop -------------------------------------------------- */

/* A worker ended: forget it; restart it if it should not have ended. */
static void reap(struct master *m)
{
	int wstatus;
	pid_t pid;
	while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
		bool clean = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
		/* During shutdown, a worker ended by the SIGTERM we sent it
		 * did what it was told. */
		if (m->stopping && WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGTERM)
			clean = true;
		struct generation *gens[MAX_OLD + 1] = {m->current};
		memcpy(gens + 1, m->old, sizeof(m->old));
		for (unsigned gi = 0; gi <= MAX_OLD; gi++) {
			struct generation *g = gens[gi];
			for (unsigned i = 0; g != NULL && i < g->n_workers; i++) {
				if (g->pids[i] != pid)
					continue;
				g->pids[i] = 0;
				g->alive--;
				if (!clean) {
					if (WIFSIGNALED(wstatus))
						log_error("worker %ld killed by signal %d", (long)pid,
							  WTERMSIG(wstatus));
					else
						log_error("worker %ld exited with status %d", (long)pid,
							  WEXITSTATUS(wstatus));
					m->status = 1;
					/* Its sessions are gone; their per-address counts
					 * must not stay taken. */
					shared_reset_sessions(shared);
				}
				if (g == m->current && !m->stopping && !clean) {
					time_t now = time(NULL);
					if (now - m->respawn_window > 60) {
						m->respawn_window = now;
						m->respawns = 0;
					}
					if (++m->respawns <= 10) {
						g->pids[i] = spawn(g);
						if (g->pids[i] > 0)
							g->alive++;
					} else {
						/* Failing again and again: better to stop
						 * than to hold the ports and serve nobody. */
						log_error("workers keep failing; stopping");
						m->give_up = true;
					}
				}
			}
		}
	}
	for (unsigned i = 0; i < MAX_OLD; i++) {
		if (m->old[i] != NULL && m->old[i]->alive == 0) {
			free_generation(m->old[i]);
			m->old[i] = NULL;
		}
	}
}

static void reload(struct master *m)
{
	const char *path = m->current->cfg->path;
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	char err[768];
	config_defaults(cfg);
	if (config_load(cfg, path, err, sizeof(err)) < 0) {
		log_error("reload refused, keeping the running configuration: %s", err);
		config_free(cfg);
		free(cfg);
		return;
	}
	struct generation *g = prepare(cfg, m->current);
	if (g == NULL) {
		log_error("reload refused, keeping the running configuration");
		config_free(cfg);
		free(cfg);
		return;
	}
	unsigned slot = 0;
	while (slot < MAX_OLD && m->old[slot] != NULL)
		slot++;
	if (slot == MAX_OLD) {
		log_error("reload refused: too many older workers still finishing sessions");
		free_generation(g);
		return;
	}
	log_set_level(cfg->log_level);
	start_workers(g);
	m->old[slot] = m->current;
	signal_workers(m->old[slot], SIGQUIT);
	m->current = g;
	log_info("reloaded %s: new workers started, old ones finish their sessions", path);
}

static void shutdown_all(struct master *m)
{
	m->stopping = true;
	signal_workers(m->current, SIGTERM);
	for (unsigned i = 0; i < MAX_OLD; i++)
		signal_workers(m->old[i], SIGTERM);
	/* Bounded wait, then force. */
	for (int tick = 0; tick < 200; tick++) {
		reap(m);
		bool any = m->current->alive > 0;
		for (unsigned i = 0; i < MAX_OLD; i++)
			any = any || m->old[i] != NULL;
		if (!any)
			return;
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	log_error("workers did not stop within 10 s; killing them");
	signal_workers(m->current, SIGKILL);
	for (unsigned i = 0; i < MAX_OLD; i++)
		signal_workers(m->old[i], SIGKILL);
	while (waitpid(-1, NULL, 0) > 0)
		;
	m->status = 1;
}

int master_run(struct config *cfg, bool foreground)
{
	struct master m = {0};
	the_master = &m;
	sigset_t set;
	sigemptyset(&set);
	int sigs[] = {SIGCHLD, SIGHUP, SIGTERM, SIGINT, SIGQUIT};
	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaddset(&set, sigs[i]);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	RAND_bytes(secret, sizeof(secret));
	m.current = prepare(cfg, NULL);
	if (m.current == NULL) {
		config_free(cfg);
		free(cfg);
		return 78;
	}
	shared = shared_create(SHARED_SLOTS);
	if (shared == NULL) {
		free_generation(m.current);
		return 1;
	}
	if (!foreground) {
		if (daemon(0, 0) < 0) {
			log_error("cannot daemonize: %s", strerror(errno));
			free_generation(m.current);
			return 1;
		}
		log_init("pigeond", false, cfg->log_level);
	}
	start_workers(m.current);
	log_info("pigeond %s ready: %u workers", PIGEON_VERSION, m.current->n_workers);

	while (!m.stopping) {
		int sig;
		if (sigwait(&set, &sig) != 0)
			continue;
		switch (sig) {
		case SIGCHLD:
			reap(&m);
			if (m.give_up)
				shutdown_all(&m);
			break;
		case SIGHUP:
			reload(&m);
			break;
		default:
			log_info("signal %d: shutting down", sig);
			shutdown_all(&m);
			break;
		}
	}
	for (unsigned i = 0; i < MAX_OLD; i++)
		free_generation(m.old[i]);
	free_generation(m.current);
	shared_destroy(shared);
	return m.status;
}
