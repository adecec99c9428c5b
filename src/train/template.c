/* Template creation (TemplateCreation / train_template.py, training doc §4.1; template.h): the VxmDense training
 * graph with its source input turned into the trainable atlas, MeanStream on the inverse field, the script's four
 * losses, on the trainer's parameters, Adam and checkpoints. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/plan.h"
#include "train/checkpoint.h"
#include "train/template_internal.h"

void vxm_template_options_default(vxm_template_options *o)
{
    memset(o, 0, sizeof *o);
    vxm_train_options_default(&o->train);
    o->train.image_loss = VXM_LOSS_NCC; /* train_template.py --image-loss ncc */
    o->image_weight = 1.0;
    o->mean_weight = 1.0;
    o->grad_weight = 1.0;
    o->mean_cap = 100;
    o->meanstream = VXM_MEANSTREAM_STREAMING; /* the documented algorithm (doc §4.1; meanstream.h) */
    o->deform_weight = 0.01; /* train_cond_template.py --deform-loss-weight (doc §4.2) */
    o->cond_features = 4;    /* conv_nb_features */
    o->cond_extra = 3;       /* extra_conv_layers */
}

size_t vxm_template_atlas_numel(const vxm_template *t)
{
    const int *s = t->tr->shape;
    return (size_t)s[0] * (size_t)s[1] * (size_t)s[2]; /* one channel */
}

vxm_trainer *vxm_template_trainer(vxm_template *t)
{
    return t->tr;
}

long vxm_template_steps_done(const vxm_template *t)
{
    return t->tr->step;
}

/* The source input node becomes the atlas parameter (LocalParamWithInput 'atlas', weight 'kernel', Keras shape
 * (*inshape, 1)); GRAD flags are then propagated again so that the U-Net input concat carries its gradient (doc
 * §9 item 9; test hook drop_path 1 leaves that path out). */
static vxm_status make_atlas(vxm_template *t, const vxm_template_options *o)
{
    vxm_trainer *tr = t->tr;
    vxm_graph *g = tr->g;
    int src = g->in_source;
    size_t numel = vxm_node_numel(&g->nodes[src]);
    const vxm_h5_layer *L = tr->model->file ? vxm_keras_find_layer(tr->model->file, "atlas") : NULL;
    const float *init = o->atlas_init;
    if (L && L->nweights == 1 && L->weights[0].numel == numel)
        init = L->weights[0].data; /* load_weights(by_name=True) overwrites the initial atlas (doc §4.1) */
    if (!init)
        return vxm_error(tr->ctx, VXM_EINVAL, tr->model->path, "no initial atlas (the file has no atlas layer)");
    if (!(t->atlas_host = malloc(numel * sizeof(float))))
        return vxm_error(tr->ctx, VXM_ENOMEM, "template", "out of memory");
    memcpy(t->atlas_host, init, numel * sizeof(float));
    long dims[4];
    int r = 0;
    for (int d = 3 - tr->ndim; d < 3; d++)
        dims[r++] = tr->shape[d];
    dims[r++] = g->nodes[src].channels;
    int p = vxm_graph_add_param(g, "atlas", "kernel", r, dims, t->atlas_host);
    if (p < 0)
        return vxm_error(tr->ctx, VXM_ENOMEM, "template", "out of memory");
    /* move the appended parameter node into the input's slot (execution order stays topological) */
    vxm_node pn = g->nodes[p];
    g->n--;
    memcpy(pn.shape, g->nodes[src].shape, sizeof pn.shape);
    pn.channels = g->nodes[src].channels;
    g->nodes[src] = pn;
    t->atlas = pn.p.param.index;
    for (int i = 0; i < g->n && o->drop_path != 1; i++) /* nodes are in topological order: one pass */
        for (int k = 0; k < g->nodes[i].n_in; k++)
            g->nodes[i].flags |= g->nodes[g->nodes[i].in[k]].flags & VXM_NODE_GRAD;
    return VXM_OK;
}

