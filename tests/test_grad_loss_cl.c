/* OpenCL training ops -- spatial transform backward, the five losses and their gradients, Adam / SGD / axpy / fill --
 * checked on every OpenCL device against three opinions: a float64 reference written here (permanent third opinion),
 * the CPU backend's implementation (when it supports the op), and the device itself (every op runs twice and must
 * give bitwise-identical results: the reductions and the image scatter must not depend on scheduling).  Random
 * inputs, 2-D and 3-D, multichannel; plus the test vectors of training doc §10 (KL, Dice) and the §3.2 Adam table.
 *
 * Tolerances (max |a - ref| <= tol * max |ref|, per output):
 *   vs float64, 2e-5 (transform, MSE, Grad, Dice, KL) and 1e-4 (NCC gradients): the devices compute in float32
 *     (locations, weights, per-element terms; sums are exact to ~1e-16 with cl_khr_fp64, ~1e-13 compensated; OpenCL
 *     exp / sqrt / division may be off by 3 ulp), so a few roundings of O(1) quantities give ~1e-6 relative.  NCC's
 *     per-voxel formula is TF's float32 expression with cancellations (cross = S_IJ - uJ S_I - ...) and a chain
 *     through five sums, hence the wider bound for its gradients.  Measured on PoCL and rusticl (2-core dev box):
 *     every output within 1.2e-2 of its bound (about 2e-7 relative; NCC 3e-7).  A semantic error (clamp rule at
 *     p = 0, missing channel sum, unmirrored adjoint window, wrong count in a mean) is >= 1e-2 relative: mutating the
 *     clamp rule or the NCC adjoint window fails by 10^3..10^4 times the bound.
 *   vs the CPU backend: the same bounds (two float32 implementations of one formula, summed in different fixed
 *     orders).
 *   Loss values: 1e-5 relative; §10 vectors and the Adam table: 1e-5 relative (float64 numbers, float32 ops;
 *     measured ~1e-7).  Adam vs the CPU backend: 3e-10 absolute (parameters ~1e-4, a few ulp).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test_backends.h"
#include "test_util.h"

/* ---- fixed-seed PRNG (splitmix64) ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float urand(uint64_t *s, float lo, float hi)
{
    double u = (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

/* ---- cases --------------------------------------------------------------------------------------------------- */

typedef enum { C_ST, C_MSE, C_NCC, C_GRAD, C_DICE, C_KL } ckind;

typedef struct tcase {
    const char *name;
    ckind kind;
    int shape[3], ch; /* the image / first input */
    int oshape[3];    /* transform: output (displacement) grid */
    int ndim, use_fill, win[3], l1;
    float lambda, tol;
} tcase;

static const tcase cases[] = {
    {"st3d_c3", C_ST, {6, 7, 5}, 3, {6, 7, 5}, 3, 0, {0}, 0, 0, 2e-5f},
    {"st3d_c1_grid", C_ST, {5, 6, 7}, 1, {4, 7, 6}, 3, 0, {0}, 0, 0, 2e-5f},
    {"st3d_c2_fill", C_ST, {6, 5, 7}, 2, {6, 5, 7}, 3, 1, {0}, 0, 0, 2e-5f},
    {"st3d_c2_far", C_ST, {6, 7, 5}, 2, {6, 7, 5}, 3, 0, {0}, 0, 0, 2e-5f},
    {"st2d_c2", C_ST, {1, 9, 8}, 2, {1, 9, 8}, 2, 0, {0}, 0, 0, 2e-5f},
    {"st2d_c1_fill", C_ST, {1, 8, 10}, 1, {1, 8, 10}, 2, 1, {0}, 0, 0, 2e-5f},
    {"mse3d", C_MSE, {6, 7, 5}, 3, {0}, 3, 0, {0}, 0, 0, 2e-5f},
    {"ncc3d_w333_flat", C_NCC, {8, 8, 7}, 1, {0}, 3, 0, {3, 3, 3}, 0, 0, 1e-4f},
    {"ncc3d_w345_c2", C_NCC, {6, 7, 5}, 2, {0}, 3, 0, {3, 4, 5}, 0, 0, 1e-4f},
    {"ncc2d_w9", C_NCC, {1, 10, 11}, 1, {0}, 2, 0, {1, 9, 9}, 0, 0, 1e-4f},
    {"grad3d_l2", C_GRAD, {6, 7, 5}, 3, {0}, 3, 0, {0}, 0, 0, 2e-5f},
    {"grad3d_l1", C_GRAD, {6, 7, 5}, 3, {0}, 3, 0, {0}, 1, 0, 2e-5f},
    {"grad2d_l2", C_GRAD, {1, 9, 8}, 2, {0}, 2, 0, {0}, 0, 0, 2e-5f},
    {"dice3d", C_DICE, {6, 7, 5}, 3, {0}, 3, 0, {0}, 0, 0, 2e-5f},
    {"kl3d", C_KL, {6, 7, 5}, 3, {0}, 3, 0, {0}, 0, 10.0f, 2e-5f},
    {"kl2d", C_KL, {1, 9, 8}, 2, {0}, 2, 0, {0}, 0, 20.0f, 2e-5f},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))
