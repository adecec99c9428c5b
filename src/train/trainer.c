/* The trainer: a VxmDense instantiated for one input shape with train.py's losses (training doc §1, §2.6), its
 * backward pass as graph nodes, device-resident parameters, gradients and optimiser state (llm.c style: one
 * buffer per tensor, uploaded once), and Keras' Adam (§3.2) or plain SGD. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/context.h"
#include "core/rng.h"
#include "graph/plan.h"
#include "train/trainer_internal.h"

void vxm_train_options_default(vxm_train_options *o)
{
    static const int enc[] = {16, 32, 32, 32}, dec[] = {32, 32, 32, 32, 32, 16, 16}; /* train.py l.133-134 */
    memset(o, 0, sizeof *o);
    memcpy(o->enc, enc, sizeof enc);
    o->n_enc = 4;
    memcpy(o->dec, dec, sizeof dec);
    o->n_dec = 7;
    o->int_steps = 7;
    o->int_downsize = 2;
    o->image_loss = VXM_LOSS_MSE;
    o->image_sigma = 1.0;
    o->lambda = 0.01;
    o->lr = 1e-4;
    o->optimizer = VXM_OPT_ADAM;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->epsilon = 1e-7;
    o->kl_lambda = 10;    /* train.py --kl-lambda */
    o->dice_weight = 0.01; /* train_semisupervised_seg.py */
    o->reg_param = 1.0;    /* train_synthmorph.py --reg-param */
}

/* The model: loaded (architecture + weights) or a new VxmDense with train.py's constructor arguments. */
vxm_status vxm_trainer_make_model(vxm_trainer *t, int ndim, const int shape[3], int src_feats, int trg_feats)
{
    const vxm_train_options *o = &t->opt;
    vxm_status st;
    if (o->hypermorph && (o->bidir || o->use_probs || o->nlabels > 0 || o->synthmorph))
        return vxm_error(t->ctx, VXM_EINVAL, "train", "HyperMorph training is unidirectional and unsupervised "
                                                      "(no bidir, use_probs, labels or SynthMorph)");
    if (o->load_weights) {
        if ((st = vxm_model_load(t->ctx, o->load_weights, &t->model)))
            return st;
        const vxm_model *m = t->model;
        if (m->kind != VXM_MODEL_VXMDENSE)
            return vxm_error(t->ctx, VXM_EUNSUPPORTED, o->load_weights,
                             "is a legacy Keras graph; only VxmDense models can be trained");
        if (m->dense.hyper != (o->hypermorph != 0))
            return vxm_error(t->ctx, VXM_EINVAL, o->load_weights,
                             m->dense.hyper ? "is a HyperVxmDense model: train it with HyperMorph (--hypermorph)"
                                            : "is not a HyperVxmDense model: HyperMorph training needs one");
        if (o->use_probs && !m->dense.use_probs)
            return vxm_error(t->ctx, VXM_EINVAL, o->load_weights,
                             "--use-probs needs a probabilistic model (this one has no log-sigma head)");
        if (o->bidir) /* bidirectional training adds no weights: any VxmDense can be trained both ways */
            t->model->dense.bidir = 1;
        if (m->src_feats != src_feats || m->trg_feats != trg_feats)
            return vxm_error(t->ctx, VXM_ESHAPE, o->load_weights,
                             "model expects %d/%d channels (source/target), the images have %d/%d", m->src_feats,
                             m->trg_feats, src_feats, trg_feats);
        if (m->ndim != ndim)
            return vxm_error(t->ctx, VXM_ESHAPE, o->load_weights, "model is %d-D but the images are %d-D", m->ndim,
                             ndim);
        return VXM_OK;
    }
    vxm_model *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup("new model"))) {
        free(m);
        return vxm_error(t->ctx, VXM_ENOMEM, "train", "out of memory");
    }
    t->model = m;
    vxm_dense_config *c = &m->dense;
    if (o->n_enc < 1 || o->n_dec < o->n_enc || o->n_enc > VXM_MAX_FEATS || o->n_dec > VXM_MAX_FEATS)
        return vxm_error(t->ctx, VXM_EINVAL, "train",
                         "need at least one encoder level and at least as many decoder as encoder features");
    c->ndim = ndim;
    memcpy(c->inshape, shape, sizeof c->inshape);
    memcpy(c->enc, o->enc, sizeof(int) * (size_t)o->n_enc);
    c->n_enc = o->n_enc;
    memcpy(c->dec, o->dec, sizeof(int) * (size_t)o->n_dec);
    c->n_dec = o->n_dec;
    c->conv_per_level = 1;
    c->int_steps = o->int_steps;
    c->svf_resolution = 1;               /* train.py leaves it at 1: full-resolution U-Net (pipeline A) */
    c->int_resolution = o->int_downsize; /* int_resolution = args.int_downsize (l.140-149) */
    if (o->synthmorph) /* train_synthmorph.py l.129-153: half-resolution U-Net output (pipeline B) */
        c->svf_resolution = c->int_resolution = 2;
    c->src_feats = src_feats;
    c->trg_feats = trg_feats;
    c->bidir = o->bidir;
    c->use_probs = o->use_probs;
    snprintf(c->name, sizeof c->name, "vxm_dense");
    if (o->hypermorph) {
        /* train_hypermorph.py (training doc §5): HyperVxmDense(inshape, nb_unet_features, int_steps, int_resolution
         * 2, svf_resolution 2) with its defaults nb_hyp_params 1, nb_hyp_layers 6, nb_hyp_units 128 */
        c->hyper = 1;
        c->nb_hyp_params = 1;
        c->nb_hyp_layers = 6;
        c->nb_hyp_units = 128;
        c->svf_resolution = 2;
        snprintf(c->name, sizeof c->name, "hyper_vxm_dense");
    }
    m->kind = VXM_MODEL_VXMDENSE;
    m->ndim = ndim;
    memcpy(m->inshape, shape, sizeof m->inshape);
    m->src_feats = src_feats;
    m->trg_feats = trg_feats;
    m->divisor = 1 << (vxm_dense_levels(c) - 1);
    m->new_weights = 1;
    return VXM_OK;
}

