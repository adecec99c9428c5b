/* SAME-padded direct convolution (cross-correlation, spec §2.1), channels-last, with optional fused LeakyReLU.
 *
 * The host first packs the Keras kernel (k0,k1,k2,Cin,Cout) and the bias into one scratch buffer `wp`:
 *   wp[(tap*Cin + ci)*CoutP + co]   weights, Cout zero-padded to CoutP (a multiple of the block COB)
 *   wp[K*Cin*CoutP + co]            bias, zero-padded (K = k0*k1*k2)
 *   wp[K*Cin*CoutP + CoutP + ci]    Cin zeros: the "input" read for taps in the padding
 * so every weight row of a block is one aligned vector load and padding taps need no branch in the inner loop.
 *
 * Work decomposition (2-D NDRange): dimension 0 = groups of VX consecutive output voxels along the fastest spatial
 * axis (m0 * m1 * ceil(m2/VX) groups), dimension 1 = blocks of COB output channels.  A work-item keeps VX x COB
 * accumulators in registers (VX x NV vectors of W floats, COB = W * NV) and, for every tap and input channel, loads
 * NV weight vectors and VX input scalars: a register-blocked VX x COB outer-product update, like a GEMM micro-kernel.
 * Work-items of one work-group share the same weight block (uniform loads on GPUs, L1/L2 reuse on CPUs).  Nothing
 * is materialised besides the packed weights (no im2col), so any layer that fits in memory runs.
 *
 * Long reductions are cut into input-channel ranges [cbeg, cbeg + clen), one launch each, in order (cl_conv.c): a
 * launch with `first` = 0 resumes from the raw sums the previous one stored in y, and only the `last` adds the bias
 * and the activation: still one fma chain per output, channel ranges outermost (for 1x1x1 kernels the very chain of
 * a single launch).
 *
 * Accumulation uses fma() (exact fused multiply-add, never the reduced-precision mad()); the bias is added after
 * the sum over taps, as TF does (conv, then bias_add). */

__kernel void vxm_conv_pack(__global const float *w, __global const float *b, __global float *wp, int has_bias,
                            uint kc, int cout, int coutp, int cin)
{
    uint g = get_global_id(0);
    uint nw = kc * (uint)coutp;
    if (g >= nw + (uint)coutp + (uint)cin)
        return;
    if (g < nw) {
        uint r = g / (uint)coutp;
        int co = (int)(g % (uint)coutp);
        wp[g] = co < cout ? w[(ulong)r * (ulong)cout + (ulong)co] : 0.0f;
    } else if (g < nw + (uint)coutp) {
        int co = (int)(g - nw);
        wp[g] = (has_bias && co < cout) ? b[co] : 0.0f;
    } else {
        wp[g] = 0.0f;
    }
}

/* One kernel per (vector width W, vectors per voxel NV, voxels VX): COB = W * NV output channels per work-item, VX x
 * NV accumulators of type VT.  The small loops over v and n are fully unrolled (explicit unroll hints: without them
 * PoCL kept the accumulators in memory), so the accumulators live in registers.
 *
 * The fused kernels vxm_conv_upcat_* and vxm_conv_pool_* (created on first use, cl_device.c) run the fused ops of
 * backend.h (issue 10, graph/fuse.h) on the same tap loops, with the extra arguments xa, ca, fa0..fa2, na1, na2.
 * Each mode is a compile-time constant of its own kernels: as a run-time argument it made PoCL's plain convolution
 * up to 1.8x and the fused ones 1.2-1.35x slower (the window loop and the maxima kept the accumulators out of
 * registers).  Modes:
 *   VXM_MODE_UPCAT  y = conv(concat(upsample_nearest_fa(xa), x)) (conv_upcat): input channel ci < ca is read from xa
 *                   (ca channels, na1 x na2 trailing extents) at the coarse voxel (i/fa0, j/fa1, k/fa2), channel
 *                   ci >= ca from x (the skip tensor, cin - ca channels) at (i, j, k); cin is the concatenation's
 *                   channel count (the weights').  Each tap's channel run is split at ca into two fma runs: the same
 *                   chain as the conv of the stored concatenation.  No merged segments (the two sources are not one
 *                   contiguous run).  One launch per input-channel range, as the plain kernel (cend = cbeg + clen).
 *   VXM_MODE_POOL   y = maxpool_fa(conv(x) + bias [LeakyReLU]) (conv_pool, 'valid' pooling): m1, m2, nvg describe
 *                   the pooled grid; a work-item computes, for each window position (a, b, d) in row-major order, the
 *                   conv outputs of its VX pooled voxels (conv voxels fa2 apart), applies bias and activation as
 *                   the plain kernel's last launch does and keeps the running maximum as vxm_maxpool does (the first
 *                   value, then taking a value only when larger): the conv's full-resolution output is never stored.
 *                   All input-channel ranges [cbeg, cend) in steps of clen run in this one launch (the same chain as
 *                   the plain kernel's launches; the host checks the loop budget), first = last = 1. */
