/* Tiled implicit-GEMM convolution (forward; the data gradient runs through it too), issue 10.
 *
 * The convolution as a matrix product C[voxel][cout] = sum_k A[voxel][k] B[k][cout] over k = (tap, input channel):
 * A is the im2col patch matrix (never stored: gathered tile by tile from the channels-last input, zero for padding
 * taps and for voxels past the end), B the packed weights wp[(tap*Cin + ci)*CoutP + co] of vxm_conv_pack (cl/conv.cl),
 * CoutP a multiple of TN.  A work-group computes a TM x TN tile of C: per step it copies a TK x TM block of A and a
 * TK x TN block of B into local memory (rows padded by one float against bank conflicts), then each of its
 * (TM/RM) x (TN/RN) work-items accumulates RM voxels x RN channels in registers (voxels tx + i*TM/RM, channels
 * ty + j*TN/RN: neighbouring work-items read neighbouring local words, and one channel row is a broadcast).
 * Global loads are coalesced: consecutive work-items read consecutive channels of a voxel (A) and consecutive
 * output channels of a weight row (B).
 *
 * Arithmetic is the direct kernel's, bit for bit (docs: notes/tiles_contract.md): each output is one fma() chain
 * from 0.0f over k in increasing order (padding taps add fma(0, w, acc) == acc), the bias added after the sum, then
 * LeakyReLU as select(alpha*o, o, o > 0).  The host (cl_conv_tiled.c) runs the reduction as the direct kernel's
 * input-channel ranges [cbeg, cbeg + clen) in order, each cut into k ranges [kbeg, kend) (k = tap*clen + ci within
 * the range) that fit Mesa llvmpipe's loop budget; a launch with first = 0 resumes from the raw sums stored in y by
 * the previous one and only the last adds bias and activation: the same single chain as the direct kernel's.
 *
 * Compile-time parameters: TM voxels x TN output channels per work-group, TK reduction step, RM x RN per
 * work-item; work-group size (TM/RM)*(TN/RN), 1-D.  UPCAT=1 builds the conv_upcat variant (backend.h, issue 10):
 * y = conv(concat(upsample_nearest_fa(xa), x)), the A gather reading input channel ci < ca from xa (ca channels,
 * na1 x na2 trailing extents) at the coarse voxel (i/fa0, j/fa1, k/fa2) and ci >= ca from x (the skip tensor,
 * cin - ca channels) at (i, j, k); cin is the concatenation's channel count.  Only the gather changes, so the sums
 * are those of the conv of the stored concatenation (and of the direct kernel's VXM_MODE_UPCAT, cl/conv.cl). */
#if !defined(TM) || !defined(TN) || !defined(TK) || !defined(RM) || !defined(RN)
#error "conv_tiled.cl needs -DTM -DTN -DTK -DRM -DRN"
#endif
#ifndef UPCAT
#define UPCAT 0
#endif

#define WGM (TM / RM)
#define WGN (TN / RN)
#define WG (WGM * WGN)
/* A-tile fill.  When TK divides the work-group size each work-item keeps one k (k = lid % TK) and the same NA voxels
 * every step, whose patch origins it computes once; otherwise element e = lid + r*WG of the tile is (e % TK, e / TK)
 * and its voxel is decomposed every step (odd tiles only). */
#if WG % TK == 0
#define FIXED_K 1
#define QV (WG / TK) /* voxels filled per pass */
#define NA ((TM + QV - 1) / QV)
#else
#define FIXED_K 0
#define NA ((TK * TM + WG - 1) / WG)
#endif
#define NB ((TK * TN + WG - 1) / WG)
#define VXM_UNROLL _Pragma("unroll")
#define VXM_FAR (-0x20000000) /* patch origin of a voxel past the end: every tap out of range */

