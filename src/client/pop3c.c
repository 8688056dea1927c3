/* pop3c.c - POP3 client primitives. */
#include "client/pop3c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void trace(const struct pop3c *p, const char *dir, const char *line)
{
	if (p->trace)
		fprintf(stderr, "%s %s\n", dir, line);
}

int pop3c_send(struct pop3c *p, bool secret, const char *fmt, ...)
{
	char line[POP3C_MAX_LINE];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		return -1;
	if (p->trace) {
		if (secret) {
			/* Keep the command word, hide the rest: "PASS ****". */
			size_t kw = strcspn(line, " ");
			if (line[kw] == '\0') /* a bare SASL response: all of it is secret */
				fprintf(stderr, "C: ****\n");
			else
				fprintf(stderr, "C: %.*s ****\n", (int)kw, line);
		} else {
			trace(p, "C:", line);
		}
	}
	memcpy(line + n, "\r\n", 2);
	return client_write(&p->conn, line, (size_t)n + 2);
}

/* "+OK [CODE] text" / "-ERR[CODE] text" (Yahoo omits the space). */
static void parse_status(const char *line, struct pop3c_reply *r)
{
	memset(r, 0, sizeof(*r));
	const char *text;
	if (strncasecmp(line, "+OK", 3) == 0) {
		r->ok = true;
		text = line + 3;
	} else {
		r->ok = false;
		text = strncasecmp(line, "-ERR", 4) == 0 ? line + 4 : line;
	}
	while (*text == ' ')
		text++;
	if (*text == '[') {
		const char *end = strchr(text, ']');
		if (end != NULL && (size_t)(end - text - 1) < sizeof(r->code)) {
			memcpy(r->code, text + 1, (size_t)(end - text - 1));
			text = end + 1;
			while (*text == ' ')
				text++;
		}
	}
	snprintf(r->text, sizeof(r->text), "%s", text);
}

int pop3c_reply(struct pop3c *p, struct pop3c_reply *r)
{
	struct buf line = BUF_INIT;
	int rc = client_read_line(&p->conn, &line, POP3C_MAX_LINE, NULL);
	if (rc == 0) {
		trace(p, "S:", line.data);
		if (line.len == 0 || (line.data[0] != '+' && line.data[0] != '-')) {
			snprintf(p->conn.error, sizeof(p->conn.error),
				 "%s sent \"%.80s\" where a +OK or -ERR was due", p->conn.host, line.data);
			rc = -1;
		} else {
			parse_status(line.data, r);
		}
	}
	buf_free(&line);
	return rc;
}

int pop3c_greeting(struct pop3c *p)
{
	struct pop3c_reply r;
	if (pop3c_reply(p, &r) < 0)
		return -1;
	if (!r.ok) {
		snprintf(p->conn.error, sizeof(p->conn.error), "%s refused the connection: %.200s",
			 p->conn.host, r.text);
		return -1;
	}
	snprintf(p->greeting, sizeof(p->greeting), "%s", r.text);
	p->apop_timestamp[0] = '\0';
	const char *lt = strchr(r.text, '<');
	const char *gt = lt ? strchr(lt, '>') : NULL;
	if (lt != NULL && gt != NULL && memchr(lt, '@', (size_t)(gt - lt)) != NULL &&
	    (size_t)(gt - lt + 1) < sizeof(p->apop_timestamp)) {
		memcpy(p->apop_timestamp, lt, (size_t)(gt - lt + 1));
		p->apop_timestamp[gt - lt + 1] = '\0';
	}
	return 0;
}

