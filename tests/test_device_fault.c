/* Device failures mid-run (issue 11): with VXM_OPENCL_FAULT the N-th device allocation fails as an OpenCL
 * out-of-memory (CL_MEM_OBJECT_ALLOCATION_FAILURE) or the N-th kernel launch as a lost device
 * (CL_OUT_OF_RESOURCES).  On every OpenCL device, for failures spread over a 2-D training step (forward, backward,
 * optimiser):
 *   - the step returns the error (VXM_ENOMEM / VXM_EDEVICE) with one line naming the device and the layer;
 *   - everything the step allocated is freed (the backend's live-buffer count returns to the trainer's own);
 *   - the backend stays usable: the next step gives bitwise the losses and gradients of a clean run.
 * Steps run unplanned (VXM_PLAN=0: every node allocates) and replayed from a memory plan (graph/plan.h; launch
 * faults, as a replayed step allocates nothing of its own); a failed arena allocation leaves the step correct and
 * unplanned. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_opencl/cl_internal.h"
#include "test_backends.h"
#include "test_trainer_grads.h"
#include "test_util.h"
#include "graph/plan.h"
#include "train/train.h"
#include "train/trainer_internal.h"

enum { NY = 12, NX = 16, NVOX = NY * NX };
static const int shape[3] = {1, NY, NX};

static vxm_trainer *make_trainer(vxm_context *ctx, vxm_backend *be)
{
    vxm_train_options o;
    vxm_train_options_default(&o);
    static const int enc[] = {4, 8}, dec[] = {8, 8, 4};
    memcpy(o.enc, enc, sizeof enc);
    o.n_enc = 2;
    memcpy(o.dec, dec, sizeof dec);
    o.n_dec = 3;
    o.int_steps = 3;
    o.seed = 5;
    vxm_trainer *t = NULL;
    if (vxm_trainer_create(ctx, be, &o, 2, shape, 1, 1, &t))
        return NULL;
    return t;
}

/* The losses and gradients of one step with the fault counters running; *nalloc / *nlaunch: what it did. */
static vxm_status counted_step(vxm_trainer *t, vxm_cl *cl, const vxm_train_sample *s, vxm_train_losses *L,
                               float *g, size_t n, long *nalloc, long *nlaunch)
{
    long a0 = cl->nalloc, l0 = cl->nlaunch;
    cl->fault_alloc = cl->fault_launch = -1; /* count without failing */
    vxm_status st = tg_grads(t, s, 1, L, g, n);
    *nalloc = cl->nalloc - a0;
    *nlaunch = cl->nlaunch - l0;
    return st;
}

enum { UNPLANNED, REPLAYED, ARENA };
static const char *mode_name[] = {"unplanned", "replayed", "arena"};

/* A fault at allocation / launch `at` of a step on a fresh trainer:
 *   UNPLANNED: VXM_PLAN=0, every node allocates; REPLAYED: one clean step records the memory plan, the fault hits
 *   the next (replayed) step; ARENA: the fault is the recording step's last allocation, the plan's arena, which is
 *   no error of the step: it succeeds and later steps run unplanned. */
static void fault_case(vxm_context *ctx, const vxm_opencl_device_info *d, const vxm_train_sample *s, int mode,
                       int kind, long at, long total, const vxm_train_losses *L0, const float *g0, float *g1, size_t n)
{
    char name[220];
    vxm_backend *be = NULL;
    vxm_trainer *t = NULL;
    if (vxm_backend_opencl_create(ctx, d->platform, d->device, &be) || !(t = make_trainer(ctx, be))) {
        tu_report(0, "device fault: set-up", "%s", vxm_context_error(ctx));
        vxm_backend_close(be);
        return;
    }
    vxm_cl *cl = vxm_cl_of(be);
    vxm_train_losses L1;
    long na, nl;
    vxm_status fs = mode == REPLAYED ? counted_step(t, cl, s, &L1, g1, n, &na, &nl) : VXM_OK;
    long live = cl->live_buffers;
    if (kind)
        cl->fault_launch = cl->nlaunch + at;
    else
        cl->fault_alloc = cl->nalloc + at;
    vxm_context_clear_error(ctx);
    if (!fs)
        fs = tg_grads(t, s, 1, &L1, g1, n);
    const char *msg = vxm_context_error(ctx);
    if (mode == ARENA) {
        snprintf(name, sizeof name, "device fault %s: no arena for the memory plan: the step succeeds unplanned",
                 d->device_name);
        tu_report(!fs && vxm_plan_arena_bytes(t->plan) == 0 && L1.total == L0->total &&
                      !memcmp(g0, g1, n * sizeof(float)) && cl->live_buffers == live,
                  name, "status %d '%s', arena %zu bytes, %ld live buffers (%ld before)", (int)fs, msg,
                  vxm_plan_arena_bytes(t->plan), cl->live_buffers, live);
    } else {
        snprintf(name, sizeof name, "device fault %s, %s step: %s %ld of %ld fails with one line naming the layer",
                 d->device_name, mode_name[mode], kind ? "launch" : "allocation", at, total);
        tu_report(fs == (kind ? VXM_EDEVICE : VXM_ENOMEM) && strncmp(msg, be->spec, strlen(be->spec)) == 0 &&
                      strstr(msg, ": layer ") &&
                      strstr(msg, kind ? "CL_OUT_OF_RESOURCES" : "CL_MEM_OBJECT_ALLOCATION_FAILURE") &&
                      !strchr(msg, '\n'),
                  name, "status %d, '%s'", (int)fs, msg);
        snprintf(name, sizeof name, "device fault %s, %s step: %s %ld: everything the step allocated is freed",
                 d->device_name, mode_name[mode], kind ? "launch" : "allocation", at);
        tu_report(cl->live_buffers == live, name, "%ld live buffers, %ld before the step", cl->live_buffers, live);
    }
    vxm_context_clear_error(ctx);
    fs = tg_grads(t, s, 1, &L1, g1, n);
    snprintf(name, sizeof name, "device fault %s, %s step: %s %ld: the next step equals a clean one", d->device_name,
             mode_name[mode], kind ? "launch" : "allocation", at);
    tu_report(!fs && L1.total == L0->total && !memcmp(g0, g1, n * sizeof(float)), name, "%s",
              fs ? vxm_context_error(ctx) : "different losses or gradients");
    vxm_trainer_free(t);
    vxm_backend_close(be);
}

