/*
 * main.c - pigeond: read the configuration, then hand over to the master
 * process (master.c), which opens the listeners and runs the workers.
 *
 *   pigeond [-f] [-c FILE]
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/config.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "server/master.h"

#define DEFAULT_CONFIG "/etc/pigeon/pigeon.conf"

static void usage(FILE *out)
{
	fprintf(out, "usage: pigeond [-f] [-c FILE]\n"
		     "  -c FILE  configuration file (default " DEFAULT_CONFIG ")\n"
		     "  -f       stay in the foreground and log to stderr\n"
		     "  -V       print the version\n"
		     "signals: TERM/INT stop (open sessions are dropped, nothing is deleted);\n"
		     "         HUP reloads the configuration and certificates without\n"
		     "         dropping open sessions\n");
}

int main(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG;
	bool foreground = false;
	int opt;
	while ((opt = getopt(argc, argv, "c:fhV")) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 'V':
			printf("pigeond %s\n", PIGEON_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	struct config *cfg = xcalloc(1, sizeof(*cfg));
	char err[768];
	config_defaults(cfg);
	if (config_load(cfg, config_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "pigeond: %s\n", err);
		config_free(cfg);
		free(cfg);
		return 78; /* EX_CONFIG */
	}
	log_init("pigeond", true, cfg->log_level);
	return master_run(cfg, foreground);
}
