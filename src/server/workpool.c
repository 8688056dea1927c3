/* workpool.c - worker threads with completion on the libevent loop (eventfd). */
#include "server/workpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/xmalloc.h"

struct workpool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct work *queue_head, *queue_tail;
	struct work *done_head, *done_tail;
	bool stopping;
	pthread_t *threads;
	unsigned n_threads;
	int efd;
	struct event *ev;
};

static void push(struct work **head, struct work **tail, struct work *w)
{
	w->next = NULL;
	if (*tail)
		(*tail)->next = w;
	else
		*head = w;
	*tail = w;
}

static void *worker_main(void *arg)
{
	struct workpool *pool = arg;
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (pool->queue_head == NULL && !pool->stopping)
			pthread_cond_wait(&pool->cond, &pool->lock);
		if (pool->queue_head == NULL)
			break;
		struct work *w = pool->queue_head;
		pool->queue_head = w->next;
		if (pool->queue_head == NULL)
			pool->queue_tail = NULL;
		pthread_mutex_unlock(&pool->lock);
		w->run(w);
		pthread_mutex_lock(&pool->lock);
		push(&pool->done_head, &pool->done_tail, w);
		uint64_t one = 1;
		if (write(pool->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_error("workpool: eventfd write: %s", strerror(errno));
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

static void completions(evutil_socket_t fd, short what, void *arg)
{
	struct workpool *pool = arg;
	uint64_t count;
	(void)what;
	if (read(fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		log_error("workpool: eventfd read: %s", strerror(errno));
	pthread_mutex_lock(&pool->lock);
	struct work *w = pool->done_head;
	pool->done_head = pool->done_tail = NULL;
	pthread_mutex_unlock(&pool->lock);
	while (w != NULL) {
		struct work *next = w->next;
		w->done(w);
		w = next;
	}
}

struct workpool *workpool_new(struct event_base *base, unsigned threads)
{
	struct workpool *pool = xcalloc(1, sizeof(*pool));
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	pool->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (pool->efd < 0) {
		log_error("workpool: eventfd: %s", strerror(errno));
		free(pool);
		return NULL;
	}
	pool->ev = event_new(base, pool->efd, EV_READ | EV_PERSIST, completions, pool);
	event_add(pool->ev, NULL);
	pool->threads = xcalloc(threads, sizeof(pthread_t));
	for (unsigned i = 0; i < threads; i++) {
		if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0) {
			log_error("workpool: cannot start thread %u", i);
			break;
		}
		pool->n_threads++;
	}
	if (pool->n_threads == 0) {
		workpool_free(pool);
		return NULL;
	}
	return pool;
}

void workpool_submit(struct workpool *pool, struct work *w)
{
	pthread_mutex_lock(&pool->lock);
	push(&pool->queue_head, &pool->queue_tail, w);
	pthread_cond_signal(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
}

void workpool_free(struct workpool *pool)
{
	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->n_threads; i++)
		pthread_join(pool->threads[i], NULL);
	/* Every queued job has run; let their owners clean up. */
	completions(pool->efd, EV_READ, pool);
	event_free(pool->ev);
	close(pool->efd);
	pthread_cond_destroy(&pool->cond);
	pthread_mutex_destroy(&pool->lock);
	free(pool->threads);
	free(pool);
}
