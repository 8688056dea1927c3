/* status.h - pigeon fetch's exit statuses (sysexits(3)); with several
 * accounts the worst one wins (docs/fetch.md). */
#ifndef PIGEON_FETCH_STATUS_H
#define PIGEON_FETCH_STATUS_H

enum fetch_status {
	FETCH_OK = 0,        /* done: new mail or none */
	FETCH_NOTHING = 1,   /* nothing new, with --exit-nothing-new */
	FETCH_USAGE = 64,
	FETCH_PERM = 69,     /* the server refuses for good (e.g. POP disabled) */
	FETCH_SOFTWARE = 70, /* a bug */
	FETCH_TEMP = 75,     /* try again later: network, [IN-USE], MDA tempfail */
	FETCH_AUTH = 77,     /* credentials refused */
	FETCH_CONFIG = 78,   /* configuration problem */
};

/* Which of two statuses is worse (kept by a multi-account run). */
static inline enum fetch_status fetch_worst(enum fetch_status a, enum fetch_status b)
{
	static const int rank[] = {[FETCH_OK] = 0, [FETCH_NOTHING] = 1, [FETCH_TEMP] = 2,
				   [FETCH_PERM] = 3, [FETCH_AUTH] = 4, [FETCH_USAGE] = 5,
				   [FETCH_CONFIG] = 6, [FETCH_SOFTWARE] = 7};
	return rank[a] >= rank[b] ? a : b;
}

#endif
