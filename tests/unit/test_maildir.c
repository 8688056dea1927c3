/* test_maildir.c - the Maildir maildrop: creation, scan, sizes and the size
 * cache, UIDLs, order, the session lock, following renames, and UPDATE. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/bounds.h"
#include "store/maildir.h"

/* Per-test state: a fresh temporary directory holding "Maildir". */
struct fixture {
	char root[64];
	char md[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	snprintf(f->root, sizeof(f->root), "/tmp/pigeon-maildir-XXXXXX");
	if (mkdtemp(f->root) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->md, sizeof(f->md), "%s/Maildir", f->root);
	*state = f;
	return 0;
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (type == FTW_DP)
		return rmdir(path);
	return unlink(path);
}

static int make_writable(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type == FTW_D || type == FTW_DNR)
		chmod(path, (sb->st_mode & 07777) | 0700);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	/* restore permissions taken away by a test before removing */
	nftw(f->root, make_writable, 16, FTW_PHYS);
	nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void make_dirs(const struct fixture *f)
{
	char p[256];
	assert_int_equal(mkdir(f->md, 0700), 0);
	static const char *const sub[] = {"new", "cur", "tmp"};
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", f->md, sub[i]);
		assert_int_equal(mkdir(p, 0700), 0);
	}
}

/* Write rel (relative to the Maildir) with the given bytes. */
static void put_file(const struct fixture *f, const char *rel, const char *data, size_t len)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", f->md, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

static void put_str(const struct fixture *f, const char *rel, const char *data)
{
	put_file(f, rel, data, strlen(data));
}

static bool exists(const struct fixture *f, const char *rel)
{
	char p[512];
	struct stat sb;
	snprintf(p, sizeof(p), "%s/%s", f->md, rel);
	return lstat(p, &sb) == 0;
}

static void set_mtime(const struct fixture *f, const char *rel, time_t when)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", f->md, rel);
	struct timespec ts[2] = {{when, 0}, {when, 0}};
	assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static void rename_in(const struct fixture *f, const char *from, const char *to)
{
	char a[512], b[512];
	snprintf(a, sizeof(a), "%s/%s", f->md, from);
	snprintf(b, sizeof(b), "%s/%s", f->md, to);
	assert_int_equal(rename(a, b), 0);
}

/* Number of entries in a subdirectory, not counting "." and "..". */
static size_t count_entries(const struct fixture *f, const char *sub)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", f->md, sub);
	DIR *d = opendir(p);
	assert_non_null(d);
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static const struct maildir_msg *find_msg(const struct maildir *md, const char *name)
{
	for (size_t i = 0; i < md->count; i++)
		if (strcmp(md->msgs[i].name, name) == 0)
			return &md->msgs[i];
	return NULL;
}

static size_t find_index(const struct maildir *md, const char *name)
{
	for (size_t i = 0; i < md->count; i++)
		if (strcmp(md->msgs[i].name, name) == 0)
			return i;
	fail_msg("message %s not listed", name);
	return 0;
}

static struct maildir *open_ok(const struct fixture *f)
{
	struct maildir *md = NULL;
	assert_int_equal(maildir_open(f->md, &md), STORE_OK);
	assert_non_null(md);
	return md;
}

static void assert_valid_uidl(const char *uidl)
{
	size_t len = strlen(uidl);
	assert_in_range(len, 1, POP3_UIDL_MAX);
	for (size_t i = 0; i < len; i++)
		assert_in_range((unsigned char)uidl[i], 0x21, 0x7e);
}

static void assert_mode_0700(const char *path)
{
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0700);
}

/* ---- creation and listing ------------------------------------------- */

static void test_open_creates_missing_maildir_mode_0700(void **state)
{
	struct fixture *f = *state;
	snprintf(f->md, sizeof(f->md), "%s/home/user/Maildir", f->root);
	struct maildir *md = open_ok(f);
	assert_int_equal(md->count, 0);
	assert_int_equal(md->total_size, 0);
	maildir_close(md);

	char p[256];
	assert_mode_0700(f->md);
	static const char *const sub[] = {"new", "cur", "tmp"};
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", f->md, sub[i]);
		assert_mode_0700(p);
	}
}

static void test_open_creates_missing_subdirectories(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(mkdir(f->md, 0700), 0);
	struct maildir *md = open_ok(f);
	maildir_close(md);
	assert_true(exists(f, "new"));
	assert_true(exists(f, "cur"));
	assert_true(exists(f, "tmp"));
}

