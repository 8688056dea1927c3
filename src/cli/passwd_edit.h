/*
 * passwd_edit.h - atomic edits of a passwd-file for `pigeon user`: take an
 * exclusive lock (<file>.lock), read, change one entry, write a temporary file
 * with the same mode, fsync it, rename it over the original, fsync the
 * directory. Concurrent editors are serialised by the lock and lose nothing;
 * a crash leaves either the old or the new file.
 */
#ifndef PIGEON_PASSWD_EDIT_H
#define PIGEON_PASSWD_EDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum passwd_edit_op { PASSWD_ADD, PASSWD_SET_PASSWORD, PASSWD_DELETE };

struct passwd_edit {
	enum passwd_edit_op op;
	const char *user;
	const char *password_field; /* "{SCHEME}..." for ADD and SET_PASSWORD */
	const char *uid, *gid, *home; /* ADD only; may be empty */
	bool set_group; /* a file created now gets this group (mode 0640) */
	gid_t group;
};

/* Validate the request alone (names, numbers, paths). 0 or -1 with err. */
int passwd_edit_check(const struct passwd_edit *edit, char *err, size_t errlen);
/* 0 on success; -1 with a message in err (e.g. "user alice exists"). */
int passwd_edit(const char *path, const struct passwd_edit *edit, char *err, size_t errlen);

#endif
