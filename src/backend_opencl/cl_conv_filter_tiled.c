/* Tiled filter gradient on the OpenCL backend (cl_conv_filter_tiled.h; kernel cl/tiled/conv_filter_tiled.cl).
 * Same chunks and partial layout as the direct kernel of cl_conv_backward.c, so the partials and their final sum
 * are unchanged, bit for bit. */
#include <stdio.h>

#include <string.h>

#include "backend_opencl/cl_conv_filter_tiled.h"
#include "backend_opencl/cl_loop_budget.h"
#include "backend_opencl/cl_tile.h"
#include "backend_opencl/cl_variant.h"
#include "core/context.h"

static const char kernel_name[] = "vxm_conv_filter_tiled";

/* Whether the built kernel runs at the tile's work-group size within the device's local memory. */
static int kernel_fits(const vxm_cl *cl, cl_kernel k, size_t wg)
{
    size_t kwg = 0;
    cl_ulong lm = 0;
    if (clGetKernelWorkGroupInfo(k, cl->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg, &kwg, NULL) != CL_SUCCESS ||
        kwg < wg)
        return 0;
    if (cl->local_mem && clGetKernelWorkGroupInfo(k, cl->device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof lm, &lm, NULL) ==
                             CL_SUCCESS && lm > cl->local_mem)
        return 0;
    return 1;
}

/* Voxels of a chunk per launch: the whole chunk, or on llvmpipe as many steps of tk voxels as the loop budget
 * (cl_loop_budget.h) allows.  Iterations of a work-item, as the kernel's loops run them: per step 1 (step loop) +
 * KQ (1 + XR) (patch rows) + ceil(tk tn / wg) (dy) + tk (1 + 2 rm + rn + rm rn) (products); once 2 (rm + rm rn)
 * (load / store of the results) + XR (row set-up).  0 when not even one step fits. */
static unsigned launch_voxels(const vxm_cl *cl, const vxm_cl_tile *t, unsigned chunk)
{
    unsigned budget = vxm_cl_loop_budget(cl);
    if (!budget)
        return chunk;
    unsigned wg = (unsigned)((t->tm / t->rm) * (t->tn / t->rn));
    unsigned lw = wg < (unsigned)t->tm ? wg : (unsigned)t->tm;
    unsigned xr = ((unsigned)t->tm + lw - 1) / lw, kg = wg / lw, kq = ((unsigned)t->tk + kg - 1) / kg;
    unsigned tk = (unsigned)t->tk, rm = (unsigned)t->rm, rn = (unsigned)t->rn;
    unsigned per_step = 1 + kq * (1 + xr) + (tk * (unsigned)t->tn + wg - 1) / wg + tk * (1 + 2 * rm + rn + rm * rn);
    unsigned once = 2 * (rm + rm * rn) + xr;
    if (budget <= once + per_step)
        return 0;
    unsigned steps = (budget - once) / per_step;
    return steps * tk < chunk ? steps * tk : chunk;
}

vxm_status vxm_cl_conv_filter_tiled(vxm_backend *be, const vxm_cl_tile *t, const vxm_tensor *x, const vxm_tensor *dy,
                                    const vxm_conv_params *p, cl_mem part, unsigned chunk, unsigned nparts,
                                    int *done)
{
    vxm_cl *cl = vxm_cl_of(be);
    *done = 0;
    if (t->tm <= 0 || !vxm_cl_tile_fits(cl, t))
        return VXM_OK;
    size_t wg = (size_t)(t->tm / t->rm) * (size_t)(t->tn / t->rn);
    unsigned sub = launch_voxels(cl, t, chunk);
    if (!sub)
        return VXM_OK;
    char defines[96];
    vxm_cl_tile_defines(t, defines, sizeof defines);
    cl_kernel k;
    vxm_status st = vxm_cl_variant_kernel(be, "conv_filter_tiled.cl", defines, kernel_name, &k);
    if (st || !kernel_fits(cl, k, wg)) {
        /* As the forward tiles (cl_conv_tiled.c): a driver that cannot build or run this tile still trains, on the
         * direct kernel for this Cout class from now on, and says so once. */
        char name[64];
        vxm_cl_tile_format(t, name, sizeof name);
        vxm_note(be->ctx, "warning: filter tile %s cannot run on %s (%.150s); using the direct kernel", name,
                 be->spec, st ? vxm_context_error(be->ctx) : "work-group or local-memory limit");
        vxm_context_clear_error(be->ctx);
        memset(&cl->tile[VXM_TILE_FILTER][vxm_cl_tile_class(dy->channels)], 0, sizeof(vxm_cl_tile));
        return VXM_OK;
    }

    int cin = x->channels, cout = dy->channels;
    unsigned nrows = (unsigned)(p->ksize[0] * p->ksize[1] * p->ksize[2] * cin);
    unsigned nw = nrows * (unsigned)cout; /* the caller checked nw * nparts < 2^32 */
    int nmb = (int)((nrows + (unsigned)t->tm - 1) / (unsigned)t->tm), nnb = (cout + t->tn - 1) / t->tn;
    size_t global[2] = {(size_t)nmb * (size_t)nnb * wg, nparts}, local[2] = {wg, 1};
    for (unsigned qbeg = 0; qbeg < chunk; qbeg += sub) {
        vxm_cl_args a;
        vxm_cl_args_begin_kernel(&a, k);
        vxm_cl_filter_args(&a, x, dy, p, part, chunk);
        vxm_cl_arg_uint(&a, nrows);
        vxm_cl_arg_int(&a, nnb);
        vxm_cl_arg_uint(&a, nw);
        vxm_cl_arg_uint(&a, qbeg);
        vxm_cl_arg_uint(&a, chunk - qbeg < sub ? chunk - qbeg : sub);
        vxm_cl_arg_int(&a, qbeg == 0);
        if ((st = vxm_cl_args_done_named(be, &a, kernel_name)) ||
            (st = vxm_cl_launch_nd(be, k, kernel_name, 2, global, local)))
            return st;
    }
    *done = 1;
    return VXM_OK;
}
