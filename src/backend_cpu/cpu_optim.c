/* Optimiser steps and flat buffer arithmetic (backend.h, training section; training doc §3.2).  Every element
 * is independent, so the loops are split across threads without any effect on the result. */
#include <math.h>

#include "backend_cpu/cpu_internal.h"

/* VXM_ESHAPE unless the buffer exists and holds at least n floats. */
static vxm_status check_buf(vxm_backend *be, const vxm_buffer *b, size_t n, const char *op, const char *what)
{
    if (!b)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: no %s buffer", op, what);
    if (b->n < n)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: %s buffer holds %zu floats, %zu needed", op, what, b->n,
                         n);
    return VXM_OK;
}

/* Keras Adam exactly as TF's ResourceApplyAdam kernel evaluates it in float32 (training doc §3.2):
 * m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); p -= (m lr_t) / (sqrt(v) + eps).  1 - b1 and 1 - b2 are float32
 * like the kernel's T(1) - beta (1 - 0.999f = 0.00099998713, not 0.001). */
vxm_status cpu_adam_update(vxm_backend *be, vxm_buffer *param, const vxm_buffer *grad, vxm_buffer *m, vxm_buffer *v,
                           size_t n, float lr_t, float beta1, float beta2, float eps)
{
    static const char op[] = "adam_update";
    vxm_status st;
    if ((st = check_buf(be, param, n, op, "parameter")) || (st = check_buf(be, grad, n, op, "gradient")) ||
        (st = check_buf(be, m, n, op, "first moment")) || (st = check_buf(be, v, n, op, "second moment")))
        return st;
    float *p = param->data, *mm = m->data, *vv = v->data;
    const float *g = grad->data;
    const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
    long cnt = (long)n;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (long i = 0; i < cnt; i++) {
        float gi = g[i];
        float mi = mm[i] + (gi - mm[i]) * c1;
        float vi = vv[i] + (gi * gi - vv[i]) * c2;
        mm[i] = mi;
        vv[i] = vi;
        p[i] -= (mi * lr_t) / (sqrtf(vi) + eps);
    }
    return VXM_OK;
}

vxm_status cpu_sgd_update(vxm_backend *be, vxm_buffer *param, const vxm_buffer *grad, size_t n, float lr)
{
    static const char op[] = "sgd_update";
    vxm_status st;
    if ((st = check_buf(be, param, n, op, "parameter")) || (st = check_buf(be, grad, n, op, "gradient")))
        return st;
    float *p = param->data;
    const float *g = grad->data;
    long cnt = (long)n;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (long i = 0; i < cnt; i++)
        p[i] -= lr * g[i];
    return VXM_OK;
}

vxm_status cpu_axpy(vxm_backend *be, float a, const vxm_buffer *x, vxm_buffer *y, size_t n)
{
    static const char op[] = "axpy";
    vxm_status st;
    if ((st = check_buf(be, x, n, op, "x")) || (st = check_buf(be, y, n, op, "y")))
        return st;
    const float *xs = x->data;
    float *ys = y->data;
    long cnt = (long)n;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (long i = 0; i < cnt; i++)
        ys[i] += a * xs[i];
    return VXM_OK;
}

vxm_status cpu_fill(vxm_backend *be, vxm_buffer *p, size_t n, float value)
{
    vxm_status st;
    if ((st = check_buf(be, p, n, "fill", "target")))
        return st;
    float *d = p->data;
    long cnt = (long)n;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (long i = 0; i < cnt; i++)
        d[i] = value;
    return VXM_OK;
}
