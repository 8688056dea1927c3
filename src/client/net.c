/* net.c (client) - TCP + TLS with timeouts and honest certificate errors. */
#include "client/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"

static int fail(struct client_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct client_conn *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->error, sizeof(c->error), fmt, ap);
	va_end(ap);
	return -1;
}

static bool aborted(const struct client_conn *c)
{
	return c->abort_flag != NULL && *c->abort_flag;
}

static int connect_one(const struct addrinfo *ai, unsigned timeout_ms, int *err)
{
	int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0) {
		*err = errno;
		return -1;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
		*err = errno;
		close(fd);
		return -1;
	}
	struct pollfd pfd = {fd, POLLOUT, 0};
	int n = poll(&pfd, 1, (int)timeout_ms);
	socklen_t len = sizeof(*err);
	if (n <= 0) {
		*err = n == 0 ? ETIMEDOUT : errno;
		close(fd);
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &len) < 0 || *err != 0) {
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

int client_connect(struct client_conn *c, const char *host, unsigned port,
		   unsigned connect_timeout_ms, unsigned timeout_ms)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->timeout_ms = timeout_ms;
	snprintf(c->host, sizeof(c->host), "%s", host);
	char service[16];
	snprintf(service, sizeof(service), "%u", port);
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0)
		return fail(c, "cannot resolve %s: %s", host, gai_strerror(rc));
	int err = 0;
	for (struct addrinfo *ai = res; ai != NULL && c->fd < 0; ai = ai->ai_next)
		c->fd = connect_one(ai, connect_timeout_ms, &err);
	freeaddrinfo(res);
	if (c->fd < 0)
		return fail(c, "cannot connect to %s port %u: %s", host, port, strerror(err));
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	int one = 1; /* commands go out whole; pipelined ones must not wait */
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return 0;
}

void client_close(struct client_conn *c)
{
	if (c->ssl != NULL) {
		/* Not after a failed read or write: OpenSSL forbids it after a
		 * fatal error, and a timed-out peer would only make us wait. */
		if (!c->tls_broken)
			SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->ctx != NULL) {
		SSL_CTX_free(c->ctx);
		c->ctx = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* "DNS:a.example, DNS:b.example; issued by CN=..." for error messages. */
static void describe_cert(X509 *cert, char *out, size_t outlen)
{
	size_t pos = 0;
	out[0] = '\0';
	GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names) && pos < outlen; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		if (gn->type == GEN_DNS) {
			const unsigned char *s = ASN1_STRING_get0_data(gn->d.dNSName);
			pos += (size_t)snprintf(out + pos, outlen - pos, "%s%.*s", pos ? ", " : "",
						ASN1_STRING_length(gn->d.dNSName), s);
		} else if (gn->type == GEN_IPADD) {
			char ip[INET6_ADDRSTRLEN] = "?";
			int len = ASN1_STRING_length(gn->d.iPAddress);
			inet_ntop(len == 16 ? AF_INET6 : AF_INET, ASN1_STRING_get0_data(gn->d.iPAddress), ip,
				  sizeof(ip));
			pos += (size_t)snprintf(out + pos, outlen - pos, "%sIP %s", pos ? ", " : "", ip);
		}
	}
	GENERAL_NAMES_free(names);
	char subject[256], issuer[256];
	X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
	X509_NAME_oneline(X509_get_issuer_name(cert), issuer, sizeof(issuer));
	if (pos < outlen)
		snprintf(out + pos, outlen - pos, "%ssubject %s, issued by %s", pos ? "; " : "",
			 subject, issuer);
}

static bool is_ip_literal(const char *host)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int client_tls_fingerprint(const struct client_conn *c, char *out, size_t outlen)
{
	X509 *cert = c->ssl ? SSL_get0_peer_certificate(c->ssl) : NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	if (cert == NULL || X509_digest(cert, EVP_sha256(), md, &len) != 1)
		return -1;
	size_t pos = (size_t)snprintf(out, outlen, "sha256:");
	for (unsigned i = 0; i < len && pos + 3 < outlen; i++)
		pos += (size_t)snprintf(out + pos, outlen - pos, "%s%02X", i ? ":" : "", md[i]);
	return 0;
}

