/* test_lmtp.c - unit tests for the sans-I/O LMTP core (src/lmtp/lmtp.c): greeting, LHLO and its
 * capabilities, the command sequence, address and parameter parsing, per-recipient replies,
 * the message text (dot-unstuffing, Return-Path removal, loop detection, size and line
 * limits), error limits and shutdown. No I/O: lines in, replies, body bytes and requests out. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bounds.h"
#include "common/buf.h"
#include "lmtp/lmtp.h"

#define HOST     "mx.test"
#define GREETING "220 " HOST " Pigeon LMTP ready\r\n"
#define LHLO_REPLY(size)                                                                           \
	"250-" HOST "\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 " size   \
	"\r\n"
#define GO_AHEAD "354 Start mail input; end with <CRLF>.<CRLF>\r\n"

/* ---- fixture ------------------------------------------------------------------------------ */

struct fx {
	struct lmtp_settings cfg;
	struct lmtp_session *s;
	char *out;       /* the last output taken */
	struct buf body; /* message text taken so far */
	bool after_lhlo; /* check enhanced status codes in everything taken */
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	f->cfg = (struct lmtp_settings){
	    .hostname = HOST,
	    .max_message_size = 0,
	    .max_recipients = 100,
	    .max_bad_commands = 10,
	};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	lmtp_session_free(f->s);
	free(f->out);
	buf_free(&f->body);
	free(f);
	return 0;
}

/* RFC 2034: after LHLO every 2xx/4xx/5xx reply line starts "class.subject.detail " with the
 * class equal to the reply's first digit; 3xx lines carry none. Also RFC 5321 §4.2 syntax. */
