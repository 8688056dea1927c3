/*
 * transform.h - the stream filter between a stored message and the wire:
 * bare LF -> CRLF, byte-stuffing of lines that start with "." (RFC 1939 §3),
 * TOP's body-line limit (RFC 1939 §7), and a final CRLF when the message does
 * not end in one. It works on chunks of any size and keeps only a few flags of
 * state, so memory never depends on the message size.
 *
 * The same code, with stuffing off and no output, computes the size that
 * LIST/STAT report (RFC 1939 §11: CRLF octets, before stuffing), so the size
 * and the bytes RETR sends cannot disagree.
 */
#ifndef PIGEON_TRANSFORM_H
#define PIGEON_TRANSFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define TRANSFORM_ALL_LINES UINT64_MAX

struct transform {
	/* settings */
	bool stuff;          /* byte-stuff lines starting with "." */
	bool no_nuls;        /* replace NUL with 0x80 (Outlook hangs on NUL) */
	uint64_t body_lines; /* TOP limit, or TRANSFORM_ALL_LINES */
	/* state */
	bool at_line_start;
	bool pending_cr;     /* a CR seen; is it followed by LF? */
	bool in_body;        /* the blank line after the headers was passed */
	bool done;           /* TOP limit reached: the rest is not sent */
	uint64_t body_lines_sent;
	uint64_t emitted;    /* output octets so far, including stuffing */
	uint64_t stuffed;    /* stuffing octets among them */
};

void transform_init(struct transform *t, uint64_t body_lines, bool stuff, bool no_nuls);
/* Transform len bytes of input, appending to out (out may be NULL: count
 * only). Input after the TOP limit is ignored. */
void transform_feed(struct transform *t, const char *in, size_t len, struct buf *out);
/* End of input: close an unterminated last line. */
void transform_finish(struct transform *t, struct buf *out);
/* True once the TOP line limit is reached (no point reading further). */
bool transform_done(const struct transform *t);

/* The POP3 size of a whole message held in memory (for tests and tools). */
uint64_t transform_size_of(const char *msg, size_t len);

#endif
