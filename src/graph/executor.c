/* Graph executor: runs nodes in order through the backend's ops table, releasing every intermediate tensor
 * right after its last consumer so that peak device memory follows the liveness of the graph (forward
 * activations live until the backward node that needs them ran).  Parameter nodes are bound to device buffers
 * uploaded once (vxm_weights), never copied per run; so may input nodes be (vxm_exec_bind_input: data made on the
 * device, e.g. SynthMorph's synthesised pairs, which would otherwise go to the host and back every step). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/context.h"
#include "core/rng.h"
#include "graph/graph.h"
#include "graph/plan.h"

struct vxm_exec {
    vxm_backend *be;
    const vxm_graph *g;
    const float *inputs[VXM_EXEC_MAX_INPUTS];
    const vxm_tensor *dev_inputs[VXM_EXEC_MAX_INPUTS]; /* bound device inputs (the caller's, never freed here) */
    int ninputs;
    int deterministic;
    unsigned long long rng;
    vxm_weights *own_weights; /* uploaded for this run when the caller gave none */
    const vxm_weights *weights;
    vxm_tensor *t;   /* one output tensor per node */
    int *last_use;   /* index of the last consumer, or g->n for outputs and parameters */
    double *seconds; /* per-node wall time when profiling (NULL otherwise) */
    vxm_plan *plan;  /* memory plan of repeated runs (graph/plan.h), or NULL */
    char *viewed;    /* per node: its buffer is a view of the plan's arena (the plan owns it) */
    int cur;         /* the step running (releases happen at it); g->n at the end */
    int next;        /* the step expected next: a plan is recorded only from a run of every node in order */
    int in_order, failed;
    int release_io; /* vxm_exec_release_io */
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

vxm_status vxm_exec_set_profiling(vxm_exec *ex, int on)
{
    free(ex->seconds);
    ex->seconds = on ? calloc((size_t)ex->g->n, sizeof(double)) : NULL;
    if (on && !ex->seconds)
        return vxm_error(ex->be->ctx, VXM_ENOMEM, ex->be->spec, "out of memory");
    return VXM_OK;
}

double vxm_exec_node_seconds(const vxm_exec *ex, int i)
{
    return ex->seconds ? ex->seconds[i] : 0.0;
}

/* Tensors kept to the end of the run: outputs (losses, parameter gradients), parameters, and the moved image and
 * warp unless the caller reads only the former (vxm_exec_release_io). */
static int is_kept(const vxm_exec *ex, int i)
{
    const vxm_graph *g = ex->g;
    return (!ex->release_io && (i == g->out_moved || i == g->out_warp)) || (g->nodes[i].flags & VXM_NODE_OUTPUT) ||
           g->nodes[i].op == VXM_OP_PARAM;
}

static void compute_last_use(vxm_exec *ex)
{
    const vxm_graph *g = ex->g;
    for (int i = 0; i < g->n; i++) {
        ex->last_use[i] = is_kept(ex, i) ? g->n : i;
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int src = g->nodes[i].in[k];
            if (ex->last_use[src] < i)
                ex->last_use[src] = i;
        }
    }
}

/* Nodes whose buffers belong to someone else: parameters (vxm_weights) and bound device inputs. */
static int is_borrowed(const vxm_exec *ex, int i)
{
    const vxm_node *n = &ex->g->nodes[i];
    return n->op == VXM_OP_PARAM || (n->op == VXM_OP_INPUT && n->p.input.index >= 0 &&
                                     n->p.input.index < VXM_EXEC_MAX_INPUTS && ex->dev_inputs[n->p.input.index]);
}

/* Node i's tensor is no longer needed: released, or only forgotten when borrowed (parameters stay bound) or a
 * view of the memory plan's arena. */
static void drop(vxm_exec *ex, int i)
{
    if (ex->g->nodes[i].op == VXM_OP_PARAM)
        return;
    if (ex->plan && ex->t[i].buf && !is_borrowed(ex, i) && !ex->failed) /* a failed run's clean-up is no deviation */
        vxm_plan_release(ex->plan, i, ex->cur);
    if (is_borrowed(ex, i) || (ex->viewed && ex->viewed[i]))
        ex->t[i].buf = NULL;
    else
        vxm_tensor_release(ex->be, &ex->t[i]);
}

