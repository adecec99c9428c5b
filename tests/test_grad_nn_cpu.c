/* CPU backend's neural-net backward ops (backend.h, training section; training doc §2.7), checked three ways:
 *   adjoint     for the linear ops F (conv data and filter, upsampling, slice/concat, linear resize):
 *               <dy, F x> == <F^T dy, x> evaluated in double from the float32 outputs;
 *   finite differences (central, through the forward ops) for LeakyReLU, max-pooling away from ties and the
 *               sampling layer, plus explicit tie cases for the 3-D (tolerance) and 2-D (first maximum) rules;
 *   threads     every output computed with 1 and with 2 threads is bitwise identical (some shapes are large
 *               enough for the parallel paths and for the filter gradient's 64 fixed chunks).
 *
 * Tolerances.  Adjoint: |lhs - rhs| <= 1e-5 * sum |dy_i (F x)_i|.  Both sides are float32 sums of at most a few
 * hundred O(1) terms (rounding ~1e-7 relative to the sum of the absolute terms, which is within ~10x of that
 * scale for random data); a missing tap, wrong padding side or flipped kernel changes the result by >= 1e-3 of
 * the scale.  Finite differences: step h = 1e-3 on O(1) inputs, float32 forward outputs, so the quotient carries
 * ~1e-4 rounding; the tolerance 2e-3 (1 + |g|) is far below the O(1) error of a wrong routing or factor. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test_util.h"

static unsigned long long rng_state = 12345;

static double urand(double lo, double hi)
{
    return tu_urand(&rng_state, lo, hi);
}

/* A device tensor with its host copy. */
typedef struct ht {
    vxm_tensor t;
    float *h;
    size_t n;
} ht;

typedef struct env {
    vxm_context *ctx;
    vxm_backend *be;
    int ok; /* cleared by any failed call */
} env;

static ht mk(env *E, int s0, int s1, int s2, int c, float lo, float hi)
{
    ht a;
    int shape[3] = {s0, s1, s2};
    if (vxm_tensor_alloc(E->be, shape, c, &a.t) != VXM_OK)
        E->ok = 0;
    a.n = vxm_tensor_numel(&a.t);
    a.h = malloc(a.n * sizeof(float));
    for (size_t i = 0; i < a.n; i++)
        a.h[i] = (float)urand(lo, hi);
    if (E->ok && vxm_tensor_upload(E->be, &a.t, a.h) != VXM_OK)
        E->ok = 0;
    return a;
}

static void put(env *E, ht *a)
{
    if (vxm_tensor_upload(E->be, &a->t, a->h) != VXM_OK)
        E->ok = 0;
}

static void get(env *E, ht *a)
{
    if (vxm_tensor_download(E->be, &a->t, a->h) != VXM_OK)
        E->ok = 0;
}

static void rel(env *E, ht *a)
{
    vxm_tensor_release(E->be, &a->t);
    free(a->h);
}

static double dot(const float *a, const float *b, size_t n, double *scale)
{
    double s = 0, sa = 0;
    for (size_t i = 0; i < n; i++) {
        s += (double)a[i] * (double)b[i];
        sa += fabs((double)a[i] * (double)b[i]);
    }
    if (scale)
        *scale = sa;
    return s;
}

/* ---- thread determinism -------------------------------------------------------------------------------------- */

/* One op call, re-run by run2() with 1 and then 2 threads. */
typedef vxm_status (*op_fn)(env *E, void *arg);

/* Runs fn with 1 thread (result left in out->h) and with 2 threads; reports whether the two outputs agree bit for
 * bit.  Returns the first failing status. */
static vxm_status run2(env *E, const char *name, op_fn fn, void *arg, ht *out)
{
    vxm_context_set_threads(E->ctx, 1);
    vxm_status st = fn(E, arg);
    float *one = malloc(out->n * sizeof(float));
    get(E, out);
    memcpy(one, out->h, out->n * sizeof(float));
    vxm_context_set_threads(E->ctx, 2);
    if (!st)
        st = fn(E, arg);
    get(E, out);
    char nm[160];
    snprintf(nm, sizeof nm, "threads %s", name);
    if (st)
        tu_report(0, nm, "%s", vxm_context_error(E->ctx));
    else
        tu_report(memcmp(one, out->h, out->n * sizeof(float)) == 0, nm, "1 and 2 threads differ");
    free(one);
    return st;
}

