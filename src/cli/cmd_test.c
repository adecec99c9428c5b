/* vxm test: evaluate a model on image pairs, like VoxelMorph's scripts/tf/test.py (spec §9.3).
 *
 * For each pair: register the moving image to the fixed one, warp the moving segmentation with the warp
 * (nearest, half to even, clamp), hard Dice per label against the fixed segmentation (and the same before
 * registration), and det J of the warp (voxels with det J <= 0).  Printed per pair and summarised at the end
 * (registration time without the first pair, per-pair mean Dice, per-label Dice); --csv writes one row per
 * (pair, label).  Two input forms:
 *   --pairs LIST [--img-prefix P --img-suffix S --seg-prefix P --seg-suffix S]   (test.py)
 *   --atlas ATLAS.npz --scans S1.npz S2.npz ...  (the README's older form: npz files with 'vol' and 'seg';
 *                                                 each scan is the moving image, the atlas the fixed one)
 * Every named file is checked before the model is loaded, and the CSV goes to a temporary file that is
 * renamed only once every pair succeeded. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "eval/eval.h"

#define MAX_LABELS 4096

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vxm test --model M.h5 --pairs LIST [--img-prefix P] [--img-suffix S] [--seg-prefix P]\n"
            "                [--seg-suffix S] [--labels L] [--csv OUT.csv] [options]\n"
            "       vxm test --model M.h5 --atlas ATLAS.npz --scans S1.npz [S2.npz ...] [--labels L] [options]\n\n"
            "Registers every pair with the model, warps the moving segmentation (nearest neighbour) and prints\n"
            "the hard Dice per pair (mean +/- std over labels, before and after registration), the registration\n"
            "time and the number of voxels where det J <= 0 (folding); at the end the averages (registration\n"
            "time without the first pair, as VoxelMorph's test.py) and the Dice of every label over the pairs.\n\n"
            "  --pairs LIST      one 'moving fixed' pair per line (whitespace separated; blank lines and lines\n"
            "                    starting with # are skipped); image = img-prefix + name + img-suffix, label map\n"
            "                    = seg-prefix + name + seg-suffix (prefix/suffix of images and label maps must\n"
            "                    differ).  npz files: arrays 'vol' (images) and 'seg' (label maps)\n"
            "  --atlas A --scans S...  npz files with arrays 'vol' and 'seg'; each scan is registered to A\n"
            "  --labels L        labels to evaluate (npz array 'labels', or .npy); default: per pair, the\n"
            "                    non-zero values present in either label map.  Label 0 is never evaluated\n"
            "  --csv OUT         one row per (pair, label): moving,fixed,label,dice\n"
            "  --device SPEC     cpu | opencl[:P[:D]] | gpu:N | auto (default)\n"
            "  --hyper LAMBDA    HyperMorph models: the regularisation weight in [0, 1] (as for vxm register)\n"
            "  --gpu N, --threads N, --multichannel   as for vxm register\n");
}

typedef struct test_opts {
    const char *model, *pairs, *img_prefix, *img_suffix, *seg_prefix, *seg_suffix, *labels, *csv, *atlas;
    const char **scans;
    int nscans;
    cli_device_opts dev;
    int multichannel, has_hyper;
    double hyper;
} test_opts;

typedef struct pair_spec {
    char *moving, *fixed;           /* names as listed (pairs form) or the file names (atlas form) */
    char *mov_img, *mov_seg, *fix_img, *fix_seg;
} pair_spec;

typedef struct pair_list {
    pair_spec *p;
    int n, cap;
} pair_list;

static void pairs_free(pair_list *l)
{
    for (int i = 0; i < l->n; i++) {
        free(l->p[i].moving);
        free(l->p[i].fixed);
        free(l->p[i].mov_img);
        free(l->p[i].mov_seg);
        free(l->p[i].fix_img);
        free(l->p[i].fix_seg);
    }
    free(l->p);
    memset(l, 0, sizeof *l);
}

