/* Finite-difference check of every training op of vxm_backend_ops (backend.h, "training" section) on every device,
 * table-driven in the manner of ggml's test-backend-ops grad mode.  For an op with forward F (an existing forward op
 * or a loss) and inputs x, a random cotangent r (for a loss: the scalar `scale`) defines
 *     L(x) = <r, F(x)>            accumulated in double from the float32 outputs,
 * whose gradient the backward op returns.  For a random subset of NCOORD coordinates per input (every coordinate
 * when the input is small or the gradient sparse) it is compared with the central difference
 *     fd = (L(x + h e_i) - L(x - h e_i)) / ((x_i + h) - (x_i - h))     (the step as actually stored in float32).
 * Besides, every backward op must OVERWRITE its output (outputs are pre-filled with junk), be bitwise repeatable,
 * and (where an output may be NULL) give the same result when asked for one output only.
 * One PASS/FAIL line per (case, device).  VXM_TEST_VERBOSE=1 prints the worst error ratio of each case.
 *
 * Step h (per case, in the table).  Inputs are O(1).  The linear ops (conv w.r.t. x, w and b; upsampling; concat;
 * scale; add; resize; the warp w.r.t. the image) and the piecewise-linear ones away from their kinks (LeakyReLU with
 * |x| >= 0.05, max-pooling with values 0.05 apart, the warp w.r.t. the displacement with every location >= 0.05
 * from an integer, l1 Grad with neighbours >= 0.05 apart) have no truncation error for h = 1e-2 < 0.05 / 2: the
 * only error is float32 rounding of the few outputs that change, ~1e-7 |y| / 2h ~ 1e-5 relative.  The smooth
 * ops (sample_normal's exp, NCC, KL's exp) have curvature scale O(1), so h = 1e-2 leaves a truncation error of
 * order h^2 ~ 1e-4 relative.  The losses are means over n elements: their float32 value carries ~1e-7 |loss| of
 * rounding while a step moves it by only ~2h |loss| / n, so the FD carries ~1e-7 n / 2h of relative noise; hence
 * small loss shapes (n <= 630), and h = 0.1 where the central difference stays exact or nearly so: MSE, l2 Grad
 * and KL w.r.t. the mean are quadratic, Dice's third derivative is O(1/n^2).  KL w.r.t. log sigma (exp, and a
 * loss value ~100x its gradient) uses h = 5e-2: truncation h^2/6 ~ 4e-4 relative, rounding below that.
 * Measured worst ratios |fd - an| / max(|an|, scale) on CPU, PoCL and rusticl: <= 1e-3 (NCC, l1 Grad, KL),
 * <= 5e-5 for all other ops.
 *
 * Tolerance: |fd - an| <= TOL * max(|an|, scale), TOL = 1e-2, scale = RMS of the whole analytic gradient of that
 * input.  By the estimates above the FD itself is good to <= ~1e-3 of the scale; a wrong routing, a missing
 * term, a wrong factor (2, 1/n, alpha), a dropped clamp or padding error changes the gradient by >= 5e-2 relative.
 *
 * The optimiser and buffer ops (adam_update, sgd_update, axpy, fill) and add / in-place leaky_relu_backward are
 * checked against a float32 reference computed here, within a few ulp: OpenCL may contract a*b+c into fma (one
 * rounding less) and its sqrt / divide are allowed 3 / 2.5 ulp; fill, add and the LeakyReLU gradient are exact. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test_backends.h"
#include "test_util.h"

#define NCOORD 20
#define TOL 1e-2
#define ALPHA 0.2f
#define SCALE_S (-0.7f)
#define FILL_V 0.37f
#define NCC_EPS 1e-5f
#define KL_LAMBDA 10.0f
#define JUNK 1234.5f
#define MAXIN 3

/* ---- fixed-seed PRNG (splitmix64) ------------------------------------------------------------------------ */

static unsigned long long rng_state;

static double urand(double lo, double hi)
{
    return tu_urand(&rng_state, lo, hi);
}

static void fill_uniform(float *p, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)urand(lo, hi);
}

/* ---- the case table ----------------------------------------------------------------------------------------- */

typedef enum {
    G_CONV, G_LEAKY, G_MAXPOOL, G_UPSAMPLE, G_CONCAT, G_SCALE, G_ADD, G_RESIZE, G_TRANSFORM, G_SAMPLE,
    G_MSE, G_NCC, G_GRAD, G_DICE, G_KL /* losses from G_MSE on: scalar output */
} gop;

typedef struct gcase {
    const char *name;
    gop op;
    int shape[3]; /* main input: conv x, pool/upsample/resize x, concat/add a, transform displacement grid, loss inputs */
    int c1, c2;   /* channels: conv Cin/Cout, concat a/b, others c1 */
    int ndim;     /* conv (2: kernel 1x3x3), transform, grad, kl */
    int stride;   /* conv */
    int f[3];     /* maxpool / upsample factors */
    float tie_tol;
    int aux[3]; /* resize output shape, transform image shape, add: b's shape */
    vxm_resize_mapping map;
    float factor[3];
    int flag;     /* leaky: ref = output; transform: some locations outside the grid; grad: l1 */
    int use_fill; /* transform */
    int win;      /* ncc */
    float h, h1; /* FD step; h1: for input 1 when nonzero */
    int all;      /* check every coordinate */
} gcase;

#define S3(a, b, c) {a, b, c}

