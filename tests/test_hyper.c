/* HyperMorph (training doc §5, §3.1): the hypernetwork's Dense layers and the hyper-convolutions as graph nodes
 * (graph/hyper.h), the HyperVxmDense trainer and its files.
 *  1. A small hyper-conv network (lambda -> 2 ReLU Dense -> HyperConv2D 2->3 + LeakyReLU -> MSE) on every backend:
 *     the loss equals a float64 reference and the backward graph's gradient of every weight tensor equals the
 *     float64 central difference of the reference along a random +-1 direction (so the kernel layout of the
 *     reshape, the ReLU rule and the two hyper paths are all checked), at two lambdas (0: the first Dense layer
 *     sees a zero input).
 *  2. Dense layers of 128 -> 55296 units (the hyper kernel of a 3-D conv 64 -> 32): conv, its data and filter
 *     gradients on every backend against float64.
 *  3. The 2-D HyperMorph trainer: finite differences of the whole loss (as test_train_fd) w.r.t. hypernetwork and
 *     hyper-conv weights; lambda = 0 / 1 leave only the image / Grad term; a batch of two drawn lambdas is the mean
 *     of the two samples at their lambdas; OpenCL gradients agree with the CPU's.
 *  4. The lambda draws: 20 % end points, else uniform; a pure function of (seed, step, sample).
 *  5. Round trip: the saved model reloads as a HyperVxmDense whose registration (vxm_register with hyper) equals
 *     the trainer's prediction; the config JSON parses back to the same config; --hyper misuse is refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "graph/hyper.h"
#include "model/model.h"
#include "test_backends.h"
#include "test_train_util.h"
#include "test_util.h"
#include "train/train.h"

/* ---- 1. the hyper-conv network against float64 ------------------------------------------------------------ */

enum { H = 6, W = 7, CIN = 2, COUT = 3, U = 5, NK = 9 * CIN * COUT, NP = 8 };
static const int psize[NP] = {U, U, U * U, U, U * NK, NK, U * COUT, COUT}; /* d1 k/b, d2 k/b, hk k/b, hb k/b */

typedef struct hnet {
    double p[NP][U * NK];
    double x[H * W * CIN], t[H * W * COUT];
} hnet;

/* The reference forward pass in double: loss = mean((t - leaky(conv(x, K) + B))^2). */
static double ref_loss(const hnet *n, double lam)
{
    double h[U], h2[U], K[NK], B[COUT];
    for (int u = 0; u < U; u++)
        h[u] = fmax(0.0, lam * n->p[0][u] + n->p[1][u]);
    for (int v = 0; v < U; v++) {
        double s = n->p[3][v];
        for (int u = 0; u < U; u++)
            s += h[u] * n->p[2][u * U + v];
        h2[v] = fmax(0.0, s);
    }
    for (int j = 0; j < NK; j++) {
        double s = n->p[5][j];
        for (int u = 0; u < U; u++)
            s += h2[u] * n->p[4][u * NK + j];
        K[j] = s;
    }
    for (int c = 0; c < COUT; c++) {
        double s = n->p[7][c];
        for (int u = 0; u < U; u++)
            s += h2[u] * n->p[6][u * COUT + c];
        B[c] = s;
    }
    double loss = 0;
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++)
            for (int co = 0; co < COUT; co++) {
                double y = B[co];
                for (int di = 0; di < 3; di++)
                    for (int dj = 0; dj < 3; dj++) {
                        int ii = i + di - 1, jj = j + dj - 1;
                        if (ii < 0 || ii >= H || jj < 0 || jj >= W)
                            continue;
                        for (int ci = 0; ci < CIN; ci++)
                            y += n->x[(ii * W + jj) * CIN + ci] * K[((di * 3 + dj) * CIN + ci) * COUT + co];
                    }
                y = y > 0 ? y : 0.2 * y;
                double d = n->t[(i * W + j) * COUT + co] - y;
                loss += d * d;
            }
    return loss / (H * W * COUT);
}

