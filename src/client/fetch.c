/*
 * fetch.c - one account, one or more sessions:
 *
 *   connect, TLS (implicit or STLS, never a silent fallback), CAPA, login
 *   STAT, UIDL, LIST  ->  plan: known / new / too big / to delete
 *   batches of `window` messages:
 *       RETR (pipelined when offered) -> FETCH in the journal -> destination
 *       -> commit -> DONE in the journal
 *       destination fsync, journal fsync   (everything above is durable)
 *       DELE for what is durable and recorded
 *   (with pipelining, the next batch's RETRs are sent before a batch is
 *   committed, and its DELEs go out with the RETRs after that: see
 *   retrieve_all)
 *   QUIT (the deletions take effect) -> GONE in the journal -> store saved
 *
 * A failure anywhere before QUIT's +OK deletes nothing; the next run sees
 * the same UIDLs, skips what the store (or a recovered FETCH) says is
 * already here, and sends the DELEs again.
 */
#include "client/fetch.h"
#include "deliver/maildir_deliver.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/x509.h>

#include "client/dest.h"
#include "client/pop3c.h"
#include "client/sasl_client.h"
#include "client/secret.h"
#include "client/uidstore.h"
#include "common/bounds.h"
#include "common/xmalloc.h"

volatile sig_atomic_t fetch_interrupted;
volatile sig_atomic_t fetch_aborted;

enum plan { PLAN_KNOWN, PLAN_FETCH, PLAN_HEADERS, PLAN_SKIP };

struct msg {
	unsigned num;
	uint64_t size;
	char *uidl;     /* NULL when the server has no UIDL */
	bool dup_uidl;  /* another message in the listing has the same UIDL */
	enum plan plan;
	bool dele;      /* send DELE for it */
	bool deleted;   /* DELE answered +OK */
	bool pending;   /* written, durable once the batch is synced */
};

struct session {
	const struct account *a;
	const struct fetch_options *o;
	struct fetch_result *r;
	struct pop3c p;
	struct uidstore *store;
	struct dest dest;
	struct msg *msgs;
	unsigned n;
	bool tls;
	bool has_uidl;
	time_t now;
	struct timespec started;
	unsigned new_delivered;   /* in this session */
	bool first;               /* the run's first session: report skips */
	unsigned headers_only;    /* over max_size: only the headers fetched */
	bool broken;              /* the connection failed: no QUIT */
	uint64_t planned_bytes;
	unsigned planned;
};

static double since(const struct timespec *t)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static enum fetch_status failure(struct session *s, enum fetch_status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static enum fetch_status failure(struct session *s, enum fetch_status st, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->r->message, sizeof(s->r->message), fmt, ap);
	va_end(ap);
	return st;
}

static enum fetch_status net_failure(struct session *s)
{
	s->broken = true;
	return failure(s, FETCH_TEMP, "%s", s->p.conn.error);
}

static void progress(struct session *s, bool final)
{
	if (!s->o->progress)
		return;
	double secs = since(&s->started);
	double rate = secs > 0 ? (double)s->r->bytes / secs : 0;
	double left = rate > 0 && s->planned_bytes > s->r->bytes
			      ? (double)(s->planned_bytes - s->r->bytes) / rate
			      : 0;
	fprintf(stderr, "\r[%s] %u/%u messages, %.1f/%.1f MB, %.1f MB/s, ETA %d:%02d   %s",
		s->a->name, s->r->fetched, s->planned, (double)s->r->bytes / 1e6,
		(double)s->planned_bytes / 1e6, rate / 1e6, (int)left / 60, (int)left % 60,
		final ? "\n" : "");
	fflush(stderr);
}

/* ---- listings ------------------------------------------------------------------ */

struct listing {
	struct session *s;
	bool uidl;
	bool bad;
	char why[320];
};

/* For error messages: at most max octets, unprintable ones as \xNN. */
static void printable(const char *in, size_t max, char *out, size_t outlen)
{
	size_t o = 0;
	for (size_t i = 0; in[i] != '\0' && i < max && o + 5 < outlen; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c >= 0x20 && c < 0x7f && c != '\\')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02X", c);
	}
	out[o] = '\0';
}

/* "n value": several spaces tolerated; every number once, within 1..N.
 * A line too long for a listing (clients.md B.3) is an error, never parsed
 * from its tail. */
