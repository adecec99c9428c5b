/* Internal: a model instantiated for one input shape, as a list of nodes in execution order.  Builders
 * (VxmDense from its config, Keras functional graphs) produce the forward nodes; the trainer appends loss nodes
 * and vxm_graph_build_backward appends the gradient nodes (ggml's graph-based backward).  The executor runs any
 * such list on any backend through the ops table, freeing each tensor after its last consumer.
 *
 * Parameters (conv kernels and biases) are leaf nodes (VXM_OP_PARAM) that refer to the graph's parameter table;
 * their device buffers are uploaded once per model and backend (vxm_weights) or owned by a trainer, and bound to
 * an execution, never copied per run. */
#ifndef VXM_GRAPH_GRAPH_H
#define VXM_GRAPH_GRAPH_H

#include "backend.h"

typedef enum vxm_op {
    /* leaves */
    VXM_OP_INPUT, /* p.input.index: 0 = moving/source, 1 = fixed/target (further inputs: loss targets) */
    VXM_OP_PARAM, /* p.param.index into vxm_graph.params; shape 1x1x1, channels = numel */
    VXM_OP_NOISE, /* N(0,1) noise of a sampling layer, drawn by the executor (zeros in deterministic mode) */
    /* forward */
    VXM_OP_CONV,      /* in: x, kernel (param), bias (param); p.conv (optional fused LeakyReLU) */
    VXM_OP_LEAKY,     /* in: x; p.leaky */
    VXM_OP_MAXPOOL,   /* in: x; p.pool */
    VXM_OP_UPSAMPLE,  /* in: x; p.pool */
    VXM_OP_CONCAT,    /* in: a, b */
    VXM_OP_SCALE,     /* in: x; p.scale */
    VXM_OP_RESIZE,    /* in: x; p.resize; output shape in node */
    VXM_OP_VECINT,    /* in: v; p.vecint (training unrolls it into SCALE, TRANSFORM and ADD nodes) */
    VXM_OP_TRANSFORM, /* in: image, displacement; p.transform */
    VXM_OP_SAMPLE,    /* in: mean, log-variance, noise (VXM_OP_NOISE) */
    VXM_OP_ADD,       /* in: a, b */
    VXM_OP_ELU,       /* in: x; x > 0 ? x : exp(x) - 1 (conditional templates' Dense, training doc §4.2) */
    VXM_OP_RESHAPE,   /* in: x; same numel, the node's shape/channels (Keras Reshape: channels-last data unchanged) */
    /* losses: one float, the per-sample loss before its factor and weight; p.loss */
    VXM_OP_LOSS_MSE,  /* in: y_true, y_pred */
    VXM_OP_LOSS_NCC,  /* in: y_true, y_pred */
    VXM_OP_LOSS_GRAD, /* in: field */
    VXM_OP_LOSS_DICE, /* in: y_true, y_pred */
    VXM_OP_LOSS_KL,   /* in: mean, log-variance */
    /* backward (appended by vxm_graph_build_backward) */
    VXM_OP_CONV_BACK_DATA,   /* in: dy, kernel; p.conv */
    VXM_OP_CONV_BACK_FILTER, /* in: x, dy; p.conv */
    VXM_OP_CONV_BACK_BIAS,   /* in: dy */
    VXM_OP_LEAKY_BACK,       /* in: ref (input or output of the leaky op), dy; p.leaky */
    VXM_OP_MAXPOOL_BACK,     /* in: x, dy; p.pool */
    VXM_OP_UPSAMPLE_BACK,    /* in: dy; p.pool */
    VXM_OP_SLICE,            /* in: x; p.slice */
    VXM_OP_RESIZE_BACK,      /* in: dy; p.resize */
    VXM_OP_TRANSFORM_BACK_IMAGE, /* in: image, displacement, dy; p.transform */
    VXM_OP_TRANSFORM_BACK_DISP,  /* in: image, displacement, dy; p.transform */
    VXM_OP_SAMPLE_BACK,      /* in: log-variance, noise, dy -> d log-variance */
    VXM_OP_LOSS_BACK,        /* in: the loss node's inputs; p.loss (kind, wrt) -> d loss / d in[wrt] */
    VXM_OP_ELU_BACK,         /* in: x (the ELU's input), dy */
    /* fused (inference graphs only: graph/fuse.h) */
    VXM_OP_CONV_POOL,  /* in: x, kernel, bias; p.fused: max-pool (factors f) of the conv, full-size output never stored */
    VXM_OP_CONV_UPCAT, /* in: a, skip, kernel, bias; p.fused: conv of [upsample_f(a), skip] (channels in that order) */
    VXM_OP_COUNT
} vxm_op;

