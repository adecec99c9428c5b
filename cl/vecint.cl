/* One scaling-and-squaring step (spec §5): dst(x) = w(x) + interp_linear_clamped(w, x + w(x)) with w = scale * src
 * (scale = 2^-T on the first step, reading v directly; 1 afterwards; exact either way).  dst never aliases src: the
 * host ping-pongs between two buffers, so the whole update reads only the previous field. */
__kernel void vxm_vecint_step(__global const float *src, __global float *dst, int n0, int n1, int n2, int ndim,
                              float scale, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    int x0, x1, x2;
    vxm_unravel(v, n1, n2, &x0, &x1, &x2);
    __global const float *w = src + (ulong)v * (ulong)ndim;
    float p[3];
    vxm_location(x0, x1, x2, w, ndim, scale, p);
    vxm_corners cr;
    vxm_corners_linear(&cr, n0, n1, n2, ndim, 3 - ndim, p[0], p[1], p[2]);
    __global float *d = dst + (ulong)v * (ulong)ndim;
    for (int c = 0; c < ndim; c++)
        d[c] = w[c] * scale + vxm_corners_eval(&cr, src, c, scale);
}

/* The same step for ndim == 3 with every loop written out (8 corners x 3 channels): no loops, so PoCL can vectorise
 * across work-items.  Same operations in the same order as vxm_vecint_step, hence bit-identical results. */
#define VXM_VECINT_CORNER(I, J, K, WI, WJ, WK)                                                                       \
    {                                                                                                                \
        float wt = ((WI) * (WJ)) * (WK);                                                                             \
        __global const float *q = src + (((ulong)(I) * (ulong)n1 + (ulong)(J)) * (ulong)n2 + (ulong)(K)) * 3ul;     \
        r0 += wt * (q[0] * scale);                                                                                   \
        r1 += wt * (q[1] * scale);                                                                                   \
        r2 += wt * (q[2] * scale);                                                                                   \
    }

__kernel void vxm_vecint_step3(__global const float *src, __global float *dst, int n0, int n1, int n2, float scale,
                               uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    int x0, x1, x2;
    vxm_unravel(v, n1, n2, &x0, &x1, &x2);
    __global const float *w = src + (ulong)v * 3ul;
    float u0 = w[0] * scale, u1 = w[1] * scale, u2 = w[2] * scale;
    int i0, i1, j0, j1, k0, k1;
    float wi0, wi1, wj0, wj1, wk0, wk1;
    vxm_axis_linear((float)x0 + u0, n0, &i0, &i1, &wi0, &wi1);
    vxm_axis_linear((float)x1 + u1, n1, &j0, &j1, &wj0, &wj1);
    vxm_axis_linear((float)x2 + u2, n2, &k0, &k1, &wk0, &wk1);
    float r0 = 0.0f, r1 = 0.0f, r2 = 0.0f;
    VXM_VECINT_CORNER(i0, j0, k0, wi0, wj0, wk0)
    VXM_VECINT_CORNER(i0, j0, k1, wi0, wj0, wk1)
    VXM_VECINT_CORNER(i0, j1, k0, wi0, wj1, wk0)
    VXM_VECINT_CORNER(i0, j1, k1, wi0, wj1, wk1)
    VXM_VECINT_CORNER(i1, j0, k0, wi1, wj0, wk0)
    VXM_VECINT_CORNER(i1, j0, k1, wi1, wj0, wk1)
    VXM_VECINT_CORNER(i1, j1, k0, wi1, wj1, wk0)
    VXM_VECINT_CORNER(i1, j1, k1, wi1, wj1, wk1)
    __global float *d = dst + (ulong)v * 3ul;
    d[0] = u0 + r0;
    d[1] = u1 + r1;
    d[2] = u2 + r2;
}
