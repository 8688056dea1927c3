/* sasl_client.c - POP3 client authentication. */
#include "client/sasl_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth/scram.h"
#include "common/base64.h"
#include "common/bounds.h"
#include "common/xmalloc.h"
#include "tls/tls.h"

const char *client_auth_name(enum account_auth auth)
{
	static const char *const names[] = {
		[AUTH_AUTO] = "auto",       [AUTH_SCRAM_PLUS] = "SCRAM-SHA-256-PLUS",
		[AUTH_SCRAM] = "SCRAM-SHA-256", [AUTH_PLAIN] = "PLAIN",
		[AUTH_LOGIN] = "LOGIN",     [AUTH_USER] = "USER/PASS",
		[AUTH_APOP] = "APOP",       [AUTH_XOAUTH2] = "XOAUTH2",
		[AUTH_OAUTHBEARER] = "OAUTHBEARER",
	};
	return names[auth];
}

static bool plus_possible(const struct pop3c *p)
{
	unsigned char cb[64];
	return p->conn.ssl != NULL &&
	       (tls_channel_binding(p->conn.ssl, false, "tls-exporter", cb, sizeof(cb)) > 0 ||
		tls_channel_binding(p->conn.ssl, false, "tls-server-end-point", cb, sizeof(cb)) > 0);
}

enum account_auth client_choose_auth(const struct pop3c *p, const struct account *a, bool tls)
{
	(void)tls;
	if (a->auth != AUTH_AUTO)
		return a->auth;
	if (pop3c_has_sasl(p, "SCRAM-SHA-256-PLUS") && plus_possible(p))
		return AUTH_SCRAM_PLUS;
	if (pop3c_has_sasl(p, "SCRAM-SHA-256"))
		return AUTH_SCRAM;
	if (pop3c_has_sasl(p, "PLAIN"))
		return AUTH_PLAIN;
	if (pop3c_has_sasl(p, "LOGIN"))
		return AUTH_LOGIN;
	/* RFC 2449 §6.2 (pop3.md client item 23): USER/PASS only when CAPA
	 * lists USER, or when there is no CAPA to ask (a pre-RFC-2449 server). */
	if (p->has_user || !p->capa_ok)
		return AUTH_USER;
	if (p->apop_timestamp[0] != '\0')
		return AUTH_APOP;
	return AUTH_AUTO; /* nothing offered that we can use */
}

/* RFC 3206: what kind of failure a -ERR to an authentication is. */
static enum fetch_status classify(const struct pop3c_reply *r)
{
	if (strcasecmp(r->code, "IN-USE") == 0 || strcasecmp(r->code, "LOGIN-DELAY") == 0 ||
	    strncasecmp(r->code, "SYS/TEMP", 8) == 0)
		return FETCH_TEMP;
	if (strncasecmp(r->code, "SYS/PERM", 8) == 0)
		return FETCH_PERM;
	return FETCH_AUTH;
}

static enum fetch_status transport(struct pop3c *p, char *why, size_t whylen)
{
	snprintf(why, whylen, "%s", p->conn.error);
	return FETCH_TEMP;
}

static enum fetch_status refused(const struct pop3c_reply *r, const char *method, char *why,
				 size_t whylen)
{
	snprintf(why, whylen, "login with %s refused: %s%s%s%s", method, r->code[0] ? "[" : "",
		 r->code, r->code[0] ? "] " : "", r->text);
	return classify(r);
}

/* Send a base64 SASL response line; secret lines are traced redacted. */
static int send_b64(struct pop3c *p, const void *data, size_t len)
{
	struct buf b = BUF_INIT;
	base64_encode(data, len, &b);
	int rc = pop3c_send(p, true, "%s", b.data ? b.data : "");
	buf_wipe(&b);
	buf_free(&b);
	return rc;
}

/* "+ base64" -> decoded challenge; 1 if it was a challenge, 0 if a status
 * line ended the exchange (r filled), -1 on transport error. */