/* ---- convolution: adjoint of data and filter gradients ------------------------------------------------------- */

typedef struct conv_arg {
    ht *x, *w, *dy, *dx, *dw, *db, *y;
    vxm_conv_params p;
} conv_arg;

static vxm_status op_conv(env *E, void *a)
{
    conv_arg *c = a;
    return E->be->ops->conv(E->be, &c->x->t, c->w->t.buf, NULL, &c->p, &c->y->t);
}
static vxm_status op_conv_bd(env *E, void *a)
{
    conv_arg *c = a;
    return E->be->ops->conv_backward_data(E->be, &c->dy->t, c->w->t.buf, &c->p, &c->dx->t);
}
static vxm_status op_conv_bf(env *E, void *a)
{
    conv_arg *c = a;
    return E->be->ops->conv_backward_filter(E->be, &c->x->t, &c->dy->t, &c->p, c->dw->t.buf);
}
static vxm_status op_conv_bb(env *E, void *a)
{
    conv_arg *c = a;
    return E->be->ops->conv_backward_bias(E->be, &c->dy->t, c->db->t.buf);
}

static void check_adjoint(const char *name, double lhs, double rhs, double scale)
{
    tu_report(fabs(lhs - rhs) <= 1e-5 * scale, name, "<dy,Fx> = %.9g, <F'dy,x> = %.9g (scale %.3g)", lhs, rhs,
              scale);
}

static void test_conv(env *E, int n0, int n1, int n2, int cin, int cout, int k0, int k12, int s0, int s12)
{
    int n[3] = {n0, n1, n2}, k[3] = {k0, k12, k12}, s[3] = {s0, s12, s12}, m[3];
    conv_arg c;
    memset(&c, 0, sizeof c);
    for (int d = 0; d < 3; d++) {
        vxm_same_padding(n[d], k[d], s[d], &m[d], &c.p.pad_lo[d]);
        c.p.ksize[d] = k[d];
        c.p.stride[d] = s[d];
    }
    ht x = mk(E, n0, n1, n2, cin, -1, 1), dx = mk(E, n0, n1, n2, cin, 0, 0);
    ht w = mk(E, 1, 1, k[0] * k[1] * k[2] * cin, cout, -1, 1), dw = mk(E, 1, 1, k[0] * k[1] * k[2] * cin, cout, 0, 0);
    ht dy = mk(E, m[0], m[1], m[2], cout, -1, 1), y = mk(E, m[0], m[1], m[2], cout, 0, 0);
    ht db = mk(E, 1, 1, 1, cout, 0, 0);
    c.x = &x, c.w = &w, c.dy = &dy, c.dx = &dx, c.dw = &dw, c.db = &db, c.y = &y;
    char nm[160], base[100];
    snprintf(base, sizeof base, "%dx%dx%d %d->%d k%dx%d s%dx%d", n0, n1, n2, cin, cout, k0, k12, s0, s12);
    vxm_status st = op_conv(E, &c);
    get(E, &y);
    snprintf(nm, sizeof nm, "conv_backward_data %s", base);
    if (!st)
        st = run2(E, nm, op_conv_bd, &c, &dx);
    snprintf(nm, sizeof nm, "conv_backward_filter %s", base);
    if (!st)
        st = run2(E, nm, op_conv_bf, &c, &dw);
    snprintf(nm, sizeof nm, "conv_backward_bias %s", base);
    if (!st)
        st = run2(E, nm, op_conv_bb, &c, &db);
    if (st || !E->ok) {
        tu_report(0, base, "conv backward failed: %s", vxm_context_error(E->ctx));
    } else {
        double scale, lhs = dot(dy.h, y.h, y.n, &scale);
        snprintf(nm, sizeof nm, "adjoint conv_backward_data %s", base);
        check_adjoint(nm, lhs, dot(dx.h, x.h, x.n, NULL), scale);
        snprintf(nm, sizeof nm, "adjoint conv_backward_filter %s", base);
        check_adjoint(nm, lhs, dot(dw.h, w.h, w.n, NULL), scale);
        double err = 0;
        for (int co = 0; co < cout; co++) {
            double sum = 0;
            for (size_t v = 0; v < dy.n / (size_t)cout; v++)
                sum += dy.h[v * (size_t)cout + (size_t)co];
            err = fmax(err, fabs(sum - db.h[co]));
        }
        snprintf(nm, sizeof nm, "conv_backward_bias %s", base);
        tu_report(err <= 1e-5 * sqrt((double)dy.n), nm, "max error %.3g against the double sum", err);
    }
    ht *all[] = {&x, &dx, &w, &dw, &dy, &y, &db};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        rel(E, all[i]);
}

