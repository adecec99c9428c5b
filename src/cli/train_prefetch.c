/* Prefetching `vxm train` batches: one producer thread, one consumer (the training loop), a ring of
 * TRAIN_PREFETCH_DEPTH + 1 slots.  Slot k % N holds step first + k; the producer may run ahead of the consumer's
 * current batch by DEPTH batches, so memory stays bounded (DEPTH + 1 batches of streamed volumes).  The producer
 * has its own vxm_context (contexts are not shared between threads) and reports problems through the batch, so
 * all printing stays on the main thread in step order. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/train_prefetch.h"

#define NSLOTS (TRAIN_PREFETCH_DEPTH + 1)

struct train_prefetch {
    const train_data *d;
    vxm_context *ctx; /* the producer's */
    train_batch slot[NSLOTS];
    long first;
    long produced, consumed; /* batches filled / handed out so far (counts from `first`) */
    int async, running, stop;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void *producer(void *arg)
{
    train_prefetch *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        /* the consumer holds batch consumed - 1 until its next call; slots from there on are taken */
        while (!p->stop && p->produced - (p->consumed > 0 ? p->consumed - 1 : 0) >= NSLOTS)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop)
            break;
        long k = p->produced;
        pthread_mutex_unlock(&p->mu); /* load without the lock: the consumer keeps training meanwhile */
        train_batch_fill(p->d, p->ctx, p->first + k, &p->slot[k % NSLOTS]);
        pthread_mutex_lock(&p->mu);
        p->produced = k + 1;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

void train_prefetch_stop(train_prefetch *p)
{
    if (!p)
        return;
    if (p->running) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->thread, NULL);
    }
    if (p->async) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
    }
    for (int i = 0; i < NSLOTS; i++)
        train_batch_free(&p->slot[i]);
    vxm_context_free(p->ctx);
    free(p);
}

int train_prefetch_start(const train_data *d, int batch, long first, int async, train_prefetch **out)
{
    *out = NULL;
    train_prefetch *p = calloc(1, sizeof *p);
    int bad = !p;
    for (int i = 0; i < NSLOTS && !bad; i++)
        bad = train_batch_init(&p->slot[i], batch);
    if (!bad)
        bad = !(p->ctx = vxm_context_create());
    if (bad) {
        fprintf(stderr, "vxm: out of memory\n");
        train_prefetch_stop(p);
        return 1;
    }
    p->d = d;
    p->first = first;
    if (async) {
        if (pthread_mutex_init(&p->mu, NULL) || pthread_cond_init(&p->cv, NULL)) {
            fprintf(stderr, "vxm: cannot create the prefetch thread's lock\n");
            train_prefetch_stop(p);
            return 1;
        }
        p->async = 1;
        /* SIGINT/SIGTERM go to the training loop's thread: the producer blocks them (inherited mask) */
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        int rc = pthread_create(&p->thread, NULL, producer, p);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc) {
            fprintf(stderr, "vxm: cannot start the prefetch thread: %s\n", strerror(rc));
            train_prefetch_stop(p);
            return 1;
        }
        p->running = 1;
    }
    *out = p;
    return 0;
}

train_batch *train_prefetch_next(train_prefetch *p)
{
    if (!p->async) {
        train_batch *b = &p->slot[0];
        train_batch_fill(p->d, p->ctx, p->first + p->consumed++, b);
        return b;
    }
    pthread_mutex_lock(&p->mu);
    long k = p->consumed++; /* this releases slot k - 1 to the producer */
    pthread_cond_broadcast(&p->cv);
    while (p->produced <= k)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return &p->slot[k % NSLOTS];
}