static void test_lists_new_and_cur_ignores_tmp_dot_names_and_subdirs(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	put_str(f, "new/1000.a.host", "A: 1\n\nbody\n");
	put_str(f, "cur/1001.b.host:2,S", "B: 1\n\nbody\n");
	put_str(f, "tmp/1002.c.host", "C: 1\n\nbody\n");
	put_str(f, "new/.1003.d.host", "D\n");
	put_str(f, "cur/.hidden:2,S", "E\n");
	char p[256];
	snprintf(p, sizeof(p), "%s/new/1004.subdir.host", f->md);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(p, sizeof(p), "%s/cur/1005.subdir.host:2,", f->md);
	assert_int_equal(mkdir(p, 0700), 0);
	put_str(f, "cur/1005.subdir.host:2,/1006.inner.host", "F\n");
	/* a directory whose name carries a size is still not a message */
	snprintf(p, sizeof(p), "%s/new/1007.dir.host,S=1,W=1", f->md);
	assert_int_equal(mkdir(p, 0700), 0);

	struct maildir *md = open_ok(f);
	assert_int_equal(md->count, 2);
	const struct maildir_msg *a = find_msg(md, "1000.a.host");
	const struct maildir_msg *b = find_msg(md, "1001.b.host:2,S");
	assert_non_null(a);
	assert_non_null(b);
	assert_false(a->in_cur);
	assert_true(b->in_cur);
	maildir_close(md);
}

static void test_w_field_size_used_without_reading(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	/* the content (5 octets) disagrees with W=: W= wins, nothing is read */
	put_str(f, "new/1000.a.host,S=5,W=777", "hello");
	put_str(f, "cur/1001.b.host,S=3,W=12345:2,S", "abc");
	struct maildir *md = open_ok(f);
	assert_int_equal(md->count, 2);
	assert_int_equal(find_msg(md, "1000.a.host,S=5,W=777")->size, 777);
	assert_int_equal(find_msg(md, "1001.b.host,S=3,W=12345:2,S")->size, 12345);
	assert_int_equal(md->total_size, 777 + 12345);
	assert_int_equal(md->sizes_computed, 0);
	maildir_close(md);
}

static void test_w_field_used_for_names_without_timestamp(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	put_str(f, "new/nodate,W=50", "x");
	struct maildir *md = open_ok(f);
	assert_int_equal(md->count, 1);
	assert_int_equal(md->msgs[0].size, 50);
	assert_int_equal(md->sizes_computed, 0);
	maildir_close(md);
}

static void test_size_computed_as_crlf_size_without_w_field(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	/* k = 4 bare-LF lines: POP3 size = file size + 4 */
	static const char lf[] = "Subject: x\n\nline 1\n.line 2\n";
	put_str(f, "new/1000.lf.host", lf);
	/* CRLF-stored: POP3 size = file size */
	static const char crlf[] = "Subject: y\r\n\r\nbody\r\n";
	put_str(f, "cur/1001.crlf.host:2,S", crlf);
	/* no final newline: a CRLF is added */
	put_str(f, "new/1002.nonl.host", "Subject: z\n\nend");
	struct maildir *md = open_ok(f);
	assert_int_equal(md->count, 3);
	assert_int_equal(find_msg(md, "1000.lf.host")->size, strlen(lf) + 4);
	assert_int_equal(find_msg(md, "1001.crlf.host:2,S")->size, strlen(crlf));
	assert_int_equal(find_msg(md, "1002.nonl.host")->size, strlen("Subject: z\n\nend") + 2 + 2);
	assert_int_equal(md->total_size, strlen(lf) + 4 + strlen(crlf) + 19);
	assert_int_equal(md->sizes_computed, 3);
	assert_int_equal(md->sizes_cached, 0);
	maildir_close(md);
}

/* ---- size cache ------------------------------------------------------ */

static void read_cache(const struct fixture *f, char *out, size_t outlen)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/%s", f->md, MAILDIR_SIZE_CACHE);
	FILE *fp = fopen(p, "r");
	assert_non_null(fp);
	size_t n = fread(out, 1, outlen - 1, fp);
	out[n] = '\0';
	fclose(fp);
}

