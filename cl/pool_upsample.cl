/* Max pooling ('valid', stride = pool size, spec §2.3) and nearest upsampling by integer factors (spec §2.4).
 * One work-item per output voxel, looping over the channels. */

__kernel void vxm_maxpool(__global const float *x, __global float *y, int n0, int n1, int n2, int nch, int f0, int f1,
                          int f2, int m1, int m2, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    int o0, o1, o2;
    vxm_unravel(v, m1, m2, &o0, &o1, &o2);
    __global float *yp = y + (ulong)v * (ulong)nch;
    for (int c = 0; c < nch; c++) {
        float m = 0.0f;
        int first = 1;
        for (int a = 0; a < f0; a++)
            for (int b = 0; b < f1; b++) {
                ulong row = ((ulong)(o0 * f0 + a) * (ulong)n1 + (ulong)(o1 * f1 + b)) * (ulong)n2;
                for (int d = 0; d < f2; d++) {
                    float val = x[(row + (ulong)(o2 * f2 + d)) * (ulong)nch + (ulong)c];
                    if (first || val > m)
                        m = val;
                    first = 0;
                }
            }
        yp[c] = m;
    }
}

__kernel void vxm_upsample_nearest(__global const float *x, __global float *y, int n1, int n2, int nch, int f0,
                                   int f1, int f2, int m1, int m2, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    int o0, o1, o2;
    vxm_unravel(v, m1, m2, &o0, &o1, &o2);
    ulong src = (((ulong)(o0 / f0) * (ulong)n1 + (ulong)(o1 / f1)) * (ulong)n2 + (ulong)(o2 / f2)) * (ulong)nch;
    __global float *yp = y + (ulong)v * (ulong)nch;
    for (int c = 0; c < nch; c++)
        yp[c] = x[src + (ulong)c];
}
