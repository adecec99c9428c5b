/* The TensorFlow training goldens (shared/data/train) through the `vxm train` command itself, as a user runs it:
 *   vxm train --pairs LIST --load-weights C_model.h5 --epochs 3 --steps-per-epoch 1 --save-gradients G.h5 ...
 * on the CPU backend and PoCL (the first OpenCL device, when present).  The gradient file must match C_grads.h5
 * and the final checkpoint D/0003.h5 must match C_step3.h5 (weight change w3 - w0), with the tolerances of the
 * data's README: gradients <= 1e-3 (mse, int0_2d) / 5e-3 (ncc), 3-step change <= 5e-3 / 1e-2 (relative L2 per
 * weight tensor).  With one listed pair every step draws it, as the goldens' three steps on the same pair. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_train_util.h"
#include "test_util.h"

typedef struct ccase {
    const char *name, *loss, *lambda;
    double tol_grad, tol_step;
} ccase;

static void run(const ccase *c, const char *device)
{
    char p[1024], cmd[4096], dir[256], list[300], grads[300], ckpt[300], name[256];
    snprintf(dir, sizeof dir, "tests/out/train_cli_golden_%s_%s", c->name, device);
    snprintf(list, sizeof list, "%s.list", dir);
    snprintf(grads, sizeof grads, "%s.grads.h5", dir);
    snprintf(ckpt, sizeof ckpt, "%s/0003.h5", dir);
    const char *sh = tu_shared_dir();
    FILE *f = fopen(list, "w");
    if (!f) {
        tu_report(0, "train cli golden", "cannot write %s", list);
        return;
    }
    fprintf(f, "%s/data/train/%s_moving.nii.gz %s/data/train/%s_fixed.nii.gz\n", sh, c->name, sh, c->name);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "rm -rf %s %s && ./vxm train --model-dir %s --pairs %s --load-weights %s/data/train/%s_model.h5 "
             "--image-loss %s --lambda %s --epochs 3 --steps-per-epoch 1 --save-gradients %s --device %s "
             ">%s.log 2>&1",
             dir, grads, dir, list, sh, c->name, c->loss, c->lambda, grads, device, dir);
    snprintf(name, sizeof name, "vxm train %s on %s: gradients vs TF", c->name, device);
    if (system(cmd) != 0) {
        tu_report(0, name, "vxm train failed (see %s.log)", dir);
        return;
    }
    vxm_context *ctx = vxm_context_create();
    vxm_keras_file *m0 = NULL, *m3 = NULL, *ref3 = NULL;
    char rel[256];
    snprintf(rel, sizeof rel, "data/train/%s_grads.h5", c->name);
    hid_t gref = H5Fopen(tu_shared_path(p, sizeof p, rel), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t gout = H5Fopen(grads, H5F_ACC_RDONLY, H5P_DEFAULT);
    snprintf(rel, sizeof rel, "data/train/%s_model.h5", c->name);
    int bad = gref < 0 || gout < 0 || vxm_keras_file_read(ctx, tu_shared_path(p, sizeof p, rel), &m0);
    snprintf(rel, sizeof rel, "data/train/%s_step3.h5", c->name);
    bad = bad || vxm_keras_file_read(ctx, tu_shared_path(p, sizeof p, rel), &ref3) ||
          vxm_keras_file_read(ctx, ckpt, &m3);
    double worst_g = 0, worst_s = 0;
    int nweights = 0;
    for (int l = 0; !bad && l < m0->nlayers; l++) {
        const vxm_h5_layer *L = &m0->layers[l];
        for (int k = 0; k < L->nweights && !bad; k++) {
            const vxm_h5_weight *w = &L->weights[k];
            const char *kind = strstr(w->name, "kernel") ? "kernel" : "bias";
            float *g = malloc(w->numel * sizeof(float)), *gr = malloc(w->numel * sizeof(float));
            float *d = malloc(w->numel * sizeof(float)), *dr = malloc(w->numel * sizeof(float));
            const float *a3 = file_weight(m3, L->name, kind, w->numel), *r3 = file_weight(ref3, L->name, kind, w->numel);
            if (!g || !gr || !d || !dr || !a3 || !r3 || read_grad(gout, L->name, kind, g, w->numel) ||
                read_grad(gref, L->name, kind, gr, w->numel)) {
                bad = 1;
            } else {
                for (size_t i = 0; i < w->numel; i++) {
                    d[i] = a3[i] - w->data[i];
                    dr[i] = r3[i] - w->data[i];
                }
                double eg = rel_l2(g, gr, w->numel), es = rel_l2(d, dr, w->numel);
                worst_g = eg > worst_g ? eg : worst_g;
                worst_s = es > worst_s ? es : worst_s;
                nweights++;
            }
            free(g);
            free(gr);
            free(d);
            free(dr);
        }
    }
    tu_report(!bad && nweights > 0 && worst_g <= c->tol_grad, name,
              "%sworst gradient relative L2 %.3e over %d tensors (tolerance %.0e)", bad ? "files unreadable; " : "",
              worst_g, nweights, c->tol_grad);
    snprintf(name, sizeof name, "vxm train %s on %s: checkpoint 0003.h5 vs TF's 3 Adam steps", c->name, device);
    tu_report(!bad && nweights > 0 && worst_s <= c->tol_step, name,
              "worst relative L2 of the weight change %.3e (tolerance %.0e)", worst_s, c->tol_step);
    if (gref >= 0)
        H5Fclose(gref);
    if (gout >= 0)
        H5Fclose(gout);
    vxm_keras_file_free(m0);
    vxm_keras_file_free(m3);
    vxm_keras_file_free(ref3);
    vxm_context_free(ctx);
}

int main(void)
{
    if (!tu_have_shared()) {
        tu_skip("vxm train goldens", "../shared is absent (set VXM_SHARED)");
        return 0;
    }
    static const ccase cases[] = {
        {"int0_2d", "mse", "0.01", 1e-3, 5e-3},
        {"mse", "mse", "0.01", 1e-3, 5e-3},
        {"ncc", "ncc", "1", 5e-3, 1e-2},
    };
    int have_cl = system("./vxm devices 2>/dev/null | grep -q '^opencl:0:0 '") == 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run(&cases[i], "cpu");
        if (have_cl)
            run(&cases[i], "opencl:0:0");
    }
    if (!have_cl)
        tu_skip("vxm train goldens on opencl:0:0", "no OpenCL device");
    return tu_exit_code();
}
