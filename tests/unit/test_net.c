/* test_net.c - listen address and network prefix parsing, prefix matching
 * (with IPv4-mapped IPv6), loopback detection and address formatting. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "common/net.h"
#include "test_addrs.h"

#define SA(ss) ((const struct sockaddr *)&(ss))

static void test_listen_ipv4(void **state)
{
	struct net_addr a;
	assert_int_equal(net_parse_listen("127.0.0.1:110", &a), 0);
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.ss;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 110);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(a.len, sizeof(struct sockaddr_in));

	assert_int_equal(net_parse_listen("192.0.2.7:995", &a), 0);
	assert_int_equal(ntohs(sin->sin_port), 995);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0xc0000207);
}

static void test_listen_ipv6_in_brackets(void **state)
{
	struct net_addr a;
	assert_int_equal(net_parse_listen("[::1]:110", &a), 0);
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.ss;
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(sin6->sin6_port), 110);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	assert_int_equal(a.len, sizeof(struct sockaddr_in6));

	assert_int_equal(net_parse_listen("[::]:995", &a), 0);
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_true(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));

	assert_int_equal(net_parse_listen("[2001:db8::5]:1110", &a), 0);
	struct in6_addr want;
	inet_pton(AF_INET6, "2001:db8::5", &want);
	assert_memory_equal(&sin6->sin6_addr, &want, sizeof(want));
	assert_int_equal(ntohs(sin6->sin6_port), 1110);
}

static void test_listen_star_is_all_ipv4(void **state)
{
	struct net_addr a;
	assert_int_equal(net_parse_listen("*:110", &a), 0);
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.ss;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(sin->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_int_equal(ntohs(sin->sin_port), 110);
	assert_int_equal(a.len, sizeof(struct sockaddr_in));
}

static void test_listen_port_range(void **state)
{
	struct net_addr a;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.ss;
	assert_int_equal(net_parse_listen("127.0.0.1:1", &a), 0);
	assert_int_equal(ntohs(sin->sin_port), 1);
	assert_int_equal(net_parse_listen("127.0.0.1:65535", &a), 0);
	assert_int_equal(ntohs(sin->sin_port), 65535);
	assert_int_equal(net_parse_listen("127.0.0.1:65536", &a), -1);
	assert_int_equal(net_parse_listen("127.0.0.1:99999", &a), -1);
	assert_int_equal(net_parse_listen("[::1]:65536", &a), -1);
	assert_int_equal(net_parse_listen("127.0.0.1:18446744073709551727", &a), -1);
}

static void test_listen_bad_forms(void **state)
{
	static const char *const bad[] = {
		"", "127.0.0.1", "127.0.0.1:", ":110", "::1:110", "[::1]110", "[::1", "[::1]:",
		"::1", "localhost:110", "256.1.1.1:110", "1.2.3:110", "1.2.3.4:abc", "1.2.3.4:-1",
		"1.2.3.4: 110", "1.2.3.4:110 ", " 1.2.3.4:110", "[]:110", "[zz::1]:110",
		"[::1]:110:1", "1.2.3.4:+110", "[*]x:110",
		"[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0001]:1",
		"1111111111111111111111111111111111111111111111111111111111111111111.1.1.1:110",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct net_addr a;
		if (net_parse_listen(bad[i], &a) != -1)
			fail_msg("accepted listen address '%s'", bad[i]);
	}
}

static void test_listen_default_port(void **state)
{
	struct net_addr a;
	assert_int_equal(net_parse_listen_port("127.0.0.1", 995, &a), 0);
	assert_int_equal(((struct sockaddr_in *)&a.ss)->sin_port, htons(995));
	assert_int_equal(net_parse_listen_port("*", 110, &a), 0);
	assert_int_equal(((struct sockaddr_in *)&a.ss)->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_int_equal(((struct sockaddr_in *)&a.ss)->sin_port, htons(110));
	assert_int_equal(net_parse_listen_port("[::]", 995, &a), 0);
	assert_int_equal(a.ss.ss_family, AF_INET6);
	assert_int_equal(((struct sockaddr_in6 *)&a.ss)->sin6_port, htons(995));
	/* an explicit port wins */
	assert_int_equal(net_parse_listen_port("[::1]:1995", 995, &a), 0);
	assert_int_equal(((struct sockaddr_in6 *)&a.ss)->sin6_port, htons(1995));
	/* still refused: bare IPv6, an empty port, garbage */
	static const char *const bad[] = {"::1", "[::1]:", "127.0.0.1:", "", "[::1]x", "host"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (net_parse_listen_port(bad[i], 995, &a) != -1)
			fail_msg("accepted listen address '%s'", bad[i]);
	/* 0: a port is required */
	assert_int_equal(net_parse_listen_port("127.0.0.1", 0, &a), -1);
}

