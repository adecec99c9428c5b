/* Internal: unconditional template creation (VoxelMorph's TemplateCreation / scripts/tf/train_template.py,
 * training doc §4.1) on the trainer's engine.
 *
 *   atlas (trainable, shape x 1)  --+--> U-Net input concat [atlas, scan] --> VxmDense(bidir) --> pos / neg flow
 *                                   +--> y_source = atlas warped by pos_flow
 *   mean_stream = MeanStream(cap)(neg_flow)   (final full-resolution inverse displacement)
 *   total = w * image(scan, y_source) + (1 - w) * image(atlas, y_target) + mean_w * MSE(0, mean_stream)
 *           + grad_w * Grad('l2', loss_mult 2)(pos_flow)
 *
 * The atlas gets gradient from the transformer's image input AND the U-Net input (doc §9 item 9).  MeanStream
 * (neurite; doc §4.1, §9 item 10) for batch b = 1:  n' = n + 1, alpha = 1 / min(n', cap),
 * M' = (1 - alpha) M + alpha x, out = min(1, n'/cap) M'; gradient only through alpha x.  That documented streaming
 * mean is the default; VXM_MEANSTREAM_GRAPH reproduces train_template.py under TF graph mode (eager disabled),
 * where the state updates never execute, so n and M keep their initial values (0; confirmed in TF 2.15: after
 * three fit steps count = mean = 0, outputs 0.01 x).  Batch size 1 (the script's default). */
#ifndef VXM_TRAIN_TEMPLATE_H
#define VXM_TRAIN_TEMPLATE_H

#include "train/meanstream.h"
#include "train/train.h"

typedef struct vxm_template_options {
    vxm_train_options train; /* architecture, lr 1e-4, Adam, image loss (NCC), seed, load_weights, resume */
    double image_weight;     /* w of image(scan, y_source); 1 - w on image(atlas, y_target) (--image-loss-weight 1) */
    double mean_weight;      /* --mean-loss-weight 1 */
    double grad_weight;      /* --grad-loss-weight 1 */
    int mean_cap;            /* 100 */
    vxm_meanstream_mode meanstream;
    /* Initial atlas (shape x 1 floats): the mean of the first <= 100 scans, or --init-template; NULL only when the
     * loaded weights file holds an atlas layer. */
    const float *atlas_init;
    /* Test hook (tests/test_template.c), 0 in real use: 1 leaves the U-Net-input path of the atlas gradient out,
     * 2 the transformer-image path (the forward pass is unchanged). */
    int drop_path;
    /* Conditional templates (ConditionalTemplateCreation, training doc §4.2; template_cond.h): npheno > 0
     * attributes per scan drive a generator whose atlas is atlas_init (then the fixed atlas input, required) plus
     * a learned image; the losses become [image w, MSE(0, mean_stream), Grad, deform_weight * MSE(0, pos_flow)]. */
    int npheno;           /* 0: unconditional */
    double deform_weight; /* --deform-loss-weight 0.01 */
    int cond_features;    /* conv_nb_features 4 (train_cond_template.py) */
    int cond_extra;       /* extra_conv_layers 3 */
} vxm_template_options;

void vxm_template_options_default(vxm_template_options *o);

typedef struct vxm_template vxm_template;

/* Builds the model for scans of `shape` (ndim 2 or 3; 2-D: shape[0] == 1) with one channel. */
vxm_status vxm_template_create(vxm_context *ctx, vxm_backend *be, const vxm_template_options *o, int ndim,
                               const int shape[3], vxm_template **out);
void vxm_template_free(vxm_template *t);
size_t vxm_template_atlas_numel(const vxm_template *t);
/* Forward + backward for one scan at the current atlas, weights and MeanStream state (unchanged); the gradient
 * of the total loss w.r.t. the atlas goes to atlas_grad when not NULL. */
vxm_status vxm_template_evaluate(vxm_template *t, const float *scan, vxm_train_losses *L, float *atlas_grad);
/* One training step on one scan: gradients, MeanStream state update (streaming mode), Adam update. */
vxm_status vxm_template_step(vxm_template *t, const float *scan, vxm_train_losses *L);
/* Unconditional only: the trainable atlas. */
vxm_status vxm_template_read_atlas(vxm_template *t, float *atlas);
vxm_status vxm_template_write_atlas(vxm_template *t, const float *atlas);
long vxm_template_steps_done(const vxm_template *t);
/* Checkpoint: class TemplateCreation config, VxmDense weights plus the atlas layer ('atlas/kernel:0', shape
 * (*inshape, 1)) and MeanStream's 'mean_stream/mean:0', 'count:0' (restored by --load-weights / --resume), Adam
 * state and the MeanStream mode attribute; temp file + rename.  Conditional: class ConditionalTemplateCreation,
 * the generator's layers first (Python's ConditionalTemplateCreation.load reads it), no atlas weight. */
vxm_status vxm_template_save(vxm_template *t, const char *path, long epoch);
/* The MeanStream mode a checkpoint was trained with (its /vxm_optimizer attribute 'meanstream'); *mode is left
 * as it is when the file has none. */
vxm_status vxm_template_checkpoint_meanstream(vxm_context *ctx, const char *path, vxm_meanstream_mode *mode);
/* Conditional: the attributes (npheno floats) of the next evaluate / step. */
vxm_status vxm_template_set_attributes(vxm_template *t, const float *attrs);
/* Conditional: the atlas the current weights generate for attrs (atlas numel floats). */
vxm_status vxm_template_generate(vxm_template *t, const float *attrs, float *atlas);
/* The trainer underneath (weights in Keras order, gradients). */
vxm_trainer *vxm_template_trainer(vxm_template *t);

#endif
