/* Template creation (train_template.py; src/train/template.c, meanstream.c; training doc §4.1, §10).
 *  1. MeanStream (cap 100, batch 1, inputs 1, 3, -2): streaming semantics 0.01, 0.04, 0.02 and TF graph-mode
 *     semantics 0.01, 0.03, -0.02 (doc §10), through the graph nodes and the executor.
 *  2. MeanStream alone: its gradient equals the closed form and finite differences (meanstream_fd).
 *  3. The gradient of the total loss w.r.t. the atlas equals central finite differences along random +-1
 *     directions over all atlas voxels: NCC with w = 1 and Grad weight 100, graph-mode MeanStream (paths:
 *     transformer image input + U-Net input; each is shown to matter: leaving either out fails by far), and MSE
 *     with w = 0.5 and MeanStream weight 1e3 after two streaming steps (adds the y_target loss's target argument
 *     and the MeanStream path with alpha = 1/3, scale 0.03).  The flow head gets U(-0.05, 0.05) weights so that
 *     the U-Net input path matters.
 *  4. Every OpenCL device's atlas gradient agrees with the CPU backend's (relative L2 < 1e-3).
 *  5. Conditional templates (ConditionalTemplateCreation, doc §4.2; template_cond.c): the gradient of the total
 *     loss (NCC, MeanStream after two streaming steps, Grad, deformation MSE) w.r.t. the generator's weights --
 *     the ELU Dense, the reshape, the likelihood / extra / atlas_gen convs -- equals central differences along
 *     sign(gradient) x U(0.5, 1) directions; every OpenCL device's generator gradients agree with the CPU's; a checkpoint
 *     reloads (as a model to train, and for generation) and generates the identical template; zero atlas_gen
 *     weights generate the atlas input exactly; two attribute vectors give different templates. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_backends.h"
#include "test_util.h"
#include "train/template.h"
#include "train/template_cond.h"

static void meanstream_sequence(vxm_context *ctx, vxm_backend *be, vxm_meanstream_mode mode, const double *want,
                                const char *name)
{
    vxm_graph *g = vxm_graph_new(2);
    vxm_node in;
    memset(&in, 0, sizeof in);
    in.op = VXM_OP_INPUT;
    in.shape[0] = in.shape[1] = in.shape[2] = in.channels = 1;
    int x = vxm_graph_add(g, &in);
    vxm_meanstream ms;
    int out = vxm_meanstream_add(g, &ms, mode, 100, x, 2);
    int ok = out >= 0;
    if (ok)
        g->nodes[out].flags |= VXM_NODE_OUTPUT;
    double got[3] = {0, 0, 0};
    const float xs[3] = {1, 3, -2};
    for (int s = 0; s < 3 && ok; s++) {
        const float *inputs[3] = {&xs[s], NULL, ms.M};
        vxm_exec *ex = NULL;
        float v = 0;
        vxm_meanstream_prepare(&ms, g);
        ok = !vxm_exec_begin_with(be, g, NULL, inputs, 3, 1, 0, &ex) && !vxm_exec_run_all(ex) &&
             !vxm_exec_read(ex, out, &v) && !vxm_meanstream_commit(&ms, ex);
        vxm_exec_end(ex);
        got[s] = v;
    }
    double err = 0;
    for (int s = 0; s < 3; s++)
        err = fmax(err, fabs(got[s] - want[s]));
    tu_report(ok && err < 1e-6, name, "%s got %.7g %.7g %.7g", ok ? "" : vxm_context_error(ctx), got[0], got[1],
              got[2]);
    vxm_meanstream_free(&ms);
    vxm_graph_free(g);
}

/* MeanStream alone (x a trainable 8-vector -> MeanStream(cap 3) -> weight * MSE(0, out)): the executor's
 * gradient equals the closed form  weight * 2/8 * out * min(1, n'/cap) / min(n', cap)  (neurite's; doc §9 item 10)
 * and central differences, at n = 0, 1, 2 (alpha 1, 1/2, 1/3, scale 1/3, 2/3, 1) and n = 5 (capped), with
 * weight 1e3 (large weights were where the atlas check looked off). */
