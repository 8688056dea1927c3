/*
 * fetch_cmd.c - pigeon fetch [options] [ACCOUNT...]
 *
 * Runs every account (or the ones named), prints one summary line each
 * (or JSON), and exits with the worst status (docs/fetch.md).
 */
#include "client/fetch_cmd.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client/account.h"
#include "client/fetch.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/xmalloc.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: pigeon fetch [options] [ACCOUNT...]\n"
		"  -c, --config FILE     accounts (default $XDG_CONFIG_HOME/pigeon/fetch.conf)\n"
		"      --check           report what waits on the server, download nothing\n"
		"      --probe           show greeting, CAPA, TLS and certificates; log in to nothing\n"
		"      --keep / --delete leave messages on the server, or delete them after download\n"
		"      --max-size SIZE   skip larger messages (see max_size_action)\n"
		"      --destination D   maildir:PATH, mbox:PATH, mda:COMMAND or lmtp:ADDRESS\n"
		"      --json            one JSON summary line per account\n"
		"      --exit-nothing-new  exit 1 when no account had new mail\n"
		"  -v, --verbose         show the protocol dialogue (secrets hidden)\n"
		"  -q, --quiet           print errors only\n"
		"exit: 0 done, 1 nothing new (with --exit-nothing-new), 75 temporary failure,\n"
		"      69 refused by the server, 70 internal error, 77 login refused,\n"
		"      78 configuration, 130 interrupted (Ctrl-C)\n");
}

/*
 * Ctrl-C once: ask for no more messages; what is on its way is received and
 * committed, the DELEs sent, QUIT. Twice: give up the transfer in progress
 * (reads and writes stop, the message being received is discarded, nothing
 * more is deleted, no QUIT). A third time: exit at once. SA_RESTART is not
 * set, so a blocking read is interrupted and the flags seen (net.c).
 */
