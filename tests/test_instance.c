/* Instance-specific optimisation (train_instance.py; src/train/instance.c).
 *  1. The gradient w.r.t. the field P equals finite differences of the total loss, as a directional derivative
 *     along a random +-1 direction over the whole of P (tests/test_train_fd.c explains why not per element):
 *     MSE and NCC, 2-D and 3-D, on the CPU backend and every OpenCL device.  The initial SVF is smooth plus 0.3
 *     voxel noise, so sampling locations sit off the grid; h moves the SVF by 0.01 voxel.  Tolerance 5 % (worst
 *     measured 0.9 %, 2-D NCC): the only
 *     non-smooth points are interpolation cell faces crossed within +-h (a wrong or missing path -- e.g. VecInt's
 *     location path -- is off by far more).
 *  2. Every OpenCL device agrees with the CPU backend after 5 Adam steps (see the tolerance there).
 *  3. With the shared crop pair (64^3) and the published model's SVF as the start, 30 refinement steps on the CPU
 *     backend lower the image loss and raise the mean Dice of the warped segmentation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_backends.h"
#include "test_util.h"
#include "train/instance.h"

/* Two blobs on a gentle ramp, the pair differing by a shift of about a voxel (`shift`): something to align that
 * keeps every gradient path busy. */
static void make_image(float *p, const int shape[3], double shift)
{
    for (int i = 0; i < shape[0]; i++)
        for (int j = 0; j < shape[1]; j++)
            for (int k = 0; k < shape[2]; k++) {
                double y = j - 0.4 * shape[1] - shift, x = k - 0.45 * shape[2] + 0.5 * shift, z = i - 0.5 * shape[0];
                double b1 = exp(-(x * x + y * y + z * z) / 12.0), b2 = exp(-((x - 4) * (x - 4) + (y - 3) * (y - 3)) / 6.0);
                p[((size_t)i * shape[1] + j) * shape[2] + k] = (float)(0.2 + 0.02 * k + 0.5 * b1 + 0.3 * b2);
            }
}

typedef struct icase {
    const char *name;
    int ndim, shape[3];
    vxm_image_loss loss;
    int int_steps;
} icase;

static const icase cases[] = {
    {"2d_mse", 2, {1, 12, 16}, VXM_LOSS_MSE, 7},
    {"2d_ncc", 2, {1, 13, 16}, VXM_LOSS_NCC, 7}, /* odd size: floor(13/2) = 6, resized to 13 */
    {"3d_mse", 3, {8, 8, 10}, VXM_LOSS_MSE, 4},
    {"3d_ncc_int0", 3, {8, 8, 10}, VXM_LOSS_NCC, 0},
};

/* A smooth SVF in voxels (about 0.8 voxel) plus 0.3 voxel noise, so locations are off the grid. */
static float *make_svf(const icase *c, size_t *numel)
{
    int f[3];
    vxm_instance_field_shape(c->ndim, c->shape, 2, f);
    size_t n = (size_t)f[0] * f[1] * f[2] * (size_t)c->ndim;
    float *v = malloc(n * sizeof(float));
    unsigned long long s = 4242;
    for (size_t i = 0; i < n; i++) {
        size_t vox = i / (size_t)c->ndim;
        v[i] = (float)(0.8 * sin(0.9 * (double)vox + (double)(i % (size_t)c->ndim)) + tu_urand(&s, -0.3, 0.3));
    }
    *numel = n;
    return v;
}

static vxm_instance_options case_options(const icase *c, const float *svf)
{
    vxm_instance_options o;
    vxm_instance_options_default(&o);
    o.image_loss = c->loss;
    o.int_steps = c->int_steps;
    o.lambda = 0.1;
    o.init_field = svf;
    return o;
}

