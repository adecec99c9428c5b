/* MeanStream as graph nodes (meanstream.h; training doc §4.1, neurite layers.py l.1915-1975). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/meanstream.h"

/* A SCALE (factor s) or ADD node through the graph's shared constructor. */
static int add_op(vxm_graph *g, vxm_op op, const char *name, int a, int b, float s)
{
    int i = vxm_graph_add_op(g, op, name, a, op == VXM_OP_ADD ? b : -1);
    if (i >= 0 && op == VXM_OP_SCALE)
        g->nodes[i].p.scale.s = s;
    return i;
}

int vxm_graph_add_input_like(vxm_graph *g, int like, int index, const char *name)
{
    return like < 0 ? -1 : vxm_graph_add_input(g, name, index, g->nodes[like].shape, g->nodes[like].channels);
}

int vxm_meanstream_add(vxm_graph *g, vxm_meanstream *ms, vxm_meanstream_mode mode, int cap, int x, int state_index)
{
    memset(ms, 0, sizeof *ms);
    ms->mode = mode;
    ms->cap = cap;
    ms->take_back = ms->out_back = -1;
    ms->numel = vxm_node_numel(&g->nodes[x]);
    if (!(ms->M = calloc(ms->numel ? ms->numel : 1, sizeof(float))))
        return -1;
    ms->state = vxm_graph_add_input_like(g, x, state_index, "mean_stream_state");
    ms->keep = ms->state < 0 ? -1 : add_op(g, VXM_OP_SCALE, "mean_stream_keep", ms->state, -1, 0.0f);
    ms->take = add_op(g, VXM_OP_SCALE, "mean_stream_take", x, -1, 1.0f);
    ms->update = ms->keep < 0 ? -1 : add_op(g, VXM_OP_ADD, "mean_stream_update", ms->keep, ms->take, 0.0f);
    if (ms->update >= 0)
        g->nodes[ms->update].flags |= VXM_NODE_OUTPUT; /* M' is read back after the run */
    ms->out = add_op(g, VXM_OP_SCALE, "mean_stream", ms->update, -1, 1.0f);
    return ms->out;
}

void vxm_meanstream_bind_backward(vxm_meanstream *ms, const vxm_graph *g)
{
    /* backward.c names the gradient of SCALE(y) "<y's name>_scale_back" and gives it y's shape */
    char take[VXM_NODE_NAME_MAX + 16], out[VXM_NODE_NAME_MAX + 16];
    snprintf(take, sizeof take, "%.70s_scale_back", g->nodes[g->nodes[ms->take].in[0]].name);
    snprintf(out, sizeof out, "%.70s_scale_back", g->nodes[ms->update].name);
    for (int i = g->n_forward; i < g->n; i++) {
        if (g->nodes[i].op != VXM_OP_SCALE)
            continue;
        if (!strcmp(g->nodes[i].name, take))
            ms->take_back = i;
        else if (!strcmp(g->nodes[i].name, out))
            ms->out_back = i;
    }
}

void vxm_meanstream_prepare(const vxm_meanstream *ms, vxm_graph *g)
{
    long n1 = ms->n + 1;
    double alpha = 1.0 / (double)(n1 < ms->cap ? n1 : ms->cap);
    double c = (double)n1 / ms->cap < 1.0 ? (double)n1 / ms->cap : 1.0;
    g->nodes[ms->keep].p.scale.s = (float)(1.0 - alpha);
    g->nodes[ms->take].p.scale.s = (float)alpha;
    g->nodes[ms->out].p.scale.s = (float)c;
    if (ms->take_back >= 0)
        g->nodes[ms->take_back].p.scale.s = (float)alpha;
    if (ms->out_back >= 0)
        g->nodes[ms->out_back].p.scale.s = (float)c;
}

vxm_status vxm_meanstream_commit(vxm_meanstream *ms, vxm_exec *ex)
{
    if (ms->mode != VXM_MEANSTREAM_STREAMING)
        return VXM_OK;
    vxm_status st = vxm_exec_read(ex, ms->update, ms->M);
    if (!st)
        ms->n++;
    return st;
}

void vxm_meanstream_free(vxm_meanstream *ms)
{
    free(ms->M);
    ms->M = NULL;
}
