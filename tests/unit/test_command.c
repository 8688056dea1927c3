/* test_command.c - unit tests for pop3_parse_command(): splitting a POP3 command line into a
 * keyword, arguments and the untouched rest of the line, and rejecting malformed lines. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pop3/command.h"

/*
 * Parses a copy of the line in a heap block of exactly len bytes (no NUL, no
 * CRLF after it), so AddressSanitizer catches any read beyond len.
 */
static enum pop3_parse_result parse_n(const char *line, size_t len, struct pop3_command *cmd,
				      char **copy)
{
	*copy = malloc(len ? len : 1);
	assert_non_null(*copy);
	memcpy(*copy, line, len);
	return pop3_parse_command(*copy, len, cmd);
}

static void assert_arg(const struct pop3_arg *arg, const char *want)
{
	assert_non_null(arg->p);
	assert_int_equal(arg->len, strlen(want));
	assert_memory_equal(arg->p, want, arg->len);
}

static void assert_parses(const char *line, const char *keyword, unsigned argc, const char *arg0,
			  const char *arg1)
{
	struct pop3_command cmd;
	char *copy;
	assert_int_equal(parse_n(line, strlen(line), &cmd, &copy), POP3_PARSE_OK);
	assert_arg(&(struct pop3_arg){ cmd.keyword, cmd.keyword_len }, keyword);
	assert_int_equal(cmd.argc, argc);
	if (arg0 != NULL)
		assert_arg(&cmd.argv[0], arg0);
	if (arg1 != NULL)
		assert_arg(&cmd.argv[1], arg1);
	free(copy);
}

static enum pop3_parse_result parse_result(const char *line, size_t len)
{
	struct pop3_command cmd;
	char *copy;
	enum pop3_parse_result r = parse_n(line, len, &cmd, &copy);
	free(copy);
	return r;
}

static void test_keyword_alone_has_no_arguments(void **state)
{
	(void)state;
	struct pop3_command cmd;
	char *copy;
	assert_int_equal(parse_n("STAT", 4, &cmd, &copy), POP3_PARSE_OK);
	assert_int_equal(cmd.keyword_len, 4);
	assert_memory_equal(cmd.keyword, "STAT", 4);
	assert_int_equal(cmd.argc, 0);
	assert_int_equal(cmd.rest.len, 0);
	free(copy);
}

static void test_keyword_case_is_preserved_and_accepted(void **state)
{
	(void)state;
	/* The parser accepts any case; the dispatcher compares case-insensitively. */
	assert_parses("stat", "stat", 0, NULL, NULL);
	assert_parses("StAt", "StAt", 0, NULL, NULL);
	assert_parses("uidl 3", "uidl", 1, "3", NULL);
	assert_parses("Retr 12", "Retr", 1, "12", NULL);
}

static void test_arguments_are_split_on_spaces(void **state)
{
	(void)state;
	assert_parses("RETR 1", "RETR", 1, "1", NULL);
	assert_parses("TOP 2 10", "TOP", 2, "2", "10");
	assert_parses("APOP mrose c4c9334bac560ecc979e58001b3e22fb", "APOP", 2, "mrose",
		      "c4c9334bac560ecc979e58001b3e22fb");
	assert_parses("AUTH PLAIN AHRlc3QAc2VjcmV0", "AUTH", 2, "PLAIN", "AHRlc3QAc2VjcmV0");
}

static void test_extra_and_trailing_spaces_are_tolerated(void **state)
{
	(void)state;
	assert_parses("STAT ", "STAT", 0, NULL, NULL);
	assert_parses("STAT    ", "STAT", 0, NULL, NULL);
	assert_parses("LIST 1 ", "LIST", 1, "1", NULL);
	assert_parses("TOP  2   10  ", "TOP", 2, "2", "10");
	assert_parses("   NOOP", "NOOP", 0, NULL, NULL);
	assert_parses("  RETR   7  ", "RETR", 1, "7", NULL);
}

static void test_pass_rest_of_line_keeps_spaces(void **state)
{
	(void)state;
	struct pop3_command cmd;
	char *copy;
	const char *line = "PASS my secret  pass phrase ";
	assert_int_equal(parse_n(line, strlen(line), &cmd, &copy), POP3_PARSE_OK);
	assert_arg(&(struct pop3_arg){ cmd.keyword, cmd.keyword_len }, "PASS");
	assert_arg(&cmd.rest, "my secret  pass phrase ");
	/* The tokenised view is still there, capped. */
	assert_arg(&cmd.argv[0], "my");
	assert_arg(&cmd.argv[1], "secret");
	assert_int_equal(cmd.argc, POP3_MAX_ARGS + 1);
	free(copy);
}

static void test_rest_is_everything_after_keyword_and_one_space(void **state)
{
	(void)state;
	struct pop3_command cmd;
	char *copy;
	assert_int_equal(parse_n("PASS x", 6, &cmd, &copy), POP3_PARSE_OK);
	assert_arg(&cmd.rest, "x");
	free(copy);

	assert_int_equal(parse_n("USER ", 5, &cmd, &copy), POP3_PARSE_OK);
	assert_int_equal(cmd.argc, 0);
	assert_int_equal(cmd.rest.len, 0);
	free(copy);
}

static void test_eight_bit_octets_are_allowed_in_arguments(void **state)
{
	(void)state;
	/* UTF-8 user names and passwords (RFC 6856). */
	assert_parses("USER j\xc3\xb6rg", "USER", 1, "j\xc3\xb6rg", NULL);
	assert_parses("PASS \xe2\x82\xac\xff", "PASS", 1, "\xe2\x82\xac\xff", NULL);
}