static void meanstream_fd(vxm_context *ctx, vxm_backend *be)
{
    enum { N = 8 };
    const double weight = 1e3;
    float x[N], zeros[N] = {0};
    long dims[1] = {N};
    vxm_graph *g = vxm_graph_new(2);
    int xn = vxm_graph_add_param(g, "x", "kernel", 1, dims, x);
    vxm_meanstream ms;
    int out = vxm_meanstream_add(g, &ms, VXM_MEANSTREAM_STREAMING, 3, xn, 2);
    int zn = out < 0 ? -1 : vxm_graph_add_input_like(g, out, 3, "zeros");
    int loss = zn < 0 ? -1 : vxm_graph_add_loss(g, VXM_OP_LOSS_MSE, "ms", zn, out, 1.0, weight);
    int ok = loss >= 0 && !vxm_graph_build_backward(ctx, g);
    if (ok) {
        vxm_meanstream_bind_backward(&ms, g);
        g->nodes[out].flags |= VXM_NODE_OUTPUT;
        ok = ms.take_back >= 0 && ms.out_back >= 0 && g->param_grad[0] >= 0;
    }
    unsigned long long seed = 11;
    double worst_closed = 0, worst_fd = 0;
    for (int step = 0; step < 6 && ok; step++) {
        for (int i = 0; i < N; i++)
            x[i] = (float)tu_urand(&seed, -1, 1);
        const float *in[4] = {NULL, NULL, ms.M, zeros};
        float grad[N], o[N], L = 0;
        vxm_exec *ex = NULL;
        vxm_meanstream_prepare(&ms, g);
        ok = !vxm_exec_begin_with(be, g, NULL, in, 4, 1, 0, &ex) && !vxm_exec_run_all(ex) &&
             !vxm_exec_read(ex, g->param_grad[0], grad) && !vxm_exec_read(ex, out, o);
        vxm_exec_end(ex);
        long n1 = ms.n + 1;
        double alpha = 1.0 / (double)(n1 < 3 ? n1 : 3), c = n1 < 3 ? n1 / 3.0 : 1.0;
        if (ok && step != 3 && step != 4) { /* steps 3, 4 only advance the stream */
            for (int i = 0; i < N && ok; i++) {
                double closed = weight * 2.0 / N * o[i] * c * alpha;
                worst_closed = fmax(worst_closed, fabs(grad[i] - closed) / fmax(fabs(closed), 1e-6));
                double h = 3e-2, lp = 0, lm = 0; /* the loss is quadratic in x: only rounding limits h */
                float keep = x[i];
                for (int sgn = 0; sgn < 2 && ok; sgn++) {
                    x[i] = (float)(keep + (sgn ? -h : h));
                    ok = !vxm_exec_begin_with(be, g, NULL, in, 4, 1, 0, &ex) && !vxm_exec_run_all(ex) &&
                         !vxm_exec_read(ex, loss, &L);
                    vxm_exec_end(ex);
                    *(sgn ? &lm : &lp) = weight * L;
                }
                x[i] = keep;
                double fd = (lp - lm) / ((double)(float)(keep + h) - (double)(float)(keep - h));
                worst_fd = fmax(worst_fd, fabs(grad[i] - fd) / fmax(fabs(fd), 1e-6));
            }
        }
        /* the run that advances the stream (gradients above came from runs that did not commit) */
        ok = ok && !vxm_exec_begin_with(be, g, NULL, in, 4, 1, 0, &ex) && !vxm_exec_run_all(ex) &&
             !vxm_meanstream_commit(&ms, ex);
        vxm_exec_end(ex);
    }
    tu_report(ok && worst_closed < 1e-5 && worst_fd < 1e-3, "template meanstream gradient fd",
              "%s relative error vs closed form %.3g, vs fd %.3g", ok ? "" : vxm_context_error(ctx), worst_closed,
              worst_fd);
    printf("  meanstream gradient: relative error vs closed form %.3g, vs fd %.3g\n", worst_closed, worst_fd);
    vxm_meanstream_free(&ms);
    vxm_graph_free(g);
}

enum { N0 = 1, N1 = 16, N2 = 16 };
static const int shape[3] = {N0, N1, N2};

static void make_scan(float *p, double shift)
{
    for (int j = 0; j < N1; j++)
        for (int k = 0; k < N2; k++) {
            double y = j - 7.5 - shift, x = k - 7 + 0.5 * shift;
            p[j * N2 + k] = (float)(0.2 + 0.02 * k + 0.6 * exp(-(x * x + y * y) / 14.0));
        }
}