static int capa_line(void *arg, const char *data, size_t len, bool eol)
{
	struct pop3c *p = arg;
	if (p->capa_bad)
		return 0; /* read the rest off the wire, parse none of it */
	/* Never parse a capability from the tail of an overlong line. */
	if (!eol || len > POP3C_MAX_CAPA_LINE || ++p->capa_lines > POP3C_MAX_CAPA_LINES ||
	    p->capa_raw.len + len + 1 > POP3C_MAX_CAPA_BYTES) {
		p->capa_bad = true;
		snprintf(p->conn.error, sizeof(p->conn.error),
			 "%s sent an oversized CAPA response (at most %d lines of %d octets, %d in "
			 "all, are accepted)",
			 p->conn.host, POP3C_MAX_CAPA_LINES, POP3C_MAX_CAPA_LINE, POP3C_MAX_CAPA_BYTES);
		return 0;
	}
	if (len == 0)
		return 0;
	char line[POP3C_MAX_CAPA_LINE + 1];
	memcpy(line, data, len);
	line[len] = '\0';
	buf_printf(&p->capa_raw, "%s\n", line);
	char *arg0 = line + strcspn(line, " ");
	char *rest = *arg0 ? arg0 + 1 : arg0;
	*arg0 = '\0';
	if (strcasecmp(line, "TOP") == 0)
		p->has_top = true;
	else if (strcasecmp(line, "UIDL") == 0)
		p->has_uidl = true;
	else if (strcasecmp(line, "USER") == 0)
		p->has_user = true;
	else if (strcasecmp(line, "PIPELINING") == 0)
		p->has_pipelining = true;
	else if (strcasecmp(line, "STLS") == 0)
		p->has_stls = true;
	else if (strcasecmp(line, "RESP-CODES") == 0)
		p->has_resp_codes = true;
	else if (strcasecmp(line, "AUTH-RESP-CODE") == 0)
		p->has_auth_resp_code = true;
	else if (strcasecmp(line, "SASL") == 0)
		snprintf(p->sasl, sizeof(p->sasl), " %s ", rest);
	else if (strcasecmp(line, "IMPLEMENTATION") == 0)
		snprintf(p->implementation, sizeof(p->implementation), "%s", rest);
	else if (strcasecmp(line, "LOGIN-DELAY") == 0)
		p->login_delay = strtol(rest, NULL, 10);
	else if (strcasecmp(line, "EXPIRE") == 0)
		p->expire = strncasecmp(rest, "NEVER", 5) == 0 ? -2 : strtol(rest, NULL, 10);
	return 0;
}

static void capa_forget(struct pop3c *p)
{
	p->capa_ok = p->has_top = p->has_uidl = p->has_user = p->has_pipelining = false;
	p->has_stls = p->has_resp_codes = p->has_auth_resp_code = false;
	p->sasl[0] = p->implementation[0] = '\0';
	p->login_delay = p->expire = -1;
}

int pop3c_capa(struct pop3c *p)
{
	/* RFC 2595 §4: after STLS everything learnt before is forgotten. */
	capa_forget(p);
	buf_clear(&p->capa_raw);
	struct pop3c_reply r;
	if (pop3c_send(p, false, "CAPA") < 0 || pop3c_reply(p, &r) < 0)
		return -1;
	if (!r.ok)
		return 0; /* RFC 2449 §5: no CAPA; probe by trying */
	p->capa_ok = true;
	p->capa_lines = 0;
	p->capa_bad = false;
	if (pop3c_body(p, capa_line, p, NULL) < 0)
		return -1;
	if (p->capa_bad) {
		capa_forget(p); /* believe none of it */
		return -1;
	}
	return 0;
}

int pop3c_body(struct pop3c *p, pop3c_sink sink, void *arg, uint64_t *octets)
{
	struct buf line = BUF_INIT;
	bool continuing = false; /* inside a long line delivered in pieces */
	int rc = -1;
	if (octets)
		*octets = 0;
	for (;;) {
		bool partial = false;
		if (client_read_line(&p->conn, &line, 0, &partial) < 0)
			goto out;
		const char *data = line.data ? line.data : "";
		size_t len = line.len;
		if (!continuing && !partial && len == 1 && data[0] == '.') {
			rc = 0;
			goto out;
		}
		if (octets)
			*octets += len + (partial ? 0 : 2);
		/* RFC 1939 §3: a line starting with "." had one added. */
		if (!continuing && len > 0 && data[0] == '.') {
			data++;
			len--;
			if (octets)
				(*octets)--;
		}
		if (sink != NULL && sink(arg, data, len, !partial) < 0)
			goto out;
		continuing = partial;
	}
out:
	buf_free(&line);
	return rc;
}

bool pop3c_has_sasl(const struct pop3c *p, const char *mech)
{
	char needle[64];
	snprintf(needle, sizeof(needle), " %s ", mech);
	return strcasestr(p->sasl, needle) != NULL;
}

void pop3c_free(struct pop3c *p)
{
	client_close(&p->conn);
	buf_free(&p->capa_raw);
}
