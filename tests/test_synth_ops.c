/* The synthesis ops of vxm_backend_ops (backend.h, "synthesis" section; training doc §6.3) and the element-wise ops
 * declared with them, on every backend (CPU, then every OpenCL device): each against a reference computed here in
 * double, and every OpenCL device against the CPU backend.
 *
 * Tolerances.  Outputs that involve no transcendental function are compared exactly across backends where the
 * arithmetic is the same sequence of float32 operations (argmax, one-hot, uniform random streams, min/max).  Float
 * ops are compared with |got - ref| <= 1e-5 max(|ref|, floor): each output is a handful of float32 roundings
 * (~6e-8 relative each) plus at most one library exp / log / cos / pow, which OpenCL 1.2 allows 3-16 ulp (<= 1e-6
 * relative); `floor` is the scale of the output where a relative error means nothing (exp(x) - 1 near x = 0 carries
 * ulp(1) absolutely).  The normals of rand_fill: within 1e-5 absolute (|N| <= 5.8, a few ulp of sqrt / log / cos).
 *
 * Distribution checks run on 1e5 draws: uniform mean 0.5 +- 0.005 (5.5 sigma of the sample mean), normal mean
 * 0 +- 0.01 (3.2 sigma) and std 1 +- 0.01 (4.5 sigma); the streams are fixed, so these are deterministic checks that
 * the mapping from bits to numbers is right, with room for any seed.  VXM_TEST_VERBOSE=1 prints every measured error. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "core/counter_rng.h"
#include "test_backends.h"
#include "test_util.h"

#define RTOL 1e-5
#define NDRAW 100000
#define SEED 20240611ULL

static unsigned long long rng_state = 12345;

static float urand(double lo, double hi)
{
    return (float)tu_urand(&rng_state, lo, hi);
}

static float *rand_array(size_t n, double lo, double hi)
{
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = urand(lo, hi);
    return p;
}

/* The test shapes: 2-D (n0 = 1) and 3-D, several channels. */
typedef struct shape_case {
    const char *tag;
    int shape[3];
    int channels;
} shape_case;

static const shape_case cases[] = {{"2d", {1, 9, 11}, 3}, {"3d", {5, 6, 7}, 2}};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

static size_t nvox_of(const int s[3])
{
    return (size_t)s[0] * (size_t)s[1] * (size_t)s[2];
}

/* ---- device helpers ---------------------------------------------------------------------------------------- */

static vxm_status put(vxm_backend *be, const int shape[3], int channels, const float *host, vxm_tensor *t)
{
    vxm_status st = vxm_tensor_alloc(be, shape, channels, t);
    if (!st && host && (st = vxm_tensor_upload(be, t, host)))
        vxm_tensor_release(be, t);
    return st;
}

/* The tensor's contents (malloc'd), or NULL after reporting the failure. */
static float *get(vxm_backend *be, const vxm_tensor *t, const char *name)
{
    float *h = malloc(vxm_tensor_numel(t) * sizeof(float));
    if (vxm_tensor_download(be, t, h) != VXM_OK) {
        tu_report(0, name, "%s: download: %s", be->spec, vxm_context_error(be->ctx));
        free(h);
        return NULL;
    }
    return h;
}

static int op_ok(vxm_backend *be, vxm_status st, const char *name)
{
    if (st != VXM_OK)
        tu_report(0, name, "%s: %s", be->spec, vxm_context_error(be->ctx));
    return st == VXM_OK;
}

/* ---- comparisons ------------------------------------------------------------------------------------------- */

static double err_vs_ref(const float *got, const double *ref, size_t n, double floor)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]) / fmax(fabs(ref[i]), floor);
        if (!(d <= m))
            m = d != d ? INFINITY : d;
    }
    return m;
}

static double err_vs_float(const float *got, const float *ref, size_t n, double floor)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]) / fmax(fabs((double)ref[i]), floor);
        if (!(d <= m))
            m = d != d ? INFINITY : d;
    }
    return m;
}

/* Checks out[i] (one per backend, NULL where the op failed) against ref and against out[0] (the CPU): within
 * RTOL relative (floor as above), or bit for bit with `bitwise`; frees the outputs. */
