/* Training-step benchmark: one step of train.py's loss (forward, backward, Adam) with the published architecture
 * (vxm_dense_brain_T1_3D_mse.h5: half-resolution U-Net) or train.py's default architecture (--new), at a given
 * shape, on one device.  Prints the median step time over --runs steps after one warm-up step, the most device
 * memory the backend's buffers held at once (weights, gradients, Adam moments, activations; what nvidia-smi would
 * show less the driver's context and the buffer pool), and the process's peak RSS.  Inputs are synthetic smooth volumes (the step cost does not depend on them).
 *   train_bench [--model M.h5 | --new] --shape A B C [--device D] [--threads N] [--runs R] [--loss mse|ncc]
 *               [--note TEXT]   (appended to the architecture column, e.g. the VXM_RECOMPUTE / VXM_PLAN setting) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "backend.h"
#include "train/train.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *device = "cpu", *note = NULL;
    int shape[3] = {64, 64, 64}, runs = 3, threads = 0, fresh = 0;
    vxm_image_loss loss = VXM_LOSS_MSE;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc)
            model = argv[++i];
        else if (!strcmp(argv[i], "--new"))
            fresh = 1;
        else if (!strcmp(argv[i], "--shape") && i + 3 < argc)
            for (int d = 0; d < 3; d++)
                shape[d] = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--device") && i + 1 < argc)
            device = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--note") && i + 1 < argc)
            note = argv[++i];
        else if (!strcmp(argv[i], "--loss") && i + 1 < argc)
            loss = !strcmp(argv[++i], "ncc") ? VXM_LOSS_NCC : VXM_LOSS_MSE;
        else {
            fprintf(stderr, "usage: train_bench [--model M.h5 | --new] --shape A B C [--device D] [--threads N] "
                            "[--runs R] [--loss mse|ncc] [--note TEXT]\n");
            return 2;
        }
    }
    if (!model && !fresh) {
        fprintf(stderr, "train_bench: give --model or --new\n");
        return 2;
    }
    if (runs < 1 || runs > 50)
        runs = 3;
    vxm_context *ctx = vxm_context_create();
    if (threads > 0)
        vxm_context_set_threads(ctx, threads);
    vxm_backend *be = NULL;
    if (vxm_backend_open(ctx, device, &be)) {
        fprintf(stderr, "train_bench: %s\n", vxm_context_error(ctx));
        return 1;
    }
    size_t n = (size_t)shape[0] * shape[1] * shape[2];
    float *mv = malloc(n * sizeof(float)), *fx = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        double x = (double)(i % (size_t)shape[2]), y = (double)((i / shape[2]) % shape[1]), z = (double)(i / shape[2] / shape[1]);
        mv[i] = (float)(0.5 + 0.25 * sin(0.11 * x) * cos(0.07 * y + 0.05 * z));
        fx[i] = (float)(0.5 + 0.25 * sin(0.11 * x + 0.3) * cos(0.07 * y + 0.05 * z));
    }
    vxm_train_options o;
    vxm_train_options_default(&o);
    o.load_weights = fresh ? NULL : model;
    o.image_loss = loss;
    vxm_trainer *t = NULL;
    double times[50];
    int rc = 0;
    if (vxm_trainer_create(ctx, be, &o, 3, shape, 1, 1, &t)) {
        fprintf(stderr, "train_bench: %s\n", vxm_context_error(ctx));
        rc = 1;
    }
    const float *m1[1] = {mv}, *f1[1] = {fx};
    vxm_train_losses L;
    for (int r = -1; r < runs && !rc; r++) {
        double t0 = now();
        if (vxm_trainer_step(t, m1, f1, 1, &L)) {
            fprintf(stderr, "train_bench: %s\n", vxm_context_error(ctx));
            rc = 1;
        }
        if (r >= 0)
            times[r] = now() - t0;
    }
    if (!rc) {
        qsort(times, (size_t)runs, sizeof times[0], cmp);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("| %s | %s%s%s | %dx%dx%d | %s | %.3f s | %.0f MB | %.0f MB |\n", vxm_backend_describe(be),
               fresh ? "train.py default (full-res U-Net)" : "published (half-res U-Net)", note ? ", " : "",
               note ? note : "", shape[0], shape[1],
               shape[2], loss == VXM_LOSS_NCC ? "ncc" : "mse", times[runs / 2], be->mem_peak / 1048576.0,
               ru.ru_maxrss / 1024.0);
    }
    vxm_trainer_free(t);
    free(mv);
    free(fx);
    vxm_backend_close(be);
    vxm_context_free(ctx);
    return rc;
}