static vxm_template_options small_options(vxm_image_loss loss, double w, double mean_w, vxm_meanstream_mode mode,
                                          const float *atlas)
{
    static const int enc[] = {4, 8}, dec[] = {8, 8, 4};
    vxm_template_options o;
    vxm_template_options_default(&o);
    memcpy(o.train.enc, enc, sizeof enc);
    o.train.n_enc = 2;
    memcpy(o.train.dec, dec, sizeof dec);
    o.train.n_dec = 3;
    o.train.int_steps = 3;
    o.train.image_loss = loss;
    o.train.seed = 7;
    o.image_weight = w;
    o.mean_weight = mean_w;
    o.meanstream = mode;
    o.atlas_init = atlas;
    return o;
}

static const float attrs0[2] = {0.4f, -0.8f}, attrs1[2] = {-1.1f, 0.6f};

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static vxm_template *make(vxm_context *ctx, vxm_backend *be, const vxm_template_options *o, const float *scan,
                          int warm_steps)
{
    vxm_template *t = NULL;
    if (vxm_template_create(ctx, be, o, 2, shape, &t))
        return NULL;
    if (o->npheno && vxm_template_set_attributes(t, attrs0)) {
        vxm_template_free(t);
        return NULL;
    }
    /* a flow head of real size (N(0,1e-5) at init would hide the U-Net input path from the test) */
    vxm_trainer *tr = vxm_template_trainer(t);
    for (int i = 0; i < vxm_trainer_num_weights(tr); i++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(tr, i, &wi);
        /* conditional: atlas_gen of real size too (N(0,1e-7) would hide the generator's other weights) */
        int gen = !strcmp(wi.layer, "atlas_gen");
        if (!(ends_with(wi.layer, "_flow") || gen) || strcmp(wi.kind, "kernel"))
            continue;
        float *k = malloc(wi.numel * sizeof(float));
        unsigned long long s = 5;
        for (size_t j = 0; j < wi.numel; j++)
            k[j] = (float)tu_urand(&s, gen ? -0.2 : -0.05, gen ? 0.2 : 0.05);
        vxm_trainer_write_weight(tr, i, k);
        free(k);
    }
    for (int s = 0; s < warm_steps; s++)
        if (vxm_template_step(t, scan, NULL)) {
            vxm_template_free(t);
            return NULL;
        }
    return t;
}

/* Worst relative error of the analytic atlas gradient against central differences along three random +-1
 * directions (-1 on failure); the worst pair goes to *an / *fd. */
static double fd_error(vxm_context *ctx, vxm_backend *be, const vxm_template_options *o, const float *scan, int warm,
                       double *an, double *fd, double *loss)
{
    vxm_template *t = make(ctx, be, o, scan, warm);
    if (!t)
        return -1;
    size_t n = vxm_template_atlas_numel(t);
    float *A = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float)), *Ap = malloc(n * sizeof(float)),
          *Am = malloc(n * sizeof(float));
    vxm_train_losses L, Lp, Lm;
    int ok = !vxm_template_read_atlas(t, A) && !vxm_template_evaluate(t, scan, &L, g);
    double worst = 0;
    for (int dir = 0; ok && dir < 3; dir++) {
        unsigned long long s = 31 + (unsigned long long)dir;
        double h = 1e-3, a = 0;
        for (size_t i = 0; i < n; i++) {
            double u = tu_urand(&s, 0, 1) < 0.5 ? -1.0 : 1.0;
            Ap[i] = (float)(A[i] + h * u);
            Am[i] = (float)(A[i] - h * u);
            a += (double)g[i] * ((double)Ap[i] - (double)Am[i]) * 0.5;
        }
        ok = !vxm_template_write_atlas(t, Ap) && !vxm_template_evaluate(t, scan, &Lp, NULL) &&
             !vxm_template_write_atlas(t, Am) && !vxm_template_evaluate(t, scan, &Lm, NULL) &&
             !vxm_template_write_atlas(t, A);
        double d = 0.5 * (Lp.total - Lm.total), err = fabs(d - a) / fmax(fabs(a), 1e-9);
        if (!(err <= worst)) {
            worst = err;
            *an = a;
            *fd = d;
        }
    }
    *loss = L.total;
    free(A);
    free(g);
    free(Ap);
    free(Am);
    vxm_template_free(t);
    return ok ? worst : -1;
}

