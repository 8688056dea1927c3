/* framing.c - bounded line framing over an evbuffer. */
#include "server/framing.h"

enum frame_result frame_next(struct framer *f, struct evbuffer *in, size_t limit,
			     enum evbuffer_eol_style style, struct buf *line)
{
	size_t eol_len = 0;
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, style);
	if (eol.pos < 0) {
		/* Drop an overlong line as it arrives; report it when it ends. */
		size_t have = evbuffer_get_length(in);
		if (have >= limit) {
			f->discarding = true;
			/* Keep a final CR: it may be the start of the CRLF that
			 * ends the line, and in DATA only CRLF does. */
			unsigned char last = 0;
			struct evbuffer_ptr end;
			evbuffer_ptr_set(in, &end, have - 1, EVBUFFER_PTR_SET);
			evbuffer_copyout_from(in, &end, &last, 1);
			evbuffer_drain(in, last == '\r' ? have - 1 : have);
		}
		return FRAME_NONE;
	}
	size_t len = (size_t)eol.pos;
	if (f->discarding || len + eol_len > limit) {
		evbuffer_drain(in, len + eol_len);
		f->discarding = false;
		return FRAME_OVERLONG;
	}
	buf_clear(line);
	buf_reserve(line, len);
	evbuffer_remove(in, line->data, len);
	evbuffer_drain(in, eol_len);
	line->data[len] = '\0';
	line->len = len;
	return FRAME_LINE;
}
