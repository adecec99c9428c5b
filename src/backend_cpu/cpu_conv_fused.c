/* Fused convolutions of the U-Net (backend.h conv_pool / conv_upcat; graph/fuse.h), on cpu_conv.c's kernels through
 * its plan (cpu_conv.h), so that every output element is the same sum in the same order as the unfused op sequence
 * and the results are bitwise equal to it (cpu_conv.c: the order per element depends on the row and the tap loop
 * only) -- except conv_upcat's folded path below, which does fewer FLOPs in another order.  Issue 12: a
 * full-resolution tensor that feeds one consumer is never stored.
 *
 * conv_pool: a thread computes the f0 x f1 conv rows of one pooled row into its own scratch and max-reduces them in
 * cpu_maxpool's order (first value, then `v > o ? v : o` over the block in lexicographic order, §2.3), dropping
 * the trailing conv rows and voxels 'valid' pooling drops.  Each pooled row is made by one thread: deterministic
 * for any thread count.
 *
 * conv_upcat: the conv's row buffers are filled from the two sources -- voxel t of input row (i0, i1) is
 * a[i0/f0, i1/f1, t/f2] (nearest upsampling, §2.4) followed by skip[i0, i1, t] (concatenation, §2.5) -- instead of
 * from a materialised concatenation; the kernels then run unchanged.  Where the upsampling is by 2 into 3-tap
 * convolutions, the folded path (upcat_folded) is taken instead. */
#include <stdlib.h>
#include <string.h>

#include "backend_cpu/cpu_conv.h"
#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_simd.h"

/* VXM_OK when every factor is at least 1. */
static vxm_status factors_ok(vxm_backend *be, const int f[3], const char *op)
{
    int ok = f && f[0] >= 1 && f[1] >= 1 && f[2] >= 1;
    return ok ? VXM_OK : vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: factors must be >= 1", op);
}

/* The pooled row of q2n voxels from the f0*f1 conv rows in blk (rowsize floats apart), C a multiple of the vector
 * width: the first value, then `v > o ? v : o` over the block in lexicographic order (cpu_vmax), as the scalar
 * loop of cpu_conv_pool and cpu_maxpool. */
static void pool_rows_vec(const float *blk, size_t rowsize, int q2n, int C, const int f[3], float *out)
{
    for (int q2 = 0; q2 < q2n; q2++)
        for (int ch = 0; ch < C; ch += CPU_VW) {
            const float *base = blk + (size_t)q2 * (size_t)f[2] * (size_t)C + (size_t)ch;
            cpu_vf o = cpu_vload(base);
            for (int a = 0; a < f[0]; a++)
                for (int c = 0; c < f[1]; c++)
                    for (int e = (a == 0 && c == 0); e < f[2]; e++)
                        o = cpu_vmax(cpu_vload(base + (size_t)(a * f[1] + c) * rowsize + (size_t)e * (size_t)C), o);
            cpu_vstore(out + (size_t)q2 * (size_t)C + (size_t)ch, o);
        }
}

