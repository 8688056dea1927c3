/*
 * fuzz_lmtp.c - drives the LMTP core with arbitrary input, playing the I/O
 * layer: command lines and DATA lines, every request completed with an
 * outcome picked from the input; replies must end in CRLF and there must be
 * one per accepted recipient after the data.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lmtp/lmtp.h"

static void settle(struct lmtp_session *s, unsigned char pick)
{
	for (int guard = 0; guard < 1000; guard++) {
		const struct lmtp_request *req = lmtp_session_request(s);
		switch (req->kind) {
		case LMTP_REQ_NONE:
		case LMTP_REQ_CLOSE:
			return;
		case LMTP_REQ_RCPT:
			lmtp_session_rcpt_done(s, (enum lmtp_rcpt_result)(pick % 5));
			break;
		case LMTP_REQ_DATA_BEGIN:
			lmtp_session_data_ready(s);
			break;
		case LMTP_REQ_DATA_END: {
			size_t n = req->recipients;
			enum lmtp_store_result *r = calloc(n ? n : 1, sizeof(*r));
			for (size_t i = 0; i < n; i++)
				r[i] = (enum lmtp_store_result)((pick + i) % 6);
			lmtp_session_data_done(s, r);
			free(r);
			break;
		}
		}
	}
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct lmtp_settings cfg = {.hostname = "fuzz", .max_message_size = 4096,
				    .max_recipients = 5, .max_bad_commands = 50};
	struct lmtp_session *s = lmtp_session_new(&cfg);
	size_t start = 0;
	for (size_t i = 0; i + 1 < size; i++) {
		if (data[i] != '\r' || data[i + 1] != '\n')
			continue;
		size_t len = i - start;
		if (len + 2 > lmtp_session_line_limit(s))
			lmtp_session_input_overlong(s);
		else
			lmtp_session_input(s, (const char *)data + start, len);
		settle(s, start < size ? data[start] : 0);
		struct buf *out = lmtp_session_output(s);
		if (out->len > 0 && (out->len < 2 || memcmp(out->data + out->len - 2, "\r\n", 2)))
			abort();
		buf_clear(out);
		buf_clear(lmtp_session_body(s));
		start = i + 2;
	}
	lmtp_session_free(s);
	return 0;
}