static int add_loss(vxm_trainer *t, vxm_op op, const char *name, int a, int b, double factor, double weight)
{
    int k = t->names.n;
    int i = vxm_graph_add_loss(t->g, op, name, a, b, factor, weight);
    if (i >= 0) {
        t->loss_node[k] = i;
        t->names.name[k] = name;
        t->names.weight[k] = weight;
        t->names.n++;
    }
    return i;
}

/* train.py's loss list (l.156-178): [image loss (weight 1), Grad('l2', loss_mult=int_downsize) (weight lambda)]
 * on [moved, pre-integration field]. */
static int add_image_loss(vxm_trainer *t, const char *name, int y_true, int y_pred, double weight)
{
    const vxm_train_options *o = &t->opt;
    if (o->image_loss == VXM_LOSS_NCC)
        return add_loss(t, VXM_OP_LOSS_NCC, name, y_true, y_pred, 1.0, weight);
    return add_loss(t, VXM_OP_LOSS_MSE, name, y_true, y_pred, 1.0 / (o->image_sigma * o->image_sigma), weight);
}

/* train.py's loss list (l.156-178): image loss(es) -- [1] or bidirectional [0.5, 0.5] on (fixed, moved) and
 * (moving, fixed warped back) -- then the regulariser weighted by lambda: Grad('l2', loss_mult = int_downsize) on
 * the pre-integration field, or KL(kl_lambda) on the flow mean / log-variance with --use-probs; semi-supervised
 * (train_semisupervised_seg.py) adds Dice(fixed one-hot, warped moving one-hot) weighted by dice_weight.
 * HyperMorph has the same two terms (image, Grad), re-weighted per sample by hyper_weights. */