/* Compare fingerprints ignoring case and colons. */
static bool same_fingerprint(const char *a, const char *b)
{
	if (strncasecmp(a, "sha256:", 7) == 0)
		a += 7;
	if (strncasecmp(b, "sha256:", 7) == 0)
		b += 7;
	for (;;) {
		while (*a == ':')
			a++;
		while (*b == ':')
			b++;
		if (*a == '\0' || *b == '\0')
			return *a == *b;
		char x = (char)(*a >= 'a' && *a <= 'f' ? *a - 32 : *a);
		char y = (char)(*b >= 'a' && *b <= 'f' ? *b - 32 : *b);
		if (x != y)
			return false;
		a++;
		b++;
	}
}

int client_start_tls(struct client_conn *c, const struct client_tls_config *tls)
{
	if (c->rpos < c->rlen)
		return fail(c, "%s sent %zu octets after its answer to STLS, before TLS started: "
			       "refusing them (they could be injected by an attacker and would be "
			       "taken as protected replies)",
			    c->host, c->rlen - c->rpos);
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (c->ctx == NULL)
		return fail(c, "cannot create a TLS context");
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	/* Read whole socket buffers, not a record header at a time: a big
	 * download otherwise costs two read(2)s per TLS record. */
	SSL_CTX_set_read_ahead(c->ctx, 1);
	if (tls->ca_file != NULL && tls->ca_file[0] != '\0') {
		if (SSL_CTX_load_verify_locations(c->ctx, tls->ca_file, NULL) != 1) {
			ERR_clear_error();
			return fail(c, "cannot load CA certificates from %s", tls->ca_file);
		}
	} else {
		SSL_CTX_set_default_verify_paths(c->ctx);
	}
	bool pinned = tls->fingerprint != NULL && tls->fingerprint[0] != '\0';
	/* The chain and the name are checked during the handshake, but judged
	 * right after it (before a byte of ours is sent), so the error can
	 * describe the certificate that was refused. */
	SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
	c->ssl = SSL_new(c->ctx);
	SSL_set_fd(c->ssl, c->fd);
	/* RFC 9525: DNS names checked against SAN dNSName (wildcards only in
	 * the left-most label), address literals only against SAN iPAddress. */
	if (is_ip_literal(c->host)) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->host);
	} else {
		SSL_set_tlsext_host_name(c->ssl, c->host);
		SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		SSL_set1_host(c->ssl, c->host);
	}
	int rc;
	for (;;) {
		ERR_clear_error(); /* SSL_get_error needs an empty queue */
		errno = 0;
		rc = SSL_connect(c->ssl);
		int saved = errno;
		if (rc == 1 || saved != EINTR || aborted(c))
			break;
		int e = SSL_get_error(c->ssl, rc);
		/* Interrupted by a signal: the socket BIO reports a retry. (A
		 * SYSCALL error is fatal for the connection: no retry.) */
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
			break;
	}
	if (rc != 1) {
		char why[256];
		tls_error_string(why, sizeof(why));
		return fail(c, "TLS handshake with %s failed: %s", c->host, why);
	}
	long vr = SSL_get_verify_result(c->ssl);
	if (tls->verify && !pinned && vr != X509_V_OK) {
		X509 *cert = SSL_get0_peer_certificate(c->ssl);
		char names[768] = "no certificate";
		if (cert != NULL)
			describe_cert(cert, names, sizeof(names));
		return fail(c, "certificate of %s not accepted: %s (expected the name %s; the "
			       "certificate holds %s)",
			    c->host, X509_verify_cert_error_string(vr), c->host, names);
	}
	if (pinned) {
		char fp[128];
		if (client_tls_fingerprint(c, fp, sizeof(fp)) < 0 ||
		    !same_fingerprint(fp, tls->fingerprint))
			return fail(c, "certificate of %s does not match the pinned fingerprint: got %s",
				    c->host, fp);
	}
	return 0;
}

void client_tls_describe(const struct client_conn *c, char *out, size_t outlen)
{
	if (c->ssl == NULL)
		snprintf(out, outlen, "no TLS");
	else
		tls_describe(c->ssl, out, outlen);
}

void client_tls_chain(const struct client_conn *c, struct buf *out)
{
	STACK_OF(X509) *chain = c->ssl ? SSL_get_peer_cert_chain(c->ssl) : NULL;
	for (int i = 0; chain != NULL && i < sk_X509_num(chain); i++) {
		X509 *cert = sk_X509_value(chain, i);
		char desc[1024];
		describe_cert(cert, desc, sizeof(desc));
		buf_printf(out, "  %d: %s\n", i, desc);
	}
}

