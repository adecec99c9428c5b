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
 * summation order fixed by (row length, Cout) alone, so results do not depend on the thread count.
 *
 * Backward (training doc §2.7), at the end of the file: the data gradient is the forward conv of dy with the
 * flipped, transposed kernel, per stride residue (polyphase) when a stride is 2; the filter gradient reuses the
 * padded row buffers and transposes the register block (reduction over voxels), over fixed chunks of output rows
 * combined in a fixed order. */
#include <stdint.h>
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
 * R changes little.  On Zen 4 at 1 thread the large layers reach 96-99 % of the FMA peak with AVX-512 and AVX2.
 * Tried for AVX2 and dropped: 3 voxels x 4 vectors with the broadcasts in registers (Cout = 32 in one pass, as
 * oneDNN's AVX2 kernels block) was faster alone but 5-10 % slower inside a registration, where the doubled
 * weight traffic per voxel competes with the other layers' data in L2.  Overridable with -DRMAX_1=... for tuning
 * (R <= RBLOCK_MAX). */
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

/* Weight bytes one pass of conv_row runs over the row with (half an L1 data cache of 32 KB). */
#ifndef CONV_PASS_BYTES
#define CONV_PASS_BYTES ((size_t)16 << 10)
#endif

typedef void (*conv_kernel)(const float *const *xp, const float *const *wp, ptrdiff_t wo, int ntap, int len,
                            ptrdiff_t xs, ptrdiff_t ws, const float *init, ptrdiff_t is, float *out, ptrdiff_t os,
                            int leaky, float alpha);

/* acc[r][v] = init[r*is + v*VW] (the bias with is = 0, or the partial sums of earlier taps); for every tap t,
 * j < len: acc[r][v] += xp[t][r*xs + j] * wp[t][wo + j*ws + v*VW]; then out[r*os + v*VW ...] = acc[r][v], through
 * LeakyReLU when `leaky`.  R and V are compile-time constants after inlining, so acc lives in registers. */
static inline __attribute__((always_inline)) void conv_block(const int R, const int V, const float *const *xp,
                                                             const float *const *wp, ptrdiff_t wo, int ntap, int len,
                                                             ptrdiff_t xs, ptrdiff_t ws, const float *init,
                                                             ptrdiff_t is, float *out, ptrdiff_t os, int leaky,
                                                             float alpha)
{
    cpu_vf acc[RBLOCK_MAX][CPU_VMAX];
#pragma GCC unroll 28
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < V; v++)
            acc[r][v] = cpu_vload(init + r * is + v * CPU_VW);
    for (int t = 0; t < ntap; t++) {
        /* Voxel r = 4g + i is read at xg[g] + i*xs: a few base pointers plus the offsets xs, 2xs, 3xs, instead of
         * one register per voxel offset (which runs out of general registers and spills for large R). */
        const float *xg[(RBLOCK_MAX + 3) / 4];
#pragma GCC unroll 7
        for (int g = 0; g < (R + 3) / 4; g++)
            xg[g] = xp[t] + 4 * g * xs;
        const float *w = wp[t] + wo;
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
    static void conv_kernel_##R##_##V(const float *const *xp, const float *const *wp, ptrdiff_t wo, int ntap,    \
                                      int len, ptrdiff_t xs, ptrdiff_t ws, const float *init, ptrdiff_t is,       \
                                      float *out, ptrdiff_t os, int leaky, float alpha)                           \
    {                                                                                                               \
        conv_block(R, V, xp, wp, wo, ntap, len, xs, ws, init, is, out, os, leaky, alpha);                           \
    }
#define KPTR(R, V) conv_kernel_##R##_##V,

/* KERNEL_TABLE(DEF, PTR, T, name) instantiates DEF(R, V) for V = 1..CPU_VMAX, R = 1..rmax[V], and the table
 * name[V][R] of type T (used for the forward and the filter-gradient kernels). */
#if CPU_VMAX >= 4
#define KERNEL_TABLE(DEF, PTR, T, name)                                                                             \
    SEQ(RMAX_1, DEF, 1) SEQ(RMAX_2, DEF, 2) SEQ(RMAX_3, DEF, 3) SEQ(RMAX_4, DEF, 4)                                 \
    static const T name##_1[] = {NULL, SEQ(RMAX_1, PTR, 1)};                                                        \
    static const T name##_2[] = {NULL, SEQ(RMAX_2, PTR, 2)};                                                        \
    static const T name##_3[] = {NULL, SEQ(RMAX_3, PTR, 3)};                                                        \
    static const T name##_4[] = {NULL, SEQ(RMAX_4, PTR, 4)};                                                        \
    static const T *const name[] = {NULL, name##_1, name##_2, name##_3, name##_4};
static const int rmax[] = {0, RMAX_1, RMAX_2, RMAX_3, RMAX_4};
#else
#define KERNEL_TABLE(DEF, PTR, T, name)                                                                             \
    SEQ(RMAX_1, DEF, 1) SEQ(RMAX_2, DEF, 2)                                                                         \
    static const T name##_1[] = {NULL, SEQ(RMAX_1, PTR, 1)};                                                        \
    static const T name##_2[] = {NULL, SEQ(RMAX_2, PTR, 2)};                                                        \
    static const T *const name[] = {NULL, name##_1, name##_2};
static const int rmax[] = {0, RMAX_1, RMAX_2};
#endif
KERNEL_TABLE(KDEF, KPTR, conv_kernel, kernels)

int cpu_conv_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

#define UNI_BITS 512 /* blocks per row whose uniformity conv_row remembers across passes (others: checked again) */

/* Output voxel o2 by the 1-voxel kernel over all taps in one pass (per element: bias, tap 0, tap 1, ..., then
 * LeakyReLU -- the order of the passes of conv_row), copied to voxels o2 + 1 ... o2 + R - 1.  *prev (-1: none) is
 * the first voxel of the row's previous uniform block: when every tap row holds the same voxel there as here (the
 * background on both sides of the brain), its output is copied instead.  Cout is a multiple of the vector width. */
static void uniform_block(const conv_job *J, conv_scratch *S, int ntap, int len, ptrdiff_t xs, int V, int nchunk,
                          int o2, int R, int *prev, float *yrow)
{
    size_t cout = (size_t)J->cout, cin = (size_t)J->cin;
    float *dst = yrow + (size_t)o2 * cout;
    int same = *prev >= 0;
    for (int t = 0; t < ntap && same; t++)
        same = !memcmp(S->xrow[t] + (size_t)o2 * (size_t)xs, S->xrow[t] + (size_t)*prev * (size_t)xs,
                       cin * sizeof(float));
    if (same) {
        R++; /* copy to o2 too */
        dst = yrow + (size_t)*prev * cout;
    } else {
        for (int t = 0; t < ntap; t++)
            S->xp[t] = S->xrow[t] + (size_t)o2 * (size_t)xs;
        for (int c = 0; c < nchunk; c++) {
            int co = c * V * CPU_VW;
            kernels[V][1](S->xp, S->wp, co, ntap, len, xs, J->ldw, J->bias + co, 0, dst + co, (ptrdiff_t)cout,
                          J->leaky, J->alpha);
        }
        *prev = o2;
    }
    float *out = yrow + (size_t)o2 * cout + (same ? 0 : cout);
    for (int r = 1; r < R; r++, out += cout)
        for (size_t c = 0; c < cout; c += CPU_VW)
            cpu_vstore(out + c, cpu_vload(dst + c));
}

/* The channel path: weights (k0,k1,k2,Cin,ldw).  Cout is covered by chunks of V vectors.
 *
 * When every chunk is V whole vectors (the U-Net's 16 and 32 channels), a row runs in passes of g taps: in a pass
 * each block of voxels runs every chunk, so the pass's weights (all of Cout) stay in L1 while its blocks stream the
 * pass's input rows once -- instead of every block streaming all k0*k1 taps' weights from L2 (for 64 -> 32
 * channels, 221 KB per block of 12 voxels), and with 16 registers (AVX2, Cout = 32 in two chunks) the input rows
 * twice.  Between passes the partial sums wait in y; each element still sums bias, tap 0, tap 1, ... in order, so
 * the result is bitwise the one-pass result.  Other Cout: all taps in one pass per chunk, the chunk that pads
 * channels through the block buffer. */
static void conv_row(const conv_job *J, int o0, int o1, conv_scratch *S, float *yrow)
{
    int cin = J->cin, cout = J->cout;
    int len = J->k[2] * cin;
    size_t slab = (size_t)len * (size_t)J->ldw; /* weights of one (a, b) */
    int ntap = cpu_conv_rows(J, o0, o1, S, 1);
    int m2 = J->m[2];
    ptrdiff_t xs = (ptrdiff_t)J->s[2] * cin;
    for (int t = 0; t < ntap; t++)
        S->wp[t] = J->w + (size_t)S->tap[t] * slab;
    int V = J->ldw / CPU_VW > CPU_VMAX ? CPU_VMAX : J->ldw / CPU_VW;
    if (cout == J->ldw && J->ldw % (V * CPU_VW) == 0) {
        int nchunk = J->ldw / (V * CPU_VW);
        /* Split the row into nb near-equal blocks of at most rmax[V] voxels. */
        int nb = (m2 + rmax[V] - 1) / rmax[V];
        int base = m2 / nb, extra = m2 % nb;
        uint64_t uniform[UNI_BITS / 64]; /* cpu_conv_block_uniform of the first UNI_BITS blocks, from the first pass */
        int prev = -1;                   /* the last uniform block computed in this row (uniform_block) */
        size_t tap_bytes = (size_t)len * (size_t)J->ldw * sizeof(float);
        int g = tap_bytes >= CONV_PASS_BYTES ? 1 : (int)(CONV_PASS_BYTES / tap_bytes);
        for (int t0 = 0; t0 < ntap || t0 == 0; t0 += g) {
            int nt = ntap - t0 < g ? ntap - t0 : g;
            int leaky = t0 + nt >= ntap && J->leaky;
            for (int blk = 0, o2 = 0; blk < nb; blk++) {
                int R = base + (blk < extra);
                /* uniform blocks: one voxel through every tap in the first pass, copied to the others */
                int uni = t0 == 0 || blk >= UNI_BITS ? cpu_conv_block_uniform(J, S, ntap, o2, R)
                                                     : (int)(uniform[blk / 64] >> (blk % 64) & 1);
                if (t0 == 0 && blk < UNI_BITS)
                    uniform[blk / 64] = (uniform[blk / 64] & ~((uint64_t)1 << (blk % 64))) |
                                        ((uint64_t)uni << (blk % 64));
                if (uni) {
                    if (t0 == 0)
                        uniform_block(J, S, ntap, len, xs, V, nchunk, o2, R, &prev, yrow);
                    o2 += R;
                    continue;
                }
                for (int t = 0; t < nt; t++)
                    S->xp[t] = S->xrow[t0 + t] + (size_t)o2 * (size_t)xs;
                for (int c = 0; c < nchunk; c++) {
                    int co = c * V * CPU_VW;
                    float *dst = yrow + (size_t)o2 * (size_t)cout + co;
                    kernels[V][R](S->xp, S->wp + t0, co, nt, len, xs, J->ldw, t0 == 0 ? J->bias + co : dst,
                                  t0 == 0 ? 0 : cout, dst, cout, leaky, J->alpha);
                }
                o2 += R;
            }
        }
        return;
    }
    for (int co = 0; co < J->ldw;) {
        V = (J->ldw - co) / CPU_VW;
        if (V > CPU_VMAX)
            V = CPU_VMAX;
        int nc = cout - co < V * CPU_VW ? cout - co : V * CPU_VW; /* real channels in this chunk */
        int nb = (m2 + rmax[V] - 1) / rmax[V];
        int base = m2 / nb, extra = m2 % nb;
        for (int blk = 0, o2 = 0; blk < nb; blk++) {
            int R = base + (blk < extra);
            for (int t = 0; t < ntap; t++)
                S->xp[t] = S->xrow[t] + (size_t)o2 * (size_t)xs;
            float *dst = yrow + (size_t)o2 * (size_t)cout + co;
            if (nc == V * CPU_VW) { /* whole vectors: straight into y */
                kernels[V][R](S->xp, S->wp, co, ntap, len, xs, J->ldw, J->bias + co, 0, dst, cout, J->leaky,
                              J->alpha);
            } else { /* padded channels: through the block buffer */
                kernels[V][R](S->xp, S->wp, co, ntap, len, xs, J->ldw, J->bias + co, 0, S->block, V * CPU_VW,
                              J->leaky, J->alpha);
                for (int r = 0; r < R; r++)
                    memcpy(dst + (size_t)r * (size_t)cout, S->block + (size_t)r * (size_t)V * CPU_VW,
                           (size_t)nc * sizeof(float));
            }
            o2 += R;
        }
        co += V * CPU_VW;
    }
}

vxm_status cpu_conv_plan_init(vxm_backend *be, const char *op, const int n[3], int cin, const int m[3], int cout,
                              const vxm_buffer *w, const vxm_buffer *b, const vxm_conv_params *p, long items,
                              size_t extra, conv_plan *P)
{
    memset(P, 0, sizeof *P);
    if (!p || !w)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: missing weights or parameters", op);
    conv_job *J = &P->J;
    for (int d = 0; d < 3; d++) {
        if (p->ksize[d] < 1 || p->stride[d] < 1)
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: kernel %dx%dx%d stride %dx%dx%d", op, p->ksize[0],
                             p->ksize[1], p->ksize[2], p->stride[0], p->stride[1], p->stride[2]);
        J->n[d] = n[d];
        J->m[d] = m[d];
        J->k[d] = p->ksize[d];
        J->s[d] = p->stride[d];
        J->pad[d] = p->pad_lo[d];
        int want = (n[d] + p->stride[d] - 1) / p->stride[d];
        if (m[d] != want)
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output axis %d is %d, expected ceil(%d / %d) = %d", op,
                             d, m[d], n[d], p->stride[d], want);
    }
    J->cin = cin;
    J->cout = cout;
    size_t ktaps = (size_t)J->k[0] * (size_t)J->k[1] * (size_t)J->k[2];
    size_t nw = ktaps * (size_t)J->cin * (size_t)J->cout;
    if (w->n < nw)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: weights hold %zu floats, kernel %dx%dx%dx%dx%d needs %zu",
                         op, w->n, J->k[0], J->k[1], J->k[2], J->cin, J->cout, nw);
    if (b && b->n < (size_t)J->cout)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: bias holds %zu floats, need %d", op, b->n, J->cout);
    J->ldw = (J->cout + CPU_VW - 1) / CPU_VW * CPU_VW;
    J->span = (J->m[2] - 1) * J->s[2] + J->k[2];
    int rowvox = J->span > J->n[2] ? J->span : J->n[2]; /* a whole input row fits too (loaders, narrow path) */
    J->rowlen = ((size_t)rowvox * (size_t)J->cin + CPU_VW - 1) / CPU_VW * CPU_VW;
    J->leaky = p->leaky;
    J->alpha = p->alpha;
    const char *uni = getenv("VXM_CPU_UNIFORM"); /* "0": every block in full (tests/test_conv_uniform.c, bench) */
    J->uniform = !(uni && !strcmp(uni, "0"));

    int nt = cpu_threads(be);
    double flops = 2.0 * (double)nw * (double)J->m[0] * (double)J->m[1] * (double)J->m[2];
    if (flops < 4e6 || items < 2)
        nt = 1;
    if (nt > items)
        nt = (int)items;
    P->nt = nt;
    P->narrow = cpu_conv_narrow_fits(J->cin, J->cout);
    P->ntap2 = (size_t)J->k[0] * (size_t)J->k[1];
    P->nslot = P->narrow ? P->ntap2 : (size_t)(J->k[0] + 1) * (size_t)(J->k[1] + 1);
    P->extra = (extra + 15) / 16 * 16; /* each thread's part stays 64-byte aligned */
    P->per_thread = P->nslot * J->rowlen + (size_t)RBLOCK_MAX * CPU_VMAX * CPU_VW + P->extra;
    P->per_thread = (P->per_thread + 15) / 16 * 16;
    /* weights: as stored when Cout is a vector multiple, else repacked (zero-padded rows, or the narrow layout) */
    size_t nwp = P->narrow ? nw : J->ldw == J->cout ? 0 : ktaps * (size_t)J->cin * (size_t)J->ldw;
    P->bias = cpu_alloc_floats((size_t)J->ldw);
    P->wpack = nwp ? cpu_alloc_floats(nwp) : NULL;
    P->scratch = cpu_alloc_floats(P->per_thread * (size_t)nt);
    P->ptrs = malloc(3 * P->ntap2 * (size_t)nt * sizeof *P->ptrs);
    P->taps = malloc(P->ntap2 * (size_t)nt * sizeof *P->taps);
    P->keys = P->narrow ? NULL : malloc(P->nslot * (size_t)nt * sizeof *P->keys);
    if (!P->bias || (nwp && !P->wpack) || !P->scratch || !P->ptrs || !P->taps || (!P->narrow && !P->keys)) {
        cpu_conv_plan_free(P);
        return cpu_nomem(be, (P->per_thread * (size_t)nt + nwp + (size_t)J->ldw) * sizeof(float));
    }
    memset(P->bias, 0, (size_t)J->ldw * sizeof(float));
    if (b)
        memcpy(P->bias, b->data, (size_t)J->cout * sizeof(float));
    J->bias = P->bias;
    J->w = w->data;
    if (P->narrow) {
        cpu_conv_narrow_pack(J, w->data, P->wpack);
        J->w = P->wpack;
    } else if (P->wpack) {
        /* zero-pad every weight row from Cout to ldw floats */
        size_t nrows = ktaps * (size_t)J->cin;
        memset(P->wpack, 0, nwp * sizeof(float));
        for (size_t r = 0; r < nrows; r++)
            memcpy(P->wpack + r * (size_t)J->ldw, w->data + r * (size_t)J->cout, (size_t)J->cout * sizeof(float));
        J->w = P->wpack;
    }
    return VXM_OK;
}

