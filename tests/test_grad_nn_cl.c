/* The OpenCL backend's network backward ops (conv data / filter / bias gradients, LeakyReLU, max-pooling, nearest
 * upsampling, slice, add, reparameterised sample, linear resize; training doc §2.7), on every OpenCL device, against
 * (1) a straightforward double-precision reference written here from the forward definitions, and (2) the CPU
 * backend's implementation of the same op (skipped while the CPU backend reports VXM_EUNSUPPORTED).  The CPU backend
 * is also checked against the reference: three opinions.
 *
 * Tolerance as tests/test_ops_agree.c: normalised MSE <= 1e-10 and max |a - b| <= 1e-5 * (1 + max |ref|) -- float32
 * sums of a few hundred O(1) terms in different orders differ by ~1e-6 of the scale; a wrong tap, flip, padding
 * side, stride phase, corner or weight changes results by >= 1e-2.  Max-pooling, upsampling and slicing must agree
 * exactly: their references are computed in float32 with the order the op documents (pool maximum recomputed as the
 * forward does; upsampling sums the children in row-major order from 0). */
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

static void fill_uniform(uint64_t *s, float *p, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(lo + (hi - lo) * ((double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0)));
}

/* ---- test cases ------------------------------------------------------------------------------------------------ */

typedef enum { T_CONV_DATA, T_CONV_FILTER, T_CONV_BIAS, T_LEAKY, T_ADD, T_SAMPLE, T_SLICE, T_MAXPOOL, T_UPSAMPLE,
               T_RESIZE } top;

typedef struct tcase {
    top op;
    int x[3];     /* forward input shape (conv x, pool x, upsample / resize x = the gradient's shape) */
    int c1, c2;   /* conv Cin / Cout; slice: x channels / y channels; others: channels */
    int k[3], s[3];
    int f[3];
    float tie;    /* maxpool tie_tol */
    int out[3];   /* resize output shape */
    vxm_resize_mapping map;
    float factor[3];
    int c0;       /* slice start */
    int alias;    /* leaky / add: output aliases an input */
} tcase;

#define S3(a, b, c) {a, b, c}
/* the three conv gradients of x shape (a,b,c), kernel (k0,k1,k2), stride (s0,s1,s2), Cin 3, Cout 4 */
#define CONV3(OP, a, b, c, k0, k1, k2, s0, s1, s2)                                                                 \
    {.op = OP, .x = {a, b, c}, .c1 = 3, .c2 = 4, .k = {k0, k1, k2}, .s = {s0, s1, s2}}
#define CONV_ALL(...) CONV3(T_CONV_DATA, __VA_ARGS__), CONV3(T_CONV_FILTER, __VA_ARGS__), CONV3(T_CONV_BIAS, __VA_ARGS__)

