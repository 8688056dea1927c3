/*
 * main.c - the `pigeon` command: administration (user, pw, check) and,
 * later, fetch and deliver.
 *
 *   pigeon user add|passwd|del|list [options] [NAME]
 *   pigeon pw hash [--scheme S]
 *   pigeon check [-c FILE]
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth/passwd_file.h"
#include "auth/password.h"
#include "auth/scram.h"
#include "cli/check.h"
#include "cli/deliver_cmd.h"
#include "cli/passwd_edit.h"
#include "cli/prompt.h"
#include "client/fetch_cmd.h"
#include "common/config.h"
#include "common/xmalloc.h"

#define DEFAULT_CONFIG "/etc/pigeon/pigeon.conf"

/* sysexits(3) */
#define EX_USAGE 64
#define EX_DATAERR 65
#define EX_SOFTWARE 70
#define EX_CANTCREAT 73
#define EX_IOERR 74
#define EX_CONFIG 78

static void usage(FILE *out)
{
	fprintf(out,
		"usage: pigeon COMMAND ...\n"
		"\n"
		"  pigeon user add [--scram] [--uid N] [--gid N] [--home DIR] NAME\n"
		"  pigeon user passwd [--scram] NAME\n"
		"  pigeon user del NAME\n"
		"  pigeon user list\n"
		"        edit the passwd-file named by [auth] passwd_file of the\n"
		"        configuration (-c FILE, default " DEFAULT_CONFIG ") or by -f FILE;\n"
		"        the password is asked on the terminal, or read from stdin\n"
		"  pigeon pw hash [--scheme yescrypt|bcrypt|sha512|sha256|scram]\n"
		"        print the passwd-file form of a password\n"
		"  pigeon check [-c FILE]\n"
		"        check a configuration and the files it names\n"
		"  pigeon deliver [-c FILE] [-f SENDER] [-a RECIPIENT] [-u USER] < message\n"
		"        deliver one message into a user's Maildir (for an MTA)\n"
		"  pigeon fetch [options] [ACCOUNT...]\n"
		"        download mail from POP3 servers (pigeon fetch --help)\n");
}

/* Scheme name -> crypt prefix, or "scram". */
static const char *scheme_prefix(const char *name)
{
	static const struct {
		const char *name, *prefix;
	} schemes[] = {
		{"yescrypt", "$y$"}, {"bcrypt", "$2b$"}, {"sha512", "$6$"},
		{"sha256", "$5$"},   {"scram", "scram"},
	};
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (strcmp(name, schemes[i].name) == 0)
			return schemes[i].prefix;
	return NULL;
}

/* Ask for a password and return its stored form. */
static char *new_password_field(const char *prefix)
{
	char *pw = prompt_secret("New password: ", true);
	if (pw == NULL)
		return NULL;
	char *field = strcmp(prefix, "scram") == 0
			      ? scram_make_record(pw, SCRAM_DEFAULT_ITERATIONS)
			      : password_hash(pw, prefix);
	OPENSSL_cleanse(pw, strlen(pw));
	free(pw);
	if (field == NULL)
		fprintf(stderr, "pigeon: hashing failed\n");
	return field;
}

static char *passwd_path_from(const char *config_path, const char *file)
{
	if (file != NULL)
		return xstrdup(file);
	struct config cfg;
	char err[512];
	config_defaults(&cfg);
	if (config_load(&cfg, config_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "pigeon: %s\n", err);
		config_free(&cfg);
		return NULL;
	}
	char *path = xstrdup(cfg.passwd_file);
	config_free(&cfg);
	return path;
}

/* The group pigeond's workers run as ([server] group, else the primary group
 * of [server] user): a passwd-file root creates must be readable by them. */
static bool server_group(const char *config_path, gid_t *gid)
{
	struct config cfg;
	char err[512];
	uid_t uid;
	config_defaults(&cfg);
	bool ok = config_load(&cfg, config_path, err, sizeof(err)) == 0 &&
		  config_server_ids(&cfg, &uid, gid) == 0;
	config_free(&cfg);
	return ok;
}

static int cmd_user_list(const char *path)
{
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		fprintf(stderr, "pigeon: %s: %s\n", path, strerror(errno));
		return EX_IOERR;
	}
	char line[4096];
	while (fgets(line, sizeof(line), f) != NULL) {
		struct user_record rec;
		const char *why;
		if (passwd_parse_line(line, &rec, &why) != 1)
			continue;
		const char *scheme = rec.password[0] == '{' ? rec.password : "{CRYPT}";
		size_t slen = strcspn(scheme, "}") + 1;
		printf("%s\t%.*s\t%s\n", rec.name, (int)slen, scheme, rec.home);
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(f);
	return 0;
}

