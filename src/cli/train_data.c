/* `vxm train`'s training set: the lists of scripts/tf/train.py (--img-list [--atlas]) or a pair list (files may
 * repeat in a list: each distinct file is loaded once when cached), and the batch draws of
 * voxelmorph/generators.py (training doc §1.1): uniform with replacement, no epochs of shuffling, no
 * normalisation, no augmentation.  The draws of step k use splitmix64 seeded by a hash of (--seed, k), so a run
 * is reproducible and a resumed one continues the sequence without stored state. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/rng.h"
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
        if (d->vol)
            vxm_volume_free(d->vol[i]);
    }
    free(d->path);
    free(d->vol);
    free(d->mov);
    free(d->fix);
    free(d->seg_of);
    free(d->is_seg);
    memset(d, 0, sizeof *d);
    d->atlas = -1;
}

/* A volume must have the set's shape and channel count and be finite: 0, or 1 with "FILE: problem" in err. */
static int check_volume(const train_data *d, const char *path, const vxm_volume *v, char *err, size_t n)
{
    char got[64], want[64];
    train_data_shape_str(v->ndim, v->shape, got, sizeof got);
    train_data_shape_str(d->ndim, d->shape, want, sizeof want);
    if (v->ndim != d->ndim || memcmp(v->shape, d->shape, sizeof v->shape) != 0) {
        snprintf(err, n, "%s: shape %s differs from %s's %s", path, got, d->path[0], want);
        return 1;
    }
    if (v->channels != d->channels) {
        snprintf(err, n, "%s: %d channel(s) differ from %s's %d", path, v->channels, d->path[0], d->channels);
        return 1;
    }
    size_t cnt = vxm_volume_numel(v);
    for (size_t k = 0; k < cnt; k++)
        if (!isfinite(v->data[k])) {
            snprintf(err, n, "%s: contains NaN or Inf (voxel %zu)", path, k / (size_t)v->channels);
            return 1;
        }
    return 0;
}

/* VoxelMorph's models are trained on intensities in [0, 1] (train.py does no scaling): a volume beyond that by
 * more than rounding gets the warning in `warn` (1), else 0. */
static int range_warning(const char *path, const vxm_volume *v, char *warn, size_t n)
{
    size_t cnt = vxm_volume_numel(v);
    float lo = INFINITY, hi = -INFINITY;
    for (size_t k = 0; k < cnt; k++) {
        lo = fminf(lo, v->data[k]);
        hi = fmaxf(hi, v->data[k]);
    }
    if (cnt == 0 || (lo >= -0.01f && hi <= 1.01f))
        return 0;
    snprintf(warn, n, "vxm: warning: %s: intensities span [%g, %g], VoxelMorph expects [0, 1]", path, lo, hi);
    return 1;
}

/* Index of `path` among the distinct files, appended on first use; -1 on out of memory (printed). */
static int file_index(train_data *d, const char *path, int *cap)
{
    /* linear search: lists hold at most a few thousand files, and this runs once per listed name */
    for (int i = 0; i < d->nfiles; i++)
        if (!strcmp(d->path[i], path))
            return i;
    if (d->nfiles == *cap) {
        int ncap = *cap ? 2 * *cap : 16;
        char **p = realloc(d->path, sizeof *p * (size_t)ncap);
        if (!p) {
            fprintf(stderr, "vxm: out of memory\n");
            return -1;
        }
        d->path = p;
        *cap = ncap;
    }
    if (!(d->path[d->nfiles] = cli_affix(NULL, path, NULL)))
        return -1;
    return d->nfiles++;
}

/* Memory the cache may use by default: half the physical memory (the rest for the model and the system). */
static double default_cache_mb(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (double)pages * (double)size / 2.0 / 1048576.0 : 1024.0;
}

/* Loads file i (every file when cached, the first one for the common shape when streamed) and checks it;
 * 0, or 1 after the message. */
static int load_file(vxm_context *ctx, train_data *d, int i, vxm_volume **out, int *warned)
{
    char msg[600];
    if (vxm_volume_read(ctx, d->path[i], NULL, out))
        return cli_fail(ctx);
    if (i == 0) {
        d->ndim = (*out)->ndim;
        memcpy(d->shape, (*out)->shape, sizeof d->shape);
        d->channels = (*out)->channels;
    }
    if (check_volume(d, d->path[i], *out, msg, sizeof msg)) {
        fprintf(stderr, "vxm: %s\n", msg);
        return 1;
    }
    if (!*warned && !(d->is_seg && d->is_seg[i]) && range_warning(d->path[i], *out, msg, sizeof msg)) {
        fprintf(stderr, "%s\n", msg);
        *warned = 1;
    }
    return 0;
}