static const gcase cases[] = {
    {"conv 3d 5x6x7 cin3 cout2 s1", G_CONV, S3(5, 6, 7), 3, 2, .ndim = 3, .stride = 1, .h = 1e-2f},
    {"conv 3d 5x6x7 cin3 cout2 s2", G_CONV, S3(5, 6, 7), 3, 2, .ndim = 3, .stride = 2, .h = 1e-2f},
    {"conv 2d 8x9 cin3 cout2 s1", G_CONV, S3(1, 8, 9), 3, 2, .ndim = 2, .stride = 1, .h = 1e-2f},
    {"conv 2d 8x9 cin2 cout3 s2", G_CONV, S3(1, 8, 9), 2, 3, .ndim = 2, .stride = 2, .h = 1e-2f},
    {"leaky_relu 3d 5x6x7 c3 ref=x", G_LEAKY, S3(5, 6, 7), 3, .h = 1e-2f},
    {"leaky_relu 2d 8x9 c2 ref=y", G_LEAKY, S3(1, 8, 9), 2, .flag = 1, .h = 1e-2f},
    {"maxpool 3d 5x6x7 c2 f2x2x2 tie_tol 1e-5", G_MAXPOOL, S3(5, 6, 7), 2, .f = S3(2, 2, 2), .tie_tol = 1e-5f,
     .h = 1e-2f, .all = 1},
    {"maxpool 3d 4x5x7 c1 f2x1x3 tie_tol 1e-5", G_MAXPOOL, S3(4, 5, 7), 1, .f = S3(2, 1, 3), .tie_tol = 1e-5f,
     .h = 1e-2f, .all = 1},
    {"maxpool 2d 8x9 c2 f1x2x2 tie_tol -1", G_MAXPOOL, S3(1, 8, 9), 2, .f = S3(1, 2, 2), .tie_tol = -1, .h = 1e-2f,
     .all = 1},
    {"upsample 3d 3x2x4 c2 f2x2x2", G_UPSAMPLE, S3(3, 2, 4), 2, .f = S3(2, 2, 2), .h = 1e-2f},
    {"upsample 2d 4x5 c3 f1x2x2", G_UPSAMPLE, S3(1, 4, 5), 3, .f = S3(1, 2, 2), .h = 1e-2f},
    {"concat 3d 5x6x7 2+3", G_CONCAT, S3(5, 6, 7), 2, 3, .h = 1e-2f},
    {"concat 2d 8x9 1+2", G_CONCAT, S3(1, 8, 9), 1, 2, .h = 1e-2f},
    {"scale 3d 5x6x7 c3", G_SCALE, S3(5, 6, 7), 3, .h = 1e-2f},
    {"add 3d 5x6x7 c2", G_ADD, S3(5, 6, 7), 2, .aux = S3(5, 6, 7), .h = 1e-2f},
    {"add 2d 8x9 + 9x8 c2", G_ADD, S3(1, 8, 9), 2, .aux = S3(1, 9, 8), .h = 1e-2f},
    {"resize linspace 3d 4x3x5 -> 7x6x9 c2", G_RESIZE, S3(4, 3, 5), 2, .aux = S3(7, 6, 9), .map = VXM_RESIZE_LINSPACE,
     .h = 1e-2f},
    {"resize linspace 3d 7x6x9 -> 3x4x5 c2", G_RESIZE, S3(7, 6, 9), 2, .aux = S3(3, 4, 5), .map = VXM_RESIZE_LINSPACE,
     .h = 1e-2f},
    {"resize legacy 3d 4x3x5 -> 8x6x10 f2 c2", G_RESIZE, S3(4, 3, 5), 2, .aux = S3(8, 6, 10), .map = VXM_RESIZE_LEGACY,
     .factor = S3(2, 2, 2), .h = 1e-2f},
    {"resize legacy 3d 8x6x10 -> 4x3x6 f0.6 c2", G_RESIZE, S3(8, 6, 10), 2, .aux = S3(4, 3, 6),
     .map = VXM_RESIZE_LEGACY, .factor = S3(0.6f, 0.6f, 0.6f), .h = 1e-2f},
    {"resize linspace 2d 5x6 -> 9x11 c1", G_RESIZE, S3(1, 5, 6), 1, .aux = S3(1, 9, 11), .map = VXM_RESIZE_LINSPACE,
     .h = 1e-2f},
    {"resize legacy 2d 6x5 -> 9x7 f1.5 c1", G_RESIZE, S3(1, 6, 5), 1, .aux = S3(1, 9, 7), .map = VXM_RESIZE_LEGACY,
     .factor = S3(1, 1.5f, 1.5f), .h = 1e-2f},
    {"transform 3d 5x6x7 c1 inside", G_TRANSFORM, S3(5, 6, 7), 1, .ndim = 3, .aux = S3(5, 6, 7), .h = 1e-2f},
    {"transform 3d 5x6x7 c3 img 6x5x7 clamped outside", G_TRANSFORM, S3(5, 6, 7), 3, .ndim = 3, .aux = S3(6, 5, 7),
     .flag = 1, .h = 1e-2f},
    {"transform 3d 5x6x7 c2 fill outside", G_TRANSFORM, S3(5, 6, 7), 2, .ndim = 3, .aux = S3(5, 6, 7), .flag = 1,
     .use_fill = 1, .h = 1e-2f},
    {"transform 2d 8x9 c1 inside", G_TRANSFORM, S3(1, 8, 9), 1, .ndim = 2, .aux = S3(1, 8, 9), .h = 1e-2f},
    {"transform 2d 8x9 c3 fill outside", G_TRANSFORM, S3(1, 8, 9), 3, .ndim = 2, .aux = S3(1, 8, 9), .flag = 1,
     .use_fill = 1, .h = 1e-2f},
    {"sample_normal 3d 5x6x7 c3", G_SAMPLE, S3(5, 6, 7), 3, .h = 1e-2f},
    {"sample_normal 2d 8x9 c2", G_SAMPLE, S3(1, 8, 9), 2, .h = 1e-2f},
    {"mse 3d 4x5x6 c1", G_MSE, S3(4, 5, 6), 1, .h = 0.1f},
    {"mse 2d 8x9 c2", G_MSE, S3(1, 8, 9), 2, .h = 0.1f},
    {"ncc 3d 5x6x7 c1 win3", G_NCC, S3(5, 6, 7), 1, .win = 3, .h = 1e-2f},
    {"ncc 3d 4x5x6 c2 win5", G_NCC, S3(4, 5, 6), 2, .win = 5, .h = 1e-2f},
    {"ncc 2d 8x9 c1 win3", G_NCC, S3(1, 8, 9), 1, .win = 3, .h = 1e-2f},
    {"ncc 2d 8x9 c2 win5", G_NCC, S3(1, 8, 9), 2, .win = 5, .h = 1e-2f},
    {"grad l1 3d 5x6x7 c3", G_GRAD, S3(5, 6, 7), 3, .ndim = 3, .flag = 1, .h = 1e-2f},
    {"grad l2 3d 5x6x7 c3", G_GRAD, S3(5, 6, 7), 3, .ndim = 3, .h = 0.1f},
    {"grad l1 2d 8x9 c2", G_GRAD, S3(1, 8, 9), 2, .ndim = 2, .flag = 1, .h = 1e-2f},
    {"grad l2 2d 8x9 c2", G_GRAD, S3(1, 8, 9), 2, .ndim = 2, .h = 0.1f},
    {"dice 3d 4x5x6 c2", G_DICE, S3(4, 5, 6), 2, .h = 0.1f},
    {"dice 2d 8x9 c3", G_DICE, S3(1, 8, 9), 3, .h = 0.1f},
    {"kl 3d 3x4x5 ndim3", G_KL, S3(3, 4, 5), 3, .ndim = 3, .h = 0.1f, .h1 = 5e-2f},
    {"kl 2d 6x7 ndim2", G_KL, S3(1, 6, 7), 2, .ndim = 2, .h = 0.1f, .h1 = 5e-2f},
};

