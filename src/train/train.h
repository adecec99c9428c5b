/* Internal: training a VxmDense model (issue 7) -- the engine behind `vxm train`.
 *
 * A trainer owns one model instantiated for one input shape on one backend: device-resident parameters, their
 * gradients and the optimiser state (llm.c style), the forward graph with its loss nodes and the backward nodes
 * appended by vxm_graph_build_backward (ggml style).  The loss is Keras' composition (training doc §2.6):
 *   total = sum_i w_i * batch-mean(loss_i)
 * with train.py's terms: image loss (MSE with 1/sigma^2, or NCC win 9) weight 1, and Grad('l2', loss_mult =
 * int_downsize) on the pre-integration field, weight lambda. */
#ifndef VXM_TRAIN_TRAIN_H
#define VXM_TRAIN_TRAIN_H

#include "backend.h"
#include "model/model.h"

typedef enum vxm_image_loss { VXM_LOSS_MSE = 0, VXM_LOSS_NCC = 1 } vxm_image_loss;
typedef enum vxm_optimizer { VXM_OPT_ADAM = 0, VXM_OPT_SGD = 1 } vxm_optimizer;

typedef struct vxm_train_options {
    /* Architecture when no model file is given (train.py defaults; n_enc/n_dec == 0 -> defaults). */
    int enc[VXM_MAX_FEATS], n_enc;
    int dec[VXM_MAX_FEATS], n_dec;
    int int_steps;    /* 7 */
    int int_downsize; /* 2; also Grad's loss_mult (train.py l.176) */
    const char *load_weights; /* VoxelMorph .h5 (architecture + weights), or NULL */
    vxm_image_loss image_loss;
    double image_sigma; /* MSE: 1/sigma^2 factor; default 1 */
    double lambda;      /* weight of the Grad term; default 0.01 */
    double lr;          /* 1e-4 */
    vxm_optimizer optimizer;
    double beta1, beta2, epsilon; /* Adam: 0.9, 0.999, 1e-7 */
    unsigned long long seed; /* initialisers of a new model, and the sampling noise of probabilistic models */
    /* Workflows (issue 8; training doc §1): */
    int bidir;          /* --bidir: also warp fixed -> moving with the negated field; weights [0.5, 0.5, lambda] */
    int use_probs;      /* --use-probs: mean/log-variance heads, sampled field, KL(kl_lambda) instead of Grad */
    double kl_lambda;   /* --kl-lambda 10 (the KL term is still weighted by lambda, train.py l.178) */
    const int *labels;  /* semi-supervised (train_semisupervised_seg.py): one-hot labels, NULL = unsupervised */
    int nlabels;
    double dice_weight; /* --dice-weight 0.01 */
    const char *resume; /* --resume D/NNNN.h5: architecture, weights AND optimizer state/step (vxm checkpoints) */
    /* SynthMorph (train_synthmorph.py, training doc §6.1): new models get svf_resolution = int_resolution = 2; the
     * samples' segmentations are full-resolution one-hot maps (nlabels channels) warped linearly by the final warp;
     * losses Dice(target map, warped source map) weight 1 and Grad('l2', loss_mult = reg_param) on the final
     * displacement, weight 1; no image loss. */
    int synthmorph;
    double reg_param; /* --reg-param 1 */
    /* HyperMorph (train_hypermorph.py, training doc §5): a HyperVxmDense (new models: 6 Dense layers of 128 ReLU
     * units, svf_resolution 2, int_resolution int_downsize); every sample gets its own lambda (drawn:
     * vxm_hypermorph_draw, or fixed: vxm_trainer_set_hyper) as the hypernetwork input, and its loss is
     * (1 - lambda) * image loss + lambda * Grad('l2', loss_mult = int_downsize)(pre-integration field), batch mean.
     * The `lambda` option is unused.  No bidir / use_probs / labels / synthmorph. */
    int hypermorph;
} vxm_train_options;

/* One training sample.  Segmentations (semi-supervised only) are label maps of the image shape, one channel;
 * SynthMorph: one-hot maps of the image shape with nlabels channels.  dev[k] (optional; NULL = the host array):
 * the same data already on the trainer's backend, in the order moving, fixed, moving_seg, fixed_seg, used as the
 * graph input without a copy (SynthMorph synthesises on the device; semi-supervised segmentations stay on the
 * host, they are one-hot encoded there). */
typedef struct vxm_train_sample {
    const float *moving, *fixed;
    const float *moving_seg, *fixed_seg;
    const vxm_tensor *dev[4];
} vxm_train_sample;

/* Fills the defaults above (train.py). */
void vxm_train_options_default(vxm_train_options *o);

#define VXM_MAX_LOSS_TERMS 4

typedef struct vxm_train_losses {
    int n;                                  /* number of terms */
    const char *name[VXM_MAX_LOSS_TERMS];   /* "mse", "ncc", "grad" */
    double weight[VXM_MAX_LOSS_TERMS];      /* Keras loss weight */
    double value[VXM_MAX_LOSS_TERMS];       /* weighted: weight * batch-mean(loss) (like the json's terms_step0) */
    double total;                           /* sum of value[] */
} vxm_train_losses;