static int listing_line(void *arg, const char *data, size_t len, bool eol)
{
	struct listing *l = arg;
	struct session *s = l->s;
	const char *what = l->uidl ? "UIDL" : "LIST";
	if (l->bad)
		return 0;
	if (!eol || len > POP3C_MAX_LINE) {
		l->bad = true;
		snprintf(l->why, sizeof(l->why), "a %s line longer than %d octets", what,
			 POP3C_MAX_LINE);
		return 0;
	}
	char line[POP3C_MAX_LINE + 1];
	memcpy(line, data, len);
	line[len] = '\0';
	char shown[100];
	char *end;
	unsigned long num = strtoul(line, &end, 10);
	if (end == line || *end != ' ' || num == 0 || num > s->n) {
		l->bad = true;
		printable(line, 60, shown, sizeof(shown));
		snprintf(l->why, sizeof(l->why), "bad %s line \"%s\"", what, shown);
		return 0;
	}
	while (*end == ' ')
		end++;
	struct msg *m = &s->msgs[num - 1];
	if (l->uidl) {
		if (m->uidl != NULL || *end == '\0') {
			l->bad = true;
			snprintf(l->why, sizeof(l->why), "message %lu listed twice or without an id by UIDL",
				 num);
			return 0;
		}
		/* Trailing blanks are padding, not part of the id. */
		size_t ulen = strlen(end);
		while (ulen > 0 && (end[ulen - 1] == ' ' || end[ulen - 1] == '\t'))
			end[--ulen] = '\0';
		if (ulen == 0) {
			l->bad = true;
			snprintf(l->why, sizeof(l->why), "message %lu listed without an id by UIDL", num);
			return 0;
		}
		/* RFC 1939 §7: 1 to 70 characters in 0x21-0x7E. An id outside
		 * that could not be stored or compared reliably. */
		for (size_t k = 0; k < ulen; k++) {
			unsigned char ch = (unsigned char)end[k];
			if (ch < 0x21 || ch > 0x7e) {
				l->bad = true;
				printable(end, 40, shown, sizeof(shown));
				snprintf(l->why, sizeof(l->why),
					 "message %lu has a UIDL with byte 0x%02X (\"%s\"); RFC 1939 "
					 "allows only 0x21-0x7E",
					 num, ch, shown);
				return 0;
			}
		}
		if (ulen > POP3_UIDL_MAX) {
			l->bad = true;
			printable(end, 24, shown, sizeof(shown));
			snprintf(l->why, sizeof(l->why),
				 "message %lu has a UIDL of %zu octets (\"%s...\"); RFC 1939 allows "
				 "at most %d",
				 num, ulen, shown, POP3_UIDL_MAX);
			return 0;
		}
		m->uidl = xstrdup(end);
	} else {
		if (m->num != 0) {
			l->bad = true;
			snprintf(l->why, sizeof(l->why), "message %lu listed twice by LIST", num);
			return 0;
		}
		m->num = (unsigned)num;
		m->size = strtoull(end, NULL, 10);
	}
	return 0;
}

static enum fetch_status list_messages(struct session *s)
{
	struct pop3c_reply rep;
	if (pop3c_send(&s->p, false, "STAT") < 0 || pop3c_reply(&s->p, &rep) < 0)
		return net_failure(s);
	if (!rep.ok) {
		/* Gmail says "POP not enabled" here, after login. */
		bool perm = strncasecmp(rep.code, "SYS/PERM", 8) == 0;
		return failure(s, perm ? FETCH_PERM : FETCH_TEMP, "STAT refused: %s", rep.text);
	}
	unsigned long count = strtoul(rep.text, NULL, 10);
	if (count > 10000000)
		return failure(s, FETCH_TEMP, "STAT claims %lu messages", count);
	s->n = (unsigned)count;
	s->r->listed = s->n;
	s->msgs = xcalloc(s->n ? s->n : 1, sizeof(*s->msgs));
	struct listing l = {.s = s};
	/* UIDL first when we can (getmail, Outlook order), then LIST. */
	if (s->n > 0 && (s->p.has_uidl || !s->p.capa_ok)) {
		if (pop3c_send(&s->p, false, "UIDL") < 0 || pop3c_reply(&s->p, &rep) < 0)
			return net_failure(s);
		if (rep.ok) {
			l.uidl = true;
			if (pop3c_body(&s->p, listing_line, &l, NULL) < 0)
				return net_failure(s);
			s->has_uidl = true;
		} else if (s->p.has_uidl) {
			return failure(s, FETCH_TEMP, "UIDL advertised but refused: %s", rep.text);
		}
	}
	if (s->n > 0) {
		l.uidl = false;
		if (pop3c_send(&s->p, false, "LIST") < 0 || pop3c_reply(&s->p, &rep) < 0)
			return net_failure(s);
		if (!rep.ok)
			return failure(s, FETCH_TEMP, "LIST refused: %s", rep.text);
		if (pop3c_body(&s->p, listing_line, &l, NULL) < 0)
			return net_failure(s);
	}
	if (l.bad)
		return failure(s, FETCH_TEMP, "%s sent a broken listing: %s", s->a->host, l.why);
	for (unsigned i = 0; i < s->n; i++) {
		if (s->msgs[i].num == 0 || (s->has_uidl && s->msgs[i].uidl == NULL))
			return failure(s, FETCH_TEMP, "%s did not list message %u", s->a->host, i + 1);
	}
	return FETCH_OK;
}

