/* Conditional templates (ConditionalTemplateCreation, training doc §4.2; template_cond.h): the attribute-driven
 * atlas generator as graph nodes, its Keras initialisers (§3.1), the ConditionalTemplateCreation config and
 * weights of a checkpoint, and generation of a template for given attributes. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "graph/hyper.h"
#include "train/template_internal.h"

int vxm_cond_num_weights(const vxm_cond_arch *a)
{
    return 2 * (3 + a->extra);
}

static size_t voxels(const vxm_cond_arch *a)
{
    return (size_t)a->shape[0] * (size_t)a->shape[1] * (size_t)a->shape[2];
}

/* The Dense layer's size, refused beyond VXM_COND_MAX_DENSE weights (doc §4.2 memory note). */
static vxm_status check_size(vxm_context *ctx, const char *subject, const vxm_cond_arch *a)
{
    size_t units = voxels(a) * (size_t)a->feats;
    if ((double)units * a->npheno > (double)VXM_COND_MAX_DENSE)
        return vxm_error(ctx, VXM_EINVAL, subject,
                         "the conditional generator's Dense layer would have %.0f weights (%d attributes x %zu "
                         "voxels x %d features), above the limit of %zu: use smaller images",
                         (double)units * a->npheno, a->npheno, voxels(a), a->feats, VXM_COND_MAX_DENSE);
    return VXM_OK;
}

/* Keras shapes of generator weight k (template_cond.h order); returns the rank. */
static int weight_dims(const vxm_cond_arch *a, int k, long *dims)
{
    int layer = k / 2, F = a->feats, r = 0;
    if (layer == 0) { /* Dense (P, prod * F), bias */
        if (k == 0)
            dims[r++] = a->npheno;
        dims[r++] = (long)(voxels(a) * (size_t)F);
        return r;
    }
    if (k % 2) { /* a conv bias */
        dims[0] = layer == 2 + a->extra ? 1 : F;
        return 1;
    }
    int ks = layer == 1 ? 1 : 3; /* the likelihood conv is 1x1 (neurite conv_dec), the others 3x3 */
    for (int d = 0; d < a->ndim; d++)
        dims[r++] = ks;
    dims[r++] = F;
    dims[r++] = layer == 2 + a->extra ? 1 : F;
    return r;
}

static size_t weight_numel(const vxm_cond_arch *a, int k)
{
    long dims[5];
    size_t n = 1;
    for (int r = weight_dims(a, k, dims) - 1; r >= 0; r--)
        n *= (size_t)dims[r];
    return n;
}

/* Keras layer names of the generator (ConditionalTemplateCreation; the Dense layer is unnamed there, so Keras
 * calls it 'dense' in a fresh session). */
static void layer_name(const vxm_cond_arch *a, int layer, char *buf, size_t n)
{
    if (layer == 0)
        snprintf(buf, n, "dense");
    else if (layer == 1)
        snprintf(buf, n, "atlas_decoder_likelihood");
    else if (layer < 2 + a->extra)
        snprintf(buf, n, "atlas_extra_conv_%d", layer - 2);
    else
        snprintf(buf, n, "atlas_gen");
}

/* New generator weights (doc §3.1, §9 item 2): glorot_uniform kernels (limit sqrt(6 / (fan_in + fan_out)),
 * fans = receptive field x channels), zero biases; atlas_gen kernel and bias N(0, 1e-7).  Arrays owned by g. */
