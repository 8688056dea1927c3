/* test_scram.c - SCRAM-SHA-256 (RFC 5802, RFC 7677): the key arithmetic of
 * scram.c against the RFC 7677 §3 test vector, the stored-record format, and
 * the server mechanism of sasl.c driven step by step (nonces, proofs, the
 * channel-binding flag and data, saslname escapes). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth/sasl.h"
#include "auth/scram.h"
#include "common/base64.h"
#include "common/buf.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- RFC 7677 §3 ------------------------------------------------------ */

#define RFC_USER "user"
#define RFC_PASSWORD "pencil"
#define RFC_CNONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_NONCE RFC_CNONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_ITER 4096
#define RFC_PROOF "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SIGNATURE "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
#define RFC_CLIENT_FIRST_BARE "n=" RFC_USER ",r=" RFC_CNONCE
#define RFC_SERVER_FIRST "r=" RFC_NONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CLIENT_FINAL_NO_PROOF "c=biws,r=" RFC_NONCE
#define RFC_AUTH_MESSAGE RFC_CLIENT_FIRST_BARE "," RFC_SERVER_FIRST "," RFC_CLIENT_FINAL_NO_PROOF

/* Decode base64 into out (at most max octets); returns the length. */
static size_t unb64(const char *text, size_t textlen, unsigned char *out, size_t max)
{
	struct buf b = BUF_INIT;
	assert_int_equal(base64_decode(text, textlen, &b), 0);
	assert_true(b.len <= max);
	if (b.len > 0)
		memcpy(out, b.data, b.len);
	size_t n = b.len;
	buf_free(&b);
	return n;
}

/* base64 of data as a malloc'd string. */
static char *b64(const void *data, size_t len)
{
	struct buf b = BUF_INIT;
	base64_encode(data, len, &b);
	buf_append_byte(&b, '\0'); /* also for len == 0 */
	return b.data;
}

static size_t rfc_salt(unsigned char salt[SCRAM_MAX_SALT])
{
	return unb64(S(RFC_SALT), salt, SCRAM_MAX_SALT);
}

static void rfc_record(struct scram_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	rec->salt_len = rfc_salt(rec->salt);
	rec->iterations = RFC_ITER;
	assert_int_equal(scram_derive(RFC_PASSWORD, rec->salt, rec->salt_len, rec->iterations,
				      rec->stored_key, rec->server_key),
			 0);
}

static void test_rfc7677_client_proof_and_server_signature(void **state)
{
	unsigned char salt[SCRAM_MAX_SALT], proof[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN];
	size_t salt_len = rfc_salt(salt);
	assert_int_equal(salt_len, 16);
	assert_int_equal(scram_client_proof(RFC_PASSWORD, salt, salt_len, RFC_ITER,
					    S(RFC_AUTH_MESSAGE), proof, sig),
			 0);
	char *p = b64(proof, sizeof(proof)), *v = b64(sig, sizeof(sig));
	assert_string_equal(p, RFC_PROOF);
	assert_string_equal(v, RFC_SIGNATURE);
	free(p);
	free(v);
}

static void test_rfc7677_server_accepts_the_proof(void **state)
{
	struct scram_record rec;
	unsigned char proof[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN];
	rfc_record(&rec);
	assert_int_equal(unb64(S(RFC_PROOF), proof, sizeof(proof)), SCRAM_KEY_LEN);
	memset(sig, 0, sizeof(sig));
	assert_true(scram_verify_proof(&rec, S(RFC_AUTH_MESSAGE), proof, sizeof(proof), sig));
	char *v = b64(sig, sizeof(sig));
	assert_string_equal(v, RFC_SIGNATURE);
	free(v);
}

static void test_rfc7677_server_rejects_modified_proofs(void **state)
{
	struct scram_record rec;
	unsigned char proof[SCRAM_KEY_LEN], bad[SCRAM_KEY_LEN + 1], sig[SCRAM_KEY_LEN];
	rfc_record(&rec);
	unb64(S(RFC_PROOF), proof, sizeof(proof));
	/* every single flipped bit position class: first, middle, last octet */
	const size_t where[] = {0, 15, SCRAM_KEY_LEN - 1};
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++) {
		memcpy(bad, proof, sizeof(proof));
		bad[where[i]] ^= 0x01;
		assert_false(scram_verify_proof(&rec, S(RFC_AUTH_MESSAGE), bad, SCRAM_KEY_LEN, sig));
	}
	/* wrong length */
	assert_false(scram_verify_proof(&rec, S(RFC_AUTH_MESSAGE), proof, SCRAM_KEY_LEN - 1, sig));
	memcpy(bad, proof, sizeof(proof));
	bad[SCRAM_KEY_LEN] = 0;
	assert_false(scram_verify_proof(&rec, S(RFC_AUTH_MESSAGE), bad, SCRAM_KEY_LEN + 1, sig));
	/* the right proof for another AuthMessage */
	assert_false(scram_verify_proof(&rec, S(RFC_AUTH_MESSAGE "x"), proof, SCRAM_KEY_LEN, sig));
	/* keys of another password */
	struct scram_record other = rec;
	assert_int_equal(scram_derive("pencil2", other.salt, other.salt_len, other.iterations,
				      other.stored_key, other.server_key),
			 0);
	assert_false(scram_verify_proof(&other, S(RFC_AUTH_MESSAGE), proof, SCRAM_KEY_LEN, sig));
}

