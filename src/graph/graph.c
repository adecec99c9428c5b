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
        g->in_source = g->in_target = g->out_neg_moved = -1;
        g->in_seg_source = g->in_seg_target = g->out_seg_moved = -1;
    }
    return g;
}

void vxm_graph_free(vxm_graph *g)
{
    if (g) {
        free(g->nodes);
        free(g->params);
        free(g->param_grad);
        free(g);
    }
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

double vxm_graph_conv_flops(const vxm_graph *g)
{
    double total = 0;
    int nf = g->param_grad ? g->n_forward : g->n;
    for (int i = 0; i < nf; i++) {
        const vxm_node *n = &g->nodes[i];
        if (n->op == VXM_OP_CONV)
            total += 2.0 * n->p.conv.ksize[0] * n->p.conv.ksize[1] * n->p.conv.ksize[2] *
                     g->nodes[n->in[0]].channels * n->channels * n->shape[0] * n->shape[1] * n->shape[2];
    }
    return total;
}

const char *vxm_op_name(vxm_op op)
{
    static const char *names[VXM_OP_COUNT] = {
        [VXM_OP_INPUT] = "input", [VXM_OP_PARAM] = "param", [VXM_OP_NOISE] = "noise", [VXM_OP_CONV] = "conv",
        [VXM_OP_LEAKY] = "leaky_relu", [VXM_OP_MAXPOOL] = "maxpool", [VXM_OP_UPSAMPLE] = "upsample",
        [VXM_OP_CONCAT] = "concat", [VXM_OP_SCALE] = "scale", [VXM_OP_RESIZE] = "resize", [VXM_OP_VECINT] = "vecint",
        [VXM_OP_TRANSFORM] = "transform", [VXM_OP_SAMPLE] = "sample", [VXM_OP_ADD] = "add",
        [VXM_OP_LOSS_MSE] = "loss_mse", [VXM_OP_LOSS_NCC] = "loss_ncc", [VXM_OP_LOSS_GRAD] = "loss_grad",
        [VXM_OP_LOSS_DICE] = "loss_dice", [VXM_OP_LOSS_KL] = "loss_kl", [VXM_OP_CONV_BACK_DATA] = "conv_back_data",
        [VXM_OP_CONV_BACK_FILTER] = "conv_back_filter", [VXM_OP_CONV_BACK_BIAS] = "conv_back_bias",
        [VXM_OP_LEAKY_BACK] = "leaky_back", [VXM_OP_MAXPOOL_BACK] = "maxpool_back",
        [VXM_OP_UPSAMPLE_BACK] = "upsample_back", [VXM_OP_SLICE] = "slice", [VXM_OP_RESIZE_BACK] = "resize_back",
        [VXM_OP_TRANSFORM_BACK_IMAGE] = "transform_back_image", [VXM_OP_TRANSFORM_BACK_DISP] = "transform_back_disp",
        [VXM_OP_SAMPLE_BACK] = "sample_back", [VXM_OP_LOSS_BACK] = "loss_back"};
    return (unsigned)op < VXM_OP_COUNT && names[op] ? names[op] : "?";
}
