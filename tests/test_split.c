/* Channel-group splitting of over-wide tensors (graph/split.h; training doc §6.4, the 256-feature SynthMorph
 * models), on small shapes with forced limits:
 *  1. a VxmDense config as train_synthmorph.py saves it (non-null input_model, the deprecated int_downsize and
 *     unet_half_res) loads: input_model is ignored (§6.1); a non-null hyp_model is still refused;
 *  2. 2-D half-resolution U-Net, limit below the first encoder conv: the conv -> max-pool pair becomes channel
 *     groups (kernel/bias slices, concats), every tensor fits, and warp and moved image equal the unsplit run's --
 *     bit for bit on the CPU backend, within float tolerance on every OpenCL device;
 *  3. a limit that splitting cannot meet fails with one line naming the layer and sizes, graph unchanged;
 *  4. vxm_register on a 3-D model with VXM_MAX_ALLOC_MB (the cached weights plus per-run slices) equals the run
 *     without it, per backend.
 * Helpers for tests/t_synthmorph_256f.sh: `--write-synthmorph PATH` writes a synthetic model of the published shape
 * (random weights), `--compare A B` prints non-finite count, max |A| and max |A - B|, `--crop IN OUT N0 N1 N2`
 * writes a centred crop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/split.h"
#include "model/keras_h5_write.h"
#include "model/model.h"
#include "test_backends.h"

/* The layers of a VxmDense with one conv per level (model/vxm_dense_graph.c build_unet), in/out channels. */
#define TS_MAX_LAYERS 24
typedef struct ts_net {
    int nl;
    char name[TS_MAX_LAYERS][64];
    int cin[TS_MAX_LAYERS], cout[TS_MAX_LAYERS];
} ts_net;

static void net_layers(ts_net *n, int ndim, int nin, const int *enc, int nenc, const int *dec, int ndec, int half)
{
    int L = nenc + 1, cin = nin, skip[16];
    n->nl = 0;
#define LAYER(ci, co, ...)                                                                                          \
    do {                                                                                                            \
        snprintf(n->name[n->nl], sizeof n->name[0], __VA_ARGS__);                                                   \
        n->cin[n->nl] = (ci);                                                                                       \
        n->cout[n->nl++] = (co);                                                                                    \
    } while (0)
    for (int l = 0; l < nenc; l++) {
        LAYER(cin, enc[l], "vxm_dense_unet_enc_conv_%d_0", l);
        cin = skip[l] = enc[l];
    }
    for (int t = 0; t < nenc; t++) {
        int r = L - 2 - t;
        LAYER(cin, dec[t], "vxm_dense_unet_dec_conv_%d_0", r);
        cin = dec[t] + (t < L - 1 - half ? skip[r] : 0);
    }
    for (int k = nenc; k < ndec; k++) {
        LAYER(cin, dec[k], "vxm_dense_unet_dec_final_conv_%d", k - nenc);
        cin = dec[k];
    }
    LAYER(cin, ndim, "vxm_dense_flow");
#undef LAYER
}

/* A VxmDense .h5 with random weights (He-uniform convs, small biases; the flow head scaled by flow_gain). */
static vxm_status write_model(vxm_context *ctx, const char *path, const char *config, int ndim, int nin,
                              const int *enc, int nenc, const int *dec, int ndec, float flow_gain)
{
    ts_net n;
    net_layers(&n, ndim, nin, enc, nenc, dec, ndec, 1);
    vxm_h5_out_weight w[2 * TS_MAX_LAYERS];
    const char *names[TS_MAX_LAYERS];
    float *data[2 * TS_MAX_LAYERS] = {NULL};
    unsigned long long s = 20240917;
    vxm_status st = VXM_OK;
    for (int i = 0; i < n.nl && !st; i++) {
        names[i] = n.name[i];
        size_t fan = (size_t)n.cin[i], nk = (size_t)n.cin[i] * (size_t)n.cout[i];
        for (int d = 0; d < ndim; d++)
            fan *= 3, nk *= 3;
        data[2 * i] = malloc(nk * sizeof(float));
        data[2 * i + 1] = malloc((size_t)n.cout[i] * sizeof(float));
        if (!data[2 * i] || !data[2 * i + 1]) {
            st = vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
            break;
        }
        double a = sqrt(6.0 / (double)fan) * (i == n.nl - 1 ? flow_gain : 1.0);
        for (size_t k = 0; k < nk; k++)
            data[2 * i][k] = (float)tu_urand(&s, -a, a);
        for (int k = 0; k < n.cout[i]; k++)
            data[2 * i + 1][k] = (float)tu_urand(&s, -0.05, 0.05);
        for (int k = 0; k < 2; k++) {
            vxm_h5_out_weight *o = &w[2 * i + k];
            o->layer = n.name[i];
            o->kind = k ? "bias" : "kernel";
            o->data = data[2 * i + k];
            if (k) {
                o->rank = 1;
                o->dims[0] = n.cout[i];
            } else {
                o->rank = ndim + 2;
                for (int d = 0; d < ndim; d++)
                    o->dims[d] = 3;
                o->dims[ndim] = n.cin[i];
                o->dims[ndim + 1] = n.cout[i];
            }
        }
    }
    if (!st)
        st = vxm_h5_write_model(ctx, path, config, names, n.nl, w, 2 * n.nl);
    for (int i = 0; i < 2 * n.nl; i++)
        free(data[i]);
    return st;
}