/* ---- one (case, device) run ------------------------------------------------------------------------------- */

typedef struct grun {
    const gcase *c;
    vxm_backend *be;
    int nin;
    int diff[MAXIN]; /* inputs whose gradient is checked */
    vxm_tensor x[MAXIN], g[MAXIN], y, r;
    float *xh[MAXIN], *gh[MAXIN], *yh, *rh; /* host copies; rh: cotangent (losses: rh[0] = scale) */
    size_t xn[MAXIN], yn;
    int ok;
    char why[400];
} grun;

static void chk(grun *R, vxm_status st, const char *what)
{
    if (st != VXM_OK && R->ok) {
        R->ok = 0;
        snprintf(R->why, sizeof R->why, "%s: %s", what, vxm_context_error(R->be->ctx));
    }
}

static void conv_params(const gcase *c, vxm_conv_params *p, int ys[3])
{
    memset(p, 0, sizeof *p);
    for (int d = 0; d < 3; d++) {
        int two = c->ndim == 2 && d == 0;
        p->ksize[d] = two ? 1 : 3;
        p->stride[d] = two ? 1 : c->stride;
        int m;
        vxm_same_padding(c->shape[d], p->ksize[d], p->stride[d], &m, &p->pad_lo[d]);
        if (ys)
            ys[d] = m;
    }
    p->alpha = ALPHA; /* fused LeakyReLU off: its backward is leaky_relu_backward, checked on its own */
}

static int is_loss(gop op)
{
    return op >= G_MSE;
}

/* Input shapes, output shape and which inputs are differentiated. */
static void layout(grun *R, int xs[MAXIN][3], int xc[MAXIN], int ys[3], int *yc)
{
    const gcase *c = R->c;
    R->nin = 1;
    for (int k = 0; k < MAXIN; k++) {
        memcpy(xs[k], c->shape, sizeof xs[k]);
        xc[k] = c->c1;
        R->diff[k] = 1;
    }
    memcpy(ys, c->shape, 3 * sizeof(int));
    *yc = c->c1;
    switch (c->op) {
    case G_CONV: {
        vxm_conv_params p;
        conv_params(c, &p, ys);
        R->nin = 3;
        memcpy(xs[1], p.ksize, sizeof xs[1]);
        xc[1] = c->c1 * c->c2; /* the weight buffer (k0,k1,k2,Cin,Cout) */
        xs[2][0] = xs[2][1] = xs[2][2] = 1;
        xc[2] = *yc = c->c2;
        break;
    }
    case G_MAXPOOL:
    case G_UPSAMPLE:
        for (int d = 0; d < 3; d++)
            ys[d] = c->op == G_MAXPOOL ? c->shape[d] / c->f[d] : c->shape[d] * c->f[d];
        break;
    case G_CONCAT:
        R->nin = 2;
        xc[1] = c->c2;
        *yc = c->c1 + c->c2;
        break;
    case G_ADD:
        R->nin = 2;
        memcpy(xs[1], c->aux, sizeof xs[1]);
        break;
    case G_RESIZE: memcpy(ys, c->aux, 3 * sizeof(int)); break;
    case G_TRANSFORM:
        R->nin = 2;
        memcpy(xs[0], c->aux, sizeof xs[0]);
        xc[1] = c->ndim;
        break;
    case G_SAMPLE:
        R->nin = 3; /* mean, logvar, eps */
        R->diff[2] = 0;
        break;
    case G_KL: xc[0] = xc[1] = c->ndim; /* fall through */
    case G_MSE:
    case G_NCC:
    case G_DICE: R->nin = 2; break;
    default: break;
    }
    R->diff[0] = c->op != G_DICE; /* dice: only the prediction */
    if (is_loss(c->op)) {
        ys[0] = ys[1] = ys[2] = *yc = 1;
    }
}

