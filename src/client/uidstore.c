/* uidstore.c - the per-account UIDL store and its journal. */
#include "client/uidstore.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/fsutil.h"
#include "common/xmalloc.h"

static size_t hash(const char *s)
{
	size_t h = 1469598103934665603ULL;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

static void rehash(struct uidstore *s)
{
	free(s->slots);
	s->nslots = s->n * 2 + 64;
	s->slots = xcalloc(s->nslots, sizeof(size_t));
	for (size_t i = 0; i < s->n; i++) {
		size_t h = hash(s->e[i].uidl) % s->nslots;
		while (s->slots[h] != 0)
			h = (h + 1) % s->nslots;
		s->slots[h] = i + 1;
	}
}

struct uid_entry *uidstore_find(struct uidstore *s, const char *uidl)
{
	if (s->nslots == 0)
		return NULL;
	for (size_t h = hash(uidl) % s->nslots; s->slots[h] != 0; h = (h + 1) % s->nslots)
		if (strcmp(s->e[s->slots[h] - 1].uidl, uidl) == 0)
			return &s->e[s->slots[h] - 1];
	return NULL;
}

static struct uid_entry *add(struct uidstore *s, const char *uidl)
{
	struct uid_entry *e = uidstore_find(s, uidl);
	if (e != NULL)
		return e;
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 256;
		s->e = xreallocarray(s->e, s->cap, sizeof(*s->e));
	}
	e = &s->e[s->n++];
	memset(e, 0, sizeof(*e));
	e->uidl = xstrdup(uidl);
	if (s->n * 2 >= s->nslots) {
		rehash(s);
	} else {
		size_t h = hash(uidl) % s->nslots;
		while (s->slots[h] != 0)
			h = (h + 1) % s->nslots;
		s->slots[h] = s->n;
	}
	return e;
}

static void remove_entry(struct uidstore *s, const char *uidl)
{
	struct uid_entry *e = uidstore_find(s, uidl);
	if (e == NULL)
		return;
	size_t i = (size_t)(e - s->e);
	free(e->uidl);
	s->e[i] = s->e[--s->n];
	rehash(s);
}

static void add_pending(struct uidstore *s, const char *uidl, const char *name)
{
	for (size_t i = 0; i < s->n_pending; i++) {
		if (strcmp(s->pending[i].uidl, uidl) == 0) {
			free(s->pending[i].name);
			s->pending[i].name = xstrdup(name);
			return;
		}
	}
	s->pending = xreallocarray(s->pending, s->n_pending + 1, sizeof(*s->pending));
	s->pending[s->n_pending++] = (struct uid_pending){xstrdup(uidl), xstrdup(name)};
}

static void remove_pending(struct uidstore *s, const char *uidl)
{
	for (size_t i = 0; i < s->n_pending; i++) {
		if (strcmp(s->pending[i].uidl, uidl) == 0) {
			free(s->pending[i].uidl);
			free(s->pending[i].name);
			s->pending[i] = s->pending[--s->n_pending];
			return;
		}
	}
}

/* UIDLs are written with octets outside 0x21..0x7E and '%' as %XX. */
static void escape(struct buf *b, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x21 || c > 0x7e || c == '%')
			buf_printf(b, "%%%02X", c);
		else
			buf_append_byte(b, (char)c);
	}
}

/* "account <port> <host> <user>\n": whose UIDLs the store holds. */
static void account_line(struct buf *b, const char *host, unsigned port, const char *user)
{
	buf_printf(b, "account %u ", port);
	escape(b, host);
	buf_append_byte(b, ' ');
	escape(b, user);
	buf_append_byte(b, '\n');
}

static int unescape(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (*p != '%') {
			*o++ = *p;
			continue;
		}
		/* exactly two hex digits ("%4" alone would step past the end) */
		if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2]))
			return -1;
		char hex[3] = {p[1], p[2], '\0'};
		unsigned long v = strtoul(hex, NULL, 16);
		if (v == 0)
			return -1;
		*o++ = (char)v;
		p += 2;
	}
	*o = '\0';
	return 0;
}

