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

/* Reads a model file: first in a child process (vxm_keras_file_check_isolated), then here. */
vxm_status vxm_keras_file_read(vxm_context *ctx, const char *path, vxm_keras_file **out);
/* The reader itself, in this process (keras_h5.c). */
vxm_status vxm_keras_file_read_direct(vxm_context *ctx, const char *path, vxm_keras_file **out);
/* Reads the file with vxm_keras_file_read_direct in a forked child (h5_isolate.c): VXM_OK when that read succeeded;
 * the child's error when it failed; VXM_EFORMAT when libhdf5 crashed or did not finish in time.  A file that fails
 * here is never opened by this process (libhdf5 faults on some corrupt files before our checks can run). */
vxm_status vxm_keras_file_check_isolated(vxm_context *ctx, const char *path);
void vxm_keras_file_free(vxm_keras_file *f);
const vxm_h5_layer *vxm_keras_find_layer(const vxm_keras_file *f, const char *name);

/* ---- extra state groups (written by vxm_h5_write_model_state) ---------------------------------------- */
typedef struct vxm_h5_state vxm_h5_state;
/* Opens `group` of the HDF5 file `path`.  VXM_EFORMAT (naming the file and the group) when it is absent. */
vxm_status vxm_h5_state_open(vxm_context *ctx, const char *path, const char *group, vxm_h5_state **out);
void vxm_h5_state_close(vxm_h5_state *s);
/* Scalar attributes of the group: 1 when present (and of a fitting type), 0 when absent. */
int vxm_h5_state_str(vxm_h5_state *s, const char *name, char *buf, size_t n);
int vxm_h5_state_int(vxm_h5_state *s, const char *name, long long *v);
int vxm_h5_state_double(vxm_h5_state *s, const char *name, double *v);
/* One float32 dataset <group>/<set>/<layer>/<kind> into `data`; it must have exactly the shape dims[0..rank-1]
 * (errors name the file and the dataset). */
vxm_status vxm_h5_state_read(vxm_h5_state *s, const char *set, const char *layer, const char *kind, int rank,
                             const long *dims, float *data);

#endif
