/* VxmDense configuration from the root `model_config` attribute (spec §3.1, §3.2, §10.2). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"

static const int default_enc[] = {16, 32, 32, 32};
static const int default_dec[] = {32, 32, 32, 32, 32, 16, 16};

static int json_is_null(const cJSON *j)
{
    return !j || cJSON_IsNull(j);
}

static vxm_status get_int(vxm_context *ctx, const char *path, const cJSON *cfg, const char *key, int *out)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (json_is_null(j))
        return VXM_OK; /* keep the default */
    if (cJSON_IsBool(j)) {
        *out = cJSON_IsTrue(j);
        return VXM_OK;
    }
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble))
        return vxm_error(ctx, VXM_EFORMAT, path, "model_config: '%s' must be an integer", key);
    *out = (int)j->valuedouble;
    return VXM_OK;
}

static vxm_status get_int_list(vxm_context *ctx, const char *path, const cJSON *arr, const char *what, int *out,
                               int *n)
{
    if (!cJSON_IsArray(arr))
        return vxm_error(ctx, VXM_EFORMAT, path, "model_config: %s must be a list of integers", what);
    *n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        if (!cJSON_IsNumber(e) || e->valuedouble < 1 || *n >= VXM_MAX_FEATS)
            return vxm_error(ctx, VXM_EFORMAT, path, "model_config: bad entry in %s", what);
        out[(*n)++] = (int)e->valuedouble;
    }
    return VXM_OK;
}

/* nb_unet_features: null -> defaults; integer F with nb_unet_levels L and feat_mult; or [enc, dec]. */
static vxm_status parse_features(vxm_context *ctx, const char *path, const cJSON *cfg, vxm_dense_config *c)
{
    const cJSON *feats = cJSON_GetObjectItemCaseSensitive(cfg, "nb_unet_features");
    const cJSON *enc_nf = cJSON_GetObjectItemCaseSensitive(cfg, "enc_nf");
    const cJSON *dec_nf = cJSON_GetObjectItemCaseSensitive(cfg, "dec_nf");
    int levels = -1;
    double mult = 1;
    vxm_status st = get_int(ctx, path, cfg, "nb_unet_levels", &levels);
    if (st)
        return st;
    const cJSON *jm = cJSON_GetObjectItemCaseSensitive(cfg, "unet_feat_mult");
    if (!json_is_null(jm)) {
        if (!cJSON_IsNumber(jm))
            return vxm_error(ctx, VXM_EFORMAT, path, "model_config: unet_feat_mult must be a number");
        mult = jm->valuedouble;
    }
    int n = c->conv_per_level;
    if (!json_is_null(enc_nf) && !json_is_null(dec_nf)) { /* older files: backport of enc_nf / dec_nf */
        if ((st = get_int_list(ctx, path, enc_nf, "enc_nf", c->enc, &c->n_enc)))
            return st;
        return get_int_list(ctx, path, dec_nf, "dec_nf", c->dec, &c->n_dec);
    }
    if (json_is_null(feats)) {
        memcpy(c->enc, default_enc, sizeof default_enc);
        memcpy(c->dec, default_dec, sizeof default_dec);
        c->n_enc = 4;
        c->n_dec = 7;
        return VXM_OK;
    }
    if (cJSON_IsNumber(feats)) {
        if (levels < 2)
            return vxm_error(ctx, VXM_EFORMAT, path, "model_config: integer nb_unet_features needs nb_unet_levels");
        int f[VXM_MAX_FEATS];
        if (levels * n > VXM_MAX_FEATS)
            return vxm_error(ctx, VXM_EFORMAT, path, "model_config: too many U-Net levels");
        /* Python round() is half-to-even, as nearbyint in the default rounding mode. */
        for (int l = 0; l < levels; l++)
            f[l] = (int)nearbyint(feats->valuedouble * pow(mult, l));
        c->n_enc = c->n_dec = 0;
        for (int l = 0; l < levels - 1; l++)
            for (int k = 0; k < n; k++)
                c->enc[c->n_enc++] = f[l];
        for (int l = levels - 1; l >= 0; l--)
            for (int k = 0; k < n; k++)
                c->dec[c->n_dec++] = f[l];
        return VXM_OK;
    }
    if (levels > 0)
        return vxm_error(ctx, VXM_EFORMAT, path, "model_config: nb_unet_levels given with a feature list");
    if (!cJSON_IsArray(feats) || cJSON_GetArraySize(feats) != 2)
        return vxm_error(ctx, VXM_EFORMAT, path, "model_config: nb_unet_features must be [enc, dec]");
    if ((st = get_int_list(ctx, path, cJSON_GetArrayItem(feats, 0), "encoder features", c->enc, &c->n_enc)))
        return st;
    return get_int_list(ctx, path, cJSON_GetArrayItem(feats, 1), "decoder features", c->dec, &c->n_dec);
}

