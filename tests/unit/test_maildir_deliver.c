/* test_maildir_deliver.c - writing one message into a Maildir (src/deliver/maildir_deliver.c):
 * tmp/ -> new/ under ",S=<stored>,W=<POP3 size>", CRLF stored as LF, abort, creating the
 * Maildir, unique names, and maildir_usage(). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deliver/maildir_deliver.h"
#include "store/transform.h"

#define S(lit) lit, sizeof(lit) - 1

struct fixture {
	char root[64];
	char md[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return -1;
	snprintf(f->root, sizeof(f->root), "/tmp/pigeon-mdeliver-XXXXXX");
	if (mkdtemp(f->root) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->md, sizeof(f->md), "%s/Maildir", f->root);
	umask(022);
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

static int teardown(void **state)
{
	struct fixture *f = *state;
	nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* Names in dir (not "." / ".."), sorted; returns how many; names[] freed by free_names. */
static size_t list_dir(const char *dir, char ***names)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	size_t n = 0, cap = 8;
	char **v = calloc(cap, sizeof(*v));
	assert_non_null(v);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap *= 2;
			v = realloc(v, cap * sizeof(*v));
			assert_non_null(v);
		}
		v[n] = strdup(de->d_name);
		assert_non_null(v[n]);
		n++;
	}
	closedir(d);
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
			char *t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	if (names != NULL)
		*names = v;
	else {
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
	}
	return n;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static size_t count_in(const struct fixture *f, const char *sub)
{
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/%s", f->md, sub);
	return list_dir(dir, NULL);
}

static char *read_all(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	char *data = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			data = realloc(data, cap + 1);
			assert_non_null(data);
		}
		size_t r = fread(data + n, 1, cap - n, fp);
		if (r == 0)
			break;
		n += r;
	}
	fclose(fp);
	data[n] = '\0';
	*len = n;
	return data;
}

/* The only message in new/: checks its name against its content and returns the content. */
static char *only_new_message(const struct fixture *f, const struct maildir_delivery *d,
                              size_t *len)
{
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/new", f->md);
	char **names;
	size_t n = list_dir(dir, &names);
	assert_int_equal(n, 1);
	assert_int_equal(count_in(f, "tmp"), 0);

	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, names[0]);
	char *data = read_all(path, len);
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);

	/* new/<unique>,S=<stored octets>,W=<POP3 size> */
	char expected[400];
	snprintf(expected, sizeof(expected), "%s,S=%zu,W=%llu", d->tmp_name, *len,
	         (unsigned long long)transform_size_of(data, *len));
	assert_string_equal(names[0], expected);
	char final_name[420];
	snprintf(final_name, sizeof(final_name), "new/%s", expected);
	assert_string_equal(d->final_name, final_name);
	assert_int_equal(d->stored, *len);
	/* a Maildir name: no '/' or ':' in it */
	assert_null(strchr(names[0], '/'));
	assert_null(strchr(names[0], ':'));
	free_names(names, n);
	return data;
}

static void remove_new(const struct fixture *f)
{
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/new", f->md);
	char **names;
	size_t n = list_dir(dir, &names);
	for (size_t i = 0; i < n; i++) {
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		assert_int_equal(unlink(path), 0);
	}
	free_names(names, n);
}

/* Deliver the pieces (NULL-terminated, each with its length) and check the stored bytes. */
struct piece {
	const char *p;
	size_t n;
};

