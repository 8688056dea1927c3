/*
 * maildir.c - Maildir as a POP3 maildrop: lock, scan, size cache, streaming
 * access and the UPDATE-state commit. See maildir.h for the contract and
 * ../../docs/architecture.md for how sizes and UIDLs are derived.
 */
#include "store/maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/fsutil.h"
#include "common/xmalloc.h"
#include "store/transform.h"

/* ---- names ---------------------------------------------------------- */

static size_t base_len(const char *name)
{
	const char *colon = strchr(name, ':');
	return colon ? (size_t)(colon - name) : strlen(name);
}

bool maildir_name_size(const char *name, uint64_t *out)
{
	size_t blen = base_len(name);
	/* Dovecot's ",W=<vsize>" is the size with CRLF line ends. */
	for (const char *p = name; (p = strstr(p, ",W=")) != NULL && (size_t)(p - name) < blen; p++) {
		const char *d = p + 3;
		uint64_t v = 0;
		size_t n = 0;
		while (d[n] >= '0' && d[n] <= '9' && n < 19)
			v = v * 10 + (uint64_t)(d[n++] - '0');
		if (n > 0 && (d[n] == ',' || d[n] == ':' || d[n] == '\0')) {
			*out = v;
			return true;
		}
	}
	return false;
}

void maildir_uidl_for(const char *base, size_t len, char out[POP3_UIDL_MAX + 1])
{
	/* RFC 1939 §7: 1 to 70 characters in 0x21..0x7E. The base name is stable
	 * across new/ -> cur/ moves and flag changes, and unique in the maildir. */
	bool usable = len >= 1 && len <= POP3_UIDL_MAX;
	for (size_t i = 0; usable && i < len; i++)
		if ((unsigned char)base[i] < 0x21 || (unsigned char)base[i] > 0x7e)
			usable = false;
	if (usable) {
		memcpy(out, base, len);
		out[len] = '\0';
		return;
	}
	/* Too long or unprintable: a hash of the name, equally stable. */
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_Digest(base, len, digest, &dlen, EVP_sha256(), NULL);
	out[0] = 'X';
	for (unsigned i = 0; i < 20; i++)
		snprintf(out + 1 + 2 * i, 3, "%02x", digest[i]);
}

/* Leading "<seconds>." of DJB-style names: the delivery time. */
static bool name_time(const char *name, int64_t *out)
{
	int64_t v = 0;
	size_t n = 0;
	while (name[n] >= '0' && name[n] <= '9' && n < 15)
		v = v * 10 + (name[n++] - '0');
	if (n == 0 || name[n] != '.')
		return false;
	*out = v;
	return true;
}

/* ---- directories and lock ------------------------------------------- */

static int open_subdir(int dir_fd, const char *name)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		if (mkdirat(dir_fd, name, 0700) < 0 && errno != EEXIST)
			return -1;
		fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	return fd;
}

static enum store_status errno_status(int err)
{
	switch (err) {
	case EACCES:
	case EPERM:
	case ENOTDIR:
	case ELOOP:
	case EROFS:
		return STORE_PERM;
	default:
		return STORE_TEMP;
	}
}

/*
 * RFC 1939 §8 exclusive access. An open-file-description lock (F_OFD_SETLK)
 * conflicts between sessions of the same process as well as between
 * processes, is released by the kernel when the descriptor closes (so a
 * crashed session never leaves a stale lock), and maps to POSIX locks on NFS.
 */