static vxm_status add_losses(vxm_trainer *t)
{
    vxm_graph *g = t->g;
    const vxm_train_options *o = &t->opt;
    const vxm_dense_config *c = &t->model->dense;
    if (g->in_target < 0 || g->out_moved < 0 || g->out_preint < 0 || (c->bidir && g->out_neg_moved < 0) ||
        (c->use_probs && g->out_flow_logvar < 0) || (o->nlabels > 0 && g->out_seg_moved < 0))
        return vxm_error(t->ctx, VXM_EINVAL, t->model->path, "model graph lacks the outputs training needs");
    if (o->synthmorph) {
        /* train_synthmorph.py l.156-158: add_loss(Dice(map_2, pred) + 1) + add_loss(Grad('l2', reg_param)(pos_flow))
         * on the final full-resolution displacement; both unweighted (the constant 1 has no gradient) */
        if (g->out_seg_moved < 0 || g->in_seg_target < 0)
            return vxm_error(t->ctx, VXM_EINVAL, t->model->path, "model graph lacks the outputs training needs");
        int r = add_loss(t, VXM_OP_LOSS_DICE, "dice", g->in_seg_target, g->out_seg_moved, 1.0, 1.0);
        if (r >= 0)
            r = add_loss(t, VXM_OP_LOSS_GRAD, "grad", g->out_warp, -1, o->reg_param, 1.0);
        return r < 0 ? vxm_error(t->ctx, VXM_ENOMEM, "train", "out of memory") : VXM_OK;
    }
    const char *img = o->image_loss == VXM_LOSS_NCC ? "ncc" : "mse";
    const char *img_neg = o->image_loss == VXM_LOSS_NCC ? "ncc_neg" : "mse_neg";
    int r = add_image_loss(t, img, g->in_target, g->out_moved, c->bidir ? 0.5 : 1.0);
    if (r >= 0 && c->bidir)
        r = add_image_loss(t, img_neg, g->in_source, g->out_neg_moved, 0.5);
    if (r >= 0 && c->use_probs) {
        r = add_loss(t, VXM_OP_LOSS_KL, "kl", g->out_flow_mean, g->out_flow_logvar, 1.0, o->lambda);
        if (r >= 0)
            t->g->nodes[r].p.loss.prior_lambda = (float)o->kl_lambda;
    } else if (r >= 0) {
        r = add_loss(t, VXM_OP_LOSS_GRAD, "grad", g->out_preint, -1, (double)o->int_downsize, o->lambda);
    }
    if (r >= 0 && o->nlabels > 0)
        r = add_loss(t, VXM_OP_LOSS_DICE, "dice", g->in_seg_target, g->out_seg_moved, 1.0, o->dice_weight);
    if (r < 0)
        return vxm_error(t->ctx, VXM_ENOMEM, "train", "out of memory");
    return VXM_OK;
}

vxm_status vxm_trainer_alloc_state(vxm_trainer *t)
{
    vxm_backend *be = t->be;
    int n = t->g->nparams;
    t->grad = calloc((size_t)(n ? n : 1), sizeof *t->grad);
    t->m = calloc((size_t)(n ? n : 1), sizeof *t->m);
    t->v = calloc((size_t)(n ? n : 1), sizeof *t->v);
    if (!t->grad || !t->m || !t->v)
        return vxm_error(t->ctx, VXM_ENOMEM, "train", "out of memory");
    vxm_status st = VXM_OK;
    for (int k = 0; k < n && !st; k++) {
        size_t cnt = t->g->params[k].numel;
        if (!(st = be->ops->buffer_alloc(be, cnt, &t->grad[k])) && !(st = be->ops->fill(be, t->grad[k], cnt, 0)) &&
            t->opt.optimizer == VXM_OPT_ADAM && !(st = be->ops->buffer_alloc(be, cnt, &t->m[k])) &&
            !(st = be->ops->fill(be, t->m[k], cnt, 0)) && !(st = be->ops->buffer_alloc(be, cnt, &t->v[k])))
            st = be->ops->fill(be, t->v[k], cnt, 0);
    }
    return st;
}