/* Patch origin (first tap's input coordinates) of output voxel v. */
static inline void vxm_tiled_origin(uint v, uint nvox, int m1, int m2, int s0, int s1, int s2, int p0, int p1,
                                    int p2, int *i0, int *j0, int *kb)
{
    if (v >= nvox) {
        *i0 = *j0 = *kb = VXM_FAR;
        return;
    }
    uint t = v / (uint)m2;
    int ok = (int)(v - t * (uint)m2);
    int oj = (int)(t % (uint)m1), oi = (int)(t / (uint)m1);
    *i0 = oi * s0 - p0;
    *j0 = oj * s1 - p1;
    *kb = ok * s2 - p2;
}

/* k within a channel range -> tap offsets (a, b, c) and channel ci. */
static inline void vxm_tiled_k(uint k, int clen, int k12, int k2, int *a, int *b, int *c, int *ci)
{
    int tap = (int)(k / (uint)clen);
    *ci = (int)k - tap * clen;
    *a = tap / k12;
    int r = tap - *a * k12;
    *b = r / k2;
    *c = r - *b * k2;
}

/* Input value at (ii, jj, kk), channel ch; 0 outside the volume (SAME padding). */
static inline float vxm_tiled_x(__global const float *x, int ii, int jj, int kk, int n0, int n1, int n2, int cin,
                                int ch)
{
    if ((uint)ii >= (uint)n0 || (uint)jj >= (uint)n1 || (uint)kk >= (uint)n2)
        return 0.0f;
    uint vox = ((uint)ii * (uint)n1 + (uint)jj) * (uint)n2 + (uint)kk;
    return x[(ulong)vox * (ulong)cin + (ulong)ch];
}

#if UPCAT
/* conv_upcat's input at (ii, jj, kk), channel ch of the concatenation; 0 outside the volume. */
static inline float vxm_tiled_upcat(__global const float *x, __global const float *xa, int ii, int jj, int kk, int n0,
                                    int n1, int n2, int cin, int ca, int fa0, int fa1, int fa2, int na1, int na2,
                                    int ch)
{
    if ((uint)ii >= (uint)n0 || (uint)jj >= (uint)n1 || (uint)kk >= (uint)n2)
        return 0.0f;
    if (ch < ca) {
        uint vox = ((uint)(ii / fa0) * (uint)na1 + (uint)(jj / fa1)) * (uint)na2 + (uint)(kk / fa2);
        return xa[(ulong)vox * (ulong)ca + (ulong)ch];
    }
    return vxm_tiled_x(x, ii, jj, kk, n0, n1, n2, cin - ca, ch - ca);
}
#define VXM_TILED_IN(ii, jj, kk, ch)                                                                                 \
    vxm_tiled_upcat(x, xa, ii, jj, kk, n0, n1, n2, cin, ca, fa0, fa1, fa2, na1, na2, ch)
#define VXM_UPCAT_ARGS , __global const float *xa, int ca, int fa0, int fa1, int fa2, int na1, int na2
#else
#define VXM_TILED_IN(ii, jj, kk, ch) vxm_tiled_x(x, ii, jj, kk, n0, n1, n2, cin, ch)
#define VXM_UPCAT_ARGS
#endif

