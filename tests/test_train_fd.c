/* End-to-end checks of the training engine on tiny VxmDense models (fast; no shared data needed): train.py's loss
 * and the workflows of issue 8 (bidirectional, probabilistic with KL, semi-supervised with Dice), 2-D and 3-D.
 *  1. The gradient the backward graph computes equals finite differences of the total loss: per weight tensor, the
 *     directional derivative along a random +-1 direction, (L(w + h u) - L(w - h u)) / 2 vs <g, h u>, with
 *     h = 3e-3 x (the tensor's weight scale).  Summing over the whole tensor lifts the change of L far above the
 *     float32 rounding of the loss (single-weight differences are not).  The error is relative to the larger of
 *     |<g, h u>| and 3 % of sum |g_i h| (+ 1e-6 |L|, the loss's rounding): a random direction can make the terms
 *     cancel, and then the comparison is against the size of the terms.  Tolerance 15 %: within +-h some units
 *     cross kinks (LeakyReLU, max-pool switches, interpolation cells, where TF's rule is one-sided) and central
 *     differences average them (worst over 10 direction seeds, VXM_FD_SEED: 11 %); a missing or wrong gradient
 *     path is far larger (dropping VecInt's location path or routing both concat halves to the first channels
 *     fails 10-12 of these checks).
 *  2. CPU gradients are bitwise identical for 1 and 2 threads; every OpenCL device agrees with the CPU backend.
 *  3. A batch of two is the mean of the two samples (Keras' composition).
 * The flow head is re-initialised (see make()) so that gradients reach the encoder (at Keras' N(0, 1e-5) they are
 * 1e-5 smaller and drown in rounding) and locations avoid the kinks of the interpolation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_backends.h"
#include "test_util.h"
#include "train/train.h"

static unsigned long long rs = 12345;
static double urand(void)
{
    return tu_urand(&rs, 0.0, 1.0);
}

/* Smooth random images in [0,1] (sums of a few sinusoids) so that the warp has something to align. */
static void make_image(float *p, const int shape[3], double phase)
{
    for (int i = 0; i < shape[0]; i++)
        for (int j = 0; j < shape[1]; j++)
            for (int k = 0; k < shape[2]; k++)
                p[((size_t)i * shape[1] + j) * shape[2] + k] =
                    (float)(0.5 + 0.25 * sin(0.7 * j + phase) * cos(0.5 * k - phase) + 0.2 * sin(0.9 * i + 0.3 * k));
}

typedef struct tcase {
    const char *name;
    int shape[3];
    int ndim, int_steps;
    vxm_image_loss loss;
    int bidir, use_probs, semi;
    int channels; /* image channels (src_feats = trg_feats); 0 means 1 */
    int synth;    /* SynthMorph: Dice of full-resolution one-hot maps + Grad of the final warp, half-res field */
} tcase;

/* Semi-supervised cases: label maps from the images' intensity bands (labels 1, 2; 0 elsewhere). */
static const int semi_labels[2] = {1, 2};

