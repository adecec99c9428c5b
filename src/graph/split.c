/* Channel-group splitting of over-wide conv -> max-pool pairs (graph/split.h; training doc §6.4: the 256-feature
 * SynthMorph models at full size). */
#include "graph/split.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPLIT_MAX_CHAIN 4 /* channel-wise ops between the conv and its pool */

typedef struct split_plan {
    int conv, pool;
    int chain[SPLIT_MAX_CHAIN];
    int nchain;
    int gsize; /* channels per group (the last group may have fewer) */
} split_plan;

unsigned long long vxm_backend_alloc_limit(const vxm_backend *be)
{
    unsigned long long lim = be->max_alloc;
    const char *env = getenv("VXM_MAX_ALLOC_MB");
    if (env && *env) {
        char *end;
        unsigned long long mb = strtoull(env, &end, 10);
        if (*end == '\0' && mb > 0 && mb < (1ull << 44) && (lim == 0 || mb * 1048576ull < lim))
            lim = mb * 1048576ull;
    }
    return lim;
}

/* Graph inputs and outputs named by the graph's index fields, or flagged as outputs: never folded into a group. */
static int is_io(const vxm_graph *g, int i)
{
    const int io[] = {g->out_moved,     g->out_warp,      g->out_preint,   g->out_flow_mean, g->out_flow_logvar,
                      g->in_source,     g->in_target,     g->out_neg_moved, g->out_neg_warp, g->in_seg_source,
                      g->in_seg_target, g->out_seg_moved, g->in_hyper};
    for (size_t k = 0; k < sizeof io / sizeof io[0]; k++)
        if (io[k] == i)
            return 1;
    return (g->nodes[i].flags & VXM_NODE_OUTPUT) != 0;
}

static unsigned long long node_bytes(const vxm_node *n)
{
    return (unsigned long long)vxm_node_numel(n) * sizeof(float);
}

/* A conv whose parameters are model weights on the host (not computed: HyperMorph's hyper-convolutions). */
static int host_conv(const vxm_graph *g, const vxm_node *c)
{
    if (c->op != VXM_OP_CONV || c->n_in != 3)
        return 0;
    for (int k = 1; k < 3; k++) {
        const vxm_node *p = &g->nodes[c->in[k]];
        if (p->op != VXM_OP_PARAM || !g->params[p->p.param.index].host)
            return 0;
    }
    const vxm_graph_param *w = &g->params[g->nodes[c->in[1]].p.param.index];
    return w->rank >= 2 && w->dims[w->rank - 1] == c->channels &&
           g->params[g->nodes[c->in[2]].p.param.index].numel == (size_t)c->channels;
}

/* The plan for conv node c, or 0 when it has not the conv -> channel-wise ops -> max-pool shape or cannot be
 * brought below max_bytes by channel groups. */
static int plan_conv(const vxm_graph *g, const int *ncons, const int *cons, int c, unsigned long long max_bytes,
                     split_plan *p)
{
    const vxm_node *cv = &g->nodes[c];
    if (!host_conv(g, cv) || is_io(g, c))
        return 0;
    memset(p, 0, sizeof *p);
    p->conv = c;
    int cur = c;
    while (ncons[cur] == 1 && !is_io(g, cur) && p->nchain < SPLIT_MAX_CHAIN) {
        const vxm_node *nx = &g->nodes[cons[cur]];
        if ((nx->op != VXM_OP_LEAKY && nx->op != VXM_OP_SCALE) || vxm_node_numel(nx) != vxm_node_numel(cv))
            break;
        cur = p->chain[p->nchain++] = cons[cur];
    }
    if (ncons[cur] != 1 || is_io(g, cur) || g->nodes[cons[cur]].op != VXM_OP_MAXPOOL)
        return 0;
    p->pool = cons[cur];
    if (node_bytes(&g->nodes[p->pool]) > max_bytes)
        return 0; /* the pooled result itself would not fit: reported as the conv's */
    /* Channels per group: as many as fit, in whole 32-channel blocks where possible (the OpenCL conv's channel
     * block), then evened out over the groups. */
    unsigned long long voxel_bytes = node_bytes(cv) / (unsigned long long)cv->channels;
    unsigned long long gmax = max_bytes / voxel_bytes;
    if (gmax < 1)
        return 0;
    int C = cv->channels, unit = 32;
    while (unit > 1 && (unsigned long long)unit > gmax)
        unit /= 2;
    int gs = gmax >= (unsigned long long)C ? C : (int)(gmax / (unsigned long long)unit) * unit;
    int K = (C + gs - 1) / gs;
    int even = (C + K - 1) / K;
    p->gsize = (even + unit - 1) / unit * unit;
    if (p->gsize > gs)
        p->gsize = gs;
    return 1;
}

