/*
 * conn.c - from accept to close for one POP3 client.
 *
 *   accept -> limits (sessions, sessions per address)
 *          -> implicit TLS: wait for the first byte, check it is a TLS
 *             ClientHello, handshake; plain: greet at once
 *   socket -> bufferevent (-> OpenSSL filter after STLS) -> line framing
 *          -> pop3 core -> request:
 *      LOGIN, SASL_LOOKUP, COMMIT: a job on the worker pool
 *      RETRIEVE: stream the file through the transform while the output
 *                buffer is below its high water mark
 *      CONTINUE: next listing batch when the output drains
 *      STARTTLS: discard pending plaintext input, then TLS
 *      CLOSE
 *
 * Lines are fed to the core only while it has no request pending, so
 * pipelined commands (and Thunderbird's NOOP in the middle of a RETR) wait in
 * the input buffer and are answered in order.
 */
#include "server/conn.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "common/bounds.h"
#include "common/log.h"
#include "common/net.h"
#include "common/strutil.h"
#include "common/xmalloc.h"
#include "server/framing.h"
#include "server/lmtp_conn.h"
#include "server/login.h"
#include "server/server.h"
#include "server/shared.h"
#include "server/workpool.h"
#include "store/maildir.h"
#include "store/transform.h"
#include "tls/tls.h"

#define TLS_RECORD_HANDSHAKE 0x16 /* first byte of a TLS ClientHello */

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
	struct listener *listener;
	struct conn *prev, *next;
	int fd;                       /* until the bufferevent owns it */
	struct event *probe;          /* implicit TLS: waiting for the first byte */
	struct bufferevent *bev;
	struct pop3_session *session; /* NULL until the TLS handshake is done */
	char peer[INET6_ADDRSTRLEN + 8];
	struct shared_key addr_key;
	struct timespec started;
	bool plaintext_ok;
	bool tls;                     /* TLS is up */
	bool handshaking;
	bool first_byte_seen;         /* plain port: checked for a ClientHello */
	struct sasl_channel_binding cb;
	char tls_desc[96];

	/* line framing */
	struct framer framer;
	bool eof;                     /* the client will send nothing more */
	struct buf line;

	/* the message being streamed */
	int msg_fd;
	struct transform xf;
	struct buf chunk;

	/* work in flight on the pool, and the failure delay */
	struct login_job *login;
	struct lookup_job *lookup;
	struct commit_job *commit;
	bool in_login;                /* from submit until the core hears the result */
	struct event *delay;
	enum pop3_login_result delayed_result;

	struct maildir *md;
	bool closed;                  /* socket gone; free when jobs are back */
	bool closing;                 /* close once the output is sent */
	bool busy_timeouts;           /* read timeout suspended */
	bool watching_ciphertext;     /* closing: waiting for the TLS layer to drain */
	uint64_t sasl_failures_logged; /* of the core's sasl_failures */
	const char *end_reason;
};

static void process(struct conn *c);
static void conn_close(struct conn *c, const char *reason);
static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

/* ---- helpers ------------------------------------------------------------------ */

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

static struct timeval ms_tv(unsigned ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	return tv;
}

/* RFC 1939 §3: the autologout timer counts idle time between commands. It is
 * suspended while we are the ones working (streaming, login, commit). */
static void set_timeouts(struct conn *c)
{
	const struct config *cfg = c->srv->cfg;
	struct timeval wr = ms_tv(cfg->send_timeout_ms);
	if (c->handshaking || c->session == NULL) {
		struct timeval hs = ms_tv(cfg->tls_handshake_timeout_ms);
		bufferevent_set_timeouts(c->bev, &hs, &hs);
		return;
	}
	bool busy = pop3_session_request(c->session)->kind != POP3_REQ_NONE;
	unsigned ms = pop3_session_state(c->session) == POP3_STATE_AUTHORIZATION
			      ? cfg->preauth_timeout_ms
			      : cfg->idle_timeout_ms;
	struct timeval rd = ms_tv(ms);
	bufferevent_set_timeouts(c->bev, busy ? NULL : &rd, &wr);
	c->busy_timeouts = busy;
}