static vxm_trainer *make(vxm_context *ctx, vxm_backend *be, const tcase *c)
{
    vxm_train_options o;
    vxm_train_options_default(&o);
    int enc[2] = {4, 6}, dec[3] = {6, 4, 4};
    memcpy(o.enc, enc, sizeof enc);
    o.n_enc = 2;
    memcpy(o.dec, dec, sizeof dec);
    o.n_dec = 3;
    o.int_steps = c->int_steps;
    o.image_loss = c->loss;
    o.lambda = 0.5;
    o.seed = 7;
    o.bidir = c->bidir;
    o.use_probs = c->use_probs;
    o.kl_lambda = 10;
    if (c->semi) {
        o.labels = semi_labels;
        o.nlabels = 2;
        o.dice_weight = 0.5;
    }
    if (c->synth) {
        o.synthmorph = 1;
        o.nlabels = 3;
        o.reg_param = 0.5;
    }
    vxm_trainer *t = NULL;
    int ch = c->channels > 0 ? c->channels : 1;
    if (vxm_trainer_create(ctx, be, &o, c->ndim, c->shape, ch, ch, &t)) {
        printf("FAIL train fd %s create on %s: %s\n", c->name, be->spec, vxm_context_error(ctx));
        tu_failed_count++;
        return NULL;
    }
    /* flow head (see the top comment): kernel U(-0.03, 0.03) so that gradients reach the encoder, bias 0.5 voxel (0.25 on the
     * half-resolution segmentation grid; the kernel is 3x smaller for the label maps, whose interpolation kinks at
     * every cell face as their values jump) so that sampling locations stay away from grid points, where the interpolation has a kink (TF's one-sided rule,
     * training doc §2.7) that central differences cannot see */
    for (int k = 0; k < vxm_trainer_num_weights(t); k++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, k, &wi);
        size_t len = strlen(wi.layer);
        int logsig = len > 10 && !strcmp(wi.layer + len - 10, "_log_sigma");
        if (logsig) { /* a log-variance of -4 (std 0.14 voxel) so that the sampling noise matters */
            float *w = malloc(wi.numel * sizeof(float));
            unsigned long long ls = 77;
            for (size_t i = 0; i < wi.numel; i++)
                w[i] = strcmp(wi.kind, "kernel") ? -4.0f : (float)tu_urand(&ls, -0.01, 0.01);
            vxm_trainer_write_weight(t, k, w);
            free(w);
        }
        if (len > 5 && !strcmp(wi.layer + len - 5, "_flow")) {
            int kernel = !strcmp(wi.kind, "kernel");
            float *w = malloc(wi.numel * sizeof(float));
            unsigned long long save = rs;
            rs = 99;
            for (size_t i = 0; i < wi.numel; i++)
                w[i] = kernel ? (float)((c->semi || c->synth ? 0.01 : 0.03) * (urand() * 2 - 1)) : 0.5f;
            rs = save;
            vxm_trainer_write_weight(t, k, w);
            free(w);
        }
    }
    return t;
}

static int g_synth; /* the current case is a SynthMorph one: one-hot maps of 3 labels */

/* A sample with label maps made from the images (used by the semi-supervised cases, ignored otherwise). */
static vxm_train_sample sample_of(const float *mv, const float *fx, size_t n, float *seg_buf)
{
    if (g_synth) { /* one-hot bands, 3 channels each, in a 6n buffer */
        for (size_t i = 0; i < n; i++)
            for (int k = 0; k < 3; k++) {
                int lm = mv[i] > 0.7f ? 2 : mv[i] > 0.5f, lf = fx[i] > 0.7f ? 2 : fx[i] > 0.5f;
                seg_buf[i * 3 + k] = lm == k;
                seg_buf[3 * n + i * 3 + k] = lf == k;
            }
        vxm_train_sample s = {.moving = mv, .fixed = fx, .moving_seg = seg_buf, .fixed_seg = seg_buf + 3 * n};
        return s;
    }
    for (size_t i = 0; i < n; i++) {
        seg_buf[i] = mv[i] > 0.7f ? 2.0f : mv[i] > 0.5f ? 1.0f : 0.0f;
        seg_buf[n + i] = fx[i] > 0.7f ? 2.0f : fx[i] > 0.5f ? 1.0f : 0.0f;
    }
    vxm_train_sample s = {.moving = mv, .fixed = fx, .moving_seg = seg_buf, .fixed_seg = seg_buf + n};
    return s;
}

static size_t g_nvox; /* voxels of the current case (for the label maps) */

static int grads_of(vxm_trainer *t, const float *mv, const float *fx, vxm_train_losses *L)
{
    float *seg = malloc(6 * g_nvox * sizeof(float));
    vxm_train_sample s = sample_of(mv, fx, g_nvox, seg);
    int st = vxm_trainer_compute_gradients_samples(t, &s, 1, L);
    free(seg);
    return st;
}

static double total_loss(vxm_trainer *t, const float *mv, const float *fx)
{
    vxm_train_losses L;
    if (grads_of(t, mv, fx, &L))
        return NAN;
    return L.total;
}