/* Adds a pair; returns 0, or 1 after printing "out of memory". */
static int pairs_add(pair_list *l, const test_opts *o, const char *moving, const char *fixed)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        pair_spec *p = realloc(l->p, sizeof *p * (size_t)cap);
        if (!p)
            goto oom;
        l->p = p;
        l->cap = cap;
    }
    pair_spec *s = &l->p[l->n];
    memset(s, 0, sizeof *s);
    l->n++;
    /* the atlas form names files, never affixed (the prefix/suffix options are refused with it) */
    if ((s->moving = cli_affix(NULL, moving, NULL)) && (s->fixed = cli_affix(NULL, fixed, NULL)) &&
        (s->mov_img = cli_affix(o->img_prefix, moving, o->img_suffix)) &&
        (s->mov_seg = cli_affix(o->seg_prefix, moving, o->seg_suffix)) &&
        (s->fix_img = cli_affix(o->img_prefix, fixed, o->img_suffix)) &&
        (s->fix_seg = cli_affix(o->seg_prefix, fixed, o->seg_suffix)))
        return 0;
    return 1;
oom:
    fprintf(stderr, "vxm: out of memory\n");
    return 1;
}

/* Reads the pair list: one "moving fixed" pair per line (cli_lists.c). */
static int read_pair_list(const test_opts *o, pair_list *l)
{
    static const cli_list_format fmt = {2, 2, "two names (moving fixed)", "pairs"};
    cli_list names;
    if (cli_list_read(o->pairs, &fmt, &names))
        return 1;
    int rc = 0;
    for (int i = 0; i < names.rows && !rc; i++)
        rc = pairs_add(l, o, cli_list_name(&names, i, 0), cli_list_name(&names, i, 1));
    cli_list_free(&names);
    return rc;
}

static int parse(int argc, char **argv, test_opts *o)
{
    memset(o, 0, sizeof *o);
    o->scans = malloc(sizeof(char *) * (size_t)(argc > 0 ? argc : 1));
    if (!o->scans) {
        fprintf(stderr, "vxm: out of memory\n");
        return 1;
    }
    const cli_string_opt strings[] = {
        {"--model", &o->model},         {"--pairs", &o->pairs},           {"--img-prefix", &o->img_prefix},
        {"--img-suffix", &o->img_suffix}, {"--seg-prefix", &o->seg_prefix}, {"--seg-suffix", &o->seg_suffix},
        {"--labels", &o->labels},       {"--csv", &o->csv},               {"--atlas", &o->atlas},
    };
    cli_args a;
    cli_args_init(&a, argc, argv);
    int r;
    while ((r = cli_next_option(&a, &o->dev, strings, (int)(sizeof strings / sizeof strings[0]), usage)) > 0) {
        if (cli_is(&a, "--multichannel")) {
            o->multichannel = 1;
        } else if (cli_is(&a, "--hyper")) {
            const char *v = cli_value(&a);
            if (!v || cli_parse_double("--hyper", v, 0, 1, &o->hyper))
                return 2;
            o->has_hyper = 1;
        } else if (cli_is(&a, "--scans")) {
            /* --scans S1 S2 ...: every following argument up to the next option */
            int n = cli_values(&a, o->scans + o->nscans, argc - o->nscans);
            if (n <= 0)
                return 2;
            o->nscans += n;
        } else {
            return cli_usage_error("test: unknown option '%s' (see vxm test --help)", a.name);
        }
    }
    if (r)
        return r == CLI_HELP ? -1 : 2;
    if (!o->model || (!o->pairs && !o->atlas)) {
        usage(stderr);
        return cli_usage_error("test: --model and either --pairs or --atlas with --scans are required");
    }
    if (o->pairs && (o->atlas || o->nscans))
        return cli_usage_error("test: give either --pairs or --atlas/--scans, not both");
    if (o->atlas && !o->nscans)
        return cli_usage_error("test: --atlas needs --scans");
    if (!o->atlas && o->nscans)
        return cli_usage_error("test: --scans needs --atlas");
    if (o->atlas && (o->img_prefix || o->img_suffix || o->seg_prefix || o->seg_suffix))
        return cli_usage_error("test: --img/--seg prefixes and suffixes apply to --pairs only");
    if (o->pairs) {
        const char *ip = o->img_prefix ? o->img_prefix : "", *is = o->img_suffix ? o->img_suffix : "";
        const char *sp = o->seg_prefix ? o->seg_prefix : "", *ss = o->seg_suffix ? o->seg_suffix : "";
        if (!strcmp(ip, sp) && !strcmp(is, ss))
            return cli_usage_error("test: the images and label maps need a differing prefix and/or suffix "
                                   "(--img-prefix/--img-suffix vs --seg-prefix/--seg-suffix)");
    }
    return 0;
}