static vxm_status init_weights(vxm_context *ctx, vxm_graph *g, const vxm_cond_arch *a, unsigned long long seed,
                               const float **w)
{
    unsigned long long rng = seed ^ 0xc0d7e3b1a7eULL; /* a stream of its own (trainer_init.c uses seed ^ 0x5eed) */
    int nw = vxm_cond_num_weights(a);
    for (int k = 0; k < nw; k++) {
        size_t n = weight_numel(a, k);
        float *h = vxm_graph_alloc_host(g, n);
        if (!h)
            return vxm_error(ctx, VXM_ENOMEM, "template", "out of memory");
        long dims[5];
        int rank = weight_dims(a, k, dims), gen = k >= nw - 2;
        double limit = 0; /* glorot: fan_in = receptive field * Cin, fan_out = receptive field * Cout */
        if (rank >= 2)
            limit = sqrt(6.0 / ((double)n / (double)dims[rank - 1] + (double)n / (double)dims[rank - 2]));
        for (size_t i = 0; i < n; i++)
            h[i] = gen ? (float)(1e-7 * vxm_rng_normal(&rng))
                       : rank >= 2 ? (float)(limit * (2.0 * vxm_rng_uniform(&rng) - 1.0)) : 0.0f;
        w[k] = h;
    }
    return VXM_OK;
}

/* The generator's nodes (template_cond.h) with weights w (Keras order): inputs 'pheno_input' (index 4, 1x1x1,
 * P channels) and 'atlas_input' (index 0).  Returns the atlas node, -1 when out of memory. */
static int add_generator(vxm_graph *g, const vxm_cond_arch *a, const float *const *w)
{
    static const int one[3] = {1, 1, 1};
    const int k3[3] = {a->ndim == 2 ? 1 : 3, 3, 3};
    int F = a->feats, nw = vxm_cond_num_weights(a);
    char name[VXM_NODE_NAME_MAX];
    int x = vxm_graph_add_input(g, "pheno_input", 4, one, a->npheno);
    x = x < 0 ? -1 : vxm_graph_add_dense(g, x, "dense", (int)(voxels(a) * (size_t)F), 0, w[0], w[1]);
    x = vxm_graph_add_op(g, VXM_OP_ELU, "dense_elu", x, -1); /* Dense(activation='elu') */
    x = vxm_graph_add_op(g, VXM_OP_RESHAPE, "pheno_reshape", x, -1);
    if (x >= 0) { /* Reshape(*inshape, F): the same channels-last data */
        memcpy(g->nodes[x].shape, a->shape, sizeof a->shape);
        g->nodes[x].channels = F;
    }
    for (int layer = 1; layer < nw / 2 && x >= 0; layer++) {
        layer_name(a, layer, name, sizeof name);
        x = vxm_graph_add_conv(g, x, name, layer == 1 ? one : k3, one, layer == nw / 2 - 1 ? 1 : F, 0, 0.0f,
                               w[2 * layer], w[2 * layer + 1]);
    }
    int in = x < 0 ? -1 : vxm_graph_add_input(g, "atlas_input", 0, a->shape, 1);
    return vxm_graph_add_op(g, VXM_OP_ADD, "atlas", in, x);
}

/* ---- conditional checkpoints -------------------------------------------------------------------------- */

static vxm_status cfg_int(vxm_context *ctx, const char *path, const cJSON *c, const char *key, int def, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1) /* pheno_input_shape: [P] */
        v = cJSON_GetArrayItem(v, 0);
    *out = def;
    if (!v || cJSON_IsNull(v))
        return VXM_OK;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 || v->valuedouble > 1e9)
        return vxm_error(ctx, VXM_EFORMAT, path, "model_config: %s must be a non-negative integer", key);
    *out = (int)v->valuedouble;
    return VXM_OK;
}

/* A ConditionalTemplateCreation root config: the generator's architecture and the VxmDense config (its keyword
 * arguments with src/trg_feats 1).  VXM_EUNSUPPORTED for generator variants the script does not use. */