#define SCALE 0.7f /* loss weight / batch size passed to every backward op */

static size_t nv(const int s[3])
{
    return (size_t)s[0] * (size_t)s[1] * (size_t)s[2];
}

/* Host inputs of a case: in[0], in[1] (and dy for the transform), sizes n[]. */
typedef struct inputs {
    float *in[3];
    size_t n[3];
} inputs;

/* Outputs: up to 3 segments (loss value first for losses). */
typedef struct outputs {
    int nseg;
    size_t len[3];
    double *seg[3];
} outputs;

static void make_inputs(const tcase *c, int idx, inputs *x)
{
    uint64_t s = 1234567u + 7919u * (uint64_t)idx;
    size_t n = nv(c->shape) * (size_t)c->ch;
    memset(x, 0, sizeof *x);
    if (c->kind == C_ST) {
        size_t m = nv(c->oshape);
        x->n[0] = n;
        x->n[1] = m * (size_t)c->ndim;
        x->n[2] = m * (size_t)c->ch;
    } else {
        x->n[0] = x->n[1] = n;
    }
    for (int i = 0; i < 3; i++)
        x->in[i] = x->n[i] ? malloc(x->n[i] * sizeof(float)) : NULL;
    for (size_t i = 0; i < x->n[0]; i++)
        x->in[0][i] = urand(&s, 0.0f, 1.0f);
    for (size_t i = 0; i < x->n[1]; i++)
        x->in[1][i] = urand(&s, 0.0f, 1.0f);
    for (size_t i = 0; i < x->n[2]; i++)
        x->in[2][i] = urand(&s, -1.0f, 1.0f);
    switch (c->kind) {
    case C_ST: /* displacements in [-2.5, 2.5]: clamped and filled voxels; some exactly 0 and some on the top edge.
                * _far: [-15, 15], most locations clamp to the border (long cell lists in the OpenCL scatter). */
        for (size_t i = 0; i < x->n[1]; i++) {
            float amp = strstr(c->name, "far") ? 15.0f : 2.5f, u = urand(&s, -amp, amp);
            x->in[1][i] = (i % 7 == 3) ? 0.0f : (i % 11 == 5) ? 1.0f : u;
        }
        break;
    case C_NCC: /* J correlated with I; the _flat case gets a zero block in I (varI = cross = 0 exactly: clamped) */
        for (size_t i = 0; i < x->n[0]; i++)
            x->in[1][i] = 0.6f * x->in[0][i] + 0.4f * x->in[1][i];
        if (strstr(c->name, "flat"))
            for (int i = 0; i < 5; i++)
                for (int j = 0; j < 5; j++)
                    for (int k = 0; k < 5; k++)
                        x->in[0][((size_t)(i * c->shape[1] + j) * c->shape[2] + k) * c->ch] = 0.0f;
        break;
    case C_GRAD:
    case C_MSE:
        for (size_t i = 0; i < x->n[0]; i++)
            x->in[0][i] = 4.0f * x->in[0][i] - 2.0f;
        break;
    case C_KL: /* log sigma around -3 */
        for (size_t i = 0; i < x->n[1]; i++)
            x->in[1][i] = -3.0f + x->in[1][i];
        break;
    case C_DICE:
        break;
    }
}

static void free_inputs(inputs *x)
{
    for (int i = 0; i < 3; i++)
        free(x->in[i]);
}

static void out_init(outputs *o, int nseg, size_t a, size_t b, size_t c)
{
    o->nseg = nseg;
    size_t l[3] = {a, b, c};
    for (int i = 0; i < 3; i++) {
        o->len[i] = i < nseg ? l[i] : 0;
        o->seg[i] = i < nseg ? calloc(l[i] ? l[i] : 1, sizeof(double)) : NULL;
    }
}

