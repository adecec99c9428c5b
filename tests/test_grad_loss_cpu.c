/* CPU backend: gradients of the linear spatial transform and of the losses against central finite differences,
 * the loss test vectors of training doc §10, the Keras Adam table of §3.2, and bitwise equality of every
 * training op of this family between 1 and 2 threads.
 *
 * Finite differences.  fd = (f(x+h) - f(x-h)) / (x+h - x-h) with the perturbed inputs as actually rounded to
 * float32 and f accumulated in double.  Checks: max |fd - an| <= tol_rel * max |an| + tol_abs where
 *  - tol_abs covers the float32 output of f: a loss is computed in double and rounded once, so each of the two
 *    evaluations is within half an ulp (<= FLT_EPSILON |L| / 2) -> FLT_EPSILON |L| / (2h), doubled for margin;
 *    the transformer's f = sum w * y (in double) over float32 outputs y, of which the perturbation changes a few
 *    voxels' C channels, each a sum of 8 products (<= 16 FLT_EPSILON max|V| rounding) -> see st_tol_abs.
 *  - tol_rel covers truncation (zero for the piecewise-(bi)linear transformer as long as x +- h stays in one
 *    cell, hence displacement fractional parts kept >= 0.05 from integers and h = 1/64; zero for the quadratic
 *    MSE, Grad-l2 and KL-mean terms; O(h^2) for NCC, Dice and the KL exp term) and the float32 rounding of the
 *    analytic gradient itself.
 * The transformer also gets explicit one-sided cases (§2.7): integer location -> forward difference,
 * location n-1 -> 0, clamped outside -> 0 on that axis, use_fill -> no gradient at all. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test_util.h"

static vxm_context *g_ctx;
static vxm_backend *g_be;

#define OK(x)                                                                                                  \
    do {                                                                                                       \
        vxm_status s_ = (x);                                                                                   \
        if (s_ != VXM_OK) {                                                                                    \
            printf("FAIL %s:%d %s: %s\n", __FILE__, __LINE__, #x, vxm_context_error(g_ctx));                   \
            exit(1);                                                                                           \
        }                                                                                                      \
    } while (0)

/* ---- fixed-seed PRNG (xorshift64*) and host-mirrored tensors ---------------------------------------------- */

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

/* Uniform in [lo, hi). */
static double urand(double lo, double hi)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t z = rng_state * 0x2545f4914f6cdd1dull;
    return lo + (hi - lo) * ((double)(z >> 11) * 0x1p-53);
}

typedef struct ht {
    vxm_tensor t;
    float *h;
    size_t n;
} ht;

static ht hmake(int s0, int s1, int s2, int C)
{
    ht x;
    int s[3] = {s0, s1, s2};
    OK(vxm_tensor_alloc(g_be, s, C, &x.t));
    x.n = vxm_tensor_numel(&x.t);
    x.h = calloc(x.n, sizeof *x.h);
    return x;
}

static void hfill(ht *x, double lo, double hi)
{
    for (size_t i = 0; i < x->n; i++)
        x->h[i] = (float)urand(lo, hi);
}

static void hup(ht *x)
{
    OK(vxm_tensor_upload(g_be, &x->t, x->h));
}

static void hdown(ht *x)
{
    OK(vxm_tensor_download(g_be, &x->t, x->h));
}

static void hfree(ht *x)
{
    vxm_tensor_release(g_be, &x->t);
    free(x->h);
}

static ht hclone_shape(const ht *x)
{
    return hmake(x->t.shape[0], x->t.shape[1], x->t.shape[2], x->t.channels);
}

/* ---- finite-difference driver ------------------------------------------------------------------------------ */

typedef double (*scalar_fn)(void *arg);

/* Compares an[i] with scale * d f / d x[i] for every i not in skip; prints the numbers on a '#' line. */
static void fd_check(const char *name, scalar_fn f, void *arg, float *x, size_t n, double h, const float *an,
                     double scale, double tol_rel, double tol_abs, const unsigned char *skip)
{
    double maxerr = 0, maxan = 0;
    size_t worst = 0, used = 0;
    for (size_t i = 0; i < n; i++)
        if (!skip || !skip[i])
            maxan = fmax(maxan, fabs(an[i]));
    for (size_t i = 0; i < n; i++) {
        if (skip && skip[i])
            continue;
        float x0 = x[i], xp = (float)(x0 + h), xm = (float)(x0 - h);
        x[i] = xp;
        double fp = f(arg);
        x[i] = xm;
        double fm = f(arg);
        x[i] = x0;
        double fd = scale * (fp - fm) / ((double)xp - (double)xm);
        double err = fabs(fd - an[i]);
        if (err > maxerr || err != err) {
            maxerr = err != err ? INFINITY : err;
            worst = i;
        }
        used++;
    }
    double tol = tol_rel * maxan + tol_abs;
    printf("# %s: %zu elements, max|an| %.4g, max|fd-an| %.3g (at %zu), tol %.3g\n", name, used, maxan, maxerr,
           worst, tol);
    tu_report(maxerr <= tol && maxan > 0, name, "max |fd - an| %.3g > %.3g (max |an| %.3g, element %zu)", maxerr, tol,
              maxan, worst);
}

/* ---- losses ---------------------------------------------------------------------------------------------------- */

typedef enum { L_MSE, L_NCC, L_GRAD, L_DICE, L_KL } loss_kind;

