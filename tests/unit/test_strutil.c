/* test_strutil.c - the strict string parsers (numbers, durations, booleans,
 * sizes), list splitting, trimming and constant-time comparison. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/strutil.h"

static void expect_u64(const char *s, uint64_t max, uint64_t want)
{
	uint64_t v = 12345;
	assert_int_equal(parse_u64(s, max, &v), 0);
	assert_int_equal(v, want);
}

static void expect_u64_bad(const char *s, uint64_t max)
{
	uint64_t v = 12345;
	if (parse_u64(s, max, &v) != -1)
		fail_msg("parse_u64(\"%s\", max %llu) accepted it as %llu", s,
			 (unsigned long long)max, (unsigned long long)v);
}

static void test_parse_u64_accepts_decimal_digits(void **state)
{
	expect_u64("0", UINT64_MAX, 0);
	expect_u64("123", UINT64_MAX, 123);
	expect_u64("007", 10, 7);
	expect_u64("18446744073709551615", UINT64_MAX, UINT64_MAX);
	expect_u64("100", 100, 100);
	expect_u64("65535", 65535, 65535);
}

static void test_parse_u64_rejects_overflow(void **state)
{
	expect_u64_bad("18446744073709551616", UINT64_MAX);
	expect_u64_bad("18446744073709551620", UINT64_MAX);
	expect_u64_bad("99999999999999999999", UINT64_MAX);
	expect_u64_bad("184467440737095516150", UINT64_MAX);
}

static void test_parse_u64_rejects_values_above_max(void **state)
{
	expect_u64_bad("101", 100);
	expect_u64_bad("65536", 65535);
	expect_u64_bad("1000", 999);
	expect_u64_bad("10", 9);
	expect_u64_bad("1", 0);
	/* a single digit larger than a small max */
	expect_u64_bad("7", 5);
	expect_u64_bad("9", 8);
	expect_u64_bad("17", 5);
	expect_u64_bad("99", 5);
}

static void test_parse_u64_rejects_non_digits(void **state)
{
	static const char *const bad[] = {"", "-1", "+1", " 1", "1 ", "0x10", "1.0", "1e3", "a", "1a"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_u64_bad(bad[i], UINT64_MAX);
}

static void test_parse_u64_n_uses_only_len_bytes(void **state)
{
	uint64_t v = 0;
	assert_int_equal(parse_u64_n("12345", 3, UINT64_MAX, &v), 0);
	assert_int_equal(v, 123);
	assert_int_equal(parse_u64_n("12x", 2, UINT64_MAX, &v), 0);
	assert_int_equal(v, 12);
	assert_int_equal(parse_u64_n("12", 0, UINT64_MAX, &v), -1);
}

static void expect_ms(const char *s, uint64_t want)
{
	uint64_t v = 12345;
	assert_int_equal(parse_duration_ms(s, &v), 0);
	assert_int_equal(v, want);
}

static void test_parse_duration_units(void **state)
{
	expect_ms("0", 0);
	expect_ms("30", 30000);
	expect_ms("30s", 30000);
	expect_ms("500ms", 500);
	expect_ms("5m", 300000);
	expect_ms("5min", 300000);
	expect_ms("2h", 7200000);
	expect_ms("1d", 86400000);
	expect_ms("18446744073709551s", 18446744073709551000ULL);
}

static void test_parse_duration_rejects_junk_and_overflow(void **state)
{
	static const char *const bad[] = {
		"", "s", "ms", "5x", "5 s", " 5s", "-5s", "1.5s", "5sm", "5ss", "5hh", "5mins",
		"18446744073709552s", "18446744073709551m", "999999999999999999999",
		"213503982334602d",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 0;
		assert_int_equal(parse_duration_ms(bad[i], &v), -1);
	}
}

static void test_parse_bool_words(void **state)
{
	static const char *const yes[] = {"yes", "true", "on", "1", "YES", "True", "On"};
	static const char *const no[] = {"no", "false", "off", "0", "NO", "False", "OFF"};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		bool v = false;
		assert_int_equal(parse_bool(yes[i], &v), 0);
		assert_true(v);
		v = true;
		assert_int_equal(parse_bool(no[i], &v), 0);
		assert_false(v);
	}
	static const char *const bad[] = {"", "y", "n", "2", "yes ", " no", "nope", "enable"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bool v = false;
		assert_int_equal(parse_bool(bad[i], &v), -1);
	}
}

static void expect_size(const char *s, uint64_t want)
{
	uint64_t v = 12345;
	assert_int_equal(parse_size(s, &v), 0);
	assert_int_equal(v, want);
}

static void test_parse_size_binary_units(void **state)
{
	expect_size("0", 0);
	expect_size("1024", 1024);
	expect_size("5b", 5);
	expect_size("10k", 10240);
	expect_size("10K", 10240);
	expect_size("10kb", 10240);
	expect_size("50M", 50ULL << 20);
	expect_size("50mb", 50ULL << 20);
	expect_size("2G", 2ULL << 30);
	expect_size("2gb", 2ULL << 30);
	expect_size("17179869183G", 17179869183ULL << 30);
	static const char *const bad[] = {
		"", "k", "10 k", "10T", "1.5M", "-1", "10kk", "17179869184G", "18446744073709551616",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t v = 0;
		assert_int_equal(parse_size(bad[i], &v), -1);
	}
}

