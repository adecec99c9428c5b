/* Device failures mid-run (issue 11): with VXM_OPENCL_FAULT the N-th device allocation fails as an OpenCL
 * out-of-memory (CL_MEM_OBJECT_ALLOCATION_FAILURE) or the N-th kernel launch as a lost device
 * (CL_OUT_OF_RESOURCES).  On every OpenCL device, for failures spread over a 2-D training step (forward, backward,
 * optimiser):
 *   - the step returns the error (VXM_ENOMEM / VXM_EDEVICE) with one line naming the device and the layer;
 *   - everything the step allocated is freed (the backend's live-buffer count returns to the trainer's own);
 *   - the backend stays usable: the next step gives bitwise the losses and gradients of a clean run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_opencl/cl_internal.h"
#include "test_backends.h"
#include "test_trainer_grads.h"
#include "test_util.h"
#include "train/train.h"

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

/* One device: a clean step for reference, then faults at several positions. */
static void check_device(vxm_context *ctx, const vxm_opencl_device_info *d, const float *mov, const float *fix)
{
    vxm_train_sample s;
    memset(&s, 0, sizeof s);
    s.moving = mov;
    s.fixed = fix;
    /* reference run, counting allocations and launches */
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
    long a0 = cl->nalloc, l0 = cl->nlaunch;
    cl->fault_alloc = cl->fault_launch = -1; /* count without failing */
    vxm_status st = tg_grads(t, &s, 1, &L0, g0, n);
    long nalloc = cl->nalloc - a0, nlaunch = cl->nlaunch - l0;
    vxm_trainer_free(t);
    vxm_backend_close(be);
    char name[200];
    snprintf(name, sizeof name, "device fault %s: reference step (%ld allocations, %ld launches)", d->device_name,
             nalloc, nlaunch);
    tu_report(!st && nalloc > 4 && nlaunch > 4, name, "%s", st ? vxm_context_error(ctx) : "too few operations");
    if (st || nalloc <= 4 || nlaunch <= 4) {
        free(g0);
        free(g1);
        return;
    }
    /* faults at 1/4, 1/2 and the last of the step's allocations and launches */
    for (int kind = 0; kind < 2; kind++)
        for (int q = 1; q <= 3; q++) {
            long total = kind ? nlaunch : nalloc, at = q == 3 ? total : total * q / 4;
            if ((st = vxm_backend_opencl_create(ctx, d->platform, d->device, &be)) != VXM_OK)
                break;
            cl = vxm_cl_of(be);
            if (!(t = make_trainer(ctx, be))) {
                vxm_backend_close(be);
                st = VXM_EINVAL;
                break;
            }
            long live = cl->live_buffers;
            if (kind)
                cl->fault_launch = cl->nlaunch + at;
            else
                cl->fault_alloc = cl->nalloc + at;
            vxm_context_clear_error(ctx);
            vxm_status fs = tg_grads(t, &s, 1, &L1, g1, n);
            const char *msg = vxm_context_error(ctx);
            snprintf(name, sizeof name, "device fault %s: %s %ld of %ld fails with one line naming the layer",
                     d->device_name, kind ? "launch" : "allocation", at, total);
            tu_report(fs == (kind ? VXM_EDEVICE : VXM_ENOMEM) && strncmp(msg, be->spec, strlen(be->spec)) == 0 &&
                          strstr(msg, ": layer ") &&
                          strstr(msg, kind ? "CL_OUT_OF_RESOURCES" : "CL_MEM_OBJECT_ALLOCATION_FAILURE") &&
                          !strchr(msg, '\n'),
                      name, "status %d, '%s'", (int)fs, msg);
            snprintf(name, sizeof name, "device fault %s: %s %ld: everything the step allocated is freed",
                     d->device_name, kind ? "launch" : "allocation", at);
            tu_report(cl->live_buffers == live, name, "%ld live buffers, %ld before the step", cl->live_buffers,
                      live);
            vxm_context_clear_error(ctx);
            fs = tg_grads(t, &s, 1, &L1, g1, n);
            snprintf(name, sizeof name, "device fault %s: %s %ld: the next step equals a clean one",
                     d->device_name, kind ? "launch" : "allocation", at);
            tu_report(!fs && L1.total == L0.total && !memcmp(g0, g1, n * sizeof(float)), name, "%s",
                      fs ? vxm_context_error(ctx) : "different losses or gradients");
            vxm_trainer_free(t);
            vxm_backend_close(be);
        }
    if (st)
        tu_report(0, "device fault: set-up", "%s", vxm_context_error(ctx));
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
