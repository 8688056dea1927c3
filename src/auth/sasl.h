/*
 * sasl.h - server side of the SASL mechanisms, sans I/O. The POP3 core frames
 * the exchange (AUTH, "+ " challenges, base64, "*" cancel; RFC 5034); a
 * mechanism here only sees decoded client responses and produces decoded
 * challenges, and finishes with the identities and the password to check.
 */
#ifndef PIGEON_SASL_H
#define PIGEON_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

enum sasl_mech {
	SASL_MECH_PLAIN, /* RFC 4616 */
	SASL_MECH_LOGIN, /* draft-murchison-sasl-login */
	SASL_MECH_COUNT,
};

enum sasl_status {
	SASL_CONTINUE, /* send challenge, read another response */
	SASL_DONE,     /* authcid and password are ready to be checked */
	SASL_FAIL,     /* malformed exchange; error says why */
};

struct sasl_server {
	enum sasl_mech mech;
	unsigned step;
	struct buf challenge; /* decoded; the core base64-encodes it */
	char *authzid;
	char *authcid;
	char *password;
	const char *error;
};

/* Mechanism by (case-insensitive) name; -1 if unknown. */
int sasl_mech_by_name(const char *name, size_t len);
const char *sasl_mech_name(enum sasl_mech mech);
/* Does the mechanism reveal the password to an eavesdropper? (RFC 8314 policy) */
bool sasl_mech_is_plaintext(enum sasl_mech mech);

void sasl_server_start(struct sasl_server *s, enum sasl_mech mech);
/* One client response; present=false for AUTH without an initial response. */
enum sasl_status sasl_server_step(struct sasl_server *s, const char *in, size_t len, bool present);
/* Wipe and free everything. */
void sasl_server_clear(struct sasl_server *s);

#endif
