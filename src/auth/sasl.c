/* sasl.c - SCRAM-SHA-256(-PLUS), PLAIN, LOGIN and CRAM-MD5, server side. */
#include "auth/sasl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/base64.h"
#include "common/bounds.h"
#include "common/strutil.h"
#include "common/xmalloc.h"

static const struct {
	const char *name;
	bool plaintext;
} mechs[SASL_MECH_COUNT] = {
	[SASL_MECH_SCRAM_SHA_256_PLUS] = {"SCRAM-SHA-256-PLUS", false},
	[SASL_MECH_SCRAM_SHA_256] = {"SCRAM-SHA-256", false},
	[SASL_MECH_PLAIN] = {"PLAIN", true},
	[SASL_MECH_LOGIN] = {"LOGIN", true},
	[SASL_MECH_CRAM_MD5] = {"CRAM-MD5", false},
};

int sasl_mech_by_name(const char *name, size_t len)
{
	for (int i = 0; i < SASL_MECH_COUNT; i++)
		if (str_ieq_n(name, len, mechs[i].name))
			return i;
	return -1;
}

const char *sasl_mech_name(enum sasl_mech mech)
{
	return mechs[mech].name;
}

bool sasl_mech_is_plaintext(enum sasl_mech mech)
{
	return mechs[mech].plaintext;
}

void sasl_server_start(struct sasl_server *s, enum sasl_mech mech,
		       const struct sasl_channel_binding *cb)
{
	memset(s, 0, sizeof(*s));
	s->mech = mech;
	s->cb = cb;
}

