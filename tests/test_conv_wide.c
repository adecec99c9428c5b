/* Convolutions with long reductions on every backend: forward (bias + LeakyReLU) and the data, filter and bias
 * gradients against float64 references, each error relative to the sum of |terms| of its dot product.
 *
 *   Dense 96 -> 20000   1x1x1 kernel on one voxel (HyperMorph's hypernetwork Dense layers, training doc §5): the data
 *                       gradient sums 20000 products per input, the forward of the transposed layer likewise;
 *   3x3x3, 96 -> 40     a wide 3-D layer at a small size (2592 products per output);
 *   1x3x3 on 1x700x1000 a 2-D filter gradient whose chunks of voxels are long (2734 voxels).
 * Mesa llvmpipe (rusticl) ends a work-item's loops after 65535 iterations in all, so the first two lost 1-10 % of
 * their sums there and the third 0.4 % before cl_conv.c / cl_conv_backward.c cut them into launches
 * (cl_loop_budget.h).  Float rounding of these sums is ~1e-7 of the |terms|; the tolerance 1e-5 is far from both. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "test_backends.h"
#include "test_util.h"

typedef struct wcase {
    const char *name;
    int shape[3], k[3], cin, cout;
} wcase;

static double urand(unsigned long long *s, double a, double b)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return a + (b - a) * (double)(*s >> 11) * (1.0 / 9007199254740992.0);
}

/* Input voxel of output voxel o and tap t on one axis (stride 1, SAME padding), or -1 outside. */
static int src_index(int o, int t, int k, int n)
{
    int i = o - (k - 1) / 2 + t;
    return i >= 0 && i < n ? i : -1;
}

typedef struct wdata {
    float *x, *w, *b, *dy, *y, *dx, *dw, *db;
} wdata;

/* Largest error of the four results against float64 (see the header). */
static void errors(const wcase *c, const wdata *d, float alpha, double err[4])
{
    const int *n = c->shape, *k = c->k;
    size_t nv = (size_t)n[0] * n[1] * n[2], ktaps = (size_t)k[0] * k[1] * k[2], nw = ktaps * c->cin * c->cout;
    double *sx = calloc(nv * c->cin, sizeof(double)), *mx = calloc(nv * c->cin, sizeof(double));
    double *sw = calloc(nw, sizeof(double)), *mw = calloc(nw, sizeof(double)), *ys = malloc(sizeof(double) * c->cout);
    double *ym = malloc(sizeof(double) * c->cout);
    err[0] = err[1] = err[2] = err[3] = 0;
    for (size_t o = 0; o < nv; o++) {
        int o2 = (int)(o % n[2]), o1 = (int)(o / n[2] % n[1]), o0 = (int)(o / n[2] / n[1]);
        const float *dyo = d->dy + o * c->cout;
        for (int co = 0; co < c->cout; co++)
            ys[co] = ym[co] = 0;
        for (size_t t = 0; t < ktaps; t++) {
            int a = src_index(o0, (int)(t / k[2] / k[1]), k[0], n[0]);
            int b = src_index(o1, (int)(t / k[2] % k[1]), k[1], n[1]);
            int e = src_index(o2, (int)(t % k[2]), k[2], n[2]);
            if (a < 0 || b < 0 || e < 0)
                continue;
            size_t i = ((size_t)a * n[1] + b) * n[2] + e;
            for (int ci = 0; ci < c->cin; ci++) {
                double xv = d->x[i * c->cin + ci];
                const float *wr = d->w + (t * c->cin + ci) * c->cout;
                double s = 0, m = 0;
                for (int co = 0; co < c->cout; co++) {
                    ys[co] += xv * wr[co];
                    ym[co] += fabs(xv * wr[co]);
                    s += (double)dyo[co] * wr[co];
                    m += fabs((double)dyo[co] * wr[co]);
                    sw[(t * c->cin + ci) * c->cout + co] += xv * dyo[co];
                    mw[(t * c->cin + ci) * c->cout + co] += fabs(xv * dyo[co]);
                }
                sx[i * c->cin + ci] += s;
                mx[i * c->cin + ci] += m;
            }
        }
        for (int co = 0; co < c->cout; co++) {
            double r = ys[co] + d->b[co];
            r = r > 0 ? r : alpha * r;
            err[0] = fmax(err[0], fabs(d->y[o * c->cout + co] - r) / (ym[co] + fabs(d->b[co]) + 1e-30));
        }
    }
    for (size_t i = 0; i < nv * c->cin; i++)
        err[1] = fmax(err[1], fabs(d->dx[i] - sx[i]) / (mx[i] + 1e-30));
    for (size_t i = 0; i < nw; i++)
        err[2] = fmax(err[2], fabs(d->dw[i] - sw[i]) / (mw[i] + 1e-30));
    for (int co = 0; co < c->cout; co++) {
        double s = 0, m = 0;
        for (size_t o = 0; o < nv; o++) {
            s += d->dy[o * c->cout + co];
            m += fabs(d->dy[o * c->cout + co]);
        }
        err[3] = fmax(err[3], fabs(d->db[co] - s) / (m + 1e-30));
    }
    free(sx), free(mx), free(sw), free(mw), free(ys), free(ym);
}

