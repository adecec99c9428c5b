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

/* ---- training: backward ops (training doc §2.7). ---------------------------------------------------------- */

/* MaxPool gradient, one work-item per INPUT voxel (n0 x n1 x n2, nch channels), so every element of dx is written
 * exactly once with no scatter.  The block maximum is recomputed exactly as vxm_maxpool does (running maximum
 * taken only when strictly larger, row-major block order), which also yields the first maximum.  tie_tol >= 0:
 * the input receives the block's whole gradient when |x - max| < tie_tol (TF CPU MaxPool3D, §0); tie_tol < 0: only
 * the first maximum does (MaxPool2D).  Inputs outside every complete block get 0. */
__kernel void vxm_maxpool_backward(__global const float *x, __global const float *dy, __global float *dx, int n1,
                                   int n2, int nch, int f0, int f1, int f2, int m0, int m1, int m2, float tie_tol,
                                   uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    int i, j, k;
    vxm_unravel(v, n1, n2, &i, &j, &k);
    int o0 = i / f0, o1 = j / f1, o2 = k / f2;
    __global float *dp = dx + (ulong)v * (ulong)nch;
    int inside = o0 < m0 && o1 < m1 && o2 < m2;
    ulong base = ((ulong)(o0 * f0) * (ulong)n1 + (ulong)(o1 * f1)) * (ulong)n2 + (ulong)(o2 * f2);
    ulong oy = (((ulong)o0 * (ulong)m1 + (ulong)o1) * (ulong)m2 + (ulong)o2) * (ulong)nch;
    int pos = ((i - o0 * f0) * f1 + (j - o1 * f1)) * f2 + (k - o2 * f2);
    for (int c = 0; c < nch; c++) {
        if (!inside) {
            dp[c] = 0.0f;
            continue;
        }
        float m = x[base * (ulong)nch + (ulong)c];
        int first = 0, t = 0;
        for (int a = 0; a < f0; a++)
            for (int b = 0; b < f1; b++)
                for (int d = 0; d < f2; d++) {
                    float val = x[(base + ((ulong)a * (ulong)n1 + (ulong)b) * (ulong)n2 + (ulong)d) * (ulong)nch +
                                  (ulong)c];
                    if (val > m) {
                        m = val;
                        first = t;
                    }
                    t++;
                }
        int pass = tie_tol >= 0.0f ? fabs(x[(ulong)v * (ulong)nch + (ulong)c] - m) < tie_tol : pos == first;
        dp[c] = pass ? dy[oy + (ulong)c] : 0.0f;
    }
}

/* Nearest-upsampling gradient: dx[i] = sum of dy over the f0 x f1 x f2 children of i, added in row-major child
 * order from 0 (one work-item per voxel of dx, m1 x m2 its trailing sizes; dy is (m0 f0) x (m1 f1) x (m2 f2)). */
__kernel void vxm_upsample_nearest_backward(__global const float *dy, __global float *dx, int m1, int m2, int nch,
                                            int f0, int f1, int f2, uint nvox)
{
    uint v = get_global_id(0);
    if (v >= nvox)
        return;
    int i, j, k;
    vxm_unravel(v, m1, m2, &i, &j, &k);
    ulong n1 = (ulong)m1 * (ulong)f1, n2 = (ulong)m2 * (ulong)f2;
    ulong base = ((ulong)(i * f0) * n1 + (ulong)(j * f1)) * n2 + (ulong)(k * f2);
    __global float *dp = dx + (ulong)v * (ulong)nch;
    for (int c = 0; c < nch; c++) {
        float acc = 0.0f;
        for (int a = 0; a < f0; a++)
            for (int b = 0; b < f1; b++)
                for (int d = 0; d < f2; d++)
                    acc += dy[(base + ((ulong)a * n1 + (ulong)b) * n2 + (ulong)d) * (ulong)nch + (ulong)c];
        dp[c] = acc;
    }
}
