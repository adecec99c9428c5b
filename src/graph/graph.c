/* Graph containers: nodes, the parameter table, and the node constructors shared by the builders. */
#include "graph/graph.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vxm_graph *vxm_graph_new(int ndim)
{
    vxm_graph *g = calloc(1, sizeof *g);
    if (g) {
        g->ndim = ndim;
        g->out_moved = g->out_warp = g->out_preint = -1;
        g->out_flow_mean = g->out_flow_logvar = -1;
        g->in_source = g->in_target = g->out_neg_moved = g->out_neg_warp = -1;
        g->in_seg_source = g->in_seg_target = g->out_seg_moved = -1;
        g->in_hyper = -1;
    }
    return g;
}

void vxm_graph_free(vxm_graph *g)
{
    if (g) {
        free(g->nodes);
        free(g->params);
        free(g->param_grad);
        for (int i = 0; i < g->nowned; i++)
            free(g->owned[i]);
        free(g->owned);
        free(g);
    }
}

float *vxm_graph_alloc_host(vxm_graph *g, size_t n)
{
    float **o = realloc(g->owned, sizeof *o * (size_t)(g->nowned + 1));
    if (!o)
        return NULL;
    g->owned = o;
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (p)
        g->owned[g->nowned++] = p;
    return p;
}

int vxm_graph_add(vxm_graph *g, const vxm_node *node)
{
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 64;
        vxm_node *nodes = realloc(g->nodes, sizeof(vxm_node) * (size_t)cap);
        if (!nodes)
            return -1;
        g->nodes = nodes;
        g->cap = cap;
    }
    g->nodes[g->n] = *node;
    return g->n++;
}

int vxm_graph_add_param(vxm_graph *g, const char *layer, const char *kind, int rank, const long *dims,
                        const float *host)
{
    if (g->nparams == g->params_cap) {
        int cap = g->params_cap ? 2 * g->params_cap : 32;
        vxm_graph_param *p = realloc(g->params, sizeof *p * (size_t)cap);
        if (!p)
            return -1;
        g->params = p;
        g->params_cap = cap;
    }
    vxm_graph_param *p = &g->params[g->nparams];
    memset(p, 0, sizeof *p);
    snprintf(p->layer, sizeof p->layer, "%s", layer);
    snprintf(p->kind, sizeof p->kind, "%s", kind);
    p->rank = rank;
    p->numel = 1;
    for (int r = 0; r < rank; r++) {
        p->dims[r] = dims[r];
        p->numel *= (size_t)dims[r];
    }
    p->host = host;
    vxm_node n;
    memset(&n, 0, sizeof n);
    n.op = VXM_OP_PARAM;
    snprintf(n.name, sizeof n.name, "%s/%s", layer, kind);
    n.shape[0] = n.shape[1] = n.shape[2] = 1;
    n.channels = (int)p->numel;
    n.flags = VXM_NODE_GRAD;
    n.p.param.index = g->nparams;
    int i = vxm_graph_add(g, &n);
    if (i >= 0)
        g->nparams++;
    return i;
}

int vxm_graph_add_conv(vxm_graph *g, int x, const char *layer, const int ksize[3], const int stride[3], int cout,
                       int leaky, float alpha, const float *kernel, const float *bias)
{
    int cin = g->nodes[x].channels;
    long kd[5];
    int r = 0;
    for (int d = 3 - g->ndim; d < 3; d++)
        kd[r++] = ksize[d];
    kd[r++] = cin;
    kd[r++] = cout;
    long bd[1] = {cout};
    int w = vxm_graph_add_param(g, layer, "kernel", r, kd, kernel);
    int b = w < 0 ? -1 : vxm_graph_add_param(g, layer, "bias", 1, bd, bias);
    if (b < 0)
        return -1;
    return vxm_graph_add_conv_nodes(g, x, w, b, layer, ksize, stride, cout, leaky, alpha);
}

int vxm_graph_add_conv_nodes(vxm_graph *g, int x, int w, int b, const char *layer, const int ksize[3],
                             const int stride[3], int cout, int leaky, float alpha)
{
    vxm_node n;
    memset(&n, 0, sizeof n);
    n.op = VXM_OP_CONV;
    snprintf(n.name, sizeof n.name, "%s", layer);
    n.in[0] = x;
    n.in[1] = w;
    n.in[2] = b;
    n.n_in = 3;
    n.channels = cout;
    n.flags = VXM_NODE_GRAD;
    for (int d = 0; d < 3; d++) {
        n.p.conv.ksize[d] = ksize[d];
        n.p.conv.stride[d] = stride[d];
        vxm_same_padding(g->nodes[x].shape[d], ksize[d], stride[d], &n.shape[d], &n.p.conv.pad_lo[d]);
    }
    n.p.conv.leaky = leaky;
    n.p.conv.alpha = alpha;
    return vxm_graph_add(g, &n);
}