static const tcase cases[] = {
    CONV_ALL(7, 6, 5, 3, 3, 3, 1, 1, 1),
    CONV_ALL(7, 6, 5, 3, 3, 3, 2, 2, 2),
    CONV_ALL(7, 6, 5, 1, 1, 1, 1, 1, 1),
    CONV_ALL(7, 6, 5, 1, 1, 1, 2, 2, 2),
    CONV_ALL(6, 7, 5, 3, 3, 3, 1, 2, 2),
    CONV_ALL(1, 7, 6, 1, 3, 3, 1, 1, 1),
    CONV_ALL(1, 7, 6, 1, 3, 3, 1, 2, 2),
    CONV_ALL(1, 7, 6, 1, 1, 1, 1, 2, 2),
    /* wider layers (vector paths, several weight blocks, partial channel blocks), a 5x5x5 and an even kernel */
    {.op = T_CONV_DATA, .x = S3(5, 6, 7), .c1 = 16, .c2 = 32, .k = S3(3, 3, 3), .s = S3(1, 1, 1)},
    {.op = T_CONV_DATA, .x = S3(5, 6, 7), .c1 = 18, .c2 = 13, .k = S3(3, 3, 3), .s = S3(2, 2, 2)},
    {.op = T_CONV_FILTER, .x = S3(5, 6, 7), .c1 = 16, .c2 = 32, .k = S3(3, 3, 3), .s = S3(1, 1, 1)},
    {.op = T_CONV_FILTER, .x = S3(5, 6, 7), .c1 = 18, .c2 = 13, .k = S3(3, 3, 3), .s = S3(2, 2, 2)},
    {.op = T_CONV_FILTER, .x = S3(5, 6, 7), .c1 = 18, .c2 = 20, .k = S3(3, 3, 3), .s = S3(1, 2, 1)},
    {.op = T_CONV_DATA, .x = S3(5, 4, 6), .c1 = 3, .c2 = 8, .k = S3(5, 5, 5), .s = S3(1, 1, 1)},
    {.op = T_CONV_FILTER, .x = S3(5, 4, 6), .c1 = 3, .c2 = 8, .k = S3(5, 5, 5), .s = S3(1, 1, 1)},
    {.op = T_CONV_DATA, .x = S3(6, 7, 8), .c1 = 4, .c2 = 10, .k = S3(2, 2, 2), .s = S3(2, 2, 2)},
    {.op = T_CONV_FILTER, .x = S3(6, 7, 8), .c1 = 4, .c2 = 10, .k = S3(2, 2, 2), .s = S3(2, 2, 2)},
    {.op = T_CONV_BIAS, .x = S3(9, 8, 7), .c2 = 32, .k = S3(3, 3, 3), .s = S3(1, 1, 1)},
    /* element-wise */
    {.op = T_LEAKY, .x = S3(7, 6, 5), .c1 = 3},
    {.op = T_LEAKY, .x = S3(1, 7, 6), .c1 = 16, .alias = 1},
    {.op = T_ADD, .x = S3(7, 6, 5), .c1 = 3},
    {.op = T_ADD, .x = S3(1, 7, 6), .c1 = 4, .alias = 1},
    {.op = T_SAMPLE, .x = S3(7, 6, 5), .c1 = 3},
    {.op = T_SAMPLE, .x = S3(1, 7, 6), .c1 = 2},
    {.op = T_SLICE, .x = S3(7, 6, 5), .c1 = 7, .c2 = 3, .c0 = 2},
    {.op = T_SLICE, .x = S3(7, 6, 5), .c1 = 5, .c2 = 2, .c0 = 3},
    {.op = T_SLICE, .x = S3(1, 7, 6), .c1 = 16, .c2 = 16, .c0 = 0},
    /* pooling: near-ties within and beyond the tolerance, incomplete blocks at odd sizes */
    {.op = T_MAXPOOL, .x = S3(7, 6, 5), .c1 = 3, .f = S3(2, 2, 2), .tie = 1e-5f},
    {.op = T_MAXPOOL, .x = S3(7, 6, 5), .c1 = 3, .f = S3(2, 2, 2), .tie = -1.0f},
    {.op = T_MAXPOOL, .x = S3(1, 7, 6), .c1 = 5, .f = S3(1, 2, 2), .tie = -1.0f},
    {.op = T_MAXPOOL, .x = S3(1, 7, 6), .c1 = 5, .f = S3(1, 2, 2), .tie = 1e-5f},
    {.op = T_MAXPOOL, .x = S3(6, 5, 9), .c1 = 1, .f = S3(2, 1, 3), .tie = 1e-5f},
    {.op = T_UPSAMPLE, .x = S3(7, 6, 5), .c1 = 3, .f = S3(2, 2, 2)},
    {.op = T_UPSAMPLE, .x = S3(1, 7, 6), .c1 = 2, .f = S3(1, 2, 2)},
    {.op = T_UPSAMPLE, .x = S3(3, 4, 2), .c1 = 1, .f = S3(1, 3, 2)},
    /* resize: both mappings, up and down, 2-D */
    {.op = T_RESIZE, .x = S3(4, 3, 5), .c1 = 3, .out = S3(7, 6, 9), .map = VXM_RESIZE_LINSPACE},
    {.op = T_RESIZE, .x = S3(7, 6, 5), .c1 = 3, .out = S3(4, 3, 3), .map = VXM_RESIZE_LINSPACE},
    {.op = T_RESIZE, .x = S3(1, 4, 5), .c1 = 2, .out = S3(1, 8, 10), .map = VXM_RESIZE_LINSPACE},
    {.op = T_RESIZE, .x = S3(1, 7, 6), .c1 = 2, .out = S3(1, 4, 3), .map = VXM_RESIZE_LINSPACE},
    {.op = T_RESIZE, .x = S3(6, 5, 4), .c1 = 3, .out = S3(1, 9, 4), .map = VXM_RESIZE_LINSPACE},
    {.op = T_RESIZE, .x = S3(4, 3, 5), .c1 = 3, .out = S3(8, 6, 10), .map = VXM_RESIZE_LEGACY, .factor = S3(2, 2, 2)},
    {.op = T_RESIZE, .x = S3(7, 6, 5), .c1 = 3, .out = S3(3, 3, 2), .map = VXM_RESIZE_LEGACY,
     .factor = S3(0.5f, 0.5f, 0.5f)},
    {.op = T_RESIZE, .x = S3(7, 5, 6), .c1 = 1, .out = S3(10, 7, 9), .map = VXM_RESIZE_LEGACY,
     .factor = S3(1.5f, 1.5f, 1.5f)},
    {.op = T_RESIZE, .x = S3(1, 7, 6), .c1 = 2, .out = S3(1, 14, 12), .map = VXM_RESIZE_LEGACY, .factor = S3(1, 2, 2)},
    {.op = T_RESIZE, .x = S3(1, 7, 6), .c1 = 2, .out = S3(1, 3, 3), .map = VXM_RESIZE_LEGACY,
     .factor = S3(1, 0.5f, 0.5f)},
};

