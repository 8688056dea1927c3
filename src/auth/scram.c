/* scram.c - SCRAM-SHA-256 key derivation, proofs and signatures (RFC 5802 §3). */
#include "auth/scram.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/base64.h"
#include "common/buf.h"
#include "common/strutil.h"
#include "common/xmalloc.h"

static int hmac(const unsigned char *key, size_t keylen, const void *data, size_t len,
		unsigned char out[SCRAM_KEY_LEN])
{
	unsigned int outlen = 0;
	if (HMAC(EVP_sha256(), key, (int)keylen, data, len, out, &outlen) == NULL ||
	    outlen != SCRAM_KEY_LEN)
		return -1;
	return 0;
}

static int sha256(const void *data, size_t len, unsigned char out[SCRAM_KEY_LEN])
{
	unsigned int outlen = 0;
	return EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL) == 1 ? 0 : -1;
}

int scram_derive(const char *password, const unsigned char *salt, size_t salt_len,
		 unsigned iterations, unsigned char stored_key[SCRAM_KEY_LEN],
		 unsigned char server_key[SCRAM_KEY_LEN])
{
	unsigned char salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
	int rc = -1;
	/* SaltedPassword = Hi(password, salt, i) = PBKDF2-HMAC-SHA-256. Pigeon
	 * does not apply SASLprep: passwords are compared as given (UTF-8). */
	if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len,
			      (int)iterations, EVP_sha256(), SCRAM_KEY_LEN, salted) != 1)
		goto out;
	if (hmac(salted, sizeof(salted), "Client Key", 10, client_key) < 0 ||
	    sha256(client_key, sizeof(client_key), stored_key) < 0 ||
	    hmac(salted, sizeof(salted), "Server Key", 10, server_key) < 0)
		goto out;
	rc = 0;
out:
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	return rc;
}

static int decode_field(const char *p, size_t len, unsigned char *out, size_t max, size_t *outlen)
{
	struct buf b = BUF_INIT;
	int rc = -1;
	if (base64_decode(p, len, &b) == 0 && b.len >= 1 && b.len <= max) {
		memcpy(out, b.data, b.len);
		*outlen = b.len;
		rc = 0;
	}
	buf_free(&b);
	return rc;
}

int scram_parse_record(const char *text, struct scram_record *rec)
{
	const char *f[4];
	size_t flen[4];
	const char *p = text;
	for (int i = 0; i < 4; i++) {
		const char *comma = strchr(p, ',');
		if ((comma == NULL) != (i == 3))
			return -1;
		f[i] = p;
		flen[i] = comma ? (size_t)(comma - p) : strlen(p);
		p = comma ? comma + 1 : p;
	}
	uint64_t iter;
	size_t klen;
	memset(rec, 0, sizeof(*rec));
	if (parse_u64_n(f[0], flen[0], SCRAM_MAX_ITERATIONS, &iter) < 0 || iter < 1)
		return -1;
	rec->iterations = (unsigned)iter;
	if (decode_field(f[1], flen[1], rec->salt, sizeof(rec->salt), &rec->salt_len) < 0)
		return -1;
	if (decode_field(f[2], flen[2], rec->stored_key, SCRAM_KEY_LEN, &klen) < 0 ||
	    klen != SCRAM_KEY_LEN)
		return -1;
	if (decode_field(f[3], flen[3], rec->server_key, SCRAM_KEY_LEN, &klen) < 0 ||
	    klen != SCRAM_KEY_LEN)
		return -1;
	return 0;
}

char *scram_make_record(const char *password, unsigned iterations)
{
	unsigned char salt[16], stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
	if (RAND_bytes(salt, sizeof(salt)) != 1 ||
	    scram_derive(password, salt, sizeof(salt), iterations, stored, server) < 0)
		return NULL;
	struct buf b = BUF_INIT;
	buf_printf(&b, "{SCRAM-SHA-256}%u,", iterations);
	base64_encode(salt, sizeof(salt), &b);
	buf_append_byte(&b, ',');
	base64_encode(stored, sizeof(stored), &b);
	buf_append_byte(&b, ',');
	base64_encode(server, sizeof(server), &b);
	return b.data;
}

bool scram_check_password(const struct scram_record *rec, const char *password)
{
	unsigned char stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
	if (scram_derive(password, rec->salt, rec->salt_len, rec->iterations, stored, server) < 0)
		return false;
	bool ok = CRYPTO_memcmp(stored, rec->stored_key, SCRAM_KEY_LEN) == 0;
	OPENSSL_cleanse(stored, sizeof(stored));
	OPENSSL_cleanse(server, sizeof(server));
	return ok;
}

bool scram_verify_proof(const struct scram_record *rec, const char *auth_message, size_t len,
			const unsigned char *proof, size_t proof_len,
			unsigned char server_signature[SCRAM_KEY_LEN])
{
	unsigned char client_sig[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], check[SCRAM_KEY_LEN];
	bool ok = false;
	if (proof_len != SCRAM_KEY_LEN)
		return false;
	/* RFC 5802 §3: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage);
	 * the proof is good if H(ClientKey) equals StoredKey. */
	if (hmac(rec->stored_key, SCRAM_KEY_LEN, auth_message, len, client_sig) < 0)
		goto out;
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		client_key[i] = proof[i] ^ client_sig[i];
	if (sha256(client_key, SCRAM_KEY_LEN, check) < 0)
		goto out;
	if (CRYPTO_memcmp(check, rec->stored_key, SCRAM_KEY_LEN) != 0)
		goto out;
	ok = hmac(rec->server_key, SCRAM_KEY_LEN, auth_message, len, server_signature) == 0;
out:
	OPENSSL_cleanse(client_key, sizeof(client_key));
	return ok;
}

int scram_client_proof(const char *password, const unsigned char *salt, size_t salt_len,
		       unsigned iterations, const char *auth_message, size_t len,
		       unsigned char proof[SCRAM_KEY_LEN],
		       unsigned char server_signature[SCRAM_KEY_LEN])
{
	unsigned char salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
	unsigned char client_sig[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
	int rc = -1;
	if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len,
			      (int)iterations, EVP_sha256(), SCRAM_KEY_LEN, salted) != 1)
		goto out;
	if (hmac(salted, SCRAM_KEY_LEN, "Client Key", 10, client_key) < 0 ||
	    sha256(client_key, SCRAM_KEY_LEN, stored) < 0 ||
	    hmac(stored, SCRAM_KEY_LEN, auth_message, len, client_sig) < 0 ||
	    hmac(salted, SCRAM_KEY_LEN, "Server Key", 10, server_key) < 0 ||
	    hmac(server_key, SCRAM_KEY_LEN, auth_message, len, server_signature) < 0)
		goto out;
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = client_key[i] ^ client_sig[i];
	rc = 0;
out:
	OPENSSL_cleanse(salted, sizeof(salted));
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(server_key, sizeof(server_key));
	return rc;
}