static void fd_check(vxm_context *ctx, vxm_backend *be, const icase *c, const float *mv, const float *fx)
{
    size_t n;
    float *svf = make_svf(c, &n);
    vxm_instance_options o = case_options(c, svf);
    vxm_instance *t = NULL;
    char name[160];
    snprintf(name, sizeof name, "instance fd %s %s", c->name, be->spec);
    if (vxm_instance_create(ctx, be, &o, c->ndim, c->shape, 1, mv, fx, &t)) {
        tu_report(0, name, "%s", vxm_context_error(ctx));
        free(svf);
        return;
    }
    float *P = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float)), *Pp = malloc(n * sizeof(float)),
          *Pm = malloc(n * sizeof(float));
    vxm_instance_losses L, Lp, Lm;
    int ok = !vxm_instance_read_field(t, P) && !vxm_instance_evaluate(t, &L, g, NULL, NULL);
    double worst = 0, an = 0, fd = 0;
    for (int dir = 0; ok && dir < 3; dir++) {
        unsigned long long s = 99 + (unsigned long long)dir;
        double h = 1e-5; /* P = SVF / 1000: 0.01 voxel */
        double a = 0, scale = 0;
        for (size_t i = 0; i < n; i++) {
            double u = tu_urand(&s, 0, 1) < 0.5 ? -1.0 : 1.0;
            Pp[i] = (float)(P[i] + h * u);
            Pm[i] = (float)(P[i] - h * u);
            a += (double)g[i] * ((double)Pp[i] - (double)Pm[i]) * 0.5; /* the float32 steps actually taken */
            scale += fabs((double)g[i]) * fabs((double)Pp[i] - (double)Pm[i]) * 0.5;
        }
        ok = !vxm_instance_write_field(t, Pp) && !vxm_instance_evaluate(t, &Lp, NULL, NULL, NULL) &&
             !vxm_instance_write_field(t, Pm) && !vxm_instance_evaluate(t, &Lm, NULL, NULL, NULL) &&
             !vxm_instance_write_field(t, P);
        double d = 0.5 * (Lp.total - Lm.total);
        double err = fabs(d - a) / fmax(fabs(a), 3e-2 * scale + 1e-6 * fabs(L.total) + 1e-15);
        if (!(err <= worst)) {
            worst = err;
            an = a;
            fd = d;
        }
    }
    tu_report(ok && worst <= 0.05, name, "%s worst relative error %.3g (analytic %.6g, fd %.6g)",
              ok ? "" : vxm_context_error(ctx), worst, an, fd);
    printf("  %s: loss %.6g, worst relative error %.3g (analytic %.6g, fd %.6g)\n", name, L.total, worst, an, fd);
    free(P);
    free(g);
    free(Pp);
    free(Pm);
    free(svf);
    vxm_instance_free(t);
}

/* The field after 5 Adam steps on one backend (NULL on failure). */
static float *field_after(vxm_context *ctx, vxm_backend *be, const icase *c, const float *mv, const float *fx,
                          float **P0)
{
    size_t n;
    float *svf = make_svf(c, &n);
    vxm_instance_options o = case_options(c, svf);
    vxm_instance *t = NULL;
    float *P = malloc(n * sizeof(float));
    *P0 = malloc(n * sizeof(float));
    vxm_status st = vxm_instance_create(ctx, be, &o, c->ndim, c->shape, 1, mv, fx, &t);
    if (!st)
        st = vxm_instance_read_field(t, *P0);
    for (int s = 0; s < 5 && !st; s++)
        st = vxm_instance_step(t, NULL);
    if (!st)
        st = vxm_instance_read_field(t, P);
    if (st) {
        printf("FAIL instance 5 steps %s on %s: %s\n", c->name, be->spec, vxm_context_error(ctx));
        tu_failed_count++;
        free(P);
        P = NULL;
    }
    vxm_instance_free(t);
    free(svf);
    return P;
}

static void agreement(vxm_context *ctx, const tb_list *l, const icase *c, const float *mv, const float *fx)
{
    float *ref0 = NULL, *ref = field_after(ctx, l->be[0], c, mv, fx, &ref0);
    size_t n;
    free(make_svf(c, &n));
    for (int b = 1; ref && b < l->n; b++) {
        float *p0 = NULL, *p = field_after(ctx, l->be[b], c, mv, fx, &p0);
        /* Compare the updates P5 - P0 (relative L2).  Adam normalises each element's step, so an element whose
         * gradient is at rounding level could move by a full step on one device and not the other; the smooth images
         * leave no such elements here, and float32 gradients agree to ~1e-6, so 1e-3 has a wide margin, while a
         * wrong gradient rule changes the update at 1e-1. */
        double num = 0, den = 0;
        for (size_t i = 0; p && i < n; i++) {
            double d = ((double)p[i] - p0[i]) - ((double)ref[i] - ref0[i]);
            num += d * d;
            den += ((double)ref[i] - ref0[i]) * ((double)ref[i] - ref0[i]);
        }
        double e = den > 0 ? sqrt(num / den) : 1;
        char name[160];
        snprintf(name, sizeof name, "instance %s field after 5 steps %s vs cpu", c->name, l->be[b]->spec);
        tu_report(p && e <= 1e-3, name, "relative L2 of the update %.3g (tolerance 1e-3)", e);
        printf("  %s: relative L2 difference of the update %.3g\n", name, e);
        free(p);
        free(p0);
    }
    free(ref);
    free(ref0);
}

