/*
 * net.h (client) - one connection from pigeon fetch to a server: TCP (IPv4 or
 * IPv6) with connect and read timeouts, optionally TLS (implicit, or started
 * later for STLS), certificate and host name verification (RFC 9525), and
 * SHA-256 pinning. Blocking I/O: the client talks to one server at a time.
 */
#ifndef PIGEON_CLIENT_NET_H
#define PIGEON_CLIENT_NET_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "common/buf.h"

struct client_tls_config {
	const char *ca_file;     /* NULL: the system trust store */
	const char *fingerprint; /* "sha256:AB:CD:..." pins the leaf; NULL: verify normally */
	bool verify;             /* false only for --probe's look at a broken chain */
};

struct client_conn {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	char host[256];
	unsigned timeout_ms;
	char rbuf[65536];
	size_t rpos, rlen;
	bool eof;
	bool tls_broken; /* a TLS read or write failed: no close_notify */
	/* When non-NULL and set, a read or write that a signal interrupted (or
	 * that is about to start) gives up instead of going on: the user asked
	 * to stop now. Otherwise EINTR is retried. */
	const volatile sig_atomic_t *abort_flag;
	char error[512];         /* the last failure, for the user */
};

/* Connect to host:port (a name or an address literal). 0, or -1 with error. */
int client_connect(struct client_conn *c, const char *host, unsigned port,
		   unsigned connect_timeout_ms, unsigned timeout_ms);
/* Start TLS on the connection (implicit TLS, or after STLS's +OK). Bytes
 * already read in the clear and not yet consumed make it fail: they would
 * otherwise be taken for replies protected by TLS (RFC 2595 §4, and the
 * STARTTLS response injection of CVE-2011-0411 and its kin). */
int client_start_tls(struct client_conn *c, const struct client_tls_config *tls);
void client_close(struct client_conn *c);

/* One line without its CRLF (or LF). Lines longer than max are an error
 * (status lines), unless max is 0: then the line is returned in pieces,
 * *partial telling whether more of it follows. 0, or -1 on error/EOF. */
int client_read_line(struct client_conn *c, struct buf *line, size_t max, bool *partial);
int client_write(struct client_conn *c, const void *data, size_t len);

/* For --probe and logs: "TLSv1.3 TLS_AES_256_GCM_SHA384". */
void client_tls_describe(const struct client_conn *c, char *out, size_t outlen);
/* The peer's certificate chain, one "subject / issuer / SHA-256" block each. */
void client_tls_chain(const struct client_conn *c, struct buf *out);
/* "sha256:AB:CD:..." of the peer's leaf certificate. */
int client_tls_fingerprint(const struct client_conn *c, char *out, size_t outlen);

#endif
