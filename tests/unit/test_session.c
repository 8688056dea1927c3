/* test_session.c - unit tests for the sans-I/O POP3 session core (src/pop3/session.c): states,
 * every command, USER/PASS/APOP/AUTH, CAPA, listings, RETR/TOP, UPDATE, limits and pipelining. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base64.h"
#include "common/bounds.h"
#include "common/buf.h"
#include "pop3/session.h"

#define UIDL_SIZE   32
#define APOP_TS     "<1896.697170952@dbc.mtview.ca.us>"
#define APOP_DIGEST "c4c9334bac560ecc979e58001b3e22fb"
/* base64("\0test\0secret") */
#define PLAIN_TEST_SECRET "AHRlc3QAc2VjcmV0"

/* ---- fixture: settings, a fake maildrop and the session -------------------------------------- */

struct fx {
	struct pop3_settings cfg;
	struct pop3_conn_info info;
	struct pop3_session *s;
	size_t count;
	uint64_t *sizes;
	char (*uidls)[UIDL_SIZE];
	struct pop3_maildrop md;
	char *text;            /* the last output taken */
	struct buf transcript; /* run_pipeline() */
	struct buf scratch;    /* b64() */
};

/* Maildrop callbacks called with a bad index (checked in teardown; no cmocka assert here, as
 * the callbacks also run in a forked child). */
static unsigned index_errors;

static uint64_t fake_size(const void *ctx, size_t i)
{
	const struct fx *f = ctx;
	if (i >= f->count) {
		index_errors++;
		return 0;
	}
	return f->sizes[i];
}

static const char *fake_uidl(const void *ctx, size_t i)
{
	const struct fx *f = ctx;
	if (i >= f->count) {
		index_errors++;
		return "bad-index";
	}
	return f->uidls[i];
}

/* Messages 1..count; message n is 90 + 10n octets with UIDL "uid-n": 100, 110, 120, ... */
static void fx_set_count(struct fx *f, size_t count)
{
	free(f->sizes);
	free(f->uidls);
	f->count = count;
	f->sizes = calloc(count ? count : 1, sizeof(*f->sizes));
	f->uidls = calloc(count ? count : 1, sizeof(*f->uidls));
	assert_non_null(f->sizes);
	assert_non_null(f->uidls);
	for (size_t i = 0; i < count; i++) {
		f->sizes[i] = 100 + 10 * (uint64_t)i;
		snprintf(f->uidls[i], UIDL_SIZE, "uid-%zu", i + 1);
	}
	f->md = (struct pop3_maildrop){ count, fake_size, fake_uidl, f };
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	f->cfg = (struct pop3_settings){
		.greeting = "Pigeon POP3 ready",
		.implementation = "",
		.login_delay = 0,
		.expire = -1,
		.max_bad_commands = 1000,
		.max_auth_failures = 3,
		.apop = false,
		.stls = false,
		/* every mechanism but CRAM-MD5 (off unless configured) */
		.mechanisms = ~0u & ~(1u << SASL_MECH_CRAM_MD5),
	};
	f->info = (struct pop3_conn_info){ .secure = false, .plaintext_ok = true };
	f->transcript = (struct buf)BUF_INIT;
	f->scratch = (struct buf)BUF_INIT;
	index_errors = 0;
	*state = f;
	fx_set_count(f, 3);
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	pop3_session_free(f->s);
	free(f->sizes);
	free(f->uidls);
	free(f->text);
	buf_free(&f->transcript);
	buf_free(&f->scratch);
	free(f);
	if (index_errors != 0) {
		print_error("maildrop callbacks called with an index out of range %u times\n",
			    index_errors);
		return -1;
	}
	return 0;
}

/* ---- output checks --------------------------------------------------------------------------- */

/* Every line ends in CRLF: no bare CR, no bare LF, no NUL, nothing after the last CRLF. */
static void check_crlf(const char *data, size_t len)
{
	if (len == 0)
		return;
	if (memchr(data, '\0', len) != NULL)
		fail_msg("NUL in output");
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\r' && (i + 1 == len || data[i + 1] != '\n'))
			fail_msg("bare CR at offset %zu of \"%.*s\"", i, (int)len, data);
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r'))
			fail_msg("bare LF at offset %zu of \"%.*s\"", i, (int)len, data);
	}
	if (len < 2 || data[len - 2] != '\r' || data[len - 1] != '\n')
		fail_msg("output does not end in CRLF: \"%.*s\"", (int)len, data);
}

/* Take what the session wrote (a NUL-terminated copy, valid until the next take). */
static const char *take(struct fx *f)
{
	struct buf *out = pop3_session_output(f->s);
	free(f->text);
	f->text = malloc(out->len + 1);
	assert_non_null(f->text);
	if (out->len > 0)
		memcpy(f->text, out->data, out->len);
	f->text[out->len] = '\0';
	check_crlf(out->data, out->len);
	buf_clear(out);
	return f->text;
}

static const char *fx_start(struct fx *f)
{
	f->s = pop3_session_new(&f->cfg, &f->info);
	assert_non_null(f->s);
	return take(f);
}

/* Feed one line as the I/O layer does: the bytes sit in a buffer with the CRLF after them. */
static const char *in_n(struct fx *f, const char *line, size_t len)
{
	char *copy = malloc(len + 2);
	assert_non_null(copy);
	memcpy(copy, line, len);
	memcpy(copy + len, "\r\n", 2);
	pop3_session_input(f->s, copy, len);
	free(copy);
	return take(f);
}

static const char *in(struct fx *f, const char *line)
{
	return in_n(f, line, strlen(line));
}

static const struct pop3_request *req(const struct fx *f)
{
	return pop3_session_request(f->s);
}

static void assert_ready(const struct fx *f, enum pop3_state st)
{
	assert_int_equal(req(f)->kind, POP3_REQ_NONE);
	assert_int_equal(pop3_session_state(f->s), st);
}

static void assert_prefix(const char *text, const char *prefix)
{
	if (strncmp(text, prefix, strlen(prefix)) != 0)
		fail_msg("expected a reply starting with \"%s\", got \"%s\"", prefix, text);
}

static size_t count_lines(const char *text)
{
	size_t n = 0;
	for (const char *p = text; (p = strstr(p, "\r\n")) != NULL; p += 2)
		n++;
	return n;
}

static void assert_single_line(const char *text)
{
	if (count_lines(text) != 1)
		fail_msg("expected exactly one line, got \"%s\"", text);
}

static void assert_ok(const char *text)
{
	assert_prefix(text, "+OK ");
	assert_single_line(text);
}

static void assert_err(const char *text)
{
	assert_prefix(text, "-ERR ");
	assert_single_line(text);
}

static void assert_contains(const char *text, const char *needle)
{
	if (strstr(text, needle) == NULL)
		fail_msg("expected \"%s\" in \"%s\"", needle, text);
}

/* Is there a line exactly equal to want? */
static bool has_line(const char *text, const char *want)
{
	size_t wlen = strlen(want);
	for (const char *p = text; *p != '\0';) {
		const char *eol = strstr(p, "\r\n");
		if (eol == NULL)
			break;
		if ((size_t)(eol - p) == wlen && memcmp(p, want, wlen) == 0)
			return true;
		p = eol + 2;
	}
	return false;
}

/* Does a "SASL ..." line name the mechanism (as a whole word)? */
static bool sasl_lists(const char *capa, const char *mech)
{
	for (const char *p = capa; *p != '\0';) {
		const char *eol = strstr(p, "\r\n");
		if (eol == NULL)
			break;
		if (strncmp(p, "SASL ", 5) == 0) {
			size_t mlen = strlen(mech);
			for (const char *w = p + 5; w < eol;) {
				const char *sp = memchr(w, ' ', (size_t)(eol - w));
				const char *end = sp ? sp : eol;
				if ((size_t)(end - w) == mlen && memcmp(w, mech, mlen) == 0)
					return true;
				w = end + 1;
			}
		}
		p = eol + 2;
	}
	return false;
}

static bool has_line_starting(const char *text, const char *prefix)
{
	size_t plen = strlen(prefix);
	if (strncmp(text, prefix, plen) == 0)
		return true;
	for (const char *p = text; (p = strstr(p, "\r\n")) != NULL;) {
		p += 2;
		if (strncmp(p, prefix, plen) == 0)
			return true;
	}
	return false;
}

/* A well-formed CAPA answer: "+OK ..." first, "." last. */
static void assert_capa(const char *text)
{
	assert_prefix(text, "+OK ");
	size_t len = strlen(text);
	if (len < 5 || strcmp(text + len - 5, "\r\n.\r\n") != 0)
		fail_msg("CAPA answer not terminated by \".\": \"%s\"", text);
}

/* base64 of the given bytes (valid until the next call). */
static const char *b64(struct fx *f, const void *data, size_t len)
{
	buf_clear(&f->scratch);
	base64_encode(data, len, &f->scratch);
	buf_append_byte(&f->scratch, '\0');
	return f->scratch.data;
}

/* ---- common steps ---------------------------------------------------------------------------- */

static void login_as(struct fx *f, const char *user)
{
	char line[300];
	snprintf(line, sizeof(line), "USER %s", user);
	assert_ok(in(f, line));
	assert_string_equal(in(f, "PASS secret"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);
	pop3_session_login_done(f->s, POP3_LOGIN_OK, &f->md);
	assert_ok(take(f));
	assert_ready(f, POP3_STATE_TRANSACTION);
}

/* Start the session and log in as alice. */
static void start_and_login(struct fx *f)
{
	assert_prefix(fx_start(f), "+OK ");
	login_as(f, "alice");
}

/* Complete a pending RETRIEVE: begin -> "+OK ...", end -> ".". */
static void complete_retrieve(struct fx *f, uint64_t octets)
{
	assert_int_equal(req(f)->kind, POP3_REQ_RETRIEVE);
	pop3_session_retrieve_begin(f->s, true);
	assert_ok(take(f));
	assert_int_equal(req(f)->kind, POP3_REQ_RETRIEVE);
	pop3_session_retrieve_end(f->s, true, octets);
	assert_string_equal(take(f), ".\r\n");
	assert_ready(f, POP3_STATE_TRANSACTION);
}

/* Feed one line and settle every request it causes the way the I/O layer would (login
 * succeeds, messages open and are read whole, commits succeed); returns all output. */
static const char *converse(struct fx *f, const char *line, enum pop3_login_result login)
{
	buf_clear(&f->transcript);
	buf_append_str(&f->transcript, in(f, line));
	for (int guard = 0; guard < 100000; guard++) {
		const struct pop3_request *r = req(f);
		switch (r->kind) {
		case POP3_REQ_NONE:
		case POP3_REQ_CLOSE:
			buf_append_byte(&f->transcript, '\0');
			return f->transcript.data;
		case POP3_REQ_LOGIN:
			pop3_session_login_done(f->s, login, &f->md);
			break;
		case POP3_REQ_RETRIEVE:
			pop3_session_retrieve_begin(f->s, true);
			buf_append_str(&f->transcript, take(f));
			pop3_session_retrieve_end(f->s, true, fake_size(f, r->msg));
			break;
		case POP3_REQ_CONTINUE:
			pop3_session_continue(f->s);
			break;
		case POP3_REQ_COMMIT:
			pop3_session_commit_done(f->s, 0);
			break;
		case POP3_REQ_SASL_LOOKUP: {
			struct scram_record rec = {.iterations = 4096, .salt_len = 1};
			pop3_session_sasl_lookup_done(f->s, &rec);
			break;
		}
		case POP3_REQ_STARTTLS:
			pop3_session_tls_done(f->s, true, NULL);
			break;
		}
		buf_append_str(&f->transcript, take(f));
	}
	fail_msg("request never settles");
	return NULL;
}

/* ---- greeting -------------------------------------------------------------------------------- */

static void test_greeting_is_one_ok_line(void **state)
{
	struct fx *f = *state;
	const char *g = fx_start(f);
	assert_string_equal(g, "+OK Pigeon POP3 ready\r\n");
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	assert_null(pop3_session_apop_timestamp(f->s));
}

static void test_greeting_carries_apop_timestamp_when_apop_enabled(void **state)
{
	struct fx *f = *state;
	char ts[] = APOP_TS;
	f->cfg.apop = true;
	f->info.apop_timestamp = ts;
	const char *g = fx_start(f);
	/* The session keeps its own copy. */
	memset(ts, 'x', sizeof(ts) - 1);
	assert_prefix(g, "+OK ");
	assert_single_line(g);
	assert_contains(g, APOP_TS);
	assert_string_equal(pop3_session_apop_timestamp(f->s), APOP_TS);
}

static void test_greeting_has_no_timestamp_without_apop(void **state)
{
	struct fx *f = *state;
	f->cfg.apop = false;
	f->info.apop_timestamp = APOP_TS;
	const char *g = fx_start(f);
	assert_ok(g);
	assert_null(strchr(g, '<'));
	assert_null(pop3_session_apop_timestamp(f->s));
}

/* ---- commands in each state ------------------------------------------------------------------ */

static void test_authorization_rejects_transaction_commands(void **state)
{
	struct fx *f = *state;
	static const char *const cmds[] = {
		"STAT", "LIST",    "LIST 1",   "RETR 1", "DELE 1", "NOOP",
		"RSET", "TOP 1 0", "TOP 1 99", "UIDL",   "UIDL 1",
	};
	fx_start(f);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		assert_err(in(f, cmds[i]));
		assert_ready(f, POP3_STATE_AUTHORIZATION);
	}
	/* Nothing happened to the maildrop: after login all three messages are there. */
	login_as(f, "alice");
	assert_string_equal(in(f, "STAT"), "+OK 3 330\r\n");
}

