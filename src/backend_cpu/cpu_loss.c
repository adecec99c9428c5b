/* Losses of training doc §2 and their gradients: MSE (§2.2), Grad (§2.4), Dice (§2.3), KL (§2.5); NCC (§2.1)
 * lives in cpu_loss_ncc.c.  Forward values are reduced in double over a fixed, shape-only partition
 * (cpu_reduce.h) and rounded once to float; gradients are computed per element in double and rounded once, each
 * element by one thread, so every result is bitwise independent of the thread count. */
#include <math.h>
#include <stdlib.h>

#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_reduce.h"

#define ELEM_CHUNK 4096 /* elements per partial sum (flat losses) */
#define ROW_CHUNK 16    /* rows (fixed i, j) per partial sum (losses that need voxel coordinates) */

static vxm_status check_pair(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, const char *op,
                             const char *wa, const char *wb)
{
    vxm_status st;
    if ((st = cpu_check_tensor(be, a, op, wa)) || (st = cpu_check_tensor(be, b, op, wb)) ||
        (st = cpu_check_same(be, a, b, 1, op, wa, wb)))
        return st;
    return VXM_OK;
}

/* A gradient output: same shape and channels as its input `ref`, not aliasing `other` inputs. */
static vxm_status check_grad_out(vxm_backend *be, const vxm_tensor *ref, const vxm_tensor *g, const char *op,
                                 const char *what)
{
    vxm_status st;
    if ((st = cpu_check_tensor(be, g, op, what)) || (st = cpu_check_same(be, ref, g, 1, op, "input", what)))
        return st;
    return VXM_OK;
}

/* ---- MSE (§2.2) ------------------------------------------------------------------------------------------- */

typedef struct pair_job {
    const float *a, *b;
} pair_job;

static void mse_part(const void *arg, size_t b, size_t e, double *acc)
{
    const pair_job *J = arg;
    for (size_t i = b; i < e; i++) {
        float d = J->a[i] - J->b[i]; /* float32 difference as TF */
        acc[0] += (double)d * (double)d;
    }
}

vxm_status cpu_mse_loss(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, vxm_tensor *out)
{
    static const char op[] = "mse_loss";
    vxm_status st;
    if ((st = check_pair(be, a, b, op, "a", "b")) || (st = cpu_check_tensor(be, out, op, "output")))
        return st;
    size_t n = vxm_tensor_numel(a);
    pair_job J = {a->buf->data, b->buf->data};
    double s;
    if ((st = cpu_det_reduce(be, n, ELEM_CHUNK, 1, mse_part, &J, &s)))
        return st;
    out->buf->data[0] = (float)(s / (double)n);
    return VXM_OK;
}

vxm_status cpu_mse_loss_backward(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, float scale,
                                 vxm_tensor *da)
{
    static const char op[] = "mse_loss_backward";
    vxm_status st;
    if ((st = check_pair(be, a, b, op, "a", "b")) || (st = check_grad_out(be, a, da, op, "gradient")))
        return st;
    size_t n = vxm_tensor_numel(a);
    const float *pa = a->buf->data, *pb = b->buf->data;
    float *g = da->buf->data; /* may alias a or b: each element reads its inputs before writing */
    double coef = 2.0 * (double)scale / (double)n;
    long cnt = (long)n;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (n >= CPU_PAR_MIN)
    for (long i = 0; i < cnt; i++) {
        float d = pa[i] - pb[i];
        g[i] = (float)(coef * (double)d);
    }
    return VXM_OK;
}

/* ---- Grad (§2.4), shared with the precision term of KL (§2.5) ------------------------------------------------ */

typedef struct grad_job {
    const float *f;
    int n[3], C;
    int first; /* first differentiated axis: 3 - ndim */
    int l1;
} grad_job;

static size_t grad_rowlen(const grad_job *G)
{
    return (size_t)G->n[2] * (size_t)G->C;
}