static const char *const op_names[] = {"conv_backward_data", "conv_backward_filter", "conv_backward_bias",
                                       "leaky_relu_backward", "add", "sample_normal_backward", "slice_channels",
                                       "maxpool_backward", "upsample_nearest_backward", "resize_linear_backward"};

/* ---- problem set-up: inputs, shapes, output size -------------------------------------------------------------- */

#define MAXIN 3

typedef struct problem {
    const tcase *c;
    int ish[MAXIN][3], ich[MAXIN]; /* input tensors (or, for w, a flat buffer: ich = count, ish = 1x1x1) */
    float *in[MAXIN];
    int nin;
    int osh[3], och; /* output tensor / buffer */
    size_t nout;
    int exact;
    vxm_conv_params p;
} problem;

static void set3(int *d, const int *s)
{
    memcpy(d, s, 3 * sizeof *d);
}

static size_t count(const int *sh, int ch)
{
    return (size_t)sh[0] * (size_t)sh[1] * (size_t)sh[2] * (size_t)ch;
}

static void conv_dy_shape(const tcase *c, vxm_conv_params *p, int *dysh)
{
    memset(p, 0, sizeof *p);
    for (int d = 0; d < 3; d++) {
        p->ksize[d] = c->k[d];
        p->stride[d] = c->s[d];
        vxm_same_padding(c->x[d], c->k[d], c->s[d], &dysh[d], &p->pad_lo[d]);
    }
}

static void add_input(problem *pb, const int *sh, int ch)
{
    set3(pb->ish[pb->nin], sh);
    pb->ich[pb->nin] = ch;
    pb->nin++;
}

/* Inputs per op (order = the op's argument order):
 *   conv data: dy, w | filter: x, dy | bias: dy | leaky: ref, dy | add: a, b | sample: logvar, eps, dy |
 *   slice: x | maxpool: x, dy | upsample: dy | resize: dy */