static int challenge(struct pop3c *p, struct buf *out, struct pop3c_reply *r)
{
	struct buf line = BUF_INIT;
	int rc = client_read_line(&p->conn, &line, POP3_MAX_SASL_LINE, NULL);
	if (rc < 0) {
		buf_free(&line);
		return -1;
	}
	const char *s = line.data ? line.data : "";
	if (p->trace)
		fprintf(stderr, "S: %s\n", s);
	if (s[0] == '+' && (s[1] == ' ' || s[1] == '\0') && strncasecmp(s, "+OK", 3) != 0) {
		const char *b64 = s[1] ? s + 2 : "";
		buf_clear(out);
		rc = base64_decode(b64, strlen(b64), out) == 0 ? 1 : -1;
		if (rc < 0)
			snprintf(p->conn.error, sizeof(p->conn.error), "%s sent a malformed challenge",
				 p->conn.host);
	} else {
		memset(r, 0, sizeof(*r));
		r->ok = strncasecmp(s, "+OK", 3) == 0;
		const char *t = s + (r->ok ? 3 : (strncasecmp(s, "-ERR", 4) == 0 ? 4 : 0));
		while (*t == ' ')
			t++;
		if (*t == '[') {
			const char *end = strchr(t, ']');
			if (end && (size_t)(end - t - 1) < sizeof(r->code)) {
				memcpy(r->code, t + 1, (size_t)(end - t - 1));
				t = end + 1;
				while (*t == ' ')
					t++;
			}
		}
		snprintf(r->text, sizeof(r->text), "%s", t);
		rc = 0;
	}
	buf_free(&line);
	return rc;
}

/* AUTH mech [ir]: the initial response only when the line stays within
 * 255 octets (RFC 5034 §4), else wait for "+ " and send it alone. */
static int start_auth(struct pop3c *p, const char *mech, const void *ir, size_t len, bool two_step,
		      struct pop3c_reply *r)
{
	struct buf b64 = BUF_INIT;
	base64_encode(ir, len, &b64);
	int rc;
	if (!two_step && 5 + strlen(mech) + 1 + b64.len + 2 <= POP3_MAX_COMMAND_LINE) {
		rc = pop3c_send(p, true, "AUTH %s %s", mech, len ? b64.data : "=");
		rc = rc < 0 ? -1 : 1;
	} else {
		struct buf ch = BUF_INIT;
		rc = pop3c_send(p, false, "AUTH %s", mech);
		if (rc == 0)
			rc = challenge(p, &ch, r);
		if (rc == 1)
			rc = pop3c_send(p, true, "%s", len ? b64.data : "") < 0 ? -1 : 1;
		buf_free(&ch);
	}
	buf_wipe(&b64);
	buf_free(&b64);
	return rc; /* 1: response sent; 0: refused at once (r); -1: transport */
}

static enum fetch_status finish(struct pop3c *p, const char *method, char *why, size_t whylen)
{
	struct pop3c_reply r;
	if (pop3c_reply(p, &r) < 0)
		return transport(p, why, whylen);
	return r.ok ? FETCH_OK : refused(&r, method, why, whylen);
}

static enum fetch_status login_user(struct pop3c *p, const struct account *a, const char *secret,
				    char *why, size_t whylen)
{
	struct pop3c_reply r;
	if (pop3c_send(p, false, "USER %s", a->user) < 0 || pop3c_reply(p, &r) < 0)
		return transport(p, why, whylen);
	if (!r.ok)
		return refused(&r, "USER", why, whylen);
	if (pop3c_send(p, true, "PASS %s", secret) < 0)
		return transport(p, why, whylen);
	return finish(p, "USER/PASS", why, whylen);
}