static void test_size_cache_written_and_used_by_second_open(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	put_str(f, "new/1000.a.host", "a\nb\nc\n");
	put_str(f, "cur/1001.b.host:2,S", "x\n");
	put_str(f, "new/1002.c.host,S=1,W=2", "y");
	struct maildir *md = open_ok(f);
	assert_int_equal(md->sizes_computed, 2);
	maildir_close(md);

	char cache[1024];
	read_cache(f, cache, sizeof(cache));
	assert_true(strncmp(cache, "pigeon-sizes 2\n", 15) == 0);
	assert_non_null(strstr(cache, "\n6 9 1000.a.host\n"));
	assert_non_null(strstr(cache, "\n2 3 1001.b.host\n"));

	md = open_ok(f);
	assert_int_equal(md->sizes_computed, 0);
	assert_int_equal(md->sizes_cached, 2);
	assert_int_equal(find_msg(md, "1000.a.host")->size, 9);
	assert_int_equal(find_msg(md, "1001.b.host:2,S")->size, 3);
	assert_int_equal(find_msg(md, "1002.c.host,S=1,W=2")->size, 2);
	maildir_close(md);
}

static void test_size_cache_survives_move_to_cur(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	put_str(f, "new/1000.a.host", "a\nb\n");
	maildir_close(open_ok(f));
	rename_in(f, "new/1000.a.host", "cur/1000.a.host:2,S");
	struct maildir *md = open_ok(f);
	assert_int_equal(md->sizes_cached, 1);
	assert_int_equal(md->sizes_computed, 0);
	assert_int_equal(md->msgs[0].size, 6);
	maildir_close(md);
}

static void test_stale_cache_entry_is_recomputed(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	put_str(f, "new/1000.a.host", "a\nb\n");
	put_str(f, "new/1001.b.host", "x\n");
	maildir_close(open_ok(f));

	/* the file changes size: its cache entry no longer applies */
	put_str(f, "new/1000.a.host", "a\nb\nc\nd\n");
	struct maildir *md = open_ok(f);
	assert_int_equal(find_msg(md, "1000.a.host")->size, 12);
	assert_int_equal(find_msg(md, "1001.b.host")->size, 3);
	assert_int_equal(md->sizes_computed, 1);
	assert_int_equal(md->sizes_cached, 1);
	maildir_close(md);

	/* and the cache now holds the new size */
	md = open_ok(f);
	assert_int_equal(md->sizes_computed, 0);
	assert_int_equal(md->sizes_cached, 2);
	assert_int_equal(find_msg(md, "1000.a.host")->size, 12);
	maildir_close(md);
}

static void test_corrupt_cache_is_ignored(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	put_str(f, "new/1000.a.host", "a\nb\n");
	/* wrong header: the whole file is ignored, even a plausible entry */
	put_str(f, MAILDIR_SIZE_CACHE, "garbage\n1000.a.host 4 999\n");
	struct maildir *md = open_ok(f);
	assert_int_equal(md->msgs[0].size, 6);
	assert_int_equal(md->sizes_cached, 0);
	assert_int_equal(md->sizes_computed, 1);
	maildir_close(md);

	/* right header, damaged lines: skipped */
	put_str(f, MAILDIR_SIZE_CACHE,
		"pigeon-sizes 2\n4 1000.a.host\n\x01\x02\xff\nx y 1000.a.host\n4 9 1000%ZZa.host\n");
	md = open_ok(f);
	assert_int_equal(md->msgs[0].size, 6);
	assert_int_equal(md->sizes_cached, 0);
	maildir_close(md);

	/* a header and no entries */
	put_str(f, MAILDIR_SIZE_CACHE, "pigeon-sizes 2\n");
	md = open_ok(f);
	assert_int_equal(md->msgs[0].size, 6);
	assert_int_equal(md->sizes_computed, 1);
	maildir_close(md);

	/* binary junk */
	static const char junk[] = "\0\0\0\xff\xfe pigeon\n\n\n";
	put_file(f, MAILDIR_SIZE_CACHE, junk, sizeof(junk) - 1);
	md = open_ok(f);
	assert_int_equal(md->msgs[0].size, 6);
	maildir_close(md);

	/* rebuilt: the next open uses it */
	md = open_ok(f);
	assert_int_equal(md->sizes_cached, 1);
	assert_int_equal(md->sizes_computed, 0);
	assert_int_equal(md->msgs[0].size, 6);
	maildir_close(md);
}