/* ---- upsampling, slice, resize: adjoints ---------------------------------------------------------------------- */

typedef struct lin_arg {
    ht *x, *y, *dy, *dx;
    int f[3];
    vxm_resize_mapping map;
    float factor[3];
    int c0;
} lin_arg;

static vxm_status op_up(env *E, void *a)
{
    lin_arg *l = a;
    return E->be->ops->upsample_nearest(E->be, &l->x->t, l->f, &l->y->t);
}
static vxm_status op_up_b(env *E, void *a)
{
    lin_arg *l = a;
    return E->be->ops->upsample_nearest_backward(E->be, &l->dy->t, l->f, &l->dx->t);
}
static vxm_status op_rs(env *E, void *a)
{
    lin_arg *l = a;
    return E->be->ops->resize_linear(E->be, &l->x->t, l->map, l->factor, &l->y->t);
}
static vxm_status op_rs_b(env *E, void *a)
{
    lin_arg *l = a;
    return E->be->ops->resize_linear_backward(E->be, &l->dy->t, l->map, l->factor, &l->dx->t);
}

/* Adjoint of a linear op x (shape n) -> y (shape m) with its backward, both run through run2. */
static void test_linear(env *E, const char *name, op_fn fwd, op_fn bwd, lin_arg *l, const int n[3], const int m[3],
                        int C)
{
    ht x = mk(E, n[0], n[1], n[2], C, -1, 1), dx = mk(E, n[0], n[1], n[2], C, 0, 0);
    ht y = mk(E, m[0], m[1], m[2], C, 0, 0), dy = mk(E, m[0], m[1], m[2], C, -1, 1);
    l->x = &x, l->dx = &dx, l->y = &y, l->dy = &dy;
    char nm[200];
    snprintf(nm, sizeof nm, "%s forward", name);
    vxm_status st = run2(E, nm, fwd, l, &y);
    if (!st)
        st = run2(E, name, bwd, l, &dx);
    snprintf(nm, sizeof nm, "adjoint %s", name);
    if (st || !E->ok) {
        tu_report(0, nm, "%s", vxm_context_error(E->ctx));
    } else {
        double scale, lhs = dot(dy.h, y.h, y.n, &scale);
        check_adjoint(nm, lhs, dot(dx.h, x.h, x.n, NULL), scale);
    }
    rel(E, &x), rel(E, &dx), rel(E, &y), rel(E, &dy);
}

static void test_upsample(env *E, int n0, int n1, int n2, int C, int f0, int f12)
{
    lin_arg l = {.f = {f0, f12, f12}};
    int n[3] = {n0, n1, n2}, m[3] = {n0 * f0, n1 * f12, n2 * f12};
    char nm[120];
    snprintf(nm, sizeof nm, "upsample_nearest_backward %dx%dx%dx%d f%dx%d", n0, n1, n2, C, f0, f12);
    test_linear(E, nm, op_up, op_up_b, &l, n, m, C);
}

static void test_resize(env *E, vxm_resize_mapping map, const int n[3], const int m[3], int C, float f)
{
    lin_arg l = {.map = map, .factor = {f, f, f}};
    char nm[160];
    snprintf(nm, sizeof nm, "resize_linear_backward %s %dx%dx%d -> %dx%dx%d c%d", map == VXM_RESIZE_LEGACY ? "legacy" : "linspace",
             n[0], n[1], n[2], m[0], m[1], m[2], C);
    test_linear(E, nm, op_rs, op_rs_b, &l, n, m, C);
}

