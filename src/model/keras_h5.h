/* Internal: reading a Keras 2 HDF5 model file (spec §3.6): root attributes and every layer's weights in the
 * order given by the `layer_names` / `weight_names` attributes. */
#ifndef VXM_MODEL_KERAS_H5_H
#define VXM_MODEL_KERAS_H5_H

#include <stddef.h>

#include "core/context.h"

typedef struct vxm_h5_weight {
    char *name;   /* e.g. "flow_34/kernel:0" */
    int rank;
    long dims[8]; /* as stored, e.g. (3,3,3,Cin,Cout) */
    size_t numel;
    float *data;
} vxm_h5_weight;

typedef struct vxm_h5_layer {
    char *name;
    int nweights;
    vxm_h5_weight *weights;
} vxm_h5_layer;

typedef struct vxm_keras_file {
    char *model_config;  /* JSON text of the root attribute */
    char *keras_version; /* may be NULL */
    int nlayers;
    vxm_h5_layer *layers;
} vxm_keras_file;

vxm_status vxm_keras_file_read(vxm_context *ctx, const char *path, vxm_keras_file **out);
void vxm_keras_file_free(vxm_keras_file *f);
const vxm_h5_layer *vxm_keras_find_layer(const vxm_keras_file *f, const char *name);

#endif