/* Semi-supervised: a private copy of the label list and the two strided one-hot buffers. */
static vxm_status alloc_segs(vxm_trainer *t, const vxm_train_options *o)
{
    size_t half = 1;
    for (int d = 0; d < 3; d++)
        half *= (size_t)(d >= 3 - t->ndim ? (t->shape[d] + 1) / 2 : t->shape[d]);
    t->labels = malloc(sizeof(int) * (size_t)o->nlabels);
    t->seg_onehot[0] = malloc(half * (size_t)o->nlabels * sizeof(float));
    t->seg_onehot[1] = malloc(half * (size_t)o->nlabels * sizeof(float));
    if (!t->labels || !t->seg_onehot[0] || !t->seg_onehot[1])
        return vxm_error(t->ctx, VXM_ENOMEM, "train", "out of memory");
    memcpy(t->labels, o->labels, sizeof(int) * (size_t)o->nlabels);
    t->opt.labels = t->labels;
    return VXM_OK;
}

vxm_status vxm_trainer_create(vxm_context *ctx, vxm_backend *be, const vxm_train_options *o, int ndim,
                              const int shape[3], int src_feats, int trg_feats, vxm_trainer **out)
{
    *out = NULL;
    vxm_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return vxm_error(ctx, VXM_ENOMEM, "train", "out of memory");
    t->ctx = ctx;
    t->be = be;
    t->opt = *o;
    t->hyper = -1; /* HyperMorph: lambda drawn per sample */
    if (o->resume)
        t->opt.load_weights = o->resume;
    t->ndim = ndim;
    memcpy(t->shape, shape, sizeof t->shape);
    vxm_status st = vxm_trainer_make_model(t, ndim, shape, src_feats, trg_feats);
    if (!st)
        st = vxm_dense_build_graph_ex(ctx, t->model, ndim, shape, 1, o->nlabels, o->synthmorph, &t->g);
    if (!st && t->model->new_weights)
        st = vxm_trainer_init_weights(t);
    if (!st)
        st = add_losses(t);
    if (!st)
        st = vxm_graph_build_backward(ctx, t->g);
    if (!st)
        st = vxm_weights_upload(be, t->g, &t->w);
    if (!st)
        st = vxm_trainer_alloc_state(t);
    if (!st && !(t->plan = vxm_plan_new()))
        st = vxm_error(ctx, VXM_ENOMEM, "train", "out of memory");
    if (!st && o->nlabels > 0 && !o->synthmorph)
        st = alloc_segs(t, o);
    if (!st && o->resume)
        st = vxm_trainer_load_optimizer(t, o->resume);
    if (st) {
        vxm_trainer_free(t);
        return st;
    }
    *out = t;
    return VXM_OK;
}

void vxm_trainer_free(vxm_trainer *t)
{
    if (!t)
        return;
    for (int k = 0; t->g && k < t->g->nparams; k++) {
        vxm_buffer *bufs[3] = {t->grad ? t->grad[k] : NULL, t->m ? t->m[k] : NULL, t->v ? t->v[k] : NULL};
        for (int j = 0; j < 3; j++)
            if (bufs[j])
                t->be->ops->buffer_free(t->be, bufs[j]);
        if (t->init_host)
            free(t->init_host[k]);
    }
    free(t->grad);
    free(t->m);
    free(t->v);
    free(t->init_host);
    free(t->labels);
    free(t->seg_onehot[0]);
    free(t->seg_onehot[1]);
    free(t->model_config);
    vxm_weights_free(t->w);
    vxm_plan_free(t->plan);
    vxm_graph_free(t->g);
    vxm_model_free(t->model);
    free(t);
}

int vxm_trainer_divisor(const vxm_trainer *t)
{
    return t->model->divisor;
}

/* Multiply-add FLOPs of a convolution node or of its data / filter gradient (the same products). */
static double conv_node_flops(const vxm_graph *g, const vxm_node *n)
{
    const vxm_conv_params *p = &n->p.conv;
    double k = (double)p->ksize[0] * p->ksize[1] * p->ksize[2];
    const vxm_node *y = n->op == VXM_OP_CONV ? n : &g->nodes[n->in[n->op == VXM_OP_CONV_BACK_FILTER ? 1 : 0]];
    const vxm_node *x = n->op == VXM_OP_CONV ? &g->nodes[n->in[0]] : n->op == VXM_OP_CONV_BACK_DATA ? n
                                                                                                   : &g->nodes[n->in[0]];
    return 2.0 * k * x->channels * y->channels * y->shape[0] * y->shape[1] * y->shape[2];
}

