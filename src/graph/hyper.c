/* HyperMorph's Dense and HyperConvFromDense layers as graph nodes (graph/hyper.h; training doc §5). */
#include "graph/hyper.h"

#include <stdio.h>

/* A 1x1x1 convolution of node x with parameter nodes w, b (a Dense layer, or a hyper kernel/bias generator). */
static int dense_node(vxm_graph *g, int x, int w, int b, const char *name, int units, int relu)
{
    static const int one[3] = {1, 1, 1};
    if (w < 0 || b < 0)
        return -1;
    return vxm_graph_add_conv_nodes(g, x, w, b, name, one, one, units, relu, 0.0f);
}

int vxm_graph_add_dense(vxm_graph *g, int x, const char *layer, int units, int relu, const float *kernel,
                        const float *bias)
{
    long kd[2] = {g->nodes[x].channels, units}, bd[1] = {units};
    int w = vxm_graph_add_param(g, layer, "kernel", 2, kd, kernel);
    int b = w < 0 ? -1 : vxm_graph_add_param(g, layer, "bias", 1, bd, bias);
    return dense_node(g, x, w, b, layer, units, relu);
}

int vxm_graph_add_hyperconv(vxm_graph *g, int x, int h, const char *layer, const int ksize[3], int cout, int leaky,
                            float alpha, const float *const w[4])
{
    static const int stride[3] = {1, 1, 1};
    long units = g->nodes[h].channels;
    long nk = (long)ksize[0] * ksize[1] * ksize[2] * g->nodes[x].channels * cout;
    long kk[2] = {units, nk}, kb[1] = {nk}, bk[2] = {units, cout}, bb[1] = {cout};
    int p[4];
    p[0] = vxm_graph_add_param(g, layer, "hyperkernel_kernel", 2, kk, w[0]);
    p[1] = p[0] < 0 ? -1 : vxm_graph_add_param(g, layer, "hyperkernel_bias", 1, kb, w[1]);
    p[2] = p[1] < 0 ? -1 : vxm_graph_add_param(g, layer, "hyperbias_kernel", 2, bk, w[2]);
    p[3] = p[2] < 0 ? -1 : vxm_graph_add_param(g, layer, "hyperbias_bias", 1, bb, w[3]);
    char name[VXM_NODE_NAME_MAX];
    snprintf(name, sizeof name, "%.80s/hyperkernel", layer);
    int kernel = dense_node(g, h, p[0], p[1], name, (int)nk, 0);
    snprintf(name, sizeof name, "%.80s/hyperbias", layer);
    int bias = kernel < 0 ? -1 : dense_node(g, h, p[2], p[3], name, cout, 0);
    if (bias < 0)
        return -1;
    return vxm_graph_add_conv_nodes(g, x, kernel, bias, layer, ksize, stride, cout, leaky, alpha);
}
