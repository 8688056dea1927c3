/* shared.c - the shared-memory table of penalties, session counts, logins. */
#include "server/shared.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/log.h"

#define PROBE 16 /* slots looked at per key */

struct slot {
	struct shared_key key;
	bool used;
	uint32_t failures;
	time_t last_failure;
	uint32_t sessions;
	time_t last_login;
	time_t touched;
};

struct shared_table {
	pthread_mutex_t lock;
	unsigned n;
	size_t map_size;
	uint32_t sessions; /* POP3 sessions in all workers */
	struct slot slots[];
};

/* Keys are hashed with a secret (set here before the workers are forked,
 * so they all share it): nobody can pick client addresses or user names
 * whose keys crowd one slot's neighbourhood and evict someone else's
 * failure count. */
static unsigned char key_seed[32];

struct shared_table *shared_create(unsigned slots)
{
	size_t size = sizeof(struct shared_table) + (size_t)slots * sizeof(struct slot);
	struct shared_table *t =
		mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (t == MAP_FAILED) {
		log_error("shared memory (%zu bytes): %s", size, strerror(errno));
		return NULL;
	}
	memset(t, 0, size);
	pthread_mutexattr_t attr;
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&t->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	t->n = slots;
	t->map_size = size;
	if (RAND_bytes(key_seed, sizeof(key_seed)) != 1) {
		log_error("shared memory: no random numbers for the table's key seed");
		munmap(t, size);
		return NULL;
	}
	return t;
}

void shared_destroy(struct shared_table *t)
{
	if (t != NULL)
		munmap(t, t->map_size);
}

static void lock(struct shared_table *t)
{
	/* A worker that died holding the lock left the table consistent enough:
	 * every update is a few plain stores. */
	if (pthread_mutex_lock(&t->lock) == EOWNERDEAD)
		pthread_mutex_consistent(&t->lock);
}

static void unlock(struct shared_table *t)
{
	pthread_mutex_unlock(&t->lock);
}

static void hash_key(const char *kind, const void *data, size_t len, struct shared_key *out)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, key_seed, sizeof(key_seed));
	EVP_DigestUpdate(ctx, kind, strlen(kind) + 1);
	EVP_DigestUpdate(ctx, data, len);
	EVP_DigestFinal_ex(ctx, digest, &dlen);
	EVP_MD_CTX_free(ctx);
	memcpy(out->k, digest, SHARED_KEY_LEN);
}

void shared_key_addr(const struct sockaddr *sa, struct shared_key *out)
{
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a))
			hash_key("ip4", a->s6_addr + 12, 4, out);
		else
			hash_key("ip6/64", a->s6_addr, 8, out); /* one /64 is one client */
	} else if (sa->sa_family == AF_INET) {
		hash_key("ip4", &((const struct sockaddr_in *)sa)->sin_addr, 4, out);
	} else {
		hash_key("other", "", 0, out);
	}
}

void shared_key_user(const char *user, struct shared_key *out)
{
	hash_key("user", user, strlen(user), out);
}

/* The key's slot, creating it if create (evicting the least recently used
 * slot without sessions); NULL if absent (or no room). Lock held. */
static struct slot *find(struct shared_table *t, const struct shared_key *key, bool create,
			 time_t now)
{
	uint32_t h;
	memcpy(&h, key->k, sizeof(h));
	struct slot *victim = NULL;
	for (unsigned i = 0; i < PROBE && i < t->n; i++) {
		struct slot *s = &t->slots[(h + i) % t->n];
		if (s->used && memcmp(&s->key, key, sizeof(*key)) == 0) {
			s->touched = now ? now : s->touched;
			return s;
		}
		if (!create)
			continue;
		if (!s->used) {
			if (victim == NULL || victim->used)
				victim = s;
		} else if (s->sessions == 0 && (victim == NULL || (victim->used && s->touched < victim->touched))) {
			victim = s;
		}
	}
	if (victim == NULL)
		return NULL;
	memset(victim, 0, sizeof(*victim));
	victim->used = true;
	victim->key = *key;
	victim->touched = now;
	return victim;
}

static void decay(struct slot *s, time_t now, unsigned window_s)
{
	if (s->failures > 0 && now - s->last_failure >= (time_t)window_s)
		s->failures = 0;
}

unsigned shared_failures(struct shared_table *t, const struct shared_key *key, time_t now,
			 unsigned window_s)
{
	lock(t);
	struct slot *s = find(t, key, false, 0);
	unsigned n = 0;
	if (s != NULL) {
		decay(s, now, window_s);
		n = s->failures;
	}
	unlock(t);
	return n;
}

unsigned shared_add_failure(struct shared_table *t, const struct shared_key *key, time_t now,
			    unsigned window_s)
{
	lock(t);
	struct slot *s = find(t, key, true, now);
	unsigned n = 1;
	if (s != NULL) {
		decay(s, now, window_s);
		if (s->failures < UINT32_MAX)
			s->failures++;
		s->last_failure = now;
		n = s->failures;
	}
	unlock(t);
	return n;
}

void shared_clear_failures(struct shared_table *t, const struct shared_key *key)
{
	lock(t);
	struct slot *s = find(t, key, false, 0);
	if (s != NULL)
		s->failures = 0;
	unlock(t);
}

enum shared_enter shared_session_enter(struct shared_table *t, const struct shared_key *key,
				       unsigned per_key_limit, unsigned total_limit)
{
	lock(t);
	enum shared_enter r = SHARED_ENTER_OK;
	struct slot *s = NULL;
	if (t->sessions >= total_limit) {
		r = SHARED_ENTER_TOTAL;
	} else {
		s = find(t, key, true, time(NULL));
		/* no room in the table: do not refuse anyone for it */
		if (s != NULL && s->sessions >= per_key_limit)
			r = SHARED_ENTER_KEY;
	}
	if (r == SHARED_ENTER_OK) {
		t->sessions++;
		if (s != NULL)
			s->sessions++;
	}
	unlock(t);
	return r;
}

void shared_session_leave(struct shared_table *t, const struct shared_key *key)
{
	lock(t);
	struct slot *s = find(t, key, false, 0);
	if (s != NULL && s->sessions > 0)
		s->sessions--;
	if (t->sessions > 0)
		t->sessions--;
	unlock(t);
}

void shared_reset_sessions(struct shared_table *t)
{
	lock(t);
	for (unsigned i = 0; i < t->n; i++)
		t->slots[i].sessions = 0;
	t->sessions = 0;
	unlock(t);
}

bool shared_login_allowed(struct shared_table *t, const struct shared_key *key, time_t now,
			  unsigned delay_s, bool record)
{
	if (delay_s == 0)
		return true;
	lock(t);
	struct slot *s = find(t, key, record, now);
	bool ok = s == NULL || s->last_login == 0 || now - s->last_login >= (time_t)delay_s;
	if (record && s != NULL)
		s->last_login = now;
	unlock(t);
	return ok;
}