typedef struct loss_case {
    loss_kind kind;
    ht a, b; /* MSE (a, b), NCC (I, J), Grad (flow), Dice (y_true, y_pred), KL (mean, log sigma) */
    int win[3], ndim, l1;
    float lambda;
    ht out;
} loss_case;

static double loss_eval(void *arg)
{
    loss_case *c = arg;
    hup(&c->a);
    if (c->kind != L_GRAD)
        hup(&c->b);
    const vxm_backend_ops *o = g_be->ops;
    switch (c->kind) {
    case L_MSE: OK(o->mse_loss(g_be, &c->a.t, &c->b.t, &c->out.t)); break;
    case L_NCC: OK(o->ncc_loss(g_be, &c->a.t, &c->b.t, c->win, 1e-5f, &c->out.t)); break;
    case L_GRAD: OK(o->grad_loss(g_be, &c->a.t, c->ndim, c->l1, &c->out.t)); break;
    case L_DICE: OK(o->dice_loss(g_be, &c->a.t, &c->b.t, &c->out.t)); break;
    case L_KL: OK(o->kl_loss(g_be, &c->a.t, &c->b.t, c->ndim, c->lambda, &c->out.t)); break;
    }
    hdown(&c->out);
    return (double)c->out.h[0];
}

/* ga, gb = scale * d loss / d a, b (gb unused for Grad; ga unused for Dice). */
static void loss_grads(loss_case *c, float scale, ht *ga, ht *gb)
{
    hup(&c->a);
    if (c->kind != L_GRAD)
        hup(&c->b);
    const vxm_backend_ops *o = g_be->ops;
    switch (c->kind) {
    case L_MSE:
        OK(o->mse_loss_backward(g_be, &c->a.t, &c->b.t, scale, &ga->t));
        OK(o->mse_loss_backward(g_be, &c->b.t, &c->a.t, scale, &gb->t));
        break;
    case L_NCC: OK(o->ncc_loss_backward(g_be, &c->a.t, &c->b.t, c->win, 1e-5f, scale, &ga->t, &gb->t)); break;
    case L_GRAD: OK(o->grad_loss_backward(g_be, &c->a.t, c->ndim, c->l1, scale, &ga->t)); break;
    case L_DICE: OK(o->dice_loss_backward(g_be, &c->a.t, &c->b.t, scale, &gb->t)); break;
    case L_KL: OK(o->kl_loss_backward(g_be, &c->a.t, &c->b.t, c->ndim, c->lambda, scale, &ga->t, &gb->t)); break;
    }
    if (c->kind != L_DICE)
        hdown(ga);
    if (c->kind != L_GRAD)
        hdown(gb);
}

static loss_case loss_new(loss_kind kind, int s0, int s1, int s2, int C)
{
    loss_case c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    c.a = hmake(s0, s1, s2, C);
    c.b = hmake(s0, s1, s2, C);
    c.out = hmake(1, 1, 1, 1);
    return c;
}

static void loss_free(loss_case *c)
{
    hfree(&c->a);
    hfree(&c->b);
    hfree(&c->out);
}

/* FD-checks the loss w.r.t. a (with_a) and b (with_b), steps ha, hb. */
static void loss_fd(const char *name, loss_case *c, int with_a, int with_b, double ha, double hb, double tol_rel,
                    const unsigned char *skip_a)
{
    const float scale = 0.75f; /* a non-unit scale checks that it multiplies the whole gradient */
    ht ga = hclone_shape(&c->a), gb = hclone_shape(&c->b);
    loss_grads(c, scale, &ga, &gb);
    double L0 = fabs(loss_eval(c));
    char nm[160];
    if (with_a) {
        snprintf(nm, sizeof nm, "%s d/da", name);
        fd_check(nm, loss_eval, c, c->a.h, c->a.n, ha, ga.h, scale, tol_rel, 2.0 * FLT_EPSILON * L0 / (2 * ha) * 2,
                 skip_a);
    }
    if (with_b) {
        snprintf(nm, sizeof nm, "%s d/db", name);
        fd_check(nm, loss_eval, c, c->b.h, c->b.n, hb, gb.h, scale, tol_rel, 2.0 * FLT_EPSILON * L0 / (2 * hb) * 2,
                 NULL);
    }
    hfree(&ga);
    hfree(&gb);
}

static void test_mse(void)
{
    loss_case c = loss_new(L_MSE, 6, 7, 5, 3);
    hfill(&c.a, -1, 1);
    hfill(&c.b, -1, 1);
    /* value against a host reference */
    double ref = 0;
    for (size_t i = 0; i < c.a.n; i++) {
        double d = (double)(c.a.h[i] - c.b.h[i]);
        ref += d * d;
    }
    ref /= (double)c.a.n;
    double v = loss_eval(&c);
    tu_report(fabs(v - ref) <= 1e-7 * ref, "mse value", "%.9g vs %.9g", v, ref);
    loss_fd("mse 6x7x5x3", &c, 1, 1, 0.05, 0.05, 1e-5, NULL);
    loss_free(&c);
}