static void judge(const char *op, const char *tag, tb_list *l, float **out, const double *ref, size_t n, double floor,
                  int bitwise)
{
    for (int i = 0; i < l->n; i++) {
        if (!out[i])
            continue;
        char name[160];
        snprintf(name, sizeof name, "synth %s %s %s vs reference", op, tag, l->be[i]->spec);
        double e = err_vs_ref(out[i], ref, n, floor);
        if (getenv("VXM_TEST_VERBOSE"))
            printf("  %s: %.3g\n", name, e);
        tu_report(e <= RTOL, name, "max relative error %.3g > %.1g", e, RTOL);
        if (i == 0 || !out[0])
            continue;
        snprintf(name, sizeof name, "synth %s %s %s vs cpu", op, tag, l->be[i]->spec);
        if (bitwise) {
            tu_report(memcmp(out[i], out[0], n * sizeof(float)) == 0, name, "not bitwise equal (max diff %.3g)",
                      tu_max_abs_diff(out[i], out[0], n));
        } else {
            e = err_vs_float(out[i], out[0], n, floor);
            if (getenv("VXM_TEST_VERBOSE"))
                printf("  %s: %.3g\n", name, e);
            tu_report(e <= RTOL, name, "max relative difference %.3g > %.1g", e, RTOL);
        }
    }
    for (int i = 0; i < l->n; i++)
        free(out[i]);
}

/* ---- one op on every backend ------------------------------------------------------------------------------ */

/* The op under test on tensors t[0..nin) (the inputs) and t[nin] (a fresh output of `cout` channels; cout 0: none,
 * the op writes into an input); t[res] is downloaded. */
typedef vxm_status (*op_fn)(vxm_backend *be, vxm_tensor *t, const void *arg);

typedef struct op_call {
    const int *shape;
    int nin;
    const float *in[3];
    int cin[3];
    int cout, res;
    op_fn fn;
    const void *arg;
} op_call;

static float *run_op(vxm_backend *be, const char *name, const op_call *c)
{
    vxm_tensor t[4];
    memset(t, 0, sizeof t);
    int ok = 1;
    for (int k = 0; k < c->nin && ok; k++)
        ok = op_ok(be, put(be, c->shape, c->cin[k], c->in[k], &t[k]), name);
    if (ok && c->cout)
        ok = op_ok(be, put(be, c->shape, c->cout, NULL, &t[c->nin]), name);
    float *h = ok && op_ok(be, c->fn(be, t, c->arg), name) ? get(be, &t[c->res], name) : NULL;
    for (int k = 0; k < 4; k++)
        vxm_tensor_release(be, &t[k]);
    return h;
}

/* out[i] = the result on backend i (NULL where it failed, reported). */
static void run_all(tb_list *l, const char *op, const char *tag, const op_call *c, float **out)
{
    for (int i = 0; i < l->n; i++) {
        char name[160];
        snprintf(name, sizeof name, "synth %s %s %s", op, tag, l->be[i]->spec);
        out[i] = run_op(l->be[i], name, c);
    }
}

/* Per backend: the in-place result (alt) bit for bit equal to the separate-output one (out); frees alt. */
static void same_in_place(tb_list *l, const char *op, const char *tag, float **out, float **alt, size_t n)
{
    for (int i = 0; i < l->n; i++) {
        char name[160];
        snprintf(name, sizeof name, "synth %s in place %s %s", op, tag, l->be[i]->spec);
        if (out[i] && alt[i])
            tu_report(!memcmp(out[i], alt[i], n * sizeof(float)), name, "output aliasing an input differs");
        free(alt[i]);
    }
}
/* ---- rand_fill --------------------------------------------------------------------------------------------- */

static float *draw(vxm_backend *be, size_t n, unsigned long long seed, unsigned long long stream, int dist, float a,
                   float b, const char *name)
{
    vxm_buffer *buf = NULL;
    float *h = NULL;
    if (op_ok(be, be->ops->buffer_alloc(be, n, &buf), name) &&
        op_ok(be, be->ops->rand_fill(be, buf, n, seed, stream, dist, a, b), name)) {
        h = malloc(n * sizeof(float));
        if (!op_ok(be, be->ops->buffer_read(be, buf, h, n), name)) {
            free(h);
            h = NULL;
        }
    }
    if (buf)
        be->ops->buffer_free(be, buf);
    return h;
}

static void moments(const float *p, size_t n, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++)
        s2 += (p[i] - *mean) * (p[i] - *mean);
    *sd = sqrt(s2 / (double)n);
}

