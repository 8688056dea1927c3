/*
 * command.h - splitting one POP3 command line (without its CRLF) into a
 * keyword and arguments (RFC 1939 §3, RFC 2449 §3). Validation of the
 * arguments is the job of each command's handler.
 */
#ifndef PIGEON_POP3_COMMAND_H
#define PIGEON_POP3_COMMAND_H

#include <stdbool.h>
#include <stddef.h>

#include "common/bounds.h"

struct pop3_arg {
	const char *p;
	size_t len;
};

struct pop3_command {
	const char *keyword;
	size_t keyword_len;
	unsigned argc;          /* arguments seen, capped at POP3_MAX_ARGS + 1 */
	struct pop3_arg argv[POP3_MAX_ARGS];
	/* Everything after the keyword and one space, untouched: PASS takes its
	 * argument this way, since a password may contain spaces (RFC 1939 §7). */
	struct pop3_arg rest;
};

enum pop3_parse_result {
	POP3_PARSE_OK,
	POP3_PARSE_EMPTY,     /* nothing but spaces */
	POP3_PARSE_BAD_CHAR,  /* a control character (NUL, TAB, CR, ...) */
	POP3_PARSE_BAD_KEYWORD,
};

enum pop3_parse_result pop3_parse_command(const char *line, size_t len, struct pop3_command *cmd);

#endif
