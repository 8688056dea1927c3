/* secret.c - where pigeon fetch gets passwords and tokens from. */
#include "client/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli/prompt.h"
#include "common/xmalloc.h"

void secret_free(char *s)
{
	if (s != NULL) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* Run the command; its first line of output is the secret. The command line
 * is the administrator's; the secret travels through a pipe, never argv. */
static char *from_command(const char *cmd, char *why, size_t whylen)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		snprintf(why, whylen, "password_command: pipe: %s", strerror(errno));
		return NULL;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, whylen, "password_command: fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return NULL;
	}
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		signal(SIGPIPE, SIG_DFL);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	char buf[16384];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(buf) - 1 && (n = read(fds[0], buf + len, sizeof(buf) - 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		len += (size_t)n;
	}
	close(fds[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	buf[len] = '\0';
	buf[strcspn(buf, "\r\n")] = '\0';
	char *s = NULL;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		snprintf(why, whylen, "password_command failed (exit status %d)",
			 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	else if (buf[0] == '\0')
		snprintf(why, whylen, "password_command printed nothing");
	else
		s = xstrdup(buf);
	OPENSSL_cleanse(buf, sizeof(buf));
	return s;
}

/* ~/.netrc: "machine HOST login USER password PASS" (or "default"). */
static char *from_netrc(const struct account *a)
{
	char *path = expand_home("~/.netrc");
	FILE *f = fopen(path, "re");
	free(path);
	if (f == NULL)
		return NULL;
	char tok[1024], machine[256] = "", login[256] = "";
	char *found = NULL;
	bool in_default = false;
	while (found == NULL && fscanf(f, "%1023s", tok) == 1) {
		if (strcmp(tok, "machine") == 0 && fscanf(f, "%255s", machine) == 1) {
			in_default = false;
			login[0] = '\0';
		} else if (strcmp(tok, "default") == 0) {
			in_default = true;
			machine[0] = login[0] = '\0';
		} else if (strcmp(tok, "login") == 0) {
			if (fscanf(f, "%255s", login) != 1)
				break;
		} else if (strcmp(tok, "password") == 0) {
			char pw[1024];
			if (fscanf(f, "%1023s", pw) != 1)
				break;
			if ((in_default || strcmp(machine, a->host) == 0) &&
			    (login[0] == '\0' || strcmp(login, a->user) == 0))
				found = xstrdup(pw);
			OPENSSL_cleanse(pw, sizeof(pw));
		}
	}
	fclose(f);
	return found;
}

char *secret_get(const struct account *a, char *why, size_t whylen)
{
	if (a->password_command != NULL)
		return from_command(a->password_command, why, whylen);
	if (a->password != NULL)
		return xstrdup(a->password);
	char *s = from_netrc(a);
	if (s != NULL)
		return s;
	if (isatty(STDIN_FILENO)) {
		char question[512];
		snprintf(question, sizeof(question), "Password for %s@%s: ", a->user, a->host);
		s = prompt_secret(question, false);
		if (s == NULL)
			snprintf(why, whylen, "no password given");
		return s;
	}
	snprintf(why, whylen, "[%s] has no password: set password_command, add it to ~/.netrc, or "
			      "run on a terminal",
		 a->name);
	return NULL;
}
