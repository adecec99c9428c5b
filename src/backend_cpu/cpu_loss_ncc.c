/* NCC loss (training doc §2.1) and its gradient.
 *
 * Window sums: TF convolves I, J, I^2, J^2, IJ with ones([*win, C, 1]) (SAME, zero padding), i.e. box sums over
 * the window AND all channels.  Those sums must be accurate (data/train/README.md: float64 lands within 1.1e-4 of
 * TF's gradients, a float32 generic convolution 8e-3 off), so the five per-voxel channel sums are formed in
 * double and box-filtered with separable prefix sums in double.  cc is then evaluated in float32 in TF's exact
 * formula and order (as TF and the OpenCL backend do), and its gradient w.r.t. the five sums by TF's op gradients
 * through that expression (ncc_cc), with tf.maximum's rule (gradient passes where x >= eps, §2.7).  Each
 * dS map is box-filtered back to the voxels with the adjoint window (offsets mirrored), giving B_*, and
 *   dI[y,c] = B_I + 2 I[y,c] B_II + J[y,c] B_IJ,   dJ[y,c] = B_J + 2 J[y,c] B_JJ + I[y,c] B_IJ. */
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_reduce.h"

#define NF 5      /* fields per voxel: S_I, S_J, S_II, S_JJ, S_IJ */
#define IBLK 40   /* doubles of a line bundle filtered together (a multiple of NF) */
#define VOX_CHUNK 4096

enum { F_I, F_J, F_II, F_JJ, F_IJ };

typedef struct ncc_geom {
    int n[3], C;
    int before[3], after[3]; /* window of centre x along d: [x - before, x + after] */
    double W, eps;
    size_t nvox;
} ncc_geom;

/* Box sum along axis `axis` of the NF-field volume S (in place): out[x] = sum of in[y], y in
 * [x - before, x + after] clipped to the volume (zero padding).  Lines are filtered in bundles of IBLK adjacent
 * doubles through prefix sums; each output is one difference of two prefix sums, whatever the threading. */
static vxm_status box_filter(vxm_backend *be, double *S, const int n[3], int axis, int before, int after)
{
    size_t inner = NF, outer = 1, len = (size_t)n[axis];
    for (int d = axis + 1; d < 3; d++)
        inner *= (size_t)n[d];
    for (int d = 0; d < axis; d++)
        outer *= (size_t)n[d];
    size_t nblk = (inner + IBLK - 1) / IBLK;
    long items = (long)(outer * nblk);
    int nt = cpu_threads(be);
    double *scratch = malloc((size_t)nt * (len + 1) * IBLK * sizeof *scratch);
    if (!scratch)
        return cpu_nomem(be, (size_t)nt * (len + 1) * IBLK * sizeof *scratch);
    int par = outer * inner * len >= CPU_PAR_MIN;
#pragma omp parallel num_threads(nt) if (par)
    {
#ifdef _OPENMP
        double *P = scratch + (size_t)omp_get_thread_num() * (len + 1) * IBLK;
#else
        double *P = scratch;
#endif
#pragma omp for schedule(static)
        for (long it = 0; it < items; it++) {
            size_t o = (size_t)it / nblk, i0 = ((size_t)it % nblk) * IBLK;
            size_t w = inner - i0 < IBLK ? inner - i0 : IBLK;
            double *base = S + o * len * inner + i0;
            for (size_t k = 0; k < w; k++)
                P[k] = 0.0;
            for (size_t t = 0; t < len; t++)
                for (size_t k = 0; k < w; k++)
                    P[(t + 1) * IBLK + k] = P[t * IBLK + k] + base[t * inner + k];
            for (size_t t = 0; t < len; t++) {
                size_t lo = t >= (size_t)before ? t - (size_t)before : 0;
                size_t hi = t + (size_t)after + 1 < len ? t + (size_t)after + 1 : len;
                for (size_t k = 0; k < w; k++)
                    base[t * inner + k] = P[hi * IBLK + k] - P[lo * IBLK + k];
            }
        }
    }
    free(scratch);
    return VXM_OK;
}

/* Box-filters all three axes (skipping windows of 1); `adjoint` mirrors the window (the transpose of the sum). */
static vxm_status box_filter_all(vxm_backend *be, double *S, const ncc_geom *G, int adjoint)
{
    vxm_status st;
    for (int d = 0; d < 3; d++) {
        if (G->before[d] + G->after[d] == 0)
            continue;
        int b = adjoint ? G->after[d] : G->before[d], a = adjoint ? G->before[d] : G->after[d];
        if ((st = box_filter(be, S, G->n, d, b, a)))
            return st;
    }
    return VXM_OK;
}

