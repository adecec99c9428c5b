/* Internal: fusion of what only feeds one consumer in an inference graph (issues 10 and 12), so that the
 * full-resolution intermediate tensors of the U-Net are never stored:
 *   CONV (with its fused LeakyReLU) -> MAXPOOL            becomes CONV_POOL  (backend.h conv_pool),
 *   UPSAMPLE -> CONCAT (upsampled first) -> CONV          becomes CONV_UPCAT (backend.h conv_upcat),
 * when every replaced node's only consumer is the next node of the pattern and none is a graph output.  In the
 * published full-resolution U-Net each encoder conv also feeds its decoder skip, so only the upsample + concat
 * pairs fuse there; in a half-resolution U-Net (SynthMorph) the first conv feeds only its pool
 * (model/vxm_dense_graph.c build_unet) and fuses too.  Training graphs are left alone: there the concatenation and
 * the conv output also feed the filter gradient. */
#ifndef VXM_GRAPH_FUSE_H
#define VXM_GRAPH_FUSE_H

#include "graph/graph.h"

/* Rewrites *g in place: each fused node takes the place and the name of the last node it replaces (so per-layer
 * tables and `--check` line up), the replaced nodes are removed and the others renumbered; parameters keep their
 * indices.  Nothing to do for a graph with a backward pass, or when the environment sets VXM_FUSE=0 (comparisons
 * with the unfused graph).  VXM_ENOMEM (*g unchanged) when out of memory. */
vxm_status vxm_graph_fuse(vxm_context *ctx, vxm_graph **g);

#endif