static const char *state_name(const struct conn *c)
{
	if (c->session == NULL)
		return "handshake";
	switch (pop3_session_state(c->session)) {
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

/* ---- maildrop view for the core ---------------------------------------------- */

static uint64_t view_size(const void *ctx, size_t i)
{
	return ((const struct maildir *)ctx)->msgs[i].size;
}

static const char *view_uidl(const void *ctx, size_t i)
{
	return ((const struct maildir *)ctx)->msgs[i].uidl;
}

/* ---- freeing ------------------------------------------------------------------ */

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
	shared_session_leave(srv->shared, &c->addr_key);
	if (c->msg_fd >= 0)
		close(c->msg_fd);
	/* Closing the maildrop releases its lock; nothing is committed here. */
	maildir_close(c->md);
	if (c->delay)
		event_free(c->delay);
	pop3_session_free(c->session);
	OPENSSL_cleanse(&c->cb, sizeof(c->cb));
	buf_free(&c->chunk);
	buf_wipe(&c->line);
	buf_free(&c->line);
	free(c);
	/* A graceful stop ends with the last session. */
	if (srv->stopping && srv->n_sessions == 0)
		event_base_loopexit(srv->base, NULL);
}

static void log_session_end(struct conn *c)
{
	if (c->session == NULL) {
		log_info("session end: user=- ip=%s state=handshake duration=%.3fs reason=%s",
			 c->peer, elapsed(c), c->end_reason);
		return;
	}
	const struct pop3_stats *st = pop3_session_stats(c->session);
	const char *user = pop3_session_user(c->session);
	char safe[2 * POP3_MAX_COMMAND_LINE];
	log_info("session end: user=%s ip=%s state=%s tls=%s retrieved=%llu bytes=%llu "
		 "deleted=%llu commands=%llu bad=%llu authfail=%llu duration=%.3fs reason=%s",
		 user ? str_log_safe(user, safe, sizeof(safe)) : "-", c->peer, state_name(c),
		 c->tls ? "yes" : "no",
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
	if (c->probe != NULL) {
		event_free(c->probe);
		c->probe = NULL;
	}
	if (c->bev != NULL) {
		bufferevent_free(c->bev); /* closes the socket */
		c->bev = NULL;
	} else if (c->fd >= 0) {
		close(c->fd);
	}
	c->fd = -1;
	if (c->login == NULL && c->commit == NULL && c->lookup == NULL)
		conn_free(c);
	/* else: freed when the job comes back */
}

/* Bytes not yet handed to the kernel: our output, and after STLS also the
 * ciphertext waiting in the socket bufferevent under the TLS filter. */
static size_t unsent(struct conn *c)
{
	size_t n = evbuffer_get_length(output(c));
	struct bufferevent *under = bufferevent_get_underlying(c->bev);
	if (under != NULL)
		n += evbuffer_get_length(bufferevent_get_output(under));
	return n;
}

static void ciphertext_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info,
			       void *arg)
{
	struct conn *c = arg;
	(void)buf;
	(void)info;
	if (c->closing && !c->closed && unsent(c) == 0)
		conn_close(c, c->end_reason);
}

/* Close now if everything was sent; otherwise when it has been. */
static void close_if_flushed(struct conn *c)
{
	if (unsent(c) == 0) {
		conn_close(c, c->end_reason);
		return;
	}
	struct bufferevent *under = bufferevent_get_underlying(c->bev);
	if (under != NULL && !c->watching_ciphertext) {
		c->watching_ciphertext = true;
		evbuffer_add_cb(bufferevent_get_output(under), ciphertext_drained, c);
	}
}

/* Send what is queued, then close (QUIT, or the client's EOF). */
static void close_when_flushed(struct conn *c, const char *reason)
{
	if (c->closing)
		return;
	c->closing = true;
	c->end_reason = reason;
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	close_if_flushed(c);
}

/* ---- TLS -------------------------------------------------------------------- */

static void setup_bev(struct conn *c, struct bufferevent *bev)
{
	c->bev = bev;
	bufferevent_setcb(bev, read_cb, write_cb, event_cb, c);
	bufferevent_setwatermark(bev, EV_READ, 0, SERVER_INPUT_HIGH_WATER);
	bufferevent_setwatermark(bev, EV_WRITE, SERVER_OUTPUT_HIGH_WATER / 2, 0);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void collect_channel_binding(struct conn *c, SSL *ssl)
{
	c->cb.tls = true;
	c->cb.exporter_len = tls_channel_binding(ssl, true, "tls-exporter", c->cb.exporter,
						 sizeof(c->cb.exporter));
	c->cb.end_point_len = tls_channel_binding(ssl, true, "tls-server-end-point",
						  c->cb.end_point, sizeof(c->cb.end_point));
	tls_describe(ssl, c->tls_desc, sizeof(c->tls_desc));
}

static void start_session(struct conn *c)
{
	struct server *srv = c->srv;
	char *ts = NULL;
	if (srv->pop3.apop) {
		uint32_t rnd = 0;
		RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
		/* RFC 1939 §7: unique per greeting, in msg-id form. */
		ts = xasprintf("<%ld.%llu.%08x@%s>", (long)getpid(),
			       (unsigned long long)++srv->counter, rnd, srv->hostname);
	}
	struct pop3_conn_info info = {.secure = c->tls, .plaintext_ok = c->plaintext_ok,
				      .apop_timestamp = ts, .cb = c->tls ? &c->cb : NULL};
	c->session = pop3_session_new(&srv->pop3, &info);
	free(ts);
	flush_session(c);
	set_timeouts(c);
}

/* The handshake finished (implicit TLS or after STLS). */
static void tls_established(struct conn *c)
{
	c->handshaking = false;
	c->tls = true;
	collect_channel_binding(c, bufferevent_openssl_get_ssl(c->bev));
	log_debug("TLS: ip=%s %s", c->peer, c->tls_desc);
	if (c->session == NULL) {
		start_session(c);
		return;
	}
	pop3_session_tls_done(c->session, true, &c->cb);
	flush_session(c);
	set_timeouts(c);
	process(c);
}

static void tls_failed(struct conn *c)
{
	char why[256];
	unsigned long e = bufferevent_get_openssl_error(c->bev);
	if (e != 0)
		ERR_error_string_n(e, why, sizeof(why));
	else
		snprintf(why, sizeof(why), "%s", c->eof ? "client closed the connection" : "I/O error");
	ERR_clear_error();
	log_info("TLS handshake failed: ip=%s on %s: %s", c->peer, c->listener->name, why);
	conn_close(c, "TLS handshake failed");
}

static struct bufferevent *tls_bev_new(struct conn *c, struct bufferevent *under)
{
	SSL *ssl = tls_server_ssl(c->srv->tls);
	if (ssl == NULL)
		return NULL;
	struct bufferevent *bev =
		under ? bufferevent_openssl_filter_new(c->srv->base, under, ssl,
						       BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)
		      : bufferevent_openssl_socket_new(c->srv->base, c->fd, ssl,
						       BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		SSL_free(ssl);
	else
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

/* Implicit TLS: look at the first byte before handing the socket to OpenSSL,
 * to tell a plaintext client on the TLS port from a broken handshake. */
static void probe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	event_free(c->probe);
	c->probe = NULL;
	if (what & EV_TIMEOUT) {
		log_info("no TLS handshake from %s on %s within %us (a plaintext client on the "
			 "TLS port?)",
			 c->peer, c->listener->name, c->srv->cfg->tls_handshake_timeout_ms / 1000);
		conn_close(c, "no TLS handshake");
		return;
	}
	unsigned char first;
	ssize_t n = recv(fd, &first, 1, MSG_PEEK);
	if (n <= 0) {
		conn_close(c, n == 0 ? "client disconnected" : "connection error");
		return;
	}
	if (first != TLS_RECORD_HANDSHAKE) {
		log_warning("client %s speaks plaintext on the TLS port %s: configure it for TLS "
			    "(port 995) or for STARTTLS on the plain port",
			    c->peer, c->listener->name);
		static const char msg[] = "-ERR [SYS/PERM] This port requires TLS (RFC 8314)\r\n";
		ssize_t ignored = send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		(void)ignored;
		conn_close(c, "plaintext on the TLS port");
		return;
	}
	struct bufferevent *bev = tls_bev_new(c, NULL);
	if (bev == NULL) {
		conn_close(c, "out of resources");
		return;
	}
	c->fd = -1; /* the bufferevent owns it now */
	c->handshaking = true;
	setup_bev(c, bev);
	set_timeouts(c);
}

/* RFC 2595 §4: after "+OK Begin TLS negotiation" the next bytes are TLS. */
static void start_tls(struct conn *c)
{
	/* Anything the client pipelined after STLS was sent in the clear before
	 * the handshake: discard it, never execute it (CVE-2011-0411 class). */
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t dropped = evbuffer_get_length(in);
	if (dropped > 0) {
		log_warning("STLS: ip=%s sent %zu bytes after STLS before TLS; discarded", c->peer,
			    dropped);
		evbuffer_drain(in, dropped);
	}
	struct bufferevent *bev = tls_bev_new(c, c->bev);
	if (bev == NULL) {
		pop3_session_tls_done(c->session, false, NULL);
		close_when_flushed(c, "TLS setup failed");
		return;
	}
	c->handshaking = true;
	setup_bev(c, bev);
	set_timeouts(c);
}

/* ---- streaming RETR/TOP ---------------------------------------------------- */

static void stream_end(struct conn *c, bool complete)
{
	close(c->msg_fd);
	c->msg_fd = -1;
	if (complete)
		transform_finish(&c->xf, &c->chunk);
	if (c->chunk.len > 0)
		evbuffer_add(output(c), c->chunk.data, c->chunk.len);
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

/* ---- jobs --------------------------------------------------------------------- */

static void deliver_login_result(struct conn *c, enum pop3_login_result result)
{
	c->in_login = false;
	pop3_session_login_done(c->session, result, NULL);
	flush_session(c);
	process(c);
}

static void login_delay_expired(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;
	(void)what;
	deliver_login_result(c, c->delayed_result);
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
		char safe[2 * POP3_MAX_COMMAND_LINE];
		log_info("login: user=%s ip=%s method=%s tls=%s messages=%zu octets=%llu",
			 str_log_safe(job->user, safe, sizeof(safe)),
			 c->peer, job->mechanism, c->tls ? "yes" : "no", c->md->count,
			 (unsigned long long)c->md->total_size);
		struct pop3_maildrop view = {c->md->count, view_size, view_uidl, c->md};
		c->in_login = false;
		pop3_session_login_done(c->session, POP3_LOGIN_OK, &view);
		login_job_free(job);
		flush_session(c);
		process(c);
		return;
	}
	char safe[2 * POP3_MAX_COMMAND_LINE];
	log_info("login failed: user=%s ip=%s method=%s reason=%s delay=%ums",
		 str_log_safe(job->user, safe, sizeof(safe)), c->peer,
		 job->mechanism, job->why ? job->why : "unknown", job->delay_ms);
	enum pop3_login_result result = job->result;
	unsigned delay = job->delay_ms;
	login_job_free(job);
	if (delay > 0) {
		/* Unknown user and wrong password: the same answer after the same
		 * delay, growing with the failures from this address. */
		struct timeval tv = ms_tv(delay);
		c->delayed_result = result;
		if (c->delay == NULL)
			c->delay = evtimer_new(c->srv->base, login_delay_expired, c);
		evtimer_add(c->delay, &tv);
		return;
	}
	deliver_login_result(c, result);
}

static void login_run(struct work *w)
{
	login_job_run((struct login_job *)w);
}

static void lookup_run(struct work *w)
{
	lookup_job_run((struct lookup_job *)w);
}

static void lookup_done(struct work *w)
{
	struct lookup_job *job = (struct lookup_job *)w;
	struct conn *c = job->conn;
	c->lookup = NULL;
	if (c->closed) {
		lookup_job_free(job);
		conn_free(c);
		return;
	}
	if (!job->real)
		log_debug("SCRAM: user %s has no SCRAM keys (or does not exist)", job->user);
	pop3_session_sasl_lookup_done(c->session, &job->record);
	lookup_job_free(job);
	flush_session(c);
	process(c);
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

/* ---- the request loop ---------------------------------------------------------- */

/* Act on the core's pending request. Returns true if more input may be fed. */
static bool handle_request(struct conn *c)
{
	const struct pop3_request *req = pop3_session_request(c->session);
	switch (req->kind) {
	case POP3_REQ_NONE:
		return true;
	case POP3_REQ_LOGIN:
		if (c->in_login)
			return false; /* already with the workers or in the failure delay */
		c->in_login = true;
		c->login = login_job_new(c->srv, c, req, &c->addr_key);
		c->login->work.run = login_run;
		c->login->work.done = login_done;
		workpool_submit(c->srv->pool, &c->login->work);
		return false;
	case POP3_REQ_SASL_LOOKUP:
		if (c->lookup != NULL)
			return false;
		c->lookup = lookup_job_new(c->srv, c, req->user, &c->addr_key);
		c->lookup->work.run = lookup_run;
		c->lookup->work.done = lookup_done;
		workpool_submit(c->srv->pool, &c->lookup->work);
		return false;
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
		if (!c->handshaking)
			start_tls(c);
		return false;
	case POP3_REQ_CLOSE:
		close_when_flushed(c, pop3_session_close_reason(c->session));
		return false;
	}
	return false;
}

/* A TLS ClientHello on the plaintext port: the client is misconfigured. */
static bool tls_on_plain_port(struct conn *c, struct evbuffer *in)
{
	if (c->first_byte_seen || c->tls || evbuffer_get_length(in) == 0)
		return false;
	c->first_byte_seen = true;
	unsigned char first;
	evbuffer_copyout(in, &first, 1);
	if (first != TLS_RECORD_HANDSHAKE)
		return false;
	log_warning("client %s started TLS on the plaintext port %s: configure it for port 995 "
		    "(TLS) or STARTTLS",
		    c->peer, c->listener->name);
	conn_close(c, "TLS on the plaintext port");
	return true;
}

/* A SASL exchange the core refused (never a password check: those are
 * logged with the login job). */
static void log_sasl_failure(struct conn *c)
{
	const struct pop3_stats *st = pop3_session_stats(c->session);
	if (st->sasl_failures == c->sasl_failures_logged)
		return;
	c->sasl_failures_logged = st->sasl_failures;
	log_info("SASL refused: ip=%s mechanism=%s tls=%s reason=%s", c->peer,
		 st->last_sasl_mechanism ? st->last_sasl_mechanism : "-", c->tls ? "yes" : "no",
		 st->last_sasl_error ? st->last_sasl_error : "-");
}

/* Read complete lines and feed them to the core while it is ready. */
static void process(struct conn *c)
{
	if (c->closed || c->session == NULL || c->handshaking)
		return;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	if (tls_on_plain_port(c, in))
		return;
	while (handle_request(c)) {
		if (c->closed)
			return;
		enum frame_result fr = frame_next(&c->framer, in, pop3_session_line_limit(c->session),
						  EVBUFFER_EOL_CRLF, &c->line);
		if (fr == FRAME_NONE) {
			if (c->eof) {
				/* Everything the client sent has been answered. */
				close_when_flushed(c, "client disconnected");
				return;
			}
			break;
		}
		if (fr == FRAME_OVERLONG) {
			pop3_session_input_overlong(c->session);
		} else {
			pop3_session_input(c->session, c->line.data, c->line.len);
			/* A SASL response may hold a password: do not keep it. */
			OPENSSL_cleanse(c->line.data, c->line.len);
			log_sasl_failure(c);
		}
		flush_session(c);
	}
	if (!c->closed && !c->handshaking &&
	    c->busy_timeouts != (pop3_session_request(c->session)->kind != POP3_REQ_NONE))
		set_timeouts(c);
}

/* ---- libevent callbacks -------------------------------------------------------- */

static void read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	(void)bev;
	/* Any input resets the idle timer (RFC 1939 §3). */
	if (!c->busy_timeouts && !c->handshaking && c->session != NULL)
		set_timeouts(c);
	process(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	(void)bev;
	if (c->closing) {
		close_if_flushed(c);
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
	if (what & BEV_EVENT_CONNECTED) {
		tls_established(c);
		return;
	}
	if (c->handshaking) {
		if (what & BEV_EVENT_TIMEOUT) {
			log_info("TLS handshake timed out: ip=%s on %s", c->peer, c->listener->name);
			conn_close(c, "TLS handshake timeout");
			return;
		}
		c->eof = (what & BEV_EVENT_EOF) != 0;
		tls_failed(c);
		return;
	}
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
		ERR_clear_error();
		conn_close(c, errno == ECONNRESET ? "connection reset" : "connection error");
		return;
	}
}

/* ---- accept ----------------------------------------------------------------------- */

/* RFC 8314 policy: plaintext passwords only from trusted_networks (loopback
 * by default) or over TLS. */
static bool peer_trusted(const struct server *srv, const struct sockaddr *peer)
{
	for (size_t i = 0; i < srv->cfg->n_trusted_networks; i++)
		if (net_prefix_match(&srv->cfg->trusted_networks[i], peer))
			return true;
	return false;
}

static void refuse(int fd, const char *msg)
{
	ssize_t ignored = send(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)ignored;
	close(fd);
}

void conn_accept(struct server *srv, struct listener *li, int fd, const struct sockaddr *peer,
		 socklen_t peerlen)
{
	if (li->kind == LISTENER_LMTP) {
		lmtp_conn_accept(srv, li, fd, peer, peerlen);
		return;
	}
	char host[INET6_ADDRSTRLEN + 8];
	net_format_host(peer, host, sizeof(host));
	/* Refusals are sent in the clear; on a TLS port the client sees a
	 * handshake failure, which is all it can be told. */
	if (srv->stopping) {
		refuse(fd, "-ERR [SYS/TEMP] Server shutting down, try again later\r\n");
		return;
	}
	/* Replies are written whole; Nagle would hold a reply's last small
	 * segment (".\r\n") for the client's delayed ACK, 40 ms a command. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* Both limits hold across all worker processes (shared.c). */
	struct shared_key key;
	shared_key_addr(peer, &key);
	switch (shared_session_enter(srv->shared, &key, srv->cfg->max_sessions_per_ip,
				     srv->cfg->max_sessions)) {
	case SHARED_ENTER_OK:
		break;
	case SHARED_ENTER_TOTAL:
		refuse(fd, "-ERR [SYS/TEMP] Too many connections, try again later\r\n");
		log_warning("refused connection from %s: session limit (%u) reached", host,
			    srv->cfg->max_sessions);
		return;
	case SHARED_ENTER_KEY:
	default:
		refuse(fd, "-ERR [SYS/TEMP] Too many connections from your address\r\n");
		log_warning("refused connection from %s: %u sessions from this address", host,
			    srv->cfg->max_sessions_per_ip);
		return;
	}
	struct conn *c = xcalloc(1, sizeof(*c));
	c->srv = srv;
	c->listener = li;
	c->fd = fd;
	c->msg_fd = -1;
	c->addr_key = key;
	c->cb.exporter_len = c->cb.end_point_len = -1;
	snprintf(c->peer, sizeof(c->peer), "%s", host);
	clock_gettime(CLOCK_MONOTONIC, &c->started);
	c->plaintext_ok = peer_trusted(srv, peer);
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->n_sessions++;
	log_debug("connect: ip=%s on %s", c->peer, li->name);

	if (li->kind == LISTENER_POP3S) {
		struct timeval tv = ms_tv(srv->cfg->tls_handshake_timeout_ms);
		c->probe = event_new(srv->base, fd, EV_READ, probe_cb, c);
		event_add(c->probe, &tv);
		return;
	}
	struct bufferevent *bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		conn_close(c, "out of resources");
		return;
	}
	c->fd = -1;
	setup_bev(c, bev);
	start_session(c);
}

void conn_close_all(struct server *srv)
{
	lmtp_conn_close_all(srv);
	struct conn *c = srv->conns;
	while (c != NULL) {
		struct conn *next = c->next;
		conn_close(c, "server shutdown");
		c = next;
	}
}
