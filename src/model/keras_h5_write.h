/* Internal: writing Keras 2 HDF5 files (spec §10.3, training doc §1 "What model.save writes") so that Python
 * VoxelMorph (`VxmDense.load`) loads what vxmcl trains, and gradient files in the layout of the TF goldens
 * (data/train/README.md). */
#ifndef VXM_MODEL_KERAS_H5_WRITE_H
#define VXM_MODEL_KERAS_H5_WRITE_H

#include "core/context.h"

typedef struct vxm_h5_out_weight {
    const char *layer; /* Keras layer name, e.g. "vxm_dense_unet_enc_conv_0_0" */
    const char *kind;  /* "kernel" or "bias" */
    int rank;
    long dims[5]; /* Keras shape, e.g. (3,3,3,Cin,Cout) */
    const float *data;
} vxm_h5_out_weight;

/* A Keras 2 / TF2 `model.save` style file: root attrs model_config (JSON string), keras_version "2.15.0",
 * backend "tensorflow"; group /model_weights with attrs layer_names (ALL layers in `layer_names`, including
 * weightless ones, in the order given), backend, keras_version; per layer a group /model_weights/<layer> with
 * attr weight_names ("<layer>/kernel:0", "<layer>/bias:0", in the order the layer's weights appear in `w`) and
 * datasets /model_weights/<layer>/<layer>/kernel:0 etc.  Every weight's layer must be listed in layer_names.
 * Written to a temporary file in the same directory and renamed: no partial file on any failure. */
vxm_status vxm_h5_write_model(vxm_context *ctx, const char *path, const char *model_config_json,
                              const char *const *layer_names, int nlayers, const vxm_h5_out_weight *w,
                              int nweights);

/* Extra state stored in a model file, in a group that Python's VxmDense.load ignores (it reads /model_weights
 * only): scalar attributes (a string, int64, float64) and float32 datasets <group>/<set>/<layer>/<kind> in the
 * weights' Keras shapes (e.g. the optimiser's moments m/... and v/... of every weight). */
#define VXM_H5_STATE_MAX 8
typedef struct vxm_h5_out_state {
    const char *group; /* e.g. "vxm_optimizer" */
    int nstr, nint, ndbl, nsets;
    const char *str_name[VXM_H5_STATE_MAX], *str_value[VXM_H5_STATE_MAX];
    const char *int_name[VXM_H5_STATE_MAX];
    long long int_value[VXM_H5_STATE_MAX];
    const char *dbl_name[VXM_H5_STATE_MAX];
    double dbl_value[VXM_H5_STATE_MAX];
    const char *set_name[VXM_H5_STATE_MAX];
    const vxm_h5_out_weight *set[VXM_H5_STATE_MAX]; /* each nweights tensors */
    int nweights;
} vxm_h5_out_state;

/* vxm_h5_write_model plus `state` (NULL: none) in the same file, written before the rename. */
vxm_status vxm_h5_write_model_state(vxm_context *ctx, const char *path, const char *model_config_json,
                                    const char *const *layer_names, int nlayers, const vxm_h5_out_weight *w,
                                    int nweights, const vxm_h5_out_state *state);

/* Gradient file: one float32 dataset per weight /<layer>/<kind> (no ":0"), Keras shape; temp + rename. */
vxm_status vxm_h5_write_gradients(vxm_context *ctx, const char *path, const vxm_h5_out_weight *w, int nweights);

#endif
