/* Convolution gradients (training doc §2.7; forward in conv.cl, spec §2.1).
 *
 * Data gradient: dx = the forward convolution of dy with the kernel flipped in every spatial axis and transposed
 * (Cin <-> Cout), padding k-1-p.  The host runs it through the tuned forward kernel: vxm_conv_flip builds the flipped
 * weights; for stride 2, vxm_conv_dilate first spreads dy onto the input grid (dy[o] at o*s, zeros between and up to
 * the input size n >= (m-1)s+1), after which the stride-1 formula holds.
 *
 * Filter / bias gradients are reductions over the output voxels.  The voxels are cut into chunks of `chunk`
 * consecutive voxels (a partition fixed by the problem size only, cl_conv_backward.c); one work-item per
 * (chunk, weight block) sums its chunk in voxel order into a partial, and vxm_sum_partials adds the partials in chunk
 * order.  No atomics: the result is the same on every device and for every work-group size. */

/* Flipped, transposed weights: wf[(tap', co, ci)] = w[(K-1-tap', ci, co)] -- reversing the flat tap index reverses
 * all three axes at once.  wf is a (k0,k1,k2,Cout,Cin) kernel for the forward convolution of dy. */
__kernel void vxm_conv_flip(__global const float *w, __global float *wf, uint ktaps, int cin, int cout, uint n)
{
    uint g = get_global_id(0);
    if (g >= n)
        return;
    uint ci = g % (uint)cin;
    uint t = g / (uint)cin;
    uint co = t % (uint)cout;
    uint tap = ktaps - 1u - t / (uint)cout;
    wf[g] = w[((ulong)tap * (ulong)cin + (ulong)ci) * (ulong)cout + (ulong)co];
}

/* dd (n0 x n1 x n2, nch) = dy (m0 x m1 x m2) placed at stride s, zeros elsewhere. */
__kernel void vxm_conv_dilate(__global const float *dy, __global float *dd, int n1, int n2, int nch, int m1, int m2,
                              int s0, int s1, int s2, ulong n)
{
    ulong g = get_global_id(0);
    if (g >= n)
        return;
    int c = (int)(g % (ulong)nch);
    int i, j, k;
    vxm_unravel((uint)(g / (ulong)nch), n1, n2, &i, &j, &k);
    float v = 0.0f;
    if (i % s0 == 0 && j % s1 == 0 && k % s2 == 0)
        v = dy[(((ulong)(i / s0) * (ulong)m1 + (ulong)(j / s1)) * (ulong)m2 + (ulong)(k / s2)) * (ulong)nch +
               (ulong)c];
    dd[g] = v;
}

/* Partial filter gradient of chunk get_global_id(1), register-blocked: VXM_FB_KT consecutive taps along axis 2 x CIB
 * input channels x W output channels (one vector VT) per work-item, weight block
 * blk = ((tap row (a, b) * ntg + tap group) * ncib + cib) * ncob + cob (taps past k2 are skipped):
 *   part[chunk][(tap, ci, co)] = sum over output voxels o of the chunk, in order, of x[o*s - p + tap, ci] * dy[o, co]
 * (x is 0 in the padding).  Every work-item runs the same voxels [qbeg, qbeg + qlen) of its chunk (uniform trip
 * counts); voxels past the end and padding taps contribute nothing.  A chunk is one launch, or several in order where
 * the loop budget is short (cl_conv_backward.c): `first` = 0 resumes from the partial the previous launch stored, so
 * the sums are the same either way.  Partial channel blocks (Cin, Cout not multiples of the block) load zeros. */
