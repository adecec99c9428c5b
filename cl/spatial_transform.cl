/* SpatialTransformer (spec §4.1-4.4): y(x) = interp(img, x + disp(x)).  One work-item per output voxel (grid of the
 * displacement, m0 x m1 x m2); the image grid is n0 x n1 x n2 with nch channels.  Displacement channel c is along
 * spatial axis 3 - ndim + c (ndim 1..3; undisplaced leading axes sample at the grid index).  nearest != 0: round half to even then clamp; else clamped trilinear.  use_fill: any
 * voxel whose unclamped location leaves [0, n-1] on some axis gets `fill` in every channel (§4.3). */
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
