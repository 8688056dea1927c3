/*
 * conn.c - from accept to close for one POP3 client.
 *
 *   socket -> bufferevent -> line framing (bounded) -> pop3 core
 *   pop3 core request -> LOGIN/COMMIT: worker pool; RETRIEVE: stream the file
 *   through the transform while the output buffer is below its high water
 *   mark; CONTINUE: next listing batch when the output drains; CLOSE.
 *
 * Lines are fed to the core only while it has no request pending, so
 * pipelined commands (and Thunderbird's NOOP in the middle of a RETR) wait
 * in the input buffer and are answered in order.
 */
#include "server/conn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/rand.h>

#include "common/bounds.h"
#include "common/log.h"
#include "common/net.h"
#include "common/xmalloc.h"
#include "server/login.h"
#include "server/server.h"
#include "server/workpool.h"
#include "store/maildir.h"
#include "store/transform.h"

struct commit_job {
	struct work work;
	struct conn *conn;
	struct maildir *md;
	const uint8_t *deleted;
	const uint8_t *seen;
	size_t failed;
};

struct conn {
	struct server *srv;
	struct conn *prev, *next;
	struct bufferevent *bev;
	struct pop3_session *session;
	char peer[INET6_ADDRSTRLEN + 8];
	struct timespec started;
	bool plaintext_ok;

	/* line framing */
	bool discarding;       /* inside an overlong line */
	bool eof;              /* the client will send nothing more */
	struct buf line;       /* scratch for one line */

	/* the message being streamed */
	int msg_fd;
	struct transform xf;
	struct buf chunk;

	/* work in flight on the pool, and the failure delay */
	struct login_job *login;
	struct commit_job *commit;
	bool in_login;         /* from submit until the core hears the result */
	struct event *delay;
	enum pop3_login_result delayed_result;

	struct maildir *md;
	bool closed;           /* socket gone; free when jobs are back */
	bool closing;          /* close once the output is sent */
	bool busy_timeouts;    /* read timeout suspended */
	const char *end_reason;
};

static void process(struct conn *c);
static void conn_close(struct conn *c, const char *reason);

/* ---- helpers ---------------------------------------------------------------- */

static struct evbuffer *output(struct conn *c)
{
	return bufferevent_get_output(c->bev);
}

static void flush_session(struct conn *c)
{
	struct buf *out = pop3_session_output(c->session);
	if (out->len > 0) {
		evbuffer_add(output(c), out->data, out->len);
		buf_clear(out);
	}
}

static double elapsed(const struct conn *c)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - c->started.tv_sec) +
	       (double)(now.tv_nsec - c->started.tv_nsec) / 1e9;
}

/* RFC 1939 §3: the autologout timer counts idle time between commands. It is
 * suspended while we are the ones working (streaming, login, commit). */
static void set_timeouts(struct conn *c)
{
	const struct config *cfg = c->srv->cfg;
	bool busy = pop3_session_request(c->session)->kind != POP3_REQ_NONE;
	unsigned ms = pop3_session_state(c->session) == POP3_STATE_AUTHORIZATION
			      ? cfg->preauth_timeout_ms
			      : cfg->idle_timeout_ms;
	struct timeval rd = {ms / 1000, (ms % 1000) * 1000};
	struct timeval wr = {cfg->send_timeout_ms / 1000, (cfg->send_timeout_ms % 1000) * 1000};
	bufferevent_set_timeouts(c->bev, busy ? NULL : &rd, &wr);
	c->busy_timeouts = busy;
}

static const char *state_name(enum pop3_state st)
{
	switch (st) {
	case POP3_STATE_AUTHORIZATION:
		return "authorization";
	case POP3_STATE_TRANSACTION:
		return "transaction";
	case POP3_STATE_UPDATE:
		return "update";
	default:
		return "closed";
	}
}

/* ---- maildrop view for the core ------------------------------------------- */

static uint64_t view_size(const void *ctx, size_t i)
{
	return ((const struct maildir *)ctx)->msgs[i].size;
}

static const char *view_uidl(const void *ctx, size_t i)
{
	return ((const struct maildir *)ctx)->msgs[i].uidl;
}

/* ---- freeing --------------------------------------------------------------- */

static void conn_free(struct conn *c)
{
	struct server *srv = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->n_sessions--;
	if (c->msg_fd >= 0)
		close(c->msg_fd);
	/* Closing the maildrop releases its lock; nothing is committed here. */
	maildir_close(c->md);
	if (c->delay)
		event_free(c->delay);
	pop3_session_free(c->session);
	buf_free(&c->chunk);
	buf_free(&c->line);
	free(c);
}

