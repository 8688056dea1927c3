/* check.c - validate a pigeond configuration and the files it names. */
#include "cli/check.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth/passwd_file.h"
#include "auth/password.h"
#include "common/config.h"
#include "common/xmalloc.h"
#include "tls/tls.h"

/* Every entry of the passwd-file parses, no user twice; returns problems. */
static int check_passwd(const char *path, FILE *err, unsigned *users)
{
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		fprintf(err, "pigeon: passwd-file %s: %s\n", path, strerror(errno));
		return 1;
	}
	int problems = 0;
	char line[4096];
	unsigned lineno = 0;
	char **names = NULL;
	size_t n = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		struct user_record rec;
		const char *why = NULL;
		int rc = passwd_parse_line(line, &rec, &why);
		if (rc < 0) {
			fprintf(err, "pigeon: %s:%u: %s\n", path, lineno, why);
			problems++;
			continue;
		}
		if (rc == 0)
			continue;
		for (size_t i = 0; i < n; i++) {
			if (strcmp(names[i], rec.name) == 0) {
				fprintf(err, "pigeon: %s:%u: user %s appears again\n", path, lineno,
					rec.name);
				problems++;
			}
		}
		const char *pw = rec.password;
		const char *bad = pw[0] == '\0' ? "an empty password field" : password_check_stored(pw);
		if (bad != NULL) {
			fprintf(err, "pigeon: %s:%u: user %s: %s\n", path, lineno, rec.name, bad);
			problems++;
		}
		names = xreallocarray(names, n + 1, sizeof(char *));
		names[n++] = xstrdup(rec.name);
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(f);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	*users = (unsigned)n;
	return problems;
}

static int check_tls(const struct config *cfg, FILE *err)
{
	if (!config_has_tls(cfg))
		return 0;
	char msg[768];
	struct tls_server *ts = tls_server_from_config(cfg, msg, sizeof(msg));
	if (ts == NULL) {
		fprintf(err, "pigeon: %s: [tls] %s\n", cfg->path, msg);
		return 1;
	}
	tls_server_free(ts);
	return 0;
}

static int check_user(const struct config *cfg, FILE *err)
{
	if (cfg->user[0] == '\0')
		return 0;
	struct passwd *pw = getpwnam(cfg->user);
	if (pw == NULL) {
		fprintf(err, "pigeon: %s: [server] user %s does not exist\n", cfg->path, cfg->user);
		return 1;
	}
	if (pw->pw_uid == 0) {
		fprintf(err, "pigeon: %s: [server] user %s is root; pigeond refuses to serve as root\n",
			cfg->path, cfg->user);
		return 1;
	}
	if (cfg->group[0] != '\0' && getgrnam(cfg->group) == NULL) {
		fprintf(err, "pigeon: %s: [server] group %s does not exist\n", cfg->path, cfg->group);
		return 1;
	}
	return 0;
}

/* Run as root: can the workers, once they are [server] user, read the
 * passwd-file? (They read it on every login; root reading it proves nothing.) */
static int check_passwd_readable(const struct config *cfg, FILE *err)
{
	uid_t uid;
	gid_t gid;
	if (geteuid() != 0 || config_server_ids(cfg, &uid, &gid) < 0 || uid == 0)
		return 0; /* check_user says what is wrong with them */
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return 0;
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
			_exit(125);
		int fd = open(cfg->passwd_file, O_RDONLY | O_CLOEXEC);
		_exit(fd >= 0 ? 0 : errno == EACCES ? 13 : 0); /* missing: check_passwd says */
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 13) {
		const struct group *gr = getgrgid(gid);
		fprintf(err,
			"pigeon: passwd-file %s: not readable by [server] user %s, so every login "
			"would fail (e.g. chgrp %s and chmod 640 it)\n",
			cfg->passwd_file, cfg->user, gr != NULL ? gr->gr_name : "pigeon");
		return 1;
	}
	return 0;
}

int check_config(const char *path, FILE *out, FILE *err)
{
	struct config cfg;
	char msg[768];
	config_defaults(&cfg);
	if (config_load(&cfg, path, msg, sizeof(msg)) < 0) {
		fprintf(err, "pigeon: %s\n", msg);
		config_free(&cfg);
		return -1;
	}
	unsigned users = 0;
	int problems = check_passwd(cfg.passwd_file, err, &users);
	problems += check_tls(&cfg, err);
	problems += check_user(&cfg, err);
	problems += check_passwd_readable(&cfg, err);
	if (problems == 0)
		fprintf(out, "%s: OK (%u users, %zu POP3 and %zu POP3S listeners, TLS %s)\n", path,
			users, cfg.n_pop3_listen, cfg.n_pop3s_listen,
			config_has_tls(&cfg) ? "on" : "off");
	config_free(&cfg);
	return problems == 0 ? 0 : -1;
}
