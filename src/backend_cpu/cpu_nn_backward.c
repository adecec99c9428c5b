/* STUB (being implemented) */
#include "backend_cpu/cpu_internal.h"

vxm_status cpu_conv_backward_data(vxm_backend *be, const vxm_tensor *dy, const vxm_buffer *w, const vxm_conv_params *p, vxm_tensor *dx)
{
    (void)dy;
    (void)w;
    (void)p;
    (void)dx;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "conv_backward_data: not implemented yet");
}

vxm_status cpu_conv_backward_filter(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, const vxm_conv_params *p, vxm_buffer *dw)
{
    (void)x;
    (void)dy;
    (void)p;
    (void)dw;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "conv_backward_filter: not implemented yet");
}

vxm_status cpu_conv_backward_bias(vxm_backend *be, const vxm_tensor *dy, vxm_buffer *db)
{
    (void)dy;
    (void)db;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "conv_backward_bias: not implemented yet");
}

vxm_status cpu_leaky_relu_backward(vxm_backend *be, const vxm_tensor *ref, const vxm_tensor *dy, float alpha, vxm_tensor *dx)
{
    (void)ref;
    (void)dy;
    (void)alpha;
    (void)dx;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "leaky_relu_backward: not implemented yet");
}

vxm_status cpu_maxpool_backward(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, const int f[3], float tie_tol, vxm_tensor *dx)
{
    (void)x;
    (void)dy;
    (void)f;
    (void)tie_tol;
    (void)dx;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "maxpool_backward: not implemented yet");
}

vxm_status cpu_upsample_nearest_backward(vxm_backend *be, const vxm_tensor *dy, const int f[3], vxm_tensor *dx)
{
    (void)dy;
    (void)f;
    (void)dx;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "upsample_nearest_backward: not implemented yet");
}

vxm_status cpu_slice_channels(vxm_backend *be, const vxm_tensor *x, int c0, vxm_tensor *y)
{
    (void)x;
    (void)c0;
    (void)y;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "slice_channels: not implemented yet");
}

vxm_status cpu_add(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, vxm_tensor *y)
{
    (void)a;
    (void)b;
    (void)y;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "add: not implemented yet");
}

vxm_status cpu_resize_linear_backward(vxm_backend *be, const vxm_tensor *dy, vxm_resize_mapping map, const float factor[3], vxm_tensor *dx)
{
    (void)dy;
    (void)map;
    (void)factor;
    (void)dx;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "resize_linear_backward: not implemented yet");
}

vxm_status cpu_sample_normal_backward(vxm_backend *be, const vxm_tensor *logvar, const vxm_tensor *eps, const vxm_tensor *dy, vxm_tensor *dlogvar)
{
    (void)logvar;
    (void)eps;
    (void)dy;
    (void)dlogvar;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "sample_normal_backward: not implemented yet");
}
