/* The trainer's weights in Keras order, checkpoints that Python's VxmDense.load and `vxm register` read (spec §10)
 * with the optimiser state that --resume restores (checkpoint.h), and gradient files in the layout of
 * shared/data/train/<case>_grads.h5. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/keras_h5.h"
#include "model/keras_h5_write.h"
#include "train/checkpoint.h"
#include "train/trainer_internal.h"

int vxm_trainer_num_weights(const vxm_trainer *t)
{
    return t->g->nparams;
}

void vxm_trainer_weight_info(const vxm_trainer *t, int i, vxm_weight_info *info)
{
    const vxm_graph_param *p = &t->g->params[i];
    info->layer = p->layer;
    info->kind = p->kind;
    info->rank = p->rank;
    memcpy(info->dims, p->dims, sizeof info->dims);
    info->numel = p->numel;
}

vxm_status vxm_trainer_read_weight(vxm_trainer *t, int i, float *data)
{
    return t->be->ops->buffer_read(t->be, t->w->buf[i], data, t->g->params[i].numel);
}

vxm_status vxm_trainer_read_gradient(vxm_trainer *t, int i, float *data)
{
    return t->be->ops->buffer_read(t->be, t->grad[i], data, t->g->params[i].numel);
}

vxm_status vxm_trainer_write_weight(vxm_trainer *t, int i, const float *data)
{
    return t->be->ops->buffer_write(t->be, t->w->buf[i], data, t->g->params[i].numel);
}

/* Host copies of one device tensor per parameter (weights, gradients, Adam moments) as the writer's list; free
 * with free_list. */
static vxm_status download_all(vxm_trainer *t, vxm_buffer *const *src, vxm_h5_out_weight **out)
{
    int n = t->g->nparams;
    vxm_h5_out_weight *w = calloc((size_t)(n ? n : 1), sizeof *w);
    if (!w)
        return vxm_error(t->ctx, VXM_ENOMEM, "train", "out of memory");
    vxm_status st = VXM_OK;
    for (int k = 0; k < n && !st; k++) {
        const vxm_graph_param *p = &t->g->params[k];
        float *h = malloc((p->numel ? p->numel : 1) * sizeof(float));
        w[k].layer = p->layer;
        w[k].kind = p->kind;
        w[k].rank = p->rank;
        memcpy(w[k].dims, p->dims, sizeof w[k].dims);
        w[k].data = h;
        if (!h)
            st = vxm_error(t->ctx, VXM_ENOMEM, "train", "out of memory");
        else
            st = t->be->ops->buffer_read(t->be, src[k], h, p->numel);
    }
    if (st) {
        for (int k = 0; k < n; k++)
            free((void *)w[k].data);
        free(w);
        return st;
    }
    *out = w;
    return VXM_OK;
}

static void free_list(vxm_h5_out_weight *w, int n)
{
    for (int k = 0; k < n; k++)
        free((void *)w[k].data);
    free(w);
}

/* A parameter that is a Keras layer of its own (no node carries its layer name, e.g. TemplateCreation's atlas,
 * a LocalParamWithInput): listed where its node is. */
static int weight_only_layer(const vxm_graph *g, int i)
{
    if (g->nodes[i].op != VXM_OP_PARAM)
        return 0;
    const char *layer = g->params[g->nodes[i].p.param.index].layer;
    for (int j = 0; j < g->n_forward; j++)
        if (g->nodes[j].op != VXM_OP_PARAM && !strcmp(g->nodes[j].name, layer))
            return 0;
    return 1;
}

/* Whether the loaded file lists the layer of every weight to save (not so when a plain VxmDense file seeds a
 * template: no atlas, no mean_stream). */
static int file_lists_all(const vxm_trainer *t, const vxm_keras_file *f)
{
    for (int k = 0; k < t->g->nparams + t->nextra; k++) {
        const char *layer = k < t->g->nparams ? t->g->params[k].layer : t->extra[k - t->g->nparams].layer;
        int found = 0;
        for (int i = 0; i < f->nlayers && !found; i++)
            found = !strcmp(f->layers[i].name, layer);
        if (!found)
            return 0;
    }
    return 1;
}

/* Keras layer names in model order: the loaded file's list, else the forward graph's layers (a fused LeakyReLU is
 * its own Keras layer "<conv>_activation") and the extra weights' layers. */
