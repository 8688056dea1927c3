/*
 * xmalloc.h - allocation of small internal objects. Failure aborts (as OpenSSH
 * and Redis do): there is no sane recovery and every caller would need the same
 * code. Sizes that come from the network or a file must be bounded before
 * they reach these functions.
 */
#ifndef PIGEON_XMALLOC_H
#define PIGEON_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xreallocarray(void *ptr, size_t count, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a fresh string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
