/* dest.c - Maildir, mbox, MDA and LMTP destinations for pigeon fetch. */
#include "client/dest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/xmalloc.h"

static enum dest_result fail(struct dest *d, enum dest_result r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum dest_result fail(struct dest *d, enum dest_result r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(d->error, sizeof(d->error), fmt, ap);
	va_end(ap);
	return r;
}

int dest_open(struct dest *d, const struct account *a)
{
	memset(d, 0, sizeof(*d));
	d->a = a;
	return 0;
}

void dest_close(struct dest *d)
{
	/* Messages never made durable stay out of new/. */
	for (size_t i = 0; i < d->n_pending; i++) {
		maildir_delivery_abort(d->pending[i]);
		free(d->pending[i]);
	}
	free(d->pending);
	free(d->pending_tags);
	free(d->pending_status);
	d->pending = NULL;
	d->pending_tags = NULL;
	d->pending_status = NULL;
	d->n_pending = d->cap_pending = 0;
	if (d->lmtp_open) {
		client_write(&d->lmtp, "QUIT\r\n", 6);
		client_close(&d->lmtp);
		d->lmtp_open = false;
	}
}

/* ---- LMTP client ---------------------------------------------------------- */

/* A (possibly multi-line) SMTP reply; returns its code or -1. */
static int lmtp_reply(struct dest *d, char *text, size_t textlen)
{
	struct buf line = BUF_INIT;
	int code = -1;
	for (int guard = 0; guard < 100; guard++) {
		if (client_read_line(&d->lmtp, &line, 4096, NULL) < 0) {
			snprintf(d->error, sizeof(d->error), "LMTP: %.400s", d->lmtp.error);
			code = -1;
			break;
		}
		if (line.len < 3) {
			snprintf(d->error, sizeof(d->error), "LMTP: malformed reply");
			code = -1;
			break;
		}
		code = atoi(line.data);
		if (text)
			snprintf(text, textlen, "%s", line.data);
		if (line.len == 3 || line.data[3] != '-')
			break;
	}
	buf_free(&line);
	return code;
}

static int lmtp_connect(struct dest *d)
{
	const char *addr = d->a->dest_arg;
	if (strncmp(addr, "unix:", 5) == 0) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		memset(&d->lmtp, 0, sizeof(d->lmtp));
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", addr + 5);
		snprintf(d->lmtp.host, sizeof(d->lmtp.host), "%s", addr);
		d->lmtp.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (d->lmtp.fd < 0 || connect(d->lmtp.fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			fail(d, DEST_TEMP, "LMTP %s: %s", addr, strerror(errno));
			if (d->lmtp.fd >= 0)
				close(d->lmtp.fd);
			return -1;
		}
		struct timeval tv = {d->a->timeout_ms / 1000, 0};
		setsockopt(d->lmtp.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	} else {
		char host[256];
		const char *colon = strrchr(addr, ':');
		if (colon == NULL || (size_t)(colon - addr) >= sizeof(host)) {
			fail(d, DEST_PERM, "LMTP address must be unix:/path or host:port");
			return -1;
		}
		snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
		if (host[0] == '[' && host[strlen(host) - 1] == ']') {
			memmove(host, host + 1, strlen(host));
			host[strlen(host) - 1] = '\0';
		}
		if (client_connect(&d->lmtp, host, (unsigned)atoi(colon + 1), d->a->connect_timeout_ms,
				   d->a->timeout_ms) < 0) {
			fail(d, DEST_TEMP, "LMTP: %.400s", d->lmtp.error);
			return -1;
		}
	}
	d->lmtp_open = true;
	char text[512];
	if (lmtp_reply(d, text, sizeof(text)) != 220 || client_write(&d->lmtp, "LHLO pigeon\r\n", 13) < 0 ||
	    lmtp_reply(d, text, sizeof(text)) != 250) {
		fail(d, DEST_TEMP, "LMTP server %s did not greet us properly", addr);
		dest_close(d);
		return -1;
	}
	return 0;
}

static enum dest_result lmtp_code(struct dest *d, int code, const char *text)
{
	if (code >= 200 && code < 300)
		return DEST_OK;
	snprintf(d->error, sizeof(d->error), "LMTP refused: %.400s", text);
	return code >= 500 ? DEST_PERM : DEST_TEMP;
}

static enum dest_result lmtp_begin(struct dest *d, struct dest_msg *m)
{
	if (!d->lmtp_open && lmtp_connect(d) < 0)
		return DEST_TEMP;
	char text[512], cmd[600];
	const char *rcpt = d->a->lmtp_recipient ? d->a->lmtp_recipient : d->a->user;
	snprintf(cmd, sizeof(cmd), "MAIL FROM:<>\r\nRCPT TO:<%s>\r\nDATA\r\n", rcpt);
	if (client_write(&d->lmtp, cmd, strlen(cmd)) < 0) {
		dest_close(d);
		return fail(d, DEST_TEMP, "LMTP: %.400s", d->lmtp.error);
	}
	int c1 = lmtp_reply(d, text, sizeof(text));
	if (c1 != 250) {
		/* RSET; the pipelined RCPT and DATA answers still have to be read. */
		lmtp_reply(d, NULL, 0);
		lmtp_reply(d, NULL, 0);
		dest_close(d);
		return lmtp_code(d, c1, text);
	}
	int c2 = lmtp_reply(d, text, sizeof(text));
	char t3[512];
	int c3 = lmtp_reply(d, t3, sizeof(t3));
	if (c2 != 250 || c3 != 354) {
		enum dest_result r = lmtp_code(d, c2 != 250 ? c2 : 554, c2 != 250 ? text : t3);
		client_write(&d->lmtp, "RSET\r\n", 6);
		if (lmtp_reply(d, NULL, 0) < 0)
			dest_close(d);
		return r == DEST_OK ? DEST_TEMP : r;
	}
	m->lmtp_data = true;
	return DEST_OK;
}

/* ---- mbox locking (maildir.md §10.2: fcntl first, then a dotlock) ----------- */

static int dotlock(struct dest_msg *m, const char *mbox)
{
	char *lock = xasprintf("%s.lock", mbox);
	char *tmp = xasprintf("%s.lock.%ld.%ld", mbox, (long)getpid(), (long)time(NULL));
	for (int tries = 0; tries < 100; tries++) {
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			break;
		close(fd);
		/* link() is atomic even over NFS; check the link count (liblockfile). */
		int rc = link(tmp, lock);
		struct stat sb;
		bool ok = (rc == 0) || (stat(tmp, &sb) == 0 && sb.st_nlink == 2);
		unlink(tmp);
		if (ok) {
			m->dotlock = lock;
			free(tmp);
			return 0;
		}
		/* A lock older than 5 minutes is stale. */
		if (stat(lock, &sb) == 0 && time(NULL) - sb.st_mtime > 300)
			unlink(lock);
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	free(lock);
	free(tmp);
	return -1;
}

static enum dest_result mbox_begin(struct dest *d, struct dest_msg *m)
{
	m->mbox_fd = open(d->a->dest_arg, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (m->mbox_fd < 0)
		return fail(d, errno == EACCES ? DEST_PERM : DEST_TEMP, "mbox %s: %s", d->a->dest_arg,
			    strerror(errno));
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	int tries = 0;
	while (fcntl(m->mbox_fd, F_SETLK, &fl) < 0 && tries++ < 100) {
		struct timespec ts = {0, 100 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (tries > 100 || dotlock(m, d->a->dest_arg) < 0) {
		close(m->mbox_fd);
		m->mbox_fd = -1;
		return fail(d, DEST_TEMP, "mbox %s is locked by another program", d->a->dest_arg);
	}
	m->mbox_start = lseek(m->mbox_fd, 0, SEEK_END);
	char line[128];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(line, sizeof(line), "From MAILER-DAEMON %a %b %e %H:%M:%S %Y\n", &tm);
	if (write(m->mbox_fd, line, strlen(line)) < 0)
		m->failed = true;
	return DEST_OK;
}

static void mbox_unlock(struct dest_msg *m)
{
	if (m->dotlock != NULL) {
		unlink(m->dotlock);
		free(m->dotlock);
		m->dotlock = NULL;
	}
	if (m->mbox_fd >= 0) {
		close(m->mbox_fd); /* releases the fcntl lock */
		m->mbox_fd = -1;
	}
}

/* ---- MDA ------------------------------------------------------------------------ */

static enum dest_result mda_begin(struct dest *d, struct dest_msg *m)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return fail(d, DEST_TEMP, "pipe: %s", strerror(errno));
	pid_t parent = getpid();
	m->pid = fork();
	if (m->pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return fail(d, DEST_TEMP, "fork: %s", strerror(errno));
	}
	if (m->pid == 0) {
		/* Its own process group: the terminal's Ctrl-C goes to pigeon
		 * fetch, which finishes this delivery, rather than killing the MDA
		 * half-way. And if pigeon fetch dies, the MDA is told at once
		 * (SIGTERM) instead of taking the cut-off input for a whole message. */
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(75); /* it died before prctl() */
		dup2(fds[0], STDIN_FILENO);
		dup2(STDERR_FILENO, STDOUT_FILENO); /* keep our stdout for the summary */
		signal(SIGPIPE, SIG_DFL);
		execl("/bin/sh", "sh", "-c", d->a->dest_arg, (char *)NULL);
		_exit(127);
	}
	close(fds[0]);
	m->pipe_fd = fds[1];
	return DEST_OK;
}

/* ---- common ------------------------------------------------------------------------ */

enum dest_result dest_begin(struct dest *d, struct dest_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->d = d;
	m->mbox_fd = m->pipe_fd = -1;
	m->at_line_start = true;
	switch (d->a->dest) {
	case DEST_MAILDIR: {
		m->md = xmalloc(sizeof(*m->md));
		enum deliver_status st = maildir_delivery_begin(m->md, d->a->dest_arg);
		if (st != DELIVER_OK) {
			maildir_delivery_abort(m->md);
			free(m->md);
			m->md = NULL;
			return fail(d, st == DELIVER_PERM ? DEST_PERM : DEST_TEMP,
				    "cannot write to Maildir %s", d->a->dest_arg);
		}
		m->md->defer_dir_sync = true;
		m->md->no_fsync = !d->a->fsync;
		snprintf(m->name, sizeof(m->name), "%s", m->md->tmp_name);
		return DEST_OK;
	}
	case DEST_MBOX:
		return mbox_begin(d, m);
	case DEST_MDA:
		return mda_begin(d, m);
	case DEST_LMTP:
		return lmtp_begin(d, m);
	}
	return DEST_PERM;
}

/* Hand the gathered bytes to the mbox file, the MDA or the LMTP server. */
static void flush_out(struct dest_msg *m)
{
	const char *data = m->out.data;
	size_t len = m->out.len;
	m->out.len = 0;
	if (m->failed || len == 0)
		return;
	switch (m->d->a->dest) {
	case DEST_MAILDIR:
		return;
	case DEST_MBOX:
		if (write(m->mbox_fd, data, len) != (ssize_t)len)
			m->failed = true;
		return;
	case DEST_MDA:
		while (len > 0 && !m->pipe_broken) {
			ssize_t n = write(m->pipe_fd, data, len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				/* The MDA stopped reading; its exit status decides. */
				m->pipe_broken = true;
				return;
			}
			data += n;
			len -= (size_t)n;
		}
		return;
	case DEST_LMTP:
		if (client_write(&m->d->lmtp, data, len) < 0)
			m->failed = true;
		return;
	}
}

static void raw_write(struct dest_msg *m, const char *data, size_t len)
{
	if (m->failed || len == 0)
		return;
	if (m->d->a->dest == DEST_MAILDIR) {
		maildir_delivery_write(m->md, data, len);
		return;
	}
	buf_append(&m->out, data, len);
	if (m->out.len >= 65536)
		flush_out(m);
}

void dest_write(struct dest_msg *m, const char *data, size_t len, bool eol)
{
	if (m->at_line_start) {
		enum account_dest kind = m->d->a->dest;
		/* mboxrd: a line matching ^>*From gets one more '>'. */
		if (kind == DEST_MBOX) {
			size_t q = 0;
			while (q < len && data[q] == '>')
				q++;
			if (len - q >= 5 && memcmp(data + q, "From ", 5) == 0)
				raw_write(m, ">", 1);
		}
		/* SMTP/LMTP dot-stuffing (RFC 5321 §4.5.2). */
		if (kind == DEST_LMTP && len > 0 && data[0] == '.')
			raw_write(m, ".", 1);
	}
	raw_write(m, data, len);
	if (eol)
		raw_write(m, m->d->a->dest == DEST_LMTP ? "\r\n" : "\n", m->d->a->dest == DEST_LMTP ? 2 : 1);
	m->at_line_start = eol;
}

enum dest_result dest_commit(struct dest_msg *m, size_t tag)
{
	struct dest *d = m->d;
	flush_out(m);
	buf_free(&m->out);
	switch (d->a->dest) {
	case DEST_MAILDIR:
		/* Made durable with the rest of its batch in dest_sync(). */
		maildir_delivery_finish(m->md);
		if (d->n_pending == d->cap_pending) {
			d->cap_pending = d->cap_pending ? d->cap_pending * 2 : 64;
			d->pending = xreallocarray(d->pending, d->cap_pending, sizeof(*d->pending));
			d->pending_tags = xreallocarray(d->pending_tags, d->cap_pending, sizeof(size_t));
			d->pending_status = xreallocarray(d->pending_status, d->cap_pending, sizeof(int));
		}
		d->pending[d->n_pending] = m->md;
		d->pending_tags[d->n_pending++] = tag;
		m->md = NULL;
		return DEST_PENDING;
	case DEST_MBOX: {
		/* The separating blank line, then make it durable. */
		if (!m->failed && write(m->mbox_fd, "\n", 1) != 1)
			m->failed = true;
		if (!m->failed && d->a->fsync && fsync(m->mbox_fd) < 0)
			m->failed = true;
		if (m->failed) {
			dest_abort(m);
			return fail(d, DEST_TEMP, "writing mbox %s failed", d->a->dest_arg);
		}
		mbox_unlock(m);
		return DEST_OK;
	}
	case DEST_MDA: {
		close(m->pipe_fd);
		m->pipe_fd = -1;
		int status = 0;
		for (unsigned stops = 0;;) {
			pid_t w = waitpid(m->pid, &status, WUNTRACED);
			if (w < 0 && errno == EINTR)
				continue;
			/* In its own process group (so the terminal's Ctrl-C is ours
			 * to handle), an MDA that touches the terminal is stopped
			 * (SIGTTOU/SIGTTIN): let it go on rather than wait forever;
			 * one that keeps stopping is ended (a temporary failure). */
			if (w > 0 && WIFSTOPPED(status)) {
				if (++stops > 10)
					kill(m->pid, SIGTERM);
				kill(m->pid, SIGCONT);
				continue;
			}
			break;
		}
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			return DEST_OK;
		if (WIFEXITED(status) && WEXITSTATUS(status) == 75)
			return fail(d, DEST_TEMP, "MDA failed temporarily (exit 75)");
		if (WIFSIGNALED(status))
			return fail(d, DEST_TEMP, "MDA killed by signal %d", WTERMSIG(status));
		return fail(d, DEST_PERM, "MDA failed with exit status %d", WEXITSTATUS(status));
	}
	case DEST_LMTP: {
		char text[512];
		if (m->failed || client_write(&d->lmtp, ".\r\n", 3) < 0) {
			dest_close(d);
			return fail(d, DEST_TEMP, "LMTP: connection lost");
		}
		int code = lmtp_reply(d, text, sizeof(text));
		if (code < 0)
			dest_close(d);
		return code < 0 ? DEST_TEMP : lmtp_code(d, code, text);
	}
	}
	return DEST_PERM;
}

void dest_abort(struct dest_msg *m)
{
	struct dest *d = m->d;
	buf_free(&m->out);
	switch (d->a->dest) {
	case DEST_MAILDIR:
		if (m->md != NULL) {
			maildir_delivery_abort(m->md);
			free(m->md);
			m->md = NULL;
		}
		break;
	case DEST_MBOX:
		/* Cut the partial message off again. */
		if (m->mbox_fd >= 0 && ftruncate(m->mbox_fd, m->mbox_start) == 0 && d->a->fsync)
			fsync(m->mbox_fd);
		mbox_unlock(m);
		break;
	case DEST_MDA:
		if (m->pid > 0) {
			kill(m->pid, SIGTERM);
			if (m->pipe_fd >= 0)
				close(m->pipe_fd);
			waitpid(m->pid, NULL, 0);
			m->pid = 0;
		}
		break;
	case DEST_LMTP:
		/* The only way to abandon DATA is to drop the connection. */
		dest_close(d);
		break;
	}
}

int dest_sync(struct dest *d, void (*done)(void *arg, size_t tag, enum dest_result r), void *arg)
{
	if (d->a->dest != DEST_MAILDIR || d->n_pending == 0)
		return 0;
	/*
	 * Group commit: one syncfs() makes the whole batch's data durable
	 * (instead of an fsync per message), then the renames publish the
	 * files in new/, and one fsync of new/ makes the names durable. A
	 * crash before that leaves the files in tmp/, where no reader looks.
	 */
	int rc = 0;
	if (d->a->fsync && syncfs(d->pending[0]->tmp_fd) < 0)
		rc = -1;
	for (size_t i = 0; i < d->n_pending; i++) {
		struct maildir_delivery *md = d->pending[i];
		md->no_fsync = true; /* syncfs above did it */
		enum deliver_status st = rc == 0 ? maildir_delivery_publish(md) : DELIVER_TEMP;
		if (rc < 0)
			maildir_delivery_abort(md);
		d->pending_status[i] = st;
	}
	if (rc == 0 && d->a->fsync && maildir_sync_new(d->a->dest_arg) < 0)
		rc = -1;
	size_t n = d->n_pending;
	d->n_pending = 0;
	for (size_t i = 0; i < n; i++) {
		done(arg, d->pending_tags[i], rc == 0 && d->pending_status[i] == DELIVER_OK ? DEST_OK : DEST_TEMP);
		free(d->pending[i]);
	}
	return rc;
}

bool dest_has(struct dest *d, const char *name)
{
	if (d->a->dest != DEST_MAILDIR)
		return false;
	size_t n = strlen(name);
	static const char *const subdirs[] = {"new", "cur"};
	for (int i = 0; i < 2; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", d->a->dest_arg, subdirs[i]);
		DIR *dir = opendir(path);
		if (dir == NULL)
			continue;
		struct dirent *de;
		while ((de = readdir(dir)) != NULL) {
			if (strncmp(de->d_name, name, n) == 0 &&
			    (de->d_name[n] == ',' || de->d_name[n] == ':' || de->d_name[n] == '\0')) {
				closedir(dir);
				return true;
			}
		}
		closedir(dir);
	}
	return false;
}