static vxm_graph *hnet_graph(const float *pf[NP])
{
    vxm_graph *g = vxm_graph_new(2);
    vxm_node in;
    memset(&in, 0, sizeof in);
    in.op = VXM_OP_INPUT;
    int shp[3] = {1, H, W}, one[3] = {1, 1, 1}, k33[3] = {1, 3, 3};
    memcpy(in.shape, shp, sizeof shp);
    in.channels = CIN;
    int x = vxm_graph_add(g, &in);
    in.channels = COUT;
    in.p.input.index = 1;
    int t = vxm_graph_add(g, &in);
    memcpy(in.shape, one, sizeof one);
    in.channels = 1;
    in.p.input.index = 4;
    int lam = g->in_hyper = vxm_graph_add(g, &in);
    int h1 = vxm_graph_add_dense(g, lam, "d1", U, 1, pf[0], pf[1]);
    int h2 = vxm_graph_add_dense(g, h1, "d2", U, 1, pf[2], pf[3]);
    const float *w[4] = {pf[4], pf[5], pf[6], pf[7]};
    int y = vxm_graph_add_hyperconv(g, x, h2, "hc", k33, COUT, 1, 0.2f, w);
    vxm_graph_add_loss(g, VXM_OP_LOSS_MSE, "mse", t, y, 1.0, 1.0);
    return g;
}

static void hyperconv_check(vxm_context *ctx, vxm_backend *be)
{
    static hnet n;
    unsigned long long s = 4242;
    float *pf[NP];
    for (int k = 0; k < NP; k++) {
        pf[k] = malloc(sizeof(float) * (size_t)psize[k]);
        for (int i = 0; i < psize[k]; i++) { /* stored as float: the reference uses the same values */
            pf[k][i] = (float)tu_urand(&s, -0.6, 0.6);
            n.p[k][i] = pf[k][i];
        }
    }
    float xf[H * W * CIN], tf[H * W * COUT];
    for (int i = 0; i < H * W * CIN; i++)
        n.x[i] = xf[i] = (float)tu_urand(&s, 0, 1);
    for (int i = 0; i < H * W * COUT; i++)
        n.t[i] = tf[i] = (float)tu_urand(&s, -0.5, 0.5);
    const double lams[2] = {0.0, 0.7};
    for (int li = 0; li < 2; li++) {
        char name[160];
        snprintf(name, sizeof name, "hyper-conv network gradients = float64 differences, lambda %.1f, %s", lams[li],
                 be->spec);
        vxm_graph *g = hnet_graph((const float **)pf);
        vxm_exec *ex = NULL;
        float lam = (float)lams[li], loss = 0;
        const float *in[5] = {xf, tf, NULL, NULL, &lam};
        int lossnode = g->n - 1;
        vxm_status st = vxm_graph_build_backward(ctx, g);
        if (!st)
            st = vxm_exec_begin_with(be, g, NULL, in, 5, 1, 0, &ex);
        if (!st)
            st = vxm_exec_run_all(ex);
        if (!st)
            st = vxm_exec_read(ex, lossnode, &loss);
        double lref = ref_loss(&n, lam), worst = 0, lerr = st ? 1 : fabs(loss - lref) / lref;
        int bad = 0;
        char where[128] = "";
        for (int k = 0; k < NP && !st; k++) {
            float g32[U * NK];
            if (g->param_grad[k] < 0 || (st = vxm_exec_read(ex, g->param_grad[k], g32)))
                break;
            /* directional derivative along +-1 in float64 (step 1e-5: the reference is smooth around here) */
            double an = 0, sz = 0, eps = 1e-5, save[U * NK];
            memcpy(save, n.p[k], sizeof save);
            unsigned long long ds = 99 + (unsigned long long)k;
            for (int i = 0; i < psize[k]; i++) {
                double u = tu_urand(&ds, 0, 1) < 0.5 ? -1 : 1;
                an += g32[i] * u;
                sz += fabs(g32[i]);
                n.p[k][i] = save[i] + eps * u;
            }
            double lp = ref_loss(&n, lam);
            ds = 99 + (unsigned long long)k;
            for (int i = 0; i < psize[k]; i++)
                n.p[k][i] = save[i] - eps * (tu_urand(&ds, 0, 1) < 0.5 ? -1 : 1);
            double lm = ref_loss(&n, lam), fd = (lp - lm) / (2 * eps);
            memcpy(n.p[k], save, sizeof save);
            double e = fabs(fd - an) / fmax(fabs(an), 1e-3 * sz + 1e-12);
            if (!(e <= worst)) {
                worst = e;
                snprintf(where, sizeof where, "%s: analytic %.7g, fd %.7g", g->params[k].kind, an, fd);
            }
            bad += !(e <= 1e-3);
        }
        tu_report(!st && !bad && lerr < 1e-5, name,
                  "%s loss %.7g vs %.7g (rel %.2g), worst gradient rel error %.3g (%s)",
                  st ? vxm_context_error(ctx) : "", loss, lref, lerr, worst, where);
        vxm_exec_end(ex);
        vxm_graph_free(g);
    }
    for (int k = 0; k < NP; k++)
        free(pf[k]);
}

