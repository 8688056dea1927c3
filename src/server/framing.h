/*
 * framing.h - taking bounded lines out of a libevent input buffer, shared by
 * the POP3 and LMTP connections. A line longer than the limit (its line end
 * included) is dropped as it arrives, so input never piles up, and reported
 * once when it ends.
 */
#ifndef PIGEON_FRAMING_H
#define PIGEON_FRAMING_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/buffer.h>

#include "common/buf.h"

enum frame_result {
	FRAME_NONE,     /* no complete line yet */
	FRAME_LINE,     /* line holds the next line, without its end, NUL-terminated */
	FRAME_OVERLONG, /* a line over the limit was dropped */
};

struct framer {
	bool discarding; /* inside an overlong line */
};

enum frame_result frame_next(struct framer *f, struct evbuffer *in, size_t limit,
			     enum evbuffer_eol_style style, struct buf *line);

#endif