static int check_exists(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "vxm: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (S_ISDIR(st.st_mode)) {
        fprintf(stderr, "vxm: %s: %s\n", path, strerror(EISDIR));
        return 1;
    }
    return 0;
}

/* ---- labels -------------------------------------------------------------------------------------------- */
typedef struct label_set {
    int v[MAX_LABELS];
    int n;
} label_set;

/* Adds x (non-zero) keeping the set sorted; returns 0, or 1 when full. */
static int label_insert(label_set *s, int x)
{
    int lo = 0, hi = s->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (s->v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < s->n && s->v[lo] == x)
        return 0;
    if (s->n >= MAX_LABELS)
        return 1;
    memmove(s->v + lo + 1, s->v + lo, sizeof(int) * (size_t)(s->n - lo));
    s->v[lo] = x;
    s->n++;
    return 0;
}

/* --labels: the values in file order, without 0 and without repeats (cli_lists.c). */
static int read_labels(vxm_context *ctx, const char *path, label_set *s)
{
    return cli_read_labels(ctx, path, s->v, MAX_LABELS, &s->n);
}

/* The sorted non-zero values present in either map (what vxm.py.utils.dice uses without a label list). */
static int labels_present(const char *name, const vxm_volume *a, const vxm_volume *b, label_set *s)
{
    s->n = 0;
    const vxm_volume *v[2] = {a, b};
    int last = 0;
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < vxm_volume_numel(v[k]); i++) {
            int x = (int)lrintf(v[k]->data[i]);
            if (x == 0 || x == last)
                continue;
            last = x;
            if (label_insert(s, x)) {
                fprintf(stderr, "vxm: %s: more than %d labels\n", name, MAX_LABELS);
                return 1;
            }
        }
    return 0;
}

/* Per-label Dice over the pairs, keyed by label value. */
typedef struct label_acc {
    label_set set;
    double sum[MAX_LABELS], sum2[MAX_LABELS];
    int count[MAX_LABELS];
} label_acc;

static void acc_add(label_acc *acc, int label, double d)
{
    int idx = -1;
    for (int j = 0; j < acc->set.n && idx < 0; j++)
        if (acc->set.v[j] == label)
            idx = j;
    if (idx < 0) {
        if (label_insert(&acc->set, label))
            return; /* cannot happen: at most MAX_LABELS distinct labels reach here */
        for (int j = 0; j < acc->set.n; j++)
            if (acc->set.v[j] == label)
                idx = j;
        int tail = acc->set.n - 1 - idx;
        memmove(acc->sum + idx + 1, acc->sum + idx, sizeof(double) * (size_t)tail);
        memmove(acc->sum2 + idx + 1, acc->sum2 + idx, sizeof(double) * (size_t)tail);
        memmove(acc->count + idx + 1, acc->count + idx, sizeof(int) * (size_t)tail);
        acc->sum[idx] = acc->sum2[idx] = 0;
        acc->count[idx] = 0;
    }
    acc->sum[idx] += d;
    acc->sum2[idx] += d * d;
    acc->count[idx]++;
}

/* ---- statistics ---------------------------------------------------------------------------------------- */
static void mean_std(const double *x, int n, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++)
        s += x[i];
    double m = n ? s / n : NAN;
    for (int i = 0; i < n; i++)
        s2 += (x[i] - m) * (x[i] - m);
    *mean = m;
    *sd = n ? sqrt(s2 / n) : NAN; /* population std, as np.std */
}

static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

