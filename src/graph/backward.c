/* The backward pass as more graph nodes, in the manner of ggml_compute_backward: one walk over the forward nodes in
 * reverse order; one switch over op kinds appends the *_back nodes of each op; where a tensor feeds several nodes
 * (U-Net skips, the U-Net input, the VecInt field used as image and as locations) the gradients are summed with ADD
 * nodes (ggml_add_or_set).  Gradient rules: training doc §2.7; shapes are checked here, once, when the nodes are
 * made.  Loss nodes seed the pass: their backward nodes already carry factor * weight (training doc §2.6). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"

typedef struct bctx {
    vxm_context *ctx;
    vxm_graph *g;
    int *grad; /* per forward node: node holding d total / d output, or -1 */
    vxm_status st;
} bctx;

static int push(bctx *b, vxm_node *n)
{
    if (b->st)
        return -1;
    int i = vxm_graph_add(b->g, n);
    if (i < 0)
        b->st = vxm_error(b->ctx, VXM_ENOMEM, "backward", "out of memory building the backward graph");
    return i;
}

/* A gradient node with the shape of forward node `like`. */
static vxm_node back_node(const bctx *b, vxm_op op, int like, const char *suffix, int in0, int in1, int in2)
{
    const vxm_node *f = &b->g->nodes[like];
    vxm_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    snprintf(n.name, sizeof n.name, "%.70s%s", f->name, suffix);
    n.in[0] = in0;
    n.in[1] = in1;
    n.in[2] = in2;
    n.n_in = in2 >= 0 ? 3 : in1 >= 0 ? 2 : 1;
    memcpy(n.shape, f->shape, sizeof n.shape);
    n.channels = f->channels;
    return n;
}

/* ggml_add_or_set: the gradient of node `dst` gets node `g` added (or set when it has none yet). */
static void accumulate(bctx *b, int dst, int gnode)
{
    if (gnode < 0 || b->st)
        return;
    if (!(b->g->nodes[dst].flags & VXM_NODE_GRAD))
        return; /* no parameter upstream: nobody needs this gradient */
    if (b->grad[dst] < 0) {
        b->grad[dst] = gnode;
        return;
    }
    vxm_node n = back_node(b, VXM_OP_ADD, dst, "_grad_add", b->grad[dst], gnode, -1);
    b->grad[dst] = push(b, &n);
}

static int wants(const bctx *b, int node)
{
    return (b->g->nodes[node].flags & VXM_NODE_GRAD) != 0;
}

static void back_conv(bctx *b, int i, int dy)
{
    const vxm_node fn = b->g->nodes[i], *f = &fn; /* a copy: push() may move g->nodes (realloc) */
    int x = f->in[0], w = f->in[1], bias = f->in[2];
    vxm_conv_params cp = f->p.conv;
    if (cp.leaky) { /* the fused LeakyReLU: its output has the sign of its input */
        vxm_node n = back_node(b, VXM_OP_LEAKY_BACK, i, "_leaky_back", i, dy, -1);
        n.p.leaky.alpha = cp.alpha;
        dy = push(b, &n);
    }
    cp.leaky = 0;
    vxm_node nw = back_node(b, VXM_OP_CONV_BACK_FILTER, w, "_grad", x, dy, -1);
    nw.p.conv = cp;
    accumulate(b, w, push(b, &nw));
    vxm_node nb = back_node(b, VXM_OP_CONV_BACK_BIAS, bias, "_grad", dy, -1, -1);
    accumulate(b, bias, push(b, &nb));
    if (wants(b, x)) {
        vxm_node nx = back_node(b, VXM_OP_CONV_BACK_DATA, x, "_back", dy, w, -1);
        snprintf(nx.name, sizeof nx.name, "%.70s_back_data", f->name);
        nx.p.conv = cp;
        accumulate(b, x, push(b, &nx));
    }
}

static void back_transform(bctx *b, int i, int dy)
{
    const vxm_node fn = b->g->nodes[i], *f = &fn; /* a copy: push() may move g->nodes (realloc) */
    if (f->p.transform.interp != VXM_INTERP_LINEAR) {
        b->st = vxm_error(b->ctx, VXM_EUNSUPPORTED, f->name, "nearest interpolation has no gradient");
        return;
    }
    int img = f->in[0], disp = f->in[1];
    if (wants(b, disp)) {
        vxm_node n = back_node(b, VXM_OP_TRANSFORM_BACK_DISP, disp, "", img, disp, dy);
        snprintf(n.name, sizeof n.name, "%.70s_back_disp", f->name);
        n.p.transform = f->p.transform;
        accumulate(b, disp, push(b, &n));
    }
    if (wants(b, img)) {
        vxm_node n = back_node(b, VXM_OP_TRANSFORM_BACK_IMAGE, img, "", img, disp, dy);
        snprintf(n.name, sizeof n.name, "%.70s_back_image", f->name);
        n.p.transform = f->p.transform;
        accumulate(b, img, push(b, &n));
    }
}

static void back_loss(bctx *b, int i)
{
    const vxm_node fn = b->g->nodes[i], *f = &fn; /* a copy: push() may move g->nodes (realloc) */
    for (int k = 0; k < f->n_in; k++) {
        int src = f->in[k];
        if (!wants(b, src))
            continue;
        vxm_node n = back_node(b, VXM_OP_LOSS_BACK, src, "", f->in[0], f->n_in > 1 ? f->in[1] : -1, -1);
        snprintf(n.name, sizeof n.name, "%.70s_back%d", f->name, k);
        n.p.loss = f->p.loss;
        n.p.loss.kind = f->op;
        n.p.loss.wrt = k;
        n.p.loss.of = i;
        accumulate(b, src, push(b, &n));
    }
}