static vxm_status parse_config(vxm_context *ctx, const char *path, const char *json, vxm_cond_arch *a,
                               vxm_dense_config *dc)
{
    cJSON *root = cJSON_Parse(json);
    cJSON *c = cJSON_GetObjectItemCaseSensitive(root, "config");
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "class_name");
    vxm_status st = VXM_OK;
    int levels = 0, size = 3, feats = 1;
    if (!cJSON_IsObject(c) || !cJSON_IsString(cls) || strcmp(cls->valuestring, "ConditionalTemplateCreation"))
        st = vxm_error(ctx, VXM_EFORMAT, path, "is not a conditional template (ConditionalTemplateCreation) model");
    if (!st && !((st = cfg_int(ctx, path, c, "pheno_input_shape", 0, &a->npheno)) ||
                 (st = cfg_int(ctx, path, c, "conv_nb_features", 32, &a->feats)) ||
                 (st = cfg_int(ctx, path, c, "extra_conv_layers", 3, &a->extra)) ||
                 (st = cfg_int(ctx, path, c, "conv_nb_levels", 0, &levels)) ||
                 (st = cfg_int(ctx, path, c, "conv_size", 3, &size)) ||
                 (st = cfg_int(ctx, path, c, "src_feats", 1, &feats)))) {
        const cJSON *cis = cJSON_GetObjectItemCaseSensitive(c, "conv_image_shape");
        if (a->npheno < 1 || a->feats < 1 || a->extra > VXM_COND_MAX_EXTRA)
            st = vxm_error(ctx, VXM_EFORMAT, path, "model_config: invalid pheno_input_shape, conv_nb_features or "
                           "extra_conv_layers (at most %d)", VXM_COND_MAX_EXTRA);
        else if (levels != 0 || size != 3 || feats != 1 || (cis && !cJSON_IsNull(cis)) ||
                 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "templcondsi")))
            st = vxm_error(ctx, VXM_EUNSUPPORTED, path, "model_config: only the generator of train_cond_template.py "
                           "is supported (conv_nb_levels 0, conv_size 3, one atlas channel, no templcondsi)");
    }
    char *vjs = NULL;
    if (!st) { /* the VxmDense keyword arguments, as TemplateCreation's (vxm_dense_config.c) */
        cJSON_ReplaceItemInObject(root, "class_name", cJSON_CreateString("VxmDense"));
        cJSON_DeleteItemFromObject(c, "trg_feats");
        cJSON_AddNumberToObject(c, "trg_feats", 1);
        if (!(vjs = cJSON_PrintUnformatted(root)))
            st = vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
    }
    cJSON_Delete(root);
    if (!st)
        st = vxm_dense_config_parse(ctx, path, vjs, dc);
    free(vjs);
    if (!st) {
        a->ndim = dc->ndim;
        memcpy(a->shape, dc->inshape, sizeof a->shape);
        if (a->shape[0] < 1 || a->shape[1] < 1 || a->shape[2] < 1)
            st = vxm_error(ctx, VXM_EFORMAT, path, "model_config: a conditional template needs its inshape");
    }
    return st ? st : check_size(ctx, path, a);
}

/* The file's generator weights (pointers into f), checked against the architecture. */
static vxm_status file_weights(vxm_context *ctx, const char *path, const vxm_keras_file *f, const vxm_cond_arch *a,
                               const float **w)
{
    char name[VXM_NODE_NAME_MAX];
    for (int layer = 0; layer < vxm_cond_num_weights(a) / 2; layer++) {
        layer_name(a, layer, name, sizeof name);
        const vxm_h5_layer *L = vxm_keras_find_layer(f, name);
        for (int i = 0; !L && layer == 0 && i < f->nlayers; i++) /* 'dense_<n>' when Python named it */
            if (!strncmp(f->layers[i].name, "dense", 5) && f->layers[i].nweights == 2)
                L = &f->layers[i];
        for (int k = 0; k < 2; k++) {
            const vxm_h5_weight *wt = L ? vxm_template_weight_named(L, k ? "bias" : "kernel") : NULL;
            if (!wt || wt->numel != weight_numel(a, 2 * layer + k))
                return vxm_error(ctx, VXM_EFORMAT, path, "layer %s %s (%zu values expected)",
                                 wt ? "has the wrong shape:" : "is missing or lacks", name,
                                 weight_numel(a, 2 * layer + k));
            w[2 * layer + k] = wt->data;
        }
    }
    return VXM_OK;
}

/* A conditional checkpoint as the trainer's model (the VxmDense part; model.c reads only VxmDense-like
 * classes). */
