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
    size_t nvox;
    float *buf; /* per sample: moving image, fixed image, moving one-hot, fixed one-hot */
} train_synth;

/* Opens the label maps or shapes; 0, or 1 after one error line. */
int train_synth_open(vxm_context *ctx, const synth_spec *spec, int batch, int same_subj, unsigned long long seed,
                     train_synth *ts);
void train_synth_close(train_synth *ts);
/* Fills b (from train_batch_init(b, batch)) with the pairs of global step `step` (0-based).  VXM_OK or an error
 * in be's context. */
vxm_status train_synth_fill(train_synth *ts, vxm_backend *be, long step, train_batch *b);

#endif
