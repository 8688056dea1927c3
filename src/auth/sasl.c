/* sasl.c - PLAIN and LOGIN, server side. */
#include "auth/sasl.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/bounds.h"
#include "common/strutil.h"
#include "common/xmalloc.h"

static const struct {
	const char *name;
	bool plaintext;
} mechs[SASL_MECH_COUNT] = {
	[SASL_MECH_PLAIN] = {"PLAIN", true},
	[SASL_MECH_LOGIN] = {"LOGIN", true},
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

void sasl_server_start(struct sasl_server *s, enum sasl_mech mech)
{
	memset(s, 0, sizeof(*s));
	s->mech = mech;
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
	wipe_free(&s->authzid);
	wipe_free(&s->authcid);
	wipe_free(&s->password);
	buf_wipe(&s->challenge);
	buf_free(&s->challenge);
}

static enum sasl_status fail(struct sasl_server *s, const char *why)
{
	s->error = why;
	return SASL_FAIL;
}

/* RFC 4616 §2: message = [authzid] NUL authcid NUL passwd, each field at most
 * 255 octets of UTF-8 without NUL; authcid and passwd non-empty. */
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

static enum sasl_status login_step(struct sasl_server *s, const char *in, size_t len, bool present)
{
	if (present && (memchr(in, '\0', len) != NULL || len > SASL_MAX_FIELD))
		return fail(s, "LOGIN response contains NUL or is too long");
	switch (s->step) {
	case 0:
		if (!present || len == 0) {
			s->step = 1;
			buf_clear(&s->challenge);
			buf_append_str(&s->challenge, "Username:");
			return SASL_CONTINUE;
		}
		/* Some clients send the user name as an initial response. */
		/* fall through */
	case 1:
		if (len == 0)
			return fail(s, "LOGIN user name must not be empty");
		s->authcid = xstrndup(in, len);
		s->step = 2;
		buf_clear(&s->challenge);
		buf_append_str(&s->challenge, "Password:");
		return SASL_CONTINUE;
	default:
		if (len == 0)
			return fail(s, "LOGIN password must not be empty");
		s->password = xstrndup(in, len);
		return SASL_DONE;
	}
}

enum sasl_status sasl_server_step(struct sasl_server *s, const char *in, size_t len, bool present)
{
	switch (s->mech) {
	case SASL_MECH_PLAIN:
		return plain_step(s, in, len, present);
	case SASL_MECH_LOGIN:
		return login_step(s, in, len, present);
	default:
		return fail(s, "unknown mechanism");
	}
}
