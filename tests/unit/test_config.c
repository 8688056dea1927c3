/* test_config.c - pigeond's settings: defaults, parsing of every setting type,
 * and error messages that name the file and line of the first problem. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bounds.h"
#include "common/config.h"

/* Load text over the defaults; returns the loader's result, err filled. */
static int load(struct config *cfg, const char *text, char *err, size_t errlen)
{
	config_defaults(cfg);
	err[0] = '\0';
	return config_load_string(cfg, "t.conf", text, err, errlen);
}

static void load_ok(struct config *cfg, const char *text)
{
	char err[512];
	if (load(cfg, text, err, sizeof(err)) != 0) {
		config_free(cfg);
		fail_msg("config refused: %s", err);
	}
}

/* The text must be refused with an error starting "t.conf:<line>:" and
 * containing each of the words given. */
static void expect_error(const char *text, unsigned line, const char *word1, const char *word2)
{
	struct config cfg;
	char err[512];
	int rc = load(&cfg, text, err, sizeof(err));
	config_free(&cfg);
	if (rc != -1)
		fail_msg("accepted: %s", text);
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "t.conf:%u: ", line);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("error '%s' does not start with '%s'", err, prefix);
	if (word1 != NULL && strstr(err, word1) == NULL)
		fail_msg("error '%s' does not mention '%s'", err, word1);
	if (word2 != NULL && strstr(err, word2) == NULL)
		fail_msg("error '%s' does not mention '%s'", err, word2);
}