static void test_derive_depends_on_salt_and_iterations(void **state)
{
	struct scram_record rec;
	unsigned char stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
	rfc_record(&rec);
	assert_int_equal(scram_derive(RFC_PASSWORD, rec.salt, rec.salt_len, RFC_ITER + 1, stored,
				      server),
			 0);
	assert_memory_not_equal(stored, rec.stored_key, SCRAM_KEY_LEN);
	assert_memory_not_equal(server, rec.server_key, SCRAM_KEY_LEN);
	unsigned char salt[SCRAM_MAX_SALT];
	memcpy(salt, rec.salt, rec.salt_len);
	salt[0] ^= 1;
	assert_int_equal(scram_derive(RFC_PASSWORD, salt, rec.salt_len, RFC_ITER, stored, server), 0);
	assert_memory_not_equal(stored, rec.stored_key, SCRAM_KEY_LEN);
	/* StoredKey and ServerKey are different keys */
	assert_memory_not_equal(rec.stored_key, rec.server_key, SCRAM_KEY_LEN);
}

/* ---- stored records ------------------------------------------------------- */

static void test_make_and_parse_record_round_trip(void **state)
{
	char *text = scram_make_record("pencil", 4096);
	assert_non_null(text);
	assert_int_equal(strncmp(text, "{SCRAM-SHA-256}4096,", 20), 0);
	struct scram_record rec;
	assert_int_equal(scram_parse_record(text + 15, &rec), 0);
	assert_int_equal(rec.iterations, 4096);
	assert_int_equal(rec.salt_len, 16);
	/* the stored keys are those of the password with the stored salt */
	unsigned char stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
	assert_int_equal(scram_derive("pencil", rec.salt, rec.salt_len, rec.iterations, stored,
				      server),
			 0);
	assert_memory_equal(stored, rec.stored_key, SCRAM_KEY_LEN);
	assert_memory_equal(server, rec.server_key, SCRAM_KEY_LEN);
	/* encoding the parsed record again gives the same text */
	char *salt = b64(rec.salt, rec.salt_len), *sk = b64(rec.stored_key, SCRAM_KEY_LEN),
	     *vk = b64(rec.server_key, SCRAM_KEY_LEN);
	char again[512];
	snprintf(again, sizeof(again), "{SCRAM-SHA-256}%u,%s,%s,%s", rec.iterations, salt, sk, vk);
	assert_string_equal(again, text);
	free(salt);
	free(sk);
	free(vk);

	/* a fresh salt every time */
	char *text2 = scram_make_record("pencil", 4096);
	assert_non_null(text2);
	assert_string_not_equal(text, text2);
	free(text);
	free(text2);
}

static void test_parse_record_written_by_hand(void **state)
{
	struct scram_record want, got;
	rfc_record(&want);
	char *sk = b64(want.stored_key, SCRAM_KEY_LEN), *vk = b64(want.server_key, SCRAM_KEY_LEN);
	char text[512];
	snprintf(text, sizeof(text), "4096," RFC_SALT ",%s,%s", sk, vk);
	assert_int_equal(scram_parse_record(text, &got), 0);
	assert_int_equal(got.iterations, 4096);
	assert_int_equal(got.salt_len, want.salt_len);
	assert_memory_equal(got.salt, want.salt, want.salt_len);
	assert_memory_equal(got.stored_key, want.stored_key, SCRAM_KEY_LEN);
	assert_memory_equal(got.server_key, want.server_key, SCRAM_KEY_LEN);
	free(sk);
	free(vk);
}

static void test_check_password(void **state)
{
	char *text = scram_make_record("correct horse", 4096);
	struct scram_record rec;
	assert_int_equal(scram_parse_record(text + 15, &rec), 0);
	assert_true(scram_check_password(&rec, "correct horse"));
	assert_false(scram_check_password(&rec, "correct horse "));
	assert_false(scram_check_password(&rec, "Correct horse"));
	assert_false(scram_check_password(&rec, "correct hors"));
	assert_false(scram_check_password(&rec, ""));
	free(text);

	struct scram_record r;
	rfc_record(&r);
	assert_true(scram_check_password(&r, RFC_PASSWORD));
	assert_false(scram_check_password(&r, "pencil\n"));
}

