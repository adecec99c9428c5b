/* Internal: a loaded model (weights on the host) and the builders that instantiate it as a graph. */
#ifndef VXM_MODEL_MODEL_H
#define VXM_MODEL_MODEL_H

#include "graph/graph.h"
#include "model/keras_h5.h"

#define VXM_MAX_FEATS 64

/* VxmDense constructor options (spec §3.2), normalised: deprecated aliases resolved. */
typedef struct vxm_dense_config {
    int ndim;          /* from inshape in the file; the run shape overrides it */
    int inshape[3];
    int enc[VXM_MAX_FEATS], n_enc;
    int dec[VXM_MAX_FEATS], n_dec;
    int conv_per_level;
    int int_steps;
    double svf_resolution; /* unet_half_res -> 2 */
    double int_resolution; /* int_downsize overrides */
    int bidir, use_probs;
    int src_feats, trg_feats;
    int use_fill;
    float fill_value;
    char name[64]; /* layer-name prefix, "vxm_dense" ("hyper_vxm_dense" for HyperVxmDense) */
    /* HyperVxmDense (training doc §5): a hypernetwork of nb_hyp_layers ReLU Dense layers of nb_hyp_units on the
     * nb_hyp_params hyper-parameters (input index 4) makes the kernel and bias of every U-Net conv; 0 = VxmDense */
    int hyper;
    int nb_hyp_params, nb_hyp_layers, nb_hyp_units; /* 1, 6, 128 */
} vxm_dense_config;

typedef enum vxm_model_kind {
    VXM_MODEL_VXMDENSE = 0,   /* current format: graph rebuilt from the VxmDense constructor config */
    VXM_MODEL_KERAS_GRAPH = 1 /* legacy format: Keras functional graph interpreted layer by layer */
} vxm_model_kind;

struct vxm_model {
    vxm_model_kind kind;
    char *path;
    vxm_keras_file *file;
    vxm_dense_config dense;     /* VXM_MODEL_VXMDENSE */
    struct cJSON *keras_graph;  /* VXM_MODEL_KERAS_GRAPH: the parsed model_config */
    /* common to both kinds */
    int ndim, inshape[3];
    int src_feats, trg_feats;
    int divisor; /* every input size must be a multiple of it */
    unsigned long long serial; /* unique per loaded model within its context (device weight caches) */
    const vxm_context *serial_ctx; /* the context that numbered it: (serial_ctx, serial) is unique */
    int new_weights; /* a model being created for training: conv layers absent from `file` get parameters
                      * without host values (the trainer initialises them) */
    int hyper_set;   /* HyperMorph: vxm_model_set_hyper gave the registration's lambda */
    double hyper;
};

/* Parses the root model_config JSON of a current-format file (class VxmDense). */
vxm_status vxm_dense_config_parse(vxm_context *ctx, const char *path, const char *json, vxm_dense_config *cfg);
/* U-Net levels (number of pooling steps + 1) and the divisor every input size must be a multiple of. */
int vxm_dense_levels(const vxm_dense_config *cfg);

/* Legacy graphs: checks at load time that every layer needed for registration is understood and fills the
 * common model fields; builds the graph for a shape. */
vxm_status vxm_keras_graph_inspect(vxm_context *ctx, vxm_model *m);
vxm_status vxm_keras_graph_build(vxm_context *ctx, const vxm_model *m, int ndim, const int shape[3],
                                 vxm_graph **out);

vxm_status vxm_dense_build_graph(vxm_context *ctx, const vxm_model *m, int ndim, const int shape[3],
                                 vxm_graph **out);
/* training != 0: VecInt unrolled into scale/transform/add nodes (differentiable), plus the training-only outputs:
 * the bidirectional branch (config bidir) and, with seg_channels > 0, the segmentation branch (inputs 2, 3:
 * source/target one-hot maps): strided to half size and warped by the half-size warp (semi-supervised), or with
 * seg_full_res at full size warped by the final warp (SynthMorph). */
vxm_status vxm_dense_build_graph_ex(vxm_context *ctx, const vxm_model *m, int ndim, const int shape[3], int training,
                                    int seg_channels, int seg_full_res, vxm_graph **out);
vxm_status vxm_model_build_graph(vxm_context *ctx, const vxm_model *m, int ndim, const int shape[3],
                                 vxm_graph **out);

/* The root model_config JSON `{"class_name": "VxmDense", "config": {...}}` with every constructor argument
 * (training doc §1); vxm_dense_config_parse of the result gives back *cfg.  malloc'd (free()); NULL when out of
 * memory. */
char *vxm_dense_config_to_json(const vxm_dense_config *cfg);

#endif
