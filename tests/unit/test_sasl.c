/* test_sasl.c - the server side of SASL PLAIN (RFC 4616) and LOGIN: message
 * parsing, the LOGIN prompts, and mechanism lookup by name. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "auth/sasl.h"
#include "common/bounds.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- mechanisms ------------------------------------------------------ */

static void test_mechanism_lookup_is_case_insensitive(void **state)
{
	assert_int_equal(sasl_mech_by_name(S("PLAIN")), SASL_MECH_PLAIN);
	assert_int_equal(sasl_mech_by_name(S("plain")), SASL_MECH_PLAIN);
	assert_int_equal(sasl_mech_by_name(S("PlAiN")), SASL_MECH_PLAIN);
	assert_int_equal(sasl_mech_by_name(S("LOGIN")), SASL_MECH_LOGIN);
	assert_int_equal(sasl_mech_by_name(S("login")), SASL_MECH_LOGIN);
	/* a counted name inside a longer command line */
	assert_int_equal(sasl_mech_by_name("LOGIN dGVzdA==", 5), SASL_MECH_LOGIN);
}

static void test_unknown_mechanisms(void **state)
{
	assert_int_equal(sasl_mech_by_name(S("PLAI")), -1);
	assert_int_equal(sasl_mech_by_name(S("PLAINX")), -1);
	assert_int_equal(sasl_mech_by_name(S("DIGEST-MD5")), -1);
	assert_int_equal(sasl_mech_by_name(S("SCRAM-SHA-1")), -1);
	assert_int_equal(sasl_mech_by_name(S("")), -1);
	assert_int_equal(sasl_mech_by_name(S("PLAIN ")), -1);
}

static void test_mechanism_names_and_plaintext_flag(void **state)
{
	assert_string_equal(sasl_mech_name(SASL_MECH_PLAIN), "PLAIN");
	assert_string_equal(sasl_mech_name(SASL_MECH_LOGIN), "LOGIN");
	assert_true(sasl_mech_is_plaintext(SASL_MECH_PLAIN));
	assert_true(sasl_mech_is_plaintext(SASL_MECH_LOGIN));
}

/* ---- PLAIN ----------------------------------------------------------- */

static void test_plain_without_authzid(void **state)
{
	struct sasl_server s;
	sasl_server_start(&s, SASL_MECH_PLAIN, NULL);
	assert_int_equal(sasl_server_step(&s, S("\0tim\0tanstaaftanstaaf"), true), SASL_DONE);
	assert_string_equal(s.authzid, "");
	assert_string_equal(s.authcid, "tim");
	assert_string_equal(s.password, "tanstaaftanstaaf");
	sasl_server_clear(&s);
	assert_null(s.authcid);
	assert_null(s.password);
}

static void test_plain_with_authzid(void **state)
{
	struct sasl_server s;
	sasl_server_start(&s, SASL_MECH_PLAIN, NULL);
	assert_int_equal(sasl_server_step(&s, S("Ursel\0Kurt\0xipj3plmq"), true), SASL_DONE);
	assert_string_equal(s.authzid, "Ursel");
	assert_string_equal(s.authcid, "Kurt");
	assert_string_equal(s.password, "xipj3plmq");
	sasl_server_clear(&s);
}

static void test_plain_utf8_and_spaces_kept(void **state)
{
	struct sasl_server s;
	sasl_server_start(&s, SASL_MECH_PLAIN, NULL);
	assert_int_equal(sasl_server_step(&s, S("\0j\xc3\xbcrgen@example.org\0pass word "), true),
			 SASL_DONE);
	assert_string_equal(s.authcid, "j\xc3\xbcrgen@example.org");
	assert_string_equal(s.password, "pass word ");
	sasl_server_clear(&s);
}

static void test_plain_without_initial_response_asks_for_it(void **state)
{
	struct sasl_server s;
	sasl_server_start(&s, SASL_MECH_PLAIN, NULL);
	assert_int_equal(sasl_server_step(&s, NULL, 0, false), SASL_CONTINUE);
	/* RFC 4616: the server's challenge is empty */
	assert_int_equal(s.challenge.len, 0);
	assert_int_equal(sasl_server_step(&s, S("\0bob\0pw"), true), SASL_DONE);
	assert_string_equal(s.authcid, "bob");
	assert_string_equal(s.password, "pw");
	sasl_server_clear(&s);
}