static void setup(problem *pb, const tcase *c, uint64_t *seed)
{
    memset(pb, 0, sizeof *pb);
    pb->c = c;
    int dysh[3], one[3] = {1, 1, 1};
    int ktaps = c->k[0] * c->k[1] * c->k[2];
    switch (c->op) {
    case T_CONV_DATA:
        conv_dy_shape(c, &pb->p, dysh);
        add_input(pb, dysh, c->c2);
        add_input(pb, one, ktaps * c->c1 * c->c2);
        set3(pb->osh, c->x);
        pb->och = c->c1;
        break;
    case T_CONV_FILTER:
        conv_dy_shape(c, &pb->p, dysh);
        add_input(pb, c->x, c->c1);
        add_input(pb, dysh, c->c2);
        set3(pb->osh, one);
        pb->och = ktaps * c->c1 * c->c2;
        break;
    case T_CONV_BIAS:
        conv_dy_shape(c, &pb->p, dysh);
        add_input(pb, dysh, c->c2);
        set3(pb->osh, one);
        pb->och = c->c2;
        break;
    case T_LEAKY:
    case T_ADD:
    case T_SAMPLE:
        for (int i = 0; i < (c->op == T_SAMPLE ? 3 : 2); i++)
            add_input(pb, c->x, c->c1);
        set3(pb->osh, c->x);
        pb->och = c->c1;
        break;
    case T_SLICE:
        add_input(pb, c->x, c->c1);
        set3(pb->osh, c->x);
        pb->och = c->c2;
        pb->exact = 1;
        break;
    case T_MAXPOOL:
        for (int d = 0; d < 3; d++)
            dysh[d] = c->x[d] / c->f[d];
        add_input(pb, c->x, c->c1);
        add_input(pb, dysh, c->c1);
        set3(pb->osh, c->x);
        pb->och = c->c1;
        pb->exact = 1;
        break;
    case T_UPSAMPLE:
        for (int d = 0; d < 3; d++)
            dysh[d] = c->x[d] * c->f[d];
        add_input(pb, dysh, c->c1);
        set3(pb->osh, c->x);
        pb->och = c->c1;
        pb->exact = 1;
        break;
    case T_RESIZE:
        add_input(pb, c->out, c->c1);
        set3(pb->osh, c->x);
        pb->och = c->c1;
        break;
    }
    pb->nout = count(pb->osh, pb->och);
    for (int i = 0; i < pb->nin; i++) {
        size_t n = count(pb->ish[i], pb->ich[i]);
        pb->in[i] = malloc(n * sizeof(float));
        fill_uniform(seed, pb->in[i], n, -1.0f, 1.0f);
    }
    if (c->op == T_CONV_DATA)
        for (size_t i = 0, n = count(pb->ish[1], pb->ich[1]); i < n; i++)
            pb->in[1][i] *= 0.5f;
    if (c->op == T_LEAKY) /* exact zeros take alpha (TF) */
        for (size_t i = 0, n = count(pb->ish[0], pb->ich[0]); i < n; i += 7)
            pb->in[0][i] = 0.0f;
    if (c->op == T_SAMPLE)
        for (size_t i = 0, n = count(pb->ish[0], pb->ich[0]); i < n; i++)
            pb->in[0][i] = 2.0f * pb->in[0][i] - 1.0f; /* log-variance in [-3, 1] */
    if (c->op == T_MAXPOOL) {
        /* quarter steps give exact ties; +3e-6 is a near-tie inside 1e-5, +4e-5 one outside */
        float *x = pb->in[0];
        for (size_t i = 0, n = count(pb->ish[0], pb->ich[0]); i < n; i++) {
            float q = floorf(x[i] * 2.0f + 2.0f) / 4.0f;
            uint64_t r = splitmix64(seed) % 8;
            x[i] = q + (r == 0 ? 3e-6f : r == 1 ? 4e-5f : 0.0f);
        }
    }
}

static void problem_free(problem *pb)
{
    for (int i = 0; i < pb->nin; i++)
        free(pb->in[i]);
}

/* ---- references ------------------------------------------------------------------------------------------------ */

/* Per-axis clamped linear interpolation of spec §4.2 in float32 (as both backends' forwards compute it). */
static void axis_linear(float p, int n, int *lo, int *hi, float *wlo, float *whi)
{
    float top = (float)(n - 1);
    float q = fminf(fmaxf(p, 0.0f), top);
    float f = fminf(fmaxf(floorf(p), 0.0f), top);
    float c = fminf(f + 1.0f, top);
    *lo = (int)f;
    *hi = (int)c;
    *wlo = c - q;
    *whi = 1.0f - *wlo;
}

