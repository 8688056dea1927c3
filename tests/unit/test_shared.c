/* test_shared.c - how the shared table keys a client address: one IPv6 /64 is
 * one client, an IPv4-mapped IPv6 address is its IPv4 address, the port never
 * matters. Only the contract in shared.h is tested (how the key is hashed, and
 * with which secret, is the module's business). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "server/shared.h"
#include "test_addrs.h"

/* The key, computed into memory prefilled with `fill`: a key that left some
 * bytes unwritten would differ between two fills. */
static struct shared_key key_of(struct sockaddr_storage ss, unsigned char fill)
{
	struct shared_key k;
	memset(&k, fill, sizeof(k));
	shared_key_addr((const struct sockaddr *)&ss, &k);
	return k;
}

static bool same_key(struct sockaddr_storage a, struct sockaddr_storage b)
{
	struct shared_key ka = key_of(a, 0x00), kb = key_of(b, 0xff);
	return memcmp(ka.k, kb.k, SHARED_KEY_LEN) == 0;
}

static void test_ipv6_same_64_is_one_key(void **state)
{
	/* A /64 is what one subscriber gets; the host half is theirs to vary. */
	assert_true(same_key(v6("2001:db8:1:2::1", 110), v6("2001:db8:1:2::1", 110)));
	assert_true(same_key(v6("2001:db8:1:2::1", 110),
			     v6("2001:db8:1:2:ffff:ffff:ffff:ffff", 995)));
	assert_true(same_key(v6("2001:db8:1:2::", 110), v6("2001:db8:1:2:8000::1", 110)));
	assert_true(same_key(v6("2001:db8:1:2:dead:beef:0:1", 1),
			     v6("2001:db8:1:2:1234:5678:9abc:def0", 2)));
}

static void test_ipv6_different_64s_differ(void **state)
{
	/* Neighbouring /64s: the last bit of the prefix decides. */
	assert_false(same_key(v6("2001:db8:1:2::1", 110), v6("2001:db8:1:3::1", 110)));
	/* Only the first byte differs. */
	assert_false(same_key(v6("2001:db8:1:2::1", 110), v6("3001:db8:1:2::1", 110)));
	/* Same host half, other prefix. */
	assert_false(same_key(v6("2001:db8:aaaa:1::42", 110), v6("2001:db8:bbbb:1::42", 110)));
	assert_false(same_key(v6("::1", 110), v6("2001:db8::1", 110)));
}

static void test_ipv4_mapped_ipv6_is_the_ipv4_address(void **state)
{
	/* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d. */
	assert_true(same_key(v6("::ffff:192.0.2.7", 110), v4("192.0.2.7", 110)));
	assert_true(same_key(v6("::ffff:192.0.2.7", 40000), v4("192.0.2.7", 995)));
	assert_true(same_key(v6("::ffff:127.0.0.1", 110), v4("127.0.0.1", 110)));
	/* Mapped addresses are not grouped by /64: they are IPv4 clients. */
	assert_false(same_key(v6("::ffff:192.0.2.7", 110), v6("::ffff:192.0.2.8", 110)));
	assert_false(same_key(v6("::ffff:192.0.2.7", 110), v4("192.0.2.8", 110)));
	assert_false(same_key(v6("::ffff:10.0.0.1", 110), v6("::ffff:192.0.2.7", 110)));
}

static void test_ipv4_addresses_differ(void **state)
{
	assert_false(same_key(v4("192.0.2.7", 110), v4("192.0.2.8", 110)));
	assert_false(same_key(v4("10.0.0.1", 110), v4("11.0.0.1", 110)));
	assert_false(same_key(v4("127.0.0.1", 110), v4("127.0.0.2", 110)));
	assert_false(same_key(v4("0.0.0.0", 110), v4("255.255.255.255", 110)));
}

static void test_port_never_matters(void **state)
{
	assert_true(same_key(v4("192.0.2.7", 1), v4("192.0.2.7", 65535)));
	assert_true(same_key(v6("2001:db8::1", 1), v6("2001:db8::1", 65535)));
}

static void test_ipv4_and_ipv6_do_not_collide(void **state)
{
	/* An IPv6 /64 whose first octets spell an IPv4 address is another client. */
	assert_false(same_key(v4("32.1.13.184", 110), v6("2001:db8::", 110)));
	assert_false(same_key(v4("0.0.0.0", 110), v6("::", 110)));
	assert_false(same_key(v4("192.0.2.7", 110), v6("c000:207::", 110)));
}

static void test_key_is_deterministic_within_a_process(void **state)
{
	/* Every worker computes the key for the same address independently;
	 * they must agree (the table is shared). */
	struct shared_key a = key_of(v6("2001:db8:1:2::1", 110), 0x00);
	struct shared_key b = key_of(v6("2001:db8:1:2::1", 110), 0x5a);
	assert_memory_equal(a.k, b.k, SHARED_KEY_LEN);
	struct shared_key c = key_of(v4("192.0.2.7", 110), 0xff);
	struct shared_key d = key_of(v4("192.0.2.7", 110), 0x5a);
	assert_memory_equal(c.k, d.k, SHARED_KEY_LEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ipv6_same_64_is_one_key),
		cmocka_unit_test(test_ipv6_different_64s_differ),
		cmocka_unit_test(test_ipv4_mapped_ipv6_is_the_ipv4_address),
		cmocka_unit_test(test_ipv4_addresses_differ),
		cmocka_unit_test(test_port_never_matters),
		cmocka_unit_test(test_ipv4_and_ipv6_do_not_collide),
		cmocka_unit_test(test_key_is_deterministic_within_a_process),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