#define VXM_MODE_UPCAT 1
#define VXM_MODE_POOL 2
#define VXM_UNROLL _Pragma("unroll")
/* acc[v][n] += XP[v][j] * w[j][n] for j < LEN, weight rows from W0 on (stride coutp). */
#define VXM_CONV_TAPS(LEN, W0, XP, VT, NV, VX, VLOAD)                                                                \
    {                                                                                                                \
        __global const float *wt = (W0);                                                                             \
        int len_ = (LEN);                                                                                            \
        for (int j = 0; j < len_; j++) {                                                                             \
            VT w[NV];                                                                                                \
            VXM_UNROLL for (int n = 0; n < NV; n++) w[n] = VLOAD(n, wt);                                             \
            wt += coutp;                                                                                             \
            VXM_UNROLL for (int v = 0; v < VX; v++) {                                                                \
                VT xv = (VT)(XP[v][j]);                                                                              \
                VXM_UNROLL for (int n = 0; n < NV; n++) acc[v * NV + n] = fma(xv, w[n], acc[v * NV + n]);            \
            }                                                                                                        \
        }                                                                                                            \
    }
/* XP[v] = channel CH0 of tap column c of voxel v in the row at ROW (channel stride CS), or the zero row. */
#define VXM_CONV_POINTERS(XP, SRC, ROW, CS, CH0, KDIV, VX)                                                           \
    VXM_UNROLL for (int v = 0; v < VX; v++) {                                                                        \
        int kk = kb + v * vs + c;                                                                                    \
        XP[v] = (kk >= 0 && kk < n2) ? SRC + ((ROW) + (ulong)(kk / (KDIV))) * (ulong)(CS) + (ulong)(CH0) : zero;     \
    }
/* The work-item's output group: VX voxels from (oi, oj, ok) (of the pooled grid in pool mode), COB channels from
 * co0; the packed bias; the zero row read by padding taps. */
#define VXM_CONV_GROUP(VT, W, NV, VX, VLOAD)                                                                         \
    uint vg = get_global_id(0);                                                                                      \
    if (vg >= nvg)                                                                                                   \
        return;                                                                                                      \
    int co0 = (int)get_global_id(1) * (W * NV);                                                                      \
    uint m2g = (uint)((m2 + VX - 1) / VX);                                                                           \
    int ok = (int)(vg % m2g) * VX;                                                                                   \
    uint t = vg / m2g;                                                                                               \
    int oj = (int)(t % (uint)m1);                                                                                    \
    int oi = (int)(t / (uint)m1);                                                                                    \
    ulong ktot = (ulong)k0 * (ulong)k1 * (ulong)k2 * (ulong)cin * (ulong)coutp;                                      \
    __global const float *zero = wp + ktot + (ulong)coutp;                                                           \
    VT bias[NV];                                                                                                     \
    VXM_UNROLL for (int n = 0; n < NV; n++) bias[n] = VLOAD(n, wp + ktot + (ulong)co0);                              \
    VT acc[VX * NV];