static void test_control_characters_are_rejected(void **state)
{
	(void)state;
	static const struct {
		const char *line;
		size_t len;
	} bad[] = {
		{ "ST\0AT", 5 },       { "STAT\0", 5 },      { "\0STAT", 5 },     { "RETR\t1", 6 },
		{ "RETR 1\t", 7 },     { "RETR 1\r", 7 },    { "RETR\r\n1", 8 },  { "LIST\n", 5 },
		{ "USER a\x01", 7 },   { "PASS se\x1f", 8 }, { "PASS a\x7f", 7 }, { "\x1b[2J", 4 },
		{ "PASS my\0pw", 10 }, { "\t", 1 },          { " \r", 2 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct pop3_command cmd;
		char *copy;
		enum pop3_parse_result r = parse_n(bad[i].line, bad[i].len, &cmd, &copy);
		if (r != POP3_PARSE_BAD_CHAR)
			fail_msg("line %zu: expected POP3_PARSE_BAD_CHAR, got %d", i, (int)r);
		free(copy);
	}
}

static void test_empty_line_is_reported_as_empty(void **state)
{
	(void)state;
	assert_int_equal(parse_result("", 0), POP3_PARSE_EMPTY);
	assert_int_equal(parse_result(" ", 1), POP3_PARSE_EMPTY);
	assert_int_equal(parse_result("     ", 5), POP3_PARSE_EMPTY);
}

static void test_bad_keyword_characters_are_rejected(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"ST.T", "RE@R",   "ST*T",  "LIST, 1", "\xc3\xa9TAT", "ST\xff",
		"+OK",  "[AUTH]", "QUIT;", "US/R a",  "\"PASS\" x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		enum pop3_parse_result r = parse_result(bad[i], strlen(bad[i]));
		if (r != POP3_PARSE_BAD_KEYWORD)
			fail_msg("\"%s\": expected POP3_PARSE_BAD_KEYWORD, got %d", bad[i], (int)r);
	}
}

static void test_control_character_wins_over_bad_keyword(void **state)
{
	(void)state;
	assert_int_equal(parse_result("ST.T\t", 5), POP3_PARSE_BAD_CHAR);
}

static void test_argc_is_capped_at_max_args_plus_one(void **state)
{
	(void)state;
	struct pop3_command cmd;
	char *copy;
	const char *line = "TOP 1 2 3 4 5 6 7 8 9 10 11 12";
	assert_int_equal(parse_n(line, strlen(line), &cmd, &copy), POP3_PARSE_OK);
	assert_int_equal(cmd.argc, POP3_MAX_ARGS + 1);
	assert_arg(&cmd.argv[0], "1");
	assert_arg(&cmd.argv[1], "2");
	free(copy);

	assert_parses("TOP 1 2 3", "TOP", POP3_MAX_ARGS + 1, "1", "2");
}

static void test_only_len_bytes_are_parsed(void **state)
{
	(void)state;
	struct pop3_command cmd;
	/* Bytes after len (here a TAB and a further argument) are not part of the line. */
	const char line[] = "LIST 1\t 2";
	assert_int_equal(pop3_parse_command(line, 6, &cmd), POP3_PARSE_OK);
	assert_int_equal(cmd.argc, 1);
	assert_arg(&cmd.argv[0], "1");
	assert_int_equal(pop3_parse_command(line, 4, &cmd), POP3_PARSE_OK);
	assert_int_equal(cmd.argc, 0);
	assert_int_equal(cmd.keyword_len, 4);
}

static void test_previous_contents_are_cleared(void **state)
{
	(void)state;
	struct pop3_command cmd;
	char *copy;
	assert_int_equal(parse_n("TOP 1 2", 7, &cmd, &copy), POP3_PARSE_OK);
	free(copy);
	assert_int_equal(parse_n("QUIT", 4, &cmd, &copy), POP3_PARSE_OK);
	assert_int_equal(cmd.argc, 0);
	assert_null(cmd.argv[0].p);
	assert_null(cmd.argv[1].p);
	assert_int_equal(cmd.rest.len, 0);
	free(copy);
}

static void test_long_keyword_is_parsed_for_the_dispatcher_to_reject(void **state)
{
	(void)state;
	/* Keyword length is not the parser's business: "STATUS" must come out whole so the
	 * dispatcher answers "unknown command" rather than running STAT. */
	assert_parses("STATUS 1", "STATUS", 1, "1", NULL);
	assert_parses("X-FOO", "X-FOO", 0, NULL, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keyword_alone_has_no_arguments),
		cmocka_unit_test(test_keyword_case_is_preserved_and_accepted),
		cmocka_unit_test(test_arguments_are_split_on_spaces),
		cmocka_unit_test(test_extra_and_trailing_spaces_are_tolerated),
		cmocka_unit_test(test_pass_rest_of_line_keeps_spaces),
		cmocka_unit_test(test_rest_is_everything_after_keyword_and_one_space),
		cmocka_unit_test(test_eight_bit_octets_are_allowed_in_arguments),
		cmocka_unit_test(test_control_characters_are_rejected),
		cmocka_unit_test(test_empty_line_is_reported_as_empty),
		cmocka_unit_test(test_bad_keyword_characters_are_rejected),
		cmocka_unit_test(test_control_character_wins_over_bad_keyword),
		cmocka_unit_test(test_argc_is_capped_at_max_args_plus_one),
		cmocka_unit_test(test_only_len_bytes_are_parsed),
		cmocka_unit_test(test_previous_contents_are_cleared),
		cmocka_unit_test(test_long_keyword_is_parsed_for_the_dispatcher_to_reject),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