/* ---- 2. Dense layers with very many units ---------------------------------------------------------------- */

static void wide_dense_check(vxm_context *ctx, vxm_backend *be)
{
    enum { IN = 128, OUT = 27 * 64 * 32 };
    const vxm_backend_ops *o = be->ops;
    float *w = malloc(sizeof(float) * IN * OUT), *b = malloc(sizeof(float) * OUT), x[IN];
    float *dy = malloc(sizeof(float) * OUT);
    float *y = malloc(sizeof(float) * OUT), *dw = malloc(sizeof(float) * IN * OUT), dx[IN];
    unsigned long long s = 5;
    for (size_t i = 0; i < (size_t)IN * OUT; i++)
        w[i] = (float)tu_urand(&s, -0.1, 0.1);
    for (int i = 0; i < OUT; i++) {
        b[i] = (float)tu_urand(&s, -0.1, 0.1);
        dy[i] = (float)tu_urand(&s, -1, 1);
    }
    for (int i = 0; i < IN; i++)
        x[i] = (float)tu_urand(&s, 0, 1);
    int one[3] = {1, 1, 1};
    vxm_conv_params p;
    memset(&p, 0, sizeof p);
    p.ksize[0] = p.ksize[1] = p.ksize[2] = p.stride[0] = p.stride[1] = p.stride[2] = 1;
    vxm_tensor tx = {{0}, 0, NULL}, ty = tx, tdy = tx, tdx = tx;
    vxm_buffer *bw = NULL, *bb = NULL, *bdw = NULL;
    double t1 = 0;
    vxm_status st;
    if ((st = vxm_tensor_alloc(be, one, IN, &tx)) || (st = vxm_tensor_alloc(be, one, OUT, &ty)) ||
        (st = vxm_tensor_alloc(be, one, OUT, &tdy)) || (st = vxm_tensor_alloc(be, one, IN, &tdx)) ||
        (st = o->buffer_alloc(be, (size_t)IN * OUT, &bw)) || (st = o->buffer_alloc(be, OUT, &bb)) ||
        (st = o->buffer_alloc(be, (size_t)IN * OUT, &bdw)) || (st = vxm_tensor_upload(be, &tx, x)) ||
        (st = vxm_tensor_upload(be, &tdy, dy)) || (st = o->buffer_write(be, bw, w, (size_t)IN * OUT)) ||
        (st = o->buffer_write(be, bb, b, OUT)))
        goto done;
    struct timespec a, c;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if ((st = o->conv(be, &tx, bw, bb, &p, &ty)) || (st = o->conv_backward_data(be, &tdy, bw, &p, &tdx)) ||
        (st = o->conv_backward_filter(be, &tx, &tdy, &p, bdw)) || (st = o->finish(be)))
        goto done;
    clock_gettime(CLOCK_MONOTONIC, &c);
    t1 = (double)(c.tv_sec - a.tv_sec) + 1e-9 * (double)(c.tv_nsec - a.tv_nsec);
    if ((st = vxm_tensor_download(be, &ty, y)) || (st = vxm_tensor_download(be, &tdx, dx)) ||
        (st = o->buffer_read(be, bdw, dw, (size_t)IN * OUT)))
        goto done;
    double ey = 0, ex = 0, ew = 0;
    for (int j = 0; j < OUT; j++) {
        double r = b[j];
        for (int u = 0; u < IN; u++)
            r += (double)x[u] * w[(size_t)u * OUT + j];
        ey = fmax(ey, fabs(y[j] - r) / (1 + fabs(r)));
    }
    for (int u = 0; u < IN; u++) {
        double r = 0, m = 0;
        for (int j = 0; j < OUT; j++) {
            r += (double)dy[j] * w[(size_t)u * OUT + j];
            m += fabs((double)dy[j] * w[(size_t)u * OUT + j]);
        }
        ex = fmax(ex, fabs(dx[u] - r) / m);
        for (int j = 0; j < OUT; j++)
            ew = fmax(ew, fabs(dw[(size_t)u * OUT + j] - (double)x[u] * dy[j]));
    }
    char name[160];
    snprintf(name, sizeof name, "Dense 128 -> %d units (conv, data and filter gradients) = float64, %s", OUT,
             be->spec);
    tu_report(ey < 1e-5 && ex < 1e-5 && ew < 1e-6, name, "errors %.3g %.3g %.3g", ey, ex, ew);
    printf("  %s: %.1f ms for the three ops\n", be->spec, 1e3 * t1);
done:
    if (st)
        tu_report(0, "Dense 128 -> wide", "%s: %s", be->spec, vxm_context_error(ctx));
    vxm_tensor_release(be, &tx);
    vxm_tensor_release(be, &ty);
    vxm_tensor_release(be, &tdy);
    vxm_tensor_release(be, &tdx);
    if (bw)
        o->buffer_free(be, bw);
    if (bb)
        o->buffer_free(be, bb);
    if (bdw)
        o->buffer_free(be, bdw);
    free(w);
    free(b);
    free(dy);
    free(y);
    free(dw);
}

