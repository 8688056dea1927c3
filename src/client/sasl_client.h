/*
 * sasl_client.h - logging in to a POP3 server: choosing the strongest
 * method the server offers (SCRAM-SHA-256-PLUS > SCRAM-SHA-256 > PLAIN >
 * LOGIN > USER/PASS > APOP; XOAUTH2 and OAUTHBEARER when configured) and
 * speaking it (RFC 5034 framing, RFC 5802/7677 SCRAM with server signature
 * checked, RFC 7628, Google/Microsoft XOAUTH2).
 */
#ifndef PIGEON_SASL_CLIENT_H
#define PIGEON_SASL_CLIENT_H

#include <stddef.h>

#include "client/account.h"
#include "client/pop3c.h"
#include "client/status.h"

/* The method auto would pick (for --probe), or the configured one; AUTH_AUTO
 * when the server offers nothing we may use (no USER in a working CAPA). */
enum account_auth client_choose_auth(const struct pop3c *p, const struct account *a, bool tls);
const char *client_auth_name(enum account_auth auth);

/* Log in. On failure returns the status class and a message in why. */
enum fetch_status client_login(struct pop3c *p, const struct account *a, const char *secret,
			       bool tls, char *why, size_t whylen);

#endif
