/* The fused ops of backend.h (conv_pool, conv_upcat; graph/fuse.h) on OpenCL, for now as a composition of the
 * existing kernels through a temporary device tensor: the same results as the unfused sequence, so `--check` and
 * the op agreement tests hold, while the kernels that read their input through the fusion (issue 10: loads of the
 * upsampled and concatenated input inside the conv's tile loads, the pool inside the conv's store) are written. */
#include "backend_opencl/cl_internal.h"

vxm_status vxm_cl_conv_pool(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b,
                            const vxm_conv_params *p, const int f[3], vxm_tensor *y)
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, x, "conv_pool")) || (st = vxm_cl_check_tensor(be, y, "conv_pool")))
        return st;
    if (!p || !f)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "conv_pool: missing parameters");
    int m[3]; /* the conv's grid, ceil(x / stride) */
    for (int d = 0; d < 3; d++)
        m[d] = p->stride[d] >= 1 ? (x->shape[d] + p->stride[d] - 1) / p->stride[d] : 1;
    vxm_tensor t;
    if ((st = vxm_tensor_alloc(be, m, y->channels, &t)))
        return st;
    st = vxm_cl_conv(be, x, w, b, p, &t);
    if (!st)
        st = vxm_cl_maxpool(be, &t, f, y);
    vxm_tensor_release(be, &t); /* the in-order queue runs the pool before the buffer is reused */
    return st;
}

vxm_status vxm_cl_conv_upcat(vxm_backend *be, const vxm_tensor *a, const int f[3], const vxm_tensor *skip,
                             const vxm_buffer *w, const vxm_buffer *b, const vxm_conv_params *p, vxm_tensor *y)
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, a, "conv_upcat")) || (st = vxm_cl_check_tensor(be, skip, "conv_upcat")))
        return st;
    if (!f)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "conv_upcat: missing factors");
    int n[3];
    for (int d = 0; d < 3; d++)
        n[d] = a->shape[d] * f[d];
    vxm_tensor up = {{0, 0, 0}, 0, NULL}, cat = {{0, 0, 0}, 0, NULL};
    st = vxm_tensor_alloc(be, n, a->channels, &up);
    if (!st)
        st = vxm_cl_upsample_nearest(be, a, f, &up);
    if (!st)
        st = vxm_tensor_alloc(be, n, a->channels + skip->channels, &cat);
    if (!st)
        st = vxm_cl_concat(be, &up, skip, &cat);
    vxm_tensor_release(be, &up);
    if (!st)
        st = vxm_cl_conv(be, &cat, w, b, p, y);
    vxm_tensor_release(be, &cat);
    return st;
}