static void deliver_and_check(const struct fixture *f, const struct piece *pieces,
                              const char *expected, size_t expected_len)
{
	struct maildir_delivery d;
	assert_int_equal(maildir_delivery_begin(&d, f->md), DELIVER_OK);
	for (; pieces->p != NULL; pieces++)
		maildir_delivery_write(&d, pieces->p, pieces->n);
	assert_int_equal(maildir_delivery_commit(&d), DELIVER_OK);
	size_t len;
	char *data = only_new_message(f, &d, &len);
	assert_int_equal(len, expected_len);
	assert_memory_equal(data, expected, len);
	free(data);
	remove_new(f);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_crlf_message_is_stored_with_lf(void **state)
{
	struct fixture *f = *state;
	static const char msg[] = "Subject: hello\r\n\r\nline one\r\n.dot line\r\n\r\nlast\r\n";
	static const char stored[] = "Subject: hello\n\nline one\n.dot line\n\nlast\n";
	struct maildir_delivery d;
	assert_int_equal(maildir_delivery_begin(&d, f->md), DELIVER_OK);
	/* the file is in tmp/ while it is written, nothing in new/ */
	assert_int_equal(count_in(f, "tmp"), 1);
	maildir_delivery_write(&d, S(msg));
	assert_int_equal(count_in(f, "new"), 0);
	assert_int_equal(maildir_delivery_commit(&d), DELIVER_OK);
	size_t len;
	char *data = only_new_message(f, &d, &len);
	assert_int_equal(len, sizeof(stored) - 1);
	assert_memory_equal(data, stored, len);
	/* the POP3 size is the CRLF size of the message as received */
	assert_int_equal(transform_size_of(data, len), sizeof(msg) - 1);
	char w[32];
	snprintf(w, sizeof(w), ",S=%zu,W=%zu", sizeof(stored) - 1, sizeof(msg) - 1);
	assert_non_null(strstr(d.final_name, w));
	free(data);
	assert_int_equal(count_in(f, "cur"), 0);
}

static void test_bare_cr_is_kept(void **state)
{
	struct fixture *f = *state;
	/* CR not before LF is content; CR CR LF is a bare CR and a line end */
	deliver_and_check(f, (const struct piece[]){{S("a\rb\r\r\nc\rd\r\n")}, {NULL, 0}},
	                  S("a\rb\r\nc\rd\n"));
	/* a CR at the very end stays */
	deliver_and_check(f, (const struct piece[]){{S("x\r\ny\r")}, {NULL, 0}}, S("x\ny\r"));
	/* bare LF stays LF; LF CR is LF then a CR */
	deliver_and_check(f, (const struct piece[]){{S("p\nq\n\rr\r\n")}, {NULL, 0}},
	                  S("p\nq\n\rr\n"));
}

static void test_crlf_split_across_writes(void **state)
{
	struct fixture *f = *state;
	/* CR at the end of one write, LF at the start of the next: one LF */
	deliver_and_check(f,
	                  (const struct piece[]){{S("one\r")},
	                                         {S("\ntwo\r")},
	                                         {S("\n")},
	                                         {S("three\r")},
	                                         {S("x\r")},
	                                         {S("")},
	                                         {S("\r\n")},
	                                         {NULL, 0}},
	                  S("one\ntwo\nthree\rx\r\n"));
	/* a CR alone in a write, then the LF */
	deliver_and_check(
	    f, (const struct piece[]){{S("a")}, {S("\r")}, {S("\n")}, {S("b")}, {NULL, 0}},
	    S("a\nb"));
}

static void test_write_in_any_pieces_gives_the_same_file(void **state)
{
	struct fixture *f = *state;
	static const char msg[] = "Subject: pieces\r\n\r\n\r\r\nbody\r\n\rx\n\r\r\n.\r\nend\r";
	char expected[sizeof(msg)];
	size_t elen;
	{
		struct maildir_delivery d;
		assert_int_equal(maildir_delivery_begin(&d, f->md), DELIVER_OK);
		maildir_delivery_write(&d, S(msg));
		assert_int_equal(maildir_delivery_commit(&d), DELIVER_OK);
		char *data = only_new_message(f, &d, &elen);
		static const char stored[] = "Subject: pieces\n\n\r\nbody\n\rx\n\r\n.\nend\r";
		assert_int_equal(elen, sizeof(stored) - 1);
		assert_memory_equal(data, stored, elen);
		memcpy(expected, data, elen);
		free(data);
		remove_new(f);
	}
	for (size_t step = 1; step <= 7; step++) {
		struct maildir_delivery d;
		assert_int_equal(maildir_delivery_begin(&d, f->md), DELIVER_OK);
		for (size_t i = 0; i < sizeof(msg) - 1; i += step) {
			size_t n = sizeof(msg) - 1 - i < step ? sizeof(msg) - 1 - i : step;
			maildir_delivery_write(&d, msg + i, n);
		}
		assert_int_equal(maildir_delivery_commit(&d), DELIVER_OK);
		size_t len;
		char *data = only_new_message(f, &d, &len);
		assert_int_equal(len, elen);
		assert_memory_equal(data, expected, len);
		free(data);
		remove_new(f);
	}
}

static void test_large_message(void **state)
{
	struct fixture *f = *state;
	/* larger than any write buffer, with CRLFs falling on every chunk boundary */
	size_t lines = 30000, n = 0;
	char *msg = malloc(lines * 12);
	char *want = malloc(lines * 12);
	assert_non_null(msg);
	assert_non_null(want);
	size_t wn = 0;
	for (size_t i = 0; i < lines; i++) {
		int k = snprintf(msg + n, 12, "%07zu%s", i, i % 3 == 0 ? "\r" : "");
		n += (size_t)k;
		memcpy(msg + n, "\r\n", 2);
		n += 2;
		k = snprintf(want + wn, 12, "%07zu%s\n", i, i % 3 == 0 ? "\r" : "");
		wn += (size_t)k;
	}
	struct maildir_delivery d;
	assert_int_equal(maildir_delivery_begin(&d, f->md), DELIVER_OK);
	static const size_t chunks[] = {1, 4096, 16383, 2, 16384, 16385, 9, 65536, 10};
	size_t pos = 0;
	for (size_t c = 0; pos < n; c++) {
		size_t len = chunks[c % (sizeof(chunks) / sizeof(chunks[0]))];
		if (len > n - pos)
			len = n - pos;
		maildir_delivery_write(&d, msg + pos, len);
		pos += len;
	}
	assert_int_equal(maildir_delivery_commit(&d), DELIVER_OK);
	size_t len;
	char *data = only_new_message(f, &d, &len);
	assert_int_equal(len, wn);
	assert_memory_equal(data, want, len);
	/* every line is 7 digits and a line end on the POP3 side */
	assert_int_equal(transform_size_of(data, len), 9 * lines);
	free(data);
	free(msg);
	free(want);
}

static void test_empty_message(void **state)
{
	struct fixture *f = *state;
	struct maildir_delivery d;
	assert_int_equal(maildir_delivery_begin(&d, f->md), DELIVER_OK);
	assert_int_equal(maildir_delivery_commit(&d), DELIVER_OK);
	size_t len;
	char *data = only_new_message(f, &d, &len);
	assert_int_equal(len, 0);
	assert_non_null(strstr(d.final_name, ",S=0,W=0"));
	free(data);
}

static void test_abort_leaves_nothing(void **state)
{
	struct fixture *f = *state;
	struct maildir_delivery d;
	assert_int_equal(maildir_delivery_begin(&d, f->md), DELIVER_OK);
	maildir_delivery_write(&d, S("Subject: never\r\n\r\nbody\r\n"));
	/* more than a write buffer, so some of it is on disk */
	for (int i = 0; i < 2000; i++)
		maildir_delivery_write(&d, S("0123456789012345678901234567890123456789\r\n"));
	assert_int_equal(count_in(f, "tmp"), 1);
	maildir_delivery_abort(&d);
	assert_int_equal(count_in(f, "tmp"), 0);
	assert_int_equal(count_in(f, "new"), 0);
	assert_int_equal(count_in(f, "cur"), 0);
	maildir_delivery_abort(&d); /* twice is harmless */

	/* right after begin */
	assert_int_equal(maildir_delivery_begin(&d, f->md), DELIVER_OK);
	maildir_delivery_abort(&d);
	assert_int_equal(count_in(f, "tmp"), 0);

	/* one aborted, one committed, interleaved */
	struct maildir_delivery a, b;
	assert_int_equal(maildir_delivery_begin(&a, f->md), DELIVER_OK);
	assert_int_equal(maildir_delivery_begin(&b, f->md), DELIVER_OK);
	maildir_delivery_write(&a, S("a\r\n"));
	maildir_delivery_write(&b, S("b\r\n"));
	maildir_delivery_abort(&a);
	assert_int_equal(maildir_delivery_commit(&b), DELIVER_OK);
	size_t len;
	char *data = only_new_message(f, &b, &len);
	assert_int_equal(len, 2);
	assert_memory_equal(data, "b\n", 2);
	free(data);
}

static void check_dir_mode(const char *path, mode_t mode)
{
	struct stat sb;
	if (stat(path, &sb) != 0)
		fail_msg("%s missing", path);
	assert_true(S_ISDIR(sb.st_mode));
	if ((sb.st_mode & 07777) != mode)
		fail_msg("%s: mode %o, expected %o", path, (unsigned)(sb.st_mode & 07777),
		         (unsigned)mode);
}

static void test_begin_creates_the_maildir(void **state)
{
	struct fixture *f = *state;
	char md[256];
	snprintf(md, sizeof(md), "%s/users/bob/Maildir", f->root);
	struct maildir_delivery d;
	assert_int_equal(maildir_delivery_begin(&d, md), DELIVER_OK);
	maildir_delivery_write(&d, S("x\r\n"));
	assert_int_equal(maildir_delivery_commit(&d), DELIVER_OK);
	char path[300];
	snprintf(path, sizeof(path), "%s/users", f->root);
	check_dir_mode(path, 0700);
	snprintf(path, sizeof(path), "%s/users/bob", f->root);
	check_dir_mode(path, 0700);
	check_dir_mode(md, 0700);
	static const char *const subs[] = {"tmp", "new", "cur"};
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", md, subs[i]);
		check_dir_mode(path, 0700);
	}
	snprintf(path, sizeof(path), "%s/new", md);
	assert_int_equal(list_dir(path, NULL), 1);

	/* an existing Maildir missing cur/ (and new/) gets them */
	assert_int_equal(mkdir(f->md, 0755), 0);
	snprintf(path, sizeof(path), "%s/tmp", f->md);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(maildir_delivery_begin(&d, f->md), DELIVER_OK);
	assert_int_equal(maildir_delivery_commit(&d), DELIVER_OK);
	snprintf(path, sizeof(path), "%s/cur", f->md);
	check_dir_mode(path, 0700);
	assert_int_equal(count_in(f, "new"), 1);
	check_dir_mode(f->md, 0755); /* existing directories are left alone */
}

