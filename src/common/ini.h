/*
 * ini.h - reading INI text for pigeond's configuration and pigeon fetch's
 * accounts: "[section]" headers, "name = value" lines, '#' and ';' comments
 * (inline after whitespace), lines of at most CONFIG_MAX_LINE octets. What
 * sections and names mean is the caller's business. Parsing stops at the
 * first problem, reported as "NAME:LINE: problem".
 */
#ifndef PIGEON_INI_H
#define PIGEON_INI_H

#include <stddef.h>

#include "common/buf.h"

struct ini_handler {
	/* A "[name]" header. Return -1 with a message in err to stop. */
	int (*section)(void *arg, const char *name, unsigned line, char *err, size_t errlen);
	/* "name = value" inside section ("" before any header). */
	int (*setting)(void *arg, const char *section, const char *name, const char *value,
		       unsigned line, char *err, size_t errlen);
};

int ini_parse(const char *name, const char *text, const struct ini_handler *h, void *arg,
	      char *err, size_t errlen);
/* Read a whole (small, text) file: at most 1 MiB, no NUL bytes. */
int ini_read_file(const char *path, struct buf *out, char *err, size_t errlen);

#endif
