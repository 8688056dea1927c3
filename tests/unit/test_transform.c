/* test_transform.c - the RETR/TOP stream filter: CRLF conversion, byte-stuffing,
 * NUL replacement, the TOP line limit, chunking independence and LIST sizes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "store/transform.h"

#define S(lit) lit, sizeof(lit) - 1

/* Transform the whole input in one feed; returns the transform's final state. */
static struct transform run_whole(const char *in, size_t len, uint64_t lines, bool stuff,
				  bool no_nuls, struct buf *out)
{
	struct transform t;
	transform_init(&t, lines, stuff, no_nuls);
	transform_feed(&t, in, len, out);
	transform_finish(&t, out);
	return t;
}

/* Transform the input in chunks of the given sizes (cycled). */
static struct transform run_chunked(const char *in, size_t len, uint64_t lines, bool stuff,
				    bool no_nuls, const size_t *sizes, size_t nsizes,
				    struct buf *out)
{
	struct transform t;
	transform_init(&t, lines, stuff, no_nuls);
	size_t pos = 0, k = 0;
	while (pos < len) {
		size_t n = sizes[k++ % nsizes];
		if (n > len - pos)
			n = len - pos;
		transform_feed(&t, in + pos, n, out);
		pos += n;
	}
	transform_finish(&t, out);
	return t;
}

/* RETR of in must be exactly want. */
static void check_retr(const char *in, size_t len, const char *want, size_t wantlen)
{
	struct buf out = BUF_INIT;
	struct transform t = run_whole(in, len, TRANSFORM_ALL_LINES, true, false, &out);
	assert_int_equal(out.len, wantlen);
	if (wantlen > 0)
		assert_memory_equal(out.data, want, wantlen);
	assert_int_equal(t.emitted, wantlen);
	buf_free(&out);
}

/* TOP n of in must be exactly want. */
static void check_top(const char *in, size_t len, uint64_t n, const char *want, size_t wantlen)
{
	struct buf out = BUF_INIT;
	run_whole(in, len, n, true, false, &out);
	assert_int_equal(out.len, wantlen);
	if (wantlen > 0)
		assert_memory_equal(out.data, want, wantlen);
	buf_free(&out);
}

/* Deterministic pseudo-random numbers (no global rand() state). */
static uint32_t next_random(uint32_t *state)
{
	*state = *state * 1103515245u + 12345u;
	return *state >> 8;
}

static void test_empty_message_produces_nothing(void **state)
{
	struct buf out = BUF_INIT;
	struct transform t = run_whole("", 0, TRANSFORM_ALL_LINES, true, false, &out);
	assert_int_equal(out.len, 0);
	assert_int_equal(t.emitted, 0);
	assert_int_equal(t.stuffed, 0);
	assert_int_equal(transform_size_of("", 0), 0);
	buf_free(&out);
}

static void test_missing_final_newline_gets_crlf(void **state)
{
	check_retr(S("Subject: x\r\n\r\nlast line"), S("Subject: x\r\n\r\nlast line\r\n"));
	check_retr(S("abc"), S("abc\r\n"));
}

static void test_bare_lf_becomes_crlf(void **state)
{
	check_retr(S("a\nb\n"), S("a\r\nb\r\n"));
	check_retr(S("\n\n\n"), S("\r\n\r\n\r\n"));
	check_retr(S("H: v\n\nbody\n"), S("H: v\r\n\r\nbody\r\n"));
}

static void test_crlf_passes_unchanged(void **state)
{
	check_retr(S("a\r\nb\r\n"), S("a\r\nb\r\n"));
	check_retr(S("\r\n"), S("\r\n"));
	/* mixed line ends in one message */
	check_retr(S("a\r\nb\nc\r\n"), S("a\r\nb\r\nc\r\n"));
}

static void test_bare_cr_is_kept_as_content(void **state)
{
	check_retr(S("a\rb\r\n"), S("a\rb\r\n"));
	check_retr(S("\rx\n"), S("\rx\r\n"));
	check_retr(S("a\r\r\nb\n"), S("a\r\r\nb\r\n"));
	check_retr(S("a\r\rb\n"), S("a\r\rb\r\n"));
}

static void test_cr_at_end_of_input_ends_the_line(void **state)
{
	/* A lone CR at the very end closes the last line: the output ends in
	 * exactly one CRLF and carries no stray CR before the terminator. */
	check_retr(S("abc\r"), S("abc\r\n"));
	check_retr(S("\r"), S("\r\n"));
	assert_int_equal(transform_size_of(S("abc\r")), 5);
}