static int layer_names(const vxm_trainer *t, char ***out)
{
    const vxm_keras_file *f = t->model->file;
    const vxm_graph *g = t->g;
    int cap = (f ? f->nlayers : 0) + 2 * g->n_forward + t->nextra + 1, n = 0;
    char **names = calloc((size_t)cap, sizeof *names);
    if (!names)
        return -1;
    if (f && f->nlayers > 0 && file_lists_all(t, f)) {
        for (int i = 0; i < f->nlayers; i++)
            names[n++] = strdup(f->layers[i].name);
    } else {
        for (int i = 0; i < g->n_forward; i++) {
            const vxm_node *nd = &g->nodes[i];
            vxm_op op = nd->op;
            if (op == VXM_OP_CONV && strchr(nd->name, '/'))
                continue; /* a HyperConv's kernel / bias generator: part of that layer (graph/hyper.h) */
            if (op == VXM_OP_INPUT || op == VXM_OP_CONV || op == VXM_OP_MAXPOOL || op == VXM_OP_UPSAMPLE ||
                op == VXM_OP_CONCAT || i == g->out_moved)
                names[n++] = strdup(nd->name);
            else if (weight_only_layer(g, i))
                names[n++] = strdup(g->params[nd->p.param.index].layer);
            /* a ReLU (alpha 0) is a hypernetwork Dense layer's own activation, not a layer */
            if (op == VXM_OP_CONV && nd->p.conv.leaky && nd->p.conv.alpha != 0.0f) {
                char buf[VXM_NODE_NAME_MAX + 16];
                snprintf(buf, sizeof buf, "%s_activation", nd->name);
                names[n++] = strdup(buf);
            }
        }
        for (int k = 0; k < t->nextra; k++)
            if (k == 0 || strcmp(t->extra[k].layer, t->extra[k - 1].layer))
                names[n++] = strdup(t->extra[k].layer);
    }
    for (int i = 0; i < n; i++)
        if (!names[i]) {
            for (int j = 0; j < n; j++)
                free(names[j]);
            free(names);
            return -1;
        }
    *out = names;
    return n;
}

static const char *optimizer_name(vxm_optimizer o)
{
    return o == VXM_OPT_SGD ? "sgd" : "adam";
}

/* The /vxm_optimizer group (checkpoint.h); m and v are host copies (Adam only). */
static void fill_state(const vxm_trainer *t, long epoch, const vxm_h5_out_weight *m, const vxm_h5_out_weight *v,
                       vxm_h5_out_state *s)
{
    const vxm_train_options *o = &t->opt;
    memset(s, 0, sizeof *s);
    s->group = VXM_CKPT_GROUP;
    s->str_name[0] = "optimizer";
    s->str_value[0] = optimizer_name(o->optimizer);
    s->nstr = 1;
    if (t->meanstream_mode) { /* template creation (training doc §0, §4.1): which MeanStream it ran */
        s->str_name[s->nstr] = "meanstream";
        s->str_value[s->nstr++] = t->meanstream_mode;
    }
    s->int_name[s->nint] = "step";
    s->int_value[s->nint++] = t->step;
    if (epoch >= 0) {
        s->int_name[s->nint] = "epoch";
        s->int_value[s->nint++] = epoch;
    }
    const char *dn[4] = {"lr", "beta1", "beta2", "epsilon"};
    double dv[4] = {o->lr, o->beta1, o->beta2, o->epsilon};
    for (int i = 0; i < 4; i++) {
        s->dbl_name[i] = dn[i];
        s->dbl_value[i] = dv[i];
    }
    s->ndbl = 4;
    if (m && v) {
        s->set_name[0] = "m";
        s->set[0] = m;
        s->set_name[1] = "v";
        s->set[1] = v;
        s->nsets = 2;
    }
    s->nweights = t->g->nparams;
}

