/* make_cohort: a small synthetic registration cohort for `make train-demo` and tests/t_train_demo.sh.
 *
 * One real brain (VoxelMorph's test_scan.npz: 'vol' in [0, 1] and FreeSurfer 'seg') is reduced to a base image
 * (the middle slice along axis 2 for 2-D, or the whole volume with --3d), box-downsampled by --factor and
 * centre-cropped/padded to --shape.  Every "subject" is the base warped by its own random smooth deformation
 * (a sum of low-frequency sinusoids per component, scaled so that the largest displacement is 0.6..1 times
 * --amp millimetres) with a mild intensity change (gamma in [0.9, 1.11], a linear bias field of up to +/-5 %).
 * A pair is two independent subjects, so the deformation between moving and fixed is unknown to the network and
 * up to twice --amp.  Label maps are warped with the same fields (nearest); only the labels of labels.npz that
 * cover at least --min-voxels voxels of the base are kept (the rest become 0), so that 'vxm test' without
 * --labels evaluates anatomical structures only.  All randomness comes from --seed (splitmix64).
 *
 * Writes, in --out DIR:  trNNN_{mov,fix}_{img,seg}.nii.gz and train_pairs.txt ('trNNN_mov trNNN_fix' per line),
 * teNNN_... and test_pairs.txt for the held-out pairs; names take --img-prefix DIR/ --img-suffix _img.nii.gz
 * (images) and --seg-suffix _seg.nii.gz (label maps).
 *   make_cohort --scan S.npz --labels L.npz --out DIR [--train N] [--test M] [--3d] [--factor F]
 *               [--shape [D] H W] [--amp MM] [--min-voxels V] [--seed S] [--invert-fixed]
 * --invert-fixed writes every fixed image as 1 - x (contrast-inverted: SynthMorph's test of contrast invariance). */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "vxm.h"

#define PI 3.14159265358979323846
#define WAVES 4     /* sinusoids per displacement component */
#define MAX_LABELS 256

typedef struct rng {
    uint64_t s;
} rng;

static double uniform(rng *r, double lo, double hi) /* splitmix64 */
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return lo + (hi - lo) * (double)(z >> 11) * 0x1.0p-53;
}

typedef struct options {
    const char *scan, *labels, *out;
    int ntrain, ntest, three_d, factor, shape[3], have_shape, min_voxels;
    double amp_mm;
    uint64_t seed;
    int invert_fixed; /* --invert-fixed: fixed images get 1 - x (a contrast the moving images never have) */
} options;

/* The base image and label map: slice or volume, downsampled, cropped/padded; labels filtered. */
typedef struct base {
    vxm_volume *img, *seg;
    int nlabels;
} base;

static int fail(vxm_context *ctx)
{
    fprintf(stderr, "make_cohort: %s\n", vxm_context_error(ctx));
    return 1;
}

/* Middle slice along axis 2 as a 2-D volume (shape {1, n0, n1}). */
static vxm_volume *middle_slice(const vxm_volume *v)
{
    int shp[3] = {1, v->shape[0], v->shape[1]};
    vxm_volume *s = vxm_volume_new(2, shp, 1);
    if (!s)
        return NULL;
    int k = v->shape[2] / 2;
    for (int i = 0; i < v->shape[0]; i++)
        for (int j = 0; j < v->shape[1]; j++)
            s->data[(size_t)i * shp[2] + j] = v->data[((size_t)i * v->shape[1] + j) * v->shape[2] + k];
    return s;
}

/* Box average (images) or the block's centre sample (label maps) over f x f (x f) blocks; axis 0 of a 2-D
 * volume is left alone.  Output size: floor(n / f). */
static vxm_volume *downsample(const vxm_volume *v, int f, int labels)
{
    int fa[3], shp[3];
    for (int d = 0; d < 3; d++) {
        fa[d] = (v->ndim == 2 && d == 0) ? 1 : f;
        shp[d] = v->shape[d] / fa[d];
    }
    vxm_volume *o = vxm_volume_new(v->ndim, shp, 1);
    if (!o)
        return NULL;
    for (int i = 0; i < shp[0]; i++)
        for (int j = 0; j < shp[1]; j++)
            for (int k = 0; k < shp[2]; k++) {
                double acc = 0;
                if (labels) {
                    int a = i * fa[0] + fa[0] / 2, b = j * fa[1] + fa[1] / 2, c = k * fa[2] + fa[2] / 2;
                    acc = v->data[((size_t)a * v->shape[1] + b) * v->shape[2] + c];
                } else {
                    for (int a = 0; a < fa[0]; a++)
                        for (int b = 0; b < fa[1]; b++)
                            for (int c = 0; c < fa[2]; c++)
                                acc += v->data[((size_t)(i * fa[0] + a) * v->shape[1] + j * fa[1] + b) * v->shape[2] +
                                               k * fa[2] + c];
                    acc /= fa[0] * fa[1] * fa[2];
                }
                o->data[((size_t)i * shp[1] + j) * shp[2] + k] = (float)acc;
            }
    return o;
}

