/* The CPU convolution's uniform-block shortcut (src/backend_cpu/cpu_conv.c, cpu_conv_rows.c; issue 12): where every
 * input row a block of output voxels reads is bitwise constant over the block's window, one voxel is computed and
 * copied.  The outputs must be bitwise those of the full computation (VXM_CPU_UNIFORM=0), for every kernel variant
 * this CPU runs, on inputs built to hit the shortcut and its edges:
 *   - zero background with a random "brain" blob (the skull-stripped scan of the first layer);
 *   - a constant non-zero vector touching the volume's borders (later layers' background, next to SAME padding);
 *   - -0.0 next to +0.0 (equal as floats, different bits: never merged);
 *   - a constant row with one voxel changed in its last bit (not uniform);
 *   - a constant NaN region (same bits: same results);
 * through conv (stride 1 and 2, Cout 16 / 32 / 48 in passes, Cout 5 padded), conv_pool and conv_upcat; and the
 * same inputs (but NaN) on every OpenCL device within test_ops_agree.c's tolerance of the CPU's result. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test_backends.h"
#include "test_util.h"

typedef enum { OP_CONV, OP_POOL, OP_UPCAT } op_kind;

typedef struct ucase {
    const char *name;
    op_kind op;
    int shape[3]; /* input grid (the skip input's for conv_upcat) */
    int cin, cout, stride, leaky;
    int nan; /* put a constant NaN region in */
} ucase;

static const ucase cases[] = {
    {"conv 2->16 (first layer)", OP_CONV, {10, 9, 50}, 2, 16, 1, 1, 0},
    {"conv 16->32", OP_CONV, {9, 8, 44}, 16, 32, 1, 1, 0},
    {"conv 32->16 no activation", OP_CONV, {8, 9, 40}, 32, 16, 1, 0, 0},
    {"conv 16->16 stride 2", OP_CONV, {10, 9, 50}, 16, 16, 2, 1, 0},
    {"conv 4->48", OP_CONV, {8, 8, 48}, 4, 48, 1, 1, 0},
    {"conv 8->5 (padded Cout)", OP_CONV, {8, 8, 40}, 8, 5, 1, 1, 0},
    {"conv 8->16 with NaN", OP_CONV, {10, 9, 50}, 8, 16, 1, 1, 1},
    {"conv_pool 2->16", OP_POOL, {10, 10, 48}, 2, 16, 1, 1, 0},
    {"conv_upcat 8+8->16", OP_UPCAT, {10, 10, 48}, 8, 16, 1, 1, 0},
};

/* Input of the cases above: see the header. */
static void fill_input(float *x, const int n[3], int C, int nan, unsigned long long seed)
{
    unsigned long long s = seed;
    float cvec[64];
    for (int c = 0; c < C; c++)
        cvec[c] = (float)tu_urand(&s, -1, 1);
    for (int i0 = 0; i0 < n[0]; i0++)
        for (int i1 = 0; i1 < n[1]; i1++)
            for (int i2 = 0; i2 < n[2]; i2++) {
                float *v = x + (((size_t)i0 * n[1] + i1) * n[2] + i2) * C;
                int blob = i0 >= 3 && i0 <= 6 && i1 >= 2 && i1 <= 5 && i2 >= n[2] / 3 && i2 < n[2] / 2;
                int constant = i0 <= 2 && i2 >= n[2] * 3 / 5;
                int negzero = i0 >= n[0] - 3 && i1 <= 3 && i2 < n[2] / 3;
                int lastbit = i0 == 1 && i1 == 1 && i2 == n[2] * 4 / 5;
                int isnan = nan && i0 == n[0] - 2 && i1 == n[1] - 2 && i2 >= n[2] * 2 / 3;
                for (int c = 0; c < C; c++)
                    v[c] = blob ? (float)tu_urand(&s, -1, 1) : constant ? cvec[c] : negzero ? -0.0f : 0.0f;
                if (lastbit)
                    v[C - 1] = nextafterf(v[C - 1], 2.0f);
                if (isnan)
                    for (int c = 0; c < C; c++)
                        v[c] = NAN;
            }
}

static vxm_status upload(vxm_backend *be, const float *h, size_t n, vxm_buffer **b)
{
    vxm_status st = be->ops->buffer_alloc(be, n, b);
    return st ? st : be->ops->buffer_write(be, *b, h, n);
}