static void test_malformed_records_rejected(void **state)
{
	struct scram_record rfc;
	rfc_record(&rfc);
	char *sk = b64(rfc.stored_key, SCRAM_KEY_LEN), *vk = b64(rfc.server_key, SCRAM_KEY_LEN);
	unsigned char big[SCRAM_MAX_SALT + 1];
	memset(big, 0x5a, sizeof(big));
	char *bigsalt = b64(big, sizeof(big));
	char *short_key = b64(rfc.stored_key, SCRAM_KEY_LEN - 1);
	unsigned char longk[SCRAM_KEY_LEN + 1] = {0};
	char *long_key = b64(longk, sizeof(longk));

	char good[512];
	snprintf(good, sizeof(good), "4096," RFC_SALT ",%s,%s", sk, vk);
	struct scram_record rec;
	assert_int_equal(scram_parse_record(good, &rec), 0); /* the control */

	char cases[32][512];
	size_t n = 0;
#define CASE(...) snprintf(cases[n++], sizeof(cases[0]), __VA_ARGS__)
	CASE("%s", "");
	CASE("%s", "4096");
	CASE("4096," RFC_SALT);
	CASE("4096," RFC_SALT ",%s", sk);
	CASE("4096," RFC_SALT ",%s,%s,", sk, vk);         /* a fifth (empty) field */
	CASE("4096," RFC_SALT ",%s,%s,%s", sk, vk, vk);   /* a fifth field */
	CASE("0," RFC_SALT ",%s,%s", sk, vk);             /* no iterations */
	CASE("," RFC_SALT ",%s,%s", sk, vk);
	CASE("abc," RFC_SALT ",%s,%s", sk, vk);
	CASE("-1," RFC_SALT ",%s,%s", sk, vk);
	CASE("4096x," RFC_SALT ",%s,%s", sk, vk);
	CASE("1000001," RFC_SALT ",%s,%s", sk, vk);       /* > SCRAM_MAX_ITERATIONS */
	CASE("99999999999999999999," RFC_SALT ",%s,%s", sk, vk);
	CASE("4096,,%s,%s", sk, vk);                      /* empty salt */
	CASE("4096,!!!!,%s,%s", sk, vk);                  /* salt not base64 */
	CASE("4096,W22ZaJ0SNY7soEsUEjb6gQ=,%s,%s", sk, vk); /* bad padding */
	CASE("4096,%s,%s,%s", bigsalt, sk, vk);            /* salt too long */
	CASE("4096," RFC_SALT ",,%s", vk);                /* empty StoredKey */
	CASE("4096," RFC_SALT ",%s,", sk);                /* empty ServerKey */
	CASE("4096," RFC_SALT ",%s,%s", short_key, vk);   /* 31-octet key */
	CASE("4096," RFC_SALT ",%s,%s", sk, short_key);
	CASE("4096," RFC_SALT ",%s,%s", long_key, vk);    /* 33-octet key */
	CASE("4096," RFC_SALT ",%s,%s", sk, long_key);
	CASE("4096," RFC_SALT ",%s,%s!", sk, vk);         /* junk after the key */
	CASE("4096," RFC_SALT ",%s,%s ", sk, vk);
#undef CASE
	for (size_t i = 0; i < n; i++) {
		if (scram_parse_record(cases[i], &rec) == 0)
			fail_msg("malformed record accepted: \"%s\"", cases[i]);
	}
	free(sk);
	free(vk);
	free(bigsalt);
	free(short_key);
	free(long_key);
}

/* ---- the server mechanism (sasl.c) ------------------------------------------ */

struct client {
	const char *password;
	const char *gs2_header;         /* e.g. "n,," */
	const unsigned char *cbind;     /* channel-binding data after the header */
	size_t cbind_len;
	char bare[256];                 /* client-first-bare */
	char server_first[512];
	char nonce[256];                /* combined nonce from server-first */
	unsigned char salt[SCRAM_MAX_SALT];
	size_t salt_len;
	unsigned iterations;
	unsigned char signature[SCRAM_KEY_LEN]; /* expected ServerSignature */
};

/* Send client-first (gs2 header + bare), expect the lookup; returns the
 * status of that first step. */
static enum sasl_status send_first(struct sasl_server *s, struct client *c, const char *bare)
{
	char msg[512];
	snprintf(c->bare, sizeof(c->bare), "%s", bare);
	snprintf(msg, sizeof(msg), "%s%s", c->gs2_header, bare);
	return sasl_server_step(s, msg, strlen(msg), true);
}

/* After NEED_LOOKUP: hand over the record, parse server-first. */
static void take_server_first(struct sasl_server *s, struct client *c,
			      const struct scram_record *rec, const char *client_nonce)
{
	assert_int_equal(sasl_server_set_record(s, rec), SASL_CONTINUE);
	assert_true(s->challenge.len > 0 && s->challenge.len < sizeof(c->server_first));
	memcpy(c->server_first, s->challenge.data, s->challenge.len);
	c->server_first[s->challenge.len] = '\0';
	/* r=<client nonce><server nonce>,s=<salt>,i=<iterations> */
	char *r = c->server_first, *sp = strstr(r, ",s="), *ip = strstr(r, ",i=");
	assert_int_equal(strncmp(r, "r=", 2), 0);
	assert_non_null(sp);
	assert_non_null(ip);
	assert_true(sp < ip);
	size_t nlen = (size_t)(sp - r - 2);
	memcpy(c->nonce, r + 2, nlen);
	c->nonce[nlen] = '\0';
	/* the server's nonce continues the client's and adds something */
	assert_int_equal(strncmp(c->nonce, client_nonce, strlen(client_nonce)), 0);
	assert_true(nlen >= strlen(client_nonce) + 8);
	for (size_t i = 0; i < nlen; i++)
		assert_true(c->nonce[i] >= 0x21 && c->nonce[i] <= 0x7e && c->nonce[i] != ',');
	c->salt_len = unb64(sp + 3, (size_t)(ip - sp - 3), c->salt, sizeof(c->salt));
	assert_int_equal(c->salt_len, rec->salt_len);
	assert_memory_equal(c->salt, rec->salt, rec->salt_len);
	c->iterations = (unsigned)strtoul(ip + 3, NULL, 10);
	assert_int_equal(c->iterations, rec->iterations);
}