/* Forward differences along axis d starting in row r = (i, j): the offset of the neighbour and how many
 * elements of the row have one (0 when the row is the last along d). */
static size_t grad_axis_span(const grad_job *G, size_t r, int d, size_t *off)
{
    size_t rowlen = grad_rowlen(G);
    int i = (int)(r / (size_t)G->n[1]), j = (int)(r % (size_t)G->n[1]);
    if (d == 0) {
        *off = (size_t)G->n[1] * rowlen;
        return i + 1 < G->n[0] ? rowlen : 0;
    }
    if (d == 1) {
        *off = rowlen;
        return j + 1 < G->n[1] ? rowlen : 0;
    }
    *off = (size_t)G->C;
    return rowlen - (size_t)G->C;
}

/* acc[d] += sum of |D| or D^2 over the forward differences D along axis d (float32 differences, as TF). */
static void grad_part(const void *arg, size_t b, size_t e, double *acc)
{
    const grad_job *G = arg;
    size_t rowlen = grad_rowlen(G);
    for (size_t r = b; r < e; r++) {
        const float *row = G->f + r * rowlen;
        for (int d = G->first; d < 3; d++) {
            size_t off, cnt = grad_axis_span(G, r, d, &off);
            double s = 0.0;
            for (size_t t = 0; t < cnt; t++) {
                float D = row[t + off] - row[t];
                s += G->l1 ? fabs((double)D) : (double)D * (double)D;
            }
            acc[d] += s;
        }
    }
}

/* Number of forward differences along axis d: numel / n_d * (n_d - 1). */
static double grad_count(const grad_job *G, int d)
{
    return (double)G->n[0] * G->n[1] * G->n[2] * G->C / G->n[d] * (G->n[d] - 1);
}

static vxm_status grad_setup(vxm_backend *be, const vxm_tensor *flow, int ndim, int l1, const char *op, grad_job *G)
{
    vxm_status st;
    if ((st = cpu_check_tensor(be, flow, op, "field")))
        return st;
    if (ndim < 1 || ndim > 3)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: ndim %d not in 1..3", op, ndim);
    G->f = flow->buf->data;
    for (int d = 0; d < 3; d++)
        G->n[d] = flow->shape[d];
    G->C = flow->channels;
    G->first = 3 - ndim;
    G->l1 = l1;
    for (int d = G->first; d < 3; d++)
        if (G->n[d] < 2) /* TF would average an empty difference tensor into NaN */
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: axis %d has %d voxels, differences need 2", op, d,
                             G->n[d]);
    return VXM_OK;
}

/* Grad value: (sum over the differentiated axes of mean(term)) / ndim. */
static vxm_status grad_value(vxm_backend *be, const grad_job *G, double *val)
{
    double acc[3];
    vxm_status st = cpu_det_reduce(be, (size_t)G->n[0] * (size_t)G->n[1], ROW_CHUNK, 3, grad_part, G, acc);
    if (st)
        return st;
    double s = 0.0;
    for (int d = G->first; d < 3; d++)
        s += acc[d] / grad_count(G, d);
    *val = s / (double)(3 - G->first);
    return VXM_OK;
}

/* Derivative of one difference term: sign(D) (tf.abs: 0 at 0, §2.7) or 2D. */
static inline double grad_term_deriv(float D, int l1)
{
    if (l1)
        return (double)((D > 0.0f) - (D < 0.0f));
    return 2.0 * (double)D;
}

/* out = sum over differentiated axes d of coef[d] * d(sum of terms along d)/d(element): each element meets the
 * difference to its predecessor (+) and to its successor (-). */