static void run_case(vxm_context *ctx, vxm_backend *be, const wcase *c)
{
    const vxm_backend_ops *o = be->ops;
    size_t nv = (size_t)c->shape[0] * c->shape[1] * c->shape[2];
    size_t nw = (size_t)c->k[0] * c->k[1] * c->k[2] * c->cin * c->cout;
    wdata d = {malloc(sizeof(float) * nv * c->cin), malloc(sizeof(float) * nw), malloc(sizeof(float) * c->cout),
               malloc(sizeof(float) * nv * c->cout), malloc(sizeof(float) * nv * c->cout),
               malloc(sizeof(float) * nv * c->cin), malloc(sizeof(float) * nw), malloc(sizeof(float) * c->cout)};
    unsigned long long s = 11;
    for (size_t i = 0; i < nv * c->cin; i++)
        d.x[i] = (float)urand(&s, -1, 1);
    for (size_t i = 0; i < nw; i++)
        d.w[i] = (float)urand(&s, -0.1, 0.1);
    for (int i = 0; i < c->cout; i++)
        d.b[i] = (float)urand(&s, -0.1, 0.1);
    for (size_t i = 0; i < nv * c->cout; i++)
        d.dy[i] = (float)urand(&s, -1, 1);
    vxm_conv_params p = {.leaky = 1, .alpha = 0.2f};
    for (int a = 0; a < 3; a++) {
        p.ksize[a] = c->k[a];
        p.stride[a] = 1;
        p.pad_lo[a] = (c->k[a] - 1) / 2;
    }
    vxm_tensor tx = {{0}, 0, NULL}, ty = tx, tdy = tx, tdx = tx;
    vxm_buffer *bw = NULL, *bb = NULL, *bdw = NULL, *bdb = NULL;
    vxm_status st;
    if ((st = vxm_tensor_alloc(be, c->shape, c->cin, &tx)) || (st = vxm_tensor_alloc(be, c->shape, c->cout, &ty)) ||
        (st = vxm_tensor_alloc(be, c->shape, c->cout, &tdy)) || (st = vxm_tensor_alloc(be, c->shape, c->cin, &tdx)) ||
        (st = o->buffer_alloc(be, nw, &bw)) || (st = o->buffer_alloc(be, (size_t)c->cout, &bb)) ||
        (st = o->buffer_alloc(be, nw, &bdw)) || (st = o->buffer_alloc(be, (size_t)c->cout, &bdb)) ||
        (st = vxm_tensor_upload(be, &tx, d.x)) || (st = vxm_tensor_upload(be, &tdy, d.dy)) ||
        (st = o->buffer_write(be, bw, d.w, nw)) || (st = o->buffer_write(be, bb, d.b, (size_t)c->cout)) ||
        (st = o->conv(be, &tx, bw, bb, &p, &ty)) || (st = o->conv_backward_data(be, &tdy, bw, &p, &tdx)) ||
        (st = o->conv_backward_filter(be, &tx, &tdy, &p, bdw)) || (st = o->conv_backward_bias(be, &tdy, bdb)) ||
        (st = vxm_tensor_download(be, &ty, d.y)) || (st = vxm_tensor_download(be, &tdx, d.dx)) ||
        (st = o->buffer_read(be, bdw, d.dw, nw)) || (st = o->buffer_read(be, bdb, d.db, (size_t)c->cout)))
        goto done;
    double e[4];
    errors(c, &d, p.alpha, e);
    char name[200];
    snprintf(name, sizeof name, "%s: conv + data / filter / bias gradients = float64, %s", c->name, be->spec);
    tu_report(e[0] < 1e-5 && e[1] < 1e-5 && e[2] < 1e-5 && e[3] < 1e-5, name,
              "relative errors conv %.3g, data %.3g, filter %.3g, bias %.3g", e[0], e[1], e[2], e[3]);
done:
    if (st)
        tu_report(0, c->name, "%s: %s", be->spec, vxm_context_error(ctx));
    vxm_tensor_release(be, &tx);
    vxm_tensor_release(be, &ty);
    vxm_tensor_release(be, &tdy);
    vxm_tensor_release(be, &tdx);
    vxm_buffer *bufs[4] = {bw, bb, bdw, bdb};
    for (int i = 0; i < 4; i++)
        if (bufs[i])
            o->buffer_free(be, bufs[i]);
    free(d.x), free(d.w), free(d.b), free(d.dy), free(d.y), free(d.dx), free(d.dw), free(d.db);
}

int main(void)
{
    static const wcase cases[] = {
        {"Dense 96 -> 20000", {1, 1, 1}, {1, 1, 1}, 96, 20000},
        {"Dense 20000 -> 40", {1, 1, 1}, {1, 1, 1}, 20000, 40},
        {"3x3x3 conv 96 -> 40 on 3x4x5", {3, 4, 5}, {3, 3, 3}, 96, 40},
        {"1x3x3 conv 1 -> 2 on 1x700x1000", {1, 700, 1000}, {1, 3, 3}, 1, 2},
    };
    vxm_context *ctx = vxm_context_create();
    tb_list l;
    tb_open_all(ctx, &l);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int b = 0; b < l.n; b++)
            run_case(ctx, l.be[b], &cases[i]);
    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
