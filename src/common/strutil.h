/* strutil.h - small, strict parsers for numbers, durations, booleans and sizes. */
#ifndef PIGEON_STRUTIL_H
#define PIGEON_STRUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Decimal digits only (no sign, no space), value <= max. 0 on success. */
int parse_u64(const char *s, uint64_t max, uint64_t *out);
/* Same, but for a counted string that need not be NUL-terminated. */
int parse_u64_n(const char *s, size_t len, uint64_t max, uint64_t *out);
/* "30", "30s", "5m", "2h", "1d" -> seconds; "500ms" -> rounds up to 1 second
 * unless want_ms. Returns 0 on success. */
int parse_duration_ms(const char *s, uint64_t *out_ms);
/* "yes/no", "true/false", "on/off", "1/0". */
int parse_bool(const char *s, bool *out);
/* "1024", "10k", "50M", "2G" (binary units) -> bytes. */
int parse_size(const char *s, uint64_t *out);

/* Trim ASCII spaces and tabs in place; returns s advanced past leading ones. */
char *str_trim(char *s);
/* Split a comma- or space-separated list in place; calls fn for each item. */
int str_split_list(char *s, int (*fn)(const char *item, void *arg), void *arg);
/* Case-insensitive ASCII comparison of a counted string with a C string. */
bool str_ieq_n(const char *a, size_t alen, const char *b);
/* Compare two byte strings in constant time (for the lengths given). */
bool const_time_eq(const void *a, size_t alen, const void *b, size_t blen);
/* A client-supplied word fit for a "key=value" log line: as it is when it
 * holds only letters, digits and -._@+=%/:, otherwise in double quotes with
 * '"', '\\' and bytes outside 0x21-0x7E escaped as \xHH, so no name can forge
 * another field. Truncated with "..." to fit out (size at least 8). */
const char *str_log_safe(const char *in, char *out, size_t size);

#endif