/* ---- the plan --------------------------------------------------------------------- */

static int by_uidl(const void *x, const void *y)
{
	const struct msg *const *a = x, *const *b = y;
	return strcmp((*a)->uidl, (*b)->uidl);
}

/* Mark the messages whose UIDL another message in this listing shares. */
static void mark_duplicate_uidls(struct session *s)
{
	if (!s->has_uidl || s->n < 2)
		return;
	struct msg **v = xcalloc(s->n, sizeof(*v));
	for (unsigned i = 0; i < s->n; i++)
		v[i] = &s->msgs[i];
	qsort(v, s->n, sizeof(*v), by_uidl);
	for (unsigned i = 1; i < s->n; i++)
		if (strcmp(v[i - 1]->uidl, v[i]->uidl) == 0)
			v[i - 1]->dup_uidl = v[i]->dup_uidl = true;
	free(v);
}

/* The UIDL a message is recorded under: none when it does not identify the
 * message (no UIDL, or one the listing gives to several messages). */
static const char *record_id(const struct msg *m)
{
	return m->dup_uidl ? NULL : m->uidl;
}

static enum fetch_status make_plan(struct session *s)
{
	const struct account *a = s->a;
	if (!s->has_uidl && a->keep && s->n > 0)
		return failure(s, FETCH_PERM, "%s does not support UIDL, so messages cannot be "
					       "left on it and recognised later: keep and "
					       "delete_after need UIDL (use delete mode)",
			       a->host);
	/*
	 * Two messages with one UIDL (clients.md B.3): the UIDL says nothing about
	 * either, so neither is ever "already known". In keep mode they could not
	 * be told apart next time: fetch neither and say so. In delete mode they
	 * are fetched and deleted like mail from a server without UIDL.
	 */
	mark_duplicate_uidls(s);
	for (unsigned i = 0; s->has_uidl && i < s->n; i++) {
		struct msg *m = &s->msgs[i];
		if (m->dup_uidl) {
			if (!a->keep) {
				m->plan = PLAN_FETCH;
				continue;
			}
			m->plan = PLAN_SKIP;
			if (s->first) {
				char shown[100];
				printable(m->uidl, POP3_UIDL_MAX, shown, sizeof(shown));
				s->r->skipped++;
				if (!s->o->quiet)
					fprintf(stderr, "[%s] skipping message %u: its UIDL \"%s\" is not unique "
							"on the server, so with keep it could not be recognised "
							"later (it stays on the server)\n",
						a->name, m->num, shown);
			}
			continue;
		}
		struct uid_entry *e = uidstore_find(s->store, m->uidl);
		if (e != NULL) {
			e->last_seen = s->now;
			m->plan = PLAN_KNOWN;
			if (e->flag == UID_DELIVERED && !a->keep)
				m->dele = true;
			else if (e->flag == UID_DELIVERED && a->delete_after_s > 0 &&
				 (uint64_t)(s->now - e->first_seen) >= a->delete_after_s)
				m->dele = true;
			continue;
		}
		m->plan = PLAN_FETCH;
	}
	if (!s->has_uidl)
		for (unsigned i = 0; i < s->n; i++)
			s->msgs[i].plan = PLAN_FETCH;
	for (unsigned i = 0; i < s->n; i++) {
		struct msg *m = &s->msgs[i];
		if (m->plan != PLAN_FETCH)
			continue;
		if (a->max_size > 0 && m->size > a->max_size) {
			/* Headers only for a message the store can remember (or they
			 * would be fetched again on every run). */
			m->plan = a->oversize == OVERSIZE_HEADERS && (s->p.has_top || !s->p.capa_ok) &&
						  s->has_uidl && !m->dup_uidl
					  ? PLAN_HEADERS
					  : PLAN_SKIP;
			if (m->plan == PLAN_SKIP) {
				/* Every session sees them again: count and say it once. */
				if (!s->first)
					continue;
				s->r->skipped++;
				if (!s->o->quiet)
					fprintf(stderr, "[%s] skipping message %u (%llu octets > max_size %llu)%s\n",
						a->name, m->num, (unsigned long long)m->size,
						(unsigned long long)a->max_size,
						a->oversize != OVERSIZE_HEADERS ? ""
						: !s->has_uidl ? ": headers only need UIDL, which the server lacks"
						: m->dup_uidl  ? ": headers only need a unique UIDL"
							       : ": the server has no TOP for its headers");
				continue;
			}
		}
		s->r->waiting++;
		s->r->waiting_bytes += m->size;
		s->planned++;
		s->planned_bytes += m->plan == PLAN_HEADERS ? 0 : m->size;
	}
	return FETCH_OK;
}

