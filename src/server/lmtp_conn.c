/*
 * lmtp_conn.c - from accept to close for one LMTP client.
 *
 *   RCPT       -> job: find the user and maildrop, check the quota
 *   DATA       -> open tmp/ files, one per accepted recipient, with trace
 *                 headers; each line of message text is appended to all
 *   final "."  -> job: fsync, rename into new/, fsync new/ for each copy;
 *                 then one reply per recipient (RFC 2033 §4.2)
 *
 * Nothing is acknowledged before it is durable; a dropped connection or a
 * shutdown removes the tmp/ files and acknowledges nothing. A shutdown while
 * the final store job runs lets it finish and sends its real replies before
 * the 421: the message is committed either way, and a 421 would make the MTA
 * deliver it twice.
 */
#include "server/lmtp_conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/rand.h>

#include "auth/passwd_file.h"
#include "common/bounds.h"
#include "common/log.h"
#include "common/net.h"
#include "common/xmalloc.h"
#include "deliver/deliver.h"
#include "deliver/maildir_deliver.h"
#include "lmtp/lmtp.h"
#include "server/framing.h"
#include "server/server.h"
#include "server/workpool.h"

struct rcpt_job {
	struct work work;
	struct lmtp_conn *conn;
	char *address;
	uint64_t declared_size;
	struct deliver_target target;
	enum lmtp_rcpt_result result;
};

struct copy {
	struct deliver_target target;
	struct maildir_delivery file;
	bool open;                    /* a tmp/ file is being written */
	enum lmtp_store_result result; /* when it could not be opened */
};

struct store_job {
	struct work work;
	struct lmtp_conn *conn;
	struct copy *copies;
	size_t n;
	bool discard;
	bool quota_tempfail;
	enum lmtp_store_result *results;
};

struct lmtp_conn {
	struct server *srv;
	struct listener *listener;
	struct lmtp_conn *prev, *next;
	struct bufferevent *bev;
	struct lmtp_session *session;
	char peer[INET6_ADDRSTRLEN + 8];
	struct timespec started;
	struct buf line;
	struct framer framer;
	bool eof;
	bool closing;
	bool closed;
	bool shutdown;                /* the server stops: close once the store job is done */
	/* the transaction */
	struct copy *copies;          /* one per accepted recipient */
	size_t n_copies;
	unsigned generation;          /* the core's transaction the copies belong to */
	struct rcpt_job *rcpt;
	struct store_job *store;
	unsigned delivered;           /* copies stored on this connection */
	char id[24];
};

static void process(struct lmtp_conn *c);

static struct evbuffer *output(struct lmtp_conn *c)
{
	return bufferevent_get_output(c->bev);
}

static void flush_session(struct lmtp_conn *c)
{
	struct buf *out = lmtp_session_output(c->session);
	if (out->len > 0) {
		evbuffer_add(output(c), out->data, out->len);
		buf_clear(out);
	}
}

static void drop_copies(struct lmtp_conn *c)
{
	for (size_t i = 0; i < c->n_copies; i++) {
		if (c->copies[i].open)
			maildir_delivery_abort(&c->copies[i].file);
		deliver_target_clear(&c->copies[i].target);
	}
	free(c->copies);
	c->copies = NULL;
	c->n_copies = 0;
}

static void conn_free(struct lmtp_conn *c)
{
	struct server *srv = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->lmtp_conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->n_sessions--;
	drop_copies(c);
	lmtp_session_free(c->session);
	buf_free(&c->line);
	free(c);
	if (srv->stopping && srv->n_sessions == 0)
		event_base_loopexit(srv->base, NULL);
}

static void conn_close(struct lmtp_conn *c, const char *reason)
{
	if (c->closed)
		return;
	c->closed = true;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	log_info("lmtp end: peer=%s delivered=%u duration=%.3fs reason=%s", c->peer, c->delivered,
		 (double)(now.tv_sec - c->started.tv_sec) +
			 (double)(now.tv_nsec - c->started.tv_nsec) / 1e9,
		 reason);
	bufferevent_free(c->bev);
	c->bev = NULL;
	if (c->rcpt == NULL && c->store == NULL)
		conn_free(c);
}