static vxm_status get_number(vxm_context *ctx, const char *path, const cJSON *cfg, const char *key, double *out,
                             int *present)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(cfg, key);
    *present = 0;
    if (json_is_null(j))
        return VXM_OK;
    if (!cJSON_IsNumber(j))
        return vxm_error(ctx, VXM_EFORMAT, path, "model_config: '%s' must be a number", key);
    *out = j->valuedouble;
    *present = 1;
    return VXM_OK;
}

static vxm_status parse_config_object(vxm_context *ctx, const char *path, const cJSON *cfg, vxm_dense_config *c)
{
    vxm_status st;
    const cJSON *inshape = cJSON_GetObjectItemCaseSensitive(cfg, "inshape");
    int shp[3], ns = 0;
    if (!json_is_null(inshape)) {
        if (!cJSON_IsArray(inshape) || cJSON_GetArraySize(inshape) < 1 || cJSON_GetArraySize(inshape) > 3)
            return vxm_error(ctx, VXM_EFORMAT, path, "model_config: inshape must list 1 to 3 sizes");
        if ((st = get_int_list(ctx, path, inshape, "inshape", shp, &ns)))
            return st;
        c->ndim = ns;
        c->inshape[0] = c->inshape[1] = c->inshape[2] = 1;
        for (int i = 0; i < ns; i++)
            c->inshape[3 - ns + i] = shp[i];
    }
    if ((st = get_int(ctx, path, cfg, "nb_unet_conv_per_level", &c->conv_per_level)) ||
        (st = get_int(ctx, path, cfg, "int_steps", &c->int_steps)) ||
        (st = get_int(ctx, path, cfg, "bidir", &c->bidir)) ||
        (st = get_int(ctx, path, cfg, "use_probs", &c->use_probs)) ||
        (st = get_int(ctx, path, cfg, "src_feats", &c->src_feats)) ||
        (st = get_int(ctx, path, cfg, "trg_feats", &c->trg_feats)))
        return st;
    if (c->conv_per_level < 1 || c->int_steps < 0 || c->src_feats < 1 || c->trg_feats < 1)
        return vxm_error(ctx, VXM_EFORMAT, path, "model_config: invalid VxmDense option values");
    if ((st = parse_features(ctx, path, cfg, c)))
        return st;

    double v;
    int present;
    if ((st = get_number(ctx, path, cfg, "svf_resolution", &v, &present)))
        return st;
    if (present)
        c->svf_resolution = v;
    if ((st = get_number(ctx, path, cfg, "int_resolution", &v, &present)))
        return st;
    if (present)
        c->int_resolution = v;
    /* Deprecated aliases (spec §3.2): int_downsize overrides int_resolution, unet_half_res sets svf 2. */
    if ((st = get_number(ctx, path, cfg, "int_downsize", &v, &present)))
        return st;
    if (present)
        c->int_resolution = v;
    const cJSON *half = cJSON_GetObjectItemCaseSensitive(cfg, "unet_half_res");
    if (cJSON_IsTrue(half))
        c->svf_resolution = 2;
    if ((st = get_number(ctx, path, cfg, "fill_value", &v, &present)))
        return st;
    c->use_fill = present;
    c->fill_value = (float)v;
    if (c->svf_resolution < 1 || c->int_resolution < 1)
        return vxm_error(ctx, VXM_EFORMAT, path, "model_config: resolutions must be >= 1");

    const cJSON *name = cJSON_GetObjectItemCaseSensitive(cfg, "name");
    if (cJSON_IsString(name) && strlen(name->valuestring) < sizeof c->name)
        snprintf(c->name, sizeof c->name, "%s", name->valuestring);
    /* input_model is ignored: SynthMorph saves its generative model there (training doc §6.1), which
     * register.py overrides with input_model=None; the inputs are then the source/target images. */
    const cJSON *hm = cJSON_GetObjectItemCaseSensitive(cfg, "hyp_model");
    if (!json_is_null(hm))
        return vxm_error(ctx, VXM_EUNSUPPORTED, path, "model_config: hyp_model is not supported");

    if (c->n_enc < 1 || c->n_enc % c->conv_per_level != 0 || c->n_dec < c->n_enc)
        return vxm_error(ctx, VXM_EFORMAT, path,
                         "model_config: encoder has %d convs, not a multiple of %d per level, or decoder shorter",
                         c->n_enc, c->conv_per_level);
    return VXM_OK;
}