static void test_ncc_case(const char *name, int s0, int s1, int s2, int C, int w0, int w1, int w2)
{
    loss_case c = loss_new(L_NCC, s0, s1, s2, C);
    c.win[0] = w0;
    c.win[1] = w1;
    c.win[2] = w2;
    hfill(&c.a, 0, 1);
    for (size_t i = 0; i < c.b.n; i++) /* J correlated with I, so cross is well above eps */
        c.b.h[i] = (float)(0.6 * c.a.h[i] + urand(0, 0.4));
    loss_fd(name, &c, 1, 1, 4e-3, 4e-3, 2e-3, NULL);
    loss_free(&c);
}

/* Flat J (all zero): cross = 0 and varJ = 0 are clamped to eps, so dJ is exactly 0 and dI comes from varI only. */
static void test_ncc_clamp(void)
{
    loss_case c = loss_new(L_NCC, 5, 6, 4, 2);
    c.win[0] = c.win[1] = c.win[2] = 3;
    hfill(&c.a, 0, 1);
    ht ga = hclone_shape(&c.a), gb = hclone_shape(&c.b);
    loss_grads(&c, 1.0f, &ga, &gb);
    double mx = 0;
    for (size_t i = 0; i < gb.n; i++)
        mx = fmax(mx, fabs(gb.h[i]));
    tu_report(mx == 0.0, "ncc clamp: flat J gets zero gradient", "max |dJ| %.3g", mx);
    double L0 = fabs(loss_eval(&c));
    fd_check("ncc clamp: dI through varI only", loss_eval, &c, c.a.h, c.a.n, 4e-3, ga.h, 1.0, 2e-3,
             4.0 * FLT_EPSILON * L0 / (2 * 4e-3), NULL);
    hfree(&ga);
    hfree(&gb);
    loss_free(&c);
}

static void test_ncc(void)
{
    test_ncc_case("ncc 3-D 6x7x5x3 win 3", 6, 7, 5, 3, 3, 3, 3);
    test_ncc_case("ncc 3-D 5x6x4x2 win 9 (window > volume)", 5, 6, 4, 2, 9, 9, 9);
    test_ncc_case("ncc 3-D 6x5x7x1 win 4x2x3 (even, asymmetric)", 6, 5, 7, 1, 4, 2, 3);
    test_ncc_case("ncc 2-D 1x11x10x1 win 9", 1, 11, 10, 1, 1, 9, 9);
    test_ncc_case("ncc 2-D 1x8x9x2 win 5", 1, 8, 9, 2, 1, 5, 5);
    test_ncc_clamp();
}

/* Skip elements next to a difference smaller than 2h (|d| has a kink at 0). */
static void grad_l1_skip(const ht *f, int ndim, double h, unsigned char *skip)
{
    const int *s = f->t.shape, C = f->t.channels;
    size_t stride[3] = {(size_t)s[1] * s[2] * C, (size_t)s[2] * C, (size_t)C};
    for (size_t i = 0; i < f->n; i++) {
        size_t v = i / (size_t)C;
        int x[3] = {(int)(v / ((size_t)s[1] * s[2])), (int)(v / (size_t)s[2] % (size_t)s[1]), (int)(v % (size_t)s[2])};
        for (int d = 3 - ndim; d < 3; d++) {
            if (x[d] > 0 && fabs((double)f->h[i] - f->h[i - stride[d]]) < 2 * h)
                skip[i] = 1;
            if (x[d] + 1 < s[d] && fabs((double)f->h[i + stride[d]] - f->h[i]) < 2 * h)
                skip[i] = 1;
        }
    }
}

/* Host reference of the Grad value (§2.4). */
static double grad_ref(const ht *f, int ndim, int l1)
{
    const int *s = f->t.shape, C = f->t.channels;
    double tot = 0;
    for (int d = 3 - ndim; d < 3; d++) {
        double sum = 0;
        size_t cnt = 0;
        for (int i = 0; i < s[0]; i++)
            for (int j = 0; j < s[1]; j++)
                for (int k = 0; k < s[2]; k++)
                    for (int c = 0; c < C; c++) {
                        int y[3] = {i, j, k};
                        y[d]++;
                        if (y[d] >= s[d])
                            continue;
                        float a = f->h[(((size_t)i * s[1] + j) * s[2] + k) * C + c];
                        float b = f->h[(((size_t)y[0] * s[1] + y[1]) * s[2] + y[2]) * C + c];
                        double D = (double)(b - a);
                        sum += l1 ? fabs(D) : D * D;
                        cnt++;
                    }
        tot += sum / (double)cnt;
    }
    return tot / ndim;
}

static void test_grad_case(const char *name, int s0, int s1, int s2, int C, int ndim, int l1)
{
    loss_case c = loss_new(L_GRAD, s0, s1, s2, C);
    c.ndim = ndim;
    c.l1 = l1;
    hfill(&c.a, -1, 1);
    double v = loss_eval(&c), ref = grad_ref(&c.a, ndim, l1);
    char nm[160];
    snprintf(nm, sizeof nm, "%s value", name);
    tu_report(fabs(v - ref) <= 1e-7 * ref, nm, "%.9g vs host %.9g", v, ref);
    double h = l1 ? 1e-3 : 0.05;
    unsigned char *skip = calloc(c.a.n, 1);
    if (l1)
        grad_l1_skip(&c.a, ndim, h, skip);
    loss_fd(name, &c, 1, 0, h, h, 1e-5, skip);
    free(skip);
    loss_free(&c);
}

