/* Cross-backend agreement of every op of vxm_backend_ops, table-driven in the manner of ggml's test-backend-ops:
 * each configuration is run on the CPU backend (the reference) and on every OpenCL device, with the same inputs
 * from a fixed-seed generator, and the outputs are compared.  One PASS/FAIL line per (configuration, device).
 *
 * Tolerance (both must hold):
 *   normalised MSE  sum (a-b)^2 / sum b^2  <= 1e-10
 *   max |a - b|     <= 1e-5 * (1 + max |b|)
 * Justification: both backends compute in float32 but may sum in different orders (the OpenCL convolution
 * accumulates with exact fma() per tap, the CPU one may block differently; OpenCL exp() is allowed 3 ulp).  For
 * the largest reductions here (27 taps x 32 channels, O(1) terms) the rounding difference is a few 1e-7 of the
 * output scale, i.e. NMSE ~1e-13 and max-abs ~1e-6.  A semantic bug (wrong padding side, unclamped border, wrong
 * corner, wrong resize mapping, off-by-one stride) changes outputs by >= 1e-2 relative, NMSE >= 1e-4.  Nearest
 * interpolation, pooling, upsampling and concatenation must in fact agree exactly; they are held to the same bound.
 *
 * Nearest-neighbour tests keep every sampling coordinate at least 0.1 away from a .5 tie (ties are covered by the
 * exact worked examples of other tests). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test_backends.h"
#include "test_util.h"

/* ---- fixed-seed PRNG (splitmix64) ------------------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t splitmix64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi). */
static float urand(float lo, float hi)
{
    double u = (double)(splitmix64() >> 11) * (1.0 / 9007199254740992.0);
    return (float)(lo + (hi - lo) * u);
}

static void fill_uniform(float *p, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        p[i] = urand(lo, hi);
}

/* Displacement component whose fractional part keeps at least 0.1 from 0.5 (so x + u is never near a tie). */
static float no_tie(float lo, float hi)
{
    for (;;) {
        float v = urand(lo, hi);
        float fr = v - floorf(v);
        if (fabsf(fr - 0.5f) >= 0.1f)
            return v;
    }
}

/* ---- test configurations ----------------------------------------------------------------------------------- */

typedef enum {
    OP_CONV,
    OP_LEAKY,
    OP_SCALE,
    OP_MAXPOOL,
    OP_UPSAMPLE,
    OP_CONCAT,
    OP_RESIZE,
    OP_TRANSFORM,
    OP_VECINT,
    OP_AFFINE,
    OP_SAMPLE
} op_kind;

typedef struct tcase {
    op_kind op;
    int shape[3]; /* main input spatial shape (conv x, pool/upsample/resize x, transform displacement, ...) */
    int c1, c2;   /* channels: conv Cin/Cout, concat a/b, transform image channels, elementwise channels */
    int k[3], s[3];   /* conv kernel and stride */
    int leaky;        /* conv fused LeakyReLU */
    int f[3];         /* pool / upsample factors */
    int out[3];       /* resize output shape */
    vxm_resize_mapping map;
    float factor[3];  /* legacy resize factor */
    int ndim;         /* transform / vecint / affine */
    int nearest, use_fill;
    float fill;
    int img[3];       /* transform image shape */
    float dmax;       /* displacement magnitude */
    int steps;        /* vecint */
    int shift_center; /* affine */
    int eps;          /* sample_normal with eps */
    int inplace;      /* leaky / scale with y == x */
} tcase;

#define S3(a, b, c) {a, b, c}