static void fd_check(vxm_context *ctx, vxm_backend *be, const tcase *c, const float *mv, const float *fx)
{
    /* the directions depend on the case only (not on which devices ran before), so every device and machine
     * checks the same ones; VXM_FD_SEED varies them when exploring */
    const char *env = getenv("VXM_FD_SEED");
    rs = env ? strtoull(env, NULL, 10) : 12345;
    for (const char *p = c->name; *p; p++)
        rs = rs * 131 + (unsigned char)*p;
    vxm_trainer *t = make(ctx, be, c);
    if (!t)
        return;
    vxm_train_losses L;
    char name[200];
    snprintf(name, sizeof name, "train fd %s %s", c->name, be->spec);
    if (grads_of(t, mv, fx, &L)) {
        tu_report(0, name, "%s", vxm_context_error(ctx));
        vxm_trainer_free(t);
        return;
    }
    int nw = vxm_trainer_num_weights(t), checked = 0, bad = 0;
    double worst = 0;
    char where[160] = "";
    float **grads = calloc((size_t)nw, sizeof *grads);
    for (int k = 0; k < nw; k++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, k, &wi);
        grads[k] = malloc(wi.numel * sizeof(float));
        vxm_trainer_read_gradient(t, k, grads[k]);
    }
    for (int k = 0; k < nw; k++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, k, &wi);
        float *w = malloc(wi.numel * sizeof(float));
        vxm_trainer_read_weight(t, k, w);
        double gmax = 0, wscale = 0;
        for (size_t i = 0; i < wi.numel; i++) {
            gmax = fmax(gmax, fabs(grads[k][i]));
            wscale = fmax(wscale, fabs(w[i]));
        }
        /* directional derivative along a random +-1 direction over the whole tensor: the change of the loss is
         * summed over every weight, far above the float32 rounding of the loss (single-weight differences are not) */
        double h = 3e-3 * (wscale > 0.05 ? wscale : 0.05);
        float *wp = malloc(wi.numel * sizeof(float)), *wm = malloc(wi.numel * sizeof(float));
        double an = 0, dot_scale = 0;
        for (size_t i = 0; i < wi.numel; i++) {
            double u = urand() < 0.5 ? -1.0 : 1.0;
            wp[i] = (float)(w[i] + h * u);
            wm[i] = (float)(w[i] - h * u);
            /* the exact float32 steps taken */
            an += (double)grads[k][i] * ((double)wp[i] - (double)wm[i]) * 0.5;
            dot_scale += fabs((double)grads[k][i]) * fabs((double)wp[i] - (double)wm[i]) * 0.5;
        }
        vxm_trainer_write_weight(t, k, wp);
        double lp = total_loss(t, mv, fx);
        vxm_trainer_write_weight(t, k, wm);
        double lm = total_loss(t, mv, fx);
        vxm_trainer_write_weight(t, k, w);
        double fd = 0.5 * (lp - lm);
        /* the float32 pipeline evaluates L to ~1e-6 relative: differences below that are noise */
        double err = fabs(fd - an) / fmax(fabs(an), 3e-2 * dot_scale + 1e-6 * fabs(L.total) + 1e-15);
        (void)gmax;
        checked++;
        if (!(err <= worst)) {
            worst = err;
            snprintf(where, sizeof where, "%s/%s: analytic %.6g, fd %.6g", wi.layer, wi.kind, an, fd);
        }
        if (!(err <= 0.15))
            bad++;
        free(wp);
        free(wm);
        free(w);
    }
    tu_report(!bad && checked > 0, name, "%d of %d sampled weights off; worst relative error %.3g at %s", bad, checked,
              worst, where);
    printf("  %s: %d weights checked, worst relative error %.3g (%s)\n", name, checked, worst, where);
    for (int k = 0; k < nw; k++)
        free(grads[k]);
    free(grads);
    vxm_trainer_free(t);
}