/* ---- 3. the trainer -------------------------------------------------------------------------------------- */

static const int tshape[3] = {1, 16, 16};
#define TN (16 * 16)

static void make_image(float *p, double phase)
{
    for (int j = 0; j < 16; j++)
        for (int k = 0; k < 16; k++)
            p[j * 16 + k] = (float)(0.5 + 0.25 * sin(0.7 * j + phase) * cos(0.5 * k - phase));
}

static vxm_trainer *make_trainer(vxm_context *ctx, vxm_backend *be)
{
    vxm_train_options o;
    vxm_train_options_default(&o);
    o.hypermorph = 1;
    o.seed = 7;
    o.int_steps = 2;
    o.image_sigma = 0.05;
    static const int arch[5] = {4, 6, 6, 4, 4}; /* encoder 4 6, decoder 6 4 4 */
    memcpy(o.enc, arch, 2 * sizeof(int));
    memcpy(o.dec, arch + 2, 3 * sizeof(int));
    o.n_enc = 2;
    o.n_dec = 3;
    vxm_trainer *t = NULL;
    if (vxm_trainer_create(ctx, be, &o, 2, tshape, 1, 1, &t)) {
        tu_report(0, "hypermorph trainer", "create on %s: %s", be->spec, vxm_context_error(ctx));
        return NULL;
    }
    /* the flow head as in test_train_fd: gradients reach the encoder, locations avoid the interpolation kinks;
     * hypernetwork biases 0.05..0.15 instead of 0, so that few ReLU units sit at their kink (with zero biases every
     * pre-activation is proportional to lambda and many are near 0) */
    for (int k = 0; k < vxm_trainer_num_weights(t); k++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, k, &wi);
        size_t len = strlen(wi.layer);
        if (strstr(wi.layer, "_hyp_dense_") && !strcmp(wi.kind, "bias")) {
            float *w = malloc(wi.numel * sizeof(float));
            unsigned long long s = 31 + (unsigned long long)k;
            for (size_t i = 0; i < wi.numel; i++)
                w[i] = (float)tu_urand(&s, 0.05, 0.15);
            vxm_trainer_write_weight(t, k, w);
            free(w);
        }
        if (len > 5 && !strcmp(wi.layer + len - 5, "_flow")) {
            float *w = malloc(wi.numel * sizeof(float));
            unsigned long long s = 99;
            for (size_t i = 0; i < wi.numel; i++)
                w[i] = strcmp(wi.kind, "kernel") ? 0.5f : (float)tu_urand(&s, -0.03, 0.03);
            vxm_trainer_write_weight(t, k, w);
            free(w);
        }
    }
    return t;
}