static const tcase cases[] = {
    /* convolution: odd sizes, 2-D, stride 1 and 2 (asymmetric SAME padding on even sizes), Cin/Cout 1..32 */
    {.op = OP_CONV, .shape = S3(7, 5, 9), .c1 = 1, .c2 = 1, .k = S3(3, 3, 3), .s = S3(1, 1, 1)},
    {.op = OP_CONV, .shape = S3(7, 5, 9), .c1 = 2, .c2 = 16, .k = S3(3, 3, 3), .s = S3(1, 1, 1), .leaky = 1},
    {.op = OP_CONV, .shape = S3(7, 5, 9), .c1 = 3, .c2 = 3, .k = S3(3, 3, 3), .s = S3(2, 2, 2)},
    {.op = OP_CONV, .shape = S3(8, 6, 10), .c1 = 16, .c2 = 32, .k = S3(3, 3, 3), .s = S3(2, 2, 2), .leaky = 1},
    {.op = OP_CONV, .shape = S3(9, 7, 5), .c1 = 32, .c2 = 16, .k = S3(3, 3, 3), .s = S3(1, 1, 1), .leaky = 1},
    {.op = OP_CONV, .shape = S3(6, 5, 7), .c1 = 16, .c2 = 2, .k = S3(3, 3, 3), .s = S3(1, 2, 2)},
    {.op = OP_CONV, .shape = S3(8, 8, 8), .c1 = 32, .c2 = 3, .k = S3(3, 3, 3), .s = S3(1, 1, 1)},
    {.op = OP_CONV, .shape = S3(5, 6, 7), .c1 = 5, .c2 = 24, .k = S3(3, 3, 3), .s = S3(2, 1, 2), .leaky = 1},
    {.op = OP_CONV, .shape = S3(5, 4, 6), .c1 = 3, .c2 = 8, .k = S3(5, 5, 5), .s = S3(1, 1, 1)},
    {.op = OP_CONV, .shape = S3(6, 7, 8), .c1 = 4, .c2 = 10, .k = S3(2, 2, 2), .s = S3(2, 2, 2)},
    {.op = OP_CONV, .shape = S3(4, 5, 6), .c1 = 32, .c2 = 8, .k = S3(1, 1, 1), .s = S3(1, 1, 1), .leaky = 1},
    {.op = OP_CONV, .shape = S3(3, 4, 33), .c1 = 64, .c2 = 32, .k = S3(3, 3, 3), .s = S3(1, 1, 1), .leaky = 1},
    {.op = OP_CONV, .shape = S3(20, 24, 28), .c1 = 32, .c2 = 32, .k = S3(3, 3, 3), .s = S3(1, 1, 1), .leaky = 1},
    {.op = OP_CONV, .shape = S3(1, 13, 11), .c1 = 1, .c2 = 16, .k = S3(1, 3, 3), .s = S3(1, 1, 1), .leaky = 1},
    {.op = OP_CONV, .shape = S3(1, 13, 11), .c1 = 16, .c2 = 3, .k = S3(1, 3, 3), .s = S3(1, 2, 2)},
    {.op = OP_CONV, .shape = S3(1, 12, 10), .c1 = 2, .c2 = 32, .k = S3(1, 3, 3), .s = S3(1, 2, 2), .leaky = 1},
    {.op = OP_CONV, .shape = S3(1, 2, 3), .c1 = 2, .c2 = 1, .k = S3(1, 3, 3), .s = S3(1, 1, 1)},
    /* elementwise */
    {.op = OP_LEAKY, .shape = S3(7, 5, 9), .c1 = 3},
    {.op = OP_LEAKY, .shape = S3(1, 13, 11), .c1 = 16, .inplace = 1},
    {.op = OP_SCALE, .shape = S3(7, 5, 9), .c1 = 3},
    {.op = OP_SCALE, .shape = S3(1, 13, 11), .c1 = 2, .inplace = 1},
    /* pooling / upsampling / concatenation */
    {.op = OP_MAXPOOL, .shape = S3(8, 6, 10), .c1 = 3, .f = S3(2, 2, 2)},
    {.op = OP_MAXPOOL, .shape = S3(7, 5, 9), .c1 = 2, .f = S3(2, 2, 2)},
    {.op = OP_MAXPOOL, .shape = S3(1, 13, 11), .c1 = 16, .f = S3(1, 2, 2)},
    {.op = OP_MAXPOOL, .shape = S3(6, 5, 9), .c1 = 1, .f = S3(2, 1, 3)},
    {.op = OP_UPSAMPLE, .shape = S3(4, 3, 5), .c1 = 2, .f = S3(2, 2, 2)},
    {.op = OP_UPSAMPLE, .shape = S3(1, 7, 5), .c1 = 3, .f = S3(1, 2, 2)},
    {.op = OP_UPSAMPLE, .shape = S3(3, 4, 2), .c1 = 1, .f = S3(1, 3, 2)},
    {.op = OP_CONCAT, .shape = S3(7, 5, 9), .c1 = 2, .c2 = 3},
    {.op = OP_CONCAT, .shape = S3(1, 13, 11), .c1 = 16, .c2 = 1},
    /* resize: both mappings, up and down, non-integer ratios, 2-D */
    {.op = OP_RESIZE, .shape = S3(5, 4, 6), .c1 = 3, .out = S3(10, 8, 12), .map = VXM_RESIZE_LINSPACE},
    {.op = OP_RESIZE, .shape = S3(10, 8, 12), .c1 = 3, .out = S3(5, 4, 6), .map = VXM_RESIZE_LINSPACE},
    {.op = OP_RESIZE, .shape = S3(7, 5, 9), .c1 = 2, .out = S3(13, 11, 4), .map = VXM_RESIZE_LINSPACE},
    {.op = OP_RESIZE, .shape = S3(5, 4, 6), .c1 = 3, .out = S3(10, 8, 12), .map = VXM_RESIZE_LEGACY,
     .factor = S3(2, 2, 2)},
    {.op = OP_RESIZE, .shape = S3(10, 8, 12), .c1 = 3, .out = S3(5, 4, 6), .map = VXM_RESIZE_LEGACY,
     .factor = S3(0.5f, 0.5f, 0.5f)},
    {.op = OP_RESIZE, .shape = S3(7, 5, 9), .c1 = 1, .out = S3(10, 7, 13), .map = VXM_RESIZE_LEGACY,
     .factor = S3(1.5f, 1.5f, 1.5f)},
    {.op = OP_RESIZE, .shape = S3(1, 13, 11), .c1 = 2, .out = S3(1, 26, 22), .map = VXM_RESIZE_LINSPACE},
    {.op = OP_RESIZE, .shape = S3(1, 13, 11), .c1 = 2, .out = S3(1, 26, 22), .map = VXM_RESIZE_LEGACY,
     .factor = S3(1, 2, 2)},
    {.op = OP_RESIZE, .shape = S3(6, 5, 4), .c1 = 3, .out = S3(1, 9, 4), .map = VXM_RESIZE_LINSPACE},
    /* spatial transformer: linear / nearest, with and without fill, multi-channel, field grid != image grid */
    {.op = OP_TRANSFORM, .ndim = 3, .shape = S3(7, 5, 9), .img = S3(7, 5, 9), .c1 = 1, .dmax = 3},
    {.op = OP_TRANSFORM, .ndim = 3, .shape = S3(7, 5, 9), .img = S3(7, 5, 9), .c1 = 4, .dmax = 4, .use_fill = 1,
     .fill = -2.5f},
    {.op = OP_TRANSFORM, .ndim = 3, .shape = S3(5, 6, 4), .img = S3(9, 8, 7), .c1 = 3, .dmax = 6},
    {.op = OP_TRANSFORM, .ndim = 3, .shape = S3(6, 7, 5), .img = S3(6, 7, 5), .c1 = 3, .dmax = 3, .use_fill = 1,
     .fill = 0.5f},
    {.op = OP_TRANSFORM, .ndim = 3, .shape = S3(6, 7, 5), .img = S3(6, 7, 5), .c1 = 1, .dmax = 2, .use_fill = 1,
     .fill = -1},
    {.op = OP_TRANSFORM, .ndim = 3, .shape = S3(7, 5, 9), .img = S3(7, 5, 9), .c1 = 2, .dmax = 3, .nearest = 1},
    {.op = OP_TRANSFORM, .ndim = 3, .shape = S3(7, 5, 9), .img = S3(7, 5, 9), .c1 = 1, .dmax = 4, .nearest = 1,
     .use_fill = 1, .fill = 0},
    {.op = OP_TRANSFORM, .ndim = 2, .shape = S3(1, 13, 11), .img = S3(1, 13, 11), .c1 = 1, .dmax = 4},
    {.op = OP_TRANSFORM, .ndim = 2, .shape = S3(1, 13, 11), .img = S3(1, 13, 11), .c1 = 3, .dmax = 5,
     .use_fill = 1, .fill = 7},
    {.op = OP_TRANSFORM, .ndim = 2, .shape = S3(1, 13, 11), .img = S3(1, 13, 11), .c1 = 16, .dmax = 4,
     .nearest = 1},
    {.op = OP_TRANSFORM, .ndim = 2, .shape = S3(1, 9, 12), .img = S3(1, 13, 11), .c1 = 2, .dmax = 5, .nearest = 1,
     .use_fill = 1, .fill = 0},
    {.op = OP_TRANSFORM, .ndim = 2, .shape = S3(3, 9, 8), .img = S3(3, 9, 8), .c1 = 2, .dmax = 4},
    {.op = OP_TRANSFORM, .ndim = 1, .shape = S3(2, 3, 17), .img = S3(2, 3, 17), .c1 = 1, .dmax = 5, .nearest = 1},
    {.op = OP_TRANSFORM, .ndim = 1, .shape = S3(1, 1, 17), .img = S3(1, 1, 17), .c1 = 2, .dmax = 5},
    /* scaling and squaring */
    {.op = OP_VECINT, .ndim = 3, .shape = S3(7, 5, 9), .steps = 0, .dmax = 3},
    {.op = OP_VECINT, .ndim = 3, .shape = S3(7, 5, 9), .steps = 1, .dmax = 5},
    {.op = OP_VECINT, .ndim = 3, .shape = S3(7, 5, 9), .steps = 7, .dmax = 8},
    {.op = OP_VECINT, .ndim = 3, .shape = S3(8, 6, 10), .steps = 7, .dmax = 1.5f},
    {.op = OP_VECINT, .ndim = 2, .shape = S3(1, 13, 11), .steps = 7, .dmax = 10},
    {.op = OP_VECINT, .ndim = 2, .shape = S3(1, 13, 11), .steps = 1, .dmax = 4},
    {.op = OP_VECINT, .ndim = 1, .shape = S3(1, 1, 15), .steps = 7, .dmax = 6},
    {.op = OP_VECINT, .ndim = 2, .shape = S3(3, 7, 6), .steps = 7, .dmax = 4},
    /* affine -> dense displacement */
    {.op = OP_AFFINE, .ndim = 3, .shape = S3(7, 5, 9), .shift_center = 1},
    {.op = OP_AFFINE, .ndim = 3, .shape = S3(7, 5, 9), .shift_center = 0},
    {.op = OP_AFFINE, .ndim = 2, .shape = S3(1, 13, 11), .shift_center = 1},
    {.op = OP_AFFINE, .ndim = 2, .shape = S3(1, 13, 11), .shift_center = 0},
    {.op = OP_AFFINE, .ndim = 1, .shape = S3(1, 1, 15), .shift_center = 1},
    /* reparameterised sampling */
    {.op = OP_SAMPLE, .shape = S3(7, 5, 9), .c1 = 3, .eps = 1},
    {.op = OP_SAMPLE, .shape = S3(7, 5, 9), .c1 = 3, .eps = 0},
    {.op = OP_SAMPLE, .shape = S3(1, 13, 11), .c1 = 2, .eps = 1},
};