const vxm_h5_weight *vxm_template_weight_named(const vxm_h5_layer *L, const char *kind)
{
    size_t k = strlen(kind);
    for (int i = 0; i < L->nweights; i++) {
        const char *n = L->weights[i].name, *slash = n ? strrchr(n, '/') : NULL;
        if (slash && !strncmp(slash + 1, kind, k) && (!slash[1 + k] || slash[1 + k] == ':'))
            return &L->weights[i];
    }
    return NULL;
}

/* MeanStream's non-trainable Keras weights 'mean' (*inshape, ndim) and 'count' (1,) (neurite layers.py
 * MeanStream.build): restored from the loaded file's 'mean_stream' layer when it has one -- Keras'
 * load_weights(by_name) restores non-trainable weights too, so --load-weights and --resume continue the stream
 * exactly -- and saved after the parameters. */
static vxm_status meanstream_state(vxm_template *t)
{
    vxm_trainer *tr = t->tr;
    const vxm_node *x = &tr->g->nodes[tr->g->out_neg_warp];
    const vxm_h5_layer *L = tr->model->file ? vxm_keras_find_layer(tr->model->file, "mean_stream") : NULL;
    if (L) {
        const vxm_h5_weight *m = vxm_template_weight_named(L, "mean"), *c = vxm_template_weight_named(L, "count");
        if (!m || !c || m->numel != t->ms.numel || c->numel != 1 || !(c->data[0] >= 0) ||
            c->data[0] != floorf(c->data[0]) || c->data[0] > 16777216.0f)
            return vxm_error(tr->ctx, VXM_EFORMAT, tr->model->path,
                             "layer mean_stream does not match the model (expected mean of %zu values and a "
                             "non-negative integer count)", t->ms.numel);
        memcpy(t->ms.M, m->data, t->ms.numel * sizeof(float));
        t->ms.n = (long)c->data[0];
    }
    t->count = (float)t->ms.n;
    vxm_h5_out_weight *w = t->state;
    w[0].layer = w[1].layer = "mean_stream";
    w[0].kind = "mean";
    w[1].kind = "count";
    for (int d = 3 - tr->ndim; d < 3; d++)
        w[0].dims[w[0].rank++] = x->shape[d];
    w[0].dims[w[0].rank++] = x->channels;
    w[0].data = t->ms.M;
    w[1].rank = 1;
    w[1].dims[0] = 1;
    w[1].data = &t->count;
    tr->extra = w;
    tr->nextra = 2;
    return VXM_OK;
}

/* Test hook drop_path 2: the transformer-image contribution to the atlas gradient becomes 0 * dy (same size:
 * the warped atlas has the atlas's shape), so that a test can show that this path is needed. */
static void drop_transformer_path(vxm_template *t)
{
    vxm_graph *g = t->tr->g;
    int atlas_node = g->in_source;
    for (int i = g->n_forward; i < g->n; i++) {
        vxm_node *n = &g->nodes[i];
        if (n->op != VXM_OP_TRANSFORM_BACK_IMAGE || n->in[0] != atlas_node)
            continue;
        n->op = VXM_OP_SCALE;
        n->in[0] = n->in[2];
        n->in[1] = n->in[2] = -1;
        n->n_in = 1;
        n->p.scale.s = 0.0f;
    }
}

static int add_term(vxm_trainer *tr, vxm_op op, const char *name, int a, int b, double factor, double weight)
{
    int i = vxm_graph_add_loss(tr->g, op, name, a, b, factor, weight);
    if (i >= 0) {
        tr->loss_node[tr->names.n] = i;
        tr->names.name[tr->names.n] = name;
        tr->names.weight[tr->names.n++] = weight;
    }
    return i;
}

/* train_template.py l.146-157: [image(scan, y_source) w, image(atlas, y_target) 1-w, MSE(0, mean_stream),
 * Grad('l2', loss_mult=2)(pos_flow)]; conditional (train_cond_template.py l.164-167, doc §4.2): [image(scan,
 * y_source) w, MSE(0, mean_stream), Grad('l2', loss_mult=2)(pos_flow), MSE(0, pos_flow) deform_weight].  Image
 * terms of weight 0 are left out (no effect on the gradient). */
