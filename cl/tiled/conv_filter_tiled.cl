/* Tiled filter gradient of the convolution (issue 10; training doc §2.7; the direct kernel and the chunked scheme it
 * must reproduce are in cl/conv_backward.cl).  Built per tile by cl_variant.c with -DTM -DTN -DTK -DRM -DRN.
 *
 * Per voxel chunk the partial gradient is a GEMM over the chunk's voxels o:
 *     part[chunk][m][n] = sum_o X[o][m] * dy[o][n],   m = tap * Cin + ci, tap = (a * k1 + b) * k2 + c, n = co,
 * X[o][m] = x[o*s - p + (a, b, c), ci] (0 in the padding).  A work-group computes a TM x TN block of one chunk's
 * partial.  Each step stages TK voxels through local memory -- the gathered patch values xs[TK][TM+1] and dy values
 * ds[TK][TN+1] (rows padded by one float against bank conflicts) -- and each of the (TM/RM) x (TN/RN) work-items
 * updates its RM x RN results, rows tr + i*(TM/RM) and columns tc + j*(TN/RN) (strided, so neighbouring work-items
 * read neighbouring local words).
 *
 * Bitwise contract (notes/tiles_contract.md): every result is one fma(x, dy, acc) chain from 0.0f over the chunk's
 * voxels in increasing order, as in vxm_conv_filter_partial_*; padding, voxels past the end and rows / columns past
 * the tails are loaded as 0 and add fma(0, dy, acc) == acc.  The host may cut a chunk into several launches (the
 * llvmpipe loop budget): voxels [qbeg, qbeg + qlen) of the chunk, `first` = 0 resuming from the stored partial. */

#if !defined(TM) || !defined(TN) || !defined(TK) || !defined(RM) || !defined(RN)
#error "conv_filter_tiled.cl needs -DTM -DTN -DTK -DRM -DRN"
#endif

#define FT_WM (TM / RM)     /* work-items along the rows */
#define FT_WN (TN / RN)     /* work-items along the output channels */
#define FT_WG (FT_WM * FT_WN)
/* Loading xs: FT_LW lanes walk the rows (consecutive lanes read consecutive channels: coalesced), FT_XR rows each;
 * the FT_KG groups of lanes take FT_KQ consecutive voxels each, so a lane unravels one voxel index per step and
 * steps to the next voxel by a carry. */
#define FT_LW (FT_WG < TM ? FT_WG : TM)
#define FT_XR ((TM + FT_LW - 1) / FT_LW)
#define FT_KG (FT_WG / FT_LW)
#define FT_KQ ((TK + FT_KG - 1) / FT_KG)

