/* base64.c - strict base64 codec. */
#include "common/base64.h"

#include <stdint.h>

static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int value_of(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int base64_decode(const char *in, size_t len, struct buf *out)
{
	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		unsigned pad = 0;
		for (unsigned j = 0; j < 4; j++) {
			unsigned char c = (unsigned char)in[i + j];
			if (c == '=' && i + 4 == len && j >= 2) {
				pad++;
				v[j] = 0;
				continue;
			}
			if (pad > 0)
				return -1; /* data after padding */
			v[j] = value_of(c);
			if (v[j] < 0)
				return -1;
		}
		uint32_t n = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		/* Canonical form: bits hidden under the padding must be zero. */
		if ((pad == 1 && (n & 0xff) != 0) || (pad == 2 && (n & 0xffff) != 0))
			return -1;
		char bytes[3] = {(char)(n >> 16), (char)(n >> 8 & 0xff), (char)(n & 0xff)};
		buf_append(out, bytes, 3 - pad);
	}
	return 0;
}

void base64_encode(const void *data, size_t len, struct buf *out)
{
	const unsigned char *in = data;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t n = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			n |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			n |= in[i + 2];
		char quad[4] = {alphabet[n >> 18], alphabet[n >> 12 & 63],
				i + 1 < len ? alphabet[n >> 6 & 63] : '=',
				i + 2 < len ? alphabet[n & 63] : '='};
		buf_append(out, quad, 4);
	}
}