/* One device: clean steps for reference (unplanned, recording, replayed), then faults at several positions. */
static void check_device(vxm_context *ctx, const vxm_opencl_device_info *d, const float *mov, const float *fix)
{
    vxm_train_sample s;
    memset(&s, 0, sizeof s);
    s.moving = mov;
    s.fixed = fix;
    unsetenv("VXM_OPENCL_FAULT");
    vxm_backend *be = NULL;
    if (vxm_backend_opencl_create(ctx, d->platform, d->device, &be)) {
        tu_report(0, "device fault: open device", "%s", vxm_context_error(ctx));
        return;
    }
    vxm_trainer *t = make_trainer(ctx, be);
    if (!t) {
        tu_report(0, "device fault: trainer", "%s", vxm_context_error(ctx));
        vxm_backend_close(be);
        return;
    }
    size_t n = tg_num_grads(t);
    float *g0 = malloc(n * sizeof(float)), *g1 = malloc(n * sizeof(float));
    vxm_train_losses L0, L1;
    vxm_cl *cl = vxm_cl_of(be);
    long nalloc[3] = {0, 0, 0}, nlaunch[3] = {0, 0, 0}; /* per mode: unplanned, replayed, recording */
    setenv("VXM_PLAN", "0", 1);
    vxm_status st = counted_step(t, cl, &s, &L0, g0, n, &nalloc[UNPLANNED], &nlaunch[UNPLANNED]);
    unsetenv("VXM_PLAN");
    if (!st)
        st = counted_step(t, cl, &s, &L1, g1, n, &nalloc[ARENA], &nlaunch[ARENA]);
    if (!st)
        st = counted_step(t, cl, &s, &L1, g1, n, &nalloc[REPLAYED], &nlaunch[REPLAYED]);
    vxm_trainer_free(t);
    vxm_backend_close(be);
    char name[200];
    snprintf(name, sizeof name,
             "device fault %s: reference steps (%ld / %ld / %ld allocations, %ld launches: unplanned / recording / "
             "replayed)",
             d->device_name, nalloc[UNPLANNED], nalloc[ARENA], nalloc[REPLAYED], nlaunch[REPLAYED]);
    int ok = !st && nalloc[UNPLANNED] > 4 && nlaunch[UNPLANNED] > 4 && nlaunch[REPLAYED] == nlaunch[UNPLANNED] &&
             nalloc[REPLAYED] < nalloc[UNPLANNED] && !memcmp(g0, g1, n * sizeof(float)) && L0.total == L1.total;
    tu_report(ok, name, "%s", st ? vxm_context_error(ctx) : "too few operations, or planned steps differ");
    if (ok) {
        /* faults at 1/4, 1/2 and the last of the step's allocations and launches */
        setenv("VXM_PLAN", "0", 1);
        for (int kind = 0; kind < 2; kind++)
            for (int q = 1; q <= 3; q++) {
                long total = kind ? nlaunch[UNPLANNED] : nalloc[UNPLANNED], at = q == 3 ? total : total * q / 4;
                fault_case(ctx, d, &s, UNPLANNED, kind, at, total, &L0, g0, g1, n);
            }
        unsetenv("VXM_PLAN");
        for (int q = 1; q <= 3; q++) { /* a replayed step allocates (almost) nothing itself: launch faults */
            long total = nlaunch[REPLAYED], at = q == 3 ? total : total * q / 4;
            fault_case(ctx, d, &s, REPLAYED, 1, at, total, &L0, g0, g1, n);
        }
        fault_case(ctx, d, &s, ARENA, 0, nalloc[ARENA], nalloc[ARENA], &L0, g0, g1, n);
    }
    free(g0);
    free(g1);
}

int main(void)
{
    vxm_context *ctx = vxm_context_create();
    vxm_opencl_device_info info[TB_MAX];
    int nd = vxm_opencl_enumerate(ctx, info, TB_MAX);
    if (nd == 0)
        tu_skip("device fault", "no OpenCL device");
    static float mov[NVOX], fix[NVOX];
    unsigned long long rs = 3;
    for (int v = 0; v < NVOX; v++) {
        mov[v] = (float)tu_urand(&rs, 0, 1);
        fix[v] = (float)tu_urand(&rs, 0, 1);
    }
    for (int i = 0; i < nd; i++)
        check_device(ctx, &info[i], mov, fix);
    vxm_context_free(ctx);
    return tu_exit_code();
}
