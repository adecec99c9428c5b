/* Graph executor: runs nodes in order through the backend's ops table, releasing every intermediate tensor
 * right after its last consumer so that peak device memory follows the liveness of the graph. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph/graph.h"

struct vxm_exec {
    vxm_backend *be;
    const vxm_graph *g;
    const float *inputs[2];
    int deterministic;
    unsigned long long rng;
    vxm_tensor *t;       /* one output tensor per node */
    vxm_buffer **w, **b; /* conv weights per node */
    int *last_use;       /* index of the last consumer, or g->n for graph outputs */
    double *seconds;     /* per-node wall time when profiling (NULL otherwise) */
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

static int is_output(const vxm_graph *g, int i)
{
    return i == g->out_moved || i == g->out_warp;
}

vxm_status vxm_exec_begin(vxm_backend *be, const vxm_graph *g, const float *moving, const float *fixed,
                          int deterministic, unsigned long long seed, vxm_exec **out)
{
    *out = NULL;
    vxm_exec *ex = calloc(1, sizeof *ex);
    if (!ex)
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of memory");
    ex->be = be;
    ex->g = g;
    ex->inputs[0] = moving;
    ex->inputs[1] = fixed;
    ex->deterministic = deterministic;
    ex->rng = seed;
    ex->t = calloc((size_t)g->n, sizeof *ex->t);
    ex->w = calloc((size_t)g->n, sizeof *ex->w);
    ex->b = calloc((size_t)g->n, sizeof *ex->b);
    ex->last_use = calloc((size_t)g->n, sizeof *ex->last_use);
    if (!ex->t || !ex->w || !ex->b || !ex->last_use) {
        vxm_exec_end(ex);
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of memory");
    }
    for (int i = 0; i < g->n; i++) {
        ex->last_use[i] = is_output(g, i) ? g->n : i;
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int src = g->nodes[i].in[k];
            if (ex->last_use[src] < i)
                ex->last_use[src] = i;
        }
    }
    vxm_status st = VXM_OK;
    for (int i = 0; i < g->n && st == VXM_OK; i++) {
        const vxm_node *n = &g->nodes[i];
        if (n->op != VXM_OP_CONV)
            continue;
        size_t nw = (size_t)n->conv.ksize[0] * n->conv.ksize[1] * n->conv.ksize[2] * n->cin * n->channels;
        st = be->ops->buffer_alloc(be, nw, &ex->w[i]);
        if (!st)
            st = be->ops->buffer_write(be, ex->w[i], n->w, nw);
        if (!st)
            st = be->ops->buffer_alloc(be, (size_t)n->channels, &ex->b[i]);
        if (!st)
            st = be->ops->buffer_write(be, ex->b[i], n->b, (size_t)n->channels);
    }
    if (st) {
        vxm_exec_end(ex);
        return st;
    }
    *out = ex;
    return VXM_OK;
}