/* Box-Muller of core/counter_rng.h in double from the same bits. */
static double normal_ref(unsigned long long key, unsigned long long i)
{
    unsigned long long b = vxm_counter_bits(key, i);
    double u1 = (double)((b >> 40) + 1) / 16777216.0, u2 = (double)((b >> 16) & 0xFFFFFFULL) / 16777216.0;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

static void test_rand_fill(tb_list *l, vxm_context *ctx)
{
    const size_t n = NDRAW;
    const unsigned long long key = vxm_counter_key(SEED, 7);
    float *uni0 = NULL, *nrm0 = NULL;
    for (int i = 0; i < l->n; i++) {
        vxm_backend *be = l->be[i];
        char name[160];
        snprintf(name, sizeof name, "synth rand_fill uniform %s", be->spec);
        float *u = draw(be, n, SEED, 7, 0, 0.0f, 1.0f, name);
        float *w = draw(be, n, SEED, 7, 0, -2.0f, 3.0f, name);
        float *g = draw(be, n, SEED, 7, 1, 0.0f, 1.0f, name);
        float *g2 = draw(be, n, SEED, 7, 1, 2.0f, 0.5f, name);
        float *us = draw(be, n, SEED, 8, 0, 0.0f, 1.0f, name);
        float *ud = draw(be, n, SEED + 1, 7, 0, 0.0f, 1.0f, name);
        if (u && w && g && g2 && us && ud) {
            size_t bad = 0, out = 0, same_s = 0, same_d = 0;
            double maxn = 0, maxn2 = 0;
            for (size_t k = 0; k < n; k++) {
                bad += u[k] != vxm_counter_uniform(key, k);
                out += !(u[k] >= 0.0f && u[k] < 1.0f) + !(w[k] >= -2.0f && w[k] < 3.0f);
                same_s += us[k] == u[k];
                same_d += ud[k] == u[k];
                double nr = normal_ref(key, k);
                maxn = fmax(maxn, fabs(g[k] - nr));
                maxn2 = fmax(maxn2, fabs(g2[k] - (2.0 + 0.5 * nr)));
            }
            double m, s;
            moments(u, n, &m, &s);
            tu_report(bad == 0, name, "%zu of %zu differ from vxm_counter_uniform", bad, n);
            snprintf(name, sizeof name, "synth rand_fill uniform distribution %s", be->spec);
            tu_report(out == 0 && fabs(m - 0.5) <= 0.005, name, "%zu outside [a, b), mean %.5f", out, m);
            snprintf(name, sizeof name, "synth rand_fill other stream / seed %s", be->spec);
            tu_report(same_s < n / 1000 && same_d < n / 1000, name, "%zu / %zu equal draws", same_s, same_d);
            snprintf(name, sizeof name, "synth rand_fill normal %s vs double Box-Muller", be->spec);
            if (getenv("VXM_TEST_VERBOSE"))
                printf("  %s: %.3g %.3g\n", name, maxn, maxn2);
            tu_report(maxn <= 1e-5 && maxn2 <= 1e-5, name, "max abs difference %.3g, %.3g (a + b N)", maxn, maxn2);
            moments(g, n, &m, &s);
            snprintf(name, sizeof name, "synth rand_fill normal distribution %s", be->spec);
            tu_report(fabs(m) <= 0.01 && fabs(s - 1.0) <= 0.01, name, "mean %.5f std %.5f", m, s);
            if (i == 0) {
                uni0 = u;
                nrm0 = g;
                u = g = NULL;
            } else if (uni0 && nrm0) {
                snprintf(name, sizeof name, "synth rand_fill %s vs cpu", be->spec);
                double dn = tu_max_abs_diff(g, nrm0, n);
                if (getenv("VXM_TEST_VERBOSE"))
                    printf("  %s: normal max abs difference %.3g\n", name, dn);
                tu_report(memcmp(u, uni0, n * sizeof(float)) == 0 && dn <= 1e-5, name,
                          "uniform bitwise equal: %s, normal max abs difference %.3g",
                          memcmp(u, uni0, n * sizeof(float)) ? "no" : "yes", dn);
            }
        }
        free(u);
        free(w);
        free(g);
        free(g2);
        free(us);
        free(ud);
    }
    /* CPU: the same stream with 1 and 2 threads (n >= CPU_PAR_MIN, so the loop is split). */
    if (uni0 && nrm0) {
        int t0 = vxm_context_threads(ctx);
        vxm_context_set_threads(ctx, 1);
        float *u1 = draw(l->be[0], n, SEED, 7, 0, 0.0f, 1.0f, "synth rand_fill cpu 1 thread");
        float *g1 = draw(l->be[0], n, SEED, 7, 1, 0.0f, 1.0f, "synth rand_fill cpu 1 thread");
        vxm_context_set_threads(ctx, t0);
        if (u1 && g1)
            tu_report(!memcmp(u1, uni0, n * sizeof(float)) && !memcmp(g1, nrm0, n * sizeof(float)),
                      "synth rand_fill cpu thread count", "1 thread differs from the default");
        free(u1);
        free(g1);
    }
    free(uni0);
    free(nrm0);
}

/* ---- labels_to_intensity ------------------------------------------------------------------------------------ */

#define NLAB 3

typedef struct labels_arg {
    const float *mean, *sd;
    const int *blank;
} labels_arg;

static vxm_status do_labels(vxm_backend *be, vxm_tensor *t, const void *arg)
{
    const labels_arg *a = arg;
    return be->ops->labels_to_intensity(be, &t[0], NLAB, a->mean, a->sd, a->blank, SEED, 3, &t[1]);
}

/* Per (label, channel) sample mean / std against the tables (5 sigma of the sample mean, 5 % on the std for >= 8000
 * voxels a label: 4+ sigma of the std estimate), exact zeros where blanked, and the same standardised noise in every
 * channel.  Leaves "" or the first problem in why. */
static void label_stats(const float *y, const float *lab, size_t nv, int C, const float *mean, const float *sd,
                        const int *blank, char *why, size_t len)
{
    why[0] = '\0';
    for (int c = 0; c < C; c++)
        for (int li = 0; li < NLAB; li++) {
            double s = 0, s2 = 0, cnt = 0;
            int t = c * NLAB + li;
            for (size_t v = 0; v < nv; v++)
                if ((int)lab[v] == li) {
                    s += y[v * C + c];
                    s2 += (double)y[v * C + c] * y[v * C + c];
                    cnt++;
                }
            double m = s / cnt, sdev = sqrt(fmax(s2 / cnt - m * m, 0));
            int ok = (li == 0 && blank[c]) ? m == 0 && sdev == 0
                                           : fabs(m - mean[t]) <= 5 * sd[t] / sqrt(cnt) &&
                                                 fabs(sdev - sd[t]) <= 0.05 * sd[t] + 1e-3;
            if (!ok) {
                snprintf(why, len, "label %d channel %d: mean %.4f std %.4f, table %.4f %.4f", li, c, m, sdev,
                         mean[t], sd[t]);
                return;
            }
        }
    double dz = 0;
    for (size_t v = 0; v < nv; v++) {
        int li = (int)lab[v];
        double z0 = (y[v * C] - mean[li]) / sd[li];
        for (int c = 1; c < C && li > 0; c++)
            dz = fmax(dz, fabs((y[v * C + c] - mean[c * NLAB + li]) / sd[c * NLAB + li] - z0));
    }
    if (dz > 1e-4)
        snprintf(why, len, "noise differs across channels by %.3g (standardised)", dz);
}

/* y and its reference on a label map of `shape`, C channels; on the large map also the per-label statistics. */
static void test_labels(tb_list *l, const char *tag, const int shape[3], int C, int stats)
{
    size_t nv = nvox_of(shape), n = nv * (size_t)C;
    float *lab = malloc(nv * sizeof(float)), mean[3 * NLAB], sd[3 * NLAB], sdmax = 0;
    int blank[3] = {1, 0, 1};
    for (size_t v = 0; v < nv; v++)
        lab[v] = (float)(int)urand(0, NLAB);
    for (int t = 0; t < C * NLAB; t++) {
        mean[t] = t % NLAB == 0 ? urand(0, 225) : urand(25, 225); /* §6.3 step 5 */
        sd[t] = t % NLAB == 0 ? urand(0, 25) : urand(5, 25);
        sdmax = fmaxf(sdmax, sd[t]);
    }
    const unsigned long long key = vxm_counter_key(SEED, 3);
    double *ref = malloc(n * sizeof(double));
    for (size_t v = 0; v < nv; v++)
        for (int c = 0; c < C; c++) {
            int li = (int)lab[v], t = c * NLAB + li;
            ref[v * C + c] = (li == 0 && blank[c]) ? 0.0 : mean[t] + sd[t] * normal_ref(key, v);
        }
    labels_arg arg = {mean, sd, blank};
    op_call c = {shape, 1, {lab}, {1}, C, 1, do_labels, &arg};
    float *out[TB_MAX] = {0};
    run_all(l, "labels_to_intensity", tag, &c, out);
    for (int i = 0; i < l->n && stats; i++) {
        char name[160], why[200];
        snprintf(name, sizeof name, "synth labels_to_intensity statistics %s %s", tag, l->be[i]->spec);
        if (out[i]) {
            label_stats(out[i], lab, nv, C, mean, sd, blank, why, sizeof why);
            tu_report(!why[0], name, "%s", why);
        }
    }
    /* The error is std * (error of the float normal, <= 1e-5 absolute as for rand_fill): scale by the largest std. */
    judge("labels_to_intensity", tag, l, out, ref, n, sdmax, 0);
    free(lab);
    free(ref);
}
/* ---- conv_axis ---------------------------------------------------------------------------------------------- */

/* Training doc §6.3 item 7: taps exp(-x^2 / 2 sigma^2), x = -3..3, normalised to sum 1. */
static void gauss_taps(double sigma, float taps[7])
{
    double w[7], s = 0;
    for (int t = 0; t < 7; t++)
        s += w[t] = exp(-(t - 3) * (t - 3) / (2 * sigma * sigma));
    for (int t = 0; t < 7; t++)
        taps[t] = (float)(w[t] / s);
}

typedef struct conv_arg {
    int axis;
    const float *taps;
} conv_arg;

static vxm_status do_conv(vxm_backend *be, vxm_tensor *t, const void *arg)
{
    const conv_arg *a = arg;
    return be->ops->conv_axis(be, &t[0], a->axis, a->taps, 7, &t[1]);
}

/* Refusals: the output aliasing the input, an even tap count. */
static vxm_status do_conv_refusals(vxm_backend *be, vxm_tensor *t, const void *arg)
{
    const float *taps = arg;
    if (be->ops->conv_axis(be, &t[0], 0, taps, 7, &t[0]) == VXM_OK ||
        be->ops->conv_axis(be, &t[0], 0, taps, 6, &t[1]) == VXM_OK)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "conv_axis accepted an aliased output or 6 taps");
    return VXM_OK;
}

