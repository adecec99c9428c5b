/* Convolution for narrow outputs (Cout <= 4: the 2- or 3-channel flow convolutions), same semantics as
 * cpu_conv.c (spec §2.1, fused §2.2), but vectorized over input channels: with
 * Cout = 3 the channel path would leave 13 of 16 AVX-512 lanes idle.
 *
 * With j = c*Cin + ci running over the k2*Cin contiguous floats that tap row (a, b) holds for output voxel o2
 * (channels-last), y[o2][co] = bias[co] + sum over (a, b) and vector blocks of j of lane-wise products
 * x[o2*s2*Cin + j] * W[a][b][j][co], reduced across lanes at the end.  Register blocks: R voxels x CO outputs of
 * vector accumulators; the weights are repacked so that the CO vectors of one block of j are contiguous.
 * Requires Cin to be a multiple of the vector width, so every lane is a real input channel. */
#include <string.h>

#include "backend_cpu/cpu_conv.h"
#include "backend_cpu/cpu_simd.h"

#define NARROW_CO 4 /* largest Cout handled here */

/* Voxels per register block for CO outputs: R*CO accumulators + CO weights + 1 input vector. */
#if CPU_NVREG >= 32
#define RN_1 8
#define RN_2 8
#define RN_3 8
#define RN_4 6
#else
#define RN_1 8
#define RN_2 6
#define RN_3 4
#define RN_4 2
#endif

int cpu_conv_narrow_fits(int cin, int cout)
{
    return cout <= NARROW_CO && cin % CPU_VW == 0;
}

/* Layout: for tap row ab = a*k1 + b and vector block jb of j = c*Cin + ci, the CO vectors
 * wt[((ab*nb + jb)*CO + co)*VW + l] = W[a][b][c][ci][co] with j = jb*VW + l. */
void cpu_conv_narrow_pack(const conv_job *J, const float *w, float *wt)
{
    int co_n = J->cout, len = J->k[2] * J->cin, nb = len / CPU_VW;
    int nab = J->k[0] * J->k[1];
    for (int ab = 0; ab < nab; ab++)
        for (int jb = 0; jb < nb; jb++)
            for (int co = 0; co < co_n; co++)
                for (int l = 0; l < CPU_VW; l++) {
                    size_t j = (size_t)jb * CPU_VW + (size_t)l;
                    wt[(((size_t)ab * (size_t)nb + (size_t)jb) * (size_t)co_n + (size_t)co) * CPU_VW + (size_t)l] =
                        w[((size_t)ab * (size_t)len + j) * (size_t)co_n + (size_t)co];
                }
}

typedef void (*narrow_kernel)(const float *const *xp, const float *const *wp, int ntap, int nb, ptrdiff_t xs,
                              const float *bias, float *out, ptrdiff_t os, int leaky, float alpha);

static inline __attribute__((always_inline)) void narrow_block(const int R, const int CO, const float *const *xp,
                                                               const float *const *wp, int ntap, int nb,
                                                               ptrdiff_t xs, const float *bias, float *out,
                                                               ptrdiff_t os, int leaky, float alpha)
{
    cpu_vf acc[8][NARROW_CO];
    cpu_vf zero = cpu_vset1(0.0f);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int co = 0; co < CO; co++)
            acc[r][co] = zero;
    for (int t = 0; t < ntap; t++) {
        const float *x = xp[t];
        const float *w = wp[t];
        for (int jb = 0; jb < nb; jb++) {
            cpu_vf wv[NARROW_CO];
#pragma GCC unroll 4
            for (int co = 0; co < CO; co++)
                wv[co] = cpu_vload(w + co * CPU_VW);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                cpu_vf xv = cpu_vload(x + r * xs);
#pragma GCC unroll 4
                for (int co = 0; co < CO; co++)
                    acc[r][co] = cpu_vfma(xv, wv[co], acc[r][co]);
            }
            x += CPU_VW;
            w += CO * CPU_VW;
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int co = 0; co < CO; co++) {
            float v = bias[co] + cpu_vhsum(acc[r][co]);
            out[r * os + co] = (leaky && !(v > 0.0f)) ? alpha * v : v;
        }
}

#define SEQ_1(M, C) M(1, C)
#define SEQ_2(M, C) SEQ_1(M, C) M(2, C)
#define SEQ_3(M, C) SEQ_2(M, C) M(3, C)
#define SEQ_4(M, C) SEQ_3(M, C) M(4, C)
#define SEQ_5(M, C) SEQ_4(M, C) M(5, C)
#define SEQ_6(M, C) SEQ_5(M, C) M(6, C)
#define SEQ_7(M, C) SEQ_6(M, C) M(7, C)
#define SEQ_8(M, C) SEQ_7(M, C) M(8, C)
#define SEQ(n, M, C) SEQ_I(n, M, C)
#define SEQ_I(n, M, C) SEQ_##n(M, C)

#define NDEF(R, C)                                                                                                  \
    static void narrow_kernel_##R##_##C(const float *const *xp, const float *const *wp, int ntap, int nb,        \
                                        ptrdiff_t xs, const float *bias, float *out, ptrdiff_t os, int leaky,     \
                                        float alpha)                                                              \
    {                                                                                                               \
        narrow_block(R, C, xp, wp, ntap, nb, xs, bias, out, os, leaky, alpha);                                      \
    }
