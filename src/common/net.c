/* net.c - address parsing, formatting and prefix matching. */
#include "common/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "common/strutil.h"

int net_parse_listen(const char *s, struct net_addr *out)
{
	return net_parse_listen_port(s, 0, out);
}

int net_parse_listen_port(const char *s, unsigned default_port, struct net_addr *out)
{
	char host[64];
	const char *port;
	char dport[8];
	snprintf(dport, sizeof(dport), "%u", default_port);
	memset(out, 0, sizeof(*out));
	if (strncmp(s, "unix:", 5) == 0) {
		struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
		const char *path = s + 5;
		if (path[0] != '/' || strlen(path) >= sizeof(sun->sun_path))
			return -1;
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, path, strlen(path) + 1);
		out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
		return 0;
	}
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (end == NULL || (size_t)(end - s - 1) >= sizeof(host))
			return -1;
		if (end[1] == '\0' && default_port != 0)
			port = dport;
		else if (end[1] == ':')
			port = end + 2;
		else
			return -1;
		memcpy(host, s + 1, (size_t)(end - s - 1));
		host[end - s - 1] = '\0';
	} else {
		const char *colon = strrchr(s, ':');
		if (colon == NULL && default_port != 0 && strlen(s) < sizeof(host)) {
			memcpy(host, s, strlen(s) + 1);
			port = dport;
		} else {
			if (colon == NULL || strchr(s, ':') != colon || (size_t)(colon - s) >= sizeof(host))
				return -1;
			memcpy(host, s, (size_t)(colon - s));
			host[colon - s] = '\0';
			port = colon + 1;
		}
	}
	uint64_t portnum;
	if (parse_u64(port, 65535, &portnum) < 0)
		return -1;
	struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
	if (strcmp(host, "*") == 0) {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons((uint16_t)portnum);
		out->len = sizeof(*sin);
	} else if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)portnum);
		out->len = sizeof(*sin);
	} else if (s[0] == '[' && inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)portnum);
		out->len = sizeof(*sin6);
	} else {
		return -1;
	}
	return 0;
}

int net_parse_prefix(const char *s, struct net_prefix *out)
{
	char host[64];
	const char *slash = strchr(s, '/');
	size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	memset(out, 0, sizeof(*out));
	unsigned maxbits;
	if (inet_pton(AF_INET, host, out->bytes) == 1) {
		out->family = AF_INET;
		maxbits = 32;
	} else if (inet_pton(AF_INET6, host, out->bytes) == 1) {
		out->family = AF_INET6;
		maxbits = 128;
	} else {
		return -1;
	}
	uint64_t bits = maxbits;
	if (slash != NULL && parse_u64(slash + 1, maxbits, &bits) < 0)
		return -1;
	out->bits = (unsigned)bits;
	return 0;
}

/* Reduce a socket address to (family, bytes), unwrapping IPv4-mapped IPv6. */
static int addr_bytes(const struct sockaddr *sa, const uint8_t **bytes)
{
	*bytes = NULL;
	if (sa->sa_family == AF_INET) {
		*bytes = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
		return AF_INET;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			*bytes = a->s6_addr + 12;
			return AF_INET;
		}
		*bytes = a->s6_addr;
		return AF_INET6;
	}
	return -1;
}

bool net_prefix_match(const struct net_prefix *p, const struct sockaddr *sa)
{
	const uint8_t *b;
	if (addr_bytes(sa, &b) != p->family)
		return false;
	unsigned full = p->bits / 8, rest = p->bits % 8;
	if (memcmp(b, p->bytes, full) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (b[full] & mask) == (p->bytes[full] & mask);
}

bool net_is_loopback(const struct sockaddr *sa)
{
	const uint8_t *b;
	int family = addr_bytes(sa, &b);
	if (family == AF_INET)
		return b[0] == 127;
	if (family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK((const struct in6_addr *)b);
	return false;
}

void net_format_host(const struct sockaddr *sa, char *out, size_t outlen)
{
	const uint8_t *b;
	int family = addr_bytes(sa, &b);
	if (family < 0 || inet_ntop(family, b, out, (socklen_t)outlen) == NULL)
		snprintf(out, outlen, "unknown");
}

void net_format_addr(const struct sockaddr *sa, char *out, size_t outlen)
{
	if (sa->sa_family == AF_UNIX) {
		snprintf(out, outlen, "unix:%s", ((const struct sockaddr_un *)sa)->sun_path);
		return;
	}
	char host[INET6_ADDRSTRLEN];
	net_format_host(sa, host, sizeof(host));
	unsigned port = 0;
	if (sa->sa_family == AF_INET)
		port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	else if (sa->sa_family == AF_INET6)
		port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	if (strchr(host, ':') != NULL)
		snprintf(out, outlen, "[%s]:%u", host, port);
	else
		snprintf(out, outlen, "%s:%u", host, port);
}
