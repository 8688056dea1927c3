/* passwd_file.c - Dovecot-format passwd-file, cached and reloaded on change. */
#include "auth/passwd_file.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "common/bounds.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/xmalloc.h"

struct entry {
	char *name;
	char *password;
	uid_t uid;
	gid_t gid;
	char *home;
	char *extra;
};

struct passwd_db {
	char *path;
	pthread_mutex_t lock;
	struct entry *entries; /* sorted by name */
	size_t count;
	bool loaded;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	unsigned scram_iterations; /* the most common among SCRAM entries, or 0 */
};

static int parse_id(const char *s, unsigned *out)
{
	uint64_t v;
	if (*s == '\0') {
		*out = (unsigned)-1;
		return 0;
	}
	if (parse_u64(s, 0x7fffffff, &v) < 0)
		return -1;
	*out = (unsigned)v;
	return 0;
}

int passwd_parse_line(char *line, struct user_record *rec, const char **why)
{
	size_t n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	if (line[0] == '#' || str_trim(line)[0] == '\0')
		return 0;
	char *field[8] = {0};
	unsigned count = 0;
	char *p = line;
	while (count < 8) {
		field[count++] = p;
		char *colon = strchr(p, ':');
		if (colon == NULL)
			break;
		*colon = '\0';
		p = colon + 1;
	}
	if (count < 2) {
		*why = "expected user:password[:uid:gid:gecos:home:shell:extra]";
		return -1;
	}
	if (field[0][0] == '\0' || strlen(field[0]) > AUTH_MAX_USERNAME) {
		*why = "empty or overlong user name";
		return -1;
	}
	unsigned uid = (unsigned)-1, gid = (unsigned)-1;
	if ((count > 2 && parse_id(field[2], &uid) < 0) || (count > 3 && parse_id(field[3], &gid) < 0)) {
		*why = "uid and gid must be numbers";
		return -1;
	}
	rec->name = field[0];
	rec->password = field[1];
	rec->uid = (uid_t)uid;
	rec->gid = (gid_t)gid;
	rec->home = count > 5 ? field[5] : (char *)"";
	rec->extra = count > 7 ? field[7] : (char *)"";
	return 1;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

static void free_entries(struct entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(e[i].name);
		OPENSSL_cleanse(e[i].password, strlen(e[i].password));
		free(e[i].password);
		free(e[i].home);
		free(e[i].extra);
	}
	free(e);
}

/* The iteration count most SCRAM entries use (stand-in keys for users
 * without them must look the same). */
static unsigned common_scram_iterations(const struct entry *e, size_t n)
{
	struct {
		unsigned value;
		size_t count;
	} seen[8] = {{0, 0}};
	for (size_t i = 0; i < n; i++) {
		if (strncmp(e[i].password, "{SCRAM-SHA-256}", 15) != 0)
			continue;
		unsigned long v = strtoul(e[i].password + 15, NULL, 10);
		if (v == 0 || v > UINT32_MAX)
			continue;
		for (size_t k = 0; k < 8; k++) {
			if (seen[k].count == 0 || seen[k].value == v) {
				seen[k].value = (unsigned)v;
				seen[k].count++;
				break;
			}
		}
	}
	size_t best = 0;
	for (size_t k = 1; k < 8; k++)
		if (seen[k].count > seen[best].count)
			best = k;
	return seen[best].count ? seen[best].value : 0;
}

unsigned passwd_db_scram_iterations(struct passwd_db *db)
{
	pthread_mutex_lock(&db->lock);
	unsigned v = db->scram_iterations;
	pthread_mutex_unlock(&db->lock);
	return v;
}

/* Called with db->lock held. */
static int reload_if_changed(struct passwd_db *db)
{
	struct stat sb;
	if (stat(db->path, &sb) < 0) {
		log_error("passwd-file %s: %s", db->path, strerror(errno));
		return -1;
	}
	if (db->loaded && sb.st_dev == db->dev && sb.st_ino == db->ino && sb.st_size == db->size &&
	    sb.st_mtim.tv_sec == db->mtime.tv_sec && sb.st_mtim.tv_nsec == db->mtime.tv_nsec)
		return 0;
	FILE *f = fopen(db->path, "re");
	if (f == NULL) {
		log_error("passwd-file %s: %s", db->path, strerror(errno));
		return -1;
	}
	struct entry *entries = NULL;
	size_t count = 0, cap = 0;
	char line[4096];
	unsigned lineno = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		struct user_record rec;
		const char *why = NULL;
		int rc = passwd_parse_line(line, &rec, &why);
		if (rc < 0)
			log_warning("passwd-file %s:%u: %s (line ignored)", db->path, lineno, why);
		if (rc <= 0)
			continue;
		if (count == cap) {
			cap = cap ? cap * 2 : 64;
			entries = xreallocarray(entries, cap, sizeof(*entries));
		}
		entries[count++] = (struct entry){xstrdup(rec.name), xstrdup(rec.password), rec.uid,
						  rec.gid, xstrdup(rec.home), xstrdup(rec.extra)};
	}
	OPENSSL_cleanse(line, sizeof(line));
	if (ferror(f)) {
		/* e.g. a directory where the file should be: never an empty list */
		log_error("passwd-file %s: read error: %s", db->path, strerror(errno));
		fclose(f);
		free_entries(entries, count);
		return -1;
	}
	fclose(f);
	if (count > 0)
		qsort(entries, count, sizeof(*entries), entry_cmp);
	for (size_t i = 1; i < count; i++)
		if (strcmp(entries[i].name, entries[i - 1].name) == 0)
			log_warning("passwd-file %s: user %s appears twice; one entry is used",
				    db->path, entries[i].name);
	db->scram_iterations = common_scram_iterations(entries, count);
	free_entries(db->entries, db->count);
	db->entries = entries;
	db->count = count;
	db->loaded = true;
	db->dev = sb.st_dev;
	db->ino = sb.st_ino;
	db->size = sb.st_size;
	db->mtime = sb.st_mtim;
	return 0;
}

struct passwd_db *passwd_db_new(const char *path)
{
	struct passwd_db *db = xcalloc(1, sizeof(*db));
	db->path = xstrdup(path);
	pthread_mutex_init(&db->lock, NULL);
	return db;
}

void passwd_db_free(struct passwd_db *db)
{
	if (db == NULL)
		return;
	free_entries(db->entries, db->count);
	pthread_mutex_destroy(&db->lock);
	free(db->path);
	free(db);
}

int passwd_db_lookup(struct passwd_db *db, const char *user, struct user_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	pthread_mutex_lock(&db->lock);
	int rc = reload_if_changed(db);
	if (rc == 0) {
		struct entry key = {.name = (char *)user};
		const struct entry *e =
			db->count ? bsearch(&key, db->entries, db->count, sizeof(key), entry_cmp) : NULL;
		if (e != NULL) {
			rec->name = xstrdup(e->name);
			rec->password = xstrdup(e->password);
			rec->uid = e->uid;
			rec->gid = e->gid;
			rec->home = xstrdup(e->home);
			rec->extra = xstrdup(e->extra);
			rc = 1;
		}
	}
	pthread_mutex_unlock(&db->lock);
	return rc;
}

void user_record_clear(struct user_record *rec)
{
	if (rec->password != NULL) {
		OPENSSL_cleanse(rec->password, strlen(rec->password));
		free(rec->password);
	}
	free(rec->name);
	free(rec->home);
	free(rec->extra);
	memset(rec, 0, sizeof(*rec));
}