static void grad_backward(vxm_backend *be, const grad_job *G, const double coef[3], float *out)
{
    size_t rowlen = grad_rowlen(G);
    size_t stride[3] = {(size_t)G->n[1] * rowlen, rowlen, (size_t)G->C};
    long rows = (long)G->n[0] * G->n[1];
    int par = (size_t)rows * rowlen >= CPU_PAR_MIN;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (par)
    for (long r = 0; r < rows; r++) {
        int x[3] = {(int)(r / G->n[1]), (int)(r % G->n[1]), 0};
        const float *row = G->f + (size_t)r * rowlen;
        float *o = out + (size_t)r * rowlen;
        for (size_t t = 0; t < rowlen; t++) {
            x[2] = (int)(t / (size_t)G->C);
            float v = row[t];
            double g = 0.0;
            for (int d = G->first; d < 3; d++) {
                if (x[d] > 0)
                    g += coef[d] * grad_term_deriv(v - row[t - stride[d]], G->l1);
                if (x[d] + 1 < G->n[d])
                    g -= coef[d] * grad_term_deriv(row[t + stride[d]] - v, G->l1);
            }
            o[t] = (float)g;
        }
    }
}

vxm_status cpu_grad_loss(vxm_backend *be, const vxm_tensor *flow, int ndim, int l1, vxm_tensor *out)
{
    static const char op[] = "grad_loss";
    grad_job G;
    double val;
    vxm_status st;
    if ((st = grad_setup(be, flow, ndim, l1, op, &G)) || (st = cpu_check_tensor(be, out, op, "output")) ||
        (st = grad_value(be, &G, &val)))
        return st;
    out->buf->data[0] = (float)val;
    return VXM_OK;
}