static void test_begin_fails_when_the_path_is_a_file(void **state)
{
	struct fixture *f = *state;
	char file[128], md[256];
	snprintf(file, sizeof(file), "%s/plainfile", f->root);
	int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(md, sizeof(md), "%s/Maildir", file);
	struct maildir_delivery d;
	enum deliver_status st = maildir_delivery_begin(&d, md);
	assert_int_equal(st, DELIVER_PERM);
	assert_int_equal(d.tmp_fd, -1);
	maildir_delivery_abort(&d); /* what a caller does after a failed begin */
	/* the Maildir itself a file */
	st = maildir_delivery_begin(&d, file);
	assert_int_not_equal(st, DELIVER_OK);
	maildir_delivery_abort(&d);
}

/* lmtp.md checklist 16: only a path that can never exist bounces; what an administrator
 * can fix (permissions, a read-only mount) and a full disk or quota are temporary. */
static void test_errno_classes(void **state)
{
	(void)state;
	assert_int_equal(deliver_status_from_errno(ENOTDIR), DELIVER_PERM);
	assert_int_equal(deliver_status_from_errno(ELOOP), DELIVER_PERM);
	assert_int_equal(deliver_status_from_errno(ENAMETOOLONG), DELIVER_PERM);
	assert_int_equal(deliver_status_from_errno(EACCES), DELIVER_TEMP);
	assert_int_equal(deliver_status_from_errno(EPERM), DELIVER_TEMP);
	assert_int_equal(deliver_status_from_errno(EROFS), DELIVER_TEMP);
	assert_int_equal(deliver_status_from_errno(EIO), DELIVER_TEMP);
	assert_int_equal(deliver_status_from_errno(ENOSPC), DELIVER_NOSPACE);
	assert_int_equal(deliver_status_from_errno(EDQUOT), DELIVER_FULL);
}