static void close_when_flushed(struct lmtp_conn *c, const char *reason)
{
	if (c->closing)
		return;
	c->closing = true;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(output(c)) == 0) {
		conn_close(c, reason);
		return;
	}
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
}

/* RSET or LHLO reset the transaction in the core: the copies prepared for
 * its recipients go too. */
static void follow_transaction(struct lmtp_conn *c)
{
	unsigned g = lmtp_session_generation(c->session);
	if (g != c->generation) {
		drop_copies(c);
		c->generation = g;
	}
}

/* ---- RCPT ------------------------------------------------------------------ */

static void rcpt_run(struct work *w)
{
	struct rcpt_job *job = (struct rcpt_job *)w;
	const struct config *cfg = job->conn->srv->cfg;
	int rc = deliver_resolve(job->conn->srv->users, cfg, job->address, &job->target);
	if (rc < 0) {
		job->result = LMTP_RCPT_TEMPFAIL;
		return;
	}
	if (rc == 0) {
		job->result = LMTP_RCPT_UNKNOWN;
		return;
	}
	/* RFC 1870 + Dovecot practice: a declared size over the quota fails early. */
	int over = deliver_over_quota(&job->target, job->declared_size);
	if (over > 0)
		job->result = cfg->quota_tempfail ? LMTP_RCPT_QUOTA_TEMP : LMTP_RCPT_QUOTA;
	else
		job->result = LMTP_RCPT_OK;
}

static void rcpt_done(struct work *w)
{
	struct rcpt_job *job = (struct rcpt_job *)w;
	struct lmtp_conn *c = job->conn;
	c->rcpt = NULL;
	if (c->closed) {
		deliver_target_clear(&job->target);
		free(job->address);
		free(job);
		conn_free(c);
		return;
	}
	follow_transaction(c);
	if (job->result == LMTP_RCPT_OK) {
		c->copies = xreallocarray(c->copies, c->n_copies + 1, sizeof(*c->copies));
		struct copy *cp = &c->copies[c->n_copies++];
		memset(cp, 0, sizeof(*cp));
		cp->target = job->target;
	} else {
		if (job->result == LMTP_RCPT_UNKNOWN)
			log_info("lmtp: peer=%s rcpt=<%s> unknown user", c->peer, job->address);
		deliver_target_clear(&job->target);
	}
	lmtp_session_rcpt_done(c->session, job->result);
	free(job->address);
	free(job);
	flush_session(c);
	process(c);
}

/* ---- DATA ---------------------------------------------------------------------- */

/* lmtp.md §6: 452 4.3.1 disk full, 452 4.2.2 mailbox full, 451 4.3.0 the rest. */
static enum lmtp_store_result store_result(enum deliver_status st, bool quota_tempfail)
{
	switch (st) {
	case DELIVER_OK:
		return LMTP_STORED;
	case DELIVER_NOSPACE:
		return LMTP_STORE_NOSPACE;
	case DELIVER_FULL:
		return LMTP_STORE_QUOTA_TEMP;
	case DELIVER_QUOTA:
		return quota_tempfail ? LMTP_STORE_QUOTA_TEMP : LMTP_STORE_QUOTA;
	case DELIVER_PERM:
		return LMTP_STORE_PERM;
	case DELIVER_TEMP:
	default:
		return LMTP_STORE_TEMPFAIL;
	}
}