/* Appends the backward nodes of forward node i, whose output gradient is node dy. */
static void back_node_of(bctx *b, int i, int dy)
{
    const vxm_node fn = b->g->nodes[i], *f = &fn; /* a copy: push() may move g->nodes (realloc) */
    vxm_node n;
    switch (f->op) {
    case VXM_OP_INPUT:
    case VXM_OP_PARAM:
    case VXM_OP_NOISE: return;
    case VXM_OP_CONV: back_conv(b, i, dy); return;
    case VXM_OP_LEAKY:
        n = back_node(b, VXM_OP_LEAKY_BACK, f->in[0], "_back", f->in[0], dy, -1);
        n.p.leaky = f->p.leaky;
        accumulate(b, f->in[0], push(b, &n));
        return;
    case VXM_OP_MAXPOOL:
        n = back_node(b, VXM_OP_MAXPOOL_BACK, f->in[0], "_pool_back", f->in[0], dy, -1);
        n.p.pool = f->p.pool;
        accumulate(b, f->in[0], push(b, &n));
        return;
    case VXM_OP_UPSAMPLE:
        n = back_node(b, VXM_OP_UPSAMPLE_BACK, f->in[0], "_upsample_back", dy, -1, -1);
        n.p.pool = f->p.pool;
        accumulate(b, f->in[0], push(b, &n));
        return;
    case VXM_OP_CONCAT: {
        int ca = b->g->nodes[f->in[0]].channels;
        for (int k = 0; k < 2; k++) {
            if (!wants(b, f->in[k]))
                continue;
            n = back_node(b, VXM_OP_SLICE, f->in[k], "_slice", dy, -1, -1);
            n.p.slice.c0 = k ? ca : 0;
            accumulate(b, f->in[k], push(b, &n));
        }
        return;
    }
    case VXM_OP_SCALE:
        n = back_node(b, VXM_OP_SCALE, f->in[0], "_scale_back", dy, -1, -1);
        n.p.scale = f->p.scale;
        accumulate(b, f->in[0], push(b, &n));
        return;
    case VXM_OP_RESIZE:
        n = back_node(b, VXM_OP_RESIZE_BACK, f->in[0], "_resize_back", dy, -1, -1);
        n.p.resize = f->p.resize;
        accumulate(b, f->in[0], push(b, &n));
        return;
    case VXM_OP_TRANSFORM: back_transform(b, i, dy); return;
    case VXM_OP_ELU: /* dx = dy * (x > 0 ? 1 : exp(x)), from the ELU's input (backend.h) */
        n = back_node(b, VXM_OP_ELU_BACK, f->in[0], "_elu_back", f->in[0], dy, -1);
        accumulate(b, f->in[0], push(b, &n));
        return;
    case VXM_OP_RESHAPE: /* the same data in the input's shape */
        n = back_node(b, VXM_OP_RESHAPE, f->in[0], "_reshape_back", dy, -1, -1);
        accumulate(b, f->in[0], push(b, &n));
        return;
    case VXM_OP_ADD:
        accumulate(b, f->in[0], dy);
        accumulate(b, f->in[1], dy);
        return;
    case VXM_OP_SAMPLE:
        accumulate(b, f->in[0], dy); /* d z / d mean = 1 */
        if (wants(b, f->in[1])) {
            n = back_node(b, VXM_OP_SAMPLE_BACK, f->in[1], "_sample_back", f->in[1], f->in[2], dy);
            accumulate(b, f->in[1], push(b, &n));
        }
        return;
    case VXM_OP_VECINT:
        b->st = vxm_error(b->ctx, VXM_EUNSUPPORTED, f->name,
                          "VecInt must be unrolled for training (vxm_dense_build_graph_ex with training set)");
        return;
    default:
        b->st = vxm_error(b->ctx, VXM_EUNSUPPORTED, f->name, "op %s has no backward rule", vxm_op_name(f->op));
        return;
    }
}

vxm_status vxm_graph_build_backward(vxm_context *ctx, vxm_graph *g)
{
    if (g->param_grad)
        return vxm_error(ctx, VXM_EINVAL, "backward", "the graph already has a backward pass");
    int nf = g->n;
    bctx b = {ctx, g, malloc(sizeof(int) * (size_t)(nf ? nf : 1)), VXM_OK};
    g->param_grad = malloc(sizeof(int) * (size_t)(g->nparams ? g->nparams : 1));
    if (!b.grad || !g->param_grad) {
        free(b.grad);
        return vxm_error(ctx, VXM_ENOMEM, "backward", "out of memory");
    }
    g->n_forward = nf;
    for (int i = 0; i < nf; i++)
        b.grad[i] = -1;
    /* Losses first (they are the sinks), then every node in reverse order. */
    for (int i = nf - 1; i >= 0 && !b.st; i--)
        if (g->nodes[i].flags & VXM_NODE_LOSS)
            back_loss(&b, i);
    for (int i = nf - 1; i >= 0 && !b.st; i--) {
        if (g->nodes[i].flags & VXM_NODE_LOSS)
            continue;
        if (b.grad[i] >= 0)
            back_node_of(&b, i, b.grad[i]);
    }
    for (int k = 0; k < g->nparams; k++)
        g->param_grad[k] = -1;
    for (int i = 0; i < nf && !b.st; i++)
        if (g->nodes[i].op == VXM_OP_PARAM) {
            int k = g->nodes[i].p.param.index;
            g->param_grad[k] = b.grad[i];
            if (b.grad[i] >= 0)
                g->nodes[b.grad[i]].flags |= VXM_NODE_OUTPUT;
        }
    free(b.grad);
    /* the memory plan of the pass: cheap forward tensors are recomputed late rather than kept (graph/remat.c) */
    return b.st ? b.st : vxm_graph_rematerialise(ctx, g);
}
