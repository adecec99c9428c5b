/* Instance-specific optimisation (InstanceDense / train_instance.py, training doc §7): the graph P -> preint ->
 * unrolled VecInt -> RescaleTransform -> warp -> losses, its backward pass (graph/backward.c), and Keras' Adam on the
 * one device-resident parameter.  Also the network's SVF as a starting point (`vxm register --refine`). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "graph/plan.h"
#include "train/instance.h"

struct vxm_instance {
    vxm_context *ctx;
    vxm_backend *be;
    vxm_instance_options opt;
    int ndim, shape[3], fshape[3], channels;
    const float *moving, *fixed;
    vxm_graph *g;
    int loss_img, loss_reg; /* loss nodes */
    size_t numel;           /* floats in P */
    float *init;            /* host values of P at creation (the parameter table points at them) */
    vxm_weights *w;         /* P on the device */
    struct vxm_plan *plan;  /* memory plan of the forward + backward runs (graph/plan.h) */
    vxm_buffer *m, *v;      /* Adam state */
    long step;              /* updates done */
};

void vxm_instance_options_default(vxm_instance_options *o)
{
    memset(o, 0, sizeof *o);
    o->steps = 200;
    o->lr = 1e-3;
    o->image_loss = VXM_LOSS_MSE;
    o->image_sigma = 1.0;
    o->lambda = 0.01;
    o->int_steps = 7;
    o->int_downsize = 2;
    o->multiplier = 1000;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->epsilon = 1e-7;
}

void vxm_instance_field_shape(int ndim, const int shape[3], int int_downsize, int out[3])
{
    for (int d = 0; d < 3; d++)
        out[d] = d >= 3 - ndim && int_downsize > 1 ? shape[d] / int_downsize : shape[d];
}

size_t vxm_instance_field_numel(const vxm_instance *t)
{
    return t->numel;
}

/* The forward graph and its losses (training doc §7); -1 somewhere means out of memory. */
static vxm_status build_graph(vxm_instance *t)
{
    const vxm_instance_options *o = &t->opt;
    vxm_graph *g = t->g = vxm_graph_new(t->ndim);
    if (!g)
        return vxm_error(t->ctx, VXM_ENOMEM, "refine", "out of memory");
    int src = vxm_graph_add_input(g, "instance_moving", 0, t->shape, t->channels);
    int trg = src < 0 ? -1 : vxm_graph_add_input(g, "instance_fixed", 1, t->shape, t->channels);
    long dims[4];
    int r = 0;
    for (int d = 3 - t->ndim; d < 3; d++)
        dims[r++] = t->fshape[d];
    dims[r++] = t->ndim;
    int p = trg < 0 ? -1 : vxm_graph_add_param(g, "instance_flow", "field", r, dims, t->init);
    if (p < 0)
        return vxm_error(t->ctx, VXM_ENOMEM, "refine", "out of memory");
    /* the parameter node carries the field's shape, so that the scale reading it (and its gradient) are fields */
    memcpy(g->nodes[p].shape, t->fshape, sizeof t->fshape);
    g->nodes[p].channels = t->ndim;
    int preint = vxm_graph_add_op(g, VXM_OP_SCALE, "instance_preint", p, -1), warp = preint;
    if (preint >= 0)
        g->nodes[preint].p.scale.s = (float)o->multiplier;
    if (warp >= 0 && o->int_steps > 0)
        warp = vxm_graph_add_vecint_unrolled(g, warp, o->int_steps, "instance_flow_int");
    if (warp >= 0 && o->int_downsize > 1) {
        warp = vxm_graph_add_rescale(g, warp, (double)o->int_downsize, VXM_RESIZE_LINSPACE, "instance_diffflow");
        /* odd sizes: floor(n/2) * 2 = n - 1, so the linspace resize targets the image size itself (TF would
         * produce a mismatched field there) */
        if (warp >= 0)
            memcpy(g->nodes[warp].shape, t->shape, sizeof t->shape);
    }
    if (warp < 0)
        return vxm_error(t->ctx, VXM_ENOMEM, "refine", "out of memory");
    /* linear, clamped borders, no fill value (spec §4.2): the zeroed transform parameters */
    int moved = vxm_graph_add_op(g, VXM_OP_TRANSFORM, "instance_transformer", src, warp);
    if (moved < 0)
        return vxm_error(t->ctx, VXM_ENOMEM, "refine", "out of memory");
    g->in_source = src;
    g->in_target = trg;
    g->out_preint = preint;
    g->out_warp = warp;
    g->out_moved = moved;
    /* train_instance.py: [MSE(sigma) or NCC(win 9) vs fixed, weight 1; Grad('l2', loss_mult=int_downsize), lambda] */
    double sigma2 = o->image_sigma * o->image_sigma;
    if (o->image_loss == VXM_LOSS_NCC)
        t->loss_img = vxm_graph_add_loss(g, VXM_OP_LOSS_NCC, "ncc", trg, moved, 1.0, 1.0);
    else
        t->loss_img = vxm_graph_add_loss(g, VXM_OP_LOSS_MSE, "mse", trg, moved, 1.0 / sigma2, 1.0);
    double mult = o->int_downsize > 1 ? o->int_downsize : 1;
    t->loss_reg = t->loss_img < 0 ? -1 : vxm_graph_add_loss(g, VXM_OP_LOSS_GRAD, "grad", preint, -1, mult, o->lambda);
    if (t->loss_reg < 0)
        return vxm_error(t->ctx, VXM_ENOMEM, "refine", "out of memory");
    return vxm_graph_build_backward(t->ctx, g);
}