static int weight_index(const vxm_trainer *t, const char *layer_suffix, const char *kind)
{
    for (int k = 0; k < vxm_trainer_num_weights(t); k++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, k, &wi);
        size_t a = strlen(wi.layer), b = strlen(layer_suffix);
        if (a >= b && !strcmp(wi.layer + a - b, layer_suffix) && !strcmp(wi.kind, kind))
            return k;
    }
    return -1;
}

static double loss_at(vxm_trainer *t, const float *mv, const float *fx, vxm_train_losses *L)
{
    const float *m[1] = {mv}, *f[1] = {fx};
    vxm_train_losses l;
    if (vxm_trainer_compute_gradients(t, m, f, 1, L ? L : &l))
        return NAN;
    return L ? L->total : l.total;
}

/* The whole HyperMorph loss at lambda 0.3 w.r.t. a few hyper weights (test_train_fd's measure). */
static void trainer_fd(vxm_context *ctx, vxm_backend *be, const float *mv, const float *fx)
{
    static const char *const sel[][2] = {{"_hyp_dense_1", "kernel"},
                                         {"_hyp_dense_6", "bias"},
                                         {"_unet_enc_conv_0_0", "hyperkernel_kernel"},
                                         {"_unet_dec_conv_0_0", "hyperkernel_bias"},
                                         {"_unet_dec_final_conv_0", "hyperbias_kernel"},
                                         {"_unet_enc_conv_1_0", "hyperbias_bias"},
                                         {"_flow", "kernel"}};
    vxm_trainer *t = make_trainer(ctx, be);
    if (!t)
        return;
    vxm_trainer_set_hyper(t, 0.3);
    vxm_train_losses L;
    double l0 = loss_at(t, mv, fx, &L);
    int bad = 0, n = (int)(sizeof sel / sizeof sel[0]);
    double worst = 0;
    char where[200] = "";
    unsigned long long rs = 555;
    for (int s = 0; s < n && isfinite(l0); s++) {
        int k = weight_index(t, sel[s][0], sel[s][1]);
        if (k < 0) {
            bad++;
            snprintf(where, sizeof where, "no weight %s/%s", sel[s][0], sel[s][1]);
            continue;
        }
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, k, &wi);
        float *g = malloc(wi.numel * sizeof(float)), *w = malloc(wi.numel * sizeof(float));
        float *wp = malloc(wi.numel * sizeof(float)), *wm = malloc(wi.numel * sizeof(float));
        loss_at(t, mv, fx, NULL);
        vxm_trainer_read_gradient(t, k, g);
        vxm_trainer_read_weight(t, k, w);
        double wscale = 0, an = 0, dot = 0;
        for (size_t i = 0; i < wi.numel; i++)
            wscale = fmax(wscale, fabs(w[i]));
        double h = 3e-3 * (wscale > 0.05 ? wscale : 0.05);
        for (size_t i = 0; i < wi.numel; i++) {
            double u = tu_urand(&rs, 0, 1) < 0.5 ? -1.0 : 1.0;
            wp[i] = (float)(w[i] + h * u);
            wm[i] = (float)(w[i] - h * u);
            an += (double)g[i] * ((double)wp[i] - wm[i]) * 0.5;
            dot += fabs((double)g[i]) * fabs((double)wp[i] - wm[i]) * 0.5;
        }
        vxm_trainer_write_weight(t, k, wp);
        double lp = loss_at(t, mv, fx, NULL);
        vxm_trainer_write_weight(t, k, wm);
        double lm = loss_at(t, mv, fx, NULL);
        vxm_trainer_write_weight(t, k, w);
        double fd = 0.5 * (lp - lm), e = fabs(fd - an) / fmax(fabs(an), 3e-2 * dot + 1e-6 * fabs(l0) + 1e-15);
        if (!(e <= worst)) {
            worst = e;
            snprintf(where, sizeof where, "%s/%s: analytic %.6g, fd %.6g", wi.layer, wi.kind, an, fd);
        }
        bad += !(e <= 0.15);
        if (getenv("VXM_VERBOSE"))
            printf("    %s/%s: analytic %.6g fd %.6g rel %.3g\n", wi.layer, wi.kind, an, fd, e);
        free(g);
        free(w);
        free(wp);
        free(wm);
    }
    char name[160];
    snprintf(name, sizeof name, "hypermorph trainer: loss differences = gradients of hyper weights, %s", be->spec);
    tu_report(isfinite(l0) && !bad, name, "%d of %d off, worst %.3g at %s", bad, n, worst, where);
    printf("  %s: worst relative error %.3g (%s)\n", name, worst, where);
    vxm_trainer_free(t);
}