static int cmd_user(int argc, char **argv)
{
	static const struct option opts[] = {
		{"scram", no_argument, NULL, 's'}, {"uid", required_argument, NULL, 'u'},
		{"gid", required_argument, NULL, 'g'}, {"home", required_argument, NULL, 'H'},
		{"config", required_argument, NULL, 'c'}, {"file", required_argument, NULL, 'f'},
		{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
	};
	const char *config_path = DEFAULT_CONFIG, *file = NULL, *prefix = "$y$";
	struct passwd_edit edit = {0};
	if (argc < 2) {
		usage(stderr);
		return EX_USAGE;
	}
	const char *sub = argv[1];
	optind = 2;
	int opt;
	while ((opt = getopt_long(argc, argv, "c:f:h", opts, NULL)) != -1) {
		switch (opt) {
		case 's': prefix = "scram"; break;
		case 'u': edit.uid = optarg; break;
		case 'g': edit.gid = optarg; break;
		case 'H': edit.home = optarg; break;
		case 'c': config_path = optarg; break;
		case 'f': file = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EX_USAGE;
		}
	}
	bool list = strcmp(sub, "list") == 0;
	if (list ? optind != argc : optind + 1 != argc) {
		usage(stderr);
		return EX_USAGE;
	}
	if (strcmp(sub, "add") == 0)
		edit.op = PASSWD_ADD;
	else if (strcmp(sub, "passwd") == 0)
		edit.op = PASSWD_SET_PASSWORD;
	else if (strcmp(sub, "del") == 0)
		edit.op = PASSWD_DELETE;
	else if (!list) {
		usage(stderr);
		return EX_USAGE;
	}
	char err[512];
	if (!list) {
		edit.user = argv[optind];
		/* Refuse a bad name before asking for a password. */
		if (passwd_edit_check(&edit, err, sizeof(err)) < 0) {
			fprintf(stderr, "pigeon: %s\n", err);
			return EX_USAGE;
		}
	}
	char *path = passwd_path_from(config_path, file);
	if (path == NULL)
		return EX_CONFIG;
	int rc;
	if (list) {
		rc = cmd_user_list(path);
		free(path);
		return rc;
	}
	char *field = NULL;
	if (edit.op != PASSWD_DELETE) {
		field = new_password_field(prefix);
		if (field == NULL) {
			free(path);
			return EX_DATAERR;
		}
		edit.password_field = field;
	}
	if (geteuid() == 0 && access(path, F_OK) != 0 && server_group(config_path, &edit.group)) {
		edit.set_group = true; /* a new file: root:<server group> 0640 */
	}
	rc = passwd_edit(path, &edit, err, sizeof(err)) == 0 ? 0 : EX_CANTCREAT;
	if (rc != 0)
		fprintf(stderr, "pigeon: %s\n", err);
	if (field != NULL) {
		OPENSSL_cleanse(field, strlen(field));
		free(field);
	}
	free(path);
	return rc;
}

static int cmd_pw(int argc, char **argv)
{
	static const struct option opts[] = {
		{"scheme", required_argument, NULL, 's'}, {NULL, 0, NULL, 0},
	};
	const char *prefix = "$y$";
	if (argc < 2 || strcmp(argv[1], "hash") != 0) {
		usage(stderr);
		return EX_USAGE;
	}
	optind = 2;
	int opt;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt != 's' || (prefix = scheme_prefix(optarg)) == NULL) {
			fprintf(stderr, "pigeon: unknown scheme (yescrypt, bcrypt, sha512, sha256, scram)\n");
			return EX_USAGE;
		}
	}
	char *field = new_password_field(prefix);
	if (field == NULL)
		return EX_DATAERR;
	printf("%s\n", field);
	OPENSSL_cleanse(field, strlen(field));
	free(field);
	return 0;
}

static int cmd_check(int argc, char **argv)
{
	const char *config_path = DEFAULT_CONFIG;
	optind = 1;
	int opt;
	while ((opt = getopt(argc, argv, "c:")) != -1) {
		if (opt != 'c') {
			usage(stderr);
			return EX_USAGE;
		}
		config_path = optarg;
	}
	return check_config(config_path, stdout, stderr) == 0 ? 0 : EX_CONFIG;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EX_USAGE;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "user") == 0)
		return cmd_user(argc - 1, argv + 1);
	if (strcmp(cmd, "pw") == 0)
		return cmd_pw(argc - 1, argv + 1);
	if (strcmp(cmd, "check") == 0)
		return cmd_check(argc - 1, argv + 1);
	if (strcmp(cmd, "deliver") == 0)
		return cmd_deliver(argc - 1, argv + 1);
	if (strcmp(cmd, "fetch") == 0)
		return cmd_fetch(argc - 1, argv + 1);
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
		printf("pigeon %s\n", PIGEON_VERSION);
		return 0;
	}
	fprintf(stderr, "pigeon: unknown command '%s'\n", cmd);
	usage(stderr);
	return EX_USAGE;
}