static vxm_status ncc_setup(vxm_backend *be, const vxm_tensor *I, const vxm_tensor *J, const int win[3], float eps,
                            const char *op, ncc_geom *G)
{
    vxm_status st;
    if ((st = cpu_check_tensor(be, I, op, "I")) || (st = cpu_check_tensor(be, J, op, "J")) ||
        (st = cpu_check_same(be, I, J, 1, op, "I", "J")))
        return st;
    if (!win)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: no window", op);
    double wprod = 1.0;
    for (int d = 0; d < 3; d++) {
        if (win[d] < 1)
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: window %d along axis %d", op, win[d], d);
        int m, lo;
        vxm_same_padding(I->shape[d], win[d], 1, &m, &lo); /* TF SAME, stride 1: lo = (win - 1) / 2 */
        G->n[d] = I->shape[d];
        G->before[d] = lo;
        G->after[d] = win[d] - 1 - lo;
        wprod *= win[d];
    }
    G->C = I->channels;
    G->W = wprod * G->C;
    G->eps = eps;
    G->nvox = (size_t)G->n[0] * (size_t)G->n[1] * (size_t)G->n[2];
    return VXM_OK;
}

/* The five window sums per voxel (NF doubles each); caller frees. */
static vxm_status ncc_window_sums(vxm_backend *be, const float *I, const float *J, const ncc_geom *G, double **out)
{
    vxm_status st;
    *out = NULL;
    double *S = malloc(G->nvox * NF * sizeof *S);
    if (!S)
        return cpu_nomem(be, G->nvox * NF * sizeof *S);
    size_t C = (size_t)G->C;
    long nv = (long)G->nvox;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (G->nvox * C >= CPU_PAR_MIN)
    for (long v = 0; v < nv; v++) {
        double si = 0, sj = 0, sii = 0, sjj = 0, sij = 0;
        for (size_t c = 0; c < C; c++) {
            double a = I[(size_t)v * C + c], b = J[(size_t)v * C + c];
            si += a;
            sj += b;
            sii += a * a;
            sjj += b * b;
            sij += a * b;
        }
        double *s = S + (size_t)v * NF;
        s[F_I] = si;
        s[F_J] = sj;
        s[F_II] = sii;
        s[F_JJ] = sjj;
        s[F_IJ] = sij;
    }
    if ((st = box_filter_all(be, S, G, 0))) {
        free(S);
        return st;
    }
    *out = S;
    return VXM_OK;
}

/* cc of one window in TF's formula and order, in float32 as TF computes it (§2.1; training doc §2.1: "evaluate in
 * exactly this order in float32"); only the window sums are accurate (double, then rounded).  With `dS` (and g =
 * d loss / d cc), also writes the NF derivatives of g cc w.r.t. the window sums, by TF's op gradients through the
 * same expression (the OpenCL kernel vxm_ncc_deriv performs the same float operations). */
static double ncc_cc(const double *sd, const ncc_geom *G, double gd, double *dS)
{
    float W = (float)G->W, eps = (float)G->eps;
    float S_I = (float)sd[F_I], S_J = (float)sd[F_J], S_II = (float)sd[F_II], S_JJ = (float)sd[F_JJ],
          S_IJ = (float)sd[F_IJ];
    float uI = S_I / W, uJ = S_J / W;
    float cross = ((S_IJ - uJ * S_I) - uI * S_J) + (uI * uJ) * W;
    float varI = (S_II - (2.0f * uI) * S_I) + (uI * uI) * W;
    float varJ = (S_JJ - (2.0f * uJ) * S_J) + (uJ * uJ) * W;
    float cm = cross >= eps ? cross : eps; /* tf.maximum(x, eps): ties keep x, gradient passes for x >= eps */
    float vIm = varI >= eps ? varI : eps, vJm = varJ >= eps ? varJ : eps;
    float a = cm / vIm, b = cm / vJm;
    float cc = a * b;
    if (dS) {
        float g = (float)gd;
        float ga = g * b, gb = g * a;
        float dcm = ga / vIm + gb / vJm;
        float dvI = varI >= eps ? ga * ((-cm / vIm) / vIm) : 0.0f;
        float dvJ = varJ >= eps ? gb * ((-cm / vJm) / vJm) : 0.0f;
        float dc = cross >= eps ? dcm : 0.0f;
        float dSI = -dc * uJ, dSJ = -dc * uI; /* cross = ((S_IJ - uJ S_I) - uI S_J) + (uI uJ) W */
        float duI = -dc * S_J + (dc * W) * uJ;
        float duJ = -dc * S_I + (dc * W) * uI;
        dSI += -dvI * (2.0f * uI); /* varX = (S_XX - (2 uX) S_X) + (uX uX) W */
        duI += 2.0f * (-dvI * S_I) + 2.0f * ((dvI * W) * uI);
        dSJ += -dvJ * (2.0f * uJ);
        duJ += 2.0f * (-dvJ * S_J) + 2.0f * ((dvJ * W) * uJ);
        dSI += duI / W; /* uX = S_X / W */
        dSJ += duJ / W;
        dS[F_I] = dSI;
        dS[F_J] = dSJ;
        dS[F_II] = dvI;
        dS[F_JJ] = dvJ;
        dS[F_IJ] = dc;
    }
    return cc;
}

