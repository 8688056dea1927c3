/* test_password.c - checking passwords against {PLAIN} and crypt(3) hashes
 * (yescrypt, SHA-512/256-crypt, bcrypt), and creating hashes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/password.h"

static void test_plain_ok_and_mismatch(void **state)
{
	assert_int_equal(password_verify("{PLAIN}secret", "secret"), PASSWORD_OK);
	assert_int_equal(password_verify("{PLAIN}secret", "Secret"), PASSWORD_MISMATCH);
	assert_int_equal(password_verify("{PLAIN}secret", "secret2"), PASSWORD_MISMATCH);
	assert_int_equal(password_verify("{PLAIN}secret", "secre"), PASSWORD_MISMATCH);
	assert_int_equal(password_verify("{PLAIN}secret", ""), PASSWORD_MISMATCH);
	assert_int_equal(password_verify("{PLAIN}sec}ret", "sec}ret"), PASSWORD_OK);
	/* scheme names are case-insensitive; CLEARTEXT is an alias */
	assert_int_equal(password_verify("{plain}secret", "secret"), PASSWORD_OK);
	assert_int_equal(password_verify("{CLEARTEXT}secret", "secret"), PASSWORD_OK);
	assert_int_equal(password_verify("{CLEARTEXT}secret", "other"), PASSWORD_MISMATCH);
}

static void check_scheme(const char *prefix)
{
	char *hash = password_hash("correct horse", prefix);
	assert_non_null(hash);
	assert_true(strncmp(hash, "{CRYPT}", 7) == 0);
	assert_true(strncmp(hash + 7, prefix, strlen(prefix)) == 0);
	assert_int_equal(password_verify(hash, "correct horse"), PASSWORD_OK);
	assert_int_equal(password_verify(hash, "correct horsf"), PASSWORD_MISMATCH);
	assert_int_equal(password_verify(hash, "correct hors"), PASSWORD_MISMATCH);
	assert_int_equal(password_verify(hash, ""), PASSWORD_MISMATCH);

	/* the bare crypt string, without {CRYPT}, is the same */
	assert_int_equal(password_verify(hash + 7, "correct horse"), PASSWORD_OK);
	assert_int_equal(password_verify(hash + 7, "wrong"), PASSWORD_MISMATCH);

	/* a fresh salt each time */
	char *again = password_hash("correct horse", prefix);
	assert_non_null(again);
	assert_string_not_equal(hash, again);
	free(again);
	free(hash);
}

static void test_yescrypt_hash_verifies(void **state)
{
	check_scheme("$y$");
}

static void test_sha512_crypt_hash_verifies(void **state)
{
	check_scheme("$6$");
}

static void test_sha256_crypt_hash_verifies(void **state)
{
	check_scheme("$5$");
}

static void test_bcrypt_hash_verifies(void **state)
{
	check_scheme("$2b$");
}

static void test_default_scheme_is_yescrypt(void **state)
{
	char *hash = password_hash("pw", NULL);
	assert_non_null(hash);
	assert_true(strncmp(hash, "{CRYPT}$y$", 10) == 0);
	free(hash);
}

static void test_named_crypt_schemes(void **state)
{
	char *hash = password_hash("pw", "$6$");
	assert_non_null(hash);
	char named[256];
	snprintf(named, sizeof(named), "{SHA512-CRYPT}%s", hash + 7);
	assert_int_equal(password_verify(named, "pw"), PASSWORD_OK);
	assert_int_equal(password_verify(named, "px"), PASSWORD_MISMATCH);
	free(hash);

	hash = password_hash("pw", "$2b$");
	assert_non_null(hash);
	snprintf(named, sizeof(named), "{BLF-CRYPT}%s", hash + 7);
	assert_int_equal(password_verify(named, "pw"), PASSWORD_OK);
	free(hash);

	hash = password_hash("pw", "$y$");
	assert_non_null(hash);
	snprintf(named, sizeof(named), "{YESCRYPT}%s", hash + 7);
	assert_int_equal(password_verify(named, "pw"), PASSWORD_OK);
	free(hash);
}

static void test_known_sha512_crypt_vector(void **state)
{
	/* from the SHA-crypt specification (Drepper), rounds=5000 implied */
	static const char hash[] = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJu"
				   "esI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
	assert_int_equal(password_verify(hash, "Hello world!"), PASSWORD_OK);
	assert_int_equal(password_verify(hash, "Hello world"), PASSWORD_MISMATCH);
}