/* ---- weights -------------------------------------------------------------------------------------------- */

void vxm_weights_free(vxm_weights *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n; i++)
        if (w->buf[i])
            w->be->ops->buffer_free(w->be, w->buf[i]);
    free(w->buf);
    free(w);
}

vxm_status vxm_weights_upload(vxm_backend *be, const vxm_graph *g, vxm_weights **out)
{
    *out = NULL;
    vxm_weights *w = calloc(1, sizeof *w);
    if (w)
        w->buf = calloc((size_t)(g->nparams ? g->nparams : 1), sizeof *w->buf);
    if (!w || !w->buf) {
        free(w);
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of memory");
    }
    w->be = be;
    w->n = g->nparams;
    vxm_status st = VXM_OK;
    for (int i = 0; i < g->nparams && !st; i++) {
        st = be->ops->buffer_alloc(be, g->params[i].numel, &w->buf[i]);
        if (!st)
            st = be->ops->buffer_write(be, w->buf[i], g->params[i].host, g->params[i].numel);
        if (st)
            vxm_error_annotate(be->ctx, be->spec, "layer %s (%s upload)", g->params[i].layer, g->params[i].kind);
    }
    if (st) {
        vxm_weights_free(w);
        return st;
    }
    *out = w;
    return VXM_OK;
}

/* ---- runs ----------------------------------------------------------------------------------------------- */

vxm_status vxm_exec_begin_with(vxm_backend *be, const vxm_graph *g, const vxm_weights *weights,
                               const float *const *inputs, int ninputs, int deterministic, unsigned long long seed,
                               vxm_exec **out)
{
    *out = NULL;
    if (ninputs > VXM_EXEC_MAX_INPUTS)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "too many graph inputs");
    vxm_exec *ex = calloc(1, sizeof *ex);
    if (!ex)
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of memory");
    ex->be = be;
    ex->g = g;
    for (int k = 0; k < ninputs; k++)
        ex->inputs[k] = inputs[k];
    ex->ninputs = ninputs;
    ex->deterministic = deterministic;
    ex->rng = seed;
    ex->in_order = 1;
    ex->t = calloc((size_t)g->n, sizeof *ex->t);
    ex->last_use = calloc((size_t)g->n, sizeof *ex->last_use);
    if (!ex->t || !ex->last_use) {
        vxm_exec_end(ex);
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of memory");
    }
    compute_last_use(ex);
    vxm_status st = VXM_OK;
    if (!weights) {
        st = vxm_weights_upload(be, g, &ex->own_weights);
        weights = ex->own_weights;
    } else if (weights->n != g->nparams || weights->be != be) {
        st = vxm_error(be->ctx, VXM_EINVAL, be->spec, "weights do not belong to this graph and device");
    }
    if (st) {
        vxm_exec_end(ex);
        return st;
    }
    ex->weights = weights;
    for (int i = 0; i < g->n; i++) {
        const vxm_node *n = &g->nodes[i];
        if (n->op != VXM_OP_PARAM)
            continue;
        memcpy(ex->t[i].shape, n->shape, sizeof n->shape);
        ex->t[i].channels = n->channels;
        ex->t[i].buf = weights->buf[n->p.param.index];
    }
    *out = ex;
    return VXM_OK;
}