void cpu_conv_plan_free(conv_plan *P)
{
    free(P->bias);
    free(P->wpack);
    free(P->scratch);
    free(P->ptrs);
    free(P->taps);
    free(P->keys);
    P->bias = P->wpack = P->scratch = NULL;
    P->ptrs = NULL;
    P->taps = NULL;
    P->keys = NULL;
}

float *cpu_conv_plan_thread(const conv_plan *P, int tid, conv_scratch *S)
{
    S->rows = P->scratch + (size_t)tid * P->per_thread;
    S->block = S->rows + P->nslot * P->J.rowlen;
    S->key = P->keys ? P->keys + (size_t)tid * P->nslot : NULL;
    for (size_t i = 0; S->key && i < P->nslot; i++)
        S->key[i] = -1;
    S->xrow = P->ptrs + (size_t)tid * 3 * P->ntap2;
    S->xp = S->xrow + P->ntap2;
    S->wp = S->xp + P->ntap2;
    S->tap = P->taps + (size_t)tid * P->ntap2;
    return S->block + (size_t)RBLOCK_MAX * CPU_VMAX * CPU_VW;
}

void cpu_conv_plan_row(const conv_plan *P, int o0, int o1, conv_scratch *S, float *yrow)
{
    if (P->narrow)
        cpu_conv_narrow_row(&P->J, o0, o1, S, yrow);
    else
        conv_row(&P->J, o0, o1, S, yrow);
}

