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
    ulong base = ((ulong)(o0 * f0) * (ulong)n1 + (ulong)(o1 * f1)) * (ulong)n2 + (ulong)(o2 * f2);
    /* Channels in groups of 4 when possible (one vector per block position), then one at a time.  The running
     * maximum takes a value only when it is larger (v > m), as a scalar loop would; the first value starts it. */
    int c = 0;
    for (; c + 4 <= nch; c += 4) {
        float4 m = vload4(0, x + base * (ulong)nch + (ulong)c);
        for (int a = 0; a < f0; a++)
            for (int b = 0; b < f1; b++)
                for (int d = 0; d < f2; d++) {
                    float4 val = vload4(0, x + (base + ((ulong)a * (ulong)n1 + (ulong)b) * (ulong)n2 + (ulong)d) *
                                                   (ulong)nch + (ulong)c);
                    m = select(m, val, val > m);
                }
        vstore4(m, 0, yp + c);
    }
    for (; c < nch; c++) {
        float m = x[base * (ulong)nch + (ulong)c];
        for (int a = 0; a < f0; a++)
            for (int b = 0; b < f1; b++)
                for (int d = 0; d < f2; d++) {
                    float val = x[(base + ((ulong)a * (ulong)n1 + (ulong)b) * (ulong)n2 + (ulong)d) * (ulong)nch +
                                  (ulong)c];
                    if (val > m)
                        m = val;
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
