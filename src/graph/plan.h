/* Internal: a static memory plan for repeated runs of one graph (every training step, every refinement iteration),
 * as TFLite's arena planner and XLA's buffer assignment do.  The first run allocates as usual and records, for
 * each node output, its size and the steps at which it is allocated and released (in-place ops continue their
 * input's record).  Its end places every record at an offset of one arena buffer -- greedy by size, records whose
 * lifetimes overlap never share bytes -- and makes one view (backend buffer_view) per record.  Later runs take each
 * node's output from its view: no allocation, no pool search, no page faulting of fresh memory per step, and the
 * device holds the arena (about the graph's peak of live tensors) instead of a pool of every size it ever used.
 *
 * The executor's schedule (graph, deterministic flag, which inputs are bound device tensors) decides the record;
 * a run with another schedule records again.  A later run that deviates from the record (it cannot while the
 * executor is unchanged) fails with VXM_EINVAL instead of sharing memory wrongly.  VXM_PLAN=0 turns plans off. */
#ifndef VXM_GRAPH_PLAN_H
#define VXM_GRAPH_PLAN_H

#include "graph/graph.h"

typedef struct vxm_plan vxm_plan;

/* An empty plan (records on its first run); NULL when out of memory. */
vxm_plan *vxm_plan_new(void);
/* Frees the plan, its views and its arena (on the backend that made them). */
void vxm_plan_free(vxm_plan *p);
/* Bytes of the plan's arena (0 while recording). */
size_t vxm_plan_arena_bytes(const vxm_plan *p);

/* ---- the executor's side (graph/executor.c) ---------------------------------------------------------------- */
/* Starts a run of graph g with the given schedule: replays when the plan was recorded for the same schedule, else
 * (re)starts recording.  `options`: the executor's run options that change what it allocates and when (its
 * deterministic flag, vxm_exec_release_io); `borrowed` marks the nodes whose tensors the run does not allocate (g->n
 * entries). */
vxm_status vxm_plan_begin(vxm_plan *p, vxm_backend *be, const vxm_graph *g, int options, const char *borrowed);
/* Replay: the view holding node i's output (numel floats), or NULL when node i is not planned (then it allocates
 * as usual); a node the record did not allocate, or with another size, is a deviation (*st set). */
vxm_buffer *vxm_plan_take(vxm_plan *p, int i, size_t numel, vxm_status *st);
/* Recording: node i allocated numel floats at step i; node i took over node src's buffer (in-place op). */
void vxm_plan_record_alloc(vxm_plan *p, int i, size_t numel);
void vxm_plan_record_alias(vxm_plan *p, int i, int src);
/* Node j's buffer was released at step `step` (recording: its record ends; replaying: checked against it). */
void vxm_plan_release(vxm_plan *p, int j, int step);
/* VXM_EINVAL (with its message) once a replay deviated from the record at a release, else VXM_OK. */
vxm_status vxm_plan_status(vxm_plan *p);
/* Ends a run: a complete recording (every node stepped in order, no error) becomes the plan; a failed or partial one
 * is dropped.  No arena (out of device memory, over the largest allocation) only leaves the plan unused. */
void vxm_plan_end(vxm_plan *p, int complete);

#endif