static vxm_status load_model(vxm_template *t, vxm_keras_file *f, const char *path)
{
    vxm_trainer *tr = t->tr;
    vxm_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        vxm_keras_file_free(f);
        return vxm_error(tr->ctx, VXM_ENOMEM, path, "out of memory");
    }
    m->file = f;
    tr->model = m;
    vxm_status st = parse_config(tr->ctx, path, f->model_config, &t->arch, &m->dense);
    if (!st)
        st = file_weights(tr->ctx, path, f, &t->arch, t->gen_init);
    m->dense.bidir = 1;
    m->kind = VXM_MODEL_VXMDENSE;
    m->ndim = m->dense.ndim;
    memcpy(m->inshape, m->dense.inshape, sizeof m->inshape);
    m->src_feats = m->trg_feats = 1;
    m->divisor = 1 << (vxm_dense_levels(&m->dense) - 1);
    m->serial = ++tr->ctx->model_serial;
    m->serial_ctx = tr->ctx;
    return st;
}

static int is_conditional(const vxm_keras_file *f)
{
    cJSON *root = cJSON_Parse(f->model_config);
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(root, "class_name");
    int yes = cJSON_IsString(cls) && !strcmp(cls->valuestring, "ConditionalTemplateCreation");
    cJSON_Delete(root);
    return yes;
}

vxm_status vxm_template_cond_model(vxm_template *t, const vxm_template_options *o)
{
    vxm_trainer *tr = t->tr;
    const char *path = tr->opt.load_weights;
    vxm_cond_arch want = {o->npheno, o->cond_features, o->cond_extra, tr->ndim, {0, 0, 0}};
    memcpy(want.shape, tr->shape, sizeof want.shape);
    t->arch = want;
    vxm_keras_file *f = NULL;
    vxm_status st = path ? vxm_keras_file_read(tr->ctx, path, &f) : VXM_OK;
    if (!st && f && is_conditional(f)) {
        st = load_model(t, f, path);
        if (!st && (t->arch.npheno != want.npheno || t->arch.ndim != want.ndim ||
                    memcmp(t->arch.shape, want.shape, sizeof want.shape)))
            st = vxm_error(tr->ctx, VXM_ESHAPE, path, "was made for %d attributes and %dx%dx%d images, not %d and "
                           "%dx%dx%d", t->arch.npheno, t->arch.shape[0], t->arch.shape[1], t->arch.shape[2],
                           want.npheno, want.shape[0], want.shape[1], want.shape[2]);
    } else if (!st) { /* a new model, or the VxmDense part of a VxmDense / TemplateCreation file */
        vxm_keras_file_free(f);
        st = check_size(tr->ctx, "template", &t->arch);
        if (!st)
            st = vxm_trainer_make_model(tr, tr->ndim, tr->shape, 1, 1);
    }
    size_t n = voxels(&t->arch);
    if (!st && !o->atlas_init)
        st = vxm_error(tr->ctx, VXM_EINVAL, "template", "a conditional template needs its atlas input");
    if (!st && (!(t->atlas_host = malloc(n * sizeof(float))) ||
                !(t->pheno = calloc((size_t)t->arch.npheno, sizeof(float)))))
        st = vxm_error(tr->ctx, VXM_ENOMEM, "template", "out of memory");
    if (!st)
        memcpy(t->atlas_host, o->atlas_init, n * sizeof(float));
    return st;
}

/* Copies the VxmDense training graph behind the generator: every node but the source input (which becomes the
 * generated atlas), parameters re-registered in order, gradient flags propagated from the atlas. */
