/* tls.c - OpenSSL contexts for pigeond (and later pigeon fetch). */
#include "tls/tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "common/config.h"
#include "common/xmalloc.h"

struct tls_server {
	SSL_CTX **ctx;  /* one per certificate, ctx[0] the default */
	char **names;   /* SNI names (names[0] unused) */
	size_t n;
};

void tls_error_string(char *out, size_t outlen)
{
	unsigned long e;
	size_t pos = 0;
	out[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		char one[256];
		ERR_error_string_n(e, one, sizeof(one));
		int n = snprintf(out + pos, outlen - pos, "%s%s", pos ? "; " : "", one);
		if (n < 0 || (size_t)n >= outlen - pos)
			break;
		pos += (size_t)n;
	}
	if (pos == 0)
		snprintf(out, outlen, "unknown TLS error");
	ERR_clear_error();
}

static bool name_matches(const char *pattern, const char *host)
{
	if (strcasecmp(pattern, host) == 0)
		return true;
	/* "*.example.org" covers exactly one left-most label. */
	if (pattern[0] == '*' && pattern[1] == '.') {
		const char *dot = strchr(host, '.');
		return dot != NULL && dot != host && strcasecmp(dot + 1, pattern + 2) == 0;
	}
	return false;
}

static int sni_callback(SSL *ssl, int *alert, void *arg)
{
	struct tls_server *ts = arg;
	(void)alert;
	const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (host == NULL)
		return SSL_TLSEXT_ERR_OK;
	for (size_t i = 1; i < ts->n; i++) {
		if (name_matches(ts->names[i], host)) {
			SSL_set_SSL_CTX(ssl, ts->ctx[i]);
			break;
		}
	}
	return SSL_TLSEXT_ERR_OK; /* unknown names get the default certificate */
}

static SSL_CTX *make_ctx(const struct tls_server_config *cfg, const struct tls_cert_config *c,
			 char *err, size_t errlen)
{
	char why[512];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		tls_error_string(why, sizeof(why));
		snprintf(err, errlen, "cannot create TLS context: %s", why);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, cfg->min_version ? cfg->min_version : TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
					 SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_cipher_list(ctx, cfg->ciphers ? cfg->ciphers : TLS_DEFAULT_CIPHERS) != 1) {
		snprintf(err, errlen, "[tls] ciphers: no usable cipher in '%s'",
			 cfg->ciphers ? cfg->ciphers : TLS_DEFAULT_CIPHERS);
		goto fail;
	}
	if (cfg->ciphersuites && SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites) != 1) {
		snprintf(err, errlen, "[tls] ciphersuites: no usable suite in '%s'", cfg->ciphersuites);
		goto fail;
	}
	FILE *f = fopen(c->cert, "re");
	if (f == NULL) {
		snprintf(err, errlen, "certificate %s: cannot open: %s", c->cert, strerror(errno));
		goto fail;
	}
	fclose(f);
	if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
		tls_error_string(why, sizeof(why));
		snprintf(err, errlen, "certificate %s: not a usable PEM certificate chain (%s)",
			 c->cert, why);
		goto fail;
	}
	f = fopen(c->key, "re");
	if (f == NULL) {
		snprintf(err, errlen, "private key %s: cannot open: %s", c->key, strerror(errno));
		goto fail;
	}
	fclose(f);
	if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			snprintf(err, errlen, "private key %s does not match certificate %s", c->key,
				 c->cert);
			goto fail;
		}
		tls_error_string(why, sizeof(why));
		snprintf(err, errlen, "private key %s: not a usable PEM private key (%s)", c->key,
			 why);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		snprintf(err, errlen, "private key %s does not match certificate %s", c->key,
			 c->cert);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