/* splitmix64 + Box-Muller: reproducible N(0,1) noise for sampling mode (TF's stream cannot be matched). */
static double next_uniform(unsigned long long *s)
{
    unsigned long long z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

static vxm_status run_sample(vxm_exec *ex, const vxm_node *n, vxm_tensor *y)
{
    vxm_backend *be = ex->be;
    const vxm_tensor *mean = &ex->t[n->in[0]], *logvar = &ex->t[n->in[1]];
    if (ex->deterministic)
        return be->ops->sample_normal(be, mean, logvar, NULL, y);
    vxm_tensor eps;
    vxm_status st = vxm_tensor_alloc(be, y->shape, y->channels, &eps);
    if (st)
        return st;
    size_t cnt = vxm_tensor_numel(y);
    float *noise = malloc(cnt * sizeof(float));
    if (!noise) {
        vxm_tensor_release(be, &eps);
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of memory");
    }
    for (size_t i = 0; i < cnt; i++) {
        double u1 = next_uniform(&ex->rng), u2 = next_uniform(&ex->rng);
        noise[i] = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
    st = vxm_tensor_upload(be, &eps, noise);
    free(noise);
    if (!st)
        st = be->ops->sample_normal(be, mean, logvar, &eps, y);
    vxm_tensor_release(be, &eps);
    return st;
}

static vxm_status run_node(vxm_exec *ex, int i, vxm_tensor *y)
{
    vxm_backend *be = ex->be;
    const vxm_backend_ops *o = be->ops;
    const vxm_node *n = &ex->g->nodes[i];
    const vxm_tensor *a = n->n_in > 0 ? &ex->t[n->in[0]] : NULL;
    const vxm_tensor *c = n->n_in > 1 ? &ex->t[n->in[1]] : NULL;
    switch (n->op) {
    case VXM_OP_INPUT: return vxm_tensor_upload(be, y, ex->inputs[n->input_index]);
    case VXM_OP_CONV: return o->conv(be, a, ex->w[i], ex->b[i], &n->conv, y);
    case VXM_OP_LEAKY: return o->leaky_relu(be, a, n->alpha, y);
    case VXM_OP_MAXPOOL: return o->maxpool(be, a, n->f, y);
    case VXM_OP_UPSAMPLE: return o->upsample_nearest(be, a, n->f, y);
    case VXM_OP_CONCAT: return o->concat(be, a, c, y);
    case VXM_OP_SCALE: return o->scale(be, a, n->scale, y);
    case VXM_OP_RESIZE: return o->resize_linear(be, a, n->map, n->factor, y);
    case VXM_OP_VECINT: return o->vecint(be, a, ex->g->ndim, n->steps, y);
    case VXM_OP_TRANSFORM: return o->spatial_transform(be, a, c, ex->g->ndim, n->interp, n->use_fill, n->fill, y);
    case VXM_OP_SAMPLE: return run_sample(ex, n, y);
    }
    return vxm_error(be->ctx, VXM_EINVAL, be->spec, "unknown op in node %s", n->name);
}

vxm_status vxm_exec_step(vxm_exec *ex, int i)
{
    const vxm_node *n = &ex->g->nodes[i];
    double t0 = ex->seconds ? now_seconds() : 0;
    vxm_status st = vxm_tensor_alloc(ex->be, n->shape, n->channels, &ex->t[i]);
    if (st)
        return st;
    st = run_node(ex, i, &ex->t[i]);
    if (!st && ex->seconds) {
        /* profiling waits for the device after every node so that each gets its own time */
        st = ex->be->ops->finish(ex->be);
        ex->seconds[i] = now_seconds() - t0;
    }
    if (st)
        return st;
    for (int k = 0; k < n->n_in; k++) {
        int src = n->in[k];
        if (ex->last_use[src] == i)
            vxm_tensor_release(ex->be, &ex->t[src]);
    }
    /* A dead end (no consumer, e.g. the unused full-resolution skip of a half-resolution U-Net) stays
     * readable right after its own step for per-layer checks and is released one step later. */
    if (i > 0 && ex->last_use[i - 1] == i - 1 && !is_output(ex->g, i - 1))
        vxm_tensor_release(ex->be, &ex->t[i - 1]);
    return VXM_OK;
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

void vxm_exec_end(vxm_exec *ex)
{
    if (!ex)
        return;
    for (int i = 0; ex->g && i < ex->g->n; i++) {
        if (ex->t)
            vxm_tensor_release(ex->be, &ex->t[i]);
        if (ex->w && ex->w[i])
            ex->be->ops->buffer_free(ex->be, ex->w[i]);
        if (ex->b && ex->b[i])
            ex->be->ops->buffer_free(ex->be, ex->b[i]);
    }
    free(ex->t);
    free(ex->w);
    free(ex->b);
    free(ex->last_use);
    free(ex->seconds);
    free(ex);
}
