/* Model loading and description (public vxm_model_* API). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

/* The root model_config decides the kind: a VxmDense constructor config (current VoxelMorph) or a Keras
 * functional graph (class "Model"/"Functional": the legacy CVPR/MICCAI 2018 files). */
static vxm_status load_config(vxm_context *ctx, vxm_model *m)
{
    cJSON *root = cJSON_Parse(m->file->model_config);
    const cJSON *cls = root ? cJSON_GetObjectItemCaseSensitive(root, "class_name") : NULL;
    if (!cJSON_IsString(cls)) {
        cJSON_Delete(root);
        return vxm_error(ctx, VXM_EFORMAT, m->path, "not a VoxelMorph model: model_config has no class_name");
    }
    if (!strcmp(cls->valuestring, "Model") || !strcmp(cls->valuestring, "Functional")) {
        m->kind = VXM_MODEL_KERAS_GRAPH;
        m->keras_graph = root;
        return vxm_keras_graph_inspect(ctx, m);
    }
    cJSON_Delete(root);
    vxm_status st = vxm_dense_config_parse(ctx, m->path, m->file->model_config, &m->dense);
    if (st)
        return st;
    m->kind = VXM_MODEL_VXMDENSE;
    m->ndim = m->dense.ndim;
    memcpy(m->inshape, m->dense.inshape, sizeof m->inshape);
    m->src_feats = m->dense.src_feats;
    m->trg_feats = m->dense.trg_feats;
    m->divisor = 1 << (vxm_dense_levels(&m->dense) - 1);
    return VXM_OK;
}

vxm_status vxm_model_load(vxm_context *ctx, const char *path, vxm_model **out)
{
    *out = NULL;
    vxm_model *m = calloc(1, sizeof *m);
    if (!m)
        return vxm_error(ctx, VXM_ENOMEM, path, "out of memory");
    m->path = strdup(path);
    m->serial = ++ctx->model_serial;
    m->serial_ctx = ctx;
    vxm_status st = vxm_keras_file_read(ctx, path, &m->file);
    if (st == VXM_OK)
        st = load_config(ctx, m);
    if (st != VXM_OK) {
        vxm_model_free(m);
        return st;
    }
    *out = m;
    return VXM_OK;
}

void vxm_model_free(vxm_model *m)
{
    if (!m)
        return;
    vxm_keras_file_free(m->file);
    cJSON_Delete(m->keras_graph);
    free(m->path);
    free(m);
}

int vxm_model_size_divisor(const vxm_model *m)
{
    return m->divisor;
}

vxm_status vxm_model_stored_shape(const vxm_model *m, int *ndim, int shape[3])
{
    if (m->inshape[2] <= 0)
        return VXM_EINVAL;
    *ndim = m->ndim;
    for (int d = 0; d < 3; d++)
        shape[d] = m->inshape[d];
    return VXM_OK;
}

int vxm_model_hyper_params(const vxm_model *m)
{
    return m->kind == VXM_MODEL_VXMDENSE && m->dense.hyper ? m->dense.nb_hyp_params : 0;
}

vxm_status vxm_model_set_hyper(vxm_context *ctx, vxm_model *m, double lambda)
{
    if (!vxm_model_hyper_params(m))
        return vxm_error(ctx, VXM_EINVAL, m->path, "is not a HyperMorph model: it takes no hyper-parameter");
    if (!(lambda >= 0.0 && lambda <= 1.0))
        return vxm_error(ctx, VXM_EINVAL, m->path, "hyper-parameter %g is outside [0, 1]", lambda);
    m->hyper = lambda;
    m->hyper_set = 1;
    return VXM_OK;
}

vxm_status vxm_model_build_graph(vxm_context *ctx, const vxm_model *m, int ndim, const int shape[3],
                                 vxm_graph **out)
{
    if (m->kind == VXM_MODEL_KERAS_GRAPH)
        return vxm_keras_graph_build(ctx, m, ndim, shape, out);
    return vxm_dense_build_graph(ctx, m, ndim, shape, out);
}