static enum fetch_status login_apop(struct pop3c *p, const struct account *a, const char *secret,
				    char *why, size_t whylen)
{
	if (p->apop_timestamp[0] == '\0') {
		snprintf(why, whylen, "the server's greeting has no APOP timestamp");
		return FETCH_CONFIG;
	}
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
	EVP_DigestUpdate(ctx, p->apop_timestamp, strlen(p->apop_timestamp));
	EVP_DigestUpdate(ctx, secret, strlen(secret));
	EVP_DigestFinal_ex(ctx, md, &len);
	EVP_MD_CTX_free(ctx);
	char hex[2 * EVP_MAX_MD_SIZE + 1];
	for (unsigned i = 0; i < len; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	if (pop3c_send(p, true, "APOP %s %s", a->user, hex) < 0)
		return transport(p, why, whylen);
	return finish(p, "APOP", why, whylen);
}

static enum fetch_status login_plain(struct pop3c *p, const struct account *a, const char *secret,
				     char *why, size_t whylen)
{
	struct buf msg = BUF_INIT;
	buf_append_byte(&msg, '\0');
	buf_append_str(&msg, a->user);
	buf_append_byte(&msg, '\0');
	buf_append_str(&msg, secret);
	struct pop3c_reply r;
	int rc = start_auth(p, "PLAIN", msg.data, msg.len, false, &r);
	buf_wipe(&msg);
	buf_free(&msg);
	if (rc < 0)
		return transport(p, why, whylen);
	if (rc == 0)
		return refused(&r, "PLAIN", why, whylen);
	return finish(p, "PLAIN", why, whylen);
}

static enum fetch_status login_login(struct pop3c *p, const struct account *a, const char *secret,
				     char *why, size_t whylen)
{
	struct buf ch = BUF_INIT;
	struct pop3c_reply r;
	enum fetch_status st;
	int rc = pop3c_send(p, false, "AUTH LOGIN");
	if (rc == 0)
		rc = challenge(p, &ch, &r);
	if (rc == 1)
		rc = send_b64(p, a->user, strlen(a->user)) < 0 ? -1 : challenge(p, &ch, &r);
	if (rc == 1)
		rc = send_b64(p, secret, strlen(secret)) < 0 ? -1 : 2;
	buf_free(&ch);
	if (rc < 0)
		st = transport(p, why, whylen);
	else if (rc == 0)
		st = refused(&r, "LOGIN", why, whylen);
	else
		st = finish(p, "LOGIN", why, whylen);
	return st;
}

/* saslname: ',' -> "=2C", '=' -> "=3D" (RFC 5802 §5.1). */
static void saslname(struct buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == ',')
			buf_append_str(b, "=2C");
		else if (*s == '=')
			buf_append_str(b, "=3D");
		else
			buf_append_byte(b, *s);
	}
}

/* Value of attribute "k=" in a SCRAM message; NULL if absent. */
static const char *scram_attr(const char *msg, char key, size_t *len)
{
	for (const char *p = msg; p != NULL && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		if (p[0] == key && p[1] == '=') {
			const char *end = strchr(p, ',');
			*len = end ? (size_t)(end - p - 2) : strlen(p + 2);
			return p + 2;
		}
	}
	return NULL;
}