static vxm_status check_options(vxm_context *ctx, const vxm_instance_options *o, int ndim, const int shape[3],
                                int channels)
{
    if (ndim != 2 && ndim != 3)
        return vxm_error(ctx, VXM_EINVAL, "refine", "images must be 2-D or 3-D (got %d-D)", ndim);
    if (channels < 1)
        return vxm_error(ctx, VXM_EINVAL, "refine", "images need at least one channel");
    if (o->steps < 0 || !(o->lr > 0) || !(o->lambda >= 0) || !(o->image_sigma > 0) || o->int_steps < 0 ||
        o->int_steps > 20 || o->int_downsize < 1 || !(o->multiplier > 0) || !isfinite(o->multiplier))
        return vxm_error(ctx, VXM_EINVAL, "refine", "invalid options (steps, lr, lambda, sigma, int_steps, "
                                                    "int_downsize or multiplier out of range)");
    for (int d = 3 - ndim; d < 3; d++)
        if (shape[d] < 2 * o->int_downsize)
            return vxm_error(ctx, VXM_ESHAPE, "refine", "image size %d along axis %d is too small (at least %d)",
                             shape[d], d - (3 - ndim), 2 * o->int_downsize);
    return VXM_OK;
}

vxm_status vxm_instance_create(vxm_context *ctx, vxm_backend *be, const vxm_instance_options *o, int ndim,
                               const int shape[3], int channels, const float *moving, const float *fixed,
                               vxm_instance **out)
{
    *out = NULL;
    vxm_status st = check_options(ctx, o, ndim, shape, channels);
    if (st)
        return st;
    vxm_instance *t = calloc(1, sizeof *t);
    if (!t)
        return vxm_error(ctx, VXM_ENOMEM, "refine", "out of memory");
    t->ctx = ctx;
    t->be = be;
    t->opt = *o;
    t->opt.init_field = NULL;
    t->ndim = ndim;
    memcpy(t->shape, shape, sizeof t->shape);
    t->channels = channels;
    t->moving = moving;
    t->fixed = fixed;
    vxm_instance_field_shape(ndim, shape, o->int_downsize, t->fshape);
    t->numel = (size_t)t->fshape[0] * t->fshape[1] * t->fshape[2] * (size_t)ndim;
    t->init = malloc(t->numel * sizeof(float));
    if (!t->init) {
        free(t);
        return vxm_error(ctx, VXM_ENOMEM, "refine", "out of memory");
    }
    /* P = SVF / multiplier, or Keras' RandomNormal() default: N(0, 0.05) (spec §11.5) */
    unsigned long long rng = (o->seed + 1) * 0x9E3779B97F4A7C15ULL;
    for (size_t i = 0; i < t->numel; i++)
        t->init[i] = o->init_field ? (float)(o->init_field[i] / o->multiplier) : (float)(0.05 * vxm_rng_normal(&rng));
    for (size_t i = 0; o->init_field && i < t->numel; i++)
        if (!isfinite(t->init[i])) {
            vxm_instance_free(t);
            return vxm_error(ctx, VXM_ENUMERIC, "refine", "the initial field contains NaN or Inf");
        }
    st = build_graph(t);
    if (!st)
        st = vxm_weights_upload(be, t->g, &t->w);
    if (!st && !(t->plan = vxm_plan_new()))
        st = vxm_error(ctx, VXM_ENOMEM, "refine", "out of memory");
    if (!st && !(st = be->ops->buffer_alloc(be, t->numel, &t->m)) && !(st = be->ops->fill(be, t->m, t->numel, 0)) &&
        !(st = be->ops->buffer_alloc(be, t->numel, &t->v)))
        st = be->ops->fill(be, t->v, t->numel, 0);
    if (st) {
        vxm_instance_free(t);
        return st;
    }
    *out = t;
    return VXM_OK;
}

