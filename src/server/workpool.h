/*
 * workpool.h - a few threads for work that blocks: password hashing, maildrop
 * scans, UPDATE-state commits. The event loop never waits for them; a finished
 * job's done() runs back on the loop thread.
 */
#ifndef PIGEON_WORKPOOL_H
#define PIGEON_WORKPOOL_H

struct event_base;

struct work {
	void (*run)(struct work *w);  /* on a worker thread */
	void (*done)(struct work *w); /* on the loop thread, after run */
	struct work *next;
};

struct workpool;

struct workpool *workpool_new(struct event_base *base, unsigned threads);
void workpool_submit(struct workpool *pool, struct work *w);
/* Runs every queued job to the end, calls their done(), joins the threads. */
void workpool_free(struct workpool *pool);

#endif
