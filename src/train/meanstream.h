/* Internal: neurite's MeanStream layer (training doc §4.1, §9 item 10) as graph nodes, batch size 1.
 *
 *   n' = n + 1,  alpha = 1 / min(n', cap),  M' = (1 - alpha) M + alpha x,  out = min(1, n'/cap) M'
 *
 * M is a non-trainable input (no gradient through it), so d out / d x = min(1, n'/cap) alpha, exactly neurite's.
 * The caller keeps n and M: vxm_meanstream_prepare sets the step's factors in the forward AND backward scale nodes,
 * vxm_meanstream_commit stores M' and n' after the step.
 *
 * Two modes (doc §0, §4.1, §11 item 1): STREAMING, the documented algorithm (the paper, eager TF, the Colab
 * tutorial; the default), and GRAPH, what train_template.py computes under TF graph mode, where the bare
 * `assign` ops never run (checked in TF 2.15: count and mean stay 0 after fit): n = 0 and M = 0 forever,
 * out = min(1, 1/cap) x. */
#ifndef VXM_TRAIN_MEANSTREAM_H
#define VXM_TRAIN_MEANSTREAM_H

#include "graph/graph.h"

typedef enum vxm_meanstream_mode {
    VXM_MEANSTREAM_STREAMING = 0, /* the documented streaming mean (eager TF, the paper; the default) */
    VXM_MEANSTREAM_GRAPH = 1      /* train_template.py under TF graph mode: n and M stay 0 */
} vxm_meanstream_mode;

typedef struct vxm_meanstream {
    vxm_meanstream_mode mode;
    int cap;
    long n;          /* samples seen */
    float *M;        /* running mean (numel floats, zeros at start; owned) */
    size_t numel;
    int state;       /* INPUT node carrying M */
    int keep, take, update, out;  /* SCALE(M, 1-alpha), SCALE(x, alpha), ADD, SCALE(., min(1, n'/cap)) */
    int take_back, out_back;      /* their backward scale nodes (-1 until vxm_meanstream_bind_backward) */
} vxm_meanstream;

/* Appends a graph input (index `index`) with the shape of node `like`; -1 when out of memory.  Also the zero
 * target of template.c's MeanStream loss. */
int vxm_graph_add_input_like(vxm_graph *g, int like, int index, const char *name);
/* Appends the nodes on x (any shape); M enters as graph input `state_index`.  Returns the output node or -1 (out
 * of memory). */
int vxm_meanstream_add(vxm_graph *g, vxm_meanstream *ms, vxm_meanstream_mode mode, int cap, int x, int state_index);
/* After vxm_graph_build_backward: locates the backward scale nodes whose factors change per step. */
void vxm_meanstream_bind_backward(vxm_meanstream *ms, const vxm_graph *g);
/* Factors for the next sample (n' = n + 1) into the graph's nodes. */
void vxm_meanstream_prepare(const vxm_meanstream *ms, vxm_graph *g);
/* After a run of the graph: streaming mode reads M' and advances n; graph mode keeps n and M (0 unless loaded). */
vxm_status vxm_meanstream_commit(vxm_meanstream *ms, vxm_exec *ex);
void vxm_meanstream_free(vxm_meanstream *ms);

#endif
