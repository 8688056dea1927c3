/*
 * pop3c.h - the client side of POP3 for pigeon fetch: greeting, CAPA,
 * commands and replies (with RFC 2449/3206 response codes), multi-line
 * bodies un-stuffed as they stream, and a protocol trace for -v with
 * secrets replaced.
 */
#ifndef PIGEON_POP3C_H
#define PIGEON_POP3C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/net.h"

/* Status lines and listing lines longer than this are a protocol error
 * (RFC 2449 §4 says 512; servers are generous, so we are too). */
#define POP3C_MAX_LINE 8192

/* A CAPA response: RFC 2449 defines a dozen capabilities and no server we
 * know lists more than 20, each line short (Gmail's longest is the SASL
 * line). More is a broken or hostile server, refused before it costs us
 * memory or is half-parsed. */
#define POP3C_MAX_CAPA_LINES 100
#define POP3C_MAX_CAPA_LINE 1024
#define POP3C_MAX_CAPA_BYTES 16384

struct pop3c {
	struct client_conn conn;
	bool trace;               /* -v: the dialogue on stderr */
	char greeting[POP3C_MAX_LINE];
	char apop_timestamp[256]; /* "<...>" from the greeting, or "" */
	/* capabilities (RFC 2449) */
	bool capa_ok;
	bool has_top, has_uidl, has_user, has_pipelining, has_stls, has_resp_codes;
	bool has_auth_resp_code;
	char sasl[POP3C_MAX_CAPA_LINE + 2]; /* " PLAIN LOGIN ... " */
	char implementation[128];
	long login_delay;         /* -1 unknown */
	long expire;              /* -1 unknown, -2 NEVER */
	struct buf capa_raw;      /* CAPA lines, for --probe */
	unsigned capa_lines;      /* while reading CAPA */
	bool capa_bad;
};

struct pop3c_reply {
	bool ok;
	char code[64];   /* "IN-USE", "SYS/TEMP", "AUTH", ... or "" */
	char text[POP3C_MAX_LINE];
};

/* Read the greeting (and its APOP timestamp). */
int pop3c_greeting(struct pop3c *p);
/* CAPA; fills the capability fields (all false if CAPA fails). A response
 * beyond the POP3C_MAX_CAPA_* bounds is an error (-1, p->conn.error). */
int pop3c_capa(struct pop3c *p);
/* Send one command line (CRLF added). secret: trace it redacted. */
int pop3c_send(struct pop3c *p, bool secret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Read one status line. -1 on a transport error (p->conn.error). */
int pop3c_reply(struct pop3c *p, struct pop3c_reply *r);
/* Read a multi-line body to its terminating ".", calling sink with each
 * un-stuffed line (without line end; eol=false for the first pieces of a very
 * long line). octets counts the CRLF form received, before un-stuffing is
 * undone, i.e. what LIST should have said. sink may be NULL. */
typedef int (*pop3c_sink)(void *arg, const char *data, size_t len, bool eol);
int pop3c_body(struct pop3c *p, pop3c_sink sink, void *arg, uint64_t *octets);
/* Is the SASL mechanism in the CAPA list? */
bool pop3c_has_sasl(const struct pop3c *p, const char *mech);
void pop3c_free(struct pop3c *p);

#endif
