/*
 * session.c - POP3 server state machine (RFC 1939, 2449, 3206, 2595 §4, 5034).
 *
 * Dispatch is a table: keyword, states where it is valid, argument counts,
 * handler. Handlers append responses to s->out and may leave one request for
 * the I/O layer; until that request is completed no further line is read.
 */
#include "pop3/session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/sasl.h"
#include "common/base64.h"
#include "common/bounds.h"
#include "common/strutil.h"
#include "common/xmalloc.h"
#include "pop3/command.h"

struct pop3_session {
	const struct pop3_settings *cfg;
	struct pop3_conn_info info;
	char *apop_timestamp;
	enum pop3_state state;
	struct buf out;
	struct pop3_request req;

	/* AUTHORIZATION */
	char *user;          /* after a successful USER, waiting for PASS */
	char *login_user;    /* user of the login in progress / done */
	char *secret;        /* password or digest of the login in progress */
	char *challenge;     /* CRAM-MD5 challenge of the login in progress */
	bool in_sasl;        /* reading SASL responses, not commands */
	struct sasl_server sasl;
	struct sasl_channel_binding cb;

	/* TRANSACTION */
	struct pop3_maildrop md;
	uint8_t *deleted;
	uint8_t *retrieved;
	size_t deleted_count;
	uint64_t deleted_size;
	uint8_t *commit_deleted;
	uint8_t *commit_seen;

	/* a LIST/UIDL listing being produced in batches */
	enum { LISTING_NONE, LISTING_LIST, LISTING_UIDL } listing;
	size_t listing_next;

	struct pop3_stats stats;
	const char *close_reason;
};

#define ST_AUTH (1u << POP3_STATE_AUTHORIZATION)
#define ST_TRANS (1u << POP3_STATE_TRANSACTION)

/* ---- output helpers ------------------------------------------------------ */

