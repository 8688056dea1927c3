/*
 * buf.h - a growable byte buffer: the output side of the sans-I/O protocol
 * cores and the scratch space of the stream transform. Not a network buffer
 * (libevent's evbuffer is that).
 */
#ifndef PIGEON_BUF_H
#define PIGEON_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

void buf_free(struct buf *b);
void buf_clear(struct buf *b);
void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_append_str(struct buf *b, const char *s);
void buf_append_byte(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Remove the first n bytes. */
void buf_consume(struct buf *b, size_t n);
/* Overwrite with zeros (for buffers that held secrets), then clear. */
void buf_wipe(struct buf *b);

#endif