void cpu_conv_plan_run(const conv_plan *P)
{
    const conv_job *J = &P->J;
    int nt = P->nt;
    /* Work items: a band of up to 8 output rows along axis 1 taken through a range of planes o0, so that the
     * input rows a band reads stay in this core's cache from one plane to the next (each input row feeds
     * k0 x k1 output rows).  About 4 items per thread for balance; planes are split only when bands are few. */
    int band = J->m[1] / (4 * nt);
    band = band < 1 ? 1 : band > 8 ? 8 : band;
    int nband = (J->m[1] + band - 1) / band;
    int nsplit = (4 * nt + nband - 1) / nband;
    nsplit = nsplit > J->m[0] ? J->m[0] : nsplit;
    int nitem = nband * nsplit;
    size_t rowsize = (size_t)J->m[2] * (size_t)J->cout;
#pragma omp parallel num_threads(nt)
    {
        conv_scratch S;
        cpu_conv_plan_thread(P, cpu_conv_thread_id(), &S);
#pragma omp for schedule(dynamic, 1)
        for (int it = 0; it < nitem; it++) {
            int bi = it % nband, part = it / nband;
            int o0_end = (int)((long)(part + 1) * J->m[0] / nsplit);
            for (int o0 = (int)((long)part * J->m[0] / nsplit); o0 < o0_end; o0++)
                for (int o1 = bi * band; o1 < J->m[1] && o1 < (bi + 1) * band; o1++)
                    cpu_conv_plan_row(P, o0, o1, &S, J->y + ((size_t)o0 * (size_t)J->m[1] + (size_t)o1) * rowsize);
        }
    }
}