void vxm_instance_free(vxm_instance *t)
{
    if (!t)
        return;
    if (t->m)
        t->be->ops->buffer_free(t->be, t->m);
    if (t->v)
        t->be->ops->buffer_free(t->be, t->v);
    vxm_weights_free(t->w);
    vxm_plan_free(t->plan);
    vxm_graph_free(t->g);
    free(t->init);
    free(t);
}

/* One executor run: the forward nodes, or everything (backward too) when `backward`; the losses are read, and the
 * run is left open for the caller (gradient / outputs).  *ex is NULL on failure. */
static vxm_status run(vxm_instance *t, int backward, vxm_instance_losses *L, vxm_exec **ex)
{
    const float *in[2] = {t->moving, t->fixed};
    vxm_status st = vxm_exec_begin_with(t->be, t->g, t->w, in, 2, 1, 0, ex);
    if (!st && backward) /* a forward-only run keeps the tensors its backward would read: another schedule */
        st = vxm_exec_set_plan(*ex, t->plan);
    int n = backward ? t->g->n : t->g->n_forward;
    for (int i = 0; i < n && !st; i++)
        st = vxm_exec_step(*ex, i);
    float vi = 0, vr = 0;
    if (!st && !(st = vxm_exec_read(*ex, t->loss_img, &vi)))
        st = vxm_exec_read(*ex, t->loss_reg, &vr);
    if (!st) {
        const vxm_loss_params *pi = &t->g->nodes[t->loss_img].p.loss, *pr = &t->g->nodes[t->loss_reg].p.loss;
        vxm_instance_losses l;
        l.image = pi->weight * pi->factor * vi;
        l.reg = pr->weight * pr->factor * vr;
        l.total = l.image + l.reg;
        if (L)
            *L = l;
        if (!isfinite(l.total))
            st = vxm_error(t->ctx, VXM_ENUMERIC, "refine", "the %s loss is %s", isfinite(l.image) ? "Grad" : "image",
                           isnan(l.total) ? "NaN" : "infinite");
    }
    if (st) {
        vxm_exec_end(*ex);
        *ex = NULL;
    }
    return st;
}

vxm_status vxm_instance_evaluate(vxm_instance *t, vxm_instance_losses *L, float *grad, float *moved, float *warp)
{
    vxm_exec *ex = NULL;
    vxm_status st = run(t, grad != NULL, L, &ex);
    if (!st && grad)
        st = vxm_exec_read(ex, t->g->param_grad[0], grad);
    if (!st && moved)
        st = vxm_exec_read(ex, t->g->out_moved, moved);
    if (!st && warp)
        st = vxm_exec_read(ex, t->g->out_warp, warp);
    vxm_exec_end(ex);
    return st;
}