vxm_status cpu_grad_loss_backward(vxm_backend *be, const vxm_tensor *flow, int ndim, int l1, float scale,
                                  vxm_tensor *dflow)
{
    static const char op[] = "grad_loss_backward";
    grad_job G;
    vxm_status st;
    if ((st = grad_setup(be, flow, ndim, l1, op, &G)) || (st = check_grad_out(be, flow, dflow, op, "gradient")))
        return st;
    if (dflow->buf == flow->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: gradient must not alias the field", op);
    double coef[3] = {0, 0, 0};
    for (int d = G.first; d < 3; d++)
        coef[d] = (double)scale / ((double)ndim * grad_count(&G, d));
    grad_backward(be, &G, coef, dflow->buf->data);
    return VXM_OK;
}

/* ---- Dice (§2.3) ------------------------------------------------------------------------------------------- */

typedef struct dice_job {
    const float *yt, *yp;
    int L; /* labels = channels */
} dice_job;

/* acc[l] += yt*yp, acc[L + l] += yt + yp over voxels [b, e). */
static void dice_part(const void *arg, size_t b, size_t e, double *acc)
{
    const dice_job *J = arg;
    size_t L = (size_t)J->L;
    for (size_t v = b; v < e; v++)
        for (size_t l = 0; l < L; l++) {
            float t = J->yt[v * L + l], p = J->yp[v * L + l];
            acc[l] += (double)t * (double)p;
            acc[L + l] += (double)(t + p);
        }
}

/* sums[0..L) = sum yt*yp, sums[L..2L) = sum (yt + yp) per label; caller frees *sums. */
static vxm_status dice_sums(vxm_backend *be, const vxm_tensor *yt, const vxm_tensor *yp, const char *op,
                            double **sums)
{
    vxm_status st;
    *sums = NULL;
    if ((st = check_pair(be, yt, yp, op, "y_true", "y_pred")))
        return st;
    dice_job J = {yt->buf->data, yp->buf->data, yt->channels};
    double *s = malloc(2 * (size_t)J.L * sizeof *s);
    if (!s)
        return cpu_nomem(be, 2 * (size_t)J.L * sizeof *s);
    size_t nvox = vxm_tensor_numel(yt) / (size_t)J.L;
    if ((st = cpu_det_reduce(be, nvox, ELEM_CHUNK / 4, 2 * J.L, dice_part, &J, s))) {
        free(s);
        return st;
    }
    *sums = s;
    return VXM_OK;
}

vxm_status cpu_dice_loss(vxm_backend *be, const vxm_tensor *ytrue, const vxm_tensor *ypred, vxm_tensor *out)
{
    static const char op[] = "dice_loss";
    vxm_status st;
    double *s;
    if ((st = cpu_check_tensor(be, out, op, "output")) || (st = dice_sums(be, ytrue, ypred, op, &s)))
        return st;
    int L = ytrue->channels;
    double acc = 0.0;
    for (int l = 0; l < L; l++) /* divide_no_nan(2 sum yt*yp, sum yt+yp) */
        acc += s[L + l] != 0.0 ? 2.0 * s[l] / s[L + l] : 0.0;
    out->buf->data[0] = (float)(-acc / L);
    free(s);
    return VXM_OK;
}

/* d(-mean_l top_l/bottom_l)/dyp = -(1/L) (2 yt bottom - top) / bottom^2, 0 where bottom = 0 (divide_no_nan). */
vxm_status cpu_dice_loss_backward(vxm_backend *be, const vxm_tensor *ytrue, const vxm_tensor *ypred, float scale,
                                  vxm_tensor *dpred)
{
    static const char op[] = "dice_loss_backward";
    vxm_status st;
    double *s;
    if ((st = check_grad_out(be, ypred, dpred, op, "gradient")))
        return st;
    if (dpred->buf == ytrue->buf || dpred->buf == ypred->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: gradient must not alias an input", op);
    if ((st = dice_sums(be, ytrue, ypred, op, &s)))
        return st;
    size_t L = (size_t)ytrue->channels, nvox = vxm_tensor_numel(ytrue) / L;
    const float *yt = ytrue->buf->data;
    float *g = dpred->buf->data;
    double c = -(double)scale / (double)L;
    long cnt = (long)nvox;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (nvox * L >= CPU_PAR_MIN)
    for (long v = 0; v < cnt; v++)
        for (size_t l = 0; l < L; l++) {
            double bot = s[L + l], top = 2.0 * s[l];
            double t = (double)yt[(size_t)v * L + l];
            g[(size_t)v * L + l] = bot != 0.0 ? (float)(c * (2.0 * t * bot - top) / (bot * bot)) : 0.0f;
        }
    free(s);
    return VXM_OK;
}

/* ---- KL (§2.5) --------------------------------------------------------------------------------------------- */

typedef struct kl_job {
    const float *s; /* log sigma */
    int n[3], C, first;
    double lambda;
} kl_job;

/* In-bounds face neighbours of voxel x over the differentiated axes (the degree map D). */
static inline int kl_degree(const kl_job *K, const int x[3])
{
    int deg = 0;
    for (int d = K->first; d < 3; d++)
        deg += (x[d] > 0) + (x[d] + 1 < K->n[d]);
    return deg;
}

static void kl_sigma_part(const void *arg, size_t b, size_t e, double *acc)
{
    const kl_job *K = arg;
    size_t C = (size_t)K->C, rowlen = (size_t)K->n[2] * C;
    for (size_t r = b; r < e; r++) {
        int x[3] = {(int)(r / (size_t)K->n[1]), (int)(r % (size_t)K->n[1]), 0};
        const float *row = K->s + r * rowlen;
        double sum = 0.0;
        for (x[2] = 0; x[2] < K->n[2]; x[2]++) {
            double ld = K->lambda * kl_degree(K, x);
            for (size_t c = 0; c < C; c++) {
                double sv = row[(size_t)x[2] * C + c];
                sum += ld * exp(sv) - sv;
            }
        }
        acc[0] += sum;
    }
}

static vxm_status kl_setup(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logsigma, int ndim,
                           float prior_lambda, const char *op, grad_job *G, kl_job *K)
{
    vxm_status st;
    if ((st = grad_setup(be, mean, ndim, 0, op, G)) || (st = check_pair(be, mean, logsigma, op, "mean", "log sigma")))
        return st;
    if (mean->channels != ndim)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: fields have %d channels, expected %d", op,
                         mean->channels, ndim);
    K->s = logsigma->buf->data;
    for (int d = 0; d < 3; d++)
        K->n[d] = mean->shape[d];
    K->C = ndim;
    K->first = 3 - ndim;
    K->lambda = prior_lambda;
    return VXM_OK;
}

vxm_status cpu_kl_loss(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logsigma, int ndim,
                       float prior_lambda, vxm_tensor *out)
{
    static const char op[] = "kl_loss";
    grad_job G;
    kl_job K;
    double sig, g;
    vxm_status st;
    if ((st = kl_setup(be, mean, logsigma, ndim, prior_lambda, op, &G, &K)) ||
        (st = cpu_check_tensor(be, out, op, "output")))
        return st;
    if ((st = cpu_det_reduce(be, (size_t)K.n[0] * (size_t)K.n[1], ROW_CHUNK, 1, kl_sigma_part, &K, &sig)) ||
        (st = grad_value(be, &G, &g)))
        return st;
    double sigma_term = sig / (double)vxm_tensor_numel(mean);
    double prec_term = K.lambda * 0.5 * g; /* lambda 0.5 sum_d mean((Delta_d mean)^2) / ndim */
    out->buf->data[0] = (float)(0.5 * ndim * (sigma_term + prec_term));
    return VXM_OK;
}

vxm_status cpu_kl_loss_backward(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logsigma, int ndim,
                                float prior_lambda, float scale, vxm_tensor *dmean, vxm_tensor *dlogsigma)
{
    static const char op[] = "kl_loss_backward";
    grad_job G;
    kl_job K;
    vxm_status st;
    if ((st = kl_setup(be, mean, logsigma, ndim, prior_lambda, op, &G, &K)))
        return st;
    if ((dmean && (st = check_grad_out(be, mean, dmean, op, "mean gradient"))) ||
        (dlogsigma && (st = check_grad_out(be, logsigma, dlogsigma, op, "log sigma gradient"))))
        return st;
    if ((dmean && (dmean->buf == mean->buf || dmean->buf == logsigma->buf)) ||
        (dlogsigma && (dlogsigma->buf == mean->buf || dlogsigma->buf == logsigma->buf)) ||
        (dmean && dlogsigma && dmean->buf == dlogsigma->buf))
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: gradients must not alias inputs or each other", op);
    if (dmean) { /* 0.5 nd * lambda * 0.5 * d(Grad l2)/d(mean) */
        double coef[3] = {0, 0, 0};
        for (int d = G.first; d < 3; d++)
            coef[d] = (double)scale * 0.25 * K.lambda / grad_count(&G, d);
        grad_backward(be, &G, coef, dmean->buf->data);
    }
    if (dlogsigma) { /* 0.5 nd (lambda D exp(s) - 1) / numel */
        double c = (double)scale * 0.5 * ndim / (double)vxm_tensor_numel(mean);
        size_t C = (size_t)ndim, rowlen = (size_t)K.n[2] * C;
        long rows = (long)K.n[0] * K.n[1];
        float *o = dlogsigma->buf->data;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if ((size_t)rows * rowlen >= CPU_PAR_MIN)
        for (long r = 0; r < rows; r++) {
            int x[3] = {(int)(r / K.n[1]), (int)(r % K.n[1]), 0};
            for (x[2] = 0; x[2] < K.n[2]; x[2]++) {
                double ld = K.lambda * kl_degree(&K, x);
                size_t base = (size_t)r * rowlen + (size_t)x[2] * C;
                for (size_t ch = 0; ch < C; ch++)
                    o[base + ch] = (float)(c * (ld * exp((double)K.s[base + ch]) - 1.0));
            }
        }
    }
    return VXM_OK;
}