__kernel __attribute__((reqd_work_group_size(FT_WG, 1, 1))) void
vxm_conv_filter_tiled(__global const float *x, __global const float *dy, __global float *part, int n0, int n1, int n2,
                      int cin, int m1, int m2, int cout, int k1, int k2, int s0, int s1, int s2, int p0, int p1, int p2,
                      uint nvox, uint chunk, uint nrows, int nnb, uint nw, uint qbeg, uint qlen, int first)
{
    __local float xs[TK][TM + 1];
    __local float ds[TK][TN + 1];
    const int tid = (int)get_local_id(0);
    const int blk = (int)get_group_id(0);
    const uint ch = (uint)get_group_id(1);
    const int m0 = blk / nnb * TM, c0 = blk % nnb * TN;
    const int tr = tid / FT_WN, tc = tid % FT_WN;
    __global float *pp = part + (ulong)ch * (ulong)nw;

    /* results: resume the chunk's previous voxels, or start from 0 */
    float acc[RM][RN];
    for (int i = 0; i < RM; i++) {
        uint m = (uint)(m0 + tr + i * FT_WM);
        for (int j = 0; j < RN; j++) {
            int n = c0 + tc + j * FT_WN;
            acc[i][j] = !first && m < nrows && n < cout ? pp[(ulong)m * (ulong)cout + (ulong)n] : 0.0f;
        }
    }

    /* the rows this lane loads: tap offsets (a, b, c) and the offset in x relative to the voxel's corner; rows past
     * nrows get a = -2^28, which no voxel brings into range */
    const int lane = tid % FT_LW, kg = tid / FT_LW;
    int ra[FT_XR], rb[FT_XR], rc[FT_XR];
    long roff[FT_XR];
    for (int j = 0; j < FT_XR; j++) {
        uint m = (uint)(m0 + lane + j * FT_LW);
        int ci = 0, a = -(1 << 28), b = 0, c = 0;
        if (m < nrows) {
            uint tap = m / (uint)cin;
            ci = (int)(m % (uint)cin);
            c = (int)(tap % (uint)k2);
            b = (int)(tap / (uint)k2 % (uint)k1);
            a = (int)(tap / (uint)k2 / (uint)k1);
        }
        ra[j] = a;
        rb[j] = b;
        rc[j] = c;
        roff[j] = (((long)a * n1 + b) * n2 + c) * cin + ci;
    }

    for (uint q0 = 0; q0 < qlen; q0 += TK) {
        const uint obase = ch * chunk + qbeg + q0; /* voxel of the step's first row */
        /* xs: gathered patch values of voxels kg*KQ .. kg*KQ + KQ-1 of the step */
        if (kg < FT_KG) {
            int kq = kg * FT_KQ;
            uint o = obase + (uint)kq;
            int o0, o1, o2;
            vxm_unravel(o, m1, m2, &o0, &o1, &o2);
            for (int i = 0; i < FT_KQ && kq < TK; i++, kq++, o++) {
                int live = q0 + (uint)kq < qlen && o < nvox;
                int ii = o0 * s0 - p0, jj = o1 * s1 - p1, kk = o2 * s2 - p2;
                long vb = (((long)ii * n1 + jj) * n2 + kk) * cin;
                for (int j = 0; j < FT_XR; j++) {
                    int r = lane + j * FT_LW;
                    if (r < TM) {
                        float v = 0.0f;
                        if (live && (uint)(ii + ra[j]) < (uint)n0 && (uint)(jj + rb[j]) < (uint)n1 &&
                            (uint)(kk + rc[j]) < (uint)n2)
                            v = x[vb + roff[j]];
                        xs[kq][r] = v;
                    }
                }
                if (++o2 == m2) {
                    o2 = 0;
                    if (++o1 == m1) {
                        o1 = 0;
                        o0++;
                    }
                }
            }
        }
        /* ds: dy of the step's voxels, output channels c0 .. c0 + TN - 1 (consecutive work-items, consecutive
         * channels) */
        for (int e = tid; e < TK * TN; e += FT_WG) {
            int kq = e / TN, n = e % TN;
            uint o = obase + (uint)kq;
            ds[kq][n] = q0 + (uint)kq < qlen && o < nvox && c0 + n < cout
                            ? dy[(ulong)o * (ulong)cout + (ulong)(c0 + n)]
                            : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kq = 0; kq < TK; kq++) { /* voxel order: the direct kernel's fma chain */
            float av[RM], bv[RN];
            for (int i = 0; i < RM; i++)
                av[i] = xs[kq][tr + i * FT_WM];
            for (int j = 0; j < RN; j++)
                bv[j] = ds[kq][tc + j * FT_WN];
            for (int i = 0; i < RM; i++)
                for (int j = 0; j < RN; j++)
                    acc[i][j] = fma(av[i], bv[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    for (int i = 0; i < RM; i++) {
        uint m = (uint)(m0 + tr + i * FT_WM);
        for (int j = 0; j < RN; j++) {
            int n = c0 + tc + j * FT_WN;
            if (m < nrows && n < cout)
                pp[(ulong)m * (ulong)cout + (ulong)n] = acc[i][j];
        }
    }
}