static void test_cache_not_confused_by_names_with_spaces(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	/* "x" is 5 octets with one LF: POP3 size 6. The second name is chosen so
	 * that its cache line reads "x 5 7 ..." if names are written unescaped. */
	put_str(f, "new/x", "abcd\n");
	put_str(f, "new/x 5 7", "0123456789");
	put_str(f, "new/x 5 7 z", "0123456789");
	set_mtime(f, "new/x", 1500000000);
	set_mtime(f, "new/x 5 7", 1500000000);
	set_mtime(f, "new/x 5 7 z", 1500000000);
	for (int session = 0; session < 2; session++) {
		struct maildir *md = open_ok(f);
		size_t count = md->count;
		uint64_t x = find_msg(md, "x")->size;
		uint64_t x57 = find_msg(md, "x 5 7")->size;
		uint64_t x57z = find_msg(md, "x 5 7 z")->size;
		maildir_close(md);
		assert_int_equal(count, 3);
		assert_int_equal(x, 6);
		assert_int_equal(x57, 12);
		assert_int_equal(x57z, 12);
	}
}

/* ---- UIDLs ----------------------------------------------------------- */

static void test_junk_names_get_valid_uidls(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	char longname[256];
	memset(longname, 'a', 250);
	longname[250] = '\0';
	char longname2[256];
	memcpy(longname2, longname, sizeof(longname));
	longname2[249] = 'b';
	const char *const names[] = {
		"has space", "caf\xc3\xa9", "tab\there", "ctl\x01\x7f", " ",
		"\xff\xfe", longname, longname2,
	};
	char rel[300];
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(rel, sizeof(rel), "new/%s", names[i]);
		put_str(f, rel, "x\n");
	}
	/* the same junk base in cur/ with flags */
	put_str(f, "cur/more junk\x80:2,S", "y\n");

	struct maildir *md = open_ok(f);
	assert_int_equal(md->count, sizeof(names) / sizeof(names[0]) + 1);
	for (size_t i = 0; i < md->count; i++) {
		assert_valid_uidl(md->msgs[i].uidl);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(md->msgs[i].uidl, md->msgs[j].uidl);
	}
	/* stable across sessions */
	char saved[16][POP3_UIDL_MAX + 1];
	char savednames[16][300];
	size_t n = md->count;
	for (size_t i = 0; i < n; i++) {
		snprintf(saved[i], sizeof(saved[i]), "%s", md->msgs[i].uidl);
		snprintf(savednames[i], sizeof(savednames[i]), "%s", md->msgs[i].name);
	}
	maildir_close(md);
	md = open_ok(f);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(find_msg(md, savednames[i])->uidl, saved[i]);
	maildir_close(md);
}

static void test_uidl_boundary_at_70_characters(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	char n70[80], n71[80];
	memset(n70, 'k', 70);
	n70[0] = '1';
	n70[1] = '.';
	n70[70] = '\0';
	memcpy(n71, n70, 70);
	n71[70] = 'z';
	n71[71] = '\0';
	char rel[100];
	snprintf(rel, sizeof(rel), "new/%s", n70);
	put_str(f, rel, "a\n");
	snprintf(rel, sizeof(rel), "new/%s", n71);
	put_str(f, rel, "b\n");
	struct maildir *md = open_ok(f);
	assert_string_equal(find_msg(md, n70)->uidl, n70);
	const char *u71 = find_msg(md, n71)->uidl;
	assert_valid_uidl(u71);
	assert_string_not_equal(u71, n70);
	maildir_close(md);
}

static void test_uidl_is_base_name_and_survives_move_to_cur(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	static const char base[] = "1655390418.M100238P743770V0000000000000030I00000000081274AE_0.cp";
	static const char dbase[] = "1655390419.M1P2.host,S=2,W=3";
	put_str(f, "new/1655390418.M100238P743770V0000000000000030I00000000081274AE_0.cp", "a\n");
	put_str(f, "new/1655390419.M1P2.host,S=2,W=3", "b\n");
	put_str(f, "cur/1655390420.M3P4.host:2,FRS", "c\n");
	struct maildir *md = open_ok(f);
	assert_int_equal(md->count, 3);
	assert_string_equal(find_msg(md, base)->uidl, base);
	assert_string_equal(find_msg(md, dbase)->uidl, dbase);
	assert_string_equal(find_msg(md, "1655390420.M3P4.host:2,FRS")->uidl, "1655390420.M3P4.host");
	maildir_close(md);

	char from[200], to[200];
	snprintf(from, sizeof(from), "new/%s", base);
	snprintf(to, sizeof(to), "cur/%s:2,S", base);
	rename_in(f, from, to);
	rename_in(f, "new/1655390419.M1P2.host,S=2,W=3", "cur/1655390419.M1P2.host,S=2,W=3:2,S");
	rename_in(f, "cur/1655390420.M3P4.host:2,FRS", "cur/1655390420.M3P4.host:2,S");
	md = open_ok(f);
	assert_int_equal(md->count, 3);
	char moved[200];
	snprintf(moved, sizeof(moved), "%s:2,S", base);
	assert_string_equal(find_msg(md, moved)->uidl, base);
	assert_string_equal(find_msg(md, "1655390419.M1P2.host,S=2,W=3:2,S")->uidl, dbase);
	assert_string_equal(find_msg(md, "1655390420.M3P4.host:2,S")->uidl, "1655390420.M3P4.host");
	maildir_close(md);
}