vxm_status vxm_template_cond_graph(vxm_template *t, const vxm_template_options *o)
{
    vxm_trainer *tr = t->tr;
    vxm_graph *old = tr->g, *g = vxm_graph_new(old->ndim);
    int *map = malloc(sizeof(int) * (size_t)(old->n ? old->n : 1));
    const float *w[VXM_COND_MAX_WEIGHTS];
    memcpy(w, t->gen_init, sizeof w);
    vxm_status st = !g || !map ? vxm_error(tr->ctx, VXM_ENOMEM, "template", "out of memory") : VXM_OK;
    if (!st && !w[0])
        st = init_weights(tr->ctx, g, &t->arch, o->train.seed, w);
    int atlas = st ? -1 : add_generator(g, &t->arch, w);
    for (int i = 0; i < old->n && atlas >= 0; i++) {
        vxm_node n = old->nodes[i];
        if (i == old->in_source) {
            map[i] = atlas;
            continue;
        }
        if (n.op == VXM_OP_PARAM) {
            const vxm_graph_param *p = &old->params[n.p.param.index];
            if ((map[i] = vxm_graph_add_param(g, p->layer, p->kind, p->rank, p->dims, p->host)) < 0)
                atlas = -1;
            continue;
        }
        for (int k = 0; k < n.n_in; k++) {
            n.in[k] = map[n.in[k]];
            n.flags |= g->nodes[n.in[k]].flags & VXM_NODE_GRAD;
        }
        if ((map[i] = vxm_graph_add(g, &n)) < 0)
            atlas = -1;
    }
    if (!st && atlas < 0)
        st = vxm_error(tr->ctx, VXM_ENOMEM, "template", "out of memory");
    if (!st) {
        int *fields[] = {&g->out_moved, &g->out_warp, &g->out_preint, &g->out_flow_mean, &g->out_flow_logvar,
                         &g->in_source, &g->in_target, &g->out_neg_moved, &g->out_neg_warp, &g->in_seg_source,
                         &g->in_seg_target, &g->out_seg_moved, &g->in_hyper};
        const int *from[] = {&old->out_moved, &old->out_warp, &old->out_preint, &old->out_flow_mean,
                             &old->out_flow_logvar, &old->in_source, &old->in_target, &old->out_neg_moved,
                             &old->out_neg_warp, &old->in_seg_source, &old->in_seg_target, &old->out_seg_moved,
                             &old->in_hyper};
        for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++)
            *fields[k] = *from[k] >= 0 ? map[*from[k]] : -1;
        float **owned = g->owned; /* the VxmDense graph's own arrays move over (its parameters point at them) */
        int nowned = g->nowned;
        float **all = realloc(owned, sizeof *all * (size_t)(nowned + old->nowned + 1));
        if (!all) {
            st = vxm_error(tr->ctx, VXM_ENOMEM, "template", "out of memory");
        } else {
            if (old->nowned)
                memcpy(all + nowned, old->owned, sizeof *all * (size_t)old->nowned);
            g->owned = all;
            g->nowned = nowned + old->nowned;
            old->nowned = 0;
            tr->g = g;
            g = old;
        }
    }
    vxm_graph_free(g); /* the replaced graph, or the new one after a failure */
    free(map);
    return st;
}

int vxm_template_cond_config(const vxm_template *t, cJSON *c, int cap)
{
    const vxm_cond_arch *a = &t->arch;
    cJSON *pheno = cJSON_CreateArray();
    if (!pheno || !cJSON_AddItemToArray(pheno, cJSON_CreateNumber(a->npheno)) ||
        !cJSON_AddItemToObject(c, "pheno_input_shape", pheno))
        return 0;
    cJSON_ReplaceItemInObject(c, "src_feats", cJSON_CreateNumber(1)); /* the atlas's channels */
    return cJSON_AddNullToObject(c, "conv_image_shape") && cJSON_AddNumberToObject(c, "conv_size", 3) &&
           cJSON_AddNumberToObject(c, "conv_nb_levels", 0) && cJSON_AddNumberToObject(c, "conv_nb_features", a->feats) &&
           cJSON_AddNumberToObject(c, "extra_conv_layers", a->extra) && cJSON_AddTrueToObject(c, "use_mean_stream") &&
           cJSON_AddNumberToObject(c, "mean_cap", cap) && cJSON_AddFalseToObject(c, "templcondsi") &&
           cJSON_AddNullToObject(c, "templcondsi_init");
}