static void case_name(const tcase *t, char *buf, size_t n)
{
    const int *s = t->shape;
    int d2 = s[0] == 1 && t->op != OP_RESIZE;
    char sh[48];
    if (d2)
        snprintf(sh, sizeof sh, "2d %dx%d", s[1], s[2]);
    else
        snprintf(sh, sizeof sh, "3d %dx%dx%d", s[0], s[1], s[2]);
    switch (t->op) {
    case OP_CONV:
        snprintf(buf, n, "conv %s cin%d cout%d k%dx%dx%d s%dx%dx%d%s", sh, t->c1, t->c2, t->k[0], t->k[1], t->k[2],
                 t->s[0], t->s[1], t->s[2], t->leaky ? " leaky" : "");
        break;
    case OP_LEAKY: snprintf(buf, n, "leaky_relu %s c%d%s", sh, t->c1, t->inplace ? " in-place" : ""); break;
    case OP_SCALE: snprintf(buf, n, "scale %s c%d%s", sh, t->c1, t->inplace ? " in-place" : ""); break;
    case OP_MAXPOOL:
        snprintf(buf, n, "maxpool %s c%d f%dx%dx%d", sh, t->c1, t->f[0], t->f[1], t->f[2]);
        break;
    case OP_UPSAMPLE:
        snprintf(buf, n, "upsample %s c%d f%dx%dx%d", sh, t->c1, t->f[0], t->f[1], t->f[2]);
        break;
    case OP_CONCAT: snprintf(buf, n, "concat %s %d+%d", sh, t->c1, t->c2); break;
    case OP_RESIZE:
        snprintf(buf, n, "resize %s %dx%dx%d -> %dx%dx%d c%d", t->map == VXM_RESIZE_LINSPACE ? "linspace" : "legacy",
                 s[0], s[1], s[2], t->out[0], t->out[1], t->out[2], t->c1);
        break;
    case OP_TRANSFORM:
        snprintf(buf, n, "transform %s ndim%d %s c%d img %dx%dx%d disp<=%g%s", t->nearest ? "nearest" : "linear",
                 t->ndim, sh, t->c1, t->img[0], t->img[1], t->img[2], (double)t->dmax, t->use_fill ? " fill" : "");
        break;
    case OP_VECINT:
        snprintf(buf, n, "vecint ndim%d %s steps%d disp<=%g", t->ndim, sh, t->steps, (double)t->dmax);
        break;
    case OP_AFFINE:
        snprintf(buf, n, "affine_to_disp ndim%d %s%s", t->ndim, sh, t->shift_center ? " shift_center" : "");
        break;
    case OP_SAMPLE: snprintf(buf, n, "sample_normal %s c%d%s", sh, t->c1, t->eps ? " eps" : " mean"); break;
    }
}