static void test_authorization_accepts_its_commands(void **state)
{
	struct fx *f = *state;
	f->cfg.apop = true;
	f->cfg.stls = true;
	f->cfg.max_auth_failures = 100;
	f->info.apop_timestamp = APOP_TS;
	fx_start(f);

	assert_capa(in(f, "CAPA"));
	assert_ready(f, POP3_STATE_AUTHORIZATION);

	assert_ok(in(f, "USER alice"));
	assert_string_equal(in(f, "PASS secret"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);
	pop3_session_login_done(f->s, POP3_LOGIN_FAILED, NULL);
	assert_prefix(take(f), "-ERR [AUTH]");
	assert_ready(f, POP3_STATE_AUTHORIZATION);

	assert_string_equal(in(f, "APOP mrose " APOP_DIGEST), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);
	pop3_session_login_done(f->s, POP3_LOGIN_FAILED, NULL);
	assert_prefix(take(f), "-ERR [AUTH]");

	assert_string_equal(in(f, "AUTH PLAIN"), "+ \r\n");
	assert_err(in(f, "*"));
	assert_ready(f, POP3_STATE_AUTHORIZATION);

	const char *list = in(f, "AUTH");
	assert_prefix(list, "+OK ");
	assert_true(has_line(list, "."));

	assert_ok(in(f, "STLS"));
	assert_int_equal(req(f)->kind, POP3_REQ_STARTTLS);
	pop3_session_tls_done(f->s, true, NULL);
	assert_string_equal(take(f), "");
	assert_ready(f, POP3_STATE_AUTHORIZATION);

	assert_ok(in(f, "QUIT"));
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
}

static void test_transaction_accepts_its_commands(void **state)
{
	struct fx *f = *state;
	start_and_login(f);

	assert_string_equal(in(f, "STAT"), "+OK 3 330\r\n");
	const char *list = in(f, "LIST");
	assert_prefix(list, "+OK ");
	assert_true(has_line(list, "."));
	assert_string_equal(in(f, "LIST 1"), "+OK 1 100\r\n");
	const char *uidl = in(f, "UIDL");
	assert_prefix(uidl, "+OK ");
	assert_true(has_line(uidl, "."));
	assert_string_equal(in(f, "UIDL 1"), "+OK 1 uid-1\r\n");
	/* NOOP's exact text is checked in test_noop_reply_is_ok_space_text. */
	const char *noop = in(f, "NOOP");
	assert_prefix(noop, "+OK");
	assert_single_line(noop);
	assert_ready(f, POP3_STATE_TRANSACTION);
	assert_ok(in(f, "RSET"));
	assert_ok(in(f, "DELE 1"));
	assert_string_equal(in(f, "RETR 2"), "");
	complete_retrieve(f, 110);
	assert_string_equal(in(f, "TOP 2 0"), "");
	complete_retrieve(f, 20);
	assert_capa(in(f, "CAPA"));
	assert_ready(f, POP3_STATE_TRANSACTION);

	assert_string_equal(in(f, "QUIT"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_COMMIT);
	assert_int_equal(pop3_session_state(f->s), POP3_STATE_UPDATE);
}

static void test_transaction_rejects_authorization_commands(void **state)
{
	struct fx *f = *state;
	static const char *const cmds[] = {
		"USER bob",
		"PASS secret",
		"PASS",
		"APOP bob " APOP_DIGEST,
		"AUTH PLAIN " PLAIN_TEST_SECRET,
		"AUTH PLAIN",
		"AUTH LOGIN",
		"AUTH",
		"STLS",
	};
	f->cfg.apop = true;
	f->cfg.stls = true;
	f->info.apop_timestamp = APOP_TS;
	start_and_login(f);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		assert_err(in(f, cmds[i]));
		assert_ready(f, POP3_STATE_TRANSACTION);
		assert_int_equal(pop3_session_line_limit(f->s), POP3_MAX_COMMAND_LINE);
	}
	assert_string_equal(pop3_session_user(f->s), "alice");
	assert_string_equal(in(f, "STAT"), "+OK 3 330\r\n");
}

static void test_unknown_commands_get_err_in_both_states(void **state)
{
	struct fx *f = *state;
	static const char *const cmds[] = {
		"LAST",    "last",   "XTND XMIT",   "RPOP alice", "FOO",   "STATS",
		"LISTX 1", "HELO x", "AUTHX PLAIN", "RETRIEVE 1", "X-FOO", "EHLO example.org",
	};
	fx_start(f);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		assert_err(in(f, cmds[i]));
		assert_ready(f, POP3_STATE_AUTHORIZATION);
	}
	login_as(f, "alice");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		assert_err(in(f, cmds[i]));
		assert_ready(f, POP3_STATE_TRANSACTION);
	}
}