static void test_defaults(void **state)
{
	struct config cfg;
	config_defaults(&cfg);
	assert_int_equal(cfg.max_sessions, DEFAULT_MAX_SESSIONS);
	assert_int_equal(cfg.worker_threads, DEFAULT_WORKER_THREADS);
	assert_string_equal(cfg.greeting, "Pigeon POP3 server ready");
	assert_string_equal(cfg.implementation, "");
	assert_int_equal(cfg.preauth_timeout_ms, DEFAULT_PREAUTH_TIMEOUT * 1000);
	assert_int_equal(cfg.idle_timeout_ms, DEFAULT_IDLE_TIMEOUT * 1000);
	assert_true(cfg.idle_timeout_ms >= 600000); /* RFC 1939 §3 */
	assert_int_equal(cfg.send_timeout_ms, DEFAULT_SEND_TIMEOUT * 1000);
	assert_int_equal(cfg.max_bad_commands, DEFAULT_MAX_BAD_COMMANDS);
	assert_int_equal(cfg.login_delay, 0);
	assert_int_equal(cfg.expire, EXPIRE_UNSET);
	assert_true(cfg.outlook_no_nuls);
	assert_string_equal(cfg.passwd_file, "/etc/pigeon/users");
	assert_false(cfg.apop);
	assert_int_equal(cfg.max_auth_failures, DEFAULT_MAX_AUTH_FAILURES);
	assert_int_equal(cfg.failure_delay_ms, DEFAULT_AUTH_FAILURE_DELAY_MS);
	assert_int_equal(cfg.n_trusted_networks, 2); /* loopback, by default */
	assert_string_equal(cfg.mail_location, "");
	assert_true(cfg.mark_seen);
	assert_int_equal(cfg.log_level, LOG_LEVEL_INFO);

	/* loopback only, IPv4 and IPv6, port 110 */
	assert_int_equal(cfg.n_pop3_listen, 2);
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg.pop3_listen[0].ss;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
	assert_int_equal(ntohs(sin->sin_port), 110);
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&cfg.pop3_listen[1].ss;
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_true(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
	assert_int_equal(ntohs(sin6->sin6_port), 110);

	char err[256];
	assert_int_equal(config_validate(&cfg, err, sizeof(err)), 0);
	config_free(&cfg);
}

static void test_empty_text_keeps_defaults(void **state)
{
	struct config cfg;
	load_ok(&cfg, "");
	assert_int_equal(cfg.max_sessions, DEFAULT_MAX_SESSIONS);
	config_free(&cfg);
	load_ok(&cfg, "# only a comment\n\n; another\n[pop3]\n");
	assert_int_equal(cfg.idle_timeout_ms, DEFAULT_IDLE_TIMEOUT * 1000);
	config_free(&cfg);
}

static void test_string_settings(void **state)
{
	struct config cfg;
	load_ok(&cfg, "[pop3]\ngreeting = Hello from Pigeon\nimplementation = Pigeon 0.1\n"
		      "[auth]\npasswd_file = /srv/users\n[mail]\nlocation = /var/mail/%d/%n\n");
	assert_string_equal(cfg.greeting, "Hello from Pigeon");
	assert_string_equal(cfg.implementation, "Pigeon 0.1");
	assert_string_equal(cfg.passwd_file, "/srv/users");
	assert_string_equal(cfg.mail_location, "/var/mail/%d/%n");
	config_free(&cfg);

	/* set twice: the last one wins, nothing leaks */
	load_ok(&cfg, "[pop3]\ngreeting = one\ngreeting = two\n");
	assert_string_equal(cfg.greeting, "two");
	config_free(&cfg);
}

static void test_bool_settings(void **state)
{
	struct config cfg;
	load_ok(&cfg, "[auth]\napop = yes\n[mail]\nmark_seen = no\n[pop3]\noutlook_no_nuls = off\n");
	assert_true(cfg.apop);
	assert_false(cfg.mark_seen);
	assert_false(cfg.outlook_no_nuls);
	config_free(&cfg);
	load_ok(&cfg, "[auth]\napop = TRUE\n[mail]\nmark_seen = 1\n[pop3]\noutlook_no_nuls = On\n");
	assert_true(cfg.apop);
	assert_true(cfg.mark_seen);
	assert_true(cfg.outlook_no_nuls);
	config_free(&cfg);
}

static void test_number_settings(void **state)
{
	struct config cfg;
	load_ok(&cfg, "[server]\nmax_sessions = 1000000\nworker_threads = 64\n"
		      "[pop3]\nmax_bad_commands = 1\nlogin_delay = 300\n[auth]\nmax_failures = 100\n");
	assert_int_equal(cfg.max_sessions, 1000000);
	assert_int_equal(cfg.worker_threads, 64);
	assert_int_equal(cfg.max_bad_commands, 1);
	assert_int_equal(cfg.login_delay, 300);
	assert_int_equal(cfg.max_auth_failures, 100);
	config_free(&cfg);
}

static void test_duration_settings(void **state)
{
	struct config cfg;
	load_ok(&cfg, "[pop3]\nidle_timeout = 15m\npreauth_timeout = 30s\nsend_timeout = 1h\n"
		      "[auth]\nfailure_delay = 500ms\n");
	assert_int_equal(cfg.idle_timeout_ms, 900000);
	assert_int_equal(cfg.preauth_timeout_ms, 30000);
	assert_int_equal(cfg.send_timeout_ms, 3600000);
	assert_int_equal(cfg.failure_delay_ms, 500);
	config_free(&cfg);
	/* the RFC 1939 minimum itself is allowed; a bare number is seconds */
	load_ok(&cfg, "[pop3]\nidle_timeout = 600\n[auth]\nfailure_delay = 0\n");
	assert_int_equal(cfg.idle_timeout_ms, 600000);
	assert_int_equal(cfg.failure_delay_ms, 0);
	config_free(&cfg);
}

static void test_listen_setting(void **state)
{
	struct config cfg;
	load_ok(&cfg, "[server]\npop3_listen = 127.0.0.1:1110, [::1]:1110 *:995\n");
	assert_int_equal(cfg.n_pop3_listen, 3);
	const struct sockaddr_in *a0 = (const struct sockaddr_in *)&cfg.pop3_listen[0].ss;
	const struct sockaddr_in6 *a1 = (const struct sockaddr_in6 *)&cfg.pop3_listen[1].ss;
	const struct sockaddr_in *a2 = (const struct sockaddr_in *)&cfg.pop3_listen[2].ss;
	assert_int_equal(a0->sin_family, AF_INET);
	assert_int_equal(ntohs(a0->sin_port), 1110);
	assert_int_equal(a1->sin6_family, AF_INET6);
	assert_int_equal(ntohs(a1->sin6_port), 1110);
	assert_int_equal(a2->sin_family, AF_INET);
	assert_int_equal(a2->sin_addr.s_addr, htonl(INADDR_ANY));
	assert_int_equal(ntohs(a2->sin_port), 995);
	config_free(&cfg);
}

static void test_networks_setting(void **state)
{
	struct config cfg;
	load_ok(&cfg, "[auth]\ntrusted_networks = 10.0.0.0/8 192.168.0.0/16,::1\n");
	assert_int_equal(cfg.n_trusted_networks, 3);
	assert_int_equal(cfg.trusted_networks[0].family, AF_INET);
	assert_int_equal(cfg.trusted_networks[0].bits, 8);
	assert_int_equal(cfg.trusted_networks[1].bits, 16);
	assert_int_equal(cfg.trusted_networks[2].family, AF_INET6);
	assert_int_equal(cfg.trusted_networks[2].bits, 128);
	config_free(&cfg);

	/* set twice: replaced, not appended */
	load_ok(&cfg, "[auth]\ntrusted_networks = 10.0.0.0/8\ntrusted_networks = 172.16.0.0/12\n");
	assert_int_equal(cfg.n_trusted_networks, 1);
	assert_int_equal(cfg.trusted_networks[0].bits, 12);
	config_free(&cfg);
}

static void test_log_level_and_expire_settings(void **state)
{
	struct config cfg;
	load_ok(&cfg, "[log]\nlevel = debug\n[pop3]\nexpire = never\n");
	assert_int_equal(cfg.log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(cfg.expire, EXPIRE_NEVER);
	config_free(&cfg);
	load_ok(&cfg, "[log]\nlevel = error\n[pop3]\nexpire = 30\n");
	assert_int_equal(cfg.log_level, LOG_LEVEL_ERROR);
	assert_int_equal(cfg.expire, 30);
	config_free(&cfg);
	load_ok(&cfg, "[pop3]\nexpire = 0\n");
	assert_int_equal(cfg.expire, 0);
	config_free(&cfg);
	load_ok(&cfg, "[pop3]\nexpire = 30\nexpire = none\n");
	assert_int_equal(cfg.expire, EXPIRE_UNSET);
	config_free(&cfg);
	expect_error("[pop3]\nexpire = soon\n", 2, "expire", "soon");
	expect_error("[pop3]\nexpire = -1\n", 2, "expire", NULL);
	expect_error("[log]\nlevel = loud\n", 2, "level", "loud");
}

static void test_idle_timeout_below_rfc_minimum_names_file_line_and_minimum(void **state)
{
	expect_error("[pop3]\nidle_timeout = 5s\n", 2, "idle_timeout", "600000");
	expect_error("[pop3]\nidle_timeout = 599999ms\n", 2, "idle_timeout", "600000");
}

static void test_duration_errors(void **state)
{
	expect_error("[pop3]\npreauth_timeout = soon\n", 2, "preauth_timeout", "soon");
	expect_error("[pop3]\nsend_timeout = 2d\n", 2, "send_timeout", NULL);
	expect_error("[auth]\nfailure_delay = 61s\n", 2, "failure_delay", NULL);
}

static void test_unknown_setting(void **state)
{
	expect_error("[pop3]\ngreting = hi\n", 2, "greting", "pop3");
}

static void test_unknown_section(void **state)
{
	/* The section header itself is the problem, so its line is named. */
	expect_error("[pop4]\ngreeting = hi\n", 1, "pop4", NULL);
}

static void test_setting_outside_a_section(void **state)
{
	expect_error("greeting = hi\n", 1, "greeting", "section");
}

static void test_bad_bool(void **state)
{
	expect_error("[auth]\napop = maybe\n", 2, "apop", "maybe");
	expect_error("[mail]\nmark_seen =\n", 2, "mark_seen", NULL);
}

static void test_bad_number(void **state)
{
	expect_error("[server]\nmax_sessions = 12abc\n", 2, "max_sessions", "12abc");
	expect_error("[server]\nmax_sessions = 0\n", 2, "max_sessions", NULL);
	expect_error("[server]\nmax_sessions = -1\n", 2, "max_sessions", NULL);
	expect_error("[server]\nmax_sessions = 1000001\n", 2, "max_sessions", NULL);
	expect_error("[server]\nmax_sessions = 99999999999999999999999\n", 2, "max_sessions", NULL);
	expect_error("[server]\nworker_threads = 65\n", 2, "worker_threads", NULL);
	/* 2^32 + 4 must not wrap around to a valid unsigned */
	expect_error("[server]\nworker_threads = 4294967300\n", 2, "worker_threads", NULL);
}

static void test_bad_listen_address(void **state)
{
	expect_error("[server]\npop3_listen = 127.0.0.1:\n", 2, "pop3_listen", "127.0.0.1:");
	expect_error("[server]\npop3_listen = ::1\n", 2, "pop3_listen", "::1");
	expect_error("[server]\npop3_listen = 127.0.0.1:110 [::1]:70000\n", 2, "[::1]:70000", NULL);
	expect_error("[server]\npop3_listen = localhost:110\n", 2, "localhost", NULL);
}

/* Without a port, each listener gets its protocol's standard one. */
static void test_listen_without_port_gets_the_standard_port(void **state)
{
	struct config cfg;
	char err[256];
	assert_int_equal(load(&cfg,
			      "[server]\npop3_listen = 127.0.0.1\npop3s_listen = [::1]\n"
			      "[tls]\ncert = /c.pem\nkey = /k.pem\n[lmtp]\nlisten = 127.0.0.1\n",
			      err, sizeof(err)),
			 0);
	assert_int_equal(ntohs(((struct sockaddr_in *)&cfg.pop3_listen[0].ss)->sin_port), 110);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&cfg.pop3s_listen[0].ss)->sin6_port), 995);
	assert_int_equal(ntohs(((struct sockaddr_in *)&cfg.lmtp_listen[0].ss)->sin_port), 24);
	config_free(&cfg);
}