typedef struct vxm_trainer vxm_trainer;

/* Builds (or loads, with o->load_weights) the model for inputs of `shape` (ndim 2 or 3; 2-D: shape[0] == 1) with
 * src/trg channel counts, uploads parameters once, allocates gradients and optimiser state.  Errors name the model
 * file.  Every input size must be a multiple of vxm_trainer_divisor(). */
vxm_status vxm_trainer_create(vxm_context *ctx, vxm_backend *be, const vxm_train_options *o, int ndim,
                              const int shape[3], int src_feats, int trg_feats, vxm_trainer **out);
void vxm_trainer_free(vxm_trainer *t);

/* Forward + backward over a batch of `batch` pairs (moving[b], fixed[b]: host float32, channels-last, the shape
 * given at creation); leaves the gradient of the total loss w.r.t. every parameter in the trainer and returns the
 * loss terms.  Returns VXM_ENUMERIC (message says which term) when a loss is NaN/Inf. */
vxm_status vxm_trainer_compute_gradients(vxm_trainer *t, const float *const *moving, const float *const *fixed,
                                         int batch, vxm_train_losses *losses);
/* The current model's outputs for one pair (the forward pass of the training graph): moved image (shape x
 * src_feats) and full-resolution warp (shape x ndim); either may be NULL.  HyperMorph: at the lambda of
 * vxm_trainer_set_hyper (0.5 when none is set). */
vxm_status vxm_trainer_predict(vxm_trainer *t, const float *moving, const float *fixed, float *moved, float *warp);
/* One optimiser update with the current gradients (Adam step counter t starts at 1). */
vxm_status vxm_trainer_apply(vxm_trainer *t);
/* The same over samples (segmentations for semi-supervised training). */
vxm_status vxm_trainer_compute_gradients_samples(vxm_trainer *t, const vxm_train_sample *s, int batch,
                                                 vxm_train_losses *losses);
vxm_status vxm_trainer_step_samples(vxm_trainer *t, const vxm_train_sample *s, int batch, vxm_train_losses *losses);
/* HyperMorph: lambda >= 0 fixes every sample's hyper-parameter (tests, vxm_trainer_predict); lambda < 0 (the
 * default) draws it per sample with vxm_hypermorph_draw(seed, steps done, sample). */
void vxm_trainer_set_hyper(vxm_trainer *t, double lambda);
/* train_hypermorph.py's draw (training doc §5): with probability 0.2 an end point 0 or 1 (equally likely), else
 * uniform in [0, 1); a pure function of (seed, step, sample), so that a resumed run draws what an uninterrupted
 * one would. */
double vxm_hypermorph_draw(unsigned long long seed, long step, int sample);
/* Optimiser updates done so far (restored by --resume). */
long vxm_trainer_steps_done(const vxm_trainer *t);
/* compute_gradients + apply. */
vxm_status vxm_trainer_step(vxm_trainer *t, const float *const *moving, const float *const *fixed, int batch,
                            vxm_train_losses *losses);

/* Trainable weights in Keras order: layer name, "kernel"/"bias", Keras shape.  Host copies are downloaded on
 * request (values or current gradients), `data` must hold numel floats. */
int vxm_trainer_num_weights(const vxm_trainer *t);
typedef struct vxm_weight_info {
    const char *layer; /* e.g. "vxm_dense_unet_enc_conv_0_0" */
    const char *kind;  /* "kernel" or "bias" */
    int rank;
    long dims[5];      /* Keras shape, e.g. (3,3,3,Cin,Cout) or (Cout) */
    size_t numel;
} vxm_weight_info;
void vxm_trainer_weight_info(const vxm_trainer *t, int i, vxm_weight_info *info);
vxm_status vxm_trainer_read_weight(vxm_trainer *t, int i, float *data);
vxm_status vxm_trainer_read_gradient(vxm_trainer *t, int i, float *data);
/* Replaces weight i (numel floats) on the device (tests, finite differences). */
vxm_status vxm_trainer_write_weight(vxm_trainer *t, int i, const float *data);

/* Writes the current model as a VoxelMorph .h5 (spec §10: Python's VxmDense.load and `vxm register` read it),
 * through a temporary file renamed into place (no partial file on failure).  The optimiser state (Adam m, v and
 * the step counter) goes into a group Python ignores, so that --resume continues exactly. */
vxm_status vxm_trainer_save(vxm_trainer *t, const char *path);
/* Writes the current gradients, one dataset per weight /<layer>/<kernel|bias> in Keras shapes (the layout of
 * shared/data/train/<case>_grads.h5), temp file + rename. */
vxm_status vxm_trainer_save_gradients(vxm_trainer *t, const char *path);

/* Divisor every input size must be a multiple of, and the model's config (for messages). */
int vxm_trainer_divisor(const vxm_trainer *t);

#endif