/* client-final for the given nonce and c= data; fills the expected v=. */
static void make_final(struct client *c, const char *nonce, const char *cb64, char *out,
		       size_t outlen)
{
	char without_proof[512], am[1536];
	snprintf(without_proof, sizeof(without_proof), "c=%s,r=%s", cb64, nonce);
	snprintf(am, sizeof(am), "%s,%s,%s", c->bare, c->server_first, without_proof);
	unsigned char proof[SCRAM_KEY_LEN];
	assert_int_equal(scram_client_proof(c->password, c->salt, c->salt_len, c->iterations, am,
					    strlen(am), proof, c->signature),
			 0);
	char *p = b64(proof, sizeof(proof));
	snprintf(out, outlen, "%s,p=%s", without_proof, p);
	free(p);
}

/* base64(gs2 header || cbind data) */
static char *cbind_b64(const struct client *c)
{
	unsigned char data[256];
	size_t hl = strlen(c->gs2_header);
	memcpy(data, c->gs2_header, hl);
	if (c->cbind_len > 0)
		memcpy(data + hl, c->cbind, c->cbind_len);
	return b64(data, hl + c->cbind_len);
}

static void record_for(const char *password, struct scram_record *rec)
{
	char *text = scram_make_record(password, 4096);
	assert_non_null(text);
	assert_int_equal(scram_parse_record(text + 15, rec), 0);
	free(text);
}

/* A whole exchange up to the client-final step; returns that step's status. */
static enum sasl_status exchange_to_final(struct sasl_server *s, enum sasl_mech mech,
					  const struct sasl_channel_binding *cb, struct client *c,
					  const struct scram_record *rec)
{
	sasl_server_start(s, mech, cb);
	assert_int_equal(send_first(s, c, "n=user,r=" RFC_CNONCE), SASL_NEED_LOOKUP);
	assert_string_equal(s->authcid, "user");
	take_server_first(s, c, rec, RFC_CNONCE);
	char final[1024];
	char *cb64 = cbind_b64(c);
	make_final(c, c->nonce, cb64, final, sizeof(final));
	free(cb64);
	return sasl_server_step(s, final, strlen(final), true);
}

/* After a good proof: the challenge is v=ServerSignature; the empty answer
 * finishes the exchange as verified. */
static void expect_verified(struct sasl_server *s, struct client *c, enum sasl_status st)
{
	assert_int_equal(st, SASL_CONTINUE);
	char *v = b64(c->signature, sizeof(c->signature));
	char want[128];
	snprintf(want, sizeof(want), "v=%s", v);
	free(v);
	assert_int_equal(s->challenge.len, strlen(want));
	assert_memory_equal(s->challenge.data, want, strlen(want));
	assert_false(s->verified); /* not before the final empty response */
	assert_int_equal(sasl_server_step(s, "", 0, true), SASL_DONE);
	assert_true(s->verified);
}

static void test_server_full_exchange(void **state)
{
	struct sasl_server s;
	struct scram_record rec;
	struct client c = {.password = RFC_PASSWORD, .gs2_header = "n,,"};
	rfc_record(&rec); /* the RFC's salt and iteration count */
	enum sasl_status st = exchange_to_final(&s, SASL_MECH_SCRAM_SHA_256, NULL, &c, &rec);
	expect_verified(&s, &c, st);
	assert_null(s.password); /* nothing to check later: the verdict is here */
	sasl_server_clear(&s);

	/* the same with a record made from the password by scram_make_record */
	struct client c2 = {.password = "s3cret", .gs2_header = "n,,"};
	record_for("s3cret", &rec);
	st = exchange_to_final(&s, SASL_MECH_SCRAM_SHA_256, NULL, &c2, &rec);
	expect_verified(&s, &c2, st);
	sasl_server_clear(&s);
}

static void test_server_without_initial_response(void **state)
{
	struct sasl_server s;
	sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256, NULL);
	assert_int_equal(sasl_server_step(&s, NULL, 0, false), SASL_CONTINUE);
	assert_int_equal(s.challenge.len, 0); /* "+ " */
	assert_int_equal(sasl_server_step(&s, S("n,,n=user,r=" RFC_CNONCE), true),
			 SASL_NEED_LOOKUP);
	sasl_server_clear(&s);
}

static void test_server_wrong_password_is_done_unverified(void **state)
{
	struct sasl_server s;
	struct scram_record rec;
	struct client c = {.password = "pencil!", .gs2_header = "n,,"};
	rfc_record(&rec);
	/* Not a protocol error: reported as a failed login (with its delay). */
	assert_int_equal(exchange_to_final(&s, SASL_MECH_SCRAM_SHA_256, NULL, &c, &rec), SASL_DONE);
	assert_false(s.verified);
	assert_string_equal(s.authcid, "user");
	sasl_server_clear(&s);
}