/* Copies `src` as a node of ng with inputs remapped through map (all must exist). */
static int copy_node(vxm_graph *ng, const vxm_node *src, const int *map)
{
    vxm_node n = *src;
    for (int k = 0; k < n.n_in; k++) {
        n.in[k] = map[src->in[k]];
        if (n.in[k] < 0)
            return -1;
    }
    return vxm_graph_add(ng, &n);
}

/* A parameter of ng holding channels [c0, c0 + n) of the last axis of parameter `pi` (kernel or bias). */
static int slice_param(vxm_graph *ng, int pi, int c0, int n, int group)
{
    const vxm_graph_param *P = &ng->params[pi];
    size_t cout = (size_t)P->dims[P->rank - 1], rows = P->numel / cout;
    float *h = vxm_graph_alloc_host(ng, rows * (size_t)n);
    if (!h)
        return -1;
    for (size_t r = 0; r < rows; r++)
        memcpy(h + r * (size_t)n, P->host + r * cout + (size_t)c0, (size_t)n * sizeof(float));
    long dims[5];
    memcpy(dims, P->dims, sizeof dims);
    dims[P->rank - 1] = n;
    char layer[VXM_NODE_NAME_MAX], kind[24];
    snprintf(layer, sizeof layer, "%s", P->layer);
    snprintf(kind, sizeof kind, "%.8s_g%d", P->kind, group);
    return vxm_graph_add_param(ng, layer, kind, P->rank, dims, h);
}

/* Emits the groups of plan p into ng; returns the node that replaces the pool (the last concat), or -1. */
static int emit_groups(vxm_graph *ng, const vxm_graph *g, const split_plan *p, const int *map)
{
    const vxm_node *cv = &g->nodes[p->conv], *pool = &g->nodes[p->pool];
    int C = cv->channels, acc = -1, ngroups = (C + p->gsize - 1) / p->gsize;
    for (int k = 0; k < ngroups; k++) {
        int c0 = k * p->gsize, n = C - c0 < p->gsize ? C - c0 : p->gsize;
        int w = slice_param(ng, g->nodes[cv->in[1]].p.param.index, c0, n, k);
        int b = w < 0 ? -1 : slice_param(ng, g->nodes[cv->in[2]].p.param.index, c0, n, k);
        if (b < 0)
            return -1;
        vxm_node c = *cv;
        c.in[0] = map[cv->in[0]];
        c.in[1] = w;
        c.in[2] = b;
        c.channels = n;
        snprintf(c.name, sizeof c.name, "%.80s_g%d", cv->name, k);
        int x = c.in[0] < 0 ? -1 : vxm_graph_add(ng, &c);
        for (int j = 0; j <= p->nchain && x >= 0; j++) {
            vxm_node e = j < p->nchain ? g->nodes[p->chain[j]] : *pool;
            e.in[0] = x;
            e.channels = n;
            snprintf(e.name, sizeof e.name, "%.80s_g%d", j < p->nchain ? g->nodes[p->chain[j]].name : pool->name, k);
            e.flags &= ~VXM_NODE_OUTPUT;
            x = vxm_graph_add(ng, &e);
        }
        if (x < 0)
            return -1;
        if (acc < 0) {
            acc = x;
            continue;
        }
        vxm_node cat;
        memset(&cat, 0, sizeof cat);
        cat.op = VXM_OP_CONCAT;
        cat.in[0] = acc;
        cat.in[1] = x;
        cat.n_in = 2;
        memcpy(cat.shape, pool->shape, sizeof cat.shape);
        cat.channels = ng->nodes[acc].channels + n;
        cat.flags = pool->flags & VXM_NODE_GRAD;
        snprintf(cat.name, sizeof cat.name, "%.70s_concat%d", pool->name, k);
        acc = vxm_graph_add(ng, &cat);
        if (acc < 0)
            return -1;
    }
    /* the node standing for the pool carries its name and flags */
    snprintf(ng->nodes[acc].name, sizeof ng->nodes[acc].name, "%s", pool->name);
    ng->nodes[acc].flags = pool->flags;
    return acc;
}

