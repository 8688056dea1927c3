/* test_uidstore.c - pigeon fetch's UIDL store: FETCH records without DONE
 * survive a rewrite of the store, the account identity is recorded, checked
 * and adopted from older stores, DONE records reach the file at once. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/uidstore.h"

struct fixture {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/pigeon-uidstore-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/acct.uidl", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	const char *suffix[] = {"", ".journal", ".lock", ".tmp"};
	for (size_t i = 0; i < 4; i++) {
		char p[160];
		snprintf(p, sizeof(p), "%s%s", f->path, suffix[i]);
		unlink(p);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

static void open_store(struct uidstore *s, const char *path)
{
	bool busy;
	char err[256];
	if (uidstore_open(s, path, &busy, err, sizeof(err)) < 0)
		fail_msg("uidstore_open: %s", err);
}

static char *slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	assert_non_null(fp);
	static char text[4096];
	size_t n = fread(text, 1, sizeof(text) - 1, fp);
	text[n] = '\0';
	fclose(fp);
	return text;
}

static void test_fetch_without_done_survives_a_save(void **state)
{
	struct fixture *f = *state;
	struct uidstore s;
	open_store(&s, f->path);
	assert_int_equal(uidstore_fetching(&s, "u1", "1.M1P1Q1.host"), 0);
	assert_int_equal(uidstore_fetching(&s, "u2", "1.M2P1Q2.host"), 0);
	assert_int_equal(uidstore_done(&s, "u2", UID_DELIVERED, 1000), 0);
	/* e.g. the batch's rename into new/ happened but its fsync failed:
	 * the session still ends with a save */
	assert_int_equal(uidstore_save(&s, false, 1000), 0);
	uidstore_close(&s);

	open_store(&s, f->path);
	assert_int_equal(s.n_pending, 1);
	assert_string_equal(s.pending[0].uidl, "u1");
	assert_string_equal(s.pending[0].name, "1.M1P1Q1.host");
	assert_non_null(uidstore_find(&s, "u2"));
	assert_null(uidstore_find(&s, "u1"));
	/* settled (recovery looked): gone at the next save */
	uidstore_settled(&s, "u1");
	assert_int_equal(uidstore_save(&s, false, 1000), 0);
	uidstore_close(&s);
	open_store(&s, f->path);
	assert_int_equal(s.n_pending, 0);
	uidstore_close(&s);
}

static void test_done_reaches_the_journal_at_once(void **state)
{
	struct fixture *f = *state;
	struct uidstore s;
	open_store(&s, f->path);
	assert_int_equal(uidstore_done(&s, "u%1", UID_DELIVERED, 1234), 0);
	/* no sync, no save: a kill -9 now must still find it in the file */
	char jpath[160];
	snprintf(jpath, sizeof(jpath), "%s.journal", f->path);
	assert_string_equal(slurp(jpath), "DONE 1234 D u%251\n");
	uidstore_close(&s);
}

static void test_identity_is_recorded_and_checked(void **state)
{
	struct fixture *f = *state;
	struct uidstore s;
	char err[768];
	open_store(&s, f->path);
	assert_int_equal(uidstore_claim(&s, "pop.example.org", 995, "alice", err, sizeof(err)), 0);
	assert_int_equal(uidstore_done(&s, "u1", UID_DELIVERED, 1000), 0);
	assert_int_equal(uidstore_save(&s, false, 1000), 0);
	uidstore_close(&s);
	assert_non_null(strstr(slurp(f->path), "\naccount 995 pop.example.org alice\n"));

	open_store(&s, f->path);
	assert_int_equal(uidstore_claim(&s, "POP.example.org", 995, "alice", err, sizeof(err)), 0);
	assert_int_equal(uidstore_claim(&s, "pop.example.org", 110, "alice", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "belongs to user alice on pop.example.org port 995"));
	assert_non_null(strstr(err, "uidl_store"));
	assert_int_equal(uidstore_claim(&s, "pop.example.org", 995, "bob", err, sizeof(err)), -1);
	assert_int_equal(uidstore_claim(&s, "other.example.org", 995, "alice", err, sizeof(err)),
			 -1);
	uidstore_close(&s);
}

static void test_store_without_identity_is_adopted(void **state)
{
	struct fixture *f = *state;
	FILE *fp = fopen(f->path, "w");
	assert_non_null(fp);
	fputs("pigeon-uidl 1\n900 950 D old-1\n", fp);
	fclose(fp);
	struct uidstore s;
	char err[768];
	open_store(&s, f->path);
	assert_non_null(uidstore_find(&s, "old-1"));
	assert_int_equal(uidstore_claim(&s, "h.example", 110, "carol", err, sizeof(err)), 0);
	assert_int_equal(uidstore_save(&s, false, 1000), 0);
	uidstore_close(&s);
	assert_string_equal(slurp(f->path),
			    "pigeon-uidl 1\naccount 110 h.example carol\n900 950 D old-1\n");
}

/* Hand-edited or damaged escapes: the line is ignored, nothing is read past
 * its end (ASan would see it), the good lines stay. */
static void test_bad_escapes_are_ignored(void **state)
{
	struct fixture *f = *state;
	FILE *fp = fopen(f->path, "w");
	assert_non_null(fp);
	fputs("pigeon-uidl 1\naccount 110 h.example al%4\n900 950 D ok-1\n900 950 D bad%\n"
	      "900 950 D bad%4\n900 950 D bad%zz\n900 950 D bad%00\n900 950 D sp%20ace\n",
	      fp);
	fclose(fp);
	struct uidstore s;
	char err[768];
	open_store(&s, f->path);
	assert_non_null(uidstore_find(&s, "ok-1"));
	assert_non_null(uidstore_find(&s, "sp ace"));
	assert_null(uidstore_find(&s, "bad"));
	assert_null(uidstore_find(&s, "bad%4"));
	/* the damaged account line was ignored: the store is claimed anew */
	assert_int_equal(uidstore_claim(&s, "h.example", 110, "a b", err, sizeof(err)), 0);
	uidstore_close(&s);
}

/* A mismatch names the line to write, escaped as the store writes it. */
static void test_mismatch_message_has_the_escaped_line(void **state)
{
	struct fixture *f = *state;
	struct uidstore s;
	char err[1536];
	open_store(&s, f->path);
	assert_int_equal(uidstore_claim(&s, "pop.example.org", 995, "alice", err, sizeof(err)), 0);
	assert_int_equal(uidstore_save(&s, false, 1000), 0);
	uidstore_close(&s);
	open_store(&s, f->path);
	assert_int_equal(uidstore_claim(&s, "pop.example.org", 110, "a b%", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "'account 110 pop.example.org a%20b%25'"));
	uidstore_close(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fetch_without_done_survives_a_save, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_done_reaches_the_journal_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identity_is_recorded_and_checked, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_store_without_identity_is_adopted, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_escapes_are_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mismatch_message_has_the_escaped_line, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