/* ---- running one configuration on one backend ------------------------------------------------------------- */

#define MAXT 4

typedef struct run {
    vxm_backend *be;
    vxm_tensor t[MAXT];
    int nt;
    vxm_buffer *extra[2];
    int nextra;
} run;

static vxm_status tensor_from(run *r, const int shape[3], int ch, const float *host, vxm_tensor **out)
{
    vxm_tensor *t = &r->t[r->nt];
    vxm_status st = vxm_tensor_alloc(r->be, shape, ch, t);
    if (st)
        return st;
    r->nt++;
    if (host && (st = vxm_tensor_upload(r->be, t, host)))
        return st;
    *out = t;
    return VXM_OK;
}

static vxm_status buffer_from(run *r, const float *host, size_t n, vxm_buffer **out)
{
    vxm_status st = r->be->ops->buffer_alloc(r->be, n, out);
    if (st)
        return st;
    r->extra[r->nextra++] = *out;
    return r->be->ops->buffer_write(r->be, *out, host, n);
}

static void run_release(run *r)
{
    for (int i = 0; i < r->nt; i++)
        vxm_tensor_release(r->be, &r->t[i]);
    for (int i = 0; i < r->nextra; i++)
        r->be->ops->buffer_free(r->be, r->extra[i]);
    r->nt = r->nextra = 0;
}