/* Loads every file into the cache, or (streaming) checks the first one and that the others exist. */
static int load_volumes(vxm_context *ctx, const train_data_spec *spec, train_data *d)
{
    if (!(d->vol = calloc((size_t)d->nfiles, sizeof *d->vol))) {
        fprintf(stderr, "vxm: out of memory\n");
        return 1;
    }
    int warned = 0;
    if (load_file(ctx, d, 0, &d->vol[0], &warned))
        return 1;
    double mb = (double)vxm_volume_numel(d->vol[0]) * sizeof(float) * d->nfiles / 1048576.0;
    double limit = spec->cache_mb >= 0 ? spec->cache_mb : default_cache_mb();
    d->cached = mb <= limit;
    if (!d->cached) {
        vxm_volume_free(d->vol[0]);
        d->vol[0] = NULL;
        printf("streaming %d volumes from disk (%.1f MB exceed the cache's %.0f MB)\n", d->nfiles, mb, limit);
        for (int i = 1; i < d->nfiles; i++) {
            struct stat st;
            if (stat(d->path[i], &st)) {
                vxm_volume *v = NULL; /* the reader words the problem as when caching */
                if (vxm_volume_read(ctx, d->path[i], NULL, &v))
                    return cli_fail(ctx);
                vxm_volume_free(v);
            }
        }
        return 0;
    }
    printf("caching %d volumes (%.1f MB)\n", d->nfiles, mb);
    for (int i = 1; i < d->nfiles; i++)
        if (load_file(ctx, d, i, &d->vol[i], &warned))
            return 1;
    return 0;
}

/* Semi-supervised: the label map of every listed image (pair lists: columns 3-4; image lists: seg_prefix + name +
 * seg_suffix), recorded in d->seg_of once every file has its index.  0, or 1 after the message. */
static int add_segs(train_data *d, const train_data_spec *spec, const cli_list *raw, int per, int *cap)
{
    int *segf = malloc(sizeof(int) * (size_t)raw->rows * (size_t)per);
    int rc = !segf;
    for (int r = 0; r < raw->rows && !rc; r++)
        for (int c = 0; c < per && !rc; c++) {
            char *p = spec->pairs ? cli_affix(NULL, cli_list_name(raw, r, 2 + c), NULL)
                                  : cli_affix(spec->seg_prefix, cli_list_name(raw, r, 0), spec->seg_suffix);
            rc = !p || (segf[r * per + c] = file_index(d, p, cap)) < 0;
            free(p);
        }
    if (!rc) {
        d->seg_of = malloc(sizeof(int) * (size_t)d->nfiles);
        d->is_seg = calloc((size_t)d->nfiles, 1);
        rc = !d->seg_of || !d->is_seg;
    }
    for (int i = 0; !rc && i < d->nfiles; i++)
        d->seg_of[i] = -1;
    for (int r = 0; r < raw->rows && !rc; r++)
        for (int c = 0; c < per; c++) {
            int img = (c == 0 ? d->mov : d->fix)[r], seg = segf[r * per + c];
            d->seg_of[img] = seg;
            d->is_seg[seg] = 1;
        }
    if (rc)
        fprintf(stderr, "vxm: out of memory\n");
    free(segf);
    return rc;
}

int train_data_load(vxm_context *ctx, const train_data_spec *spec, train_data *d)
{
    static const cli_list_format pair_fmt = {2, 2, "two names (moving fixed)", "pairs"};
    static const cli_list_format semi_fmt = {4, 4, "four names (moving fixed moving_seg fixed_seg)", "pairs"};
    static const cli_list_format scan_fmt = {1, 1, "one name (a volume)", "volumes"};
    memset(d, 0, sizeof *d);
    d->atlas = -1;
    d->mode = spec->pairs ? TRAIN_PAIRS : spec->atlas ? TRAIN_SCAN_TO_ATLAS : TRAIN_SCAN_TO_SCAN;
    d->seed = spec->seed;
    d->semi = spec->semi;
    cli_list l, raw;
    const char *list = spec->pairs ? spec->pairs : spec->img_list;
    const cli_list_format *fmt = spec->pairs ? (spec->semi ? &semi_fmt : &pair_fmt) : &scan_fmt;
    if (cli_list_read(list, fmt, &l))
        return 1;
    if (cli_list_read(list, fmt, &raw)) { /* the names before --img-prefix/--img-suffix (segmentation names) */
        cli_list_free(&l);
        return 1;
    }
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
            int idx = file_index(d, cli_list_name(&l, r, c), &cap);
            if (idx < 0)
                goto done;
            (c == 0 ? d->mov : d->fix)[r] = idx;
        }
    if (spec->atlas && (d->atlas = file_index(d, spec->atlas, &cap)) < 0)
        goto done;
    if (spec->semi && add_segs(d, spec, &raw, per, &cap))
        goto done;
    rc = load_volumes(ctx, spec, d);
done:
    cli_list_free(&l);
    cli_list_free(&raw);
    if (rc)
        train_data_free(d);
    return rc;
}