static void test_conv_axis(tb_list *l, const shape_case *sc, const float taps[7])
{
    const int *s = sc->shape, C = sc->channels;
    size_t n = nvox_of(s) * (size_t)C;
    /* Positive inputs (intensities): the sum has no cancellation, so a relative tolerance is meaningful. */
    float *x = rand_array(n, 0.5, 2.0);
    double *ref = malloc(n * sizeof(double));
    for (int axis = 0; axis < 3; axis++) {
        for (int i0 = 0; i0 < s[0]; i0++)
            for (int i1 = 0; i1 < s[1]; i1++)
                for (int i2 = 0; i2 < s[2]; i2++)
                    for (int c = 0; c < C; c++) {
                        int p[3] = {i0, i1, i2};
                        double acc = 0;
                        for (int t = 0; t < 7; t++) {
                            int q[3] = {i0, i1, i2};
                            q[axis] = p[axis] + t - 3;
                            if (q[axis] >= 0 && q[axis] < s[axis])
                                acc += (double)taps[t] * x[(((size_t)q[0] * s[1] + q[1]) * s[2] + q[2]) * C + c];
                        }
                        ref[(((size_t)i0 * s[1] + i1) * s[2] + i2) * C + c] = acc;
                    }
        conv_arg arg = {axis, taps};
        op_call c = {s, 1, {x}, {C}, C, 1, do_conv, &arg};
        float *out[TB_MAX] = {0};
        char tag[32];
        snprintf(tag, sizeof tag, "axis %d %s", axis, sc->tag);
        run_all(l, "conv_axis", tag, &c, out);
        judge("conv_axis", tag, l, out, ref, n, 1e-6, 0);
    }
    op_call r = {s, 1, {x}, {C}, C, 1, do_conv_refusals, taps};
    float *out[TB_MAX] = {0};
    run_all(l, "conv_axis refusals", sc->tag, &r, out);
    for (int i = 0; i < l->n; i++) {
        char name[160];
        snprintf(name, sizeof name, "synth conv_axis refusals %s %s", sc->tag, l->be[i]->spec);
        if (out[i])
            tu_report(1, name, "");
        free(out[i]);
    }
    free(x);
    free(ref);
}
/* ---- mul_exp, normalize_gamma, minmax ------------------------------------------------------------------------ */