static float resize_coord(const tcase *c, int d, int o)
{
    int n = c->x[d], m = c->out[d];
    if (c->map == VXM_RESIZE_LEGACY)
        return (float)o / c->factor[d];
    if (m == 1 || o == 0)
        return 0.0f;
    if (o == m - 1)
        return (float)(n - 1);
    return (float)o * ((float)(n - 1) / (float)(m - 1));
}

static size_t vidx(const int *sh, int i, int j, int k)
{
    return ((size_t)i * (size_t)sh[1] + (size_t)j) * (size_t)sh[2] + (size_t)k;
}

/* Conv data / filter gradients by the definition: for every output voxel o and tap t, input voxel o*s - p + t. */
static void ref_conv(const problem *pb, double *out)
{
    const tcase *c = pb->c;
    const vxm_conv_params *p = &pb->p;
    const int *xs = c->x;
    int ys[3];
    vxm_conv_params q;
    conv_dy_shape(c, &q, ys);
    int cin = c->c1, cout = c->c2, data = c->op == T_CONV_DATA;
    const float *dy = data ? pb->in[0] : pb->in[1];
    const float *wx = data ? pb->in[1] : pb->in[0]; /* w (data) or x (filter) */
    for (int o0 = 0; o0 < ys[0]; o0++)
        for (int o1 = 0; o1 < ys[1]; o1++)
            for (int o2 = 0; o2 < ys[2]; o2++)
                for (int a = 0; a < c->k[0]; a++)
                    for (int b = 0; b < c->k[1]; b++)
                        for (int e = 0; e < c->k[2]; e++) {
                            int i = o0 * p->stride[0] - p->pad_lo[0] + a, j = o1 * p->stride[1] - p->pad_lo[1] + b,
                                k = o2 * p->stride[2] - p->pad_lo[2] + e;
                            if (i < 0 || i >= xs[0] || j < 0 || j >= xs[1] || k < 0 || k >= xs[2])
                                continue;
                            size_t tap = ((size_t)a * c->k[1] + b) * c->k[2] + e;
                            const float *g = dy + vidx(ys, o0, o1, o2) * cout;
                            size_t xi = vidx(xs, i, j, k) * cin;
                            for (int ci = 0; ci < cin; ci++)
                                for (int co = 0; co < cout; co++) {
                                    size_t wi = (tap * cin + ci) * cout + co;
                                    if (data)
                                        out[xi + ci] += (double)wx[wi] * g[co];
                                    else
                                        out[wi] += (double)wx[xi + ci] * g[co];
                                }
                        }
}

/* Max-pool gradient in float32: block maximum as the forward computes it, then the tie rule. */
static void ref_maxpool(const problem *pb, float *out)
{
    const tcase *c = pb->c;
    const int *xs = c->x, *ys = pb->ish[1];
    int C = c->c1;
    memset(out, 0, pb->nout * sizeof *out);
    for (int o0 = 0; o0 < ys[0]; o0++)
        for (int o1 = 0; o1 < ys[1]; o1++)
            for (int o2 = 0; o2 < ys[2]; o2++)
                for (int ch = 0; ch < C; ch++) {
                    float m = 0.0f;
                    size_t first = 0;
                    int t = 0;
                    for (int a = 0; a < c->f[0]; a++)
                        for (int b = 0; b < c->f[1]; b++)
                            for (int e = 0; e < c->f[2]; e++, t++) {
                                size_t xi = vidx(xs, o0 * c->f[0] + a, o1 * c->f[1] + b, o2 * c->f[2] + e) * C + ch;
                                if (t == 0 || pb->in[0][xi] > m) {
                                    m = pb->in[0][xi];
                                    first = xi;
                                }
                            }
                    float g = pb->in[1][vidx(ys, o0, o1, o2) * C + ch];
                    for (int a = 0; a < c->f[0]; a++)
                        for (int b = 0; b < c->f[1]; b++)
                            for (int e = 0; e < c->f[2]; e++) {
                                size_t xi = vidx(xs, o0 * c->f[0] + a, o1 * c->f[1] + b, o2 * c->f[2] + e) * C + ch;
                                int pass = c->tie >= 0.0f ? fabsf(pb->in[0][xi] - m) < c->tie : xi == first;
                                out[xi] = pass ? g : 0.0f;
                            }
                }
}