#define APPEND(...)                                                                                            \
    do {                                                                                                       \
        if (used < buflen)                                                                                     \
            used += (size_t)snprintf(buf + used, buflen - used, __VA_ARGS__);                                  \
    } while (0)

vxm_status vxm_model_describe(vxm_context *ctx, const vxm_model *m, int ndim, const int shape[3], char *buf,
                              size_t buflen)
{
    vxm_graph *g;
    vxm_status st = vxm_model_build_graph(ctx, m, ndim, shape, &g);
    if (st)
        return st;
    const vxm_dense_config *c = &m->dense;
    size_t used = 0;
    long params = 0;
    if (m->kind == VXM_MODEL_KERAS_GRAPH) {
        APPEND("model: %s\nclass: legacy Keras functional graph (%d-D, %d+%d input channels), keras %s\n",
               m->path, m->ndim, m->src_feats, m->trg_feats, m->file->keras_version ? m->file->keras_version : "?");
        APPEND("custom layers use the legacy defaults: linear clamped transformer, 7-step scaling and squaring, "
               "x2 rescale, legacy i/f resize; sampling layers run in mean mode unless a seed is given\n");
    } else {
        APPEND("model: %s\nclass: %s (%d-D), %d U-Net levels, %d conv(s) per level\n", m->path,
               c->hyper ? "HyperVxmDense" : "VxmDense", c->ndim, vxm_dense_levels(c), c->conv_per_level);
        if (c->hyper)
            APPEND("hypernetwork: %d hyper-parameter(s), %d Dense layers of %d ReLU units; every U-Net conv is a "
                   "hyper-convolution (register with --hyper lambda)\n",
                   c->nb_hyp_params, c->nb_hyp_layers, c->nb_hyp_units);
        APPEND("encoder features:");
        for (int i = 0; i < c->n_enc; i++)
            APPEND(" %d", c->enc[i]);
        APPEND("\ndecoder features:");
        for (int i = 0; i < c->n_dec; i++)
            APPEND(" %d", c->dec[i]);
        APPEND("\nsvf_resolution %g, int_resolution %g, int_steps %d, bidir %d, use_probs %d, src_feats %d, "
               "trg_feats %d\n",
               c->svf_resolution, c->int_resolution, c->int_steps, c->bidir, c->use_probs, c->src_feats,
               c->trg_feats);
    }
    APPEND("input sizes must be multiples of %d\n", m->divisor);
    APPEND("\n%-44s %-10s %-22s %12s\n", "layer", "op", "output", "GFLOP");
    for (int i = 0; i < g->n; i++) {
        const vxm_node *n = &g->nodes[i];
        double fl = 0;
        if (n->op == VXM_OP_PARAM || n->op == VXM_OP_NOISE)
            continue;
        if (n->op == VXM_OP_CONV) {
            long k = (long)n->p.conv.ksize[0] * n->p.conv.ksize[1] * n->p.conv.ksize[2] * g->nodes[n->in[0]].channels;
            if (g->nodes[n->in[1]].op == VXM_OP_PARAM) /* a hyper-convolution's kernel is computed, not stored */
                params += k * n->channels + n->channels;
            fl = 2.0 * k * n->channels * n->shape[0] * n->shape[1] * n->shape[2];
        }
        char shp[64];
        snprintf(shp, sizeof shp, "%dx%dx%dx%d", n->shape[0], n->shape[1], n->shape[2], n->channels);
        APPEND("%-44s %-10s %-22s %12.3f\n", n->name, vxm_op_name(n->op), shp, fl / 1e9);
    }
    APPEND("\nparameters: %ld\nconvolution GFLOP at %dx%dx%d: %.2f\n", params, shape[0], shape[1], shape[2],
           vxm_graph_conv_flops(g) / 1e9);
    vxm_graph_free(g);
    return VXM_OK;
}
