/* passwd_edit.c - lock, rewrite, rename: safe passwd-file changes. */
#include "cli/passwd_edit.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth/passwd_file.h"
#include "common/bounds.h"
#include "common/buf.h"
#include "common/fsutil.h"
#include "common/xmalloc.h"

static int lock_file(const char *path, char *err, size_t errlen)
{
	char *lockpath = xasprintf("%s.lock", path);
	int fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", lockpath, strerror(errno));
		free(lockpath);
		return -1;
	}
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	/* Wait for another `pigeon user` to finish (bounded by its run time). */
	while (fcntl(fd, F_OFD_SETLKW, &fl) < 0) {
		if (errno != EINTR) {
			snprintf(err, errlen, "%s: cannot lock: %s", lockpath, strerror(errno));
			close(fd);
			free(lockpath);
			return -1;
		}
	}
	free(lockpath);
	return fd;
}

/* Does this raw line hold an entry for user? */
static bool line_is_user(const char *line, const char *user)
{
	size_t n = strlen(user);
	return strncmp(line, user, n) == 0 && line[n] == ':';
}

static bool all_digits(const char *s)
{
	return s[0] != '\0' && strspn(s, "0123456789") == strlen(s) && strlen(s) <= 10;
}

int passwd_edit_check(const struct passwd_edit *e, char *err, size_t errlen)
{
	if (e->user[0] == '\0' || strpbrk(e->user, ":\n\r\t ") != NULL || e->user[0] == '#' ||
	    strlen(e->user) > AUTH_MAX_USERNAME) {
		snprintf(err, errlen, "invalid user name '%.64s' (no ':', spaces or a leading '#', "
				      "at most %d octets)", e->user, AUTH_MAX_USERNAME);
		return -1;
	}
	if (e->password_field && strpbrk(e->password_field, ":\n\r") != NULL) {
		snprintf(err, errlen, "password field must not contain ':' or line breaks");
		return -1;
	}
	if ((e->uid && e->uid[0] && !all_digits(e->uid)) || (e->gid && e->gid[0] && !all_digits(e->gid))) {
		snprintf(err, errlen, "uid and gid must be numbers");
		return -1;
	}
	if (e->home && (strpbrk(e->home, ":\n\r") != NULL || (e->home[0] && e->home[0] != '/'))) {
		snprintf(err, errlen, "home must be an absolute path without ':' or line breaks");
		return -1;
	}
	return 0;
}

int passwd_edit(const char *path, const struct passwd_edit *e, char *err, size_t errlen)
{
	if (passwd_edit_check(e, err, errlen) < 0)
		return -1;
	int lock = lock_file(path, err, errlen);
	if (lock < 0)
		return -1;
	int rc = -1;
	char *tmp = NULL;
	struct buf out = BUF_INIT;
	mode_t mode = 0640;
	FILE *f = fopen(path, "re");
	if (f == NULL && errno != ENOENT) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	struct stat sb;
	bool have_owner = f != NULL && fstat(fileno(f), &sb) == 0;
	if (have_owner)
		mode = sb.st_mode & 07777;
	bool found = false;
	char *line = NULL;
	size_t linecap = 0;
	while (f != NULL && getline(&line, &linecap, f) > 0) {
		if (!line_is_user(line, e->user)) {
			buf_append_str(&out, line);
			if (line[strlen(line) - 1] != '\n')
				buf_append_byte(&out, '\n');
			continue;
		}
		found = true;
		if (e->op == PASSWD_DELETE || e->op == PASSWD_ADD) {
			if (e->op == PASSWD_ADD)
				buf_append_str(&out, line);
			continue;
		}
		/* Replace only the password field, keep the rest of the entry. */
		char *colon = strchr(line, ':');
		char *rest = strchr(colon + 1, ':');
		buf_printf(&out, "%s:%s", e->user, e->password_field);
		if (rest != NULL)
			buf_append_str(&out, rest);
		else
			buf_append_byte(&out, '\n');
	}
	if (line != NULL) {
		OPENSSL_cleanse(line, linecap);
		free(line);
	}
	if (f != NULL)
		fclose(f);
	if (e->op == PASSWD_ADD && found) {
		snprintf(err, errlen, "user %s already exists in %s", e->user, path);
		goto out;
	}
	if (e->op != PASSWD_ADD && !found) {
		snprintf(err, errlen, "no user %s in %s", e->user, path);
		goto out;
	}
	if (e->op == PASSWD_ADD)
		buf_printf(&out, "%s:%s:%s:%s::%s::\n", e->user, e->password_field,
			   e->uid ? e->uid : "", e->gid ? e->gid : "", e->home ? e->home : "");

	tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (have_owner && fchown(fd, sb.st_uid, sb.st_gid) < 0) {
		/* keeping the owner needs root; the mode is kept regardless */
	}
	if (!have_owner && e->set_group && fchown(fd, (uid_t)-1, e->group) < 0) {
		snprintf(err, errlen, "%s: cannot give it the server's group: %s", tmp,
			 strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	/* open() applied the umask; the file keeps exactly its old mode. */
	fchmod(fd, mode);
	bool ok = write(fd, out.data ? out.data : "", out.len) == (ssize_t)out.len && fsync(fd) == 0;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) < 0) {
		snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	fsync_parent(path);
	rc = 0;
out:
	buf_wipe(&out);
	buf_free(&out);
	free(tmp);
	close(lock);
	return rc;
}
