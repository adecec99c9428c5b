/* Internal to `vxm train`: the batches of consecutive steps, loaded (streamed volumes read and decoded) on a
 * background thread into a bounded queue while the device computes the current step.  The batch of step k is
 * the same with or without the thread (train_data_draw depends on (seed, k) only). */
#ifndef VXM_CLI_TRAIN_PREFETCH_H
#define VXM_CLI_TRAIN_PREFETCH_H

#include "cli/train_data.h"

#define TRAIN_PREFETCH_DEPTH 2 /* batches loaded ahead of the one in use */

typedef struct train_prefetch train_prefetch;

/* Delivers steps first, first + 1, ... of `d` (which must outlive it); async = 0 loads each batch when asked
 * (--no-prefetch).  1 on failure (message printed). */
int train_prefetch_start(const train_data *d, int batch, long first, int async, train_prefetch **out);
/* The batch of the next step, waiting for it when needed; valid until the next call.  Check ->failed. */
train_batch *train_prefetch_next(train_prefetch *p);
/* Stops the thread (waiting for the batch being loaded) and frees everything. */
void train_prefetch_stop(train_prefetch *p);

#endif
