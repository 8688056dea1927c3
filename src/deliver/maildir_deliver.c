/* maildir_deliver.c - tmp/ -> fsync -> new/ -> fsync, with exact sizes. */
#include "deliver/maildir_deliver.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "common/log.h"
#include "common/fsutil.h"
#include "common/xmalloc.h"

enum deliver_status deliver_status_from_errno(int err)
{
	switch (err) {
	case ENOTDIR:      /* a path component is a file */
	case ELOOP:        /* a symlink loop */
	case ENAMETOOLONG: /* the path can never be created */
		return DELIVER_PERM;
	case ENOSPC:
		return DELIVER_NOSPACE;
	case EDQUOT:
		return DELIVER_FULL;
	default:           /* EACCES, EPERM, EROFS, EIO, ...: fixable */
		return DELIVER_TEMP;
	}
}

static enum deliver_status fail_errno(struct maildir_delivery *d, int err)
{
	d->error = err;
	return deliver_status_from_errno(err);
}

/* The host part of a unique name: '/' and ':' escaped as DJB asks.
 * Looked up once per process (the host name does not change under us). */
static pthread_once_t host_once = PTHREAD_ONCE_INIT;
static char host_part[160];

static void compute_host(void)
{
	char *out = host_part;
	size_t outlen = sizeof(host_part);
	char host[128];
	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	size_t pos = 0;
	for (const char *p = host; *p && pos + 5 < outlen; p++) {
		if (*p == '/')
			pos += (size_t)snprintf(out + pos, outlen - pos, "\\057");
		else if (*p == ':')
			pos += (size_t)snprintf(out + pos, outlen - pos, "\\072");
		else if (*p == ',')
			pos += (size_t)snprintf(out + pos, outlen - pos, "\\054");
		else
			out[pos++] = *p;
	}
	out[pos] = '\0';
}

static void name_host(char *out, size_t outlen)
{
	pthread_once(&host_once, compute_host);
	snprintf(out, outlen, "%s", host_part);
}