static void print_profile(const vxm_graph *g, const vxm_exec *ex)
{
    double per_op[VXM_OP_COUNT] = {0}, flops[VXM_OP_COUNT] = {0}, total = 0;
    for (int i = 0; i < g->n; i++) {
        const vxm_node *n = &g->nodes[i];
        per_op[n->op] += vxm_exec_node_seconds(ex, i);
        total += vxm_exec_node_seconds(ex, i);
        if (n->op == VXM_OP_CONV || n->op == VXM_OP_CONV_BACK_DATA || n->op == VXM_OP_CONV_BACK_FILTER)
            flops[n->op] += conv_node_flops(g, n);
    }
    fprintf(stderr, "step profile (%.3f s):", total);
    for (int k = 0; k < VXM_OP_COUNT; k++) {
        if (per_op[k] > 0.0005)
            fprintf(stderr, " %s %.3f", vxm_op_name((vxm_op)k), per_op[k]);
        if (flops[k] > 0 && per_op[k] > 0)
            fprintf(stderr, " (%.0f GFLOP/s)", flops[k] / per_op[k] / 1e9);
    }
    fprintf(stderr, "\n");
}

/* The semi-supervised generator's targets (training doc §1.1): one channel per label (seg == label), at every
 * second voxel of each image axis ([::2]). */
static void one_hot_strided(const vxm_trainer *t, const float *seg, float *out)
{
    const int *n = t->shape, nl = t->opt.nlabels;
    int h[3], s[3];
    for (int d = 0; d < 3; d++) {
        int on = d >= 3 - t->ndim;
        h[d] = on ? (n[d] + 1) / 2 : n[d];
        s[d] = on ? 2 : 1;
    }
    for (int i = 0; i < h[0]; i++)
        for (int j = 0; j < h[1]; j++)
            for (int k = 0; k < h[2]; k++) {
                float v = seg[((size_t)(i * s[0]) * n[1] + (size_t)(j * s[1])) * n[2] + (size_t)(k * s[2])];
                float *o = out + (((size_t)i * h[1] + j) * h[2] + k) * (size_t)nl;
                for (int l = 0; l < nl; l++)
                    o[l] = v == (float)t->opt.labels[l] ? 1.0f : 0.0f;
            }
}

long vxm_trainer_steps_done(const vxm_trainer *t)
{
    return t->step;
}

vxm_status vxm_trainer_compute_gradients(vxm_trainer *t, const float *const *moving, const float *const *fixed,
                                         int batch, vxm_train_losses *losses)
{
    vxm_train_sample s[64];
    if (batch > 64)
        return vxm_error(t->ctx, VXM_EINVAL, "train", "batch size %d (at most 64)", batch);
    for (int b = 0; b < batch; b++) {
        s[b].moving = moving[b];
        s[b].fixed = fixed[b];
        s[b].moving_seg = s[b].fixed_seg = NULL;
        memset(s[b].dev, 0, sizeof s[b].dev);
    }
    return vxm_trainer_compute_gradients_samples(t, s, batch, losses);
}

vxm_status vxm_trainer_step_samples(vxm_trainer *t, const vxm_train_sample *s, int batch, vxm_train_losses *losses)
{
    vxm_status st = vxm_trainer_compute_gradients_samples(t, s, batch, losses);
    return st ? st : vxm_trainer_apply(t);
}

void vxm_trainer_set_hyper(vxm_trainer *t, double lambda)
{
    t->hyper = lambda;
}

double vxm_hypermorph_draw(unsigned long long seed, long step, int sample)
{
    /* one splitmix64 stream per (seed, step, sample) (core/rng.h) */
    unsigned long long s = (seed ^ 0x68797065726D6F72ULL) + ((unsigned long long)step * 65536ULL +
                                                             (unsigned long long)sample) * 0xD1B54A32D192ED03ULL;
    vxm_rng_next(&s);
    /* train_hypermorph.py l.107-111: if rand() < 0.2: choice([0, 1]) else rand() */
    if (vxm_rng_uniform(&s) < 0.2)
        return vxm_rng_uniform(&s) < 0.5 ? 0.0 : 1.0;
    return vxm_rng_uniform(&s);
}

