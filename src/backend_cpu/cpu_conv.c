/* SAME-padded convolution (spec §2.1) with optional fused LeakyReLU (§2.2), channels-last, weights
 * (k0,k1,k2,Cin,Cout) used as stored.
 *
 * Scheme.  For one output row (o0, o1) every contributing input row (i0, i1) -- one per in-range tap (a, b) --
 * is copied into a zero-padded row buffer covering exactly the input positions the row's taps touch along
 * axis 2.  Out-of-range taps along axes 0 and 1 are simply skipped; along axis 2 they read the buffer's zeros,
 * so the inner loops carry no border branches and SAME's asymmetric padding (stride 2, even n: 0 before, 1
 * after) costs nothing special.  In the channels-last layout tap c and input channel ci of output voxel o2 sit
 * at buffer offset (o2*s2 + c)*Cin + ci = o2*s2*Cin + j with j = c*Cin + ci, and the weight row of (a, b, c, ci)
 * is row j of the (a, b) slab, so per (a, b) the work is one small matrix product
 *     acc[R voxels][Cout] += X[R][k2*Cin] * W[k2*Cin][Cout].
 * The register-blocked kernels keep R voxels x V vectors of output channels in registers, broadcast one input
 * value per voxel and FMA it against V weight vectors.  Cout is processed in chunks of up to CPU_VMAX vectors;
 * a Cout that is not a multiple of the vector width is zero-padded in a repacked copy of the weights, except for
 * narrow outputs (Cout <= 4, the flow convolutions), which cpu_conv_narrow.c vectorizes over Cin instead.
 *
 * Determinism: output rows are distributed over threads, each output element is produced by one thread with a
 * summation order fixed by (row length, Cout) alone, so results do not depend on the thread count. */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend_cpu/cpu_conv.h"
#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_simd.h"

#define CPU_VMAX (CPU_NVREG >= 32 ? 4 : 2) /* vectors of output channels per register block */

/* Voxels per register block for V output vectors: R*V accumulators + V weights + 1 broadcast registers.
 * Measured on AVX-512 (Xeon, 32 zmm): V=2 R=12 reaches ~180 GFLOP/s per core on 64->32 (73% of FMA peak); larger
 * R changes little.  Overridable with -DRMAX_1=... for tuning (R <= RBLOCK_MAX). */
#define RBLOCK_MAX 28
#ifndef RMAX_1
#if CPU_NVREG >= 32
#define RMAX_1 16
#define RMAX_2 12
#define RMAX_3 8
#define RMAX_4 6
#else
#define RMAX_1 12
#define RMAX_2 6
#endif
#endif

_Static_assert(RMAX_1 <= RBLOCK_MAX && RMAX_2 <= RBLOCK_MAX, "register block too large");

typedef void (*conv_kernel)(const float *const *xp, const float *const *wp, int ntap, int len, ptrdiff_t xs,
                            ptrdiff_t ws, const float *bias, float *out, ptrdiff_t os, int leaky, float alpha);

/* acc[r][v] = bias[v]; for every tap t, j < len: acc[r][v] += xp[t][r*xs + j] * wp[t][j*ws + v*VW]; then
 * out[r*os + v*VW ...] = acc[r][v], through LeakyReLU when `leaky`.  R and V are compile-time constants after
 * inlining, so acc lives in registers. */
