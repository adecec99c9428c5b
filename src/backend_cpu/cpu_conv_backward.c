/* Backward of the CPU convolution (training doc §2.7; backend.h documents each op): the data gradient is the
 * forward conv of dy (cpu_conv.c's plan) with the flipped, transposed kernel, per stride residue (polyphase) when a
 * stride is 2; the filter gradient reuses the padded row buffers of cpu_conv_rows and transposes the register block
 * (reduction over voxels), over fixed chunks of output rows combined in a fixed order, so results do not depend on
 * the thread count. */
#include <stdlib.h>
#include <string.h>

#include "backend_cpu/cpu_conv.h"
#include "backend_cpu/cpu_conv_blocking.h"
#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_simd.h"

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
    vxm_buffer wsub = {cpu_alloc_floats(nw), nw, 0};
    vxm_buffer tbuf = {NULL, unit ? 0 : (size_t)dy->shape[0] * dy->shape[1] * dy->shape[2] * (size_t)cin, 0};
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