static void test_grad(void)
{
    test_grad_case("grad l2 3-D 6x7x5x3", 6, 7, 5, 3, 3, 0);
    test_grad_case("grad l1 3-D 6x7x5x3", 6, 7, 5, 3, 3, 1);
    test_grad_case("grad l2 2-D 1x9x8x2", 1, 9, 8, 2, 2, 0);
    test_grad_case("grad l1 2-D 1x9x8x2", 1, 9, 8, 2, 2, 1);
    test_grad_case("grad l2 ndim 2 on 3x6x5x2 (axis 0 not differentiated)", 3, 6, 5, 2, 2, 0);
    /* tf.abs'(0) = 0: a constant field gets an exactly zero l1 gradient */
    loss_case c = loss_new(L_GRAD, 4, 5, 3, 3);
    c.ndim = 3;
    c.l1 = 1;
    for (size_t i = 0; i < c.a.n; i++)
        c.a.h[i] = 0.25f;
    ht g = hclone_shape(&c.a);
    loss_grads(&c, 1.0f, &g, NULL);
    double mx = 0;
    for (size_t i = 0; i < g.n; i++)
        mx = fmax(mx, fabs(g.h[i]));
    tu_report(mx == 0.0 && loss_eval(&c) == 0.0, "grad l1 of a constant field is 0 (sign(0) = 0)", "max %.3g", mx);
    hfree(&g);
    loss_free(&c);
}

static void test_dice(void)
{
    /* §10 test vector: per label 0.7777778, 0.6666667, loss -0.7222222 */
    loss_case c = loss_new(L_DICE, 1, 1, 4, 2);
    const float yt[8] = {1, 0, 1, 0, 0, 1, 0, 0}, yp[8] = {0.8f, 0.1f, 0.6f, 0.3f, 0.2f, 0.7f, 0, 0};
    memcpy(c.a.h, yt, sizeof yt);
    memcpy(c.b.h, yp, sizeof yp);
    double v = loss_eval(&c), ref = -(7.0 / 9.0 + 2.0 / 3.0) / 2.0;
    tu_report(fabs(v - ref) <= 1e-7, "dice §10 test vector -0.7222222", "%.9g vs %.9g", v, ref);
    loss_fd("dice §10 vector", &c, 0, 1, 1e-3, 1e-3, 1e-4, NULL);
    loss_free(&c);
    /* random soft labels, with label 2 empty in both (divide_no_nan: value and gradient 0) */
    c = loss_new(L_DICE, 5, 4, 3, 3);
    for (size_t v2 = 0; v2 < c.a.n / 3; v2++) {
        int lab = urand(0, 1) < 0.5;
        c.a.h[v2 * 3 + 0] = (float)(lab == 0);
        c.a.h[v2 * 3 + 1] = (float)(lab == 1);
        c.b.h[v2 * 3 + 0] = (float)urand(0, 1);
        c.b.h[v2 * 3 + 1] = (float)urand(0, 1);
    }
    loss_fd("dice 5x4x3x3 with an empty label", &c, 0, 1, 1e-3, 1e-3, 1e-4, NULL);
    ht ga = hclone_shape(&c.a), gb = hclone_shape(&c.b);
    loss_grads(&c, 1.0f, &ga, &gb);
    double mx = 0;
    for (size_t i = 2; i < gb.n; i += 3)
        mx = fmax(mx, fabs(gb.h[i]));
    tu_report(mx == 0.0, "dice empty label gets zero gradient (divide_no_nan)", "max %.3g", mx);
    hfree(&ga);
    hfree(&gb);
    loss_free(&c);
}

static void test_kl(void)
{
    /* §10: 3x3x3, ndim 3, lambda 10: mu = (0.1 i, 0.2 j^2, -0.05 k), s = (-1 - 0.1 i, -2, -1.5 + 0.05 (i+j+k)) */
    loss_case c = loss_new(L_KL, 3, 3, 3, 3);
    c.ndim = 3;
    c.lambda = 10.0f;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 3; k++) {
                float *m = c.a.h + ((i * 3 + j) * 3 + k) * 3, *s = c.b.h + ((i * 3 + j) * 3 + k) * 3;
                m[0] = (float)(0.1 * i);
                m[1] = (float)(0.2 * j * j);
                m[2] = (float)(-0.05 * k);
                s[0] = (float)(-1 - 0.1 * i);
                s[1] = -2.0f;
                s[2] = (float)(-1.5 + 0.05 * (i + j + k));
            }
    double kl = loss_eval(&c);
    /* prec_term = lambda 0.5 Grad_l2(mu) (§2.5) via the Grad op; sigma_term = KL / (0.5 nd) - prec_term */
    loss_case g = loss_new(L_GRAD, 3, 3, 3, 3);
    memcpy(g.a.h, c.a.h, c.a.n * sizeof *c.a.h);
    g.ndim = 3;
    double prec = 10.0 * 0.5 * loss_eval(&g), sigma = kl / 1.5 - prec;
    tu_report(fabs(kl - 16.98326829) <= 4e-6, "kl §10 KL 16.98326829", "%.9f", kl);
    /* the §10 values are float64 from exact decimals; mu here is float32 (relative 6e-8 per value, 1.2e-7 on
     * squared differences): relative tolerance 2.5e-7 */
    tu_report(fabs(prec - 0.1180555556) <= 3e-8, "kl §10 prec_term 0.1180555556", "%.10f", prec);
    tu_report(fabs(sigma - 11.20412331) <= 4e-6, "kl §10 sigma_term 11.20412331", "%.9f", sigma);
    printf("# kl: KL %.9f prec %.10f sigma %.9f\n", kl, prec, sigma);
    loss_fd("kl §10 field", &c, 1, 1, 0.25, 0.02, 1e-3, NULL);
    loss_free(&g);
    loss_free(&c);
    c = loss_new(L_KL, 4, 5, 3, 3);
    c.ndim = 3;
    c.lambda = 10.0f;
    hfill(&c.a, -1, 1);
    hfill(&c.b, -4, -1);
    loss_fd("kl 3-D 4x5x3", &c, 1, 1, 0.25, 0.02, 1e-3, NULL);
    loss_free(&c);
    c = loss_new(L_KL, 1, 6, 5, 2);
    c.ndim = 2;
    c.lambda = 3.0f;
    hfill(&c.a, -1, 1);
    hfill(&c.b, -3, 0);
    loss_fd("kl 2-D 1x6x5", &c, 1, 1, 0.25, 0.02, 1e-3, NULL);
    loss_free(&c);
}