static enum fetch_status login_scram(struct pop3c *p, const struct account *a, const char *secret,
				     bool plus, char *why, size_t whylen)
{
	const char *mech = plus ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256";
	unsigned char rnd[24], cbdata[64];
	int cblen = -1;
	const char *cbtype = NULL;
	RAND_bytes(rnd, sizeof(rnd));
	struct buf cnonce = BUF_INIT, first = BUF_INIT, gs2 = BUF_INIT, ch = BUF_INIT,
		   final = BUF_INIT, am = BUF_INIT, c = BUF_INIT, out = BUF_INIT;
	enum fetch_status st = FETCH_AUTH;
	base64_encode(rnd, sizeof(rnd), &cnonce);
	if (plus) {
		/* RFC 9266: tls-exporter with TLS 1.3, else tls-server-end-point. */
		cbtype = "tls-exporter";
		cblen = tls_channel_binding(p->conn.ssl, false, cbtype, cbdata, sizeof(cbdata));
		if (cblen < 0) {
			cbtype = "tls-server-end-point";
			cblen = tls_channel_binding(p->conn.ssl, false, cbtype, cbdata, sizeof(cbdata));
		}
		if (cblen < 0) {
			snprintf(why, whylen, "no TLS channel binding for SCRAM-SHA-256-PLUS");
			st = FETCH_CONFIG;
			goto out;
		}
		buf_printf(&gs2, "p=%s,,", cbtype);
	} else {
		/* RFC 5802 §6 "y": we could bind, but the server did not offer
		 * -PLUS (if it did, "y" would tell it of a downgrade). */
		buf_append_str(&gs2, plus_possible(p) && !pop3c_has_sasl(p, "SCRAM-SHA-256-PLUS")
					     ? "y,,"
					     : "n,,");
	}
	buf_append_str(&first, "n=");
	saslname(&first, a->user);
	buf_printf(&first, ",r=%s", cnonce.data);
	struct buf ir = BUF_INIT;
	buf_printf(&ir, "%s%s", gs2.data, first.data);
	struct pop3c_reply r;
	int rc = start_auth(p, mech, ir.data, ir.len, false, &r);
	buf_free(&ir);
	if (rc < 0) {
		st = transport(p, why, whylen);
		goto out;
	}
	if (rc == 0) {
		st = refused(&r, mech, why, whylen);
		goto out;
	}
	rc = challenge(p, &ch, &r);
	if (rc <= 0) {
		st = rc < 0 ? transport(p, why, whylen) : refused(&r, mech, why, whylen);
		goto out;
	}
	buf_append_byte(&ch, '\0');
	ch.len--;
	size_t rlen, slen, ilen;
	const char *rv = scram_attr(ch.data, 'r', &rlen), *sv = scram_attr(ch.data, 's', &slen),
		   *iv = scram_attr(ch.data, 'i', &ilen);
	if (rv == NULL || sv == NULL || iv == NULL || rlen <= cnonce.len ||
	    strncmp(rv, cnonce.data, cnonce.len) != 0) {
		snprintf(why, whylen, "%s: malformed or forged server-first message", mech);
		pop3c_send(p, false, "*");
		goto out;
	}
	struct buf salt = BUF_INIT;
	long iter = strtol(iv, NULL, 10);
	if (base64_decode(sv, slen, &salt) < 0 || salt.len == 0 || iter < 1 ||
	    iter > SCRAM_MAX_ITERATIONS) {
		buf_free(&salt);
		snprintf(why, whylen, "%s: bad salt or iteration count from the server", mech);
		pop3c_send(p, false, "*");
		goto out;
	}
	buf_append(&c, gs2.data, gs2.len);
	if (plus)
		buf_append(&c, cbdata, (size_t)cblen);
	buf_append_str(&final, "c=");
	base64_encode(c.data, c.len, &final);
	buf_printf(&final, ",r=%.*s", (int)rlen, rv);
	buf_printf(&am, "%s,%s,%s", first.data, ch.data, final.data);
	unsigned char proof[SCRAM_KEY_LEN], server_sig[SCRAM_KEY_LEN];
	if (scram_client_proof(secret, (const unsigned char *)salt.data, salt.len, (unsigned)iter,
			       am.data, am.len, proof, server_sig) < 0) {
		buf_free(&salt);
		snprintf(why, whylen, "%s: key derivation failed", mech);
		st = FETCH_SOFTWARE;
		goto out;
	}
	buf_free(&salt);
	buf_append_str(&final, ",p=");
	base64_encode(proof, sizeof(proof), &final);
	if (send_b64(p, final.data, final.len) < 0) {
		st = transport(p, why, whylen);
		goto out;
	}
	rc = challenge(p, &ch, &r);
	if (rc < 0) {
		st = transport(p, why, whylen);
		goto out;
	}
	if (rc == 0) {
		/* RFC 5802 §9: the client must check v= before trusting the server. */
		if (r.ok)
			snprintf(why, whylen, "%s: the server accepted without proving it knows "
					      "the password (no v=)", mech);
		st = r.ok ? FETCH_PERM : refused(&r, mech, why, whylen);
		goto out;
	}
	buf_append_byte(&ch, '\0');
	ch.len--;
	size_t vlen;
	const char *v = scram_attr(ch.data, 'v', &vlen);
	if (v == NULL || base64_decode(v, vlen, &out) < 0 || out.len != SCRAM_KEY_LEN ||
	    CRYPTO_memcmp(out.data, server_sig, SCRAM_KEY_LEN) != 0) {
		snprintf(why, whylen, "%s: the server's signature is wrong: not the real server?",
			 mech);
		pop3c_send(p, false, "*");
		st = FETCH_PERM;
		goto out;
	}
	if (pop3c_send(p, false, "%s", "") < 0) {
		st = transport(p, why, whylen);
		goto out;
	}
	st = finish(p, mech, why, whylen);
out:;
	struct buf *bufs[] = {&cnonce, &first, &gs2, &ch, &final, &am, &c, &out};
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
		buf_wipe(bufs[i]);
		buf_free(bufs[i]);
	}
	return st;
}