static vxm_status add_losses(vxm_template *t, const vxm_template_options *o, int mean_out)
{
    vxm_trainer *tr = t->tr;
    vxm_graph *g = tr->g;
    int ncc = o->train.image_loss == VXM_LOSS_NCC, r = 0;
    vxm_op img = ncc ? VXM_OP_LOSS_NCC : VXM_OP_LOSS_MSE;
    double f = ncc ? 1.0 : 1.0 / (o->train.image_sigma * o->train.image_sigma);
    if (o->image_weight != 0)
        r = add_term(tr, img, ncc ? "ncc" : "mse", g->in_target, g->out_moved, f, o->image_weight);
    if (r >= 0 && o->image_weight != 1 && !o->npheno)
        r = add_term(tr, img, ncc ? "ncc_atlas" : "mse_atlas", g->in_source, g->out_neg_moved, f, 1 - o->image_weight);
    int zi = r < 0 ? -1 : vxm_graph_add_input_like(g, mean_out, 3, "mean_stream_zeros");
    r = zi < 0 ? -1 : add_term(tr, VXM_OP_LOSS_MSE, "mean_stream", zi, mean_out, 1.0, o->mean_weight);
    if (r >= 0)
        r = add_term(tr, VXM_OP_LOSS_GRAD, "grad", g->out_warp, -1, 2.0, o->grad_weight);
    if (r >= 0 && o->npheno) /* pos_flow has the inverse field's shape: the same zeros */
        r = add_term(tr, VXM_OP_LOSS_MSE, "deform", zi, g->out_warp, 1.0, o->deform_weight);
    return r < 0 ? vxm_error(tr->ctx, VXM_ENOMEM, "template", "out of memory") : VXM_OK;
}

/* TemplateCreation's constructor config (Python: TemplateCreation(**config)): VxmDense's kwargs without the ones
 * TemplateCreation sets itself (bidir, input_model) and trg_feats; src_feats = the scans' channels. */
static vxm_status make_config(vxm_template *t, int cap)
{
    vxm_trainer *tr = t->tr;
    vxm_dense_config cfg = tr->model->dense;
    cfg.ndim = tr->ndim;
    memcpy(cfg.inshape, tr->shape, sizeof cfg.inshape);
    char *js = vxm_dense_config_to_json(&cfg);
    cJSON *root = js ? cJSON_Parse(js) : NULL;
    free(js);
    cJSON *c = cJSON_GetObjectItemCaseSensitive(root, "config");
    const char *cls = t->arch.npheno ? "ConditionalTemplateCreation" : "TemplateCreation";
    int ok = c && cJSON_ReplaceItemInObject(root, "class_name", cJSON_CreateString(cls));
    if (ok) {
        cJSON_DeleteItemFromObject(c, "bidir");
        cJSON_DeleteItemFromObject(c, "input_model");
        cJSON_DeleteItemFromObject(c, "trg_feats");
        cJSON_ReplaceItemInObject(c, "src_feats", cJSON_CreateNumber(cfg.trg_feats));
        ok = t->arch.npheno ? vxm_template_cond_config(t, c, cap)
                            : cJSON_AddNumberToObject(c, "mean_cap", cap) &&
                                  cJSON_AddNumberToObject(c, "atlas_feats", cfg.src_feats);
    }
    tr->model_config = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return tr->model_config ? VXM_OK : vxm_error(tr->ctx, VXM_ENOMEM, "template", "out of memory");
}

static vxm_status check_options(vxm_context *ctx, const vxm_template_options *o)
{
    if (!(o->image_weight >= 0 && o->image_weight <= 1) || !(o->mean_weight >= 0) || !(o->grad_weight >= 0) ||
        o->mean_cap < 1 || !(o->train.lr > 0) || !(o->deform_weight >= 0) || o->npheno < 0)
        return vxm_error(ctx, VXM_EINVAL, "template",
                         "invalid options (image weight outside [0, 1], negative weights, cap < 1 or lr <= 0)");
    if (o->npheno && (o->cond_features < 1 || o->cond_extra < 0 || o->cond_extra > VXM_COND_MAX_EXTRA))
        return vxm_error(ctx, VXM_EINVAL, "template", "invalid conditional generator (features < 1 or more than %d "
                         "extra convolutions)", VXM_COND_MAX_EXTRA);
    return VXM_OK;
}