#define VXM_NODE_NAME_MAX 96
#define VXM_NODE_MAX_IN 5

/* Node flags. */
enum {
    VXM_NODE_OUTPUT = 1, /* kept until the end of the run (graph outputs, losses, parameter gradients) */
    VXM_NODE_LOSS = 2,   /* a loss term */
    VXM_NODE_GRAD = 4    /* depends on a parameter: gradients flow through it */
};

typedef struct vxm_loss_params {
    vxm_op kind;   /* VXM_OP_LOSS_* (for VXM_OP_LOSS_BACK: the loss it differentiates) */
    int wrt;       /* LOSS_BACK: which input of the loss */
    int win[3];    /* NCC window (1 on unused axes) */
    float eps;     /* NCC */
    int l1;        /* Grad: 'l1' penalty (else 'l2') */
    int ndim;      /* Grad / KL: spatial axes */
    float prior_lambda; /* KL */
    double factor; /* per-sample loss = factor * op value (1/sigma^2 for MSE, loss_mult for Grad) */
    double weight; /* Keras loss weight (vxm_graph_set_loss_weight changes it between runs) */
    int of;        /* LOSS_BACK: the loss node it differentiates */
} vxm_loss_params;

/* Per-op parameters; the op says which member is valid. */
typedef union vxm_op_params {
    struct { int index; } input;
    struct { int index; } param;
    vxm_conv_params conv;
    struct { float alpha; } leaky;
    struct { int f[3]; float tie_tol; } pool;
    struct { float s; } scale;
    struct { vxm_resize_mapping map; float factor[3]; } resize;
    struct { int steps; } vecint;
    struct { vxm_interp interp; int use_fill; float fill; } transform;
    struct { int c0; } slice;
    vxm_loss_params loss;
    struct { vxm_conv_params conv; int f[3]; } fused; /* CONV_POOL: the pool's factors; CONV_UPCAT: the upsampling's */
} vxm_op_params;

typedef struct vxm_node {
    vxm_op op;
    char name[VXM_NODE_NAME_MAX];
    int in[VXM_NODE_MAX_IN];
    int n_in;
    int shape[3]; /* output */
    int channels;
    int flags;
    vxm_op_params p;
} vxm_node;

/* A trainable weight: Keras layer and kind, Keras shape, host values (owned by the model or the trainer). */
typedef struct vxm_graph_param {
    char layer[VXM_NODE_NAME_MAX];
    char kind[24]; /* "kernel", "bias", or a HyperConv weight ("hyperkernel_kernel", ...) */
    int rank;
    long dims[5];
    size_t numel;
    const float *host;
} vxm_graph_param;

typedef struct vxm_graph {
    int ndim;
    int n, cap;
    vxm_node *nodes;
    int nparams, params_cap;
    vxm_graph_param *params;
    int out_moved; /* node index of the warped moving image */
    int out_warp;  /* node index of the final full-resolution displacement */
    int out_preint; /* the pre-integration field (train.py's regularised output), -1 if none */
    int out_flow_mean, out_flow_logvar; /* probabilistic models: the flow parameters, else -1 */
    int in_source, in_target;           /* the image inputs */
    int out_neg_moved;                  /* training, bidir: target warped by the negated field, else -1 */
    int out_neg_warp;                   /* training, bidir: the final negated (inverse) displacement, else -1 */
    int in_seg_source, in_seg_target, out_seg_moved; /* training, semi-supervised, else -1 */
    int in_hyper; /* HyperMorph: the hyper-parameter input (1x1x1, nb_hyp_params channels, input index 4), else -1 */
    int n_forward; /* nodes before the backward pass (== n until vxm_graph_build_backward) */
    int *param_grad; /* after vxm_graph_build_backward: node holding the gradient of each parameter (-1: none) */
    float **owned;   /* host arrays the graph owns (parameters it made itself: graph/split.c), freed with it */
    int nowned;
} vxm_graph;