/* ---- one pair ------------------------------------------------------------------------------------------ */
typedef struct pair_vols {
    vxm_volume *mov, *mov_seg, *fix, *fix_seg;
    const char *fix_img_path, *fix_seg_path; /* what fix/fix_seg were read from (reused when unchanged) */
} pair_vols;

static int check_pair(const test_opts *o, const pair_spec *p, const vxm_model *m, const pair_vols *v)
{
    const vxm_volume *img[2] = {v->mov, v->fix}, *seg[2] = {v->mov_seg, v->fix_seg};
    const char *ip[2] = {p->mov_img, p->fix_img}, *sp[2] = {p->mov_seg, p->fix_seg};
    for (int i = 0; i < 2; i++) {
        if (img[i]->channels > 1 && !o->multichannel) {
            fprintf(stderr, "vxm: %s: has %d channels; pass --multichannel for multi-channel input\n", ip[i],
                    img[i]->channels);
            return 1;
        }
        if (seg[i]->channels != 1) {
            fprintf(stderr, "vxm: %s: a label map needs one channel, this one has %d\n", sp[i], seg[i]->channels);
            return 1;
        }
    }
    if (v->mov->ndim != v->fix->ndim || memcmp(v->mov->shape, v->fix->shape, sizeof v->mov->shape) != 0) {
        fprintf(stderr, "vxm: %s: shape %dx%dx%d does not match the moving image %s (%dx%dx%d)\n", p->fix_img,
                v->fix->shape[0], v->fix->shape[1], v->fix->shape[2], p->mov_img, v->mov->shape[0],
                v->mov->shape[1], v->mov->shape[2]);
        return 1;
    }
    for (int i = 0; i < 2; i++)
        if (seg[i]->ndim != img[i]->ndim || memcmp(seg[i]->shape, img[i]->shape, sizeof seg[i]->shape) != 0) {
            fprintf(stderr, "vxm: %s: shape %dx%dx%d does not match the image %s (%dx%dx%d)\n", sp[i],
                    seg[i]->shape[0], seg[i]->shape[1], seg[i]->shape[2], ip[i], img[i]->shape[0],
                    img[i]->shape[1], img[i]->shape[2]);
            return 1;
        }
    int div = vxm_model_size_divisor(m);
    for (int d = 3 - v->mov->ndim; d < 3; d++)
        if (v->mov->shape[d] % div) {
            fprintf(stderr, "vxm: %s: size %d along axis %d is not divisible by %d, which this model requires\n",
                    p->mov_img, v->mov->shape[d], d - (3 - v->mov->ndim), div);
            return 1;
        }
    return 0;
}

/* Loads the pair's four volumes (the fixed ones are kept when the next pair names the same files). */
static int load_pair(vxm_context *ctx, const pair_spec *p, pair_vols *v)
{
    vxm_volume_free(v->mov);
    vxm_volume_free(v->mov_seg);
    v->mov = v->mov_seg = NULL;
    if (vxm_volume_read(ctx, p->mov_img, NULL, &v->mov) || vxm_volume_read(ctx, p->mov_seg, "seg", &v->mov_seg))
        return cli_fail(ctx);
    if (!v->fix || !v->fix_img_path || strcmp(v->fix_img_path, p->fix_img)) {
        vxm_volume_free(v->fix);
        v->fix = NULL;
        v->fix_img_path = NULL;
        if (vxm_volume_read(ctx, p->fix_img, NULL, &v->fix))
            return cli_fail(ctx);
        v->fix_img_path = p->fix_img;
    }
    if (!v->fix_seg || !v->fix_seg_path || strcmp(v->fix_seg_path, p->fix_seg)) {
        vxm_volume_free(v->fix_seg);
        v->fix_seg = NULL;
        v->fix_seg_path = NULL;
        if (vxm_volume_read(ctx, p->fix_seg, "seg", &v->fix_seg))
            return cli_fail(ctx);
        v->fix_seg_path = p->fix_seg;
    }
    return 0;
}

typedef struct run_state {
    vxm_context *ctx;
    vxm_backend *be;
    vxm_model *model;
    const test_opts *o;
    const label_set *given; /* --labels, or NULL */
    label_acc *acc;
    double *reg_time, *dice_mean, *dice_before, *nonpos;
    FILE *csv;
    label_set pair_labels;
    double dice[MAX_LABELS], dice0[MAX_LABELS];
} run_state;

