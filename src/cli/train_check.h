/* Internal to `vxm train`: --check (cli/train_check.c). */
#ifndef VXM_CLI_TRAIN_CHECK_H
#define VXM_CLI_TRAIN_CHECK_H

#include "cli/train_data.h"
#include "train/train.h"

/* Computes the gradients of `batch` (nbatch pairs) with trainer t and with a CPU-backend trainer of the same options,
 * prints the relative L2 difference per weight, and fails (returns 1, one error line) when the worst exceeds
 * tolerance.  0 when they agree. */
int train_check_gradients(vxm_context *ctx, vxm_backend *be, vxm_trainer *t, const vxm_train_options *opt, int nbatch,
                          double tolerance, const train_data *d, const train_batch *batch);

#endif
