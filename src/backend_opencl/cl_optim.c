/* Optimisers and flat buffer arithmetic of the training ops (kernels in cl/optim.cl): Keras Adam (training doc §3.2),
 * SGD, axpy and fill, one work-item per float. */
#include "backend_opencl/cl_internal.h"

/* Every buffer must hold n floats. */
static vxm_status check_bufs(vxm_backend *be, const char *op, size_t n, const vxm_buffer *a, const vxm_buffer *b,
                             const vxm_buffer *c, const vxm_buffer *d)
{
    const vxm_buffer *bufs[4] = {a, b, c, d};
    for (int i = 0; i < 4; i++) {
        if (i > 0 && !bufs[i])
            continue;
        if (!bufs[i] || !bufs[i]->mem)
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: no buffer", op);
        if (bufs[i]->nfloats < n)
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: %zu floats in a buffer of %zu", op, n,
                             bufs[i]->nfloats);
    }
    return VXM_OK;
}

static vxm_status run(vxm_backend *be, vxm_cl_args *a, vxm_cl_kid kid, size_t n)
{
    vxm_status st = vxm_cl_args_done(be, a, kid);
    return st ? st : vxm_cl_launch1(be, kid, n);
}

vxm_status vxm_cl_adam_update(vxm_backend *be, vxm_buffer *param, const vxm_buffer *grad, vxm_buffer *m, vxm_buffer *v,
                              size_t n, float lr_t, float beta1, float beta2, float eps)
{
    vxm_status st = check_bufs(be, "adam_update", n, param, grad, m, v);
    if (st || n == 0)
        return st;
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_ADAM);
    vxm_cl_arg_mem(&a, param->mem);
    vxm_cl_arg_mem(&a, grad->mem);
    vxm_cl_arg_mem(&a, m->mem);
    vxm_cl_arg_mem(&a, v->mem);
    vxm_cl_arg_float(&a, lr_t);
    vxm_cl_arg_float(&a, beta1);
    vxm_cl_arg_float(&a, beta2);
    vxm_cl_arg_float(&a, eps);
    vxm_cl_arg_ulong(&a, n);
    return run(be, &a, VXM_K_ADAM, n);
}

vxm_status vxm_cl_sgd_update(vxm_backend *be, vxm_buffer *param, const vxm_buffer *grad, size_t n, float lr)
{
    vxm_status st = check_bufs(be, "sgd_update", n, param, grad, NULL, NULL);
    if (st || n == 0)
        return st;
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_SGD);
    vxm_cl_arg_mem(&a, param->mem);
    vxm_cl_arg_mem(&a, grad->mem);
    vxm_cl_arg_float(&a, lr);
    vxm_cl_arg_ulong(&a, n);
    return run(be, &a, VXM_K_SGD, n);
}

vxm_status vxm_cl_axpy(vxm_backend *be, float alpha, const vxm_buffer *x, vxm_buffer *y, size_t n)
{
    vxm_status st = check_bufs(be, "axpy", n, y, x, NULL, NULL);
    if (st || n == 0)
        return st;
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_AXPY);
    vxm_cl_arg_mem(&a, x->mem);
    vxm_cl_arg_mem(&a, y->mem);
    vxm_cl_arg_float(&a, alpha);
    vxm_cl_arg_ulong(&a, n);
    return run(be, &a, VXM_K_AXPY, n);
}

vxm_status vxm_cl_fill(vxm_backend *be, vxm_buffer *p, size_t n, float value)
{
    vxm_status st = check_bufs(be, "fill", n, p, NULL, NULL, NULL);
    if (st || n == 0)
        return st;
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_FILL);
    vxm_cl_arg_mem(&a, p->mem);
    vxm_cl_arg_float(&a, value);
    vxm_cl_arg_ulong(&a, n);
    return run(be, &a, VXM_K_FILL, n);
}