vxm_status vxm_instance_step(vxm_instance *t, vxm_instance_losses *L)
{
    const vxm_instance_options *o = &t->opt;
    vxm_backend *be = t->be;
    vxm_exec *ex = NULL;
    vxm_status st = run(t, 1, L, &ex);
    if (st)
        return st;
    long step = t->step + 1;
    /* Keras: alpha_t = lr sqrt(1 - b2^t) / (1 - b1^t), epsilon on the uncorrected sqrt(v) (training doc §3.2) */
    double lr_t = o->lr * sqrt(1.0 - pow(o->beta2, (double)step)) / (1.0 - pow(o->beta1, (double)step));
    const vxm_tensor *g = vxm_exec_tensor(ex, t->g->param_grad[0]);
    if (!g)
        st = vxm_error(t->ctx, VXM_EINVAL, "refine", "the field has no gradient");
    if (!st)
        st = be->ops->adam_update(be, t->w->buf[0], g->buf, t->m, t->v, t->numel, (float)lr_t, (float)o->beta1,
                                  (float)o->beta2, (float)o->epsilon);
    if (!st)
        st = be->ops->finish(be);
    vxm_exec_end(ex);
    if (!st)
        t->step = step;
    return st;
}

vxm_status vxm_instance_read_field(vxm_instance *t, float *P)
{
    return t->be->ops->buffer_read(t->be, t->w->buf[0], P, t->numel);
}

vxm_status vxm_instance_write_field(vxm_instance *t, const float *P)
{
    return t->be->ops->buffer_write(t->be, t->w->buf[0], P, t->numel);
}

vxm_status vxm_instance_run(vxm_context *ctx, vxm_backend *be, const vxm_instance_options *o, int ndim,
                            const int shape[3], int channels, const float *moving, const float *fixed, float *moved,
                            float *warp, vxm_instance_losses *losses)
{
    vxm_instance *t = NULL;
    vxm_status st = vxm_instance_create(ctx, be, o, ndim, shape, channels, moving, fixed, &t);
    for (int s = 0; s < o->steps && !st; s++)
        st = vxm_instance_step(t, losses ? &losses[s] : NULL);
    if (!st)
        st = vxm_instance_evaluate(t, losses ? &losses[o->steps] : NULL, NULL, moved, warp);
    vxm_instance_free(t);
    return st;
}

/* ---- the network's SVF as the starting field ------------------------------------------------------------ */

/* Clamped trilinear sample of a channels-last field at (c0, c1, c2). */
static void sample_field(const float *f, const int n[3], int ch, const double c[3], double *out)
{
    int lo[3], hi[3];
    double w[3];
    for (int d = 0; d < 3; d++) {
        double x = fmin(fmax(c[d], 0.0), (double)(n[d] - 1));
        lo[d] = (int)floor(x);
        hi[d] = lo[d] + 1 < n[d] ? lo[d] + 1 : lo[d];
        w[d] = x - lo[d];
    }
    for (int k = 0; k < ch; k++)
        out[k] = 0;
    for (int corner = 0; corner < 8; corner++) {
        double wt = 1;
        int idx[3];
        for (int d = 0; d < 3; d++) {
            int up = (corner >> d) & 1;
            idx[d] = up ? hi[d] : lo[d];
            wt *= up ? w[d] : 1 - w[d];
        }
        const float *v = f + (((size_t)idx[0] * n[1] + idx[1]) * n[2] + idx[2]) * (size_t)ch;
        for (int k = 0; k < ch; k++)
            out[k] += wt * v[k];
    }
}

/* Runs the inference graph on (padded) inputs and copies its pre-integration output, read right after its step
 * (it is not a kept output of the inference graph). */
