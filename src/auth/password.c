/* password.c - verify and create password hashes with libxcrypt. */
#include "auth/password.h"

#include <crypt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "auth/scram.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/xmalloc.h"

/* Schemes whose hash is a crypt(3) string. */
static const char *const crypt_schemes[] = {
	"CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "YESCRYPT", "MD5-CRYPT",
};

/* Split "{SCHEME}rest" into scheme and rest; no braces means CRYPT. */
static const char *split_scheme(const char *stored, char *scheme, size_t len)
{
	if (stored[0] != '{') {
		snprintf(scheme, len, "CRYPT");
		return stored;
	}
	const char *end = strchr(stored, '}');
	if (end == NULL || (size_t)(end - stored - 1) >= len) {
		scheme[0] = '\0';
		return stored;
	}
	memcpy(scheme, stored + 1, (size_t)(end - stored - 1));
	scheme[end - stored - 1] = '\0';
	return end + 1;
}

const char *password_plaintext(const char *stored)
{
	char scheme[32];
	const char *rest = split_scheme(stored, scheme, sizeof(scheme));
	if (strcasecmp(scheme, "PLAIN") == 0 || strcasecmp(scheme, "CLEARTEXT") == 0)
		return rest;
	return NULL;
}

/* Is a crypt(3) string a whole hash of its method: the checksum after the last
 * '$' as long as the method makes it (or 13 characters of DES)? */
static bool crypt_hash_complete(const char *h)
{
	static const struct {
		const char *prefix;
		size_t checksum;
	} methods[] = {
		{"$y$", 43}, {"$gy$", 43}, {"$7$", 43}, {"$6$", 86}, {"$5$", 43}, {"$1$", 22},
		{"$2b$", 53}, {"$2a$", 53}, {"$2y$", 53},
	};
	if (h[0] == '_')
		return strlen(h) == 20; /* BSDi extended DES */
	if (h[0] != '$')
		return strlen(h) == 13; /* traditional DES */
	const char *last = strrchr(h, '$');
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		if (strncmp(h, methods[i].prefix, strlen(methods[i].prefix)) != 0)
			continue;
		if (h[1] == '2') /* bcrypt: $2b$NN$ then 22 salt + 31 hash characters */
			return strlen(h) == 7 + methods[i].checksum;
		return last > h + strlen(methods[i].prefix) - 1 && strlen(last + 1) == methods[i].checksum;
	}
	return last != NULL && last[1] != '\0'; /* another method: not empty at least */
}

const char *password_check_stored(const char *stored)
{
	char scheme[32];
	const char *rest = split_scheme(stored, scheme, sizeof(scheme));
	if (scheme[0] == '\0')
		return "malformed {SCHEME} prefix";
	if (password_plaintext(stored) != NULL)
		return NULL;
	if (strcasecmp(scheme, "SCRAM-SHA-256") == 0) {
		struct scram_record rec;
		int rc = scram_parse_record(rest, &rec);
		OPENSSL_cleanse(&rec, sizeof(rec));
		return rc < 0 ? "malformed {SCRAM-SHA-256} keys" : NULL;
	}
	for (size_t i = 0; i < sizeof(crypt_schemes) / sizeof(crypt_schemes[0]); i++) {
		if (strcasecmp(scheme, crypt_schemes[i]) != 0)
			continue;
		switch (crypt_checksalt(rest)) {
		case CRYPT_SALT_OK:
		case CRYPT_SALT_METHOD_LEGACY: /* works; pigeon user passwd rehashes */
			break;
		case CRYPT_SALT_METHOD_DISABLED:
			return "crypt method disabled in this libxcrypt";
		default:
			return "malformed or unsupported crypt hash";
		}
		/* crypt_checksalt judges only the setting: also check that the
		 * hash is whole (without hashing: a check of 10,000 users must
		 * not take minutes). */
		return crypt_hash_complete(rest) ? NULL : "malformed or unsupported crypt hash";
	}
	return "unknown password scheme";
}

static enum password_result check_crypt(const char *hash, const char *password)
{
	struct crypt_data *data = xcalloc(1, sizeof(*data));
	enum password_result r = PASSWORD_BAD_HASH;
	const char *out = crypt_rn(password, hash, data, sizeof(*data));
	/* libxcrypt returns NULL or a string starting with '*' on failure. */
	if (out != NULL && out[0] != '*')
		r = const_time_eq(out, strlen(out), hash, strlen(hash)) ? PASSWORD_OK
									: PASSWORD_MISMATCH;
	OPENSSL_cleanse(data, sizeof(*data));
	free(data);
	return r;
}

enum password_result password_verify(const char *stored, const char *password)
{
	char scheme[32];
	const char *rest = split_scheme(stored, scheme, sizeof(scheme));
	const char *plain = password_plaintext(stored);
	if (plain != NULL)
		return const_time_eq(plain, strlen(plain), password, strlen(password))
			       ? PASSWORD_OK
			       : PASSWORD_MISMATCH;
	if (strcasecmp(scheme, "SCRAM-SHA-256") == 0) {
		/* Stored SCRAM keys also check a plaintext password (RFC 5802 §3). */
		struct scram_record rec;
		if (scram_parse_record(rest, &rec) < 0) {
			log_error("password hash of scheme SCRAM-SHA-256 is malformed");
			return PASSWORD_BAD_HASH;
		}
		bool ok = scram_check_password(&rec, password);
		OPENSSL_cleanse(&rec, sizeof(rec));
		return ok ? PASSWORD_OK : PASSWORD_MISMATCH;
	}
	for (size_t i = 0; i < sizeof(crypt_schemes) / sizeof(crypt_schemes[0]); i++) {
		if (strcasecmp(scheme, crypt_schemes[i]) != 0)
			continue;
		enum password_result r = check_crypt(rest, password);
		if (r == PASSWORD_BAD_HASH)
			log_error("password hash of scheme %s is malformed or unsupported", scheme);
		return r;
	}
	log_error("unknown password scheme {%s}", scheme);
	return PASSWORD_BAD_HASH;
}

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char *dummy_hash;

static void make_dummy(void)
{
	dummy_hash = password_hash("pigeon-dummy-password", "$y$");
}

void password_verify_dummy(const char *password)
{
	pthread_once(&dummy_once, make_dummy);
	if (dummy_hash != NULL)
		(void)password_verify(dummy_hash, password);
}

char *password_hash(const char *password, const char *prefix)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	if (crypt_gensalt_rn(prefix ? prefix : "$y$", 0, NULL, 0, salt, sizeof(salt)) == NULL)
		return NULL;
	struct crypt_data *data = xcalloc(1, sizeof(*data));
	const char *out = crypt_rn(password, salt, data, sizeof(*data));
	char *result = NULL;
	if (out != NULL && out[0] != '*')
		result = xasprintf("{CRYPT}%s", out);
	OPENSSL_cleanse(data, sizeof(*data));
	free(data);
	return result;
}