static void test_lines_starting_with_dot_are_stuffed(void **state)
{
	check_retr(S(".\n"), S("..\r\n"));
	check_retr(S("..\n"), S("...\r\n"));
	check_retr(S(".x\n"), S("..x\r\n"));
	check_retr(S("..x\n"), S("...x\r\n"));
	check_retr(S("a\n.x\r\n..y\nb.c\n"), S("a\r\n..x\r\n...y\r\nb.c\r\n"));
	/* a dot line without a final newline */
	check_retr(S("x\n.y"), S("x\r\n..y\r\n"));
	/* a dot after a bare CR is not at a line start */
	check_retr(S("a\r.b\n"), S("a\r.b\r\n"));
}

static void test_stuffing_is_counted_in_stuffed(void **state)
{
	struct buf out = BUF_INIT;
	struct transform t = run_whole(S(".a\n..b\nc\n.\n"), TRANSFORM_ALL_LINES, true, false, &out);
	assert_int_equal(t.stuffed, 3);
	assert_int_equal(t.emitted, out.len);
	buf_free(&out);
}

static void test_no_stuffing_when_disabled(void **state)
{
	struct buf out = BUF_INIT;
	struct transform t = run_whole(S(".a\n..\n"), TRANSFORM_ALL_LINES, false, false, &out);
	assert_int_equal(out.len, 8);
	assert_memory_equal(out.data, ".a\r\n..\r\n", 8);
	assert_int_equal(t.stuffed, 0);
	buf_free(&out);
}

static void test_line_of_only_dot_never_ends_response(void **state)
{
	check_retr(S("."), S("..\r\n"));
	check_retr(S(".\r\n"), S("..\r\n"));
	check_retr(S("a\r\n.\r\nb\r\n"), S("a\r\n..\r\nb\r\n"));
	check_retr(S("a\n.\n"), S("a\r\n..\r\n"));
}

static void test_ten_thousand_character_lines(void **state)
{
	const size_t len = 10000;
	char *in = malloc(3 * len + 16);
	assert_non_null(in);
	/* line 1: 10,000 x; line 2: "." then 9,999 y; no final newline */
	memset(in, 'x', len);
	in[len] = '\n';
	in[len + 1] = '.';
	memset(in + len + 2, 'y', len - 1);
	size_t inlen = 2 * len + 1;

	struct buf out = BUF_INIT;
	struct transform t = run_whole(in, inlen, TRANSFORM_ALL_LINES, true, false, &out);
	assert_int_equal(out.len, len + 2 + 1 + len + 2);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(out.data[i], 'x');
	assert_memory_equal(out.data + len, "\r\n..", 4);
	for (size_t i = len + 4; i < out.len - 2; i++)
		assert_int_equal(out.data[i], 'y');
	assert_memory_equal(out.data + out.len - 2, "\r\n", 2);
	assert_int_equal(t.stuffed, 1);
	assert_int_equal(transform_size_of(in, inlen), out.len - 1);

	/* the same in 7-byte chunks */
	struct buf chunked = BUF_INIT;
	const size_t seven = 7;
	run_chunked(in, inlen, TRANSFORM_ALL_LINES, true, false, &seven, 1, &chunked);
	assert_int_equal(chunked.len, out.len);
	assert_memory_equal(chunked.data, out.data, out.len);
	buf_free(&chunked);
	buf_free(&out);
	free(in);
}

static void test_binary_bytes_and_nul_kept_without_no_nuls(void **state)
{
	/* every byte value except CR and LF, starting with NUL, then LF */
	char in[256];
	size_t n = 0;
	for (int c = 0; c < 256; c++)
		if (c != '\r' && c != '\n')
			in[n++] = (char)c;
	in[n++] = '\n';
	struct buf out = BUF_INIT;
	run_whole(in, n, TRANSFORM_ALL_LINES, true, false, &out);
	assert_int_equal(out.len, n + 1);
	assert_memory_equal(out.data, in, n - 1);
	assert_memory_equal(out.data + n - 1, "\r\n", 2);
	buf_free(&out);

	check_retr(S("a\0b\0\0\n\0\n"), S("a\0b\0\0\r\n\0\r\n"));
}