/* ---- spatial transform ------------------------------------------------------------------------------------- */

typedef struct st_case {
    ht img, disp, w, y; /* w: the weights of f = sum w * y, i.e. the upstream gradient dy */
    int ndim, use_fill;
} st_case;

static double st_eval(void *arg)
{
    st_case *c = arg;
    hup(&c->img);
    hup(&c->disp);
    OK(g_be->ops->spatial_transform(g_be, &c->img.t, &c->disp.t, c->ndim, VXM_INTERP_LINEAR, c->use_fill, 0.0f,
                                    &c->y.t));
    hdown(&c->y);
    double s = 0;
    for (size_t i = 0; i < c->y.n; i++)
        s += (double)c->w.h[i] * (double)c->y.h[i];
    return s;
}

static void st_backward(st_case *c, ht *dimg, ht *ddisp)
{
    hup(&c->img);
    hup(&c->disp);
    hup(&c->w);
    OK(g_be->ops->spatial_transform_backward(g_be, &c->img.t, &c->disp.t, &c->w.t, c->ndim, c->use_fill,
                                             dimg ? &dimg->t : NULL, ddisp ? &ddisp->t : NULL));
    if (dimg)
        hdown(dimg);
    if (ddisp)
        hdown(ddisp);
}

static st_case st_new(const int is[3], const int gs[3], int C, int ndim, int use_fill)
{
    st_case c;
    c.img = hmake(is[0], is[1], is[2], C);
    c.disp = hmake(gs[0], gs[1], gs[2], ndim);
    c.w = hmake(gs[0], gs[1], gs[2], C);
    c.y = hmake(gs[0], gs[1], gs[2], C);
    c.ndim = ndim;
    c.use_fill = use_fill;
    hfill(&c.img, -1, 1);
    hfill(&c.w, -1, 1);
    return c;
}

static void st_free(st_case *c)
{
    hfree(&c->img);
    hfree(&c->disp);
    hfree(&c->w);
    hfree(&c->y);
}

/* Displacements in (-amp, amp) whose fractional part keeps >= 0.05 from 0 and 1 (x + u stays in one cell for
 * |h| < 0.05 and never sits on the [0, n-1] boundary). */
static void st_disp_fractional(st_case *c, double amp)
{
    for (size_t i = 0; i < c->disp.n; i++) {
        double u;
        do
            u = urand(-amp, amp);
        while (u - floor(u) < 0.05 || u - floor(u) > 0.95);
        c->disp.h[i] = (float)u;
    }
}

/* Rounding bound of f = sum w y when one input moves: `touched` output voxels change, C channels each. */
static double st_tol_abs(int C, double touched, double h)
{
    return 2.0 * touched * C * 16 * FLT_EPSILON / (2 * h);
}

static void test_st_fd(const char *name, const int is[3], const int gs[3], int C, int ndim, int use_fill)
{
    st_case c = st_new(is, gs, C, ndim, use_fill);
    st_disp_fractional(&c, 2.5);
    ht dimg = hclone_shape(&c.img), ddisp = hclone_shape(&c.disp);
    st_backward(&c, &dimg, &ddisp);
    char nm[160];
    const double hd = 1.0 / 64, hi = 0.5;
    snprintf(nm, sizeof nm, "%s d/ddisp", name);
    fd_check(nm, st_eval, &c, c.disp.h, c.disp.n, hd, ddisp.h, 1.0, 1e-5, st_tol_abs(C, 1, hd), NULL);
    snprintf(nm, sizeof nm, "%s d/dimg", name);
    fd_check(nm, st_eval, &c, c.img.h, c.img.n, hi, dimg.h, 1.0, 1e-5, st_tol_abs(C, 64, hi), NULL);
    hfree(&dimg);
    hfree(&ddisp);
    st_free(&c);
}

static size_t vidx(const int s[3], int i, int j, int k)
{
    return ((size_t)i * s[1] + j) * s[2] + k;
}