/* Gradients of every weight after one computation; caller frees. */
static float **all_grads(vxm_trainer *t, int *nw)
{
    *nw = vxm_trainer_num_weights(t);
    float **g = calloc((size_t)*nw, sizeof *g);
    for (int k = 0; k < *nw; k++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, k, &wi);
        g[k] = malloc(wi.numel * sizeof(float));
        vxm_trainer_read_gradient(t, k, g[k]);
    }
    return g;
}

static void free_grads(float **g, int n)
{
    for (int k = 0; g && k < n; k++)
        free(g[k]);
    free(g);
}

/* Largest relative L2 difference of a against b over the weight tensors. */
static double grads_diff(const vxm_trainer *t, float **a, float **b)
{
    double worst = 0;
    for (int k = 0; k < vxm_trainer_num_weights(t); k++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, k, &wi);
        worst = fmax(worst, rel_l2(a[k], b[k], wi.numel));
    }
    return worst;
}

/* lambda 0 / 1 keep one term; a batch of two drawn lambdas is the mean of the samples at their lambdas. */
static void trainer_weighting(vxm_context *ctx, vxm_backend *be, const float *mv, const float *fx)
{
    vxm_trainer *t = make_trainer(ctx, be);
    if (!t)
        return;
    vxm_train_losses L0, L1, La, Lb, LB;
    vxm_trainer_set_hyper(t, 0.0);
    loss_at(t, mv, fx, &L0);
    vxm_trainer_set_hyper(t, 1.0);
    loss_at(t, mv, fx, &L1);
    tu_report(L0.n == 2 && L0.value[1] == 0 && L0.value[0] > 0 && L1.value[0] == 0 && L1.value[1] > 0,
              "hypermorph: lambda 0 keeps the image term only, lambda 1 the Grad term only",
              "terms %g %g / %g %g", L0.value[0], L0.value[1], L1.value[0], L1.value[1]);
    /* the first update draws (seed 7, step 0, samples 0 and 1) */
    double la = vxm_hypermorph_draw(7, 0, 0), lb = vxm_hypermorph_draw(7, 0, 1);
    int nw;
    vxm_trainer_set_hyper(t, la);
    loss_at(t, mv, fx, &La);
    float **ga = all_grads(t, &nw);
    vxm_trainer_set_hyper(t, lb);
    loss_at(t, fx, mv, &Lb);
    float **gb = all_grads(t, &nw);
    vxm_trainer_set_hyper(t, -1);
    const float *m2[2] = {mv, fx}, *f2[2] = {fx, mv};
    int st = vxm_trainer_compute_gradients(t, m2, f2, 2, &LB);
    float **gB = all_grads(t, &nw);
    for (int k = 0; k < nw; k++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, k, &wi);
        for (size_t i = 0; i < wi.numel; i++)
            ga[k][i] = 0.5f * (ga[k][i] + gb[k][i]);
    }
    double e = grads_diff(t, gB, ga), le = fabs(LB.total - 0.5 * (La.total + Lb.total)) / fabs(LB.total);
    tu_report(!st && e < 1e-5 && le < 1e-6, "hypermorph: a batch of two drawn lambdas = mean of the samples",
              "lambdas %.4f %.4f: gradient rel L2 %.3g, loss rel %.3g", la, lb, e, le);
    free_grads(ga, nw);
    free_grads(gb, nw);
    free_grads(gB, nw);
    vxm_trainer_free(t);
}