/* A node of `op` reading `in0`, with its shape, channels and gradient flag. */
static vxm_node node_from(const vxm_graph *g, vxm_op op, const char *name, int in0)
{
    vxm_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    snprintf(n.name, sizeof n.name, "%s", name);
    n.in[0] = in0;
    n.n_in = 1;
    memcpy(n.shape, g->nodes[in0].shape, sizeof n.shape);
    n.channels = g->nodes[in0].channels;
    n.flags = g->nodes[in0].flags & VXM_NODE_GRAD;
    return n;
}

int vxm_graph_add_input(vxm_graph *g, const char *name, int index, const int shape[3], int channels)
{
    vxm_node n;
    memset(&n, 0, sizeof n);
    n.op = VXM_OP_INPUT;
    snprintf(n.name, sizeof n.name, "%s", name);
    memcpy(n.shape, shape, sizeof n.shape);
    n.channels = channels;
    n.p.input.index = index;
    return vxm_graph_add(g, &n);
}

int vxm_graph_add_op(vxm_graph *g, vxm_op op, const char *name, int in0, int in1)
{
    if (in0 < 0 || (in1 < 0 && op == VXM_OP_ADD))
        return -1;
    vxm_node n = node_from(g, op, name, in0);
    if (in1 >= 0) {
        n.in[n.n_in++] = in1;
        n.flags |= g->nodes[in1].flags & VXM_NODE_GRAD;
    }
    return vxm_graph_add(g, &n);
}

static int add_scale(vxm_graph *g, int in, float s, const char *name)
{
    vxm_node n = node_from(g, VXM_OP_SCALE, name, in);
    n.p.scale.s = s;
    return vxm_graph_add(g, &n);
}

int vxm_graph_add_vecint_unrolled(vxm_graph *g, int v, int steps, const char *name)
{
    char nm[VXM_NODE_NAME_MAX];
    snprintf(nm, sizeof nm, "%.80s_scale", name);
    int w = add_scale(g, v, 1.0f / (float)(1 << steps), nm);
    for (int s = 0; s < steps && w >= 0; s++) {
        snprintf(nm, sizeof nm, "%.80s_%d", name, s);
        vxm_node tr = node_from(g, VXM_OP_TRANSFORM, nm, w);
        tr.in[1] = w;
        tr.n_in = 2;
        tr.p.transform.interp = VXM_INTERP_LINEAR;
        int t = vxm_graph_add(g, &tr);
        if (t < 0)
            return -1;
        vxm_node add = node_from(g, VXM_OP_ADD, nm, w);
        add.in[1] = t;
        add.n_in = 2;
        w = vxm_graph_add(g, &add);
    }
    return w;
}

int vxm_graph_add_rescale(vxm_graph *g, int in, double f, vxm_resize_mapping map, const char *name)
{
    if (f == 1.0)
        return in;
    char nm[VXM_NODE_NAME_MAX];
    snprintf(nm, sizeof nm, "%s_scale", name); /* truncated to the node name size */
    int x = in;
    if (f >= 1)
        x = add_scale(g, x, (float)f, nm);
    if (x < 0)
        return -1;
    snprintf(nm, sizeof nm, "%s_resize", name);
    vxm_node n = node_from(g, VXM_OP_RESIZE, nm, x);
    n.p.resize.map = map;
    for (int d = 0; d < 3; d++) {
        int on_axis = d >= 3 - g->ndim;
        n.p.resize.factor[d] = on_axis ? (float)f : 1.0f;
        n.shape[d] = on_axis ? (int)(n.shape[d] * f) : n.shape[d]; /* int(n * f): truncation, spec §6.1 */
        if (n.shape[d] < 1)
            n.shape[d] = 1;
    }
    x = vxm_graph_add(g, &n);
    if (x >= 0 && f < 1) {
        snprintf(nm, sizeof nm, "%s_scale", name);
        x = add_scale(g, x, (float)f, nm);
    }
    return x;
}

int vxm_graph_add_loss(vxm_graph *g, vxm_op op, const char *name, int a, int b, double factor, double weight)
{
    vxm_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    snprintf(n.name, sizeof n.name, "loss_%s", name);
    n.in[0] = a;
    n.in[1] = b;
    n.n_in = b >= 0 ? 2 : 1;
    n.shape[0] = n.shape[1] = n.shape[2] = n.channels = 1;
    n.flags = VXM_NODE_LOSS | VXM_NODE_OUTPUT;
    n.p.loss.kind = op;
    n.p.loss.ndim = g->ndim;
    n.p.loss.factor = factor;
    n.p.loss.weight = weight;
    n.p.loss.eps = 1e-5f; /* NCC eps (training doc §2.1) */
    for (int d = 0; d < 3; d++)
        n.p.loss.win[d] = d >= 3 - g->ndim ? 9 : 1; /* NCC window 9 on the image axes */
    return vxm_graph_add(g, &n);
}