typedef struct ncc_job {
    const double *S;
    const ncc_geom *G;
} ncc_job;

static void ncc_part(const void *arg, size_t b, size_t e, double *acc)
{
    const ncc_job *J = arg;
    for (size_t v = b; v < e; v++)
        acc[0] += ncc_cc(J->S + v * NF, J->G, 0.0, NULL);
}

vxm_status cpu_ncc_loss(vxm_backend *be, const vxm_tensor *I, const vxm_tensor *J, const int win[3], float eps,
                        vxm_tensor *out)
{
    static const char op[] = "ncc_loss";
    ncc_geom G;
    double *S, sum;
    vxm_status st;
    if ((st = ncc_setup(be, I, J, win, eps, op, &G)) || (st = cpu_check_tensor(be, out, op, "output")) ||
        (st = ncc_window_sums(be, I->buf->data, J->buf->data, &G, &S)))
        return st;
    ncc_job job = {S, &G};
    st = cpu_det_reduce(be, G.nvox, VOX_CHUNK, 1, ncc_part, &job, &sum);
    free(S);
    if (st)
        return st;
    out->buf->data[0] = (float)(-sum / (double)G.nvox);
    return VXM_OK;
}

vxm_status cpu_ncc_loss_backward(vxm_backend *be, const vxm_tensor *I, const vxm_tensor *J, const int win[3],
                                 float eps, float scale, vxm_tensor *dI, vxm_tensor *dJ)
{
    static const char op[] = "ncc_loss_backward";
    ncc_geom G;
    double *S;
    vxm_status st;
    if ((st = ncc_setup(be, I, J, win, eps, op, &G)))
        return st;
    if ((dI && ((st = cpu_check_tensor(be, dI, op, "dI")) || (st = cpu_check_same(be, I, dI, 1, op, "I", "dI")))) ||
        (dJ && ((st = cpu_check_tensor(be, dJ, op, "dJ")) || (st = cpu_check_same(be, J, dJ, 1, op, "J", "dJ")))))
        return st;
    const vxm_tensor *outs[2] = {dI, dJ};
    for (int k = 0; k < 2; k++)
        if (outs[k] && (outs[k]->buf == I->buf || outs[k]->buf == J->buf || (k == 1 && dI && dI->buf == dJ->buf)))
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: gradients must not alias inputs or each other", op);
    if (!dI && !dJ)
        return VXM_OK;
    if ((st = ncc_window_sums(be, I->buf->data, J->buf->data, &G, &S)))
        return st;
    double g = -(double)scale / (double)G.nvox; /* d(-mean cc) / d cc, times scale */
    long nv = (long)G.nvox;
    int par = G.nvox * NF >= CPU_PAR_MIN;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (par)
    for (long v = 0; v < nv; v++) {
        double *s = S + (size_t)v * NF, d[NF];
        ncc_cc(s, &G, g, d);
        memcpy(s, d, sizeof d);
    }
    if ((st = box_filter_all(be, S, &G, 1))) {
        free(S);
        return st;
    }
    const float *pi = I->buf->data, *pj = J->buf->data;
    float *gi = dI ? dI->buf->data : NULL, *gj = dJ ? dJ->buf->data : NULL;
    size_t C = (size_t)G.C;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (par)
    for (long v = 0; v < nv; v++) {
        const double *B = S + (size_t)v * NF;
        for (size_t c = 0; c < C; c++) {
            size_t e = (size_t)v * C + c;
            double a = pi[e], b = pj[e];
            if (gi)
                gi[e] = (float)(B[F_I] + 2.0 * a * B[F_II] + b * B[F_IJ]);
            if (gj)
                gj[e] = (float)(B[F_J] + 2.0 * b * B[F_JJ] + a * B[F_IJ]);
        }
    }
    free(S);
    return VXM_OK;
}