vxm_status cpu_conv_pool(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b,
                         const vxm_conv_params *p, const int f[3], vxm_tensor *y)
{
    static const char op[] = "conv_pool";
    vxm_status st;
    if ((st = factors_ok(be, f, op)) || (st = cpu_check_tensor(be, x, op, "input")) ||
        (st = cpu_check_tensor(be, y, op, "output")))
        return st;
    if (!p)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: missing parameters", op);
    if (y->buf == x->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output must not alias the input", op);
    int m[3]; /* the conv's grid */
    for (int d = 0; d < 3; d++) {
        m[d] = p->stride[d] >= 1 ? (x->shape[d] + p->stride[d] - 1) / p->stride[d] : 0;
        if (y->shape[d] != m[d] / f[d])
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output axis %d is %d, expected %d / %d = %d", op, d,
                             y->shape[d], m[d], f[d], m[d] / f[d]);
    }
    int C = y->channels;
    size_t rowsize = (size_t)m[2] * (size_t)C; /* one conv row */
    conv_plan P;
    if ((st = cpu_conv_plan_init(be, op, x->shape, x->channels, m, C, w, b, p, (long)y->shape[0] * y->shape[1],
                                 (size_t)f[0] * (size_t)f[1] * rowsize, &P)))
        return st;
    P.J.x = x->buf->data;
    const int *q = y->shape;
    long rows = (long)q[0] * q[1];
    float *out = y->buf->data;
#pragma omp parallel num_threads(P.nt)
    {
        conv_scratch S;
        float *blk = cpu_conv_plan_thread(&P, cpu_conv_thread_id(), &S);
#pragma omp for schedule(static)
        for (long r = 0; r < rows; r++) {
            int q0 = (int)(r / q[1]), q1 = (int)(r % q[1]);
            for (int a = 0; a < f[0]; a++)
                for (int c = 0; c < f[1]; c++)
                    cpu_conv_plan_row(&P, q0 * f[0] + a, q1 * f[1] + c, &S,
                                      blk + (size_t)(a * f[1] + c) * rowsize);
            if (C % CPU_VW == 0) { /* the same order, a vector of channels at a time */
                pool_rows_vec(blk, rowsize, q[2], C, f, out + (size_t)r * (size_t)q[2] * (size_t)C);
                continue;
            }
            for (int q2 = 0; q2 < q[2]; q2++) {
                float *o = out + ((size_t)r * (size_t)q[2] + (size_t)q2) * (size_t)C;
                for (int a = 0; a < f[0]; a++)
                    for (int c = 0; c < f[1]; c++)
                        for (int e = 0; e < f[2]; e++) {
                            const float *v = blk + (size_t)(a * f[1] + c) * rowsize +
                                             (size_t)(q2 * f[2] + e) * (size_t)C;
                            if (a == 0 && c == 0 && e == 0)
                                memcpy(o, v, (size_t)C * sizeof(float));
                            else
                                for (int ch = 0; ch < C; ch++)
                                    o[ch] = v[ch] > o[ch] ? v[ch] : o[ch];
                        }
            }
        }
    }
    cpu_conv_plan_free(&P);
    return VXM_OK;
}

/* The two sources of conv_upcat's input. */
typedef struct upcat_src {
    const vxm_tensor *a, *skip;
    int f[3];
} upcat_src;

/* conv_job loader: voxels [first, first + count) of row (i0, i1) of concat(upsample_f(a), skip). */
static void upcat_load(const conv_job *J, int i0, int i1, int first, int count, float *dst)
{
    const upcat_src *U = J->load_arg;
    const int *na = U->a->shape;
    size_t ca = (size_t)U->a->channels, cs = (size_t)U->skip->channels, cin = (size_t)J->cin;
    const float *ra = U->a->buf->data +
                      ((size_t)(i0 / U->f[0]) * (size_t)na[1] + (size_t)(i1 / U->f[1])) * (size_t)na[2] * ca;
    const float *rs = U->skip->buf->data + ((size_t)i0 * (size_t)J->n[1] + (size_t)i1) * (size_t)J->n[2] * cs;
    for (int t = first; t < first + count; t++, dst += cin) {
        memcpy(dst, ra + (size_t)(t / U->f[2]) * ca, ca * sizeof(float));
        memcpy(dst + ca, rs + (size_t)t * cs, cs * sizeof(float));
    }
}

/* ---- conv_upcat with the upsampling folded into the weights ---------------------------------------------------
 *
 * Along an axis upsampled by 2 (nearest, §2.4) and convolved with 3 taps and SAME padding 1, output voxel o = 2q + p
 * reads the upsampled voxels o - 1, o, o + 1, i.e. coarse voxels q - 1, q, q (p = 0) or q, q, q + 1 (p = 1): two
 * distinct coarse voxels, so for each parity class of outputs the a-part of the convolution is a 2-tap convolution
 * over `a` itself with the weights of the taps that read the same coarse voxel summed (p = 0: {0}, {1, 2}, padding
 * 1; p = 1: {0, 1}, {2}, padding 0 -- the coarse grid's zero padding is exactly the fine grid's).  In 3-D that is
 * 8 taps instead of 27 for the upsampled half of the channels: the U-Net's full-resolution decoder conv does 35 %
 * fewer FLOPs.  Per output element the sum is the bias, the skip channels' 27 taps, then the folded taps of the
 * a channels, then LeakyReLU -- a different order and grouping than the unfused ops, so the result differs from them
 * by float32 rounding (~1e-7 relative; tests/test_fuse.c bounds it), and is still the same for any thread count. */

