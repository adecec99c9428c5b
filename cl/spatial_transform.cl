/* SpatialTransformer (spec §4.1-4.4): y(x) = interp(img, x + disp(x)).  One work-item per output voxel (grid of the
 * displacement, m0 x m1 x m2); the image grid is n0 x n1 x n2 with nch channels.  Displacement channel c is along
 * spatial axis 3 - ndim + c (ndim 1..3; undisplaced leading axes sample at the grid index).  nearest != 0: round
 * half to even then clamp; else clamped trilinear.  use_fill: any voxel whose unclamped location leaves [0, n-1] on
 * some axis gets `fill` in every channel (§4.3). */
__kernel void vxm_spatial_transform(__global const float *img, __global const float *disp, __global float *y, int n0,
                                    int n1, int n2, int nch, int m1, int m2, int ndim, int nearest, int use_fill,
                                    float fill, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    int x0, x1, x2;
    vxm_unravel(v, m1, m2, &x0, &x1, &x2);
    float p[3];
    vxm_location(x0, x1, x2, disp + (ulong)v * (ulong)ndim, ndim, 1.0f, p);
    __global float *yp = y + (ulong)v * (ulong)nch;
    if (use_fill && (vxm_axis_outside(p[0], n0) || vxm_axis_outside(p[1], n1) || vxm_axis_outside(p[2], n2))) {
        for (int c = 0; c < nch; c++)
            yp[c] = fill;
        return;
    }
    if (nearest) {
        int i = vxm_axis_nearest(p[0], n0);
        int j = vxm_axis_nearest(p[1], n1);
        int k = vxm_axis_nearest(p[2], n2);
        __global const float *src = img + (((ulong)i * (ulong)n1 + (ulong)j) * (ulong)n2 + (ulong)k) * (ulong)nch;
        for (int c = 0; c < nch; c++)
            yp[c] = src[c];
    } else {
        vxm_corners cr;
        vxm_corners_linear(&cr, n0, n1, n2, nch, 3 - ndim, p[0], p[1], p[2]);
        for (int c = 0; c < nch; c++)
            yp[c] = vxm_corners_eval(&cr, img, c, 1.0f);
    }
}

/* Specialisation for the common case -- 3-D displacement, linear, a fixed channel count NCH -- with every loop
 * written out (8 corners x NCH channels), which PoCL compiles to straight-line code (about 2x faster than the
 * generic kernel).  Same operations in the same order as the generic kernel: bit-identical results. */
#define VXM_TRANSFORM3_KERNEL(NAME, NCH)                                                                             \
    __kernel void NAME(__global const float *img, __global const float *disp, __global float *y, int n0, int n1,     \
                       int n2, int m1, int m2, int use_fill, float fill, uint nvox)                                  \
    {                                                                                                                \
        uint v = get_global_id(0);                                                                                   \
        if (v >= nvox)                                                                                               \
            return;                                                                                                  \
        int x0, x1, x2;                                                                                              \
        vxm_unravel(v, m1, m2, &x0, &x1, &x2);                                                                       \
        __global const float *u = disp + (ulong)v * 3ul;                                                             \
        float p0 = (float)x0 + u[0], p1 = (float)x1 + u[1], p2 = (float)x2 + u[2];                                   \
        __global float *yp = y + (ulong)v * (ulong)(NCH);                                                            \
        if (use_fill && (vxm_axis_outside(p0, n0) || vxm_axis_outside(p1, n1) || vxm_axis_outside(p2, n2))) {        \
            for (int c = 0; c < (NCH); c++)                                                                          \
                yp[c] = fill;                                                                                        \
            return;                                                                                                  \
        }                                                                                                            \
        VXM_LINEAR3(img, n0, n1, n2, NCH, p0, p1, p2, yp)                                                            \
    }

VXM_TRANSFORM3_KERNEL(vxm_spatial_transform3_c1, 1)
VXM_TRANSFORM3_KERNEL(vxm_spatial_transform3_c3, 3)