static void out_free(outputs *o)
{
    for (int i = 0; i < 3; i++)
        free(o->seg[i]);
    o->nseg = 0;
}

/* ---- float64 references --------------------------------------------------------------------------------- */

/* Clamped linear interpolation on one axis at a float32 location (the forward's rule, spec §4.2), in double. */
static void ref_axis(float p, int n, int fixed, int *lo, int *hi, double *wl, double *wh)
{
    if (fixed) {
        int i = (int)fmin(fmax(p, 0.0), n - 1.0);
        *lo = *hi = i;
        *wl = *wh = 1.0;
        return;
    }
    double q = fmin(fmax(p, 0.0), n - 1.0), f = fmin(fmax(floor(p), 0.0), n - 1.0), c = fmin(f + 1.0, n - 1.0);
    *lo = (int)f;
    *hi = (int)c;
    *wl = c - q;
    *wh = 1.0 - *wl;
}

static void ref_st(const tcase *c, const inputs *x, outputs *o)
{
    const int *n = c->shape, *m = c->oshape;
    int C = c->ch, nd = c->ndim, first = 3 - nd;
    out_init(o, 2, x->n[0], x->n[1], 0);
    double *dimg = o->seg[0], *ddisp = o->seg[1];
    for (int x0 = 0; x0 < m[0]; x0++)
        for (int x1 = 0; x1 < m[1]; x1++)
            for (int x2 = 0; x2 < m[2]; x2++) {
                size_t v = ((size_t)x0 * m[1] + x1) * m[2] + x2;
                const float *u = x->in[1] + v * nd;
                const float *dy = x->in[2] + v * C;
                int xs[3] = {x0, x1, x2}, lo[3], hi[3], out = 0;
                float p[3];
                double wl[3], wh[3];
                for (int a = 0; a < 3; a++) {
                    p[a] = a < first ? (float)xs[a] : (float)xs[a] + u[a - first];
                    out |= p[a] < 0.0f || p[a] > (float)(n[a] - 1);
                    ref_axis(p[a], n[a], a < first, &lo[a], &hi[a], &wl[a], &wh[a]);
                }
                if (c->use_fill && out)
                    continue;
                for (int t = 0; t < 8; t++) {
                    int b[3] = {t >> 2, (t >> 1) & 1, t & 1}, skip = 0, ix[3];
                    double w = 1.0;
                    for (int a = 0; a < 3; a++) {
                        skip |= a < first && b[a];
                        ix[a] = b[a] ? hi[a] : lo[a];
                        w *= b[a] ? wh[a] : wl[a];
                    }
                    if (skip)
                        continue;
                    size_t off = (((size_t)ix[0] * n[1] + ix[1]) * n[2] + ix[2]) * C;
                    for (int ch = 0; ch < C; ch++)
                        dimg[off + ch] += w * dy[ch];
                    /* d/dp_d: +-(product of the other weights) V, where 0 <= p_d <= n_d - 1 */
                    for (int d = first; d < 3; d++) {
                        if (!(p[d] >= 0.0f && p[d] <= (float)(n[d] - 1)))
                            continue;
                        double wo = 1.0;
                        for (int a = 0; a < 3; a++)
                            if (a != d)
                                wo *= b[a] ? wh[a] : wl[a];
                        double sgn = b[d] ? 1.0 : -1.0, acc = 0.0;
                        for (int ch = 0; ch < C; ch++)
                            acc += dy[ch] * (double)x->in[0][off + ch];
                        ddisp[v * nd + (d - first)] += sgn * wo * acc;
                    }
                }
            }
}

/* Forward differences along the last nd axes: sums of the penalty per axis (cnt[] = number of differences) and,
 * when g != NULL, g += w_d / cnt_d * P'(diff) scattered to both ends. */
static void ref_diff(const float *y, const int *s, int C, int nd, int l1, double *sum, double *cnt, double w,
                     double *g)
{
    size_t stride[3] = {(size_t)s[1] * s[2] * C, (size_t)s[2] * C, (size_t)C};
    for (int d = 0; d < nd; d++) {
        int a = 3 - nd + d;
        sum[d] = 0.0;
        cnt[d] = (double)nv(s) * C / s[a] * (s[a] - 1);
        for (size_t e = 0; e < nv(s) * C; e++) {
            int xa = (int)(e / stride[a] % (size_t)s[a]);
            if (xa >= s[a] - 1)
                continue;
            double df = (double)y[e + stride[a]] - (double)y[e];
            sum[d] += l1 ? fabs(df) : df * df;
            if (g) {
                double pg = l1 ? (df > 0) - (df < 0) : 2.0 * df;
                g[e + stride[a]] += w / cnt[d] * pg;
                g[e] -= w / cnt[d] * pg;
            }
        }
    }
}