vxm_status vxm_exec_bind_input(vxm_exec *ex, int index, const vxm_tensor *dev)
{
    const vxm_graph *g = ex->g;
    if (index < 0 || index >= VXM_EXEC_MAX_INPUTS)
        return vxm_error(ex->be->ctx, VXM_EINVAL, ex->be->spec, "no graph input %d", index);
    for (int i = 0; i < g->n; i++) {
        const vxm_node *n = &g->nodes[i];
        if (n->op != VXM_OP_INPUT || n->p.input.index != index)
            continue;
        if (ex->t[i].buf) /* already run: the binding would come too late */
            return vxm_error(ex->be->ctx, VXM_EINVAL, ex->be->spec, "graph input %s already ran", n->name);
        if (memcmp(n->shape, dev->shape, sizeof n->shape) || n->channels != dev->channels)
            return vxm_error(ex->be->ctx, VXM_ESHAPE, ex->be->spec,
                             "graph input %s needs %dx%dx%d with %d channels, the device tensor is %dx%dx%d with %d "
                             "channels",
                             n->name, n->shape[0], n->shape[1], n->shape[2], n->channels, dev->shape[0],
                             dev->shape[1], dev->shape[2], dev->channels);
    }
    ex->dev_inputs[index] = dev;
    return VXM_OK;
}

vxm_status vxm_exec_release_io(vxm_exec *ex)
{
    if (ex->next > 0 || ex->plan)
        return vxm_error(ex->be->ctx, VXM_EINVAL, ex->be->spec, "outputs released after the run started");
    ex->release_io = 1;
    compute_last_use(ex);
    return VXM_OK;
}

vxm_status vxm_exec_set_plan(vxm_exec *ex, vxm_plan *plan)
{
    const vxm_graph *g = ex->g;
    if (ex->next > 0 || ex->plan)
        return vxm_error(ex->be->ctx, VXM_EINVAL, ex->be->spec, "memory plan set after the run started, or twice");
    char *borrowed = malloc((size_t)(g->n ? g->n : 1));
    ex->viewed = calloc((size_t)(g->n ? g->n : 1), 1);
    if (!borrowed || !ex->viewed) {
        free(borrowed);
        return vxm_error(ex->be->ctx, VXM_ENOMEM, ex->be->spec, "out of memory");
    }
    for (int i = 0; i < g->n; i++)
        borrowed[i] = (char)is_borrowed(ex, i);
    vxm_status st = vxm_plan_begin(plan, ex->be, g, ex->deterministic | ex->release_io << 1, borrowed);
    free(borrowed);
    if (!st)
        ex->plan = plan;
    return st;
}

vxm_status vxm_exec_begin(vxm_backend *be, const vxm_graph *g, const float *moving, const float *fixed,
                          int deterministic, unsigned long long seed, vxm_exec **out)
{
    const float *in[2] = {moving, fixed};
    return vxm_exec_begin_with(be, g, NULL, in, 2, deterministic, seed, out);
}

static vxm_status run_noise(vxm_exec *ex, vxm_tensor *y)
{
    vxm_backend *be = ex->be;
    size_t cnt = vxm_tensor_numel(y);
    if (ex->deterministic)
        return be->ops->fill(be, y->buf, cnt, 0.0f);
    float *noise = malloc(cnt * sizeof(float));
    if (!noise)
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of memory");
    for (size_t i = 0; i < cnt; i++)
        noise[i] = (float)vxm_rng_normal(&ex->rng);
    vxm_status st = vxm_tensor_upload(be, y, noise);
    free(noise);
    return st;
}

static vxm_status run_loss_back(vxm_backend *be, const vxm_node *n, const vxm_tensor *a, const vxm_tensor *b,
                                vxm_tensor *y)
{
    const vxm_backend_ops *o = be->ops;
    const vxm_loss_params *L = &n->p.loss;
    float s = (float)(L->factor * L->weight);
    switch (L->kind) {
    case VXM_OP_LOSS_MSE: /* d/d y_true = -d/d y_pred */
        return L->wrt == 1 ? o->mse_loss_backward(be, b, a, s, y) : o->mse_loss_backward(be, a, b, s, y);
    case VXM_OP_LOSS_NCC:
        return o->ncc_loss_backward(be, a, b, L->win, L->eps, s, L->wrt == 0 ? y : NULL, L->wrt == 1 ? y : NULL);
    case VXM_OP_LOSS_GRAD: return o->grad_loss_backward(be, a, L->ndim, L->l1, s, y);
    case VXM_OP_LOSS_DICE: return o->dice_loss_backward(be, a, b, s, y);
    case VXM_OP_LOSS_KL:
        return o->kl_loss_backward(be, a, b, L->ndim, L->prior_lambda, s, L->wrt == 0 ? y : NULL,
                                   L->wrt == 1 ? y : NULL);
    default: break;
    }
    return vxm_error(be->ctx, VXM_EINVAL, be->spec, "no backward for loss node %s", n->name);
}