static void remap_fields(vxm_graph *ng, const vxm_graph *g, const int *map)
{
#define REMAP(f) ng->f = g->f >= 0 ? map[g->f] : -1
    REMAP(out_moved);
    REMAP(out_warp);
    REMAP(out_preint);
    REMAP(out_flow_mean);
    REMAP(out_flow_logvar);
    REMAP(in_source);
    REMAP(in_target);
    REMAP(out_neg_moved);
    REMAP(out_neg_warp);
    REMAP(in_seg_source);
    REMAP(in_seg_target);
    REMAP(out_seg_moved);
    REMAP(in_hyper);
#undef REMAP
    ng->n_forward = ng->n;
}

/* Hands the host arrays `from` owns over to `to` (which owns none). */
static void give_owned(vxm_graph *to, vxm_graph *from)
{
    to->owned = from->owned;
    to->nowned = from->nowned;
    from->owned = NULL;
    from->nowned = 0;
}

/* Builds the rewritten graph: g's parameter table (same indices; host copies g owns move over), its nodes with the
 * planned convs replaced by their groups. */
static vxm_graph *rewrite(vxm_graph *g, const split_plan *plans, int nplans, const int *plan_of)
{
    vxm_graph *ng = vxm_graph_new(g->ndim);
    int *map = malloc(sizeof(int) * (size_t)(g->n ? g->n : 1));
    char *skip = calloc((size_t)(g->n ? g->n : 1), 1);
    int ok = ng && map && skip;
    if (ok && g->nparams) {
        ng->params = malloc(sizeof *ng->params * (size_t)g->nparams);
        ok = ng->params != NULL;
        if (ok) {
            memcpy(ng->params, g->params, sizeof *ng->params * (size_t)g->nparams);
            ng->nparams = ng->params_cap = g->nparams;
        }
    }
    if (ok) /* the new graph keeps the parameters g owns (an earlier split) */
        give_owned(ng, g);
    for (int q = 0; ok && q < nplans; q++) {
        for (int j = 0; j < plans[q].nchain; j++)
            skip[plans[q].chain[j]] = 1;
        skip[plans[q].pool] = 1;
    }
    for (int i = 0; ok && i < g->n; i++)
        map[i] = -1;
    for (int i = 0; ok && i < g->n; i++) {
        if (plan_of[i] >= 0) {
            const split_plan *p = &plans[plan_of[i]];
            int r = emit_groups(ng, g, p, map);
            map[p->pool] = r;
            ok = r >= 0;
        } else if (!skip[i]) {
            map[i] = copy_node(ng, &g->nodes[i], map);
            ok = map[i] >= 0;
        }
    }
    if (ok)
        remap_fields(ng, g, map);
    free(map);
    free(skip);
    if (!ok) {
        if (ng)
            give_owned(g, ng); /* g's parameters point into them */
        vxm_graph_free(ng);
        return NULL;
    }
    return ng;
}

static void fmt_bytes(char *out, size_t n, unsigned long long b)
{
    static const char *const unit[] = {"bytes", "KiB", "MiB", "GiB"};
    double v = (double)b;
    int u = 0;
    while (u < 3 && v >= 1024.0)
        v /= 1024.0, u++;
    snprintf(out, n, u ? "%.2f %s" : "%.0f %s", v, unit[u]);
}