/* Taps of one folded axis (f = 2, k = 3, pad 1) or of an axis left as it is (f = 1). */
typedef struct fold_axis {
    int k, pad;        /* folded kernel extent and padding */
    int first[3], n[3]; /* folded tap t sums the original taps first[t] .. first[t] + n[t] - 1 */
} fold_axis;

static fold_axis fold_axis_of(int f, int k, int pad, int parity)
{
    fold_axis A = {k, pad, {0, 1, 2}, {1, 1, 1}};
    if (f == 2) {
        A.k = 2;
        A.pad = 1 - parity;
        A.first[0] = 0;
        A.n[0] = parity ? 2 : 1;
        A.first[1] = parity ? 2 : 1;
        A.n[1] = parity ? 1 : 2;
    }
    return A;
}

/* Whether conv_upcat can fold: stride 1, every axis either upsampled by 2 with 3 taps and padding 1 or not
 * upsampled (at most 3 taps), at least one upsampled, and Cout a multiple of 16 -- on every variant the passes path of conv_row
 * (cpu_conv_in_passes, never the narrow kernels, which have no strided accumulating output), so that every variant
 * folds the same layers.  VXM_CPU_FOLD=0 turns folding off (the unfused order, bitwise; bench/openvino_bench.sh's
 * dense-kernel row). */
static int upcat_foldable(const int f[3], const vxm_conv_params *p, int cout)
{
    const char *e = getenv("VXM_CPU_FOLD");
    if (e && !strcmp(e, "0"))
        return 0;
    int folded = 0;
    for (int d = 0; d < 3; d++) {
        if (p->stride[d] != 1 || (f[d] != 1 && f[d] != 2) || p->ksize[d] > 3) /* fold_axis holds 3 taps */
            return 0;
        if (f[d] == 2 && (p->ksize[d] != 3 || p->pad_lo[d] != 1))
            return 0;
        folded += f[d] == 2;
    }
    return folded > 0 && cout % 16 == 0 && cpu_conv_in_passes(cout);
}