typedef struct slice_arg {
    ht *z, *a;
    int c0;
} slice_arg;

static vxm_status op_slice(env *E, void *p)
{
    slice_arg *s = p;
    return E->be->ops->slice_channels(E->be, &s->z->t, s->c0, &s->a->t);
}

/* <z, concat(a, b)> == <slice(z, 0), a> + <slice(z, Ca), b>: slice is concat's adjoint. */
static void test_slice(env *E, int n0, int n1, int n2, int ca, int cb)
{
    ht a = mk(E, n0, n1, n2, ca, -1, 1), b = mk(E, n0, n1, n2, cb, -1, 1), y = mk(E, n0, n1, n2, ca + cb, 0, 0);
    ht z = mk(E, n0, n1, n2, ca + cb, -1, 1), ga = mk(E, n0, n1, n2, ca, 0, 0), gb = mk(E, n0, n1, n2, cb, 0, 0);
    char nm[120];
    snprintf(nm, sizeof nm, "slice_channels %dx%dx%d %d+%d", n0, n1, n2, ca, cb);
    vxm_status st = E->be->ops->concat(E->be, &a.t, &b.t, &y.t);
    get(E, &y);
    slice_arg sa = {&z, &ga, 0}, sb = {&z, &gb, ca};
    if (!st)
        st = run2(E, nm, op_slice, &sa, &ga);
    if (!st)
        st = run2(E, nm, op_slice, &sb, &gb);
    char an[140];
    snprintf(an, sizeof an, "adjoint %s", nm);
    if (st || !E->ok) {
        tu_report(0, an, "%s", vxm_context_error(E->ctx));
    } else {
        double scale, lhs = dot(z.h, y.h, y.n, &scale);
        check_adjoint(an, lhs, dot(ga.h, a.h, a.n, NULL) + dot(gb.h, b.h, b.n, NULL), scale);
    }
    rel(E, &a), rel(E, &b), rel(E, &y), rel(E, &z), rel(E, &ga), rel(E, &gb);
}

/* ---- element-wise ops: finite differences -------------------------------------------------------------------- */

typedef struct ew_arg {
    ht *x, *aux, *dy, *y, *dx;
    float alpha;
} ew_arg;

static vxm_status op_leaky(env *E, void *p)
{
    ew_arg *e = p;
    return E->be->ops->leaky_relu(E->be, &e->x->t, e->alpha, &e->y->t);
}
static vxm_status op_leaky_b(env *E, void *p)
{
    ew_arg *e = p;
    return E->be->ops->leaky_relu_backward(E->be, &e->x->t, &e->dy->t, e->alpha, &e->dx->t);
}
/* x = logvar, aux = eps (mean 0) */
static vxm_status op_sn(env *E, void *p)
{
    ew_arg *e = p;
    return E->be->ops->sample_normal(E->be, &e->y->t, &e->x->t, &e->aux->t, &e->y->t);
}
static vxm_status op_sn_b(env *E, void *p)
{
    ew_arg *e = p;
    return E->be->ops->sample_normal_backward(E->be, &e->x->t, &e->aux->t, &e->dy->t, &e->dx->t);
}

/* Element-wise op: d(y_i)/d(x_i) by central differences with all elements moved at once (the Jacobian is
 * diagonal), compared with dx / dy.  `reset` re-zeroes y before each forward (sample_normal reads y as mean). */