static inline __attribute__((always_inline)) void conv_block(const int R, const int V, const float *const *xp,
                                                             const float *const *wp, int ntap, int len,
                                                             ptrdiff_t xs, ptrdiff_t ws, const float *bias,
                                                             float *out, ptrdiff_t os, int leaky, float alpha)
{
    cpu_vf acc[RBLOCK_MAX][CPU_VMAX];
#pragma GCC unroll 28
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < V; v++)
            acc[r][v] = cpu_vload(bias + v * CPU_VW);
    for (int t = 0; t < ntap; t++) {
        /* Voxel r = 4g + i is read at xg[g] + i*xs: a few base pointers plus the offsets xs, 2xs, 3xs, instead of
         * one register per voxel offset (which runs out of general registers and spills for large R). */
        const float *xg[(RBLOCK_MAX + 3) / 4];
#pragma GCC unroll 7
        for (int g = 0; g < (R + 3) / 4; g++)
            xg[g] = xp[t] + 4 * g * xs;
        const float *w = wp[t];
        for (int j = 0; j < len; j++) {
            cpu_vf wv[CPU_VMAX];
#pragma GCC unroll 4
            for (int v = 0; v < V; v++)
                wv[v] = cpu_vload(w + v * CPU_VW);
#pragma GCC unroll 28
            for (int r = 0; r < R; r++) {
                cpu_vf xb = cpu_vset1(xg[r / 4][(r % 4) * xs]);
#pragma GCC unroll 4
                for (int v = 0; v < V; v++)
                    acc[r][v] = cpu_vfma(xb, wv[v], acc[r][v]);
            }
#pragma GCC unroll 7
            for (int g = 0; g < (R + 3) / 4; g++)
                xg[g] += 1;
            w += ws;
        }
    }
    if (leaky) {
#pragma GCC unroll 28
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int v = 0; v < V; v++)
                acc[r][v] = cpu_vleaky(acc[r][v], alpha);
    }
#pragma GCC unroll 28
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < V; v++)
            cpu_vstore(out + r * os + v * CPU_VW, acc[r][v]);
}

/* SEQ_n(M, V) expands to M(1, V) M(2, V) ... M(n, V): instantiates the register-blocked kernels. */
#define SEQ_0(M, V)
#define SEQ_1(M, V) SEQ_0(M, V) M(1, V)
#define SEQ_2(M, V) SEQ_1(M, V) M(2, V)
#define SEQ_3(M, V) SEQ_2(M, V) M(3, V)
#define SEQ_4(M, V) SEQ_3(M, V) M(4, V)
#define SEQ_5(M, V) SEQ_4(M, V) M(5, V)
#define SEQ_6(M, V) SEQ_5(M, V) M(6, V)
#define SEQ_7(M, V) SEQ_6(M, V) M(7, V)
#define SEQ_8(M, V) SEQ_7(M, V) M(8, V)
#define SEQ_9(M, V) SEQ_8(M, V) M(9, V)
#define SEQ_10(M, V) SEQ_9(M, V) M(10, V)
#define SEQ_11(M, V) SEQ_10(M, V) M(11, V)
#define SEQ_12(M, V) SEQ_11(M, V) M(12, V)
#define SEQ_13(M, V) SEQ_12(M, V) M(13, V)
#define SEQ_14(M, V) SEQ_13(M, V) M(14, V)
#define SEQ_15(M, V) SEQ_14(M, V) M(15, V)
#define SEQ_16(M, V) SEQ_15(M, V) M(16, V)
#define SEQ_17(M, V) SEQ_16(M, V) M(17, V)
#define SEQ_18(M, V) SEQ_17(M, V) M(18, V)
#define SEQ_19(M, V) SEQ_18(M, V) M(19, V)
#define SEQ_20(M, V) SEQ_19(M, V) M(20, V)
#define SEQ_21(M, V) SEQ_20(M, V) M(21, V)
#define SEQ_22(M, V) SEQ_21(M, V) M(22, V)
#define SEQ_23(M, V) SEQ_22(M, V) M(23, V)
#define SEQ_24(M, V) SEQ_23(M, V) M(24, V)
#define SEQ_25(M, V) SEQ_24(M, V) M(25, V)
#define SEQ_26(M, V) SEQ_25(M, V) M(26, V)
#define SEQ_27(M, V) SEQ_26(M, V) M(27, V)
#define SEQ_28(M, V) SEQ_27(M, V) M(28, V)
#define SEQ(n, M, V) SEQ_I(n, M, V)
#define SEQ_I(n, M, V) SEQ_##n(M, V)

#define KDEF(R, V)                                                                                                  \
    static void conv_kernel_##R##_##V(const float *const *xp, const float *const *wp, int ntap, int len,         \
                                      ptrdiff_t xs, ptrdiff_t ws, const float *bias, float *out, ptrdiff_t os,   \
                                      int leaky, float alpha)                                                     \
    {                                                                                                               \
        conv_block(R, V, xp, wp, ntap, len, xs, ws, bias, out, os, leaky, alpha);                                   \
    }