static void draws_check(void)
{
    long ends = 0, zeros = 0, n = 20000;
    double sum = 0;
    int same = 1;
    for (long i = 0; i < n; i++) {
        double l = vxm_hypermorph_draw(3, i / 4, (int)(i % 4));
        same &= l == vxm_hypermorph_draw(3, i / 4, (int)(i % 4));
        if (l == 0 || l == 1) {
            ends++;
            zeros += l == 0;
        } else {
            sum += l;
            same &= l > 0 && l < 1;
        }
    }
    double fe = (double)ends / n, mean = sum / (double)(n - ends);
    tu_report(same && fabs(fe - 0.2) < 0.015 && fabs((double)zeros / ends - 0.5) < 0.05 && fabs(mean - 0.5) < 0.01,
              "hypermorph lambda draws: 20 % end points 0/1, else uniform; reproducible",
              "end points %.4f (zeros %ld of %ld), interior mean %.4f", fe, zeros, ends, mean);
}

/* ---- 5. files -------------------------------------------------------------------------------------------- */

static void round_trip(vxm_context *ctx, vxm_backend *be, const float *mv, const float *fx)
{
    vxm_trainer *t = make_trainer(ctx, be);
    if (!t)
        return;
    char path[] = "/tmp/vxm_test_hyper_XXXXXX.h5";
    int fd = mkstemps(path, 3);
    if (fd >= 0)
        close(fd);
    const float *m[1] = {mv}, *f[1] = {fx};
    float pw[TN * 2];
    vxm_trainer_set_hyper(t, 0.3);
    vxm_model *model = NULL;
    vxm_volume *vm = vxm_volume_new(2, tshape, 1), *vf = vxm_volume_new(2, tshape, 1), *moved = NULL, *warp = NULL;
    memcpy(vm->data, mv, sizeof(float) * TN);
    memcpy(vf->data, fx, sizeof(float) * TN);
    int ok = fd >= 0 && !vxm_trainer_step(t, m, f, 1, NULL) && !vxm_trainer_predict(t, mv, fx, NULL, pw) &&
             !vxm_trainer_save(t, path) && !vxm_model_load(ctx, path, &model);
    double diff = 1;
    if (ok) {
        vxm_register_options ro = {1, 0, NULL, NULL};
        ok = vxm_model_hyper_params(model) == 1 && vxm_register(ctx, be, model, vm, vf, &ro, &moved, &warp) != VXM_OK &&
             !vxm_model_set_hyper(ctx, model, 0.3) && !vxm_register(ctx, be, model, vm, vf, &ro, &moved, &warp);
        if (ok)
            diff = tu_max_abs_diff(warp->data, pw, TN * 2);
    }
    tu_report(ok && diff < 1e-5,
              "hypermorph: saved model reloads, needs a lambda; its registration at lambda 0.3 = the trainer's",
              "%s max warp difference %.3g", ok ? "" : vxm_context_error(ctx), diff);
    if (model) {
        vxm_volume_free(moved);
        vxm_volume_free(warp);
        moved = warp = NULL;
        int e1 = vxm_model_set_hyper(ctx, model, 1.5) != VXM_OK && vxm_model_set_hyper(ctx, model, -0.1) != VXM_OK;
        tu_report(e1, "hypermorph: lambda outside [0, 1] is refused", "accepted");
        /* the config JSON parses back to the same config */
        char *js = vxm_dense_config_to_json(&model->dense);
        vxm_dense_config c2;
        int same = js && !vxm_dense_config_parse(ctx, path, js, &c2) && c2.hyper == 1 &&
                   c2.nb_hyp_params == 1 && c2.nb_hyp_layers == 6 && c2.nb_hyp_units == 128 &&
                   !strcmp(c2.name, "hyper_vxm_dense") && c2.svf_resolution == 2 && c2.int_steps == 2 &&
                   strstr(js, "\"class_name\":\"HyperVxmDense\"") && !strstr(js, "hyp_model");
        tu_report(same, "hypermorph: HyperVxmDense config JSON round trip", "%s", js ? js : "(null)");
        free(js);
    }
    vxm_volume_free(moved);
    vxm_volume_free(warp);
    vxm_volume_free(vm);
    vxm_volume_free(vf);
    vxm_model_free(model);
    vxm_trainer_free(t);
    unlink(path);
}

