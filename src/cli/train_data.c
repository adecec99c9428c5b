/* `vxm train`'s training set: the lists of scripts/tf/train.py (--img-list [--atlas]) or a pair list, every
 * named file loaded once (files may repeat in a list), and the batch draws of voxelmorph/generators.py
 * (training doc §1.1): uniform with replacement, no epochs of shuffling, no normalisation, no augmentation.
 * The draws use splitmix64 seeded by --seed, so a run is reproducible. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/train_data.h"

void train_data_shape_str(int ndim, const int shape[3], char *buf, size_t n)
{
    if (ndim == 2)
        snprintf(buf, n, "%dx%d", shape[1], shape[2]);
    else
        snprintf(buf, n, "%dx%dx%d", shape[0], shape[1], shape[2]);
}

void train_data_free(train_data *d)
{
    for (int i = 0; i < d->nfiles; i++) {
        free(d->path[i]);
        vxm_volume_free(d->vol[i]);
    }
    free(d->path);
    free(d->vol);
    free(d->mov);
    free(d->fix);
    memset(d, 0, sizeof *d);
    d->atlas = -1;
}

/* Every volume must match the first file's shape and channel count and be finite.  Returns 0 or 1 (printed). */
static int check_volume(const train_data *d, int i)
{
    const vxm_volume *v = d->vol[i], *first = d->vol[0];
    char got[64], want[64];
    train_data_shape_str(v->ndim, v->shape, got, sizeof got);
    train_data_shape_str(first->ndim, first->shape, want, sizeof want);
    if (v->ndim != first->ndim || memcmp(v->shape, first->shape, sizeof v->shape) != 0) {
        fprintf(stderr, "vxm: %s: shape %s differs from %s's %s\n", d->path[i], got, d->path[0], want);
        return 1;
    }
    if (v->channels != first->channels) {
        fprintf(stderr, "vxm: %s: %d channel(s) differ from %s's %d\n", d->path[i], v->channels, d->path[0],
                first->channels);
        return 1;
    }
    size_t n = vxm_volume_numel(v);
    for (size_t k = 0; k < n; k++)
        if (!isfinite(v->data[k])) {
            fprintf(stderr, "vxm: %s: contains NaN or Inf (voxel %zu)\n", d->path[i], k / (size_t)v->channels);
            return 1;
        }
    return 0;
}

/* Index of `path` among the loaded files, loading (and checking) it on first use; -1 after an error. */
static int file_index(vxm_context *ctx, train_data *d, const char *path, int *cap)
{
    /* linear search: lists hold at most a few thousand files, and this runs once per listed name */
    for (int i = 0; i < d->nfiles; i++)
        if (!strcmp(d->path[i], path))
            return i;
    if (d->nfiles == *cap) {
        int ncap = *cap ? 2 * *cap : 16;
        char **p = realloc(d->path, sizeof *p * (size_t)ncap);
        if (p)
            d->path = p;
        vxm_volume **v = p ? realloc(d->vol, sizeof *v * (size_t)ncap) : NULL;
        if (!v) {
            fprintf(stderr, "vxm: out of memory\n");
            return -1;
        }
        d->vol = v;
        *cap = ncap;
    }
    int i = d->nfiles;
    d->vol[i] = NULL;
    if (!(d->path[i] = cli_affix(NULL, path, NULL)))
        return -1;
    d->nfiles++;
    if (vxm_volume_read(ctx, path, NULL, &d->vol[i])) {
        cli_fail(ctx);
        return -1;
    }
    return check_volume(d, i) ? -1 : i;
}

int train_data_load(vxm_context *ctx, const train_data_spec *spec, train_data *d)
{
    static const cli_list_format pair_fmt = {2, 2, "two names (moving fixed)", "pairs"};
    static const cli_list_format scan_fmt = {1, 1, "one name (a volume)", "volumes"};
    memset(d, 0, sizeof *d);
    d->atlas = -1;
    d->mode = spec->pairs ? TRAIN_PAIRS : spec->atlas ? TRAIN_SCAN_TO_ATLAS : TRAIN_SCAN_TO_SCAN;
    d->rng = spec->seed;
    cli_list l;
    const char *list = spec->pairs ? spec->pairs : spec->img_list;
    if (cli_list_read(list, spec->pairs ? &pair_fmt : &scan_fmt, &l))
        return 1;
    int rc = 1, cap = 0, per = spec->pairs ? 2 : 1;
    if (cli_list_affix(&l, spec->img_prefix, spec->img_suffix))
        goto done;
    d->nitems = l.rows;
    d->mov = malloc(sizeof(int) * (size_t)l.rows);
    d->fix = per == 2 ? malloc(sizeof(int) * (size_t)l.rows) : NULL;
    if (!d->mov || (per == 2 && !d->fix)) {
        fprintf(stderr, "vxm: out of memory\n");
        goto done;
    }
    for (int r = 0; r < l.rows; r++)
        for (int c = 0; c < per; c++) {
            int idx = file_index(ctx, d, cli_list_name(&l, r, c), &cap);
            if (idx < 0)
                goto done;
            (c == 0 ? d->mov : d->fix)[r] = idx;
        }
    if (spec->atlas && (d->atlas = file_index(ctx, d, spec->atlas, &cap)) < 0)
        goto done;
    d->ndim = d->vol[0]->ndim;
    memcpy(d->shape, d->vol[0]->shape, sizeof d->shape);
    d->channels = d->vol[0]->channels;
    rc = 0;
done:
    cli_list_free(&l);
    if (rc)
        train_data_free(d);
    return rc;
}

/* splitmix64 (Steele, Lea, Flood 2014): the state advances by the golden-ratio increment. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform integer in [0, n): rejection of the top partial block keeps it unbiased (np.random.randint). */
static int uniform_index(uint64_t *state, int n)
{
    uint64_t un = (uint64_t)n, reject_from = UINT64_MAX - (UINT64_MAX % un + 1) % un; /* = k*n - 1 */
    uint64_t x;
    do
        x = splitmix64(state);
    while (x > reject_from);
    return (int)(x % un);
}

void train_data_next(train_data *d, int batch, const float **moving, const float **fixed)
{
    /* generators.py draws the whole batch of moving files, then (scan_to_scan) the whole batch of fixed ones */
    for (int b = 0; b < batch; b++) {
        int item = uniform_index(&d->rng, d->nitems);
        moving[b] = d->vol[d->mov[item]]->data;
        if (d->mode == TRAIN_PAIRS)
            fixed[b] = d->vol[d->fix[item]]->data;
        else if (d->mode == TRAIN_SCAN_TO_ATLAS)
            fixed[b] = d->vol[d->atlas]->data;
    }
    if (d->mode == TRAIN_SCAN_TO_SCAN)
        for (int b = 0; b < batch; b++)
            fixed[b] = d->vol[d->mov[uniform_index(&d->rng, d->nitems)]]->data;
}