/* Centred crop or zero padding, per axis, to `shp`. */
static vxm_volume *fit(const vxm_volume *v, const int shp[3])
{
    vxm_volume *o = vxm_volume_new(v->ndim, shp, 1);
    if (!o)
        return NULL;
    int off[3];
    for (int d = 0; d < 3; d++)
        off[d] = (v->shape[d] - shp[d]) / 2; /* source index = output index + off */
    for (int i = 0; i < shp[0]; i++)
        for (int j = 0; j < shp[1]; j++)
            for (int k = 0; k < shp[2]; k++) {
                int a = i + off[0], b = j + off[1], c = k + off[2];
                int in = a >= 0 && a < v->shape[0] && b >= 0 && b < v->shape[1] && c >= 0 && c < v->shape[2];
                o->data[((size_t)i * shp[1] + j) * shp[2] + k] =
                    in ? v->data[((size_t)a * v->shape[1] + b) * v->shape[2] + c] : 0.0f;
            }
    return o;
}

/* Reduces (slice, downsample, fit) one array of the scan; takes ownership of `v`. */
static vxm_volume *reduce(vxm_volume *v, const options *o, int labels)
{
    vxm_volume *t = v;
    if (!o->three_d) {
        t = middle_slice(v);
        vxm_volume_free(v);
    }
    if (!t)
        return NULL;
    vxm_volume *s = downsample(t, o->factor, labels);
    vxm_volume_free(t);
    if (!s)
        return NULL;
    int shp[3];
    if (o->have_shape)
        memcpy(shp, o->shape, sizeof shp);
    else
        vxm_padded_shape(16, s->ndim, s->shape, shp);
    vxm_volume *r = fit(s, shp);
    vxm_volume_free(s);
    return r;
}

/* Zeroes every label not in `keep` or covering fewer than min_voxels voxels; returns the number kept. */
static int filter_labels(vxm_volume *seg, const vxm_volume *keep, int min_voxels)
{
    size_t n = vxm_volume_numel(seg), nk = vxm_volume_numel(keep);
    int kept = 0;
    for (size_t l = 0; l < nk; l++) {
        float lab = keep->data[l];
        size_t count = 0;
        for (size_t i = 0; i < n; i++)
            count += seg->data[i] == lab;
        if (lab != 0.0f && count >= (size_t)min_voxels) {
            kept++;
            for (size_t i = 0; i < n; i++)
                if (seg->data[i] == lab)
                    seg->data[i] = -lab; /* mark as kept */
        }
    }
    for (size_t i = 0; i < n; i++)
        seg->data[i] = seg->data[i] < 0 ? -seg->data[i] : 0.0f;
    return kept;
}

/* Random smooth displacement (ndim channels) in voxels of the cohort; largest magnitude 0.6..1 x amp. */
static vxm_volume *random_field(rng *r, const vxm_volume *like, double amp)
{
    int nd = like->ndim, a0 = 3 - nd; /* first image axis */
    vxm_volume *w = vxm_volume_new(nd, like->shape, nd);
    if (!w)
        return NULL;
    double k[3][WAVES][3], ph[3][WAVES], am[3][WAVES], ext = 0;
    for (int d = a0; d < 3; d++)
        ext = fmax(ext, like->shape[d]);
    for (int c = 0; c < nd; c++)
        for (int q = 0; q < WAVES; q++) {
            double u[3] = {0, 0, 0}, norm = 0;
            for (int d = a0; d < 3; d++) {
                u[d] = uniform(r, -1, 1);
                norm += u[d] * u[d];
            }
            double lambda = uniform(r, 0.6, 1.2) * ext; /* wavelength: about the image size */
            for (int d = 0; d < 3; d++)
                k[c][q][d] = 2 * PI * u[d] / (sqrt(norm) + 1e-12) / lambda;
            ph[c][q] = uniform(r, 0, 2 * PI);
            am[c][q] = uniform(r, -1, 1);
        }
    size_t n = vxm_volume_numel(like);
    double peak = 0;
    for (int i = 0; i < like->shape[0]; i++)
        for (int j = 0; j < like->shape[1]; j++)
            for (int l = 0; l < like->shape[2]; l++) {
                size_t v = ((size_t)i * like->shape[1] + j) * like->shape[2] + l;
                double x[3] = {i, j, l}, m2 = 0;
                for (int c = 0; c < nd; c++) {
                    double s = 0;
                    for (int q = 0; q < WAVES; q++)
                        s += am[c][q] * sin(k[c][q][0] * x[0] + k[c][q][1] * x[1] + k[c][q][2] * x[2] + ph[c][q]);
                    w->data[v * nd + c] = (float)s;
                    m2 += s * s;
                }
                peak = fmax(peak, m2);
            }
    double scale = amp * uniform(r, 0.6, 1.0) / (sqrt(peak) + 1e-12);
    for (size_t i = 0; i < n * (size_t)nd; i++)
        w->data[i] = (float)(w->data[i] * scale);
    return w;
}