vxm_status cpu_conv(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b,
                    const vxm_conv_params *p, vxm_tensor *y)
{
    static const char op[] = "conv";
    vxm_status st;
    if ((st = cpu_check_tensor(be, x, op, "input")) || (st = cpu_check_tensor(be, y, op, "output")))
        return st;
    if (y->buf == x->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output must not alias the input", op);
    conv_plan P;
    if ((st = cpu_conv_plan_init(be, op, x->shape, x->channels, y->shape, y->channels, w, b, p,
                                 (long)y->shape[0] * y->shape[1], 0, &P)))
        return st;
    P.J.x = x->buf->data;
    P.J.y = y->buf->data;
    cpu_conv_plan_run(&P);
    cpu_conv_plan_free(&P);
    return VXM_OK;
}

/* ---- backward (training doc §2.7; backend.h documents each op) ------------------------------------------- */

/* Backward data, one axis.  With stride s, input index i = q*s + r (residue r) receives from output o through
 * the taps t = i + pad - o*s, i.e. t = t0 + s*j with t0 = (r + pad) mod s, and then o = q + base - j with
 * base = (r + pad - t0) / s.  Flipping the sub-kernel (j' = K-1-j) turns this into the stride-1 cross-correlation
 * o = q - pad' + j' with pad' = K-1-base: the forward conv of dy with the flipped, transposed taps of this
 * residue.  Stride 1 has one residue, K = k and pad' = k-1-pad (the classic "full" correlation). */
typedef struct bd_axis {
    int t0, K, pad; /* first tap, taps in the sub-kernel, forward padding of the sub-conv */
    int nq;         /* input indices with this residue: i = q*s + r, q < nq */
} bd_axis;

static bd_axis bd_axis_at(int n, int k, int s, int pad, int r)
{
    bd_axis a;
    a.t0 = (r + pad) % s;
    a.K = a.t0 < k ? (k - a.t0 + s - 1) / s : 0;
    a.pad = a.K - 1 - (r + pad - a.t0) / s;
    a.nq = (n - r + s - 1) / s;
    return a;
}

/* dx[q*s + r] = src[q] (or 0 when src is NULL) for the q < nq of every axis; src has dx's channels on the dy
 * grid m. */
static void bd_scatter(const float *src, const int m[3], const int s[3], const int r[3], const bd_axis ax[3],
                       float *dx, const int n[3], int C, int nt)
{
    long rows = (long)ax[0].nq * ax[1].nq;
    size_t c = (size_t)C;
#pragma omp parallel for num_threads(nt) schedule(static) if ((size_t)rows * (size_t)ax[2].nq * c >= CPU_PAR_MIN)
    for (long row = 0; row < rows; row++) {
        size_t q0 = (size_t)(row / ax[1].nq), q1 = (size_t)(row % ax[1].nq);
        size_t i0 = q0 * (size_t)s[0] + (size_t)r[0], i1 = q1 * (size_t)s[1] + (size_t)r[1];
        float *d = dx + ((i0 * (size_t)n[1] + i1) * (size_t)n[2] + (size_t)r[2]) * c;
        const float *p = src ? src + (q0 * (size_t)m[1] + q1) * (size_t)m[2] * c : NULL;
        for (int q2 = 0; q2 < ax[2].nq; q2++, d += (size_t)s[2] * c) {
            if (p)
                memcpy(d, p + (size_t)q2 * c, c * sizeof(float));
            else
                memset(d, 0, c * sizeof(float));
        }
    }
}

/* Shape and argument checks shared by the data and filter gradients: x (or dx) of Cin channels, dy of Cout
 * channels on the grid ceil(n / s). */
static vxm_status conv_backward_check(vxm_backend *be, const char *op, const vxm_tensor *x, const vxm_tensor *dy,
                                      const vxm_conv_params *p)
{
    vxm_status st;
    if ((st = cpu_check_tensor(be, x, op, "input")) || (st = cpu_check_tensor(be, dy, op, "output gradient")))
        return st;
    if (!p)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: missing parameters", op);
    if (x->buf == dy->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: input and output gradient must not alias", op);
    for (int d = 0; d < 3; d++) {
        if (p->ksize[d] < 1 || p->stride[d] < 1 || p->pad_lo[d] < 0)
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: kernel %d stride %d padding %d along axis %d", op,
                             p->ksize[d], p->stride[d], p->pad_lo[d], d);
        int want = (x->shape[d] + p->stride[d] - 1) / p->stride[d];
        if (dy->shape[d] != want)
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: gradient axis %d is %d, expected ceil(%d / %d) = %d",
                             op, d, dy->shape[d], x->shape[d], p->stride[d], want);
    }
    return VXM_OK;
}