/* ---- retrieval ------------------------------------------------------------------------ */

struct body_sink {
	struct dest_msg *dm;
	uint64_t bytes;
};

static int body_line(void *arg, const char *data, size_t len, bool eol)
{
	struct body_sink *b = arg;
	dest_write(b->dm, data, len, eol);
	return 0;
}

/* A message is durable in the destination: record it, plan its DELE. */
static void delivered_now(struct session *s, struct msg *m)
{
	/* The DONE record reaches the kernel now (uidstore_done writes it
	 * through), so a kill -9 from here on cannot fetch it twice. */
	if (record_id(m) != NULL)
		uidstore_done(s->store, record_id(m),
			      m->plan == PLAN_HEADERS ? UID_HEADERS : UID_DELIVERED, s->now);
	if (m->plan == PLAN_HEADERS)
		s->headers_only++;
	s->r->fetched++;
	s->new_delivered++;
	if (m->plan == PLAN_FETCH && !s->a->keep)
		m->dele = true;
}

/* After RETR/TOP's status line: stream the body into the destination. */
static enum fetch_status receive(struct session *s, struct msg *m, bool *delivered)
{
	struct pop3c_reply rep;
	*delivered = false;
	if (pop3c_reply(&s->p, &rep) < 0)
		return net_failure(s);
	if (!rep.ok) {
		/* Microsoft's tokens last about an hour; a long download outlives
		 * them and RETR says so. End the session (what is durable gets
		 * its DELE and QUIT); the caller fetches a new token and goes on. */
		bool oauth = s->a->auth == AUTH_XOAUTH2 || s->a->auth == AUTH_OAUTHBEARER;
		if (oauth && strcasestr(rep.text, "expired") != NULL)
			return failure(s, FETCH_AUTH, "access token expired during the session: %s",
				       rep.text);
		if (!s->o->quiet)
			fprintf(stderr, "[%s] message %u: %s\n", s->a->name, m->num, rep.text);
		s->r->failed++;
		return FETCH_OK; /* that message only; it stays on the server */
	}
	struct dest_msg dm;
	enum dest_result dr = dest_begin(&s->dest, &dm);
	struct body_sink sink = {&dm, 0};
	if (dr != DEST_OK) {
		/* Read the body off the wire anyway, then give up. */
		pop3c_body(&s->p, NULL, NULL, NULL);
		return failure(s, dr == DEST_PERM ? FETCH_PERM : FETCH_TEMP, "%s", s->dest.error);
	}
	if (record_id(m) != NULL && dm.name[0] != '\0') {
		/* Where it will appear, so a crash after the rename is recognised
		 * (written through to the kernel by uidstore_fetching). */
		uidstore_fetching(s->store, record_id(m), dm.name);
	}
	uint64_t octets = 0;
	if (pop3c_body(&s->p, body_line, &sink, &octets) < 0) {
		dest_abort(&dm);
		return net_failure(s);
	}
	dr = dest_commit(&dm, (size_t)(m - s->msgs));
	s->r->bytes += octets;
	if (dr == DEST_PENDING) {
		m->pending = true; /* judged in finish_batch() */
		progress(s, false);
		return FETCH_OK;
	}
	if (dr != DEST_OK) {
		/* Never DELE what was not delivered; MDA tempfail: try next run. */
		if (!s->o->quiet)
			fprintf(stderr, "[%s] message %u not delivered: %s\n", s->a->name, m->num,
				s->dest.error);
		s->r->failed++;
		return failure(s, dr == DEST_TEMP ? FETCH_TEMP : FETCH_PERM, "message %u not delivered: %s",
			       m->num, s->dest.error);
	}
	delivered_now(s, m);
	*delivered = true;
	progress(s, false);
	return FETCH_OK;
}

static int send_retrieve(struct session *s, const struct msg *m)
{
	if (m->plan == PLAN_HEADERS)
		return pop3c_send(&s->p, false, "TOP %u 0", m->num);
	return pop3c_send(&s->p, false, "RETR %u", m->num);
}

static enum fetch_status send_dele_commands(struct session *s, const unsigned *idx, size_t n)
{
	for (size_t j = 0; j < n; j++)
		if (pop3c_send(&s->p, false, "DELE %u", s->msgs[idx[j]].num) < 0)
			return net_failure(s);
	return FETCH_OK;
}

static enum fetch_status read_dele_replies(struct session *s, const unsigned *idx, size_t n)
{
	for (size_t j = 0; j < n; j++) {
		struct msg *m = &s->msgs[idx[j]];
		struct pop3c_reply rep;
		if (pop3c_reply(&s->p, &rep) < 0)
			return net_failure(s);
		if (rep.ok) {
			m->deleted = true;
		} else if (!s->o->quiet) {
			/* It stays on the server; nothing is lost. */
			fprintf(stderr, "[%s] server refused to delete message %u: %s\n", s->a->name,
				m->num, rep.text);
		}
	}
	return FETCH_OK;
}