static void test_no_nuls_replaces_nul_with_0x80_same_length(void **state)
{
	static const char in[] = "\0a\0\0b\n\0\n.\0\n\xff\0";
	size_t len = sizeof(in) - 1;
	struct buf out = BUF_INIT;
	run_whole(in, len, TRANSFORM_ALL_LINES, true, true, &out);
	static const char want[] = "\x80" "a\x80\x80" "b\r\n\x80\r\n..\x80\r\n\xff\x80\r\n";
	assert_int_equal(out.len, sizeof(want) - 1);
	assert_memory_equal(out.data, want, sizeof(want) - 1);
	assert_null(memchr(out.data, '\0', out.len));

	/* same length as without the option */
	struct buf plain = BUF_INIT;
	run_whole(in, len, TRANSFORM_ALL_LINES, true, false, &plain);
	assert_int_equal(plain.len, out.len);
	buf_free(&plain);
	buf_free(&out);
}

/* Inputs where chunk boundaries matter: CR|LF, CR at ends, dots, NULs. */
static const struct {
	const char *data;
	size_t len;
} samples[] = {
	{S("")},
	{S("a\r\nb\r\n")},
	{S("a\nb\n")},
	{S("a\rb\r\r\n\r")},
	{S("\r\r\r\n\n\r")},
	{S(".\r\n..\r\n.x\n..x\r\n.")},
	{S("H: 1\r\nH: 2\r\n\r\n.b1\r\nb2\nb3\r\n\r\n.\r\nb5\rb5\r\nb6")},
	{S("H\n\n\r\n\r\n\n\n")},
	{S("\0\r\0\n.\0\r\n\0")},
	{S("no blank line\r\nat all\r\n")},
	{S("\r\n.\r\n")},
	{S("x\r")},
};

static void check_chunking_invariance(const char *in, size_t len, uint64_t lines, bool no_nuls)
{
	struct buf whole = BUF_INIT;
	struct transform tw = run_whole(in, len, lines, true, no_nuls, &whole);

	/* byte by byte */
	struct buf bytes = BUF_INIT;
	const size_t one = 1;
	struct transform tb = run_chunked(in, len, lines, true, no_nuls, &one, 1, &bytes);
	assert_int_equal(bytes.len, whole.len);
	if (whole.len)
		assert_memory_equal(bytes.data, whole.data, whole.len);
	assert_int_equal(tb.emitted, tw.emitted);
	assert_int_equal(tb.stuffed, tw.stuffed);
	assert_int_equal(tb.done, tw.done);
	buf_free(&bytes);

	/* every split into two pieces (covers CR | LF at each position) */
	for (size_t cut = 0; cut <= len; cut++) {
		struct buf two = BUF_INIT;
		struct transform t2;
		transform_init(&t2, lines, true, no_nuls);
		transform_feed(&t2, in, cut, &two);
		transform_feed(&t2, in + cut, len - cut, &two);
		transform_finish(&t2, &two);
		assert_int_equal(two.len, whole.len);
		if (whole.len)
			assert_memory_equal(two.data, whole.data, whole.len);
		assert_int_equal(t2.stuffed, tw.stuffed);
		buf_free(&two);
	}

	/* random chunk sizes, including empty feeds */
	uint32_t seed = 12345;
	for (int round = 0; round < 20; round++) {
		size_t sizes[8];
		for (unsigned i = 0; i < 8; i++)
			sizes[i] = next_random(&seed) % 6;
		sizes[round % 8] = 1 + next_random(&seed) % 5; /* always progress */
		struct buf rnd = BUF_INIT;
		struct transform tr;
		transform_init(&tr, lines, true, no_nuls);
		size_t pos = 0, k = 0;
		while (pos < len) {
			size_t n = sizes[k++ % 8];
			if (n > len - pos)
				n = len - pos;
			transform_feed(&tr, in + pos, n, &rnd);
			pos += n;
		}
		transform_finish(&tr, &rnd);
		assert_int_equal(rnd.len, whole.len);
		if (whole.len)
			assert_memory_equal(rnd.data, whole.data, whole.len);
		buf_free(&rnd);
	}
	buf_free(&whole);
}

static void test_output_independent_of_chunking(void **state)
{
	static const uint64_t limits[] = {TRANSFORM_ALL_LINES, 0, 1, 2, 3};
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
		for (size_t l = 0; l < sizeof(limits) / sizeof(limits[0]); l++)
			for (int nn = 0; nn < 2; nn++)
				check_chunking_invariance(samples[i].data, samples[i].len, limits[l],
							  nn != 0);
}