#define KPTR(R, V) conv_kernel_##R##_##V,

SEQ(RMAX_1, KDEF, 1)
SEQ(RMAX_2, KDEF, 2)
static const conv_kernel kernels_1[] = {NULL, SEQ(RMAX_1, KPTR, 1)};
static const conv_kernel kernels_2[] = {NULL, SEQ(RMAX_2, KPTR, 2)};
#if CPU_VMAX >= 4
SEQ(RMAX_3, KDEF, 3)
SEQ(RMAX_4, KDEF, 4)
static const conv_kernel kernels_3[] = {NULL, SEQ(RMAX_3, KPTR, 3)};
static const conv_kernel kernels_4[] = {NULL, SEQ(RMAX_4, KPTR, 4)};
static const conv_kernel *const kernels[] = {NULL, kernels_1, kernels_2, kernels_3, kernels_4};
static const int rmax[] = {0, RMAX_1, RMAX_2, RMAX_3, RMAX_4};
#else
static const conv_kernel *const kernels[] = {NULL, kernels_1, kernels_2};
static const int rmax[] = {0, RMAX_1, RMAX_2};
#endif

/* Copies input row (i0, i1) into buf with zeros where the row's taps fall outside [0, n2). */
static void fill_row(const conv_job *J, int i0, int i1, float *buf)
{
    size_t cin = (size_t)J->cin;
    int lo = J->pad[2];                           /* buffer position of input voxel 0 */
    int first = lo < 0 ? 0 : lo > J->span ? J->span : lo;          /* first buffer position holding data */
    int last = lo + J->n[2] > J->span ? J->span : lo + J->n[2];      /* one past the last */
    if (last < first)
        last = first;
    const float *src = J->x + ((size_t)i0 * (size_t)J->n[1] + (size_t)i1) * (size_t)J->n[2] * cin;
    memset(buf, 0, (size_t)first * cin * sizeof(float));
    if (last > first)
        memcpy(buf + (size_t)first * cin, src + (size_t)(first - lo) * cin,
               (size_t)(last - first) * cin * sizeof(float));
    memset(buf + (size_t)last * cin, 0, (size_t)(J->span - last) * cin * sizeof(float));
}

int cpu_conv_rows(const conv_job *J, int o0, int o1, conv_scratch *S, int copy)
{
    int ntap = 0;
    for (int a = 0; a < J->k[0]; a++) {
        int i0 = o0 * J->s[0] - J->pad[0] + a;
        if (i0 < 0 || i0 >= J->n[0])
            continue;
        for (int b = 0; b < J->k[1]; b++) {
            int i1 = o1 * J->s[1] - J->pad[1] + b;
            if (i1 < 0 || i1 >= J->n[1])
                continue;
            if (copy) {
                float *buf = S->rows + (size_t)ntap * J->rowlen;
                fill_row(J, i0, i1, buf);
                S->xrow[ntap] = buf;
            } else {
                S->xrow[ntap] = J->x + ((size_t)i0 * (size_t)J->n[1] + (size_t)i1) * (size_t)J->n[2] * (size_t)J->cin;
            }
            S->tap[ntap] = a * J->k[1] + b;
            ntap++;
        }
    }
    return ntap;
}