static void log_session_end(struct conn *c)
{
	const struct pop3_stats *st = pop3_session_stats(c->session);
	const char *user = pop3_session_user(c->session);
	log_info("session end: user=%s ip=%s state=%s retrieved=%llu bytes=%llu deleted=%llu "
		 "commands=%llu bad=%llu authfail=%llu duration=%.3fs reason=%s",
		 user ? user : "-", c->peer, state_name(pop3_session_state(c->session)),
		 (unsigned long long)st->retrieved, (unsigned long long)st->retrieved_bytes,
		 (unsigned long long)st->deleted, (unsigned long long)st->commands,
		 (unsigned long long)st->bad_commands, (unsigned long long)st->auth_failures,
		 elapsed(c), c->end_reason);
}

static void conn_close(struct conn *c, const char *reason)
{
	if (c->closed)
		return;
	c->closed = true;
	c->end_reason = reason;
	log_session_end(c);
	bufferevent_free(c->bev); /* closes the socket */
	c->bev = NULL;
	if (c->login == NULL && c->commit == NULL)
		conn_free(c);
	/* else: freed when the job comes back (login_done / commit_done) */
}

/* Send what is queued, then close (QUIT, or the client's EOF). */
static void close_when_flushed(struct conn *c, const char *reason)
{
	if (c->closing)
		return;
	c->closing = true;
	c->end_reason = reason;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_get_length(output(c)) == 0)
		conn_close(c, reason);
	else
		bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
}

/* ---- streaming RETR/TOP --------------------------------------------------- */

static void stream_end(struct conn *c, bool complete)
{
	close(c->msg_fd);
	c->msg_fd = -1;
	if (complete)
		transform_finish(&c->xf, &c->chunk);
	if (c->chunk.len > 0) {
		evbuffer_add(output(c), c->chunk.data, c->chunk.len);
		buf_clear(&c->chunk);
	}
	buf_free(&c->chunk); /* an idle session keeps no message buffer */
	pop3_session_retrieve_end(c->session, complete, c->xf.emitted);
	flush_session(c);
}

/* Fill the output buffer up to its high water mark, one chunk at a time; the
 * write callback calls again as the client drains it (back-pressure). */
static void stream_pump(struct conn *c)
{
	char in[STORE_STREAM_CHUNK];
	while (c->msg_fd >= 0 && evbuffer_get_length(output(c)) < SERVER_OUTPUT_HIGH_WATER) {
		ssize_t n = read(c->msg_fd, in, sizeof(in));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("user %s: reading message: %s", pop3_session_user(c->session),
				  strerror(errno));
			stream_end(c, false);
			return;
		}
		if (n == 0) {
			stream_end(c, true);
			return;
		}
		transform_feed(&c->xf, in, (size_t)n, &c->chunk);
		evbuffer_add(output(c), c->chunk.data, c->chunk.len);
		buf_clear(&c->chunk);
		if (transform_done(&c->xf)) {
			stream_end(c, true);
			return;
		}
	}
}

static void stream_start(struct conn *c, const struct pop3_request *req)
{
	c->msg_fd = maildir_open_message(c->md, req->msg);
	if (c->msg_fd < 0) {
		log_error("user %s: cannot open message %zu: %s", pop3_session_user(c->session),
			  req->msg + 1, strerror(errno));
		pop3_session_retrieve_begin(c->session, false);
		flush_session(c);
		return;
	}
	pop3_session_retrieve_begin(c->session, true);
	flush_session(c);
	transform_init(&c->xf, req->body_lines, true, c->srv->cfg->outlook_no_nuls);
	stream_pump(c);
}

/* ---- jobs -------------------------------------------------------------------- */

static void login_delay_expired(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;
	(void)what;
	c->in_login = false;
	pop3_session_login_done(c->session, c->delayed_result, NULL);
	flush_session(c);
	process(c);
}

