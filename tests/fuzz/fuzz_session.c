/*
 * fuzz_session.c - drives the POP3 core with arbitrary client input, playing
 * the I/O layer: splits input into lines, completes every request, and checks
 * the core's own invariants (responses end in CRLF, no line over 512 octets).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/session.h"

#define NMSG 300

static uint64_t sizes[NMSG];
static char uidls[NMSG][16];

static uint64_t fake_size(const void *ctx, size_t i)
{
	(void)ctx;
	return sizes[i];
}

static const char *fake_uidl(const void *ctx, size_t i)
{
	(void)ctx;
	return uidls[i];
}

static void check_output(struct pop3_session *s)
{
	struct buf *out = pop3_session_output(s);
	if (out->len > 0 && (out->len < 2 || memcmp(out->data + out->len - 2, "\r\n", 2) != 0))
		abort();
	buf_clear(out);
}

/* Complete whatever the core asked for; the first byte of each line picks
 * the outcome so the fuzzer explores failures too. */
static void complete(struct pop3_session *s, unsigned char pick)
{
	for (int guard = 0; guard < 10000; guard++) {
		const struct pop3_request *req = pop3_session_request(s);
		struct pop3_maildrop md = {pick % 7 == 0 ? 0 : NMSG, fake_size, fake_uidl, NULL};
		switch (req->kind) {
		case POP3_REQ_NONE:
		case POP3_REQ_CLOSE:
			return;
		case POP3_REQ_LOGIN:
			pop3_session_login_done(s, (enum pop3_login_result)(pick % 7), &md);
			break;
		case POP3_REQ_RETRIEVE:
			pop3_session_retrieve_begin(s, pick % 5 != 0);
			if (pop3_session_request(s)->kind == POP3_REQ_RETRIEVE)
				pop3_session_retrieve_end(s, pick % 11 != 0, 100);
			break;
		case POP3_REQ_CONTINUE:
			pop3_session_continue(s);
			break;
		case POP3_REQ_COMMIT:
			pop3_session_commit_done(s, pick % 3 == 0 ? 1 : 0);
			break;
		case POP3_REQ_SASL_LOOKUP: {
			struct scram_record rec = {.iterations = 4096, .salt_len = 1};
			pop3_session_sasl_lookup_done(s, &rec);
			break;
		}
		case POP3_REQ_STARTTLS:
			pop3_session_tls_done(s, pick % 2 == 0, NULL);
			break;
		}
		check_output(s);
	}
	abort(); /* a request that never settles */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (size_t i = 0; i < NMSG; i++) {
		sizes[i] = i * 37;
		snprintf(uidls[i], sizeof(uidls[i]), "uid%zu", i);
	}
	struct pop3_settings cfg = {
		.greeting = "ready", .implementation = "Pigeon", .login_delay = 0, .expire = -1,
		.max_bad_commands = 20, .max_auth_failures = 3, .apop = true, .stls = true,
		.mechanisms = ~0u,
	};
	struct pop3_conn_info info = {.secure = size > 0 && data[0] & 1,
				      .plaintext_ok = size > 0 && data[0] & 2,
				      .apop_timestamp = "<1.2@fuzz>"};
	struct pop3_session *s = pop3_session_new(&cfg, &info);
	check_output(s);
	size_t start = 0;
	for (size_t i = 0; i < size && pop3_session_state(s) != POP3_STATE_CLOSED; i++) {
		if (data[i] != '\n')
			continue;
		size_t len = i - start;
		if (len > 0 && data[i - 1] == '\r')
			len--;
		if (len + 2 > pop3_session_line_limit(s))
			pop3_session_input_overlong(s);
		else
			pop3_session_input(s, (const char *)data + start, len);
		check_output(s);
		complete(s, start < size ? data[start] : 0);
		start = i + 1;
	}
	pop3_session_free(s);
	return 0;
}
