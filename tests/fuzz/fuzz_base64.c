/* fuzz_base64.c - strict base64: whatever decodes re-encodes to the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf dec = BUF_INIT, enc = BUF_INIT;
	if (base64_decode((const char *)data, size, &dec) == 0) {
		base64_encode(dec.data, dec.len, &enc);
		if (enc.len != size || (size && memcmp(enc.data, data, size) != 0))
			abort();
	}
	buf_free(&dec);
	buf_free(&enc);
	return 0;
}