static void test_keywords_are_case_insensitive(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_capa(in(f, "capa"));
	assert_ok(in(f, "user alice"));
	assert_string_equal(in(f, "pAsS secret"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);
	assert_string_equal(req(f)->user, "alice");
	pop3_session_login_done(f->s, POP3_LOGIN_OK, &f->md);
	assert_ok(take(f));
	assert_string_equal(in(f, "stat"), "+OK 3 330\r\n");
	assert_string_equal(in(f, "LiSt 2"), "+OK 2 110\r\n");
	assert_string_equal(in(f, "uidl 3"), "+OK 3 uid-3\r\n");
	assert_string_equal(in(f, "retr 1"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_RETRIEVE);
	complete_retrieve(f, 100);
	assert_string_equal(in(f, "Top 1 0"), "");
	complete_retrieve(f, 10);
	assert_ok(in(f, "dele 1"));
	assert_ok(in(f, "rset"));
	assert_string_equal(in(f, "quit"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_COMMIT);
}

static void test_auth_mechanism_names_are_case_insensitive(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_string_equal(in(f, "auth plain " PLAIN_TEST_SECRET), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);
	assert_string_equal(req(f)->user, "test");
	pop3_session_login_done(f->s, POP3_LOGIN_FAILED, NULL);
	take(f);
	assert_string_equal(in(f, "Auth Login"), "+ VXNlcm5hbWU6\r\n");
}

static void check_status_line(const char *line, const char *text)
{
	if (strncmp(text, "+OK ", 4) != 0 && strncmp(text, "-ERR ", 5) != 0 &&
	    strncmp(text, "+ ", 2) != 0)
		fail_msg("reply to \"%s\" does not start with \"+OK \" or \"-ERR \": \"%s\"", line,
			 text);
}

static void test_status_lines_start_with_ok_or_err_and_a_space(void **state)
{
	struct fx *f = *state;
	/* NOOP is left to test_noop_reply_is_ok_space_text. */
	static const char *const auth_cmds[] = {
		"CAPA",
		"AUTH",
		"AUTH FOO",
		"AUTH PLAIN",
		"*",
		"AUTH LOGIN",
		"dGVzdA==",
		"*",
		"USER",
		"USER alice",
		"PASS x",
		"PASS",
		"APOP a " APOP_DIGEST,
		"STLS",
		"STAT",
		"",
		"FOO",
		"LAST",
		"QUIT x",
	};
	static const char *const trans_cmds[] = {
		"STAT",   "LIST",   "LIST 1", "LIST 9",  "LIST x", "UIDL",    "UIDL 1",
		"UIDL 0", "RETR 1", "RETR 9", "TOP 1 2", "TOP 1",  "TOP 1 x", "DELE 1",
		"DELE 1", "RSET",   "CAPA",   "USER a",  "LAST",   "QUIT",
	};
	f->cfg.max_auth_failures = 100;
	fx_start(f);
	for (size_t i = 0; i < sizeof(auth_cmds) / sizeof(auth_cmds[0]); i++)
		check_status_line(auth_cmds[i], converse(f, auth_cmds[i], POP3_LOGIN_FAILED));
	pop3_session_input_overlong(f->s);
	check_status_line("(overlong)", take(f));
	check_status_line("USER", converse(f, "USER alice", POP3_LOGIN_OK));
	check_status_line("PASS", converse(f, "PASS secret", POP3_LOGIN_OK));
	assert_ready(f, POP3_STATE_TRANSACTION);
	for (size_t i = 0; i < sizeof(trans_cmds) / sizeof(trans_cmds[0]); i++)
		check_status_line(trans_cmds[i], converse(f, trans_cmds[i], POP3_LOGIN_OK));
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
}

static void test_noop_reply_is_ok_space_text(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	/* RFC 1957 / spec §1: always "+OK " with a space and some text. */
	assert_ok(in(f, "NOOP"));
	assert_ready(f, POP3_STATE_TRANSACTION);
}

static void test_wrong_argument_counts_are_rejected(void **state)
{
	struct fx *f = *state;
	static const char *const auth_cmds[] = {
		"QUIT now", "CAPA x", "STLS x",     "USER",
		"USER a b", "APOP a", "APOP a b c", "AUTH PLAIN x y",
	};
	static const char *const trans_cmds[] = {
		"STAT 1", "NOOP x",   "RSET x",   "QUIT x",   "CAPA x", "RETR",  "RETR 1 2",
		"DELE",   "DELE 1 2", "LIST 1 2", "UIDL 1 2", "TOP",    "TOP 1", "TOP 1 2 3",
	};
	f->cfg.apop = true;
	f->cfg.stls = true;
	f->info.apop_timestamp = APOP_TS;
	fx_start(f);
	for (size_t i = 0; i < sizeof(auth_cmds) / sizeof(auth_cmds[0]); i++) {
		assert_err(in(f, auth_cmds[i]));
		assert_ready(f, POP3_STATE_AUTHORIZATION);
	}
	login_as(f, "alice");
	for (size_t i = 0; i < sizeof(trans_cmds) / sizeof(trans_cmds[0]); i++) {
		assert_err(in(f, trans_cmds[i]));
		assert_ready(f, POP3_STATE_TRANSACTION);
	}
	assert_string_equal(in(f, "STAT"), "+OK 3 330\r\n");
}

static void test_extra_spaces_are_tolerated(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_ok(in(f, "USER alice "));
	assert_string_equal(in(f, "PASS secret"), "");
	assert_string_equal(req(f)->user, "alice");
	pop3_session_login_done(f->s, POP3_LOGIN_OK, &f->md);
	assert_ok(take(f));
	assert_string_equal(in(f, "STAT "), "+OK 3 330\r\n");
	assert_string_equal(in(f, "LIST  2  "), "+OK 2 110\r\n");
	assert_string_equal(in(f, "  UIDL 3"), "+OK 3 uid-3\r\n");
	assert_string_equal(in(f, "RETR 3 "), "");
	assert_int_equal(req(f)->kind, POP3_REQ_RETRIEVE);
	assert_int_equal(req(f)->msg, 2);
	complete_retrieve(f, 120);
}

/* ---- USER / PASS / APOP and login results ---------------------------------------------------- */

static void test_user_pass_requests_login_with_full_password(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_ok(in(f, "USER alice"));
	/* Nothing is answered before the credentials are checked. */
	assert_string_equal(in(f, "PASS my secret  pass phrase"), "");
	const struct pop3_request *r = req(f);
	assert_int_equal(r->kind, POP3_REQ_LOGIN);
	assert_int_equal(r->method, POP3_LOGIN_USERPASS);
	assert_string_equal(r->mechanism, "USER");
	assert_string_equal(r->user, "alice");
	assert_string_equal(r->secret, "my secret  pass phrase");
	assert_string_equal(pop3_session_user(f->s), "alice");
	assert_int_equal(pop3_session_state(f->s), POP3_STATE_AUTHORIZATION);
}

static void test_pass_without_user_is_refused(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_prefix(in(f, "PASS secret"), "-ERR [AUTH]");
	assert_single_line(f->text);
	assert_ready(f, POP3_STATE_AUTHORIZATION);
}

static void test_pass_must_immediately_follow_user(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_ok(in(f, "USER alice"));
	assert_capa(in(f, "CAPA"));
	assert_prefix(in(f, "PASS secret"), "-ERR [AUTH]");
	assert_ready(f, POP3_STATE_AUTHORIZATION);

	assert_ok(in(f, "USER alice"));
	assert_err(in(f, "FOO"));
	assert_prefix(in(f, "PASS secret"), "-ERR [AUTH]");
	assert_ready(f, POP3_STATE_AUTHORIZATION);

	/* The latest USER counts. */
	assert_ok(in(f, "USER alice"));
	assert_ok(in(f, "USER bob"));
	assert_string_equal(in(f, "PASS secret"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);
	assert_string_equal(req(f)->user, "bob");
}

static void test_pass_after_failed_login_needs_user_again(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_ok(in(f, "USER alice"));
	assert_string_equal(in(f, "PASS wrong"), "");
	pop3_session_login_done(f->s, POP3_LOGIN_FAILED, NULL);
	assert_prefix(take(f), "-ERR [AUTH]");
	assert_prefix(in(f, "PASS secret"), "-ERR [AUTH]");
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	login_as(f, "alice");
}

static void test_overlong_user_name_is_refused(void **state)
{
	struct fx *f = *state;
	char line[5 + AUTH_MAX_USERNAME + 2];
	fx_start(f);
	memcpy(line, "USER ", 5);
	memset(line + 5, 'u', AUTH_MAX_USERNAME + 1);
	line[5 + AUTH_MAX_USERNAME + 1] = '\0';
	assert_prefix(in(f, line), "-ERR [AUTH]");
	assert_prefix(in(f, "PASS secret"), "-ERR [AUTH]");
	assert_ready(f, POP3_STATE_AUTHORIZATION);

	line[5 + AUTH_MAX_USERNAME] = '\0';
	assert_ok(in(f, line));
}

static void test_apop_requests_login_when_enabled(void **state)
{
	struct fx *f = *state;
	f->cfg.apop = true;
	f->info.apop_timestamp = APOP_TS;
	fx_start(f);
	assert_string_equal(in(f, "APOP mrose " APOP_DIGEST), "");
	const struct pop3_request *r = req(f);
	assert_int_equal(r->kind, POP3_REQ_LOGIN);
	assert_int_equal(r->method, POP3_LOGIN_APOP);
	assert_string_equal(r->mechanism, "APOP");
	assert_string_equal(r->user, "mrose");
	assert_string_equal(r->secret, APOP_DIGEST);
	pop3_session_login_done(f->s, POP3_LOGIN_OK, &f->md);
	assert_ok(take(f));
	assert_ready(f, POP3_STATE_TRANSACTION);
}

static void test_apop_with_malformed_digest_is_refused(void **state)
{
	struct fx *f = *state;
	f->cfg.apop = true;
	f->info.apop_timestamp = APOP_TS;
	fx_start(f);
	assert_prefix(in(f, "APOP mrose xyz"), "-ERR [AUTH]");
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	/* 31 hex digits, 33 hex digits, a non-hex digit. */
	assert_prefix(in(f, "APOP mrose c4c9334bac560ecc979e58001b3e22f"), "-ERR ");
	assert_prefix(in(f, "APOP mrose c4c9334bac560ecc979e58001b3e22fbb"), "-ERR ");
	assert_prefix(in(f, "APOP mrose g4c9334bac560ecc979e58001b3e22fb"), "-ERR ");
	assert_ready(f, POP3_STATE_AUTHORIZATION);
}

static void test_apop_is_refused_when_disabled(void **state)
{
	struct fx *f = *state;
	f->cfg.apop = false;
	fx_start(f);
	assert_err(in(f, "APOP mrose " APOP_DIGEST));
	assert_ready(f, POP3_STATE_AUTHORIZATION);
}

static void test_input_while_request_pending_is_ignored(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_ok(in(f, "USER alice"));
	assert_string_equal(in(f, "PASS secret"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);

	/* Lines and completions of other requests change nothing. */
	assert_string_equal(in(f, "QUIT"), "");
	assert_string_equal(in(f, "USER bob"), "");
	assert_string_equal(in(f, "CAPA"), "");
	pop3_session_input_overlong(f->s);
	assert_string_equal(take(f), "");
	pop3_session_retrieve_begin(f->s, true);
	pop3_session_retrieve_end(f->s, true, 10);
	pop3_session_continue(f->s);
	pop3_session_commit_done(f->s, 0);
	pop3_session_tls_done(f->s, true, NULL);
	assert_string_equal(take(f), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);
	assert_string_equal(req(f)->user, "alice");
	assert_string_equal(req(f)->secret, "secret");
	assert_int_equal(pop3_session_state(f->s), POP3_STATE_AUTHORIZATION);
	assert_int_equal(pop3_session_stats(f->s)->bad_commands, 0);

	pop3_session_login_done(f->s, POP3_LOGIN_OK, &f->md);
	assert_ok(take(f));
	assert_ready(f, POP3_STATE_TRANSACTION);
	/* A second login_done is ignored too. */
	pop3_session_login_done(f->s, POP3_LOGIN_FAILED, NULL);
	assert_string_equal(take(f), "");
	assert_ready(f, POP3_STATE_TRANSACTION);
}

static void test_login_ok_reports_count_and_octets(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_ok(in(f, "USER alice"));
	in(f, "PASS secret");
	pop3_session_login_done(f->s, POP3_LOGIN_OK, &f->md);
	const char *text = take(f);
	assert_ok(text);
	assert_contains(text, " 3 ");
	assert_contains(text, "330");
	assert_ready(f, POP3_STATE_TRANSACTION);
	assert_string_equal(pop3_session_user(f->s), "alice");
}

static void test_login_failures_carry_response_codes(void **state)
{
	struct fx *f = *state;
	static const struct {
		enum pop3_login_result result;
		const char *prefix;
	} cases[] = {
		{ POP3_LOGIN_FAILED, "-ERR [AUTH] " },
		{ POP3_LOGIN_IN_USE, "-ERR [IN-USE] " },
		{ POP3_LOGIN_DELAYED, "-ERR [LOGIN-DELAY] " },
		{ POP3_LOGIN_TEMPFAIL, "-ERR [SYS/TEMP] " },
		{ POP3_LOGIN_PERMFAIL, "-ERR [SYS/PERM] " },
		{ POP3_LOGIN_REFUSED, "-ERR [AUTH] " },
	};
	f->cfg.max_auth_failures = 100;
	fx_start(f);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_ok(in(f, "USER alice"));
		assert_string_equal(in(f, "PASS secret"), "");
		pop3_session_login_done(f->s, cases[i].result, NULL);
		const char *text = take(f);
		assert_prefix(text, cases[i].prefix);
		assert_single_line(text);
		assert_ready(f, POP3_STATE_AUTHORIZATION);
	}
	/* The client may still log in. */
	login_as(f, "alice");
}

static void test_too_many_auth_failures_close_the_session(void **state)
{
	struct fx *f = *state;
	f->cfg.max_auth_failures = 3;
	fx_start(f);
	/* Failures by any method count. */
	assert_ok(in(f, "USER alice"));
	in(f, "PASS wrong1");
	pop3_session_login_done(f->s, POP3_LOGIN_FAILED, NULL);
	assert_prefix(take(f), "-ERR [AUTH]");
	assert_ready(f, POP3_STATE_AUTHORIZATION);

	assert_string_equal(in(f, "AUTH PLAIN " PLAIN_TEST_SECRET), "");
	pop3_session_login_done(f->s, POP3_LOGIN_FAILED, NULL);
	assert_prefix(take(f), "-ERR [AUTH]");
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	assert_int_equal(pop3_session_stats(f->s)->auth_failures, 2);

	assert_ok(in(f, "USER alice"));
	in(f, "PASS wrong3");
	pop3_session_login_done(f->s, POP3_LOGIN_FAILED, NULL);
	const char *text = take(f);
	assert_prefix(text, "-ERR [AUTH]");
	assert_single_line(text);
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
	assert_int_equal(pop3_session_state(f->s), POP3_STATE_CLOSED);
	assert_int_equal(pop3_session_stats(f->s)->auth_failures, 3);

	/* Nothing more is read. */
	assert_string_equal(in(f, "USER alice"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
}

/* ---- plaintext policy and STLS --------------------------------------------------------------- */

/* The default mechanisms (PLAIN LOGIN) on an untrusted plaintext connection:
 * nothing usable, so no SASL tag at all (RFC 2449 §6.3 lists mechanisms). */
static void test_capa_has_no_empty_sasl_line(void **state)
{
	struct fx *f = *state;
	f->cfg.mechanisms = (1u << SASL_MECH_PLAIN) | (1u << SASL_MECH_LOGIN);
	f->info.plaintext_ok = false;
	f->info.secure = false;
	fx_start(f);
	const char *capa = in(f, "CAPA");
	assert_capa(capa);
	assert_false(has_line_starting(capa, "SASL"));

	/* Where a mechanism is usable, the line is there. */
	pop3_session_free(f->s);
	f->info.plaintext_ok = true;
	fx_start(f);
	capa = in(f, "CAPA");
	assert_true(sasl_lists(capa, "PLAIN"));
	assert_true(sasl_lists(capa, "LOGIN"));
}

static void test_plaintext_auth_is_refused_on_insecure_connection(void **state)
{
	struct fx *f = *state;
	f->info.plaintext_ok = false;
	f->info.secure = false;
	fx_start(f);

	const char *capa = in(f, "CAPA");
	assert_capa(capa);
	assert_false(has_line(capa, "USER"));
	assert_false(sasl_lists(capa, "PLAIN"));
	assert_false(sasl_lists(capa, "LOGIN"));

	assert_prefix(in(f, "USER alice"), "-ERR [AUTH]");
	assert_prefix(in(f, "PASS secret"), "-ERR [AUTH]");
	assert_prefix(in(f, "AUTH PLAIN " PLAIN_TEST_SECRET), "-ERR [AUTH]");
	assert_prefix(in(f, "AUTH PLAIN"), "-ERR [AUTH]");
	assert_prefix(in(f, "AUTH LOGIN"), "-ERR [AUTH]");
	assert_prefix(in(f, "AUTH LOGIN dGVzdA=="), "-ERR [AUTH]");
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	assert_int_equal(pop3_session_line_limit(f->s), POP3_MAX_COMMAND_LINE);

	/* Bare AUTH lists no plaintext mechanism either. */
	const char *list = in(f, "AUTH");
	assert_prefix(list, "+OK ");
	assert_false(has_line(list, "PLAIN"));
	assert_false(has_line(list, "LOGIN"));
	assert_true(has_line(list, "."));
}

static void check_plaintext_allowed(struct fx *f)
{
	fx_start(f);
	const char *capa = in(f, "CAPA");
	assert_capa(capa);
	assert_true(has_line(capa, "USER"));
	assert_true(sasl_lists(capa, "PLAIN"));
	assert_true(sasl_lists(capa, "LOGIN"));

	assert_ok(in(f, "USER alice"));
	assert_string_equal(in(f, "PASS secret"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);
	pop3_session_login_done(f->s, POP3_LOGIN_FAILED, NULL);
	take(f);
	assert_string_equal(in(f, "AUTH PLAIN " PLAIN_TEST_SECRET), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);
	pop3_session_login_done(f->s, POP3_LOGIN_FAILED, NULL);
	take(f);
	assert_string_equal(in(f, "AUTH LOGIN"), "+ VXNlcm5hbWU6\r\n");
}

static void test_plaintext_auth_is_allowed_when_secure(void **state)
{
	struct fx *f = *state;
	f->info.plaintext_ok = false;
	f->info.secure = true;
	f->cfg.stls = true;
	check_plaintext_allowed(f);
}

static void test_plaintext_auth_is_allowed_on_trusted_network(void **state)
{
	struct fx *f = *state;
	f->info.plaintext_ok = true;
	f->info.secure = false;
	check_plaintext_allowed(f);
}

static void test_stls_is_listed_until_tls_is_active(void **state)
{
	struct fx *f = *state;
	f->cfg.stls = true;
	f->info.plaintext_ok = false;
	fx_start(f);
	const char *capa = in(f, "CAPA");
	assert_capa(capa);
	assert_true(has_line(capa, "STLS"));
	assert_false(has_line(capa, "USER"));

	assert_ok(in(f, "STLS"));
	assert_int_equal(req(f)->kind, POP3_REQ_STARTTLS);
	/* Anything the client sent along with STLS is not executed. */
	assert_string_equal(in(f, "USER alice"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_STARTTLS);
	pop3_session_tls_done(f->s, true, NULL);
	assert_string_equal(take(f), "");
	assert_ready(f, POP3_STATE_AUTHORIZATION);

	capa = in(f, "CAPA");
	assert_capa(capa);
	assert_false(has_line(capa, "STLS"));
	assert_true(has_line(capa, "USER"));
	assert_true(sasl_lists(capa, "PLAIN"));
	assert_true(sasl_lists(capa, "LOGIN"));

	assert_err(in(f, "STLS"));
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	assert_ok(in(f, "USER alice"));
}

static void test_stls_is_refused_on_secure_connection(void **state)
{
	struct fx *f = *state;
	f->cfg.stls = true;
	f->info.secure = true;
	fx_start(f);
	assert_false(has_line(in(f, "CAPA"), "STLS"));
	assert_err(in(f, "STLS"));
	assert_ready(f, POP3_STATE_AUTHORIZATION);
}

static void test_stls_is_refused_when_not_offered(void **state)
{
	struct fx *f = *state;
	f->cfg.stls = false;
	fx_start(f);
	assert_false(has_line(in(f, "CAPA"), "STLS"));
	assert_err(in(f, "STLS"));
	assert_ready(f, POP3_STATE_AUTHORIZATION);
}

static void test_stls_forgets_user_given_before_tls(void **state)
{
	struct fx *f = *state;
	f->cfg.stls = true;
	f->info.plaintext_ok = true;
	fx_start(f);
	assert_ok(in(f, "USER alice"));
	assert_ok(in(f, "STLS"));
	pop3_session_tls_done(f->s, true, NULL);
	assert_prefix(in(f, "PASS secret"), "-ERR [AUTH]");
	assert_ready(f, POP3_STATE_AUTHORIZATION);
}

static void test_stls_handshake_failure_closes(void **state)
{
	struct fx *f = *state;
	f->cfg.stls = true;
	fx_start(f);
	assert_ok(in(f, "STLS"));
	pop3_session_tls_done(f->s, false, NULL);
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
	assert_int_equal(pop3_session_state(f->s), POP3_STATE_CLOSED);
	assert_string_equal(in(f, "CAPA"), "");
}

/* ---- CAPA ------------------------------------------------------------------------------------ */

static void test_capa_lists_base_capabilities(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	const char *capa = in(f, "CAPA");
	assert_capa(capa);
	static const char *const must[] = {
		"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER",
	};
	for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++)
		if (!has_line(capa, must[i]))
			fail_msg("CAPA lacks %s: \"%s\"", must[i], capa);
	/* Not configured, so not advertised. */
	assert_false(has_line_starting(capa, "LOGIN-DELAY"));
	assert_false(has_line_starting(capa, "EXPIRE"));
	assert_false(has_line_starting(capa, "IMPLEMENTATION"));
	assert_false(has_line_starting(capa, "STLS"));
	assert_ready(f, POP3_STATE_AUTHORIZATION);
}

static void test_capa_lists_configured_capabilities(void **state)
{
	struct fx *f = *state;
	f->cfg.login_delay = 900;
	f->cfg.expire = 60;
	f->cfg.implementation = "Pigeon";
	fx_start(f);
	const char *capa = in(f, "CAPA");
	assert_capa(capa);
	assert_true(has_line(capa, "LOGIN-DELAY 900"));
	assert_true(has_line(capa, "EXPIRE 60"));
	assert_true(has_line(capa, "IMPLEMENTATION Pigeon"));
}

static void test_capa_expire_never(void **state)
{
	struct fx *f = *state;
	f->cfg.expire = -2;
	fx_start(f);
	const char *capa = in(f, "CAPA");
	assert_true(has_line(capa, "EXPIRE NEVER"));
	assert_false(has_line_starting(capa, "EXPIRE -"));
}

static void test_capa_expire_zero(void **state)
{
	struct fx *f = *state;
	f->cfg.expire = 0;
	fx_start(f);
	assert_true(has_line(in(f, "CAPA"), "EXPIRE 0"));
}

/* Every line of a that is not a status line, ".", or skip is in b. */
static void assert_capa_subset(const char *a, const char *b, const char *skip)
{
	const char *p = strstr(a, "\r\n") + 2;
	while (*p != '\0') {
		const char *eol = strstr(p, "\r\n");
		char line[600];
		snprintf(line, sizeof(line), "%.*s", (int)(eol - p), p);
		if (strcmp(line, ".") != 0 && (skip == NULL || strcmp(line, skip) != 0) &&
		    !has_line(b, line))
			fail_msg("capability \"%s\" missing from \"%s\"", line, b);
		p = eol + 2;
	}
}

static void test_capa_in_transaction_matches_authorization(void **state)
{
	struct fx *f = *state;
	f->cfg.stls = true;
	f->cfg.login_delay = 300;
	f->cfg.expire = 30;
	f->cfg.implementation = "Pigeon";
	f->info.plaintext_ok = true;
	fx_start(f);
	/* Keep the AUTHORIZATION answer in the scratch buffer. */
	buf_clear(&f->scratch);
	buf_append_str(&f->scratch, in(f, "CAPA"));
	buf_append_byte(&f->scratch, '\0');
	const char *before = f->scratch.data;
	login_as(f, "alice");
	const char *after = in(f, "CAPA");
	assert_capa(after);
	/* STLS is for AUTHORIZATION only; everything else stays. */
	bool stls_before = has_line(before, "STLS");
	bool stls_after = has_line(after, "STLS");
	assert_capa_subset(before, after, "STLS");
	assert_capa_subset(after, before, NULL);
	assert_true(stls_before);
	assert_false(stls_after);
}

/* ---- AUTH ------------------------------------------------------------------------------------ */

static void test_bare_auth_lists_mechanisms(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	const char *list = in(f, "AUTH");
	assert_prefix(list, "+OK ");
	assert_true(has_line(list, "PLAIN"));
	assert_true(has_line(list, "LOGIN"));
	size_t len = strlen(list);
	assert_true(len >= 5);
	assert_string_equal(list + len - 5, "\r\n.\r\n");
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	assert_int_equal(pop3_session_line_limit(f->s), POP3_MAX_COMMAND_LINE);
}

static void test_auth_unknown_mechanism_is_refused(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_err(in(f, "AUTH CRAM-MD5"));
	assert_err(in(f, "AUTH XOAUTH2 dGVzdA=="));
	assert_err(in(f, "AUTH PLAINX"));
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	assert_int_equal(pop3_session_line_limit(f->s), POP3_MAX_COMMAND_LINE);
	/* The next line is a command again, not a SASL response. */
	assert_capa(in(f, "CAPA"));
}

static void test_auth_plain_with_initial_response(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_string_equal(in(f, "AUTH PLAIN " PLAIN_TEST_SECRET), "");
	const struct pop3_request *r = req(f);
	assert_int_equal(r->kind, POP3_REQ_LOGIN);
	assert_int_equal(r->method, POP3_LOGIN_SASL);
	assert_string_equal(r->mechanism, "PLAIN");
	assert_string_equal(r->user, "test");
	assert_string_equal(r->secret, "secret");
	pop3_session_login_done(f->s, POP3_LOGIN_OK, &f->md);
	assert_ok(take(f));
	assert_ready(f, POP3_STATE_TRANSACTION);
	assert_string_equal(pop3_session_user(f->s), "test");
}

static void test_auth_plain_without_initial_response(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_int_equal(pop3_session_line_limit(f->s), POP3_MAX_COMMAND_LINE);
	assert_string_equal(in(f, "AUTH PLAIN"), "+ \r\n");
	assert_int_equal(req(f)->kind, POP3_REQ_NONE);
	assert_true(pop3_session_line_limit(f->s) > POP3_MAX_COMMAND_LINE);
	assert_string_equal(in(f, PLAIN_TEST_SECRET), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);
	assert_string_equal(req(f)->mechanism, "PLAIN");
	assert_string_equal(req(f)->user, "test");
	assert_string_equal(req(f)->secret, "secret");
	assert_int_equal(pop3_session_line_limit(f->s), POP3_MAX_COMMAND_LINE);
}

static void test_auth_empty_initial_response_is_equals_sign(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	/* PLAIN: an empty message is malformed. */
	assert_prefix(in(f, "AUTH PLAIN ="), "-ERR [AUTH]");
	assert_single_line(f->text);
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	assert_int_equal(pop3_session_line_limit(f->s), POP3_MAX_COMMAND_LINE);
	/* LOGIN: an empty initial response is no user name, so it asks for one. */
	assert_string_equal(in(f, "AUTH LOGIN ="), "+ VXNlcm5hbWU6\r\n");
	assert_string_equal(in(f, "dGVzdA=="), "+ UGFzc3dvcmQ6\r\n");
	assert_string_equal(in(f, "c2VjcmV0"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);
	assert_string_equal(req(f)->user, "test");
}

static void test_auth_star_cancels(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_string_equal(in(f, "AUTH PLAIN"), "+ \r\n");
	assert_err(in(f, "*"));
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	assert_int_equal(pop3_session_line_limit(f->s), POP3_MAX_COMMAND_LINE);
	assert_capa(in(f, "CAPA"));

	assert_string_equal(in(f, "AUTH LOGIN"), "+ VXNlcm5hbWU6\r\n");
	assert_string_equal(in(f, "dGVzdA=="), "+ UGFzc3dvcmQ6\r\n");
	assert_err(in(f, "*"));
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	assert_int_equal(pop3_session_line_limit(f->s), POP3_MAX_COMMAND_LINE);
	assert_ok(in(f, "USER alice"));
}

static void test_auth_invalid_base64_is_refused(void **state)
{
	struct fx *f = *state;
	static const char *const bad[] = {
		"AHRlc3QAc2VjcmV0!", "AHRlc3QAc2VjcmV", "####",      "AHRl c3QA",
		"AHRlc3QAc2Vjc=V0",  "dGVzdA=",         "dGVzdA===", "dGVzdB==",
	};
	fx_start(f);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char line[64];
		/* As an initial response (only where it is one argument) ... */
		if (strchr(bad[i], ' ') == NULL) {
			snprintf(line, sizeof(line), "AUTH PLAIN %s", bad[i]);
			assert_prefix(in(f, line), "-ERR ");
			assert_single_line(f->text);
			assert_ready(f, POP3_STATE_AUTHORIZATION);
		}
		/* ... and as a continuation line. */
		assert_string_equal(in(f, "AUTH PLAIN"), "+ \r\n");
		assert_prefix(in(f, bad[i]), "-ERR ");
		assert_single_line(f->text);
		assert_ready(f, POP3_STATE_AUTHORIZATION);
		assert_int_equal(pop3_session_line_limit(f->s), POP3_MAX_COMMAND_LINE);
	}
	assert_capa(in(f, "CAPA"));
}

/* Run AUTH PLAIN with the given decoded message as a continuation line; expect refusal. */
static void check_plain_refused(struct fx *f, const char *msg, size_t len)
{
	assert_string_equal(in(f, "AUTH PLAIN"), "+ \r\n");
	const char *text = in(f, b64(f, msg, len));
	assert_prefix(text, "-ERR [AUTH]");
	assert_single_line(text);
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	assert_int_equal(pop3_session_line_limit(f->s), POP3_MAX_COMMAND_LINE);
}

static void test_auth_plain_malformed_message_is_refused(void **state)
{
	struct fx *f = *state;
	char big[3 * (SASL_MAX_FIELD + 1) + 2];
	fx_start(f);
	/* As initial responses: one NUL, three NULs, no password, no user name. */
	assert_prefix(in(f, "AUTH PLAIN dGVzdABzZWNyZXQ="), "-ERR [AUTH]");
	assert_prefix(in(f, "AUTH PLAIN YQB0ZXN0AHNlYwByZXQ="), "-ERR [AUTH]");
	assert_prefix(in(f, "AUTH PLAIN AHRlc3QA"), "-ERR [AUTH]");
	assert_prefix(in(f, "AUTH PLAIN AABzZWNyZXQ="), "-ERR [AUTH]");
	assert_ready(f, POP3_STATE_AUTHORIZATION);

	check_plain_refused(f, "testsecret", 10);
	check_plain_refused(f, "\0\0", 2);
	check_plain_refused(f, "\0test\0secret\0", 13);

	/* A field of 256 octets: password, user name, authorization identity. */
	memset(big, 'p', sizeof(big));
	big[0] = '\0';
	memcpy(big + 1, "test", 4);
	big[5] = '\0';
	check_plain_refused(f, big, 6 + SASL_MAX_FIELD + 1);

	memset(big, 'u', sizeof(big));
	big[0] = '\0';
	big[1 + SASL_MAX_FIELD + 1] = '\0';
	memcpy(big + 1 + SASL_MAX_FIELD + 2, "secret", 6);
	check_plain_refused(f, big, 1 + SASL_MAX_FIELD + 2 + 6);

	memset(big, 'z', sizeof(big));
	memcpy(big + SASL_MAX_FIELD + 1, "\0test\0secret", 12);
	check_plain_refused(f, big, SASL_MAX_FIELD + 1 + 12);

	assert_int_equal(pop3_session_stats(f->s)->auth_failures, 0);
}

static void test_auth_plain_accepts_255_octet_fields(void **state)
{
	struct fx *f = *state;
	char msg[3 * SASL_MAX_FIELD + 2];
	fx_start(f);
	memset(msg, 'u', SASL_MAX_FIELD);
	msg[SASL_MAX_FIELD] = '\0';
	memset(msg + SASL_MAX_FIELD + 1, 'u', SASL_MAX_FIELD);
	msg[2 * SASL_MAX_FIELD + 1] = '\0';
	memset(msg + 2 * SASL_MAX_FIELD + 2, 'p', SASL_MAX_FIELD);
	assert_string_equal(in(f, "AUTH PLAIN"), "+ \r\n");
	assert_string_equal(in(f, b64(f, msg, sizeof(msg))), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);
	assert_int_equal(strlen(req(f)->user), SASL_MAX_FIELD);
	assert_int_equal(strlen(req(f)->secret), SASL_MAX_FIELD);
}

static void test_auth_plain_authzid_must_match_authcid(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	/* base64("admin\0test\0secret") */
	assert_prefix(in(f, "AUTH PLAIN YWRtaW4AdGVzdABzZWNyZXQ="), "-ERR [AUTH]");
	assert_single_line(f->text);
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	/* base64("test\0test\0secret") */
	assert_string_equal(in(f, "AUTH PLAIN dGVzdAB0ZXN0AHNlY3JldA=="), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);
	assert_string_equal(req(f)->user, "test");
	assert_string_equal(req(f)->secret, "secret");
}

static void test_auth_login_asks_for_user_and_password(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_string_equal(in(f, "AUTH LOGIN"), "+ VXNlcm5hbWU6\r\n");
	assert_true(pop3_session_line_limit(f->s) > POP3_MAX_COMMAND_LINE);
	assert_string_equal(in(f, "dGVzdA=="), "+ UGFzc3dvcmQ6\r\n");
	assert_int_equal(req(f)->kind, POP3_REQ_NONE);
	assert_string_equal(in(f, "c2VjcmV0"), "");
	const struct pop3_request *r = req(f);
	assert_int_equal(r->kind, POP3_REQ_LOGIN);
	assert_int_equal(r->method, POP3_LOGIN_SASL);
	assert_string_equal(r->mechanism, "LOGIN");
	assert_string_equal(r->user, "test");
	assert_string_equal(r->secret, "secret");
	assert_int_equal(pop3_session_line_limit(f->s), POP3_MAX_COMMAND_LINE);
	pop3_session_login_done(f->s, POP3_LOGIN_OK, &f->md);
	assert_ok(take(f));
	assert_ready(f, POP3_STATE_TRANSACTION);
}

static void test_auth_login_takes_user_name_as_initial_response(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_string_equal(in(f, "AUTH LOGIN dGVzdA=="), "+ UGFzc3dvcmQ6\r\n");
	assert_string_equal(in(f, "c2VjcmV0"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_LOGIN);
	assert_string_equal(req(f)->mechanism, "LOGIN");
	assert_string_equal(req(f)->user, "test");
	assert_string_equal(req(f)->secret, "secret");
}

static void test_auth_login_empty_password_is_refused(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_string_equal(in(f, "AUTH LOGIN dGVzdA=="), "+ UGFzc3dvcmQ6\r\n");
	assert_prefix(in(f, ""), "-ERR [AUTH]");
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	assert_int_equal(pop3_session_line_limit(f->s), POP3_MAX_COMMAND_LINE);
}

static void test_line_limit_is_255_for_commands_and_larger_in_sasl(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_int_equal(pop3_session_line_limit(f->s), 255);
	assert_string_equal(in(f, "AUTH PLAIN"), "+ \r\n");
	assert_true(pop3_session_line_limit(f->s) > 255);
	assert_int_equal(pop3_session_line_limit(f->s), POP3_MAX_SASL_LINE);
	/* An overlong SASL response ends the exchange, not the session. */
	pop3_session_input_overlong(f->s);
	assert_prefix(take(f), "-ERR ");
	assert_single_line(f->text);
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	assert_int_equal(pop3_session_line_limit(f->s), 255);
	assert_capa(in(f, "CAPA"));
	login_as(f, "alice");
	assert_int_equal(pop3_session_line_limit(f->s), 255);
}

/* ---- STAT, LIST, UIDL and message numbers ---------------------------------------------------- */

static void test_stat_counts_messages_and_octets(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_string_equal(in(f, "STAT"), "+OK 3 330\r\n");
}

/* The lines after the first one. */
static const char *body_of(const char *text)
{
	const char *p = strstr(text, "\r\n");
	assert_non_null(p);
	return p + 2;
}

static void test_list_and_uidl_without_argument(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	const char *list = in(f, "LIST");
	assert_prefix(list, "+OK ");
	assert_string_equal(body_of(list), "1 100\r\n2 110\r\n3 120\r\n.\r\n");
	const char *uidl = in(f, "UIDL");
	assert_prefix(uidl, "+OK ");
	assert_string_equal(body_of(uidl), "1 uid-1\r\n2 uid-2\r\n3 uid-3\r\n.\r\n");
	assert_ready(f, POP3_STATE_TRANSACTION);
}

static void test_list_and_uidl_with_argument(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_string_equal(in(f, "LIST 1"), "+OK 1 100\r\n");
	assert_string_equal(in(f, "LIST 3"), "+OK 3 120\r\n");
	assert_string_equal(in(f, "UIDL 2"), "+OK 2 uid-2\r\n");
	assert_string_equal(in(f, "UIDL 3"), "+OK 3 uid-3\r\n");
	assert_ready(f, POP3_STATE_TRANSACTION);
}

static void test_invalid_message_numbers_are_refused(void **state)
{
	struct fx *f = *state;
	static const char *const cmds[] = { "LIST", "UIDL", "RETR", "DELE", "TOP" };
	static const char *const nums[] = {
		"0",
		"4",
		"00",
		"99999999999999999999",
		"18446744073709551615",
		"18446744073709551616",
		"184467440737095516150",
		"abc",
		"1a",
		"a1",
		"+1",
		"-1",
		"1.0",
		"0x1",
		"1e0",
		"\xc2\xb9",
	};
	start_and_login(f);
	for (size_t c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++) {
		for (size_t n = 0; n < sizeof(nums) / sizeof(nums[0]); n++) {
			char line[64];
			snprintf(line, sizeof(line), "%s %s%s", cmds[c], nums[n],
				 strcmp(cmds[c], "TOP") == 0 ? " 0" : "");
			const char *text = in(f, line);
			if (strncmp(text, "-ERR ", 5) != 0 || count_lines(text) != 1)
				fail_msg("\"%s\": expected -ERR, got \"%s\"", line, text);
			assert_ready(f, POP3_STATE_TRANSACTION);
		}
	}
	/* Nothing was deleted or retrieved. */
	assert_string_equal(in(f, "STAT"), "+OK 3 330\r\n");
	assert_int_equal(pop3_session_stats(f->s)->retrieved, 0);
}

static void test_leading_zeros_in_message_numbers_are_accepted(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_string_equal(in(f, "LIST 01"), "+OK 1 100\r\n");
	assert_string_equal(in(f, "UIDL 002"), "+OK 2 uid-2\r\n");
	assert_string_equal(in(f, "RETR 0003"), "");
	assert_int_equal(req(f)->msg, 2);
	complete_retrieve(f, 120);
	assert_string_equal(in(f, "TOP 01 1"), "");
	assert_int_equal(req(f)->msg, 0);
	complete_retrieve(f, 40);
	assert_ok(in(f, "DELE 001"));
	assert_err(in(f, "LIST 1"));
}

static void test_deleted_message_is_invisible_and_refused(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_ok(in(f, "DELE 2"));
	assert_string_equal(in(f, "STAT"), "+OK 2 220\r\n");
	assert_string_equal(body_of(in(f, "LIST")), "1 100\r\n3 120\r\n.\r\n");
	assert_string_equal(body_of(in(f, "UIDL")), "1 uid-1\r\n3 uid-3\r\n.\r\n");
	static const char *const refused[] = { "LIST 2", "UIDL 2", "RETR 2", "TOP 2 0", "DELE 2" };
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		assert_err(in(f, refused[i]));
		assert_ready(f, POP3_STATE_TRANSACTION);
	}
	assert_string_equal(in(f, "STAT"), "+OK 2 220\r\n");
}

static void test_dele_twice_is_refused(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_ok(in(f, "DELE 1"));
	assert_err(in(f, "DELE 1"));
	assert_string_equal(in(f, "STAT"), "+OK 2 230\r\n");
}

static void test_dele_then_rset_restores_messages(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_ok(in(f, "DELE 1"));
	assert_ok(in(f, "DELE 3"));
	assert_string_equal(in(f, "STAT"), "+OK 1 110\r\n");
	const char *text = in(f, "RSET");
	assert_ok(text);
	assert_string_equal(in(f, "STAT"), "+OK 3 330\r\n");
	assert_string_equal(in(f, "LIST 1"), "+OK 1 100\r\n");
	assert_string_equal(in(f, "UIDL 3"), "+OK 3 uid-3\r\n");
	assert_string_equal(body_of(in(f, "LIST")), "1 100\r\n2 110\r\n3 120\r\n.\r\n");
	/* Restored messages can be deleted again. */
	assert_ok(in(f, "DELE 1"));
	assert_string_equal(in(f, "STAT"), "+OK 2 230\r\n");
}

static void test_message_numbers_do_not_shift_after_dele(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_ok(in(f, "DELE 1"));
	assert_string_equal(in(f, "LIST 2"), "+OK 2 110\r\n");
	assert_string_equal(in(f, "UIDL 2"), "+OK 2 uid-2\r\n");
	assert_string_equal(in(f, "LIST 3"), "+OK 3 120\r\n");
	assert_string_equal(body_of(in(f, "LIST")), "2 110\r\n3 120\r\n.\r\n");
	assert_string_equal(in(f, "RETR 2"), "");
	assert_int_equal(req(f)->msg, 1);
	complete_retrieve(f, 110);
	assert_err(in(f, "LIST 1"));
	assert_err(in(f, "LIST 4"));
}

/* ---- listings in batches --------------------------------------------------------------------- */

/* Run a LIST or UIDL over the whole maildrop, driving POP3_REQ_CONTINUE; returns the text. */
static const char *run_listing(struct fx *f, const char *cmd, unsigned *continues)
{
	buf_clear(&f->transcript);
	buf_append_str(&f->transcript, in(f, cmd));
	*continues = 0;
	while (req(f)->kind == POP3_REQ_CONTINUE) {
		if (++*continues > 100000)
			fail_msg("listing never ends");
		/* The I/O layer reads nothing now; if it did, the line would be ignored. */
		assert_string_equal(in(f, "STAT"), "");
		pop3_session_continue(f->s);
		buf_append_str(&f->transcript, take(f));
	}
	assert_ready(f, POP3_STATE_TRANSACTION);
	buf_append_byte(&f->transcript, '\0');
	return f->transcript.data;
}

static char *expected_listing(const struct fx *f, const bool *deleted, bool uidl)
{
	struct buf want = BUF_INIT;
	for (size_t i = 0; i < f->count; i++) {
		if (deleted[i])
			continue;
		if (uidl)
			buf_printf(&want, "%zu %s\r\n", i + 1, f->uidls[i]);
		else
			buf_printf(&want, "%zu %llu\r\n", i + 1, (unsigned long long)f->sizes[i]);
	}
	buf_append_str(&want, ".\r\n");
	buf_append_byte(&want, '\0');
	return want.data;
}

static void check_batched_listings(struct fx *f, size_t count, const size_t *dele, size_t ndele,
				   unsigned min_continues)
{
	bool *deleted = calloc(count, sizeof(*deleted));
	assert_non_null(deleted);
	fx_set_count(f, count);
	start_and_login(f);
	for (size_t i = 0; i < ndele; i++) {
		char line[32];
		snprintf(line, sizeof(line), "DELE %zu", dele[i]);
		assert_ok(in(f, line));
		deleted[dele[i] - 1] = true;
	}
	char stat_line[64];
	uint64_t total = 0;
	for (size_t i = 0; i < count; i++)
		if (!deleted[i])
			total += f->sizes[i];
	snprintf(stat_line, sizeof(stat_line), "+OK %zu %llu\r\n", count - ndele,
		 (unsigned long long)total);
	assert_string_equal(in(f, "STAT"), stat_line);

	for (int uidl = 0; uidl < 2; uidl++) {
		unsigned continues;
		char *want = expected_listing(f, deleted, uidl);
		char *got = strdup(run_listing(f, uidl ? "UIDL" : "LIST", &continues));
		bool ok = got != NULL && strncmp(got, "+OK ", 4) == 0 &&
			  strcmp(body_of(got), want) == 0;
		free(want);
		free(got);
		if (!ok || continues < min_continues) {
			free(deleted);
			fail_msg("%s listing of %zu messages wrong (or %u < %u batches)",
				 uidl ? "UIDL" : "LIST", count, continues, min_continues);
		}
	}
	free(deleted);
	/* After the listing, commands work again. */
	assert_string_equal(in(f, "STAT"), stat_line);
}

static void test_long_listings_continue_in_batches(void **state)
{
	struct fx *f = *state;
	const size_t count = 2 * POP3_LISTING_BATCH + 7;
	const size_t dele[] = { 1, 200, POP3_LISTING_BATCH, POP3_LISTING_BATCH + 1, 300, count };
	/* 513 visible lines need at least three batches. */
	check_batched_listings(f, count, dele, sizeof(dele) / sizeof(dele[0]), 2);
}

static void test_listing_of_exactly_one_batch_is_complete(void **state)
{
	struct fx *f = *state;
	check_batched_listings(f, POP3_LISTING_BATCH, NULL, 0, 0);
}

static void test_listing_of_one_more_than_a_batch_is_complete(void **state)
{
	struct fx *f = *state;
	check_batched_listings(f, POP3_LISTING_BATCH + 1, NULL, 0, 1);
}

static void test_listing_with_many_deleted_messages_is_complete(void **state)
{
	struct fx *f = *state;
	size_t dele[POP3_LISTING_BATCH + 10];
	for (size_t i = 0; i < sizeof(dele) / sizeof(dele[0]); i++)
		dele[i] = i + 2;
	check_batched_listings(f, POP3_LISTING_BATCH + 20, dele, sizeof(dele) / sizeof(dele[0]), 0);
}

static void test_continue_without_listing_does_nothing(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	pop3_session_continue(f->s);
	assert_string_equal(take(f), "");
	assert_ready(f, POP3_STATE_TRANSACTION);
}

static void test_empty_maildrop(void **state)
{
	struct fx *f = *state;
	fx_set_count(f, 0);
	start_and_login(f);
	assert_string_equal(in(f, "STAT"), "+OK 0 0\r\n");
	const char *list = in(f, "LIST");
	assert_prefix(list, "+OK ");
	assert_string_equal(body_of(list), ".\r\n");
	const char *uidl = in(f, "UIDL");
	assert_prefix(uidl, "+OK ");
	assert_string_equal(body_of(uidl), ".\r\n");
	assert_err(in(f, "LIST 1"));
	assert_err(in(f, "RETR 1"));
	assert_ok(in(f, "RSET"));
	assert_string_equal(in(f, "QUIT"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_COMMIT);
	pop3_session_commit_done(f->s, 0);
	assert_ok(take(f));
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
}

/* ---- RETR and TOP ---------------------------------------------------------------------------- */

static void test_retr_requests_whole_message(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_string_equal(in(f, "RETR 3"), "");
	const struct pop3_request *r = req(f);
	assert_int_equal(r->kind, POP3_REQ_RETRIEVE);
	assert_int_equal(r->msg, 2);
	assert_true(r->is_retr);
	assert_true(r->body_lines == UINT64_MAX);
	/* Nothing else is read until the message is done. */
	assert_string_equal(in(f, "STAT"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_RETRIEVE);

	pop3_session_retrieve_begin(f->s, true);
	assert_string_equal(take(f), "+OK 120 octets\r\n");
	assert_int_equal(req(f)->kind, POP3_REQ_RETRIEVE);
	pop3_session_retrieve_end(f->s, true, 120);
	assert_string_equal(take(f), ".\r\n");
	assert_ready(f, POP3_STATE_TRANSACTION);
	assert_string_equal(in(f, "STAT"), "+OK 3 330\r\n");
}

static void test_retr_open_failure_answers_sys_temp(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_string_equal(in(f, "RETR 2"), "");
	pop3_session_retrieve_begin(f->s, false);
	const char *text = take(f);
	assert_prefix(text, "-ERR [SYS/TEMP]");
	assert_single_line(text);
	assert_ready(f, POP3_STATE_TRANSACTION);
	/* A late retrieve_end is ignored: no stray ".". */
	pop3_session_retrieve_end(f->s, true, 110);
	assert_string_equal(take(f), "");
	assert_int_equal(pop3_session_stats(f->s)->retrieved, 0);
	assert_string_equal(in(f, "STAT"), "+OK 3 330\r\n");
	/* The message was not retrieved, so it is not marked seen. */
	assert_string_equal(in(f, "QUIT"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_COMMIT);
	assert_int_equal(req(f)->seen[1], 0);
}

static void test_retr_open_failure_names_the_requested_message(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_string_equal(in(f, "RETR 2"), "");
	pop3_session_retrieve_begin(f->s, false);
	const char *text = take(f);
	assert_prefix(text, "-ERR [SYS/TEMP]");
	/* The text names message 2, not message 1. */
	assert_contains(text, " 2 ");
	if (strstr(text, " 1 ") != NULL)
		fail_msg("reply names the wrong message: \"%s\"", text);
}

static void test_retr_read_failure_closes_without_commit(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_ok(in(f, "DELE 3"));
	assert_string_equal(in(f, "RETR 1"), "");
	pop3_session_retrieve_begin(f->s, true);
	assert_string_equal(take(f), "+OK 100 octets\r\n");
	pop3_session_retrieve_end(f->s, false, 50);
	/* No terminating "." after a truncated body: the client must not take it as complete. */
	assert_string_equal(take(f), "");
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
	assert_int_equal(pop3_session_state(f->s), POP3_STATE_CLOSED);
	assert_int_equal(pop3_session_stats(f->s)->retrieved, 0);
	assert_string_equal(in(f, "QUIT"), "");
	pop3_session_commit_done(f->s, 0);
	assert_string_equal(take(f), "");
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
	assert_int_equal(pop3_session_stats(f->s)->deleted, 0);
}

static void test_top_requests_headers_and_n_body_lines(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_string_equal(in(f, "TOP 2 5"), "");
	const struct pop3_request *r = req(f);
	assert_int_equal(r->kind, POP3_REQ_RETRIEVE);
	assert_int_equal(r->msg, 1);
	assert_false(r->is_retr);
	assert_true(r->body_lines == 5);
	pop3_session_retrieve_begin(f->s, true);
	assert_ok(take(f));
	pop3_session_retrieve_end(f->s, true, 60);
	assert_string_equal(take(f), ".\r\n");
	assert_ready(f, POP3_STATE_TRANSACTION);
	assert_int_equal(pop3_session_stats(f->s)->retrieved, 0);
	assert_int_equal(pop3_session_stats(f->s)->retrieved_bytes, 60);

	assert_string_equal(in(f, "TOP 1 0"), "");
	assert_true(req(f)->body_lines == 0);
	complete_retrieve(f, 30);
	assert_string_equal(in(f, "TOP 1 007"), "");
	assert_true(req(f)->body_lines == 7);
	complete_retrieve(f, 30);
}

static void test_top_huge_line_count_saturates(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	/* fetchmail retrieves with TOP n 99999999. */
	assert_string_equal(in(f, "TOP 1 99999999"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_RETRIEVE);
	assert_true(req(f)->body_lines == 99999999);
	complete_retrieve(f, 100);
	assert_string_equal(in(f, "TOP 1 18446744073709551615"), "");
	assert_true(req(f)->body_lines == UINT64_MAX);
	complete_retrieve(f, 100);
	assert_string_equal(in(f, "TOP 1 99999999999999999999"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_RETRIEVE);
	assert_int_equal(req(f)->msg, 0);
	assert_true(req(f)->body_lines == UINT64_MAX);
	complete_retrieve(f, 100);
	assert_string_equal(in(f, "TOP 3 123456789012345678901234567890"), "");
	assert_int_equal(req(f)->msg, 2);
	assert_true(req(f)->body_lines == UINT64_MAX);
	complete_retrieve(f, 120);
}

static void test_top_bad_line_count_is_refused(void **state)
{
	struct fx *f = *state;
	static const char *const bad[] = {
		"TOP 1", "TOP 1 x", "TOP 1 -1", "TOP 1 +1", "TOP 1 1x", "TOP 1 0x10", "TOP 1 1.5",
	};
	start_and_login(f);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_err(in(f, bad[i]));
		assert_ready(f, POP3_STATE_TRANSACTION);
	}
}

/* ---- QUIT and UPDATE ------------------------------------------------------------------------- */

static void test_quit_in_authorization_closes_without_commit(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_ok(in(f, "QUIT"));
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
	assert_int_equal(pop3_session_state(f->s), POP3_STATE_CLOSED);
	pop3_session_commit_done(f->s, 0);
	assert_string_equal(take(f), "");
	assert_string_equal(in(f, "CAPA"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
}

static void test_quit_commits_deleted_and_seen_messages(void **state)
{
	struct fx *f = *state;
	fx_set_count(f, 5);
	start_and_login(f);
	/* 1: retrieved and kept; 2: deleted; 3: retrieved then deleted; 4: only TOP; 5: untouched.
	 */
	in(f, "RETR 1");
	complete_retrieve(f, 100);
	assert_ok(in(f, "DELE 2"));
	in(f, "RETR 3");
	complete_retrieve(f, 120);
	assert_ok(in(f, "DELE 3"));
	in(f, "TOP 4 1");
	complete_retrieve(f, 50);

	assert_string_equal(in(f, "QUIT"), "");
	const struct pop3_request *r = req(f);
	assert_int_equal(r->kind, POP3_REQ_COMMIT);
	assert_int_equal(pop3_session_state(f->s), POP3_STATE_UPDATE);
	assert_non_null(r->deleted);
	assert_non_null(r->seen);
	static const uint8_t want_deleted[5] = { 0, 1, 1, 0, 0 };
	static const uint8_t want_seen[5] = { 1, 0, 0, 0, 0 };
	for (size_t i = 0; i < 5; i++) {
		if (!r->deleted[i] != !want_deleted[i])
			fail_msg("deleted[%zu] = %u, want %u", i, r->deleted[i], want_deleted[i]);
		if (!r->seen[i] != !want_seen[i])
			fail_msg("seen[%zu] = %u, want %u", i, r->seen[i], want_seen[i]);
	}
	/* Nothing is read during UPDATE. */
	assert_string_equal(in(f, "RSET"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_COMMIT);

	pop3_session_commit_done(f->s, 0);
	assert_ok(take(f));
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
	assert_int_equal(pop3_session_state(f->s), POP3_STATE_CLOSED);
	assert_int_equal(pop3_session_stats(f->s)->deleted, 2);
}

static void test_quit_with_expire_zero_removes_retrieved_messages(void **state)
{
	struct fx *f = *state;
	f->cfg.expire = 0;
	fx_set_count(f, 4);
	start_and_login(f);
	in(f, "RETR 1");
	complete_retrieve(f, 100);
	in(f, "RETR 2");
	complete_retrieve(f, 110);
	assert_ok(in(f, "DELE 2"));
	assert_ok(in(f, "DELE 3"));
	assert_string_equal(in(f, "QUIT"), "");
	const struct pop3_request *r = req(f);
	assert_int_equal(r->kind, POP3_REQ_COMMIT);
	static const uint8_t want_deleted[4] = { 1, 1, 1, 0 };
	for (size_t i = 0; i < 4; i++) {
		if (!r->deleted[i] != !want_deleted[i])
			fail_msg("deleted[%zu] = %u, want %u", i, r->deleted[i], want_deleted[i]);
		if (r->seen[i])
			fail_msg("seen[%zu] set for a message that is removed or unread", i);
	}
	pop3_session_commit_done(f->s, 0);
	assert_ok(take(f));
	assert_int_equal(pop3_session_stats(f->s)->deleted, 3);
}

static void test_rset_before_quit_removes_nothing(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_ok(in(f, "DELE 1"));
	assert_ok(in(f, "DELE 2"));
	assert_ok(in(f, "RSET"));
	assert_string_equal(in(f, "QUIT"), "");
	const struct pop3_request *r = req(f);
	assert_int_equal(r->kind, POP3_REQ_COMMIT);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(r->deleted[i], 0);
	pop3_session_commit_done(f->s, 0);
	assert_ok(take(f));
	assert_int_equal(pop3_session_stats(f->s)->deleted, 0);
}

static void test_commit_failure_answers_sys_temp(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_ok(in(f, "DELE 1"));
	assert_ok(in(f, "DELE 2"));
	assert_string_equal(in(f, "QUIT"), "");
	assert_int_equal(req(f)->kind, POP3_REQ_COMMIT);
	pop3_session_commit_done(f->s, 2);
	const char *text = take(f);
	assert_prefix(text, "-ERR [SYS/TEMP]");
	assert_single_line(text);
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
	assert_int_equal(pop3_session_state(f->s), POP3_STATE_CLOSED);
	assert_int_equal(pop3_session_stats(f->s)->deleted, 0);
}

static void test_partial_commit_failure_counts_removed_messages(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	assert_ok(in(f, "DELE 1"));
	assert_ok(in(f, "DELE 2"));
	assert_ok(in(f, "DELE 3"));
	in(f, "QUIT");
	pop3_session_commit_done(f->s, 1);
	assert_prefix(take(f), "-ERR [SYS/TEMP]");
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
	assert_int_equal(pop3_session_stats(f->s)->deleted, 2);
}

/* ---- bad input and limits -------------------------------------------------------------------- */

static void test_overlong_line_is_refused_mentioning_the_limit(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	pop3_session_input_overlong(f->s);
	const char *text = take(f);
	assert_err(text);
	assert_contains(text, "255");
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	login_as(f, "alice");
	pop3_session_input_overlong(f->s);
	text = take(f);
	assert_err(text);
	assert_contains(text, "255");
	assert_ready(f, POP3_STATE_TRANSACTION);
}

static void test_overlong_line_forgets_pending_user(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_ok(in(f, "USER alice"));
	pop3_session_input_overlong(f->s);
	assert_err(take(f));
	assert_prefix(in(f, "PASS secret"), "-ERR [AUTH]");
	assert_ready(f, POP3_STATE_AUTHORIZATION);
}

static void test_empty_and_control_character_lines_are_refused(void **state)
{
	struct fx *f = *state;
	fx_start(f);
	assert_err(in(f, ""));
	assert_err(in(f, "   "));
	assert_err(in_n(f, "US\0ER alice", 11));
	assert_err(in(f, "USER\talice"));
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	/* A user name with a control character is not accepted, so PASS has no USER. */
	assert_err(in(f, "USER ali\x01"));
	assert_prefix(in(f, "PASS secret"), "-ERR [AUTH]");
	login_as(f, "alice");
	assert_err(in(f, "STAT\r"));
	assert_err(in_n(f, "STAT\0", 5));
	assert_err(in(f, "RETR\t1"));
	assert_err(in(f, "DELE 1\x7f"));
	assert_ready(f, POP3_STATE_TRANSACTION);
	assert_string_equal(in(f, "STAT"), "+OK 3 330\r\n");
	assert_int_equal(pop3_session_stats(f->s)->bad_commands, 9);
}

static void test_too_many_bad_commands_close_the_session(void **state)
{
	struct fx *f = *state;
	f->cfg.max_bad_commands = 4;
	fx_start(f);
	assert_err(in(f, "FOO"));
	assert_err(in(f, ""));
	pop3_session_input_overlong(f->s);
	assert_err(take(f));
	assert_ready(f, POP3_STATE_AUTHORIZATION);
	assert_int_equal(pop3_session_stats(f->s)->bad_commands, 3);
	/* The fourth (a command in the wrong state) is one too many. */
	const char *text = in(f, "STAT");
	assert_err(text);
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
	assert_int_equal(pop3_session_state(f->s), POP3_STATE_CLOSED);
	assert_int_equal(pop3_session_stats(f->s)->bad_commands, 4);
	assert_string_equal(in(f, "CAPA"), "");
	pop3_session_input_overlong(f->s);
	assert_string_equal(take(f), "");
}

static void test_bad_commands_in_transaction_close_without_commit(void **state)
{
	struct fx *f = *state;
	f->cfg.max_bad_commands = 2;
	start_and_login(f);
	assert_ok(in(f, "DELE 1"));
	assert_err(in(f, "LAST"));
	assert_ready(f, POP3_STATE_TRANSACTION);
	assert_err(in(f, "RETR x"));
	assert_int_equal(req(f)->kind, POP3_REQ_CLOSE);
	assert_int_equal(pop3_session_state(f->s), POP3_STATE_CLOSED);
	/* A commit completion now is ignored: nothing is removed. */
	pop3_session_commit_done(f->s, 0);
	assert_string_equal(take(f), "");
	assert_int_equal(pop3_session_stats(f->s)->deleted, 0);
}

/* ---- pipelining ------------------------------------------------------------------------------ */

/*
 * Plays the I/O layer: feeds the next line only while no request is pending, completes each
 * request (the body of message n shows up as "<body n>"), and returns the transcript.
 */
static const char *run_pipeline(struct fx *f, const char *const *lines, size_t n)
{
	size_t next = 0;
	buf_clear(&f->transcript);
	for (int guard = 0; guard < 100000; guard++) {
		const struct pop3_request *r = req(f);
		switch (r->kind) {
		case POP3_REQ_NONE:
			if (next == n) {
				buf_append_byte(&f->transcript, '\0');
				return f->transcript.data;
			}
			pop3_session_input(f->s, lines[next], strlen(lines[next]));
			next++;
			break;
		case POP3_REQ_LOGIN:
			pop3_session_login_done(f->s, POP3_LOGIN_OK, &f->md);
			break;
		case POP3_REQ_RETRIEVE:
			pop3_session_retrieve_begin(f->s, true);
			buf_append_str(&f->transcript, take(f));
			buf_printf(&f->transcript, "<body %zu>\r\n", r->msg + 1);
			pop3_session_retrieve_end(f->s, true, fake_size(f, r->msg));
			break;
		case POP3_REQ_CONTINUE:
			pop3_session_continue(f->s);
			break;
		case POP3_REQ_COMMIT:
			pop3_session_commit_done(f->s, 0);
			break;
		case POP3_REQ_SASL_LOOKUP: {
			struct scram_record rec = {.iterations = 4096, .salt_len = 1};
			pop3_session_sasl_lookup_done(f->s, &rec);
			break;
		}
		case POP3_REQ_STARTTLS:
			pop3_session_tls_done(f->s, true, NULL);
			break;
		case POP3_REQ_CLOSE:
			buf_append_str(&f->transcript, take(f));
			buf_append_str(&f->transcript, "<closed>\r\n");
			buf_append_byte(&f->transcript, '\0');
			return f->transcript.data;
		}
		buf_append_str(&f->transcript, take(f));
	}
	fail_msg("pipeline never settles");
	return NULL;
}

/* Compare a transcript with expected lines; a line ending in '*' is a prefix. */
static void assert_transcript(const char *text, const char *const *want, size_t n)
{
	const char *p = text;
	for (size_t i = 0; i < n; i++) {
		const char *eol = strstr(p, "\r\n");
		if (eol == NULL)
			fail_msg("transcript ends before line %zu (\"%s\"): \"%s\"", i, want[i],
				 text);
		size_t len = (size_t)(eol - p), wlen = strlen(want[i]);
		bool ok = (wlen > 0 && want[i][wlen - 1] == '*')
				  ? (len >= wlen - 1 && memcmp(p, want[i], wlen - 1) == 0)
				  : (len == wlen && memcmp(p, want[i], wlen) == 0);
		if (!ok)
			fail_msg("line %zu: expected \"%s\", got \"%.*s\" in:\n%s", i, want[i],
				 (int)len, p, text);
		p = eol + 2;
	}
	if (*p != '\0')
		fail_msg("unexpected trailing output \"%s\"", p);
}

static void test_pipelined_commands_are_answered_in_order(void **state)
{
	struct fx *f = *state;
	static const char *const lines[] = {
		"USER alice", "PASS secret", "STAT", "LIST 2", "RETR 1", "DELE 1", "LIST 1",
		"UIDL 3",     "TOP 2 0",     "LIST", "STAT",   "FOO",    "QUIT",
	};
	static const char *const want[] = {
		"+OK *",                                    /* USER */
		"+OK *",                                    /* PASS */
		"+OK 3 330",                                /* STAT */
		"+OK 2 110",                                /* LIST 2 */
		"+OK 100 octets", "<body 1>", ".",          /* RETR 1 */
		"+OK *",                                    /* DELE 1 */
		"-ERR *",                                   /* LIST 1 */
		"+OK 3 uid-3",                              /* UIDL 3 */
		"+OK *",          "<body 2>", ".",          /* TOP 2 0 */
		"+OK *",          "2 110",    "3 120", ".", /* LIST */
		"+OK 2 230",                                /* STAT */
		"-ERR *",                                   /* FOO */
		"+OK *",                                    /* QUIT */
		"<closed>",
	};
	fx_start(f);
	assert_transcript(run_pipeline(f, lines, sizeof(lines) / sizeof(lines[0])), want,
			  sizeof(want) / sizeof(want[0]));
}

static void test_command_behind_long_listing_is_answered_after_it(void **state)
{
	struct fx *f = *state;
	static const char *const lines[] = { "USER alice", "PASS secret", "UIDL", "STAT" };
	fx_set_count(f, 3 * POP3_LISTING_BATCH);
	fx_start(f);
	const char *text = run_pipeline(f, lines, sizeof(lines) / sizeof(lines[0]));
	char last[64];
	snprintf(last, sizeof(last), "%d uid-%d\r\n.\r\n+OK %d ", 3 * POP3_LISTING_BATCH,
		 3 * POP3_LISTING_BATCH, 3 * POP3_LISTING_BATCH);
	assert_contains(text, last);
	/* The STAT answer is the very last line. */
	const char *stat = strstr(text, last) + strlen(last) - strlen("+OK 768 ");
	assert_single_line(stat);
}

/* ---- stats ----------------------------------------------------------------------------------- */

static void test_stats_count_retrievals_bytes_deletions_and_bad_commands(void **state)
{
	struct fx *f = *state;
	start_and_login(f);
	in(f, "RETR 1");
	complete_retrieve(f, 100);
	in(f, "RETR 2");
	complete_retrieve(f, 110);
	in(f, "TOP 3 0");
	complete_retrieve(f, 30);
	in(f, "RETR 3");
	pop3_session_retrieve_begin(f->s, false); /* not retrieved */
	take(f);
	assert_ok(in(f, "DELE 1"));
	assert_err(in(f, "FOO"));
	assert_err(in(f, "LAST"));
	assert_err(in(f, "RETR x"));
	const struct pop3_stats *st = pop3_session_stats(f->s);
	assert_int_equal(st->retrieved, 2);
	assert_int_equal(st->retrieved_bytes, 240);
	assert_int_equal(st->bad_commands, 3);
	assert_int_equal(st->deleted, 0);
	assert_int_equal(st->auth_failures, 0);
	in(f, "QUIT");
	pop3_session_commit_done(f->s, 0);
	assert_ok(take(f));
	st = pop3_session_stats(f->s);
	assert_int_equal(st->deleted, 1);
	/* USER PASS RETR RETR TOP RETR DELE FOO LAST RETR QUIT */
	assert_int_equal(st->commands, 11);
}

/* ---- the (line, len) contract ---------------------------------------------------------------- */

/* Feed a line from a heap block of exactly len bytes: no NUL, no CRLF behind it. */
static void feed_exact(struct pop3_session *s, const char *line)
{
	size_t len = strlen(line);
	char *copy = malloc(len ? len : 1);
	if (copy == NULL)
		_exit(3);
	memcpy(copy, line, len);
	pop3_session_input(s, copy, len);
	free(copy);
}

static void settle_quietly(struct fx *f)
{
	for (int guard = 0; guard < 100000; guard++) {
		const struct pop3_request *r = pop3_session_request(f->s);
		switch (r->kind) {
		case POP3_REQ_NONE:
		case POP3_REQ_CLOSE:
			buf_clear(pop3_session_output(f->s));
			return;
		case POP3_REQ_LOGIN:
			pop3_session_login_done(f->s,
						strcmp(r->user, "alice") == 0 ? POP3_LOGIN_OK
									      : POP3_LOGIN_FAILED,
						&f->md);
			break;
		case POP3_REQ_RETRIEVE:
			pop3_session_retrieve_begin(f->s, true);
			pop3_session_retrieve_end(f->s, true, 10);
			break;
		case POP3_REQ_CONTINUE:
			pop3_session_continue(f->s);
			break;
		case POP3_REQ_COMMIT:
			pop3_session_commit_done(f->s, 0);
			break;
		case POP3_REQ_SASL_LOOKUP: {
			struct scram_record rec = {.iterations = 4096, .salt_len = 1};
			pop3_session_sasl_lookup_done(f->s, &rec);
			break;
		}
		case POP3_REQ_STARTTLS:
			pop3_session_tls_done(f->s, true, NULL);
			break;
		}
		buf_clear(pop3_session_output(f->s));
	}
	_exit(4);
}

static void test_input_is_not_read_beyond_its_length(void **state)
{
	struct fx *f = *state;
	static const char *const lines[] = {
		"CAPA",
		"AUTH",
		"AUTH PLAIN " PLAIN_TEST_SECRET,
		"AUTH PLAIN",
		PLAIN_TEST_SECRET,
		"AUTH PLAIN =",
		"AUTH LOGIN",
		"dGVzdA==",
		"c2VjcmV0",
		"AUTH LOGIN dGVzdA==",
		"*",
		"AUTH PLAIN",
		"%%%%",
		"APOP mrose " APOP_DIGEST,
		"APOP mrose 123",
		"USER bob",
		"PASS x",
		"PASS",
		"STAT",
		"",
		"FOO",
		"USER alice",
		"PASS secret word",
		"STAT",
		"LIST",
		"LIST 1",
		"LIST 12",
		"UIDL",
		"UIDL 2",
		"UIDL 99999999999999999999",
		"RETR 1",
		"RETR 0",
		"TOP 1 5",
		"TOP 2 0",
		"TOP 2 99999999999999999999",
		"TOP 1 x",
		"TOP 1 5x",
		"DELE 3",
		"DELE 3",
		"NOOP",
		"RSET",
		"CAPA",
		"LAST",
		"QUIT",
	};
	f->cfg.apop = true;
	f->cfg.stls = true;
	f->cfg.max_auth_failures = 100;
	f->info.apop_timestamp = APOP_TS;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Child: no cmocka asserts here; AddressSanitizer reports any over-read and
		 * exits non-zero. _exit skips the leak check of the parent's objects. */
		f->s = pop3_session_new(&f->cfg, &f->info);
		buf_clear(pop3_session_output(f->s));
		for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
			feed_exact(f->s, lines[i]);
			settle_quietly(f);
		}
		_exit(pop3_session_state(f->s) == POP3_STATE_CLOSED ? 0 : 5);
	}
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("reading exact-length lines failed (status 0x%x); see the sanitizer "
			 "(or valgrind) report above",
			 (unsigned)status);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_greeting_is_one_ok_line),
		T(test_greeting_carries_apop_timestamp_when_apop_enabled),
		T(test_greeting_has_no_timestamp_without_apop),
		T(test_authorization_rejects_transaction_commands),
		T(test_authorization_accepts_its_commands),
		T(test_transaction_accepts_its_commands),
		T(test_transaction_rejects_authorization_commands),
		T(test_unknown_commands_get_err_in_both_states),
		T(test_keywords_are_case_insensitive),
		T(test_auth_mechanism_names_are_case_insensitive),
		T(test_status_lines_start_with_ok_or_err_and_a_space),
		T(test_noop_reply_is_ok_space_text),
		T(test_wrong_argument_counts_are_rejected),
		T(test_extra_spaces_are_tolerated),
		T(test_user_pass_requests_login_with_full_password),
		T(test_pass_without_user_is_refused),
		T(test_pass_must_immediately_follow_user),
		T(test_pass_after_failed_login_needs_user_again),
		T(test_overlong_user_name_is_refused),
		T(test_apop_requests_login_when_enabled),
		T(test_apop_with_malformed_digest_is_refused),
		T(test_apop_is_refused_when_disabled),
		T(test_input_while_request_pending_is_ignored),
		T(test_login_ok_reports_count_and_octets),
		T(test_login_failures_carry_response_codes),
		T(test_too_many_auth_failures_close_the_session),
		T(test_capa_has_no_empty_sasl_line),
		T(test_plaintext_auth_is_refused_on_insecure_connection),
		T(test_plaintext_auth_is_allowed_when_secure),
		T(test_plaintext_auth_is_allowed_on_trusted_network),
		T(test_stls_is_listed_until_tls_is_active),
		T(test_stls_is_refused_on_secure_connection),
		T(test_stls_is_refused_when_not_offered),
		T(test_stls_forgets_user_given_before_tls),
		T(test_stls_handshake_failure_closes),
		T(test_capa_lists_base_capabilities),
		T(test_capa_lists_configured_capabilities),
		T(test_capa_expire_never),
		T(test_capa_expire_zero),
		T(test_capa_in_transaction_matches_authorization),
		T(test_bare_auth_lists_mechanisms),
		T(test_auth_unknown_mechanism_is_refused),
		T(test_auth_plain_with_initial_response),
		T(test_auth_plain_without_initial_response),
		T(test_auth_empty_initial_response_is_equals_sign),
		T(test_auth_star_cancels),
		T(test_auth_invalid_base64_is_refused),
		T(test_auth_plain_malformed_message_is_refused),
		T(test_auth_plain_accepts_255_octet_fields),
		T(test_auth_plain_authzid_must_match_authcid),
		T(test_auth_login_asks_for_user_and_password),
		T(test_auth_login_takes_user_name_as_initial_response),
		T(test_auth_login_empty_password_is_refused),
		T(test_line_limit_is_255_for_commands_and_larger_in_sasl),
		T(test_stat_counts_messages_and_octets),
		T(test_list_and_uidl_without_argument),
		T(test_list_and_uidl_with_argument),
		T(test_invalid_message_numbers_are_refused),
		T(test_leading_zeros_in_message_numbers_are_accepted),
		T(test_deleted_message_is_invisible_and_refused),
		T(test_dele_twice_is_refused),
		T(test_dele_then_rset_restores_messages),
		T(test_message_numbers_do_not_shift_after_dele),
		T(test_long_listings_continue_in_batches),
		T(test_listing_of_exactly_one_batch_is_complete),
		T(test_listing_of_one_more_than_a_batch_is_complete),
		T(test_listing_with_many_deleted_messages_is_complete),
		T(test_continue_without_listing_does_nothing),
		T(test_empty_maildrop),
		T(test_retr_requests_whole_message),
		T(test_retr_open_failure_answers_sys_temp),
		T(test_retr_open_failure_names_the_requested_message),
		T(test_retr_read_failure_closes_without_commit),
		T(test_top_requests_headers_and_n_body_lines),
		T(test_top_huge_line_count_saturates),
		T(test_top_bad_line_count_is_refused),
		T(test_quit_in_authorization_closes_without_commit),
		T(test_quit_commits_deleted_and_seen_messages),
		T(test_quit_with_expire_zero_removes_retrieved_messages),
		T(test_rset_before_quit_removes_nothing),
		T(test_commit_failure_answers_sys_temp),
		T(test_partial_commit_failure_counts_removed_messages),
		T(test_overlong_line_is_refused_mentioning_the_limit),
		T(test_overlong_line_forgets_pending_user),
		T(test_empty_and_control_character_lines_are_refused),
		T(test_too_many_bad_commands_close_the_session),
		T(test_bad_commands_in_transaction_close_without_commit),
		T(test_pipelined_commands_are_answered_in_order),
		T(test_command_behind_long_listing_is_answered_after_it),
		T(test_stats_count_retrievals_bytes_deletions_and_bad_commands),
		T(test_input_is_not_read_beyond_its_length),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