static vxm_status upcat_folded(vxm_backend *be, const vxm_tensor *a, const int f[3], const vxm_tensor *skip,
                               const vxm_buffer *w, const vxm_buffer *b, const vxm_conv_params *p, vxm_tensor *y)
{
    static const char op[] = "conv_upcat";
    const int *k = p->ksize;
    size_t ca = (size_t)a->channels, cs = (size_t)skip->channels, cout = (size_t)y->channels, cin = ca + cs;
    size_t ktaps = (size_t)k[0] * (size_t)k[1] * (size_t)k[2];
    if (w->n < ktaps * cin * cout)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: weights hold %zu floats, need %zu", op, w->n,
                         ktaps * cin * cout);
    /* the skip channels' weights (k0,k1,k2,Cs,Cout) and room for one parity class's folded a weights */
    float *ws = cpu_alloc_floats(ktaps * cs * cout), *wa = cpu_alloc_floats(ktaps * ca * cout);
    if (!ws || !wa) {
        free(ws);
        free(wa);
        return cpu_nomem(be, ktaps * cin * cout * sizeof(float));
    }
    for (size_t t = 0; t < ktaps; t++)
        memcpy(ws + t * cs * cout, w->data + (t * cin + ca) * cout, cs * cout * sizeof(float));
    vxm_status st;
    conv_plan P;
    vxm_buffer wsb = {ws, ktaps * cs * cout, 0};
    vxm_conv_params ps = *p;
    ps.leaky = 0; /* LeakyReLU after the a part */
    if ((st = cpu_conv_plan_init(be, op, skip->shape, (int)cs, y->shape, (int)cout, &wsb, b, &ps,
                                 (long)y->shape[0] * y->shape[1], 0, &P)))
        goto done;
    P.J.x = skip->buf->data;
    P.J.y = y->buf->data;
    cpu_conv_plan_run(&P);
    ptrdiff_t dense[3] = {P.J.ys[0], P.J.ys[1], P.J.ys[2]};
    cpu_conv_plan_free(&P);
    for (int cls = 0; cls < f[0] * f[1] * f[2]; cls++) {
        int par[3] = {cls / (f[1] * f[2]), cls / f[2] % f[1], cls % f[2]};
        fold_axis A[3];
        vxm_conv_params pa = *p;
        for (int d = 0; d < 3; d++) {
            A[d] = fold_axis_of(f[d], k[d], p->pad_lo[d], par[d]);
            pa.ksize[d] = A[d].k;
            pa.pad_lo[d] = A[d].pad;
        }
        size_t n = 0; /* folded weights, lexicographic over the folded taps; each a sum in a fixed order */
        for (int t0 = 0; t0 < A[0].k; t0++)
            for (int t1 = 0; t1 < A[1].k; t1++)
                for (int t2 = 0; t2 < A[2].k; t2++, n += ca * cout)
                    for (size_t e = 0; e < ca * cout; e++) {
                        float sum = 0.0f;
                        int any = 0;
                        for (int u0 = A[0].first[t0]; u0 < A[0].first[t0] + A[0].n[t0]; u0++)
                            for (int u1 = A[1].first[t1]; u1 < A[1].first[t1] + A[1].n[t1]; u1++)
                                for (int u2 = A[2].first[t2]; u2 < A[2].first[t2] + A[2].n[t2]; u2++) {
                                    float v = w->data[(((size_t)u0 * k[1] + u1) * k[2] + u2) * cin * cout + e];
                                    sum = any ? sum + v : v;
                                    any = 1;
                                }
                        wa[n + e] = sum;
                    }
        vxm_buffer wab = {wa, n, 0};
        if ((st = cpu_conv_plan_init(be, op, a->shape, (int)ca, a->shape, (int)cout, &wab, NULL, &pa,
                                     (long)a->shape[0] * a->shape[1], 0, &P)))
            goto done;
        P.J.x = a->buf->data;
        P.J.y = y->buf->data + par[0] * dense[0] + par[1] * dense[1] + par[2] * dense[2];
        for (int d = 0; d < 3; d++)
            P.J.ys[d] = dense[d] * f[d];
        P.J.accumulate = 1;
        cpu_conv_plan_run(&P);
        cpu_conv_plan_free(&P);
    }
done:
    free(ws);
    free(wa);
    return st;
}

vxm_status cpu_conv_upcat(vxm_backend *be, const vxm_tensor *a, const int f[3], const vxm_tensor *skip,
                          const vxm_buffer *w, const vxm_buffer *b, const vxm_conv_params *p, vxm_tensor *y)
{
    static const char op[] = "conv_upcat";
    vxm_status st;
    if ((st = factors_ok(be, f, op)) || (st = cpu_check_tensor(be, a, op, "input")) ||
        (st = cpu_check_tensor(be, skip, op, "skip input")) || (st = cpu_check_tensor(be, y, op, "output")))
        return st;
    for (int d = 0; d < 3; d++)
        if (a->shape[d] * f[d] != skip->shape[d])
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec,
                             "%s: upsampled input axis %d is %d * %d, the skip input's %d", op, d, a->shape[d], f[d],
                             skip->shape[d]);
    if (y->buf == a->buf || y->buf == skip->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output must not alias an input", op);
    if (p && w && upcat_foldable(f, p, y->channels))
        return upcat_folded(be, a, f, skip, w, b, p, y);
    conv_plan P;
    if ((st = cpu_conv_plan_init(be, op, skip->shape, a->channels + skip->channels, y->shape, y->channels, w, b, p,
                                 (long)y->shape[0] * y->shape[1], 0, &P)))
        return st;
    upcat_src U = {a, skip, {f[0], f[1], f[2]}};
    P.J.load = upcat_load;
    P.J.load_arg = &U;
    P.J.y = y->buf->data;
    cpu_conv_plan_run(&P);
    cpu_conv_plan_free(&P);
    return VXM_OK;
}
