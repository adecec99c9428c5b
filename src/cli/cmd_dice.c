/* vxm dice: hard Dice per label between two label maps (VoxelMorph test.py's measure). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define MAX_LABELS 4096

/* Labels from a file (npz key "labels", npy, or any volume); without one, the sorted union of the non-zero
 * values of both maps, as test.py does. */
static int collect_labels(vxm_context *ctx, const char *path, const vxm_volume *a, const vxm_volume *b, int *labels,
                          int *n)
{
    *n = 0;
    if (path) {
        vxm_volume *l = NULL;
        if (vxm_volume_read(ctx, path, "labels", &l))
            return cli_fail(ctx);
        for (size_t i = 0; i < vxm_volume_numel(l) && *n < MAX_LABELS; i++)
            if (lrintf(l->data[i]) != 0)
                labels[(*n)++] = (int)lrintf(l->data[i]);
        vxm_volume_free(l);
        return 0;
    }
    const vxm_volume *v[2] = {a, b};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < vxm_volume_numel(v[k]); i++) {
            int x = (int)lrintf(v[k]->data[i]), j = 0;
            if (x == 0)
                continue;
            while (j < *n && labels[j] < x)
                j++;
            if (j < *n && labels[j] == x)
                continue;
            if (*n >= MAX_LABELS) {
                fprintf(stderr, "vxm: %s: more than %d labels\n", "dice", MAX_LABELS);
                return 1;
            }
            memmove(labels + j + 1, labels + j, sizeof(int) * (size_t)(*n - j));
            labels[j] = x;
            (*n)++;
        }
    return 0;
}

int cmd_dice(int argc, char **argv)
{
    const char *files[2] = {NULL, NULL}, *labels_path = NULL;
    int nfiles = 0;
    cli_args a;
    cli_args_init(&a, argc, argv);
    while (cli_next(&a)) {
        if (cli_is(&a, "--help") || cli_is(&a, "-h")) {
            printf("usage: vxm dice SEG_A SEG_B [--labels LABELS.npz|.npy]\n\nPrints the hard Dice overlap per "
                   "label and its mean (label 0 excluded).\n");
            return 0;
        } else if (cli_is(&a, "--labels")) {
            if (!(labels_path = cli_value(&a)))
                return 2;
        } else if (a.name[0] != '-' && nfiles < 2) {
            files[nfiles++] = a.name;
        } else {
            return cli_usage_error("dice: unexpected argument '%s'", a.name);
        }
    }
    if (nfiles != 2)
        return cli_usage_error("dice: two label maps are required");
    vxm_context *ctx = vxm_context_create();
    vxm_volume *va = NULL, *vb = NULL;
    int *labels = malloc(sizeof(int) * MAX_LABELS), n = 0, rc = 0;
    double *d = malloc(sizeof(double) * MAX_LABELS);
    if (vxm_volume_read(ctx, files[0], "seg", &va) || vxm_volume_read(ctx, files[1], "seg", &vb)) {
        rc = cli_fail(ctx);
    } else if (memcmp(va->shape, vb->shape, sizeof va->shape)) {
        fprintf(stderr, "vxm: %s: shape differs from %s\n", files[1], files[0]);
        rc = 1;
    } else if (!(rc = collect_labels(ctx, labels_path, va, vb, labels, &n))) {
        if (vxm_dice(ctx, va, vb, labels, n, d)) {
            rc = cli_fail(ctx);
        } else {
            double s = 0, s2 = 0;
            for (int i = 0; i < n; i++) {
                printf("label %6d  dice %.4f\n", labels[i], d[i]);
                s += d[i];
                s2 += d[i] * d[i];
            }
            double mean = n ? s / n : 0;
            printf("mean dice %.4f +/- %.4f over %d labels\n", mean, n ? sqrt(fmax(s2 / n - mean * mean, 0)) : 0, n);
        }
    }
    free(labels);
    free(d);
    vxm_volume_free(va);
    vxm_volume_free(vb);
    vxm_context_free(ctx);
    return rc;
}
