/* Internal: conditional deformable templates (VoxelMorph's ConditionalTemplateCreation / train_cond_template.py,
 * training doc §4.2).  The generator maps P attributes to an atlas:
 *
 *   pheno (1x1x1, P ch) -> Dense(prod(inshape) * F, elu) ['dense'] -> Reshape(*inshape, F) ['pheno_reshape']
 *     -> conv_dec(nb_levels 0): 1x1 conv F->F, linear ['atlas_decoder_likelihood']
 *     -> extra_conv_layers x conv 3x3 F->F, no activation ['atlas_extra_conv_<i>']
 *     -> conv 3x3 F->1 ['atlas_gen'] -> atlas = atlas_input + atlas_gen ['atlas']
 *
 * (F = conv_nb_features 4, extra_conv_layers 3 in the script; Dense and convs glorot_uniform / zero biases,
 * atlas_gen kernel and bias N(0, 1e-7): doc §3.1, §9 item 2.)  Training (template.h with npheno > 0) registers
 * the generated atlas to each scan with VxmDense(bidir), MeanStream on the inverse field, and the script's losses
 * [image(scan, y_source), MSE(0, mean_stream), Grad('l2', x2)(pos_flow), MSE(0, pos_flow)].  A Keras Dense on
 * (B, P) is a 1x1x1 convolution of a 1x1x1 tensor (graph/hyper.h); Reshape is a view of the same channels-last
 * data.  atlas_input is not a weight of the Keras model: vxm template writes it next to the checkpoints. */
#ifndef VXM_TRAIN_TEMPLATE_COND_H
#define VXM_TRAIN_TEMPLATE_COND_H

#include "backend.h"

#define VXM_COND_MAX_EXTRA 8
#define VXM_COND_MAX_WEIGHTS (2 * (3 + VXM_COND_MAX_EXTRA))
/* The Dense layer has P * prod(inshape) * F weights (doc §4.2: P x 27.5 M at 160x192x224, F 4); beyond this many
 * (1 GiB of float32, ~4 GiB with gradient and Adam moments) the model is refused. */
#define VXM_COND_MAX_DENSE ((size_t)1 << 28)

typedef struct vxm_cond_arch {
    int npheno;  /* P attributes (pheno_input_shape); 0: unconditional */
    int feats;   /* F = conv_nb_features */
    int extra;   /* extra_conv_layers */
    int ndim, shape[3]; /* inshape (2-D: shape[0] == 1) */
} vxm_cond_arch;

/* Generator weights in Keras order: dense kernel (P, prod*F), bias; likelihood kernel, bias; the extra convs';
 * atlas_gen's.  2 * (3 + extra). */
int vxm_cond_num_weights(const vxm_cond_arch *a);

/* A conditional checkpoint opened for generation (`vxm template-generate`). */
typedef struct vxm_cond_template vxm_cond_template;

vxm_status vxm_cond_template_load(vxm_context *ctx, const char *path, vxm_cond_template **out);
void vxm_cond_template_free(vxm_cond_template *m);
const vxm_cond_arch *vxm_cond_template_arch(const vxm_cond_template *m);
/* out (prod(inshape) floats) = atlas_input + generator(attrs) with the file's weights. */
vxm_status vxm_cond_template_generate(vxm_backend *be, const vxm_cond_template *m, const float *attrs,
                                      const float *atlas_input, float *out);

#endif
