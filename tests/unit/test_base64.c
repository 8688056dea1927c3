/* test_base64.c - the strict RFC 4648 base64 codec used for SASL: test vectors
 * both ways, round trips, and refusal of anything non-canonical. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "common/base64.h"
#include "common/buf.h"

/* RFC 4648 §10 */
static const struct {
	const char *plain;
	const char *encoded;
} vectors[] = {
	{"", ""},
	{"f", "Zg=="},
	{"fo", "Zm8="},
	{"foo", "Zm9v"},
	{"foob", "Zm9vYg=="},
	{"fooba", "Zm9vYmE="},
	{"foobar", "Zm9vYmFy"},
};

static void test_rfc4648_vectors_encode(void **state)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		struct buf out = BUF_INIT;
		base64_encode(vectors[i].plain, strlen(vectors[i].plain), &out);
		assert_int_equal(out.len, strlen(vectors[i].encoded));
		if (out.len)
			assert_memory_equal(out.data, vectors[i].encoded, out.len);
		buf_free(&out);
	}
}

static void test_rfc4648_vectors_decode(void **state)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		struct buf out = BUF_INIT;
		assert_int_equal(base64_decode(vectors[i].encoded, strlen(vectors[i].encoded), &out), 0);
		assert_int_equal(out.len, strlen(vectors[i].plain));
		if (out.len)
			assert_memory_equal(out.data, vectors[i].plain, out.len);
		buf_free(&out);
	}
}

static void test_sasl_prompts_and_plain_message(void **state)
{
	struct buf out = BUF_INIT;
	base64_encode("Username:", 9, &out);
	assert_int_equal(out.len, 12);
	assert_memory_equal(out.data, "VXNlcm5hbWU6", 12);
	buf_clear(&out);
	base64_encode("\0tim\0tanstaaftanstaaf", 21, &out);
	assert_int_equal(out.len, 28);
	assert_memory_equal(out.data, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm", 28);
	buf_clear(&out);
	assert_int_equal(base64_decode("AHRpbQB0YW5zdGFhZnRhbnN0YWFm", 28, &out), 0);
	assert_int_equal(out.len, 21);
	assert_memory_equal(out.data, "\0tim\0tanstaaftanstaaf", 21);
	buf_free(&out);
}

static void test_all_alphabet_characters_decode(void **state)
{
	struct buf out = BUF_INIT;
	assert_int_equal(base64_decode("+/+/", 4, &out), 0);
	assert_int_equal(out.len, 3);
	assert_memory_equal(out.data, "\xfb\xff\xbf", 3);
	buf_clear(&out);
	assert_int_equal(base64_decode("AAAA", 4, &out), 0);
	assert_memory_equal(out.data, "\0\0\0", 3);
	buf_free(&out);
}

static void test_round_trip_binary(void **state)
{
	unsigned char data[300];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 7 + 3);
	for (size_t len = 0; len <= sizeof(data); len++) {
		struct buf enc = BUF_INIT, dec = BUF_INIT;
		base64_encode(data, len, &enc);
		assert_int_equal(enc.len, (len + 2) / 3 * 4);
		assert_int_equal(base64_decode(enc.data, enc.len, &dec), 0);
		assert_int_equal(dec.len, len);
		if (len)
			assert_memory_equal(dec.data, data, len);
		buf_free(&enc);
		buf_free(&dec);
	}
}

static void expect_bad(const char *in, size_t len)
{
	struct buf out = BUF_INIT;
	assert_int_equal(base64_decode(in, len, &out), -1);
	buf_free(&out);
}

#define BAD(lit) expect_bad(lit, sizeof(lit) - 1)

static void test_rejects_bad_length(void **state)
{
	BAD("Z");
	BAD("Zg");
	BAD("Zg=");
	BAD("Zm9");
	BAD("Zm9vY");
	BAD("Zm9vYg=");
}

static void test_rejects_bad_characters(void **state)
{
	BAD("Zm9*");
	BAD("Zm-v");   /* base64url is not base64 */
	BAD("Zm_v");
	BAD("Zm9\x80");
	BAD("Zm\0v");
	BAD("Zm.v");
}

static void test_rejects_whitespace(void **state)
{
	BAD("Zm9 ");
	BAD(" Zm9v");
	BAD("Zm9v\r\n");
	BAD("Zm9v    ");
	BAD("Zm\t9");
	BAD("Zm9vYmFy\n");
}

static void test_rejects_misplaced_padding_and_data_after_it(void **state)
{
	BAD("Zg==Zg==");
	BAD("Zg=a");
	BAD("Zg=A"); /* canonical bits, but data after '=' */
	BAD("Zm9vZg=A");
	BAD("Zm9=Zm9v");
	BAD("Z===");
	BAD("====");
	BAD("=Zg=");
	BAD("Zg==\0\0\0\0");
	BAD("Zg======");
}

static void test_rejects_noncanonical_padding_bits(void **state)
{
	/* "Zg==" is canonical for "f"; "Zh==" hides non-zero bits */
	BAD("Zh==");
	BAD("Zv==");
	/* "Zm8=" is canonical for "fo"; "Zm9=" hides a non-zero bit */
	BAD("Zm9=");
	BAD("Zm9vYh==");
	BAD("Zm9vYmF=");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors_encode),
		cmocka_unit_test(test_rfc4648_vectors_decode),
		cmocka_unit_test(test_sasl_prompts_and_plain_message),
		cmocka_unit_test(test_all_alphabet_characters_decode),
		cmocka_unit_test(test_round_trip_binary),
		cmocka_unit_test(test_rejects_bad_length),
		cmocka_unit_test(test_rejects_bad_characters),
		cmocka_unit_test(test_rejects_whitespace),
		cmocka_unit_test(test_rejects_misplaced_padding_and_data_after_it),
		cmocka_unit_test(test_rejects_noncanonical_padding_bits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