/* Explicit one-sided cases on a 5x6x4x2 image (3-D, same grid). */
static void test_st_explicit(void)
{
    const int s[3] = {5, 6, 4}, C = 2;
    st_case c = st_new(s, s, C, 3, 0);
    ht ddisp = hclone_shape(&c.disp), dimg = hclone_shape(&c.img);
    /* (1) disp = 0: integer locations -> forward difference V[x+e_d] - V[x]; 0 at x_d = n_d - 1 */
    memset(c.disp.h, 0, c.disp.n * sizeof(float));
    st_backward(&c, NULL, &ddisp);
    double err = 0;
    for (int i = 0; i < s[0]; i++)
        for (int j = 0; j < s[1]; j++)
            for (int k = 0; k < s[2]; k++)
                for (int d = 0; d < 3; d++) {
                    int x[3] = {i, j, k}, y[3] = {i, j, k};
                    double ref = 0;
                    if (x[d] + 1 < s[d]) {
                        y[d]++;
                        for (int ch = 0; ch < C; ch++)
                            ref += (double)c.w.h[vidx(s, i, j, k) * C + ch] *
                                   (double)(c.img.h[vidx(s, y[0], y[1], y[2]) * C + ch] -
                                            c.img.h[vidx(s, i, j, k) * C + ch]);
                    }
                    double e = fabs(ddisp.h[vidx(s, i, j, k) * 3 + d] - ref);
                    if (x[d] + 1 == s[d] && ddisp.h[vidx(s, i, j, k) * 3 + d] != 0.0f)
                        e = INFINITY;
                    err = fmax(err, e);
                }
    tu_report(err <= 1e-6, "transform: integer location -> forward difference, n-1 -> 0", "max err %.3g", err);
    /* (2) every voxel sampled at p_1 = n_1 - 1 exactly (axis 1 from elsewhere), p_0 = -0.5 (clamped below),
     * p_2 = n_2 - 1 + 0.3 (clamped above): components 1 and 2 pass... 1 is at n-1 -> 0, 0 and 2 are clamped -> 0 */
    for (int i = 0; i < s[0]; i++)
        for (int j = 0; j < s[1]; j++)
            for (int k = 0; k < s[2]; k++) {
                float *u = c.disp.h + vidx(s, i, j, k) * 3;
                u[0] = -0.5f - (float)i;
                u[1] = (float)(s[1] - 1 - j);
                u[2] = (float)(s[2] - 1) + 0.3f - (float)k;
            }
    st_backward(&c, NULL, &ddisp);
    double mx = 0;
    for (size_t i = 0; i < ddisp.n; i++)
        mx = fmax(mx, fabs(ddisp.h[i]));
    tu_report(mx == 0.0, "transform: location n-1 and clamped locations pass no gradient", "max %.3g", mx);
    /* (3) clamped on axis 0 only, integer interior on axes 1, 2: component 0 is 0, the others are the forward
     * differences of the clamped row 0 (the clamp blocks only its own axis) */
    for (int i = 0; i < s[0]; i++)
        for (int j = 0; j < s[1]; j++)
            for (int k = 0; k < s[2]; k++) {
                float *u = c.disp.h + vidx(s, i, j, k) * 3;
                u[0] = -1.25f - (float)i;
                u[1] = u[2] = 0.0f;
            }
    st_backward(&c, NULL, &ddisp);
    err = 0;
    for (int i = 0; i < s[0]; i++)
        for (int j = 0; j + 1 < s[1]; j++)
            for (int k = 0; k + 1 < s[2]; k++) {
                const float *g = ddisp.h + vidx(s, i, j, k) * 3;
                double r1 = 0, r2 = 0;
                for (int ch = 0; ch < C; ch++) {
                    double wv = c.w.h[vidx(s, i, j, k) * C + ch];
                    float v0 = c.img.h[vidx(s, 0, j, k) * C + ch];
                    r1 += wv * (double)(c.img.h[vidx(s, 0, j + 1, k) * C + ch] - v0);
                    r2 += wv * (double)(c.img.h[vidx(s, 0, j, k + 1) * C + ch] - v0);
                }
                err = fmax(err, fmax(fabs(g[1] - r1), fabs(g[2] - r2)));
                if (g[0] != 0.0f)
                    err = INFINITY;
            }
    tu_report(err <= 1e-6, "transform: clamp blocks only its own axis", "max err %.3g", err);
    /* (4) use_fill: voxels sampled outside pass nothing -- dimg equals the no-fill dimg of dy zeroed there, and
     * their ddisp is 0 */
    st_disp_fractional(&c, 2.5);
    c.use_fill = 1;
    st_backward(&c, &dimg, &ddisp);
    ht ref = hclone_shape(&c.img);
    float *w0 = malloc(c.w.n * sizeof *w0);
    memcpy(w0, c.w.h, c.w.n * sizeof *w0);
    int nout = 0;
    mx = 0;
    for (int i = 0; i < s[0]; i++)
        for (int j = 0; j < s[1]; j++)
            for (int k = 0; k < s[2]; k++) {
                const float *u = c.disp.h + vidx(s, i, j, k) * 3;
                float p[3] = {(float)i + u[0], (float)j + u[1], (float)k + u[2]};
                int out = 0;
                for (int d = 0; d < 3; d++)
                    out |= p[d] < 0 || p[d] > (float)(s[d] - 1);
                if (out) {
                    nout++;
                    for (int ch = 0; ch < C; ch++)
                        c.w.h[vidx(s, i, j, k) * C + ch] = 0.0f;
                    for (int d = 0; d < 3; d++)
                        mx = fmax(mx, fabs(ddisp.h[vidx(s, i, j, k) * 3 + d]));
                }
            }
    c.use_fill = 0;
    st_backward(&c, &ref, NULL);
    double dd = tu_max_abs_diff(dimg.h, ref.h, dimg.n);
    tu_report(nout > 0 && mx == 0.0 && dd == 0.0, "transform: use_fill voxels pass no gradient",
              "%d outside, max ddisp %.3g, dimg diff %.3g", nout, mx, dd);
    memcpy(c.w.h, w0, c.w.n * sizeof *w0);
    free(w0);
    hfree(&ref);
    hfree(&ddisp);
    hfree(&dimg);
    st_free(&c);
}