/* Cipher lists are checked where their line is known. */
static void test_bad_cipher_lists_name_their_line(void **state)
{
	expect_error("[tls]\nciphers = NO-SUCH-CIPHER\n", 2, "ciphers", "NO-SUCH-CIPHER");
	expect_error("[tls]\n\nciphersuites = TLS_NOPE\n", 3, "ciphersuites", "TLS_NOPE");
	struct config cfg;
	char err[256];
	assert_int_equal(load(&cfg, "[tls]\nciphers = ECDHE+AESGCM\n"
				    "ciphersuites = TLS_AES_128_GCM_SHA256\n", err, sizeof(err)), 0);
	assert_string_equal(cfg.tls_ciphers, "ECDHE+AESGCM");
	config_free(&cfg);
}

/* pigeond runs from / in the background and reloads from there. */
static void test_relative_paths_refused(void **state)
{
	expect_error("[auth]\npasswd_file = etc/users\n", 2, "passwd_file", "absolute");
	expect_error("[tls]\ncert = cert.pem\nkey = /k.pem\n", 2, "cert", "absolute");
	expect_error("[tls]\ncert = /c.pem\nkey = /k.pem\n[tls:mail.example.org]\n"
		     "cert = c2.pem\n",
		     5, "cert", "absolute");
}

