/*
 * fuzz_transform.c - the RETR/TOP stream filter: output must not depend on
 * chunking, must end in CRLF, and its unstuffed length must equal the size
 * LIST reports.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/transform.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	unsigned chunk = data[0] % 64 + 1;
	uint64_t lines = data[1] % 8 == 0 ? TRANSFORM_ALL_LINES : data[1] % 8;
	const char *msg = (const char *)data + 2;
	size_t len = size - 2;

	struct buf whole = BUF_INIT, pieces = BUF_INIT;
	struct transform a, b;
	transform_init(&a, lines, true, data[1] & 0x80);
	transform_feed(&a, msg, len, &whole);
	transform_finish(&a, &whole);
	transform_init(&b, lines, true, data[1] & 0x80);
	for (size_t off = 0; off < len; off += chunk)
		transform_feed(&b, msg + off, len - off < chunk ? len - off : chunk, &pieces);
	transform_finish(&b, &pieces);

	if (whole.len != pieces.len || (whole.len && memcmp(whole.data, pieces.data, whole.len)))
		abort();
	if (whole.len != a.emitted)
		abort();
	if (whole.len > 0 && memcmp(whole.data + whole.len - 2, "\r\n", 2) != 0)
		abort();
	for (size_t i = 0; i < whole.len; i++) /* no bare LF on the wire */
		if (whole.data[i] == '\n' && (i == 0 || whole.data[i - 1] != '\r'))
			abort();
	if (lines == TRANSFORM_ALL_LINES && a.emitted - a.stuffed != transform_size_of(msg, len))
		abort();
	buf_free(&whole);
	buf_free(&pieces);
	return 0;
}