#define VXM_FILTER_PARTIAL_KERNEL(NAME, CIB, VT, W, VLOAD, VSTORE)                                                   \
    __kernel void NAME(__global const float *x, __global const float *dy, __global float *part, int n0, int n1,      \
                       int n2, int cin, int m1, int m2, int cout, int k1, int k2, int s0, int s1, int s2, int p0,    \
                       int p1, int p2, uint nvox, uint chunk, uint nblk, int ntg, int ncib, int ncob, uint nw,       \
                       uint qbeg, uint qlen, int first)                                                              \
    {                                                                                                                \
        uint blk = get_global_id(0);                                                                                 \
        if (blk >= nblk)                                                                                             \
            return;                                                                                                  \
        uint ch = get_global_id(1);                                                                                  \
        int cob = (int)(blk % (uint)ncob);                                                                           \
        uint t = blk / (uint)ncob;                                                                                   \
        int cib = (int)(t % (uint)ncib);                                                                             \
        t /= (uint)ncib;                                                                                             \
        int c = (int)(t % (uint)ntg) * VXM_FB_KT, ab = (int)(t / (uint)ntg), b = ab % k1, a = ab / k1;               \
        int ci0 = cib * (CIB), co0 = cob * (W);                                                                      \
        int nci = min((CIB), cin - ci0);                                                                             \
        int full_ci = nci == (CIB), full_co = co0 + (W) <= cout;                                                     \
        /* the partial of this chunk is laid out like dw, (k0,k1,k2,Cin,Cout), nw floats */                          \
        __global float *pp = part + (ulong)ch * (ulong)nw +                                                          \
                             ((ulong)(ab * k2 + c) * (ulong)cin + (ulong)ci0) * (ulong)cout + (ulong)co0;            \
        VT acc[VXM_FB_KT * (CIB)];                                                                                   \
        for (int q = 0; q < VXM_FB_KT * (CIB); q++) {                                                                \
            int e = q / (CIB), j = q % (CIB);                                                                        \
            float r[W];                                                                                              \
            for (int n = 0; n < (W); n++) /* resume the sums of the chunk's previous voxels */                       \
                r[n] = !first && c + e < k2 && j < nci && co0 + n < cout                                             \
                           ? pp[((ulong)e * (ulong)cin + (ulong)j) * (ulong)cout + (ulong)n]                         \
                           : 0.0f;                                                                                   \
            acc[q] = VLOAD(0, r);                                                                                    \
        }                                                                                                            \
        uint o = ch * chunk + qbeg;                                                                                  \
        int o0, o1, o2;                                                                                              \
        vxm_unravel(o, m1, m2, &o0, &o1, &o2);                                                                       \
        for (uint q = 0; q < qlen; q++, o++) {                                                                       \
            int ii = o0 * s0 - p0 + a, jj = o1 * s1 - p1 + b, kk = o2 * s2 - p2 + c;                                 \
            if (o < nvox && ii >= 0 && ii < n0 && jj >= 0 && jj < n1) {                                              \
                __global const float *xr =                                                                           \
                    x + (((ulong)ii * (ulong)n1 + (ulong)jj) * (ulong)n2) * (ulong)cin + (ulong)ci0;                 \
                __global const float *dp = dy + (ulong)o * (ulong)cout + (ulong)co0;                                 \
                VT d;                                                                                                \
                if (full_co) {                                                                                       \
                    d = VLOAD(0, dp);                                                                                \
                } else {                                                                                             \
                    float tmp[W];                                                                                    \
                    for (int n = 0; n < (W); n++)                                                                    \
                        tmp[n] = co0 + n < cout ? dp[n] : 0.0f;                                                      \
                    d = VLOAD(0, tmp);                                                                               \
                }                                                                                                    \
                VXM_UNROLL for (int e = 0; e < VXM_FB_KT; e++) {                                                     \
                    if (c + e < k2 && kk + e >= 0 && kk + e < n2) {                                                  \
                        __global const float *xp = xr + (ulong)(kk + e) * (ulong)cin;                                \
                        if (full_ci) {                                                                               \
                            VXM_UNROLL for (int j = 0; j < (CIB); j++) acc[e * (CIB) + j] =                          \
                                fma((VT)(xp[j]), d, acc[e * (CIB) + j]);                                             \
                        } else {                                                                                     \
                            VXM_UNROLL for (int j = 0; j < (CIB); j++) acc[e * (CIB) + j] =                          \
                                fma((VT)(j < nci ? xp[j] : 0.0f), d, acc[e * (CIB) + j]);                            \
                        }                                                                                            \
                    }                                                                                                \
                }                                                                                                    \
            }                                                                                                        \
            if (++o2 == m2) {                                                                                        \
                o2 = 0;                                                                                              \
                if (++o1 == m1) {                                                                                    \
                    o1 = 0;                                                                                          \
                    o0++;                                                                                            \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
        for (int q = 0; q < VXM_FB_KT * (CIB); q++) {                                                                \
            int e = q / (CIB), j = q % (CIB);                                                                        \
            float r[W];                                                                                              \
            VSTORE(acc[q], 0, r);                                                                                    \
            for (int n = 0; n < (W); n++)                                                                            \
                if (c + e < k2 && j < nci && co0 + n < cout)                                                         \
                    pp[((ulong)e * (ulong)cin + (ulong)j) * (ulong)cout + (ulong)n] = r[n];                          \
        }                                                                                                            \
    }

/* Blocks (taps x inputs x outputs): 3 x 8 x 16 for the wide layers, 3 x 4 x 8 otherwise (the host picks,
 * cl_conv_backward.c); 3 taps = a row of the usual 3x3x3 kernel. */
#define VXM_FB_KT 3
VXM_FILTER_PARTIAL_KERNEL(vxm_conv_filter_partial_8x16, 8, float16, 16, vload16, vstore16)
VXM_FILTER_PARTIAL_KERNEL(vxm_conv_filter_partial_4x8, 4, float8, 8, vload8, vstore8)

/* Partial bias gradient: part[chunk][co] = sum of dy[o, co] over the voxels o of the chunk, in order. */
__kernel void vxm_conv_bias_partial(__global const float *dy, __global float *part, int cout, uint nvox, uint chunk)
{
    int co = (int)get_global_id(0);
    if (co >= cout)
        return;
    uint ch = get_global_id(1);
    uint o = ch * chunk;
    float acc = 0.0f;
    for (uint q = 0; q < chunk; q++, o++)
        if (o < nvox)
            acc += dy[(ulong)o * (ulong)cout + (ulong)co];
    part[(ulong)ch * (ulong)cout + (ulong)co] = acc;
}

/* out[e] = sum over the np partials, in partial (chunk) order, of part[p][e] (ne floats each). */
__kernel void vxm_sum_partials(__global const float *part, __global float *out, uint ne, uint np)
{
    uint e = get_global_id(0);
    if (e >= ne)
        return;
    float acc = 0.0f;
    for (uint p = 0; p < np; p++)
        acc += part[(ulong)p * (ulong)ne + (ulong)e];
    out[e] = acc;
}