/* Displacement component such that the location x_a + u lies >= 0.05 from every integer, inside [0, n-1] or (with
 * `outside`, sometimes) clearly outside it: the warp is multilinear in the location between these kinks. */
static float disp_component(int xa, int n, int outside)
{
    for (;;) {
        double p = urand(0, n - 1);
        if (outside && urand(0, 1) < 0.15)
            p = urand(0, 1) < 0.5 ? urand(-1.5, -0.05) : urand(n - 1 + 0.05, n + 0.5);
        double fr = p - floor(p);
        if (fr >= 0.05 && fr <= 0.95)
            return (float)(p - xa);
    }
}

/* Random values whose forward differences along every axis have |d| >= 0.05 (l1 Grad kinks at d = 0). */
static void fill_no_flat(float *x, const int s[3], int C)
{
    size_t st[3] = {(size_t)s[1] * s[2] * C, (size_t)s[2] * C, (size_t)C};
    for (size_t idx = 0, v = 0; v < (size_t)s[0] * s[1] * s[2]; v++) {
        int co[3] = {(int)(v / ((size_t)s[1] * s[2])), (int)(v / s[2] % s[1]), (int)(v % s[2])};
        for (int c = 0; c < C; c++, idx++) {
            int good = 0;
            while (!good) {
                x[idx] = (float)urand(-0.5, 0.5);
                good = 1;
                for (int a = 0; a < 3; a++)
                    if (co[a] > 0 && fabsf(x[idx] - x[idx - st[a]]) < 0.05f)
                        good = 0;
            }
        }
    }
}

static void init_values(grun *R)
{
    const gcase *c = R->c;
    for (int k = 0; k < R->nin; k++)
        fill_uniform(R->xh[k], R->xn[k], -1, 1);
    switch (c->op) {
    case G_LEAKY: /* away from the kink at 0 */
        for (size_t i = 0; i < R->xn[0]; i++)
            R->xh[0][i] = (float)((urand(0, 1) < 0.5 ? -1 : 1) * urand(0.05, 1));
        break;
    case G_MAXPOOL: { /* distinct values 0.05 apart (shuffled): no ties, no max changes under +-h */
        size_t n = R->xn[0];
        for (size_t i = 0; i < n; i++)
            R->xh[0][i] = (float)(0.05 * ((double)i - 0.5 * (double)n));
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = (size_t)urand(0, (double)(i + 1));
            float t = R->xh[0][i];
            R->xh[0][i] = R->xh[0][j];
            R->xh[0][j] = t;
        }
        break;
    }
    case G_TRANSFORM: {
        const int *s = c->shape;
        size_t idx = 0;
        for (int i = 0; i < s[0]; i++)
            for (int j = 0; j < s[1]; j++)
                for (int k = 0; k < s[2]; k++)
                    for (int d = 0; d < c->ndim; d++) {
                        int a = 3 - c->ndim + d, co[3] = {i, j, k};
                        R->xh[1][idx++] = disp_component(co[a], c->aux[a], c->flag);
                    }
        break;
    }
    case G_NCC: /* J correlated with I: cross and variances stay far above eps (no max(., eps) kink) */
        fill_uniform(R->xh[0], R->xn[0], 0, 1);
        for (size_t i = 0; i < R->xn[1]; i++)
            R->xh[1][i] = 0.6f * R->xh[0][i] + (float)urand(0, 0.4);
        break;
    case G_GRAD:
        if (c->flag)
            fill_no_flat(R->xh[0], c->shape, c->c1);
        break;
    case G_DICE: /* probabilities */
        fill_uniform(R->xh[0], R->xn[0], 0, 1);
        fill_uniform(R->xh[1], R->xn[1], 0, 1);
        break;
    default: break;
    }
    if (is_loss(c->op))
        R->rh[0] = (float)urand(0.5, 1.5);
    else
        fill_uniform(R->rh, R->yn, -1, 1);
}

static vxm_status forward(grun *R)
{
    const gcase *c = R->c;
    vxm_backend *be = R->be;
    const vxm_backend_ops *o = be->ops;
    vxm_tensor *x = R->x, *y = &R->y;
    int win[3] = {c->shape[0] == 1 ? 1 : c->win, c->win, c->win};
    vxm_conv_params p;
    switch (c->op) {
    case G_CONV: conv_params(c, &p, NULL); return o->conv(be, &x[0], x[1].buf, x[2].buf, &p, y);
    case G_LEAKY: return o->leaky_relu(be, &x[0], ALPHA, y);
    case G_MAXPOOL: return o->maxpool(be, &x[0], c->f, y);
    case G_UPSAMPLE: return o->upsample_nearest(be, &x[0], c->f, y);
    case G_CONCAT: return o->concat(be, &x[0], &x[1], y);
    case G_SCALE: return o->scale(be, &x[0], SCALE_S, y);
    case G_ADD: return o->add(be, &x[0], &x[1], y);
    case G_RESIZE: return o->resize_linear(be, &x[0], c->map, c->factor, y);
    case G_TRANSFORM:
        return o->spatial_transform(be, &x[0], &x[1], c->ndim, VXM_INTERP_LINEAR, c->use_fill, FILL_V, y);
    case G_SAMPLE: return o->sample_normal(be, &x[0], &x[1], &x[2], y);
    case G_MSE: return o->mse_loss(be, &x[0], &x[1], y);
    case G_NCC: return o->ncc_loss(be, &x[0], &x[1], win, NCC_EPS, y);
    case G_GRAD: return o->grad_loss(be, &x[0], c->ndim, c->flag, y);
    case G_DICE: return o->dice_loss(be, &x[0], &x[1], y);
    case G_KL: return o->kl_loss(be, &x[0], &x[1], c->ndim, KL_LAMBDA, y);
    }
    return VXM_EINVAL;
}