static void data_begin(struct lmtp_conn *c)
{
	unsigned char rnd[6];
	RAND_bytes(rnd, sizeof(rnd));
	snprintf(c->id, sizeof(c->id), "%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3],
		 rnd[4], rnd[5]);
	for (size_t i = 0; i < c->n_copies; i++) {
		struct copy *cp = &c->copies[i];
		enum deliver_status st = maildir_delivery_begin(&cp->file, cp->target.maildir);
		if (st != DELIVER_OK) {
			maildir_delivery_abort(&cp->file);
			cp->result = store_result(st, c->srv->cfg->quota_tempfail);
			continue;
		}
		cp->open = true;
		struct buf hdr = BUF_INIT;
		const char *rcpt = lmtp_session_recipient(c->session, i);
		char peer[INET6_ADDRSTRLEN + 16];
		if (strcmp(c->peer, "unix") == 0)
			snprintf(peer, sizeof(peer), "local");
		else
			snprintf(peer, sizeof(peer), "[%s]", c->peer);
		struct trace_info tr = {
			.sender = lmtp_session_sender(c->session),
			.recipient = c->srv->cfg->delivered_to ? rcpt : NULL,
			.helo = lmtp_session_helo(c->session),
			.peer = peer,
			.protocol = "LMTP",
			.id = c->id,
		};
		deliver_trace_headers(&hdr, &tr);
		maildir_delivery_write(&cp->file, hdr.data, hdr.len);
		buf_free(&hdr);
	}
	lmtp_session_data_ready(c->session);
}

/* Hand the message text the core produced to every open copy. */
static void write_body(struct lmtp_conn *c)
{
	struct buf *body = lmtp_session_body(c->session);
	if (lmtp_session_discarding(c->session)) {
		/* Too big or malformed: free the disk now, refuse at the end. */
		for (size_t i = 0; i < c->n_copies; i++) {
			if (c->copies[i].open) {
				maildir_delivery_abort(&c->copies[i].file);
				c->copies[i].open = false;
			}
		}
	} else if (body->len > 0) {
		for (size_t i = 0; i < c->n_copies; i++)
			if (c->copies[i].open)
				maildir_delivery_write(&c->copies[i].file, body->data, body->len);
	}
	buf_clear(body);
}

static void store_run(struct work *w)
{
	struct store_job *job = (struct store_job *)w;
	long lock_budget_ms = DELIVER_LOCK_WAIT_MS; /* for all copies together */
	for (size_t i = 0; i < job->n; i++) {
		struct copy *cp = &job->copies[i];
		if (!cp->open) {
			job->results[i] = cp->result;
			continue;
		}
		if (job->discard) {
			maildir_delivery_abort(&cp->file);
			cp->open = false;
			job->results[i] = LMTP_STORE_TEMPFAIL; /* not used: the core answers */
			continue;
		}
		/* Quota check and publish under the maildrop's delivery lock. */
		enum deliver_status st = deliver_store(&cp->target, &cp->file, &lock_budget_ms);
		cp->open = false;
		job->results[i] = store_result(st, job->quota_tempfail);
	}
}

/*
 * The server stopped while this store job ran, and the event loop may be
 * over: send what is in the output buffer (the per-recipient replies and a
 * 421) directly, waiting at most a moment for room, then close.
 */
static void finish_shutdown(struct lmtp_conn *c)
{
	lmtp_session_shutdown(c->session);
	flush_session(c);
	/* The bufferevent's output is its own (a socket bufferevent freezes
	 * its start): copy the bytes out rather than drain them. */
	struct evbuffer *out = output(c);
	size_t len = evbuffer_get_length(out);
	const char *data = (const char *)evbuffer_pullup(out, -1);
	int fd = bufferevent_getfd(c->bev);
	for (int tries = 0; len > 0 && tries < 20; tries++) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			data += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			break;
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		poll(&pfd, 1, 100);
	}
	conn_close(c, "server shutdown");
}

