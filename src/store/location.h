/*
 * location.h - where a user's maildrop is: the [mail] location template with
 * %u (user name), %n (part before '@'), %d (part after '@'), %h (home) and
 * %% expanded; an empty template means <home>/Maildir.
 */
#ifndef PIGEON_LOCATION_H
#define PIGEON_LOCATION_H

#include <stddef.h>

/* 0 on success. -1 if the result would be unsafe (a user part containing '/'
 * or being "." or ".."), relative, or longer than outlen. */
int location_expand(const char *tmpl, const char *user, const char *home, char *out,
		    size_t outlen);

#endif