/* Analytic gradients into R->g[k] for the inputs in `mask` (bit k); ops whose outputs cannot be NULL write all. */
static vxm_status backward(grun *R, unsigned mask)
{
    const gcase *c = R->c;
    vxm_backend *be = R->be;
    const vxm_backend_ops *o = be->ops;
    vxm_tensor *x = R->x, *r = &R->r, *g = R->g;
    vxm_tensor *g0 = (mask & 1) ? &g[0] : NULL, *g1 = (mask & 2) ? &g[1] : NULL;
    int win[3] = {c->shape[0] == 1 ? 1 : c->win, c->win, c->win};
    float s = R->rh[0];
    vxm_conv_params p;
    vxm_status st;
    switch (c->op) {
    case G_CONV:
        conv_params(c, &p, NULL);
        if ((st = o->conv_backward_data(be, r, x[1].buf, &p, &g[0])) ||
            (st = o->conv_backward_filter(be, &x[0], r, &p, g[1].buf)))
            return st;
        return o->conv_backward_bias(be, r, g[2].buf);
    case G_LEAKY: return o->leaky_relu_backward(be, c->flag ? &R->y : &x[0], r, ALPHA, &g[0]);
    case G_MAXPOOL: return o->maxpool_backward(be, &x[0], r, c->f, c->tie_tol, &g[0]);
    case G_UPSAMPLE: return o->upsample_nearest_backward(be, r, c->f, &g[0]);
    case G_CONCAT:
        if ((st = o->slice_channels(be, r, 0, &g[0])))
            return st;
        return o->slice_channels(be, r, c->c1, &g[1]);
    case G_SCALE: return o->scale(be, r, SCALE_S, &g[0]); /* the adjoint of scaling is the same scaling */
    case G_ADD: /* identity: this case checks the forward add against L */
        if ((st = vxm_tensor_upload(be, &g[0], R->rh)))
            return st;
        return vxm_tensor_upload(be, &g[1], R->rh);
    case G_RESIZE: return o->resize_linear_backward(be, r, c->map, c->factor, &g[0]);
    case G_TRANSFORM: return o->spatial_transform_backward(be, &x[0], &x[1], r, c->ndim, c->use_fill, g0, g1);
    case G_SAMPLE: /* d mean = dy needs no op (backend.h) */
        if ((st = vxm_tensor_upload(be, &g[0], R->rh)))
            return st;
        return o->sample_normal_backward(be, &x[1], &x[2], r, &g[1]);
    case G_MSE: /* db = -da, as the caller does it */
        if ((st = o->mse_loss_backward(be, &x[0], &x[1], s, &g[0])))
            return st;
        return o->scale(be, &g[0], -1.0f, &g[1]);
    case G_NCC: return o->ncc_loss_backward(be, &x[0], &x[1], win, NCC_EPS, s, g0, g1);
    case G_GRAD: return o->grad_loss_backward(be, &x[0], c->ndim, c->flag, s, &g[0]);
    case G_DICE: return o->dice_loss_backward(be, &x[0], &x[1], s, &g[1]);
    case G_KL: return o->kl_loss_backward(be, &x[0], &x[1], c->ndim, KL_LAMBDA, s, g0, g1);
    }
    return VXM_EINVAL;
}

static int has_optional_outputs(gop op)
{
    return op == G_TRANSFORM || op == G_NCC || op == G_KL;
}

/* L = <r, F(x)> in double from the float32 output. */
static double eval_L(grun *R)
{
    if (!R->ok)
        return 0;
    chk(R, forward(R), "forward");
    chk(R, R->ok ? vxm_tensor_download(R->be, &R->y, R->yh) : VXM_OK, "download y");
    double L = 0;
    for (size_t i = 0; R->ok && i < R->yn; i++)
        L += (double)R->rh[i] * (double)R->yh[i];
    return L;
}

/* Pre-fills the gradient outputs with junk (every backward op must overwrite), runs backward(mask) and downloads
 * the requested gradients into dst[k]. */
static void run_backward(grun *R, unsigned mask, float *dst[MAXIN])
{
    for (int k = 0; k < R->nin && R->ok; k++) {
        for (size_t i = 0; i < R->xn[k]; i++)
            dst[k][i] = JUNK;
        chk(R, vxm_tensor_upload(R->be, &R->g[k], dst[k]), "upload junk");
    }
    chk(R, R->ok ? backward(R, mask) : VXM_OK, "backward");
    for (int k = 0; k < R->nin && R->ok; k++)
        if (R->diff[k] && (mask >> k & 1))
            chk(R, vxm_tensor_download(R->be, &R->g[k], dst[k]), "download gradient");
}

/* Central differences for input k at NCOORD random coordinates (all when small or c->all).  Returns the worst
 * |fd - an| / max(|an|, scale) and describes it in `worst`. */