/* A failed begin says why, so the caller can pick the reply (452 4.3.1 for ENOSPC...). */
static void test_begin_reports_the_errno(void **state)
{
	struct fixture *f = *state;
	char file[128], md[256];
	snprintf(file, sizeof(file), "%s/plainfile", f->root);
	int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(md, sizeof(md), "%s/sub/Maildir", file);
	struct maildir_delivery d;
	assert_int_equal(maildir_delivery_begin(&d, md), DELIVER_PERM);
	assert_int_equal(d.error, ENOTDIR);
	maildir_delivery_abort(&d);
}

static void test_names_are_unique(void **state)
{
	struct fixture *f = *state;
	enum { N = 200 };
	struct maildir_delivery open_now[3];
	/* several open at once */
	for (int i = 0; i < 3; i++)
		assert_int_equal(maildir_delivery_begin(&open_now[i], f->md), DELIVER_OK);
	assert_string_not_equal(open_now[0].tmp_name, open_now[1].tmp_name);
	assert_string_not_equal(open_now[1].tmp_name, open_now[2].tmp_name);
	assert_string_not_equal(open_now[0].tmp_name, open_now[2].tmp_name);
	for (int i = 0; i < 3; i++) {
		maildir_delivery_write(&open_now[i], S("same content\r\n"));
		assert_int_equal(maildir_delivery_commit(&open_now[i]), DELIVER_OK);
	}
	/* many within the same second or two, same content */
	time_t t0 = time(NULL);
	for (int i = 0; i < N; i++) {
		struct maildir_delivery d;
		assert_int_equal(maildir_delivery_begin(&d, f->md), DELIVER_OK);
		maildir_delivery_write(&d, S("same content\r\n"));
		d.no_fsync = true; /* speed; the name does not depend on it */
		assert_int_equal(maildir_delivery_commit(&d), DELIVER_OK);
	}
	assert_true(time(NULL) - t0 < 30);
	/* every delivery is there: none overwrote another */
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/new", f->md);
	char **names;
	size_t n = list_dir(dir, &names);
	assert_int_equal(n, N + 3);
	size_t same_second = 0;
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			assert_string_not_equal(names[i - 1], names[i]); /* sorted: dups adjacent */
		if (i > 0 && strtoll(names[i - 1], NULL, 10) == strtoll(names[i], NULL, 10))
			same_second++;
		/* "<seconds>.": the time first */
		char *end;
		long long secs = strtoll(names[i], &end, 10);
		assert_int_equal(*end, '.');
		assert_true(secs >= (long long)t0 - 5 && secs <= (long long)time(NULL) + 5);
	}
	assert_true(same_second > 0);
	free_names(names, n);
	assert_int_equal(count_in(f, "tmp"), 0);
}