/* Generates the inputs of case `t` from `seed` (the same for every backend), runs the op and returns the output in
 * *out (malloc'd, *nout floats). */
static vxm_status run_case(vxm_backend *be, const tcase *t, uint64_t seed, float **out, size_t *nout)
{
    run r = {.be = be};
    vxm_status st = VXM_OK;
    float *h[4] = {NULL, NULL, NULL, NULL};
    vxm_tensor *x = NULL, *x2 = NULL, *x3 = NULL, *y = NULL;
    int ysh[3];
    int ych = 0;
    size_t nin = (size_t)t->shape[0] * t->shape[1] * t->shape[2];
    rng_state = seed;
    *out = NULL;
    *nout = 0;
    const vxm_backend_ops *ops = be->ops;

    switch (t->op) {
    case OP_CONV: {
        vxm_conv_params p;
        memset(&p, 0, sizeof p);
        for (int d = 0; d < 3; d++) {
            p.ksize[d] = t->k[d];
            p.stride[d] = t->s[d];
            vxm_same_padding(t->shape[d], t->k[d], t->s[d], &ysh[d], &p.pad_lo[d]);
        }
        p.leaky = t->leaky;
        p.alpha = 0.2f;
        size_t nw = (size_t)t->k[0] * t->k[1] * t->k[2] * t->c1 * t->c2;
        float ws = 1.0f / sqrtf((float)(t->k[0] * t->k[1] * t->k[2] * t->c1));
        h[0] = malloc(nin * t->c1 * sizeof(float));
        h[1] = malloc(nw * sizeof(float));
        h[2] = malloc(t->c2 * sizeof(float));
        fill_uniform(h[0], nin * t->c1, -1, 1);
        fill_uniform(h[1], nw, -ws, ws);
        fill_uniform(h[2], t->c2, -0.5f, 0.5f);
        vxm_buffer *wb, *bb;
        ych = t->c2;
        if ((st = tensor_from(&r, t->shape, t->c1, h[0], &x)) || (st = buffer_from(&r, h[1], nw, &wb)) ||
            (st = buffer_from(&r, h[2], t->c2, &bb)) || (st = tensor_from(&r, ysh, ych, NULL, &y)))
            break;
        st = ops->conv(be, x, wb, bb, &p, y);
        break;
    }
    case OP_LEAKY:
    case OP_SCALE:
        h[0] = malloc(nin * t->c1 * sizeof(float));
        fill_uniform(h[0], nin * t->c1, -2, 2);
        memcpy(ysh, t->shape, sizeof ysh);
        ych = t->c1;
        if ((st = tensor_from(&r, t->shape, t->c1, h[0], &x)))
            break;
        if (t->inplace)
            y = x;
        else if ((st = tensor_from(&r, ysh, ych, NULL, &y)))
            break;
        st = t->op == OP_LEAKY ? ops->leaky_relu(be, x, 0.2f, y) : ops->scale(be, x, -1.5f, y);
        break;
    case OP_MAXPOOL:
    case OP_UPSAMPLE:
        h[0] = malloc(nin * t->c1 * sizeof(float));
        fill_uniform(h[0], nin * t->c1, -1, 1);
        for (int d = 0; d < 3; d++)
            ysh[d] = t->op == OP_MAXPOOL ? t->shape[d] / t->f[d] : t->shape[d] * t->f[d];
        ych = t->c1;
        if ((st = tensor_from(&r, t->shape, t->c1, h[0], &x)) || (st = tensor_from(&r, ysh, ych, NULL, &y)))
            break;
        st = t->op == OP_MAXPOOL ? ops->maxpool(be, x, t->f, y) : ops->upsample_nearest(be, x, t->f, y);
        break;
    case OP_CONCAT:
        h[0] = malloc(nin * t->c1 * sizeof(float));
        h[1] = malloc(nin * t->c2 * sizeof(float));
        fill_uniform(h[0], nin * t->c1, -1, 1);
        fill_uniform(h[1], nin * t->c2, -1, 1);
        memcpy(ysh, t->shape, sizeof ysh);
        ych = t->c1 + t->c2;
        if ((st = tensor_from(&r, t->shape, t->c1, h[0], &x)) || (st = tensor_from(&r, t->shape, t->c2, h[1], &x2)) ||
            (st = tensor_from(&r, ysh, ych, NULL, &y)))
            break;
        st = ops->concat(be, x, x2, y);
        break;
    case OP_RESIZE:
        h[0] = malloc(nin * t->c1 * sizeof(float));
        fill_uniform(h[0], nin * t->c1, -5, 5);
        memcpy(ysh, t->out, sizeof ysh);
        ych = t->c1;
        if ((st = tensor_from(&r, t->shape, t->c1, h[0], &x)) || (st = tensor_from(&r, ysh, ych, NULL, &y)))
            break;
        st = ops->resize_linear(be, x, t->map, t->factor, y);
        break;
    case OP_TRANSFORM: {
        size_t nimg = (size_t)t->img[0] * t->img[1] * t->img[2];
        h[0] = malloc(nimg * t->c1 * sizeof(float));
        h[1] = malloc(nin * t->ndim * sizeof(float));
        fill_uniform(h[0], nimg * t->c1, -3, 3);
        for (size_t i = 0; i < nin * t->ndim; i++)
            h[1][i] = t->nearest ? no_tie(-t->dmax, t->dmax) : urand(-t->dmax, t->dmax);
        memcpy(ysh, t->shape, sizeof ysh);
        ych = t->c1;
        if ((st = tensor_from(&r, t->img, t->c1, h[0], &x)) || (st = tensor_from(&r, t->shape, t->ndim, h[1], &x2)) ||
            (st = tensor_from(&r, ysh, ych, NULL, &y)))
            break;
        st = ops->spatial_transform(be, x, x2, t->ndim, t->nearest ? VXM_INTERP_NEAREST : VXM_INTERP_LINEAR,
                                    t->use_fill, t->fill, y);
        break;
    }
    case OP_VECINT:
        h[0] = malloc(nin * t->ndim * sizeof(float));
        fill_uniform(h[0], nin * t->ndim, -t->dmax, t->dmax);
        memcpy(ysh, t->shape, sizeof ysh);
        ych = t->ndim;
        if ((st = tensor_from(&r, t->shape, t->ndim, h[0], &x)) || (st = tensor_from(&r, ysh, ych, NULL, &y)))
            break;
        st = ops->vecint(be, x, t->ndim, t->steps, y);
        break;
    case OP_AFFINE: {
        float mat[12];
        int nd = t->ndim;
        for (int rr = 0; rr < nd; rr++)
            for (int c = 0; c <= nd; c++)
                mat[rr * (nd + 1) + c] = (c == nd) ? urand(-3, 3) : (rr == c ? 1.0f : 0.0f) + urand(-0.2f, 0.2f);
        memcpy(ysh, t->shape, sizeof ysh);
        ych = nd;
        if ((st = tensor_from(&r, ysh, ych, NULL, &y)))
            break;
        st = ops->affine_to_disp(be, mat, nd, t->shift_center, y);
        break;
    }
    case OP_SAMPLE:
        for (int i = 0; i < 3; i++) {
            h[i] = malloc(nin * t->c1 * sizeof(float));
            fill_uniform(h[i], nin * t->c1, i == 1 ? -6.0f : -2.0f, i == 1 ? 2.0f : 2.0f);
        }
        memcpy(ysh, t->shape, sizeof ysh);
        ych = t->c1;
        if ((st = tensor_from(&r, t->shape, t->c1, h[0], &x)) || (st = tensor_from(&r, t->shape, t->c1, h[1], &x2)) ||
            (st = tensor_from(&r, t->shape, t->c1, h[2], &x3)) || (st = tensor_from(&r, ysh, ych, NULL, &y)))
            break;
        st = ops->sample_normal(be, x, x2, t->eps ? x3 : NULL, y);
        break;
    }
    if (!st) {
        size_t n = (size_t)ysh[0] * ysh[1] * ysh[2] * ych;
        float *o = malloc(n * sizeof(float));
        if (!o) {
            st = VXM_ENOMEM;
        } else if ((st = vxm_tensor_download(be, y, o))) {
            free(o);
        } else {
            *out = o;
            *nout = n;
        }
    }
    run_release(&r);
    for (int i = 0; i < 4; i++)
        free(h[i]);
    return st;
}

