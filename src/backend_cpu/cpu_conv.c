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
 * The backward ops are in cpu_conv_backward.c; the register blocking both use in cpu_conv_blocking.h. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend_cpu/cpu_conv.h"
#include "backend_cpu/cpu_conv_blocking.h"
#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_simd.h"

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

#define KDEF(R, V)                                                                                                  \
    static void conv_kernel_##R##_##V(const float *const *xp, const float *const *wp, ptrdiff_t wo, int ntap,    \
                                      int len, ptrdiff_t xs, ptrdiff_t ws, const float *init, ptrdiff_t is,       \
                                      float *out, ptrdiff_t os, int leaky, float alpha)                           \
    {                                                                                                               \
        conv_block(R, V, xp, wp, wo, ntap, len, xs, ws, init, is, out, os, leaky, alpha);                           \
    }
#define KPTR(R, V) conv_kernel_##R##_##V,

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

int cpu_conv_in_passes(int cout)
{
    int ldw = (cout + CPU_VW - 1) / CPU_VW * CPU_VW;
    int V = ldw / CPU_VW > CPU_VMAX ? CPU_VMAX : ldw / CPU_VW;
    return cout == ldw && ldw % (V * CPU_VW) == 0;
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
    if (cpu_conv_in_passes(cout)) {
        int nchunk = J->ldw / (V * CPU_VW);
        ptrdiff_t ys = J->ys[2]; /* output voxel stride: Cout, or more for a strided view (cpu_conv_fused.c) */
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
                    float *dst = yrow + (size_t)o2 * (size_t)ys + co;
                    int from_bias = t0 == 0 && !J->accumulate;
                    kernels[V][R](S->xp, S->wp + t0, co, nt, len, xs, J->ldw, from_bias ? J->bias + co : dst,
                                  from_bias ? 0 : ys, dst, ys, leaky, J->alpha);
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
    J->ys[2] = J->cout; /* dense output; a strided view is set by the caller (cpu_conv_fused.c) */
    J->ys[1] = (ptrdiff_t)J->m[2] * J->cout;
    J->ys[0] = (ptrdiff_t)J->m[1] * J->ys[1];

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
                    cpu_conv_plan_row(P, o0, o1, &S, J->y + (ptrdiff_t)o0 * J->ys[0] + (ptrdiff_t)o1 * J->ys[1]);
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