/* HyperMorph's per-sample loss (train_hypermorph.py l.162-181, training doc §5): (1 - lambda) * image loss (term 0)
 * + lambda * Grad (term 1), lambda the float32 network input; Keras then averages over the batch. */
static void hyper_weights(vxm_trainer *t, float lam)
{
    vxm_graph_set_loss_weight(t->g, t->loss_node[0], (double)(1.0f - lam));
    vxm_graph_set_loss_weight(t->g, t->loss_node[1], (double)lam);
}

vxm_status vxm_trainer_compute_gradients_samples(vxm_trainer *t, const vxm_train_sample *smp, int batch,
                                                 vxm_train_losses *losses)
{
    vxm_backend *be = t->be;
    const vxm_graph *g = t->g;
    if (batch < 1)
        return vxm_error(t->ctx, VXM_EINVAL, "train", "batch size %d", batch);
    vxm_status st = VXM_OK;
    for (int k = 0; k < g->nparams && !st; k++)
        st = be->ops->fill(be, t->grad[k], g->params[k].numel, 0.0f);
    double raw[VXM_MAX_LOSS_TERMS] = {0};
    /* Keras averages per-sample losses over the batch (training doc §2.6): the gradient is the mean of the
     * per-sample gradients. */
    float inv_b = 1.0f / (float)batch;
    int hyper = t->model->dense.hyper;
    for (int b = 0; b < batch && !st; b++) {
        const float *in[5] = {smp[b].moving, smp[b].fixed, NULL, NULL, NULL};
        float lam = 0;
        if (hyper) { /* HyperMorph: this sample's lambda is the hypernetwork input and weights its terms */
            lam = (float)(t->hyper >= 0 ? t->hyper : vxm_hypermorph_draw(t->opt.seed, t->step, b));
            in[4] = &lam;
            hyper_weights(t, lam);
        }
        if (t->opt.nlabels > 0 && t->opt.synthmorph) {
            if ((!smp[b].moving_seg && !smp[b].dev[2]) || (!smp[b].fixed_seg && !smp[b].dev[3]))
                return vxm_error(t->ctx, VXM_EINVAL, "train", "SynthMorph training needs both one-hot label maps");
            in[2] = smp[b].moving_seg;
            in[3] = smp[b].fixed_seg;
        } else if (t->opt.nlabels > 0) {
            if (!smp[b].moving_seg || !smp[b].fixed_seg)
                return vxm_error(t->ctx, VXM_EINVAL, "train", "semi-supervised training needs both segmentations");
            one_hot_strided(t, smp[b].moving_seg, t->seg_onehot[0]);
            one_hot_strided(t, smp[b].fixed_seg, t->seg_onehot[1]);
            in[2] = t->seg_onehot[0];
            in[3] = t->seg_onehot[1];
        }
        /* probabilistic models sample their field with fresh noise for every (update, sample), reproducibly from the
         * seed: a function of the update count, so a resumed run draws what an uninterrupted one would */
        int det = !t->model->dense.use_probs;
        unsigned long long noise_seed =
            (t->opt.seed + 1) * 0x9E3779B97F4A7C15ULL ^ ((unsigned long long)t->step * 64 + (unsigned long long)b);
        vxm_exec *ex = NULL;
        st = vxm_exec_begin_with(be, g, t->w, in, 5, det, noise_seed, &ex);
        /* inputs already on the device (SynthMorph's synthesised pairs) are used in place, not copied */
        int ndev = t->opt.synthmorph ? 4 : 2;
        for (int k = 0; k < ndev && !st; k++)
            if (smp[b].dev[k])
                st = vxm_exec_bind_input(ex, k, smp[b].dev[k]);
        if (!st) /* the step reads its losses and gradients only */
            st = vxm_exec_release_io(ex);
        if (!st && t->plan)
            st = vxm_exec_set_plan(ex, t->plan);
        const char *prof = getenv("VXM_PROFILE"); /* per-op time table on stderr (the benchmark's breakdown) */
        if (!st && prof && *prof)
            st = vxm_exec_set_profiling(ex, 1);
        if (!st)
            st = vxm_exec_run_all(ex);
        if (!st && prof && *prof)
            print_profile(g, ex);
        for (int i = 0; i < t->names.n && !st; i++) {
            float v;
            if (!(st = vxm_exec_read(ex, t->loss_node[i], &v))) /* HyperMorph: weighted per sample */
                raw[i] += hyper ? g->nodes[t->loss_node[i]].p.loss.weight * v : v;
        }
        for (int k = 0; k < g->nparams && !st; k++) {
            int gn = g->param_grad[k];
            if (gn >= 0 &&
                (st = be->ops->axpy(be, inv_b, vxm_exec_tensor(ex, gn)->buf, t->grad[k], g->params[k].numel)))
                vxm_error_annotate(t->ctx, be->spec, "layer %s (%s gradient)", g->params[k].layer, g->params[k].kind);
        }
        vxm_exec_end(ex);
    }
    if (st)
        return st;
    vxm_train_losses L = t->names;
    L.total = 0;
    for (int i = 0; i < L.n; i++) {
        const vxm_loss_params *p = &g->nodes[t->loss_node[i]].p.loss;
        L.value[i] = (hyper ? 1.0 : p->weight) * p->factor * raw[i] / batch;
        L.total += L.value[i];
    }
    if (losses)
        *losses = L;
    for (int i = 0; i < L.n; i++)
        if (!isfinite(L.value[i]))
            return vxm_error(t->ctx, VXM_ENUMERIC, "train", "the %s loss is %s", L.name[i],
                             isnan(L.value[i]) ? "NaN" : "infinite");
    return VXM_OK;
}

