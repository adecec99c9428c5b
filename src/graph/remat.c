/* Recomputation of cheap forward tensors in the backward pass (gradient checkpointing, Chen et al. 2016; what
 * torch.utils.checkpoint does by hand): a forward tensor that the backward pass needs only late -- the U-Net's
 * first full-resolution convolution, the upsample + concat inputs of the decoder convolutions -- is released after
 * its last forward consumer and computed again, by a copy of its node, right before its first backward consumer.
 *
 * Only ops whose recomputation is cheap against the memory it frees qualify: nearest upsampling and channel
 * concatenation (copies) and convolutions with at most VXM_REMAT_CONV_MACS multiply-adds per output value (the
 * first layer: 3x3x3 taps over the 2 input images, 54).  A copy's inputs must be alive at its place anyway (or
 * be such copies themselves), so recomputation never extends another tensor's life.  The backends are
 * deterministic, so the copy's output is bitwise the forward's and the gradients do not change by one bit
 * (tests/test_remat.c).  Published architecture at 160x192x224: the step's buffer peak falls from 1549 to
 * 1056 MiB for one more 12 GFLOP convolution and 0.2 GB of copies (issue 10: training memory <= 0.5x PyTorch's).
 * VXM_RECOMPUTE=0 turns it off. */
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"

#define VXM_REMAT_CONV_MACS 64

typedef struct remat {
    vxm_graph *g;
    int nf;          /* forward nodes */
    int *last_use;   /* per node of the original graph: its last consumer (or g->n when kept) */
    int *first_back; /* per forward node: its first consumer in the backward pass, or -1 */
    int *at;         /* per forward node: the position its copy goes before, or -1 (no copy) */
    char *state;     /* 0 unknown, 1 being decided, 2 copied, 3 not copied */
} remat;

static int is_kept(const vxm_graph *g, int i)
{
    int *f[VXM_GRAPH_IO_FIELDS];
    int nf = vxm_graph_io_fields((vxm_graph *)g, f);
    for (int k = 0; k < nf; k++)
        if (*f[k] == i)
            return 1;
    return (g->nodes[i].flags & (VXM_NODE_OUTPUT | VXM_NODE_LOSS)) || g->nodes[i].op == VXM_OP_PARAM;
}

static int cheap_op(const vxm_graph *g, const vxm_node *n)
{
    if (n->op == VXM_OP_UPSAMPLE || n->op == VXM_OP_CONCAT)
        return 1;
    if (n->op != VXM_OP_CONV || n->n_in != 3)
        return 0;
    const int *k = n->p.conv.ksize;
    long macs = (long)k[0] * k[1] * k[2] * g->nodes[n->in[0]].channels;
    return macs <= VXM_REMAT_CONV_MACS;
}

/* Can forward node i be computed again right before position `pos`?  Yes when its op is cheap and each input is a
 * parameter, still alive at pos in the original schedule, or itself recomputable there (then copied too). */
static int recomputable(remat *r, int i, int pos)
{
    if (r->state[i] == 2)
        return r->at[i] <= pos; /* already copied, at or before pos */
    if (r->state[i] != 0)
        return 0; /* not recomputable, or a cycle (impossible in a DAG, guarded anyway) */
    const vxm_node *n = &r->g->nodes[i];
    if (is_kept(r->g, i) || !cheap_op(r->g, n)) {
        r->state[i] = 3;
        return 0;
    }
    r->state[i] = 1;
    for (int k = 0; k < n->n_in; k++) {
        int u = n->in[k];
        if (r->g->nodes[u].op == VXM_OP_PARAM || r->last_use[u] >= pos)
            continue;
        if (u >= r->nf || !recomputable(r, u, pos)) {
            r->state[i] = 0; /* may still qualify for a later position */
            return 0;
        }
    }
    r->state[i] = 2;
    r->at[i] = pos;
    return 1;
}

/* Inserts the copies and renumbers every later node, the backward inputs that read the copied tensors, and the
 * parameter gradients.  Forward nodes keep their indices. */