static void login_done(struct work *w)
{
	struct login_job *job = (struct login_job *)w;
	struct conn *c = job->conn;
	c->login = NULL;
	if (c->closed) {
		maildir_close(job->md);
		login_job_free(job);
		conn_free(c);
		return;
	}
	if (job->result == POP3_LOGIN_OK) {
		c->md = job->md;
		log_info("login: user=%s ip=%s method=%s messages=%zu octets=%llu", job->user,
			 c->peer, job->mechanism, c->md->count,
			 (unsigned long long)c->md->total_size);
		struct pop3_maildrop view = {c->md->count, view_size, view_uidl, c->md};
		c->in_login = false;
		pop3_session_login_done(c->session, POP3_LOGIN_OK, &view);
		login_job_free(job);
		flush_session(c);
		process(c);
		return;
	}
	log_info("login failed: user=%s ip=%s method=%s reason=%s", job->user, c->peer,
		 job->mechanism, job->why ? job->why : "unknown");
	enum pop3_login_result result = job->result;
	login_job_free(job);
	if (result == POP3_LOGIN_FAILED && c->srv->cfg->failure_delay_ms > 0) {
		/* Unknown user and wrong password: same answer after the same
		 * delay, which also slows down guessing on this connection. */
		unsigned ms = c->srv->cfg->failure_delay_ms;
		struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
		c->delayed_result = result;
		if (c->delay == NULL)
			c->delay = evtimer_new(c->srv->base, login_delay_expired, c);
		evtimer_add(c->delay, &tv);
		return;
	}
	c->in_login = false;
	pop3_session_login_done(c->session, result, NULL);
	flush_session(c);
	process(c);
}

static void login_run(struct work *w)
{
	login_job_run((struct login_job *)w);
}

static void commit_run(struct work *w)
{
	struct commit_job *job = (struct commit_job *)w;
	job->failed = maildir_commit(job->md, job->deleted, job->seen);
	/* RFC 1939 §6: release the lock before answering QUIT, so a client that
	 * reconnects at once never sees [IN-USE]. */
	maildir_close(job->md);
	job->md = NULL;
}

static void commit_done(struct work *w)
{
	struct commit_job *job = (struct commit_job *)w;
	struct conn *c = job->conn;
	c->commit = NULL;
	c->md = NULL;
	size_t failed = job->failed;
	free(job);
	pop3_session_commit_done(c->session, failed);
	if (c->closed) {
		conn_free(c);
		return;
	}
	flush_session(c);
	process(c);
}

/* ---- the request loop -------------------------------------------------------- */

/* Act on the core's pending request. Returns true if more input may be fed. */
static bool handle_request(struct conn *c)
{
	const struct pop3_request *req = pop3_session_request(c->session);
	switch (req->kind) {
	case POP3_REQ_NONE:
		return true;
	case POP3_REQ_LOGIN: {
		if (c->in_login)
			return false; /* already with the workers or in the failure delay */
		c->in_login = true;
		c->login = login_job_new(c->srv, c, req, pop3_session_apop_timestamp(c->session));
		c->login->work.run = login_run;
		c->login->work.done = login_done;
		workpool_submit(c->srv->pool, &c->login->work);
		return false;
	}
	case POP3_REQ_RETRIEVE:
		if (c->msg_fd >= 0)
			return false; /* streaming; the write callback pumps */
		stream_start(c, req);
		return pop3_session_request(c->session)->kind == POP3_REQ_NONE;
	case POP3_REQ_CONTINUE:
		if (evbuffer_get_length(output(c)) < SERVER_OUTPUT_HIGH_WATER) {
			pop3_session_continue(c->session);
			flush_session(c);
			return handle_request(c);
		}
		return false;
	case POP3_REQ_COMMIT: {
		if (c->commit != NULL)
			return false;
		struct commit_job *job = xcalloc(1, sizeof(*job));
		job->work.run = commit_run;
		job->work.done = commit_done;
		job->conn = c;
		job->md = c->md;
		job->deleted = req->deleted;
		job->seen = c->srv->cfg->mark_seen ? req->seen : NULL;
		c->commit = job;
		workpool_submit(c->srv->pool, &job->work);
		return false;
	}
	case POP3_REQ_STARTTLS:
		/* No TLS on this listener yet: refuse the upgrade. */
		pop3_session_tls_done(c->session, false);
		flush_session(c);
		return handle_request(c);
	case POP3_REQ_CLOSE:
		close_when_flushed(c, pop3_session_close_reason(c->session));
		return false;
	}
	return false;
}