static void test_empty_listen_list_refused(void **state)
{
	struct config cfg;
	char err[256];
	assert_int_equal(load(&cfg, "[server]\npop3_listen =\n", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "pop3_listen"));
	config_free(&cfg);
}

static void test_bad_network_prefix(void **state)
{
	expect_error("[auth]\ntrusted_networks = 10.0.0.0/33\n", 2, "10.0.0.0/33", NULL);
	expect_error("[auth]\ntrusted_networks = 10.0.0.0/8 example.org\n", 2, "example.org", NULL);
}

static void test_too_many_list_entries(void **state)
{
	char text[2048];
	int n = snprintf(text, sizeof(text), "[auth]\ntrusted_networks =");
	for (int i = 0; i < 65; i++)
		n += snprintf(text + n, sizeof(text) - (size_t)n, " 10.%d.0.0/16", i);
	snprintf(text + n, sizeof(text) - (size_t)n, "\n");
	expect_error(text, 2, "trusted_networks", NULL);
}

static void test_syntax_error(void **state)
{
	expect_error("[pop3]\nthis line has no equals sign\n", 2, "syntax", NULL);
	expect_error("[pop3]\ngreeting = x\n[broken\n", 3, NULL, NULL);
}

static void test_error_line_counts_comments_and_blank_lines(void **state)
{
	expect_error("# comment\n\n[server]\n; another\n\nmax_sessions = 5\nmax_sessions = x\n", 7,
		     "max_sessions", NULL);
}

static void test_first_problem_is_reported(void **state)
{
	expect_error("[pop3]\nfoo = 1\nbar = 2\n", 2, "foo", NULL);
	expect_error("[pop3]\nidle_timeout = 5s\ngreeting = <x>\nfoo = 1\n", 2, "idle_timeout", NULL);
}

static void test_syntax_error_before_a_bad_setting_is_the_first_problem(void **state)
{
	expect_error("[pop3]\nno equals sign here\nidle_timeout = 5s\n", 2, "syntax", NULL);
	expect_error("[pop3\ngreeting = x\n", 1, NULL, NULL);
}

