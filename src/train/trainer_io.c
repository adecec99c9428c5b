/* The trainer's weights in Keras order, checkpoints that Python's VxmDense.load and `vxm register` read (spec §10),
 * and gradient files in the layout of shared/data/train/<case>_grads.h5. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/keras_h5_write.h"
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

/* Host copies of every weight (or gradient) as the writer's list; free with free_list. */
static vxm_status download_all(vxm_trainer *t, int gradients, vxm_h5_out_weight **out)
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
            st = gradients ? vxm_trainer_read_gradient(t, k, h) : vxm_trainer_read_weight(t, k, h);
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

/* Keras layer names in model order: the loaded file's list, else the forward graph's layers (a fused LeakyReLU is
 * its own Keras layer "<conv>_activation"). */
static int layer_names(const vxm_trainer *t, char ***out)
{
    const vxm_keras_file *f = t->model->file;
    const vxm_graph *g = t->g;
    int cap = (f ? f->nlayers : 0) + 2 * g->n_forward + 1, n = 0;
    char **names = calloc((size_t)cap, sizeof *names);
    if (!names)
        return -1;
    if (f && f->nlayers > 0) {
        for (int i = 0; i < f->nlayers; i++)
            names[n++] = strdup(f->layers[i].name);
    } else {
        for (int i = 0; i < g->n_forward; i++) {
            const vxm_node *nd = &g->nodes[i];
            vxm_op op = nd->op;
            if (op == VXM_OP_INPUT || op == VXM_OP_CONV || op == VXM_OP_MAXPOOL || op == VXM_OP_UPSAMPLE ||
                op == VXM_OP_CONCAT || i == g->out_moved)
                names[n++] = strdup(nd->name);
            if (op == VXM_OP_CONV && nd->p.conv.leaky) {
                char buf[VXM_NODE_NAME_MAX + 16];
                snprintf(buf, sizeof buf, "%s_activation", nd->name);
                names[n++] = strdup(buf);
            }
        }
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

vxm_status vxm_trainer_save(vxm_trainer *t, const char *path)
{
    vxm_dense_config cfg = t->model->dense;
    cfg.ndim = t->ndim;
    memcpy(cfg.inshape, t->shape, sizeof cfg.inshape); /* the data's shape (2-D: axis 0 is 1) */
    char *json = vxm_dense_config_to_json(&cfg);
    char **names = NULL;
    int nn = json ? layer_names(t, &names) : -1;
    vxm_h5_out_weight *w = NULL;
    vxm_status st;
    if (!json || nn < 0)
        st = vxm_error(t->ctx, VXM_ENOMEM, path, "out of memory");
    else if (!(st = download_all(t, 0, &w))) {
        st = vxm_h5_write_model(t->ctx, path, json, (const char *const *)names, nn, w, t->g->nparams);
        free_list(w, t->g->nparams);
    }
    for (int i = 0; i < nn; i++)
        free(names[i]);
    free(names);
    free(json);
    return st;
}

vxm_status vxm_trainer_load_optimizer(vxm_trainer *t, const char *path)
{
    return vxm_error(t->ctx, VXM_EUNSUPPORTED, path, "resuming the optimiser state is not implemented yet");
}

vxm_status vxm_trainer_save_gradients(vxm_trainer *t, const char *path)
{
    vxm_h5_out_weight *w = NULL;
    vxm_status st = download_all(t, 1, &w);
    if (st)
        return st;
    st = vxm_h5_write_gradients(t->ctx, path, w, t->g->nparams);
    free_list(w, t->g->nparams);
    return st;
}