static uint64_t splitmix64(uint64_t *state)
{
    unsigned long long st = *state, r = vxm_rng_next(&st); /* the library's generator (core/rng.h) */
    *state = st;
    return r;
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

void train_data_draw(const train_data *d, long step, int batch, int *mov, int *fix)
{
    /* the stream of step k: the seed and k mixed through one splitmix64 round (distinct steps, distinct streams) */
    uint64_t mix = d->seed ^ (0xd1b54a32d192ed03ULL * ((uint64_t)step + 1)), state = splitmix64(&mix);
    /* generators.py draws the whole batch of moving files, then (scan_to_scan) the whole batch of fixed ones */
    for (int b = 0; b < batch; b++) {
        int item = uniform_index(&state, d->nitems);
        mov[b] = d->mov[item];
        fix[b] = d->mode == TRAIN_PAIRS ? d->fix[item] : d->atlas;
    }
    if (d->mode == TRAIN_SCAN_TO_SCAN)
        for (int b = 0; b < batch; b++)
            fix[b] = d->mov[uniform_index(&state, d->nitems)];
}

int train_batch_init(train_batch *b, int batch)
{
    memset(b, 0, sizeof *b);
    b->n = batch;
    b->mov = calloc((size_t)batch, sizeof *b->mov);
    b->fix = calloc((size_t)batch, sizeof *b->fix);
    b->mov_seg = calloc((size_t)batch, sizeof *b->mov_seg);
    b->fix_seg = calloc((size_t)batch, sizeof *b->fix_seg);
    b->mov_file = calloc((size_t)batch, sizeof(int));
    b->fix_file = calloc((size_t)batch, sizeof(int));
    b->own = calloc(4 * (size_t)batch, sizeof *b->own);
    b->own_file = calloc(4 * (size_t)batch, sizeof(int));
    return !b->mov || !b->fix || !b->mov_seg || !b->fix_seg || !b->mov_file || !b->fix_file || !b->own ||
           !b->own_file;
}

void train_batch_clear(train_batch *b)
{
    for (int i = 0; i < b->nown; i++)
        vxm_volume_free(b->own[i]);
    b->nown = 0;
    b->failed = 0;
    b->err[0] = b->warn[0] = '\0';
}

void train_batch_free(train_batch *b)
{
    train_batch_clear(b);
    free(b->mov);
    free(b->fix);
    free(b->mov_seg);
    free(b->fix_seg);
    free(b->mov_file);
    free(b->fix_file);
    free(b->own);
    free(b->own_file);
    memset(b, 0, sizeof *b);
}

/* The data of file `f` for a streamed batch: loaded once per batch (a file drawn twice is shared). */
static const float *streamed(const train_data *d, vxm_context *ctx, train_batch *b, int f)
{
    for (int i = 0; i < b->nown; i++)
        if (b->own_file[i] == f)
            return b->own[i]->data;
    vxm_volume *v = NULL;
    if (vxm_volume_read(ctx, d->path[f], NULL, &v)) {
        const char *msg = vxm_context_error(ctx);
        snprintf(b->err, sizeof b->err, "%s", (msg && *msg) ? msg : "cannot read");
    } else if (!check_volume(d, d->path[f], v, b->err, sizeof b->err)) {
        if (!b->warn[0] && !(d->is_seg && d->is_seg[f]))
            range_warning(d->path[f], v, b->warn, sizeof b->warn);
        b->own_file[b->nown] = f;
        b->own[b->nown++] = v;
        return v->data;
    }
    vxm_volume_free(v);
    b->failed = 1;
    return NULL;
}

int train_batch_fill(const train_data *d, vxm_context *ctx, long step, train_batch *b)
{
    train_batch_clear(b);
    b->step = step;
    train_data_draw(d, step, b->n, b->mov_file, b->fix_file);
    for (int i = 0; i < b->n && !b->failed; i++) {
        int f[4] = {b->mov_file[i], b->fix_file[i], d->semi ? d->seg_of[b->mov_file[i]] : -1,
                    d->semi ? d->seg_of[b->fix_file[i]] : -1};
        const float **dst[4] = {&b->mov[i], &b->fix[i], &b->mov_seg[i], &b->fix_seg[i]};
        for (int k = 0; k < 4 && !b->failed; k++) {
            if (f[k] < 0)
                *dst[k] = NULL; /* no label map (unsupervised) */
            else
                *dst[k] = d->cached ? d->vol[f[k]]->data : streamed(d, ctx, b, f[k]);
        }
    }
    return b->failed;
}

/* The trainer's view of a batch (segmentations are NULL unless semi-supervised); caller frees. */
vxm_train_sample *train_batch_samples(const train_batch *b)
{
    vxm_train_sample *s = malloc(sizeof *s * (size_t)b->n);
    for (int i = 0; s && i < b->n; i++) {
        s[i].moving = b->mov[i];
        s[i].fixed = b->fix[i];
        s[i].moving_seg = b->mov_seg[i];
        s[i].fixed_seg = b->fix_seg[i];
        for (int k = 0; k < 4; k++)
            s[i].dev[k] = b->dev ? b->dev[4 * i + k] : NULL;
    }
    if (!s)
        fprintf(stderr, "vxm: out of memory\n");
    return s;
}