static void on_sigint(int sig)
{
	(void)sig;
	if (fetch_aborted)
		_exit(130);
	if (fetch_interrupted)
		fetch_aborted = 1;
	fetch_interrupted = 1;
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void report(const struct account *a, const struct fetch_result *r, bool json, bool quiet,
		   bool check)
{
	if (json) {
		printf("{\"account\":");
		json_string(a->name);
		printf(",\"status\":%d,\"listed\":%u,\"new\":%u,\"new_bytes\":%llu,\"fetched\":%u,"
		       "\"bytes\":%llu,\"deleted\":%u,\"skipped\":%u,\"failed\":%u,\"sessions\":%u,"
		       "\"seconds\":%.3f,\"error\":",
		       r->status, r->listed, r->waiting, (unsigned long long)r->waiting_bytes,
		       r->fetched, (unsigned long long)r->bytes, r->deleted, r->skipped, r->failed,
		       r->sessions, r->seconds);
		if (r->status != FETCH_OK)
			json_string(r->message);
		else
			printf("null");
		printf("}\n");
		fflush(stdout);
		return;
	}
	if (r->status != FETCH_OK)
		fprintf(stderr, "[%s] error: %s\n", a->name, r->message);
	if (quiet || (r->status != FETCH_OK && r->fetched == 0))
		return;
	if (check)
		printf("[%s] %u new messages (%.1f MB) waiting, %u on the server\n", a->name,
		       r->waiting, (double)r->waiting_bytes / 1e6, r->listed);
	else if (r->fetched == 0 && r->deleted == 0 && r->status == FETCH_OK)
		printf("[%s] nothing new%s\n", a->name, r->skipped ? " (some skipped)" : "");
	else if (r->status == FETCH_OK || r->fetched > 0)
		printf("[%s] %u messages (%.1f MB) fetched, %u deleted, %u skipped, %u failed, "
		       "%.1fs\n",
		       a->name, r->fetched, (double)r->bytes / 1e6, r->deleted, r->skipped, r->failed,
		       r->seconds);
}

int cmd_fetch(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'C'},
		{"probe", no_argument, NULL, 'P'},       {"keep", no_argument, NULL, 'k'},
		{"delete", no_argument, NULL, 'D'},      {"max-size", required_argument, NULL, 'm'},
		{"destination", required_argument, NULL, 'd'}, {"json", no_argument, NULL, 'j'},
		{"exit-nothing-new", no_argument, NULL, 'n'}, {"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},       {"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	char *config = NULL;
	const char *max_size = NULL, *destination = NULL;
	int keep = -1;
	bool json = false, nothing_new = false;
	struct fetch_options o = {0};
	optind = 1;
	int opt;
	while ((opt = getopt_long(argc, argv, "c:vqh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': free(config); config = xstrdup(optarg); break;
		case 'C': o.check = true; break;
		case 'P': o.probe = true; break;
		case 'k': keep = 1; break;
		case 'D': keep = 0; break;
		case 'm': max_size = optarg; break;
		case 'd': destination = optarg; break;
		case 'j': json = true; break;
		case 'n': nothing_new = true; break;
		case 'v': o.verbose = true; break;
		case 'q': o.quiet = true; break;
		case 'h': usage(stdout); free(config); return 0;
		default: usage(stderr); free(config); return FETCH_USAGE;
		}
	}
	log_init("pigeon-fetch", true, LOG_LEVEL_WARNING);
	if (config == NULL)
		config = accounts_default_path();
	struct account_list list;
	char err[1024];
	if (accounts_load(config, &list, err, sizeof(err)) < 0) {
		fprintf(stderr, "pigeon fetch: %s\n", err);
		accounts_free(&list);
		free(config);
		return FETCH_CONFIG;
	}
	free(config);
	for (int i = optind; i < argc; i++) {
		bool found = false;
		for (size_t j = 0; j < list.n; j++)
			found = found || strcmp(list.items[j].name, argv[i]) == 0;
		if (!found) {
			fprintf(stderr, "pigeon fetch: no account [%s] in %s\n", argv[i], list.path);
			accounts_free(&list);
			return FETCH_CONFIG;
		}
	}
	/* Command-line flags override the file. */
	for (size_t j = 0; j < list.n; j++) {
		struct account *a = &list.items[j];
		if (keep >= 0) {
			a->keep = keep == 1;
			if (!a->keep)
				a->delete_after_s = 0;
		}
		if (max_size != NULL && parse_size(max_size, &a->max_size) < 0) {
			fprintf(stderr, "pigeon fetch: --max-size: not a size: %s\n", max_size);
			accounts_free(&list);
			return FETCH_USAGE;
		}
		if (destination != NULL) {
			static const char *const kinds[] = {"maildir:", "mbox:", "mda:", "lmtp:"};
			int k = -1;
			for (int i = 0; i < 4; i++)
				if (strncmp(destination, kinds[i], strlen(kinds[i])) == 0)
					k = i;
			if (k < 0) {
				fprintf(stderr, "pigeon fetch: --destination: maildir:, mbox:, mda: or lmtp:\n");
				accounts_free(&list);
				return FETCH_USAGE;
			}
			a->dest = (enum account_dest)k;
			free(a->dest_arg);
			a->dest_arg = k <= 1 ? expand_home(destination + strlen(kinds[k]))
					     : xstrdup(destination + strlen(kinds[k]));
		}
	}
	o.progress = isatty(STDERR_FILENO) && !o.quiet && !o.verbose && !json && !o.probe;
	struct sigaction sa = {.sa_handler = on_sigint};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	enum fetch_status worst = FETCH_OK;
	bool any_new = false;
	for (size_t j = 0; j < list.n && !fetch_interrupted; j++) {
		struct account *a = &list.items[j];
		bool named = optind == argc;
		for (int i = optind; i < argc; i++)
			named = named || strcmp(a->name, argv[i]) == 0;
		if (!named)
			continue;
		struct fetch_result r;
		fetch_account(a, &o, &r);
		if (!o.probe || r.status != FETCH_OK)
			report(a, &r, json, o.quiet, o.check);
		worst = fetch_worst(worst, r.status);
		any_new = any_new || r.fetched > 0 || (o.check && r.waiting > 0);
	}
	accounts_free(&list);
	if (fetch_interrupted)
		return 130;
	if (worst == FETCH_OK && nothing_new && !any_new)
		return FETCH_NOTHING;
	return worst;
}