/* DELE every message marked and not yet deleted (pipelined when we can). */
static enum fetch_status send_deletions(struct session *s, const unsigned *idx, size_t n)
{
	bool pipe = s->p.has_pipelining && s->a->pipelining;
	size_t window = pipe ? s->a->window : 1;
	enum fetch_status st = FETCH_OK;
	for (size_t i = 0; i < n && st == FETCH_OK; i += window) {
		size_t k = i + window < n ? window : n - i;
		st = send_dele_commands(s, idx + i, k);
		if (st == FETCH_OK)
			st = read_dele_replies(s, idx + i, k);
	}
	return st;
}

static void batch_synced(void *arg, size_t tag, enum dest_result r)
{
	struct session *s = arg;
	struct msg *m = &s->msgs[tag];
	m->pending = false;
	if (r == DEST_OK) {
		delivered_now(s, m);
		return;
	}
	s->r->failed++;
	if (!s->o->quiet)
		fprintf(stderr, "[%s] message %u could not be stored in %s\n", s->a->name, m->num,
			s->a->dest_arg);
}

/* Make what arrived durable and recorded: files and new/ fsync'd, DONE lines
 * written and the journal fsync'd. Then (and only then) the messages of idx
 * marked for deletion may be deleted: their indexes go to dele, *n_dele. */
static enum fetch_status commit_batch(struct session *s, const unsigned *idx, size_t n,
				      unsigned *dele, size_t *n_dele)
{
	*n_dele = 0;
	if (dest_sync(&s->dest, batch_synced, s) < 0)
		return failure(s, FETCH_TEMP, "cannot make %s durable: %s", s->a->dest_arg,
			       strerror(errno));
	if (uidstore_sync(s->store) < 0)
		return failure(s, FETCH_TEMP, "cannot write %s: %s", s->a->uidl_store,
			       strerror(errno));
	for (size_t i = 0; i < n; i++)
		if (s->msgs[idx[i]].dele && !s->msgs[idx[i]].deleted)
			dele[(*n_dele)++] = idx[i];
	return FETCH_OK;
}

/* Commit, then delete on the server. */
static enum fetch_status finish_batch(struct session *s, const unsigned *idx, size_t n,
				      unsigned *dele_scratch)
{
	size_t n_dele;
	enum fetch_status st = commit_batch(s, idx, n, dele_scratch, &n_dele);
	return st == FETCH_OK ? send_deletions(s, dele_scratch, n_dele) : st;
}

static enum fetch_status send_retrieves(struct session *s, const unsigned *todo, size_t from,
					size_t to)
{
	for (size_t j = from; j < to; j++)
		if (send_retrieve(s, &s->msgs[todo[j]]) < 0)
			return net_failure(s);
	return FETCH_OK;
}

/*
 * Batches of `window` messages. With pipelining the server is kept busy
 * while a batch is made durable: once batch i has arrived, the DELEs of
 * batch i-1 (committed already) and the RETRs of batch i+1 go out
 * together, the DELE answers are read, and batch i is committed while
 * batch i+1 streams in; its DELEs wait for the next round. A DELE is
 * still sent only after its message is durable and recorded.
 */