static vxm_status run_node(vxm_exec *ex, int i, vxm_tensor *y)
{
    vxm_backend *be = ex->be;
    const vxm_backend_ops *o = be->ops;
    const vxm_node *n = &ex->g->nodes[i];
    const vxm_tensor *a = n->n_in > 0 ? &ex->t[n->in[0]] : NULL;
    const vxm_tensor *b = n->n_in > 1 ? &ex->t[n->in[1]] : NULL;
    const vxm_tensor *c = n->n_in > 2 ? &ex->t[n->in[2]] : NULL;
    int ndim = ex->g->ndim;
    switch (n->op) {
    case VXM_OP_INPUT:
        if (is_borrowed(ex, i))
            return VXM_OK; /* bound at vxm_exec_bind_input */
        if (n->p.input.index >= ex->ninputs || !ex->inputs[n->p.input.index])
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "no data for graph input %s", n->name);
        return vxm_tensor_upload(be, y, ex->inputs[n->p.input.index]);
    case VXM_OP_PARAM: return VXM_OK; /* bound at begin */
    case VXM_OP_NOISE: return run_noise(ex, y);
    case VXM_OP_CONV: return o->conv(be, a, b->buf, c->buf, &n->p.conv, y);
    case VXM_OP_LEAKY: return o->leaky_relu(be, a, n->p.leaky.alpha, y);
    case VXM_OP_MAXPOOL: return o->maxpool(be, a, n->p.pool.f, y);
    case VXM_OP_UPSAMPLE: return o->upsample_nearest(be, a, n->p.pool.f, y);
    case VXM_OP_CONCAT: return o->concat(be, a, b, y);
    case VXM_OP_SCALE: return o->scale(be, a, n->p.scale.s, y);
    case VXM_OP_RESIZE: return o->resize_linear(be, a, n->p.resize.map, n->p.resize.factor, y);
    case VXM_OP_VECINT: return o->vecint(be, a, ndim, n->p.vecint.steps, y);
    case VXM_OP_TRANSFORM:
        return o->spatial_transform(be, a, b, ndim, n->p.transform.interp, n->p.transform.use_fill,
                                    n->p.transform.fill, y);
    case VXM_OP_SAMPLE: return o->sample_normal(be, a, b, ex->deterministic ? NULL : c, y);
    case VXM_OP_ADD: return o->add(be, a, b, y);
    case VXM_OP_ELU: return o->elu(be, a, y);
    case VXM_OP_RESHAPE: /* usually the input's own buffer (inplace_source); else a copy over numel */
        return a->buf == y->buf ? VXM_OK : o->blend(be, 1.0f, a, 0.0f, a, y);
    case VXM_OP_LOSS_MSE: return o->mse_loss(be, a, b, y);
    case VXM_OP_LOSS_NCC: return o->ncc_loss(be, a, b, n->p.loss.win, n->p.loss.eps, y);
    case VXM_OP_LOSS_GRAD: return o->grad_loss(be, a, n->p.loss.ndim, n->p.loss.l1, y);
    case VXM_OP_LOSS_DICE: return o->dice_loss(be, a, b, y);
    case VXM_OP_LOSS_KL: return o->kl_loss(be, a, b, n->p.loss.ndim, n->p.loss.prior_lambda, y);
    case VXM_OP_CONV_BACK_DATA: return o->conv_backward_data(be, a, b->buf, &n->p.conv, y);
    case VXM_OP_CONV_BACK_FILTER: return o->conv_backward_filter(be, a, b, &n->p.conv, y->buf);
    case VXM_OP_CONV_BACK_BIAS: return o->conv_backward_bias(be, a, y->buf);
    case VXM_OP_LEAKY_BACK: return o->leaky_relu_backward(be, a, b, n->p.leaky.alpha, y);
    case VXM_OP_MAXPOOL_BACK: return o->maxpool_backward(be, a, b, n->p.pool.f, n->p.pool.tie_tol, y);
    case VXM_OP_UPSAMPLE_BACK: return o->upsample_nearest_backward(be, a, n->p.pool.f, y);
    case VXM_OP_SLICE: return o->slice_channels(be, a, n->p.slice.c0, y);
    case VXM_OP_RESIZE_BACK: return o->resize_linear_backward(be, a, n->p.resize.map, n->p.resize.factor, y);
    case VXM_OP_TRANSFORM_BACK_IMAGE:
        return o->spatial_transform_backward(be, a, b, c, ndim, n->p.transform.use_fill, y, NULL);
    case VXM_OP_TRANSFORM_BACK_DISP:
        return o->spatial_transform_backward(be, a, b, c, ndim, n->p.transform.use_fill, NULL, y);
    case VXM_OP_SAMPLE_BACK: return o->sample_normal_backward(be, a, b, c, y);
    case VXM_OP_LOSS_BACK: return run_loss_back(be, n, a, b, y);
    case VXM_OP_ELU_BACK: return o->elu_backward(be, a, b, y);
    case VXM_OP_CONV_POOL: return o->conv_pool(be, a, b->buf, c->buf, &n->p.fused.conv, n->p.fused.f, y);
    case VXM_OP_CONV_UPCAT:
        return o->conv_upcat(be, a, n->p.fused.f, b, c->buf, ex->t[n->in[3]].buf, &n->p.fused.conv, y);
    case VXM_OP_COUNT: break;
    }
    return vxm_error(be->ctx, VXM_EINVAL, be->spec, "unknown op in node %s", n->name);
}

