/*
 * lmtp.c - LMTP server state machine (RFC 2033).
 *
 *   connect -> 220 -> LHLO -> [MAIL -> RCPT+ -> DATA -> "." ]* -> QUIT
 *
 * After the final "." there is one reply per accepted recipient, in RCPT
 * order (RFC 2033 §4.2). Every 2xx/4xx/5xx reply after LHLO carries an
 * enhanced status code (RFC 2034).
 */
#include "lmtp/lmtp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/bounds.h"
#include "common/strutil.h"
#include "common/xmalloc.h"

enum lmtp_state {
	ST_GREETED, /* before LHLO */
	ST_READY,   /* after LHLO, no transaction */
	ST_MAIL,    /* MAIL given, RCPTs may follow */
	ST_DATA,    /* reading the message */
	ST_CLOSED,
};

struct recipient {
	char *address;
	bool loops;
};

struct lmtp_session {
	const struct lmtp_settings *cfg;
	enum lmtp_state state;
	struct buf out;
	struct buf body;
	struct lmtp_request req;
	unsigned bad_commands;
	char *helo;
	char *sender;
	uint64_t declared_size;
	char *pending_rcpt;          /* RCPT being looked up, as written */
	char *pending_lookup;        /* the same unquoted, for the lookup */
	struct recipient *rcpts;     /* accepted ones */
	size_t n_rcpts;
	/* DATA */
	uint64_t size;
	bool in_headers;
	bool skipping_header;        /* inside a Return-Path we replace */
	unsigned generation;         /* bumped by every reset */
	bool too_big;
	bool bad_line;
	bool data_started;
};