static enum fetch_status retrieve_all(struct session *s)
{
	bool pipe = s->p.has_pipelining && s->a->pipelining;
	size_t window = pipe ? s->a->window : 1;
	/* A batch is judged as a whole; without pipelining still use the
	 * window, so fsyncs and DELEs are grouped. */
	size_t batch = s->a->window;
	size_t cap = s->n ? s->n : 1;
	unsigned *todo = xcalloc(cap, sizeof(unsigned));
	unsigned *known = xcalloc(cap, sizeof(unsigned));
	unsigned *scratch = xcalloc(cap, sizeof(unsigned));
	unsigned *held = xcalloc(cap, sizeof(unsigned)); /* committed, DELE not sent yet */
	size_t n_todo = 0, n_known = 0, n_held = 0;
	size_t sent_to = 0; /* todo[..sent_to) were asked for ahead of their window */
	enum fetch_status st = FETCH_OK;
	for (unsigned i = 0; i < s->n; i++) {
		if (s->msgs[i].plan == PLAN_FETCH || s->msgs[i].plan == PLAN_HEADERS)
			todo[n_todo++] = i;
		else if (s->msgs[i].dele)
			known[n_known++] = i; /* delivered in an earlier run */
	}
	if (n_known > 0 && (st = finish_batch(s, known, n_known, scratch)) != FETCH_OK)
		goto out;
	/* After Ctrl-C, only what was asked for already is received. */
	for (size_t i = 0; i < n_todo && st == FETCH_OK && (!fetch_interrupted || sent_to > i);
	     i += batch) {
		size_t end = i + batch < n_todo ? i + batch : n_todo;
		for (size_t w = i; w < end && st == FETCH_OK; w += window) {
			size_t wend = w + window < end ? w + window : end;
			bool asked = pipe && sent_to >= wend;
			/* Ctrl-C: ask for no more; what is asked for already is
			 * received (its answers are on their way), then the batch
			 * is committed and QUIT sent. */
			if (!asked && fetch_interrupted) {
				end = w;
				break;
			}
			if (pipe && !asked && (st = send_retrieves(s, todo, w, wend)) != FETCH_OK)
				break;
			for (size_t j = w; j < wend && st == FETCH_OK; j++) {
				struct msg *m = &s->msgs[todo[j]];
				bool delivered;
				if (!pipe && fetch_interrupted) {
					end = j;
					break;
				}
				if (!pipe && send_retrieve(s, m) < 0) {
					st = net_failure(s);
					break;
				}
				st = receive(s, m, &delivered);
				if (st != FETCH_OK && !s->broken) {
					/* The destination failed: read the pipelined
					 * answers off the wire, fetch no more. */
					for (size_t k = j + 1; pipe && k < wend; k++) {
						struct pop3c_reply rep;
						if (pop3c_reply(&s->p, &rep) < 0 ||
						    (rep.ok && pop3c_body(&s->p, NULL, NULL, NULL) < 0)) {
							net_failure(s);
							break;
						}
					}
				}
			}
		}
		if (s->broken)
			break;
		/* What arrived is made durable and deleted even if something
		 * failed, as long as the connection works. */
		size_t next = end + window < n_todo ? end + window : n_todo;
		bool ahead = pipe && st == FETCH_OK && !fetch_interrupted && end < n_todo;
		enum fetch_status cs = send_dele_commands(s, held, n_held);
		if (cs == FETCH_OK && ahead) {
			cs = send_retrieves(s, todo, end, next);
			sent_to = next;
		}
		if (cs == FETCH_OK)
			cs = read_dele_replies(s, held, n_held);
		n_held = 0;
		if (cs == FETCH_OK) {
			cs = commit_batch(s, todo + i, end - i, held, &n_held);
			/* Answers are on their way that nothing will read: the
			 * session cannot go on to QUIT. */
			if (cs != FETCH_OK && ahead)
				s->broken = true;
		}
		if (cs == FETCH_OK && !ahead) {
			cs = send_deletions(s, held, n_held);
			n_held = 0;
		}
		if (st == FETCH_OK)
			st = cs;
	}
	/* Committed in the last round, not deleted yet (a failure ended it). */
	if (n_held > 0 && !s->broken) {
		enum fetch_status cs = send_deletions(s, held, n_held);
		if (st == FETCH_OK)
			st = cs;
	}
out:
	/* Whatever is still pending becomes durable (and recorded) now. */
	if (s->broken) {
		dest_sync(&s->dest, batch_synced, s);
		uidstore_sync(s->store);
	}
	free(todo);
	free(known);
	free(scratch);
	free(held);
	return st;
}

/* ---- a session ----------------------------------------------------------------------- */

static enum fetch_status open_session(struct session *s, const char *secret)
{
	const struct account *a = s->a;
	/* --probe looks at a broken certificate too (and says it is broken). */
	struct client_tls_config tls = {a->ca_file, a->fingerprint, !s->o->probe};
	s->p.trace = s->o->verbose;
	if (client_connect(&s->p.conn, a->host, a->port, a->connect_timeout_ms, a->timeout_ms) < 0)
		return net_failure(s);
	/* A second Ctrl-C stops a read or write at once (fetch_cmd.c). */
	s->p.conn.abort_flag = &fetch_aborted;
	if (a->tls == ACCOUNT_TLS_IMPLICIT) {
		if (client_start_tls(&s->p.conn, &tls) < 0)
			return failure(s, FETCH_TEMP, "%s", s->p.conn.error);
		s->tls = true;
	}
	if (pop3c_greeting(&s->p) < 0 || pop3c_capa(&s->p) < 0)
		return net_failure(s);
	if (a->tls == ACCOUNT_TLS_STARTTLS) {
		/* RFC 2595 §4; no silent fallback to plaintext, ever. */
		if (s->p.capa_ok && !s->p.has_stls)
			return failure(s, FETCH_PERM, "%s does not offer STLS (tls = starttls)", a->host);
		struct pop3c_reply rep;
		if (pop3c_send(&s->p, false, "STLS") < 0 || pop3c_reply(&s->p, &rep) < 0)
			return net_failure(s);
		if (!rep.ok)
			return failure(s, FETCH_PERM, "%s refused STLS: %s", a->host, rep.text);
		if (client_start_tls(&s->p.conn, &tls) < 0)
			return failure(s, FETCH_TEMP, "%s", s->p.conn.error);
		s->tls = true;
		/* Forget what was learnt in the clear, the APOP timestamp too. */
		s->p.apop_timestamp[0] = '\0';
		if (pop3c_capa(&s->p) < 0)
			return net_failure(s);
	}
	if (s->o->probe)
		return FETCH_OK;
	char why[768];
	enum fetch_status st = client_login(&s->p, a, secret, s->tls, why, sizeof(why));
	if (st != FETCH_OK)
		return failure(s, st, "%s", why);
	/* mutt, mpop: CAPA again after login (capabilities may grow). */
	if ((!s->p.capa_ok || !s->p.has_uidl) && pop3c_capa(&s->p) < 0)
		return net_failure(s);
	return FETCH_OK;
}