static void test_elementwise(env *E, const char *name, op_fn fwd, op_fn bwd, ew_arg *e, int reset)
{
    const double h = 1e-3;
    size_t n = e->x->n;
    float *x0 = malloc(n * sizeof(float)), *yp = malloc(n * sizeof(float));
    memcpy(x0, e->x->h, n * sizeof(float));
    vxm_status st = run2(E, name, bwd, e, e->dx);
    double worst = 0;
    for (int sgn = 1; sgn >= -1 && !st; sgn -= 2) {
        for (size_t i = 0; i < n; i++)
            e->x->h[i] = (float)(x0[i] + sgn * h);
        put(E, e->x);
        if (reset) {
            memset(e->y->h, 0, n * sizeof(float));
            put(E, e->y);
        }
        st = fwd(E, e);
        get(E, e->y);
        if (sgn == 1)
            memcpy(yp, e->y->h, n * sizeof(float));
    }
    for (size_t i = 0; i < n && !st; i++) {
        /* the actual float step taken, so that rounding of x +- h does not bias the quotient */
        double step = (double)(float)(x0[i] + h) - (double)(float)(x0[i] - h);
        double fd = (double)e->dy->h[i] * ((double)yp[i] - (double)e->y->h[i]) / step;
        double err = fabs(fd - e->dx->h[i]) / (1.0 + fabs(fd));
        worst = err > worst ? err : worst;
    }
    memcpy(e->x->h, x0, n * sizeof(float));
    put(E, e->x);
    char nm[160];
    snprintf(nm, sizeof nm, "finite differences %s", name);
    if (st)
        tu_report(0, nm, "%s", vxm_context_error(E->ctx));
    else
        tu_report(worst <= 2e-3, nm, "relative error %.3g", worst);
    free(x0);
    free(yp);
}

static void test_leaky(env *E, int n0, int n1, int n2, int C)
{
    ht x = mk(E, n0, n1, n2, C, -2, 2), dy = mk(E, n0, n1, n2, C, -1, 1), y = mk(E, n0, n1, n2, C, 0, 0);
    ht dx = mk(E, n0, n1, n2, C, 0, 0);
    for (size_t i = 0; i < x.n; i++) /* away from the kink */
        if (fabsf(x.h[i]) < 0.05f)
            x.h[i] = 0.5f;
    x.h[0] = 0.0f; /* x == 0 takes alpha (§2.7); the difference quotient there is (1 + alpha)/2 */
    put(E, &x);
    ew_arg e = {&x, NULL, &dy, &y, &dx, 0.2f};
    char nm[120];
    snprintf(nm, sizeof nm, "leaky_relu_backward %dx%dx%dx%d", n0, n1, n2, C);
    if (run2(E, nm, op_leaky_b, &e, &dx) == VXM_OK) {
        char zn[140];
        snprintf(zn, sizeof zn, "%s at x = 0", nm);
        tu_report(dx.h[0] == 0.2f * dy.h[0], zn, "dx %g, expected alpha * dy = %g", dx.h[0], 0.2f * dy.h[0]);
    }
    x.h[0] = 0.5f;
    put(E, &x);
    test_elementwise(E, nm, op_leaky, op_leaky_b, &e, 0);
    /* in place: dx == dy */
    float *want = malloc(dy.n * sizeof(float));
    for (size_t i = 0; i < dy.n; i++)
        want[i] = x.h[i] > 0.0f ? dy.h[i] : 0.2f * dy.h[i];
    vxm_status st = E->be->ops->leaky_relu_backward(E->be, &x.t, &dy.t, 0.2f, &dy.t);
    get(E, &dy);
    snprintf(nm, sizeof nm, "leaky_relu_backward in place %dx%dx%dx%d", n0, n1, n2, C);
    tu_report(!st && memcmp(want, dy.h, dy.n * sizeof(float)) == 0, nm, "%s", st ? vxm_context_error(E->ctx) : "differs");
    free(want);
    rel(E, &x), rel(E, &dy), rel(E, &y), rel(E, &dx);
}

static void test_sample_normal(env *E, int n0, int n1, int n2, int C)
{
    ht lv = mk(E, n0, n1, n2, C, -2, 1), eps = mk(E, n0, n1, n2, C, -2, 2), dy = mk(E, n0, n1, n2, C, -1, 1);
    ht y = mk(E, n0, n1, n2, C, 0, 0), dlv = mk(E, n0, n1, n2, C, 0, 0);
    ew_arg e = {&lv, &eps, &dy, &y, &dlv, 0};
    char nm[120];
    snprintf(nm, sizeof nm, "sample_normal_backward %dx%dx%dx%d", n0, n1, n2, C);
    test_elementwise(E, nm, op_sn, op_sn_b, &e, 1);
    rel(E, &lv), rel(E, &eps), rel(E, &dy), rel(E, &y), rel(E, &dlv);
}

/* ---- max-pooling ------------------------------------------------------------------------------------------------ */

