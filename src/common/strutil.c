/* strutil.c - strict parsers; anything not fully understood is an error. */
#include "common/strutil.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

int parse_u64_n(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		unsigned d = (unsigned)(s[i] - '0');
		if (d > max || v > (max - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	return parse_u64_n(s, strlen(s), max, out);
}

int parse_duration_ms(const char *s, uint64_t *out_ms)
{
	size_t n = strspn(s, "0123456789");
	uint64_t v, mult;
	if (n == 0 || parse_u64_n(s, n, UINT64_MAX / 1000, &v) < 0)
		return -1;
	const char *unit = s + n;
	if (*unit == '\0' || strcmp(unit, "s") == 0)
		mult = 1000;
	else if (strcmp(unit, "ms") == 0)
		mult = 1;
	else if (strcmp(unit, "m") == 0 || strcmp(unit, "min") == 0)
		mult = 60 * 1000;
	else if (strcmp(unit, "h") == 0)
		mult = 3600 * 1000;
	else if (strcmp(unit, "d") == 0)
		mult = 86400 * 1000;
	else
		return -1;
	if (v > UINT64_MAX / mult)
		return -1;
	*out_ms = v * mult;
	return 0;
}

int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"yes", "true", "on", "1"};
	static const char *const no[] = {"no", "false", "off", "0"};
	for (unsigned i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

int parse_size(const char *s, uint64_t *out)
{
	size_t n = strspn(s, "0123456789");
	uint64_t v, mult = 1;
	if (n == 0 || parse_u64_n(s, n, UINT64_MAX, &v) < 0)
		return -1;
	const char *unit = s + n;
	if (*unit == '\0' || strcasecmp(unit, "b") == 0)
		mult = 1;
	else if (strcasecmp(unit, "k") == 0 || strcasecmp(unit, "kb") == 0)
		mult = 1024;
	else if (strcasecmp(unit, "m") == 0 || strcasecmp(unit, "mb") == 0)
		mult = 1024 * 1024;
	else if (strcasecmp(unit, "g") == 0 || strcasecmp(unit, "gb") == 0)
		mult = 1024ULL * 1024 * 1024;
	else
		return -1;
	if (v > UINT64_MAX / mult)
		return -1;
	*out = v * mult;
	return 0;
}

char *str_trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = '\0';
	return s;
}

int str_split_list(char *s, int (*fn)(const char *item, void *arg), void *arg)
{
	char *save = NULL;
	for (char *tok = strtok_r(s, ", \t", &save); tok != NULL; tok = strtok_r(NULL, ", \t", &save))
		if (fn(tok, arg) < 0)
			return -1;
	return 0;
}

bool str_ieq_n(const char *a, size_t alen, const char *b)
{
	return strlen(b) == alen && strncasecmp(a, b, alen) == 0;
}

bool const_time_eq(const void *a, size_t alen, const void *b, size_t blen)
{
	/* The length of a stored hash is not secret; the content is. */
	if (alen != blen)
		return false;
	return CRYPTO_memcmp(a, b, alen) == 0;
}

static bool log_plain_char(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       strchr("-._@+=%/:", ch) != NULL;
}

const char *str_log_safe(const char *in, char *out, size_t size)
{
	bool plain = *in != '\0';
	for (const unsigned char *p = (const unsigned char *)in; *p && plain; p++)
		plain = log_plain_char(*p);
	size_t o = 0;
	if (!plain)
		out[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
		char piece[5];
		size_t n;
		if (plain || (*p > 0x20 && *p < 0x7f && *p != '"' && *p != '\\')) {
			piece[0] = (char)*p;
			n = 1;
		} else {
			snprintf(piece, sizeof(piece), "\\x%02X", *p);
			n = 4;
		}
		if (o + n + 5 > size) { /* room for '...', '"' and NUL */
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(out + o, piece, n);
		o += n;
	}
	if (!plain)
		out[o++] = '"';
	out[o] = '\0';
	return out;
}
