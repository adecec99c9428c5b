/* Internal to `vxm train`: what a person watches -- the CSV log D/log.csv (one row per step, flushed), the epoch
 * lines on stderr and, when stderr is a terminal, a live line per step. */
#ifndef VXM_CLI_TRAIN_LOG_H
#define VXM_CLI_TRAIN_LOG_H

#include <stddef.h>

#include "train/train.h"

typedef struct train_log train_log;

/* Opens DIR/log.csv with the columns epoch,step,<term names>,total,seconds.  keep_step < 0: a new log
 * (replacing an old one); else (--resume) the rows of steps <= keep_step are kept and the log continues.
 * 1 after a one-line error. */
int train_log_open(const char *dir, const vxm_train_losses *names, long keep_step, train_log **out);
/* Appends one step (weighted terms, total, the step's seconds) and flushes.  A failed write is reported once
 * on stderr and logging stops; training goes on. */
void train_log_row(train_log *l, int epoch, long step, const vxm_train_losses *L, double seconds);
void train_log_close(train_log *l);

/* "42s", "3m07s", "1h02m". */
void train_format_eta(double s, char *buf, size_t n);
/* "epoch 3/1500  loss 0.01234 (mse 0.0120, grad 0.00034)  0.52 s/step  ETA 1h02m" on stderr; sum: the epoch's
 * summed terms over `steps` steps (epoch means, as Keras prints). */
void train_epoch_line(int epoch, int epochs, const vxm_train_losses *sum, int steps, double s_per_step,
                      double eta);
/* The live line (\r, no newline): epoch, step, this step's terms, s/step, ETA, device. */
void train_live_line(int epoch, int epochs, int step, int steps, const vxm_train_losses *L, double s_per_step,
                     double eta, const char *device);
/* Erases the live line (before any other stderr output). */
void train_live_clear(void);

#endif
