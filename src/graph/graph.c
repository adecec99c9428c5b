#include "graph/graph.h"

#include <stdlib.h>

vxm_graph *vxm_graph_new(int ndim)
{
    vxm_graph *g = calloc(1, sizeof *g);
    if (g) {
        g->ndim = ndim;
        g->out_moved = g->out_warp = -1;
    }
    return g;
}

void vxm_graph_free(vxm_graph *g)
{
    if (g) {
        free(g->nodes);
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

double vxm_graph_conv_flops(const vxm_graph *g)
{
    double total = 0;
    for (int i = 0; i < g->n; i++) {
        const vxm_node *n = &g->nodes[i];
        if (n->op == VXM_OP_CONV)
            total += 2.0 * n->conv.ksize[0] * n->conv.ksize[1] * n->conv.ksize[2] * n->cin * n->channels *
                     n->shape[0] * n->shape[1] * n->shape[2];
    }
    return total;
}

const char *vxm_op_name(vxm_op op)
{
    static const char *names[] = {"input", "conv", "leaky_relu", "maxpool", "upsample", "concat",
                                  "scale", "resize", "vecint", "transform", "sample"};
    return (unsigned)op < sizeof names / sizeof names[0] ? names[op] : "?";
}