/* Element-wise ops whose backends allow the output to alias an input (backend.h): the input whose buffer node i
 * may take over, or -1.  Taking over a dying input's buffer (ggml's in-place ops) saves an allocation -- page
 * faults on every step for the large full-resolution gradients -- and a tensor's worth of memory. */
static int inplace_source(const vxm_exec *ex, int i)
{
    const vxm_node *n = &ex->g->nodes[i];
    int cand[2] = {-1, -1};
    switch (n->op) {
    case VXM_OP_LEAKY_BACK:
    case VXM_OP_ELU_BACK: cand[0] = n->in[1]; break; /* dx may be dy */
    case VXM_OP_ADD: cand[0] = n->in[0], cand[1] = n->in[1]; break;
    case VXM_OP_SCALE:
    case VXM_OP_ELU:
    case VXM_OP_RESHAPE: /* a view of the same data */
    case VXM_OP_LEAKY: cand[0] = n->in[0]; break;
    default: return -1;
    }
    for (int k = 0; k < 2; k++) {
        int s = cand[k];
        if (s < 0 || ex->last_use[s] != i || is_kept(ex, s) || !ex->t[s].buf ||
            vxm_node_numel(&ex->g->nodes[s]) != vxm_node_numel(n) || ex->g->nodes[s].op == VXM_OP_INPUT)
            continue;
        if (n->op == VXM_OP_ADD && n->in[0] == n->in[1])
            continue; /* the same tensor twice: released once below */
        return s;
    }
    return -1;
}