/* model_config as train_synthmorph.py saves it (training doc §6.1, §6.4): a serialised generative input_model,
 * the deprecated unet_half_res and int_downsize.  `feats` is the nb_unet_features JSON. */
static void synth_config(char *out, size_t n, const char *inshape, const char *feats, const char *hyp_model)
{
    snprintf(out, n,
             "{\"class_name\": \"VxmDense\", \"config\": {\"inshape\": %s, \"nb_unet_features\": %s, "
             "\"nb_unet_levels\": null, \"unet_feat_mult\": 1, \"nb_unet_conv_per_level\": 1, \"int_steps\": 5, "
             "\"int_downsize\": 2, \"svf_resolution\": 1, \"int_resolution\": 2, \"bidir\": false, "
             "\"use_probs\": false, \"src_feats\": 1, \"trg_feats\": 1, \"unet_half_res\": true, "
             "\"input_model\": {\"class_name\": \"Functional\", \"config\": {\"name\": \"model\", \"layers\": "
             "[{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 32, 32, 1], \"dtype\": "
             "\"int32\", \"name\": \"input_1\"}, \"name\": \"input_1\", \"inbound_nodes\": []}], \"input_layers\": "
             "[[\"input_1\", 0, 0]], \"output_layers\": [[\"input_1\", 0, 0]]}}, \"hyp_model\": %s, "
             "\"fill_value\": null, \"reg_field\": \"preintegrated\", \"name\": \"vxm_dense\"}}",
             inshape, feats, hyp_model);
}

static const int enc2[] = {32, 8, 8}, dec2[] = {8, 8, 8, 8, 8};

/* ---- 1. configs with input_model ------------------------------------------------------------------------- */

static void test_config(vxm_context *ctx)
{
    const char *name = "split: VxmDense config with a non-null input_model loads (ignored, §6.1)";
    char cfg[2048];
    const char *path = "tests/out/split_input_model.h5";
    synth_config(cfg, sizeof cfg, "[32, 32]", "[[32, 8, 8], [8, 8, 8, 8, 8]]", "null");
    vxm_model *m = NULL;
    if (write_model(ctx, path, cfg, 2, 2, enc2, 3, dec2, 5, 0.2f) || vxm_model_load(ctx, path, &m)) {
        tu_report(0, name, "%s", vxm_context_error(ctx));
        return;
    }
    const vxm_dense_config *c = &m->dense;
    tu_report(m->kind == VXM_MODEL_VXMDENSE && c->svf_resolution == 2 && c->int_resolution == 2 &&
                  c->int_steps == 5 && c->n_enc == 3 && c->n_dec == 5,
              name, "svf %g int_res %g int_steps %d", c->svf_resolution, c->int_resolution, c->int_steps);
    vxm_model_free(m);
    vxm_dense_config dc;
    synth_config(cfg, sizeof cfg, "[32, 32]", "[[32, 8, 8], [8, 8, 8, 8, 8]]", "{\"class_name\": \"Functional\"}");
    vxm_status st = vxm_dense_config_parse(ctx, "json", cfg, &dc);
    tu_report(st == VXM_EUNSUPPORTED && strstr(vxm_context_error(ctx), "hyp_model"),
              "split: a VxmDense config with a non-null hyp_model is still refused", "status %d: %s", st,
              vxm_context_error(ctx));
}

/* ---- 2-3. the graph pass -------------------------------------------------------------------------------- */

static int count_op(const vxm_graph *g, vxm_op op)
{
    int k = 0;
    for (int i = 0; i < g->n; i++)
        k += g->nodes[i].op == op;
    return k;
}

static unsigned long long max_tensor(const vxm_graph *g)
{
    unsigned long long m = 0;
    for (int i = 0; i < g->n; i++)
        if ((unsigned long long)vxm_node_numel(&g->nodes[i]) * 4 > m)
            m = (unsigned long long)vxm_node_numel(&g->nodes[i]) * 4;
    return m;
}