/* The channel path: weights (k0,k1,k2,Cin,ldw). */
static void conv_row(const conv_job *J, int o0, int o1, conv_scratch *S)
{
    int cin = J->cin, cout = J->cout;
    int len = J->k[2] * cin;
    size_t slab = (size_t)len * (size_t)J->ldw; /* weights of one (a, b) */
    int ntap = cpu_conv_rows(J, o0, o1, S, 1);
    int m2 = J->m[2];
    float *yrow = J->y + ((size_t)o0 * (size_t)J->m[1] + (size_t)o1) * (size_t)m2 * (size_t)cout;
    ptrdiff_t xs = (ptrdiff_t)J->s[2] * cin;
    for (int co = 0; co < J->ldw;) {
        int V = (J->ldw - co) / CPU_VW;
        if (V > CPU_VMAX)
            V = CPU_VMAX;
        int nc = cout - co < V * CPU_VW ? cout - co : V * CPU_VW; /* real channels in this chunk */
        /* Split the row into nb near-equal blocks of at most rmax[V] voxels. */
        int nb = (m2 + rmax[V] - 1) / rmax[V];
        int base = m2 / nb, extra = m2 % nb;
        for (int t = 0; t < ntap; t++)
            S->wp[t] = J->w + (size_t)S->tap[t] * slab + co;
        for (int blk = 0, o2 = 0; blk < nb; blk++) {
            int R = base + (blk < extra);
            for (int t = 0; t < ntap; t++)
                S->xp[t] = S->xrow[t] + (size_t)o2 * (size_t)xs;
            float *dst = yrow + (size_t)o2 * (size_t)cout + co;
            if (nc == V * CPU_VW) { /* whole vectors: straight into y */
                kernels[V][R](S->xp, S->wp, ntap, len, xs, J->ldw, J->bias + co, dst, cout, J->leaky, J->alpha);
            } else { /* padded channels: through the block buffer */
                kernels[V][R](S->xp, S->wp, ntap, len, xs, J->ldw, J->bias + co, S->block, V * CPU_VW, J->leaky,
                              J->alpha);
                for (int r = 0; r < R; r++)
                    memcpy(dst + (size_t)r * (size_t)cout, S->block + (size_t)r * (size_t)V * CPU_VW,
                           (size_t)nc * sizeof(float));
            }
            o2 += R;
        }
        co += V * CPU_VW;
    }
}