static enum store_status take_lock(struct maildir *md)
{
	md->lock_fd = openat(md->dir_fd, MAILDIR_LOCK_FILE,
			     O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (md->lock_fd < 0) {
		log_error("maildir %s: cannot open lock file: %s", md->path, strerror(errno));
		return errno_status(errno);
	}
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
	if (fcntl(md->lock_fd, F_OFD_SETLK, &fl) < 0) {
		if (errno == EAGAIN || errno == EACCES)
			return STORE_IN_USE;
		log_error("maildir %s: cannot lock: %s", md->path, strerror(errno));
		return STORE_TEMP;
	}
	return STORE_OK;
}

/* ---- size cache ------------------------------------------------------ */

struct cache_entry {
	char *base;
	uint64_t file_size;
	uint64_t size;
};

struct size_cache {
	struct cache_entry *entries;
	size_t count;
	size_t used;  /* entries matched by a current message */
	bool dirty;   /* something to add */
};

static int cache_cmp(const void *a, const void *b)
{
	return strcmp(((const struct cache_entry *)a)->base, ((const struct cache_entry *)b)->base);
}

/*
 * Cache lines are "<file size> <POP3 size> <base name>", the name with octets
 * outside 0x21..0x7E and '%' written as %XX, so any file name round-trips.
 */
static void escape_name(struct buf *b, const char *name, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c < 0x21 || c > 0x7e || c == '%')
			buf_printf(b, "%%%02X", c);
		else
			buf_append_byte(b, (char)c);
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode in place; -1 if malformed. */
static int unescape_name(char *s)
{
	char *out = s;
	for (const char *p = s; *p != '\0'; p++) {
		if (*p != '%') {
			*out++ = *p;
			continue;
		}
		int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
		if (lo < 0 || (hi == 0 && lo == 0))
			return -1;
		*out++ = (char)(hi << 4 | lo);
		p += 2;
	}
	*out = '\0';
	return 0;
}

/* A damaged cache is not an error: it is rebuilt from the messages. */
static void cache_read(struct maildir *md, struct size_cache *c)
{
	memset(c, 0, sizeof(*c));
	int fd = openat(md->dir_fd, MAILDIR_SIZE_CACHE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	FILE *f = fdopen(fd, "r");
	if (f == NULL) {
		close(fd);
		return;
	}
	char line[1024];
	size_t cap = 0;
	bool header = true;
	while (fgets(line, sizeof(line), f) != NULL) {
		size_t n = strlen(line);
		if (n == 0 || line[n - 1] != '\n')
			break; /* overlong or truncated: stop trusting the rest */
		line[n - 1] = '\0';
		if (header) {
			header = false;
			if (strcmp(line, "pigeon-sizes 2") != 0)
				break;
			continue;
		}
		char *end1, *end2;
		unsigned long long fsize = strtoull(line, &end1, 10);
		if (end1 == line || *end1 != ' ')
			continue;
		unsigned long long size = strtoull(end1 + 1, &end2, 10);
		if (end2 == end1 + 1 || *end2 != ' ' || unescape_name(end2 + 1) < 0 ||
		    end2[1] == '\0')
			continue;
		if (c->count == cap) {
			cap = cap ? cap * 2 : 256;
			c->entries = xreallocarray(c->entries, cap, sizeof(*c->entries));
		}
		c->entries[c->count++] = (struct cache_entry){xstrdup(end2 + 1), fsize, size};
	}
	fclose(f);
	if (c->count > 0)
		qsort(c->entries, c->count, sizeof(*c->entries), cache_cmp);
}

static const struct cache_entry *cache_find(const struct size_cache *c, const char *base)
{
	struct cache_entry key = {.base = (char *)base};
	if (c->count == 0)
		return NULL;
	return bsearch(&key, c->entries, c->count, sizeof(*c->entries), cache_cmp);
}

static void cache_free(struct size_cache *c)
{
	for (size_t i = 0; i < c->count; i++)
		free(c->entries[i].base);
	free(c->entries);
}

/* Compute a message's POP3 size by running the transform over it. */
static int compute_size(int dir_fd, const char *name, uint64_t *out)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	struct transform t;
	transform_init(&t, TRANSFORM_ALL_LINES, false, false);
	char chunk[STORE_STREAM_CHUNK];
	ssize_t n;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		transform_feed(&t, chunk, (size_t)n, NULL);
	int saved = errno;
	close(fd);
	if (n < 0) {
		errno = saved;
		return -1;
	}
	transform_finish(&t, NULL);
	*out = t.emitted;
	return 0;
}

/* ---- scan ------------------------------------------------------------ */

struct scan_item {
	char *name;
	bool in_cur;
	bool have_size;
	uint64_t size;
	int64_t sort_key;
	bool have_key;
};

struct scan {
	struct scan_item *items;
	size_t count;
	size_t cap;
};

static enum store_status scan_dir(struct maildir *md, int fd, bool in_cur, struct scan *sc)
{
	int dup_fd = dup(fd);
	if (dup_fd < 0)
		return STORE_TEMP;
	DIR *d = fdopendir(dup_fd);
	if (d == NULL) {
		close(dup_fd);
		return STORE_TEMP;
	}
	rewinddir(d);
	struct dirent *de;
	enum store_status st = STORE_OK;
	while ((de = readdir(d)) != NULL) {
		/* Maildir: names starting with "." are not messages. */
		if (de->d_name[0] == '.')
			continue;
		if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
			continue;
		if (sc->count >= STORE_MAX_MESSAGES) {
			log_error("maildir %s: more than %d messages", md->path, STORE_MAX_MESSAGES);
			st = STORE_PERM;
			break;
		}
		if (sc->count == sc->cap) {
			sc->cap = sc->cap ? sc->cap * 2 : 64;
			sc->items = xreallocarray(sc->items, sc->cap, sizeof(*sc->items));
		}
		struct scan_item *it = &sc->items[sc->count++];
		memset(it, 0, sizeof(*it));
		it->name = xstrdup(de->d_name);
		it->in_cur = in_cur;
		if (de->d_type == DT_UNKNOWN) {
			struct stat sb;
			if (fstatat(fd, it->name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(sb.st_mode)) {
				free(it->name);
				sc->count--;
			}
		}
	}
	closedir(d);
	return st;
}

static int item_base_cmp(const void *a, const void *b)
{
	const struct scan_item *x = a, *y = b;
	size_t lx = base_len(x->name), ly = base_len(y->name);
	int c = memcmp(x->name, y->name, lx < ly ? lx : ly);
	if (c != 0)
		return c;
	if (lx != ly)
		return lx < ly ? -1 : 1;
	/* same message: the cur/ copy sorts first and wins */
	return (int)y->in_cur - (int)x->in_cur;
}

static int item_order_cmp(const void *a, const void *b)
{
	const struct maildir_msg *x = a, *y = b;
	if (x->sort_key != y->sort_key)
		return x->sort_key < y->sort_key ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* A message moved new/ -> cur/ during the scan shows up twice: keep one. */
static void drop_duplicates(struct scan *sc)
{
	if (sc->count == 0)
		return;
	qsort(sc->items, sc->count, sizeof(*sc->items), item_base_cmp);
	size_t out = 0;
	for (size_t i = 0; i < sc->count; i++) {
		if (out > 0 && base_len(sc->items[i].name) == base_len(sc->items[out - 1].name) &&
		    memcmp(sc->items[i].name, sc->items[out - 1].name, base_len(sc->items[i].name)) == 0) {
			free(sc->items[i].name);
			continue;
		}
		sc->items[out++] = sc->items[i];
	}
	sc->count = out;
}

/* Learn each message's size: from ",W=", the cache, or by reading it once. */
static void resolve_sizes(struct maildir *md, struct scan *sc, struct size_cache *cache)
{
	for (size_t i = 0; i < sc->count; i++) {
		struct scan_item *it = &sc->items[i];
		int fd = it->in_cur ? md->cur_fd : md->new_fd;
		it->have_key = name_time(it->name, &it->sort_key);
		if (maildir_name_size(it->name, &it->size) && it->have_key) {
			it->have_size = true;
			continue;
		}
		struct stat sb;
		if (fstatat(fd, it->name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
			continue; /* vanished during the scan: not part of this session */
		}
		if (!it->have_key) {
			it->sort_key = (int64_t)sb.st_mtime;
			it->have_key = true;
		}
		if (maildir_name_size(it->name, &it->size)) {
			it->have_size = true;
			continue;
		}
		char base[256];
		size_t blen = base_len(it->name);
		memcpy(base, it->name, blen);
		base[blen] = '\0';
		const struct cache_entry *ce = cache_find(cache, base);
		if (ce != NULL && ce->file_size == (uint64_t)sb.st_size) {
			it->size = ce->size;
			it->have_size = true;
			cache->used++;
			md->sizes_cached++;
			continue;
		}
		if (compute_size(fd, it->name, &it->size) == 0) {
			it->have_size = true;
			md->sizes_computed++;
			cache->dirty = true;
		} else if (errno != ENOENT) {
			log_warning("maildir %s: cannot read %s/%s: %s", md->path,
				    it->in_cur ? "cur" : "new", it->name, strerror(errno));
		}
	}
}

/* Rewrite the cache atomically (temp file, fsync, rename) when it changed. */
static void cache_write(struct maildir *md, const struct size_cache *cache)
{
	if (!cache->dirty && cache->used == cache->count)
		return;
	static const char tmp[] = MAILDIR_SIZE_CACHE ".tmp";
	int fd = openat(md->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_warning("maildir %s: cannot write size cache: %s", md->path, strerror(errno));
		return;
	}
	struct buf b = BUF_INIT;
	buf_append_str(&b, "pigeon-sizes 2\n");
	for (size_t i = 0; i < md->count; i++) {
		const struct maildir_msg *m = &md->msgs[i];
		uint64_t ignored;
		if (maildir_name_size(m->name, &ignored))
			continue;
		struct stat sb;
		if (fstatat(m->in_cur ? md->cur_fd : md->new_fd, m->name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		buf_printf(&b, "%llu %llu ", (unsigned long long)sb.st_size,
			   (unsigned long long)m->size);
		escape_name(&b, m->name, base_len(m->name));
		buf_append_byte(&b, '\n');
	}
	bool ok = write(fd, b.data, b.len) == (ssize_t)b.len && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (ok && renameat(md->dir_fd, tmp, md->dir_fd, MAILDIR_SIZE_CACHE) == 0) {
		fsync(md->dir_fd);
	} else {
		log_warning("maildir %s: cannot write size cache: %s", md->path, strerror(errno));
		unlinkat(md->dir_fd, tmp, 0);
	}
	buf_free(&b);
}

static enum store_status scan(struct maildir *md)
{
	struct scan sc = {0};
	/* new/ before cur/: a message moved between them in the meantime is then
	 * seen twice (and deduplicated), never missed. */
	enum store_status st = scan_dir(md, md->new_fd, false, &sc);
	if (st == STORE_OK)
		st = scan_dir(md, md->cur_fd, true, &sc);
	if (st != STORE_OK) {
		for (size_t i = 0; i < sc.count; i++)
			free(sc.items[i].name);
		free(sc.items);
		return st;
	}
	drop_duplicates(&sc);
	struct size_cache cache;
	cache_read(md, &cache);
	resolve_sizes(md, &sc, &cache);

	md->msgs = xcalloc(sc.count, sizeof(*md->msgs));
	for (size_t i = 0; i < sc.count; i++) {
		struct scan_item *it = &sc.items[i];
		if (!it->have_size) {
			free(it->name);
			continue;
		}
		struct maildir_msg *m = &md->msgs[md->count++];
		m->name = it->name;
		m->in_cur = it->in_cur;
		m->size = it->size;
		m->sort_key = it->sort_key;
		maildir_uidl_for(m->name, base_len(m->name), m->uidl);
		md->total_size += m->size;
	}
	free(sc.items);
	/* RFC 1939 §4 leaves the order to us: oldest delivery first. */
	if (md->count > 0)
		qsort(md->msgs, md->count, sizeof(*md->msgs), item_order_cmp);
	cache_write(md, &cache);
	cache_free(&cache);
	return STORE_OK;
}

enum store_status maildir_open(const char *path, struct maildir **out)
{
	*out = NULL;
	struct maildir *md = xcalloc(1, sizeof(*md));
	md->path = xstrdup(path);
	md->dir_fd = md->new_fd = md->cur_fd = md->lock_fd = -1;
	enum store_status st;

	md->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (md->dir_fd < 0 && errno == ENOENT) {
		if (mkdir_p(path) < 0) {
			log_error("maildir %s: cannot create: %s", path, strerror(errno));
			st = errno_status(errno);
			goto fail;
		}
		md->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (md->dir_fd < 0) {
		log_error("maildir %s: cannot open: %s", path, strerror(errno));
		st = errno_status(errno);
		goto fail;
	}
	md->new_fd = open_subdir(md->dir_fd, "new");
	md->cur_fd = open_subdir(md->dir_fd, "cur");
	int tmp_fd = open_subdir(md->dir_fd, "tmp");
	if (tmp_fd >= 0)
		close(tmp_fd);
	if (md->new_fd < 0 || md->cur_fd < 0 || tmp_fd < 0) {
		log_error("maildir %s: cannot open new/, cur/ or tmp/: %s", path, strerror(errno));
		st = errno_status(errno);
		goto fail;
	}
	st = take_lock(md);
	if (st != STORE_OK)
		goto fail;
	st = scan(md);
	if (st != STORE_OK)
		goto fail;
	*out = md;
	return STORE_OK;
fail:
	maildir_close(md);
	return st;
}

/* ---- access and commit ----------------------------------------------- */

/* Find message i again after someone renamed it (new/ -> cur/, flags). */
static int relocate(struct maildir *md, size_t i)
{
	struct maildir_msg *m = &md->msgs[i];
	size_t blen = base_len(m->name);
	for (int pass = 0; pass < 2; pass++) {
		int fd = pass == 0 ? md->cur_fd : md->new_fd;
		int dup_fd = dup(fd);
		if (dup_fd < 0)
			return -1;
		DIR *d = fdopendir(dup_fd);
		if (d == NULL) {
			int saved = errno;
			close(dup_fd);
			errno = saved;
			return -1;
		}
		rewinddir(d);
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (base_len(de->d_name) == blen && memcmp(de->d_name, m->name, blen) == 0) {
				free(m->name);
				m->name = xstrdup(de->d_name);
				m->in_cur = pass == 0;
				closedir(d);
				return 0;
			}
		}
		closedir(d);
	}
	errno = ENOENT;
	return 1;
}

int maildir_open_message(struct maildir *md, size_t i)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		struct maildir_msg *m = &md->msgs[i];
		int fd = openat(m->in_cur ? md->cur_fd : md->new_fd, m->name,
				O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd >= 0)
			return fd;
		if (errno != ENOENT || relocate(md, i) != 0)
			break;
	}
	return -1;
}

/* The name with the Seen flag: flags stay in ASCII order, unknown flags and
 * Dovecot's ",<extra>" after the flags are kept. */
static char *seen_name(const char *name)
{
	size_t blen = base_len(name);
	const char *info = name[blen] == ':' ? name + blen + 1 : NULL;
	if (info == NULL || strncmp(info, "2,", 2) != 0)
		return xasprintf("%.*s:2,S", (int)blen, name);
	const char *flags = info + 2;
	size_t flen = strcspn(flags, ",");
	if (memchr(flags, 'S', flen) != NULL)
		return NULL; /* already seen */
	size_t pos = 0;
	while (pos < flen && (unsigned char)flags[pos] < 'S')
		pos++;
	return xasprintf("%.*s:2,%.*sS%s", (int)blen, name, (int)pos, flags, flags + pos);
}

static int mark_seen(struct maildir *md, size_t i)
{
	struct maildir_msg *m = &md->msgs[i];
	for (int attempt = 0; attempt < 2; attempt++) {
		char *target = seen_name(m->name);
		if (target == NULL && m->in_cur)
			return 0;
		if (target == NULL) /* in new/ with an S already: just move it */
			target = xstrdup(m->name);
		int rc = renameat(m->in_cur ? md->cur_fd : md->new_fd, m->name, md->cur_fd, target);
		int saved = errno;
		if (rc == 0) {
			free(m->name);
			m->name = target;
			m->in_cur = true;
			return 0;
		}
		free(target);
		if (saved != ENOENT || relocate(md, i) != 0) {
			errno = saved;
			return -1;
		}
	}
	return -1;
}

static int delete_message(struct maildir *md, size_t i)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		struct maildir_msg *m = &md->msgs[i];
		if (unlinkat(m->in_cur ? md->cur_fd : md->new_fd, m->name, 0) == 0)
			return 0;
		if (errno != ENOENT)
			return -1;
		int rc = relocate(md, i);
		if (rc > 0)
			return 0; /* gone already: nothing left to delete */
		if (rc < 0)
			return -1; /* could not look: it may still be there */
	}
	return -1;
}

size_t maildir_commit(struct maildir *md, const uint8_t *deleted, const uint8_t *seen)
{
	size_t failed = 0, removed = 0;
	for (size_t i = 0; i < md->count; i++) {
		if (deleted[i]) {
			if (delete_message(md, i) == 0) {
				removed++;
			} else {
				log_error("maildir %s: cannot delete %s: %s", md->path, md->msgs[i].name,
					  strerror(errno));
				failed++;
			}
		} else if (seen != NULL && seen[i] && mark_seen(md, i) < 0) {
			log_warning("maildir %s: cannot mark %s seen: %s", md->path, md->msgs[i].name,
				    strerror(errno));
		}
	}
	/* The removals are durable before QUIT is answered; if that cannot be
	 * promised, QUIT must not claim them (they may come back). */
	if (fsync(md->new_fd) < 0 || fsync(md->cur_fd) < 0) {
		log_error("maildir %s: fsync: %s", md->path, strerror(errno));
		failed += removed;
	}
	return failed;
}

void maildir_close(struct maildir *md)
{
	if (md == NULL)
		return;
	for (size_t i = 0; i < md->count; i++)
		free(md->msgs[i].name);
	free(md->msgs);
	/* Closing the lock descriptor releases the OFD lock. */
	int fds[] = {md->lock_fd, md->new_fd, md->cur_fd, md->dir_fd};
	for (unsigned i = 0; i < 4; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(md->path);
	free(md);
}