static void reply(struct pop3_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void reply(struct pop3_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t start = s->out.len;
	buf_vprintf(&s->out, fmt, ap);
	va_end(ap);
	/* RFC 2449 §4: a response line is at most 512 octets with its CRLF. */
	if (s->out.len - start > POP3_MAX_RESPONSE_LINE - 2)
		s->out.len = start + POP3_MAX_RESPONSE_LINE - 2;
	buf_append(&s->out, "\r\n", 2);
}

static void request(struct pop3_session *s, enum pop3_request_kind kind)
{
	memset(&s->req, 0, sizeof(s->req));
	s->req.kind = kind;
}

static void close_after(struct pop3_session *s, const char *reason)
{
	s->close_reason = reason;
	s->state = POP3_STATE_CLOSED;
	request(s, POP3_REQ_CLOSE);
}

static void wipe_str(char **p)
{
	if (*p != NULL) {
		OPENSSL_cleanse(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

static void bad_command(struct pop3_session *s, const char *text)
{
	s->stats.bad_commands++;
	if (s->stats.bad_commands >= s->cfg->max_bad_commands) {
		reply(s, "-ERR %s; too many bad commands, closing connection", text);
		close_after(s, "too many bad commands");
		return;
	}
	reply(s, "-ERR %s", text);
}

/* ---- the message list ------------------------------------------------------ */

static uint64_t msg_size(const struct pop3_session *s, size_t i)
{
	return s->md.size(s->md.ctx, i);
}

static size_t visible_count(const struct pop3_session *s)
{
	return s->md.count - s->deleted_count;
}

static uint64_t visible_size(const struct pop3_session *s)
{
	uint64_t total = 0;
	for (size_t i = 0; i < s->md.count; i++)
		if (!s->deleted[i])
			total += msg_size(s, i);
	return total;
}

/*
 * A message-number argument: decimal digits, 1..N (RFC 1939 §4: numbers are
 * fixed for the session); a deleted message may not be referenced (§5).
 * Returns 0 with *index set, or -1 after writing the -ERR.
 */
static int parse_msg(struct pop3_session *s, const struct pop3_arg *arg, size_t *index)
{
	uint64_t n;
	if (parse_u64_n(arg->p, arg->len, UINT64_MAX, &n) < 0) {
		bad_command(s, "Invalid message number");
		return -1;
	}
	if (n == 0 || n > s->md.count) {
		reply(s, "-ERR No such message");
		return -1;
	}
	if (s->deleted[n - 1]) {
		reply(s, "-ERR Message %llu already deleted", (unsigned long long)n);
		return -1;
	}
	*index = (size_t)(n - 1);
	return 0;
}

/* ---- capabilities ----------------------------------------------------------- */

static bool plaintext_allowed(const struct pop3_session *s)
{
	return s->info.secure || s->info.plaintext_ok;
}

/* Is this mechanism offered on this connection now? */
static bool mechanism_usable(const struct pop3_session *s, enum sasl_mech m)
{
	if (!(s->cfg->mechanisms & (1u << m)))
		return false;
	switch (m) {
	case SASL_MECH_SCRAM_SHA_256_PLUS:
		return s->info.secure && (s->cb.exporter_len > 0 || s->cb.end_point_len > 0);
	case SASL_MECH_SCRAM_SHA_256:
		return true;
	case SASL_MECH_PLAIN:
	case SASL_MECH_LOGIN:
		return plaintext_allowed(s);
	case SASL_MECH_CRAM_MD5:
		return true;
	default:
		return false;
	}
}

/* Mechanisms usable now: " A B C" (one_per_line=false) or one per line. */
static void list_mechanisms(struct pop3_session *s, bool one_per_line)
{
	for (int m = 0; m < SASL_MECH_COUNT; m++) {
		if (!mechanism_usable(s, (enum sasl_mech)m))
			continue;
		if (!one_per_line)
			buf_append_str(&s->out, " ");
		buf_append_str(&s->out, sasl_mech_name((enum sasl_mech)m));
		if (one_per_line)
			buf_append_str(&s->out, "\r\n");
	}
}

/* RFC 2449 §5: advertise only what works now; what AUTHORIZATION showed is
 * shown in TRANSACTION too (the conditions below do not change at login). */
static void cmd_capa(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	reply(s, "+OK Capability list follows");
	reply(s, "TOP");
	if (plaintext_allowed(s))
		reply(s, "USER");
	bool any_mechanism = false;
	for (int m = 0; m < SASL_MECH_COUNT; m++)
		any_mechanism = any_mechanism || mechanism_usable(s, (enum sasl_mech)m);
	if (any_mechanism) { /* RFC 2449 §6.3: the SASL tag lists mechanisms */
		buf_append_str(&s->out, "SASL");
		list_mechanisms(s, false);
		buf_append_str(&s->out, "\r\n");
	}
	reply(s, "RESP-CODES");
	reply(s, "AUTH-RESP-CODE");
	reply(s, "PIPELINING");
	reply(s, "UIDL");
	if (s->cfg->stls && !s->info.secure && s->state == POP3_STATE_AUTHORIZATION)
		reply(s, "STLS");
	if (s->cfg->login_delay > 0)
		reply(s, "LOGIN-DELAY %u", s->cfg->login_delay);
	if (s->cfg->expire == -2)
		reply(s, "EXPIRE NEVER");
	else if (s->cfg->expire >= 0)
		reply(s, "EXPIRE %d", s->cfg->expire);
	if (s->cfg->implementation[0] != '\0')
		reply(s, "IMPLEMENTATION %s", s->cfg->implementation);
	reply(s, ".");
}

/* ---- AUTHORIZATION ---------------------------------------------------------- */

static void start_login(struct pop3_session *s, enum pop3_login_method method,
			const char *mechanism, const char *user, size_t ulen, const char *secret,
			size_t slen)
{
	wipe_str(&s->login_user);
	wipe_str(&s->secret);
	s->login_user = xstrndup(user, ulen);
	s->secret = xstrndup(secret, slen);
	request(s, POP3_REQ_LOGIN);
	s->req.method = method;
	s->req.mechanism = mechanism;
	s->req.user = s->login_user;
	s->req.secret = s->secret;
	s->req.challenge = method == POP3_LOGIN_APOP ? s->apop_timestamp : s->challenge;
}

static void refuse_plaintext(struct pop3_session *s)
{
	/* RFC 8314 / RFC 2595 §2.3: no cleartext passwords on an open line. */
	reply(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections%s",
	      s->cfg->stls ? " (use STLS)" : "");
}

static void cmd_user(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (!plaintext_allowed(s)) {
		refuse_plaintext(s);
		return;
	}
	if (cmd->argv[0].len > AUTH_MAX_USERNAME) {
		reply(s, "-ERR [AUTH] User name too long");
		return;
	}
	s->user = xstrndup(cmd->argv[0].p, cmd->argv[0].len);
	/* RFC 1939 §7 / RFC 2449 §8.1.1: do not reveal whether the user exists. */
	reply(s, "+OK Send your password");
}

static void cmd_pass(struct pop3_session *s, const struct pop3_command *cmd, char *user)
{
	/* RFC 1939 §7: the password is the rest of the line, spaces included. */
	if (cmd->rest.len == 0 || cmd->rest.len > AUTH_MAX_PASSWORD) {
		free(user);
		reply(s, "-ERR [AUTH] Password missing or too long");
		return;
	}
	start_login(s, POP3_LOGIN_USERPASS, "USER", user, strlen(user), cmd->rest.p, cmd->rest.len);
	free(user);
}

static bool is_hex(const struct pop3_arg *a)
{
	for (size_t i = 0; i < a->len; i++)
		if (!((a->p[i] >= '0' && a->p[i] <= '9') || (a->p[i] >= 'a' && a->p[i] <= 'f') ||
		      (a->p[i] >= 'A' && a->p[i] <= 'F')))
			return false;
	return true;
}

static void cmd_apop(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (!s->cfg->apop) {
		bad_command(s, "APOP not enabled");
		return;
	}
	/* RFC 1939 §7: the digest is 32 hex digits of MD5. */
	if (cmd->argv[1].len != 32 || !is_hex(&cmd->argv[1]) || cmd->argv[0].len > AUTH_MAX_USERNAME) {
		reply(s, "-ERR [AUTH] Invalid APOP arguments");
		return;
	}
	start_login(s, POP3_LOGIN_APOP, "APOP", cmd->argv[0].p, cmd->argv[0].len, cmd->argv[1].p,
		    cmd->argv[1].len);
}

static void sasl_finish(struct pop3_session *s)
{
	s->in_sasl = false;
	sasl_server_clear(&s->sasl);
}

/* Run one step of the mechanism and frame what it says (RFC 5034 §4). */
static void sasl_advance(struct pop3_session *s, const char *in, size_t len, bool present)
{
	enum sasl_status st = sasl_server_step(&s->sasl, in, len, present);
	if (st == SASL_CONTINUE) {
		s->in_sasl = true;
		buf_append_str(&s->out, "+ ");
		base64_encode(s->sasl.challenge.data, s->sasl.challenge.len, &s->out);
		buf_append_str(&s->out, "\r\n");
		return;
	}
	if (st == SASL_FAIL) {
		reply(s, "-ERR [AUTH] %s", s->sasl.error);
		s->stats.sasl_failures++;
		s->stats.last_sasl_mechanism = sasl_mech_name(s->sasl.mech);
		s->stats.last_sasl_error = s->sasl.error;
		sasl_finish(s);
		return;
	}
	if (st == SASL_NEED_LOOKUP) {
		/* SCRAM: the I/O layer fetches the stored keys. */
		request(s, POP3_REQ_SASL_LOOKUP);
		s->req.user = s->sasl.authcid;
		s->req.mechanism = sasl_mech_name(s->sasl.mech);
		return;
	}
	/* No proxy authorization: an authzid must name the user itself. */
	if (s->sasl.authzid != NULL && s->sasl.authzid[0] != '\0' &&
	    strcmp(s->sasl.authzid, s->sasl.authcid) != 0) {
		reply(s, "-ERR [AUTH] Authorization identity not permitted");
		sasl_finish(s);
		return;
	}
	const char *mech = sasl_mech_name(s->sasl.mech);
	const char *user = s->sasl.authcid;
	switch (s->sasl.mech) {
	case SASL_MECH_CRAM_MD5:
		wipe_str(&s->challenge);
		s->challenge = xstrdup(s->sasl.cram_challenge);
		start_login(s, POP3_LOGIN_CRAM, mech, user, strlen(user), s->sasl.cram_digest, 32);
		break;
	case SASL_MECH_SCRAM_SHA_256:
	case SASL_MECH_SCRAM_SHA_256_PLUS:
		start_login(s, POP3_LOGIN_VERIFIED, mech, user, strlen(user), "", 0);
		s->req.verified = s->sasl.verified;
		break;
	default:
		start_login(s, POP3_LOGIN_SASL, mech, user, strlen(user), s->sasl.password,
			    strlen(s->sasl.password));
	}
	sasl_finish(s);
}

/* A SASL response line: base64, "*" to cancel (RFC 5034 §4). */
static void sasl_response(struct pop3_session *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '*') {
		reply(s, "-ERR Authentication cancelled");
		sasl_finish(s);
		return;
	}
	struct buf decoded = BUF_INIT;
	if (base64_decode(line, len, &decoded) < 0) {
		reply(s, "-ERR [AUTH] Invalid base64 in authentication response");
		sasl_finish(s);
	} else {
		sasl_advance(s, decoded.data ? decoded.data : "", decoded.len, true);
	}
	buf_wipe(&decoded);
	buf_free(&decoded);
}

static void cmd_auth(struct pop3_session *s, const struct pop3_command *cmd)
{
	if (cmd->argc == 0) {
		/* Pre-RFC 5034 clients (mutt without CAPA, Outlook) list mechanisms
		 * with a bare AUTH: answer with a multi-line list. */
		reply(s, "+OK Supported mechanisms follow");
		list_mechanisms(s, true);
		reply(s, ".");
		return;
	}
	int mech = sasl_mech_by_name(cmd->argv[0].p, cmd->argv[0].len);
	if (mech >= 0 && sasl_mech_is_plaintext((enum sasl_mech)mech) && !plaintext_allowed(s)) {
		refuse_plaintext(s);
		return;
	}
	if (mech < 0 || !mechanism_usable(s, (enum sasl_mech)mech)) {
		reply(s, "-ERR Unsupported authentication mechanism");
		return;
	}
	sasl_server_start(&s->sasl, (enum sasl_mech)mech, &s->cb);
	if (cmd->argc < 2) {
		sasl_advance(s, "", 0, false);
		return;
	}
	/* "=" is a present but empty initial response. */
	if (cmd->argv[1].len == 1 && cmd->argv[1].p[0] == '=') {
		sasl_advance(s, "", 0, true);
		return;
	}
	sasl_response(s, cmd->argv[1].p, cmd->argv[1].len);
}

static void cmd_stls(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	if (s->info.secure) {
		reply(s, "-ERR Command not permitted when TLS active");
		return;
	}
	if (!s->cfg->stls) {
		reply(s, "-ERR TLS not available");
		return;
	}
	/* RFC 2595 §4: TLS starts right after this line. The caller discards any
	 * input that arrived after STLS (command injection). */
	reply(s, "+OK Begin TLS negotiation");
	request(s, POP3_REQ_STARTTLS);
}

/* ---- TRANSACTION -------------------------------------------------------------- */

static void cmd_stat(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	/* RFC 1939 §5: exactly "+OK nn mm", deleted messages excluded. */
	reply(s, "+OK %zu %llu", visible_count(s), (unsigned long long)visible_size(s));
}

/* Emit the next batch of a listing; ask to be called again if not done. */
static void listing_step(struct pop3_session *s)
{
	size_t emitted = 0;
	while (s->listing_next < s->md.count && emitted < POP3_LISTING_BATCH) {
		size_t i = s->listing_next++;
		if (s->deleted[i])
			continue;
		if (s->listing == LISTING_LIST)
			reply(s, "%zu %llu", i + 1, (unsigned long long)msg_size(s, i));
		else
			reply(s, "%zu %s", i + 1, s->md.uidl(s->md.ctx, i));
		emitted++;
	}
	if (s->listing_next < s->md.count) {
		request(s, POP3_REQ_CONTINUE);
		return;
	}
	reply(s, ".");
	s->listing = LISTING_NONE;
	request(s, POP3_REQ_NONE);
}

static void cmd_list(struct pop3_session *s, const struct pop3_command *cmd)
{
	size_t i;
	if (cmd->argc == 1) {
		if (parse_msg(s, &cmd->argv[0], &i) == 0)
			reply(s, "+OK %zu %llu", i + 1, (unsigned long long)msg_size(s, i));
		return;
	}
	reply(s, "+OK %zu messages (%llu octets)", visible_count(s),
	      (unsigned long long)visible_size(s));
	s->listing = LISTING_LIST;
	s->listing_next = 0;
	listing_step(s);
}

static void cmd_uidl(struct pop3_session *s, const struct pop3_command *cmd)
{
	size_t i;
	if (cmd->argc == 1) {
		if (parse_msg(s, &cmd->argv[0], &i) == 0)
			reply(s, "+OK %zu %s", i + 1, s->md.uidl(s->md.ctx, i));
		return;
	}
	reply(s, "+OK Unique-ID listing follows");
	s->listing = LISTING_UIDL;
	s->listing_next = 0;
	listing_step(s);
}

static void retrieve(struct pop3_session *s, size_t i, uint64_t lines, bool is_retr)
{
	request(s, POP3_REQ_RETRIEVE);
	s->req.msg = i;
	s->req.body_lines = lines;
	s->req.is_retr = is_retr;
}

static void cmd_retr(struct pop3_session *s, const struct pop3_command *cmd)
{
	size_t i;
	if (parse_msg(s, &cmd->argv[0], &i) == 0)
		retrieve(s, i, UINT64_MAX, true);
}

static void cmd_top(struct pop3_session *s, const struct pop3_command *cmd)
{
	size_t i;
	uint64_t lines;
	const struct pop3_arg *n = &cmd->argv[1];
	/* RFC 1939 §7: n is a non-negative number; a huge n means the whole
	 * message (fetchmail sends TOP n 99999999), so saturate, don't fail. */
	bool digits = n->len > 0;
	for (size_t k = 0; k < n->len; k++)
		digits = digits && n->p[k] >= '0' && n->p[k] <= '9';
	if (!digits) {
		bad_command(s, "Syntax: TOP message lines");
		return;
	}
	if (parse_u64_n(n->p, n->len, UINT64_MAX, &lines) < 0)
		lines = UINT64_MAX;
	if (parse_msg(s, &cmd->argv[0], &i) == 0)
		retrieve(s, i, lines, false);
}

static void cmd_dele(struct pop3_session *s, const struct pop3_command *cmd)
{
	size_t i;
	if (parse_msg(s, &cmd->argv[0], &i) < 0)
		return;
	/* RFC 1939 §5: only marked; removed in the UPDATE state. */
	s->deleted[i] = 1;
	s->deleted_count++;
	reply(s, "+OK Message %zu deleted", i + 1);
}

static void cmd_noop(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	/* RFC 1957: some clients need a space and text after +OK. */
	reply(s, "+OK Still here");
}

static void cmd_rset(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	memset(s->deleted, 0, s->md.count);
	s->deleted_count = 0;
	reply(s, "+OK Maildrop has %zu messages (%llu octets)", visible_count(s),
	      (unsigned long long)visible_size(s));
}

static void cmd_quit(struct pop3_session *s, const struct pop3_command *cmd)
{
	(void)cmd;
	if (s->state == POP3_STATE_AUTHORIZATION) {
		/* RFC 1939 §4: QUIT before login ends the session, no UPDATE. */
		reply(s, "+OK Bye");
		close_after(s, "quit");
		return;
	}
	/* RFC 1939 §6: QUIT in TRANSACTION enters UPDATE. RFC 2449 §6.7: with
	 * EXPIRE 0, retrieved messages are removed at the end of the session. */
	s->state = POP3_STATE_UPDATE;
	size_t n = s->md.count;
	s->commit_deleted = xcalloc(n ? n : 1, 1);
	s->commit_seen = xcalloc(n ? n : 1, 1);
	for (size_t i = 0; i < n; i++) {
		bool del = s->deleted[i] || (s->cfg->expire == 0 && s->retrieved[i]);
		s->commit_deleted[i] = del;
		s->commit_seen[i] = !del && s->retrieved[i];
	}
	request(s, POP3_REQ_COMMIT);
	s->req.deleted = s->commit_deleted;
	s->req.seen = s->commit_seen;
}

/* ---- dispatch ------------------------------------------------------------------- */

struct command_def {
	const char *name;
	unsigned states;
	unsigned min_args, max_args;
	const char *syntax;
	void (*handler)(struct pop3_session *s, const struct pop3_command *cmd);
};

#define ANY_ARGS 99

static const struct command_def commands[] = {
	{"USER", ST_AUTH, 1, 1, "USER name", cmd_user},
	{"PASS", ST_AUTH, 1, ANY_ARGS, "PASS password", NULL /* special: needs USER */},
	{"APOP", ST_AUTH, 2, 2, "APOP name digest", cmd_apop},
	{"AUTH", ST_AUTH, 0, 2, "AUTH [mechanism [initial-response]]", cmd_auth},
	{"STLS", ST_AUTH, 0, 0, "STLS", cmd_stls},
	{"CAPA", ST_AUTH | ST_TRANS, 0, 0, "CAPA", cmd_capa},
	{"QUIT", ST_AUTH | ST_TRANS, 0, 0, "QUIT", cmd_quit},
	{"STAT", ST_TRANS, 0, 0, "STAT", cmd_stat},
	{"LIST", ST_TRANS, 0, 1, "LIST [message]", cmd_list},
	{"RETR", ST_TRANS, 1, 1, "RETR message", cmd_retr},
	{"DELE", ST_TRANS, 1, 1, "DELE message", cmd_dele},
	{"NOOP", ST_TRANS, 0, 0, "NOOP", cmd_noop},
	{"RSET", ST_TRANS, 0, 0, "RSET", cmd_rset},
	{"TOP", ST_TRANS, 2, 2, "TOP message lines", cmd_top},
	{"UIDL", ST_TRANS, 0, 1, "UIDL [message]", cmd_uidl},
};

static const struct command_def *find_command(const struct pop3_command *cmd)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (str_ieq_n(cmd->keyword, cmd->keyword_len, commands[i].name))
			return &commands[i];
	return NULL;
}

static void dispatch(struct pop3_session *s, const char *line, size_t len)
{
	struct pop3_command cmd;
	s->stats.commands++;
	/* RFC 1939 §7: PASS only immediately after a successful USER. */
	char *pending_user = s->user;
	s->user = NULL;

	switch (pop3_parse_command(line, len, &cmd)) {
	case POP3_PARSE_OK:
		break;
	case POP3_PARSE_EMPTY:
		bad_command(s, "Empty command");
		goto out;
	case POP3_PARSE_BAD_CHAR:
		bad_command(s, "Invalid character in command");
		goto out;
	case POP3_PARSE_BAD_KEYWORD:
		bad_command(s, "Unknown command");
		goto out;
	}
	const struct command_def *def = find_command(&cmd);
	if (def == NULL) {
		/* Includes LAST (removed from POP3): fetchmail must see -ERR. */
		bad_command(s, "Unknown command");
		goto out;
	}
	if (!(def->states & (1u << s->state))) {
		bad_command(s, "Command not valid in this state");
		goto out;
	}
	if (cmd.argc < def->min_args || (def->max_args != ANY_ARGS && cmd.argc > def->max_args)) {
		char text[96];
		snprintf(text, sizeof(text), "Syntax: %s", def->syntax);
		bad_command(s, text);
		goto out;
	}
	if (def->handler == NULL) { /* PASS */
		if (pending_user == NULL) {
			reply(s, "-ERR [AUTH] Send USER first");
			goto out;
		}
		cmd_pass(s, &cmd, pending_user);
		return;
	}
	def->handler(s, &cmd);
out:
	free(pending_user);
}

/* ---- public interface ---------------------------------------------------------- */

struct pop3_session *pop3_session_new(const struct pop3_settings *settings,
				      const struct pop3_conn_info *info)
{
	struct pop3_session *s = xcalloc(1, sizeof(*s));
	s->cfg = settings;
	s->info = *info;
	s->state = POP3_STATE_AUTHORIZATION;
	s->cb.exporter_len = s->cb.end_point_len = -1;
	if (info->secure && info->cb != NULL)
		s->cb = *info->cb;
	s->info.cb = NULL;
	s->cb.tls = info->secure;
	if (settings->apop && info->apop_timestamp != NULL) {
		/* RFC 1939 §7: the greeting carries the APOP timestamp. */
		s->apop_timestamp = xstrdup(info->apop_timestamp);
		s->info.apop_timestamp = s->apop_timestamp;
		reply(s, "+OK %s %s", settings->greeting, s->apop_timestamp);
	} else {
		s->info.apop_timestamp = NULL;
		reply(s, "+OK %s", settings->greeting);
	}
	return s;
}

void pop3_session_free(struct pop3_session *s)
{
	if (s == NULL)
		return;
	wipe_str(&s->user);
	wipe_str(&s->login_user);
	wipe_str(&s->secret);
	wipe_str(&s->challenge);
	sasl_server_clear(&s->sasl);
	OPENSSL_cleanse(&s->cb, sizeof(s->cb));
	buf_free(&s->out);
	free(s->deleted);
	free(s->retrieved);
	free(s->commit_deleted);
	free(s->commit_seen);
	free(s->apop_timestamp);
	free(s);
}

size_t pop3_session_line_limit(const struct pop3_session *s)
{
	return s->in_sasl ? POP3_MAX_SASL_LINE : POP3_MAX_COMMAND_LINE;
}

void pop3_session_input(struct pop3_session *s, const char *line, size_t len)
{
	if (s->req.kind != POP3_REQ_NONE || s->state == POP3_STATE_CLOSED)
		return; /* caller error; ignored rather than trusted */
	if (s->in_sasl) {
		sasl_response(s, line, len);
		return;
	}
	dispatch(s, line, len);
}

void pop3_session_input_overlong(struct pop3_session *s)
{
	if (s->req.kind != POP3_REQ_NONE || s->state == POP3_STATE_CLOSED)
		return;
	if (s->in_sasl) {
		reply(s, "-ERR [AUTH] Authentication response too long");
		sasl_finish(s);
		return;
	}
	wipe_str(&s->user);
	/* RFC 2449 §4: commands are at most 255 octets. */
	bad_command(s, "Command line too long (at most 255 octets)");
}

const struct pop3_request *pop3_session_request(const struct pop3_session *s)
{
	return &s->req;
}

struct buf *pop3_session_output(struct pop3_session *s)
{
	return &s->out;
}

void pop3_session_login_done(struct pop3_session *s, enum pop3_login_result result,
			     const struct pop3_maildrop *maildrop)
{
	if (s->req.kind != POP3_REQ_LOGIN)
		return;
	request(s, POP3_REQ_NONE);
	wipe_str(&s->secret);
	switch (result) {
	case POP3_LOGIN_OK:
		s->md = *maildrop;
		s->deleted = xcalloc(s->md.count ? s->md.count : 1, 1);
		s->retrieved = xcalloc(s->md.count ? s->md.count : 1, 1);
		s->state = POP3_STATE_TRANSACTION;
		reply(s, "+OK Maildrop has %zu messages (%llu octets)", s->md.count,
		      (unsigned long long)visible_size(s));
		return;
	case POP3_LOGIN_FAILED:
		s->stats.auth_failures++;
		if (s->stats.auth_failures >= s->cfg->max_auth_failures) {
			reply(s, "-ERR [AUTH] Authentication failed; too many failures, closing");
			close_after(s, "too many authentication failures");
			return;
		}
		reply(s, "-ERR [AUTH] Authentication failed");
		return;
	case POP3_LOGIN_IN_USE:
		/* RFC 2449 §8.1.2. fetchmail looks for "in use"/"lock" in the text. */
		reply(s, "-ERR [IN-USE] Maildrop is locked: in use by another session");
		return;
	case POP3_LOGIN_DELAYED:
		reply(s, "-ERR [LOGIN-DELAY] Logged in too recently, wait %u seconds between logins",
		      s->cfg->login_delay);
		return;
	case POP3_LOGIN_TEMPFAIL:
		reply(s, "-ERR [SYS/TEMP] Temporary server failure, try again later");
		return;
	case POP3_LOGIN_PERMFAIL:
		reply(s, "-ERR [SYS/PERM] Maildrop unavailable, contact your administrator");
		return;
	case POP3_LOGIN_REFUSED:
		refuse_plaintext(s);
		return;
	case POP3_LOGIN_THROTTLED:
		reply(s, "-ERR [SYS/TEMP] Too many failed logins, try again later");
		return;
	}
}

void pop3_session_sasl_lookup_done(struct pop3_session *s, const struct scram_record *rec)
{
	if (s->req.kind != POP3_REQ_SASL_LOOKUP)
		return;
	request(s, POP3_REQ_NONE);
	s->in_sasl = true;
	sasl_server_set_record(&s->sasl, rec);
	buf_append_str(&s->out, "+ ");
	base64_encode(s->sasl.challenge.data, s->sasl.challenge.len, &s->out);
	buf_append_str(&s->out, "\r\n");
}

void pop3_session_retrieve_begin(struct pop3_session *s, bool ok)
{
	if (s->req.kind != POP3_REQ_RETRIEVE)
		return;
	if (!ok) {
		size_t msg = s->req.msg;
		request(s, POP3_REQ_NONE);
		reply(s, "-ERR [SYS/TEMP] Message %zu cannot be read now", msg + 1);
		return;
	}
	if (s->req.is_retr)
		reply(s, "+OK %llu octets", (unsigned long long)msg_size(s, s->req.msg));
	else
		reply(s, "+OK Top of message follows");
}

void pop3_session_retrieve_end(struct pop3_session *s, bool complete, uint64_t octets)
{
	if (s->req.kind != POP3_REQ_RETRIEVE)
		return;
	s->stats.retrieved_bytes += octets;
	if (!complete) {
		close_after(s, "message read error");
		return;
	}
	if (s->req.is_retr) {
		s->retrieved[s->req.msg] = 1;
		s->stats.retrieved++;
	}
	reply(s, ".");
	request(s, POP3_REQ_NONE);
}

void pop3_session_continue(struct pop3_session *s)
{
	if (s->req.kind == POP3_REQ_CONTINUE)
		listing_step(s);
}

void pop3_session_commit_done(struct pop3_session *s, size_t failed)
{
	if (s->req.kind != POP3_REQ_COMMIT)
		return;
	size_t removed = 0, left = 0;
	for (size_t i = 0; i < s->md.count; i++) {
		if (s->commit_deleted[i])
			removed++;
		else
			left++;
	}
	s->stats.deleted = removed - (failed < removed ? failed : removed);
	if (failed > 0)
		/* RFC 1939 §6: say so if some marked messages were not removed. */
		reply(s, "-ERR [SYS/TEMP] %zu deleted messages not removed", failed);
	else
		reply(s, "+OK Bye, %zu messages left", left);
	close_after(s, "quit");
}

void pop3_session_tls_done(struct pop3_session *s, bool ok, const struct sasl_channel_binding *cb)
{
	if (s->req.kind != POP3_REQ_STARTTLS)
		return;
	if (!ok) {
		close_after(s, "TLS handshake failed");
		return;
	}
	/* RFC 2595 §4: forget everything learnt before TLS. */
	wipe_str(&s->user);
	s->info.secure = true;
	if (cb != NULL)
		s->cb = *cb;
	s->cb.tls = true;
	request(s, POP3_REQ_NONE);
}

enum pop3_state pop3_session_state(const struct pop3_session *s)
{
	return s->state;
}

const char *pop3_session_close_reason(const struct pop3_session *s)
{
	return s->close_reason ? s->close_reason : "closed";
}

const char *pop3_session_apop_timestamp(const struct pop3_session *s)
{
	return s->apop_timestamp;
}

const char *pop3_session_user(const struct pop3_session *s)
{
	return s->login_user;
}

const struct pop3_stats *pop3_session_stats(const struct pop3_session *s)
{
	return &s->stats;
}