/* Gradients of the same model and data, downloaded. */
static float **grads_on(vxm_context *ctx, vxm_backend *be, const tcase *c, const float *mv, const float *fx, int *nw)
{
    vxm_trainer *t = make(ctx, be, c);
    if (!t)
        return NULL;
    vxm_train_losses L;
    float **g = NULL;
    if (!grads_of(t, mv, fx, &L)) {
        *nw = vxm_trainer_num_weights(t);
        g = calloc((size_t)*nw, sizeof *g);
        for (int k = 0; k < *nw; k++) {
            vxm_weight_info wi;
            vxm_trainer_weight_info(t, k, &wi);
            g[k] = malloc(wi.numel * sizeof(float) + sizeof(size_t));
            vxm_trainer_read_gradient(t, k, g[k]);
        }
    } else {
        printf("FAIL train gradients %s on %s: %s\n", c->name, be->spec, vxm_context_error(ctx));
        tu_failed_count++;
    }
    vxm_trainer_free(t);
    return g;
}

static void free_grads(float **g, int n)
{
    for (int k = 0; g && k < n; k++)
        free(g[k]);
    free(g);
}

/* Keras' batch composition (training doc §2.6): the loss of a batch is the mean of the per-sample losses, so its
 * gradient is the mean of the per-sample gradients (float32 accumulation: 1e-6 relative). */
