/* Internal to the OpenCL backend: the tiled filter gradient (cl/tiled/conv_filter_tiled.cl, issue 10). */
#ifndef VXM_BACKEND_OPENCL_CONV_FILTER_TILED_H
#define VXM_BACKEND_OPENCL_CONV_FILTER_TILED_H

#include "backend_opencl/cl_internal.h"

/* The per-chunk partial filter gradients of x-patch (x) dy into part (nparts x k0*k1*k2*Cin*Cout floats, chunks of
 * `chunk` voxels, the partition of cl_conv_backward.c), with tile t -- bitwise the values of the direct kernel.
 * *done = 0 (and VXM_OK) when this device cannot run the tile's kernel (work-group size, local memory, loop
 * budget): the caller then runs the direct kernel.  Geometry and sizes are checked by the caller. */
vxm_status vxm_cl_conv_filter_tiled(vxm_backend *be, const vxm_cl_tile *t, const vxm_tensor *x, const vxm_tensor *dy,
                                    const vxm_conv_params *p, cl_mem part, unsigned chunk, unsigned nparts,
                                    int *done);

/* Sets the arguments both filter kernels (cl/conv_backward.cl, cl/tiled/conv_filter_tiled.cl) start with: x, dy,
 * part, x's shape, Cin, dy's shape[1..2], Cout, k1, k2, strides, padding, dy's voxel count, chunk
 * (cl_conv_backward.c). */
void vxm_cl_filter_args(vxm_cl_args *a, const vxm_tensor *x, const vxm_tensor *dy, const vxm_conv_params *p,
                        cl_mem part, unsigned chunk);

#endif
