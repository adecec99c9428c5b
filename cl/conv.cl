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

/* One kernel per (vector width W, vectors per voxel NV, voxels VX): COB = W * NV output channels per work-item,
 * VX x NV accumulators of type VT.  The small loops over v and n are fully unrolled (explicit unroll hints: without
 * them PoCL kept the accumulators in memory), so the accumulators live in registers. */
#define VXM_UNROLL _Pragma("unroll")
/* acc[v][n] += xp[v][j] * w[j][n] for j < LEN, weight rows from W0 on (stride coutp). */
#define VXM_CONV_TAPS(LEN, W0, VT, NV, VX, VLOAD)                                                                    \
    {                                                                                                                \
        __global const float *wt = (W0);                                                                             \
        int len_ = (LEN);                                                                                            \
        for (int j = 0; j < len_; j++) {                                                                             \
            VT w[NV];                                                                                                \
            VXM_UNROLL for (int n = 0; n < NV; n++) w[n] = VLOAD(n, wt);                                             \
            wt += coutp;                                                                                             \
            VXM_UNROLL for (int v = 0; v < VX; v++) {                                                                \
                VT xv = (VT)(xp[v][j]);                                                                              \
                VXM_UNROLL for (int n = 0; n < NV; n++) acc[v * NV + n] = fma(xv, w[n], acc[v * NV + n]);            \
            }                                                                                                        \
        }                                                                                                            \
    }