struct tls_server *tls_server_new(const struct tls_server_config *cfg, char *err, size_t errlen)
{
	if (cfg->n_certs == 0) {
		snprintf(err, errlen, "no certificate configured");
		return NULL;
	}
	struct tls_server *ts = xcalloc(1, sizeof(*ts));
	ts->ctx = xcalloc(cfg->n_certs, sizeof(SSL_CTX *));
	ts->names = xcalloc(cfg->n_certs, sizeof(char *));
	for (size_t i = 0; i < cfg->n_certs; i++) {
		ts->ctx[i] = make_ctx(cfg, &cfg->certs[i], err, errlen);
		if (ts->ctx[i] == NULL) {
			tls_server_free(ts);
			return NULL;
		}
		ts->n++;
		ts->names[i] = xstrdup(cfg->certs[i].name ? cfg->certs[i].name : "");
	}
	SSL_CTX_set_tlsext_servername_callback(ts->ctx[0], sni_callback);
	SSL_CTX_set_tlsext_servername_arg(ts->ctx[0], ts);
	return ts;
}

void tls_server_free(struct tls_server *ts)
{
	if (ts == NULL)
		return;
	for (size_t i = 0; i < ts->n; i++) {
		SSL_CTX_free(ts->ctx[i]);
		free(ts->names[i]);
	}
	free(ts->ctx);
	free(ts->names);
	free(ts);
}

struct tls_server *tls_server_from_config(const struct config *cfg, char *err, size_t errlen)
{
	size_t n = 1 + cfg->n_sni;
	struct tls_cert_config *certs = xcalloc(n, sizeof(*certs));
	certs[0] = (struct tls_cert_config){NULL, cfg->tls_cert, cfg->tls_key};
	for (size_t i = 0; i < cfg->n_sni; i++)
		certs[i + 1] = (struct tls_cert_config){cfg->sni[i].name, cfg->sni[i].cert,
							cfg->sni[i].key};
	struct tls_server_config tc = {
		.certs = certs,
		.n_certs = n,
		.min_version = cfg->tls_min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION,
		.ciphers = cfg->tls_ciphers[0] ? cfg->tls_ciphers : NULL,
		.ciphersuites = cfg->tls_ciphersuites[0] ? cfg->tls_ciphersuites : NULL,
	};
	struct tls_server *ts = tls_server_new(&tc, err, errlen);
	free(certs);
	return ts;
}

SSL *tls_server_ssl(struct tls_server *ts)
{
	return SSL_new(ts->ctx[0]);
}

void tls_describe(SSL *ssl, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}

int tls_channel_binding(SSL *ssl, bool server, const char *type, unsigned char *out,
			size_t outlen)
{
	if (strcmp(type, "tls-exporter") == 0) {
		/* RFC 9266: for TLS 1.3. With TLS 1.2 it would need extended
		 * master secret and a zero-length context, which RFC 5705 tells
		 * apart from no context, and implementations disagree on; below
		 * 1.3 both sides use tls-server-end-point instead. */
		if (SSL_version(ssl) < TLS1_3_VERSION)
			return -1;
		static const char label[] = "EXPORTER-Channel-Binding";
		if (outlen < 32 ||
		    SSL_export_keying_material(ssl, out, 32, label, sizeof(label) - 1, NULL, 0, 0) != 1)
			return -1;
		return 32;
	}
	if (strcmp(type, "tls-server-end-point") == 0) {
		X509 *cert = server ? SSL_get_certificate(ssl) : SSL_get0_peer_certificate(ssl);
		if (cert == NULL)
			return -1;
		/* RFC 5929 §4.1: the certificate's signature hash, with MD5 and
		 * SHA-1 replaced by SHA-256. */
		int md_nid = NID_undef;
		if (!OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid, NULL))
			md_nid = NID_undef;
		const EVP_MD *md = (md_nid == NID_undef || md_nid == NID_md5 || md_nid == NID_sha1)
					   ? EVP_sha256()
					   : EVP_get_digestbynid(md_nid);
		if (md == NULL)
			md = EVP_sha256();
		unsigned int len = 0;
		unsigned char digest[EVP_MAX_MD_SIZE];
		if (X509_digest(cert, md, digest, &len) != 1 || len > outlen)
			return -1;
		memcpy(out, digest, len);
		return (int)len;
	}
	return -1;
}