static void test_uidls_are_unique(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	char rel[300];
	for (int i = 0; i < 50; i++) {
		snprintf(rel, sizeof(rel), "%s/16000000%02d.M%dP1.host%s", i % 2 ? "cur" : "new", i,
			 i, i % 2 ? ":2,S" : "");
		put_str(f, rel, "m\n");
	}
	/* long names that agree in their first 70 characters */
	for (int i = 0; i < 5; i++) {
		memset(rel, 0, sizeof(rel));
		memcpy(rel, "new/", 4);
		memset(rel + 4, 'q', 100);
		rel[104] = (char)('0' + i);
		put_str(f, rel, "m\n");
	}
	struct maildir *md = open_ok(f);
	assert_int_equal(md->count, 55);
	for (size_t i = 0; i < md->count; i++) {
		assert_valid_uidl(md->msgs[i].uidl);
		for (size_t j = 0; j < i; j++)
			assert_string_not_equal(md->msgs[i].uidl, md->msgs[j].uidl);
	}
	maildir_close(md);
}

static void test_uidl_for_function(void **state)
{
	char out[POP3_UIDL_MAX + 1];
	maildir_uidl_for("1000.a.host:2,S", 11, out);
	assert_string_equal(out, "1000.a.host");
	maildir_uidl_for("with space", 10, out);
	assert_valid_uidl(out);
	char again[POP3_UIDL_MAX + 1];
	maildir_uidl_for("with space", 10, again);
	assert_string_equal(out, again);
	maildir_uidl_for("with spacf", 10, again);
	assert_string_not_equal(out, again);
	maildir_uidl_for("", 0, out);
	assert_valid_uidl(out);
}

/* ---- order and duplicates -------------------------------------------- */

static void test_order_is_oldest_first_by_leading_timestamp(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	put_str(f, "new/1700000300.c.host", "c\n");
	put_str(f, "cur/1700000100.a.host:2,S", "a\n");
	put_str(f, "new/1700000200.b.host,S=2,W=3", "b\n");
	/* 999999999 < 1700000000 numerically although "9" > "1" */
	put_str(f, "cur/999999999.z.host:2,", "z\n");
	/* no timestamp in the name: the file's mtime decides */
	put_str(f, "new/nodate", "n\n");
	set_mtime(f, "new/nodate", 1700000150);
	/* file mtimes must not override the name */
	set_mtime(f, "new/1700000300.c.host", 1);

	struct maildir *md = open_ok(f);
	assert_int_equal(md->count, 5);
	assert_string_equal(md->msgs[0].name, "999999999.z.host:2,");
	assert_string_equal(md->msgs[1].name, "1700000100.a.host:2,S");
	assert_string_equal(md->msgs[2].name, "nodate");
	assert_string_equal(md->msgs[3].name, "1700000200.b.host,S=2,W=3");
	assert_string_equal(md->msgs[4].name, "1700000300.c.host");
	maildir_close(md);
}

static void test_same_base_in_new_and_cur_listed_once(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	/* a message moved new/ -> cur/ while being scanned looks like this */
	put_str(f, "new/1000.a.host", "a\n");
	put_str(f, "cur/1000.a.host:2,S", "a\n");
	put_str(f, "new/1001.b.host", "b\n");
	struct maildir *md = open_ok(f);
	assert_int_equal(md->count, 2);
	size_t seen_a = 0;
	for (size_t i = 0; i < md->count; i++)
		if (strcmp(md->msgs[i].uidl, "1000.a.host") == 0)
			seen_a++;
	assert_int_equal(seen_a, 1);
	/* the cur/ copy is the current one */
	const struct maildir_msg *a = find_msg(md, "1000.a.host:2,S");
	assert_non_null(a);
	assert_true(a->in_cur);
	assert_null(find_msg(md, "1000.a.host"));
	assert_int_equal(md->total_size, 6);
	maildir_close(md);
}