static void test_server_nonce_mismatch_fails(void **state)
{
	struct scram_record rec;
	rfc_record(&rec);
	for (int variant = 0; variant < 4; variant++) {
		struct sasl_server s;
		struct client c = {.password = RFC_PASSWORD, .gs2_header = "n,,"};
		sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256, NULL);
		assert_int_equal(send_first(&s, &c, "n=user,r=" RFC_CNONCE), SASL_NEED_LOOKUP);
		take_server_first(&s, &c, &rec, RFC_CNONCE);
		char nonce[300];
		switch (variant) {
		case 0: /* only the client's part */
			snprintf(nonce, sizeof(nonce), "%s", RFC_CNONCE);
			break;
		case 1: /* one character short */
			snprintf(nonce, sizeof(nonce), "%.*s", (int)strlen(c.nonce) - 1, c.nonce);
			break;
		case 2: /* one character more */
			snprintf(nonce, sizeof(nonce), "%sx", c.nonce);
			break;
		default: /* same length, last character changed */
			snprintf(nonce, sizeof(nonce), "%s", c.nonce);
			nonce[strlen(nonce) - 1] = nonce[strlen(nonce) - 1] == 'A' ? 'B' : 'A';
		}
		char final[1024];
		/* a proof that is right for this AuthMessage: only the nonce is wrong */
		make_final(&c, nonce, "biws", final, sizeof(final));
		assert_int_equal(sasl_server_step(&s, final, strlen(final), true), SASL_FAIL);
		assert_non_null(s.error);
		assert_false(s.verified);
		sasl_server_clear(&s);
	}
}

static void test_server_y_flag(void **state)
{
	struct scram_record rec;
	rfc_record(&rec);
	struct sasl_channel_binding cb = {.tls = true, .exporter_len = 32, .end_point_len = 32};
	memset(cb.exporter, 0x11, 32);
	memset(cb.end_point, 0x22, 32);
	struct sasl_server s;

	/* The server offers -PLUS here: "y" means someone removed it. */
	sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256, &cb);
	assert_int_equal(sasl_server_step(&s, S("y,,n=user,r=" RFC_CNONCE), true), SASL_FAIL);
	assert_non_null(s.error);
	sasl_server_clear(&s);

	/* Only tls-server-end-point available: still -PLUS, still a downgrade. */
	cb.exporter_len = -1;
	sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256, &cb);
	assert_int_equal(sasl_server_step(&s, S("y,,n=user,r=" RFC_CNONCE), true), SASL_FAIL);
	sasl_server_clear(&s);

	/* No TLS: the server cannot bind, "y" is fine, and c= carries "y,,". */
	struct client c = {.password = RFC_PASSWORD, .gs2_header = "y,,"};
	struct sasl_channel_binding none = {.tls = false, .exporter_len = -1, .end_point_len = -1};
	expect_verified(&s, &c, exchange_to_final(&s, SASL_MECH_SCRAM_SHA_256, &none, &c, &rec));
	sasl_server_clear(&s);
	struct client c2 = {.password = RFC_PASSWORD, .gs2_header = "y,,"};
	expect_verified(&s, &c2, exchange_to_final(&s, SASL_MECH_SCRAM_SHA_256, NULL, &c2, &rec));
	sasl_server_clear(&s);
}

static void test_server_tls_exporter_binding(void **state)
{
	struct scram_record rec;
	rfc_record(&rec);
	struct sasl_channel_binding cb = {.tls = true, .exporter_len = 32, .end_point_len = 32};
	for (int i = 0; i < 32; i++) {
		cb.exporter[i] = (unsigned char)(0xa0 + i);
		cb.end_point[i] = (unsigned char)(0x10 + i);
	}
	struct sasl_server s;
	struct client c = {.password = RFC_PASSWORD,
			   .gs2_header = "p=tls-exporter,,",
			   .cbind = cb.exporter,
			   .cbind_len = 32};
	expect_verified(&s, &c, exchange_to_final(&s, SASL_MECH_SCRAM_SHA_256_PLUS, &cb, &c, &rec));
	sasl_server_clear(&s);

	/* tls-server-end-point binds to the other data */
	struct client e = {.password = RFC_PASSWORD,
			   .gs2_header = "p=tls-server-end-point,,",
			   .cbind = cb.end_point,
			   .cbind_len = 32};
	expect_verified(&s, &e, exchange_to_final(&s, SASL_MECH_SCRAM_SHA_256_PLUS, &cb, &e, &rec));
	sasl_server_clear(&s);
}