static void expect_plain_fail(const char *in, size_t len)
{
	struct sasl_server s;
	sasl_server_start(&s, SASL_MECH_PLAIN, NULL);
	assert_int_equal(sasl_server_step(&s, in, len, true), SASL_FAIL);
	assert_non_null(s.error);
	assert_null(s.authcid);
	assert_null(s.password);
	sasl_server_clear(&s);
}

static void test_plain_needs_exactly_two_nuls(void **state)
{
	expect_plain_fail(S("bobsecret"));
	expect_plain_fail(S("bob\0secret"));
	expect_plain_fail(S("a\0b\0c\0d"));
	expect_plain_fail(S("\0bob\0secret\0"));
	expect_plain_fail(S("\0\0bob\0secret"));
	expect_plain_fail("", 0);
}

static void test_plain_authcid_and_password_must_not_be_empty(void **state)
{
	expect_plain_fail(S("\0\0secret"));
	expect_plain_fail(S("\0bob\0"));
	expect_plain_fail(S("admin\0\0secret"));
	expect_plain_fail(S("\0\0"));
}

static void test_plain_fields_at_most_255_octets(void **state)
{
	char msg[3 * 300];
	struct sasl_server s;
	const size_t sizes[][3] = {
		/* authzid, authcid, password; last column: expect success */
		{255, 255, 255}, {256, 1, 1}, {0, 256, 1}, {0, 1, 256}, {0, 255, 1}, {0, 1, 255},
	};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t z = sizes[i][0], c = sizes[i][1], p = sizes[i][2];
		memset(msg, 'z', z);
		msg[z] = '\0';
		memset(msg + z + 1, 'c', c);
		msg[z + 1 + c] = '\0';
		memset(msg + z + 2 + c, 'p', p);
		size_t len = z + c + p + 2;
		bool ok = z <= SASL_MAX_FIELD && c <= SASL_MAX_FIELD && p <= SASL_MAX_FIELD;
		sasl_server_start(&s, SASL_MECH_PLAIN, NULL);
		assert_int_equal(sasl_server_step(&s, msg, len, true), ok ? SASL_DONE : SASL_FAIL);
		if (ok) {
			assert_int_equal(strlen(s.authzid), z);
			assert_int_equal(strlen(s.authcid), c);
			assert_int_equal(strlen(s.password), p);
		}
		sasl_server_clear(&s);
	}
}

/* ---- LOGIN ----------------------------------------------------------- */

static void test_login_prompts_for_user_then_password(void **state)
{
	struct sasl_server s;
	sasl_server_start(&s, SASL_MECH_LOGIN, NULL);
	assert_int_equal(sasl_server_step(&s, NULL, 0, false), SASL_CONTINUE);
	assert_int_equal(s.challenge.len, 9);
	assert_memory_equal(s.challenge.data, "Username:", 9);
	assert_int_equal(sasl_server_step(&s, S("test"), true), SASL_CONTINUE);
	assert_int_equal(s.challenge.len, 9);
	assert_memory_equal(s.challenge.data, "Password:", 9);
	assert_int_equal(sasl_server_step(&s, S("secret"), true), SASL_DONE);
	assert_string_equal(s.authcid, "test");
	assert_string_equal(s.password, "secret");
	assert_null(s.authzid);
	sasl_server_clear(&s);
}

static void test_login_accepts_user_as_initial_response(void **state)
{
	struct sasl_server s;
	sasl_server_start(&s, SASL_MECH_LOGIN, NULL);
	assert_int_equal(sasl_server_step(&s, S("test"), true), SASL_CONTINUE);
	assert_memory_equal(s.challenge.data, "Password:", 9);
	assert_int_equal(sasl_server_step(&s, S("secret"), true), SASL_DONE);
	assert_string_equal(s.authcid, "test");
	assert_string_equal(s.password, "secret");
	sasl_server_clear(&s);
}