int main(void)
{
    float mv[TN], fx[TN];
    make_image(mv, 0.0);
    make_image(fx, 0.6);
    vxm_context *ctx = vxm_context_create();
    tb_list l;
    tb_open_all(ctx, &l);
    for (int i = 0; i < l.n; i++) {
        hyperconv_check(ctx, l.be[i]);
        wide_dense_check(ctx, l.be[i]);
    }
    draws_check();
    if (l.n > 0) {
        trainer_fd(ctx, l.be[0], mv, fx);
        trainer_weighting(ctx, l.be[0], mv, fx);
        round_trip(ctx, l.be[0], mv, fx);
        /* every OpenCL device: the trainer's gradients agree with the CPU backend's */
        vxm_trainer *tc = make_trainer(ctx, l.be[0]);
        int nw = 0;
        float **gc = NULL;
        if (tc) {
            vxm_trainer_set_hyper(tc, 0.4);
            loss_at(tc, mv, fx, NULL);
            gc = all_grads(tc, &nw);
        }
        for (int i = 1; i < l.n && tc; i++) {
            vxm_trainer *t = make_trainer(ctx, l.be[i]);
            if (!t)
                continue;
            vxm_trainer_set_hyper(t, 0.4);
            int n2;
            double lo = loss_at(t, mv, fx, NULL);
            float **g = all_grads(t, &n2);
            double e = grads_diff(tc, g, gc);
            char name[160];
            snprintf(name, sizeof name, "hypermorph trainer gradients %s = cpu", l.be[i]->spec);
            tu_report(isfinite(lo) && e < 1e-3, name, "worst relative L2 difference %.3g", e);
            free_grads(g, n2);
            vxm_trainer_free(t);
        }
        free_grads(gc, nw);
        vxm_trainer_free(tc);
    }
    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