/* The full atlas gradient matches finite differences (relative error <= tol), and with `paths` leaving out either
 * path (drop_path 1: U-Net input, 2: transformer image input) breaks the match (error >= 5 tol): both paths are
 * there and both matter in this configuration.  (Large loss weights make the loss kinked at the FD step -- leaky
 * ReLU, max-pooling and interpolation switches -- so FD needs a smaller h there: at Grad weight 1e4 the error falls
 * from 80 % at h = 1e-2 to 0.7 % at h = 3e-5; the MeanStream gradient itself is exact, meanstream_fd.) */
static void fd_check(vxm_context *ctx, vxm_backend *be, const char *name, const vxm_template_options *o,
                     const float *scan, int warm, double tol, int paths)
{
    double err[3] = {0, 0, 0}, an[3] = {0, 0, 0}, fd[3] = {0, 0, 0}, loss = 0;
    for (int drop = 0; drop < (paths ? 3 : 1); drop++) {
        vxm_template_options od = *o;
        od.drop_path = drop;
        err[drop] = fd_error(ctx, be, &od, scan, warm, &an[drop], &fd[drop], &loss);
        printf("  %s%s: loss %.6g, worst relative error %.3g (analytic %.6g, fd %.6g)\n", name,
               drop == 0 ? "" : drop == 1 ? " without the U-Net-input path" : " without the transformer path", loss,
               err[drop], an[drop], fd[drop]);
    }
    int ok = err[0] >= 0 && err[1] >= 0 && err[2] >= 0;
    tu_report(ok && err[0] <= tol && (!paths || (err[1] >= 5 * tol && err[2] >= 5 * tol)), name,
              "%s relative errors: full %.3g, without U-Net path %.3g, without transformer path %.3g (tol %g)",
              ok ? "" : vxm_context_error(ctx), err[0], err[1], err[2], tol);
}

/* The atlas gradient after `warm` steps on one backend (NULL on failure). */
static float *atlas_grad(vxm_context *ctx, vxm_backend *be, const vxm_template_options *o, const float *scan, int warm)
{
    vxm_template *t = make(ctx, be, o, scan, warm);
    float *g = t ? malloc(vxm_template_atlas_numel(t) * sizeof(float)) : NULL;
    if (t && vxm_template_evaluate(t, scan, NULL, g)) {
        free(g);
        g = NULL;
    }
    vxm_template_free(t);
    return g;
}

/* ---- conditional templates ------------------------------------------------------------------------------ */

static vxm_template_options cond_options(const float *atlas)
{
    vxm_template_options o = small_options(VXM_LOSS_NCC, 1.0, 1e3, VXM_MEANSTREAM_STREAMING, atlas);
    o.npheno = 2;
    o.deform_weight = 10; /* the deformation MSE term visible next to the others */
    o.grad_weight = 10;
    return o;
}

/* Worst relative error of the generator's weight gradients against central differences along a random +-1
 * direction per weight (dense kernel and bias, likelihood, an extra conv, atlas_gen kernel and bias). */
static void cond_fd(vxm_context *ctx, vxm_backend *be, const float *atlas, const float *scan)
{
    vxm_template_options o = cond_options(atlas);
    vxm_template *t = make(ctx, be, &o, scan, 2);
    vxm_trainer *tr = t ? vxm_template_trainer(t) : NULL;
    static const int which[] = {0, 1, 2, 6, 9, 10, 11}; /* Keras order, template_cond.h */
    vxm_train_losses L, Lp, Lm;
    int ok = t && !vxm_template_evaluate(t, scan, &L, NULL);
    double worst = 0;
    for (size_t q = 0; ok && q < sizeof which / sizeof which[0]; q++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(tr, which[q], &wi);
        float *w = malloc(wi.numel * sizeof(float)), *g = malloc(wi.numel * sizeof(float)),
              *wp = malloc(wi.numel * sizeof(float)), *wm = malloc(wi.numel * sizeof(float));
        ok = !vxm_template_evaluate(t, scan, &L, NULL) && !vxm_trainer_read_gradient(tr, which[q], g) &&
             !vxm_trainer_read_weight(tr, which[q], w);
        unsigned long long s = 77 + q;
        /* direction sign(g) x U(0.5, 1): no cancellation that would leave only float32 rounding in the loss
         * difference; small h: the loss has kinks (leaky ReLU, interpolation), FD error ~ h */
        double h = 3e-4, a = 0;
        for (size_t i = 0; ok && i < wi.numel; i++) {
            double u = (g[i] < 0 ? -1.0 : 1.0) * tu_urand(&s, 0.5, 1.0);
            wp[i] = (float)(w[i] + h * u);
            wm[i] = (float)(w[i] - h * u);
            a += (double)g[i] * ((double)wp[i] - (double)wm[i]) * 0.5;
        }
        ok = ok && !vxm_trainer_write_weight(tr, which[q], wp) && !vxm_template_evaluate(t, scan, &Lp, NULL) &&
             !vxm_trainer_write_weight(tr, which[q], wm) && !vxm_template_evaluate(t, scan, &Lm, NULL) &&
             !vxm_trainer_write_weight(tr, which[q], w);
        double d = 0.5 * (Lp.total - Lm.total), err = fabs(d - a) / fmax(fabs(a), 1e-9);
        printf("  conditional %s/%s: loss %.6g, analytic %.6g, fd %.6g, relative error %.3g\n", wi.layer, wi.kind,
               L.total, a, d, err);
        worst = fmax(worst, ok ? err : 1e9);
        free(w);
        free(g);
        free(wp);
        free(wm);
    }
    tu_report(ok && worst < 0.01, "template conditional generator fd cpu", "%s worst relative error %.3g",
              ok ? "" : vxm_context_error(ctx), worst);
    vxm_template_free(t);
}

