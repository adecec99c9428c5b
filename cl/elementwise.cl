/* Elementwise ops over n floats.  y may be x (each work-item reads its element before writing it). */

/* LeakyReLU, spec §2.2: y = x > 0 ? x : alpha * x. */
__kernel void vxm_leaky_relu(__global const float *x, __global float *y, float alpha, ulong n)
{
    ulong g = get_global_id(0);
    if (g >= n)
        return;
    float v = x[g];
    y[g] = v > 0.0f ? v : alpha * v;
}

/* y = s * x. */
__kernel void vxm_scale(__global const float *x, __global float *y, float s, ulong n)
{
    ulong g = get_global_id(0);
    if (g >= n)
        return;
    y[g] = s * x[g];
}

/* ---- training: element-wise backward ops (training doc §2.7), one kernel selected by `kind` (uniform per launch):
 *   0  leaky_relu_backward     y = b * (a > 0 ? 1 : s)       a = ref, b = dy (x == 0 takes alpha = s, as TF)
 *   1  add                     y = a + b                     (gradient accumulation where a tensor feeds two nodes)
 *   2  sample_normal_backward  y = c * 0.5 * exp(a / 2) * b  a = logvar, b = eps, c = dy (SampleNormalLogVar)
 * Unused inputs are passed as `a`.  y may alias an input (each element is read before it is written). */
__kernel void vxm_elementwise_backward(__global const float *a, __global const float *b, __global const float *c,
                                       __global float *y, float s, int kind, ulong n)
{
    ulong g = get_global_id(0);
    if (g >= n)
        return;
    float r;
    if (kind == 0)
        r = a[g] > 0.0f ? b[g] : b[g] * s;
    else if (kind == 1)
        r = a[g] + b[g];
    else
        r = c[g] * 0.5f * exp(a[g] * 0.5f) * b[g];
    y[g] = r;
}