/* Gamma and a linear bias field along a random direction, clamped to [0, 1]. */
static void intensity(rng *r, vxm_volume *img)
{
    double gamma = exp(uniform(r, log(0.9), log(1.0 / 0.9))), b = uniform(r, -0.05, 0.05), u[3], c[3], ext = 0;
    for (int d = 0; d < 3; d++) {
        u[d] = img->shape[d] > 1 ? uniform(r, -1, 1) : 0;
        c[d] = (img->shape[d] - 1) / 2.0;
        ext += fabs(u[d]) * c[d];
    }
    for (int i = 0; i < img->shape[0]; i++)
        for (int j = 0; j < img->shape[1]; j++)
            for (int l = 0; l < img->shape[2]; l++) {
                size_t v = ((size_t)i * img->shape[1] + j) * img->shape[2] + l;
                double t = (u[0] * (i - c[0]) + u[1] * (j - c[1]) + u[2] * (l - c[2])) / (ext + 1e-12);
                double x = img->data[v] > 0 ? pow(img->data[v], gamma) * (1 + b * t) : 0;
                img->data[v] = (float)fmin(1.0, fmax(0.0, x));
            }
}

/* One subject: warps the base image and labels with a new field, then changes the intensities; writes
 * DIR/NAME_img.nii.gz and DIR/NAME_seg.nii.gz.  *fold gets the voxels with det J <= 0 (0 expected). */
static int subject(vxm_context *ctx, vxm_backend *be, rng *r, const base *b, const options *o, const char *name,
                   size_t *fold)
{
    vxm_volume *w = random_field(r, b->img, o->amp_mm / o->factor), *img = NULL, *seg = NULL;
    if (!w) {
        fprintf(stderr, "make_cohort: out of memory\n");
        return 1;
    }
    char path[4096];
    vxm_jacobian_summary js;
    int rc = vxm_jacobian_stats(ctx, w, &js) || vxm_warp_volume(ctx, be, b->img, w, 0, &img) ||
             vxm_warp_volume(ctx, be, b->seg, w, 1, &seg);
    if (!rc) {
        *fold = js.nonpositive;
        intensity(r, img);
        if (o->invert_fixed && strstr(name, "_fix"))
            for (size_t i = 0; i < vxm_volume_numel(img); i++)
                img->data[i] = 1.0f - img->data[i];
        snprintf(path, sizeof path, "%s/%s_img.nii.gz", o->out, name);
        rc = vxm_volume_write(ctx, path, img, NULL);
    }
    if (!rc) {
        snprintf(path, sizeof path, "%s/%s_seg.nii.gz", o->out, name);
        rc = vxm_volume_write(ctx, path, seg, NULL);
    }
    vxm_volume_free(w);
    vxm_volume_free(img);
    vxm_volume_free(seg);
    return rc ? fail(ctx) : 0;
}

/* n pairs "PFXNNN_mov PFXNNN_fix", listed in DIR/LIST. */
static int pairs(vxm_context *ctx, vxm_backend *be, rng *r, const base *b, const options *o, const char *pfx,
                 int n, const char *list)
{
    char path[4096], name[64];
    snprintf(path, sizeof path, "%s/%s", o->out, list);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return 1;
    }
    size_t fold = 0, total = 0;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        for (int s = 0; s < 2 && !rc; s++) {
            snprintf(name, sizeof name, "%s%03d_%s", pfx, i, s ? "fix" : "mov");
            rc = subject(ctx, be, r, b, o, name, &fold);
            total += fold;
        }
        fprintf(f, "%s%03d_mov %s%03d_fix\n", pfx, i, pfx, i);
    }
    if (fclose(f) && !rc) {
        perror(path);
        rc = 1;
    }
    if (!rc)
        printf("make_cohort: %d %s pairs -> %s (voxels with det J <= 0 in the generated fields: %zu)\n", n,
               strcmp(pfx, "tr") ? "held-out" : "training", path, total);
    return rc;
}