static void test_login_empty_initial_response_prompts_for_user(void **state)
{
	struct sasl_server s;
	sasl_server_start(&s, SASL_MECH_LOGIN, NULL);
	assert_int_equal(sasl_server_step(&s, "", 0, true), SASL_CONTINUE);
	assert_memory_equal(s.challenge.data, "Username:", 9);
	assert_int_equal(sasl_server_step(&s, S("u"), true), SASL_CONTINUE);
	assert_int_equal(sasl_server_step(&s, S("p"), true), SASL_DONE);
	sasl_server_clear(&s);
}

static void test_login_refuses_empty_user_or_password(void **state)
{
	struct sasl_server s;
	sasl_server_start(&s, SASL_MECH_LOGIN, NULL);
	assert_int_equal(sasl_server_step(&s, NULL, 0, false), SASL_CONTINUE);
	assert_int_equal(sasl_server_step(&s, "", 0, true), SASL_FAIL);
	assert_non_null(s.error);
	sasl_server_clear(&s);

	sasl_server_start(&s, SASL_MECH_LOGIN, NULL);
	assert_int_equal(sasl_server_step(&s, S("user"), true), SASL_CONTINUE);
	assert_int_equal(sasl_server_step(&s, "", 0, true), SASL_FAIL);
	assert_null(s.password);
	sasl_server_clear(&s);
}

static void test_login_refuses_nul_and_overlong_responses(void **state)
{
	struct sasl_server s;
	sasl_server_start(&s, SASL_MECH_LOGIN, NULL);
	assert_int_equal(sasl_server_step(&s, S("us\0er"), true), SASL_FAIL);
	sasl_server_clear(&s);

	sasl_server_start(&s, SASL_MECH_LOGIN, NULL);
	assert_int_equal(sasl_server_step(&s, S("user"), true), SASL_CONTINUE);
	assert_int_equal(sasl_server_step(&s, S("pass\0word"), true), SASL_FAIL);
	sasl_server_clear(&s);

	char big[SASL_MAX_FIELD + 1];
	memset(big, 'x', sizeof(big));
	sasl_server_start(&s, SASL_MECH_LOGIN, NULL);
	assert_int_equal(sasl_server_step(&s, big, sizeof(big), true), SASL_FAIL);
	sasl_server_clear(&s);

	sasl_server_start(&s, SASL_MECH_LOGIN, NULL);
	assert_int_equal(sasl_server_step(&s, big, SASL_MAX_FIELD, true), SASL_CONTINUE);
	assert_int_equal(sasl_server_step(&s, big, SASL_MAX_FIELD, true), SASL_DONE);
	assert_int_equal(strlen(s.authcid), SASL_MAX_FIELD);
	assert_int_equal(strlen(s.password), SASL_MAX_FIELD);
	sasl_server_clear(&s);
}

static void test_clear_after_start_only(void **state)
{
	struct sasl_server s;
	sasl_server_start(&s, SASL_MECH_LOGIN, NULL);
	sasl_server_clear(&s);
	sasl_server_start(&s, SASL_MECH_PLAIN, NULL);
	sasl_server_clear(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mechanism_lookup_is_case_insensitive),
		cmocka_unit_test(test_unknown_mechanisms),
		cmocka_unit_test(test_mechanism_names_and_plaintext_flag),
		cmocka_unit_test(test_plain_without_authzid),
		cmocka_unit_test(test_plain_with_authzid),
		cmocka_unit_test(test_plain_utf8_and_spaces_kept),
		cmocka_unit_test(test_plain_without_initial_response_asks_for_it),
		cmocka_unit_test(test_plain_needs_exactly_two_nuls),
		cmocka_unit_test(test_plain_authcid_and_password_must_not_be_empty),
		cmocka_unit_test(test_plain_fields_at_most_255_octets),
		cmocka_unit_test(test_login_prompts_for_user_then_password),
		cmocka_unit_test(test_login_accepts_user_as_initial_response),
		cmocka_unit_test(test_login_empty_initial_response_prompts_for_user),
		cmocka_unit_test(test_login_refuses_empty_user_or_password),
		cmocka_unit_test(test_login_refuses_nul_and_overlong_responses),
		cmocka_unit_test(test_clear_after_start_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
