/* Internal: instance-specific optimisation (VoxelMorph's InstanceDense / scripts/tf/train_instance.py; training
 * doc §7, spec §11.5): no network, the trainable tensor is the half-resolution velocity field itself.
 *
 *   P (floor(n / int_downsize) per image axis, ndim channels)  -> preint = multiplier * P
 *   -> VecInt unrolled (scaling and squaring) -> RescaleTransform(int_downsize) to full size -> warp the moving image
 *   total = image(fixed, moved) + lambda * int_downsize * Grad_l2(preint)
 *
 * optimised by Keras' Adam (t from 1).  P lives on the device (uploaded once); each step is one executor run of
 * the forward + backward graph followed by the backend's adam_update. */
#ifndef VXM_TRAIN_INSTANCE_H
#define VXM_TRAIN_INSTANCE_H

#include "train/train.h"

typedef struct vxm_instance_options {
    int steps;             /* Adam updates (train_instance.py --steps 200) */
    double lr;             /* 1e-3 */
    vxm_image_loss image_loss; /* MSE (default) or NCC (window 9) */
    double image_sigma;    /* MSE: 1/sigma^2 factor; 1 */
    double lambda;         /* weight of the Grad term; 0.01 */
    int int_steps;         /* 7 (0: no integration, the field is the displacement) */
    int int_downsize;      /* 2; also Grad's loss_mult */
    double multiplier;     /* 1000 (LocalParamWithInput mult) */
    double beta1, beta2, epsilon; /* Adam: 0.9, 0.999, 1e-7 */
    unsigned long long seed; /* initial field N(0, 0.05) when init_field is NULL */
    /* Initial SVF in voxels (the pre-integration field, shape vxm_instance_field_shape x ndim, channels-last), or
     * NULL for Keras' RandomNormal(0, 0.05) on P (a 50-voxel std velocity, as the script does). */
    const float *init_field;
} vxm_instance_options;

void vxm_instance_options_default(vxm_instance_options *o);

/* Shape of P: floor(n / int_downsize) on the image axes (InstanceDense, unlike VxmDense's round). */
void vxm_instance_field_shape(int ndim, const int shape[3], int int_downsize, int out[3]);

typedef struct vxm_instance vxm_instance;

typedef struct vxm_instance_losses {
    double image; /* the image term (weight 1) */
    double reg;   /* lambda * int_downsize * Grad */
    double total;
} vxm_instance_losses;

/* Builds the graph for images of `shape` (ndim 2 or 3; 2-D: shape[0] == 1) with `channels` channels and uploads the
 * initial field.  moving/fixed are host float32 channels-last; they are referenced (not copied) until free. */
vxm_status vxm_instance_create(vxm_context *ctx, vxm_backend *be, const vxm_instance_options *o, int ndim,
                               const int shape[3], int channels, const float *moving, const float *fixed,
                               vxm_instance **out);
void vxm_instance_free(vxm_instance *t);
/* Number of floats in P. */
size_t vxm_instance_field_numel(const vxm_instance *t);
/* Forward (+ backward when grad != NULL: d total / d P, numel floats) at the current P; the final outputs when
 * moved / warp are not NULL (shape x channels, shape x ndim).  VXM_ENUMERIC when a loss is NaN/Inf. */
vxm_status vxm_instance_evaluate(vxm_instance *t, vxm_instance_losses *L, float *grad, float *moved, float *warp);
/* One Adam update: forward + backward at the current P (L: the losses there, before the update), then P moves. */
vxm_status vxm_instance_step(vxm_instance *t, vxm_instance_losses *L);
vxm_status vxm_instance_read_field(vxm_instance *t, float *P);
vxm_status vxm_instance_write_field(vxm_instance *t, const float *P);

/* The whole of train_instance.py: create, o->steps updates, final outputs.  moved (shape x channels) and warp
 * (shape x ndim) are caller-allocated, either may be NULL; losses (may be NULL) gets o->steps + 1 entries: the
 * losses before each update, then the final ones. */
vxm_status vxm_instance_run(vxm_context *ctx, vxm_backend *be, const vxm_instance_options *o, int ndim,
                            const int shape[3], int channels, const float *moving, const float *fixed, float *moved,
                            float *warp, vxm_instance_losses *losses);

/* The half-resolution SVF a VxmDense model integrates for this pair (the inference graph's pre-integration output),
 * resized (linspace, vectors scaled by the grid ratio) to `field_shape` when its shape differs; *out is malloc'd
 * (field_shape x ndim floats).  VXM_EUNSUPPORTED for legacy Keras-graph models and models without integration. */
vxm_status vxm_instance_svf_from_model(vxm_context *ctx, vxm_backend *be, const vxm_model *m,
                                       const vxm_volume *moving, const vxm_volume *fixed, const int field_shape[3],
                                       float **out);

#endif