#define NPTR(R, C) narrow_kernel_##R##_##C,

SEQ(RN_1, NDEF, 1)
SEQ(RN_2, NDEF, 2)
SEQ(RN_3, NDEF, 3)
SEQ(RN_4, NDEF, 4)
static const narrow_kernel narrow_1[] = {NULL, SEQ(RN_1, NPTR, 1)};
static const narrow_kernel narrow_2[] = {NULL, SEQ(RN_2, NPTR, 2)};
static const narrow_kernel narrow_3[] = {NULL, SEQ(RN_3, NPTR, 3)};
static const narrow_kernel narrow_4[] = {NULL, SEQ(RN_4, NPTR, 4)};
static const narrow_kernel *const narrow_kernels[] = {NULL, narrow_1, narrow_2, narrow_3, narrow_4};
static const int rn[] = {0, RN_1, RN_2, RN_3, RN_4};

/* floor(a / b) for b > 0 */
static int floor_div(int a, int b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* One output voxel whose taps along axis 2 partly fall into the padding: the same sums over the in-range taps
 * only (zero padding contributes nothing). */
static void narrow_border(const conv_job *J, const float *const *xrow, const float *const *wp, int ntap, int o2,
                          float *out)
{
    int cin = J->cin, co_n = J->cout;
    cpu_vf acc[NARROW_CO];
    for (int co = 0; co < co_n; co++)
        acc[co] = cpu_vset1(0.0f);
    for (int t = 0; t < ntap; t++)
        for (int c = 0; c < J->k[2]; c++) {
            int i2 = o2 * J->s[2] - J->pad[2] + c;
            if (i2 < 0 || i2 >= J->n[2])
                continue;
            for (int cb = 0; cb < cin; cb += CPU_VW) {
                cpu_vf xv = cpu_vload(xrow[t] + (size_t)i2 * (size_t)cin + (size_t)cb);
                const float *w = wp[t] + (size_t)((c * cin + cb) / CPU_VW) * (size_t)co_n * CPU_VW;
                for (int co = 0; co < co_n; co++)
                    acc[co] = cpu_vfma(xv, cpu_vload(w + co * CPU_VW), acc[co]);
            }
        }
    for (int co = 0; co < co_n; co++) {
        float v = J->bias[co] + cpu_vhsum(acc[co]);
        out[co] = (J->leaky && !(v > 0.0f)) ? J->alpha * v : v;
    }
}

/* Reads the input rows in place (no padded copies: with few outputs per input the copy would cost a quarter of
 * the work): the voxels whose taps all lie inside the row go through the register-blocked kernels, the one or
 * two at each end through narrow_border. */
void cpu_conv_narrow_row(const conv_job *J, int o0, int o1, conv_scratch *S, float *yrow)
{
    int cout = J->cout, m2 = J->m[2], s2 = J->s[2], p2 = J->pad[2];
    int nb = J->k[2] * J->cin / CPU_VW;
    size_t slab = (size_t)nb * (size_t)cout * CPU_VW; /* weights of one tap row (a, b) */
    ptrdiff_t xs = (ptrdiff_t)s2 * J->cin;
    int ntap = cpu_conv_rows(J, o0, o1, S, 0);
    for (int t = 0; t < ntap; t++)
        S->wp[t] = J->w + (size_t)S->tap[t] * slab;
    /* interior: o2*s2 - p2 >= 0 and o2*s2 - p2 + k2 - 1 <= n2 - 1 */
    int lo = -floor_div(-p2, s2), hi = floor_div(J->n[2] - J->k[2] + p2, s2);
    if (lo < 0)
        lo = 0;
    if (hi > m2 - 1)
        hi = m2 - 1;
    if (hi < lo) { /* no interior voxel */
        lo = m2;
        hi = m2 - 1;
    }
    for (int o2 = 0; o2 < lo; o2++)
        narrow_border(J, S->xrow, S->wp, ntap, o2, yrow + (size_t)o2 * (size_t)cout);
    for (int o2 = hi + 1; o2 < m2; o2++)
        narrow_border(J, S->xrow, S->wp, ntap, o2, yrow + (size_t)o2 * (size_t)cout);
    int len = hi - lo + 1;
    if (len <= 0)
        return;
    /* near-equal blocks of at most rn[cout] voxels, as in the channel path */
    int nblk = (len + rn[cout] - 1) / rn[cout];
    int base = len / nblk, extra = len % nblk;
    for (int blk = 0, o2 = lo; blk < nblk; blk++) {
        int R = base + (blk < extra);
        for (int t = 0; t < ntap; t++)
            S->xp[t] = S->xrow[t] + (ptrdiff_t)(o2 * s2 - p2) * (ptrdiff_t)J->cin;
        narrow_kernels[cout][R](S->xp, S->wp, ntap, nb, xs, J->bias, yrow + (size_t)o2 * (size_t)cout, cout,
                                J->leaky, J->alpha);
        o2 += R;
    }
}