vxm_status cpu_conv_backward_data(vxm_backend *be, const vxm_tensor *dy, const vxm_buffer *w,
                                  const vxm_conv_params *p, vxm_tensor *dx)
{
    static const char op[] = "conv_backward_data";
    vxm_status st;
    if ((st = conv_backward_check(be, op, dx, dy, p)))
        return st;
    int cin = dx->channels, cout = dy->channels;
    const int *k = p->ksize, *s = p->stride;
    size_t nw = (size_t)k[0] * (size_t)k[1] * (size_t)k[2] * (size_t)cin * (size_t)cout;
    if (!w || w->n < nw)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: weights hold %zu floats, kernel needs %zu", op,
                         w ? w->n : (size_t)0, nw);
    int unit = s[0] == 1 && s[1] == 1 && s[2] == 1;
    vxm_buffer wsub = {cpu_alloc_floats(nw), nw};
    vxm_buffer tbuf = {NULL, unit ? 0 : (size_t)dy->shape[0] * dy->shape[1] * dy->shape[2] * (size_t)cin};
    if (!unit)
        tbuf.data = cpu_alloc_floats(tbuf.n);
    if (!wsub.data || (!unit && !tbuf.data)) {
        free(wsub.data);
        free(tbuf.data);
        return cpu_nomem(be, (nw + tbuf.n) * sizeof(float));
    }
    vxm_tensor tmp = {{dy->shape[0], dy->shape[1], dy->shape[2]}, cin, &tbuf};
    int r[3];
    for (r[0] = 0; r[0] < s[0] && !st; r[0]++)
        for (r[1] = 0; r[1] < s[1] && !st; r[1]++)
            for (r[2] = 0; r[2] < s[2] && !st; r[2]++) {
                bd_axis ax[3];
                for (int d = 0; d < 3; d++)
                    ax[d] = bd_axis_at(dx->shape[d], k[d], s[d], p->pad_lo[d], r[d]);
                if (ax[0].nq < 1 || ax[1].nq < 1 || ax[2].nq < 1)
                    continue;
                if (ax[0].K < 1 || ax[1].K < 1 || ax[2].K < 1) { /* no tap reaches this residue */
                    bd_scatter(NULL, dy->shape, s, r, ax, dx->buf->data, dx->shape, cin, cpu_threads(be));
                    continue;
                }
                /* wsub (K0,K1,K2,Cout,Cin) = w (k0,k1,k2,Cin,Cout) at the flipped taps of this residue */
                size_t e = 0;
                for (int j0 = 0; j0 < ax[0].K; j0++)
                    for (int j1 = 0; j1 < ax[1].K; j1++)
                        for (int j2 = 0; j2 < ax[2].K; j2++) {
                            size_t t0 = (size_t)(ax[0].t0 + s[0] * (ax[0].K - 1 - j0));
                            size_t t1 = (size_t)(ax[1].t0 + s[1] * (ax[1].K - 1 - j1));
                            size_t t2 = (size_t)(ax[2].t0 + s[2] * (ax[2].K - 1 - j2));
                            const float *src = w->data + ((t0 * (size_t)k[1] + t1) * (size_t)k[2] + t2) *
                                                             (size_t)cin * (size_t)cout;
                            for (int co = 0; co < cout; co++)
                                for (int ci = 0; ci < cin; ci++)
                                    wsub.data[e++] = src[(size_t)ci * (size_t)cout + (size_t)co];
                        }
                vxm_conv_params q = {{ax[0].K, ax[1].K, ax[2].K}, {1, 1, 1}, {ax[0].pad, ax[1].pad, ax[2].pad}, 0,
                                     0.0f};
                st = cpu_conv(be, dy, &wsub, NULL, &q, unit ? dx : &tmp);
                if (!st && !unit)
                    bd_scatter(tbuf.data, dy->shape, s, r, ax, dx->buf->data, dx->shape, cin, cpu_threads(be));
            }
    free(wsub.data);
    free(tbuf.data);
    return st;
}