vxm_status vxm_trainer_save_checkpoint(vxm_trainer *t, const char *path, long epoch)
{
    vxm_dense_config cfg = t->model->dense;
    cfg.ndim = t->ndim;
    memcpy(cfg.inshape, t->shape, sizeof cfg.inshape); /* the data's shape (2-D: axis 0 is 1) */
    char *json = t->model_config ? strdup(t->model_config) : vxm_dense_config_to_json(&cfg);
    char **names = NULL;
    int nn = json ? layer_names(t, &names) : -1, np = t->g->nparams, adam = t->opt.optimizer == VXM_OPT_ADAM;
    vxm_h5_out_weight *w = NULL, *m = NULL, *v = NULL, *all = NULL;
    vxm_status st;
    if (!json || nn < 0 || !(all = calloc((size_t)(np + t->nextra + 1), sizeof *all)))
        st = vxm_error(t->ctx, VXM_ENOMEM, path, "out of memory");
    else if (!(st = download_all(t, t->w->buf, &w)) && (!adam || (!(st = download_all(t, t->m, &m)) &&
                                                                  !(st = download_all(t, t->v, &v))))) {
        vxm_h5_out_state state;
        fill_state(t, epoch, m, v, &state);
        memcpy(all, w, (size_t)np * sizeof *all); /* the parameters, then the non-trainable extras */
        if (t->nextra)
            memcpy(all + np, t->extra, (size_t)t->nextra * sizeof *all);
        st = vxm_h5_write_model_state(t->ctx, path, json, (const char *const *)names, nn, all, np + t->nextra,
                                      &state);
    }
    free(all);
    if (w)
        free_list(w, np);
    if (m)
        free_list(m, np);
    if (v)
        free_list(v, np);
    for (int i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    free(json);
    return st;
}

vxm_status vxm_trainer_save(vxm_trainer *t, const char *path)
{
    return vxm_trainer_save_checkpoint(t, path, -1);
}

/* Reads the attributes of an open /vxm_optimizer group. */
static vxm_status read_info(vxm_context *ctx, const char *path, vxm_h5_state *s, vxm_checkpoint_info *info)
{
    long long step = 0, epoch = -1;
    memset(info, 0, sizeof *info);
    if (!vxm_h5_state_str(s, "optimizer", info->optimizer, sizeof info->optimizer) ||
        !vxm_h5_state_int(s, "step", &step) || step < 0)
        return vxm_error(ctx, VXM_EFORMAT, path, "/" VXM_CKPT_GROUP " lacks its optimizer or step attribute");
    if (!vxm_h5_state_int(s, "epoch", &epoch) || epoch < 0)
        epoch = -1;
    if (!vxm_h5_state_double(s, "lr", &info->lr))
        info->lr = -1;
    info->step = (long)step;
    info->epoch = (long)epoch;
    return VXM_OK;
}

vxm_status vxm_checkpoint_info_read(vxm_context *ctx, const char *path, vxm_checkpoint_info *info)
{
    vxm_h5_state *s = NULL;
    vxm_status st = vxm_h5_state_open(ctx, path, VXM_CKPT_GROUP, &s);
    if (st == VXM_EFORMAT)
        return vxm_error(ctx, st, path, "holds no optimizer state (/" VXM_CKPT_GROUP "): not a checkpoint of vxm "
                                        "train; start from its weights with --load-weights instead");
    if (!st)
        st = read_info(ctx, path, s, info);
    vxm_h5_state_close(s);
    return st;
}

vxm_status vxm_trainer_load_optimizer(vxm_trainer *t, const char *path)
{
    vxm_checkpoint_info info;
    vxm_h5_state *s = NULL;
    vxm_status st = vxm_checkpoint_info_read(t->ctx, path, &info);
    if (!st && strcmp(info.optimizer, optimizer_name(t->opt.optimizer)))
        st = vxm_error(t->ctx, VXM_EINVAL, path, "was trained with the %s optimizer, not %s", info.optimizer,
                       optimizer_name(t->opt.optimizer));
    if (!st)
        st = vxm_h5_state_open(t->ctx, path, VXM_CKPT_GROUP, &s);
    size_t maxn = 1;
    for (int k = 0; k < t->g->nparams; k++)
        maxn = t->g->params[k].numel > maxn ? t->g->params[k].numel : maxn;
    float *h = st ? NULL : malloc(maxn * sizeof(float));
    if (!st && !h)
        st = vxm_error(t->ctx, VXM_ENOMEM, path, "out of memory");
    /* SGD has no moments; Adam's m and v go to the device buffers alloc_state made */
    for (int k = 0; k < t->g->nparams && !st && t->opt.optimizer == VXM_OPT_ADAM; k++) {
        const vxm_graph_param *p = &t->g->params[k];
        for (int j = 0; j < 2 && !st; j++)
            if (!(st = vxm_h5_state_read(s, j ? "v" : "m", p->layer, p->kind, p->rank, p->dims, h)))
                st = t->be->ops->buffer_write(t->be, (j ? t->v : t->m)[k], h, p->numel);
    }
    if (!st)
        t->step = info.step;
    free(h);
    vxm_h5_state_close(s);
    return st;
}

void vxm_trainer_loss_names(const vxm_trainer *t, vxm_train_losses *names)
{
    *names = t->names;
    names->total = 0;
    for (int i = 0; i < names->n; i++)
        names->value[i] = 0;
}

vxm_status vxm_trainer_save_gradients(vxm_trainer *t, const char *path)
{
    vxm_h5_out_weight *w = NULL;
    vxm_status st = download_all(t, t->grad, &w);
    if (st)
        return st;
    st = vxm_h5_write_gradients(t->ctx, path, w, t->g->nparams);
    free_list(w, t->g->nparams);
    return st;
}