static void test_server_wrong_channel_binding_fails(void **state)
{
	struct scram_record rec;
	rfc_record(&rec);
	struct sasl_channel_binding cb = {.tls = true, .exporter_len = 32, .end_point_len = 32};
	memset(cb.exporter, 0x33, 32);
	memset(cb.end_point, 0x44, 32);
	unsigned char wrong[32];
	struct sasl_server s;

	/* one octet different */
	memcpy(wrong, cb.exporter, 32);
	wrong[31] ^= 0x80;
	struct client c = {.password = RFC_PASSWORD,
			   .gs2_header = "p=tls-exporter,,",
			   .cbind = wrong,
			   .cbind_len = 32};
	assert_int_equal(exchange_to_final(&s, SASL_MECH_SCRAM_SHA_256_PLUS, &cb, &c, &rec),
			 SASL_FAIL);
	assert_false(s.verified);
	sasl_server_clear(&s);

	/* the data of the other binding type */
	struct client d = {.password = RFC_PASSWORD,
			   .gs2_header = "p=tls-exporter,,",
			   .cbind = cb.end_point,
			   .cbind_len = 32};
	assert_int_equal(exchange_to_final(&s, SASL_MECH_SCRAM_SHA_256_PLUS, &cb, &d, &rec),
			 SASL_FAIL);
	sasl_server_clear(&s);

	/* no data at all after the header */
	struct client e = {.password = RFC_PASSWORD, .gs2_header = "p=tls-exporter,,"};
	assert_int_equal(exchange_to_final(&s, SASL_MECH_SCRAM_SHA_256_PLUS, &cb, &e, &rec),
			 SASL_FAIL);
	sasl_server_clear(&s);

	/* c= claims no binding after a p= header */
	sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256_PLUS, &cb);
	struct client f = {.password = RFC_PASSWORD, .gs2_header = "p=tls-exporter,,"};
	assert_int_equal(send_first(&s, &f, "n=user,r=" RFC_CNONCE), SASL_NEED_LOOKUP);
	take_server_first(&s, &f, &rec, RFC_CNONCE);
	char final[1024];
	make_final(&f, f.nonce, "biws", final, sizeof(final));
	assert_int_equal(sasl_server_step(&s, final, strlen(final), true), SASL_FAIL);
	sasl_server_clear(&s);
}

static void test_server_cbind_flag_must_match_mechanism(void **state)
{
	struct sasl_channel_binding cb = {.tls = true, .exporter_len = 32, .end_point_len = 32};
	memset(cb.exporter, 1, 32);
	memset(cb.end_point, 2, 32);
	struct sasl_channel_binding none = {.tls = true, .exporter_len = -1, .end_point_len = -1};
	struct {
		enum sasl_mech mech;
		const struct sasl_channel_binding *cb;
		const char *msg;
	} cases[] = {
		/* -PLUS needs p= */
		{SASL_MECH_SCRAM_SHA_256_PLUS, &cb, "n,,n=user,r=" RFC_CNONCE},
		{SASL_MECH_SCRAM_SHA_256_PLUS, &cb, "y,,n=user,r=" RFC_CNONCE},
		/* p= needs -PLUS */
		{SASL_MECH_SCRAM_SHA_256, &cb, "p=tls-exporter,,n=user,r=" RFC_CNONCE},
		/* unsupported or unavailable binding types */
		{SASL_MECH_SCRAM_SHA_256_PLUS, &cb, "p=tls-unique,,n=user,r=" RFC_CNONCE},
		{SASL_MECH_SCRAM_SHA_256_PLUS, &cb, "p=,,n=user,r=" RFC_CNONCE},
		{SASL_MECH_SCRAM_SHA_256_PLUS, &cb, "p=tls-exporterx,,n=user,r=" RFC_CNONCE},
		{SASL_MECH_SCRAM_SHA_256_PLUS, &none, "p=tls-exporter,,n=user,r=" RFC_CNONCE},
		{SASL_MECH_SCRAM_SHA_256_PLUS, &none, "p=tls-server-end-point,,n=user,r=" RFC_CNONCE},
		/* not a gs2 header at all */
		{SASL_MECH_SCRAM_SHA_256, NULL, "x,,n=user,r=" RFC_CNONCE},
		{SASL_MECH_SCRAM_SHA_256, NULL, "nn,,n=user,r=" RFC_CNONCE},
		{SASL_MECH_SCRAM_SHA_256, NULL, "n=user,r=" RFC_CNONCE},
		{SASL_MECH_SCRAM_SHA_256, NULL, "n"},
		{SASL_MECH_SCRAM_SHA_256, NULL, "n,"},
		{SASL_MECH_SCRAM_SHA_256, NULL, "n,,"},
		{SASL_MECH_SCRAM_SHA_256, NULL, ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sasl_server s;
		sasl_server_start(&s, cases[i].mech, cases[i].cb);
		enum sasl_status st =
			sasl_server_step(&s, cases[i].msg, strlen(cases[i].msg), true);
		if (st != SASL_FAIL)
			fail_msg("%s: \"%s\" gave %d, not SASL_FAIL", sasl_mech_name(cases[i].mech),
				 cases[i].msg, (int)st);
		assert_non_null(s.error);
		sasl_server_clear(&s);
	}
}

static void test_server_mandatory_extension_fails(void **state)
{
	const char *msgs[] = {
		"n,,m=foo,n=user,r=" RFC_CNONCE,
		"n,,m=,n=user,r=" RFC_CNONCE,
	};
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		struct sasl_server s;
		sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256, NULL);
		assert_int_equal(sasl_server_step(&s, msgs[i], strlen(msgs[i]), true), SASL_FAIL);
		assert_non_null(s.error);
		sasl_server_clear(&s);
	}
}