/* Filter gradient kernel: for R consecutive j (= c*Cin + ci of one tap row) and V vectors of output channels,
 * acc[r][v] = sum over cnt output voxels o of x[o*xs + r] * dy[o*ldy + v*VW], then dw[r*ldw + v*VW] += acc[r][v].
 * The transpose of the forward block: the reduction runs over voxels with the accumulators in registers. */
static inline __attribute__((always_inline)) void dw_block(const int R, const int V, const float *x, ptrdiff_t xs,
                                                           const float *dy, ptrdiff_t ldy, int cnt, float *dw,
                                                           ptrdiff_t ldw)
{
    cpu_vf acc[RBLOCK_MAX][CPU_VMAX];
    cpu_vf one = cpu_vset1(1.0f);
#pragma GCC unroll 112
    for (int i = 0; i < R * V; i++)
        acc[i / V][i % V] = cpu_vset1(0.0f);
    for (int o = 0; o < cnt; o++) {
        cpu_vf g[CPU_VMAX];
#pragma GCC unroll 4
        for (int v = 0; v < V; v++)
            g[v] = cpu_vload(dy + v * CPU_VW);
#pragma GCC unroll 28
        for (int r = 0; r < R; r++) {
            cpu_vf xb = cpu_vset1(x[r]);
#pragma GCC unroll 4
            for (int v = 0; v < V; v++)
                acc[r][v] = cpu_vfma(xb, g[v], acc[r][v]);
        }
        x += xs;
        dy += ldy;
    }
    /* fma with 1 is an exactly rounded add */
#pragma GCC unroll 28
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < V; v++)
            cpu_vstore(dw + r * ldw + v * CPU_VW, cpu_vfma(acc[r][v], one, cpu_vload(dw + r * ldw + v * CPU_VW)));
}

typedef void (*dw_kernel)(const float *x, ptrdiff_t xs, const float *dy, ptrdiff_t ldy, int cnt, float *dw,
                          ptrdiff_t ldw);
#define DWDEF(R, V)                                                                                                 \
    static void dw_kernel_##R##_##V(const float *x, ptrdiff_t xs, const float *dy, ptrdiff_t ldy, int cnt,       \
                                    float *dw, ptrdiff_t ldw)                                                     \
    {                                                                                                               \
        dw_block(R, V, x, xs, dy, ldy, cnt, dw, ldw);                                                               \
    }
#define DWPTR(R, V) dw_kernel_##R##_##V,

KERNEL_TABLE(DWDEF, DWPTR, dw_kernel, dw_kernels)

/* Adds the contribution of output row (o0, o1) to part (k0,k1,k2,Cin,ldw): per in-range tap row (a, b), the
 * (k2*Cin x m2)(m2 x Cout) product of the zero-padded input row buffer with the row of dy (ldw floats a voxel). */
static void dw_row(const conv_job *J, int o0, int o1, conv_scratch *S, const float *g, float *part)
{
    int len = J->k[2] * J->cin;
    size_t slab = (size_t)len * (size_t)J->ldw;
    ptrdiff_t xs = (ptrdiff_t)J->s[2] * J->cin;
    int ntap = cpu_conv_rows(J, o0, o1, S, 1);
    for (int co = 0; co < J->ldw;) {
        int V = (J->ldw - co) / CPU_VW;
        V = V > CPU_VMAX ? CPU_VMAX : V;
        int nb = (len + rmax[V] - 1) / rmax[V]; /* near-equal blocks of j */
        int base = len / nb, extra = len % nb;
        for (int t = 0; t < ntap; t++)
            for (int blk = 0, j = 0; blk < nb; blk++) {
                int R = base + (blk < extra);
                dw_kernels[V][R](S->xrow[t] + j, xs, g + co, J->ldw, J->m[2],
                                 part + (size_t)S->tap[t] * slab + (size_t)j * (size_t)J->ldw + (size_t)co, J->ldw);
                j += R;
            }
        co += V * CPU_VW;
    }
}