static void test_output_independent_of_chunking_random_messages(void **state)
{
	/* random messages over an alphabet rich in CR, LF, dots and NUL */
	static const char alphabet[] = {'\r', '\n', '.', '\0', 'a', ' ', '\r', '\n'};
	uint32_t seed = 777;
	for (int m = 0; m < 200; m++) {
		char in[64];
		size_t len = next_random(&seed) % sizeof(in);
		for (size_t i = 0; i < len; i++)
			in[i] = alphabet[next_random(&seed) % sizeof(alphabet)];
		check_chunking_invariance(in, len, TRANSFORM_ALL_LINES, m % 2 == 0);
		check_chunking_invariance(in, len, (uint64_t)(m % 3), false);
	}
}

static const char top_msg[] = "From: a\r\nSubject: b\r\n\r\nline1\r\n.line2\r\nline3\r\n";

static void test_top_zero_gives_headers_and_blank_line(void **state)
{
	check_top(S(top_msg), 0, S("From: a\r\nSubject: b\r\n\r\n"));
	/* LF-stored */
	check_top(S("From: a\nSubject: b\n\nline1\n"), 0, S("From: a\r\nSubject: b\r\n\r\n"));
}

static void test_top_two_gives_two_body_lines(void **state)
{
	check_top(S(top_msg), 2, S("From: a\r\nSubject: b\r\n\r\nline1\r\n..line2\r\n"));
	check_top(S(top_msg), 1, S("From: a\r\nSubject: b\r\n\r\nline1\r\n"));
	/* blank body lines count as lines */
	check_top(S("H: x\n\n\n\nz\n"), 2, S("H: x\r\n\r\n\r\n\r\n"));
}

static void test_top_huge_equals_retr(void **state)
{
	/* no sample has anywhere near 1000 body lines */
	static const uint64_t huge[] = {1000, UINT64_MAX - 1, TRANSFORM_ALL_LINES};
	for (size_t s = 0; s < sizeof(samples) / sizeof(samples[0]); s++) {
		struct buf retr = BUF_INIT;
		run_whole(samples[s].data, samples[s].len, TRANSFORM_ALL_LINES, true, false, &retr);
		for (size_t h = 0; h < sizeof(huge) / sizeof(huge[0]); h++) {
			struct buf top = BUF_INIT;
			run_whole(samples[s].data, samples[s].len, huge[h], true, false, &top);
			assert_int_equal(top.len, retr.len);
			if (retr.len)
				assert_memory_equal(top.data, retr.data, retr.len);
			buf_free(&top);
		}
		buf_free(&retr);
	}
	/* top_msg has 3 body lines: TOP 3 and TOP 4 send all of it */
	struct buf retr = BUF_INIT;
	run_whole(S(top_msg), TRANSFORM_ALL_LINES, true, false, &retr);
	for (uint64_t n = 3; n <= 4; n++) {
		struct buf top = BUF_INIT;
		run_whole(S(top_msg), n, true, false, &top);
		assert_int_equal(top.len, retr.len);
		assert_memory_equal(top.data, retr.data, retr.len);
		buf_free(&top);
	}
	buf_free(&retr);
}

static void test_top_without_blank_line_sends_everything(void **state)
{
	check_top(S("H1: a\r\nH2: b\r\n"), 0, S("H1: a\r\nH2: b\r\n"));
	check_top(S("H1: a\nH2: b"), 0, S("H1: a\r\nH2: b\r\n"));
	check_top(S("H1: a\n.H2: b\n"), 2, S("H1: a\r\n..H2: b\r\n"));
}

static void test_top_body_without_final_newline(void **state)
{
	check_top(S("H: a\n\nbody"), 1, S("H: a\r\n\r\nbody\r\n"));
	check_top(S("H: a\n\nbody"), 5, S("H: a\r\n\r\nbody\r\n"));
	check_top(S("H: a\n\nbody\r"), 1, S("H: a\r\n\r\nbody\r\n"));
}

static void test_done_set_once_top_limit_reached(void **state)
{
	struct transform t;
	struct buf out = BUF_INIT;
	transform_init(&t, 1, true, false);
	assert_false(transform_done(&t));
	transform_feed(&t, S("From: a\r\n"), &out);
	assert_false(transform_done(&t));
	transform_feed(&t, S("\r\n"), &out);
	assert_false(transform_done(&t));
	transform_feed(&t, S("body1\r"), &out);
	assert_false(transform_done(&t));
	transform_feed(&t, S("\n"), &out);
	assert_true(transform_done(&t));
	/* input after the limit is ignored, and finish adds nothing */
	size_t len = out.len;
	transform_feed(&t, S("more\r\nand more"), &out);
	transform_finish(&t, &out);
	assert_int_equal(out.len, len);
	assert_memory_equal(out.data, "From: a\r\n\r\nbody1\r\n", len);
	buf_free(&out);

	/* n = 0: done right after the blank line */
	transform_init(&t, 0, true, false);
	transform_feed(&t, S("H: x\n\n"), NULL);
	assert_true(transform_done(&t));
	assert_int_equal(t.emitted, 8);

	/* RETR is never done early */
	transform_init(&t, TRANSFORM_ALL_LINES, true, false);
	transform_feed(&t, S(top_msg), NULL);
	transform_finish(&t, NULL);
	assert_false(transform_done(&t));

	/* message shorter than the limit: never done */
	transform_init(&t, 10, true, false);
	transform_feed(&t, S(top_msg), NULL);
	assert_false(transform_done(&t));
}

