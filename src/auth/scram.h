/*
 * scram.h - SCRAM-SHA-256 (RFC 5802, RFC 7677) arithmetic shared by the
 * server mechanism, the password check and `pigeon user`: stored keys,
 * proofs and signatures. Message parsing lives in sasl.c.
 *
 * Stored form in the passwd-file (as Dovecot writes it):
 *     {SCRAM-SHA-256}<iterations>,<salt>,<StoredKey>,<ServerKey>   (base64)
 */
#ifndef PIGEON_SCRAM_H
#define PIGEON_SCRAM_H

#include <stdbool.h>
#include <stddef.h>

#define SCRAM_KEY_LEN 32          /* SHA-256 */
#define SCRAM_MIN_ITERATIONS 4096 /* RFC 7677 §4: at least 4096 */
#define SCRAM_DEFAULT_ITERATIONS 10000
#define SCRAM_MAX_ITERATIONS 1000000
#define SCRAM_MAX_SALT 64

struct scram_record {
	unsigned iterations;
	unsigned char salt[SCRAM_MAX_SALT];
	size_t salt_len;
	unsigned char stored_key[SCRAM_KEY_LEN];
	unsigned char server_key[SCRAM_KEY_LEN];
};

/* Parse the part after "{SCRAM-SHA-256}". 0 on success. */
int scram_parse_record(const char *text, struct scram_record *rec);
/* Derive a record from a password (fresh random salt). Returns a malloc'd
 * "{SCRAM-SHA-256}..." string or NULL. */
char *scram_make_record(const char *password, unsigned iterations);
/* Derive the keys for password with the record's salt and iterations. */
int scram_derive(const char *password, const unsigned char *salt, size_t salt_len,
		 unsigned iterations, unsigned char stored_key[SCRAM_KEY_LEN],
		 unsigned char server_key[SCRAM_KEY_LEN]);
/* Does password match the record? Constant time in the comparison. */
bool scram_check_password(const struct scram_record *rec, const char *password);
/*
 * Server side of the final step: check the client's proof against the stored
 * key for this AuthMessage and, on success, compute the ServerSignature.
 */
bool scram_verify_proof(const struct scram_record *rec, const char *auth_message, size_t len,
			const unsigned char *proof, size_t proof_len,
			unsigned char server_signature[SCRAM_KEY_LEN]);
/* Client side (for pigeon fetch and tests): ClientProof and ServerSignature. */
int scram_client_proof(const char *password, const unsigned char *salt, size_t salt_len,
		       unsigned iterations, const char *auth_message, size_t len,
		       unsigned char proof[SCRAM_KEY_LEN],
		       unsigned char server_signature[SCRAM_KEY_LEN]);

#endif