/* ---- generation ---------------------------------------------------------------------------------------- */

/* The generator alone on host weights w: out = atlas_input + atlas_gen(attrs). */
static vxm_status generate(vxm_context *ctx, vxm_backend *be, const vxm_cond_arch *a, const float *const *w,
                           const float *attrs, const float *atlas_input, float *out)
{
    vxm_graph *g = vxm_graph_new(a->ndim);
    int atlas = g ? add_generator(g, a, w) : -1;
    if (atlas < 0) {
        vxm_graph_free(g);
        return vxm_error(ctx, VXM_ENOMEM, "template", "out of memory");
    }
    g->nodes[atlas].flags |= VXM_NODE_OUTPUT;
    const float *in[5] = {atlas_input, NULL, NULL, NULL, attrs};
    vxm_exec *ex = NULL;
    vxm_status st = vxm_exec_begin_with(be, g, NULL, in, 5, 1, 0, &ex);
    if (!st)
        st = vxm_exec_run_all(ex);
    if (!st)
        st = vxm_exec_read(ex, atlas, out);
    vxm_exec_end(ex);
    vxm_graph_free(g);
    return st;
}

static vxm_status conditional(vxm_template *t)
{
    return t->arch.npheno ? VXM_OK : vxm_error(t->tr->ctx, VXM_EINVAL, "template", "the template is not conditional");
}

vxm_status vxm_template_set_attributes(vxm_template *t, const float *attrs)
{
    vxm_status st = conditional(t);
    if (!st)
        memcpy(t->pheno, attrs, sizeof(float) * (size_t)t->arch.npheno);
    return st;
}

vxm_status vxm_template_generate(vxm_template *t, const float *attrs, float *atlas)
{
    vxm_status st = conditional(t);
    int nw = st ? 0 : vxm_cond_num_weights(&t->arch), k = 0; /* generator weights are parameters 0 .. nw-1 */
    float *w[VXM_COND_MAX_WEIGHTS] = {NULL};
    for (; k < nw && !st; k++)
        if (!(w[k] = malloc(t->tr->g->params[k].numel * sizeof(float))))
            st = vxm_error(t->tr->ctx, VXM_ENOMEM, "template", "out of memory");
        else
            st = vxm_trainer_read_weight(t->tr, k, w[k]);
    if (!st)
        st = generate(t->tr->ctx, t->tr->be, &t->arch, (const float *const *)w, attrs, t->atlas_host, atlas);
    for (k = 0; k < nw; k++)
        free(w[k]);
    return st;
}

struct vxm_cond_template {
    vxm_context *ctx;
    vxm_keras_file *file;
    vxm_cond_arch arch;
    const float *w[VXM_COND_MAX_WEIGHTS];
};

vxm_status vxm_cond_template_load(vxm_context *ctx, const char *path, vxm_cond_template **out)
{
    *out = NULL;
    vxm_cond_template *m = calloc(1, sizeof *m);
    if (!m)
        return vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
    m->ctx = ctx;
    vxm_dense_config dc;
    vxm_status st = vxm_keras_file_read(ctx, path, &m->file);
    if (!st)
        st = parse_config(ctx, path, m->file->model_config, &m->arch, &dc);
    if (!st)
        st = file_weights(ctx, path, m->file, &m->arch, m->w);
    if (st) {
        vxm_cond_template_free(m);
        return st;
    }
    *out = m;
    return VXM_OK;
}

void vxm_cond_template_free(vxm_cond_template *m)
{
    if (m) {
        vxm_keras_file_free(m->file);
        free(m);
    }
}

const vxm_cond_arch *vxm_cond_template_arch(const vxm_cond_template *m)
{
    return &m->arch;
}

vxm_status vxm_cond_template_generate(vxm_backend *be, const vxm_cond_template *m, const float *attrs,
                                      const float *atlas_input, float *out)
{
    return generate(m->ctx, be, &m->arch, m->w, attrs, atlas_input, out);
}