static vxm_status check_sizes(vxm_context *ctx, const vxm_graph *g, unsigned long long max_bytes,
                              const char *subject)
{
    for (int i = 0; i < g->n; i++) {
        const vxm_node *n = &g->nodes[i];
        if (node_bytes(n) <= max_bytes)
            continue;
        char have[32], lim[32];
        fmt_bytes(have, sizeof have, node_bytes(n));
        fmt_bytes(lim, sizeof lim, max_bytes);
        return vxm_error(ctx, VXM_EUNSUPPORTED, subject,
                         "layer %s: its %dx%dx%dx%d %s output (%s) exceeds the device's largest buffer (%s) and "
                         "cannot be split into channel groups",
                         n->name, n->shape[0], n->shape[1], n->shape[2], n->channels, vxm_op_name(n->op), have, lim);
    }
    return VXM_OK;
}

vxm_status vxm_graph_split_wide(vxm_context *ctx, vxm_graph **gp, unsigned long long max_bytes, const char *subject)
{
    vxm_graph *g = *gp;
    if (max_bytes == 0 || g->param_grad)
        return VXM_OK;
    size_t nn = (size_t)(g->n ? g->n : 1);
    int *ncons = calloc(nn, sizeof *ncons), *cons = malloc(nn * sizeof *cons), *plan_of = malloc(nn * sizeof *plan_of);
    split_plan *plans = malloc(nn * sizeof *plans);
    if (!ncons || !cons || !plan_of || !plans) {
        free(ncons);
        free(cons);
        free(plan_of);
        free(plans);
        return vxm_error(ctx, VXM_ENOMEM, subject, "out of memory");
    }
    for (int i = 0; i < g->n; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int s = g->nodes[i].in[k];
            ncons[s]++;
            cons[s] = i;
        }
    int nplans = 0;
    for (int i = 0; i < g->n; i++) {
        plan_of[i] = -1;
        if (g->nodes[i].op == VXM_OP_CONV && node_bytes(&g->nodes[i]) > max_bytes &&
            plan_conv(g, ncons, cons, i, max_bytes, &plans[nplans]))
            plan_of[i] = nplans++;
    }
    vxm_status st = VXM_OK;
    vxm_graph *ng = g;
    if (nplans) {
        ng = rewrite(g, plans, nplans, plan_of);
        if (!ng)
            st = vxm_error(ctx, VXM_ENOMEM, subject, "out of memory splitting the graph");
    }
    if (!st)
        st = check_sizes(ctx, ng, max_bytes, subject);
    if (ng && ng != g) {
        if (st) { /* *g stays as it was, with its parameters' host copies */
            give_owned(g, ng);
            vxm_graph_free(ng);
        } else {
            vxm_graph_free(g);
            *gp = ng;
        }
    }
    free(ncons);
    free(cons);
    free(plan_of);
    free(plans);
    return st;
}

vxm_status vxm_weights_extend(vxm_backend *be, const vxm_graph *g, const vxm_weights *base, vxm_weights **out)
{
    *out = NULL;
    if (base->n > g->nparams || base->be != be)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "weights do not belong to this graph and device");
    if (base->n == g->nparams) {
        *out = (vxm_weights *)base;
        return VXM_OK;
    }
    vxm_weights *w = calloc(1, sizeof *w);
    if (w)
        w->buf = calloc((size_t)g->nparams, sizeof *w->buf);
    if (!w || !w->buf) {
        free(w);
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of memory");
    }
    w->be = be;
    w->n = g->nparams;
    memcpy(w->buf, base->buf, sizeof *w->buf * (size_t)base->n);
    vxm_status st = VXM_OK;
    for (int i = base->n; i < g->nparams && !st; i++) {
        st = be->ops->buffer_alloc(be, g->params[i].numel, &w->buf[i]);
        if (!st)
            st = be->ops->buffer_write(be, w->buf[i], g->params[i].host, g->params[i].numel);
    }
    if (st) {
        vxm_weights_extend_free(w, base);
        return st;
    }
    *out = w;
    return VXM_OK;
}

void vxm_weights_extend_free(vxm_weights *w, const vxm_weights *base)
{
    if (!w || w == base)
        return;
    for (int i = 0; i < base->n && i < w->n; i++)
        w->buf[i] = NULL; /* borrowed */
    vxm_weights_free(w);
}