vxm_status vxm_template_create(vxm_context *ctx, vxm_backend *be, const vxm_template_options *o, int ndim,
                               const int shape[3], vxm_template **out)
{
    *out = NULL;
    vxm_status st = check_options(ctx, o);
    if (st)
        return st;
    vxm_template *t = calloc(1, sizeof *t);
    vxm_trainer *tr = t ? calloc(1, sizeof *tr) : NULL;
    if (!tr) {
        free(t);
        return vxm_error(ctx, VXM_ENOMEM, "template", "out of memory");
    }
    t->tr = tr;
    tr->ctx = ctx;
    tr->be = be;
    tr->opt = o->train;
    tr->opt.bidir = 1; /* VxmDense(bidir=True) inside TemplateCreation */
    if (o->train.resume)
        tr->opt.load_weights = o->train.resume;
    tr->ndim = ndim;
    memcpy(tr->shape, shape, sizeof tr->shape);
    tr->meanstream_mode = o->meanstream == VXM_MEANSTREAM_STREAMING ? "streaming" : "graph";
    int mean_out = -1;
    t->atlas = -1;
    st = o->npheno ? vxm_template_cond_model(t, o) : vxm_trainer_make_model(tr, ndim, shape, 1, 1);
    if (!st)
        st = vxm_dense_build_graph_ex(ctx, tr->model, ndim, shape, 1, 0, 0, &tr->g);
    if (!st && (tr->g->out_neg_warp < 0 || tr->g->out_neg_moved < 0))
        st = vxm_error(ctx, VXM_EINVAL, tr->model->path, "model graph lacks the inverse field template needs");
    if (!st)
        st = o->npheno ? vxm_template_cond_graph(t, o) : make_atlas(t, o);
    if (!st && tr->model->new_weights)
        st = vxm_trainer_init_weights(tr);
    if (!st && (mean_out = vxm_meanstream_add(tr->g, &t->ms, o->meanstream, o->mean_cap, tr->g->out_neg_warp, 2)) < 0)
        st = vxm_error(ctx, VXM_ENOMEM, "template", "out of memory");
    if (!st)
        st = add_losses(t, o, mean_out);
    if (!st && !(t->zeros = calloc(t->ms.numel, sizeof(float))))
        st = vxm_error(ctx, VXM_ENOMEM, "template", "out of memory");
    if (!st && !(st = vxm_graph_build_backward(ctx, tr->g)))
        vxm_meanstream_bind_backward(&t->ms, tr->g);
    if (!st && (t->ms.take_back < 0 || t->ms.out_back < 0))
        st = vxm_error(ctx, VXM_EINVAL, "template", "MeanStream has no gradient path");
    if (!st && o->drop_path == 2)
        drop_transformer_path(t);
    if (!st)
        st = meanstream_state(t);
    if (!st)
        st = make_config(t, o->mean_cap);
    if (!st)
        st = vxm_weights_upload(be, tr->g, &tr->w);
    if (!st && !(tr->plan = vxm_plan_new()))
        st = vxm_error(ctx, VXM_ENOMEM, "template", "out of memory");
    if (!st)
        st = vxm_trainer_alloc_state(tr);
    if (!st && o->train.resume)
        st = vxm_trainer_load_optimizer(tr, o->train.resume);
    if (st) {
        vxm_template_free(t);
        return st;
    }
    *out = t;
    return VXM_OK;
}

void vxm_template_free(vxm_template *t)
{
    if (!t)
        return;
    vxm_trainer_free(t->tr);
    vxm_meanstream_free(&t->ms);
    free(t->atlas_host);
    free(t->zeros);
    free(t->pheno);
    free(t);
}

/* One run of the training graph for one scan: losses, gradients into the trainer's buffers, and (commit) the
 * MeanStream state update. */