static void test_prefix_ipv4_with_and_without_length(void **state)
{
	struct net_prefix p;
	assert_int_equal(net_parse_prefix("10.0.0.0/8", &p), 0);
	assert_int_equal(p.family, AF_INET);
	assert_int_equal(p.bits, 8);
	assert_memory_equal(p.bytes, "\x0a\x00\x00\x00", 4);
	assert_int_equal(net_parse_prefix("192.168.1.7", &p), 0);
	assert_int_equal(p.family, AF_INET);
	assert_int_equal(p.bits, 32);
	assert_int_equal(net_parse_prefix("0.0.0.0/0", &p), 0);
	assert_int_equal(p.bits, 0);
	assert_int_equal(net_parse_prefix("1.2.3.4/32", &p), 0);
	assert_int_equal(p.bits, 32);
}

static void test_prefix_ipv6_with_and_without_length(void **state)
{
	struct net_prefix p;
	assert_int_equal(net_parse_prefix("2001:db8::/32", &p), 0);
	assert_int_equal(p.family, AF_INET6);
	assert_int_equal(p.bits, 32);
	assert_memory_equal(p.bytes, "\x20\x01\x0d\xb8", 4);
	assert_int_equal(net_parse_prefix("::1", &p), 0);
	assert_int_equal(p.family, AF_INET6);
	assert_int_equal(p.bits, 128);
	assert_int_equal(net_parse_prefix("::/0", &p), 0);
	assert_int_equal(p.bits, 0);
	assert_int_equal(net_parse_prefix("fe80::/128", &p), 0);
	assert_int_equal(p.bits, 128);
}

static void test_prefix_bad_forms(void **state)
{
	static const char *const bad[] = {
		"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/8x", "10.0.0.0/-1", "10.0.0.0/+8",
		"10.0.0.0/ 8", "10.0.0/8", "foo", "foo/8", "::/129", "2001:db8::/200", "[::1]/128",
		"10.0.0.0/8/8", "10.0.0.0//8", "*",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct net_prefix p;
		if (net_parse_prefix(bad[i], &p) != -1)
			fail_msg("accepted prefix '%s'", bad[i]);
	}
}

static bool matches(const char *prefix, struct sockaddr_storage ss)
{
	struct net_prefix p;
	assert_int_equal(net_parse_prefix(prefix, &p), 0);
	return net_prefix_match(&p, SA(ss));
}

static void test_prefix_match_ipv4(void **state)
{
	assert_true(matches("10.0.0.0/8", v4("10.1.2.3", 1)));
	assert_true(matches("10.0.0.0/8", v4("10.255.255.255", 1)));
	assert_false(matches("10.0.0.0/8", v4("11.0.0.1", 1)));
	assert_false(matches("10.0.0.0/8", v4("9.255.255.255", 1)));
	/* a prefix that ends inside a byte */
	assert_true(matches("192.168.1.0/25", v4("192.168.1.127", 1)));
	assert_false(matches("192.168.1.0/25", v4("192.168.1.128", 1)));
	assert_true(matches("172.16.0.0/12", v4("172.31.255.1", 1)));
	assert_false(matches("172.16.0.0/12", v4("172.32.0.1", 1)));
	/* a single host */
	assert_true(matches("192.168.1.7", v4("192.168.1.7", 1)));
	assert_false(matches("192.168.1.7", v4("192.168.1.6", 1)));
	/* everything */
	assert_true(matches("0.0.0.0/0", v4("203.0.113.9", 1)));
}

static void test_prefix_match_ipv6(void **state)
{
	assert_true(matches("2001:db8::/32", v6("2001:db8:1::1", 1)));
	assert_false(matches("2001:db8::/32", v6("2001:db9::1", 1)));
	assert_true(matches("2001:db8::/33", v6("2001:db8:7fff::1", 1)));
	assert_false(matches("2001:db8::/33", v6("2001:db8:8000::1", 1)));
	assert_true(matches("::1", v6("::1", 1)));
	assert_false(matches("::1", v6("::2", 1)));
	assert_true(matches("::/0", v6("2001:db8::1", 1)));
}

static void test_prefix_match_ipv4_mapped_ipv6(void **state)
{
	/* an IPv4 client on a dual-stack socket */
	assert_true(matches("10.0.0.0/8", v6("::ffff:10.1.2.3", 1)));
	assert_false(matches("10.0.0.0/8", v6("::ffff:11.1.2.3", 1)));
	assert_true(matches("192.168.1.7", v6("::ffff:192.168.1.7", 1)));
	/* families never cross otherwise */
	assert_false(matches("0.0.0.0/0", v6("2001:db8::1", 1)));
	assert_false(matches("::/0", v4("10.1.2.3", 1)));
	assert_false(matches("::/0", v6("::ffff:10.1.2.3", 1)));
}