static void test_no_fsync_and_deferred_dir_sync_still_deliver(void **state)
{
	struct fixture *f = *state;
	struct maildir_delivery d;
	assert_int_equal(maildir_delivery_begin(&d, f->md), DELIVER_OK);
	d.defer_dir_sync = true;
	maildir_delivery_write(&d, S("deferred\r\n"));
	assert_int_equal(maildir_delivery_commit(&d), DELIVER_OK);
	assert_int_equal(maildir_sync_new(f->md), 0);
	size_t len;
	char *data = only_new_message(f, &d, &len);
	assert_memory_equal(data, "deferred\n", len);
	free(data);
	char missing[256];
	snprintf(missing, sizeof(missing), "%s/none", f->root);
	assert_int_equal(maildir_sync_new(missing), -1);
}

static void put_file(const char *dir, const char *name, size_t size)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	for (size_t i = 0; i < size; i++)
		fputc('x', fp);
	assert_int_equal(fclose(fp), 0);
}

static void test_maildir_usage(void **state)
{
	struct fixture *f = *state;
	uint64_t used = 12345;
	/* no Maildir at all: nothing used */
	assert_int_equal(maildir_usage(f->md, &used), 0);
	assert_int_equal(used, 0);

	struct maildir_delivery d;
	assert_int_equal(maildir_delivery_begin(&d, f->md), DELIVER_OK);
	maildir_delivery_abort(&d);
	assert_int_equal(maildir_usage(f->md, &used), 0);
	assert_int_equal(used, 0);

	char new_dir[256], cur_dir[256], tmp_dir[256];
	snprintf(new_dir, sizeof(new_dir), "%s/new", f->md);
	snprintf(cur_dir, sizeof(cur_dir), "%s/cur", f->md);
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/tmp", f->md);
	put_file(new_dir, "1.M1P1.host,S=100,W=105", 3); /* S= wins over the size */
	put_file(cur_dir, "2.M2P2.host,S=50:2,S", 4);    /* S= before the info */
	put_file(cur_dir, "3.M3P3.host:2,", 7);          /* no S=: the file size */
	put_file(cur_dir, "4.M4P4.host,W=9:2,S=8", 11);  /* ",S=" after ':' is a flag */
	put_file(cur_dir, "5.M5P5.host,S=x", 13);        /* not a number: the size */
	put_file(tmp_dir, "6.M6P6.host,S=1000", 1000);   /* tmp/ is not mail */
	put_file(new_dir, ".hidden,S=1000", 1000);       /* neither are dot files */
	assert_int_equal(maildir_usage(f->md, &used), 0);
	assert_int_equal(used, 100 + 50 + 7 + 11 + 13);

	/* a delivery adds its stored size */
	assert_int_equal(maildir_delivery_begin(&d, f->md), DELIVER_OK);
	maildir_delivery_write(&d, S("Subject: u\r\n\r\nbody\r\n"));
	assert_int_equal(maildir_delivery_commit(&d), DELIVER_OK);
	assert_int_equal(maildir_usage(f->md, &used), 0);
	assert_int_equal(used, 100 + 50 + 7 + 11 + 13 + strlen("Subject: u\n\nbody\n"));
}