static void test_overlong_line_refused_with_its_line_number(void **state)
{
	static char text[3 * CONFIG_MAX_LINE];
	size_t len = 2 * CONFIG_MAX_LINE;
	int n = snprintf(text, sizeof(text), "[pop3]\ngreeting = ");
	memset(text + n, 'g', len);
	snprintf(text + n + len, sizeof(text) - (size_t)n - len, "\nidle_timeout = 15m\n");
	expect_error(text, 2, "too long", NULL);
}

/* A trusted_networks line of about 800 characters, under CONFIG_MAX_LINE. */
static void long_networks_text(char *text, size_t size)
{
	int n = snprintf(text, size, "[auth]\ntrusted_networks =");
	for (int i = 0; i < 50; i++)
		n += snprintf(text + n, size - (size_t)n, " 192.168.%d.0/24", 100 + i);
	snprintf(text + n, size - (size_t)n, "\n");
	assert_true(strlen(text) - 8 < CONFIG_MAX_LINE);
	assert_true(strlen(text) - 8 > 512);
}

static void test_line_within_config_max_line_is_accepted(void **state)
{
	/* bounds.h: CONFIG_MAX_LINE is the longest line a file may hold. A long
	 * trusted_networks list is the realistic case. */
	char text[CONFIG_MAX_LINE + 64];
	long_networks_text(text, sizeof(text));
	struct config cfg;
	load_ok(&cfg, text);
	assert_int_equal(cfg.n_trusted_networks, 50);
	config_free(&cfg);
}

static void test_greeting_must_not_hold_angle_brackets(void **state)
{
	struct config cfg;
	char err[256];
	assert_int_equal(load(&cfg, "[pop3]\ngreeting = hi <there>\n", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "greeting"));
	config_free(&cfg);
}

static void test_relative_mail_location_refused(void **state)
{
	struct config cfg;
	char err[256];
	assert_int_equal(load(&cfg, "[mail]\nlocation = Maildir\n", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "location"));
	config_free(&cfg);
	load_ok(&cfg, "[mail]\nlocation = %h/Maildir\n");
	config_free(&cfg);
}

/* ---- files ----------------------------------------------------------- */

struct tmpfile {
	char dir[64];
	char path[128];
};