/* ---- lock ------------------------------------------------------------ */

static void test_second_open_is_in_use_until_close(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	put_str(f, "new/1000.a.host", "a\n");
	struct maildir *first = open_ok(f);
	struct maildir *second = (struct maildir *)1;
	assert_int_equal(maildir_open(f->md, &second), STORE_IN_USE);
	assert_null(second);
	/* a refused open must not have dropped the first session's lock */
	assert_int_equal(maildir_open(f->md, &second), STORE_IN_USE);
	assert_null(second);
	maildir_close(first);
	second = open_ok(f);
	assert_int_equal(second->count, 1);
	maildir_close(second);
}

static void test_lock_is_per_maildir(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	struct maildir *first = open_ok(f);
	char other[160];
	snprintf(other, sizeof(other), "%s/Other", f->root);
	struct maildir *second = NULL;
	assert_int_equal(maildir_open(other, &second), STORE_OK);
	maildir_close(second);
	maildir_close(first);
}

static void test_close_null_is_harmless(void **state)
{
	maildir_close(NULL);
}

/* ---- access ---------------------------------------------------------- */

static void read_all(int fd, char *out, size_t outlen)
{
	ssize_t n = read(fd, out, outlen - 1);
	assert_true(n >= 0);
	out[n] = '\0';
}

static void test_open_message_follows_rename_after_scan(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	put_str(f, "new/1000.a.host", "content A\n");
	put_str(f, "new/1001.b.host", "content B\n");
	struct maildir *md = open_ok(f);
	size_t ia = find_index(md, "1000.a.host");

	char text[64];
	int fd = maildir_open_message(md, ia);
	assert_true(fd >= 0);
	read_all(fd, text, sizeof(text));
	close(fd);
	assert_string_equal(text, "content A\n");

	/* another reader moves it to cur/ and sets flags */
	rename_in(f, "new/1000.a.host", "cur/1000.a.host:2,S");
	fd = maildir_open_message(md, ia);
	assert_true(fd >= 0);
	read_all(fd, text, sizeof(text));
	close(fd);
	assert_string_equal(text, "content A\n");
	assert_string_equal(md->msgs[ia].name, "1000.a.host:2,S");
	assert_true(md->msgs[ia].in_cur);

	/* and flags change again within cur/ */
	rename_in(f, "cur/1000.a.host:2,S", "cur/1000.a.host:2,RS");
	fd = maildir_open_message(md, ia);
	assert_true(fd >= 0);
	close(fd);

	/* a message that vanished */
	size_t ib = find_index(md, "1001.b.host");
	char p[256];
	snprintf(p, sizeof(p), "%s/new/1001.b.host", f->md);
	assert_int_equal(unlink(p), 0);
	assert_int_equal(maildir_open_message(md, ib), -1);
	maildir_close(md);
}

/* ---- commit ---------------------------------------------------------- */