static void load_store(struct uidstore *s)
{
	FILE *f = fopen(s->path, "re");
	if (f == NULL)
		return;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	bool header = true;
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		if (header) {
			header = false;
			if (strcmp(line, "pigeon-uidl 1") != 0)
				break;
			continue;
		}
		/* Lines an older Pigeon skips (they do not start with a number). */
		char a[4096], b[4096];
		unsigned port;
		if (sscanf(line, "account %u %4095s %4095s", &port, a, b) == 3 && unescape(a) == 0 &&
		    unescape(b) == 0) {
			free(s->host);
			free(s->user);
			s->host = xstrdup(a);
			s->user = xstrdup(b);
			s->port = port;
			continue;
		}
		if (sscanf(line, "fetch %4095s %4095s", a, b) == 2 && unescape(a) == 0 &&
		    unescape(b) == 0) {
			add_pending(s, a, b);
			continue;
		}
		long long first, last;
		char flag;
		int off = 0;
		if (sscanf(line, "%lld %lld %c %n", &first, &last, &flag, &off) != 3 || off == 0)
			continue;
		if (unescape(line + off) < 0 || line[off] == '\0')
			continue;
		struct uid_entry *e = add(s, line + off);
		e->first_seen = (time_t)first;
		e->last_seen = (time_t)last;
		e->flag = flag;
	}
	free(line);
	fclose(f);
}

static void replay_journal(struct uidstore *s, const char *jpath)
{
	FILE *f = fopen(jpath, "re");
	if (f == NULL)
		return;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] != '\n')
			break; /* a torn last line: not fsync'd, so never acted on */
		line[--n] = '\0';
		char word[8], a[4096], b[4096];
		long long t;
		char flag;
		if (sscanf(line, "DONE %lld %c %4095s", &t, &flag, a) == 3 && unescape(a) == 0) {
			struct uid_entry *e = add(s, a);
			if (e->first_seen == 0)
				e->first_seen = (time_t)t;
			e->last_seen = (time_t)t;
			e->flag = flag;
			remove_pending(s, a);
		} else if (sscanf(line, "GONE %4095s", a) == 1 && unescape(a) == 0) {
			remove_entry(s, a);
		} else if (sscanf(line, "FETCH %4095s %4095s", a, b) == 2 && unescape(a) == 0 &&
			   unescape(b) == 0) {
			add_pending(s, a, b);
		}
		(void)word;
	}
	free(line);
	fclose(f);
	s->dirty = true;
}

