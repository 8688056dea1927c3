/*
 * sasl.h - server side of the SASL mechanisms, sans I/O. The POP3 core frames
 * the exchange (AUTH, "+ " challenges, base64, "*" cancel; RFC 5034); a
 * mechanism here only sees decoded client responses and produces decoded
 * challenges. It finishes with either a password to check (PLAIN, LOGIN), a
 * digest to check against a stored secret (CRAM-MD5), or a verdict it reached
 * itself from the stored SCRAM keys it asked for (SCRAM-SHA-256[-PLUS]).
 */
#ifndef PIGEON_SASL_H
#define PIGEON_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/scram.h"
#include "common/buf.h"

enum sasl_mech {
	SASL_MECH_SCRAM_SHA_256_PLUS, /* RFC 5802, 7677, 9266 */
	SASL_MECH_SCRAM_SHA_256,
	SASL_MECH_PLAIN,              /* RFC 4616 */
	SASL_MECH_LOGIN,              /* draft-murchison-sasl-login */
	SASL_MECH_CRAM_MD5,           /* RFC 2195 */
	SASL_MECH_COUNT,
};

enum sasl_status {
	SASL_CONTINUE,    /* send challenge, read another response */
	SASL_DONE,        /* finished: see authcid, password / verified */
	SASL_FAIL,        /* malformed exchange; error says why */
	SASL_NEED_LOOKUP, /* SCRAM: call sasl_server_set_record() for authcid */
};

/* Channel-binding data of the TLS connection, for SCRAM-PLUS. */
struct sasl_channel_binding {
	bool tls;                       /* TLS active: -PLUS is offered */
	unsigned char exporter[32];     /* tls-exporter (RFC 9266) */
	int exporter_len;               /* -1: unavailable */
	unsigned char end_point[64];    /* tls-server-end-point (RFC 5929) */
	int end_point_len;
};

struct sasl_server {
	enum sasl_mech mech;
	unsigned step;
	struct buf challenge; /* decoded; the core base64-encodes it */
	const char *error;
	/* results */
	char *authzid;
	char *authcid;
	char *password;       /* PLAIN, LOGIN: to be checked */
	char *cram_digest;    /* CRAM-MD5: hex digest to check ... */
	char *cram_challenge; /* ... against this challenge */
	bool verified;        /* SCRAM: proof checked here */
	/* SCRAM state */
	const struct sasl_channel_binding *cb;
	char *gs2_header;
	char *client_first_bare;
	char *server_first;
	char *nonce;
	struct scram_record record;
	bool proof_ok;
};

/* Mechanism by (case-insensitive) name; -1 if unknown. */
int sasl_mech_by_name(const char *name, size_t len);
const char *sasl_mech_name(enum sasl_mech mech);
/* Does the mechanism reveal the password to an eavesdropper? (RFC 8314 policy) */
bool sasl_mech_is_plaintext(enum sasl_mech mech);

/* cb may be NULL (no TLS). nonce_seed: fresh random bytes for challenges. */
void sasl_server_start(struct sasl_server *s, enum sasl_mech mech,
		       const struct sasl_channel_binding *cb);
/* One client response; present=false for AUTH without an initial response. */
enum sasl_status sasl_server_step(struct sasl_server *s, const char *in, size_t len, bool present);
/* SCRAM: the stored keys for authcid (after SASL_NEED_LOOKUP). For an unknown
 * user pass a record that cannot match (the exchange then fails at the proof,
 * exactly as for a wrong password). Returns SASL_CONTINUE (server-first). */
enum sasl_status sasl_server_set_record(struct sasl_server *s, const struct scram_record *rec);
/* Wipe and free everything. */
void sasl_server_clear(struct sasl_server *s);

#endif