static int parse(int argc, char **argv, options *o)
{
    *o = (options){NULL, NULL, NULL, 8, 4, 0, 2, {0, 0, 0}, 0, 16, 6.0, 1, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "--scan") && more)
            o->scan = argv[++i];
        else if (!strcmp(a, "--labels") && more)
            o->labels = argv[++i];
        else if (!strcmp(a, "--out") && more)
            o->out = argv[++i];
        else if (!strcmp(a, "--train") && more)
            o->ntrain = atoi(argv[++i]);
        else if (!strcmp(a, "--test") && more)
            o->ntest = atoi(argv[++i]);
        else if (!strcmp(a, "--invert-fixed"))
            o->invert_fixed = 1;
        else if (!strcmp(a, "--3d"))
            o->three_d = 1;
        else if (!strcmp(a, "--factor") && more)
            o->factor = atoi(argv[++i]);
        else if (!strcmp(a, "--amp") && more)
            o->amp_mm = atof(argv[++i]);
        else if (!strcmp(a, "--min-voxels") && more)
            o->min_voxels = atoi(argv[++i]);
        else if (!strcmp(a, "--seed") && more)
            o->seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--shape")) {
            int v[3], n = 0;
            while (n < 3 && i + 1 < argc && argv[i + 1][0] != '-')
                v[n++] = atoi(argv[++i]);
            if (n < 2)
                return 1;
            o->have_shape = n; /* 2: {1, H, W} (2-D), 3: {D, H, W} (--3d) */
            o->shape[0] = n == 3 ? v[0] : 1;
            o->shape[1] = v[n - 2];
            o->shape[2] = v[n - 1];
        } else
            return 1;
    }
    return !o->scan || !o->labels || !o->out || o->ntrain < 0 || o->ntest < 0 || o->ntrain + o->ntest < 1 ||
           o->factor < 1 || !(o->amp_mm >= 0) ||
           (o->have_shape && (o->have_shape != 2 + o->three_d || o->shape[0] < 1 || o->shape[1] < 1 || o->shape[2] < 1));
}

int main(int argc, char **argv)
{
    options o;
    if (parse(argc, argv, &o)) {
        fprintf(stderr, "usage: make_cohort --scan S.npz --labels L.npz --out DIR [--train N] [--test M] [--3d]\n"
                        "                   [--factor F] [--shape [D] H W] [--amp MM] [--min-voxels V] [--seed S]\n"
                        "                   [--invert-fixed]\n");
        return 2;
    }
    if (mkdir(o.out, 0777) && errno != EEXIST) {
        perror(o.out);
        return 1;
    }
    vxm_context *ctx = vxm_context_create();
    vxm_backend *be = NULL;
    vxm_volume *vol = NULL, *seg = NULL, *keep = NULL;
    base b = {NULL, NULL, 0};
    int rc = vxm_volume_read(ctx, o.scan, "vol", &vol) || vxm_volume_read(ctx, o.scan, "seg", &seg) ||
             vxm_volume_read(ctx, o.labels, "labels", &keep) || vxm_backend_open(ctx, "cpu", &be);
    if (rc) {
        rc = fail(ctx);
    } else {
        b.img = reduce(vol, &o, 0);
        b.seg = reduce(seg, &o, 1);
        vol = seg = NULL; /* owned by reduce */
        if (!b.img || !b.seg) {
            fprintf(stderr, "make_cohort: out of memory\n");
            rc = 1;
        }
    }
    if (!rc) {
        b.nlabels = filter_labels(b.seg, keep, o.min_voxels);
        printf("make_cohort: %s base %dx%dx%d (factor %d), %d labels of %s with >= %d voxels, displacement "
               "<= %.1f mm (%.2f voxels) per subject, seed %llu\n",
               o.three_d ? "3-D" : "2-D (middle slice along axis 2)", b.img->shape[0], b.img->shape[1],
               b.img->shape[2], o.factor, b.nlabels, o.labels, o.min_voxels, o.amp_mm, o.amp_mm / o.factor,
               (unsigned long long)o.seed);
        rng r = {o.seed * 0x2545f4914f6cdd1dULL + 1};
        if (o.ntrain > 0)
            rc = pairs(ctx, be, &r, &b, &o, "tr", o.ntrain, "train_pairs.txt");
        if (!rc && o.ntest > 0)
            rc = pairs(ctx, be, &r, &b, &o, "te", o.ntest, "test_pairs.txt");
    }
    vxm_volume_free(vol);
    vxm_volume_free(seg);
    vxm_volume_free(keep);
    vxm_volume_free(b.img);
    vxm_volume_free(b.seg);
    vxm_backend_close(be);
    vxm_context_free(ctx);
    return rc;
}