vxm_status vxm_exec_step(vxm_exec *ex, int i)
{
    const vxm_node *n = &ex->g->nodes[i];
    ex->in_order &= i == ex->next;
    ex->next = i + 1;
    ex->cur = i;
    if (n->op == VXM_OP_PARAM)
        return VXM_OK;
    if (n->op == VXM_OP_NOISE && ex->deterministic)
        return VXM_OK; /* mean mode: the sampling node ignores its noise */
    double t0 = ex->seconds ? now_seconds() : 0;
    vxm_status st = VXM_OK;
    int src = inplace_source(ex, i);
    if (src >= 0) { /* the output shares the dying input's buffer, which the input then gives up (below) */
        memcpy(ex->t[i].shape, n->shape, sizeof n->shape);
        ex->t[i].channels = n->channels;
        ex->t[i].buf = ex->t[src].buf;
        if (ex->plan) {
            vxm_plan_record_alias(ex->plan, i, src);
            ex->viewed[i] = ex->viewed[src];
            ex->viewed[src] = 0;
        }
    } else if (is_borrowed(ex, i)) { /* a bound device input: used as it is, no copy */
        ex->t[i] = *ex->dev_inputs[n->p.input.index];
    } else {
        vxm_buffer *view = ex->plan ? vxm_plan_take(ex->plan, i, vxm_node_numel(n), &st) : NULL;
        if (view) {
            memcpy(ex->t[i].shape, n->shape, sizeof n->shape);
            ex->t[i].channels = n->channels;
            ex->t[i].buf = view;
            ex->viewed[i] = 1;
        } else if (!st) {
            st = vxm_tensor_alloc(ex->be, n->shape, n->channels, &ex->t[i]);
            if (!st && ex->plan)
                vxm_plan_record_alloc(ex->plan, i, vxm_node_numel(n));
        }
    }
    if (!st)
        st = run_node(ex, i, &ex->t[i]);
    if (src >= 0)
        ex->t[src].buf = NULL; /* owned by node i now */
    if (!st && ex->seconds) {
        /* profiling waits for the device after every node so that each gets its own time */
        st = ex->be->ops->finish(ex->be);
        ex->seconds[i] = now_seconds() - t0;
    }
    if (st) { /* a device failure (out of memory, lost device) names the layer it happened in */
        ex->failed = 1;
        vxm_error_annotate(ex->be->ctx, ex->be->spec, "layer %s", n->name);
        return st;
    }
    for (int k = 0; k < n->n_in; k++) {
        int src = n->in[k];
        if (ex->last_use[src] == i)
            drop(ex, src);
    }
    /* A dead end (no consumer, e.g. the unused full-resolution skip of a half-resolution U-Net) stays
     * readable right after its own step for per-layer checks and is released one step later. */
    if (i > 0 && ex->last_use[i - 1] == i - 1 && !is_kept(ex, i - 1))
        drop(ex, i - 1);
    if (ex->plan && (st = vxm_plan_status(ex->plan)))
        ex->failed = 1;
    return st;
}

vxm_status vxm_exec_run_all(vxm_exec *ex)
{
    for (int i = 0; i < ex->g->n; i++) {
        vxm_status st = vxm_exec_step(ex, i);
        if (st)
            return st;
    }
    return ex->be->ops->finish(ex->be);
}

vxm_status vxm_exec_read(vxm_exec *ex, int i, float *host)
{
    if (!ex->t[i].buf)
        return vxm_error(ex->be->ctx, VXM_EINVAL, ex->be->spec, "output of %s is no longer available",
                         ex->g->nodes[i].name);
    return vxm_tensor_download(ex->be, &ex->t[i], host);
}

const vxm_tensor *vxm_exec_tensor(const vxm_exec *ex, int i)
{
    return ex->t[i].buf ? &ex->t[i] : NULL;
}

void vxm_exec_end(vxm_exec *ex)
{
    if (!ex)
        return;
    ex->cur = ex->g ? ex->g->n : 0;
    if (!ex->g || !ex->in_order || ex->next != ex->g->n)
        ex->failed = 1; /* stopped part-way: what it still holds is released now, not where the plan has it */
    for (int i = 0; ex->g && ex->t && i < ex->g->n; i++)
        drop(ex, i);
    if (ex->plan) /* a recording run that ran every node becomes the plan of the next runs */
        vxm_plan_end(ex->plan, !ex->failed);
    free(ex->viewed);
    vxm_weights_free(ex->own_weights);
    free(ex->t);
    free(ex->last_use);
    free(ex->seconds);
    free(ex);
}