static vxm_status run_graph(vxm_context *ctx, vxm_backend *be, const vxm_graph *g, const float *mov,
                            const float *fix, float *warp, float *moved)
{
    vxm_exec *ex = NULL;
    vxm_status st = vxm_exec_begin(be, g, mov, fix, 1, 0, &ex);
    if (!st)
        st = vxm_exec_run_all(ex);
    if (!st)
        st = vxm_exec_read(ex, g->out_warp, warp);
    if (!st)
        st = vxm_exec_read(ex, g->out_moved, moved);
    vxm_exec_end(ex);
    (void)ctx;
    return st;
}

static void fill_image(float *p, const int shape[3], unsigned long long seed)
{
    size_t n = (size_t)shape[0] * shape[1] * shape[2];
    for (size_t i = 0; i < n; i++) {
        int k = (int)(i % (size_t)shape[2]), j = (int)(i / (size_t)shape[2] % (size_t)shape[1]);
        int z = (int)(i / ((size_t)shape[1] * shape[2]));
        double r = 0.3 * sin(0.4 * k + 0.1 * seed) + 0.3 * cos(0.3 * j - 0.2 * seed) + 0.2 * sin(0.5 * z);
        p[i] = (float)(0.5 + r);
    }
}

static void test_graph(vxm_context *ctx, const tb_list *l)
{
    char cfg[2048];
    const char *path = "tests/out/split_2d.h5";
    synth_config(cfg, sizeof cfg, "[32, 32]", "[[32, 8, 8], [8, 8, 8, 8, 8]]", "null");
    vxm_model *m = NULL;
    vxm_graph *g0 = NULL, *g1 = NULL;
    const int shape[3] = {1, 32, 32};
    size_t nvox = 32 * 32;
    float *mov = malloc(nvox * 4), *fix = malloc(nvox * 4), *w[2], *mv[2];
    for (int k = 0; k < 2; k++) {
        w[k] = malloc(nvox * 2 * 4);
        mv[k] = malloc(nvox * 4);
    }
    fill_image(mov, shape, 1);
    fill_image(fix, shape, 2);
    /* 32x32x32 channels = 128 KiB at full resolution; 40 KiB allows 10 channels: groups of 8 */
    const unsigned long long limit = 40 << 10;
    const char *name = "split: 2-D conv -> max-pool split into 4 groups of 8 channels, every tensor <= limit";
    if (write_model(ctx, path, cfg, 2, 2, enc2, 3, dec2, 5, 0.3f) || vxm_model_load(ctx, path, &m) ||
        vxm_model_build_graph(ctx, m, 2, shape, &g0) || vxm_model_build_graph(ctx, m, 2, shape, &g1) ||
        vxm_graph_split_wide(ctx, &g1, limit, path)) {
        tu_report(0, name, "%s", vxm_context_error(ctx));
        goto done;
    }
    int dconv = count_op(g1, VXM_OP_CONV) - count_op(g0, VXM_OP_CONV);
    int dcat = count_op(g1, VXM_OP_CONCAT) - count_op(g0, VXM_OP_CONCAT);
    tu_report(dconv == 3 && dcat == 3 && g1->nparams == g0->nparams + 8 && max_tensor(g1) <= limit &&
                  max_tensor(g0) > limit,
              name, "%d more convs, %d more concats, %d -> %d params, largest tensor %llu bytes", dconv, dcat,
              g0->nparams, g1->nparams, max_tensor(g1));
    for (int b = 0; b < l->n; b++) {
        vxm_backend *be = l->be[b];
        char nm[256];
        int cpu = strcmp(be->spec, "cpu") == 0;
        snprintf(nm, sizeof nm, "split: %s: split graph = unsplit graph (%s)", be->spec,
                 cpu ? "bitwise" : "max |diff| <= 1e-4");
        if (run_graph(ctx, be, g0, mov, fix, w[0], mv[0]) || run_graph(ctx, be, g1, mov, fix, w[1], mv[1])) {
            tu_report(0, nm, "%s", vxm_context_error(ctx));
            continue;
        }
        double dw = tu_max_abs_diff(w[0], w[1], nvox * 2), dm = tu_max_abs_diff(mv[0], mv[1], nvox);
        int same = memcmp(w[0], w[1], nvox * 2 * 4) == 0 && memcmp(mv[0], mv[1], nvox * 4) == 0;
        tu_report(cpu ? same : dw <= 1e-4 && dm <= 1e-4, nm, "warp %.3g, moved %.3g", dw, dm);
    }

    /* 3. the pooled result (16x16x32 = 32 KiB) cannot go below 20 KiB, so neither can the conv: one line naming
     * it; graph unchanged */
    name = "split: an unsplittable tensor fails with one line naming the layer and sizes";
    int n_before = g0->n;
    vxm_graph *gb = g0;
    vxm_status st = vxm_graph_split_wide(ctx, &g0, 20 << 10, path);
    const char *e = vxm_context_error(ctx);
    tu_report(st == VXM_EUNSUPPORTED && strstr(e, "vxm_dense_unet_enc_conv_0") && strstr(e, "1x32x32x32") &&
                  strstr(e, "cannot be split") && !strchr(e, '\n') && g0 == gb && g0->n == n_before,
              name, "status %d: %s", st, e);
done:
    vxm_graph_free(g0);
    vxm_graph_free(g1);
    vxm_model_free(m);
    free(mov);
    free(fix);
    for (int k = 0; k < 2; k++) {
        free(w[k]);
        free(mv[k]);
    }
}