static double ref_degree(size_t v, const int *s, int nd)
{
    int x[3] = {(int)(v / ((size_t)s[1] * s[2])), (int)(v / s[2] % s[1]), (int)(v % s[2])};
    int deg = 0;
    for (int a = 3 - nd; a < 3; a++)
        deg += (x[a] > 0) + (x[a] < s[a] - 1);
    return deg;
}

/* NCC window sums (over the window and all channels, zero padding) of voxel v. */
static void ref_ncc_sums(const tcase *c, const float *I, const float *J, int x0, int x1, int x2, double *S)
{
    const int *n = c->shape;
    memset(S, 0, 5 * sizeof *S);
    for (int a = 0; a < c->win[0]; a++)
        for (int b = 0; b < c->win[1]; b++)
            for (int d = 0; d < c->win[2]; d++) {
                int i = x0 - (c->win[0] - 1) / 2 + a, j = x1 - (c->win[1] - 1) / 2 + b, k = x2 - (c->win[2] - 1) / 2 + d;
                if (i < 0 || j < 0 || k < 0 || i >= n[0] || j >= n[1] || k >= n[2])
                    continue;
                for (int ch = 0; ch < c->ch; ch++) {
                    size_t e = (((size_t)i * n[1] + j) * n[2] + k) * c->ch + ch;
                    double vi = I[e], vj = J[e];
                    S[0] += vi, S[1] += vj, S[2] += vi * vi, S[3] += vj * vj, S[4] += vi * vj;
                }
            }
}

/* -mean cc, and (with dI, dJ) its gradient times `scale`: per-voxel d cc / dS by the chain rule of TF's ops,
 * scattered back over each window. */
static double ref_ncc(const tcase *c, const float *I, const float *J, double *dI, double *dJ)
{
    const int *n = c->shape;
    double W = (double)c->win[0] * c->win[1] * c->win[2] * c->ch, eps = 1e-5, tot = 0.0;
    size_t N = nv(n);
    for (int x0 = 0; x0 < n[0]; x0++)
        for (int x1 = 0; x1 < n[1]; x1++)
            for (int x2 = 0; x2 < n[2]; x2++) {
                double S[5];
                ref_ncc_sums(c, I, J, x0, x1, x2, S);
                double uI = S[0] / W, uJ = S[1] / W;
                double cr = S[4] - uJ * S[0] - uI * S[1] + uI * uJ * W;
                double vI = S[2] - 2 * uI * S[0] + uI * uI * W, vJ = S[3] - 2 * uJ * S[1] + uJ * uJ * W;
                double cm = fmax(cr, eps), vIm = fmax(vI, eps), vJm = fmax(vJ, eps);
                tot += cm * cm / (vIm * vJm);
                if (!dI)
                    continue;
                double g = -(double)SCALE / N;
                double dc = cr >= eps ? g * 2 * cm / (vIm * vJm) : 0.0;
                double dvI = vI >= eps ? -g * cm * cm / (vIm * vIm * vJm) : 0.0;
                double dvJ = vJ >= eps ? -g * cm * cm / (vIm * vJm * vJm) : 0.0;
                /* cross, varI, varJ as functions of the sums (u = S/W substituted) */
                double dSI = dc * (-S[1] / W) + dvI * (-2 * S[0] / W);
                double dSJ = dc * (-S[0] / W) + dvJ * (-2 * S[1] / W);
                double dS[5] = {dSI, dSJ, dvI, dvJ, dc};
                for (int a = 0; a < c->win[0]; a++)
                    for (int b = 0; b < c->win[1]; b++)
                        for (int d = 0; d < c->win[2]; d++) {
                            int i = x0 - (c->win[0] - 1) / 2 + a, j = x1 - (c->win[1] - 1) / 2 + b;
                            int k = x2 - (c->win[2] - 1) / 2 + d;
                            if (i < 0 || j < 0 || k < 0 || i >= n[0] || j >= n[1] || k >= n[2])
                                continue;
                            for (int ch = 0; ch < c->ch; ch++) {
                                size_t e = (((size_t)i * n[1] + j) * n[2] + k) * c->ch + ch;
                                dI[e] += dS[0] + 2.0 * I[e] * dS[2] + (double)J[e] * dS[4];
                                dJ[e] += dS[1] + 2.0 * J[e] * dS[3] + (double)I[e] * dS[4];
                            }
                        }
            }
    return -tot / N;
}