void vxm_graph_set_loss_weight(vxm_graph *g, int loss, double weight)
{
    g->nodes[loss].p.loss.weight = weight;
    for (int i = loss + 1; i < g->n; i++)
        if (g->nodes[i].op == VXM_OP_LOSS_BACK && g->nodes[i].p.loss.of == loss)
            g->nodes[i].p.loss.weight = weight;
}

double vxm_node_conv_flops(const vxm_graph *g, const vxm_node *n)
{
    if (n->op != VXM_OP_CONV && n->op != VXM_OP_CONV_UPCAT && n->op != VXM_OP_CONV_POOL)
        return 0; /* before reading in[0]: other nodes may have no input (fuzz_h5model, issue 11) */
    const vxm_conv_params *p = n->op == VXM_OP_CONV ? &n->p.conv : &n->p.fused.conv;
    int cin = g->nodes[n->in[0]].channels;
    double vox = (double)n->shape[0] * n->shape[1] * n->shape[2];
    switch (n->op) {
    case VXM_OP_CONV: break;
    case VXM_OP_CONV_UPCAT: cin += g->nodes[n->in[1]].channels; break;
    case VXM_OP_CONV_POOL: /* the conv's own grid, ceil(n / stride), not the pooled one */
        vox = 1;
        for (int d = 0; d < 3; d++)
            vox *= (g->nodes[n->in[0]].shape[d] + p->stride[d] - 1) / p->stride[d];
        break;
    default: return 0;
    }
    return 2.0 * p->ksize[0] * p->ksize[1] * p->ksize[2] * cin * n->channels * vox;
}

double vxm_graph_conv_flops(const vxm_graph *g)
{
    double total = 0;
    int nf = g->param_grad ? g->n_forward : g->n;
    for (int i = 0; i < nf; i++)
        total += vxm_node_conv_flops(g, &g->nodes[i]);
    return total;
}

int vxm_graph_io_fields(vxm_graph *g, int *f[VXM_GRAPH_IO_FIELDS])
{
    int *all[VXM_GRAPH_IO_FIELDS] = {&g->out_moved,       &g->out_warp,      &g->out_preint,   &g->out_flow_mean,
                                     &g->out_flow_logvar, &g->in_source,     &g->in_target,    &g->out_neg_moved,
                                     &g->out_neg_warp,    &g->in_seg_source, &g->in_seg_target, &g->out_seg_moved,
                                     &g->in_hyper};
    memcpy(f, all, sizeof all);
    return VXM_GRAPH_IO_FIELDS;
}

const char *vxm_op_name(vxm_op op)
{
    static const char *names[VXM_OP_COUNT] = {
        [VXM_OP_INPUT] = "input", [VXM_OP_PARAM] = "param", [VXM_OP_NOISE] = "noise", [VXM_OP_CONV] = "conv",
        [VXM_OP_LEAKY] = "leaky_relu", [VXM_OP_MAXPOOL] = "maxpool", [VXM_OP_UPSAMPLE] = "upsample",
        [VXM_OP_CONCAT] = "concat", [VXM_OP_SCALE] = "scale", [VXM_OP_RESIZE] = "resize", [VXM_OP_VECINT] = "vecint",
        [VXM_OP_TRANSFORM] = "transform", [VXM_OP_SAMPLE] = "sample", [VXM_OP_ADD] = "add",
        [VXM_OP_ELU] = "elu", [VXM_OP_RESHAPE] = "reshape",
        [VXM_OP_LOSS_MSE] = "loss_mse", [VXM_OP_LOSS_NCC] = "loss_ncc", [VXM_OP_LOSS_GRAD] = "loss_grad",
        [VXM_OP_LOSS_DICE] = "loss_dice", [VXM_OP_LOSS_KL] = "loss_kl", [VXM_OP_CONV_BACK_DATA] = "conv_back_data",
        [VXM_OP_CONV_BACK_FILTER] = "conv_back_filter", [VXM_OP_CONV_BACK_BIAS] = "conv_back_bias",
        [VXM_OP_LEAKY_BACK] = "leaky_back", [VXM_OP_MAXPOOL_BACK] = "maxpool_back",
        [VXM_OP_UPSAMPLE_BACK] = "upsample_back", [VXM_OP_SLICE] = "slice", [VXM_OP_RESIZE_BACK] = "resize_back",
        [VXM_OP_TRANSFORM_BACK_IMAGE] = "transform_back_image", [VXM_OP_TRANSFORM_BACK_DISP] = "transform_back_disp",
        [VXM_OP_SAMPLE_BACK] = "sample_back", [VXM_OP_LOSS_BACK] = "loss_back",
        [VXM_OP_ELU_BACK] = "elu_back", [VXM_OP_CONV_POOL] = "conv_pool", [VXM_OP_CONV_UPCAT] = "conv_upcat"};
    return (unsigned)op < VXM_OP_COUNT && names[op] ? names[op] : "?";
}