/* Narrow filter gradient (cpu_conv_narrow_fits: Cout <= 4, Cin a multiple of the vector width; the flow
 * convolutions), vectorized over j instead of over the output channels, which would fill 3 of 16 lanes.  Item r of
 * a block is one vector of VW consecutive j of one tap row, read at xp[r] + o*xs; acc[r][co] += x * dy[o][co]
 * broadcast, then lane l is added to dw[r][l*ldw + co]. */
#define DWN_R 6
static inline __attribute__((always_inline)) void dwn_block(const int R, const int CO, const float *const *xp,
                                                            ptrdiff_t xs, const float *dy, int cnt, float *const *dw,
                                                            ptrdiff_t ldw)
{
    cpu_vf acc[DWN_R][4];
    float lane[CPU_VW];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int co = 0; co < CO; co++)
            acc[r][co] = cpu_vset1(0.0f);
    for (int o = 0; o < cnt; o++) {
        cpu_vf g[4];
#pragma GCC unroll 4
        for (int co = 0; co < CO; co++)
            g[co] = cpu_vset1(dy[o * CO + co]);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            cpu_vf xv = cpu_vload(xp[r] + o * xs);
#pragma GCC unroll 4
            for (int co = 0; co < CO; co++)
                acc[r][co] = cpu_vfma(xv, g[co], acc[r][co]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int co = 0; co < CO; co++) {
            cpu_vstore(lane, acc[r][co]);
            for (int l = 0; l < CPU_VW; l++)
                dw[r][l * ldw + co] += lane[l];
        }
}

typedef void (*dwn_kernel)(const float *const *xp, ptrdiff_t xs, const float *dy, int cnt, float *const *dw,
                           ptrdiff_t ldw);
#define DWNDEF(R, C)                                                                                                \
    static void dwn_kernel_##R##_##C(const float *const *xp, ptrdiff_t xs, const float *dy, int cnt,             \
                                     float *const *dw, ptrdiff_t ldw)                                             \
    {                                                                                                               \
        dwn_block(R, C, xp, xs, dy, cnt, dw, ldw);                                                                  \
    }
#define DWNPTR(R, C) dwn_kernel_##R##_##C,
SEQ(6, DWNDEF, 1)
SEQ(6, DWNDEF, 2)
SEQ(6, DWNDEF, 3)
SEQ(6, DWNDEF, 4)
static const dwn_kernel dwn_kernels[5][DWN_R + 1] = {{NULL},
                                                     {NULL, SEQ(6, DWNPTR, 1)},
                                                     {NULL, SEQ(6, DWNPTR, 2)},
                                                     {NULL, SEQ(6, DWNPTR, 3)},
                                                     {NULL, SEQ(6, DWNPTR, 4)}};

/* dw_row for the narrow case: the items (tap row, vector of j) of the row go in near-equal blocks of <= DWN_R,
 * so one broadcast of dy feeds several tap rows. */
static void dwn_row(const conv_job *J, int o0, int o1, conv_scratch *S, const float *g, float *part)
{
    int nv = J->k[2] * J->cin / CPU_VW;
    size_t slab = (size_t)J->k[2] * (size_t)J->cin * (size_t)J->ldw;
    int items = cpu_conv_rows(J, o0, o1, S, 1) * nv;
    if (items == 0)
        return;
    int nb = (items + DWN_R - 1) / DWN_R, base = items / nb, extra = items % nb;
    const float *xp[DWN_R];
    float *dp[DWN_R];
    for (int blk = 0, it = 0; blk < nb; blk++) {
        int R = base + (blk < extra);
        for (int r = 0; r < R; r++) {
            int t = (it + r) / nv, v = (it + r) % nv;
            xp[r] = S->xrow[t] + (size_t)v * CPU_VW;
            dp[r] = part + (size_t)S->tap[t] * slab + (size_t)v * CPU_VW * (size_t)J->ldw;
        }
        dwn_kernels[J->cout][R](xp, (ptrdiff_t)J->s[2] * J->cin, g, J->m[2], dp, J->ldw);
        it += R;
    }
}

/* Determinism of the reductions over voxels (filter and bias gradients): the output rows (o0, o1) are cut into
 * conv_nchunks() contiguous chunks, a function of the shape only; each chunk is summed in float by one thread into
 * its own partial, and the partials are added in chunk order in double.  Any thread count gives the same bits. */
#define CONV_GRAD_CHUNKS 64
static int conv_nchunks(long rows)
{
    return rows < CONV_GRAD_CHUNKS ? (int)rows : CONV_GRAD_CHUNKS;
}

static long chunk_first_row(long rows, int nchunk, int c)
{
    return (long)((long long)rows * c / nchunk);
}

