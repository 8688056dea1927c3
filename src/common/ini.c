/* ini.c - a small, strict INI reader (see ini.h; why not inih: architecture.md). */
#include "common/ini.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/bounds.h"
#include "common/strutil.h"

/* Cut an inline comment: '#' or ';' after whitespace starts one. */
static void cut_comment(char *s)
{
	for (char *p = s + 1; *p != '\0'; p++) {
		if ((*p == '#' || *p == ';') && (p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			return;
		}
	}
}

static int parse_line(char *raw, char *section, size_t seclen, unsigned lineno,
		      const struct ini_handler *h, void *arg, char *msg, size_t msglen)
{
	char *line = str_trim(raw);
	if (line[0] == '\0' || line[0] == '#' || line[0] == ';')
		return 0;
	if (line[0] == '[') {
		cut_comment(line);
		line = str_trim(line);
		size_t n = strlen(line);
		if (n < 3 || line[n - 1] != ']') {
			snprintf(msg, msglen, "syntax error: a section header looks like [name]");
			return -1;
		}
		line[n - 1] = '\0';
		char *name = str_trim(line + 1);
		if (strlen(name) >= seclen) {
			snprintf(msg, msglen, "section name too long");
			return -1;
		}
		if (h->section(arg, name, lineno, msg, msglen) < 0)
			return -1;
		snprintf(section, seclen, "%s", name);
		return 0;
	}
	char *eq = strchr(line, '=');
	if (eq == NULL) {
		snprintf(msg, msglen, "syntax error: expected [section] or name = value");
		return -1;
	}
	*eq = '\0';
	char *name = str_trim(line);
	char *value = eq + 1;
	cut_comment(value - 1);
	value = str_trim(value);
	if (name[0] == '\0') {
		snprintf(msg, msglen, "syntax error: a setting needs a name before '='");
		return -1;
	}
	return h->setting(arg, section, name, value, lineno, msg, msglen);
}

int ini_parse(const char *name, const char *text, const struct ini_handler *h, void *arg,
	      char *err, size_t errlen)
{
	char section[128] = "";
	char msg[384] = "";
	const char *p = text;
	unsigned lineno = 0;
	if (strncmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3; /* UTF-8 byte order mark */
	while (*p != '\0') {
		lineno++;
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (len > CONFIG_MAX_LINE) {
			snprintf(err, errlen, "%s:%u: line is too long (at most %d characters)", name,
				 lineno, CONFIG_MAX_LINE);
			return -1;
		}
		char line[CONFIG_MAX_LINE + 1];
		memcpy(line, p, len);
		line[len] = '\0';
		if (parse_line(line, section, sizeof(section), lineno, h, arg, msg, sizeof(msg)) < 0) {
			snprintf(err, errlen, "%s:%u: %s", name, lineno, msg);
			return -1;
		}
		p = nl ? nl + 1 : p + len;
	}
	return 0;
}

int ini_read_file(const char *path, struct buf *out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		buf_append(out, chunk, n);
		if (out->len > 1024 * 1024) {
			fclose(f);
			snprintf(err, errlen, "%s: larger than 1 MiB", path);
			return -1;
		}
	}
	bool failed = ferror(f);
	fclose(f);
	if (failed) {
		snprintf(err, errlen, "%s: read error", path);
		return -1;
	}
	if (out->len > 0 && memchr(out->data, '\0', out->len) != NULL) {
		snprintf(err, errlen, "%s: contains a NUL byte (not a text file)", path);
		return -1;
	}
	if (out->data == NULL) { /* an empty file */
		buf_reserve(out, 1);
		out->data[0] = '\0';
	}
	return 0;
}
