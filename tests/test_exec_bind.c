/* Device-resident graph inputs (vxm_exec_bind_input, vxm_train_sample.dev): `vxm train --synthmorph` hands the
 * trainer the pairs it synthesised on the device instead of host arrays.  On every backend, for a SynthMorph and
 * an unsupervised 2-D trainer:
 *  1. the losses and every weight gradient of a batch of two are bitwise those of the same batch given as host
 *     arrays (all inputs on the device, and a mix of device and host inputs);
 *  2. the bound tensors are left as they were (the executor neither frees nor overwrites them);
 *  3. a tensor of the wrong channel count is refused with VXM_ESHAPE and a one-line message naming the input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_backends.h"
#include "test_trainer_grads.h"
#include "test_util.h"
#include "train/train.h"

enum { NY = 12, NX = 16, NVOX = NY * NX, NLAB = 3, BATCH = 2 };
static const int shape[3] = {1, NY, NX};

static void run_case(vxm_context *ctx, vxm_backend *be, int synth)
{
    char name[160];
    const char *what = synth ? "synthmorph" : "unsupervised";
    vxm_train_options o;
    vxm_train_options_default(&o);
    static const int enc[] = {4, 8}, dec[] = {8, 8, 4};
    memcpy(o.enc, enc, sizeof enc);
    o.n_enc = 2;
    memcpy(o.dec, dec, sizeof dec);
    o.n_dec = 3;
    o.int_steps = 3;
    o.seed = 5;
    if (synth) {
        o.synthmorph = 1;
        o.nlabels = NLAB;
    }
    vxm_trainer *t = NULL;
    if (vxm_trainer_create(ctx, be, &o, 2, shape, 1, 1, &t)) {
        snprintf(name, sizeof name, "exec bind %s trainer on %s", what, be->spec);
        tu_report(0, name, "%s", vxm_context_error(ctx));
        return;
    }
    /* host data: images in [0, 1), one-hot maps of a random label per voxel */
    static float host[BATCH][4][NVOX * NLAB];
    unsigned long long rs = 11;
    for (int b = 0; b < BATCH; b++)
        for (int k = 0; k < 4; k++)
            for (int v = 0; v < NVOX; v++) {
                if (k < 2) {
                    host[b][k][v] = (float)tu_urand(&rs, 0, 1);
                    continue;
                }
                int l = (int)(tu_splitmix64(&rs) % NLAB);
                for (int c = 0; c < NLAB; c++)
                    host[b][k][v * NLAB + c] = c == l ? 1.0f : 0.0f;
            }
    int nin = synth ? 4 : 2;
    vxm_tensor dev[BATCH][4];
    memset(dev, 0, sizeof dev);
    vxm_status st = VXM_OK;
    for (int b = 0; b < BATCH && !st; b++)
        for (int k = 0; k < nin && !st; k++)
            if (!(st = vxm_tensor_alloc(be, shape, k < 2 ? 1 : NLAB, &dev[b][k])))
                st = vxm_tensor_upload(be, &dev[b][k], host[b][k]);
    vxm_train_sample hs[BATCH], ds[BATCH], ms[BATCH];
    memset(hs, 0, sizeof hs);
    for (int b = 0; b < BATCH; b++) {
        hs[b].moving = host[b][0];
        hs[b].fixed = host[b][1];
        if (synth) {
            hs[b].moving_seg = host[b][2];
            hs[b].fixed_seg = host[b][3];
        }
        memset(&ds[b], 0, sizeof ds[b]);
        for (int k = 0; k < nin; k++)
            ds[b].dev[k] = &dev[b][k];
        ms[b] = hs[b]; /* mixed: the fixed image and (SynthMorph) the moving map from the device */
        ms[b].fixed = NULL;
        ms[b].dev[1] = &dev[b][1];
        if (synth) {
            ms[b].moving_seg = NULL;
            ms[b].dev[2] = &dev[b][2];
        }
    }
    size_t n = tg_num_grads(t);
    float *gh = malloc(n * sizeof(float)), *gd = malloc(n * sizeof(float)), *gm = malloc(n * sizeof(float));
    vxm_train_losses lh, ld, lm;
    if (!st)
        st = tg_grads(t, hs, BATCH, &lh, gh, n);
    if (!st)
        st = tg_grads(t, ds, BATCH, &ld, gd, n);
    if (!st)
        st = tg_grads(t, ms, BATCH, &lm, gm, n);
    snprintf(name, sizeof name, "exec bind %s on %s: device inputs give the host inputs' losses and gradients",
             what, be->spec);
    if (st)
        tu_report(0, name, "%s", vxm_context_error(ctx));
    else
        tu_report(lh.total == ld.total && lh.total == lm.total && !memcmp(gh, gd, n * sizeof(float)) &&
                      !memcmp(gh, gm, n * sizeof(float)),
                  name, "total %.9g / %.9g / %.9g (host / device / mixed), gradients %s", lh.total, ld.total,
                  lm.total, memcmp(gh, gd, n * sizeof(float)) ? "differ" : "equal");
    /* the bound tensors are untouched */
    int same = !st;
    float back[NVOX * NLAB];
    for (int b = 0; b < BATCH && same; b++)
        for (int k = 0; k < nin && same; k++)
            same = !vxm_tensor_download(be, &dev[b][k], back) &&
                   !memcmp(back, host[b][k], vxm_tensor_numel(&dev[b][k]) * sizeof(float));
    snprintf(name, sizeof name, "exec bind %s on %s: bound tensors kept and unchanged", what, be->spec);
    tu_report(same, name, "a bound input tensor was changed or freed");
    /* wrong channel count for the moving image */
    vxm_tensor bad = {{0}, 0, NULL};
    snprintf(name, sizeof name, "exec bind %s on %s: wrong channels refused", what, be->spec);
    if (!vxm_tensor_alloc(be, shape, 2, &bad)) {
        vxm_train_sample w[BATCH];
        memcpy(w, ds, sizeof w);
        w[0].dev[0] = &bad;
        vxm_status e = vxm_trainer_compute_gradients_samples(t, w, BATCH, NULL);
        const char *msg = vxm_context_error(ctx);
        tu_report(e == VXM_ESHAPE && msg && strstr(msg, "2 channels") && !strchr(msg, '\n'), name,
                  "status %d, message '%s'", (int)e, msg ? msg : "");
        vxm_tensor_release(be, &bad);
    } else {
        tu_report(0, name, "alloc: %s", vxm_context_error(ctx));
    }
    for (int b = 0; b < BATCH; b++)
        for (int k = 0; k < 4; k++)
            vxm_tensor_release(be, &dev[b][k]);
    free(gh);
    free(gd);
    free(gm);
    vxm_trainer_free(t);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    tb_list l;
    tb_open_all(ctx, &l);
    for (int i = 0; i < l.n; i++)
        for (int synth = 0; synth < 2; synth++)
            run_case(ctx, l.be[i], synth);
    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