static int run_pair(run_state *r, int i, const pair_spec *p, pair_vols *v)
{
    vxm_context *ctx = r->ctx;
    vxm_volume *moved = NULL, *warp = NULL, *wseg = NULL;
    int rc = load_pair(ctx, p, v);
    if (rc || (rc = check_pair(r->o, p, r->model, v)))
        return rc;
    const label_set *ls = r->given;
    if (!ls) {
        if ((rc = labels_present(p->mov_seg, v->mov_seg, v->fix_seg, &r->pair_labels)))
            return rc;
        ls = &r->pair_labels;
    }
    if (ls->n == 0) {
        fprintf(stderr, "vxm: %s: no non-zero labels in this label map or in %s\n", p->mov_seg, p->fix_seg);
        return 1;
    }
    vxm_register_options ropt = {1, 0, p->mov_img, p->fix_img};
    double t0 = cli_now_seconds();
    if (vxm_register(ctx, r->be, r->model, v->mov, v->fix, &ropt, &moved, &warp))
        return cli_fail(ctx);
    double t1 = cli_now_seconds();
    vxm_jacobian_summary js;
    if (vxm_warp_volume(ctx, r->be, v->mov_seg, warp, 1, &wseg) ||
        vxm_dice(ctx, wseg, v->fix_seg, ls->v, ls->n, r->dice) ||
        vxm_dice(ctx, v->mov_seg, v->fix_seg, ls->v, ls->n, r->dice0) || vxm_jacobian_stats(ctx, warp, &js)) {
        rc = cli_fail(ctx);
        goto done;
    }
    double mean, sd, mean0, sd0;
    mean_std(r->dice, ls->n, &mean, &sd);
    mean_std(r->dice0, ls->n, &mean0, &sd0);
    r->reg_time[i] = t1 - t0;
    r->dice_mean[i] = mean;
    r->dice_before[i] = mean0;
    r->nonpos[i] = (double)js.nonpositive;
    printf("Pair %d    Reg Time: %.4f    Dice: %.4f +/- %.4f    before: %.4f +/- %.4f    "
           "det J <= 0: %zu voxels (%.4f%%), min det J %.6f    %s -> %s\n",
           i + 1, t1 - t0, mean, sd, mean0, sd0, js.nonpositive, 100.0 * js.fraction, js.min, p->moving, p->fixed);
    fflush(stdout);
    for (int l = 0; l < ls->n; l++) {
        acc_add(r->acc, ls->v[l], r->dice[l]);
        if (r->csv) {
            csv_field(r->csv, p->moving);
            fputc(',', r->csv);
            csv_field(r->csv, p->fixed);
            fprintf(r->csv, ",%d,%.6f\n", ls->v[l], r->dice[l]);
        }
    }
done:
    vxm_volume_free(moved);
    vxm_volume_free(warp);
    vxm_volume_free(wseg);
    return rc;
}

static void summary(const run_state *r, int n)
{
    double m, s;
    printf("\n");
    if (n > 1) {
        mean_std(r->reg_time + 1, n - 1, &m, &s);
        printf("Avg Reg Time: %.4f +/- %.4f  (skipping first prediction)\n", m, s);
    } else {
        printf("Avg Reg Time: n/a  (skipping first prediction; one pair only, %.4f s)\n", r->reg_time[0]);
    }
    mean_std(r->dice_mean, n, &m, &s);
    printf("Avg Dice: %.4f +/- %.4f", m, s);
    mean_std(r->dice_before, n, &m, &s);
    printf("    (before registration: %.4f +/- %.4f)\n", m, s);
    mean_std(r->nonpos, n, &m, &s);
    printf("Avg det J <= 0: %.1f +/- %.1f voxels per pair\n", m, s);
    printf("Dice per label over %d pair%s (mean +/- sd):\n", n, n == 1 ? "" : "s");
    printf("%8s %8s %8s %6s\n", "label", "mean", "sd", "pairs");
    for (int l = 0; l < r->acc->set.n; l++) {
        int c = r->acc->count[l];
        double mean = r->acc->sum[l] / c, var = r->acc->sum2[l] / c - mean * mean;
        printf("%8d %8.4f %8.4f %6d\n", r->acc->set.v[l], mean, sqrt(var > 0 ? var : 0), c);
    }
}