typedef struct pool_arg {
    ht *x, *dy, *dx, *y;
    int f[3];
    float tol;
} pool_arg;

static vxm_status op_pool(env *E, void *p)
{
    pool_arg *a = p;
    return E->be->ops->maxpool(E->be, &a->x->t, a->f, &a->y->t);
}
static vxm_status op_pool_b(env *E, void *p)
{
    pool_arg *a = p;
    return E->be->ops->maxpool_backward(E->be, &a->x->t, &a->dy->t, a->f, a->tol, &a->dx->t);
}

static double pool_loss(env *E, pool_arg *a)
{
    put(E, a->x);
    if (op_pool(E, a) != VXM_OK)
        E->ok = 0;
    get(E, a->y);
    return dot(a->dy->h, a->y->h, a->y->n, NULL);
}

/* Distinct values (a shuffled ladder with spacing 0.01, far above the step) so no block has a near-tie; odd sizes
 * leave inputs outside every block.  Per-element central differences of <dy, maxpool(x)>. */
static void test_maxpool_fd(env *E, int n0, int n1, int n2, int C, int f0, int f12, float tol, int fd)
{
    int f[3] = {f0, f12, f12};
    ht x = mk(E, n0, n1, n2, C, 0, 0), dx = mk(E, n0, n1, n2, C, 0, 0);
    ht dy = mk(E, n0 / f0, n1 / f12, n2 / f12, C, -1, 1), y = mk(E, n0 / f0, n1 / f12, n2 / f12, C, 0, 0);
    for (size_t i = 0; i < x.n; i++)
        x.h[i] = (float)i * 0.01f - 1.0f;
    for (size_t i = x.n - 1; i > 0; i--) {
        size_t j = (size_t)urand(0, (double)i + 1);
        float t = x.h[i];
        x.h[i] = x.h[j];
        x.h[j] = t;
    }
    put(E, &x);
    pool_arg a = {&x, &dy, &dx, &y, {f0, f12, f12}, tol};
    char nm[140];
    snprintf(nm, sizeof nm, "maxpool_backward %dx%dx%dx%d f%dx%d tol %g", n0, n1, n2, C, f[0], f[1], (double)tol);
    vxm_status st = run2(E, nm, op_pool_b, &a, &dx);
    const float h = 1e-3f;
    double worst = 0;
    for (size_t i = 0; i < x.n && !st && E->ok && fd; i++) {
        float x0 = x.h[i];
        x.h[i] = x0 + h;
        double lp = pool_loss(E, &a);
        x.h[i] = x0 - h;
        double lm = pool_loss(E, &a);
        double step = (double)(x0 + h) - (double)(x0 - h);
        x.h[i] = x0;
        double fd = (lp - lm) / step;
        worst = fmax(worst, fabs(fd - dx.h[i]) / (1.0 + fabs(fd)));
    }
    put(E, &x);
    snprintf(nm, sizeof nm, "finite differences maxpool_backward %dx%dx%dx%d f%dx%d tol %g", n0, n1, n2, C, f[0],
             f[1], (double)tol);
    if (st || !E->ok)
        tu_report(0, nm, "%s", vxm_context_error(E->ctx));
    else if (fd)
        tu_report(worst <= 2e-3, nm, "relative error %.3g", worst);
    rel(E, &x), rel(E, &dx), rel(E, &dy), rel(E, &y);
}

/* Ties (training doc §0): a 3-D 2x2x2 block of equal values passes g to all eight, the near-tie 1.3325620 /
 * 1.3325623 passes g to both; the 2-D rule gives it to the first maximum only.  One channel, x 2x2x3 (axis 2 has
 * one input outside every block, which must get 0). */