static void batch_mean(vxm_context *ctx, vxm_backend *be, const tcase *c, const float *a, const float *b)
{
    vxm_trainer *t = make(ctx, be, c);
    if (!t)
        return;
    int nw = vxm_trainer_num_weights(t), ok = 1;
    vxm_train_losses L1, L2, LB;
    const float *m1[1] = {a}, *f1[1] = {b}, *m2[1] = {b}, *f2[1] = {a}, *mb[2] = {a, b}, *fb[2] = {b, a};
    float **g1 = calloc((size_t)nw, sizeof *g1), **g2 = calloc((size_t)nw, sizeof *g2);
    double worst = 0;
    ok = !vxm_trainer_compute_gradients(t, m1, f1, 1, &L1);
    for (int k = 0; ok && k < nw; k++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, k, &wi);
        g1[k] = malloc(wi.numel * sizeof(float));
        g2[k] = malloc(wi.numel * sizeof(float));
        ok = !vxm_trainer_read_gradient(t, k, g1[k]);
    }
    ok = ok && !vxm_trainer_compute_gradients(t, m2, f2, 1, &L2);
    for (int k = 0; ok && k < nw; k++)
        ok = !vxm_trainer_read_gradient(t, k, g2[k]);
    ok = ok && !vxm_trainer_compute_gradients(t, mb, fb, 2, &LB);
    for (int k = 0; ok && k < nw; k++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, k, &wi);
        float *gb = malloc(wi.numel * sizeof(float));
        ok = !vxm_trainer_read_gradient(t, k, gb);
        double num = 0, den = 0;
        for (size_t i = 0; ok && i < wi.numel; i++) {
            double want = 0.5 * ((double)g1[k][i] + g2[k][i]), d = gb[i] - want;
            num += d * d;
            den += want * want;
        }
        double e = den > 0 ? sqrt(num / den) : sqrt(num);
        worst = e > worst ? e : worst;
        free(gb);
    }
    double lerr = ok ? fabs(LB.total - 0.5 * (L1.total + L2.total)) / fabs(LB.total) : 1;
    char name[160];
    snprintf(name, sizeof name, "train %s %s batch of 2 = mean of the samples (loss and gradients)", c->name,
             be->spec);
    tu_report(ok && worst <= 1e-6 && lerr <= 1e-6, name, "%s gradient rel L2 %.3g, loss rel %.3g",
              ok ? "" : vxm_context_error(ctx), worst, lerr);
    for (int k = 0; k < nw; k++) {
        free(g1[k]);
        free(g2[k]);
    }
    free(g1);
    free(g2);
    vxm_trainer_free(t);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    tb_list l;
    tb_open_all(ctx, &l);
    static const tcase cases[] = {
        {"2d_mse_int2", {1, 12, 16}, 2, 2, VXM_LOSS_MSE, 0, 0, 0, 1, 0},
        {"2d_ncc_int0", {1, 12, 16}, 2, 0, VXM_LOSS_NCC, 0, 0, 0, 1, 0},
        {"3d_mse_int1", {8, 8, 12}, 3, 1, VXM_LOSS_MSE, 0, 0, 0, 1, 0},
        {"2d_mse_bidir", {1, 12, 16}, 2, 2, VXM_LOSS_MSE, 1, 0, 0, 1, 0},
        {"2d_ncc_probs_kl", {1, 12, 16}, 2, 2, VXM_LOSS_NCC, 0, 1, 0, 1, 0},
        {"2d_mse_semi_dice", {1, 12, 16}, 2, 2, VXM_LOSS_MSE, 0, 0, 1, 1, 0},
        {"2d_ncc_2channels", {1, 12, 16}, 2, 2, VXM_LOSS_NCC, 0, 0, 0, 2, 0},
        {"2d_synthmorph_dice", {1, 12, 16}, 2, 2, VXM_LOSS_MSE, 0, 0, 0, 1, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const tcase *tc = &cases[c];
        size_t n = (size_t)tc->shape[0] * tc->shape[1] * tc->shape[2];
        size_t ch = tc->channels > 0 ? (size_t)tc->channels : 1;
        g_nvox = n;
        g_synth = tc->synth;
        float *mv = malloc(n * ch * sizeof(float)), *fx = malloc(n * ch * sizeof(float));
        make_image(mv, tc->shape, 0.0);
        make_image(fx, tc->shape, 0.6);
        for (size_t i = n; i-- > 0;) /* multichannel: channel c is the image with its contrast inverted c times */
            for (size_t c = ch; c-- > 0;) {
                mv[i * ch + c] = c % 2 ? 1.0f - mv[i] : mv[i];
                fx[i * ch + c] = c % 2 ? 1.0f - fx[i] : fx[i];
            }
        for (int b = 0; b < l.n; b++)
            fd_check(ctx, l.be[b], tc, mv, fx);
        if (!tc->semi && !tc->use_probs && !tc->synth)
            batch_mean(ctx, l.be[0], tc, mv, fx);
        /* determinism over thread counts, then agreement of every device with the CPU backend */
        int nw = 0, nw2 = 0;
        vxm_context_set_threads(ctx, 1);
        float **g1 = grads_on(ctx, l.be[0], tc, mv, fx, &nw);
        vxm_context_set_threads(ctx, 2);
        float **g2 = grads_on(ctx, l.be[0], tc, mv, fx, &nw2);
        vxm_context_set_threads(ctx, 0);
        if (g1 && g2) {
            vxm_trainer *t = make(ctx, l.be[0], tc);
            int same = nw == nw2;
            for (int k = 0; same && k < nw; k++) {
                vxm_weight_info wi;
                vxm_trainer_weight_info(t, k, &wi);
                same = !memcmp(g1[k], g2[k], wi.numel * sizeof(float));
            }
            char nm[128];
            snprintf(nm, sizeof nm, "train %s cpu gradients bitwise identical for 1 and 2 threads", tc->name);
            tu_report(same, nm, "gradients differ between thread counts");
            for (int b = 1; b < l.n; b++) {
                int nwb = 0;
                float **gb = grads_on(ctx, l.be[b], tc, mv, fx, &nwb);
                double worst = 0;
                for (int k = 0; gb && k < nw; k++) {
                    vxm_weight_info wi;
                    vxm_trainer_weight_info(t, k, &wi);
                    double num = 0, den = 0;
                    for (size_t i = 0; i < wi.numel; i++) {
                        double d = (double)gb[k][i] - g1[k][i];
                        num += d * d;
                        den += (double)g1[k][i] * g1[k][i];
                    }
                    double e = den > 0 ? sqrt(num / den) : sqrt(num);
                    if (!(e <= worst))
                        worst = e;
                }
                snprintf(nm, sizeof nm, "train %s gradients %s vs cpu", tc->name, l.be[b]->spec);
                /* float32 sums in different orders: ~1e-6 relative; 1e-4 leaves margin (a wrong rule is >= 1e-2) */
                tu_report(gb && worst <= 1e-4, nm, "worst per-tensor relative L2 %.3g (tolerance 1e-4)", worst);
                free_grads(gb, nwb);
            }
            vxm_trainer_free(t);
        }
        free_grads(g1, nw);
        free_grads(g2, nw2);
        free(mv);
        free(fx);
    }
    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