static void wipe_free(char **p)
{
	if (*p != NULL) {
		OPENSSL_cleanse(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

void sasl_server_clear(struct sasl_server *s)
{
	char **strings[] = {&s->authzid, &s->authcid, &s->password, &s->cram_digest,
			    &s->cram_challenge, &s->gs2_header, &s->client_first_bare,
			    &s->server_first, &s->nonce};
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		wipe_free(strings[i]);
	OPENSSL_cleanse(&s->record, sizeof(s->record));
	buf_wipe(&s->challenge);
	buf_free(&s->challenge);
}

static enum sasl_status fail(struct sasl_server *s, const char *why)
{
	s->error = why;
	return SASL_FAIL;
}

static void set_challenge(struct sasl_server *s, const char *text)
{
	buf_clear(&s->challenge);
	buf_append_str(&s->challenge, text);
}

/* ---- PLAIN (RFC 4616 §2) ----------------------------------------------- */

/* message = [authzid] NUL authcid NUL passwd, each field at most 255 octets
 * of UTF-8 without NUL; authcid and passwd non-empty. */
static enum sasl_status plain_step(struct sasl_server *s, const char *in, size_t len, bool present)
{
	if (!present) {
		buf_clear(&s->challenge);
		return SASL_CONTINUE;
	}
	const char *nul1 = memchr(in, '\0', len);
	const char *nul2 = nul1 ? memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - in)) : NULL;
	if (nul1 == NULL || nul2 == NULL || memchr(nul2 + 1, '\0', len - (size_t)(nul2 + 1 - in)))
		return fail(s, "PLAIN message must hold exactly two NUL separators");
	size_t zlen = (size_t)(nul1 - in);
	size_t clen = (size_t)(nul2 - nul1 - 1);
	size_t plen = len - (size_t)(nul2 + 1 - in);
	if (clen == 0 || plen == 0)
		return fail(s, "PLAIN user name and password must not be empty");
	if (zlen > SASL_MAX_FIELD || clen > SASL_MAX_FIELD || plen > SASL_MAX_FIELD)
		return fail(s, "PLAIN field longer than 255 octets");
	s->authzid = xstrndup(in, zlen);
	s->authcid = xstrndup(nul1 + 1, clen);
	s->password = xstrndup(nul2 + 1, plen);
	return SASL_DONE;
}

/* ---- LOGIN -------------------------------------------------------------- */

static enum sasl_status login_step(struct sasl_server *s, const char *in, size_t len, bool present)
{
	if (present && (memchr(in, '\0', len) != NULL || len > SASL_MAX_FIELD))
		return fail(s, "LOGIN response contains NUL or is too long");
	switch (s->step) {
	case 0:
		if (!present || len == 0) {
			s->step = 1;
			set_challenge(s, "Username:");
			return SASL_CONTINUE;
		}
		/* Some clients send the user name as an initial response. */
		/* fall through */
	case 1:
		if (len == 0)
			return fail(s, "LOGIN user name must not be empty");
		s->authcid = xstrndup(in, len);
		s->step = 2;
		set_challenge(s, "Password:");
		return SASL_CONTINUE;
	default:
		if (len == 0)
			return fail(s, "LOGIN password must not be empty");
		s->password = xstrndup(in, len);
		return SASL_DONE;
	}
}

/* ---- CRAM-MD5 (RFC 2195) --------------------------------------------------- */

static enum sasl_status cram_step(struct sasl_server *s, const char *in, size_t len, bool present)
{
	if (s->step == 0) {
		if (present && len > 0)
			return fail(s, "CRAM-MD5 takes no initial response");
		unsigned char rnd[12];
		RAND_bytes(rnd, sizeof(rnd));
		struct buf b = BUF_INIT;
		buf_append_byte(&b, '<');
		for (size_t i = 0; i < sizeof(rnd); i++)
			buf_printf(&b, "%02x", rnd[i]);
		buf_append_str(&b, "@pigeon>");
		s->cram_challenge = b.data;
		set_challenge(s, s->cram_challenge);
		s->step = 1;
		return SASL_CONTINUE;
	}
	/* response = user SP 32 lower-case hex digits */
	const char *sp = len > 33 ? in + len - 33 : NULL;
	if (sp == NULL || *sp != ' ' || memchr(in, '\0', len) != NULL ||
	    (size_t)(sp - in) > SASL_MAX_FIELD)
		return fail(s, "CRAM-MD5 response must be 'user digest'");
	for (size_t i = 1; i <= 32; i++)
		if (!((sp[i] >= '0' && sp[i] <= '9') || (sp[i] >= 'a' && sp[i] <= 'f')))
			return fail(s, "CRAM-MD5 digest must be 32 lower-case hex digits");
	s->authcid = xstrndup(in, (size_t)(sp - in));
	s->cram_digest = xstrndup(sp + 1, 32);
	return SASL_DONE;
}

/* ---- SCRAM-SHA-256 and -PLUS (RFC 5802 §5, RFC 7677, RFC 9266) ---------------- */

/* saslname: "=2C" is ',', "=3D" is '=', no other '='. */
static char *decode_saslname(const char *p, size_t len)
{
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < len; i++) {
		if (p[i] == ',' || p[i] == '\0')
			goto bad;
		if (p[i] != '=') {
			buf_append_byte(&b, p[i]);
			continue;
		}
		if (i + 2 < len && p[i + 1] == '2' && p[i + 2] == 'C')
			buf_append_byte(&b, ',');
		else if (i + 2 < len && p[i + 1] == '3' && p[i + 2] == 'D')
			buf_append_byte(&b, '=');
		else
			goto bad;
		i += 2;
	}
	if (b.len == 0 || b.len > SASL_MAX_FIELD)
		goto bad;
	return b.data;
bad:
	buf_free(&b);
	return NULL;
}

/* Find "k=" attribute at the start of a comma-separated field list. */
static bool field_is(const char *p, const char *end, char key)
{
	return end - p >= 2 && p[0] == key && p[1] == '=';
}

static const char *field_end(const char *p, const char *end)
{
	const char *c = memchr(p, ',', (size_t)(end - p));
	return c ? c : end;
}

static bool plus_available(const struct sasl_server *s)
{
	return s->cb != NULL && s->cb->tls &&
	       (s->cb->exporter_len > 0 || s->cb->end_point_len > 0);
}

