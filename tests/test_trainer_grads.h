/* Shared by tests that compare whole trainer gradients: one step's losses and every weight gradient,
 * concatenated in weight order. */
#ifndef VXM_TEST_TRAINER_GRADS_H
#define VXM_TEST_TRAINER_GRADS_H

#include "train/train.h"

/* Total number of gradient floats over all weights of t. */
static inline size_t tg_num_grads(const vxm_trainer *t)
{
    size_t n = 0;
    for (int k = 0; k < vxm_trainer_num_weights(t); k++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, k, &wi);
        n += wi.numel;
    }
    return n;
}

/* The losses and all gradients of a batch (g holds n floats, tg_num_grads). */
static inline vxm_status tg_grads(vxm_trainer *t, const vxm_train_sample *s, int batch, vxm_train_losses *L,
                                  float *g, size_t n)
{
    vxm_status st = vxm_trainer_compute_gradients_samples(t, s, batch, L);
    size_t off = 0;
    for (int k = 0; k < vxm_trainer_num_weights(t) && !st; k++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, k, &wi);
        if (off + wi.numel > n)
            return VXM_EINVAL;
        st = vxm_trainer_read_gradient(t, k, g + off);
        off += wi.numel;
    }
    return st;
}

#endif
