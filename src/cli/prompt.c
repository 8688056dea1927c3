/* prompt.c - password input without echo. */
#include "cli/prompt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/bounds.h"
#include "common/xmalloc.h"

static char *read_line(FILE *in)
{
	char line[AUTH_MAX_PASSWORD + 2];
	if (fgets(line, sizeof(line), in) == NULL)
		return NULL;
	size_t n = strlen(line);
	if (n > 0 && line[n - 1] != '\n' && n == sizeof(line) - 1) {
		OPENSSL_cleanse(line, sizeof(line));
		fprintf(stderr, "pigeon: password too long (at most %d octets)\n", AUTH_MAX_PASSWORD);
		return NULL;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	char *s = xstrdup(line);
	OPENSSL_cleanse(line, sizeof(line));
	return s;
}

static char *ask(const char *question)
{
	struct termios old, quiet;
	/* Echo off before the prompt appears, so nothing typed early shows. */
	tcgetattr(STDIN_FILENO, &old);
	quiet = old;
	quiet.c_lflag &= (tcflag_t)~ECHO;
	tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
	fprintf(stderr, "%s", question);
	fflush(stderr);
	char *s = read_line(stdin);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	fprintf(stderr, "\n");
	return s;
}

static void wipe(char *s)
{
	if (s != NULL) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

char *prompt_secret(const char *question, bool confirm)
{
	char *first;
	if (!isatty(STDIN_FILENO)) {
		first = read_line(stdin);
	} else {
		first = ask(question);
		if (first != NULL && confirm) {
			char *again = ask("Again: ");
			if (again == NULL || strcmp(first, again) != 0) {
				fprintf(stderr, "pigeon: the passwords do not match\n");
				wipe(again);
				wipe(first);
				return NULL;
			}
			wipe(again);
		}
	}
	if (first == NULL) {
		fprintf(stderr, "pigeon: no password given\n");
		return NULL;
	}
	if (first[0] == '\0') {
		fprintf(stderr, "pigeon: empty password refused\n");
		wipe(first);
		return NULL;
	}
	return first;
}