static void check_reply_syntax(const char *out, bool enhanced)
{
	const char *p = out;
	while (*p != '\0') {
		const char *eol = strstr(p, "\r\n");
		assert_non_null(eol);
		size_t len = (size_t)(eol - p);
		assert_true(len + 2 <= 512);
		assert_true(len >= 4);
		assert_true(p[0] >= '2' && p[0] <= '5');
		assert_true(p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9');
		assert_true(p[3] == ' ' || p[3] == '-');
		assert_null(memchr(p, '\n', len));
		if (enhanced && p[0] != '3') {
			const char *e = p + 4;
			if (e[0] != p[0] || e[1] != '.') {
				fail_msg("reply without enhanced status code: %.*s", (int)len, p);
			}
			const char *q = e + 2;
			size_t digits = strspn(q, "0123456789");
			assert_true(digits >= 1 && digits <= 3);
			q += digits;
			assert_int_equal(*q, '.');
			q++;
			digits = strspn(q, "0123456789");
			assert_true(digits >= 1 && digits <= 3);
			assert_int_equal(q[digits], ' ');
		}
		p = eol + 2;
	}
}

/* The output since the last take, as a string (owned by the fixture); output cleared. */
static const char *take(struct fx *f)
{
	struct buf *o = lmtp_session_output(f->s);
	free(f->out);
	f->out = calloc(1, o->len + 1);
	assert_non_null(f->out);
	if (o->len > 0)
		memcpy(f->out, o->data, o->len);
	buf_clear(o);
	check_reply_syntax(f->out, f->after_lhlo);
	/* the message text is the caller's to take, like lmtp_conn.c does */
	struct buf *b = lmtp_session_body(f->s);
	if (b->len > 0)
		buf_append(&f->body, b->data, b->len);
	buf_clear(b);
	return f->out;
}

static void start(struct fx *f)
{
	f->s = lmtp_session_new(&f->cfg);
	assert_non_null(f->s);
	assert_string_equal(take(f), GREETING);
	assert_int_equal(lmtp_session_request(f->s)->kind, LMTP_REQ_NONE);
}

static void feed(struct fx *f, const char *line)
{
	lmtp_session_input(f->s, line, strlen(line));
}

/* One command line in, its reply out. */
static const char *cmd(struct fx *f, const char *line)
{
	feed(f, line);
	return take(f);
}

static void lhlo(struct fx *f)
{
	f->after_lhlo = false; /* the LHLO reply carries no enhanced codes */
	const char *out = cmd(f, "LHLO client.example");
	assert_true(strncmp(out, "250-" HOST "\r\n", strlen("250-" HOST "\r\n")) == 0);
	f->after_lhlo = true;
}

static enum lmtp_request_kind req(struct fx *f)
{
	return lmtp_session_request(f->s)->kind;
}

/* RCPT TO:<addr>: the core asks for a lookup of addr; answer it with result. */
static const char *rcpt(struct fx *f, const char *addr, enum lmtp_rcpt_result result)
{
	char line[600];
	snprintf(line, sizeof(line), "RCPT TO:<%s>", addr);
	feed(f, line);
	assert_string_equal(take(f), ""); /* nothing before the lookup is done */
	assert_int_equal(req(f), LMTP_REQ_RCPT);
	assert_string_equal(lmtp_session_request(f->s)->address, addr);
	lmtp_session_rcpt_done(f->s, result);
	assert_int_equal(req(f), LMTP_REQ_NONE);
	return take(f);
}

static void mail(struct fx *f, const char *from)
{
	assert_string_equal(cmd(f, from), "250 2.1.0 Sender OK\r\n");
}

/* DATA with n accepted recipients: DATA_BEGIN, then 354 once the caller is ready. */
static void data(struct fx *f, size_t n)
{
	feed(f, "DATA");
	assert_string_equal(take(f), "");
	assert_int_equal(req(f), LMTP_REQ_DATA_BEGIN);
	assert_int_equal(lmtp_session_request(f->s)->recipients, n);
	assert_false(lmtp_session_in_data(f->s));
	lmtp_session_data_ready(f->s);
	assert_int_equal(req(f), LMTP_REQ_NONE);
	assert_string_equal(take(f), GO_AHEAD);
	assert_true(lmtp_session_in_data(f->s));
	assert_int_equal(lmtp_session_line_limit(f->s), LMTP_MAX_DATA_LINE);
	buf_clear(&f->body);
}

/* Message text lines (as they come off the wire, without CRLF). */
static void text(struct fx *f, const char *const *lines)
{
	for (; *lines != NULL; lines++) {
		feed(f, *lines);
		assert_string_equal(take(f), "");
		assert_int_equal(req(f), LMTP_REQ_NONE);
	}
}

/* The final ".": DATA_END for n recipients, answered with results. */
static const char *finish(struct fx *f, size_t n, const enum lmtp_store_result *results)
{
	feed(f, ".");
	assert_string_equal(take(f), "");
	assert_int_equal(req(f), LMTP_REQ_DATA_END);
	assert_int_equal(lmtp_session_request(f->s)->recipients, n);
	lmtp_session_data_done(f->s, results);
	assert_int_equal(req(f), LMTP_REQ_NONE);
	assert_false(lmtp_session_in_data(f->s));
	return take(f);
}

static bool body_is(struct fx *f, const char *expected)
{
	size_t n = strlen(expected);
	if (f->body.len == n && memcmp(f->body.data, expected, n) == 0)
		return true;
	print_error("body: %.*s\nexpected: %s\n", (int)f->body.len,
	            f->body.data ? f->body.data : "", expected);
	return false;
}

/* ---- greeting, LHLO ------------------------------------------------------------------------- */

static void test_greeting(void **state)
{
	struct fx *f = *state;
	start(f);
	assert_false(lmtp_session_in_data(f->s));
	assert_int_equal(lmtp_session_line_limit(f->s), LMTP_MAX_COMMAND_LINE);
	assert_string_equal(lmtp_session_helo(f->s), "unknown");
	assert_string_equal(lmtp_session_sender(f->s), "");
	assert_null(lmtp_session_recipient(f->s, 0));
}

static void test_lhlo_capabilities_with_size(void **state)
{
	struct fx *f = *state;
	f->cfg.max_message_size = 52428800;
	start(f);
	assert_string_equal(cmd(f, "LHLO client.example"), LHLO_REPLY("SIZE 52428800"));
	assert_string_equal(lmtp_session_helo(f->s), "client.example");
}

static void test_lhlo_capabilities_without_limit(void **state)
{
	struct fx *f = *state;
	start(f);
	/* RFC 1870: "SIZE" alone means no fixed limit */
	assert_string_equal(cmd(f, "lhlo [192.0.2.1] extra words"), LHLO_REPLY("SIZE"));
	assert_string_equal(lmtp_session_helo(f->s), "[192.0.2.1]");
}

static void test_lhlo_needs_a_domain(void **state)
{
	struct fx *f = *state;
	start(f);
	assert_string_equal(cmd(f, "LHLO"), "501 5.5.4 Syntax: LHLO hostname\r\n");
	assert_string_equal(cmd(f, "LHLO "), "501 5.5.4 Syntax: LHLO hostname\r\n");
	assert_string_equal(cmd(f, "MAIL FROM:<a@b.example>"), "503 5.5.1 Send LHLO first\r\n");
}

static void test_helo_and_ehlo_are_refused(void **state)
{
	struct fx *f = *state;
	start(f);
	assert_string_equal(cmd(f, "HELO client.example"), "500 5.5.1 This is LMTP: use LHLO\r\n");
	assert_string_equal(cmd(f, "EHLO client.example"), "500 5.5.1 This is LMTP: use LHLO\r\n");
	assert_string_equal(cmd(f, "ehlo client.example"), "500 5.5.1 This is LMTP: use LHLO\r\n");
	lhlo(f);
	assert_string_equal(cmd(f, "EHLO client.example"), "500 5.5.1 This is LMTP: use LHLO\r\n");
	/* and they do not count as LHLO */
	mail(f, "MAIL FROM:<a@b.example>");
}

/* ---- command sequence ---------------------------------------------------------------------- */

static void test_sequence_before_lhlo(void **state)
{
	struct fx *f = *state;
	start(f);
	assert_string_equal(cmd(f, "MAIL FROM:<a@b.example>"), "503 5.5.1 Send LHLO first\r\n");
	assert_string_equal(cmd(f, "RCPT TO:<a@b.example>"), "503 5.5.1 Send MAIL first\r\n");
	assert_string_equal(cmd(f, "DATA"), "503 5.5.1 Send MAIL and RCPT first\r\n");
	assert_int_equal(req(f), LMTP_REQ_NONE);
	assert_string_equal(cmd(f, "NOOP"), "250 2.0.0 OK\r\n");
	assert_string_equal(cmd(f, "RSET"), "250 2.0.0 OK\r\n");
	/* RSET does not stand in for LHLO */
	assert_string_equal(cmd(f, "MAIL FROM:<a@b.example>"), "503 5.5.1 Send LHLO first\r\n");
}

static void test_sequence_after_lhlo(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	assert_string_equal(cmd(f, "RCPT TO:<a@b.example>"), "503 5.5.1 Send MAIL first\r\n");
	assert_string_equal(cmd(f, "DATA"), "503 5.5.1 Send MAIL and RCPT first\r\n");
	mail(f, "MAIL FROM:<s@example.net>");
	assert_string_equal(cmd(f, "MAIL FROM:<s@example.net>"),
	                    "503 5.5.1 Nested MAIL command\r\n");
	/* RFC 2033 §4.2: no accepted recipient, no message text */
	assert_string_equal(rcpt(f, "nobody@example.org", LMTP_RCPT_UNKNOWN),
	                    "550 5.1.1 <nobody@example.org> User unknown\r\n");
	assert_string_equal(cmd(f, "DATA"), "503 5.5.1 No valid recipients\r\n");
	assert_int_equal(req(f), LMTP_REQ_NONE);
	assert_false(lmtp_session_in_data(f->s));
	/* the transaction is still open: a recipient makes DATA work */
	assert_string_equal(rcpt(f, "a@example.org", LMTP_RCPT_OK),
	                    "250 2.1.5 <a@example.org> Recipient OK\r\n");
	data(f, 1);
}

static void test_unknown_and_bad_commands(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	assert_string_equal(cmd(f, "FOO"), "500 5.5.2 Unrecognized command\r\n");
	assert_string_equal(cmd(f, "MAILX FROM:<a@b>"), "500 5.5.2 Unrecognized command\r\n");
	assert_string_equal(cmd(f, ""), "500 5.5.2 Unrecognized command\r\n");
	assert_string_equal(cmd(f, "BDAT 10 LAST"), "500 5.5.2 Unrecognized command\r\n");
	assert_string_equal(cmd(f, "NOOP\x01"), "500 5.5.2 Invalid character in command\r\n");
	lmtp_session_input(f->s, "NOOP\0x", 6);
	assert_string_equal(take(f), "500 5.5.2 Invalid character in command\r\n");
	assert_string_equal(cmd(f, "VRFY alice"), "502 5.5.1 VRFY not implemented\r\n");
	assert_string_equal(cmd(f, "noop anything"), "250 2.0.0 OK\r\n");
	assert_string_equal(cmd(f, "NoOp"), "250 2.0.0 OK\r\n");
}

static void test_quit(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<s@example.net>");
	assert_string_equal(cmd(f, "QUIT"), "221 2.0.0 Bye\r\n");
	assert_int_equal(req(f), LMTP_REQ_CLOSE);
	/* nothing more is answered */
	assert_string_equal(cmd(f, "NOOP"), "");
	lmtp_session_shutdown(f->s);
	assert_string_equal(take(f), "");
}

static void test_rset_and_second_lhlo_reset_the_transaction(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<s@example.net>");
	rcpt(f, "a@example.org", LMTP_RCPT_OK);
	assert_string_equal(lmtp_session_recipient(f->s, 0), "a@example.org");
	assert_string_equal(cmd(f, "RSET"), "250 2.0.0 OK\r\n");
	assert_null(lmtp_session_recipient(f->s, 0));
	assert_string_equal(lmtp_session_sender(f->s), "");
	assert_string_equal(cmd(f, "DATA"), "503 5.5.1 Send MAIL and RCPT first\r\n");
	assert_string_equal(cmd(f, "RCPT TO:<a@example.org>"), "503 5.5.1 Send MAIL first\r\n");

	mail(f, "MAIL FROM:<t@example.net>");
	rcpt(f, "b@example.org", LMTP_RCPT_OK);
	f->after_lhlo = false;
	assert_string_equal(cmd(f, "LHLO other.example"), LHLO_REPLY("SIZE"));
	f->after_lhlo = true;
	assert_string_equal(lmtp_session_helo(f->s), "other.example");
	assert_null(lmtp_session_recipient(f->s, 0));
	assert_string_equal(cmd(f, "DATA"), "503 5.5.1 Send MAIL and RCPT first\r\n");

	/* a fresh transaction counts its recipients from zero */
	mail(f, "MAIL FROM:<u@example.net>");
	rcpt(f, "c@example.org", LMTP_RCPT_OK);
	data(f, 1);
	assert_string_equal(lmtp_session_recipient(f->s, 0), "c@example.org");
	assert_null(lmtp_session_recipient(f->s, 1));
	assert_string_equal(lmtp_session_sender(f->s), "u@example.net");
}

/* ---- addresses and parameters -------------------------------------------------------------- */

/* MAIL FROM:<...> as given -> the sender, or NULL if it must be refused with 501. */
static const struct {
	const char *line;
	const char *sender;
} mail_cases[] = {
    {"MAIL FROM:<alice@example.net>", "alice@example.net"},
    {"MAIL FROM:<>", ""},
    {"mail from:<Alice@Example.NET>", "Alice@Example.NET"},
    {"MAIL FROM:<@relay1.example,@relay2.example:user@example.net>", "user@example.net"},
    {"MAIL FROM:<@relay.example:user@example.net>", "user@example.net"},
    {"MAIL FROM:<user@[192.0.2.1]>", "user@[192.0.2.1]"},
    {"MAIL FROM:<a.b-c+d=e@example.net>", "a.b-c+d=e@example.net"},
    {"MAIL FROM:alice@example.net", NULL},
    {"MAIL FROM:<alice@example.net", NULL},
    {"MAIL FROM:alice@example.net>", NULL},
    {"MAIL FROM:<ali ce@example.net>", NULL},
    {"MAIL FROM:<a<b@example.net>", NULL},
    {"MAIL FROM:<@relay.example,user@example.net>", NULL}, /* source route without ':' */
    {"MAIL FROM:", NULL},
    {"MAIL FROM:<\"unterminated@example.net>", NULL},
};

static void test_mail_addresses(void **state)
{
	struct fx *f = *state;
	f->cfg.max_bad_commands = 100;
	start(f);
	lhlo(f);
	for (size_t i = 0; i < sizeof(mail_cases) / sizeof(mail_cases[0]); i++) {
		const char *out = cmd(f, mail_cases[i].line);
		if (mail_cases[i].sender == NULL) {
			if (strcmp(out, "501 5.1.7 Bad sender address syntax\r\n") != 0)
				fail_msg("%s -> %s", mail_cases[i].line, out);
			continue;
		}
		if (strcmp(out, "250 2.1.0 Sender OK\r\n") != 0)
			fail_msg("%s -> %s", mail_cases[i].line, out);
		assert_string_equal(lmtp_session_sender(f->s), mail_cases[i].sender);
		assert_string_equal(cmd(f, "RSET"), "250 2.0.0 OK\r\n");
	}
	assert_string_equal(cmd(f, "MAIL TO:<a@example.net>"),
	                    "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
	assert_string_equal(cmd(f, "MAIL"), "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
}

/* The address with quotes and backslashes removed: the same whether the core keeps the
 * quoting of a local part or resolves it. */
static void assert_unquoted(const char *addr, const char *expected)
{
	char plain[512];
	size_t n = 0;
	for (const char *p = addr; *p != '\0' && n + 1 < sizeof(plain); p++)
		if (*p != '"' && *p != '\\')
			plain[n++] = *p;
	plain[n] = '\0';
	assert_string_equal(plain, expected);
}

static void test_quoted_local_parts(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	/* RFC 5321 §4.1.2: a quoted local part may hold a space, '<', '>' and '\"' */
	mail(f, "MAIL FROM:<\"john doe\"@example.net>");
	assert_unquoted(lmtp_session_sender(f->s), "john doe@example.net");
	static const struct {
		const char *line;
		const char *plain;
	} cases[] = {
	    {"RCPT TO:<\"a>b\"@example.org>", "a>b@example.org"},
	    {"RCPT TO:<\"a<b\"@example.org>", "a<b@example.org"},
	    {"RCPT TO:<\"x\\\"y\"@example.org>", "xy@example.org"},
	    {"RCPT TO:<\"first last\"@example.org>", "first last@example.org"},
	    {"RCPT TO:<@hop.example:\"q u\"@example.org>", "q u@example.org"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		feed(f, cases[i].line);
		assert_string_equal(take(f), "");
		if (req(f) != LMTP_REQ_RCPT)
			fail_msg("%s refused", cases[i].line);
		assert_unquoted(lmtp_session_request(f->s)->address, cases[i].plain);
		lmtp_session_rcpt_done(f->s, LMTP_RCPT_OK);
		const char *out = take(f);
		assert_true(strncmp(out, "250 2.1.5 <", 11) == 0);
	}
	/* an unterminated quoted string runs into the end of the line */
	assert_string_equal(cmd(f, "RCPT TO:<\"a@example.org>"),
	                    "501 5.1.3 Bad recipient address syntax\r\n");
}

/* The quoting stays in what goes into headers and replies (Return-Path, Delivered-To,
 * "for <...>", "250 2.1.5 <...>"); only the lookup gets the unquoted form. */
static void test_quoted_local_parts_are_kept_for_headers(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<\"john doe\"@example.net>");
	assert_string_equal(lmtp_session_sender(f->s), "\"john doe\"@example.net");
	static const struct {
		const char *line, *lookup, *kept;
	} cases[] = {
	    {"RCPT TO:<\"first last\"@example.org>", "first last@example.org",
	     "\"first last\"@example.org"},
	    {"RCPT TO:<\"x\\\"y\"@example.org>", "x\"y@example.org", "\"x\\\"y\"@example.org"},
	    {"RCPT TO:<@hop.example:\"q u\"@example.org>", "q u@example.org", "\"q u\"@example.org"},
	    {"RCPT TO:<plain@example.org>", "plain@example.org", "plain@example.org"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		feed(f, cases[i].line);
		assert_string_equal(take(f), "");
		assert_int_equal(req(f), LMTP_REQ_RCPT);
		assert_string_equal(lmtp_session_request(f->s)->address, cases[i].lookup);
		lmtp_session_rcpt_done(f->s, LMTP_RCPT_OK);
		char expected[128];
		snprintf(expected, sizeof(expected), "250 2.1.5 <%s> Recipient OK\r\n", cases[i].kept);
		assert_string_equal(take(f), expected);
		assert_string_equal(lmtp_session_recipient(f->s, i), cases[i].kept);
	}
	/* an unknown quoted recipient is named as written too */
	feed(f, "RCPT TO:<\"no body\"@example.org>");
	assert_string_equal(lmtp_session_request(f->s)->address, "no body@example.org");
	lmtp_session_rcpt_done(f->s, LMTP_RCPT_UNKNOWN);
	assert_string_equal(take(f), "550 5.1.1 <\"no body\"@example.org> User unknown\r\n");
	/* a loop is spotted against the Delivered-To written with the quotes */
	data(f, 4);
	text(f, (const char *const[]){"Delivered-To: \"first last\"@example.org", "", "x", NULL});
	enum lmtp_store_result results[4] = {LMTP_STORED, LMTP_STORED, LMTP_STORED, LMTP_STORED};
	const char *out = finish(f, 4, results);
	assert_non_null(strstr(out, "554 5.4.6 <\"first last\"@example.org> Mail loop"));
}

static void test_rcpt_addresses(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<>");
	assert_string_equal(lmtp_session_sender(f->s), "");
	/* the source route is dropped before the lookup */
	feed(f, "RCPT TO:<@hop1.example,@hop2.example:bob@example.org>");
	assert_string_equal(take(f), "");
	assert_int_equal(req(f), LMTP_REQ_RCPT);
	assert_string_equal(lmtp_session_request(f->s)->address, "bob@example.org");
	lmtp_session_rcpt_done(f->s, LMTP_RCPT_OK);
	assert_string_equal(take(f), "250 2.1.5 <bob@example.org> Recipient OK\r\n");
	/* a name without a domain is looked up as it is */
	assert_string_equal(rcpt(f, "postmaster", LMTP_RCPT_OK),
	                    "250 2.1.5 <postmaster> Recipient OK\r\n");
	static const char *const bad[] = {
	    "RCPT TO:<>",
	    "RCPT TO:bob@example.org",
	    "RCPT TO:<bob@example.org",
	    "RCPT TO:<b ob@example.org>",
	    "RCPT TO:",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *out = cmd(f, bad[i]);
		if (strcmp(out, "501 5.1.3 Bad recipient address syntax\r\n") != 0)
			fail_msg("%s -> %s", bad[i], out);
		assert_int_equal(req(f), LMTP_REQ_NONE);
	}
	assert_string_equal(cmd(f, "RCPT FROM:<bob@example.org>"),
	                    "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
	/* RCPT parameters (NOTIFY=, ORCPT=) are not supported */
	assert_string_equal(cmd(f, "RCPT TO:<bob@example.org> NOTIFY=NEVER"),
	                    "555 5.5.4 RCPT parameters not supported\r\n");
	assert_int_equal(req(f), LMTP_REQ_NONE);
	/* trailing spaces are not parameters */
	feed(f, "RCPT TO:<carol@example.org>   ");
	assert_int_equal(req(f), LMTP_REQ_RCPT);
	assert_string_equal(lmtp_session_request(f->s)->address, "carol@example.org");
	lmtp_session_rcpt_done(f->s, LMTP_RCPT_OK);
	take(f);
	assert_string_equal(lmtp_session_recipient(f->s, 0), "bob@example.org");
	assert_string_equal(lmtp_session_recipient(f->s, 1), "postmaster");
	assert_string_equal(lmtp_session_recipient(f->s, 2), "carol@example.org");
	assert_null(lmtp_session_recipient(f->s, 3));
}

static void test_address_length_limit(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	char addr[LMTP_MAX_ADDRESS + 2];
	char line[LMTP_MAX_ADDRESS + 32];
	/* RFC 5321 §4.5.3.1.3: a path of 256 octets is fine, 257 is not */
	memset(addr, 'a', sizeof(addr));
	memcpy(addr + LMTP_MAX_ADDRESS - 12, "@example.org", 12);
	addr[LMTP_MAX_ADDRESS] = '\0';
	snprintf(line, sizeof(line), "MAIL FROM:<%s>", addr);
	mail(f, line);
	assert_int_equal(strlen(lmtp_session_sender(f->s)), LMTP_MAX_ADDRESS);
	assert_string_equal(cmd(f, "RSET"), "250 2.0.0 OK\r\n");
	memset(addr, 'a', sizeof(addr));
	memcpy(addr + LMTP_MAX_ADDRESS + 1 - 12, "@example.org", 12);
	addr[LMTP_MAX_ADDRESS + 1] = '\0';
	snprintf(line, sizeof(line), "MAIL FROM:<%s>", addr);
	assert_string_equal(cmd(f, line), "501 5.1.7 Bad sender address syntax\r\n");
	mail(f, "MAIL FROM:<s@example.net>");
	snprintf(line, sizeof(line), "RCPT TO:<%s>", addr);
	assert_string_equal(cmd(f, line), "501 5.1.3 Bad recipient address syntax\r\n");
}

static void test_size_and_body_parameters(void **state)
{
	struct fx *f = *state;
	f->cfg.max_message_size = 1000;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<s@example.net> SIZE=1000");
	feed(f, "RCPT TO:<a@example.org>");
	assert_int_equal(req(f), LMTP_REQ_RCPT);
	assert_int_equal(lmtp_session_request(f->s)->declared_size, 1000);
	lmtp_session_rcpt_done(f->s, LMTP_RCPT_OK);
	take(f);
	assert_string_equal(cmd(f, "RSET"), "250 2.0.0 OK\r\n");

	assert_string_equal(cmd(f, "MAIL FROM:<s@example.net> SIZE=1001"),
	                    "552 5.3.4 Message too big (at most 1000 octets)\r\n");
	assert_string_equal(cmd(f, "MAIL FROM:<s@example.net> BODY=8BITMIME SIZE=99999999999"),
	                    "552 5.3.4 Message too big (at most 1000 octets)\r\n");
	/* a refused MAIL leaves no transaction behind */
	assert_string_equal(cmd(f, "RCPT TO:<a@example.org>"), "503 5.5.1 Send MAIL first\r\n");
	assert_string_equal(cmd(f, "MAIL FROM:<s@example.net> SIZE=abc"),
	                    "501 5.5.4 Bad SIZE parameter\r\n");
	assert_string_equal(cmd(f, "MAIL FROM:<s@example.net> SIZE="),
	                    "501 5.5.4 Bad SIZE parameter\r\n");
	assert_string_equal(cmd(f, "MAIL FROM:<s@example.net> SIZE=-1"),
	                    "501 5.5.4 Bad SIZE parameter\r\n");
	assert_string_equal(cmd(f, "MAIL FROM:<s@example.net> SIZE=99999999999999999999999"),
	                    "501 5.5.4 Bad SIZE parameter\r\n");
	assert_string_equal(cmd(f, "MAIL FROM:<s@example.net> FOO=BAR"),
	                    "555 5.5.4 Unsupported parameter FOO=BAR\r\n");
	assert_string_equal(cmd(f, "MAIL FROM:<s@example.net> BODY=BINARYMIME"),
	                    "555 5.5.4 Unsupported parameter BODY=BINARYMIME\r\n");
	assert_string_equal(cmd(f, "MAIL FROM:<s@example.net> SMTPUTF8"),
	                    "555 5.5.4 Unsupported parameter SMTPUTF8\r\n");
	assert_string_equal(cmd(f, "RCPT TO:<a@example.org>"), "503 5.5.1 Send MAIL first\r\n");

	mail(f, "MAIL FROM:<s@example.net> BODY=7BIT");
	assert_string_equal(cmd(f, "RSET"), "250 2.0.0 OK\r\n");
	mail(f, "mail from:<s@example.net> body=8bitmime size=12");
	feed(f, "RCPT TO:<a@example.org>");
	assert_int_equal(lmtp_session_request(f->s)->declared_size, 12);
	lmtp_session_rcpt_done(f->s, LMTP_RCPT_OK);
	take(f);
	assert_string_equal(cmd(f, "RSET"), "250 2.0.0 OK\r\n");
	/* without SIZE= the declared size is 0 */
	mail(f, "MAIL FROM:<s@example.net>");
	feed(f, "RCPT TO:<a@example.org>");
	assert_int_equal(lmtp_session_request(f->s)->declared_size, 0);
	lmtp_session_rcpt_done(f->s, LMTP_RCPT_OK);
	take(f);
}

static void test_size_without_limit(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<s@example.net> SIZE=18446744073709551615");
	feed(f, "RCPT TO:<a@example.org>");
	assert_true(lmtp_session_request(f->s)->declared_size == UINT64_MAX);
	lmtp_session_rcpt_done(f->s, LMTP_RCPT_OK);
	take(f);
}

/* ---- recipients and per-recipient replies -------------------------------------------------- */

static void test_rcpt_results(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<s@example.net>");
	assert_string_equal(rcpt(f, "a@example.org", LMTP_RCPT_OK),
	                    "250 2.1.5 <a@example.org> Recipient OK\r\n");
	assert_string_equal(rcpt(f, "b@example.org", LMTP_RCPT_UNKNOWN),
	                    "550 5.1.1 <b@example.org> User unknown\r\n");
	assert_string_equal(rcpt(f, "c@example.org", LMTP_RCPT_QUOTA),
	                    "552 5.2.2 <c@example.org> Mailbox quota exceeded\r\n");
	assert_string_equal(rcpt(f, "d@example.org", LMTP_RCPT_QUOTA_TEMP),
	                    "452 4.2.2 <d@example.org> Mailbox full, try again later\r\n");
	assert_string_equal(rcpt(f, "e@example.org", LMTP_RCPT_TEMPFAIL),
	                    "451 4.3.0 <e@example.org> Temporary failure, try again later\r\n");
	assert_string_equal(rcpt(f, "f@example.org", LMTP_RCPT_OK),
	                    "250 2.1.5 <f@example.org> Recipient OK\r\n");
	assert_string_equal(rcpt(f, "g@example.org", LMTP_RCPT_OK),
	                    "250 2.1.5 <g@example.org> Recipient OK\r\n");
	/* only the accepted ones are recipients, in RCPT order */
	assert_string_equal(lmtp_session_recipient(f->s, 0), "a@example.org");
	assert_string_equal(lmtp_session_recipient(f->s, 1), "f@example.org");
	assert_string_equal(lmtp_session_recipient(f->s, 2), "g@example.org");
	assert_null(lmtp_session_recipient(f->s, 3));
	data(f, 3);
	text(f, (const char *const[]){"Subject: mixed", "", "body", NULL});
	/* RFC 2033 §4.2: one reply per accepted recipient, in RCPT order */
	const enum lmtp_store_result results[] = {LMTP_STORED, LMTP_STORE_QUOTA,
	                                          LMTP_STORE_NOSPACE};
	assert_string_equal(finish(f, 3, results),
	                    "250 2.0.0 <a@example.org> Saved\r\n"
	                    "552 5.2.2 <f@example.org> Mailbox quota exceeded\r\n"
	                    "452 4.3.1 <g@example.org> Insufficient system storage\r\n");
	assert_true(body_is(f, "Subject: mixed\r\n\r\nbody\r\n"));
	/* back to "after LHLO": no transaction */
	assert_null(lmtp_session_recipient(f->s, 0));
	assert_string_equal(cmd(f, "RCPT TO:<a@example.org>"), "503 5.5.1 Send MAIL first\r\n");
	assert_string_equal(cmd(f, "DATA"), "503 5.5.1 Send MAIL and RCPT first\r\n");
	mail(f, "MAIL FROM:<next@example.net>");
}

static void test_every_store_result(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<s@example.net>");
	const char *const names[] = {"r1@x", "r2@x", "r3@x", "r4@x", "r5@x", "r6@x"};
	for (size_t i = 0; i < 6; i++)
		rcpt(f, names[i], LMTP_RCPT_OK);
	data(f, 6);
	text(f, (const char *const[]){"Subject: all", "", "x", NULL});
	const enum lmtp_store_result results[] = {LMTP_STORE_PERM,     LMTP_STORE_QUOTA_TEMP,
	                                          LMTP_STORE_TEMPFAIL, LMTP_STORE_NOSPACE,
	                                          LMTP_STORE_QUOTA,    LMTP_STORED};
	assert_string_equal(finish(f, 6, results),
	                    "550 5.2.0 <r1@x> Mailbox cannot be created\r\n"
	                    "452 4.2.2 <r2@x> Mailbox full, try again later\r\n"
	                    "451 4.3.0 <r3@x> Temporary failure, try again later\r\n"
	                    "452 4.3.1 <r4@x> Insufficient system storage\r\n"
	                    "552 5.2.2 <r5@x> Mailbox quota exceeded\r\n"
	                    "250 2.0.0 <r6@x> Saved\r\n");
}

static void test_too_many_recipients(void **state)
{
	struct fx *f = *state;
	f->cfg.max_recipients = 2;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<s@example.net>");
	rcpt(f, "x@example.org", LMTP_RCPT_UNKNOWN); /* refused ones take no place */
	rcpt(f, "a@example.org", LMTP_RCPT_OK);
	rcpt(f, "b@example.org", LMTP_RCPT_OK);
	assert_string_equal(cmd(f, "RCPT TO:<c@example.org>"),
	                    "452 4.5.3 Too many recipients (at most 2 per message)\r\n");
	assert_int_equal(req(f), LMTP_REQ_NONE); /* no lookup asked for */
	assert_string_equal(cmd(f, "RCPT TO:<d@example.org>"),
	                    "452 4.5.3 Too many recipients (at most 2 per message)\r\n");
	data(f, 2);
	text(f, (const char *const[]){"Subject: two", "", "x", NULL});
	const enum lmtp_store_result ok[] = {LMTP_STORED, LMTP_STORED};
	assert_string_equal(
	    finish(f, 2, ok),
	    "250 2.0.0 <a@example.org> Saved\r\n250 2.0.0 <b@example.org> Saved\r\n");
	/* per transaction */
	mail(f, "MAIL FROM:<s@example.net>");
	rcpt(f, "c@example.org", LMTP_RCPT_OK);
	rcpt(f, "d@example.org", LMTP_RCPT_OK);
}

static void test_input_waits_while_a_request_is_open(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<s@example.net>");
	feed(f, "RCPT TO:<a@example.org>");
	assert_int_equal(req(f), LMTP_REQ_RCPT);
	/* the caller must not feed now; if it does, nothing happens */
	assert_string_equal(cmd(f, "NOOP"), "");
	assert_int_equal(req(f), LMTP_REQ_RCPT);
	/* answers that do not match the open request are ignored */
	lmtp_session_data_ready(f->s);
	lmtp_session_data_done(f->s, NULL);
	assert_int_equal(req(f), LMTP_REQ_RCPT);
	assert_string_equal(take(f), "");
	lmtp_session_rcpt_done(f->s, LMTP_RCPT_OK);
	assert_string_equal(take(f), "250 2.1.5 <a@example.org> Recipient OK\r\n");
	lmtp_session_rcpt_done(f->s, LMTP_RCPT_OK); /* a second answer is ignored */
	assert_string_equal(take(f), "");
	assert_null(lmtp_session_recipient(f->s, 1));
}

static void test_pipelined_replies_come_in_order(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	/* the caller feeds a pipelined group line by line, answering lookups as they come;
	 * the replies pile up in order until it sends them */
	feed(f, "MAIL FROM:<p@example.net> SIZE=100");
	feed(f, "RCPT TO:<a@example.org>");
	lmtp_session_rcpt_done(f->s, LMTP_RCPT_OK);
	feed(f, "RCPT TO:<nobody@example.org>");
	lmtp_session_rcpt_done(f->s, LMTP_RCPT_UNKNOWN);
	feed(f, "RCPT TO:<b@example.org>");
	lmtp_session_rcpt_done(f->s, LMTP_RCPT_OK);
	feed(f, "DATA");
	assert_int_equal(req(f), LMTP_REQ_DATA_BEGIN);
	lmtp_session_data_ready(f->s);
	assert_string_equal(take(f), "250 2.1.0 Sender OK\r\n"
	                             "250 2.1.5 <a@example.org> Recipient OK\r\n"
	                             "550 5.1.1 <nobody@example.org> User unknown\r\n"
	                             "250 2.1.5 <b@example.org> Recipient OK\r\n" GO_AHEAD);
	text(f, (const char *const[]){"Subject: p", "", "x", NULL});
	feed(f, ".");
	const enum lmtp_store_result ok[] = {LMTP_STORED, LMTP_STORED};
	lmtp_session_data_done(f->s, ok);
	feed(f, "RSET");
	feed(f, "MAIL FROM:<>");
	feed(f, "NOOP");
	assert_string_equal(take(f), "250 2.0.0 <a@example.org> Saved\r\n"
	                             "250 2.0.0 <b@example.org> Saved\r\n"
	                             "250 2.0.0 OK\r\n"
	                             "250 2.1.0 Sender OK\r\n"
	                             "250 2.0.0 OK\r\n");
}

/* ---- the message text -------------------------------------------------------------------- */

static void test_dot_unstuffing_and_end_of_data(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<s@example.net>");
	rcpt(f, "a@example.org", LMTP_RCPT_OK);
	data(f, 1);
	text(f, (const char *const[]){"Subject: dots", "", "..", "..x", "...", ". ", "x.", "",
	                              "\xe2\x82\xac 8-bit\t", NULL});
	const enum lmtp_store_result ok[] = {LMTP_STORED};
	assert_string_equal(finish(f, 1, ok), "250 2.0.0 <a@example.org> Saved\r\n");
	assert_true(body_is(f, "Subject: dots\r\n\r\n.\r\n.x\r\n..\r\n \r\nx.\r\n\r\n"
	                       "\xe2\x82\xac 8-bit\t\r\n"));
}

static void test_bare_lf_and_cr_are_text(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<s@example.net>");
	rcpt(f, "a@example.org", LMTP_RCPT_OK);
	data(f, 1);
	/* the caller splits at CRLF only: these are single lines; none ends the data */
	text(f, (const char *const[]){"Subject: smuggle", "", "one\n.\nMAIL FROM:<evil@x>",
	                              ".\nRCPT TO:<x@y>", "two\n.", "three\r.", "\n", NULL});
	assert_true(lmtp_session_in_data(f->s));
	const enum lmtp_store_result ok[] = {LMTP_STORED};
	assert_string_equal(finish(f, 1, ok), "250 2.0.0 <a@example.org> Saved\r\n");
	assert_true(body_is(f, "Subject: smuggle\r\n\r\none\n.\nMAIL FROM:<evil@x>\r\n"
	                       "\nRCPT TO:<x@y>\r\ntwo\n.\r\nthree\r.\r\n\n\r\n"));
	/* NUL bytes in the text are kept */
	mail(f, "MAIL FROM:<s@example.net>");
	rcpt(f, "a@example.org", LMTP_RCPT_OK);
	data(f, 1);
	lmtp_session_input(f->s, "a\0b", 3);
	finish(f, 1, ok);
	assert_int_equal(f->body.len, 5);
	assert_memory_equal(f->body.data, "a\0b\r\n", 5);
}

static void test_return_path_lines_are_dropped(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<real@example.net>");
	rcpt(f, "a@example.org", LMTP_RCPT_OK);
	data(f, 1);
	text(f, (const char *const[]){
	            "Return-Path: <forged@evil.example>", "Received: from a", "\tby b",
	            "RETURN-PATH:", " <folded@evil.example>", "\t(more)", "X-Return-Path: kept",
	            "Return-Path-Like: kept", "return-path:<x@evil.example>", "Subject: rp",
	            " continued subject", "", "Return-Path: <in-body@example.net>",
	            " indented body line", NULL});
	const enum lmtp_store_result ok[] = {LMTP_STORED};
	assert_string_equal(finish(f, 1, ok), "250 2.0.0 <a@example.org> Saved\r\n");
	assert_true(body_is(f, "Received: from a\r\n\tby b\r\n"
	                       "X-Return-Path: kept\r\nReturn-Path-Like: kept\r\n"
	                       "Subject: rp\r\n continued subject\r\n\r\n"
	                       "Return-Path: <in-body@example.net>\r\n indented body line\r\n"));
	assert_string_equal(lmtp_session_sender(f->s), "");

	/* each message starts in the headers again */
	mail(f, "MAIL FROM:<real@example.net>");
	rcpt(f, "a@example.org", LMTP_RCPT_OK);
	data(f, 1);
	text(f, (const char *const[]){"Return-Path: <again@evil.example>", "Subject: 2", "", "b",
	                              NULL});
	finish(f, 1, ok);
	assert_true(body_is(f, "Subject: 2\r\n\r\nb\r\n"));

	/* a message without headers: its first line is empty, the rest is body */
	mail(f, "MAIL FROM:<real@example.net>");
	rcpt(f, "a@example.org", LMTP_RCPT_OK);
	data(f, 1);
	text(f, (const char *const[]){"", "Return-Path: <body>", NULL});
	finish(f, 1, ok);
	assert_true(body_is(f, "\r\nReturn-Path: <body>\r\n"));
}

static void test_mail_loop_detection(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<s@example.net>");
	rcpt(f, "a@example.org", LMTP_RCPT_OK);
	rcpt(f, "b@example.org", LMTP_RCPT_OK);
	rcpt(f, "c@example.org", LMTP_RCPT_OK);
	rcpt(f, "d@example.org", LMTP_RCPT_OK);
	data(f, 4);
	assert_false(lmtp_session_recipient_loops(f->s, 0));
	text(f, (const char *const[]){
	            "Delivered-To: other@example.org", "Delivered-To: <b@example.org>",
	            "delivered-to:d@example.org  ", "X-Delivered-To: a@example.org",
	            "Subject: loop", "", "Delivered-To: c@example.org", NULL});
	assert_false(lmtp_session_recipient_loops(f->s, 0));
	assert_true(lmtp_session_recipient_loops(f->s, 1));
	assert_false(lmtp_session_recipient_loops(f->s, 2));
	assert_true(lmtp_session_recipient_loops(f->s, 3));
	assert_false(lmtp_session_recipient_loops(f->s, 4));
	/* the message text is unchanged: Delivered-To stays */
	const enum lmtp_store_result ok[] = {LMTP_STORED, LMTP_STORED, LMTP_STORED, LMTP_STORED};
	assert_string_equal(
	    finish(f, 4, ok),
	    "250 2.0.0 <a@example.org> Saved\r\n"
	    "554 5.4.6 <b@example.org> Mail loop: message already delivered to it\r\n"
	    "250 2.0.0 <c@example.org> Saved\r\n"
	    "554 5.4.6 <d@example.org> Mail loop: message already delivered to it\r\n");
	assert_true(body_is(f,
	                    "Delivered-To: other@example.org\r\nDelivered-To: <b@example.org>\r\n"
	                    "delivered-to:d@example.org  \r\nX-Delivered-To: a@example.org\r\n"
	                    "Subject: loop\r\n\r\nDelivered-To: c@example.org\r\n"));
	/* the next transaction starts clean */
	mail(f, "MAIL FROM:<s@example.net>");
	rcpt(f, "b@example.org", LMTP_RCPT_OK);
	data(f, 1);
	text(f, (const char *const[]){"Subject: fine", "", "x", NULL});
	assert_false(lmtp_session_recipient_loops(f->s, 0));
	assert_string_equal(finish(f, 1, ok), "250 2.0.0 <b@example.org> Saved\r\n");
}

static void test_message_too_big(void **state)
{
	struct fx *f = *state;
	f->cfg.max_message_size = 20; /* octets with CRLF, after unstuffing */
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<s@example.net>");
	rcpt(f, "a@example.org", LMTP_RCPT_OK);
	data(f, 1);
	/* 18 + CRLF = 20: exactly the limit (the stuffing dot does not count) */
	text(f, (const char *const[]){"..23456789012345678", NULL});
	assert_false(lmtp_session_discarding(f->s));
	const enum lmtp_store_result ok[] = {LMTP_STORED, LMTP_STORED};
	assert_string_equal(finish(f, 1, ok), "250 2.0.0 <a@example.org> Saved\r\n");
	assert_true(body_is(f, ".23456789012345678\r\n"));

	mail(f, "MAIL FROM:<s@example.net>");
	rcpt(f, "a@example.org", LMTP_RCPT_OK);
	rcpt(f, "b@example.org", LMTP_RCPT_OK);
	data(f, 2);
	text(f, (const char *const[]){"123456789012345678", NULL});
	assert_false(lmtp_session_discarding(f->s));
	text(f, (const char *const[]){"", "more", "and more", NULL});
	assert_true(lmtp_session_discarding(f->s));
	/* whatever the caller reports, every recipient gets 552 5.3.4 */
	assert_string_equal(finish(f, 2, ok),
	                    "552 5.3.4 <a@example.org> Message too big (at most 20 octets)\r\n"
	                    "552 5.3.4 <b@example.org> Message too big (at most 20 octets)\r\n");
	/* text past the limit is not handed out */
	assert_true(body_is(f, "123456789012345678\r\n"));
	/* the next message starts from zero */
	assert_false(lmtp_session_discarding(f->s));
	mail(f, "MAIL FROM:<s@example.net>");
	rcpt(f, "a@example.org", LMTP_RCPT_OK);
	data(f, 1);
	text(f, (const char *const[]){"small", NULL});
	assert_false(lmtp_session_discarding(f->s));
	assert_string_equal(finish(f, 1, ok), "250 2.0.0 <a@example.org> Saved\r\n");
}

static void test_overlong_lines(void **state)
{
	struct fx *f = *state;
	start(f);
	assert_int_equal(lmtp_session_line_limit(f->s), LMTP_MAX_COMMAND_LINE);
	lmtp_session_input_overlong(f->s);
	assert_string_equal(take(f), "500 5.5.2 Line too long (at most 512 octets)\r\n");
	lhlo(f);
	lmtp_session_input_overlong(f->s);
	assert_string_equal(take(f), "500 5.5.2 Line too long (at most 512 octets)\r\n");
	mail(f, "MAIL FROM:<s@example.net>");
	rcpt(f, "a@example.org", LMTP_RCPT_OK);
	rcpt(f, "b@example.org", LMTP_RCPT_OK);
	data(f, 2);
	assert_int_equal(lmtp_session_line_limit(f->s), LMTP_MAX_DATA_LINE);
	text(f, (const char *const[]){"Subject: long", "", "before", NULL});
	lmtp_session_input_overlong(f->s);
	assert_string_equal(take(f), ""); /* no reply until the end of the data */
	assert_true(lmtp_session_discarding(f->s));
	assert_true(lmtp_session_in_data(f->s));
	text(f, (const char *const[]){"after", NULL});
	const enum lmtp_store_result ok[] = {LMTP_STORED, LMTP_STORED};
	char expected[256];
	snprintf(expected, sizeof(expected),
	         "554 5.6.0 <a@example.org> Message has a line longer than %d octets\r\n"
	         "554 5.6.0 <b@example.org> Message has a line longer than %d octets\r\n",
	         LMTP_MAX_DATA_LINE, LMTP_MAX_DATA_LINE);
	assert_string_equal(finish(f, 2, ok), expected);
	assert_false(lmtp_session_discarding(f->s));
	assert_int_equal(lmtp_session_line_limit(f->s), LMTP_MAX_COMMAND_LINE);
	assert_string_equal(cmd(f, "NOOP"), "250 2.0.0 OK\r\n");
}

/* ---- error limits and shutdown ----------------------------------------------------------- */

static void test_too_many_bad_commands(void **state)
{
	struct fx *f = *state;
	f->cfg.max_bad_commands = 3;
	start(f);
	lhlo(f);
	assert_string_equal(cmd(f, "FOO"), "500 5.5.2 Unrecognized command\r\n");
	/* refused parameters are not command errors */
	assert_string_equal(cmd(f, "MAIL FROM:<s@x> FOO=1"),
	                    "555 5.5.4 Unsupported parameter FOO=1\r\n");
	assert_string_equal(cmd(f, "RCPT TO:<a@x>"), "503 5.5.1 Send MAIL first\r\n");
	assert_int_equal(req(f), LMTP_REQ_NONE);
	assert_string_equal(cmd(f, "HELO x"), "421 4.7.0 This is LMTP: use LHLO; too many errors, "
	                                      "closing connection\r\n");
	assert_int_equal(req(f), LMTP_REQ_CLOSE);
	assert_string_equal(cmd(f, "NOOP"), "");
}

static void test_too_many_bad_commands_before_lhlo(void **state)
{
	struct fx *f = *state;
	f->cfg.max_bad_commands = 2;
	start(f);
	assert_string_equal(cmd(f, "MAIL FROM:<a@b>"), "503 5.5.1 Send LHLO first\r\n");
	lmtp_session_input_overlong(f->s);
	assert_string_equal(take(f),
	                    "421 4.7.0 Line too long (at most 512 octets); too many errors, "
	                    "closing connection\r\n");
	assert_int_equal(req(f), LMTP_REQ_CLOSE);
}

static void test_shutdown_in_data(void **state)
{
	struct fx *f = *state;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<s@example.net>");
	rcpt(f, "a@example.org", LMTP_RCPT_OK);
	data(f, 1);
	text(f, (const char *const[]){"Subject: cut", "", "text", NULL});
	lmtp_session_shutdown(f->s);
	/* RFC 5321 §3.8: 421, and no recipient acknowledged */
	assert_string_equal(take(f), "421 4.3.2 Service shutting down, try again later\r\n");
	assert_int_equal(req(f), LMTP_REQ_CLOSE);
	assert_false(lmtp_session_in_data(f->s));
	assert_string_equal(cmd(f, "."), "");
	assert_int_equal(req(f), LMTP_REQ_CLOSE);
	lmtp_session_shutdown(f->s);
	assert_string_equal(take(f), ""); /* once */
}

static void test_shutdown_at_other_times(void **state)
{
	struct fx *f = *state;
	start(f);
	f->after_lhlo = true; /* the 421 carries a code even before LHLO */
	lmtp_session_shutdown(f->s);
	assert_string_equal(take(f), "421 4.3.2 Service shutting down, try again later\r\n");
	assert_int_equal(req(f), LMTP_REQ_CLOSE);
	lmtp_session_free(f->s);

	/* during a lookup: the open request becomes CLOSE, a late answer is ignored */
	f->after_lhlo = false;
	f->s = NULL;
	start(f);
	lhlo(f);
	mail(f, "MAIL FROM:<s@example.net>");
	feed(f, "RCPT TO:<a@example.org>");
	assert_int_equal(req(f), LMTP_REQ_RCPT);
	lmtp_session_shutdown(f->s);
	assert_string_equal(take(f), "421 4.3.2 Service shutting down, try again later\r\n");
	assert_int_equal(req(f), LMTP_REQ_CLOSE);
	lmtp_session_rcpt_done(f->s, LMTP_RCPT_OK);
	assert_string_equal(take(f), "");
	assert_int_equal(req(f), LMTP_REQ_CLOSE);
}

static void test_enhanced_codes_everywhere(void **state)
{
	struct fx *f = *state;
	f->cfg.max_message_size = 100;
	f->cfg.max_recipients = 1;
	f->cfg.max_bad_commands = 1000;
	start(f);
	lhlo(f); /* from here on take() checks every reply line */
	static const char *const script[] = {
	    "NOOP",
	    "VRFY x",
	    "EXPN x",
	    "HELP",
	    "HELO x",
	    "RCPT TO:<a@b>",
	    "DATA",
	    "MAIL FROM:<x",
	    "MAIL FROM:<a@b> SIZE=1000",
	    "MAIL FROM:<a@b> SIZE=x",
	    "MAIL FROM:<a@b> X=Y",
	    "MAIL FROM:<a@b>",
	    "MAIL FROM:<a@b>",
	    "RCPT TO:<>",
	    "RCPT TO:<a@b> X=Y",
	    "DATA",
	    "RSET",
	};
	for (size_t i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
		const char *out = cmd(f, script[i]);
		if (out[0] == '\0')
			fail_msg("no reply to %s", script[i]);
	}
	mail(f, "MAIL FROM:<a@b>");
	rcpt(f, "r1@b", LMTP_RCPT_TEMPFAIL);
	rcpt(f, "r2@b", LMTP_RCPT_QUOTA);
	rcpt(f, "r3@b", LMTP_RCPT_QUOTA_TEMP);
	rcpt(f, "r4@b", LMTP_RCPT_UNKNOWN);
	rcpt(f, "r5@b", LMTP_RCPT_OK);
	cmd(f, "RCPT TO:<r6@b>"); /* too many */
	data(f, 1);
	feed(f, "x");
	lmtp_session_input_overlong(f->s);
	take(f);
	const enum lmtp_store_result ok[] = {LMTP_STORED};
	finish(f, 1, ok);
	cmd(f, "QUIT");
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_greeting),
	    T(test_lhlo_capabilities_with_size),
	    T(test_lhlo_capabilities_without_limit),
	    T(test_lhlo_needs_a_domain),
	    T(test_helo_and_ehlo_are_refused),
	    T(test_sequence_before_lhlo),
	    T(test_sequence_after_lhlo),
	    T(test_unknown_and_bad_commands),
	    T(test_quit),
	    T(test_rset_and_second_lhlo_reset_the_transaction),
	    T(test_mail_addresses),
	    T(test_quoted_local_parts),
	    T(test_quoted_local_parts_are_kept_for_headers),
	    T(test_rcpt_addresses),
	    T(test_address_length_limit),
	    T(test_size_and_body_parameters),
	    T(test_size_without_limit),
	    T(test_rcpt_results),
	    T(test_every_store_result),
	    T(test_too_many_recipients),
	    T(test_input_waits_while_a_request_is_open),
	    T(test_pipelined_replies_come_in_order),
	    T(test_dot_unstuffing_and_end_of_data),
	    T(test_bare_lf_and_cr_are_text),
	    T(test_return_path_lines_are_dropped),
	    T(test_mail_loop_detection),
	    T(test_message_too_big),
	    T(test_overlong_lines),
	    T(test_too_many_bad_commands),
	    T(test_too_many_bad_commands_before_lhlo),
	    T(test_shutdown_in_data),
	    T(test_shutdown_at_other_times),
	    T(test_enhanced_codes_everywhere),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