/* Runs the case on be into out (host), with the shortcut on or off. */
static vxm_status run_case(vxm_backend *be, const ucase *c, const float *x, const float *a, const float *w,
                           const float *bias, int shortcut, float *out, size_t nout)
{
    if (shortcut)
        unsetenv("VXM_CPU_UNIFORM");
    else
        setenv("VXM_CPU_UNIFORM", "0", 1);
    const int f[3] = {2, 2, 2};
    int cin_total = c->op == OP_UPCAT ? 2 * c->cin : c->cin;
    int yshape[3], ashape[3];
    for (int d = 0; d < 3; d++) {
        int m = (c->shape[d] + c->stride - 1) / c->stride;
        yshape[d] = c->op == OP_POOL ? m / 2 : m;
        ashape[d] = c->shape[d] / 2;
    }
    vxm_tensor tx = {0}, ta = {0}, ty = {0};
    vxm_buffer *wb = NULL, *bb = NULL;
    vxm_status st;
    vxm_conv_params p = {{3, 3, 3}, {c->stride, c->stride, c->stride}, {1, 1, 1}, c->leaky, 0.2f};
    for (int d = 0; d < 3; d++) /* SAME: half the total padding before (spec §2.1) */
        p.pad_lo[d] = ((c->shape[d] + c->stride - 1) / c->stride - 1) * c->stride + 3 > c->shape[d]
                          ? (((c->shape[d] + c->stride - 1) / c->stride - 1) * c->stride + 3 - c->shape[d]) / 2
                          : 0;
    size_t nw = 27 * (size_t)cin_total * (size_t)c->cout;
    if ((st = vxm_tensor_alloc(be, c->shape, c->cin, &tx)) ||
        (st = be->ops->buffer_write(be, tx.buf, x, vxm_tensor_numel(&tx))) || (st = upload(be, w, nw, &wb)) ||
        (st = upload(be, bias, (size_t)c->cout, &bb)) || (st = vxm_tensor_alloc(be, yshape, c->cout, &ty)))
        goto done;
    if (c->op == OP_UPCAT && ((st = vxm_tensor_alloc(be, ashape, c->cin, &ta)) ||
                              (st = be->ops->buffer_write(be, ta.buf, a, vxm_tensor_numel(&ta)))))
        goto done;
    st = c->op == OP_CONV   ? be->ops->conv(be, &tx, wb, bb, &p, &ty)
         : c->op == OP_POOL ? be->ops->conv_pool(be, &tx, wb, bb, &p, f, &ty)
                            : be->ops->conv_upcat(be, &ta, f, &tx, wb, bb, &p, &ty);
    if (!st && vxm_tensor_numel(&ty) != nout)
        st = VXM_ESHAPE;
    if (!st)
        st = be->ops->buffer_read(be, ty.buf, out, nout);
done:
    vxm_tensor_release(be, &tx);
    vxm_tensor_release(be, &ta);
    vxm_tensor_release(be, &ty);
    be->ops->buffer_free(be, wb);
    be->ops->buffer_free(be, bb);
    unsetenv("VXM_CPU_UNIFORM");
    return st;
}

/* The host data of case k: inputs, weights, bias and output room (free with case_free). */
typedef struct case_data {
    float *x, *a, *w, *bias, *y0, *y1;
    size_t nout;
} case_data;

static int case_make(size_t k, case_data *D)
{
    const ucase *c = &cases[k];
    const int *n = c->shape;
    int cin_total = c->op == OP_UPCAT ? 2 * c->cin : c->cin;
    size_t nx = (size_t)n[0] * n[1] * n[2] * c->cin, na = nx / 8, nw = 27 * (size_t)cin_total * c->cout;
    D->nout = (size_t)c->cout;
    for (int d = 0; d < 3; d++) {
        int m = (n[d] + c->stride - 1) / c->stride;
        D->nout *= (size_t)(c->op == OP_POOL ? m / 2 : m);
    }
    D->x = malloc(nx * sizeof *D->x);
    D->a = malloc(na * sizeof *D->a);
    D->w = malloc(nw * sizeof *D->w);
    D->bias = malloc((size_t)c->cout * sizeof *D->bias);
    D->y0 = calloc(D->nout, sizeof *D->y0);
    D->y1 = calloc(D->nout, sizeof *D->y1);
    if (!D->x || !D->a || !D->w || !D->bias || !D->y0 || !D->y1)
        return -1;
    unsigned long long s = 1234 + k;
    fill_input(D->x, n, c->cin, c->nan, 77 + k);
    const int an[3] = {n[0] / 2, n[1] / 2, n[2] / 2};
    fill_input(D->a, an, c->cin, 0, 99 + k);
    for (size_t i = 0; i < nw; i++)
        D->w[i] = (float)tu_urand(&s, -0.3, 0.3);
    for (int i = 0; i < c->cout; i++)
        D->bias[i] = (float)tu_urand(&s, -0.1, 0.1);
    D->bias[0] = -0.0f; /* -0 + 0 * w: the sign of a zero sum must come out as in the full computation */
    return 0;
}