/* All generator gradients (concatenated) after two steps on one backend (NULL on failure); *n receives their
 * count. */
static float *cond_grads(vxm_context *ctx, vxm_backend *be, const float *atlas, const float *scan, size_t *n)
{
    vxm_template_options o = cond_options(atlas);
    vxm_template *t = make(ctx, be, &o, scan, 2);
    vxm_trainer *tr = t ? vxm_template_trainer(t) : NULL;
    float *all = NULL;
    *n = 0;
    int ok = t && !vxm_template_evaluate(t, scan, NULL, NULL);
    for (int k = 0; ok && k < 12; k++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(tr, k, &wi);
        float *grown = realloc(all, (*n + wi.numel) * sizeof(float));
        ok = grown && !vxm_trainer_read_gradient(tr, k, grown + *n);
        all = grown ? grown : all;
        *n += wi.numel;
    }
    vxm_template_free(t);
    if (!ok) {
        free(all);
        return NULL;
    }
    return all;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

/* Generation: in-memory vs a reloaded checkpoint (vxm_cond_template_load, and as --resume model), zero atlas_gen
 * gives the atlas input, two attribute vectors differ. */
static void cond_generate(vxm_context *ctx, vxm_backend *be, const float *atlas, const float *scan)
{
    enum { N = N1 * N2 };
    const char *path = "tests/out/test_template_cond.h5";
    vxm_template_options o = cond_options(atlas);
    vxm_template *t = make(ctx, be, &o, scan, 3), *t2 = NULL;
    vxm_cond_template *m = NULL;
    static float a0[N], a1[N], f0[N], r0[N], z0[N];
    int ok = t && !vxm_template_generate(t, attrs0, a0) && !vxm_template_generate(t, attrs1, a1) &&
             !vxm_template_save(t, path, 3) && !vxm_cond_template_load(ctx, path, &m) &&
             !vxm_cond_template_generate(be, m, attrs0, atlas, f0);
    vxm_template_options o2 = o;
    o2.train.resume = path;
    ok = ok && !vxm_template_create(ctx, be, &o2, 2, shape, &t2) && !vxm_template_generate(t2, attrs0, r0);
    double d_file = ok ? max_diff(a0, f0, N) : -1, d_resume = ok ? max_diff(a0, r0, N) : -1;
    double d_attr = ok ? max_diff(a0, a1, N) : -1, d_atlas = ok ? max_diff(a0, atlas, N) : -1;
    int finite = ok;
    for (int i = 0; i < N; i++)
        finite &= isfinite(a0[i]) && isfinite(a1[i]);
    tu_report(ok && finite && d_file == 0 && d_resume == 0 && d_attr > 1e-4 && d_atlas > 1e-4,
              "template conditional generate and reload", "%s reload diff %g, resume diff %g, attributes diff %g, "
              "vs atlas input %g", ok ? "" : vxm_context_error(ctx), d_file, d_resume, d_attr, d_atlas);
    printf("  conditional generation: |T(a0) - T(a1)| max %.4g, |T(a0) - atlas input| max %.4g\n", d_attr, d_atlas);
    /* zero atlas_gen weights: the generator adds nothing */
    vxm_trainer *tr = t2 ? vxm_template_trainer(t2) : NULL;
    float zero[4 * 9] = {0};
    ok = ok && !vxm_trainer_write_weight(tr, 10, zero) && !vxm_trainer_write_weight(tr, 11, zero) &&
         !vxm_template_generate(t2, attrs1, z0);
    tu_report(ok && max_diff(z0, atlas, N) == 0, "template conditional zero atlas_gen gives the atlas input",
              "%s max diff %g", ok ? "" : vxm_context_error(ctx), ok ? max_diff(z0, atlas, N) : -1.0);
    vxm_template_free(t);
    vxm_template_free(t2);
    vxm_cond_template_free(m);
}

static void cond_tests(vxm_context *ctx, const tb_list *bl, const float *atlas, const float *scan)
{
    cond_fd(ctx, bl->be[0], atlas, scan);
    cond_generate(ctx, bl->be[0], atlas, scan);
    size_t n = 0, ni = 0;
    float *ref = cond_grads(ctx, bl->be[0], atlas, scan, &n);
    for (int i = 1; i < bl->n; i++) {
        char name[160];
        snprintf(name, sizeof name, "template conditional generator gradients %s vs cpu", bl->be[i]->spec);
        float *gi = ref ? cond_grads(ctx, bl->be[i], atlas, scan, &ni) : NULL;
        double d2 = 0, r2 = 0;
        for (size_t k = 0; gi && ni == n && k < n; k++) {
            d2 += ((double)gi[k] - ref[k]) * ((double)gi[k] - ref[k]);
            r2 += (double)ref[k] * ref[k];
        }
        double rel = sqrt(d2 / fmax(r2, 1e-30));
        tu_report(gi && ni == n && rel < 1e-3, name, "%s relative L2 %.3g", gi ? "" : vxm_context_error(ctx), rel);
        printf("  %s: relative L2 %.3g over %zu values\n", name, rel, n);
        free(gi);
    }
    free(ref);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    tb_list bl;
    tb_open_all(ctx, &bl);
    static const double streaming[3] = {0.01, 0.04, 0.02}, graph[3] = {0.01, 0.03, -0.02};
    meanstream_sequence(ctx, bl.be[0], VXM_MEANSTREAM_STREAMING, streaming, "template meanstream streaming");
    meanstream_sequence(ctx, bl.be[0], VXM_MEANSTREAM_GRAPH, graph, "template meanstream graph mode");

    meanstream_fd(ctx, bl.be[0]);

    float atlas[N1 * N2], scan[N1 * N2];
    make_scan(atlas, 0.0);
    make_scan(scan, 1.2);
    vxm_template_options a = small_options(VXM_LOSS_NCC, 1.0, 1.0, VXM_MEANSTREAM_GRAPH, atlas);
    vxm_template_options b = small_options(VXM_LOSS_MSE, 0.5, 1e3, VXM_MEANSTREAM_STREAMING, atlas);
    a.grad_weight = 100; /* the U-Net-input path carries ~20 % of the gradient */
    fd_check(ctx, bl.be[0], "template atlas fd ncc w=1 cpu", &a, scan, 0, 0.02, 1);
    fd_check(ctx, bl.be[0], "template atlas fd mse w=0.5 meanstream cpu", &b, scan, 2, 0.05, 0);

    float *ref = atlas_grad(ctx, bl.be[0], &b, scan, 2);
    for (int i = 1; i < bl.n; i++) {
        char name[160];
        snprintf(name, sizeof name, "template atlas gradient %s vs cpu", bl.be[i]->spec);
        float *gi = ref ? atlas_grad(ctx, bl.be[i], &b, scan, 2) : NULL;
        double d2 = 0, r2 = 0;
        for (size_t k = 0; gi && k < (size_t)N1 * N2; k++) {
            d2 += ((double)gi[k] - ref[k]) * ((double)gi[k] - ref[k]);
            r2 += (double)ref[k] * ref[k];
        }
        double rel = sqrt(d2 / fmax(r2, 1e-30));
        tu_report(gi && rel < 1e-3, name, "%s relative L2 %.3g", gi ? "" : vxm_context_error(ctx), rel);
        printf("  %s: relative L2 %.3g\n", name, rel);
        free(gi);
    }
    free(ref);
    cond_tests(ctx, &bl, atlas, scan);
    tb_close_all(&bl);
    vxm_context_free(ctx);
    return tu_exit_code();
}