vxm_status cpu_conv_backward_filter(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy,
                                    const vxm_conv_params *p, vxm_buffer *dw)
{
    static const char op[] = "conv_backward_filter";
    vxm_status st;
    if ((st = conv_backward_check(be, op, x, dy, p)))
        return st;
    conv_job J;
    memset(&J, 0, sizeof J);
    for (int d = 0; d < 3; d++) {
        J.n[d] = x->shape[d];
        J.m[d] = dy->shape[d];
        J.k[d] = p->ksize[d];
        J.s[d] = p->stride[d];
        J.pad[d] = p->pad_lo[d];
    }
    J.cin = x->channels;
    J.cout = dy->channels;
    size_t ktaps = (size_t)J.k[0] * (size_t)J.k[1] * (size_t)J.k[2];
    size_t nw = ktaps * (size_t)J.cin * (size_t)J.cout;
    if (!dw || dw->n < nw)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: gradient buffer holds %zu floats, kernel needs %zu", op,
                         dw ? dw->n : (size_t)0, nw);
    J.ldw = (J.cout + CPU_VW - 1) / CPU_VW * CPU_VW;
    J.span = (J.m[2] - 1) * J.s[2] + J.k[2];
    J.rowlen = ((size_t)J.span * (size_t)J.cin + CPU_VW - 1) / CPU_VW * CPU_VW;
    J.x = x->buf->data;

    long rows = (long)J.m[0] * J.m[1];
    int nchunk = conv_nchunks(rows);
    int nt = cpu_threads(be);
    if (2.0 * (double)nw * (double)rows * (double)J.m[2] < 4e6)
        nt = 1;
    nt = nt > nchunk ? nchunk : nt;
    size_t npart = ktaps * (size_t)J.cin * (size_t)J.ldw; /* one partial, (k0,k1,k2,Cin,ldw) */
    size_t ntap2 = (size_t)J.k[0] * (size_t)J.k[1];
    int narrow = cpu_conv_narrow_fits(J.cin, J.cout);
    int padg = !narrow && J.ldw != J.cout; /* dy rows copied with zero-padded channels */
    size_t per_thread = ntap2 * J.rowlen + (padg ? (size_t)J.m[2] * (size_t)J.ldw : 0);
    float *part = cpu_alloc_floats(npart * (size_t)nchunk);
    float *scratch = cpu_alloc_floats(per_thread * (size_t)nt);
    const float **ptrs = malloc(ntap2 * (size_t)nt * sizeof *ptrs);
    int *taps = malloc(ntap2 * (size_t)nt * sizeof *taps);
    if (!part || !scratch || !ptrs || !taps) {
        free(part);
        free(scratch);
        free(ptrs);
        free(taps);
        return cpu_nomem(be, (npart * (size_t)nchunk + per_thread * (size_t)nt) * sizeof(float));
    }
    const float *gy = dy->buf->data;
#pragma omp parallel num_threads(nt)
    {
        int tid = cpu_conv_thread_id();
        conv_scratch S;
        memset(&S, 0, sizeof S);
        S.rows = scratch + (size_t)tid * per_thread;
        float *gpad = S.rows + ntap2 * J.rowlen;
        S.xrow = ptrs + (size_t)tid * ntap2;
        S.tap = taps + (size_t)tid * ntap2;
#pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < nchunk; c++) {
            float *pc = part + (size_t)c * npart;
            memset(pc, 0, npart * sizeof(float));
            for (long row = chunk_first_row(rows, nchunk, c); row < chunk_first_row(rows, nchunk, c + 1); row++) {
                const float *g = gy + (size_t)row * (size_t)J.m[2] * (size_t)J.cout;
                if (padg) {
                    for (int o2 = 0; o2 < J.m[2]; o2++) {
                        float *d = gpad + (size_t)o2 * (size_t)J.ldw;
                        memcpy(d, g + (size_t)o2 * (size_t)J.cout, (size_t)J.cout * sizeof(float));
                        memset(d + J.cout, 0, (size_t)(J.ldw - J.cout) * sizeof(float));
                    }
                    g = gpad;
                }
                (narrow ? dwn_row : dw_row)(&J, (int)(row / J.m[1]), (int)(row % J.m[1]), &S, g, pc);
            }
        }
        /* fixed-order combination, parallel over weights */
        long nrow = (long)(ktaps * (size_t)J.cin);
#pragma omp for schedule(static)
        for (long e = 0; e < nrow; e++)
            for (int co = 0; co < J.cout; co++) {
                double sum = 0.0;
                for (int c = 0; c < nchunk; c++)
                    sum += (double)part[(size_t)c * npart + (size_t)e * (size_t)J.ldw + (size_t)co];
                dw->data[(size_t)e * (size_t)J.cout + (size_t)co] = (float)sum;
            }
    }
    free(part);
    free(scratch);
    free(ptrs);
    free(taps);
    return VXM_OK;
}

vxm_status cpu_conv_backward_bias(vxm_backend *be, const vxm_tensor *dy, vxm_buffer *db)
{
    static const char op[] = "conv_backward_bias";
    vxm_status st;
    if ((st = cpu_check_tensor(be, dy, op, "output gradient")))
        return st;
    size_t C = (size_t)dy->channels, m2 = (size_t)dy->shape[2];
    if (!db || db->n < C)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: gradient buffer holds %zu floats, need %zu", op,
                         db ? db->n : (size_t)0, C);
    long rows = (long)dy->shape[0] * dy->shape[1];
    int nchunk = conv_nchunks(rows);
    float *part = cpu_alloc_floats((size_t)nchunk * C);
    if (!part)
        return cpu_nomem(be, (size_t)nchunk * C * sizeof(float));
    const float *g = dy->buf->data;
#pragma omp parallel num_threads(cpu_threads(be)) if (vxm_tensor_numel(dy) >= CPU_PAR_MIN)
    {
#pragma omp for schedule(static)
        for (int c = 0; c < nchunk; c++) {
            float *pc = part + (size_t)c * C;
            memset(pc, 0, C * sizeof(float));
            const float *v = g + (size_t)chunk_first_row(rows, nchunk, c) * m2 * C;
            const float *end = g + (size_t)chunk_first_row(rows, nchunk, c + 1) * m2 * C;
            for (; v < end; v += C)
                for (size_t ch = 0; ch < C; ch++)
                    pc[ch] += v[ch];
        }
#pragma omp for schedule(static)
        for (size_t ch = 0; ch < C; ch++) {
            double sum = 0.0;
            for (int c = 0; c < nchunk; c++)
                sum += (double)part[(size_t)c * C + ch];
            db->data[ch] = (float)sum;
        }
    }
    free(part);
    return VXM_OK;
}