vxm_status cpu_conv(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b,
                    const vxm_conv_params *p, vxm_tensor *y)
{
    static const char op[] = "conv";
    vxm_status st;
    if ((st = cpu_check_tensor(be, x, op, "input")) || (st = cpu_check_tensor(be, y, op, "output")))
        return st;
    if (!p || !w)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: missing weights or parameters", op);
    if (y->buf == x->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output must not alias the input", op);
    conv_job J;
    memset(&J, 0, sizeof J);
    for (int d = 0; d < 3; d++) {
        if (p->ksize[d] < 1 || p->stride[d] < 1)
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: kernel %dx%dx%d stride %dx%dx%d", op, p->ksize[0],
                             p->ksize[1], p->ksize[2], p->stride[0], p->stride[1], p->stride[2]);
        J.n[d] = x->shape[d];
        J.m[d] = y->shape[d];
        J.k[d] = p->ksize[d];
        J.s[d] = p->stride[d];
        J.pad[d] = p->pad_lo[d];
        int want = (x->shape[d] + p->stride[d] - 1) / p->stride[d];
        if (y->shape[d] != want)
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output axis %d is %d, expected ceil(%d / %d) = %d", op,
                             d, y->shape[d], x->shape[d], p->stride[d], want);
    }
    J.cin = x->channels;
    J.cout = y->channels;
    size_t ktaps = (size_t)J.k[0] * (size_t)J.k[1] * (size_t)J.k[2];
    size_t nw = ktaps * (size_t)J.cin * (size_t)J.cout;
    if (w->n < nw)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: weights hold %zu floats, kernel %dx%dx%dx%dx%d needs %zu",
                         op, w->n, J.k[0], J.k[1], J.k[2], J.cin, J.cout, nw);
    if (b && b->n < (size_t)J.cout)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: bias holds %zu floats, need %d", op, b->n, J.cout);
    J.ldw = (J.cout + CPU_VW - 1) / CPU_VW * CPU_VW;
    J.span = (J.m[2] - 1) * J.s[2] + J.k[2];
    J.rowlen = ((size_t)J.span * (size_t)J.cin + CPU_VW - 1) / CPU_VW * CPU_VW;
    J.leaky = p->leaky;
    J.alpha = p->alpha;
    J.x = x->buf->data;
    J.y = y->buf->data;

    int nt = cpu_threads(be);
    long rows = (long)J.m[0] * J.m[1];
    double flops = 2.0 * (double)nw * (double)J.m[0] * (double)J.m[1] * (double)J.m[2];
    if (flops < 4e6 || rows < 2)
        nt = 1;
    if (nt > rows)
        nt = (int)rows;
    int narrow = cpu_conv_narrow_fits(J.cin, J.cout);
    size_t ntap2 = (size_t)J.k[0] * (size_t)J.k[1];
    size_t per_thread = ntap2 * J.rowlen + (size_t)RBLOCK_MAX * CPU_VMAX * CPU_VW;
    /* weights: as stored when Cout is a vector multiple, else repacked (zero-padded rows, or the narrow layout) */
    size_t nwp = narrow ? nw : J.ldw == J.cout ? 0 : ktaps * (size_t)J.cin * (size_t)J.ldw;
    float *bias = cpu_alloc_floats((size_t)J.ldw);
    float *wpack = nwp ? cpu_alloc_floats(nwp) : NULL;
    float *scratch = cpu_alloc_floats(per_thread * (size_t)nt);
    const float **ptrs = malloc(3 * ntap2 * (size_t)nt * sizeof *ptrs);
    int *taps = malloc(ntap2 * (size_t)nt * sizeof *taps);
    if (!bias || (nwp && !wpack) || !scratch || !ptrs || !taps) {
        free(bias);
        free(wpack);
        free(scratch);
        free(ptrs);
        free(taps);
        return cpu_nomem(be, (per_thread * (size_t)nt + nwp + (size_t)J.ldw) * sizeof(float));
    }
    memset(bias, 0, (size_t)J.ldw * sizeof(float));
    if (b)
        memcpy(bias, b->data, (size_t)J.cout * sizeof(float));
    J.bias = bias;
    J.w = w->data;
    if (narrow) {
        cpu_conv_narrow_pack(&J, w->data, wpack);
        J.w = wpack;
    } else if (wpack) {
        /* zero-pad every weight row from Cout to ldw floats */
        size_t nrows = ktaps * (size_t)J.cin;
        memset(wpack, 0, nwp * sizeof(float));
        for (size_t r = 0; r < nrows; r++)
            memcpy(wpack + r * (size_t)J.ldw, w->data + r * (size_t)J.cout, (size_t)J.cout * sizeof(float));
        J.w = wpack;
    }

    /* Work items: a band of up to 8 output rows along axis 1 taken through a range of planes o0, so that the
     * input rows a band reads stay in this core's cache from one plane to the next (each input row feeds
     * k0 x k1 output rows).  About 4 items per thread for balance; planes are split only when bands are few. */
    int band = J.m[1] / (4 * nt);
    band = band < 1 ? 1 : band > 8 ? 8 : band;
    int nband = (J.m[1] + band - 1) / band;
    int nsplit = (4 * nt + nband - 1) / nband;
    nsplit = nsplit > J.m[0] ? J.m[0] : nsplit;
    int nitem = nband * nsplit;
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        int tid = omp_get_thread_num();
#else
        int tid = 0;
#endif
        conv_scratch S;
        S.rows = scratch + (size_t)tid * per_thread;
        S.block = S.rows + ntap2 * J.rowlen;
        S.xrow = ptrs + (size_t)tid * 3 * ntap2;
        S.xp = S.xrow + ntap2;
        S.wp = S.xp + ntap2;
        S.tap = taps + (size_t)tid * ntap2;
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < nitem; it++) {
            int bi = it % nband, part = it / nband;
            int o0_end = (int)((long)(part + 1) * J.m[0] / nsplit);
            for (int o0 = (int)((long)part * J.m[0] / nsplit); o0 < o0_end; o0++)
                for (int o1 = bi * band; o1 < J.m[1] && o1 < (bi + 1) * band; o1++) {
                    if (narrow)
                        cpu_conv_narrow_row(&J, o0, o1, &S);
                    else
                        conv_row(&J, o0, o1, &S);
                }
        }
    }
    free(bias);
    free(wpack);
    free(scratch);
    free(ptrs);
    free(taps);
    return VXM_OK;
}