static void test_usage_is_the_sum_of_deliveries(void **state)
{
	struct fixture *f = *state;
	uint64_t sum = 0;
	for (int i = 1; i <= 5; i++) {
		struct maildir_delivery d;
		assert_int_equal(maildir_delivery_begin(&d, f->md), DELIVER_OK);
		for (int j = 0; j < i * 100; j++)
			maildir_delivery_write(&d, S("line\r\n"));
		assert_int_equal(maildir_delivery_commit(&d), DELIVER_OK);
		sum += d.stored;
	}
	assert_int_equal(sum, (100 + 200 + 300 + 400 + 500) * 5);
	uint64_t used;
	assert_int_equal(maildir_usage(f->md, &used), 0);
	assert_int_equal(used, sum);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_crlf_message_is_stored_with_lf),
	    T(test_bare_cr_is_kept),
	    T(test_crlf_split_across_writes),
	    T(test_write_in_any_pieces_gives_the_same_file),
	    T(test_large_message),
	    T(test_empty_message),
	    T(test_abort_leaves_nothing),
	    T(test_begin_creates_the_maildir),
	    T(test_begin_fails_when_the_path_is_a_file),
	    T(test_errno_classes),
	    T(test_begin_reports_the_errno),
	    T(test_names_are_unique),
	    T(test_no_fsync_and_deferred_dir_sync_still_deliver),
	    T(test_maildir_usage),
	    T(test_usage_is_the_sum_of_deliveries),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
