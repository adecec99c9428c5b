/* Optimisers and flat buffer arithmetic of the training ops (one work-item per float, n floats). */

/* Keras Adam, training doc §3.2 (TF ResourceApplyAdam, float32): m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
 * p -= lr_t m / (sqrt(v) + eps), lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) from the caller. */
__kernel void vxm_adam_update(__global float *p, __global const float *grad, __global float *m, __global float *v,
                              float lr_t, float beta1, float beta2, float eps, ulong n)
{
    ulong i = get_global_id(0);
    if (i >= n)
        return;
    float g = grad[i];
    float mi = m[i], vi = v[i];
    mi += (g - mi) * (1.0f - beta1);
    vi += (g * g - vi) * (1.0f - beta2);
    m[i] = mi;
    v[i] = vi;
    p[i] -= lr_t * mi / (sqrt(vi) + eps);
}

/* p -= lr g */
__kernel void vxm_sgd_update(__global float *p, __global const float *grad, float lr, ulong n)
{
    ulong i = get_global_id(0);
    if (i < n)
        p[i] -= lr * grad[i];
}

/* y += a x */
__kernel void vxm_axpy(__global const float *x, __global float *y, float a, ulong n)
{
    ulong i = get_global_id(0);
    if (i < n)
        y[i] += a * x[i];
}

/* p = value (also zeroes integer scratch: 0.0f is all zero bits) */
__kernel void vxm_fill(__global float *p, float value, ulong n)
{
    ulong i = get_global_id(0);
    if (i < n)
        p[i] = value;
}