/* Upsampling gradient in float32, children in row-major order from 0. */
static void ref_upsample(const problem *pb, float *out)
{
    const tcase *c = pb->c;
    const int *xs = c->x, *ys = pb->ish[0];
    int C = c->c1;
    for (int i = 0; i < xs[0]; i++)
        for (int j = 0; j < xs[1]; j++)
            for (int k = 0; k < xs[2]; k++)
                for (int ch = 0; ch < C; ch++) {
                    float acc = 0.0f;
                    for (int a = 0; a < c->f[0]; a++)
                        for (int b = 0; b < c->f[1]; b++)
                            for (int e = 0; e < c->f[2]; e++)
                                acc += pb->in[0][vidx(ys, i * c->f[0] + a, j * c->f[1] + b, k * c->f[2] + e) * C + ch];
                    out[vidx(xs, i, j, k) * C + ch] = acc;
                }
}

/* Resize adjoint: scatter dy with the forward's float32 weights (axis 0 not interpolated for 2-D data). */
static void ref_resize(const problem *pb, double *out)
{
    const tcase *c = pb->c;
    int C = c->c1, fixed = c->x[0] == 1 && c->out[0] == 1;
    int o[3];
    for (o[0] = 0; o[0] < c->out[0]; o[0]++)
        for (o[1] = 0; o[1] < c->out[1]; o[1]++)
            for (o[2] = 0; o[2] < c->out[2]; o[2]++) {
                int lo[3][2];
                float w[3][2];
                for (int d = 0; d < 3; d++) {
                    float s = c->x[d] == 1 ? 0.0f : resize_coord(c, d, o[d]);
                    axis_linear(s, c->x[d], &lo[d][0], &lo[d][1], &w[d][0], &w[d][1]);
                }
                int na = fixed ? 1 : 2;
                if (fixed) {
                    lo[0][0] = 0;
                    w[0][0] = 1.0f;
                }
                const float *g = pb->in[0] + vidx(c->out, o[0], o[1], o[2]) * C;
                for (int a = 0; a < na; a++)
                    for (int b = 0; b < 2; b++)
                        for (int e = 0; e < 2; e++) {
                            double wt = (double)w[0][a] * w[1][b] * w[2][e];
                            size_t xi = vidx(c->x, lo[0][a], lo[1][b], lo[2][e]) * C;
                            for (int ch = 0; ch < C; ch++)
                                out[xi + ch] += wt * g[ch];
                        }
            }
}

static void reference(const problem *pb, float *ref)
{
    const tcase *c = pb->c;
    size_t n = pb->nout;
    double *acc = calloc(n, sizeof *acc);
    switch (c->op) {
    case T_CONV_DATA:
    case T_CONV_FILTER:
        ref_conv(pb, acc);
        break;
    case T_CONV_BIAS:
        for (size_t v = 0, nv = count(pb->ish[0], 1); v < nv; v++)
            for (int co = 0; co < c->c2; co++)
                acc[co] += pb->in[0][v * c->c2 + co];
        break;
    case T_LEAKY:
        for (size_t i = 0; i < n; i++)
            acc[i] = pb->in[1][i] * (pb->in[0][i] > 0.0f ? 1.0 : 0.2);
        break;
    case T_ADD:
        for (size_t i = 0; i < n; i++)
            acc[i] = (double)pb->in[0][i] + pb->in[1][i];
        break;
    case T_SAMPLE:
        for (size_t i = 0; i < n; i++)
            acc[i] = pb->in[2][i] * 0.5 * exp(pb->in[0][i] / 2.0) * pb->in[1][i];
        break;
    case T_SLICE:
        for (size_t v = 0, nv = count(c->x, 1); v < nv; v++)
            for (int ch = 0; ch < c->c2; ch++)
                acc[v * c->c2 + ch] = pb->in[0][v * c->c1 + c->c0 + ch];
        break;
    case T_RESIZE:
        ref_resize(pb, acc);
        break;
    case T_MAXPOOL:
    case T_UPSAMPLE:
        break;
    }
    for (size_t i = 0; i < n; i++)
        ref[i] = (float)acc[i];
    free(acc);
    if (c->op == T_MAXPOOL)
        ref_maxpool(pb, ref);
    if (c->op == T_UPSAMPLE)
        ref_upsample(pb, ref);
}

