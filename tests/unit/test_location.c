/* test_location.c - expanding the [mail] location template: %u %n %d %h %%,
 * the <home>/Maildir default, and refusing unsafe, relative or overlong paths. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "store/location.h"

static void expect_path(const char *tmpl, const char *user, const char *home, const char *want)
{
	char out[256];
	memset(out, 'Z', sizeof(out));
	assert_int_equal(location_expand(tmpl, user, home, out, sizeof(out)), 0);
	assert_string_equal(out, want);
}

static void expect_refused(const char *tmpl, const char *user, const char *home)
{
	char out[256];
	assert_int_equal(location_expand(tmpl, user, home, out, sizeof(out)), -1);
}

static void test_user_name_expands(void **state)
{
	expect_path("/var/mail/%u", "bob", "/home/bob", "/var/mail/bob");
	expect_path("/var/mail/%u", "bob@example.org", "/home/bob", "/var/mail/bob@example.org");
	expect_path("/m/%u/%u", "a", "/h", "/m/a/a");
}

static void test_local_part_and_domain_expand(void **state)
{
	expect_path("/srv/%d/%n/Maildir", "bob@example.org", "/home/bob",
		    "/srv/example.org/bob/Maildir");
	expect_path("/srv/%n", "bob", "/home/bob", "/srv/bob");
	/* only the first '@' splits */
	expect_path("/srv/%d/%n", "a@b@c", "/h", "/srv/b@c/a");
}

static void test_home_expands(void **state)
{
	expect_path("%h/Mail", "bob", "/home/bob", "/home/bob/Mail");
	expect_path("%h", "bob", "/home/bob", "/home/bob");
}

static void test_percent_percent_is_a_percent(void **state)
{
	expect_path("/var/100%%/%u", "bob", "/h", "/var/100%/bob");
	expect_path("/%%u", "bob", "/h", "/%u");
}

static void test_empty_template_means_home_maildir(void **state)
{
	expect_path("", "bob", "/home/bob", "/home/bob/Maildir");
	expect_refused("", "bob", "");
	expect_refused("", "bob", "home/bob");
}

static void test_unsafe_user_parts_refused(void **state)
{
	static const char *const bad_users[] = {"../x", "a/b", ".", "..", "/abs", "x/"};
	for (size_t i = 0; i < sizeof(bad_users) / sizeof(bad_users[0]); i++)
		expect_refused("/var/mail/%u", bad_users[i], "/h");
	expect_refused("/var/mail/%n", "..@example.org", "/h");
	expect_refused("/var/mail/%n", ".@example.org", "/h");
	expect_refused("/var/mail/%n", "a/b@example.org", "/h");
	expect_refused("/srv/%d/x", "bob@..", "/h");
	expect_refused("/srv/%d/x", "bob@.", "/h");
	expect_refused("/srv/%d/x", "bob@a/../b", "/h");
	/* dots that stay inside one component are fine */
	expect_path("/var/mail/%u", "...", "/h", "/var/mail/...");
	expect_path("/var/mail/%u", "a..b", "/h", "/var/mail/a..b");
}

static void test_relative_result_refused(void **state)
{
	expect_refused("Maildir/%u", "bob", "/h");
	expect_refused("%u/Maildir", "bob", "/h");
	expect_refused("%h/Maildir", "bob", "relative/home");
	expect_refused("%h/Maildir", "bob", "");
}

static void test_overflow_refused(void **state)
{
	char out[16];
	/* "/var/mail/bob" is 13 characters: needs 14 bytes */
	assert_int_equal(location_expand("/var/mail/%u", "bob", "/h", out, 14), 0);
	assert_string_equal(out, "/var/mail/bob");
	assert_int_equal(location_expand("/var/mail/%u", "bob", "/h", out, 13), -1);
	assert_int_equal(location_expand("/var/mail/%u", "bobby", "/h", out, 14), -1);
	assert_int_equal(location_expand("/var/mail/xxxxxxxxxxxxxxxxxx", "b", "/h", out, sizeof(out)), -1);
	assert_int_equal(location_expand("%h/Maildir", "b", "/home/a-long-home", out, sizeof(out)), -1);

	char big[4096];
	char user[300];
	memset(user, 'u', sizeof(user) - 1);
	user[sizeof(user) - 1] = '\0';
	assert_int_equal(location_expand("/m/%u/%u/%u", user, "/h", big, 512), -1);
	assert_int_equal(location_expand("/m/%u/%u/%u", user, "/h", big, sizeof(big)), 0);
	assert_int_equal(strlen(big), 3 + 3 * 299 + 2);
}

static void test_unknown_escape_refused(void **state)
{
	expect_refused("/var/mail/%x", "bob", "/h");
	expect_refused("/var/mail/%U", "bob", "/h");
	/* a lone '%' at the end */
	expect_refused("/var/mail/%", "bob", "/h");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_user_name_expands),
		cmocka_unit_test(test_local_part_and_domain_expand),
		cmocka_unit_test(test_home_expands),
		cmocka_unit_test(test_percent_percent_is_a_percent),
		cmocka_unit_test(test_empty_template_means_home_maildir),
		cmocka_unit_test(test_unsafe_user_parts_refused),
		cmocka_unit_test(test_relative_result_refused),
		cmocka_unit_test(test_overflow_refused),
		cmocka_unit_test(test_unknown_escape_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