static void test_server_saslname_escapes(void **state)
{
	struct sasl_server s;
	sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256, NULL);
	assert_int_equal(sasl_server_step(&s, S("n,,n=a=2Cb=3Dc,r=" RFC_CNONCE), true),
			 SASL_NEED_LOOKUP);
	assert_string_equal(s.authcid, "a,b=c");
	sasl_server_clear(&s);

	sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256, NULL);
	assert_int_equal(sasl_server_step(&s, S("n,,n==3D=2C,r=" RFC_CNONCE), true),
			 SASL_NEED_LOOKUP);
	assert_string_equal(s.authcid, "=,");
	sasl_server_clear(&s);

	/* authzid too */
	sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256, NULL);
	assert_int_equal(sasl_server_step(&s, S("n,a=x=2Cy=3Dz,n=user,r=" RFC_CNONCE), true),
			 SASL_NEED_LOOKUP);
	assert_string_equal(s.authzid, "x,y=z");
	assert_string_equal(s.authcid, "user");
	sasl_server_clear(&s);

	/* the full exchange works with an escaped name (the AuthMessage uses the
	 * name as sent, escapes included) */
	struct scram_record rec;
	rfc_record(&rec);
	struct client c = {.password = RFC_PASSWORD, .gs2_header = "n,,"};
	sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256, NULL);
	assert_int_equal(send_first(&s, &c, "n=u=2Cser,r=" RFC_CNONCE), SASL_NEED_LOOKUP);
	assert_string_equal(s.authcid, "u,ser");
	take_server_first(&s, &c, &rec, RFC_CNONCE);
	char final[1024];
	make_final(&c, c.nonce, "biws", final, sizeof(final));
	expect_verified(&s, &c, sasl_server_step(&s, final, strlen(final), true));
	sasl_server_clear(&s);
}

static void test_server_bad_saslname_escapes_rejected(void **state)
{
	const char *msgs[] = {
		"n,,n=a=2cb,r=" RFC_CNONCE,  /* lower case hex is not an escape */
		"n,,n=a=3db,r=" RFC_CNONCE,
		"n,,n=a=41b,r=" RFC_CNONCE,  /* only =2C and =3D exist */
		"n,,n=a=b,r=" RFC_CNONCE,
		"n,,n=ab=,r=" RFC_CNONCE,    /* '=' at the end */
		"n,,n=ab=2,r=" RFC_CNONCE,   /* truncated escape */
		"n,,n==,r=" RFC_CNONCE,
		"n,,n=,r=" RFC_CNONCE,       /* empty name */
		"n,a=x=y,n=user,r=" RFC_CNONCE, /* in the authzid as well */
		"n,a=x=2,n=user,r=" RFC_CNONCE,
	};
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		struct sasl_server s;
		sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256, NULL);
		enum sasl_status st = sasl_server_step(&s, msgs[i], strlen(msgs[i]), true);
		if (st != SASL_FAIL)
			fail_msg("\"%s\" gave %d, not SASL_FAIL", msgs[i], (int)st);
		assert_non_null(s.error);
		sasl_server_clear(&s);
	}
}

static void test_server_malformed_client_first(void **state)
{
	const char *msgs[] = {
		"n,,r=" RFC_CNONCE ",n=user",  /* n= must come first */
		"n,,n=user",                   /* no nonce */
		"n,,n=user,",
		"n,,n=user,r=",                /* empty nonce */
		"n,,n=user,x=" RFC_CNONCE,
		"n,,n=user,r=a\x7f" "b",       /* nonce not printable */
		"n,,n=user,r=a b",
		"n,x=y,n=user,r=" RFC_CNONCE,  /* second gs2 field is not a= */
	};
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		struct sasl_server s;
		sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256, NULL);
		enum sasl_status st = sasl_server_step(&s, msgs[i], strlen(msgs[i]), true);
		if (st != SASL_FAIL)
			fail_msg("\"%s\" gave %d, not SASL_FAIL", msgs[i], (int)st);
		sasl_server_clear(&s);
	}
	/* NUL inside */
	struct sasl_server s;
	sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256, NULL);
	assert_int_equal(sasl_server_step(&s, S("n,,n=us\0er,r=" RFC_CNONCE), true), SASL_FAIL);
	sasl_server_clear(&s);
}