static double fd_input(grun *R, int k, char *worst, size_t wn)
{
    const gcase *c = R->c;
    size_t n = R->xn[k];
    float *x = R->xh[k], *an = R->gh[k];
    double ss = 0, wr = 0;
    for (size_t i = 0; i < n; i++)
        ss += (double)an[i] * an[i];
    double scale = sqrt(ss / (double)n);
    size_t *idx = malloc(n * sizeof *idx);
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    size_t m = (c->all || n <= NCOORD + NCOORD / 4) ? n : NCOORD;
    for (size_t t = 0; t < m; t++) { /* partial Fisher-Yates: the first m of a random permutation */
        size_t j = t + (size_t)urand(0, (double)(n - t));
        size_t tmp = idx[t];
        idx[t] = idx[j];
        idx[j] = tmp;
    }
    for (size_t t = 0; t < m && R->ok; t++) {
        size_t i = idx[t];
        float h = (k == 1 && c->h1 > 0) ? c->h1 : c->h;
        float v = x[i], xp = v + h, xm = v - h;
        x[i] = xp;
        chk(R, vxm_tensor_upload(R->be, &R->x[k], x), "upload x+h");
        double Lp = eval_L(R);
        x[i] = xm;
        chk(R, R->ok ? vxm_tensor_upload(R->be, &R->x[k], x) : VXM_OK, "upload x-h");
        double Lm = eval_L(R);
        x[i] = v;
        double fd = (Lp - Lm) / ((double)xp - (double)xm);
        double ratio = fabs(fd - an[i]) / fmax(fmax(fabs(an[i]), scale), 1e-30);
        if (!(ratio <= wr)) {
            wr = ratio;
            snprintf(worst, wn, "input %d [%zu of %zu]: analytic %.7g fd %.7g (scale %.3g, ratio %.2e)", k, i, n,
                     (double)an[i], fd, scale, ratio);
        }
    }
    chk(R, R->ok ? vxm_tensor_upload(R->be, &R->x[k], x) : VXM_OK, "restore x");
    free(idx);
    return wr;
}

static void run_case(vxm_backend *be, const gcase *c, uint64_t seed, int verbose)
{
    grun R;
    memset(&R, 0, sizeof R);
    R.c = c;
    R.be = be;
    R.ok = 1;
    rng_state = seed;
    int xs[MAXIN][3], xc[MAXIN], ys[3], yc;
    layout(&R, xs, xc, ys, &yc);
    float *tmp[MAXIN] = {NULL, NULL, NULL};
    for (int k = 0; k < R.nin; k++) {
        chk(&R, vxm_tensor_alloc(be, xs[k], xc[k], &R.x[k]), "alloc x");
        chk(&R, vxm_tensor_alloc(be, xs[k], xc[k], &R.g[k]), "alloc g");
        R.xn[k] = (size_t)xs[k][0] * xs[k][1] * xs[k][2] * xc[k];
        R.xh[k] = malloc(R.xn[k] * sizeof(float));
        R.gh[k] = malloc(R.xn[k] * sizeof(float));
        tmp[k] = malloc(R.xn[k] * sizeof(float));
    }
    chk(&R, vxm_tensor_alloc(be, ys, yc, &R.y), "alloc y");
    R.yn = (size_t)ys[0] * ys[1] * ys[2] * yc;
    R.yh = malloc(R.yn * sizeof(float));
    R.rh = malloc(R.yn * sizeof(float));
    init_values(&R);
    if (!is_loss(c->op))
        chk(&R, vxm_tensor_alloc(be, ys, yc, &R.r), "alloc r");
    if (!is_loss(c->op) && R.ok)
        chk(&R, vxm_tensor_upload(be, &R.r, R.rh), "upload r");
    for (int k = 0; k < R.nin && R.ok; k++)
        chk(&R, vxm_tensor_upload(be, &R.x[k], R.xh[k]), "upload x");

    eval_L(&R); /* the forward output is the reference of leaky_relu_backward with ref = y */
    unsigned all = (1u << R.nin) - 1;
    run_backward(&R, all, R.gh);
    /* repeatable and overwriting: a second run (over fresh junk) must agree bitwise */
    run_backward(&R, all, tmp);
    for (int k = 0; k < R.nin && R.ok; k++)
        if (R.diff[k] && memcmp(tmp[k], R.gh[k], R.xn[k] * sizeof(float)) != 0) {
            R.ok = 0;
            snprintf(R.why, sizeof R.why, "gradient %d differs between two identical runs", k);
        }
    /* one output requested at a time (the other NULL) gives the same gradient */
    for (int k = 0; has_optional_outputs(c->op) && k < 2 && R.ok; k++) {
        if (!R.diff[k])
            continue;
        run_backward(&R, 1u << k, tmp);
        double d = tu_max_abs_diff(tmp[k], R.gh[k], R.xn[k]);
        if (R.ok && !(d <= 1e-6 * (1 + fabs(R.gh[k][0])))) {
            R.ok = 0;
            snprintf(R.why, sizeof R.why, "gradient %d alone differs from the joint run by %.3g", k, d);
        }
    }
    double worst = 0;
    char wdesc[300] = "";
    for (int k = 0; k < R.nin && R.ok; k++) {
        if (!R.diff[k])
            continue;
        char d[300];
        double w = fd_input(&R, k, d, sizeof d);
        if (!(w <= worst)) {
            worst = w;
            memcpy(wdesc, d, sizeof wdesc);
        }
    }
    char name[200];
    snprintf(name, sizeof name, "grad %s [%s]", c->name, be->spec);
    if (verbose && R.ok)
        printf("# %s: worst %s\n", name, wdesc[0] ? wdesc : "-");
    if (!R.ok)
        tu_report(0, name, "%s", R.why);
    else
        tu_report(worst <= TOL, name, "%s", wdesc);

    for (int k = 0; k < R.nin; k++) {
        vxm_tensor_release(be, &R.x[k]);
        vxm_tensor_release(be, &R.g[k]);
        free(R.xh[k]);
        free(R.gh[k]);
        free(tmp[k]);
    }
    vxm_tensor_release(be, &R.y);
    if (!is_loss(c->op))
        vxm_tensor_release(be, &R.r);
    free(R.yh);
    free(R.rh);
    vxm_context_clear_error(be->ctx);
}