static void test_maxpool_ties(env *E)
{
    ht x = mk(E, 2, 2, 3, 1, 0, 0), dx = mk(E, 2, 2, 3, 1, 0, 0), dy = mk(E, 1, 1, 1, 1, 0, 0);
    pool_arg a = {&x, &dy, &dx, NULL, {2, 2, 2}, 1e-5f};
    dy.h[0] = 3.0f;
    put(E, &dy);
    for (size_t i = 0; i < x.n; i++)
        x.h[i] = 0.75f;
    put(E, &x);
    int ok = op_pool_b(E, &a) == VXM_OK;
    get(E, &dx);
    for (size_t i = 0; i < x.n; i++)
        ok &= dx.h[i] == ((i % 3) == 2 ? 0.0f : 3.0f);
    tu_report(ok, "maxpool_backward 3-D tie: every equal input gets the whole gradient", "dx[0] %g dx[2] %g",
              dx.h[0], dx.h[2]);
    for (size_t i = 0; i < x.n; i++)
        x.h[i] = 0.5f;
    x.h[4] = 1.3325620f, x.h[9] = 1.3325623f, x.h[5] = 9.0f; /* x[5] lies outside the block */
    put(E, &x);
    ok = op_pool_b(E, &a) == VXM_OK;
    get(E, &dx);
    for (size_t i = 0; i < x.n; i++)
        ok &= dx.h[i] == ((i == 4 || i == 9) ? 3.0f : 0.0f);
    tu_report(ok, "maxpool_backward 3-D near-tie within 1e-5", "dx[4] %g dx[9] %g dx[5] %g", dx.h[4], dx.h[9],
              dx.h[5]);
    /* 2-D: blocks 1x2x2 over a 1x2x3 slice; x laid out so the two maxima of the first block are (0,1) and (1,0) */
    ht x2 = mk(E, 1, 2, 3, 1, 0, 0), dx2 = mk(E, 1, 2, 3, 1, 0, 0);
    float v2[6] = {1.0f, 3.0f, 7.0f, 3.0f, 2.0f, 8.0f};
    memcpy(x2.h, v2, sizeof v2);
    put(E, &x2);
    pool_arg b = {&x2, &dy, &dx2, NULL, {1, 2, 2}, -1.0f};
    ok = op_pool_b(E, &b) == VXM_OK;
    get(E, &dx2);
    float want[6] = {0, 3.0f, 0, 0, 0, 0};
    ok &= memcmp(dx2.h, want, sizeof want) == 0;
    tu_report(ok, "maxpool_backward 2-D tie: first maximum only", "dx %g %g %g / %g %g %g", dx2.h[0], dx2.h[1],
              dx2.h[2], dx2.h[3], dx2.h[4], dx2.h[5]);
    rel(E, &x), rel(E, &dx), rel(E, &dy), rel(E, &x2), rel(E, &dx2);
}

/* ---- add ---------------------------------------------------------------------------------------------------- */

static void test_add(env *E)
{
    ht a = mk(E, 3, 4, 5, 2, -1, 1), b = mk(E, 1, 1, 120, 1, -1, 1), y = mk(E, 3, 4, 5, 2, 0, 0);
    float *want = malloc(a.n * sizeof(float));
    for (size_t i = 0; i < a.n; i++)
        want[i] = a.h[i] + b.h[i];
    int ok = E->be->ops->add(E->be, &a.t, &b.t, &y.t) == VXM_OK;
    get(E, &y);
    ok &= memcmp(want, y.h, a.n * sizeof(float)) == 0;
    ok &= E->be->ops->add(E->be, &a.t, &b.t, &a.t) == VXM_OK; /* y aliases a */
    get(E, &a);
    ok &= memcmp(want, a.h, a.n * sizeof(float)) == 0;
    tu_report(ok, "add (shapes differ, equal numel; in place)", "%s", vxm_context_error(E->ctx));
    ht bad = mk(E, 1, 1, 7, 1, 0, 0);
    tu_report(E->be->ops->add(E->be, &a.t, &bad.t, &y.t) == VXM_ESHAPE, "add rejects a numel mismatch", "accepted");
    free(want);
    rel(E, &a), rel(E, &b), rel(E, &y), rel(E, &bad);
}

