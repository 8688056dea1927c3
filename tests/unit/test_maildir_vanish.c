/* test_maildir_vanish.c - messages deleted by another program (an IMAP
 * server, a second client) in the middle of pigeond's scan of the Maildir.
 *
 * The program is linked with --wrap for fstatat64 and openat64 (what the
 * library calls with 64-bit file offsets): the wrappers
 * below delete a chosen file just before the scan looks at it (fstatat) or
 * just before it reads it to compute its size (openat), so the race the
 * scan must survive happens every time. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/maildir.h"

int __real_fstatat64(int dirfd, const char *path, struct stat *sb, int flags);
int __wrap_fstatat64(int dirfd, const char *path, struct stat *sb, int flags);
int __real_openat64(int dirfd, const char *path, int flags, ...);
int __wrap_openat64(int dirfd, const char *path, int flags, ...);

/* The file to delete at the next fstatat or openat of it (NULL: none). */
static const char *vanish_at_stat, *vanish_at_open;

int __wrap_fstatat64(int dirfd, const char *path, struct stat *sb, int flags)
{
	if (vanish_at_stat != NULL && strcmp(path, vanish_at_stat) == 0) {
		unlinkat(dirfd, path, 0);
		vanish_at_stat = NULL;
	}
	return __real_fstatat64(dirfd, path, sb, flags);
}

int __wrap_openat64(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	if (flags & O_CREAT) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	if (vanish_at_open != NULL && strcmp(path, vanish_at_open) == 0) {
		unlinkat(dirfd, path, 0);
		vanish_at_open = NULL;
	}
	return __real_openat64(dirfd, path, flags, mode);
}

static char root[64];

static void put(const char *rel, const char *text)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/Maildir/%s", root, rel);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/tmp/pigeon-vanish-XXXXXX");
	if (mkdtemp(root) == NULL)
		return -1;
	static const char *const dirs[] = {"Maildir", "Maildir/new", "Maildir/cur", "Maildir/tmp"};
	for (int i = 0; i < 4; i++) {
		char p[256];
		snprintf(p, sizeof(p), "%s/%s", root, dirs[i]);
		if (mkdir(p, 0700) < 0)
			return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static bool listed(const struct maildir *md, const char *name)
{
	for (size_t i = 0; i < md->count; i++)
		if (strcmp(md->msgs[i].name, name) == 0)
			return true;
	return false;
}

static void open_maildrop(struct maildir **md)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/Maildir", root);
	assert_int_equal(maildir_open(p, md), STORE_OK);
}

/* Deleted before the scan looked at it: not part of the session, and the
 * rest is listed with the right sizes. */
static void test_vanished_before_stat(void **state)
{
	(void)state;
	put("new/1000.a.host", "a\n");           /* 3 octets as CRLF */
	put("new/1001.gone.host", "gone\n");
	put("cur/1002.c.host:2,S", "cc\n");      /* 4 */
	vanish_at_stat = "1001.gone.host";
	struct maildir *md;
	open_maildrop(&md);
	assert_null(vanish_at_stat); /* the race did happen */
	assert_int_equal(md->count, 2);
	assert_false(listed(md, "1001.gone.host"));
	assert_true(listed(md, "1000.a.host"));
	assert_true(listed(md, "1002.c.host:2,S"));
	assert_int_equal(md->total_size, 3 + 4);
	maildir_close(md);
}

/* Deleted between the stat and the read that computes its size. */
static void test_vanished_before_size_read(void **state)
{
	(void)state;
	put("new/1000.a.host", "a\n");
	put("new/1001.gone.host", "gone\n");
	vanish_at_open = "1001.gone.host";
	struct maildir *md;
	open_maildrop(&md);
	assert_null(vanish_at_open);
	assert_int_equal(md->count, 1);
	assert_true(listed(md, "1000.a.host"));
	assert_int_equal(md->total_size, 3);
	maildir_close(md);
	/* and the next session, with the size cache written, agrees */
	open_maildrop(&md);
	assert_int_equal(md->count, 1);
	assert_int_equal(md->total_size, 3);
	maildir_close(md);
}

/* A name carrying its size (,W=) is listed without a look at the file; if
 * it is gone by the time it is retrieved, that is refused, not a crash, and
 * QUIT deleting it counts as done. */
static void test_vanished_with_size_in_name(void **state)
{
	(void)state;
	put("new/1000.a.host,S=2,W=3", "a\n");
	put("new/1001.gone.host,S=5,W=6", "gone\n");
	struct maildir *md;
	open_maildrop(&md);
	assert_int_equal(md->count, 2);
	char p[256];
	snprintf(p, sizeof(p), "%s/Maildir/new/1001.gone.host,S=5,W=6", root);
	assert_int_equal(unlink(p), 0);
	size_t gone = strcmp(md->msgs[0].name, "1001.gone.host,S=5,W=6") == 0 ? 0 : 1;
	assert_string_equal(md->msgs[gone].name, "1001.gone.host,S=5,W=6");
	assert_int_equal(maildir_open_message(md, gone), -1);
	uint8_t deleted[2] = {0, 0};
	deleted[gone] = 1;
	assert_int_equal(maildir_commit(md, deleted, NULL), 0);
	maildir_close(md);
	open_maildrop(&md);
	assert_int_equal(md->count, 1);
	maildir_close(md);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_vanished_before_stat, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vanished_before_size_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vanished_with_size_in_name, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
