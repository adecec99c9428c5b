/* Fusion of single-consumer chains of an inference graph (graph/fuse.h; issues 10 and 12). */
#include "graph/fuse.h"

#include <stdlib.h>
#include <string.h>

/* Node i feeds exactly one input slot of one node and is no graph input or output: it may be folded into that
 * consumer. */
static int single_use(vxm_graph *g, const int *ncons, int i)
{
    int *f[VXM_GRAPH_IO_FIELDS];
    int nf = vxm_graph_io_fields(g, f);
    for (int k = 0; k < nf; k++)
        if (*f[k] == i)
            return 0;
    return ncons[i] == 1 && !(g->nodes[i].flags & VXM_NODE_OUTPUT);
}

/* The fused node standing for `last` (its place, name, shape and flags) with the given op and inputs. */
static vxm_node fused_node(const vxm_node *last, vxm_op op, const int *in, int n_in, const vxm_conv_params *conv,
                           const int f[3])
{
    vxm_node n = *last;
    n.op = op;
    memset(n.in, 0, sizeof n.in);
    memcpy(n.in, in, sizeof(int) * (size_t)n_in);
    n.n_in = n_in;
    memset(&n.p, 0, sizeof n.p);
    n.p.fused.conv = *conv;
    memcpy(n.p.fused.f, f, sizeof n.p.fused.f);
    return n;
}

/* Marks the fusable chains: rewrites their last node into the fused op and sets dead[] on the others.  Returns the
 * number of dead nodes. */
static int mark(vxm_graph *g, const int *ncons, const int *cons, char *dead)
{
    int ndead = 0;
    for (int i = 0; i < g->n; i++) {
        const vxm_node *c = &g->nodes[i];
        if (!single_use(g, ncons, i))
            continue;
        const vxm_node *next = &g->nodes[cons[i]];
        if (c->op == VXM_OP_CONV && c->n_in == 3 && next->op == VXM_OP_MAXPOOL && next->in[0] == i) {
            g->nodes[cons[i]] = fused_node(next, VXM_OP_CONV_POOL, c->in, 3, &c->p.conv, next->p.pool.f);
            dead[i] = 1;
            ndead++;
        } else if (c->op == VXM_OP_UPSAMPLE && next->op == VXM_OP_CONCAT && next->n_in == 2 && next->in[0] == i &&
                   single_use(g, ncons, cons[i])) {
            int k = cons[i], v = cons[k];
            const vxm_node *conv = &g->nodes[v];
            if (conv->op != VXM_OP_CONV || conv->n_in != 3 || conv->in[0] != k)
                continue;
            int in[4] = {c->in[0], next->in[1], conv->in[1], conv->in[2]};
            g->nodes[v] = fused_node(conv, VXM_OP_CONV_UPCAT, in, 4, &conv->p.conv, c->p.pool.f);
            dead[i] = dead[k] = 1;
            ndead += 2;
        }
    }
    return ndead;
}

/* Removes the dead nodes, renumbering the inputs and the graph's index fields. */
static void compact(vxm_graph *g, const char *dead, int *map)
{
    int j = 0;
    for (int i = 0; i < g->n; i++) {
        map[i] = dead[i] ? -1 : j;
        if (dead[i])
            continue;
        vxm_node n = g->nodes[i];
        for (int k = 0; k < n.n_in; k++)
            n.in[k] = map[n.in[k]]; /* a dead node's only consumer is the fused node, which no longer reads it */
        g->nodes[j++] = n;
    }
    int *f[VXM_GRAPH_IO_FIELDS];
    int nf = vxm_graph_io_fields(g, f);
    for (int k = 0; k < nf; k++)
        *f[k] = *f[k] >= 0 ? map[*f[k]] : -1;
    g->n = g->n_forward = j;
}

vxm_status vxm_graph_fuse(vxm_context *ctx, vxm_graph **gp)
{
    vxm_graph *g = *gp;
    const char *env = getenv("VXM_FUSE");
    if (g->param_grad || (env && strcmp(env, "0") == 0) || g->n == 0)
        return VXM_OK;
    size_t nn = (size_t)g->n;
    int *ncons = calloc(nn, sizeof *ncons), *cons = malloc(nn * sizeof *cons), *map = malloc(nn * sizeof *map);
    char *dead = calloc(nn, 1);
    vxm_status st = VXM_OK;
    if (!ncons || !cons || !map || !dead) {
        st = vxm_error(ctx, VXM_ENOMEM, "graph", "out of memory fusing the graph");
    } else {
        for (int i = 0; i < g->n; i++)
            for (int k = 0; k < g->nodes[i].n_in; k++) {
                ncons[g->nodes[i].in[k]]++;
                cons[g->nodes[i].in[k]] = i;
            }
        if (mark(g, ncons, cons, dead))
            compact(g, dead, map);
    }
    free(ncons);
    free(cons);
    free(map);
    free(dead);
    return st;
}