static void quit(struct session *s, bool *committed)
{
	struct pop3c_reply rep;
	*committed = pop3c_send(&s->p, false, "QUIT") == 0 && pop3c_reply(&s->p, &rep) == 0 &&
		     rep.ok;
}

static void print_probe(struct session *s)
{
	char desc[128], fp[160] = "";
	client_tls_describe(&s->p.conn, desc, sizeof(desc));
	client_tls_fingerprint(&s->p.conn, fp, sizeof(fp));
	printf("[%s] %s port %u\n  greeting: %s\n  TLS: %s\n", s->a->name, s->a->host, s->a->port,
	       s->p.greeting, desc);
	if (fp[0] != '\0') {
		long vr = SSL_get_verify_result(s->p.conn.ssl);
		printf("  certificate check: %s\n",
		       vr == X509_V_OK ? "OK" : X509_verify_cert_error_string(vr));
		struct buf chain = BUF_INIT;
		client_tls_chain(&s->p.conn, &chain);
		printf("  certificate fingerprint: %s\n  certificate chain:\n%s", fp,
		       chain.data ? chain.data : "");
		buf_free(&chain);
	}
	printf("  CAPA:%s\n", s->p.capa_ok ? "" : " (not supported)");
	if (s->p.capa_raw.data != NULL) {
		char *copy = xstrdup(s->p.capa_raw.data);
		char *save = NULL;
		for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
			printf("    %s\n", l);
		free(copy);
	}
	enum account_auth auth = client_choose_auth(&s->p, s->a, s->tls);
	printf("  login would use: %s%s\n",
	       auth == AUTH_AUTO ? "nothing (no method offered that pigeon fetch can use)"
				 : client_auth_name(auth),
	       !s->tls && !s->a->allow_plaintext ? " (refused: no TLS)" : "");
}

static enum fetch_status run_session(const struct account *a, const struct fetch_options *o,
				     struct fetch_result *r, struct uidstore *store,
				     const char *secret, bool first, unsigned *delivered)
{
	struct session s = {.a = a, .o = o, .r = r, .store = store, .first = first};
	s.now = time(NULL);
	clock_gettime(CLOCK_MONOTONIC, &s.started);
	dest_open(&s.dest, a);
	enum fetch_status st = open_session(&s, secret);
	bool committed = false;
	if (st == FETCH_OK && o->probe) {
		print_probe(&s);
		quit(&s, &committed);
		goto out;
	}
	if (st == FETCH_OK)
		st = list_messages(&s);
	if (st == FETCH_OK)
		st = make_plan(&s);
	if (st == FETCH_OK && o->check) {
		quit(&s, &committed);
		goto out;
	}
	if (st == FETCH_OK) {
		st = retrieve_all(&s);
		if (s.headers_only > 0 && !o->quiet)
			fprintf(stderr, "[%s] %u message%s over max_size: only the headers were fetched; "
					"the message%s stay%s on the server\n",
				a->name, s.headers_only, s.headers_only == 1 ? "" : "s",
				s.headers_only == 1 ? "" : "s", s.headers_only == 1 ? "s" : "");
	}
	/* While the connection works, QUIT commits the deletions made so far
	 * (each only for a message already durable and recorded). */
	if (!s.broken && s.p.conn.fd >= 0)
		quit(&s, &committed);
	if (committed) {
		for (unsigned i = 0; i < s.n; i++) {
			if (s.msgs[i].deleted) {
				r->deleted++;
				if (record_id(&s.msgs[i]) != NULL)
					uidstore_gone(store, record_id(&s.msgs[i]));
			}
		}
	} else if (st == FETCH_OK) {
		st = failure(&s, FETCH_TEMP, "QUIT was not answered: no deletion took effect");
	}
	/* Forget old entries only after a complete, committed listing. */
	uidstore_save(store, committed && s.has_uidl && st == FETCH_OK, s.now);
	*delivered = s.new_delivered;
	progress(&s, true);
out:
	for (unsigned i = 0; i < s.n; i++)
		free(s.msgs[i].uidl);
	free(s.msgs);
	dest_close(&s.dest);
	pop3c_free(&s.p);
	return st;
}