static void case_free(case_data *D)
{
    free(D->x);
    free(D->a);
    free(D->w);
    free(D->bias);
    free(D->y0);
    free(D->y1);
}

static void variant(vxm_context *ctx, const char *isa)
{
    char name[200];
    vxm_backend *be = NULL;
    setenv("VXM_CPU_ISA", isa, 1);
    if (vxm_backend_cpu_create(ctx, &be)) {
        snprintf(name, sizeof name, "uniform shortcut [%s]", isa);
        tu_skip(name, "this CPU lacks the variant");
        vxm_context_clear_error(ctx);
        return;
    }
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const ucase *c = &cases[k];
        case_data D;
        snprintf(name, sizeof name, "%s: bitwise equal with and without the shortcut [%s]", c->name, isa);
        if (case_make(k, &D)) {
            tu_report(0, name, "out of memory");
            case_free(&D);
            continue;
        }
        vxm_status st = run_case(be, c, D.x, D.a, D.w, D.bias, 1, D.y1, D.nout);
        if (!st)
            st = run_case(be, c, D.x, D.a, D.w, D.bias, 0, D.y0, D.nout);
        if (st)
            tu_report(0, name, "%s", vxm_context_error(ctx));
        else {
            size_t bad = 0;
            for (size_t i = 0; i < D.nout; i++)
                bad += memcmp(&D.y0[i], &D.y1[i], sizeof(float)) != 0;
            tu_report(bad == 0, name, "%zu of %zu outputs differ", bad, D.nout);
        }
        vxm_context_clear_error(ctx);
        case_free(&D);
    }
    vxm_backend_close(be);
}

/* The same inputs on every OpenCL device against the CPU backend with its shortcuts, within test_ops_agree.c's
 * tolerance (the cases without NaN). */
static void opencl_agreement(vxm_context *ctx)
{
    tb_list l;
    tb_open_all(ctx, &l);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0] && l.n > 1; k++) {
        const ucase *c = &cases[k];
        case_data D;
        if (c->nan || case_make(k, &D)) {
            if (!c->nan)
                case_free(&D);
            continue;
        }
        vxm_status st = run_case(l.be[0], c, D.x, D.a, D.w, D.bias, 1, D.y1, D.nout);
        double ymax = 0;
        for (size_t i = 0; i < D.nout; i++)
            ymax = fabs(D.y1[i]) > ymax ? fabs(D.y1[i]) : ymax;
        for (int b = 1; b < l.n; b++) {
            char name[200];
            snprintf(name, sizeof name, "%s: [%s] agrees with the cpu", c->name, l.be[b]->spec);
            vxm_status sd = st ? st : run_case(l.be[b], c, D.x, D.a, D.w, D.bias, 1, D.y0, D.nout);
            if (sd) {
                tu_report(0, name, "%s", vxm_context_error(ctx));
                vxm_context_clear_error(ctx);
                continue;
            }
            double nmse = tu_nmse(D.y0, D.y1, D.nout), mad = tu_max_abs_diff(D.y0, D.y1, D.nout);
            double tol = 1e-5 * (1.0 + ymax);
            tu_report(nmse <= 1e-10 && mad <= tol, name, "nmse %.3g (<= 1e-10), max abs diff %.3g (<= %.3g)", nmse,
                      mad, tol);
        }
        case_free(&D);
    }
    tb_close_all(&l);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    static const char *variants[] = {"baseline", "avx2", "avx512"};
    vxm_context_set_threads(ctx, 2);
    for (int v = 0; v < 3; v++)
        variant(ctx, variants[v]);
    unsetenv("VXM_CPU_ISA");
    opencl_agreement(ctx);
    vxm_context_free(ctx);
    return tu_exit_code();
}