/* ---- 4. vxm_register with VXM_MAX_ALLOC_MB ----------------------------------------------------------------- */

static void test_register(vxm_context *ctx, const tb_list *l)
{
    static const int enc[] = {64, 16, 16}, dec[] = {16, 16, 16, 16, 16};
    char cfg[2048];
    const char *path = "tests/out/split_3d.h5";
    synth_config(cfg, sizeof cfg, "[32, 32, 32]", "[[64, 16, 16], [16, 16, 16, 16, 16]]", "null");
    vxm_model *m = NULL;
    const int shape[3] = {32, 32, 32};
    vxm_volume *mov = vxm_volume_new(3, shape, 1), *fix = vxm_volume_new(3, shape, 1);
    fill_image(mov->data, shape, 3);
    fill_image(fix->data, shape, 4);
    if (write_model(ctx, path, cfg, 3, 2, enc, 3, dec, 5, 0.3f) || vxm_model_load(ctx, path, &m)) {
        tu_report(0, "split: register with VXM_MAX_ALLOC_MB", "%s", vxm_context_error(ctx));
        goto done;
    }
    /* level 0: 32^3 x 64 channels = 8 MiB; 4 MiB: two groups of 32 (the first run uploads the cached weights, the
     * second adds the slices) */
    for (int b = 0; b < l->n; b++) {
        vxm_backend *be = l->be[b];
        int cpu = strcmp(be->spec, "cpu") == 0;
        char nm[256];
        snprintf(nm, sizeof nm, "split: %s: vxm_register with VXM_MAX_ALLOC_MB=4 = without (%s)", be->spec,
                 cpu ? "bitwise" : "max |diff| <= 1e-4");
        vxm_volume *moved[2] = {NULL, NULL}, *warp[2] = {NULL, NULL};
        vxm_status st = VXM_OK;
        for (int k = 0; k < 2 && !st; k++) {
            if (k == 1)
                setenv("VXM_MAX_ALLOC_MB", "4", 1);
            st = vxm_register(ctx, be, m, mov, fix, NULL, &moved[k], &warp[k]);
        }
        if (!st && cpu) { /* what register.c does with that limit: two groups */
            vxm_graph *g = NULL;
            unsigned long long lim = vxm_backend_alloc_limit(be);
            st = vxm_model_build_graph(ctx, m, 3, shape, &g);
            int n0 = st ? 0 : count_op(g, VXM_OP_CONV);
            if (!st)
                st = vxm_graph_split_wide(ctx, &g, lim, path);
            tu_report(!st && lim == 4u << 20 && count_op(g, VXM_OP_CONV) == n0 + 1,
                      "split: VXM_MAX_ALLOC_MB=4 on the CPU backend: a 4 MiB limit, the 8 MiB conv in 2 groups",
                      "limit %llu, %d -> %d convs: %s", lim, n0, g ? count_op(g, VXM_OP_CONV) : 0,
                      vxm_context_error(ctx));
            vxm_graph_free(g);
        }
        unsetenv("VXM_MAX_ALLOC_MB");
        if (st) {
            tu_report(0, nm, "%s", vxm_context_error(ctx));
        } else {
            size_t nw = vxm_volume_numel(warp[0]), nm_ = vxm_volume_numel(moved[0]);
            double dw = 0, dm = 0;
            int same = 1;
            for (int k = 1; k < 2; k++) {
                double a = tu_max_abs_diff(warp[0]->data, warp[k]->data, nw);
                double c = tu_max_abs_diff(moved[0]->data, moved[k]->data, nm_);
                dw = a > dw ? a : dw;
                dm = c > dm ? c : dm;
                same = same && !memcmp(warp[0]->data, warp[k]->data, nw * 4) &&
                       !memcmp(moved[0]->data, moved[k]->data, nm_ * 4);
            }
            tu_report(cpu ? same : dw <= 1e-4 && dm <= 1e-4, nm, "warp %.3g, moved %.3g", dw, dm);
        }
        for (int k = 0; k < 2; k++) {
            vxm_volume_free(moved[k]);
            vxm_volume_free(warp[k]);
        }
    }
done:
    vxm_model_free(m);
    vxm_volume_free(mov);
    vxm_volume_free(fix);
}