/* HyperVxmDense(inshape, nb_hyp_params=1, nb_hyp_layers=6, nb_hyp_units=128, name='hyper_vxm_dense', **kwargs)
 * (training doc §5): its own arguments, and the VxmDense keyword arguments it forwards, in one config object. */
static vxm_status parse_hyper(vxm_context *ctx, const char *path, const cJSON *cfg, vxm_dense_config *c)
{
    c->hyper = 1;
    c->nb_hyp_params = 1;
    c->nb_hyp_layers = 6;
    c->nb_hyp_units = 128;
    snprintf(c->name, sizeof c->name, "hyper_vxm_dense");
    vxm_status st;
    if ((st = parse_config_object(ctx, path, cfg, c)) ||
        (st = get_int(ctx, path, cfg, "nb_hyp_params", &c->nb_hyp_params)) ||
        (st = get_int(ctx, path, cfg, "nb_hyp_layers", &c->nb_hyp_layers)) ||
        (st = get_int(ctx, path, cfg, "nb_hyp_units", &c->nb_hyp_units)))
        return st;
    if (c->nb_hyp_layers < 1 || c->nb_hyp_units < 1)
        return vxm_error(ctx, VXM_EFORMAT, path, "model_config: nb_hyp_layers and nb_hyp_units must be >= 1");
    if (c->nb_hyp_params != 1)
        return vxm_error(ctx, VXM_EUNSUPPORTED, path,
                         "model_config: nb_hyp_params %d (only one hyper-parameter, the regularisation weight, is "
                         "supported)", c->nb_hyp_params);
    return VXM_OK;
}

vxm_status vxm_dense_config_parse(vxm_context *ctx, const char *path, const char *json, vxm_dense_config *c)
{
    memset(c, 0, sizeof *c);
    c->ndim = 3;
    c->inshape[0] = c->inshape[1] = c->inshape[2] = 0;
    c->conv_per_level = 1;
    c->int_steps = 7;
    c->svf_resolution = 1;
    c->int_resolution = 2;
    c->src_feats = c->trg_feats = 1;
    snprintf(c->name, sizeof c->name, "vxm_dense");

    cJSON *root = cJSON_Parse(json);
    if (!root)
        return vxm_error(ctx, VXM_EFORMAT, path, "model_config is not valid JSON");
    vxm_status st = VXM_OK;
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "class_name");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    if (!cJSON_IsString(cls) || !cJSON_IsObject(cfg)) {
        st = vxm_error(ctx, VXM_EFORMAT, path, "not a VoxelMorph model: model_config has no class_name/config");
    } else if (strcmp(cls->valuestring, "VxmDense") == 0) {
        st = parse_config_object(ctx, path, cfg, c);
    } else if (strcmp(cls->valuestring, "TemplateCreation") == 0) {
        /* TemplateCreation(inshape, nb_unet_features, mean_cap, atlas_feats, src_feats, **VxmDense kwargs)
         * (training doc §4.1): a VxmDense whose source is the atlas (atlas_feats channels) and whose target is the
         * scan (src_feats channels); registration uses it as such (atlas layer and MeanStream are ignored). */
        int atlas_feats = 1;
        if (!(st = parse_config_object(ctx, path, cfg, c)) && !(st = get_int(ctx, path, cfg, "atlas_feats", &atlas_feats))) {
            c->trg_feats = c->src_feats;
            c->src_feats = atlas_feats;
            c->bidir = 0;
            if (atlas_feats < 1)
                st = vxm_error(ctx, VXM_EFORMAT, path, "model_config: invalid atlas_feats");
        }
    } else if (strcmp(cls->valuestring, "HyperVxmDense") == 0) {
        st = parse_hyper(ctx, path, cfg, c);
    } else {
        st = vxm_error(ctx, VXM_EUNSUPPORTED, path, "model class '%s' is not supported (expected VxmDense)",
                       cls->valuestring);
    }
    cJSON_Delete(root);
    return st;
}

int vxm_dense_levels(const vxm_dense_config *c)
{
    return c->n_enc / c->conv_per_level + 1;
}