static void test_server_malformed_client_final(void **state)
{
	struct scram_record rec;
	rfc_record(&rec);
	for (int variant = 0; variant < 6; variant++) {
		struct sasl_server s;
		struct client c = {.password = RFC_PASSWORD, .gs2_header = "n,,"};
		sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256, NULL);
		assert_int_equal(send_first(&s, &c, "n=user,r=" RFC_CNONCE), SASL_NEED_LOOKUP);
		take_server_first(&s, &c, &rec, RFC_CNONCE);
		char good[1024], msg[1100];
		make_final(&c, c.nonce, "biws", good, sizeof(good));
		char *p = strstr(good, ",p=");
		assert_non_null(p);
		switch (variant) {
		case 0: /* no proof */
			snprintf(msg, sizeof(msg), "%.*s", (int)(p - good), good);
			break;
		case 1: /* proof not base64 */
			snprintf(msg, sizeof(msg), "%.*s,p=!!!!", (int)(p - good), good);
			break;
		case 2: /* no c= */
			snprintf(msg, sizeof(msg), "%s", strstr(good, "r="));
			break;
		case 3: /* c= not base64 */
			snprintf(msg, sizeof(msg), "c=b!ws%s", strstr(good, ",r="));
			break;
		case 4: /* c= with another gs2 header than client-first had */
			snprintf(msg, sizeof(msg), "c=eSws%s", strstr(good, ",r=")); /* "y,," */
			break;
		default: /* c= with an authzid client-first did not have */
			snprintf(msg, sizeof(msg), "c=bixhPXVzZXIs%s", strstr(good, ",r=")); /* n,a=user, */
		}
		assert_int_equal(sasl_server_step(&s, msg, strlen(msg), true), SASL_FAIL);
		assert_false(s.verified);
		sasl_server_clear(&s);
	}
}

static void test_server_final_response_must_be_empty(void **state)
{
	struct scram_record rec;
	rfc_record(&rec);
	struct sasl_server s;
	struct client c = {.password = RFC_PASSWORD, .gs2_header = "n,,"};
	assert_int_equal(exchange_to_final(&s, SASL_MECH_SCRAM_SHA_256, NULL, &c, &rec),
			 SASL_CONTINUE);
	assert_int_equal(sasl_server_step(&s, S("x"), true), SASL_FAIL);
	assert_false(s.verified);
	sasl_server_clear(&s);
}

static void test_server_stand_in_record_never_verifies(void **state)
{
	/* What the server hands over for an unknown user: keys no password
	 * derives to. The exchange must end unverified, like a wrong password. */
	struct scram_record rec;
	memset(&rec, 0, sizeof(rec));
	rec.iterations = 4096;
	rec.salt_len = 16;
	memset(rec.salt, 0x5c, 16);
	memset(rec.stored_key, 0x77, SCRAM_KEY_LEN);
	struct sasl_server s;
	struct client c = {.password = RFC_PASSWORD, .gs2_header = "n,,"};
	assert_int_equal(exchange_to_final(&s, SASL_MECH_SCRAM_SHA_256, NULL, &c, &rec), SASL_DONE);
	assert_false(s.verified);
	sasl_server_clear(&s);
}

/* sasl.h: "cb may be NULL (no TLS)". -PLUS started without channel-binding
 * data must fail cleanly, not dereference it. Run in a child so that a crash
 * is reported as this test's failure and the others still run. */
static void test_server_plus_without_binding_data_fails_cleanly(void **state)
{
	const char *msgs[] = {
		"p=tls-exporter,,n=user,r=" RFC_CNONCE,
		"p=tls-server-end-point,,n=user,r=" RFC_CNONCE,
		"n,,n=user,r=" RFC_CNONCE,
	};
	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		fflush(NULL);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			struct sasl_server s;
			sasl_server_start(&s, SASL_MECH_SCRAM_SHA_256_PLUS, NULL);
			enum sasl_status st = sasl_server_step(&s, msgs[i], strlen(msgs[i]), true);
			sasl_server_clear(&s);
			_exit(st == SASL_FAIL ? 0 : 10 + (int)st);
		}
		int status = 0;
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail_msg("SCRAM-SHA-256-PLUS with cb == NULL and \"%s\": %s %d (want SASL_FAIL)",
				 msgs[i], WIFEXITED(status) ? "exit status" : "killed by signal",
				 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc7677_client_proof_and_server_signature),
		cmocka_unit_test(test_rfc7677_server_accepts_the_proof),
		cmocka_unit_test(test_rfc7677_server_rejects_modified_proofs),
		cmocka_unit_test(test_derive_depends_on_salt_and_iterations),
		cmocka_unit_test(test_make_and_parse_record_round_trip),
		cmocka_unit_test(test_parse_record_written_by_hand),
		cmocka_unit_test(test_check_password),
		cmocka_unit_test(test_malformed_records_rejected),
		cmocka_unit_test(test_server_full_exchange),
		cmocka_unit_test(test_server_without_initial_response),
		cmocka_unit_test(test_server_wrong_password_is_done_unverified),
		cmocka_unit_test(test_server_nonce_mismatch_fails),
		cmocka_unit_test(test_server_y_flag),
		cmocka_unit_test(test_server_tls_exporter_binding),
		cmocka_unit_test(test_server_wrong_channel_binding_fails),
		cmocka_unit_test(test_server_cbind_flag_must_match_mechanism),
		cmocka_unit_test(test_server_mandatory_extension_fails),
		cmocka_unit_test(test_server_saslname_escapes),
		cmocka_unit_test(test_server_bad_saslname_escapes_rejected),
		cmocka_unit_test(test_server_malformed_client_first),
		cmocka_unit_test(test_server_malformed_client_final),
		cmocka_unit_test(test_server_final_response_must_be_empty),
		cmocka_unit_test(test_server_stand_in_record_never_verifies),
		cmocka_unit_test(test_server_plus_without_binding_data_fails_cleanly),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