/* ---- the synthetic published-shape model (training doc §6.4) ------------------------------------------- */

static int write_synthmorph(const char *path)
{
    static const int enc[] = {256, 256, 256, 256}, dec[] = {256, 256, 256, 256, 256, 256};
    char cfg[2048];
    synth_config(cfg, sizeof cfg, "[160, 192, 224]",
                 "[[256, 256, 256, 256], [256, 256, 256, 256, 256, 256]]", "null");
    vxm_context *ctx = vxm_context_create();
    vxm_status st = write_model(ctx, path, cfg, 3, 2, enc, 4, dec, 6, 1.5f);
    if (st)
        fprintf(stderr, "test_split: %s\n", vxm_context_error(ctx));
    vxm_context_free(ctx);
    return st ? 1 : 0;
}

/* `--compare A B`: "nonfinite N max_abs A max_abs_diff D" of two volumes of one shape (B may be "-": none). */
static int compare_files(const char *a, const char *b)
{
    vxm_context *ctx = vxm_context_create();
    vxm_volume *va = NULL, *vb = NULL;
    int rc = 1;
    if (vxm_volume_read(ctx, a, NULL, &va) || (strcmp(b, "-") && vxm_volume_read(ctx, b, NULL, &vb))) {
        fprintf(stderr, "test_split: %s\n", vxm_context_error(ctx));
    } else if (vb && vxm_volume_numel(va) != vxm_volume_numel(vb)) {
        fprintf(stderr, "test_split: %s and %s differ in size\n", a, b);
    } else {
        size_t n = vxm_volume_numel(va), bad = 0;
        double amax = 0;
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(va->data[i]) || (vb && !isfinite(vb->data[i])))
                bad++;
            else if (fabs(va->data[i]) > amax)
                amax = fabs(va->data[i]);
        }
        printf("nonfinite %zu max_abs %.6g max_abs_diff %.6g\n", bad, amax,
               vb ? tu_max_abs_diff(va->data, vb->data, n) : 0.0);
        rc = 0;
    }
    vxm_volume_free(va);
    vxm_volume_free(vb);
    vxm_context_free(ctx);
    return rc;
}

/* `--crop IN OUT N0 N1 N2`: the centred N0xN1xN2 crop of a 3-D volume. */
static int crop_file(const char *in, const char *out, char **size)
{
    vxm_context *ctx = vxm_context_create();
    vxm_volume *v = NULL, *c = NULL;
    int shape[3], off[3];
    for (int d = 0; d < 3; d++)
        shape[d] = atoi(size[d]);
    vxm_status st = vxm_volume_read(ctx, in, NULL, &v);
    for (int d = 0; !st && d < 3; d++) {
        off[d] = (v->shape[d] - shape[d]) / 2;
        if (shape[d] < 1 || off[d] < 0)
            st = vxm_error(ctx, VXM_ESHAPE, in, "cannot crop %d to %d on axis %d", v->shape[d], shape[d], d);
    }
    if (!st)
        st = vxm_volume_crop(ctx, v, off, shape, &c);
    if (!st)
        st = vxm_volume_write(ctx, out, c, NULL);
    if (st)
        fprintf(stderr, "test_split: %s\n", vxm_context_error(ctx));
    vxm_volume_free(v);
    vxm_volume_free(c);
    vxm_context_free(ctx);
    return st ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-synthmorph") == 0)
        return write_synthmorph(argv[2]);
    if (argc == 4 && strcmp(argv[1], "--compare") == 0)
        return compare_files(argv[2], argv[3]);
    if (argc == 7 && strcmp(argv[1], "--crop") == 0)
        return crop_file(argv[2], argv[3], argv + 4);
    mkdir("tests/out", 0755);
    unsetenv("VXM_MAX_ALLOC_MB");
    vxm_context *ctx = vxm_context_create();
    tb_list l;
    tb_open_all(ctx, &l);
    test_config(ctx);
    test_graph(ctx, &l);
    test_register(ctx, &l);
    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