enum deliver_status maildir_delivery_begin(struct maildir_delivery *d, const char *maildir)
{
	memset(d, 0, sizeof(*d));
	d->dir_fd = d->tmp_fd = -1;
	d->path = xstrdup(maildir);
	transform_init(&d->size, TRANSFORM_ALL_LINES, false, false);
	d->dir_fd = open(maildir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->dir_fd < 0 && errno == ENOENT) {
		if (mkdir_p(maildir) < 0) {
			int err = errno;
			log_error("maildir %s: cannot create: %s", maildir, strerror(err));
			return fail_errno(d, err);
		}
		d->dir_fd = open(maildir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (d->dir_fd < 0) {
		int err = errno;
		log_error("maildir %s: %s", maildir, strerror(err));
		return fail_errno(d, err);
	}
	/* tmp/ (where we write) and new/ (where the rename goes) must exist;
	 * if either is missing, make all three. */
	struct stat sb;
	if (fstatat(d->dir_fd, "tmp", &sb, 0) < 0 || fstatat(d->dir_fd, "new", &sb, 0) < 0) {
		static const char *const subdirs[] = {"tmp", "new", "cur"};
		bool made = false;
		for (unsigned i = 0; i < 3; i++) {
			if (mkdirat(d->dir_fd, subdirs[i], 0700) == 0) {
				made = true;
			} else if (errno != EEXIST) {
				int err = errno;
				log_error("maildir %s: cannot create %s/: %s", maildir, subdirs[i],
					  strerror(err));
				return fail_errno(d, err);
			}
		}
		/* The new directories' entries must be durable before a rename
		 * into new/ is acknowledged. */
		if (made && fsync(d->dir_fd) < 0) {
			int err = errno;
			log_error("maildir %s: fsync: %s", maildir, strerror(err));
			return fail_errno(d, err);
		}
	}
	/* time.M<usec>P<pid>R<random>.host: unique across processes, reboots
	 * and clock steps without relying on inode numbers (maildir.md §2). */
	static unsigned counter;
	for (int attempt = 0; attempt < 5; attempt++) {
		struct timeval tv;
		uint32_t rnd;
		char host[160];
		gettimeofday(&tv, NULL);
		RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
		name_host(host, sizeof(host));
		snprintf(d->tmp_name, sizeof(d->tmp_name), "%lld.M%06ldP%ldQ%uR%08x.%s",
			 (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(), ++counter, rnd, host);
		char tmp[300];
		snprintf(tmp, sizeof(tmp), "tmp/%s", d->tmp_name);
		d->tmp_fd = openat(d->dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (d->tmp_fd >= 0)
			return DELIVER_OK;
		if (errno != EEXIST)
			break;
	}
	int err = errno;
	log_error("maildir %s: cannot create a file in tmp/: %s", maildir, strerror(err));
	return fail_errno(d, err);
}

static void write_out(struct maildir_delivery *d, const char *p, size_t n)
{
	while (n > 0 && d->error == 0) {
		ssize_t w = write(d->tmp_fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			d->error = w < 0 ? errno : EIO;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

static void flush(struct maildir_delivery *d)
{
	write_out(d, d->wbuf, d->wlen);
	d->wlen = 0;
}

static void put(struct maildir_delivery *d, const char *p, size_t n)
{
	if (n == 0 || d->error != 0)
		return;
	transform_feed(&d->size, p, n, NULL);
	d->stored += n;
	if (d->wlen + n > sizeof(d->wbuf))
		flush(d);
	if (n >= sizeof(d->wbuf)) {
		write_out(d, p, n);
		return;
	}
	memcpy(d->wbuf + d->wlen, p, n);
	d->wlen += n;
}

void maildir_delivery_write(struct maildir_delivery *d, const void *data, size_t len)
{
	const char *p = data, *end = p + len;
	/* Store CRLF as LF; keep everything else (bare CR included). */
	while (p < end) {
		if (d->pending_cr) {
			d->pending_cr = false;
			if (*p != '\n')
				put(d, "\r", 1);
		}
		const char *cr = memchr(p, '\r', (size_t)(end - p));
		if (cr == NULL) {
			put(d, p, (size_t)(end - p));
			return;
		}
		put(d, p, (size_t)(cr - p));
		d->pending_cr = true;
		p = cr + 1;
	}
}

/* Close the directory and forget the path. */
static void release(struct maildir_delivery *d)
{
	if (d->dir_fd >= 0)
		close(d->dir_fd);
	d->dir_fd = -1;
	free(d->path);
	d->path = NULL;
}

void maildir_delivery_finish(struct maildir_delivery *d)
{
	if (d->pending_cr) {
		d->pending_cr = false;
		put(d, "\r", 1);
	}
	transform_finish(&d->size, NULL);
	flush(d);
	/* Start writing the data out now; the fsync in publish (often on
	 * another thread) then mostly waits for what is already under way. */
	if (!d->no_fsync && d->error == 0)
		sync_file_range(d->tmp_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	snprintf(d->final_name, sizeof(d->final_name), "new/%s,S=%llu,W=%llu", d->tmp_name,
		 (unsigned long long)d->stored, (unsigned long long)d->size.emitted);
}

void maildir_delivery_sync(struct maildir_delivery *d)
{
	if (d->error == 0 && !d->no_fsync && !d->synced && fsync(d->tmp_fd) < 0)
		d->error = errno;
	d->synced = true;
}

/* The file (tmp, relative to the Maildir) cannot be published: remove it.
 * The Maildir exists by now, so no failure is permanent. */
static enum deliver_status publish_failed(struct maildir_delivery *d, const char *tmp,
					  const char *what)
{
	log_error("maildir %s: %s %s: %s", d->path, what, tmp, strerror(d->error));
	unlinkat(d->dir_fd, tmp, 0);
	release(d);
	enum deliver_status st = deliver_status_from_errno(d->error);
	return st == DELIVER_PERM ? DELIVER_TEMP : st;
}

enum deliver_status maildir_delivery_publish(struct maildir_delivery *d)
{
	char tmp[300];
	snprintf(tmp, sizeof(tmp), "tmp/%s", d->tmp_name);
	maildir_delivery_sync(d);
	/* NFS reports write errors at close: check it. */
	if (close(d->tmp_fd) < 0 && d->error == 0)
		d->error = errno;
	d->tmp_fd = -1;
	if (d->error != 0)
		return publish_failed(d, tmp, "writing the file");
	/* rename is atomic: readers see the whole message or nothing. The name
	 * is unique (time, pid, counter, random), so nothing is overwritten. */
	if (renameat(d->dir_fd, tmp, d->dir_fd, d->final_name) < 0) {
		d->error = errno;
		return publish_failed(d, tmp, "rename into new/");
	}
	enum deliver_status st = DELIVER_OK;
	if (!d->defer_dir_sync && !d->no_fsync) {
		int new_fd = openat(d->dir_fd, "new", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (new_fd < 0 || fsync(new_fd) < 0) {
			/* In new/, but maybe not durably: not acknowledged, so the
			 * sender retries; a duplicate beats a loss. */
			log_error("maildir %s: fsync new/: %s", d->path, strerror(errno));
			st = DELIVER_TEMP;
		}
		if (new_fd >= 0)
			close(new_fd);
	}
	release(d);
	return st;
}

enum deliver_status maildir_delivery_commit(struct maildir_delivery *d)
{
	maildir_delivery_finish(d);
	return maildir_delivery_publish(d);
}

void maildir_delivery_abort(struct maildir_delivery *d)
{
	if (d->tmp_fd >= 0) {
		close(d->tmp_fd);
		d->tmp_fd = -1;
		char tmp[300];
		snprintf(tmp, sizeof(tmp), "tmp/%s", d->tmp_name);
		unlinkat(d->dir_fd, tmp, 0);
	}
	release(d);
}

int maildir_sync_new(const char *maildir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/new", maildir);
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

/* ",S=<n>" in a base name: the stored size. */
static bool name_stored_size(const char *name, uint64_t *out)
{
	const char *colon = strchr(name, ':');
	size_t blen = colon ? (size_t)(colon - name) : strlen(name);
	for (const char *p = name; (p = strstr(p, ",S=")) != NULL && (size_t)(p - name) < blen; p++) {
		char *end;
		unsigned long long v = strtoull(p + 3, &end, 10);
		if (end != p + 3 && (*end == ',' || *end == ':' || *end == '\0')) {
			*out = v;
			return true;
		}
	}
	return false;
}

int maildir_usage(const char *maildir, uint64_t *bytes)
{
	*bytes = 0;
	/* cur/ first: POP3 sessions move messages new/ -> cur/ without this
	 * lock, and a message moved during the scan is then counted at most
	 * once (never twice, which could bounce mail for a quota not reached). */
	static const char *const subdirs[] = {"cur", "new"};
	for (unsigned i = 0; i < 2; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", maildir, subdirs[i]);
		DIR *dir = opendir(path);
		if (dir == NULL) {
			if (errno == ENOENT)
				continue;
			return -1;
		}
		struct dirent *de;
		while ((de = readdir(dir)) != NULL) {
			if (de->d_name[0] == '.')
				continue;
			uint64_t size;
			struct stat sb;
			if (name_stored_size(de->d_name, &size))
				*bytes += size;
			else if (fstatat(dirfd(dir), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
				*bytes += (uint64_t)sb.st_size;
		}
		closedir(dir);
	}
	return 0;
}