/* Fill the read buffer; 0, or -1 on error/EOF. A signal (Ctrl-C: SIGINT is
 * installed without SA_RESTART) interrupts the read; it is retried unless
 * the user asked to stop now. */
static int fill(struct client_conn *c)
{
	if (c->eof)
		return fail(c, "connection closed by %s", c->host);
	for (;;) {
		if (aborted(c))
			return fail(c, "interrupted while reading from %s", c->host);
		ssize_t n;
		if (c->ssl != NULL) {
			ERR_clear_error(); /* SSL_get_error needs an empty queue */
			errno = 0;
			int r = SSL_read(c->ssl, c->rbuf, sizeof(c->rbuf));
			int saved = errno;
			if (r > 0) {
				n = r;
			} else {
				int e = SSL_get_error(c->ssl, r);
				ERR_clear_error();
				/* A blocking socket's EINTR and SO_RCVTIMEO's EAGAIN both
				 * come back as "want read"; only EINTR is retried. */
				if (saved == EINTR &&
				    (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE))
					continue;
				c->tls_broken = true; /* no close_notify after this */
				if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && saved == 0)) {
					c->eof = true;
					return fail(c, "connection closed by %s", c->host);
				}
				if (saved == EAGAIN || saved == EWOULDBLOCK)
					return fail(c, "%s did not answer in time", c->host);
				if (e == SSL_ERROR_SYSCALL && saved != 0)
					return fail(c, "reading from %s: %s", c->host, strerror(saved));
				return fail(c, "reading from %s: TLS error", c->host);
			}
		} else {
			n = read(c->fd, c->rbuf, sizeof(c->rbuf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return fail(c, "%s did not answer in time", c->host);
			if (n < 0)
				return fail(c, "reading from %s: %s", c->host, strerror(errno));
			if (n == 0) {
				c->eof = true;
				return fail(c, "connection closed by %s", c->host);
			}
		}
		c->rpos = 0;
		c->rlen = (size_t)n;
		return 0;
	}
}

int client_read_line(struct client_conn *c, struct buf *line, size_t max, bool *partial)
{
	buf_clear(line);
	if (partial)
		*partial = false;
	for (;;) {
		if (c->rpos == c->rlen && fill(c) < 0)
			return -1;
		const char *start = c->rbuf + c->rpos;
		size_t avail = c->rlen - c->rpos;
		const char *nl = memchr(start, '\n', avail);
		size_t take = nl ? (size_t)(nl - start) : avail;
		buf_append(line, start, take);
		c->rpos += take + (nl ? 1 : 0);
		if (nl != NULL) {
			if (line->len > 0 && line->data[line->len - 1] == '\r')
				line->data[--line->len] = '\0';
			if (line->data == NULL) { /* an empty line */
				buf_reserve(line, 1);
				line->data[0] = '\0';
			}
			return 0;
		}
		if (max > 0 && line->len > max)
			return fail(c, "%s sent a line longer than %zu octets", c->host, max);
		if (max == 0 && line->len >= 65536) {
			*partial = true; /* hand over this piece of a long body line */
			return 0;
		}
	}
}

int client_write(struct client_conn *c, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		if (aborted(c))
			return fail(c, "interrupted while writing to %s", c->host);
		ssize_t n;
		if (c->ssl != NULL) {
			ERR_clear_error(); /* SSL_get_error needs an empty queue */
			errno = 0;
			int r = SSL_write(c->ssl, p, (int)len);
			int saved = errno;
			if (r <= 0) {
				int e = SSL_get_error(c->ssl, r);
				ERR_clear_error();
				if (saved == EINTR &&
				    (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE))
					continue; /* SSL_write is retried with the same arguments */
				c->tls_broken = true; /* no close_notify after this */
				if (saved == EAGAIN || saved == EWOULDBLOCK)
					return fail(c, "%s did not accept data in time", c->host);
				if (saved != 0)
					return fail(c, "writing to %s: %s", c->host, strerror(saved));
				return fail(c, "writing to %s failed", c->host);
			}
			n = r;
		} else {
			n = send(c->fd, p, len, MSG_NOSIGNAL);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return fail(c, "%s did not accept data in time", c->host);
			if (n < 0)
				return fail(c, "writing to %s: %s", c->host, strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
