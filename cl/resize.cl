/* Linear resize (spec §6.1 linspace / §6.2 legacy i/f): the sampling coordinate of every output index along each
 * axis is computed on the host in float32 (so both mappings round exactly as specified) and passed in `coord`:
 * coord[0..m0-1] for axis 0, then m1 values for axis 1, then m2 for axis 2.  Values: clamped linear interpolation
 * (§4.2) of every channel.  `fixed` = 1 when axis 0 has size 1 in and out (2-D data: not interpolated). */
__kernel void vxm_resize_linear(__global const float *x, __global const float *coord, __global float *y, int n0,
                                int n1, int n2, int nch, int m0, int m1, int m2, int fixed, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    int o0, o1, o2;
    vxm_unravel(v, m1, m2, &o0, &o1, &o2);
    vxm_corners cr;
    vxm_corners_linear(&cr, n0, n1, n2, nch, fixed, coord[o0], coord[m0 + o1], coord[m0 + m1 + o2]);
    __global float *yp = y + (ulong)v * (ulong)nch;
    for (int c = 0; c < nch; c++)
        yp[c] = vxm_corners_eval(&cr, x, c, 1.0f);
}