static void test_count_only_matches_output(void **state)
{
	for (size_t s = 0; s < sizeof(samples) / sizeof(samples[0]); s++) {
		struct buf out = BUF_INIT;
		struct transform with = run_whole(samples[s].data, samples[s].len, 2, true, true, &out);
		struct transform without = run_whole(samples[s].data, samples[s].len, 2, true, true, NULL);
		assert_int_equal(with.emitted, out.len);
		assert_int_equal(without.emitted, out.len);
		assert_int_equal(without.stuffed, with.stuffed);
		buf_free(&out);
	}
}

static void check_size_of(const char *in, size_t len)
{
	struct buf out = BUF_INIT;
	struct transform t = run_whole(in, len, TRANSFORM_ALL_LINES, true, false, &out);
	assert_int_equal(transform_size_of(in, len), out.len - t.stuffed);
	/* and it is the length RETR would send without stuffing */
	struct buf unstuffed = BUF_INIT;
	run_whole(in, len, TRANSFORM_ALL_LINES, false, false, &unstuffed);
	assert_int_equal(transform_size_of(in, len), unstuffed.len);
	buf_free(&unstuffed);
	buf_free(&out);
}

static void test_size_of_equals_retr_length_minus_stuffing(void **state)
{
	for (size_t s = 0; s < sizeof(samples) / sizeof(samples[0]); s++)
		check_size_of(samples[s].data, samples[s].len);
	check_size_of(S(top_msg));
	/* k bare-LF lines: file size + k */
	assert_int_equal(transform_size_of(S("a\nb\nc\n")), 6 + 3);
	assert_int_equal(transform_size_of(S(".\n.\n")), 4 + 2);
	assert_int_equal(transform_size_of(S("a\r\n")), 3);

	static const char alphabet[] = {'\r', '\n', '.', '\0', 'x'};
	uint32_t seed = 4242;
	for (int m = 0; m < 300; m++) {
		char in[48];
		size_t len = next_random(&seed) % sizeof(in);
		for (size_t i = 0; i < len; i++)
			in[i] = alphabet[next_random(&seed) % sizeof(alphabet)];
		check_size_of(in, len);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_message_produces_nothing),
		cmocka_unit_test(test_missing_final_newline_gets_crlf),
		cmocka_unit_test(test_bare_lf_becomes_crlf),
		cmocka_unit_test(test_crlf_passes_unchanged),
		cmocka_unit_test(test_bare_cr_is_kept_as_content),
		cmocka_unit_test(test_cr_at_end_of_input_ends_the_line),
		cmocka_unit_test(test_lines_starting_with_dot_are_stuffed),
		cmocka_unit_test(test_stuffing_is_counted_in_stuffed),
		cmocka_unit_test(test_no_stuffing_when_disabled),
		cmocka_unit_test(test_line_of_only_dot_never_ends_response),
		cmocka_unit_test(test_ten_thousand_character_lines),
		cmocka_unit_test(test_binary_bytes_and_nul_kept_without_no_nuls),
		cmocka_unit_test(test_no_nuls_replaces_nul_with_0x80_same_length),
		cmocka_unit_test(test_output_independent_of_chunking),
		cmocka_unit_test(test_output_independent_of_chunking_random_messages),
		cmocka_unit_test(test_top_zero_gives_headers_and_blank_line),
		cmocka_unit_test(test_top_two_gives_two_body_lines),
		cmocka_unit_test(test_top_huge_equals_retr),
		cmocka_unit_test(test_top_without_blank_line_sends_everything),
		cmocka_unit_test(test_top_body_without_final_newline),
		cmocka_unit_test(test_done_set_once_top_limit_reached),
		cmocka_unit_test(test_count_only_matches_output),
		cmocka_unit_test(test_size_of_equals_retr_length_minus_stuffing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
