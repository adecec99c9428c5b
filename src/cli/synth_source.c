/* SynthMorph's training data on the host side: options, label maps (files or shapes), and one synthetic sample
 * per call through src/synth on the device (training doc §6.1-6.3). */
#include "cli/synth_source.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char synth_options_usage[] =
    "  label maps (one of):\n"
    "  --label-maps LIST  label maps, one file per line      --labels-in SEG   one label map\n"
    "  --shapes --inshape XxY[xZ] [--nb-labels 26]  random shapes from noise (no data at all)\n"
    "  synthesis (neurite labels_to_image defaults):\n"
    "  --vel-std 0.5  --vel-res 16 [...]  SVF noise SD and scales    --blur-std 1    --gamma 0.25\n"
    "  --bias-std 0.3 --bias-res 40 [...] bias field                 --modulate      draw SDs from U(0, max)\n";

void synth_spec_default(synth_spec *s)
{
    memset(s, 0, sizeof *s);
    vxm_synth_options_default(&s->syn);
    vxm_shapes_options_default(&s->shp);
}

static int parse_shape(const char *v, int *ndim, int shape[3])
{
    int n[3], k = 0;
    const char *p = v;
    while (k < 3) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 2 || x > 4096)
            break;
        n[k++] = (int)x;
        if (*end == '\0') {
            if (k < 2)
                break;
            *ndim = k;
            shape[0] = k == 2 ? 1 : n[0];
            shape[1] = n[k - 2];
            shape[2] = n[k - 1];
            return 0;
        }
        if (*end != 'x')
            break;
        p = end + 1;
    }
    return cli_usage_error("--inshape: expected XxY or XxYxZ (sizes 2..4096), not '%s'", v);
}

/* --vel-res 8 16 32: scales >= 1 */
static int parse_scales(cli_args *a, double *out, int *n)
{
    const char *v[VXM_SYNTH_MAX_RES];
    int k = cli_values(a, v, VXM_SYNTH_MAX_RES);
    if (k <= 0)
        return -1;
    for (int i = 0; i < k; i++)
        if (cli_parse_double(a->name, v[i], 1, 1e4, &out[i]))
            return -1;
    *n = k;
    return 1;
}