/* ---- error-path checks on the OpenCL devices -------------------------------------------------------------- */

static void check_alloc_limit(vxm_context *ctx, vxm_backend *be)
{
    char name[160];
    snprintf(name, sizeof name, "oversized buffer fails cleanly on %s", be->spec);
    vxm_opencl_device_info info[TB_MAX];
    int nd = vxm_opencl_enumerate(ctx, info, TB_MAX);
    unsigned long long max_alloc = 0;
    for (int i = 0; i < nd; i++) {
        char spec[32];
        snprintf(spec, sizeof spec, "opencl:%d:%d", info[i].platform, info[i].device);
        if (strcmp(spec, be->spec) == 0)
            max_alloc = info[i].max_alloc;
    }
    if (max_alloc == 0) {
        tu_report(0, name, "device not found by vxm_opencl_enumerate");
        return;
    }
    vxm_buffer *b = NULL;
    size_t n = (size_t)(max_alloc / 4) + 1024;
    vxm_status st = be->ops->buffer_alloc(be, n, &b);
    int ok = st == VXM_ENOMEM && b == NULL && strstr(vxm_context_error(ctx), "CL_DEVICE_MAX_MEM_ALLOC_SIZE");
    tu_report(ok, name, "status %d, message '%s'", (int)st, vxm_context_error(ctx));
    if (b)
        be->ops->buffer_free(be, b);
    vxm_context_clear_error(ctx);
}