static void test_commit_deletes_and_marks_seen(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	put_str(f, "new/1001.del.host", "1\n");
	put_str(f, "new/1002.seen.host", "2\n");
	put_str(f, "cur/1003.fr.host:2,FR", "3\n");
	put_str(f, "cur/1004.t.host:2,T", "4\n");
	put_str(f, "new/1005.keep.host", "5\n");
	put_str(f, "cur/1006.keep.host:2,R", "6\n");
	put_str(f, "cur/1007.del.host:2,S", "7\n");
	put_str(f, "cur/1008.already.host:2,S", "8\n");
	put_str(f, "cur/1009.extra.host:2,F,dovecot", "9\n");
	put_str(f, "cur/1010.noinfo.host", "10\n");
	put_str(f, "new/1011.delseen.host", "11\n");
	put_str(f, "cur/1012.keyword.host:2,Fa", "12\n");

	struct maildir *md = open_ok(f);
	assert_int_equal(md->count, 12);
	uint8_t del[12] = {0}, seen[12] = {0};
	del[find_index(md, "1001.del.host")] = 1;
	seen[find_index(md, "1002.seen.host")] = 1;
	seen[find_index(md, "1003.fr.host:2,FR")] = 1;
	seen[find_index(md, "1004.t.host:2,T")] = 1;
	del[find_index(md, "1007.del.host:2,S")] = 1;
	seen[find_index(md, "1008.already.host:2,S")] = 1;
	seen[find_index(md, "1009.extra.host:2,F,dovecot")] = 1;
	seen[find_index(md, "1010.noinfo.host")] = 1;
	del[find_index(md, "1011.delseen.host")] = 1;
	seen[find_index(md, "1011.delseen.host")] = 1;
	seen[find_index(md, "1012.keyword.host:2,Fa")] = 1;

	assert_int_equal(maildir_commit(md, del, seen), 0);
	maildir_close(md);

	assert_false(exists(f, "new/1001.del.host"));
	assert_false(exists(f, "cur/1007.del.host:2,S"));
	assert_false(exists(f, "new/1011.delseen.host"));
	assert_false(exists(f, "cur/1011.delseen.host:2,S"));
	assert_false(exists(f, "new/1002.seen.host"));
	assert_true(exists(f, "cur/1002.seen.host:2,S"));
	assert_true(exists(f, "cur/1003.fr.host:2,FRS"));
	assert_true(exists(f, "cur/1004.t.host:2,ST"));
	assert_true(exists(f, "new/1005.keep.host"));
	assert_true(exists(f, "cur/1006.keep.host:2,R"));
	assert_true(exists(f, "cur/1008.already.host:2,S"));
	assert_true(exists(f, "cur/1009.extra.host:2,FS,dovecot"));
	assert_true(exists(f, "cur/1010.noinfo.host:2,S"));
	assert_true(exists(f, "cur/1012.keyword.host:2,FSa"));
	assert_int_equal(count_entries(f, "new"), 1);
	assert_int_equal(count_entries(f, "cur"), 8);

	/* the next session sees the survivors with unchanged UIDLs */
	md = open_ok(f);
	assert_int_equal(md->count, 9);
	assert_string_equal(find_msg(md, "1003.fr.host:2,FRS")->uidl, "1003.fr.host");
	maildir_close(md);
}

static void test_commit_keeps_unmarked_messages_untouched(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	put_str(f, "new/1001.a.host", "1\n");
	put_str(f, "cur/1002.b.host:2,", "2\n");
	struct maildir *md = open_ok(f);
	uint8_t none[2] = {0, 0};
	assert_int_equal(maildir_commit(md, none, none), 0);
	assert_int_equal(maildir_commit(md, none, NULL), 0);
	maildir_close(md);
	assert_true(exists(f, "new/1001.a.host"));
	assert_true(exists(f, "cur/1002.b.host:2,"));
	assert_int_equal(count_entries(f, "new"), 1);
	assert_int_equal(count_entries(f, "cur"), 1);
}

static void test_commit_counts_message_deleted_elsewhere_as_done(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	put_str(f, "new/1001.gone.host", "1\n");
	put_str(f, "new/1002.moved.host", "2\n");
	put_str(f, "new/1003.keep.host", "3\n");
	struct maildir *md = open_ok(f);
	uint8_t del[3] = {0};
	del[find_index(md, "1001.gone.host")] = 1;
	del[find_index(md, "1002.moved.host")] = 1;

	char p[256];
	snprintf(p, sizeof(p), "%s/new/1001.gone.host", f->md);
	assert_int_equal(unlink(p), 0);
	/* moved to cur/ by another reader: still deleted */
	rename_in(f, "new/1002.moved.host", "cur/1002.moved.host:2,S");

	assert_int_equal(maildir_commit(md, del, NULL), 0);
	maildir_close(md);
	assert_false(exists(f, "cur/1002.moved.host:2,S"));
	assert_true(exists(f, "new/1003.keep.host"));
	assert_int_equal(count_entries(f, "new"), 1);
	assert_int_equal(count_entries(f, "cur"), 0);
}

static void test_commit_marks_seen_a_message_moved_elsewhere(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	put_str(f, "new/1001.a.host", "1\n");
	struct maildir *md = open_ok(f);
	uint8_t del[1] = {0}, seen[1] = {1};
	rename_in(f, "new/1001.a.host", "cur/1001.a.host:2,F");
	assert_int_equal(maildir_commit(md, del, seen), 0);
	maildir_close(md);
	assert_true(exists(f, "cur/1001.a.host:2,FS"));
	assert_int_equal(count_entries(f, "cur"), 1);
	assert_int_equal(count_entries(f, "new"), 0);
}

/* ---- names and errors ------------------------------------------------ */

