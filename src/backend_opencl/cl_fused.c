/* The fused ops of backend.h (conv_pool, conv_upcat; graph/fuse.h) on OpenCL: the convolution kernels' fused
 * variants (cl_conv_fused.c, issue 10), bitwise equal to the unfused op sequences on the same device without storing
 * the full-resolution conv output (conv_pool) or the upsampled and concatenated input (conv_upcat). */
#include "backend_opencl/cl_conv.h"

vxm_status vxm_cl_conv_pool(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b,
                            const vxm_conv_params *p, const int f[3], vxm_tensor *y)
{
    return vxm_cl_conv_pool_fused(be, x, w, b, p, f, y);
}

vxm_status vxm_cl_conv_upcat(vxm_backend *be, const vxm_tensor *a, const int f[3], const vxm_tensor *skip,
                             const vxm_buffer *w, const vxm_buffer *b, const vxm_conv_params *p, vxm_tensor *y)
{
    return vxm_cl_conv_upcat_fused(be, a, f, skip, w, b, p, y);
}
