/* Internal to `vxm train --synthmorph`: SynthMorph's batches (vxm.generators.synthmorph, training doc §6.2),
 * synthesised on the training device.  Step k's draws depend on (seed, k) only, so --resume continues exactly. */
#ifndef VXM_CLI_TRAIN_SYNTH_H
#define VXM_CLI_TRAIN_SYNTH_H

#include "cli/synth_source.h"
#include "cli/train_data.h"

typedef struct train_synth {
    synth_source src;
    int batch, same_subj;
    unsigned long long seed;
    vxm_backend *be;          /* the training backend, which holds dev (set by the first fill) */
    vxm_tensor *dev;          /* per sample: moving image, fixed image, moving one-hot, fixed one-hot */
    const vxm_tensor **devp;  /* &dev[k], the batch's view (train_batch.dev) */
} train_synth;

/* Opens the label maps or shapes; 0, or 1 after one error line. */
int train_synth_open(vxm_context *ctx, const synth_spec *spec, int batch, int same_subj, unsigned long long seed,
                     train_synth *ts);
/* Frees the device tensors too: before the backend is closed. */
void train_synth_close(train_synth *ts);
/* Fills b (from train_batch_init(b, batch)) with the pairs of global step `step` (0-based), synthesised into
 * device tensors of `be` (the trainer's backend; allocated by the first call and reused: b->dev points at them,
 * the host pointers are NULL).  VXM_OK or an error in be's context. */
vxm_status train_synth_fill(train_synth *ts, vxm_backend *be, long step, train_batch *b);

#endif
