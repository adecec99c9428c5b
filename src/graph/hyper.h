/* Internal: the layers of HyperMorph's HyperVxmDense (training doc §5) as graph nodes.
 *
 * A Keras Dense layer on a (B, F) tensor is, per sample, a 1x1x1 convolution of a 1x1x1 tensor with F channels:
 * its kernel (F, units) in C order is the conv kernel layout (1,1,1,F,units) of backend.h, so the conv op and its
 * backward ops serve as Dense forward/backward on every backend, and ReLU is the fused LeakyReLU with alpha 0
 * (leaky_relu_backward passes nothing at 0, as TF's relu gradient).
 *
 * neurite's HyperConvFromDense (layers.py HyperConvFromDense) computes per sample
 *   K = reshape(h . hyperkernel_kernel + hyperkernel_bias, (k..., Cin, Cout))   (C order)
 *   b = h . hyperbias_kernel + hyperbias_bias
 * and convolves with them (SAME).  Here K and b are two such 1x1x1 "Dense" nodes whose tensors (K: k^d*Cin*Cout
 * channels, already in the conv kernel layout) feed VXM_OP_CONV in place of parameter leaves; the backward pass
 * then reaches the four hyper weights through the ordinary conv rules. */
#ifndef VXM_GRAPH_HYPER_H
#define VXM_GRAPH_HYPER_H

#include "graph/graph.h"

/* Dense(units, relu?) of node x (1x1x1, F channels): parameters <layer>/kernel (F, units) and <layer>/bias
 * (units), host values may be NULL (new model).  Returns the node, -1 when out of memory. */
int vxm_graph_add_dense(vxm_graph *g, int x, const char *layer, int units, int relu, const float *kernel,
                        const float *bias);

/* HyperConv<d>DFromDense(cout, ksize, SAME, stride 1) of node x driven by the hypernetwork output node h, with an
 * optional fused LeakyReLU(alpha).  w: host values of hyperkernel_kernel (units, K), hyperkernel_bias (K),
 * hyperbias_kernel (units, Cout), hyperbias_bias (Cout), K = prod(ksize) * Cin * Cout (NULL entries: a new model).
 * The parameters are registered in this (Keras') order under `layer`; the two generating nodes are named
 * "<layer>/hyperkernel" and "<layer>/hyperbias" (not Keras layers: the '/' marks them).  Returns the
 * convolution's node, -1 when out of memory. */
int vxm_graph_add_hyperconv(vxm_graph *g, int x, int h, const char *layer, const int ksize[3], int cout, int leaky,
                            float alpha, const float *const w[4]);

#endif
