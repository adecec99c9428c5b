/* Checkpoints: a model trained for a step and saved by the trainer (as `vxm train` saves D/%04d.h5) is read back
 * by the registration path (vxm_model_load + vxm_register) and gives the in-memory model's outputs; the saved
 * weights are bit-identical to the trainer's.  Starting points: the TF `model.save` files of shared/data/train
 * (2-D without integration; 3-D with 7 scaling-and-squaring steps and the half-resolution U-Net) and a new model
 * with train.py's default architecture.  Tolerance: the trainer unrolls VecInt into transform + add nodes while
 * registration runs the fused kernel -- the same float32 operations, so 1e-5 voxel / intensity is ample. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_data.h"
#include "test_util.h"
#include "train/train.h"

static void check(vxm_context *ctx, vxm_backend *be, const char *label, const char *model, vxm_volume *mov,
                  vxm_volume *fix)
{
    char name[200], path[256];
    vxm_train_options o;
    vxm_train_options_default(&o);
    o.load_weights = model;
    if (!model) { /* train.py's defaults, small enough for a test */
        int enc[3] = {8, 16, 16}, dec[4] = {16, 16, 16, 8};
        memcpy(o.enc, enc, sizeof enc);
        o.n_enc = 3;
        memcpy(o.dec, dec, sizeof dec);
        o.n_dec = 4;
    }
    vxm_trainer *t = NULL;
    snprintf(name, sizeof name, "checkpoint %s", label);
    if (vxm_trainer_create(ctx, be, &o, mov->ndim, mov->shape, 1, 1, &t)) {
        tu_report(0, name, "%s", vxm_context_error(ctx));
        return;
    }
    const float *m1[1] = {mov->data}, *f1[1] = {fix->data};
    size_t nv = (size_t)mov->shape[0] * mov->shape[1] * mov->shape[2];
    float *moved = malloc(nv * sizeof(float)), *warp = malloc(nv * mov->ndim * sizeof(float));
    snprintf(path, sizeof path, "tests/out/ckpt_%s.h5", label);
    vxm_model *m = NULL;
    vxm_volume *rm = NULL, *rw = NULL;
    vxm_register_options ro = {1, 0, NULL, NULL};
    if (vxm_trainer_step(t, m1, f1, 1, NULL) || vxm_trainer_predict(t, mov->data, fix->data, moved, warp) ||
        vxm_trainer_save(t, path) || vxm_model_load(ctx, path, &m) ||
        vxm_register(ctx, be, m, mov, fix, &ro, &rm, &rw)) {
        tu_report(0, name, "%s", vxm_context_error(ctx));
    } else {
        double dm = tu_max_abs_diff(rm->data, moved, nv), dw = tu_max_abs_diff(rw->data, warp, nv * mov->ndim);
        double wmax = 0;
        for (size_t i = 0; i < nv * mov->ndim; i++)
            wmax = fmax(wmax, fabs(warp[i]));
        tu_report(dm <= 1e-5 && dw <= 1e-5, name,
                  "vxm_register on the saved file differs from the trainer: moved %.3g, warp %.3g (max |warp| %.3g)",
                  dm, dw, wmax);
        /* weights bit-identical after the round trip */
        vxm_train_options o2 = o;
        o2.load_weights = path;
        vxm_trainer *t2 = NULL;
        snprintf(name, sizeof name, "checkpoint %s weights bit-identical after reload", label);
        if (vxm_trainer_create(ctx, be, &o2, mov->ndim, mov->shape, 1, 1, &t2)) {
            tu_report(0, name, "%s", vxm_context_error(ctx));
        } else {
            int same = vxm_trainer_num_weights(t2) == vxm_trainer_num_weights(t);
            for (int k = 0; same && k < vxm_trainer_num_weights(t); k++) {
                vxm_weight_info a, b;
                vxm_trainer_weight_info(t, k, &a);
                vxm_trainer_weight_info(t2, k, &b);
                float *wa = malloc(a.numel * sizeof(float)), *wb = malloc(b.numel * sizeof(float));
                same = a.numel == b.numel && !strcmp(a.layer, b.layer) && !strcmp(a.kind, b.kind) &&
                       !vxm_trainer_read_weight(t, k, wa) && !vxm_trainer_read_weight(t2, k, wb) &&
                       !memcmp(wa, wb, a.numel * sizeof(float));
                free(wa);
                free(wb);
            }
            tu_report(same, name, "a weight differs after save and reload");
        }
        vxm_trainer_free(t2);
    }
    vxm_volume_free(rm);
    vxm_volume_free(rw);
    vxm_model_free(m);
    free(moved);
    free(warp);
    vxm_trainer_free(t);
}

int main(void)
{
    if (!tu_have_shared()) {
        tu_skip("checkpoint", "../shared is absent (set VXM_SHARED)");
        return 0;
    }
    vxm_context *ctx = vxm_context_create();
    vxm_backend *be = NULL;
    if (vxm_backend_open(ctx, "cpu", &be)) {
        printf("FAIL open cpu: %s\n", vxm_context_error(ctx));
        return 1;
    }
    char p[1024];
    vxm_volume *m2 = td_load(ctx, "data/train/int0_2d_moving.nii.gz", NULL);
    vxm_volume *f2 = td_load(ctx, "data/train/int0_2d_fixed.nii.gz", NULL);
    vxm_volume *m3 = td_load(ctx, "data/train/mse_moving.nii.gz", NULL);
    vxm_volume *f3 = td_load(ctx, "data/train/mse_fixed.nii.gz", NULL);
    if (m2 && f2 && m3 && f3) {
        check(ctx, be, "int0_2d", tu_shared_path(p, sizeof p, "data/train/int0_2d_model.h5"), m2, f2);
        check(ctx, be, "mse", tu_shared_path(p, sizeof p, "data/train/mse_model.h5"), m3, f3);
        check(ctx, be, "new_2d", NULL, m2, f2);
    }
    vxm_volume_free(m2);
    vxm_volume_free(f2);
    vxm_volume_free(m3);
    vxm_volume_free(f3);
    vxm_backend_close(be);
    vxm_context_free(ctx);
    return tu_exit_code();
}