static void reply(struct lmtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void reply(struct lmtp_session *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t start = s->out.len;
	buf_vprintf(&s->out, fmt, ap);
	va_end(ap);
	/* RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets. */
	if (s->out.len - start > 510)
		s->out.len = start + 510;
	buf_append(&s->out, "\r\n", 2);
}

static void request(struct lmtp_session *s, enum lmtp_request_kind kind)
{
	memset(&s->req, 0, sizeof(s->req));
	s->req.kind = kind;
}

static void reset_transaction(struct lmtp_session *s)
{
	s->generation++;
	free(s->sender);
	s->sender = NULL;
	free(s->pending_rcpt);
	s->pending_rcpt = NULL;
	free(s->pending_lookup);
	s->pending_lookup = NULL;
	for (size_t i = 0; i < s->n_rcpts; i++)
		free(s->rcpts[i].address);
	free(s->rcpts);
	s->rcpts = NULL;
	s->n_rcpts = 0;
	s->declared_size = 0;
	s->size = 0;
	s->too_big = s->bad_line = s->data_started = s->skipping_header = false;
	buf_clear(&s->body);
	if (s->state != ST_GREETED && s->state != ST_CLOSED)
		s->state = ST_READY;
}

static void bad_command(struct lmtp_session *s, const char *text)
{
	if (++s->bad_commands >= s->cfg->max_bad_commands) {
		/* "500 5.5.2 text" -> "text" */
		const char *words = strchr(text, ' ');
		words = words ? strchr(words + 1, ' ') : NULL;
		reply(s, "421 4.7.0 %s; too many errors, closing connection",
		      words ? words + 1 : text);
		s->state = ST_CLOSED;
		request(s, LMTP_REQ_CLOSE);
		return;
	}
	reply(s, "%s", text);
}

/* ---- addresses (RFC 5321 §4.1.2) ---------------------------------------- */

/*
 * "<path>" possibly followed by parameters. Source routes (<@a,@b:u@d>) are
 * accepted and dropped. Returns the address as written (malloc'd; "" for <>),
 * quoted local part and all: that is the form for the trace headers and the
 * replies (`"john doe"@x`, never `john doe@x`). Points *rest after the '>'.
 * NULL if malformed.
 */
static char *parse_path(const char *p, const char **rest)
{
	while (*p == ' ')
		p++;
	if (*p != '<')
		return NULL;
	p++;
	if (*p == '@') { /* source route */
		const char *colon = strchr(p, ':');
		if (colon == NULL)
			return NULL;
		p = colon + 1;
	}
	struct buf b = BUF_INIT;
	bool quoted = false;
	for (; *p != '\0'; p++) {
		if (quoted) {
			if (*p == '\\' && p[1] != '\0')
				buf_append_byte(&b, *p++); /* quoted-pair: both kept */
			else if (*p == '"')
				quoted = false;
			buf_append_byte(&b, *p);
			continue;
		}
		if (*p == '"') {
			quoted = true;
			buf_append_byte(&b, *p);
			continue;
		}
		if (*p == '>')
			break;
		if (*p == ' ' || *p == '<')
			goto bad;
		buf_append_byte(&b, *p);
	}
	if (*p != '>' || b.len > LMTP_MAX_ADDRESS)
		goto bad;
	*rest = p + 1;
	if (b.data == NULL)
		return xstrdup("");
	return b.data;
bad:
	buf_free(&b);
	return NULL;
}

/* The address with its quoting removed (`"john doe"@x` -> `john doe@x`):
 * the form the user database is searched with. */
static char *unquote_address(const char *addr)
{
	struct buf b = BUF_INIT;
	bool quoted = false;
	for (const char *p = addr; *p != '\0'; p++) {
		if (quoted && *p == '\\' && p[1] != '\0')
			buf_append_byte(&b, *++p);
		else if (*p == '"')
			quoted = !quoted;
		else
			buf_append_byte(&b, *p);
	}
	if (b.data == NULL)
		return xstrdup("");
	return b.data;
}

/* ---- commands ------------------------------------------------------------------ */

static void cmd_lhlo(struct lmtp_session *s, const char *arg)
{
	if (arg[0] == '\0') {
		bad_command(s, "501 5.5.4 Syntax: LHLO hostname");
		return;
	}
	/* RFC 5321 §4.1.4: a second LHLO resets like RSET. */
	reset_transaction(s);
	free(s->helo);
	s->helo = xstrndup(arg, strcspn(arg, " "));
	s->state = ST_READY;
	reply(s, "250-%s", s->cfg->hostname);
	reply(s, "250-PIPELINING");
	reply(s, "250-ENHANCEDSTATUSCODES");
	reply(s, "250-8BITMIME");
	if (s->cfg->max_message_size > 0)
		reply(s, "250 SIZE %llu", (unsigned long long)s->cfg->max_message_size);
	else
		reply(s, "250 SIZE");
}

static void cmd_mail(struct lmtp_session *s, const char *arg)
{
	if (s->state == ST_GREETED) {
		bad_command(s, "503 5.5.1 Send LHLO first");
		return;
	}
	if (s->state != ST_READY) {
		bad_command(s, "503 5.5.1 Nested MAIL command");
		return;
	}
	if (strncasecmp(arg, "FROM:", 5) != 0) {
		bad_command(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	const char *rest;
	char *addr = parse_path(arg + 5, &rest);
	if (addr == NULL) {
		bad_command(s, "501 5.1.7 Bad sender address syntax");
		return;
	}
	uint64_t declared = 0;
	/* ESMTP parameters: SIZE (RFC 1870), BODY (RFC 6152). */
	char *params = xstrdup(rest);
	char *save = NULL;
	for (char *tok = strtok_r(params, " ", &save); tok != NULL; tok = strtok_r(NULL, " ", &save)) {
		if (strncasecmp(tok, "SIZE=", 5) == 0) {
			if (parse_u64(tok + 5, UINT64_MAX, &declared) < 0) {
				reply(s, "501 5.5.4 Bad SIZE parameter");
				goto out;
			}
			if (s->cfg->max_message_size > 0 && declared > s->cfg->max_message_size) {
				reply(s, "552 5.3.4 Message too big (at most %llu octets)",
				      (unsigned long long)s->cfg->max_message_size);
				goto out;
			}
		} else if (strcasecmp(tok, "BODY=7BIT") == 0 || strcasecmp(tok, "BODY=8BITMIME") == 0) {
			/* stored byte for byte either way */
		} else {
			reply(s, "555 5.5.4 Unsupported parameter %.64s", tok);
			goto out;
		}
	}
	s->sender = addr;
	addr = NULL;
	s->declared_size = declared;
	s->state = ST_MAIL;
	reply(s, "250 2.1.0 Sender OK");
out:
	free(params);
	free(addr);
}

static void cmd_rcpt(struct lmtp_session *s, const char *arg)
{
	if (s->state != ST_MAIL) {
		bad_command(s, "503 5.5.1 Send MAIL first");
		return;
	}
	if (strncasecmp(arg, "TO:", 3) != 0) {
		bad_command(s, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	const char *rest;
	char *addr = parse_path(arg + 3, &rest);
	if (addr == NULL || addr[0] == '\0') {
		free(addr);
		bad_command(s, "501 5.1.3 Bad recipient address syntax");
		return;
	}
	while (*rest == ' ')
		rest++;
	if (*rest != '\0') {
		free(addr);
		reply(s, "555 5.5.4 RCPT parameters not supported");
		return;
	}
	if (s->n_rcpts >= s->cfg->max_recipients) {
		free(addr);
		reply(s, "452 4.5.3 Too many recipients (at most %u per message)",
		      s->cfg->max_recipients);
		return;
	}
	s->pending_rcpt = addr;
	s->pending_lookup = unquote_address(addr);
	request(s, LMTP_REQ_RCPT);
	s->req.address = s->pending_lookup;
	s->req.declared_size = s->declared_size;
}

static void cmd_data(struct lmtp_session *s, const char *arg)
{
	(void)arg;
	if (s->state != ST_MAIL) {
		bad_command(s, "503 5.5.1 Send MAIL and RCPT first");
		return;
	}
	/* RFC 2033 §4.2: no accepted recipient, no message text. */
	if (s->n_rcpts == 0) {
		reply(s, "503 5.5.1 No valid recipients");
		return;
	}
	request(s, LMTP_REQ_DATA_BEGIN);
	s->req.recipients = s->n_rcpts;
}

static void cmd_rset(struct lmtp_session *s, const char *arg)
{
	(void)arg;
	reset_transaction(s);
	reply(s, "250 2.0.0 OK");
}

static void cmd_noop(struct lmtp_session *s, const char *arg)
{
	(void)arg;
	reply(s, "250 2.0.0 OK");
}

static void cmd_quit(struct lmtp_session *s, const char *arg)
{
	(void)arg;
	reply(s, "221 2.0.0 Bye");
	s->state = ST_CLOSED;
	request(s, LMTP_REQ_CLOSE);
}

static void cmd_vrfy(struct lmtp_session *s, const char *arg)
{
	(void)arg;
	reply(s, "502 5.5.1 VRFY not implemented");
}

static void cmd_helo(struct lmtp_session *s, const char *arg)
{
	(void)arg;
	/* RFC 2033 §4.1: LMTP has LHLO instead. */
	bad_command(s, "500 5.5.1 This is LMTP: use LHLO");
}

static const struct {
	const char *name;
	void (*fn)(struct lmtp_session *s, const char *arg);
} commands[] = {
	{"LHLO", cmd_lhlo}, {"MAIL", cmd_mail}, {"RCPT", cmd_rcpt}, {"DATA", cmd_data},
	{"RSET", cmd_rset}, {"NOOP", cmd_noop}, {"QUIT", cmd_quit}, {"VRFY", cmd_vrfy},
	{"HELO", cmd_helo}, {"EHLO", cmd_helo},
};

static void dispatch(struct lmtp_session *s, const char *line, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20 && c != '\t') {
			bad_command(s, "500 5.5.2 Invalid character in command");
			return;
		}
	}
	size_t kw = strcspn(line, " ");
	const char *arg = line + kw;
	while (*arg == ' ')
		arg++;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (str_ieq_n(line, kw, commands[i].name)) {
			commands[i].fn(s, arg);
			return;
		}
	}
	bad_command(s, "500 5.5.2 Unrecognized command");
}

/* ---- DATA ---------------------------------------------------------------------- */

/* A "Delivered-To:" header naming a recipient means the message looped. */
static void check_header(struct lmtp_session *s, const char *line, size_t len)
{
	static const char name[] = "Delivered-To:";
	if (len < sizeof(name) - 1 || strncasecmp(line, name, sizeof(name) - 1) != 0)
		return;
	const char *v = line + sizeof(name) - 1;
	size_t vlen = len - (sizeof(name) - 1);
	while (vlen > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	if (vlen >= 2 && v[0] == '<' && v[vlen - 1] == '>') {
		v++;
		vlen -= 2;
	}
	for (size_t i = 0; i < s->n_rcpts; i++)
		if (strlen(s->rcpts[i].address) == vlen &&
		    strncasecmp(s->rcpts[i].address, v, vlen) == 0)
			s->rcpts[i].loops = true;
}

static void data_line(struct lmtp_session *s, const char *line, size_t len)
{
	if (len == 1 && line[0] == '.') {
		request(s, LMTP_REQ_DATA_END);
		s->req.recipients = s->n_rcpts;
		return;
	}
	/* RFC 5321 §4.5.2: drop the stuffing dot. */
	if (len > 0 && line[0] == '.') {
		line++;
		len--;
	}
	if (s->in_headers) {
		bool continuation = len > 0 && (line[0] == ' ' || line[0] == '\t');
		if (len == 0) {
			s->in_headers = false;
			s->skipping_header = false;
		} else if (!continuation) {
			/* RFC 5321 §4.4: the final delivery adds Return-Path; any
			 * the message arrived with is dropped. */
			s->skipping_header = len >= 12 && strncasecmp(line, "Return-Path:", 12) == 0;
			check_header(s, line, len);
		}
		if (s->skipping_header) {
			s->size += len + 2;
			return;
		}
	}
	s->size += len + 2;
	if (s->cfg->max_message_size > 0 && s->size > s->cfg->max_message_size)
		s->too_big = true;
	if (s->too_big || s->bad_line)
		return;
	buf_append(&s->body, line, len);
	buf_append(&s->body, "\r\n", 2);
}

static const char *store_reply(enum lmtp_store_result r)
{
	switch (r) {
	case LMTP_STORED:
		return "250 2.0.0";
	case LMTP_STORE_NOSPACE:
		return "452 4.3.1";
	case LMTP_STORE_QUOTA:
		return "552 5.2.2";
	case LMTP_STORE_QUOTA_TEMP:
		return "452 4.2.2";
	case LMTP_STORE_PERM:
		return "550 5.2.0";
	case LMTP_STORE_TEMPFAIL:
	default:
		return "451 4.3.0";
	}
}

static const char *store_text(enum lmtp_store_result r)
{
	switch (r) {
	case LMTP_STORED:
		return "Saved";
	case LMTP_STORE_NOSPACE:
		return "Insufficient system storage";
	case LMTP_STORE_QUOTA:
		return "Mailbox quota exceeded";
	case LMTP_STORE_QUOTA_TEMP:
		return "Mailbox full, try again later";
	case LMTP_STORE_PERM:
		return "Mailbox cannot be created";
	case LMTP_STORE_TEMPFAIL:
	default:
		return "Temporary failure, try again later";
	}
}

/* ---- public interface ------------------------------------------------------------ */

struct lmtp_session *lmtp_session_new(const struct lmtp_settings *settings)
{
	struct lmtp_session *s = xcalloc(1, sizeof(*s));
	s->cfg = settings;
	s->state = ST_GREETED;
	reply(s, "220 %s Pigeon LMTP ready", settings->hostname);
	return s;
}

void lmtp_session_free(struct lmtp_session *s)
{
	if (s == NULL)
		return;
	reset_transaction(s);
	free(s->helo);
	buf_free(&s->out);
	buf_free(&s->body);
	free(s);
}

void lmtp_session_input(struct lmtp_session *s, const char *line, size_t len)
{
	if (s->req.kind != LMTP_REQ_NONE || s->state == ST_CLOSED)
		return;
	if (s->state == ST_DATA) {
		data_line(s, line, len);
		return;
	}
	if (memchr(line, '\0', len) != NULL) {
		bad_command(s, "500 5.5.2 Invalid character in command");
		return;
	}
	/* The command parsers work on a C string: never past len. */
	char *copy = xstrndup(line, len);
	dispatch(s, copy, len);
	free(copy);
}

void lmtp_session_input_overlong(struct lmtp_session *s)
{
	if (s->req.kind != LMTP_REQ_NONE || s->state == ST_CLOSED)
		return;
	if (s->state == ST_DATA) {
		/* The line is lost, so the message cannot be stored as sent. */
		s->bad_line = true;
		return;
	}
	bad_command(s, "500 5.5.2 Line too long (at most 512 octets)");
}

size_t lmtp_session_line_limit(const struct lmtp_session *s)
{
	return s->state == ST_DATA ? LMTP_MAX_DATA_LINE : LMTP_MAX_COMMAND_LINE;
}

bool lmtp_session_in_data(const struct lmtp_session *s)
{
	return s->state == ST_DATA;
}

bool lmtp_session_discarding(const struct lmtp_session *s)
{
	return s->too_big || s->bad_line;
}

const struct lmtp_request *lmtp_session_request(const struct lmtp_session *s)
{
	return &s->req;
}

struct buf *lmtp_session_output(struct lmtp_session *s)
{
	return &s->out;
}

struct buf *lmtp_session_body(struct lmtp_session *s)
{
	return &s->body;
}

const char *lmtp_session_helo(const struct lmtp_session *s)
{
	return s->helo ? s->helo : "unknown";
}

const char *lmtp_session_sender(const struct lmtp_session *s)
{
	return s->sender ? s->sender : "";
}

const char *lmtp_session_recipient(const struct lmtp_session *s, size_t i)
{
	return i < s->n_rcpts ? s->rcpts[i].address : NULL;
}

unsigned lmtp_session_generation(const struct lmtp_session *s)
{
	return s->generation;
}

bool lmtp_session_recipient_loops(const struct lmtp_session *s, size_t i)
{
	return i < s->n_rcpts && s->rcpts[i].loops;
}

void lmtp_session_rcpt_done(struct lmtp_session *s, enum lmtp_rcpt_result result)
{
	if (s->req.kind != LMTP_REQ_RCPT)
		return;
	request(s, LMTP_REQ_NONE);
	char *addr = s->pending_rcpt;
	s->pending_rcpt = NULL;
	free(s->pending_lookup);
	s->pending_lookup = NULL;
	switch (result) {
	case LMTP_RCPT_OK:
		s->rcpts = xreallocarray(s->rcpts, s->n_rcpts + 1, sizeof(*s->rcpts));
		s->rcpts[s->n_rcpts++] = (struct recipient){addr, false};
		reply(s, "250 2.1.5 <%.256s> Recipient OK", addr);
		return;
	case LMTP_RCPT_UNKNOWN:
		reply(s, "550 5.1.1 <%.256s> User unknown", addr);
		break;
	case LMTP_RCPT_QUOTA:
		reply(s, "552 5.2.2 <%.256s> Mailbox quota exceeded", addr);
		break;
	case LMTP_RCPT_QUOTA_TEMP:
		reply(s, "452 4.2.2 <%.256s> Mailbox full, try again later", addr);
		break;
	case LMTP_RCPT_TEMPFAIL:
	default:
		reply(s, "451 4.3.0 <%.256s> Temporary failure, try again later", addr);
		break;
	}
	free(addr);
}

void lmtp_session_data_ready(struct lmtp_session *s)
{
	if (s->req.kind != LMTP_REQ_DATA_BEGIN)
		return;
	request(s, LMTP_REQ_NONE);
	s->state = ST_DATA;
	s->in_headers = true;
	s->data_started = true;
	reply(s, "354 Start mail input; end with <CRLF>.<CRLF>");
}

void lmtp_session_data_done(struct lmtp_session *s, const enum lmtp_store_result *results)
{
	if (s->req.kind != LMTP_REQ_DATA_END)
		return;
	request(s, LMTP_REQ_NONE);
	/* RFC 2033 §4.2: one reply per accepted recipient, in RCPT order. */
	for (size_t i = 0; i < s->n_rcpts; i++) {
		const char *a = s->rcpts[i].address;
		if (s->too_big)
			reply(s, "552 5.3.4 <%.256s> Message too big (at most %llu octets)", a,
			      (unsigned long long)s->cfg->max_message_size);
		else if (s->bad_line)
			reply(s, "554 5.6.0 <%.256s> Message has a line longer than %d octets", a,
			      LMTP_MAX_DATA_LINE);
		else if (s->rcpts[i].loops)
			reply(s, "554 5.4.6 <%.256s> Mail loop: message already delivered to it", a);
		else
			reply(s, "%s <%.256s> %s", store_reply(results[i]), a, store_text(results[i]));
	}
	s->state = ST_READY;
	reset_transaction(s);
}

void lmtp_session_shutdown(struct lmtp_session *s)
{
	if (s->state == ST_CLOSED)
		return;
	reply(s, "421 4.3.2 Service shutting down, try again later");
	s->state = ST_CLOSED;
	request(s, LMTP_REQ_CLOSE);
}
