/*
 * passwd_file.h - the user database in Dovecot's passwd-file format:
 *
 *     user:{SCHEME}hash:uid:gid:gecos:home:shell:extra
 *
 * Trailing fields may be omitted. Lines starting with '#' and blank lines are
 * ignored. The file is read into memory and read again when it changes (its
 * inode, size or mtime), so `pigeon user add` takes effect without a reload.
 * Lookups are safe from several threads.
 */
#ifndef PIGEON_PASSWD_FILE_H
#define PIGEON_PASSWD_FILE_H

#include <stdbool.h>
#include <sys/types.h>

struct user_record {
	char *name;
	char *password; /* "{SCHEME}..." or a crypt(3) string; wipe after use */
	uid_t uid;      /* (uid_t)-1 when the field is empty */
	gid_t gid;
	char *home;     /* may be empty */
	char *extra;    /* "key=value ..." (e.g. quota=1G); may be empty */
};

struct passwd_db;

struct passwd_db *passwd_db_new(const char *path);
void passwd_db_free(struct passwd_db *db);
/* 1 = found (rec filled, free with user_record_clear), 0 = no such user,
 * -1 = the file cannot be read (a temporary failure). */
int passwd_db_lookup(struct passwd_db *db, const char *user, struct user_record *rec);
void user_record_clear(struct user_record *rec);
/* The iteration count most {SCRAM-SHA-256} entries use (as of the last
 * load), 0 when there are none. */
unsigned passwd_db_scram_iterations(struct passwd_db *db);

/* Parse one line; used by the loader, `pigeon user` and the tests.
 * Returns 1 for an entry, 0 for a comment/blank line, -1 if malformed (with a
 * reason in *why). The line is modified; rec points into it. */
int passwd_parse_line(char *line, struct user_record *rec, const char **why);

#endif
