/* Internal: keeping every tensor of an inference graph below the device's largest single allocation.
 *
 * The published SynthMorph models (training doc §6.4) have 256 features per level; at 160x192x224 the first
 * encoder conv alone gives 160*192*224*256 floats = 6.6 GiB, above PoCL's 4 GiB CL_DEVICE_MAX_MEM_ALLOC_SIZE (and
 * that of many GPUs).  In a half-resolution U-Net that output feeds only the max-pool (the decoder never reads the
 * full-resolution skip, model/vxm_dense_graph.c build_unet), and convolution and max-pooling are independent per
 * output channel, so the conv -> max-pool pair can run as K channel groups (a kernel/bias slice each) whose pooled
 * halves are concatenated: every output element is the same sum in the same order, hence the same bits on the
 * CPU backend (cpu_conv.c: the order per element depends on the row and the tap loop only). */
#ifndef VXM_GRAPH_SPLIT_H
#define VXM_GRAPH_SPLIT_H

#include "graph/graph.h"

/* The largest tensor, in bytes, that graphs run on `be` may hold: be->max_alloc, lowered by the environment
 * variable VXM_MAX_ALLOC_MB (a positive integer, for tests); 0 = no limit. */
unsigned long long vxm_backend_alloc_limit(const vxm_backend *be);

/* Rewrites every CONV whose output exceeds max_bytes and whose only consumer is a chain of channel-wise ops (LeakyReLU,
 * scale) ending in a MAXPOOL into channel groups: per group a CONV on a kernel/bias slice (new parameters appended
 * after the existing ones, whose host copies *g owns), the chain and the MAXPOOL; then CONCATs of the pooled groups
 * in group order, the last one taking the pool's name.  The groups run one after the other, so the executor holds
 * one group's full-size output at a time.  Parameters keep their indices (the model's weights, uploaded once, stay
 * valid: vxm_weights_extend).  Fails (VXM_EUNSUPPORTED, subject `subject`, *g unchanged) when some tensor still
 * exceeds max_bytes, naming its layer and size.  max_bytes 0, or a graph with a backward pass: nothing to do. */
vxm_status vxm_graph_split_wide(vxm_context *ctx, vxm_graph **g, unsigned long long max_bytes, const char *subject);

/* Weights for g on base's device: the first base->n parameters borrowed from `base`, the rest (the split
 * parameters) uploaded.  *out is base itself when g has no further parameters.  Release with
 * vxm_weights_extend_free(*out, base). */
vxm_status vxm_weights_extend(vxm_backend *be, const vxm_graph *g, const vxm_weights *base, vxm_weights **out);
void vxm_weights_extend_free(vxm_weights *w, const vxm_weights *base);

#endif