static void ref_case(const tcase *c, const inputs *x, outputs *o)
{
    const float *a = x->in[0], *b = x->in[1];
    size_t n = x->n[0], N = nv(c->shape);
    int C = c->ch, nd = c->ndim;
    double sum[4], cnt[4];
    switch (c->kind) {
    case C_ST:
        ref_st(c, x, o);
        return;
    case C_MSE:
        out_init(o, 2, 1, n, 0);
        for (size_t i = 0; i < n; i++) {
            double d = (double)a[i] - b[i];
            o->seg[0][0] += d * d / n;
            o->seg[1][i] = SCALE * 2.0 * d / n;
        }
        return;
    case C_NCC:
        out_init(o, 3, 1, n, n);
        o->seg[0][0] = ref_ncc(c, a, b, o->seg[1], o->seg[2]);
        return;
    case C_GRAD:
        out_init(o, 2, 1, n, 0);
        ref_diff(a, c->shape, C, nd, c->l1, sum, cnt, (double)SCALE / nd, o->seg[1]);
        for (int d = 0; d < nd; d++)
            o->seg[0][0] += sum[d] / cnt[d] / nd;
        return;
    case C_DICE: {
        out_init(o, 2, 1, n, 0);
        for (int l = 0; l < C; l++) {
            double top = 0, bot = 0;
            for (size_t v = 0; v < N; v++)
                top += 2.0 * a[v * C + l] * b[v * C + l], bot += (double)a[v * C + l] + b[v * C + l];
            if (bot == 0)
                continue;
            o->seg[0][0] -= top / bot / C;
            for (size_t v = 0; v < N; v++)
                o->seg[1][v * C + l] = -(double)SCALE / C * (2.0 * a[v * C + l] / bot - top / (bot * bot));
        }
        return;
    }
    case C_KL: {
        out_init(o, 3, 1, n, n);
        double sig = 0;
        for (size_t e = 0; e < n; e++) {
            double ld = c->lambda * ref_degree(e / nd, c->shape, nd);
            sig += (ld * exp(b[e]) - b[e]) / n;
            o->seg[2][e] = SCALE * 0.5 * nd * (ld * exp(b[e]) - 1.0) / n;
        }
        ref_diff(a, c->shape, nd, nd, 0, sum + 1, cnt + 1, 0.25 * c->lambda * SCALE, o->seg[1]);
        double prec = 0;
        for (int d = 1; d <= nd; d++)
            prec += sum[d] / cnt[d];
        o->seg[0][0] = 0.5 * nd * (sig + c->lambda * 0.5 * prec / nd);
        return;
    }
    }
}

/* ---- running a case on a backend ------------------------------------------------------------------------ */

static vxm_status upload(vxm_backend *be, const int s[3], int ch, const float *h, vxm_tensor *t)
{
    vxm_status st = vxm_tensor_alloc(be, s, ch, t);
    if (!st && h)
        st = vxm_tensor_upload(be, t, h);
    return st;
}

