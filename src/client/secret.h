/* secret.h - an account's password or token: password_command (its first
 * output line), the configuration, ~/.netrc, or a prompt on the terminal.
 * Never logged; the caller wipes it. */
#ifndef PIGEON_SECRET_H
#define PIGEON_SECRET_H

#include <stddef.h>

#include "client/account.h"

/* A malloc'd secret, or NULL with the reason in why. */
char *secret_get(const struct account *a, char *why, size_t whylen);
void secret_free(char *s);

#endif