/* XOAUTH2 (Google, Microsoft) and OAUTHBEARER (RFC 7628). */
static enum fetch_status login_oauth(struct pop3c *p, const struct account *a, const char *token,
				     bool bearer, char *why, size_t whylen)
{
	const char *mech = bearer ? "OAUTHBEARER" : "XOAUTH2";
	struct buf msg = BUF_INIT;
	if (bearer)
		buf_printf(&msg, "n,a=%s,\001host=%s\001port=%u\001auth=Bearer %s\001\001", a->user,
			   a->host, a->port, token);
	else
		buf_printf(&msg, "user=%s\001auth=Bearer %s\001\001", a->user, token);
	struct pop3c_reply r;
	/* Microsoft refuses XOAUTH2 with an initial response: always two steps. */
	int rc = start_auth(p, mech, msg.data, msg.len, !bearer, &r);
	buf_wipe(&msg);
	buf_free(&msg);
	if (rc < 0)
		return transport(p, why, whylen);
	if (rc == 0)
		return refused(&r, mech, why, whylen);
	struct buf ch = BUF_INIT;
	rc = challenge(p, &ch, &r);
	if (rc == 1) {
		/* A JSON error challenge: answer it (empty line, or 0x01 for
		 * OAUTHBEARER), then read the -ERR (RFC 7628 §3.2.2). */
		char detail[160];
		snprintf(detail, sizeof(detail), "%.*s", (int)(ch.len < 150 ? ch.len : 150),
			 ch.data ? ch.data : "");
		buf_free(&ch);
		if ((bearer ? send_b64(p, "\001", 1) : pop3c_send(p, false, "%s", "")) < 0 ||
		    pop3c_reply(p, &r) < 0)
			return transport(p, why, whylen);
		snprintf(why, whylen, "%s token rejected (expired or wrong scope?): %s", mech, detail);
		return FETCH_AUTH;
	}
	buf_free(&ch);
	if (rc < 0)
		return transport(p, why, whylen);
	return r.ok ? FETCH_OK : refused(&r, mech, why, whylen);
}

enum fetch_status client_login(struct pop3c *p, const struct account *a, const char *secret,
			       bool tls, char *why, size_t whylen)
{
	/* Never a credential in the clear without the explicit opt-in. */
	if (!tls && !a->allow_plaintext) {
		snprintf(why, whylen, "refusing to log in without TLS (set allow_plaintext = yes "
				      "only for a trusted network)");
		return FETCH_CONFIG;
	}
	enum account_auth method = client_choose_auth(p, a, tls);
	if (method == AUTH_AUTO) {
		snprintf(why, whylen, "%s offers no login method pigeon fetch can use: its CAPA lists "
				      "no USER, no usable SASL mechanism (SASL:%s) and its greeting no "
				      "APOP timestamp%s",
			 a->host, p->sasl[0] ? p->sasl : " none",
			 tls ? "" : " (servers often offer passwords only over TLS)");
		return FETCH_PERM;
	}
	if (method == AUTH_USER && p->capa_ok && !p->has_user) {
		snprintf(why, whylen, "auth = user, but %s does not offer USER/PASS (its CAPA lists no "
				      "USER%s)",
			 a->host, tls ? "" : "; servers often offer it only over TLS");
		return FETCH_CONFIG;
	}
	if (a->auth != AUTH_AUTO && p->capa_ok) {
		static const char *const sasl[] = {[AUTH_SCRAM_PLUS] = "SCRAM-SHA-256-PLUS",
						   [AUTH_SCRAM] = "SCRAM-SHA-256",
						   [AUTH_PLAIN] = "PLAIN", [AUTH_LOGIN] = "LOGIN",
						   [AUTH_XOAUTH2] = "XOAUTH2",
						   [AUTH_OAUTHBEARER] = "OAUTHBEARER"};
		const char *name = method < sizeof(sasl) / sizeof(sasl[0]) ? sasl[method] : NULL;
		/* Microsoft does not list XOAUTH2 in CAPA; try it anyway. */
		if (name != NULL && method != AUTH_XOAUTH2 && !pop3c_has_sasl(p, name)) {
			snprintf(why, whylen, "the server does not offer %s (it offers:%s)", name,
				 p->sasl[0] ? p->sasl : " none");
			return FETCH_CONFIG;
		}
	}
	switch (method) {
	case AUTH_SCRAM_PLUS:
		return login_scram(p, a, secret, true, why, whylen);
	case AUTH_SCRAM:
		return login_scram(p, a, secret, false, why, whylen);
	case AUTH_PLAIN:
		return login_plain(p, a, secret, why, whylen);
	case AUTH_LOGIN:
		return login_login(p, a, secret, why, whylen);
	case AUTH_APOP:
		return login_apop(p, a, secret, why, whylen);
	case AUTH_XOAUTH2:
	case AUTH_OAUTHBEARER:
		return login_oauth(p, a, secret, method == AUTH_OAUTHBEARER, why, whylen);
	case AUTH_USER:
	default:
		return login_user(p, a, secret, why, whylen);
	}
}