/* Runs the forward (losses) and backward op of case c; outputs as doubles.  Returns the first failing status. */
static vxm_status run_case(vxm_backend *be, const tcase *c, const inputs *x, outputs *o)
{
    const vxm_backend_ops *op = be->ops;
    int one[3] = {1, 1, 1};
    int s2[3] = {c->shape[0], c->shape[1], c->shape[2]};
    const int *sB = c->kind == C_ST ? c->oshape : s2;
    int chB = c->kind == C_ST ? c->ndim : c->ch;
    vxm_tensor A, B, D, L, G[2];
    memset(&A, 0, sizeof A), memset(&B, 0, sizeof B), memset(&D, 0, sizeof D), memset(&L, 0, sizeof L);
    memset(G, 0, sizeof G);
    vxm_status st;
    int nseg = (c->kind == C_NCC || c->kind == C_KL) ? 3 : 2;
    if ((st = upload(be, s2, c->ch, x->in[0], &A)) || (st = upload(be, sB, chB, x->in[1], &B)) ||
        (st = upload(be, one, 1, NULL, &L)) || (st = upload(be, s2, c->ch, NULL, &G[0])) ||
        (st = upload(be, sB, chB, NULL, &G[1])) ||
        (c->kind == C_ST && (st = upload(be, c->oshape, c->ch, x->in[2], &D))))
        goto done;
    switch (c->kind) {
    case C_ST:
        nseg = 2;
        st = op->spatial_transform_backward(be, &A, &B, &D, c->ndim, c->use_fill, &G[0], &G[1]);
        break;
    case C_MSE:
        if (!(st = op->mse_loss(be, &A, &B, &L)))
            st = op->mse_loss_backward(be, &A, &B, SCALE, &G[0]);
        break;
    case C_NCC:
        if (!(st = op->ncc_loss(be, &A, &B, c->win, 1e-5f, &L)))
            st = op->ncc_loss_backward(be, &A, &B, c->win, 1e-5f, SCALE, &G[0], &G[1]);
        break;
    case C_GRAD:
        if (!(st = op->grad_loss(be, &A, c->ndim, c->l1, &L)))
            st = op->grad_loss_backward(be, &A, c->ndim, c->l1, SCALE, &G[0]);
        break;
    case C_DICE:
        if (!(st = op->dice_loss(be, &A, &B, &L)))
            st = op->dice_loss_backward(be, &A, &B, SCALE, &G[0]);
        break;
    case C_KL:
        if (!(st = op->kl_loss(be, &A, &B, c->ndim, c->lambda, &L)))
            st = op->kl_loss_backward(be, &A, &B, c->ndim, c->lambda, SCALE, &G[0], &G[1]);
        break;
    }
    if (st)
        goto done;
    {
        vxm_tensor *src[3];
        size_t len[3];
        if (c->kind == C_ST) {
            src[0] = &G[0], src[1] = &G[1], len[0] = x->n[0], len[1] = x->n[1];
        } else {
            src[0] = &L, src[1] = &G[0], src[2] = &G[1], len[0] = 1, len[1] = len[2] = x->n[0];
        }
        out_init(o, nseg, len[0], len[1], nseg > 2 ? len[2] : 0);
        for (int i = 0; i < nseg && !st; i++) {
            float *h = malloc(len[i] * sizeof *h);
            if (!(st = op->buffer_read(be, src[i]->buf, h, len[i])))
                for (size_t k = 0; k < len[i]; k++)
                    o->seg[i][k] = h[k];
            free(h);
        }
    }
done:
    vxm_tensor_release(be, &A);
    vxm_tensor_release(be, &B);
    vxm_tensor_release(be, &D);
    vxm_tensor_release(be, &L);
    vxm_tensor_release(be, &G[0]);
    vxm_tensor_release(be, &G[1]);
    return st;
}

/* max |a - r| / max |r| over a segment (0/0 -> 0). */
static double rel_err(const double *a, const double *r, size_t n)
{
    double m = 0, d = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(a[i] - r[i]);
        if (e > d || e != e)
            d = e != e ? INFINITY : e;
        m = fmax(m, fabs(r[i]));
    }
    return m > 0 ? d / m : d;
}

static void compare(const char *name, const char *what, const tcase *c, const outputs *got, const outputs *ref)
{
    char label[160];
    snprintf(label, sizeof label, "%s %s", name, what);
    double worst = 0;
    int wseg = 0;
    for (int i = 0; i < ref->nseg; i++) {
        double e = rel_err(got->seg[i], ref->seg[i], ref->len[i]);
        /* the loss value (segment 0 of a loss) is held to 1e-5 */
        double lim = (c->kind != C_ST && i == 0) ? 1e-5 : c->tol;
        if (e / lim > worst)
            worst = e / lim, wseg = i;
    }
    tu_report(worst <= 1.0, label, "output %d off by %.3g of its tolerance", wseg, worst);
}

static int bitwise_same(const outputs *a, const outputs *b)
{
    for (int i = 0; i < a->nseg; i++)
        if (memcmp(a->seg[i], b->seg[i], a->len[i] * sizeof(double)))
            return 0;
    return 1;
}

/* Central differences of the float64 NCC reference at a few elements (validates the reference's gradient). */
static void check_ncc_reference(const tcase *c, const inputs *x, const outputs *ref)
{
    float *I = malloc(x->n[0] * sizeof *I);
    memcpy(I, x->in[0], x->n[0] * sizeof *I);
    double worst = 0, gmax = 0;
    for (size_t i = 0; i < x->n[0]; i++)
        gmax = fmax(gmax, fabs(ref->seg[1][i]));
    for (size_t e = 1; e < x->n[0]; e += x->n[0] / 5) {
        float h = 1.0f / 1024, v = I[e];
        I[e] = v + h;
        double fp = ref_ncc(c, I, x->in[1], NULL, NULL);
        I[e] = v - h;
        double fm = ref_ncc(c, I, x->in[1], NULL, NULL);
        I[e] = v;
        worst = fmax(worst, fabs(SCALE * (fp - fm) / (2.0 * h) - ref->seg[1][e]));
    }
    free(I);
    char label[128];
    snprintf(label, sizeof label, "%s reference vs finite differences", c->name);
    tu_report(worst <= 1e-4 * gmax, label, "off by %.3g (max gradient %.3g)", worst, gmax);
}