/* Refinement from the published model's SVF on the shared crop pair. */
static void refine_crop(vxm_context *ctx, vxm_backend *be)
{
    const char *name = "instance refine crop pair from vxm_dense_brain_T1_3D_mse (30 steps, cpu)";
    char p[512];
    const char *files[5] = {"data/pairs/paircrop_moving.nii.gz", "data/pairs/paircrop_fixed.nii.gz",
                            "data/pairs/paircrop_moving_seg.nii.gz", "data/pairs/paircrop_fixed_seg.nii.gz",
                            "data/models/vxm_dense_brain_T1_3D_mse.h5"};
    vxm_volume *v[4] = {NULL, NULL, NULL, NULL};
    vxm_model *m = NULL;
    for (int i = 0; i < 4; i++)
        if (vxm_volume_read(ctx, tu_shared_path(p, sizeof p, files[i]), NULL, &v[i])) {
            tu_skip(name, "shared crop pair not available");
            goto done;
        }
    if (vxm_model_load(ctx, tu_shared_path(p, sizeof p, files[4]), &m)) {
        tu_skip(name, "published model not available");
        goto done;
    }
    vxm_instance_options o;
    vxm_instance_options_default(&o);
    o.steps = 30;
    int fshape[3];
    vxm_instance_field_shape(3, v[0]->shape, o.int_downsize, fshape);
    float *svf = NULL;
    vxm_volume *moved = vxm_volume_new(3, v[0]->shape, 1), *warp = vxm_volume_new(3, v[0]->shape, 3);
    vxm_volume *wseg0 = NULL, *wseg1 = NULL, *moved0 = NULL, *warp0 = NULL;
    vxm_instance_losses *L = calloc((size_t)o.steps + 1, sizeof *L);
    int labels[256], nl = 0;
    size_t nvox = vxm_volume_numel(v[3]);
    for (size_t i = 0; i < nvox && nl < 256; i++) {
        int lab = (int)v[3]->data[i], seen = lab == 0;
        for (int k = 0; k < nl && !seen; k++)
            seen = labels[k] == lab;
        if (!seen)
            labels[nl++] = lab;
    }
    double *d0 = calloc((size_t)nl, sizeof(double)), *d1 = calloc((size_t)nl, sizeof(double));
    vxm_register_options ro = {1, 0, NULL, NULL};
    int ok = !vxm_instance_svf_from_model(ctx, be, m, v[0], v[1], fshape, &svf) &&
             !vxm_register(ctx, be, m, v[0], v[1], &ro, &moved0, &warp0);
    o.init_field = svf;
    ok = ok && !vxm_instance_run(ctx, be, &o, 3, v[0]->shape, 1, v[0]->data, v[1]->data, moved->data, warp->data, L);
    ok = ok && !vxm_warp_volume(ctx, be, v[2], warp0, 1, &wseg0) && !vxm_warp_volume(ctx, be, v[2], warp, 1, &wseg1) &&
         !vxm_dice(ctx, wseg0, v[3], labels, nl, d0) && !vxm_dice(ctx, wseg1, v[3], labels, nl, d1);
    if (!ok) {
        tu_report(0, name, "%s", vxm_context_error(ctx));
    } else {
        double m0 = 0, m1 = 0, mse_net = 0;
        for (int k = 0; k < nl; k++) {
            m0 += d0[k] / nl;
            m1 += d1[k] / nl;
        }
        size_t n = vxm_volume_numel(v[1]);
        for (size_t i = 0; i < n; i++)
            mse_net += ((double)moved0->data[i] - v[1]->data[i]) * ((double)moved0->data[i] - v[1]->data[i]) / n;
        printf("  crop pair: image MSE network %.6g, step 0 %.6g -> final %.6g; mean Dice (%d labels) %.4f -> %.4f\n",
               mse_net, L[0].image, L[o.steps].image, nl, m0, m1);
        /* step 0 is the network's own result: the SVF integrates to the same warp up to float32 rounding */
        tu_report(fabs(L[0].image - mse_net) <= 1e-3 * mse_net && L[o.steps].image < 0.9 * L[0].image && m1 > m0,
                  name, "image MSE %.6g (network %.6g) -> %.6g, Dice %.4f -> %.4f", L[0].image, mse_net,
                  L[o.steps].image, m0, m1);
    }
    free(L);
    free(svf);
    free(d0);
    free(d1);
    vxm_volume_free(moved);
    vxm_volume_free(warp);
    vxm_volume_free(moved0);
    vxm_volume_free(warp0);
    vxm_volume_free(wseg0);
    vxm_volume_free(wseg1);
done:
    vxm_model_free(m);
    for (int i = 0; i < 4; i++)
        vxm_volume_free(v[i]);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    tb_list l;
    tb_open_all(ctx, &l);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const icase *ic = &cases[c];
        size_t n = (size_t)ic->shape[0] * ic->shape[1] * ic->shape[2];
        float *mv = malloc(n * sizeof(float)), *fx = malloc(n * sizeof(float));
        make_image(mv, ic->shape, 0.0);
        make_image(fx, ic->shape, 1.2);
        for (int b = 0; b < l.n; b++)
            fd_check(ctx, l.be[b], ic, mv, fx);
        agreement(ctx, &l, ic, mv, fx);
        free(mv);
        free(fx);
    }
    refine_crop(ctx, l.be[0]);
    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
