/* framing.c - bounded line framing over an evbuffer. */
#include "server/framing.h"

enum frame_result frame_next(struct framer *f, struct evbuffer *in, size_t limit,
			     enum evbuffer_eol_style style, struct buf *line)
{
	size_t eol_len = 0;
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, style);
	if (eol.pos < 0) {
		/* Drop an overlong line as it arrives; report it when it ends. */
		if (evbuffer_get_length(in) >= limit) {
			f->discarding = true;
			evbuffer_drain(in, evbuffer_get_length(in));
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