static vxm_status run_preint(vxm_context *ctx, vxm_backend *be, const vxm_model *m, const vxm_volume *mov,
                             const vxm_volume *fix, float **svf, int qshape[3])
{
    vxm_graph *g = NULL;
    vxm_exec *ex = NULL;
    *svf = NULL;
    vxm_status st = vxm_model_build_graph(ctx, m, mov->ndim, mov->shape, &g);
    if (!st && (g->out_preint < 0 || g->out_preint == g->out_warp))
        st = vxm_error(ctx, VXM_EUNSUPPORTED, m->path, "the model has no integrated velocity field to refine");
    if (!st)
        st = vxm_exec_begin(be, g, mov->data, fix->data, 1, 0, &ex);
    for (int i = 0; !st && i <= g->out_preint; i++)
        st = vxm_exec_step(ex, i);
    if (!st) {
        const vxm_node *n = &g->nodes[g->out_preint];
        memcpy(qshape, n->shape, 3 * sizeof(int));
        if (!(*svf = malloc(vxm_node_numel(n) * sizeof(float))))
            st = vxm_error(ctx, VXM_ENOMEM, "refine", "out of memory");
        else
            st = vxm_exec_read(ex, g->out_preint, *svf);
    }
    vxm_exec_end(ex);
    vxm_graph_free(g);
    if (st) {
        free(*svf);
        *svf = NULL;
    }
    return st;
}

vxm_status vxm_instance_svf_from_model(vxm_context *ctx, vxm_backend *be, const vxm_model *m,
                                       const vxm_volume *moving, const vxm_volume *fixed, const int field_shape[3],
                                       float **out)
{
    *out = NULL;
    if (m->kind != VXM_MODEL_VXMDENSE)
        return vxm_error(ctx, VXM_EUNSUPPORTED, m->path, "is a legacy Keras graph: its velocity field is not exposed");
    if (m->dense.int_steps <= 0)
        return vxm_error(ctx, VXM_EUNSUPPORTED, m->path, "has no integration (int_steps 0): nothing to refine");
    int nd = moving->ndim, a0 = 3 - nd, pshape[3], off[3] = {0, 0, 0}, q[3];
    vxm_padded_shape(vxm_model_size_divisor(m), nd, moving->shape, pshape);
    vxm_volume *pm = NULL, *pf = NULL;
    vxm_status st = VXM_OK;
    int padded = memcmp(pshape, moving->shape, sizeof pshape) != 0;
    if (padded && !(st = vxm_volume_pad_center(ctx, moving, pshape, off, &pm)))
        st = vxm_volume_pad_center(ctx, fixed, pshape, off, &pf);
    float *svf = NULL;
    if (!st)
        st = run_preint(ctx, be, m, padded ? pm : moving, padded ? pf : fixed, &svf, q);
    vxm_volume_free(pm);
    vxm_volume_free(pf);
    if (st)
        return st;
    size_t cnt = (size_t)field_shape[0] * field_shape[1] * field_shape[2] * (size_t)nd;
    float *f = malloc(cnt * sizeof(float));
    if (!f) {
        free(svf);
        return vxm_error(ctx, VXM_ENOMEM, "refine", "out of memory");
    }
    if (!padded && !memcmp(q, field_shape, sizeof q)) {
        memcpy(f, svf, cnt * sizeof(float));
    } else {
        /* Map P's voxel j to the full-resolution image (linspace, as RescaleTransform does), into the padded frame,
         * then onto the network's SVF grid; vectors go from that grid's voxels (x the model's rescale factor) to
         * P's (/ int_downsize). */
        const int *n = moving->shape;
        double vscale = (double)pshape[a0] / q[a0] / ((double)n[a0] / field_shape[a0]);
        for (int i = 0; i < field_shape[0]; i++)
            for (int j = 0; j < field_shape[1]; j++)
                for (int k = 0; k < field_shape[2]; k++) {
                    int idx[3] = {i, j, k};
                    double c[3], v[3];
                    for (int d = 0; d < 3; d++) {
                        double x = field_shape[d] > 1 ? idx[d] * (double)(n[d] - 1) / (field_shape[d] - 1) : 0;
                        c[d] = pshape[d] > 1 ? (x + off[d]) * (q[d] - 1) / (double)(pshape[d] - 1) : 0;
                    }
                    sample_field(svf, q, nd, c, v);
                    float *o = f + (((size_t)i * field_shape[1] + j) * field_shape[2] + k) * (size_t)nd;
                    for (int d = 0; d < nd; d++)
                        o[d] = (float)(v[d] * vscale);
                }
    }
    free(svf);
    *out = f;
    return VXM_OK;
}