static void write_tmp(struct tmpfile *t, const char *text)
{
	snprintf(t->dir, sizeof(t->dir), "/tmp/pigeon-config-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->path, sizeof(t->path), "%s/pigeon.conf", t->dir);
	FILE *f = fopen(t->path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void remove_tmp(struct tmpfile *t)
{
	unlink(t->path);
	rmdir(t->dir);
}

static void test_load_file(void **state)
{
	struct tmpfile t;
	write_tmp(&t, "[server]\npop3_listen = 127.0.0.1:1110\n\n[pop3]\nidle_timeout = 20m\n"
		      "[auth]\napop = yes\ntrusted_networks = 127.0.0.0/8\n[log]\nlevel = warning\n");
	struct config cfg;
	char err[512] = "";
	config_defaults(&cfg);
	int rc = config_load(&cfg, t.path, err, sizeof(err));
	remove_tmp(&t);
	if (rc != 0) {
		config_free(&cfg);
		fail_msg("refused: %s", err);
	}
	assert_int_equal(cfg.n_pop3_listen, 1);
	assert_int_equal(cfg.idle_timeout_ms, 1200000);
	assert_true(cfg.apop);
	assert_int_equal(cfg.n_trusted_networks, 1);
	assert_int_equal(cfg.log_level, LOG_LEVEL_WARNING);
	assert_non_null(cfg.path);
	config_free(&cfg);
}

static void test_load_file_error_names_file_and_line(void **state)
{
	struct tmpfile t;
	write_tmp(&t, "[pop3]\n\nidle_timeout = 5s\n");
	struct config cfg;
	char err[512] = "";
	config_defaults(&cfg);
	int rc = config_load(&cfg, t.path, err, sizeof(err));
	char prefix[160];
	snprintf(prefix, sizeof(prefix), "%s:3: ", t.path);
	remove_tmp(&t);
	config_free(&cfg);
	assert_int_equal(rc, -1);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("error '%s' does not start with '%s'", err, prefix);
	assert_non_null(strstr(err, "600000"));
}

static void test_load_file_line_within_config_max_line_is_accepted(void **state)
{
	char text[CONFIG_MAX_LINE + 64];
	long_networks_text(text, sizeof(text));
	struct tmpfile t;
	write_tmp(&t, text);
	struct config cfg;
	char err[512] = "";
	config_defaults(&cfg);
	int rc = config_load(&cfg, t.path, err, sizeof(err));
	remove_tmp(&t);
	size_t n = cfg.n_trusted_networks;
	config_free(&cfg);
	if (rc != 0)
		fail_msg("refused: %s", err);
	assert_int_equal(n, 50);
}

static void test_load_file_overlong_line(void **state)
{
	static char text[3 * CONFIG_MAX_LINE];
	size_t len = 2 * CONFIG_MAX_LINE;
	int n = snprintf(text, sizeof(text), "[pop3]\ngreeting = ");
	memset(text + n, 'g', len);
	snprintf(text + n + len, sizeof(text) - (size_t)n - len, "\n");
	struct tmpfile t;
	write_tmp(&t, text);
	struct config cfg;
	char err[512] = "";
	config_defaults(&cfg);
	int rc = config_load(&cfg, t.path, err, sizeof(err));
	char prefix[160];
	snprintf(prefix, sizeof(prefix), "%s:2: ", t.path);
	remove_tmp(&t);
	config_free(&cfg);
	assert_int_equal(rc, -1);
	if (strncmp(err, prefix, strlen(prefix)) != 0)
		fail_msg("error '%s' does not start with '%s'", err, prefix);
	assert_non_null(strstr(err, "too long"));
}

static void test_load_missing_file_names_it(void **state)
{
	struct config cfg;
	char err[512] = "";
	config_defaults(&cfg);
	assert_int_equal(config_load(&cfg, "/nonexistent/pigeon-test.conf", err, sizeof(err)), -1);
	assert_true(strncmp(err, "/nonexistent/pigeon-test.conf:", 30) == 0);
	config_free(&cfg);
}

/* A SIGHUP reload after the daemon moved to / must find the same file. */
static void test_load_remembers_an_absolute_path(void **state)
{
	char name[] = "pigeon-test-rel-XXXXXX";
	int fd = mkstemp(name);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "[pop3]\nlogin_delay = 5\n", 23), 23);
	close(fd);
	struct config cfg;
	char err[512] = "";
	config_defaults(&cfg);
	int rc = config_load(&cfg, name, err, sizeof(err));
	unlink(name);
	if (rc != 0)
		fail_msg("%s", err);
	assert_int_equal(cfg.path[0], '/');
	assert_non_null(strstr(cfg.path, name));
	config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_empty_text_keeps_defaults),
		cmocka_unit_test(test_string_settings),
		cmocka_unit_test(test_bool_settings),
		cmocka_unit_test(test_number_settings),
		cmocka_unit_test(test_duration_settings),
		cmocka_unit_test(test_listen_setting),
		cmocka_unit_test(test_networks_setting),
		cmocka_unit_test(test_log_level_and_expire_settings),
		cmocka_unit_test(test_idle_timeout_below_rfc_minimum_names_file_line_and_minimum),
		cmocka_unit_test(test_duration_errors),
		cmocka_unit_test(test_unknown_setting),
		cmocka_unit_test(test_unknown_section),
		cmocka_unit_test(test_setting_outside_a_section),
		cmocka_unit_test(test_bad_bool),
		cmocka_unit_test(test_bad_number),
		cmocka_unit_test(test_bad_listen_address),
		cmocka_unit_test(test_listen_without_port_gets_the_standard_port),
		cmocka_unit_test(test_relative_paths_refused),
		cmocka_unit_test(test_bad_cipher_lists_name_their_line),
		cmocka_unit_test(test_empty_listen_list_refused),
		cmocka_unit_test(test_bad_network_prefix),
		cmocka_unit_test(test_too_many_list_entries),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_error_line_counts_comments_and_blank_lines),
		cmocka_unit_test(test_first_problem_is_reported),
		cmocka_unit_test(test_syntax_error_before_a_bad_setting_is_the_first_problem),
		cmocka_unit_test(test_overlong_line_refused_with_its_line_number),
		cmocka_unit_test(test_line_within_config_max_line_is_accepted),
		cmocka_unit_test(test_greeting_must_not_hold_angle_brackets),
		cmocka_unit_test(test_relative_mail_location_refused),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_load_file_error_names_file_and_line),
		cmocka_unit_test(test_load_file_line_within_config_max_line_is_accepted),
		cmocka_unit_test(test_load_file_overlong_line),
		cmocka_unit_test(test_load_missing_file_names_it),
		cmocka_unit_test(test_load_remembers_an_absolute_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
