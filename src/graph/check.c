/* vxm_register_check: the same graph on two backends in lockstep, compared node by node.  Each backend
 * consumes its own previous outputs, so the report shows how differences build up through the network. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

static void compare(const float *a, const float *ref, size_t n, vxm_layer_diff *d)
{
    double m = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)a[i] - (double)ref[i]);
        if (!(diff <= m)) /* also catches NaN */
            m = isnan(diff) ? INFINITY : diff;
        if (fabs((double)ref[i]) > r)
            r = fabs((double)ref[i]);
    }
    d->max_abs = m;
    d->ref_max_abs = r;
    d->rel = r > 0 ? m / r : m;
}

vxm_status vxm_register_check(vxm_context *ctx, vxm_backend *be, vxm_backend *ref, const vxm_model *m,
                              const vxm_volume *moving, const vxm_volume *fixed, vxm_layer_diff **diffs,
                              int *ndiffs)
{
    *diffs = NULL;
    *ndiffs = 0;
    if (moving->ndim != fixed->ndim || memcmp(moving->shape, fixed->shape, sizeof moving->shape))
        return vxm_error(ctx, VXM_ESHAPE, "moving image", "shape differs from the fixed image");
    vxm_graph *g;
    vxm_status st = vxm_model_build_graph(ctx, m, moving->ndim, moving->shape, &g);
    if (st)
        return st;
    vxm_exec *ea = NULL, *eb = NULL;
    int nd = 0;
    float *ha = NULL, *hb = NULL;
    vxm_layer_diff *d = calloc((size_t)g->n, sizeof *d);
    size_t maxn = 0;
    for (int i = 0; i < g->n; i++) {
        size_t n = (size_t)g->nodes[i].shape[0] * g->nodes[i].shape[1] * g->nodes[i].shape[2] * g->nodes[i].channels;
        if (n > maxn)
            maxn = n;
    }
    ha = malloc(maxn * sizeof(float));
    hb = malloc(maxn * sizeof(float));
    if (!d || !ha || !hb) {
        st = vxm_error(ctx, VXM_ENOMEM, "check", "out of memory");
        goto done;
    }
    if ((st = vxm_exec_begin(be, g, moving->data, fixed->data, 1, 0, &ea)) ||
        (st = vxm_exec_begin(ref, g, moving->data, fixed->data, 1, 0, &eb)))
        goto done;
    nd = 0;
    for (int i = 0; i < g->n; i++) {
        const vxm_node *n = &g->nodes[i];
        size_t cnt = (size_t)n->shape[0] * n->shape[1] * n->shape[2] * n->channels;
        if ((st = vxm_exec_step(ea, i)) || (st = vxm_exec_step(eb, i)))
            goto done;
        if (n->op == VXM_OP_PARAM || n->op == VXM_OP_NOISE)
            continue; /* weights are compared through the layers they feed */
        if ((st = vxm_exec_read(ea, i, ha)) || (st = vxm_exec_read(eb, i, hb)))
            goto done;
        int j = nd++;
        snprintf(d[j].name, sizeof d[j].name, "%s", n->name);
        snprintf(d[j].op, sizeof d[j].op, "%s", vxm_op_name(n->op));
        memcpy(d[j].shape, n->shape, sizeof d[j].shape);
        d[j].channels = n->channels;
        compare(ha, hb, cnt, &d[j]);
    }
done:
    vxm_exec_end(ea);
    vxm_exec_end(eb);
    free(ha);
    free(hb);
    if (st == VXM_OK) {
        *diffs = d;
        *ndiffs = nd;
    } else {
        free(d);
    }
    vxm_graph_free(g);
    return st;
}