static vxm_status do_mul_exp(vxm_backend *be, vxm_tensor *t, const void *arg)
{
    return be->ops->mul_exp(be, &t[0], &t[1], arg ? &t[0] : &t[2]); /* arg != NULL: in place */
}

static void test_mul_exp(tb_list *l, const shape_case *sc)
{
    const int *s = sc->shape, C = sc->channels;
    size_t nv = nvox_of(s), n = nv * (size_t)C;
    float *x = rand_array(n, 0, 255), *f = rand_array(nv, -0.6, 0.6);
    double *ref = malloc(n * sizeof(double));
    for (size_t k = 0; k < n; k++)
        ref[k] = x[k] * exp((double)f[k / C]);
    op_call c = {s, 2, {x, f}, {C, 1}, C, 2, do_mul_exp, NULL}, ci = {s, 2, {x, f}, {C, 1}, 0, 0, do_mul_exp, s};
    float *out[TB_MAX] = {0}, *alt[TB_MAX] = {0};
    run_all(l, "mul_exp", sc->tag, &c, out);
    run_all(l, "mul_exp", sc->tag, &ci, alt);
    same_in_place(l, "mul_exp", sc->tag, out, alt, n);
    judge("mul_exp", sc->tag, l, out, ref, n, 1e-3, 0);
    free(x);
    free(f);
    free(ref);
}

