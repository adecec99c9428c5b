/* Internal to the OpenCL backend: the tiled forward convolution (cl/tiled/conv_tiled.cl, issue 10), used by
 * vxm_cl_conv (cl_conv.c) and through it by the data gradient, and by the fused ops (cl_conv_fused.c). */
#ifndef VXM_BACKEND_OPENCL_CONV_TILED_H
#define VXM_BACKEND_OPENCL_CONV_TILED_H

#include "backend_opencl/cl_conv.h"

/* The kernel of tile t (its conv_upcat variant when upcat), built on first use.  *k = NULL (and VXM_OK) when this
 * device cannot run it (build failure, CL_KERNEL_WORK_GROUP_SIZE below the tile's work-group, local memory): the
 * tile is then dropped for this Cout class (cl->tile entry set to direct) with a note, and the caller runs the
 * direct kernel. */
vxm_status vxm_cl_conv_tiled_kernel(vxm_backend *be, const vxm_cl_tile *t, int cout, int upcat, cl_kernel *k);

/* y = conv(x) with kernel k of tile t (up: the upcat variant's coarse input, x being the skip tensor) on weights
 * packed by vxm_conv_pack with Cout padded to coutp (a multiple of t->tn); the reduction runs as the direct kernel's
 * input-channel ranges (nsplit ranges of crange channels, the last one shorter), so the result equals the direct
 * kernel's bit for bit.  y may be a slab of output planes as in vxm_cl_conv_plan_run.  *done = 0 (and VXM_OK) when
 * the first launch was refused (CL_INVALID_WORK_GROUP_SIZE, CL_OUT_OF_RESOURCES): nothing ran, the tile is dropped
 * as above and the caller runs the direct kernel.  Geometry and sizes are checked by the caller. */
vxm_status vxm_cl_conv_tiled(vxm_backend *be, cl_kernel k, const vxm_cl_tile *t, const vxm_tensor *x,
                             const vxm_cl_upcat *up, cl_mem wp, int coutp, const vxm_conv_params *p, int crange,
                             int nsplit, vxm_tensor *y, int *done);

#endif
