/*
 * net.h - socket addresses as configured and as seen: parsing "host:port",
 * formatting a peer for logs, and matching peers against network lists
 * (loopback, trusted_networks).
 */
#ifndef PIGEON_NET_H
#define PIGEON_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct net_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

struct net_prefix {
	int family;        /* AF_INET or AF_INET6 */
	uint8_t bytes[16]; /* network address */
	unsigned bits;     /* prefix length */
};

/* "127.0.0.1:110", "[::1]:110", "*:110" (all IPv4), "[::]:110" (all IPv6),
 * "unix:/absolute/path". Returns 0 on success. */
int net_parse_listen(const char *s, struct net_addr *out);
/* The same, where an address without a port ("*", "192.0.2.7", "[::]") means
 * default_port (the protocol's standard one); 0 requires a port. */
int net_parse_listen_port(const char *s, unsigned default_port, struct net_addr *out);
/* "10.0.0.0/8", "192.168.1.7", "2001:db8::/32". */
int net_parse_prefix(const char *s, struct net_prefix *out);
/* Does the address fall in the prefix? IPv4-mapped IPv6 counts as IPv4. */
bool net_prefix_match(const struct net_prefix *p, const struct sockaddr *sa);
bool net_is_loopback(const struct sockaddr *sa);
/* "1.2.3.4" or "2001:db8::1" (no port), for logs. */
void net_format_host(const struct sockaddr *sa, char *out, size_t outlen);
/* "1.2.3.4:110" or "[2001:db8::1]:110". */
void net_format_addr(const struct sockaddr *sa, char *out, size_t outlen);

#endif
