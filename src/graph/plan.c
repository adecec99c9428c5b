/* Static memory plan for repeated runs of one graph (graph/plan.h). */
#include "graph/plan.h"

#include "core/context.h"

#include <stdlib.h>
#include <string.h>

typedef struct plan_rec {
    size_t numel, off; /* floats */
    int start, end;    /* allocated before step `start` runs, released after step `end` (-1: not yet) */
} plan_rec;

enum { PLAN_OFF, PLAN_RECORD, PLAN_REPLAY };

struct vxm_plan {
    int mode;
    int unusable; /* recorded, but no arena could be made for this schedule: runs go unplanned */
    /* the schedule the record belongs to */
    vxm_backend *be;
    const vxm_graph *g;
    int n, options;
    char *borrowed;
    /* the record */
    int *rec_of; /* per node: its output's record, or -1 */
    plan_rec *rec;
    int nrec, cap;
    /* the plan */
    vxm_buffer *arena;
    vxm_buffer **view; /* per record */
    size_t arena_floats;
    vxm_status deviation;
};

vxm_plan *vxm_plan_new(void)
{
    return calloc(1, sizeof(vxm_plan));
}

static void drop_plan(vxm_plan *p)
{
    for (int k = 0; p->view && k < p->nrec; k++)
        if (p->view[k])
            p->be->ops->buffer_free(p->be, p->view[k]);
    free(p->view);
    p->view = NULL;
    if (p->arena)
        p->be->ops->buffer_free(p->be, p->arena);
    p->arena = NULL;
    p->arena_floats = 0;
    p->nrec = 0;
    p->unusable = 0;
}

void vxm_plan_free(vxm_plan *p)
{
    if (!p)
        return;
    drop_plan(p);
    free(p->borrowed);
    free(p->rec_of);
    free(p->rec);
    free(p);
}

size_t vxm_plan_arena_bytes(const vxm_plan *p)
{
    return p ? p->arena_floats * sizeof(float) : 0;
}

vxm_status vxm_plan_begin(vxm_plan *p, vxm_backend *be, const vxm_graph *g, int options, const char *borrowed)
{
    const char *env = getenv("VXM_PLAN");
    p->deviation = VXM_OK;
    if (env && strcmp(env, "0") == 0) {
        p->mode = PLAN_OFF;
        return VXM_OK;
    }
    int same = p->be == be && p->g == g && p->n == g->n && p->options == options && p->borrowed &&
               memcmp(p->borrowed, borrowed, (size_t)g->n) == 0;
    if (same && (p->arena || p->unusable)) {
        p->mode = p->arena ? PLAN_REPLAY : PLAN_OFF;
        return VXM_OK;
    }
    if (p->be)
        drop_plan(p);
    free(p->borrowed);
    free(p->rec_of);
    p->borrowed = malloc((size_t)g->n);
    p->rec_of = malloc(sizeof(int) * (size_t)g->n);
    if (!p->borrowed || !p->rec_of) {
        p->mode = PLAN_OFF;
        p->be = NULL;
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of memory (memory plan)");
    }
    memcpy(p->borrowed, borrowed, (size_t)g->n);
    for (int i = 0; i < g->n; i++)
        p->rec_of[i] = -1;
    p->be = be;
    p->g = g;
    p->n = g->n;
    p->options = options;
    p->mode = PLAN_RECORD;
    return VXM_OK;
}

static void deviate(vxm_plan *p, const char *what, int i)
{
    if (!p->deviation)
        p->deviation = vxm_error(p->be->ctx, VXM_EINVAL, p->be->spec,
                                 "memory plan: node %s %s than when it was recorded", p->g->nodes[i].name, what);
}

vxm_buffer *vxm_plan_take(vxm_plan *p, int i, size_t numel, vxm_status *st)
{
    *st = VXM_OK;
    if (p->mode != PLAN_REPLAY)
        return NULL;
    int k = p->rec_of[i];
    if (k < 0 || p->rec[k].start != i || p->rec[k].numel != numel) {
        deviate(p, "allocates otherwise", i);
        *st = p->deviation;
        return NULL;
    }
    return p->view[k];
}

void vxm_plan_record_alloc(vxm_plan *p, int i, size_t numel)
{
    if (p->mode != PLAN_RECORD)
        return;
    if (p->nrec == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        plan_rec *grown = realloc(p->rec, sizeof *grown * (size_t)cap);
        if (!grown) { /* no plan this time; the run itself goes on */
            p->mode = PLAN_OFF;
            return;
        }
        p->rec = grown;
        p->cap = cap;
    }
    p->rec[p->nrec] = (plan_rec){numel, 0, i, -1};
    p->rec_of[i] = p->nrec++;
}