/*
 * Journal FETCH records without DONE: the run that wrote them died. A copy
 * that reached the Maildir's new/ (or cur/) is recorded now, so it is not
 * fetched twice; an incomplete one left in tmp/ is removed (clients.md B.1.7).
 * Either way the record is settled (the message is fetched again), so none
 * is left pending. This needs no server, so it happens before anything can
 * fail.
 */
static void recover(const struct account *a, struct uidstore *store)
{
	if (store->n_pending == 0)
		return;
	struct dest d;
	dest_open(&d, a);
	time_t now = time(NULL);
	/* uidstore_done() takes the record out of pending: walk a copy. */
	size_t n = store->n_pending;
	struct uid_pending *copy = xcalloc(n, sizeof(*copy));
	for (size_t i = 0; i < n; i++)
		copy[i] = (struct uid_pending){xstrdup(store->pending[i].uidl),
					       xstrdup(store->pending[i].name)};
	int synced = 0; /* new/ made durable: 0 not yet, 1 done, -1 failed */
	for (size_t i = 0; i < n; i++) {
		const struct uid_pending *p = &copy[i];
		if (dest_has(&d, p->name)) {
			/* The rename into new/ may not have reached the disk (the
			 * run died before, or failed at, its fsync): a DONE now
			 * lets the next session DELE it, so make it durable first. */
			if (synced == 0)
				synced = !a->fsync || maildir_sync_new(a->dest_arg) == 0 ? 1 : -1;
			if (synced > 0)
				uidstore_done(store, p->uidl, UID_DELIVERED, now);
			/* else: stays pending, settled by a later run */
		} else {
			if (a->dest == DEST_MAILDIR && strchr(p->name, '/') == NULL) {
				char *tmp = xasprintf("%s/tmp/%s", a->dest_arg, p->name);
				unlink(tmp);
				free(tmp);
			}
			uidstore_settled(store, p->uidl);
		}
		free(copy[i].uidl);
		free(copy[i].name);
	}
	free(copy);
	dest_close(&d);
	uidstore_sync(store);
	uidstore_save(store, false, now);
}

enum fetch_status fetch_account(const struct account *a, const struct fetch_options *o,
				struct fetch_result *r)
{
	memset(r, 0, sizeof(*r));
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char why[1536] = "";
	char *secret = NULL;
	struct uidstore store;
	bool busy = false;
	enum fetch_status st = FETCH_OK;
	if (!o->probe) {
		secret = secret_get(a, why, sizeof(why));
		if (secret == NULL) {
			snprintf(r->message, sizeof(r->message), "%s", why);
			return r->status = FETCH_CONFIG;
		}
	}
	if (uidstore_open(&store, a->uidl_store, &busy, why, sizeof(why)) < 0) {
		snprintf(r->message, sizeof(r->message), "%s", why);
		uidstore_close(&store);
		secret_free(secret);
		return r->status = busy ? FETCH_TEMP : FETCH_CONFIG;
	}
	/* UIDLs are only meaningful on the server and for the user they came
	 * from (clients.md B.1 item 10): another account's would count as
	 * already fetched here, and delete mode would delete unread mail. */
	if (!o->probe && uidstore_claim(&store, a->host, a->port, a->user, why, sizeof(why)) < 0) {
		snprintf(r->message, sizeof(r->message), "%s", why);
		uidstore_close(&store);
		secret_free(secret);
		return r->status = FETCH_PERM;
	}
	if (!o->probe) /* a probe does not touch a store it has not claimed */
		recover(a, &store);
	bool retried_token = false;
	/* Gmail lists about 250 messages per session: go on while sessions bring
	 * new mail, up to max_sessions. */
	for (unsigned n = 0; n < a->max_sessions && !fetch_interrupted; n++) {
		unsigned delivered = 0;
		r->sessions++;
		st = run_session(a, o, r, &store, secret, r->sessions == 1, &delivered);
		if (st == FETCH_AUTH && !retried_token && a->password_command != NULL &&
		    (a->auth == AUTH_XOAUTH2 || a->auth == AUTH_OAUTHBEARER)) {
			/* An expired token: run the command once more. */
			retried_token = true;
			secret_free(secret);
			secret = secret_get(a, why, sizeof(why));
			if (secret == NULL)
				break;
			n--;
			continue;
		}
		if (st != FETCH_OK || o->check || o->probe || delivered == 0)
			break;
	}
	secret_free(secret);
	uidstore_close(&store);
	r->seconds = since(&t0);
	if (fetch_interrupted && st == FETCH_OK)
		st = FETCH_TEMP;
	return r->status = st;
}
