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