int main(void)
{
    (void)tu_have_shared;
    (void)tu_shared_path;
    (void)tu_max_abs_diff;
    (void)tu_nmse;
    env E = {vxm_context_create(), NULL, 1};
    if (!E.ctx || vxm_backend_cpu_create(E.ctx, &E.be) != VXM_OK) {
        printf("FAIL grad_nn_cpu: no CPU backend\n");
        return 1;
    }
    /* convolution: 3-D odd sizes, stride 1 and 2 (and mixed), kernels 3, 1, 2 and 5, 2-D; channel counts that take
     * the padded-Cout path (4), whole vectors (16, 32) and the forward's narrow path in the data gradient (2->16) */
    test_conv(&E, 7, 6, 5, 3, 4, 3, 3, 1, 1);
    test_conv(&E, 7, 6, 5, 3, 4, 3, 3, 2, 2);
    test_conv(&E, 7, 6, 5, 3, 4, 1, 1, 1, 1);
    test_conv(&E, 7, 6, 5, 3, 4, 1, 1, 2, 2);
    test_conv(&E, 1, 7, 6, 3, 4, 1, 3, 1, 1);
    test_conv(&E, 1, 7, 6, 3, 4, 1, 3, 1, 2);
    test_conv(&E, 1, 9, 8, 3, 4, 1, 3, 1, 2);
    test_conv(&E, 6, 7, 8, 4, 3, 2, 2, 2, 2);
    test_conv(&E, 5, 4, 6, 3, 8, 5, 5, 1, 1);
    test_conv(&E, 5, 7, 6, 2, 16, 3, 3, 2, 1);
    test_conv(&E, 6, 5, 7, 16, 32, 3, 3, 1, 2);
    test_conv(&E, 12, 14, 16, 16, 16, 3, 3, 1, 1); /* large enough for 2 threads and 64 filter chunks */
    test_conv(&E, 12, 14, 17, 16, 16, 3, 3, 2, 2);
    test_conv(&E, 8, 9, 10, 32, 3, 3, 3, 1, 1); /* narrow filter-gradient path (Cout <= 4, Cin % vector width 0) */
    test_conv(&E, 1, 9, 8, 16, 2, 1, 3, 1, 2);
    /* upsampling, resize (both mappings, up and down, a size-1 axis), slice */
    test_upsample(&E, 3, 4, 5, 3, 2, 2);
    test_upsample(&E, 1, 4, 5, 2, 1, 2);
    test_upsample(&E, 8, 8, 8, 8, 2, 2);
    int r7[3] = {7, 6, 5}, r14[3] = {14, 12, 10}, r4[3] = {3, 3, 2}, r2d[3] = {1, 5, 7}, r2u[3] = {1, 10, 14};
    int big[3] = {16, 16, 16}, big2[3] = {24, 24, 24};
    test_resize(&E, VXM_RESIZE_LINSPACE, r7, r14, 3, 2.0f);
    test_resize(&E, VXM_RESIZE_LINSPACE, r7, r4, 3, 0.5f);
    test_resize(&E, VXM_RESIZE_LEGACY, r7, r14, 3, 2.0f);
    test_resize(&E, VXM_RESIZE_LEGACY, r7, r4, 3, 0.5f);
    test_resize(&E, VXM_RESIZE_LINSPACE, r2d, r2u, 2, 2.0f);
    test_resize(&E, VXM_RESIZE_LEGACY, r2u, r2d, 2, 0.5f);
    test_resize(&E, VXM_RESIZE_LEGACY, big, big2, 8, 1.5f);
    test_resize(&E, VXM_RESIZE_LINSPACE, big2, big, 8, 0.75f);
    test_slice(&E, 3, 4, 5, 3, 2);
    test_slice(&E, 16, 16, 16, 8, 5);
    /* element-wise and pooling */
    test_leaky(&E, 3, 4, 5, 3);
    test_leaky(&E, 16, 16, 16, 9);
    test_sample_normal(&E, 3, 4, 5, 3);
    test_sample_normal(&E, 16, 16, 16, 9);
    test_maxpool_fd(&E, 5, 4, 5, 2, 2, 2, 1e-5f, 1);
    test_maxpool_fd(&E, 1, 5, 7, 3, 1, 2, -1.0f, 1);
    test_maxpool_fd(&E, 16, 17, 16, 8, 2, 2, 1e-5f, 0); /* threads only */
    test_maxpool_ties(&E);
    test_add(&E);
    vxm_backend_close(E.be);
    vxm_context_free(E.ctx);
    return tu_exit_code();
}
