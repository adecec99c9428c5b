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


/* Adjoint of vxm_resize_linear (training: resize_linear_backward), as a gather so that every element of dx is
 * written once, deterministically.  The forward weight of input voxel (i,j,k) in output voxel (o0,o1,o2) factorises
 * as (w0 * w1) * w2 with per-axis weights w_d(o_d, i_d) (the clamped linear weights of §4.2 at the forward's float32
 * coordinates), so the host tabulates, per axis and input index, the outputs that read it: `tab` holds pairs
 * (output index as float, weight), L_d pairs per input index (padded with index -1 so every work-item runs the same
 * trip counts), axis 0 first (n0 * L0 pairs), then axis 1 from pair off1, axis 2 from pair off2.  An input index
 * that is both corners of an output (top border) appears twice, as the forward adds both corners. */
__kernel void vxm_resize_linear_backward(__global const float *dy, __global const float *tab, __global float *dx,
                                         int n1, int n2, int nch, int m1, int m2, int l0, int l1, int l2, uint off1,
                                         uint off2, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    int i, j, k;
    vxm_unravel(v, n1, n2, &i, &j, &k);
    __global const float *t0 = tab + 2ul * (ulong)(i * l0);
    __global const float *t1 = tab + 2ul * ((ulong)off1 + (ulong)(j * l1));
    __global const float *t2 = tab + 2ul * ((ulong)off2 + (ulong)(k * l2));
    __global float *dp = dx + (ulong)v * (ulong)nch;
    for (int c = 0; c < nch; c++) {
        float acc = 0.0f;
        for (int a = 0; a < l0; a++) {
            int o0 = (int)t0[2 * a];
            for (int b = 0; b < l1; b++) {
                int o1 = (int)t1[2 * b];
                float w01 = t0[2 * a + 1] * t1[2 * b + 1];
                for (int d = 0; d < l2; d++) {
                    int o2 = (int)t2[2 * d];
                    if (o0 >= 0 && o1 >= 0 && o2 >= 0)
                        acc += (w01 * t2[2 * d + 1]) *
                               dy[(((ulong)o0 * (ulong)m1 + (ulong)o1) * (ulong)m2 + (ulong)o2) * (ulong)nch +
                                  (ulong)c];
                }
            }
        }
        dp[c] = acc;
    }
}