/* ---- optimisers and buffer arithmetic against a float32 reference ----------------------------------------- */

#define OPT_N 1037 /* odd: not a multiple of any vector width or work-group size */
#define OPT_TAIL 5 /* floats past n that must stay untouched */
#define OPT_TOT (OPT_N + OPT_TAIL)

typedef struct obufs {
    vxm_buffer *b[4];
    float *h[4], *d[4]; /* host reference, device result */
    int ok;
    char why[300];
} obufs;

static void ob_fail(obufs *O, vxm_backend *be, vxm_status st, const char *what)
{
    if (st != VXM_OK && O->ok) {
        O->ok = 0;
        snprintf(O->why, sizeof O->why, "%s: %s", what, vxm_context_error(be->ctx));
    }
}

static void ob_write(obufs *O, vxm_backend *be, int k)
{
    if (O->ok)
        ob_fail(O, be, be->ops->buffer_write(be, O->b[k], O->h[k], OPT_TOT), "buffer_write");
}

/* Reads buffer k and compares it with the reference: |d - h| <= tol[i] for i < n, the tail exactly.  Then makes
 * the device value the reference (so the next step's reference starts from the device state). */
static void ob_compare(obufs *O, vxm_backend *be, int k, const float *tol, const char *what)
{
    if (!O->ok)
        return;
    ob_fail(O, be, be->ops->buffer_read(be, O->b[k], O->d[k], OPT_TOT), "buffer_read");
    for (int i = 0; i < OPT_TOT && O->ok; i++) {
        float d = O->d[k][i], h = O->h[k][i];
        int bad = i < OPT_N ? !(fabsf(d - h) <= tol[i]) : memcmp(&d, &h, sizeof d) != 0;
        if (bad) {
            O->ok = 0;
            snprintf(O->why, sizeof O->why, "%s[%d] = %.9g, reference %.9g (tolerance %.3g)%s", what, i, (double)d,
                     (double)h, (double)(i < OPT_N ? tol[i] : 0), i < OPT_N ? "" : " past n");
        }
    }
    memcpy(O->h[k], O->d[k], OPT_TOT * sizeof(float));
}

static void check_optim(vxm_backend *be)
{
    const vxm_backend_ops *o = be->ops;
    static const char *names[] = {"adam_update 3 steps", "sgd_update", "axpy", "fill"};
    float *tol[3];
    for (int k = 0; k < 3; k++)
        tol[k] = malloc(OPT_TOT * sizeof(float));
    for (int which = 0; which < 4; which++) {
        obufs O;
        memset(&O, 0, sizeof O);
        O.ok = 1;
        rng_state = 0xada0000ull + (uint64_t)which;
        for (int k = 0; k < 4; k++) {
            O.h[k] = malloc(OPT_TOT * sizeof(float));
            O.d[k] = malloc(OPT_TOT * sizeof(float));
            fill_uniform(O.h[k], OPT_TOT, -1, 1);
            ob_fail(&O, be, o->buffer_alloc(be, OPT_TOT, &O.b[k]), "buffer_alloc");
        }
        float *p = O.h[0], *g = O.h[1], *m = O.h[2], *v = O.h[3];
        for (int i = 0; i < OPT_TOT; i++) {
            v[i] = (float)urand(0, 0.01);
            m[i] *= 0.1f;
        }
        for (int k = 0; k < 4; k++)
            ob_write(&O, be, k);
        const float lr = 1e-3f, b1 = 0.9f, b2 = 0.999f, eps = 1e-7f;
        for (int step = 1; which == 0 && step <= 3 && O.ok; step++) {
            for (int i = 0; i < OPT_TOT; i++) /* gradients from 1 down to 1e-8: Adam's eps regime included */
                g[i] = (float)(urand(-1, 1) * pow(10.0, urand(-8, 0)));
            ob_write(&O, be, 1);
            float lr_t = (float)(lr * sqrt(1 - pow(b2, step)) / (1 - pow(b1, step)));
            ob_fail(&O, be, O.ok ? o->adam_update(be, O.b[0], O.b[1], O.b[2], O.b[3], OPT_N, lr_t, b1, b2, eps)
                                 : VXM_OK, "adam_update");
            for (int i = 0; i < OPT_N; i++) {
                float mo = m[i], vo = v[i];
                m[i] = mo + (g[i] - mo) * (1.0f - b1);
                v[i] = vo + (g[i] * g[i] - vo) * (1.0f - b2);
                float upd = lr_t * m[i] / (sqrtf(v[i]) + eps);
                /* one rounding per operation may differ (fma); the step also carries sqrt/divide's few ulp */
                tol[1][i] = 4 * FLT_EPSILON * (fabsf(mo) + fabsf(g[i]));
                tol[2][i] = 4 * FLT_EPSILON * (vo + g[i] * g[i]);
                tol[0][i] = 2 * FLT_EPSILON * fabsf(p[i]) + 16 * FLT_EPSILON * fabsf(upd);
                p[i] -= upd;
            }
            ob_compare(&O, be, 2, tol[1], "m");
            ob_compare(&O, be, 3, tol[2], "v");
            ob_compare(&O, be, 0, tol[0], "param");
        }
        if (which == 1 || which == 2) { /* sgd: p -= lr g;  axpy: y += a x  (same shape of update) */
            float a = which == 1 ? -0.3f : 1.7f;
            vxm_status st = which == 1 ? o->sgd_update(be, O.b[0], O.b[1], OPT_N, 0.3f)
                                       : o->axpy(be, a, O.b[1], O.b[0], OPT_N);
            ob_fail(&O, be, O.ok ? st : VXM_OK, names[which]);
            for (int i = 0; i < OPT_N; i++) {
                tol[0][i] = 2 * FLT_EPSILON * (fabsf(p[i]) + fabsf(a * g[i]));
                p[i] = p[i] + a * g[i];
            }
            ob_compare(&O, be, 0, tol[0], names[which]);
        }
        if (which == 3) {
            ob_fail(&O, be, O.ok ? o->fill(be, O.b[0], OPT_N, -3.25f) : VXM_OK, "fill");
            for (int i = 0; i < OPT_N; i++) {
                p[i] = -3.25f;
                tol[0][i] = 0;
            }
            ob_compare(&O, be, 0, tol[0], "fill");
        }
        char name[200];
        snprintf(name, sizeof name, "%s n=%d [%s]", names[which], OPT_N, be->spec);
        tu_report(O.ok, name, "%s", O.why);
        for (int k = 0; k < 4; k++) {
            if (O.b[k])
                o->buffer_free(be, O.b[k]);
            free(O.h[k]);
            free(O.d[k]);
        }
        vxm_context_clear_error(be->ctx);
    }
    for (int k = 0; k < 3; k++)
        free(tol[k]);
}