static void test_prefix_match_other_family_is_false(void **state)
{
	struct sockaddr_un un;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	struct net_prefix p;
	assert_int_equal(net_parse_prefix("0.0.0.0/0", &p), 0);
	assert_false(net_prefix_match(&p, (const struct sockaddr *)&un));
}

static void test_loopback_detection(void **state)
{
	struct sockaddr_storage a;
	a = v4("127.0.0.1", 110);
	assert_true(net_is_loopback(SA(a)));
	a = v4("127.255.0.9", 110);
	assert_true(net_is_loopback(SA(a)));
	a = v6("::1", 110);
	assert_true(net_is_loopback(SA(a)));
	a = v6("::ffff:127.0.0.1", 110);
	assert_true(net_is_loopback(SA(a)));
	a = v4("10.0.0.1", 110);
	assert_false(net_is_loopback(SA(a)));
	a = v4("128.0.0.1", 110);
	assert_false(net_is_loopback(SA(a)));
	a = v4("0.0.0.0", 110);
	assert_false(net_is_loopback(SA(a)));
	a = v6("::", 110);
	assert_false(net_is_loopback(SA(a)));
	a = v6("::2", 110);
	assert_false(net_is_loopback(SA(a)));
	a = v6("::ffff:10.0.0.1", 110);
	assert_false(net_is_loopback(SA(a)));
	a = v6("2001:db8::1", 110);
	assert_false(net_is_loopback(SA(a)));
	struct sockaddr_un un;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	assert_false(net_is_loopback((const struct sockaddr *)&un));
}

static void test_format_host_and_addr(void **state)
{
	char out[64];
	struct sockaddr_storage a;
	a = v4("192.0.2.1", 110);
	net_format_host(SA(a), out, sizeof(out));
	assert_string_equal(out, "192.0.2.1");
	net_format_addr(SA(a), out, sizeof(out));
	assert_string_equal(out, "192.0.2.1:110");

	a = v6("2001:db8::1", 995);
	net_format_host(SA(a), out, sizeof(out));
	assert_string_equal(out, "2001:db8::1");
	net_format_addr(SA(a), out, sizeof(out));
	assert_string_equal(out, "[2001:db8::1]:995");

	/* IPv4-mapped peers are shown as IPv4 */
	a = v6("::ffff:192.0.2.1", 1234);
	net_format_host(SA(a), out, sizeof(out));
	assert_string_equal(out, "192.0.2.1");
	net_format_addr(SA(a), out, sizeof(out));
	assert_string_equal(out, "192.0.2.1:1234");

	struct sockaddr_un un;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	net_format_host((const struct sockaddr *)&un, out, sizeof(out));
	assert_string_equal(out, "unknown");
}

static void test_format_round_trips_parsed_listen_address(void **state)
{
	static const char *const addrs[] = {"127.0.0.1:110", "[::1]:995", "[2001:db8::7]:1", "0.0.0.0:65535"};
	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		struct net_addr a;
		char out[64];
		assert_int_equal(net_parse_listen(addrs[i], &a), 0);
		net_format_addr((const struct sockaddr *)&a.ss, out, sizeof(out));
		assert_string_equal(out, addrs[i]);
	}
}

static void test_format_truncates_safely(void **state)
{
	char out[8];
	memset(out, 'Z', sizeof(out));
	struct sockaddr_storage a = v6("2001:db8::1", 995);
	net_format_addr(SA(a), out, sizeof(out));
	assert_non_null(memchr(out, '\0', sizeof(out)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_listen_ipv4),
		cmocka_unit_test(test_listen_ipv6_in_brackets),
		cmocka_unit_test(test_listen_star_is_all_ipv4),
		cmocka_unit_test(test_listen_default_port),
		cmocka_unit_test(test_listen_port_range),
		cmocka_unit_test(test_listen_bad_forms),
		cmocka_unit_test(test_prefix_ipv4_with_and_without_length),
		cmocka_unit_test(test_prefix_ipv6_with_and_without_length),
		cmocka_unit_test(test_prefix_bad_forms),
		cmocka_unit_test(test_prefix_match_ipv4),
		cmocka_unit_test(test_prefix_match_ipv6),
		cmocka_unit_test(test_prefix_match_ipv4_mapped_ipv6),
		cmocka_unit_test(test_prefix_match_other_family_is_false),
		cmocka_unit_test(test_loopback_detection),
		cmocka_unit_test(test_format_host_and_addr),
		cmocka_unit_test(test_format_round_trips_parsed_listen_address),
		cmocka_unit_test(test_format_truncates_safely),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
