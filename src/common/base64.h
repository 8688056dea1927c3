/* base64.h - strict RFC 4648 base64 (no whitespace, exact padding), as SASL
 * (RFC 5034 §4) requires: an undecodable line is an error, never guessed at. */
#ifndef PIGEON_BASE64_H
#define PIGEON_BASE64_H

#include <stddef.h>

#include "common/buf.h"

/* Appends the decoded bytes to out. Returns 0, or -1 if the input is not
 * canonical base64 (out is then left with partial data: clear it). */
int base64_decode(const char *in, size_t len, struct buf *out);
void base64_encode(const void *in, size_t len, struct buf *out);

#endif
