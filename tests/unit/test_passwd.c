/* test_passwd.c - the passwd-file user database: line parsing, lookups,
 * unreadable files, reloading after a change, and duplicate users. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/passwd_file.h"

/* ---- passwd_parse_line ------------------------------------------------ */

static int parse(const char *text, char *line, size_t size, struct user_record *rec,
		 const char **why)
{
	snprintf(line, size, "%s", text);
	memset(rec, 0, sizeof(*rec));
	*why = NULL;
	return passwd_parse_line(line, rec, why);
}

static void test_parse_full_line(void **state)
{
	char line[256];
	struct user_record rec;
	const char *why;
	assert_int_equal(parse("bob:{PLAIN}pw:1000:1001:Bob B:/home/bob:/bin/sh:extra=1\n", line,
			       sizeof(line), &rec, &why), 1);
	assert_string_equal(rec.name, "bob");
	assert_string_equal(rec.password, "{PLAIN}pw");
	assert_int_equal(rec.uid, 1000);
	assert_int_equal(rec.gid, 1001);
	assert_string_equal(rec.home, "/home/bob");
}

static void test_parse_short_line(void **state)
{
	char line[256];
	struct user_record rec;
	const char *why;
	assert_int_equal(parse("alice:{PLAIN}secret", line, sizeof(line), &rec, &why), 1);
	assert_string_equal(rec.name, "alice");
	assert_string_equal(rec.password, "{PLAIN}secret");
	assert_int_equal(rec.uid, (uid_t)-1);
	assert_int_equal(rec.gid, (gid_t)-1);
	assert_string_equal(rec.home, "");

	assert_int_equal(parse("carol:pw:5\r\n", line, sizeof(line), &rec, &why), 1);
	assert_string_equal(rec.password, "pw");
	assert_int_equal(rec.uid, 5);
	assert_int_equal(rec.gid, (gid_t)-1);

	/* empty uid and gid fields */
	assert_int_equal(parse("dave:pw:::gecos:/home/dave", line, sizeof(line), &rec, &why), 1);
	assert_int_equal(rec.uid, (uid_t)-1);
	assert_int_equal(rec.gid, (gid_t)-1);
	assert_string_equal(rec.home, "/home/dave");

	/* a crypt hash contains '$' and '/', never ':' */
	assert_int_equal(parse("erin:{CRYPT}$6$salt$abc/def.:1:1", line, sizeof(line), &rec, &why), 1);
	assert_string_equal(rec.password, "{CRYPT}$6$salt$abc/def.");
}

static void test_parse_comments_and_blank_lines(void **state)
{
	static const char *const skip[] = {"# comment", "#bob:pw", "", "\n", "   \n", "\t\r\n", "\r\n"};
	for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++) {
		char line[64];
		struct user_record rec;
		const char *why;
		assert_int_equal(parse(skip[i], line, sizeof(line), &rec, &why), 0);
	}
}

static void test_parse_rejects_malformed_lines(void **state)
{
	char longname[300];
	memset(longname, 'n', 256);
	snprintf(longname + 256, sizeof(longname) - 256, ":pw");
	const char *const bad[] = {
		"justaname",         /* no password field */
		":pw",               /* empty user */
		"eve:pw:abc:1",      /* bad uid */
		"eve:pw:1:x",        /* bad gid */
		"eve:pw:-1:1",       /* negative uid */
		"eve:pw:1 :1",       /* space in uid */
		"eve:pw:4294967296", /* uid too large */
		longname,            /* user name over 255 octets */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char line[512];
		struct user_record rec;
		const char *why;
		if (parse(bad[i], line, sizeof(line), &rec, &why) != -1)
			fail_msg("accepted '%s'", bad[i]);
		assert_non_null(why);
	}
}

/* ---- the database ---------------------------------------------------- */