void vxm_plan_record_alias(vxm_plan *p, int i, int src)
{
    if (p->mode == PLAN_RECORD)
        p->rec_of[i] = p->rec_of[src];
    /* replaying, rec_of already says so (checked at the release) */
}

void vxm_plan_release(vxm_plan *p, int j, int step)
{
    int k = p->mode == PLAN_OFF ? -1 : p->rec_of[j];
    if (k < 0)
        return;
    if (p->mode == PLAN_RECORD)
        p->rec[k].end = step;
    else if (p->rec[k].end != step)
        deviate(p, step < p->rec[k].end ? "releases its output earlier" : "releases its output later", j);
}

vxm_status vxm_plan_status(vxm_plan *p)
{
    return p->deviation;
}

/* Greedy by size (TFLite's arena planner): the largest records first, each at the lowest aligned offset where it
 * shares no byte with a placed record whose lifetime overlaps its own.  Returns the arena size in floats. */
static size_t place(plan_rec *rec, int n, size_t align)
{
    int *order = malloc(sizeof(int) * (size_t)n), *placed = malloc(sizeof(int) * (size_t)n);
    if (!order || !placed) {
        free(order);
        free(placed);
        return 0;
    }
    for (int k = 0; k < n; k++)
        order[k] = k;
    for (int a = 1; a < n; a++) { /* insertion sort: size descending, then start ascending (deterministic) */
        int k = order[a], b = a - 1;
        while (b >= 0 && (rec[order[b]].numel < rec[k].numel ||
                          (rec[order[b]].numel == rec[k].numel && rec[order[b]].start > rec[k].start))) {
            order[b + 1] = order[b];
            b--;
        }
        order[b + 1] = k;
    }
    size_t total = 0;
    int nplaced = 0;
    for (int a = 0; a < n; a++) {
        plan_rec *r = &rec[order[a]];
        size_t size = (r->numel + align - 1) / align * align, off = 0;
        /* the placed records alive at the same time, by offset (placed[] is kept sorted by offset) */
        for (int b = 0; b < nplaced; b++) {
            const plan_rec *q = &rec[placed[b]];
            if (q->start > r->end || r->start > q->end)
                continue;
            size_t qsize = (q->numel + align - 1) / align * align;
            if (off + size <= q->off)
                break;
            if (q->off + qsize > off)
                off = q->off + qsize;
        }
        r->off = off;
        int b = nplaced++;
        while (b > 0 && rec[placed[b - 1]].off > off) {
            placed[b] = placed[b - 1];
            b--;
        }
        placed[b] = order[a];
        if (off + size > total)
            total = off + size;
    }
    free(order);
    free(placed);
    return total;
}

void vxm_plan_end(vxm_plan *p, int complete)
{
    if (p->mode != PLAN_RECORD)
        return;
    p->mode = PLAN_OFF;
    for (int k = 0; k < p->nrec; k++)
        complete &= p->rec[k].end >= p->rec[k].start;
    if (!complete || p->nrec == 0) { /* a failed or partial run: record again next time */
        p->be = NULL;
        p->nrec = 0;
        return;
    }
    vxm_backend *be = p->be;
    size_t align = be->view_align ? be->view_align : 1;
    size_t total = place(p->rec, p->nrec, align);
    p->unusable = 1; /* until the arena and every view exist */
    if (total == 0 || (be->max_alloc && (unsigned long long)total * sizeof(float) > be->max_alloc))
        return;
    p->view = calloc((size_t)p->nrec, sizeof *p->view);
    if (!p->view)
        return;
    /* out of device memory for the arena is no error of this run: the next runs allocate per node as before */
    char saved[sizeof be->ctx->err];
    memcpy(saved, be->ctx->err, sizeof saved);
    vxm_status saved_code = be->ctx->code;
    be->ops->pool_trim(be); /* the recorded step's buffers: replayed steps allocate none of them */
    vxm_status st = be->ops->buffer_alloc(be, total, &p->arena);
    for (int k = 0; k < p->nrec && !st; k++)
        st = be->ops->buffer_view(be, p->arena, p->rec[k].off, p->rec[k].numel, &p->view[k]);
    if (st) {
        drop_plan(p);
        p->unusable = 1;
        memcpy(be->ctx->err, saved, sizeof saved);
        be->ctx->code = saved_code;
        return;
    }
    p->arena_floats = total;
    p->unusable = 0;
}