typedef struct norm_arg {
    float lo, hi;
    const float *expo;
} norm_arg;

static vxm_status do_normalize(vxm_backend *be, vxm_tensor *t, const void *arg)
{
    const norm_arg *a = arg;
    return be->ops->normalize_gamma(be, &t[0], a->lo, a->hi, a->expo, &t[1]);
}

/* x in [xlo, xhi); lo / hi = min / max of the clipped x (as §6.3 step 9 computes them), or lo == hi. */
static void test_normalize(tb_list *l, const shape_case *sc, double xlo, double xhi, int degenerate)
{
    const int *s = sc->shape, C = sc->channels;
    size_t n = nvox_of(s) * (size_t)C;
    float *x = rand_array(n, xlo, xhi), expo[3] = {0.6f, 1.0f, 1.7f};
    float lo = INFINITY, hi = -INFINITY;
    for (size_t k = 0; k < n; k++) {
        float v = fminf(fmaxf(x[k], 0.0f), 255.0f);
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
    }
    if (degenerate)
        lo = hi = 5.0f;
    double *ref = malloc(n * sizeof(double));
    for (size_t k = 0; k < n; k++) {
        double v = fmin(fmax(x[k], 0.0), 255.0);
        ref[k] = degenerate ? 0.0 : pow((v - lo) / ((double)hi - lo), expo[k % C]);
    }
    norm_arg arg = {lo, hi, expo};
    op_call c = {s, 1, {x}, {C}, C, 1, do_normalize, &arg};
    float *out[TB_MAX] = {0};
    char tag[48];
    snprintf(tag, sizeof tag, "%s [%g, %g)%s", sc->tag, xlo, xhi, degenerate ? " hi == lo" : "");
    run_all(l, "normalize_gamma", tag, &c, out);
    judge("normalize_gamma", tag, l, out, ref, n, 1e-6, degenerate);
    free(x);
    free(ref);
}
static void test_minmax(tb_list *l, const char *tag, const int shape[3], int C, int constant)
{
    size_t n = nvox_of(shape) * (size_t)C;
    float *x = rand_array(n, -3, 7);
    if (constant)
        for (size_t k = 0; k < n; k++)
            x[k] = 1.25f;
    else {
        x[n - 1] = -11.5f; /* extremes at both ends of the data */
        x[0] = 17.25f;
    }
    float mn = INFINITY, mx = -INFINITY;
    for (size_t k = 0; k < n; k++) {
        mn = x[k] < mn ? x[k] : mn;
        mx = x[k] > mx ? x[k] : mx;
    }
    for (int i = 0; i < l->n; i++) {
        vxm_backend *be = l->be[i];
        char name[160];
        snprintf(name, sizeof name, "synth minmax %s %s", tag, be->spec);
        vxm_tensor tx = {0};
        float r[2] = {0, 0};
        if (op_ok(be, put(be, shape, C, x, &tx), name) && op_ok(be, be->ops->minmax(be, &tx, r), name))
            tu_report(r[0] == mn && r[1] == mx, name, "(%.9g, %.9g), expected (%.9g, %.9g)", r[0], r[1], mn, mx);
        vxm_tensor_release(be, &tx);
    }
    free(x);
}

/* ---- argmax_channels, one_hot -------------------------------------------------------------------------------- */

static vxm_status do_argmax(vxm_backend *be, vxm_tensor *t, const void *arg)
{
    (void)arg;
    return be->ops->argmax_channels(be, &t[0], &t[1]);
}