static void store_done(struct work *w)
{
	struct store_job *job = (struct store_job *)w;
	struct lmtp_conn *c = job->conn;
	c->store = NULL;
	for (size_t i = 0; i < job->n; i++) {
		if (job->results[i] == LMTP_STORED && !job->discard) {
			c->delivered++;
			log_info("delivered: user=%s rcpt=<%s> from=<%s> size=%llu id=%s",
				 job->copies[i].target.user,
				 c->closed ? "?" : lmtp_session_recipient(c->session, i),
				 c->closed ? "?" : lmtp_session_sender(c->session),
				 (unsigned long long)job->copies[i].file.stored, c->id);
		}
	}
	if (!c->closed) {
		lmtp_session_data_done(c->session, job->results);
		c->generation = lmtp_session_generation(c->session);
	}
	for (size_t i = 0; i < job->n; i++)
		deliver_target_clear(&job->copies[i].target);
	free(job->copies);
	free(job->results);
	free(job);
	if (c->closed) {
		conn_free(c);
		return;
	}
	if (c->shutdown) {
		finish_shutdown(c);
		return;
	}
	flush_session(c);
	process(c);
}

static void data_end(struct lmtp_conn *c)
{
	struct store_job *job = xcalloc(1, sizeof(*job));
	job->work.run = store_run;
	job->work.done = store_done;
	job->conn = c;
	job->copies = c->copies; /* the job owns them now */
	job->n = c->n_copies;
	job->discard = lmtp_session_discarding(c->session);
	job->quota_tempfail = c->srv->cfg->quota_tempfail;
	job->results = xcalloc(job->n ? job->n : 1, sizeof(*job->results));
	for (size_t i = 0; i < job->n; i++) {
		/* A message that already went to this recipient is a loop. */
		if (lmtp_session_recipient_loops(c->session, i) && job->copies[i].open) {
			maildir_delivery_abort(&job->copies[i].file);
			job->copies[i].open = false;
			job->copies[i].result = LMTP_STORE_PERM; /* the core answers 5.4.6 */
		}
	}
	c->copies = NULL;
	c->n_copies = 0;
	c->store = job;
	/* data_done() resets the transaction: the copies are the job's now. */
	workpool_submit(c->srv->pool, &job->work);
}

/* ---- the request loop -------------------------------------------------------------- */

static bool handle_request(struct lmtp_conn *c)
{
	const struct lmtp_request *req = lmtp_session_request(c->session);
	switch (req->kind) {
	case LMTP_REQ_NONE:
		return true;
	case LMTP_REQ_RCPT: {
		if (c->rcpt != NULL)
			return false;
		struct rcpt_job *job = xcalloc(1, sizeof(*job));
		job->work.run = rcpt_run;
		job->work.done = rcpt_done;
		job->conn = c;
		job->address = xstrdup(req->address);
		job->declared_size = req->declared_size;
		c->rcpt = job;
		workpool_submit(c->srv->pool, &job->work);
		return false;
	}
	case LMTP_REQ_DATA_BEGIN:
		data_begin(c);
		flush_session(c);
		return handle_request(c);
	case LMTP_REQ_DATA_END:
		if (c->store == NULL)
			data_end(c);
		return false;
	case LMTP_REQ_CLOSE:
		close_when_flushed(c, "quit");
		return false;
	}
	return false;
}

static void process(struct lmtp_conn *c)
{
	if (c->closed)
		return;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	while (handle_request(c)) {
		if (c->closed)
			return;
		/* In DATA only CRLF ends a line: a bare LF (and so "\n.\n") is
		 * message text, never the end of the data (SMTP smuggling). */
		enum evbuffer_eol_style style =
			lmtp_session_in_data(c->session) ? EVBUFFER_EOL_CRLF_STRICT : EVBUFFER_EOL_CRLF;
		enum frame_result fr =
			frame_next(&c->framer, in, lmtp_session_line_limit(c->session), style, &c->line);
		if (fr == FRAME_NONE) {
			if (c->eof) {
				close_when_flushed(c, "client disconnected");
				return;
			}
			break;
		}
		if (fr == FRAME_OVERLONG)
			lmtp_session_input_overlong(c->session);
		else
			lmtp_session_input(c->session, c->line.data, c->line.len);
		follow_transaction(c);
		write_body(c);
		flush_session(c);
	}
}