int uidstore_open(struct uidstore *s, const char *path, bool *busy, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->lock_fd = -1;
	*busy = false;
	s->path = xstrdup(path);
	if (mkdir_parents(path) < 0) {
		snprintf(err, errlen, "cannot create the directory of %s: %s", path, strerror(errno));
		return -1;
	}
	char *lock = xasprintf("%s.lock", path);
	s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(lock);
	if (s->lock_fd < 0) {
		snprintf(err, errlen, "%s.lock: %s", path, strerror(errno));
		return -1;
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		*busy = errno == EWOULDBLOCK;
		snprintf(err, errlen, "%s is in use by another pigeon fetch", path);
		return -1;
	}
	load_store(s);
	char *jpath = xasprintf("%s.journal", path);
	replay_journal(s, jpath);
	s->journal = fopen(jpath, "ae");
	free(jpath);
	if (s->journal == NULL) {
		snprintf(err, errlen, "%s.journal: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int journal(struct uidstore *s, const char *fmt, const char *uidl, const char *extra,
		   time_t t, char flag)
{
	struct buf b = BUF_INIT;
	if (strcmp(fmt, "DONE") == 0)
		buf_printf(&b, "DONE %lld %c ", (long long)t, flag);
	else
		buf_printf(&b, "%s ", fmt);
	escape(&b, uidl);
	if (extra != NULL) {
		buf_append_byte(&b, ' ');
		escape(&b, extra);
	}
	buf_append_byte(&b, '\n');
	int rc = fwrite(b.data, 1, b.len, s->journal) == b.len ? 0 : -1;
	/* FETCH and DONE go to the kernel at once: a process killed right
	 * after a delivery must not lose the record of it (a duplicate at the
	 * next run). GONE may wait: losing one only keeps an entry longer. */
	if (rc == 0 && strcmp(fmt, "GONE") != 0 && fflush(s->journal) != 0)
		rc = -1;
	buf_free(&b);
	s->dirty = true;
	return rc;
}

int uidstore_fetching(struct uidstore *s, const char *uidl, const char *name)
{
	add_pending(s, uidl, name);
	return journal(s, "FETCH", uidl, name, 0, 0);
}

void uidstore_settled(struct uidstore *s, const char *uidl)
{
	remove_pending(s, uidl);
	s->dirty = true;
}

int uidstore_claim(struct uidstore *s, const char *host, unsigned port, const char *user,
		   char *err, size_t errlen)
{
	if (s->host == NULL) {
		s->host = xstrdup(host);
		s->user = xstrdup(user);
		s->port = port;
		s->dirty = true; /* record it at the next save */
		return 0;
	}
	if (strcasecmp(s->host, host) == 0 && s->port == port && strcmp(s->user, user) == 0)
		return 0;
	/* the line to put in the store, escaped as the store writes it */
	struct buf line = BUF_INIT;
	account_line(&line, host, port, user);
	line.data[line.len - 1] = '\0'; /* the newline */
	snprintf(err, errlen,
		 "the UIDL store %s belongs to user %s on %s port %u, not to this account (user %s on "
		 "%s port %u): its UIDLs would count as already fetched here (and delete mode would "
		 "delete mail never downloaded). Set uidl_store to another file for this account, or "
		 "remove %s and %s.journal if the old account's record is no longer needed; if it is "
		 "the same maildrop reached another way (another port or host name), change the "
		 "store's 'account' line to '%s' instead",
		 s->path, s->user, s->host, s->port, user, host, port, s->path, s->path,
		 line.data);
	buf_free(&line);
	return -1;
}

int uidstore_done(struct uidstore *s, const char *uidl, char flag, time_t now)
{
	struct uid_entry *e = add(s, uidl);
	if (e->first_seen == 0)
		e->first_seen = now;
	e->last_seen = now;
	e->flag = flag;
	remove_pending(s, uidl);
	return journal(s, "DONE", uidl, NULL, now, flag);
}

int uidstore_gone(struct uidstore *s, const char *uidl)
{
	remove_entry(s, uidl);
	return journal(s, "GONE", uidl, NULL, 0, 0);
}

int uidstore_sync(struct uidstore *s)
{
	if (fflush(s->journal) != 0 || fsync(fileno(s->journal)) != 0)
		return -1;
	return 0;
}

int uidstore_save(struct uidstore *s, bool prune, time_t now)
{
	if (!s->dirty && !prune)
		return 0;
	struct buf b = BUF_INIT;
	buf_append_str(&b, "pigeon-uidl 1\n");
	if (s->host != NULL)
		account_line(&b, s->host, s->port, s->user);
	/* Downloads begun without DONE stay recorded until recovery settles
	 * them (e.g. files renamed into new/ whose directory fsync failed). */
	for (size_t i = 0; i < s->n_pending; i++) {
		buf_append_str(&b, "fetch ");
		escape(&b, s->pending[i].uidl);
		buf_append_byte(&b, ' ');
		escape(&b, s->pending[i].name);
		buf_append_byte(&b, '\n');
	}
	for (size_t i = 0; i < s->n; i++) {
		const struct uid_entry *e = &s->e[i];
		if (prune && now - e->last_seen > UIDSTORE_GRACE)
			continue;
		buf_printf(&b, "%lld %lld %c ", (long long)e->first_seen, (long long)e->last_seen,
			   e->flag);
		escape(&b, e->uidl);
		buf_append_byte(&b, '\n');
	}
	char *tmp = xasprintf("%s.tmp", s->path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int rc = -1;
	if (fd >= 0) {
		bool ok = write(fd, b.data, b.len) == (ssize_t)b.len && fsync(fd) == 0;
		ok = close(fd) == 0 && ok;
		if (ok && rename(tmp, s->path) == 0 && fsync_parent(s->path) == 0) {
			/* The store now holds everything: start a fresh journal
			 * (lines still in stdio's buffer are in the store too). */
			if (fflush(s->journal) == 0 && ftruncate(fileno(s->journal), 0) == 0)
				rc = 0;
			s->dirty = false;
		}
	}
	if (rc < 0)
		unlink(tmp);
	free(tmp);
	buf_free(&b);
	return rc;
}

void uidstore_close(struct uidstore *s)
{
	if (s->journal != NULL)
		fclose(s->journal);
	for (size_t i = 0; i < s->n; i++)
		free(s->e[i].uidl);
	free(s->e);
	free(s->slots);
	for (size_t i = 0; i < s->n_pending; i++) {
		free(s->pending[i].uidl);
		free(s->pending[i].name);
	}
	free(s->pending);
	free(s->host);
	free(s->user);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s->path);
	memset(s, 0, sizeof(*s));
}