/* ---- running one op on one backend ---------------------------------------------------------------------------- */

/* Runs the op on `be` with the problem's inputs; the result goes to `out`.  Returns the op's status. */
static vxm_status run(vxm_backend *be, const problem *pb, float *out)
{
    const tcase *c = pb->c;
    vxm_tensor t[MAXIN + 1];
    memset(t, 0, sizeof t);
    vxm_status st = VXM_OK;
    int ok = 0;
    for (; ok < pb->nin && !st; ok++)
        if (!(st = vxm_tensor_alloc(be, pb->ish[ok], pb->ich[ok], &t[ok])))
            st = vxm_tensor_upload(be, &t[ok], pb->in[ok]);
    vxm_tensor *y = &t[MAXIN];
    if (!st && c->alias)
        *y = t[c->op == T_LEAKY ? 1 : 0]; /* dx = dy; y = a */
    else if (!st)
        st = vxm_tensor_alloc(be, pb->osh, pb->och, y);
    const vxm_backend_ops *o = be->ops;
    if (!st) {
        switch (c->op) {
        case T_CONV_DATA:
            st = o->conv_backward_data(be, &t[0], t[1].buf, &pb->p, y);
            break;
        case T_CONV_FILTER:
            st = o->conv_backward_filter(be, &t[0], &t[1], &pb->p, y->buf);
            break;
        case T_CONV_BIAS:
            st = o->conv_backward_bias(be, &t[0], y->buf);
            break;
        case T_LEAKY:
            st = o->leaky_relu_backward(be, &t[0], &t[1], 0.2f, y);
            break;
        case T_ADD:
            st = o->add(be, &t[0], &t[1], y);
            break;
        case T_SAMPLE:
            st = o->sample_normal_backward(be, &t[0], &t[1], &t[2], y);
            break;
        case T_SLICE:
            st = o->slice_channels(be, &t[0], c->c0, y);
            break;
        case T_MAXPOOL:
            st = o->maxpool_backward(be, &t[0], &t[1], c->f, c->tie, y);
            break;
        case T_UPSAMPLE:
            st = o->upsample_nearest_backward(be, &t[0], c->f, y);
            break;
        case T_RESIZE:
            st = o->resize_linear_backward(be, &t[0], c->map, c->factor, y);
            break;
        }
    }
    if (!st)
        st = be->ops->buffer_read(be, y->buf, out, pb->nout);
    if (!c->alias)
        vxm_tensor_release(be, y);
    for (int i = 0; i < ok; i++)
        vxm_tensor_release(be, &t[i]);
    return st;
}