vxm_graph *vxm_graph_new(int ndim);
void vxm_graph_free(vxm_graph *g);
/* A host array of n floats owned by the graph (freed by vxm_graph_free), or NULL when out of memory. */
float *vxm_graph_alloc_host(vxm_graph *g, size_t n);
/* Appends a node (copied) and returns its index, or -1 when out of memory. */
int vxm_graph_add(vxm_graph *g, const vxm_node *node);
/* Appends an INPUT leaf (host input `index` of the executor) of the given shape; -1 when out of memory. */
int vxm_graph_add_input(vxm_graph *g, const char *name, int index, const int shape[3], int channels);
/* Appends a node of `op` on in0 (and in1 when >= 0, e.g. ADD) with in0's shape and channels and the inputs'
 * gradient flags; -1 when out of memory or an input is -1 (so that calls can be chained). */
int vxm_graph_add_op(vxm_graph *g, vxm_op op, const char *name, int in0, int in1);
/* Registers a parameter and appends its PARAM node; returns the node index or -1 (out of memory). */
int vxm_graph_add_param(vxm_graph *g, const char *layer, const char *kind, int rank, const long *dims,
                        const float *host);
/* Appends a convolution of node x with a new kernel/bias parameter pair (Keras shapes (k..., Cin, Cout), (Cout));
 * the output shape follows TF SAME padding.  ksize/stride per axis (2-D: axis 0 is 1).  -1 when out of memory. */
int vxm_graph_add_conv(vxm_graph *g, int x, const char *layer, const int ksize[3], const int stride[3], int cout,
                       int leaky, float alpha, const float *kernel, const float *bias);
/* The same convolution node with kernel and bias taken from nodes w and b (PARAM leaves, or computed tensors of
 * 1x1x1 x numel: HyperMorph's hyper-convolutions, graph/hyper.h). */
int vxm_graph_add_conv_nodes(vxm_graph *g, int x, int w, int b, const char *layer, const int ksize[3],
                             const int stride[3], int cout, int leaky, float alpha);
/* VecInt (spec §5) unrolled for training: w = v / 2^T, then T times w = w + transform(w, w), so that its backward
 * is made of transform-backward (into the sampled field and into the locations) and add nodes (training doc §2.7).
 * Node names start with `name`.  Returns the integrated field's node, or -1 when out of memory. */
int vxm_graph_add_vecint_unrolled(vxm_graph *g, int v, int steps, const char *name);
/* RescaleTransform(f) (spec §6.3) of field node `in`: f < 1 resize then scale, f >= 1 scale then resize; vectors
 * scaled by f; output size int(n * f) on the image axes.  Returns `in` when f == 1, -1 when out of memory. */
int vxm_graph_add_rescale(vxm_graph *g, int in, double f, vxm_resize_mapping map, const char *name);
/* Appends a loss node (flags loss + output) on node a (and b, or -1): its value is the per-sample loss before
 * factor and weight; NCC window 9 on the image axes, eps 1e-5 (training doc §2.1).  -1 when out of memory. */
int vxm_graph_add_loss(vxm_graph *g, vxm_op op, const char *name, int a, int b, double factor, double weight);
/* Sets the weight of loss node `loss` and of the LOSS_BACK nodes that differentiate it, for the next runs
 * (HyperMorph weights every sample's terms by its own lambda, training doc §5). */
void vxm_graph_set_loss_weight(vxm_graph *g, int loss, double weight);
/* Sum of convolution FLOPs (2 per multiply-add) of the forward nodes. */
double vxm_graph_conv_flops(const vxm_graph *g);
/* Convolution FLOPs of one node (CONV, or a fused CONV_POOL / CONV_UPCAT: its convolution's), else 0. */
double vxm_node_conv_flops(const vxm_graph *g, const vxm_node *n);
/* Pointers to the graph's node-index fields (out_moved, in_source, ...: -1 when unset), for passes that renumber
 * nodes or must keep the nodes they name; returns their count. */
#define VXM_GRAPH_IO_FIELDS 13
int vxm_graph_io_fields(vxm_graph *g, int *f[VXM_GRAPH_IO_FIELDS]);
const char *vxm_op_name(vxm_op op);
static inline size_t vxm_node_numel(const vxm_node *n)
{
    return (size_t)n->shape[0] * (size_t)n->shape[1] * (size_t)n->shape[2] * (size_t)n->channels;
}

/* Appends the backward pass of every loss node (graph/backward.c): gradients of the weighted sum of the losses,
 * each scaled by its factor * weight, w.r.t. every parameter; fills g->param_grad.  Fails with VXM_EUNSUPPORTED
 * for an op without a backward rule (e.g. a non-unrolled VecInt, nearest interpolation). */
