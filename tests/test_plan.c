/* The executor's memory plan (graph/plan.h) on a small hand-made graph, on every backend:
 *  1. a recorded run, then replayed runs: the same output bits as an unplanned run, every node but the first
 *     output from the arena, and an arena below the sum of the tensors (records with disjoint lifetimes share);
 *  2. a graph changed behind the plan's back (same node count, other sizes): the replay refuses with VXM_EINVAL
 *     and one line naming the node, instead of placing tensors where the record had others;
 *  3. a consumer rewired (`up` then lives longer than recorded, the input shorter): refused the same way at the
 *     first release that differs;
 *  4. another schedule (the input bound as a device tensor): recorded again, same output, no error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/plan.h"
#include "test_backends.h"
#include "test_util.h"

enum { NY = 8, NX = 8 };

/* in -> up = upsample x1 (a copy) -> a = [up, in] -> b = [a, in] -> out = [b, in] (output) */
static vxm_graph *make_graph(int nx)
{
    vxm_graph *g = vxm_graph_new(2);
    const int shape[3] = {1, NY, nx};
    int in = vxm_graph_add_input(g, "in", 0, shape, 1);
    int up = vxm_graph_add_op(g, VXM_OP_UPSAMPLE, "up", in, -1);
    if (up >= 0)
        g->nodes[up].p.pool.f[0] = g->nodes[up].p.pool.f[1] = g->nodes[up].p.pool.f[2] = 1;
    int a = vxm_graph_add_op(g, VXM_OP_CONCAT, "a", up, in);
    int b = vxm_graph_add_op(g, VXM_OP_CONCAT, "b", a, in);
    int out = vxm_graph_add_op(g, VXM_OP_CONCAT, "out", b, in);
    if (out < 0) {
        vxm_graph_free(g);
        return NULL;
    }
    g->nodes[a].channels = 2;
    g->nodes[b].channels = 3;
    g->nodes[out].channels = 4;
    g->nodes[out].flags |= VXM_NODE_OUTPUT;
    return g;
}

/* One run of g with the plan (or none); the output into y (4 * NY * nx floats). */
static vxm_status run(vxm_backend *be, const vxm_graph *g, vxm_plan *plan, const float *x, const vxm_tensor *bound,
                      float *y)
{
    const float *in[1] = {x};
    vxm_exec *ex = NULL;
    vxm_status st = vxm_exec_begin_with(be, g, NULL, in, 1, 1, 0, &ex);
    if (!st && bound)
        st = vxm_exec_bind_input(ex, 0, bound);
    if (!st && plan)
        st = vxm_exec_set_plan(ex, plan);
    if (!st)
        st = vxm_exec_run_all(ex);
    if (!st)
        st = vxm_exec_read(ex, g->n - 1, y);
    vxm_exec_end(ex);
    return st;
}

static void check_backend(vxm_context *ctx, vxm_backend *be)
{
    char name[160];
    float x[NY * (NX + 1)], y0[4 * NY * (NX + 1)], y1[4 * NY * (NX + 1)];
    unsigned long long rs = 7;
    for (int i = 0; i < NY * (NX + 1); i++)
        x[i] = (float)tu_urand(&rs, -1, 1);
    size_t ny = 4 * NY * NX;
    vxm_graph *g = make_graph(NX);
    vxm_plan *plan = vxm_plan_new();
    if (!g || !plan) {
        tu_report(0, "plan: set-up", "out of memory");
        vxm_graph_free(g);
        vxm_plan_free(plan);
        return;
    }
    /* 1. record, replay */
    vxm_status st = run(be, g, NULL, x, NULL, y0);
    int same = 1;
    size_t in_use = be->mem_in_use;
    for (int r = 0; r < 3 && !st; r++) {
        st = run(be, g, plan, x, NULL, y1);
        same &= !st && !memcmp(y0, y1, ny * sizeof(float));
    }
    size_t arena = vxm_plan_arena_bytes(plan), sum = (size_t)NY * NX * (1 + 1 + 2 + 3 + 4) * sizeof(float);
    snprintf(name, sizeof name, "plan on %s: recorded and replayed runs give the unplanned output", be->spec);
    tu_report(!st && same, name, "%s", st ? vxm_context_error(ctx) : "outputs differ");
    snprintf(name, sizeof name, "plan on %s: one arena, smaller than all tensors together", be->spec);
    tu_report(arena > 0 && arena < sum && be->mem_in_use == in_use + arena, name,
              "arena %zu bytes, tensors %zu, in use %zu -> %zu", arena, sum, in_use, be->mem_in_use);

    /* 2. other sizes behind the plan's back (same graph object, same node count) */
    vxm_graph *g9 = make_graph(NX + 1);
    if (g9) {
        vxm_node *tmp = g->nodes;
        g->nodes = g9->nodes; /* the plan keys on the graph object: this one now has other shapes */
        vxm_context_clear_error(ctx);
        st = run(be, g, plan, x, NULL, y1);
        const char *msg = vxm_context_error(ctx);
        snprintf(name, sizeof name, "plan on %s: a graph with other sizes is refused in one line", be->spec);
        tu_report(st == VXM_EINVAL && strstr(msg, "memory plan: node in allocates otherwise") && !strchr(msg, '\n'),
                  name, "status %d, '%s'", (int)st, msg);
        g->nodes = tmp;
        vxm_graph_free(g9);
    }
    /* 3. `out` reads `up` instead of the input (same channels): the input is released at step 3, not 4 */
    st = run(be, g, plan, x, NULL, y1); /* the original graph replays cleanly again */
    vxm_node *out = &g->nodes[g->n - 1];
    int was = out->in[1];
    out->in[1] = 1; /* up */
    vxm_context_clear_error(ctx);
    vxm_status dev = st ? st : run(be, g, plan, x, NULL, y1);
    const char *msg = vxm_context_error(ctx);
    snprintf(name, sizeof name, "plan on %s: tensors living otherwise than recorded are refused in one line", be->spec);
    tu_report(!st && dev == VXM_EINVAL && strstr(msg, "memory plan: node in releases its output earlier") &&
                  !strchr(msg, '\n'),
              name, "status %d, '%s'", (int)dev, msg);
    out->in[1] = was;

    /* 4. another schedule: the input bound on the device */
    vxm_tensor t = {{0}, 0, NULL};
    const int shape[3] = {1, NY, NX};
    st = vxm_tensor_alloc(be, shape, 1, &t);
    if (!st)
        st = vxm_tensor_upload(be, &t, x);
    same = 1;
    for (int r = 0; r < 2 && !st; r++) {
        st = run(be, g, plan, x, &t, y1);
        same &= !st && !memcmp(y0, y1, ny * sizeof(float));
    }
    snprintf(name, sizeof name, "plan on %s: a bound input records again, same output", be->spec);
    tu_report(!st && same && vxm_plan_arena_bytes(plan) > 0, name, "%s",
              st ? vxm_context_error(ctx) : "outputs differ or no plan");
    vxm_tensor_release(be, &t);
    vxm_plan_free(plan);
    vxm_graph_free(g);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    tb_list l;
    tb_open_all(ctx, &l);
    for (int i = 0; i < l.n; i++)
        check_backend(ctx, l.be[i]);
    tb_close_all(&l);
    vxm_context_free(ctx);
    return tu_exit_code();
}