int cmd_test(int argc, char **argv)
{
    test_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) {
        free(o.scans);
        return rc < 0 ? 0 : rc;
    }
    pair_list pl = {NULL, 0, 0};
    vxm_context *ctx = NULL;
    label_set *given = NULL;
    label_acc *acc = NULL;
    double *stats = NULL;
    FILE *csv = NULL;
    char *csv_tmp = NULL;
    run_state *r = NULL;
    pair_vols v;
    memset(&v, 0, sizeof v);

    /* 1. the pair list and every file it names, before anything slow */
    if (o.pairs) {
        if ((rc = read_pair_list(&o, &pl)))
            goto done;
    } else {
        for (int i = 0; i < o.nscans; i++)
            if ((rc = pairs_add(&pl, &o, o.scans[i], o.atlas)))
                goto done;
    }
    for (int i = 0; i < pl.n; i++) {
        const pair_spec *p = &pl.p[i];
        if ((rc = check_exists(p->mov_img)) || (rc = check_exists(p->mov_seg)) || (rc = check_exists(p->fix_img)) ||
            (rc = check_exists(p->fix_seg)))
            goto done;
    }
    if ((rc = check_exists(o.model)))
        goto done;
    rc = 1;
    ctx = vxm_context_create();
    given = o.labels ? malloc(sizeof *given) : NULL;
    acc = calloc(1, sizeof *acc);
    stats = malloc(sizeof(double) * 4 * (size_t)pl.n);
    r = calloc(1, sizeof *r);
    if (!ctx || (o.labels && !given) || !acc || !stats || !r) {
        fprintf(stderr, "vxm: out of memory\n");
        goto done;
    }
    if (given && (rc = read_labels(ctx, o.labels, given)))
        goto done;
    if (o.csv) {
        if (!(csv = vxm_eval_temp_open(ctx, o.csv, &csv_tmp))) {
            rc = cli_fail(ctx);
            goto done;
        }
        fputs("moving,fixed,label,dice\n", csv);
    }

    /* 2. model and device, once */
    r->ctx = ctx;
    r->o = &o;
    r->given = given;
    r->acc = acc;
    r->csv = csv;
    r->reg_time = stats;
    r->dice_mean = stats + pl.n;
    r->dice_before = stats + 2 * pl.n;
    r->nonpos = stats + 3 * pl.n;
    if (vxm_model_load(ctx, o.model, &r->model) || (o.has_hyper && vxm_model_set_hyper(ctx, r->model, o.hyper)) ||
        cli_open_backend(ctx, &o.dev, &r->be)) {
        rc = cli_fail(ctx);
        goto done;
    }
    printf("vxm test: %s on %s, %d pair%s, labels: %s\n", o.model, vxm_backend_describe(r->be), pl.n,
           pl.n == 1 ? "" : "s", o.labels ? o.labels : "those present in each pair");

    /* 3. the pairs */
    for (int i = 0; i < pl.n; i++)
        if ((rc = run_pair(r, i, &pl.p[i], &v)))
            goto done;
    summary(r, pl.n);
    rc = 0;
done:
    if (csv) {
        if (vxm_eval_temp_finish(ctx, o.csv, csv, csv_tmp, rc == 0) && rc == 0)
            rc = cli_fail(ctx);
        else if (rc == 0)
            printf("csv: %s\n", o.csv);
    }
    if (r) {
        vxm_model_free(r->model);
        vxm_backend_close(r->be);
    }
    vxm_volume_free(v.mov);
    vxm_volume_free(v.mov_seg);
    vxm_volume_free(v.fix);
    vxm_volume_free(v.fix_seg);
    free(r);
    free(stats);
    free(acc);
    free(given);
    pairs_free(&pl);
    free(o.scans);
    vxm_context_free(ctx);
    return rc;
}
