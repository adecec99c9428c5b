/* VxmDense constructor config -> the root `model_config` JSON that `VxmDense.load` reads (training doc §1
 * "What model.save writes", spec §10.2).  Every constructor argument is written, in the key order TF 2.15
 * `model.save` produced for data/train/<case>_model.h5.  The config is written in its normalised form (explicit
 * feature lists, deprecated aliases null/false, svf_resolution / int_resolution as numbers), so that
 * vxm_dense_config_parse(vxm_dense_config_to_json(c)) reproduces c exactly. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "model/model.h"

static cJSON *int_list(const int *v, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && i < n; i++)
        if (!cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]))) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

/* nb_unet_features = [[enc...], [dec...]]: one entry per convolution, as the parser stores them. */
static cJSON *features(const vxm_dense_config *c)
{
    cJSON *f = cJSON_CreateArray();
    if (!f || !cJSON_AddItemToArray(f, int_list(c->enc, c->n_enc)) ||
        !cJSON_AddItemToArray(f, int_list(c->dec, c->n_dec))) {
        cJSON_Delete(f);
        return NULL;
    }
    return f;
}

/* inshape as a list of ndim sizes (the parser right-aligns them in inshape[3]); null when the config had none. */
static cJSON *inshape(const vxm_dense_config *c)
{
    if (c->ndim < 1 || c->ndim > 3 || c->inshape[3 - c->ndim] < 1)
        return cJSON_CreateNull();
    return int_list(c->inshape + 3 - c->ndim, c->ndim);
}

/* Adds `item` under `key`; a NULL item (allocation failure) counts as an error. */
static int add(cJSON *obj, const char *key, cJSON *item)
{
    if (item && cJSON_AddItemToObject(obj, key, item))
        return 0;
    cJSON_Delete(item);
    return -1;
}

char *vxm_dense_config_to_json(const vxm_dense_config *c)
{
    if (!c)
        return NULL;
    cJSON *root = cJSON_CreateObject();
    cJSON *cfg = root && cJSON_AddStringToObject(root, "class_name", c->hyper ? "HyperVxmDense" : "VxmDense")
                     ? cJSON_AddObjectToObject(root, "config")
                     : NULL;
    /* HyperVxmDense (training doc §5) takes its hypernetwork sizes and forwards the VxmDense keyword arguments;
     * it passes hyp_model itself, so the key must be absent (a second value is a TypeError in Python). */
    if (cfg && c->hyper &&
        (!cJSON_AddNumberToObject(cfg, "nb_hyp_params", c->nb_hyp_params) ||
         !cJSON_AddNumberToObject(cfg, "nb_hyp_layers", c->nb_hyp_layers) ||
         !cJSON_AddNumberToObject(cfg, "nb_hyp_units", c->nb_hyp_units)))
        cfg = NULL;
    /* unet_half_res / int_downsize are the deprecated aliases (spec §3.2): their effect is already folded into
     * svf_resolution / int_resolution, so they are written as false / null. */
    int bad = !cfg || !cJSON_AddStringToObject(cfg, "name", c->name) ||
              !cJSON_AddStringToObject(cfg, "reg_field", "preintegrated") ||
              add(cfg, "fill_value", c->use_fill ? cJSON_CreateNumber(c->fill_value) : cJSON_CreateNull()) ||
              (!c->hyper && !cJSON_AddNullToObject(cfg, "hyp_model")) || !cJSON_AddNullToObject(cfg, "input_model") ||
              !cJSON_AddFalseToObject(cfg, "unet_half_res") ||
              !cJSON_AddNumberToObject(cfg, "trg_feats", c->trg_feats) ||
              !cJSON_AddNumberToObject(cfg, "src_feats", c->src_feats) ||
              !cJSON_AddBoolToObject(cfg, "use_probs", c->use_probs) ||
              !cJSON_AddBoolToObject(cfg, "bidir", c->bidir) || !cJSON_AddNullToObject(cfg, "int_downsize") ||
              !cJSON_AddNumberToObject(cfg, "int_resolution", c->int_resolution) ||
              !cJSON_AddNumberToObject(cfg, "svf_resolution", c->svf_resolution) ||
              !cJSON_AddNumberToObject(cfg, "int_steps", c->int_steps) ||
              !cJSON_AddNumberToObject(cfg, "nb_unet_conv_per_level", c->conv_per_level) ||
              !cJSON_AddNumberToObject(cfg, "unet_feat_mult", 1) || !cJSON_AddNullToObject(cfg, "nb_unet_levels") ||
              add(cfg, "nb_unet_features", features(c)) || add(cfg, "inshape", inshape(c)) ||
              !cJSON_AddObjectToObject(cfg, "metadata");
    char *s = bad ? NULL : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}