#define VXM_CONV_KERNEL(NAME, VT, W, NV, VX, VLOAD, VSTORE)                                                          \
    __kernel void NAME(__global const float *x, __global const float *wp, __global float *y, int n0, int n1, int n2, \
                       int cin, int m1, int m2, int cout, int coutp, int k0, int k1, int k2, int s0, int s1, int s2, \
                       int p0, int p1, int p2, int leaky, float alpha, uint nvg, int merge, int cbeg, int clen,      \
                       int first, int last)                                                                          \
    {                                                                                                                \
        uint vg = get_global_id(0);                                                                                  \
        if (vg >= nvg)                                                                                               \
            return;                                                                                                  \
        int co0 = (int)get_global_id(1) * (W * NV);                                                                  \
        uint m2g = (uint)((m2 + VX - 1) / VX);                                                                       \
        int ok = (int)(vg % m2g) * VX;                                                                               \
        uint t = vg / m2g;                                                                                           \
        int oj = (int)(t % (uint)m1);                                                                                \
        int oi = (int)(t / (uint)m1);                                                                                \
        ulong ktot = (ulong)k0 * (ulong)k1 * (ulong)k2 * (ulong)cin * (ulong)coutp;                                  \
        __global const float *zero = wp + ktot + (ulong)coutp;                                                       \
        VT acc[VX * NV];                                                                                             \
        VXM_UNROLL for (int q = 0; q < VX * NV; q++) acc[q] = (VT)(0.0f);                                            \
        if (!first) /* continue the sums of the previous input-channel range (raw, stored by that launch) */         \
            VXM_UNROLL for (int v = 0; v < VX; v++) {                                                                \
                if (ok + v < m2) {                                                                                   \
                    __global const float *yp = y + ((((ulong)oi * (ulong)m1 + (ulong)oj) * (ulong)m2 +               \
                                                      (ulong)(ok + v)) * (ulong)cout + (ulong)co0);                  \
                    VXM_UNROLL for (int n = 0; n < NV; n++) {                                                        \
                        int c0 = co0 + n * W;                                                                        \
                        if (c0 + W <= cout) {                                                                        \
                            acc[v * NV + n] = VLOAD(n, yp);                                                          \
                        } else {                                                                                     \
                            float tmp[W];                                                                            \
                            for (int j = 0; j < W; j++)                                                              \
                                tmp[j] = c0 + j < cout ? yp[n * W + j] : 0.0f;                                       \
                            acc[v * NV + n] = VLOAD(0, tmp);                                                         \
                        }                                                                                            \
                    }                                                                                                \
                }                                                                                                    \
            }                                                                                                        \
        int i0 = oi * s0 - p0, j0 = oj * s1 - p1, kb = ok * s2 - p2;                                                 \
        for (int a = 0; a < k0; a++) {                                                                               \
            int ii = i0 + a;                                                                                         \
            if (ii < 0 || ii >= n0)                                                                                  \
                continue;                                                                                            \
            for (int b = 0; b < k1; b++) {                                                                           \
                int jj = j0 + b;                                                                                     \
                if (jj < 0 || jj >= n1)                                                                              \
                    continue;                                                                                        \
                ulong row = ((ulong)ii * (ulong)n1 + (ulong)jj) * (ulong)n2;                                         \
                __global const float *wab = wp + (ulong)((a * k1 + b) * k2) * (ulong)cin * (ulong)coutp + (ulong)co0; \
                /* Interior rows (every tap of every voxel of the group inside the input): the k2 taps x Cin         \
                 * channels of a voxel are one contiguous run of the input and the matching weight rows are          \
                 * consecutive, so one segment of k2*Cin; near the borders one segment of Cin per tap, with          \
                 * out-of-range taps reading the zero row.  `merge` = 0 keeps Cin-long segments everywhere (uniform  \
                 * trip counts: Mesa rusticl/llvmpipe 22.3 miscompiles the divergent ones). */                       \
                int inner = merge && kb >= 0 && kb + (VX - 1) * s2 + k2 <= n2;                                       \
                int nseg = inner ? 1 : k2, seglen = inner ? k2 * cin : clen;                                         \
                for (int c = 0; c < nseg; c++) {                                                                     \
                    __global const float *xp[VX];                                                                    \
                    VXM_UNROLL for (int v = 0; v < VX; v++) {                                                        \
                        int kk = kb + v * s2 + c;                                                                    \
                        xp[v] = (kk >= 0 && kk < n2) ? x + (row + (ulong)kk) * (ulong)cin + (ulong)cbeg : zero;      \
                    }                                                                                                \
                    VXM_CONV_TAPS(seglen, wab + ((ulong)c * (ulong)cin + (ulong)cbeg) * (ulong)coutp, VT, NV, VX,    \
                                  VLOAD)                                                                             \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
        VT bias[NV];                                                                                                 \
        VXM_UNROLL for (int n = 0; n < NV; n++) bias[n] = VLOAD(n, wp + ktot + (ulong)co0);                          \
        VXM_UNROLL for (int v = 0; v < VX; v++) {                                                                    \
            if (ok + v < m2) {                                                                                       \
                __global float *yp = y + ((((ulong)oi * (ulong)m1 + (ulong)oj) * (ulong)m2 + (ulong)(ok + v)) *      \
                                          (ulong)cout + (ulong)co0);                                                 \
                VXM_UNROLL for (int n = 0; n < NV; n++) {                                                            \
                    VT o = last ? acc[v * NV + n] + bias[n] : acc[v * NV + n];                                       \
                    if (leaky && last)                                                                               \
                        o = select(alpha * o, o, o > (VT)(0.0f));                                                    \
                    int c0 = co0 + n * W;                                                                            \
                    if (c0 + W <= cout) {                                                                            \
                        VSTORE(o, 0, yp + n * W);                                                                    \
                    } else if (c0 < cout) {                                                                          \
                        float tmp[W];                                                                                \
                        VSTORE(o, 0, tmp);                                                                           \
                        for (int j = 0; j < cout - c0; j++)                                                          \
                            yp[n * W + j] = tmp[j];                                                                  \
                    }                                                                                                \
                }                                                                                                    \
            }                                                                                                        \
        }                                                                                                            \
    }

/* Variants: COB = 32 (2 x float16), 16, 8, 4 output channels per work-item; VX = 8, 4 or 1 voxels.  The host picks
 * COB from Cout and VX from the device (cl_conv.c). */
VXM_CONV_KERNEL(vxm_conv_c32_v8, float16, 16, 2, 8, vload16, vstore16)
VXM_CONV_KERNEL(vxm_conv_c32_v4, float16, 16, 2, 4, vload16, vstore16)
VXM_CONV_KERNEL(vxm_conv_c32_v1, float16, 16, 2, 1, vload16, vstore16)
VXM_CONV_KERNEL(vxm_conv_c16_v8, float16, 16, 1, 8, vload16, vstore16)
VXM_CONV_KERNEL(vxm_conv_c16_v4, float16, 16, 1, 4, vload16, vstore16)
VXM_CONV_KERNEL(vxm_conv_c16_v1, float16, 16, 1, 1, vload16, vstore16)
VXM_CONV_KERNEL(vxm_conv_c8_v8, float8, 8, 1, 8, vload8, vstore8)
VXM_CONV_KERNEL(vxm_conv_c8_v4, float8, 8, 1, 4, vload8, vstore8)
VXM_CONV_KERNEL(vxm_conv_c8_v1, float8, 8, 1, 1, vload8, vstore8)
VXM_CONV_KERNEL(vxm_conv_c4_v8, float4, 4, 1, 8, vload4, vstore4)
VXM_CONV_KERNEL(vxm_conv_c4_v4, float4, 4, 1, 4, vload4, vstore4)
VXM_CONV_KERNEL(vxm_conv_c4_v1, float4, 4, 1, 1, vload4, vstore4)