static void test_transform(void)
{
    const int s3[3] = {6, 7, 5}, s2[3] = {1, 9, 8}, g3[3] = {4, 5, 6};
    test_st_fd("transform 3-D 6x7x5x3", s3, s3, 3, 3, 0);
    test_st_fd("transform 3-D 6x7x5x3 use_fill", s3, s3, 3, 3, 1);
    test_st_fd("transform 3-D image 6x7x5x2 on grid 4x5x6", s3, g3, 2, 3, 0);
    test_st_fd("transform 2-D 1x9x8x2", s2, s2, 2, 2, 0);
    test_st_fd("transform 2-D 1x9x8x1 use_fill", s2, s2, 1, 2, 1);
    test_st_explicit();
}

/* ---- optimisers ---------------------------------------------------------------------------------------------- */

/* §3.2 table (float64 derivation).  Keras/TF form 1 - beta in float32 (1 - 0.999f = 0.00099998713, 1.3e-5 below
 * 0.001; 1 - 0.9f 2.4e-7 above 0.1), which moves theta by ~6.7e-6 relative (measured); the tolerance 5e-5 keeps
 * a margin, while the PyTorch form (eps added to the bias-corrected sqrt(v)) misses by a factor of 4 and more
 * for g <= 1e-6.  lr_t in double as the caller computes it. */
static void test_adam(void)
{
    const float gs[4] = {1.0f, 1e-3f, 1e-6f, 1e-8f};
    const double want[4][3] = {{-9.999968377e-05, -1.999994601e-04, -2.999992774e-04},
                               {-9.968476908e-05, -1.994616055e-04, -2.99279273e-04},
                               {-2.402530734e-05, -5.492166756e-05, -9.029917069e-05},
                               {-3.152309183e-07, -7.603425942e-07, -1.30481063e-06}};
    vxm_buffer *p, *g, *m, *v;
    OK(g_be->ops->buffer_alloc(g_be, 4, &p));
    OK(g_be->ops->buffer_alloc(g_be, 4, &g));
    OK(g_be->ops->buffer_alloc(g_be, 4, &m));
    OK(g_be->ops->buffer_alloc(g_be, 4, &v));
    const float zero[4] = {0, 0, 0, 0};
    OK(g_be->ops->buffer_write(g_be, p, zero, 4));
    OK(g_be->ops->buffer_write(g_be, m, zero, 4));
    OK(g_be->ops->buffer_write(g_be, v, zero, 4));
    OK(g_be->ops->buffer_write(g_be, g, gs, 4));
    double worst = 0;
    for (int t = 1; t <= 3; t++) {
        double lr_t = 1e-4 * sqrt(1.0 - pow(0.999, t)) / (1.0 - pow(0.9, t));
        OK(g_be->ops->adam_update(g_be, p, g, m, v, 4, (float)lr_t, 0.9f, 0.999f, 1e-7f));
        float th[4];
        OK(g_be->ops->buffer_read(g_be, p, th, 4));
        for (int k = 0; k < 4; k++) {
            double rel = fabs(th[k] - want[k][t - 1]) / fabs(want[k][t - 1]);
            worst = fmax(worst, rel);
            printf("# adam g=%g step %d: %.10g (table %.10g, rel %.2g)\n", gs[k], t, th[k], want[k][t - 1], rel);
        }
    }
    tu_report(worst <= 5e-5, "adam §3.2 table (g = 1, 1e-3, 1e-6, 1e-8; steps 1-3)", "worst rel err %.3g", worst);
    /* sgd, axpy, fill: exact float32 */
    const float pv[4] = {1, 2, 3, 4}, gv[4] = {0.5f, -1, 2, 0};
    OK(g_be->ops->buffer_write(g_be, p, pv, 4));
    OK(g_be->ops->buffer_write(g_be, g, gv, 4));
    OK(g_be->ops->sgd_update(g_be, p, g, 4, 0.25f));
    float r[4];
    OK(g_be->ops->buffer_read(g_be, p, r, 4));
    int ok = r[0] == 0.875f && r[1] == 2.25f && r[2] == 2.5f && r[3] == 4.0f;
    OK(g_be->ops->axpy(g_be, 2.0f, g, p, 4));
    OK(g_be->ops->buffer_read(g_be, p, r, 4));
    ok = ok && r[0] == 1.875f && r[1] == 0.25f && r[2] == 6.5f && r[3] == 4.0f;
    OK(g_be->ops->fill(g_be, p, 3, -1.5f));
    OK(g_be->ops->buffer_read(g_be, p, r, 4));
    ok = ok && r[0] == -1.5f && r[1] == -1.5f && r[2] == -1.5f && r[3] == 4.0f;
    tu_report(ok, "sgd_update, axpy, fill", "got %g %g %g %g", r[0], r[1], r[2], r[3]);
    g_be->ops->buffer_free(g_be, p);
    g_be->ops->buffer_free(g_be, g);
    g_be->ops->buffer_free(g_be, m);
    g_be->ops->buffer_free(g_be, v);
}