/* Read complete lines and feed them to the core while it is ready. */
static void process(struct conn *c)
{
	if (c->closed)
		return;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	while (handle_request(c)) {
		if (c->closed)
			return;
		size_t limit = pop3_session_line_limit(c->session);
		size_t eol_len = 0;
		struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
		if (eol.pos < 0) {
			/* No complete line yet. A line that already exceeds the limit
			 * is dropped as it arrives; -ERR comes when it ends. */
			if (evbuffer_get_length(in) >= limit) {
				c->discarding = true;
				evbuffer_drain(in, evbuffer_get_length(in));
			}
			if (c->eof) {
				/* Everything the client sent has been answered. */
				close_when_flushed(c, "client disconnected");
				return;
			}
			break;
		}
		size_t len = (size_t)eol.pos;
		if (c->discarding || len + eol_len > limit) {
			evbuffer_drain(in, len + eol_len);
			c->discarding = false;
			pop3_session_input_overlong(c->session);
		} else {
			buf_clear(&c->line);
			buf_reserve(&c->line, len);
			evbuffer_remove(in, c->line.data, len);
			evbuffer_drain(in, eol_len);
			c->line.data[len] = '\0';
			pop3_session_input(c->session, c->line.data, len);
		}
		flush_session(c);
	}
	if (!c->closed && c->busy_timeouts !=
				  (pop3_session_request(c->session)->kind != POP3_REQ_NONE))
		set_timeouts(c);
}

/* ---- libevent callbacks ---------------------------------------------------------- */

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	(void)bev;
	/* Any input resets the idle timer (RFC 1939 §3). */
	if (!c->busy_timeouts)
		set_timeouts(c);
	process(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	(void)bev;
	if (c->closing) {
		if (evbuffer_get_length(output(c)) == 0)
			conn_close(c, c->end_reason);
		return;
	}
	if (c->msg_fd >= 0)
		stream_pump(c);
	process(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	(void)bev;
	if (what & BEV_EVENT_TIMEOUT) {
		/* RFC 1939 §3: close without a response and without UPDATE. */
		conn_close(c, (what & BEV_EVENT_READING) ? "idle timeout" : "send timeout");
		return;
	}
	if (what & BEV_EVENT_EOF) {
		/* The client shut down its side; answer what it already sent
		 * (e.g. "DELE 1, QUIT" then EOF), then close. */
		c->eof = true;
		process(c);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		conn_close(c, errno == ECONNRESET ? "connection reset" : "connection error");
		return;
	}
}

/* ---- accept ------------------------------------------------------------------------ */

static char *apop_timestamp(struct server *srv)
{
	uint32_t rnd = 0;
	RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
	/* RFC 1939 §7: unique per greeting, in msg-id form. */
	return xasprintf("<%ld.%llu.%08x@%s>", (long)getpid(), (unsigned long long)++srv->counter,
			 rnd, srv->hostname);
}

static bool peer_trusted(const struct server *srv, const struct sockaddr *peer)
{
	if (net_is_loopback(peer))
		return true;
	for (size_t i = 0; i < srv->cfg->n_trusted_networks; i++)
		if (net_prefix_match(&srv->cfg->trusted_networks[i], peer))
			return true;
	return false;
}

void conn_accept(struct server *srv, int fd, const struct sockaddr *peer, socklen_t peerlen)
{
	(void)peerlen;
	char host[INET6_ADDRSTRLEN + 8];
	net_format_host(peer, host, sizeof(host));
	if (srv->n_sessions >= srv->cfg->max_sessions || srv->stopping) {
		static const char msg[] = "-ERR [SYS/TEMP] Too many connections, try again later\r\n";
		ssize_t ignored = send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)ignored;
		close(fd);
		log_warning("refused connection from %s: session limit (%u) reached", host,
			    srv->cfg->max_sessions);
		return;
	}
	struct conn *c = xcalloc(1, sizeof(*c));
	c->srv = srv;
	c->msg_fd = -1;
	snprintf(c->peer, sizeof(c->peer), "%s", host);
	clock_gettime(CLOCK_MONOTONIC, &c->started);
	c->plaintext_ok = peer_trusted(srv, peer);
	c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->n_sessions++;

	char *ts = srv->pop3.apop ? apop_timestamp(srv) : NULL;
	struct pop3_conn_info info = {.secure = false, .plaintext_ok = c->plaintext_ok,
				      .apop_timestamp = ts};
	c->session = pop3_session_new(&srv->pop3, &info);
	free(ts);

	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, SERVER_INPUT_HIGH_WATER);
	bufferevent_setwatermark(c->bev, EV_WRITE, SERVER_OUTPUT_HIGH_WATER / 2, 0);
	set_timeouts(c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	log_debug("connect: ip=%s", c->peer);
	flush_session(c);
}

void conn_close_all(struct server *srv)
{
	struct conn *c = srv->conns;
	while (c != NULL) {
		struct conn *next = c->next;
		conn_close(c, "server shutdown");
		c = next;
	}
}