static void case_name(const tcase *c, char *buf, size_t n)
{
    const int *s = c->x;
    char sh[40], ex[64] = "";
    if (s[0] == 1)
        snprintf(sh, sizeof sh, "2d %dx%d", s[1], s[2]);
    else
        snprintf(sh, sizeof sh, "%dx%dx%d", s[0], s[1], s[2]);
    switch (c->op) {
    case T_CONV_DATA:
    case T_CONV_FILTER:
    case T_CONV_BIAS:
        snprintf(ex, sizeof ex, " cin %d cout %d k %d%d%d s %d%d%d", c->c1, c->c2, c->k[0], c->k[1], c->k[2],
                 c->s[0], c->s[1], c->s[2]);
        break;
    case T_MAXPOOL:
        snprintf(ex, sizeof ex, " c %d f %d%d%d tie %g", c->c1, c->f[0], c->f[1], c->f[2], (double)c->tie);
        break;
    case T_UPSAMPLE:
        snprintf(ex, sizeof ex, " c %d f %d%d%d", c->c1, c->f[0], c->f[1], c->f[2]);
        break;
    case T_RESIZE:
        snprintf(ex, sizeof ex, " c %d -> %dx%dx%d %s", c->c1, c->out[0], c->out[1], c->out[2],
                 c->map == VXM_RESIZE_LEGACY ? "legacy" : "linspace");
        break;
    case T_SLICE:
        snprintf(ex, sizeof ex, " [%d,%d) of %d", c->c0, c->c0 + c->c2, c->c1);
        break;
    default:
        snprintf(ex, sizeof ex, " c %d%s", c->c1, c->alias ? " in-place" : "");
    }
    snprintf(buf, n, "%s %s%s", op_names[c->op], sh, ex);
}

static void compare(const char *name, const char *what, const float *got, const float *ref, size_t n, int exact)
{
    char full[320];
    snprintf(full, sizeof full, "%s %s", name, what);
    double maxref = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(ref[i]) > maxref)
            maxref = fabs(ref[i]);
    double nmse = tu_nmse(got, ref, n), dmax = tu_max_abs_diff(got, ref, n);
    double tol = exact ? 0.0 : 1e-5 * (1.0 + maxref);
    tu_report(nmse <= (exact ? 0.0 : 1e-10) && dmax <= tol, full, "nmse %.3g, max |diff| %.3g (tolerance %.3g)", nmse,
              dmax, tol);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    tb_list l;
    tb_open_all(ctx, &l);
    vxm_backend *cpu = NULL;
    int ncl = 0;
    for (int i = 0; i < l.n; i++) {
        if (strcmp(l.be[i]->ops->name, "cpu") == 0)
            cpu = l.be[i];
        else
            ncl++;
    }
    if (ncl == 0) {
        tu_skip("grad nn opencl", "no OpenCL device");
        tb_close_all(&l);
        vxm_context_free(ctx);
        return tu_exit_code();
    }
    uint64_t seed = 0x5eed0001ull;
    int cpu_missing[sizeof op_names / sizeof op_names[0]] = {0};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const tcase *c = &cases[ci];
        problem pb;
        setup(&pb, c, &seed);
        char name[256];
        case_name(c, name, sizeof name);
        float *ref = malloc(pb.nout * sizeof *ref), *cres = malloc(pb.nout * sizeof *cres),
              *got = malloc(pb.nout * sizeof *got);
        reference(&pb, ref);
        int have_cpu = 0;
        if (cpu) {
            vxm_status st = run(cpu, &pb, cres);
            if (st == VXM_EUNSUPPORTED) {
                if (!cpu_missing[c->op]++) {
                    char what[128];
                    snprintf(what, sizeof what, "cpu %s", op_names[c->op]);
                    tu_skip(what, "not implemented on the CPU backend yet; OpenCL checked against the reference");
                }
            } else if (st) {
                tu_report(0, name, "cpu: %s", vxm_context_error(ctx));
            } else {
                have_cpu = 1;
                compare(name, "cpu vs reference", cres, ref, pb.nout, pb.exact);
            }
        }
        for (int i = 0; i < l.n; i++) {
            vxm_backend *be = l.be[i];
            if (be == cpu)
                continue;
            char what[320];
            vxm_status st = run(be, &pb, got);
            if (st) {
                snprintf(what, sizeof what, "%s %s", name, be->spec);
                tu_report(0, what, "%s", vxm_context_error(ctx));
                continue;
            }
            snprintf(what, sizeof what, "%s vs reference", be->spec);
            compare(name, what, got, ref, pb.nout, pb.exact);
            if (have_cpu) {
                snprintf(what, sizeof what, "%s vs cpu", be->spec);
                compare(name, what, got, cres, pb.nout, pb.exact);
            }
        }
        free(ref);
        free(cres);
        free(got);
        problem_free(&pb);
    }
    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