/* ---- determinism: 1 vs 2 threads on shapes above the parallel threshold ---------------------------------- */

#define NRES 16

typedef struct det_set {
    ht res[NRES];
    int nres;
} det_set;

static ht *det_next(det_set *R, const ht *like)
{
    ht *r = &R->res[R->nres++];
    *r = hclone_shape(like);
    return r;
}

static void det_run(int threads, ht *img, ht *disp, ht *dy, ht *a, ht *b, det_set *R)
{
    vxm_context_set_threads(g_ctx, threads);
    const vxm_backend_ops *o = g_be->ops;
    const int win[3] = {9, 9, 9};
    R->nres = 0;
    for (int fill = 0; fill < 2; fill++) {
        ht *di = det_next(R, img), *dd = det_next(R, disp);
        OK(o->spatial_transform_backward(g_be, &img->t, &disp->t, &dy->t, 3, fill, &di->t, &dd->t));
    }
    ht *gi = det_next(R, a), *gj = det_next(R, b);
    OK(o->ncc_loss_backward(g_be, &a->t, &b->t, win, 1e-5f, 0.5f, &gi->t, &gj->t));
    OK(o->grad_loss_backward(g_be, &disp->t, 3, 0, 0.5f, &det_next(R, disp)->t));
    OK(o->grad_loss_backward(g_be, &disp->t, 3, 1, 0.5f, &det_next(R, disp)->t));
    OK(o->dice_loss_backward(g_be, &a->t, &b->t, 0.5f, &det_next(R, a)->t));
    OK(o->mse_loss_backward(g_be, &a->t, &b->t, 0.5f, &det_next(R, a)->t));
    ht *km = det_next(R, disp), *ks = det_next(R, disp);
    OK(o->kl_loss_backward(g_be, &disp->t, &disp->t, 3, 10.0f, 0.5f, &km->t, &ks->t));
    for (int i = 0; i < R->nres; i++)
        hdown(&R->res[i]);
    /* scalar outputs, collected in one more result */
    ht *sc = det_next(R, img);
    ht out = hmake(1, 1, 1, 1);
    for (int k = 0; k < 5; k++) {
        switch (k) {
        case 0: OK(o->ncc_loss(g_be, &a->t, &b->t, win, 1e-5f, &out.t)); break;
        case 1: OK(o->grad_loss(g_be, &disp->t, 3, 0, &out.t)); break;
        case 2: OK(o->dice_loss(g_be, &a->t, &b->t, &out.t)); break;
        case 3: OK(o->mse_loss(g_be, &a->t, &b->t, &out.t)); break;
        default: OK(o->kl_loss(g_be, &disp->t, &disp->t, 3, 10.0f, &out.t)); break;
        }
        hdown(&out);
        sc->h[k] = out.h[0];
    }
    hfree(&out);
    vxm_context_set_threads(g_ctx, 0);
}

static void test_determinism(void)
{
    /* 40x36x32 voxels: 46080 voxels, x2 channels: every op crosses CPU_PAR_MIN (32768) */
    ht img = hmake(40, 36, 32, 2), disp = hmake(40, 36, 32, 3), dy = hmake(40, 36, 32, 2);
    ht a = hmake(40, 36, 32, 2), b = hmake(40, 36, 32, 2);
    hfill(&img, -1, 1);
    hfill(&disp, -3, 3);
    hfill(&dy, -1, 1);
    hfill(&a, 0, 1);
    hfill(&b, 0, 1);
    ht *all[5] = {&img, &disp, &dy, &a, &b};
    for (int i = 0; i < 5; i++)
        hup(all[i]);
    det_set R1, R2;
    det_run(1, &img, &disp, &dy, &a, &b, &R1);
    det_run(2, &img, &disp, &dy, &a, &b, &R2);
    int same = R1.nres == R2.nres, bad = -1;
    for (int i = 0; same && i < R1.nres; i++)
        if (memcmp(R1.res[i].h, R2.res[i].h, R1.res[i].n * sizeof(float))) {
            same = 0;
            bad = i;
        }
    tu_report(same, "bitwise identical results with 1 and 2 threads (transform, ncc, grad, dice, mse, kl)",
              "result %d differs", bad);
    for (int i = 0; i < R1.nres; i++) {
        hfree(&R1.res[i]);
        hfree(&R2.res[i]);
    }
    for (int i = 0; i < 5; i++)
        hfree(all[i]);
}

int main(void)
{
    g_ctx = vxm_context_create();
    if (!g_ctx || vxm_backend_cpu_create(g_ctx, &g_be) != VXM_OK) {
        printf("FAIL open cpu backend: %s\n", g_ctx ? vxm_context_error(g_ctx) : "no context");
        return 1;
    }
    test_mse();
    test_ncc();
    test_grad();
    test_dice();
    test_kl();
    test_transform();
    test_adam();
    test_determinism();
    vxm_backend_close(g_be);
    vxm_context_free(g_ctx);
    return tu_exit_code();
}