static void test_argmax(tb_list *l, const shape_case *sc)
{
    const int *s = sc->shape, C = sc->channels;
    size_t nv = nvox_of(s), n = nv * (size_t)C;
    float *x = rand_array(n, 0, 1);
    for (size_t v = 0; v < nv; v += 3) /* ties: the first of the largest wins */
        x[v * C + C - 1] = x[v * C + 1] = x[v * C] + 0.5f;
    double *ref = malloc(nv * sizeof(double));
    for (size_t v = 0; v < nv; v++) {
        int b = 0;
        for (int c = 1; c < C; c++)
            b = x[v * C + c] > x[v * C + b] ? c : b;
        ref[v] = b;
    }
    op_call c = {s, 1, {x}, {C}, 1, 1, do_argmax, NULL};
    float *out[TB_MAX] = {0};
    run_all(l, "argmax_channels", sc->tag, &c, out);
    judge("argmax_channels", sc->tag, l, out, ref, nv, 1.0, 1);
    free(x);
    free(ref);
}

static const int one_hot_lut[6] = {-1, 0, 2, 1, -1, 2}; /* two labels off the output list, two sharing channel 2 */

static vxm_status do_one_hot(vxm_backend *be, vxm_tensor *t, const void *arg)
{
    (void)arg;
    return be->ops->one_hot(be, &t[0], one_hot_lut, 6, &t[1]);
}

static void test_one_hot(tb_list *l, const shape_case *sc)
{
    const int *s = sc->shape, C = 3;
    size_t nv = nvox_of(s), n = nv * (size_t)C;
    float *lab = malloc(nv * sizeof(float));
    for (size_t v = 0; v < nv; v++)
        lab[v] = (float)(int)urand(0, 6);
    double *ref = malloc(n * sizeof(double));
    for (size_t v = 0; v < nv; v++)
        for (int c = 0; c < C; c++)
            ref[v * C + c] = one_hot_lut[(int)lab[v]] == c;
    op_call c = {s, 1, {lab}, {1}, C, 1, do_one_hot, NULL};
    float *out[TB_MAX] = {0};
    run_all(l, "one_hot", sc->tag, &c, out);
    judge("one_hot", sc->tag, l, out, ref, n, 1.0, 1);
    free(lab);
    free(ref);
}

/* ---- elu, elu_backward, blend --------------------------------------------------------------------------------- */

static vxm_status do_elu(vxm_backend *be, vxm_tensor *t, const void *arg)
{
    (void)arg;
    return be->ops->elu(be, &t[0], &t[0]); /* in place */
}

static vxm_status do_elu_backward(vxm_backend *be, vxm_tensor *t, const void *arg)
{
    (void)arg;
    return be->ops->elu_backward(be, &t[0], &t[1], &t[1]); /* dx = dy in place */
}

/* ELU forward against exp(x) - 1 in double; backward against dy exp(x) and against central differences of the
 * backend's own forward, per element (the op is element-wise, so one perturbed tensor gives every difference):
 *     fd = dy (elu(x + h) - elu(x - h)) / ((x + h) - (x - h)),   h = 2^-7, the step as stored in float.
 * Error of fd: truncation h^2 / 6 max|elu'''| <= 1.0e-5 (elu''' = exp(x) <= 1 for x < 0, 0 above); rounding of the
 * two float32 outputs (|elu| <= 3 here), ulp(3) / 2h = 2.4e-7 / 1.56e-2 = 1.5e-5.  Points within 2h of the kink
 * at 0 are left out.  Tolerance 5e-5 |dy| (dy in [-1, 1]) covers both with margin; a wrong branch or factor is off
 * by >= 5e-2 (|x| >= 2h). */