/* client-first = gs2-header client-first-bare */
static enum sasl_status scram_first(struct sasl_server *s, const char *in, size_t len)
{
	const char *end = in + len, *p = in;
	bool plus = s->mech == SASL_MECH_SCRAM_SHA_256_PLUS;
	if (memchr(in, '\0', len) != NULL)
		return fail(s, "SCRAM message contains NUL");
	/* cbind-flag */
	const char *f = field_end(p, end);
	if (f - p == 1 && (*p == 'n' || *p == 'y')) {
		if (plus)
			return fail(s, "SCRAM-SHA-256-PLUS needs channel binding (p=)");
		/* RFC 5802 §6: "y" means the client could bind but thinks we
		 * cannot; if we offer -PLUS here, someone removed it. */
		if (*p == 'y' && plus_available(s))
			return fail(s, "SCRAM channel-binding downgrade detected");
	} else if (field_is(p, f, 'p')) {
		if (!plus)
			return fail(s, "channel binding requested with SCRAM-SHA-256 (use -PLUS)");
		size_t n = (size_t)(f - p - 2);
		bool exporter = n == 12 && memcmp(p + 2, "tls-exporter", 12) == 0;
		bool end_point = n == 20 && memcmp(p + 2, "tls-server-end-point", 20) == 0;
		if (s->cb == NULL || ((!exporter || s->cb->exporter_len <= 0) &&
				      (!end_point || s->cb->end_point_len <= 0)))
			return fail(s, "unsupported channel binding type "
				       "(tls-exporter or tls-server-end-point)");
	} else {
		return fail(s, "SCRAM message must start with n, y or p=");
	}
	if (f == end)
		return fail(s, "SCRAM gs2 header is incomplete");
	p = f + 1;
	/* optional authzid */
	f = field_end(p, end);
	if (f != p) {
		if (!field_is(p, f, 'a'))
			return fail(s, "SCRAM gs2 header: expected a=authzid");
		s->authzid = decode_saslname(p + 2, (size_t)(f - p - 2));
		if (s->authzid == NULL)
			return fail(s, "SCRAM authzid is malformed");
	}
	if (f == end)
		return fail(s, "SCRAM gs2 header is incomplete");
	p = f + 1;
	s->gs2_header = xstrndup(in, (size_t)(p - in));
	s->client_first_bare = xstrndup(p, (size_t)(end - p));
	/* client-first-bare = [m=...,] n=user,r=nonce[,ext] */
	f = field_end(p, end);
	if (field_is(p, f, 'm'))
		return fail(s, "SCRAM mandatory extension not supported");
	if (!field_is(p, f, 'n'))
		return fail(s, "SCRAM message needs n=username");
	s->authcid = decode_saslname(p + 2, (size_t)(f - p - 2));
	if (s->authcid == NULL)
		return fail(s, "SCRAM user name is malformed");
	if (f == end)
		return fail(s, "SCRAM message needs r=nonce");
	p = f + 1;
	f = field_end(p, end);
	if (!field_is(p, f, 'r') || f - p < 3)
		return fail(s, "SCRAM message needs r=nonce");
	for (const char *q = p + 2; q < f; q++)
		if (*q < 0x21 || *q > 0x7e)
			return fail(s, "SCRAM nonce must be printable");
	s->nonce = xstrndup(p + 2, (size_t)(f - p - 2));
	s->step = 1;
	return SASL_NEED_LOOKUP;
}

enum sasl_status sasl_server_set_record(struct sasl_server *s, const struct scram_record *rec)
{
	s->record = *rec;
	/* server-first = r=client-nonce server-nonce, s=salt, i=iterations */
	unsigned char rnd[18];
	RAND_bytes(rnd, sizeof(rnd));
	struct buf b = BUF_INIT;
	buf_printf(&b, "r=%s", s->nonce);
	base64_encode(rnd, sizeof(rnd), &b);
	free(s->nonce);
	s->nonce = xstrdup(b.data + 2);
	buf_append_str(&b, ",s=");
	base64_encode(rec->salt, rec->salt_len, &b);
	buf_printf(&b, ",i=%u", rec->iterations);
	s->server_first = b.data;
	set_challenge(s, s->server_first);
	s->step = 2;
	return SASL_CONTINUE;
}

/* The channel-binding data the client must have put into c=. */
static void expected_cbind(const struct sasl_server *s, struct buf *out)
{
	buf_append_str(out, s->gs2_header);
	if (s->gs2_header[0] != 'p')
		return;
	if (strncmp(s->gs2_header, "p=tls-exporter,", 15) == 0)
		buf_append(out, s->cb->exporter, (size_t)s->cb->exporter_len);
	else
		buf_append(out, s->cb->end_point, (size_t)s->cb->end_point_len);
}

