/* prompt.h - read a secret: from the terminal without echo (asked twice when
 * confirm is set), or one line from stdin when stdin is not a terminal. */
#ifndef PIGEON_PROMPT_H
#define PIGEON_PROMPT_H

#include <stdbool.h>

/* Returns a malloc'd string (wipe and free it), or NULL with a message on
 * stderr (mismatch, empty, too long, end of input). */
char *prompt_secret(const char *question, bool confirm);

#endif
