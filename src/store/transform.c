/* transform.c - CRLF, byte-stuffing and TOP filter for message bodies. */
#include "store/transform.h"

#include <string.h>

void transform_init(struct transform *t, uint64_t body_lines, bool stuff, bool no_nuls)
{
	memset(t, 0, sizeof(*t));
	t->stuff = stuff;
	t->no_nuls = no_nuls;
	t->body_lines = body_lines;
	t->at_line_start = true;
}

static void emit(struct transform *t, struct buf *out, const char *p, size_t n)
{
	if (out != NULL)
		buf_append(out, p, n);
	t->emitted += n;
}

/* Called with the first content byte of a line. */
static void line_starts(struct transform *t, struct buf *out, char c)
{
	t->at_line_start = false;
	/* RFC 1939 §3: a line beginning with "." gets one more "." in front. */
	if (c == '.' && t->stuff) {
		emit(t, out, ".", 1);
		t->stuffed++;
	}
}

static void end_line(struct transform *t, struct buf *out)
{
	bool empty = t->at_line_start;
	emit(t, out, "\r\n", 2);
	t->at_line_start = true;
	if (!t->in_body) {
		/* RFC 1939 §7: TOP sends the headers, the blank line, then n lines. */
		if (empty) {
			t->in_body = true;
			if (t->body_lines == 0)
				t->done = true;
		}
	} else if (++t->body_lines_sent >= t->body_lines) {
		t->done = true;
	}
}

static void content(struct transform *t, struct buf *out, char c)
{
	if (t->at_line_start)
		line_starts(t, out, c);
	if (c == '\0' && t->no_nuls)
		c = (char)0x80;
	emit(t, out, &c, 1);
}

void transform_feed(struct transform *t, const char *in, size_t len, struct buf *out)
{
	size_t i = 0;
	if (out != NULL)
		buf_reserve(out, len + len / 2 + 8);
	while (i < len && !t->done) {
		if (t->pending_cr) {
			t->pending_cr = false;
			if (in[i] == '\n') {
				i++;
				end_line(t, out);
				continue;
			}
			content(t, out, '\r'); /* a bare CR is content */
		}
		char c = in[i];
		if (c == '\r') {
			t->pending_cr = true;
			i++;
			continue;
		}
		if (c == '\n') {
			i++;
			end_line(t, out);
			continue;
		}
		if (t->at_line_start)
			line_starts(t, out, c);
		/* Copy the run of ordinary bytes up to the next CR, LF (or NUL). */
		size_t j = i;
		while (j < len && in[j] != '\r' && in[j] != '\n' && !(in[j] == '\0' && t->no_nuls))
			j++;
		if (j > i) {
			emit(t, out, in + i, j - i);
			i = j;
		} else {
			content(t, out, in[i]); /* a NUL being replaced */
			i++;
		}
	}
}

void transform_finish(struct transform *t, struct buf *out)
{
	if (t->done)
		return;
	if (t->pending_cr) {
		/* A final CR ends the last line. */
		t->pending_cr = false;
		end_line(t, out);
	} else if (!t->at_line_start) {
		/* RFC 1939 §3: the terminating "." must start a line. */
		end_line(t, out);
	}
}

bool transform_done(const struct transform *t)
{
	return t->done;
}

uint64_t transform_size_of(const char *msg, size_t len)
{
	struct transform t;
	transform_init(&t, TRANSFORM_ALL_LINES, false, false);
	transform_feed(&t, msg, len, NULL);
	transform_finish(&t, NULL);
	return t.emitted;
}