static void test_name_size_parsing(void **state)
{
	uint64_t v = 0;
	assert_true(maildir_name_size("1000.a.host,S=12,W=14", &v));
	assert_int_equal(v, 14);
	v = 0;
	assert_true(maildir_name_size("1000.a.host,W=14:2,S", &v));
	assert_int_equal(v, 14);
	v = 0;
	assert_true(maildir_name_size("1000.a.host,S=12,W=14:2,FRS", &v));
	assert_int_equal(v, 14);
	v = 0;
	assert_true(maildir_name_size("1000.a.host,W=14,S=12", &v));
	assert_int_equal(v, 14);
	v = 0;
	assert_true(maildir_name_size("x,W=0", &v));
	assert_int_equal(v, 0);

	v = 99;
	assert_false(maildir_name_size("1000.a.host", &v));
	assert_false(maildir_name_size("1000.a.host,S=12", &v));
	assert_false(maildir_name_size("1000.a.host,S=12:2,S", &v));
	assert_false(maildir_name_size("1000.a.host,W=", &v));
	assert_false(maildir_name_size("1000.a.host,W=:2,S", &v));
	assert_false(maildir_name_size("1000.a.host,W=abc", &v));
	assert_false(maildir_name_size("1000.a.host,W=12abc", &v));
	assert_false(maildir_name_size("1000.a.host,W=-5", &v));
	assert_false(maildir_name_size("1000.a.host,W= 5", &v));
	assert_false(maildir_name_size("1000.a.host,w=14", &v));
	assert_false(maildir_name_size("1000.a.hostW=14", &v));
	/* in the info part, after ':', it is not a size */
	assert_false(maildir_name_size("1000.a.host:2,W=14", &v));
	/* more digits than fit in 64 bits */
	assert_false(maildir_name_size("1000.a.host,W=123456789012345678901234", &v));
	assert_int_equal(v, 99);
}

static void test_unreadable_path_is_perm(void **state)
{
	struct fixture *f = *state;
	make_dirs(f);
	assert_int_equal(chmod(f->md, 0), 0);
	if (geteuid() == 0) {
		/* Root ignores permission bits, so this case cannot be tested as
		 * root. */
		skip();
	}
	struct maildir *md = (struct maildir *)1;
	assert_int_equal(maildir_open(f->md, &md), STORE_PERM);
	assert_null(md);
}

static void test_path_through_a_file_is_perm(void **state)
{
	struct fixture *f = *state;
	char file[160];
	snprintf(file, sizeof(file), "%s/file", f->root);
	int fd = open(file, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(f->md, sizeof(f->md), "%s/file/Maildir", f->root);
	struct maildir *md = (struct maildir *)1;
	assert_int_equal(maildir_open(f->md, &md), STORE_PERM);
	assert_null(md);
	/* the Maildir path itself being a file */
	snprintf(f->md, sizeof(f->md), "%s/file", f->root);
	md = (struct maildir *)1;
	assert_int_equal(maildir_open(f->md, &md), STORE_PERM);
	assert_null(md);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_open_creates_missing_maildir_mode_0700),
		T(test_open_creates_missing_subdirectories),
		T(test_lists_new_and_cur_ignores_tmp_dot_names_and_subdirs),
		T(test_w_field_size_used_without_reading),
		T(test_w_field_used_for_names_without_timestamp),
		T(test_size_computed_as_crlf_size_without_w_field),
		T(test_size_cache_written_and_used_by_second_open),
		T(test_size_cache_survives_move_to_cur),
		T(test_stale_cache_entry_is_recomputed),
		T(test_corrupt_cache_is_ignored),
		T(test_cache_not_confused_by_names_with_spaces),
		T(test_junk_names_get_valid_uidls),
		T(test_uidl_boundary_at_70_characters),
		T(test_uidl_is_base_name_and_survives_move_to_cur),
		T(test_uidls_are_unique),
		cmocka_unit_test(test_uidl_for_function),
		T(test_order_is_oldest_first_by_leading_timestamp),
		T(test_same_base_in_new_and_cur_listed_once),
		T(test_second_open_is_in_use_until_close),
		T(test_lock_is_per_maildir),
		cmocka_unit_test(test_close_null_is_harmless),
		T(test_open_message_follows_rename_after_scan),
		T(test_commit_deletes_and_marks_seen),
		T(test_commit_keeps_unmarked_messages_untouched),
		T(test_commit_counts_message_deleted_elsewhere_as_done),
		T(test_commit_marks_seen_a_message_moved_elsewhere),
		cmocka_unit_test(test_name_size_parsing),
		T(test_unreadable_path_is_perm),
		T(test_path_through_a_file_is_perm),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