static void read_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	process(arg);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct lmtp_conn *c = arg;
	(void)bev;
	if (c->closing) {
		if (evbuffer_get_length(output(c)) == 0)
			conn_close(c, "quit");
		return;
	}
	process(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct lmtp_conn *c = arg;
	(void)bev;
	if (what & BEV_EVENT_TIMEOUT) {
		/* RFC 5321 §4.5.3.2.7: at least 5 minutes; then 421 and close. */
		lmtp_session_shutdown(c->session);
		flush_session(c);
		close_when_flushed(c, "timeout");
		return;
	}
	if (what & BEV_EVENT_EOF) {
		c->eof = true;
		process(c);
		return;
	}
	conn_close(c, "connection error");
}

/* ---- accept -------------------------------------------------------------------------- */

void lmtp_conn_accept(struct server *srv, struct listener *li, int fd,
		      const struct sockaddr *peer, socklen_t peerlen)
{
	(void)peerlen;
	char host[INET6_ADDRSTRLEN + 8];
	if (peer->sa_family == AF_UNIX) {
		snprintf(host, sizeof(host), "unix");
	} else {
		net_format_host(peer, host, sizeof(host));
		/* LMTP has no authentication: only trusted networks may deliver. */
		bool trusted = false;
		for (size_t i = 0; i < srv->cfg->n_trusted_networks; i++)
			trusted = trusted || net_prefix_match(&srv->cfg->trusted_networks[i], peer);
		if (!trusted) {
			static const char msg[] = "554 5.7.1 Not allowed to deliver from your address\r\n";
			ssize_t ignored = send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)ignored;
			close(fd);
			log_warning("lmtp: refused %s on %s: not in [auth] trusted_networks", host,
				    li->name);
			return;
		}
	}
	if (srv->stopping || srv->n_sessions >= srv->cfg->max_sessions) {
		static const char msg[] = "421 4.3.2 Too many connections, try again later\r\n";
		ssize_t ignored = send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)ignored;
		close(fd);
		return;
	}
	if (peer->sa_family != AF_UNIX) {
		int one = 1; /* whole replies; no waiting for delayed ACKs */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	struct lmtp_conn *c = xcalloc(1, sizeof(*c));
	c->srv = srv;
	c->listener = li;
	snprintf(c->peer, sizeof(c->peer), "%s", host);
	clock_gettime(CLOCK_MONOTONIC, &c->started);
	c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	c->next = srv->lmtp_conns;
	if (srv->lmtp_conns)
		srv->lmtp_conns->prev = c;
	srv->lmtp_conns = c;
	srv->n_sessions++;
	c->session = lmtp_session_new(&srv->lmtp);
	c->generation = lmtp_session_generation(c->session);
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, LMTP_MAX_DATA_LINE * 2);
	struct timeval tv = {srv->cfg->lmtp_timeout_ms / 1000,
			     (srv->cfg->lmtp_timeout_ms % 1000) * 1000};
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	flush_session(c);
	log_debug("lmtp connect: peer=%s on %s", c->peer, li->name);
}

void lmtp_conn_close_all(struct server *srv)
{
	struct lmtp_conn *c = srv->lmtp_conns;
	while (c != NULL) {
		struct lmtp_conn *next = c->next;
		if (!c->closed && c->store != NULL) {
			/* The message is being committed and will be stored: a 421
			 * now would make the MTA send it again. The job's own replies
			 * go out when it is done, then 421 (finish_shutdown). */
			c->shutdown = true;
			bufferevent_disable(c->bev, EV_READ);
		} else if (!c->closed) {
			/* RFC 5321 §3.8: 421, acknowledge nothing unfinished. Sent
			 * directly, without blocking: the loop is about to end. */
			lmtp_session_shutdown(c->session);
			struct buf *out = lmtp_session_output(c->session);
			if (evbuffer_get_length(output(c)) == 0 && out->len > 0) {
				ssize_t ignored = send(bufferevent_getfd(c->bev), out->data, out->len,
						       MSG_NOSIGNAL | MSG_DONTWAIT);
				(void)ignored;
			}
			buf_clear(out);
			conn_close(c, "server shutdown");
		}
		c = next;
	}
}
