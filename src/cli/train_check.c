/* vxm train --check: the first batch's gradients on the chosen device and on the CPU backend, weight by weight. */
#include "cli/train_check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"

/* Relative L2 difference ||a - b|| / ||b|| (b: the CPU reference); 0 when both vanish. */
static double rel_l2(const float *a, const float *b, size_t n)
{
    double d2 = 0, b2 = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        d2 += d * d;
        b2 += (double)b[i] * (double)b[i];
    }
    if (b2 > 0)
        return sqrt(d2 / b2);
    return d2 > 0 ? INFINITY : (isnan(d2) ? NAN : 0);
}

/* --check: the first batch's gradients on the device and on the CPU backend, weight by weight. */
int train_check_gradients(vxm_context *ctx, vxm_backend *be, vxm_trainer *t, const vxm_train_options *opt, int nbatch,
                          double tolerance, const train_data *d, const train_batch *batch)
{
    vxm_train_sample *smp = train_batch_samples(batch);
    if (!smp)
        return 1;
    vxm_backend *ref = NULL;
    vxm_trainer *rt = NULL;
    float *ga = NULL, *gb = NULL;
    vxm_train_losses la, lb;
    int rc = 1;
    if (vxm_backend_open(ctx, "cpu", &ref) ||
        vxm_trainer_create(ctx, ref, opt, d->ndim, d->shape, d->channels, d->channels, &rt) ||
        vxm_trainer_compute_gradients_samples(t, smp, nbatch, &la) ||
        vxm_trainer_compute_gradients_samples(rt, smp, nbatch, &lb)) {
        rc = cli_fail(ctx);
        goto done;
    }
    int nw = vxm_trainer_num_weights(t);
    size_t maxn = 1;
    for (int i = 0; i < nw; i++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, i, &wi);
        maxn = wi.numel > maxn ? wi.numel : maxn;
    }
    if (!(ga = malloc(sizeof(float) * maxn)) || !(gb = malloc(sizeof(float) * maxn))) {
        fprintf(stderr, "vxm: out of memory\n");
        goto done;
    }
    printf("check: gradients of the first batch on %s against the CPU backend (loss %.6g vs %.6g)\n",
           vxm_backend_describe(be), la.total, lb.total);
    printf("%-52s %14s\n", "weight", "rel-L2-diff");
    double worst = 0;
    for (int i = 0; i < nw; i++) {
        vxm_weight_info wi;
        vxm_trainer_weight_info(t, i, &wi);
        if (vxm_trainer_read_gradient(t, i, ga) || vxm_trainer_read_gradient(rt, i, gb)) {
            rc = cli_fail(ctx);
            goto done;
        }
        double r = rel_l2(ga, gb, wi.numel);
        char name[256];
        snprintf(name, sizeof name, "%s/%s", wi.layer, wi.kind);
        printf("%-52s %14.3e\n", name, r);
        if (!(r <= worst))
            worst = isnan(r) ? INFINITY : r;
    }
    int ok = worst <= tolerance;
    printf("check: max relative difference %.3e, tolerance %.1e: %s\n", worst, tolerance, ok ? "OK" : "FAILED");
    fflush(stdout);
    if (!ok)
        fprintf(stderr, "vxm: %s: gradients differ from the CPU backend by %.3e (tolerance %.1e)\n",
                vxm_backend_describe(be), worst, tolerance);
    rc = ok ? 0 : 1;
done:
    free(smp);
    free(ga);
    free(gb);
    vxm_trainer_free(rt);
    vxm_backend_close(ref);
    return rc;
}