int synth_option(cli_args *a, synth_spec *s)
{
    struct { const char *name; double *dst; double lo, hi; } nums[] = {
        {"--vel-std", &s->syn.vel_std, 0, 1e3},     {"--blur-std", &s->syn.blur_std, 0, 10},
        {"--bias-std", &s->syn.bias_std, 0, 10},    {"--gamma", &s->syn.gamma_std, 0, 10},
        {"--shapes-res", &s->shp.noise_res, 1, 1e4}, {"--shapes-warp-std", &s->shp.warp_std, 0, 1e3}};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        if (cli_is(a, nums[i].name)) {
            const char *v = cli_value(a);
            return v && !cli_parse_double(a->name, v, nums[i].lo, nums[i].hi, nums[i].dst) ? 1 : -1;
        }
    const char **strs[] = {&s->label_maps, &s->labels_in};
    const char *snames[] = {"--label-maps", "--labels-in"};
    for (int i = 0; i < 2; i++)
        if (cli_is(a, snames[i]))
            return (*strs[i] = cli_value(a)) ? 1 : -1;
    if (cli_is(a, "--vel-res"))
        return parse_scales(a, s->syn.vel_res, &s->syn.n_vel_res);
    if (cli_is(a, "--bias-res"))
        return parse_scales(a, s->syn.bias_res, &s->syn.n_bias_res);
    if (cli_is(a, "--modulate"))
        return s->syn.modulate = 1;
    if (cli_is(a, "--shapes"))
        return s->shapes = 1;
    if (cli_is(a, "--nb-labels")) {
        const char *v = cli_value(a);
        return v && !cli_parse_int(a->name, v, 2, SYNTH_MAX_LABELS, &s->shp.nlab) ? 1 : -1;
    }
    if (cli_is(a, "--inshape")) {
        const char *v = cli_value(a);
        return v && !parse_shape(v, &s->ndim, s->shape) ? 1 : -1;
    }
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Adds the labels of one map to the sorted set s->in_labels. */
static int collect_labels(synth_source *s, const char *path, const vxm_volume *v)
{
    size_t n = vxm_volume_numel(v);
    int last = 0, have_last = 0;
    for (size_t i = 0; i < n; i++) {
        float x = v->data[i];
        if (!isfinite(x) || fabsf(x) > 2e9f || x != rintf(x)) {
            fprintf(stderr, "vxm: %s: label %g is not an integer (a label map is needed)\n", path, (double)x);
            return 1;
        }
        int l = (int)x;
        if (have_last && l == last)
            continue;
        last = l;
        have_last = 1;
        int *hit = bsearch(&l, s->in_labels, (size_t)s->nin, sizeof(int), cmp_int);
        if (hit)
            continue;
        if (s->nin >= SYNTH_MAX_LABELS) {
            fprintf(stderr, "vxm: %s: more than %d labels\n", path, SYNTH_MAX_LABELS);
            return 1;
        }
        s->in_labels[s->nin++] = l;
        qsort(s->in_labels, (size_t)s->nin, sizeof(int), cmp_int);
    }
    return 0;
}

static int to_index(synth_source *s, const vxm_volume *v, float *out)
{
    size_t n = vxm_volume_numel(v);
    for (size_t i = 0; i < n; i++) {
        int l = (int)v->data[i];
        const int *hit = bsearch(&l, s->in_labels, (size_t)s->nin, sizeof(int), cmp_int);
        out[i] = (float)(hit - s->in_labels);
    }
    return 0;
}

/* One-hot channels: the --out-labels present in the maps, sorted (train_synthmorph.py), else every input label
 * (labels_to_image's default, label 0 included). */
static int make_lut(vxm_context *ctx, synth_source *s)
{
    int want[SYNTH_MAX_LABELS], nwant = 0;
    if (s->spec.out_labels && cli_read_labels(ctx, s->spec.out_labels, want, SYNTH_MAX_LABELS, &nwant))
        return 1;
    s->nout = 0;
    for (int i = 0; i < s->nin; i++) {
        int keep = !s->spec.out_labels;
        for (int j = 0; j < nwant && !keep; j++)
            keep = want[j] == s->in_labels[i];
        s->lut[i] = keep ? s->nout : -1;
        if (keep)
            s->out_labels[s->nout++] = s->in_labels[i];
    }
    if (s->nout == 0) {
        fprintf(stderr, "vxm: %s: none of these labels occurs in the label maps\n", s->spec.out_labels);
        return 1;
    }
    return 0;
}

static int add_map(vxm_context *ctx, synth_source *s, const char *path)
{
    vxm_volume *v = NULL;
    if (vxm_volume_read(ctx, path, "seg", &v))
        return cli_fail(ctx);
    int rc = 0;
    if (v->channels != 1) {
        fprintf(stderr, "vxm: %s: a label map has one channel, this has %d\n", path, v->channels);
        rc = 1;
    } else if (s->nmaps == 0) {
        s->ndim = v->ndim;
        memcpy(s->shape, v->shape, sizeof s->shape);
        for (int d = 3 - v->ndim; d < 3 && !rc; d++)
            if (v->shape[d] % 2) {
                fprintf(stderr, "vxm: %s: SynthMorph needs even sizes (its field is drawn at half size), not %d\n",
                        path, v->shape[d]);
                rc = 1;
            }
    } else if (v->ndim != s->ndim || memcmp(v->shape, s->shape, sizeof s->shape)) {
        fprintf(stderr, "vxm: %s: shape differs from the first label map's\n", path);
        rc = 1;
    }
    if (!rc)
        rc = collect_labels(s, path, v);
    float **idx = rc ? NULL : realloc(s->index, sizeof *idx * (size_t)(s->nmaps + 1));
    if (!rc && !idx) {
        fprintf(stderr, "vxm: out of memory\n");
        rc = 1;
    }
    if (!rc) {
        s->index = idx;
        s->index[s->nmaps++] = v->data; /* converted to indices once every label is known */
        v->data = NULL;
        if (!s->like) {
            s->like = v;
            v = NULL;
        }
    }
    vxm_volume_free(v);
    return rc;
}

int synth_source_open(vxm_context *ctx, const synth_spec *spec, synth_source *s)
{
    memset(s, 0, sizeof *s);
    s->spec = *spec;
    int nsrc = !!spec->shapes + !!spec->label_maps + !!spec->labels_in;
    if (nsrc != 1)
        return cli_usage_error("give exactly one of --shapes, --label-maps LIST, --labels-in SEG");
    if (spec->shapes) {
        if (!spec->ndim)
            return cli_usage_error("--shapes needs --inshape XxY[xZ]");
        for (int d = 3 - spec->ndim; d < 3; d++)
            if (spec->shape[d] % 2)
                return cli_usage_error("--inshape: SynthMorph needs even sizes, not %d", spec->shape[d]);
        s->ndim = spec->ndim;
        memcpy(s->shape, spec->shape, sizeof s->shape);
        s->nin = spec->shp.nlab;
        for (int i = 0; i < s->nin; i++)
            s->in_labels[i] = i;
        return make_lut(ctx, s);
    }
    int rc = 0;
    if (spec->labels_in) {
        rc = add_map(ctx, s, spec->labels_in);
    } else {
        static const cli_list_format fmt = {1, 1, "one label map", "label maps"};
        cli_list l;
        if (cli_list_read(spec->label_maps, &fmt, &l))
            return 1;
        for (int i = 0; i < l.rows && !rc; i++)
            rc = add_map(ctx, s, cli_list_name(&l, i, 0));
        cli_list_free(&l);
    }
    if (!rc && s->nin < 2) {
        fprintf(stderr, "vxm: %s: a label map with one label (%d) gives a constant image\n",
                spec->labels_in ? spec->labels_in : spec->label_maps, s->nin ? s->in_labels[0] : 0);
        rc = 1;
    }
    for (int i = 0; i < s->nmaps && !rc; i++) {
        vxm_volume tmp = *s->like;
        tmp.data = s->index[i];
        rc = to_index(s, &tmp, s->index[i]);
    }
    if (!rc)
        rc = make_lut(ctx, s);
    if (rc)
        synth_source_close(s);
    return rc;
}

void synth_source_close(synth_source *s)
{
    for (int i = 0; i < s->nmaps; i++)
        free(s->index[i]);
    free(s->index);
    vxm_volume_free(s->like);
    s->index = NULL;
    s->like = NULL;
    s->nmaps = 0;
}

/* np.flip of the map along the flagged image axes (vxm.generators.synthmorph: the same flips for every map of a
 * step). */
static void flip_copy(const synth_source *s, const float *in, const int *flip, float *out)
{
    const int *n = s->shape;
    for (int i = 0; i < n[0]; i++)
        for (int j = 0; j < n[1]; j++)
            for (int k = 0; k < n[2]; k++) {
                int si = flip[0] ? n[0] - 1 - i : i, sj = flip[1] ? n[1] - 1 - j : j, sk = flip[2] ? n[2] - 1 - k : k;
                out[((size_t)i * n[1] + j) * n[2] + k] = in[((size_t)si * n[1] + sj) * n[2] + sk];
            }
}

/* The synthesis proper: the (flipped) map's indices to the device, labels_to_image into img (shape x nchan) and
 * warped (shape x 1, input-label indices). */
static vxm_status draw_indices(synth_source *s, vxm_backend *be, int map, const int *flip, unsigned long long seed,
                               unsigned long long stream, unsigned long long step_stream, vxm_tensor *img,
                               vxm_tensor *warped)
{
    vxm_tensor idx = {{0}, 0, NULL};
    size_t nvox = (size_t)s->shape[0] * s->shape[1] * s->shape[2];
    float *host = NULL;
    vxm_status st = vxm_tensor_alloc(be, s->shape, 1, &idx);
    if (!st && s->spec.shapes) {
        /* shape maps have their own stream (map number), so that a pair can share one map */
        st = vxm_synth_shapes(be, &s->spec.shp, s->ndim, seed ^ 0x5AA5F00DULL, (unsigned long long)map, &idx);
    } else if (!st) {
        const float *src = s->index[map];
        if (flip && (flip[0] || flip[1] || flip[2])) {
            if (!(host = malloc(nvox * sizeof *host)))
                st = vxm_error(be->ctx, VXM_ENOMEM, "synth", "out of memory");
            else
                flip_copy(s, src, flip, host);
            src = host;
        }
        if (!st)
            st = vxm_tensor_upload(be, &idx, src);
    }
    if (!st)
        st = vxm_synth_labels_to_image(be, &s->spec.syn, s->ndim, &idx, s->nin, seed, stream, step_stream, img,
                                       warped);
    free(host);
    vxm_tensor_release(be, &idx);
    return st;
}

vxm_status synth_source_draw(synth_source *s, vxm_backend *be, int map, const int *flip, unsigned long long seed,
                             unsigned long long stream, unsigned long long step_stream, float *image, float *onehot,
                             float *labels)
{
    vxm_tensor img = {{0}, 0, NULL}, warped = {{0}, 0, NULL}, hot = {{0}, 0, NULL};
    size_t nvox = (size_t)s->shape[0] * s->shape[1] * s->shape[2];
    vxm_status st = vxm_tensor_alloc(be, s->shape, s->spec.syn.nchan, &img);
    if (!st && !(st = vxm_tensor_alloc(be, s->shape, 1, &warped)))
        st = draw_indices(s, be, map, flip, seed, stream, step_stream, &img, &warped);
    if (!st && image)
        st = vxm_tensor_download(be, &img, image);
    if (!st && onehot && !(st = vxm_tensor_alloc(be, s->shape, s->nout, &hot)) &&
        !(st = be->ops->one_hot(be, &warped, s->lut, s->nin, &hot)))
        st = vxm_tensor_download(be, &hot, onehot);
    if (!st && labels && !(st = vxm_tensor_download(be, &warped, labels)))
        for (size_t v = 0; v < nvox; v++) {
            int l = s->lut[(int)labels[v]];
            labels[v] = l >= 0 ? (float)s->out_labels[l] : 0.0f;
        }
    vxm_tensor_release(be, &img);
    vxm_tensor_release(be, &warped);
    vxm_tensor_release(be, &hot);
    return st;
}

vxm_status synth_source_draw_device(synth_source *s, vxm_backend *be, int map, const int *flip,
                                    unsigned long long seed, unsigned long long stream,
                                    unsigned long long step_stream, vxm_tensor *image, vxm_tensor *onehot)
{
    vxm_tensor warped = {{0}, 0, NULL};
    vxm_status st = vxm_tensor_alloc(be, s->shape, 1, &warped);
    if (!st)
        st = draw_indices(s, be, map, flip, seed, stream, step_stream, image, &warped);
    if (!st)
        st = be->ops->one_hot(be, &warped, s->lut, s->nin, onehot);
    vxm_tensor_release(be, &warped);
    return st;
}
