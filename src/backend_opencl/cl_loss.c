/* STUB (being implemented) */
#include "backend_opencl/cl_internal.h"

vxm_status vxm_cl_spatial_transform_backward(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp, const vxm_tensor *dy, int ndim, int use_fill, vxm_tensor *dimg, vxm_tensor *ddisp)
{
    (void)img;
    (void)disp;
    (void)dy;
    (void)ndim;
    (void)use_fill;
    (void)dimg;
    (void)ddisp;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "spatial_transform_backward: not implemented yet");
}

vxm_status vxm_cl_mse_loss(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, vxm_tensor *out)
{
    (void)a;
    (void)b;
    (void)out;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "mse_loss: not implemented yet");
}

vxm_status vxm_cl_mse_loss_backward(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, float scale, vxm_tensor *da)
{
    (void)a;
    (void)b;
    (void)scale;
    (void)da;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "mse_loss_backward: not implemented yet");
}

vxm_status vxm_cl_ncc_loss(vxm_backend *be, const vxm_tensor *I, const vxm_tensor *J, const int win[3], float eps, vxm_tensor *out)
{
    (void)I;
    (void)J;
    (void)win;
    (void)eps;
    (void)out;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "ncc_loss: not implemented yet");
}

vxm_status vxm_cl_ncc_loss_backward(vxm_backend *be, const vxm_tensor *I, const vxm_tensor *J, const int win[3], float eps, float scale, vxm_tensor *dI, vxm_tensor *dJ)
{
    (void)I;
    (void)J;
    (void)win;
    (void)eps;
    (void)scale;
    (void)dI;
    (void)dJ;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "ncc_loss_backward: not implemented yet");
}

vxm_status vxm_cl_grad_loss(vxm_backend *be, const vxm_tensor *flow, int ndim, int l1, vxm_tensor *out)
{
    (void)flow;
    (void)ndim;
    (void)l1;
    (void)out;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "grad_loss: not implemented yet");
}

vxm_status vxm_cl_grad_loss_backward(vxm_backend *be, const vxm_tensor *flow, int ndim, int l1, float scale, vxm_tensor *dflow)
{
    (void)flow;
    (void)ndim;
    (void)l1;
    (void)scale;
    (void)dflow;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "grad_loss_backward: not implemented yet");
}

vxm_status vxm_cl_dice_loss(vxm_backend *be, const vxm_tensor *ytrue, const vxm_tensor *ypred, vxm_tensor *out)
{
    (void)ytrue;
    (void)ypred;
    (void)out;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "dice_loss: not implemented yet");
}

vxm_status vxm_cl_dice_loss_backward(vxm_backend *be, const vxm_tensor *ytrue, const vxm_tensor *ypred, float scale, vxm_tensor *dpred)
{
    (void)ytrue;
    (void)ypred;
    (void)scale;
    (void)dpred;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "dice_loss_backward: not implemented yet");
}

vxm_status vxm_cl_kl_loss(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logsigma, int ndim, float prior_lambda, vxm_tensor *out)
{
    (void)mean;
    (void)logsigma;
    (void)ndim;
    (void)prior_lambda;
    (void)out;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "kl_loss: not implemented yet");
}

vxm_status vxm_cl_kl_loss_backward(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logsigma, int ndim, float prior_lambda, float scale, vxm_tensor *dmean, vxm_tensor *dlogsigma)
{
    (void)mean;
    (void)logsigma;
    (void)ndim;
    (void)prior_lambda;
    (void)scale;
    (void)dmean;
    (void)dlogsigma;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "kl_loss_backward: not implemented yet");
}

vxm_status vxm_cl_adam_update(vxm_backend *be, vxm_buffer *param, const vxm_buffer *grad, vxm_buffer *m, vxm_buffer *v, size_t n, float lr_t, float beta1, float beta2, float eps)
{
    (void)param;
    (void)grad;
    (void)m;
    (void)v;
    (void)n;
    (void)lr_t;
    (void)beta1;
    (void)beta2;
    (void)eps;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "adam_update: not implemented yet");
}

vxm_status vxm_cl_sgd_update(vxm_backend *be, vxm_buffer *param, const vxm_buffer *grad, size_t n, float lr)
{
    (void)param;
    (void)grad;
    (void)n;
    (void)lr;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "sgd_update: not implemented yet");
}

vxm_status vxm_cl_axpy(vxm_backend *be, float a, const vxm_buffer *x, vxm_buffer *y, size_t n)
{
    (void)a;
    (void)x;
    (void)y;
    (void)n;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "axpy: not implemented yet");
}

vxm_status vxm_cl_fill(vxm_backend *be, vxm_buffer *p, size_t n, float value)
{
    (void)p;
    (void)n;
    (void)value;
    return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "fill: not implemented yet");
}
