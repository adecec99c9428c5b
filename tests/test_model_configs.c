/* VxmDense constructor options (spec §3.1-3.3): synthetic current-format .h5 files with random weights are
 * written with the HDF5 API for several configurations -- custom feature lists, integer features with
 * levels/multiplier, two convs per level, int_steps 0, int_resolution 1 / int_downsize, unet_half_res, bidir,
 * use_probs, two-channel inputs, 2-D -- and each must load, build the expected graph, run, and agree between
 * the CPU backend and every OpenCL device.  The expected layer list is derived here from the spec, not from
 * the builder. */
#include <hdf5.h>
#include <string.h>

#include "graph/graph.h"
#include "model/model.h"
#include "test_backends.h"

typedef struct cfg {
    const char *name, *json; /* the "config" object */
    int ndim, shape[3], src, trg;
    int enc[16], nenc, dec[16], ndec, n, svf_half, int_steps, probs;
    int expect_vecint, expect_resizes;
} cfg;

static unsigned long long rng = 12345;
static float frand(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng >> 40) / 16777216.0) - 0.5f;
}

static void attr_string(hid_t obj, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, &value);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static void attr_names(hid_t obj, const char *name, char names[][96], int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) > len)
            len = strlen(names[i]);
    char *buf = calloc((size_t)(n ? n : 1), len);
    for (int i = 0; i < n; i++)
        memcpy(buf + (size_t)i * len, names[i], strlen(names[i])); /* NULL-padded, as Keras writes */
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    hsize_t dims = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dims, NULL);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, buf);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    free(buf);
}