struct fixture {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/pigeon-passwd-XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/users", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void write_users(const struct fixture *f, const char *text, time_t mtime)
{
	char tmp[160];
	snprintf(tmp, sizeof(tmp), "%s.new", f->path);
	FILE *fp = fopen(tmp, "w");
	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
	struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
	assert_int_equal(utimensat(AT_FDCWD, tmp, ts, 0), 0);
	assert_int_equal(rename(tmp, f->path), 0);
}

/* Rewrite in place (same inode) with the given mtime. */
static void rewrite_in_place(const struct fixture *f, const char *text, time_t mtime)
{
	FILE *fp = fopen(f->path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
	struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
	assert_int_equal(utimensat(AT_FDCWD, f->path, ts, 0), 0);
}

static void test_lookup_found_and_not_found(void **state)
{
	struct fixture *f = *state;
	write_users(f, "# users\nbob:{PLAIN}pw:1000:1000::/home/bob\n\nalice:{PLAIN}x\n",
		    1600000000);
	struct passwd_db *db = passwd_db_new(f->path);
	struct user_record rec;
	assert_int_equal(passwd_db_lookup(db, "bob", &rec), 1);
	assert_string_equal(rec.name, "bob");
	assert_string_equal(rec.password, "{PLAIN}pw");
	assert_int_equal(rec.uid, 1000);
	assert_string_equal(rec.home, "/home/bob");
	user_record_clear(&rec);
	assert_null(rec.password);

	assert_int_equal(passwd_db_lookup(db, "alice", &rec), 1);
	assert_string_equal(rec.password, "{PLAIN}x");
	assert_string_equal(rec.home, "");
	user_record_clear(&rec);

	assert_int_equal(passwd_db_lookup(db, "carol", &rec), 0);
	assert_int_equal(passwd_db_lookup(db, "bo", &rec), 0);
	assert_int_equal(passwd_db_lookup(db, "bobb", &rec), 0);
	assert_int_equal(passwd_db_lookup(db, "Bob", &rec), 0);
	assert_int_equal(passwd_db_lookup(db, "", &rec), 0);
	assert_null(rec.name);
	passwd_db_free(db);
}

static void test_malformed_lines_skipped_others_loaded(void **state)
{
	struct fixture *f = *state;
	write_users(f, "bad:pw:notanumber\nok:{PLAIN}y\n:nouser\nnocolon\n", 1600000000);
	struct passwd_db *db = passwd_db_new(f->path);
	struct user_record rec;
	assert_int_equal(passwd_db_lookup(db, "ok", &rec), 1);
	user_record_clear(&rec);
	assert_int_equal(passwd_db_lookup(db, "bad", &rec), 0);
	assert_int_equal(passwd_db_lookup(db, "nocolon", &rec), 0);
	passwd_db_free(db);
}

static void test_file_without_users_finds_nobody(void **state)
{
	struct fixture *f = *state;
	write_users(f, "# nobody here yet\n\n", 1600000000);
	struct passwd_db *db = passwd_db_new(f->path);
	struct user_record rec;
	assert_int_equal(passwd_db_lookup(db, "bob", &rec), 0);
	passwd_db_free(db);

	write_users(f, "", 1600000000);
	db = passwd_db_new(f->path);
	assert_int_equal(passwd_db_lookup(db, "bob", &rec), 0);
	passwd_db_free(db);
}

static void test_missing_file_is_temporary_failure(void **state)
{
	struct fixture *f = *state;
	struct passwd_db *db = passwd_db_new(f->path);
	struct user_record rec;
	assert_int_equal(passwd_db_lookup(db, "bob", &rec), -1);
	assert_null(rec.name);

	/* it appears later: picked up */
	write_users(f, "bob:{PLAIN}pw\n", 1600000000);
	assert_int_equal(passwd_db_lookup(db, "bob", &rec), 1);
	user_record_clear(&rec);

	/* and vanishes again */
	assert_int_equal(unlink(f->path), 0);
	assert_int_equal(passwd_db_lookup(db, "bob", &rec), -1);
	passwd_db_free(db);
}

static void test_reload_after_file_changes(void **state)
{
	struct fixture *f = *state;
	write_users(f, "bob:{PLAIN}old\n", 1600000000);
	struct passwd_db *db = passwd_db_new(f->path);
	struct user_record rec;
	assert_int_equal(passwd_db_lookup(db, "bob", &rec), 1);
	assert_string_equal(rec.password, "{PLAIN}old");
	user_record_clear(&rec);
	assert_int_equal(passwd_db_lookup(db, "carol", &rec), 0);

	/* replaced by rename with a new user and a changed password */
	write_users(f, "bob:{PLAIN}new\ncarol:{PLAIN}c\n", 1600000100);
	assert_int_equal(passwd_db_lookup(db, "carol", &rec), 1);
	assert_string_equal(rec.password, "{PLAIN}c");
	user_record_clear(&rec);
	assert_int_equal(passwd_db_lookup(db, "bob", &rec), 1);
	assert_string_equal(rec.password, "{PLAIN}new");
	user_record_clear(&rec);

	/* rewritten in place, same size, only the mtime tells */
	rewrite_in_place(f, "dan:{PLAIN}new\ncarol:{PLAIN}d\n", 1600000200);
	struct stat sb;
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_size, strlen("bob:{PLAIN}new\ncarol:{PLAIN}c\n"));
	assert_int_equal(passwd_db_lookup(db, "bob", &rec), 0);
	assert_int_equal(passwd_db_lookup(db, "dan", &rec), 1);
	user_record_clear(&rec);
	assert_int_equal(passwd_db_lookup(db, "carol", &rec), 1);
	assert_string_equal(rec.password, "{PLAIN}d");
	user_record_clear(&rec);
	passwd_db_free(db);
}

static void test_duplicate_user_gives_one_entry(void **state)
{
	struct fixture *f = *state;
	write_users(f, "bob:{PLAIN}first:1\nalice:{PLAIN}a\nbob:{PLAIN}second:2\n", 1600000000);
	struct passwd_db *db = passwd_db_new(f->path);
	struct user_record rec;
	assert_int_equal(passwd_db_lookup(db, "bob", &rec), 1);
	assert_string_equal(rec.name, "bob");
	bool first = strcmp(rec.password, "{PLAIN}first") == 0 && rec.uid == 1;
	bool second = strcmp(rec.password, "{PLAIN}second") == 0 && rec.uid == 2;
	assert_true(first || second);
	user_record_clear(&rec);
	assert_int_equal(passwd_db_lookup(db, "alice", &rec), 1);
	user_record_clear(&rec);
	passwd_db_free(db);
}

static void test_many_users(void **state)
{
	struct fixture *f = *state;
	char *text = malloc(200 * 40);
	assert_non_null(text);
	size_t n = 0;
	for (int i = 199; i >= 0; i--)
		n += (size_t)snprintf(text + n, 200 * 40 - n, "user%03d:{PLAIN}pw%d:%d\n", i, i, i);
	write_users(f, text, 1600000000);
	free(text);
	struct passwd_db *db = passwd_db_new(f->path);
	for (int i = 0; i < 200; i++) {
		char name[16], pw[32];
		snprintf(name, sizeof(name), "user%03d", i);
		snprintf(pw, sizeof(pw), "{PLAIN}pw%d", i);
		struct user_record rec;
		assert_int_equal(passwd_db_lookup(db, name, &rec), 1);
		assert_string_equal(rec.password, pw);
		assert_int_equal(rec.uid, i);
		user_record_clear(&rec);
	}
	passwd_db_free(db);
}

static void test_free_null_is_harmless(void **state)
{
	passwd_db_free(NULL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_full_line),
		cmocka_unit_test(test_parse_short_line),
		cmocka_unit_test(test_parse_comments_and_blank_lines),
		cmocka_unit_test(test_parse_rejects_malformed_lines),
		T(test_lookup_found_and_not_found),
		T(test_malformed_lines_skipped_others_loaded),
		T(test_file_without_users_finds_nobody),
		T(test_missing_file_is_temporary_failure),
		T(test_reload_after_file_changes),
		T(test_duplicate_user_gives_one_entry),
		T(test_many_users),
		cmocka_unit_test(test_free_null_is_harmless),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
