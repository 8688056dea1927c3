/*
 * tls.h - the one place where Pigeon configures OpenSSL: protocol versions,
 * cipher lists, certificate loading and SNI for the server; trust store,
 * host name checks and pinning for the client; channel-binding data for
 * SCRAM-PLUS. Sockets and libevent are not touched here.
 */
#ifndef PIGEON_TLS_H
#define PIGEON_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/* Default TLS 1.2 cipher list: forward secrecy and AEAD only (TLS 1.3 suites
 * are OpenSSL's defaults, all of which qualify). */
#define TLS_DEFAULT_CIPHERS                                                               \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                        \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                        \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                        \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384"

struct tls_cert_config {
	const char *name; /* SNI host name ("*.example.org" allowed); NULL: default */
	const char *cert; /* PEM chain: leaf first, then intermediates */
	const char *key;  /* PEM private key */
};

struct tls_server_config {
	const struct tls_cert_config *certs; /* certs[0] is the default */
	size_t n_certs;
	int min_version;                     /* TLS1_2_VERSION or TLS1_3_VERSION */
	const char *ciphers;                 /* TLS 1.2 and below */
	const char *ciphersuites;            /* TLS 1.3; NULL: OpenSSL default */
};

struct tls_server;
struct config;

/* The [tls] and [tls:NAME] settings of pigeond's configuration. */
struct tls_server *tls_server_from_config(const struct config *cfg, char *err, size_t errlen);
/* Load and check every certificate and key. On failure returns NULL with a
 * message naming the file and the problem. */
struct tls_server *tls_server_new(const struct tls_server_config *cfg, char *err, size_t errlen);
void tls_server_free(struct tls_server *ts);
/* A new server-side SSL for one connection. */
SSL *tls_server_ssl(struct tls_server *ts);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for logs. */
void tls_describe(SSL *ssl, char *out, size_t outlen);
/* The OpenSSL error queue as one line (and cleared). */
void tls_error_string(char *out, size_t outlen);

/*
 * Channel-binding data (RFC 5929, RFC 9266) for SCRAM-PLUS:
 *   "tls-exporter"         TLS exporter, label EXPORTER-Channel-Binding, 32 octets
 *   "tls-server-end-point" hash of the server certificate (SHA-256 unless the
 *                          certificate's signature uses a stronger hash)
 * server: true on the server side (own certificate), false on the client side.
 * Returns the length written to out (at most outlen), or -1 if unavailable.
 */
int tls_channel_binding(SSL *ssl, bool server, const char *type, unsigned char *out,
			size_t outlen);

#endif