__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void
vxm_conv_tiled(__global const float *x, __global const float *wp, __global float *y, int n0, int n1, int n2, int cin,
               int m1, int m2, int cout, int coutp, int k0, int k1, int k2, int s0, int s1, int s2, int p0, int p1,
               int p2, int leaky, float alpha, uint nvox, ulong bias_off, int cbeg, int clen, uint kbeg, uint kend,
               int first, int last VXM_UPCAT_ARGS)
{
    __local float As[TK][TM + 1];
    __local float Bs[TK][TN + 1];
    const int lid = (int)get_local_id(0);
    const int tx = lid % WGM, ty = lid / WGM;
    const uint v0 = (uint)get_group_id(0) * (uint)TM;
    const int co0 = (int)get_group_id(1) * TN;
    const int k12 = k1 * k2; /* (k0 is implied by kend) */
    const int whole = cbeg == 0 && clen == cin; /* the weight row of k is k itself */

#if FIXED_K
    const int kq = lid % TK, mq = lid / TK;
    int vi[NA], vj[NA], vk[NA];
    VXM_UNROLL for (int r = 0; r < NA; r++)
    {
        int m = mq + r * QV;
        vxm_tiled_origin(m < TM ? v0 + (uint)m : nvox, nvox, m1, m2, s0, s1, s2, p0, p1, p2, &vi[r], &vj[r], &vk[r]);
    }
#endif

    float acc[RM][RN];
    VXM_UNROLL for (int i = 0; i < RM; i++)
    {
        uint v = v0 + (uint)(tx + i * WGM);
        VXM_UNROLL for (int j = 0; j < RN; j++)
        {
            int co = co0 + ty + j * WGN;
            /* resume the raw sums of the previous launch */
            acc[i][j] = (!first && v < nvox && co < cout) ? y[(ulong)v * (ulong)cout + (ulong)co] : 0.0f;
        }
    }

    for (uint ks = kbeg; ks < kend; ks += TK) {
        /* A block: As[k][m] = patch value of voxel v0 + m at reduction index ks + k */
#if FIXED_K
        {
            uint k = ks + (uint)kq;
            int a, b, c, ci;
            vxm_tiled_k(k, clen, k12, k2, &a, &b, &c, &ci);
            int live = k < kend;
            VXM_UNROLL for (int r = 0; r < NA; r++)
            {
                int m = mq + r * QV;
                if (m < TM)
                    As[kq][m] =
                        live ? VXM_TILED_IN(vi[r] + a, vj[r] + b, vk[r] + c, cbeg + ci) : 0.0f;
            }
        }
#else
        VXM_UNROLL for (int r = 0; r < NA; r++)
        {
            int e = lid + r * WG;
            if (e < TK * TM) {
                int kr = e % TK, m = e / TK;
                uint k = ks + (uint)kr;
                float val = 0.0f;
                if (k < kend) {
                    int i0, j0, kb, a, b, c, ci;
                    vxm_tiled_origin(v0 + (uint)m, nvox, m1, m2, s0, s1, s2, p0, p1, p2, &i0, &j0, &kb);
                    vxm_tiled_k(k, clen, k12, k2, &a, &b, &c, &ci);
                    val = VXM_TILED_IN(i0 + a, j0 + b, kb + c, cbeg + ci);
                }
                As[kr][m] = val;
            }
        }
#endif
        /* B block: Bs[k][n] = packed weight row of ks + k, channel co0 + n (zero rows past kend) */
        VXM_UNROLL for (int r = 0; r < NB; r++)
        {
            int e = lid + r * WG;
            if (e < TK * TN) {
                int kr = e / TN, n = e % TN;
                uint k = ks + (uint)kr;
                float val = 0.0f;
                if (k < kend) {
                    uint row = k;
                    if (!whole) {
                        uint tap = k / (uint)clen;
                        row = tap * (uint)cin + (uint)cbeg + (k - tap * (uint)clen);
                    }
                    val = wp[(ulong)row * (ulong)coutp + (ulong)(co0 + n)];
                }
                Bs[kr][n] = val;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TK; kk++) {
            float av[RM], bv[RN];
            VXM_UNROLL for (int i = 0; i < RM; i++) av[i] = As[kk][tx + i * WGM];
            VXM_UNROLL for (int j = 0; j < RN; j++) bv[j] = Bs[kk][ty + j * WGN];
            VXM_UNROLL for (int i = 0; i < RM; i++)
            {
                VXM_UNROLL for (int j = 0; j < RN; j++) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    VXM_UNROLL for (int i = 0; i < RM; i++)
    {
        uint v = v0 + (uint)(tx + i * WGM);
        if (v < nvox) {
            __global float *yp = y + (ulong)v * (ulong)cout;
            VXM_UNROLL for (int j = 0; j < RN; j++)
            {
                int co = co0 + ty + j * WGN;
                if (co < cout) {
                    float o = acc[i][j];
                    if (last) {
                        o = o + wp[bias_off + (ulong)co];
                        if (leaky)
                            o = select(alpha * o, o, o > 0.0f);
                    }
                    yp[co] = o;
                }
            }
        }
    }
}