/* VXM_TEST_FILTER="a|b|...": run only the configurations whose name contains one of the substrings (handy under
 * valgrind, where llvmpipe is very slow). */
static int selected(const char *name)
{
    const char *f = getenv("VXM_TEST_FILTER");
    if (!f || !*f)
        return 1;
    while (*f) {
        size_t n = strcspn(f, "|");
        if (n > 0) {
            char sub[128];
            snprintf(sub, sizeof sub, "%.*s", (int)(n < sizeof sub ? n : sizeof sub - 1), f);
            if (strstr(name, sub))
                return 1;
        }
        f += n;
        if (*f)
            f++;
    }
    return 0;
}

/* Runs case `t` on l->be[0] (the CPU reference) and on l->be[first..n-1], one PASS/FAIL line per device. */
static void compare_case(vxm_context *ctx, tb_list *l, int first, int n, const tcase *t, uint64_t seed,
                         const char *tag, int verbose)
{
    char cname[192], name[320];
    case_name(t, cname, sizeof cname);
    snprintf(name, sizeof name, "%s%s", tag, cname);
    if (!selected(name))
        return;
    float *ref = NULL;
    size_t nref = 0;
    vxm_status st = run_case(l->be[0], t, seed, &ref, &nref);
    if (st) {
        snprintf(name, sizeof name, "ops_agree %s%s on cpu", tag, cname);
        tu_report(0, name, "reference failed: %s", vxm_context_error(ctx));
        vxm_context_clear_error(ctx);
        return;
    }
    double refmax = 0;
    for (size_t i = 0; i < nref; i++)
        if (fabs(ref[i]) > refmax)
            refmax = fabs(ref[i]);
    for (int b = first; b < n; b++) {
        snprintf(name, sizeof name, "ops_agree %s%s on %s", tag, cname, l->be[b]->spec);
        float *got = NULL;
        size_t ngot = 0;
        st = run_case(l->be[b], t, seed, &got, &ngot);
        if (st) {
            tu_report(0, name, "%s", vxm_context_error(ctx));
            vxm_context_clear_error(ctx);
            continue;
        }
        double nmse = tu_nmse(got, ref, nref);
        double mad = tu_max_abs_diff(got, ref, nref);
        double tol = 1e-5 * (1.0 + refmax);
        if (verbose)
            printf("# %s: nmse %.3g max abs diff %.3g (max |ref| %.3g)\n", name, nmse, mad, refmax);
        tu_report(ngot == nref && nmse <= 1e-10 && mad <= tol, name,
                  "nmse %.3g (<= 1e-10), max abs diff %.3g (<= %.3g)", nmse, mad, tol);
        free(got);
    }
    free(ref);
}