static void test_unknown_scheme_is_bad_hash(void **state)
{
	assert_int_equal(password_verify("{FOO}bar", "bar"), PASSWORD_BAD_HASH);
	assert_int_equal(password_verify("{SHA1}bar", "bar"), PASSWORD_BAD_HASH);
	assert_int_equal(password_verify("{}bar", "bar"), PASSWORD_BAD_HASH);
	assert_int_equal(password_verify("{unterminated", "x"), PASSWORD_BAD_HASH);
	assert_int_equal(password_verify("{AVERYLONGSCHEMENAMETHATISNOTREAL1234567890}x", "x"),
			 PASSWORD_BAD_HASH);
}

static void test_malformed_crypt_hash_is_bad_hash(void **state)
{
	assert_int_equal(password_verify("{CRYPT}", "x"), PASSWORD_BAD_HASH);
	assert_int_equal(password_verify("{CRYPT}*", "x"), PASSWORD_BAD_HASH);
	assert_int_equal(password_verify("{CRYPT}!", "x"), PASSWORD_BAD_HASH);
	assert_int_equal(password_verify("$unknown$abc", "x"), PASSWORD_BAD_HASH);
	assert_int_equal(password_verify("", "x"), PASSWORD_BAD_HASH);
}

static void test_plaintext_only_for_plain_entries(void **state)
{
	static const char stored[] = "{PLAIN}abc";
	assert_ptr_equal(password_plaintext(stored), stored + 7);
	assert_string_equal(password_plaintext("{CLEARTEXT}x y"), "x y");
	assert_string_equal(password_plaintext("{plain}"), "");
	assert_null(password_plaintext("{CRYPT}$6$abc$def"));
	assert_null(password_plaintext("$6$abc$def"));
	assert_null(password_plaintext("abc"));
	assert_null(password_plaintext("{FOO}abc"));
}

static void test_hash_with_unknown_prefix_fails(void **state)
{
	assert_null(password_hash("pw", "$zz$"));
}

static void test_verify_dummy_runs(void **state)
{
	password_verify_dummy("guess");
	password_verify_dummy("");
	password_verify_dummy("pigeon-dummy-password");
}

/* pigeon check's judgement: every hash we make is usable, damaged ones not. */
static void test_check_stored_forms(void **state)
{
	(void)state;
	static const char *const prefixes[] = {"$y$", "$2b$", "$6$", "$5$"};
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		char *h = password_hash("pw", prefixes[i]);
		assert_non_null(h);
		if (password_check_stored(h) != NULL)
			fail_msg("%s judged unusable: %s", h, password_check_stored(h));
		/* the same hash cut short is not */
		h[strlen(h) - 3] = '\0';
		assert_non_null(password_check_stored(h));
		free(h);
	}
	assert_null(password_check_stored("{PLAIN}anything"));
	assert_null(password_check_stored("{SHA512-CRYPT}$6$rounds=5000$saltstring$"
					  "svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJu"
					  "esI68u4OTLiBFdcbYEdFCoEOfaS35inz1"));
	assert_non_null(password_check_stored("{FOO}x"));
	assert_non_null(password_check_stored("{PLAIN"));
	assert_non_null(password_check_stored("{SCRAM-SHA-256}4096,a,b,c"));
	assert_non_null(password_check_stored("{CRYPT}$y$"));
	assert_non_null(password_check_stored("$6$salt"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_ok_and_mismatch),
		cmocka_unit_test(test_yescrypt_hash_verifies),
		cmocka_unit_test(test_sha512_crypt_hash_verifies),
		cmocka_unit_test(test_sha256_crypt_hash_verifies),
		cmocka_unit_test(test_bcrypt_hash_verifies),
		cmocka_unit_test(test_default_scheme_is_yescrypt),
		cmocka_unit_test(test_named_crypt_schemes),
		cmocka_unit_test(test_known_sha512_crypt_vector),
		cmocka_unit_test(test_unknown_scheme_is_bad_hash),
		cmocka_unit_test(test_malformed_crypt_hash_is_bad_hash),
		cmocka_unit_test(test_plaintext_only_for_plain_entries),
		cmocka_unit_test(test_hash_with_unknown_prefix_fails),
		cmocka_unit_test(test_verify_dummy_runs),
		cmocka_unit_test(test_check_stored_forms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