static vxm_status run(vxm_template *t, const float *scan, vxm_train_losses *losses, int commit)
{
    vxm_trainer *tr = t->tr;
    vxm_backend *be = tr->be;
    vxm_meanstream_prepare(&t->ms, tr->g);
    /* conditional: the atlas input and the attributes are inputs 0 and 4 (template_cond.c) */
    const float *in[5] = {t->arch.npheno ? t->atlas_host : NULL, scan, t->ms.M, t->zeros, t->pheno};
    vxm_exec *ex = NULL;
    vxm_status st = vxm_exec_begin_with(be, tr->g, tr->w, in, t->arch.npheno ? 5 : 4, 1, 0, &ex);
    if (!st)
        st = vxm_exec_set_plan(ex, tr->plan);
    if (!st)
        st = vxm_exec_run_all(ex);
    vxm_train_losses L = tr->names;
    L.total = 0;
    for (int i = 0; i < L.n && !st; i++) {
        float v = 0;
        const vxm_loss_params *p = &tr->g->nodes[tr->loss_node[i]].p.loss;
        st = vxm_exec_read(ex, tr->loss_node[i], &v);
        L.value[i] = p->weight * p->factor * v;
        L.total += L.value[i];
    }
    for (int k = 0; k < tr->g->nparams && !st; k++) { /* batch 1: the gradient is the sample's */
        size_t n = tr->g->params[k].numel;
        int gn = tr->g->param_grad[k];
        if (!(st = be->ops->fill(be, tr->grad[k], n, 0.0f)) && gn >= 0)
            st = be->ops->axpy(be, 1.0f, vxm_exec_tensor(ex, gn)->buf, tr->grad[k], n);
    }
    if (!st && commit)
        st = vxm_meanstream_commit(&t->ms, ex);
    vxm_exec_end(ex);
    if (!st && losses)
        *losses = L;
    if (!st && !isfinite(L.total))
        st = vxm_error(tr->ctx, VXM_ENUMERIC, "template", "the template loss is %s", isnan(L.total) ? "NaN" : "infinite");
    t->count = (float)t->ms.n;
    return st;
}


vxm_status vxm_template_step(vxm_template *t, const float *scan, vxm_train_losses *L)
{
    vxm_status st = run(t, scan, L, 1);
    return st ? st : vxm_trainer_apply(t->tr);
}

static vxm_status unconditional(vxm_template *t)
{
    return t->atlas < 0 ? vxm_error(t->tr->ctx, VXM_EINVAL, "template", "a conditional template has no atlas weight")
                        : VXM_OK;
}

vxm_status vxm_template_evaluate(vxm_template *t, const float *scan, vxm_train_losses *L, float *atlas_grad)
{
    vxm_status st = run(t, scan, L, 0);
    if (!st && atlas_grad && !(st = unconditional(t)))
        st = vxm_trainer_read_gradient(t->tr, t->atlas, atlas_grad);
    return st;
}

vxm_status vxm_template_read_atlas(vxm_template *t, float *atlas)
{
    vxm_status st = unconditional(t);
    return st ? st : vxm_trainer_read_weight(t->tr, t->atlas, atlas);
}

vxm_status vxm_template_write_atlas(vxm_template *t, const float *atlas)
{
    vxm_status st = unconditional(t);
    return st ? st : vxm_trainer_write_weight(t->tr, t->atlas, atlas);
}

vxm_status vxm_template_checkpoint_meanstream(vxm_context *ctx, const char *path, vxm_meanstream_mode *mode)
{
    vxm_h5_state *s = NULL;
    char buf[32];
    vxm_status st = vxm_h5_state_open(ctx, path, VXM_CKPT_GROUP, &s);
    if (!st && vxm_h5_state_str(s, "meanstream", buf, sizeof buf)) {
        if (!strcmp(buf, "streaming") || !strcmp(buf, "graph"))
            *mode = strcmp(buf, "graph") ? VXM_MEANSTREAM_STREAMING : VXM_MEANSTREAM_GRAPH;
        else
            st = vxm_error(ctx, VXM_EFORMAT, path, "unknown MeanStream mode '%s'", buf);
    }
    vxm_h5_state_close(s);
    return st;
}

vxm_status vxm_template_save(vxm_template *t, const char *path, long epoch)
{
    return vxm_trainer_save_checkpoint(t->tr, path, epoch);
}
