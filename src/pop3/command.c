/* command.c - tokenising a POP3 command line. */
#include "pop3/command.h"

#include <string.h>

enum pop3_parse_result pop3_parse_command(const char *line, size_t len, struct pop3_command *cmd)
{
	memset(cmd, 0, sizeof(*cmd));
	/* Control characters are never part of a command (RFC 2449 §3: VCHAR and
	 * SP only); octets >= 0x80 may appear in UTF-8 user names and passwords. */
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c < 0x20 || c == 0x7f)
			return POP3_PARSE_BAD_CHAR;
	}
	size_t i = 0;
	/* Tolerate leading spaces from sloppy clients. */
	while (i < len && line[i] == ' ')
		i++;
	if (i == len)
		return POP3_PARSE_EMPTY;
	size_t start = i;
	while (i < len && line[i] != ' ')
		i++;
	cmd->keyword = line + start;
	cmd->keyword_len = i - start;
	for (size_t k = 0; k < cmd->keyword_len; k++) {
		char c = cmd->keyword[k];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-'))
			return POP3_PARSE_BAD_KEYWORD;
	}
	if (i < len) {
		cmd->rest.p = line + i + 1;
		cmd->rest.len = len - i - 1;
	}
	/* Arguments are separated by one space (RFC 1939 §3); extra spaces and
	 * trailing spaces are tolerated. */
	while (i < len) {
		while (i < len && line[i] == ' ')
			i++;
		if (i == len)
			break;
		size_t a = i;
		while (i < len && line[i] != ' ')
			i++;
		if (cmd->argc < POP3_MAX_ARGS)
			cmd->argv[cmd->argc] = (struct pop3_arg){line + a, i - a};
		if (cmd->argc <= POP3_MAX_ARGS)
			cmd->argc++;
	}
	return POP3_PARSE_OK;
}