/* ---- §10 vectors, Adam table, optimiser ops ------------------------------------------------------------ */

static float read1(vxm_backend *be, vxm_tensor *t)
{
    float v = NAN;
    if (be->ops->buffer_read(be, t->buf, &v, 1))
        v = NAN;
    return v;
}

static void check_vectors(vxm_backend *be, const char *dev)
{
    char label[160];
    int s4[3] = {1, 1, 4}, s3[3] = {3, 3, 3}, one[3] = {1, 1, 1};
    float yt[8] = {1, 0, 1, 0, 0, 1, 0, 0}, yp[8] = {0.8f, 0.1f, 0.6f, 0.3f, 0.2f, 0.7f, 0, 0};
    vxm_tensor T, P, L, M, S;
    memset(&T, 0, sizeof T), memset(&P, 0, sizeof P), memset(&L, 0, sizeof L), memset(&M, 0, sizeof M);
    memset(&S, 0, sizeof S);
    float mu[81], ls[81];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 3; k++) {
                float *m = mu + ((i * 3 + j) * 3 + k) * 3, *s = ls + ((i * 3 + j) * 3 + k) * 3;
                m[0] = 0.1f * i, m[1] = 0.2f * j * j, m[2] = -0.05f * k;
                s[0] = -1.0f - 0.1f * i, s[1] = -2.0f, s[2] = -1.5f + 0.05f * (i + j + k);
            }
    float dice = NAN, kl = NAN;
    if (!upload(be, s4, 2, yt, &T) && !upload(be, s4, 2, yp, &P) && !upload(be, one, 1, NULL, &L) &&
        !be->ops->dice_loss(be, &T, &P, &L))
        dice = read1(be, &L);
    snprintf(label, sizeof label, "%s dice §10 vector", dev);
    tu_report(fabs(dice + 0.7222222) <= 1e-6, label, "%.8f, expected -0.7222222", dice);
    if (!upload(be, s3, 3, mu, &M) && !upload(be, s3, 3, ls, &S) && !be->ops->kl_loss(be, &M, &S, 3, 10.0f, &L))
        kl = read1(be, &L);
    snprintf(label, sizeof label, "%s kl §10 vector", dev);
    tu_report(fabs(kl - 16.98326829) <= 1e-5 * 16.98326829, label, "%.8f, expected 16.98326829", kl);
    vxm_tensor *ts[5] = {&T, &P, &L, &M, &S};
    for (int i = 0; i < 5; i++)
        vxm_tensor_release(be, ts[i]);
}