static void write_conv(hid_t mw, const char *layer, int ndim, int cin, int cout)
{
    hid_t g = H5Gcreate2(mw, layer, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    char wn[2][96];
    size_t ll = strlen(layer) < 80 ? strlen(layer) : 80; /* names here are short; bound them for the compiler */
    snprintf(wn[0], 96, "%.*s/kernel:0", (int)ll, layer);
    snprintf(wn[1], 96, "%.*s/bias:0", (int)ll, layer);
    attr_names(g, "weight_names", wn, 2);
    hsize_t kd[5], bd = (hsize_t)cout;
    size_t nk = (size_t)cin * cout;
    for (int d = 0; d < ndim; d++) {
        kd[d] = 3;
        nk *= 3;
    }
    kd[ndim] = (hsize_t)cin;
    kd[ndim + 1] = (hsize_t)cout;
    float *k = malloc(nk * sizeof(float)), *b = malloc((size_t)cout * sizeof(float));
    float scale = 1.0f / (float)(3 * cin); /* keeps activations O(1) through the network */
    for (size_t i = 0; i < nk; i++)
        k[i] = frand() * scale;
    for (int i = 0; i < cout; i++)
        b[i] = 0.1f * frand();
    char path[256];
    hid_t sk = H5Screate_simple(ndim + 2, kd, NULL), sb = H5Screate_simple(1, &bd, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    snprintf(path, sizeof path, "%s", wn[0]);
    hid_t d = H5Dcreate2(g, path, H5T_IEEE_F32LE, sk, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, k);
    H5Dclose(d);
    snprintf(path, sizeof path, "%s", wn[1]);
    d = H5Dcreate2(g, path, H5T_IEEE_F32LE, sb, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, b);
    H5Dclose(d);
    H5Pclose(lcpl);
    H5Sclose(sk);
    H5Sclose(sb);
    H5Gclose(g);
    free(k);
    free(b);
}

/* Writes the file and returns the number of weighted layers (derived from spec §3.1). */
static int write_model(const char *path, const cfg *c)
{
    char json[2048], names[128][96];
    int nn = 0, n = c->n, L = c->nenc / n + 1, S = c->svf_half ? 1 : 0, cin = c->src + c->trg, skip[16];
    int cins[128], couts[128];
    snprintf(json, sizeof json, "{\"class_name\": \"VxmDense\", \"config\": %s}", c->json);
    for (int l = 0; l < L - 1; l++) {
        for (int k = 0; k < n; k++) {
            snprintf(names[nn], 96, "vxm_dense_unet_enc_conv_%d_%d", l, k);
            cins[nn] = cin;
            couts[nn] = cin = c->enc[l * n + k];
            nn++;
        }
        skip[l] = cin;
    }
    for (int t = 0; t < L - 1; t++) {
        int r = L - 2 - t;
        for (int k = 0; k < n; k++) {
            snprintf(names[nn], 96, "vxm_dense_unet_dec_conv_%d_%d", r, k);
            cins[nn] = cin;
            couts[nn] = cin = c->dec[t * n + k];
            nn++;
        }
        if (t < L - 1 - S)
            cin += skip[r];
    }
    for (int k = c->nenc; k < c->ndec; k++) {
        snprintf(names[nn], 96, "vxm_dense_unet_dec_final_conv_%d", k - c->nenc);
        cins[nn] = cin;
        couts[nn] = cin = c->dec[k];
        nn++;
    }
    snprintf(names[nn], 96, "vxm_dense_flow");
    cins[nn] = cin;
    couts[nn++] = c->ndim;
    if (c->probs) {
        snprintf(names[nn], 96, "vxm_dense_log_sigma");
        cins[nn] = cin;
        couts[nn++] = c->ndim;
    }
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    attr_string(f, "backend", "tensorflow");
    attr_string(f, "keras_version", "2.3.0-tf");
    attr_string(f, "model_config", json);
    hid_t mw = H5Gcreate2(f, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    attr_names(mw, "layer_names", names, nn);
    for (int i = 0; i < nn; i++)
        write_conv(mw, names[i], c->ndim, cins[i], couts[i]);
    H5Gclose(mw);
    H5Fclose(f);
    return nn;
}

static void check_config(vxm_context *ctx, tb_list *l, const cfg *c)
{
    char path[256], name[256];
    snprintf(path, sizeof path, "tests/out/model_%s.h5", c->name);
    int nweighted = write_model(path, c);
    vxm_model *m = NULL;
    vxm_graph *g = NULL;
    snprintf(name, sizeof name, "config %s: loads and builds", c->name);
    if (vxm_model_load(ctx, path, &m) || vxm_model_build_graph(ctx, m, c->ndim, c->shape, &g)) {
        tu_report(0, name, "%s", vxm_context_error(ctx));
        vxm_model_free(m);
        return;
    }
    int convs = 0, vecint = 0, resizes = 0, samples = 0;
    for (int i = 0; i < g->n; i++) {
        convs += g->nodes[i].op == VXM_OP_CONV;
        vecint += g->nodes[i].op == VXM_OP_VECINT;
        resizes += g->nodes[i].op == VXM_OP_RESIZE;
        samples += g->nodes[i].op == VXM_OP_SAMPLE;
    }
    tu_report(convs == nweighted && vecint == c->expect_vecint && resizes == c->expect_resizes &&
                  samples == c->probs,
              name, "%d convs (want %d), %d vecint (want %d), %d resizes (want %d), %d samples", convs, nweighted,
              vecint, c->expect_vecint, resizes, c->expect_resizes, samples);
    vxm_volume *mov = vxm_volume_new(c->ndim, c->shape, c->src), *fix = vxm_volume_new(c->ndim, c->shape, c->trg);
    for (size_t i = 0; i < vxm_volume_numel(mov); i++)
        mov->data[i] = 0.5f + frand();
    for (size_t i = 0; i < vxm_volume_numel(fix); i++)
        fix->data[i] = 0.5f + frand();
    vxm_volume *moved = NULL, *warp = NULL;
    snprintf(name, sizeof name, "config %s: registers on cpu with output shapes", c->name);
    if (vxm_register(ctx, l->be[0], m, mov, fix, NULL, &moved, &warp)) {
        tu_report(0, name, "%s", vxm_context_error(ctx));
    } else {
        tu_report(!memcmp(moved->shape, c->shape, sizeof c->shape) && moved->channels == c->src &&
                      !memcmp(warp->shape, c->shape, sizeof c->shape) && warp->channels == c->ndim,
                  name, "moved %dx%dx%dx%d, warp channels %d", moved->shape[0], moved->shape[1], moved->shape[2],
                  moved->channels, warp->channels);
    }
    if (c->probs && warp) {
        vxm_volume *m2 = NULL, *w2 = NULL;
        vxm_register_options o = {0, 7, NULL, NULL};
        snprintf(name, sizeof name, "config %s: sampling mode differs from mean mode", c->name);
        if (vxm_register(ctx, l->be[0], m, mov, fix, &o, &m2, &w2) == VXM_OK)
            tu_report(tu_max_abs_diff(w2->data, warp->data, vxm_volume_numel(warp)) > 0, name, "identical");
        vxm_volume_free(m2);
        vxm_volume_free(w2);
    }
    for (int b = 1; b < l->n; b++) {
        vxm_layer_diff *d = NULL;
        int nd = 0;
        snprintf(name, sizeof name, "config %s: %s agrees with cpu per layer", c->name, l->be[b]->spec);
        if (vxm_register_check(ctx, l->be[b], l->be[0], m, mov, fix, &d, &nd)) {
            tu_report(0, name, "%s", vxm_context_error(ctx));
            continue;
        }
        double worst = 0;
        for (int i = 0; i < nd; i++)
            if (!(d[i].rel <= worst))
                worst = d[i].rel;
        /* float32 summation order: ~1e-6 relative per layer; semantic bugs give >= 1e-2 */
        tu_report(worst <= 1e-4, name, "worst relative difference %.3g", worst);
        free(d);
    }
    vxm_volume_free(mov);
    vxm_volume_free(fix);
    vxm_volume_free(moved);
    vxm_volume_free(warp);
    vxm_graph_free(g);
    vxm_model_free(m);
}

int main(void)
{
    mkdir("tests/out", 0755);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const cfg cfgs[] = {
        {"default_fullres",
         "{\"inshape\": [32, 32, 32], \"nb_unet_features\": null, \"int_steps\": 7, \"int_downsize\": 2}", 3,
         {32, 32, 32}, 1, 1, {16, 32, 32, 32}, 4, {32, 32, 32, 32, 32, 16, 16}, 7, 1, 0, 7, 0, 1, 2},
        {"published_like_halfres",
         "{\"inshape\": [32, 32, 32], \"unet_half_res\": true, \"int_downsize\": 2, \"int_steps\": 5}", 3,
         {32, 32, 32}, 1, 1, {16, 32, 32, 32}, 4, {32, 32, 32, 32, 32, 16, 16}, 7, 1, 1, 5, 0, 1, 1},
        {"int_features_levels_mult",
         "{\"inshape\": [16, 24, 16], \"nb_unet_features\": 4, \"nb_unet_levels\": 3, \"unet_feat_mult\": 1.5, "
         "\"int_steps\": 7, \"int_resolution\": 1}",
         3, {16, 24, 16}, 1, 1, {4, 6}, 2, {9, 6, 4}, 3, 1, 0, 7, 0, 1, 0},
        {"two_convs_per_level_no_integration",
         "{\"inshape\": [16, 16, 16], \"nb_unet_features\": [[8, 8, 12, 12], [12, 12, 8, 8, 6]], "
         "\"nb_unet_conv_per_level\": 2, \"int_steps\": 0, \"bidir\": true}",
         3, {16, 16, 16}, 1, 1, {8, 8, 12, 12}, 4, {12, 12, 8, 8, 6}, 5, 2, 0, 0, 0, 0, 0},
        {"probabilistic_two_channel",
         "{\"inshape\": [16, 16, 16], \"nb_unet_features\": [[8, 8], [8, 8, 8]], \"use_probs\": true, "
         "\"src_feats\": 2, \"trg_feats\": 2, \"int_steps\": 3, \"int_downsize\": 2}",
         3, {16, 16, 16}, 2, 2, {8, 8}, 2, {8, 8, 8}, 3, 1, 0, 3, 1, 1, 2},
        {"2d_halfres",
         "{\"inshape\": [32, 48], \"nb_unet_features\": [[8, 16, 16], [16, 16, 16, 8]], \"unet_half_res\": true, "
         "\"int_steps\": 7, \"int_downsize\": 2}",
         2, {1, 32, 48}, 1, 1, {8, 16, 16}, 3, {16, 16, 16, 8}, 4, 1, 1, 7, 0, 1, 1},
    };
    vxm_context *ctx = vxm_context_create();
    tb_list l;
    tb_open_all(ctx, &l);
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
        check_config(ctx, &l, &cfgs[i]);
    /* the integer-feature rule of §3.1 as parsed: feats = round(4 * 1.5^l) = 4, 6, 9 */
    vxm_model *m = NULL;
    if (vxm_model_load(ctx, "tests/out/model_int_features_levels_mult.h5", &m) == VXM_OK) {
        const vxm_dense_config *c = &m->dense;
        tu_report(c->n_enc == 2 && c->enc[0] == 4 && c->enc[1] == 6 && c->n_dec == 3 && c->dec[0] == 9 &&
                      c->dec[1] == 6 && c->dec[2] == 4,
                  "integer features with levels and multiplier", "enc %d: %d %d, dec %d", c->n_enc, c->enc[0],
                  c->enc[1], c->n_dec);
        tu_report(c->int_resolution == 1 && c->svf_resolution == 1, "int_resolution 1 parsed", "%g %g",
                  c->int_resolution, c->svf_resolution);
        vxm_model_free(m);
    }
    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