struct collected {
	char items[8][32];
	size_t n;
	size_t fail_at; /* return -1 for this item (1-based); 0: never */
};

static int collect(const char *item, void *arg)
{
	struct collected *c = arg;
	if (c->n >= 8)
		return -1;
	snprintf(c->items[c->n], sizeof(c->items[c->n]), "%s", item);
	c->n++;
	return c->n == c->fail_at ? -1 : 0;
}

static void test_split_list_on_commas_and_spaces(void **state)
{
	char s[] = "a, b  c,,d\te ,";
	struct collected c = {0};
	assert_int_equal(str_split_list(s, collect, &c), 0);
	assert_int_equal(c.n, 5);
	assert_string_equal(c.items[0], "a");
	assert_string_equal(c.items[1], "b");
	assert_string_equal(c.items[2], "c");
	assert_string_equal(c.items[3], "d");
	assert_string_equal(c.items[4], "e");

	char empty[] = "";
	struct collected c2 = {0};
	assert_int_equal(str_split_list(empty, collect, &c2), 0);
	assert_int_equal(c2.n, 0);

	char separators[] = " ,, \t ,";
	assert_int_equal(str_split_list(separators, collect, &c2), 0);
	assert_int_equal(c2.n, 0);
}

static void test_split_list_stops_at_callback_failure(void **state)
{
	char s[] = "one two three four";
	struct collected c = {.fail_at = 2};
	assert_int_equal(str_split_list(s, collect, &c), -1);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.items[1], "two");
}

static void test_trim_spaces_and_tabs(void **state)
{
	char a[] = " \t value \t\r\n";
	assert_string_equal(str_trim(a), "value");
	char b[] = "   ";
	assert_string_equal(str_trim(b), "");
	char c[] = "in side";
	assert_string_equal(str_trim(c), "in side");
}

static void test_ieq_n_is_case_insensitive_and_exact_length(void **state)
{
	assert_true(str_ieq_n("plain", 5, "PLAIN"));
	assert_true(str_ieq_n("PLAINxyz", 5, "plain"));
	assert_false(str_ieq_n("plai", 4, "PLAIN"));
	assert_false(str_ieq_n("plainx", 6, "PLAIN"));
	assert_true(str_ieq_n("", 0, ""));
}

static void test_const_time_eq(void **state)
{
	assert_true(const_time_eq("secret", 6, "secret", 6));
	assert_false(const_time_eq("secret", 6, "secreT", 6));
	assert_false(const_time_eq("secret", 6, "Secret", 6));
	assert_false(const_time_eq("secret", 6, "secrets", 7));
	assert_false(const_time_eq("secrets", 7, "secret", 6));
	assert_true(const_time_eq("", 0, "", 0));
	assert_false(const_time_eq("", 0, "x", 1));
	assert_true(const_time_eq("a\0b", 3, "a\0b", 3));
	assert_false(const_time_eq("a\0b", 3, "a\0c", 3));
	/* only the given lengths count */
	assert_true(const_time_eq("abcX", 3, "abcY", 3));
}

static void test_log_safe_quotes_what_could_forge_fields(void **state)
{
	(void)state;
	char out[64];
	assert_string_equal(str_log_safe("alice@example.org", out, sizeof(out)), "alice@example.org");
	assert_string_equal(str_log_safe("x ip=1.2.3.4", out, sizeof(out)), "\"x\\x20ip=1.2.3.4\"");
	assert_string_equal(str_log_safe("a\"b\\c", out, sizeof(out)), "\"a\\x22b\\x5Cc\"");
	assert_string_equal(str_log_safe("\r\n\x01\xff", out, sizeof(out)),
			    "\"\\x0D\\x0A\\x01\\xFF\"");
	assert_string_equal(str_log_safe("", out, sizeof(out)), "\"\"");
	/* Truncated, still closed, never past the buffer. */
	char small[12];
	assert_string_equal(str_log_safe("abcdefghijklmnop", small, sizeof(small)), "abcdefg...");
	assert_string_equal(str_log_safe("a b c d e f g", small, sizeof(small)), "\"a\\x20b...\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_u64_accepts_decimal_digits),
		cmocka_unit_test(test_parse_u64_rejects_overflow),
		cmocka_unit_test(test_parse_u64_rejects_values_above_max),
		cmocka_unit_test(test_parse_u64_rejects_non_digits),
		cmocka_unit_test(test_parse_u64_n_uses_only_len_bytes),
		cmocka_unit_test(test_parse_duration_units),
		cmocka_unit_test(test_parse_duration_rejects_junk_and_overflow),
		cmocka_unit_test(test_parse_bool_words),
		cmocka_unit_test(test_parse_size_binary_units),
		cmocka_unit_test(test_split_list_on_commas_and_spaces),
		cmocka_unit_test(test_split_list_stops_at_callback_failure),
		cmocka_unit_test(test_trim_spaces_and_tabs),
		cmocka_unit_test(test_ieq_n_is_case_insensitive_and_exact_length),
		cmocka_unit_test(test_const_time_eq),
		cmocka_unit_test(test_log_safe_quotes_what_could_forge_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