vxm_status vxm_graph_build_backward(vxm_context *ctx, vxm_graph *g);
/* Called by vxm_graph_build_backward (graph/remat.c): cheap forward tensors the backward pass needs late (nearest
 * upsampling, concatenation, convolutions of <= 64 multiply-adds per output) are released after the forward pass
 * and recomputed by copies of their nodes right before their first backward consumer; bitwise the same gradients.
 * Forward nodes keep their indices; backward nodes after a copy move.  VXM_RECOMPUTE=0: no copies. */
vxm_status vxm_graph_rematerialise(vxm_context *ctx, vxm_graph *g);

/* ---- device-resident weights ---------------------------------------------------------------------------- */
/* The parameters of a graph uploaded to one backend once; reusable by every run with the same parameter table
 * (same model, any input shape). */
typedef struct vxm_weights {
    vxm_backend *be;
    int n;
    vxm_buffer **buf;
} vxm_weights;

vxm_status vxm_weights_upload(vxm_backend *be, const vxm_graph *g, vxm_weights **out);
void vxm_weights_free(vxm_weights *w);

/* ---- execution ---------------------------------------------------------------------------------------- */
typedef struct vxm_exec vxm_exec;

#define VXM_EXEC_MAX_INPUTS 5 /* moving, fixed, two segmentations, the HyperMorph hyper-parameters (index 4) */

/* Prepares a run: `inputs[k]` are host arrays (channels-last) for VXM_OP_INPUT nodes of index k; `weights` (may be
 * NULL: uploaded for this run) binds the PARAM nodes.  `seed` drives the noise nodes unless `deterministic`. */
vxm_status vxm_exec_begin_with(vxm_backend *be, const vxm_graph *g, const vxm_weights *weights,
                               const float *const *inputs, int ninputs, int deterministic, unsigned long long seed,
                               vxm_exec **out);
/* Inference shorthand: inputs moving, fixed; weights uploaded for this run. */
vxm_status vxm_exec_begin(vxm_backend *be, const vxm_graph *g, const float *moving, const float *fixed,
                          int deterministic, unsigned long long seed, vxm_exec **out);
/* Binds input `index` (0..VXM_EXEC_MAX_INPUTS-1) to a device tensor of `be` instead of the host array: every
 * INPUT node of that index uses it without a copy (like PARAM nodes use vxm_weights); the caller keeps it alive
 * and unchanged until vxm_exec_end and frees it.  Before the first vxm_exec_step; VXM_ESHAPE when its shape or
 * channels differ from the node's. */
vxm_status vxm_exec_bind_input(vxm_exec *ex, int index, const vxm_tensor *dev);
/* Runs this execution under a memory plan kept by the caller across runs of the same graph (graph/plan.h): the
 * first run records, later ones place every node output in the plan's arena.  After the bindings, before the
 * first vxm_exec_step. */
struct vxm_plan;
vxm_status vxm_exec_set_plan(vxm_exec *ex, struct vxm_plan *plan);
/* Keeps only parameters and the nodes flagged VXM_NODE_OUTPUT (losses, parameter gradients) to the end of the run:
 * the moved image and the warp are released after their last consumer like any intermediate (a training step
 * reads only its losses and gradients).  Before vxm_exec_set_plan and the first vxm_exec_step. */
vxm_status vxm_exec_release_io(vxm_exec *ex);
/* Runs node i (nodes must be run in order).  Tensors are released after their last use. */
vxm_status vxm_exec_step(vxm_exec *ex, int i);
vxm_status vxm_exec_run_all(vxm_exec *ex);
/* Reads node i's output into host memory (numel floats); valid from its step until its last consumer ran
 * (so always right after vxm_exec_step(ex, i)), and for output nodes until vxm_exec_end. */
vxm_status vxm_exec_read(vxm_exec *ex, int i, float *host);
/* The device tensor of node i (NULL when not live). */
const vxm_tensor *vxm_exec_tensor(const vxm_exec *ex, int i);
void vxm_exec_end(vxm_exec *ex);
/* Profiling: each step waits for the device and records its wall time (for the benchmark). */
vxm_status vxm_exec_set_profiling(vxm_exec *ex, int on);
double vxm_exec_node_seconds(const vxm_exec *ex, int i);

#endif
