/*
 * password.h - checking a password against a stored hash. Stored forms, as in
 * Dovecot's passwd-file: "{PLAIN}secret", "{CRYPT}$y$...", "{SHA512-CRYPT}$6$...",
 * "{BLF-CRYPT}$2b$...", "{SHA256-CRYPT}$5$...", or a bare crypt(3) string.
 * Comparisons run in constant time. Thread-safe (crypt_rn).
 */
#ifndef PIGEON_PASSWORD_H
#define PIGEON_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

enum password_result {
	PASSWORD_OK,
	PASSWORD_MISMATCH,
	PASSWORD_BAD_HASH, /* unknown scheme or malformed hash: logged */
};

enum password_result password_verify(const char *stored, const char *password);
/* NULL if the stored form can be checked at all; else why not (unknown
 * scheme, malformed hash). Never reveals the secret. */
const char *password_check_stored(const char *stored);
/* The secret of a "{PLAIN}" entry, or NULL when the secret is hashed (APOP
 * needs the plaintext). Points into stored. */
const char *password_plaintext(const char *stored);
/* Spend the time a real check would (for unknown users), then fail. */
void password_verify_dummy(const char *password);
/* Hash a password with yescrypt (the default) or the given crypt prefix
 * ("$y$", "$2b$", "$6$", "$5$"). Returns a malloc'd "{CRYPT}..." or NULL. */
char *password_hash(const char *password, const char *prefix);

#endif
