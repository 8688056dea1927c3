/*
 * syncer.h - making downloaded Maildir messages durable while the next ones
 * arrive: a few threads fsync finished tmp/ files and rename them into new/.
 * Concurrent fsyncs also let the file system commit them together, so
 * "fsync every message" costs a fraction of doing them one by one. The
 * fetch loop waits for all of them (and fsyncs new/) before it records a
 * batch and sends its DELEs.
 */
#ifndef PIGEON_SYNCER_H
#define PIGEON_SYNCER_H

#include <stddef.h>

#include "deliver/maildir_deliver.h"

struct syncer;

struct syncer *syncer_new(unsigned threads);
/* Takes ownership of d (heap-allocated, finished); tag identifies it. */
void syncer_submit(struct syncer *s, struct maildir_delivery *d, size_t tag);
/* Wait for everything submitted; done() is called for each, in any order. */
void syncer_wait(struct syncer *s, void (*done)(void *arg, size_t tag, enum deliver_status st),
		 void *arg);
void syncer_free(struct syncer *s);

#endif
