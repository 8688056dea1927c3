/* privs.h - giving up root: after the listeners are open and the keys read,
 * before a single byte from a client is read. */
#ifndef PIGEON_PRIVS_H
#define PIGEON_PRIVS_H

#include <stddef.h>

/*
 * As root: clear supplementary groups, set the group (the user's primary group
 * if group is empty), then the user; check that root cannot be regained.
 * Not root: nothing to drop; returns 0 (the process already runs unprivileged).
 * Refuses (returns -1 with a message) to end up running as root.
 */
int privs_drop(const char *user, const char *group, char *err, size_t errlen);

#endif