static void test_elu(tb_list *l, const shape_case *sc)
{
    const int *s = sc->shape, C = sc->channels;
    size_t n = nvox_of(s) * (size_t)C;
    const float h = 0.0078125f;
    float *x = rand_array(n, -3, 3), *dy = rand_array(n, -1, 1), *xp = malloc(n * sizeof(float)),
          *xm = malloc(n * sizeof(float));
    for (size_t k = 0; k < n; k++) {
        if (fabsf(x[k]) < 2 * h)
            x[k] = 0.5f; /* keep away from the kink */
        xp[k] = x[k] + h;
        xm[k] = x[k] - h;
    }
    double *ref = malloc(n * sizeof(double)), *dref = malloc(n * sizeof(double));
    for (size_t k = 0; k < n; k++) {
        ref[k] = x[k] > 0 ? x[k] : exp((double)x[k]) - 1.0;
        dref[k] = x[k] > 0 ? dy[k] : dy[k] * exp((double)x[k]);
    }
    op_call c = {s, 1, {x}, {C}, 0, 0, do_elu, NULL}, cp = c, cm = c;
    op_call cb = {s, 2, {x, dy}, {C, C}, 0, 1, do_elu_backward, NULL};
    cp.in[0] = xp;
    cm.in[0] = xm;
    float *out[TB_MAX] = {0}, *fp[TB_MAX] = {0}, *fm[TB_MAX] = {0}, *dout[TB_MAX] = {0};
    run_all(l, "elu", sc->tag, &c, out);
    run_all(l, "elu (x + h)", sc->tag, &cp, fp);
    run_all(l, "elu (x - h)", sc->tag, &cm, fm);
    run_all(l, "elu_backward", sc->tag, &cb, dout);
    for (int i = 0; i < l->n; i++) {
        if (fp[i] && fm[i] && dout[i]) {
            double worst = 0;
            for (size_t k = 0; k < n; k++) {
                double fd = dy[k] * ((double)fp[i][k] - fm[i][k]) / ((double)xp[k] - xm[k]);
                worst = fmax(worst, fabs(fd - dout[i][k]));
            }
            char name[160];
            snprintf(name, sizeof name, "synth elu_backward finite differences %s %s", sc->tag, l->be[i]->spec);
            tu_report(worst <= 5e-5, name, "max |fd - dx| = %.3g > 5e-5", worst);
        }
        free(fp[i]);
        free(fm[i]);
    }
    judge("elu", sc->tag, l, out, ref, n, 1.0, 0);
    judge("elu_backward", sc->tag, l, dout, dref, n, 1e-3, 0);
    free(x);
    free(dy);
    free(xp);
    free(xm);
    free(ref);
    free(dref);
}

#define BLEND_A 0.9f
#define BLEND_B 0.1f

static vxm_status do_blend(vxm_backend *be, vxm_tensor *t, const void *arg)
{
    (void)arg;
    return be->ops->blend(be, BLEND_A, &t[0], BLEND_B, &t[1], &t[0]); /* y aliasing x, as MeanStream updates */
}

static void test_blend(tb_list *l, const shape_case *sc)
{
    const int *s = sc->shape, C = sc->channels;
    size_t n = nvox_of(s) * (size_t)C;
    float *x = rand_array(n, 0.5, 2), *z = rand_array(n, 0.5, 2);
    double *ref = malloc(n * sizeof(double));
    for (size_t k = 0; k < n; k++)
        ref[k] = (double)BLEND_A * x[k] + (double)BLEND_B * z[k];
    op_call c = {s, 2, {x, z}, {C, C}, 0, 0, do_blend, NULL};
    float *out[TB_MAX] = {0};
    run_all(l, "blend", sc->tag, &c, out);
    judge("blend", sc->tag, l, out, ref, n, 1e-6, 0);
    free(x);
    free(z);
    free(ref);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    if (!ctx) {
        printf("FAIL synth context: cannot create\n");
        return 1;
    }
    tb_list l;
    tb_open_all(ctx, &l);
    if (l.n == 0) {
        vxm_context_free(ctx);
        return tu_exit_code();
    }
    test_rand_fill(&l, ctx);

    static const int big2d[3] = {1, 160, 150}, small3d[3] = {6, 7, 8};
    test_labels(&l, "2d 160x150", big2d, 2, 1);
    test_labels(&l, "3d 6x7x8", small3d, 3, 0);

    float taps[7];
    gauss_taps(1.0, taps);
    static const double doc_taps[7] = {0.00443305, 0.05400558, 0.24203623, 0.39905028,
                                       0.24203623, 0.05400558, 0.00443305};
    double dt = 0;
    for (int t = 0; t < 7; t++)
        dt = fmax(dt, fabs(taps[t] - doc_taps[t]));
    tu_report(dt <= 1e-7, "synth conv_axis taps of training doc §6.3 item 7", "max difference %.3g", dt);

    static const int mm_big[3] = {4, 250, 400}, mm_odd[3] = {1, 3, 5};
    test_minmax(&l, "4x250x400 (grid-stride)", mm_big, 1, 0);
    test_minmax(&l, "1x3x5x2", mm_odd, 2, 0);
    test_minmax(&l, "constant", mm_odd, 2, 1);
    for (int c = 0; c < NCASES; c++) {
        test_conv_axis(&l, &cases[c], taps);
        test_mul_exp(&l, &cases[c]);
        test_normalize(&l, &cases[c], -20, 240, 0); /* clipped below: lo = 0 */
        test_normalize(&l, &cases[c], 5, 250, 0);
        test_normalize(&l, &cases[c], 5, 250, 1);
        test_argmax(&l, &cases[c]);
        test_one_hot(&l, &cases[c]);
        test_elu(&l, &cases[c]);
        test_blend(&l, &cases[c]);
    }
    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