vxm_status vxm_trainer_predict(vxm_trainer *t, const float *moving, const float *fixed, float *moved, float *warp)
{
    float lam = (float)(t->hyper >= 0 ? t->hyper : 0.5);
    const float *in[5] = {moving, fixed, NULL, NULL, &lam};
    vxm_exec *ex = NULL;
    vxm_status st = vxm_exec_begin_with(t->be, t->g, t->w, in, 5, 1, 0, &ex);
    for (int i = 0; i < t->g->n_forward && !st; i++)
        st = vxm_exec_step(ex, i);
    if (!st && moved)
        st = vxm_exec_read(ex, t->g->out_moved, moved);
    if (!st && warp)
        st = vxm_exec_read(ex, t->g->out_warp, warp);
    vxm_exec_end(ex);
    return st;
}

vxm_status vxm_trainer_apply(vxm_trainer *t)
{
    vxm_backend *be = t->be;
    const vxm_train_options *o = &t->opt;
    long step = t->step + 1;
    /* Keras: alpha_t = lr sqrt(1 - b2^t) / (1 - b1^t), epsilon on the uncorrected sqrt(v) (§3.2) */
    double lr_t = o->lr * sqrt(1.0 - pow(o->beta2, (double)step)) / (1.0 - pow(o->beta1, (double)step));
    vxm_status st = VXM_OK;
    for (int k = 0; k < t->g->nparams && !st; k++) {
        size_t n = t->g->params[k].numel;
        if (o->optimizer == VXM_OPT_SGD)
            st = be->ops->sgd_update(be, t->w->buf[k], t->grad[k], n, (float)o->lr);
        else
            st = be->ops->adam_update(be, t->w->buf[k], t->grad[k], t->m[k], t->v[k], n, (float)lr_t,
                                      (float)o->beta1, (float)o->beta2, (float)o->epsilon);
    }
    if (!st)
        st = be->ops->finish(be);
    if (!st)
        t->step = step;
    return st;
}

vxm_status vxm_trainer_step(vxm_trainer *t, const float *const *moving, const float *const *fixed, int batch,
                            vxm_train_losses *losses)
{
    vxm_status st = vxm_trainer_compute_gradients(t, moving, fixed, batch, losses);
    return st ? st : vxm_trainer_apply(t);
}
