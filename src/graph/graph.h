/* Internal: a model instantiated for one input shape, as a list of nodes in execution order.  Builders
 * (VxmDense from its config, later Keras functional graphs) produce it; the executor runs it on any backend
 * through the ops table. */
#ifndef VXM_GRAPH_GRAPH_H
#define VXM_GRAPH_GRAPH_H

#include "backend.h"

typedef enum vxm_op {
    VXM_OP_INPUT,     /* input_index: 0 = moving/source, 1 = fixed/target */
    VXM_OP_CONV,      /* in[0]; weights w (k0,k1,k2,Cin,Cout), b (Cout); optional fused LeakyReLU */
    VXM_OP_LEAKY,     /* in[0] */
    VXM_OP_MAXPOOL,   /* in[0]; f */
    VXM_OP_UPSAMPLE,  /* in[0]; f */
    VXM_OP_CONCAT,    /* in[0], in[1] */
    VXM_OP_SCALE,     /* in[0]; scale */
    VXM_OP_RESIZE,    /* in[0]; map, factor; output shape in node */
    VXM_OP_VECINT,    /* in[0]; steps, ndim */
    VXM_OP_TRANSFORM, /* in[0] image, in[1] displacement; interp, fill */
    VXM_OP_SAMPLE     /* in[0] mean, in[1] log-variance; noise drawn by the executor unless deterministic */
} vxm_op;

#define VXM_NODE_NAME_MAX 96

typedef struct vxm_node {
    vxm_op op;
    char name[VXM_NODE_NAME_MAX];
    int in[2];
    int n_in;
    int shape[3]; /* output */
    int channels;
    /* parameters (by op) */
    int input_index;
    vxm_conv_params conv;
    const float *w, *b; /* host weights, owned by the model */
    int cin;
    float alpha;
    int f[3];
    float scale;
    vxm_resize_mapping map;
    float factor[3];
    int steps;
    vxm_interp interp;
    int use_fill;
    float fill;
} vxm_node;

typedef struct vxm_graph {
    int ndim;
    int n, cap;
    vxm_node *nodes;
    int out_moved; /* node index of the warped moving image */
    int out_warp;  /* node index of the final full-resolution displacement */
} vxm_graph;

vxm_graph *vxm_graph_new(int ndim);
void vxm_graph_free(vxm_graph *g);
/* Appends a node (copied) and returns its index, or -1 when out of memory. */
int vxm_graph_add(vxm_graph *g, const vxm_node *node);
/* Sum of convolution FLOPs (2 per multiply-add) and parameter count. */
double vxm_graph_conv_flops(const vxm_graph *g);
const char *vxm_op_name(vxm_op op);

/* ---- execution ---------------------------------------------------------------------------------------- */
typedef struct vxm_exec vxm_exec;

/* Prepares a run: uploads weights and the two inputs (host, channels-last, shapes of graph inputs).
 * `seed` drives the noise of VXM_OP_SAMPLE nodes when `deterministic` is 0. */
vxm_status vxm_exec_begin(vxm_backend *be, const vxm_graph *g, const float *moving, const float *fixed,
                          int deterministic, unsigned long long seed, vxm_exec **out);
/* Runs node i (nodes must be run in order).  Tensors are released after their last use. */
vxm_status vxm_exec_step(vxm_exec *ex, int i);
vxm_status vxm_exec_run_all(vxm_exec *ex);
/* Reads node i's output into host memory (numel floats); valid from its step until its last consumer ran
 * (so always right after vxm_exec_step(ex, i)), and for the graph outputs until vxm_exec_end. */
vxm_status vxm_exec_read(vxm_exec *ex, int i, float *host);
void vxm_exec_end(vxm_exec *ex);
/* Profiling: each step waits for the device and records its wall time (for the benchmark). */
vxm_status vxm_exec_set_profiling(vxm_exec *ex, int on);
double vxm_exec_node_seconds(const vxm_exec *ex, int i);

#endif