static vxm_status insert_copies(vxm_context *ctx, remat *r, int ncopies)
{
    vxm_graph *g = r->g;
    int n_old = g->n, n_new = n_old + ncopies;
    vxm_node *nodes = malloc(sizeof *nodes * (size_t)n_new);
    int *map = malloc(sizeof *map * (size_t)n_old);   /* old index -> new index */
    int *copy = malloc(sizeof *copy * (size_t)r->nf); /* forward node -> its copy's new index, or -1 */
    if (!nodes || !map || !copy) {
        free(nodes);
        free(map);
        free(copy);
        return vxm_error(ctx, VXM_ENOMEM, "backward", "out of memory planning recomputation");
    }
    for (int i = 0; i < r->nf; i++)
        copy[i] = -1;
    int j = 0;
    for (int i = 0; i < n_old; i++) {
        /* the copies due before node i, inputs before their users (ascending forward order is topological) */
        for (int f = 0; f < r->nf && i >= r->nf; f++) {
            if (r->at[f] != i)
                continue;
            vxm_node c = g->nodes[f];
            size_t len = strlen(c.name);
            strcpy(c.name + (len < VXM_NODE_NAME_MAX - 11 ? len : VXM_NODE_NAME_MAX - 11), "_recompute");
            for (int k = 0; k < c.n_in; k++)
                if (c.in[k] < r->nf && copy[c.in[k]] >= 0)
                    c.in[k] = copy[c.in[k]];
            c.flags &= ~(VXM_NODE_OUTPUT | VXM_NODE_LOSS);
            copy[f] = j;
            nodes[j++] = c;
        }
        map[i] = j;
        vxm_node n = g->nodes[i];
        for (int k = 0; k < n.n_in; k++) {
            int u = n.in[k];
            n.in[k] = i >= r->nf && u < r->nf && copy[u] >= 0 ? copy[u] : map[u];
        }
        nodes[j++] = n;
    }
    free(g->nodes);
    g->nodes = nodes;
    g->n = g->cap = n_new;
    for (int k = 0; k < g->nparams; k++)
        if (g->param_grad[k] >= 0)
            g->param_grad[k] = map[g->param_grad[k]];
    int *f[VXM_GRAPH_IO_FIELDS];
    int nio = vxm_graph_io_fields(g, f);
    for (int k = 0; k < nio; k++)
        *f[k] = *f[k] >= 0 ? map[*f[k]] : -1;
    free(map);
    free(copy);
    return VXM_OK;
}

vxm_status vxm_graph_rematerialise(vxm_context *ctx, vxm_graph *g)
{
    const char *env = getenv("VXM_RECOMPUTE");
    if (!g->param_grad || g->n == g->n_forward || (env && strcmp(env, "0") == 0))
        return VXM_OK;
    size_t n = (size_t)g->n, nf = (size_t)g->n_forward;
    remat r = {g, g->n_forward, malloc(n * sizeof(int)), malloc(nf * sizeof(int)), malloc(nf * sizeof(int)),
               malloc(nf ? nf : 1)};
    vxm_status st = VXM_OK;
    if (!r.last_use || !r.first_back || !r.at || !r.state) {
        st = vxm_error(ctx, VXM_ENOMEM, "backward", "out of memory planning recomputation");
        goto done;
    }
    /* A tensor is worth copying when it has a forward consumer (else nothing frees it earlier) and a backward one
     * later; its copy goes right before that first backward consumer.  Without a forward consumer a node is
     * marked "not copied" (state 3) up front; such a node is never the input of a forward candidate either. */
    memset(r.state, 3, nf);
    for (int i = 0; i < g->n; i++) {
        r.last_use[i] = is_kept(g, i) ? g->n : i;
        if (i < r.nf)
            r.first_back[i] = r.at[i] = -1;
    }
    for (int i = 0; i < g->n; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int u = g->nodes[i].in[k];
            if (r.last_use[u] < i)
                r.last_use[u] = i;
            if (i < r.nf)
                r.state[u] = 0;
            else if (u < r.nf && r.first_back[u] < 0)
                r.first_back[u] = i;
        }
    int ncopies = 0;
    for (int i = 0; i < r.nf; i++)
        if (r.first_back[i] >= 0 && r.state[i] == 0)
            recomputable(&r, i, r.first_back[i]);
    for (int i = 0; i < r.nf; i++)
        ncopies += r.state[i] == 2;
    if (ncopies)
        st = insert_copies(ctx, &r, ncopies);
done:
    free(r.last_use);
    free(r.first_back);
    free(r.at);
    free(r.state);
    return st;
}