/* add (exact: one correctly rounded float add) out of place and in place (y == a), shapes differing with equal
 * numel; leaky_relu_backward (exact: dy * 1 or dy * alpha) with ref == 0 taking alpha, out of place and dx == dy. */
static void check_exact_elementwise(vxm_backend *be)
{
    const vxm_backend_ops *o = be->ops;
    const int sa[3] = {3, 4, 5}, sb[3] = {1, 8, 15};
    enum { N = 120 };
    vxm_tensor a = {0}, b = {0}, d = {0}, y = {0};
    float ha[N], hb[N], hy[N], ref[N], out[N];
    rng_state = 0xe1e0ull;
    fill_uniform(ha, N, -2, 2);
    fill_uniform(hb, N, -2, 2);
    for (int i = 0; i < N; i += 7)
        ha[i] = 0; /* the LeakyReLU reference at exactly 0 takes alpha (TF) */
    for (int i = 0; i < N; i++)
        hy[i] = JUNK;
    int alloc_ok = vxm_tensor_alloc(be, sa, 2, &a) == VXM_OK && vxm_tensor_alloc(be, sb, 1, &b) == VXM_OK &&
                   vxm_tensor_alloc(be, sa, 2, &d) == VXM_OK && vxm_tensor_alloc(be, sa, 2, &y) == VXM_OK;
    for (int pass = 0; pass < 4; pass++) {
        int lk = pass >= 2, inplace = pass & 1;
        for (int i = 0; i < N; i++)
            ref[i] = lk ? hb[i] * (ha[i] > 0 ? 1.0f : ALPHA) : ha[i] + hb[i];
        vxm_tensor *dst = inplace ? (lk ? &d : &a) : &y;
        int ok = alloc_ok && vxm_tensor_upload(be, &a, ha) == VXM_OK && vxm_tensor_upload(be, &b, hb) == VXM_OK &&
                 vxm_tensor_upload(be, &d, hb) == VXM_OK && vxm_tensor_upload(be, &y, hy) == VXM_OK;
        ok = ok && (lk ? o->leaky_relu_backward(be, &a, &d, ALPHA, dst) : o->add(be, &a, &b, dst)) == VXM_OK;
        ok = ok && vxm_tensor_download(be, dst, out) == VXM_OK;
        char name[200];
        snprintf(name, sizeof name, "%s%s exact [%s]", lk ? "leaky_relu_backward" : "add 3x4x5x2 + 1x8x15x1",
                 inplace ? (lk ? " dx == dy" : " y == a") : "", be->spec);
        if (!ok)
            tu_report(0, name, "%s", vxm_context_error(be->ctx));
        else
            tu_report(memcmp(out, ref, sizeof out) == 0, name, "max |diff| %.3g", tu_max_abs_diff(out, ref, N));
        vxm_context_clear_error(be->ctx);
    }
    vxm_tensor_release(be, &a);
    vxm_tensor_release(be, &b);
    vxm_tensor_release(be, &d);
    vxm_tensor_release(be, &y);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    if (!ctx) {
        printf("FAIL grad_ops: no context\n");
        return 1;
    }
    tb_list l;
    tb_open_all(ctx, &l);
    const char *ev = getenv("VXM_TEST_VERBOSE");
    int verbose = ev && *ev && strcmp(ev, "0") != 0;
    int ncases = (int)(sizeof cases / sizeof cases[0]);
    for (int b = 0; b < l.n; b++) {
        printf("# %s\n", l.be[b]->desc);
        for (int ci = 0; ci < ncases; ci++)
            run_case(l.be[b], &cases[ci], 0x96ad0000ull + (uint64_t)ci * 7919u, verbose);
        check_optim(l.be[b]);
        check_exact_elementwise(l.be[b]);
    }
    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
