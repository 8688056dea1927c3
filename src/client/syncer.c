/* syncer.c - background fsync + rename of finished Maildir deliveries. */
#include "client/syncer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/xmalloc.h"

struct job {
	struct maildir_delivery *d;
	size_t tag;
	enum deliver_status st;
	struct job *next;
};

struct syncer {
	pthread_mutex_t lock;
	pthread_cond_t work, idle;
	struct job *todo, *done;
	unsigned busy;
	bool stop;
	pthread_t *threads;
	unsigned n;
};

static void *worker(void *arg)
{
	struct syncer *s = arg;
	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (s->todo == NULL && !s->stop)
			pthread_cond_wait(&s->work, &s->lock);
		if (s->todo == NULL)
			break;
		struct job *j = s->todo;
		s->todo = j->next;
		s->busy++;
		pthread_mutex_unlock(&s->lock);
		j->st = maildir_delivery_publish(j->d);
		pthread_mutex_lock(&s->lock);
		j->next = s->done;
		s->done = j;
		s->busy--;
		pthread_cond_broadcast(&s->idle);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

struct syncer *syncer_new(unsigned threads)
{
	struct syncer *s = xcalloc(1, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->work, NULL);
	pthread_cond_init(&s->idle, NULL);
	s->threads = xcalloc(threads, sizeof(pthread_t));
	for (unsigned i = 0; i < threads; i++)
		if (pthread_create(&s->threads[s->n], NULL, worker, s) == 0)
			s->n++;
	return s;
}

void syncer_submit(struct syncer *s, struct maildir_delivery *d, size_t tag)
{
	struct job *j = xcalloc(1, sizeof(*j));
	j->d = d;
	j->tag = tag;
	if (s->n == 0) { /* no threads could start: do it here */
		j->st = maildir_delivery_publish(d);
		pthread_mutex_lock(&s->lock);
		j->next = s->done;
		s->done = j;
		pthread_mutex_unlock(&s->lock);
		return;
	}
	pthread_mutex_lock(&s->lock);
	/* FIFO is not needed: the batch is judged as a whole. */
	j->next = s->todo;
	s->todo = j;
	pthread_cond_signal(&s->work);
	pthread_mutex_unlock(&s->lock);
}

void syncer_wait(struct syncer *s, void (*done)(void *arg, size_t tag, enum deliver_status st),
		 void *arg)
{
	pthread_mutex_lock(&s->lock);
	while (s->todo != NULL || s->busy > 0)
		pthread_cond_wait(&s->idle, &s->lock);
	struct job *list = s->done;
	s->done = NULL;
	pthread_mutex_unlock(&s->lock);
	while (list != NULL) {
		struct job *next = list->next;
		if (done != NULL)
			done(arg, list->tag, list->st);
		free(list->d);
		free(list);
		list = next;
	}
}

void syncer_free(struct syncer *s)
{
	if (s == NULL)
		return;
	syncer_wait(s, NULL, NULL);
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_broadcast(&s->work);
	pthread_mutex_unlock(&s->lock);
	for (unsigned i = 0; i < s->n; i++)
		pthread_join(s->threads[i], NULL);
	pthread_cond_destroy(&s->work);
	pthread_cond_destroy(&s->idle);
	pthread_mutex_destroy(&s->lock);
	free(s->threads);
	free(s);
}