/* §3.2: theta0 = 0, constant gradient g in {1, 1e-3, 1e-6, 1e-8}, lr 1e-4, three steps; then SGD, axpy, fill. */
static void check_optim(vxm_backend *be, const char *dev, float *adam_out)
{
    static const double want[4][3] = {{-9.999968377e-05, -1.999994601e-04, -2.999992774e-04},
                                      {-9.968476908e-05, -1.994616055e-04, -2.99279273e-04},
                                      {-2.402530734e-05, -5.492166756e-05, -9.029917069e-05},
                                      {-3.152309183e-07, -7.603425942e-07, -1.30481063e-06}};
    const vxm_backend_ops *op = be->ops;
    float g[4] = {1.0f, 1e-3f, 1e-6f, 1e-8f}, z[4] = {0}, th[4];
    vxm_buffer *p = NULL, *gb = NULL, *m = NULL, *v = NULL;
    double worst = INFINITY;
    char label[160];
    if (!op->buffer_alloc(be, 4, &p) && !op->buffer_alloc(be, 4, &gb) && !op->buffer_alloc(be, 4, &m) &&
        !op->buffer_alloc(be, 4, &v) && !op->buffer_write(be, gb, g, 4) && !op->fill(be, p, 4, 0.0f) &&
        !op->buffer_write(be, m, z, 4) && !op->fill(be, v, 4, 0.0f)) {
        worst = 0;
        for (int t = 1; t <= 3 && worst < INFINITY; t++) {
            double lr_t = 1e-4 * sqrt(1 - pow(0.999, t)) / (1 - pow(0.9, t));
            if (op->adam_update(be, p, gb, m, v, 4, (float)lr_t, 0.9f, 0.999f, 1e-7f) || op->buffer_read(be, p, th, 4)) {
                worst = INFINITY;
                break;
            }
            for (int i = 0; i < 4; i++) {
                worst = fmax(worst, fabs(th[i] - want[i][t - 1]) / fabs(want[i][t - 1]));
                adam_out[(t - 1) * 4 + i] = th[i];
            }
        }
    }
    snprintf(label, sizeof label, "%s adam §3.2 table", dev);
    tu_report(worst <= 1e-5, label, "relative error %.3g", worst);
    /* sgd: p = th - 0.5 g; axpy: p += 2 g; fill */
    float r[4] = {0}, e1 = 0;
    int ok = !op->sgd_update(be, p, gb, 4, 0.5f) && !op->axpy(be, 2.0f, gb, p, 4) && !op->buffer_read(be, p, r, 4);
    for (int i = 0; ok && i < 4; i++)
        e1 = fmaxf(e1, fabsf(r[i] - ((th[i] - 0.5f * g[i]) + 2.0f * g[i])));
    ok = ok && !op->fill(be, m, 3, -2.5f) && !op->buffer_read(be, m, z, 4);
    snprintf(label, sizeof label, "%s sgd, axpy, fill", dev);
    tu_report(ok && e1 == 0 && z[0] == -2.5f && z[2] == -2.5f && z[3] != -2.5f, label, "sgd/axpy off by %g, fill %g %g",
              e1, z[2], z[3]);
    op->buffer_free(be, p);
    op->buffer_free(be, gb);
    op->buffer_free(be, m);
    op->buffer_free(be, v);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    tb_list l;
    tb_open_all(ctx, &l);
    if (l.n < 2) {
        tu_skip("grad_loss_cl", "no OpenCL device");
        tb_close_all(&l);
        vxm_context_free(ctx);
        return tu_exit_code();
    }
    vxm_backend *cpu = l.be[0];
    for (int ci = 0; ci < NCASES; ci++) {
        const tcase *c = &cases[ci];
        inputs x;
        outputs ref = {0}, oc = {0};
        make_inputs(c, ci, &x);
        ref_case(c, &x, &ref);
        if (strcmp(c->name, "ncc3d_w345_c2") == 0)
            check_ncc_reference(c, &x, &ref);
        int have_cpu = run_case(cpu, c, &x, &oc) == VXM_OK;
        char name[200];
        if (have_cpu) {
            snprintf(name, sizeof name, "cpu %s", c->name);
            compare(name, "vs float64", c, &oc, &ref);
        }
        for (int b = 1; b < l.n; b++) {
            outputs o1 = {0}, o2 = {0};
            snprintf(name, sizeof name, "%s %s", l.be[b]->spec, c->name);
            vxm_status st = run_case(l.be[b], c, &x, &o1);
            if (!st)
                st = run_case(l.be[b], c, &x, &o2);
            if (st) {
                tu_report(0, name, "%s", vxm_context_error(ctx));
            } else {
                compare(name, "vs float64", c, &o1, &ref);
                if (have_cpu)
                    compare(name, "vs cpu", c, &o1, &oc);
                else
                    tu_skip(name, "cpu backend lacks the op; compared with float64 only");
                char dn[240];
                snprintf(dn, sizeof dn, "%s deterministic", name);
                tu_report(bitwise_same(&o1, &o2), dn, "two runs differ");
            }
            out_free(&o1);
            out_free(&o2);
        }
        out_free(&oc);
        out_free(&ref);
        free_inputs(&x);
    }
    float adam_cpu[12], adam_cl[12];
    check_vectors(cpu, "cpu");
    check_optim(cpu, "cpu", adam_cpu);
    for (int b = 1; b < l.n; b++) {
        check_vectors(l.be[b], l.be[b]->spec);
        check_optim(l.be[b], l.be[b]->spec, adam_cl);
        char label[160];
        /* same float32 formula; OpenCL sqrt and division may be off by a few ulp */
        snprintf(label, sizeof label, "%s adam agrees with cpu", l.be[b]->spec);
        double d = tu_max_abs_diff(adam_cl, adam_cpu, 12);
        tu_report(d <= 1e-6 * 3e-4, label, "max diff %g", d);
    }
    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