int main(void)
{
    (void)tu_have_shared; /* test_util.h helpers this program does not need */
    (void)tu_shared_path;
    vxm_context *ctx = vxm_context_create();
    if (!ctx) {
        printf("FAIL ops_agree: no context\n");
        return 1;
    }
    tb_list l;
    tb_open_all(ctx, &l);
    if (l.n == 0 || strcmp(l.be[0]->ops->name, "cpu") != 0) {
        printf("FAIL ops_agree: CPU reference backend unavailable\n");
        tb_close_all(&l);
        vxm_context_free(ctx);
        return 1;
    }
    if (l.n == 1)
        tu_skip("ops_agree", "no OpenCL device: nothing to compare with the CPU backend");
    for (int i = 1; i < l.n; i++) {
        printf("# %s\n", l.be[i]->desc);
        check_alloc_limit(ctx, l.be[i]);
    }
    if (l.n > 1) {
        vxm_backend *bad = NULL;
        vxm_status st = vxm_backend_opencl_create(ctx, 99, 0, &bad);
        tu_report(st == VXM_EDEVICE && bad == NULL && strstr(vxm_context_error(ctx), "no OpenCL platform 99"),
                  "opencl:99:0 is refused cleanly", "status %d, message '%s'", (int)st, vxm_context_error(ctx));
        vxm_context_clear_error(ctx);
        st = vxm_backend_opencl_create(ctx, 0, 99, &bad);
        tu_report(st == VXM_EDEVICE && bad == NULL && strstr(vxm_context_error(ctx), "no device 99"),
                  "opencl:0:99 is refused cleanly", "status %d, message '%s'", (int)st, vxm_context_error(ctx));
        vxm_context_clear_error(ctx);
    }

    const char *ev = getenv("VXM_TEST_VERBOSE");
    int verbose = ev && *ev && strcmp(ev, "0") != 0;
    int ncases = (int)(sizeof cases / sizeof cases[0]);
    for (int ci = 0; ci < ncases; ci++)
        compare_case(ctx, &l, 1, l.n, &cases[ci], 0x5eed0000ull + (uint64_t)ci * 7919u, "", verbose);

    /* Every convolution kernel variant (channel block x voxels per work-item) on every OpenCL device, forced with
     * VXM_OPENCL_CONV_BLOCK (the default choice above exercises only the variants the device's defaults pick). */
    static const tcase conv_sweep[] = {
        {.op = OP_CONV, .shape = S3(7, 6, 9), .c1 = 5, .c2 = 32, .k = S3(3, 3, 3), .s = S3(1, 2, 1), .leaky = 1},
        {.op = OP_CONV, .shape = S3(1, 13, 11), .c1 = 16, .c2 = 32, .k = S3(1, 3, 3), .s = S3(1, 2, 2)},
        {.op = OP_CONV, .shape = S3(4, 5, 2), .c1 = 8, .c2 = 20, .k = S3(3, 3, 3), .s = S3(1, 1, 1), .leaky = 1},
    };
    static const int blocks[][2] = {{4, 1}, {4, 4}, {4, 8}, {8, 1}, {8, 4}, {8, 8}, {16, 1}, {16, 4}, {16, 8},
                                    {32, 1}, {32, 4}, {32, 8}};
    vxm_opencl_device_info info[TB_MAX];
    int nd = vxm_opencl_enumerate(ctx, info, TB_MAX);
    for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++) {
        char env[32], tag[48];
        snprintf(env, sizeof env, "%dx%d", blocks[bi][0], blocks[bi][1]);
        snprintf(tag, sizeof tag, "[conv block %s] ", env);
        setenv("VXM_OPENCL_CONV_BLOCK", env, 1);
        tb_list v;
        v.n = 1;
        v.be[0] = l.be[0]; /* the CPU reference, not closed here */
        for (int i = 0; i < nd && v.n < TB_MAX; i++) {
            if (vxm_backend_opencl_create(ctx, info[i].platform, info[i].device, &v.be[v.n]) == VXM_OK)
                v.n++;
            else
                tu_report(0, "open opencl device", "%s", vxm_context_error(ctx));
        }
        for (size_t ci = 0; ci < sizeof conv_sweep / sizeof conv_sweep[0]; ci++)
            compare_case(ctx, &v, 1, v.n, &conv_sweep[ci], 0xc0de0000ull + ci * 131u, tag, verbose);
        for (int i = 1; i < v.n; i++)
            vxm_backend_close(v.be[i]);
    }
    unsetenv("VXM_OPENCL_CONV_BLOCK");

    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