/* acc = the raw sums the previous input-channel range's launch stored in y. */
#define VXM_CONV_RESUME(W, NV, VX, VLOAD)                                                                            \
    VXM_UNROLL for (int v = 0; v < VX; v++) {                                                                        \
        if (ok + v < m2) {                                                                                           \
            __global const float *yp =                                                                               \
                y + ((((ulong)oi * (ulong)m1 + (ulong)oj) * (ulong)m2 + (ulong)(ok + v)) * (ulong)cout + (ulong)co0); \
            VXM_UNROLL for (int n = 0; n < NV; n++) {                                                                \
                int c0 = co0 + n * W;                                                                                \
                if (c0 + W <= cout) {                                                                                \
                    acc[v * NV + n] = VLOAD(n, yp);                                                                  \
                } else {                                                                                             \
                    float tmp[W];                                                                                    \
                    for (int j = 0; j < W; j++)                                                                      \
                        tmp[j] = c0 + j < cout ? yp[n * W + j] : 0.0f;                                               \
                    acc[v * NV + n] = VLOAD(0, tmp);                                                                 \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }
/* One run of channels from CB (seglen of them) at tap column c: from x (plain), or split at ca between xa and x
 * (upcat: see above). */
#define VXM_CONV_RUN_PLAIN(CB, VT, NV, VX, VLOAD)                                                                    \
    {                                                                                                                \
        VXM_CONV_POINTERS(xp, x, row, cin, CB, 1, VX)                                                                \
        VXM_CONV_TAPS(seglen, wc, xp, VT, NV, VX, VLOAD)                                                             \
    }
#define VXM_CONV_RUN_UPCAT(CB, VT, NV, VX, VLOAD)                                                                    \
    {                                                                                                                \
        int la = clamp(ca - (CB), 0, seglen); /* the run's channels in xa */                                         \
        ulong rowa = ((ulong)(ii / fa0) * (ulong)na1 + (ulong)(jj / fa1)) * (ulong)na2;                              \
        if (la > 0) {                                                                                                \
            VXM_CONV_POINTERS(xp, xa, rowa, ca, CB, fa2, VX)                                                         \
            VXM_CONV_TAPS(la, wc, xp, VT, NV, VX, VLOAD)                                                             \
        }                                                                                                            \
        if (seglen > la) {                                                                                           \
            VXM_CONV_POINTERS(xp, x, row, cin - ca, (CB) + la - ca, 1, VX)                                           \
            VXM_CONV_TAPS(seglen - la, wc + (ulong)la * (ulong)coutp, xp, VT, NV, VX, VLOAD)                         \
        }                                                                                                            \
    }
/* acc += the products of input channels [CB, CB + LEN) over every tap, for the voxels whose first patch origin is
 * (i0, j0, kb), vs apart along the fastest axis; RUN: VXM_CONV_RUN_PLAIN or _UPCAT. */
#define VXM_CONV_ROWS(CB, LEN, RUN, VT, NV, VX, VLOAD)                                                               \
    for (int a = 0; a < k0; a++) {                                                                                   \
        int ii = i0 + a;                                                                                             \
        if (ii < 0 || ii >= n0)                                                                                      \
            continue;                                                                                                \
        for (int b = 0; b < k1; b++) {                                                                               \
            int jj = j0 + b;                                                                                         \
            if (jj < 0 || jj >= n1)                                                                                  \
                continue;                                                                                            \
            ulong row = ((ulong)ii * (ulong)n1 + (ulong)jj) * (ulong)n2;                                             \
            __global const float *wab = wp + (ulong)((a * k1 + b) * k2) * (ulong)cin * (ulong)coutp + (ulong)co0;    \
            /* Interior rows (every tap of every voxel of the group inside the input): the k2 taps x Cin channels of \
             * a voxel are one contiguous run of the input and the matching weight rows are consecutive, so one      \
             * segment of k2*Cin; near the borders one segment of Cin per tap, with out-of-range taps reading the    \
             * zero row.  `merge` = 0 keeps Cin-long segments everywhere (uniform trip counts: Mesa rusticl/llvmpipe  \
             * 22.3 miscompiles the divergent ones). */                                                              \
            int inner = merge && kb >= 0 && kb + (VX - 1) * vs + k2 <= n2;                                          \
            int nseg = inner ? 1 : k2, seglen = inner ? k2 * cin : (LEN);                                            \
            for (int c = 0; c < nseg; c++) {                                                                         \
                __global const float *xp[VX];                                                                        \
                __global const float *wc = wab + ((ulong)c * (ulong)cin + (ulong)(CB)) * (ulong)coutp;               \
                RUN(CB, VT, NV, VX, VLOAD)                                                                           \
            }                                                                                                        \
        }                                                                                                            \
    }
/* Stores OUT(q) (q = v * NV + n) for the group's voxels inside the grid and its channels below Cout. */
#define VXM_CONV_STORE(OUT, VT, W, NV, VX, VSTORE)                                                                   \
    VXM_UNROLL for (int v = 0; v < VX; v++) {                                                                        \
        if (ok + v < m2) {                                                                                           \
            __global float *yp =                                                                                     \
                y + ((((ulong)oi * (ulong)m1 + (ulong)oj) * (ulong)m2 + (ulong)(ok + v)) * (ulong)cout + (ulong)co0); \
            VXM_UNROLL for (int n = 0; n < NV; n++) {                                                                \
                VT o = OUT(v * NV + n);                                                                              \
                int c0 = co0 + n * W;                                                                                \
                if (c0 + W <= cout) {                                                                                \
                    VSTORE(o, 0, yp + n * W);                                                                        \
                } else if (c0 < cout) {                                                                              \
                    float tmp[W];                                                                                    \
                    VSTORE(o, 0, tmp);                                                                               \
                    for (int j = 0; j < cout - c0; j++)                                                              \
                        yp[n * W + j] = tmp[j];                                                                      \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }
/* The arguments every variant starts with (cl_conv.c vxm_cl_conv_args, then nvg, merge, the input-channel range). */
#define VXM_CONV_ARGS                                                                                                \
    __global const float *x, __global const float *wp, __global float *y, int n0, int n1, int n2, int cin, int m1,   \
        int m2, int cout, int coutp, int k0, int k1, int k2, int s0, int s1, int s2, int p0, int p1, int p2,         \
        int leaky, float alpha, uint nvg, int merge, int cbeg, int clen
#define VXM_CONV_KERNEL(NAME, VT, W, NV, VX, VLOAD, VSTORE, MODE_UNUSED, RUN_UNUSED)                                 \
    __kernel void NAME(VXM_CONV_ARGS, int first, int last)                                                           \
    {                                                                                                                \
        VXM_CONV_GROUP(VT, W, NV, VX, VLOAD)                                                                         \
        VXM_UNROLL for (int q = 0; q < VX * NV; q++) acc[q] = (VT)(0.0f);                                            \
        if (!first) /* continue the sums of the previous input-channel range (raw, stored by that launch) */         \
            VXM_CONV_RESUME(W, NV, VX, VLOAD)                                                                        \
        int i0 = oi * s0 - p0, j0 = oj * s1 - p1, kb = ok * s2 - p2, vs = s2;                                        \
        VXM_CONV_ROWS(cbeg, clen, VXM_CONV_RUN_PLAIN, VT, NV, VX, VLOAD)                                             \
        VXM_UNROLL for (int q = 0; q < VX * NV; q++)                                                                 \
        {                                                                                                            \
            VT o = last ? acc[q] + bias[q % NV] : acc[q];                                                            \
            if (leaky && last)                                                                                       \
                o = select(alpha * o, o, o > (VT)(0.0f));                                                            \
            acc[q] = o;                                                                                              \
        }                                                                                                            \
        VXM_CONV_STORE(VXM_CONV_ACC, VT, W, NV, VX, VSTORE)                                                          \
    }
#define VXM_CONV_ACC(q) acc[q]
#define VXM_CONV_MAX(q) (pool ? mx[q] : acc[q])
#define VXM_CONV_FUSED_KERNEL(NAME, VT, W, NV, VX, VLOAD, VSTORE, MODE, RUN)                                         \
    __kernel void NAME(VXM_CONV_ARGS, int cend, int first, int last, __global const float *xa, int ca, int fa0,      \
                       int fa1, int fa2, int na1, int na2)                                                           \
    {                                                                                                                \
        VXM_CONV_GROUP(VT, W, NV, VX, VLOAD)                                                                         \
        const int pool = (MODE) == VXM_MODE_POOL;                                                                    \
        if ((MODE) == VXM_MODE_UPCAT)                                                                                \
            merge = 0; /* the two sources are not one run */                                                         \
        const int pf0 = pool ? fa0 : 1, pf1 = pool ? fa1 : 1, pf2 = pool ? fa2 : 1;                                  \
        VT mx[VX * NV];                                                                                              \
        for (int pa = 0; pa < pf0; pa++)                                                                             \
            for (int pb = 0; pb < pf1; pb++)                                                                         \
                for (int pd = 0; pd < pf2; pd++) {                                                                   \
                    VXM_UNROLL for (int q = 0; q < VX * NV; q++) acc[q] = (VT)(0.0f);                                \
                    if (!pool && !first)                                                                             \
                        VXM_CONV_RESUME(W, NV, VX, VLOAD)                                                            \
                    /* patch origin of the group's first conv voxel; the group's voxels are vs apart */              \
                    int i0 = (oi * pf0 + pa) * s0 - p0, j0 = (oj * pf1 + pb) * s1 - p1;                              \
                    int kb = (ok * pf2 + pd) * s2 - p2, vs = pf2 * s2;                                               \
                    for (int cb = cbeg; cb < cend; cb += clen) {                                                     \
                        int len = min(clen, cend - cb);                                                              \
                        VXM_CONV_ROWS(cb, len, RUN, VT, NV, VX, VLOAD)                                               \
                    }                                                                                                \
                    VXM_UNROLL for (int q = 0; q < VX * NV; q++)                                                     \
                    {                                                                                                \
                        VT o = (pool || last) ? acc[q] + bias[q % NV] : acc[q];                                      \
                        if (leaky && (pool || last))                                                                 \
                            o = select(alpha * o, o, o > (VT)(0.0f));                                                \
                        acc[q] = o;                                                                                  \
                        /* vxm_maxpool's running maximum: the first value, then a value only when larger */          \
                        if (pool)                                                                                    \
                            mx[q] = (pa | pb | pd) == 0 ? o : select(mx[q], o, o > mx[q]);                           \
                    }                                                                                                \
                }                                                                                                    \
        VXM_CONV_STORE(VXM_CONV_MAX, VT, W, NV, VX, VSTORE)                                                          \
    }

/* Variants: COB = 32 (2 x float16), 16, 8, 4 output channels per work-item; VX = 8, 4 or 1 voxels; plain and fused.
 * The host picks COB from Cout and VX from the device (cl_conv.c). */
#define VXM_CONV_VARIANTS(K, PREFIX, MODE, RUN)                                                                      \
    K(PREFIX##_c32_v8, float16, 16, 2, 8, vload16, vstore16, MODE, RUN)                                             \
    K(PREFIX##_c32_v4, float16, 16, 2, 4, vload16, vstore16, MODE, RUN)                                             \
    K(PREFIX##_c32_v1, float16, 16, 2, 1, vload16, vstore16, MODE, RUN)                                             \
    K(PREFIX##_c16_v8, float16, 16, 1, 8, vload16, vstore16, MODE, RUN)                                             \
    K(PREFIX##_c16_v4, float16, 16, 1, 4, vload16, vstore16, MODE, RUN)                                             \
    K(PREFIX##_c16_v1, float16, 16, 1, 1, vload16, vstore16, MODE, RUN)                                             \
    K(PREFIX##_c8_v8, float8, 8, 1, 8, vload8, vstore8, MODE, RUN)                                                  \
    K(PREFIX##_c8_v4, float8, 8, 1, 4, vload8, vstore8, MODE, RUN)                                                  \
    K(PREFIX##_c8_v1, float8, 8, 1, 1, vload8, vstore8, MODE, RUN)                                                  \
    K(PREFIX##_c4_v8, float4, 4, 1, 8, vload4, vstore4, MODE, RUN)                                                  \
    K(PREFIX##_c4_v4, float4, 4, 1, 4, vload4, vstore4, MODE, RUN)                                                  \
    K(PREFIX##_c4_v1, float4, 4, 1, 1, vload4, vstore4, MODE, RUN)
VXM_CONV_VARIANTS(VXM_CONV_KERNEL, vxm_conv, 0, VXM_CONV_RUN_PLAIN)
VXM_CONV_VARIANTS(VXM_CONV_FUSED_KERNEL, vxm_conv_upcat, VXM_MODE_UPCAT, VXM_CONV_RUN_UPCAT)
VXM_CONV_VARIANTS(VXM_CONV_FUSED_KERNEL, vxm_conv_pool, VXM_MODE_POOL, VXM_CONV_RUN_PLAIN)