/* client-final = c=cbind,r=nonce[,ext],p=proof */
static enum sasl_status scram_final(struct sasl_server *s, const char *in, size_t len)
{
	const char *end = in + len, *p = in;
	if (memchr(in, '\0', len) != NULL)
		return fail(s, "SCRAM message contains NUL");
	const char *f = field_end(p, end);
	if (!field_is(p, f, 'c'))
		return fail(s, "SCRAM final message needs c=");
	struct buf got = BUF_INIT, want = BUF_INIT;
	bool cb_ok = base64_decode(p + 2, (size_t)(f - p - 2), &got) == 0;
	expected_cbind(s, &want);
	cb_ok = cb_ok && got.len == want.len && CRYPTO_memcmp(got.data, want.data, got.len) == 0;
	buf_free(&got);
	buf_free(&want);
	if (!cb_ok)
		return fail(s, "SCRAM channel binding does not match");
	if (f == end)
		return fail(s, "SCRAM final message needs r=");
	p = f + 1;
	f = field_end(p, end);
	if (!field_is(p, f, 'r') || (size_t)(f - p - 2) != strlen(s->nonce) ||
	    memcmp(p + 2, s->nonce, strlen(s->nonce)) != 0)
		return fail(s, "SCRAM nonce does not match");
	/* the proof is the last attribute */
	const char *proof = NULL;
	for (const char *q = f; q + 3 <= end; q++)
		if (q[0] == ',' && q[1] == 'p' && q[2] == '=')
			proof = q;
	if (proof == NULL)
		return fail(s, "SCRAM final message needs p=proof");
	struct buf pr = BUF_INIT;
	if (base64_decode(proof + 3, (size_t)(end - proof - 3), &pr) < 0) {
		buf_free(&pr);
		return fail(s, "SCRAM proof is not base64");
	}
	struct buf am = BUF_INIT;
	buf_printf(&am, "%s,%s,", s->client_first_bare, s->server_first);
	buf_append(&am, in, (size_t)(proof - in));
	unsigned char server_sig[SCRAM_KEY_LEN];
	s->proof_ok = scram_verify_proof(&s->record, am.data, am.len,
					 (const unsigned char *)pr.data, pr.len, server_sig);
	buf_free(&pr);
	buf_free(&am);
	if (!s->proof_ok) {
		/* Reported as a failed login (with its delay), not a syntax error. */
		s->verified = false;
		return SASL_DONE;
	}
	buf_clear(&s->challenge);
	buf_append_str(&s->challenge, "v=");
	base64_encode(server_sig, sizeof(server_sig), &s->challenge);
	s->step = 3;
	return SASL_CONTINUE;
}

static enum sasl_status scram_step(struct sasl_server *s, const char *in, size_t len, bool present)
{
	switch (s->step) {
	case 0:
		if (!present) {
			buf_clear(&s->challenge);
			return SASL_CONTINUE;
		}
		return scram_first(s, in, len);
	case 2:
		return scram_final(s, in, len);
	case 3:
		/* RFC 5034 §4: the client answers the server-final challenge with
		 * an empty response. */
		if (len != 0)
			return fail(s, "SCRAM expected an empty response after v=");
		s->verified = s->proof_ok;
		return SASL_DONE;
	default:
		return fail(s, "SCRAM exchange out of order");
	}
}

enum sasl_status sasl_server_step(struct sasl_server *s, const char *in, size_t len, bool present)
{
	switch (s->mech) {
	case SASL_MECH_PLAIN:
		return plain_step(s, in, len, present);
	case SASL_MECH_LOGIN:
		return login_step(s, in, len, present);
	case SASL_MECH_CRAM_MD5:
		return cram_step(s, in, len, present);
	case SASL_MECH_SCRAM_SHA_256:
	case SASL_MECH_SCRAM_SHA_256_PLUS:
		return scram_step(s, in, len, present);
	default:
		return fail(s, "unknown mechanism");
	}
}
