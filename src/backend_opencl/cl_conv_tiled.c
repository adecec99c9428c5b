/* Host side of the tiled forward convolution (cl_conv_tiled.h; kernel cl/tiled/conv_tiled.cl). */
#include <stdio.h>
#include <string.h>

#include "backend_opencl/cl_conv_tiled.h"
#include "backend_opencl/cl_loop_budget.h"
#include "backend_opencl/cl_tile.h"
#include "backend_opencl/cl_variant.h"
#include "core/context.h"

static size_t tile_wg(const vxm_cl_tile *t)
{
    return (size_t)(t->tm / t->rm) * (size_t)(t->tn / t->rn);
}

/* This device cannot run tile t: use the direct kernel for t's Cout class from now on, and say so once. */
static void drop_tile(vxm_backend *be, const vxm_cl_tile *t, int cout, const char *why)
{
    vxm_cl *cl = vxm_cl_of(be);
    char name[64];
    vxm_cl_tile_format(t, name, sizeof name);
    vxm_note(be->ctx, "warning: conv tile %s cannot run on %s (%s); using the direct kernel", name, be->spec, why);
    memset(&cl->tile[VXM_TILE_CONV][vxm_cl_tile_class(cout)], 0, sizeof(vxm_cl_tile));
}

vxm_status vxm_cl_conv_tiled_kernel(vxm_backend *be, const vxm_cl_tile *t, int cout, int upcat, cl_kernel *out)
{
    vxm_cl *cl = vxm_cl_of(be);
    char defs[112], why[200];
    *out = NULL;
    vxm_cl_tile_defines(t, defs, sizeof defs);
    if (upcat)
        strncat(defs, " -DUPCAT=1", sizeof defs - strlen(defs) - 1);
    cl_kernel k;
    if (vxm_cl_variant_kernel(be, "conv_tiled.cl", defs, "vxm_conv_tiled", &k) != VXM_OK) {
        /* A driver whose compiler rejects the variant (local arrays, register blocks) still runs the model. */
        snprintf(why, sizeof why, "cannot build: %.150s", vxm_context_error(be->ctx));
        vxm_context_clear_error(be->ctx);
        drop_tile(be, t, cout, why);
        return VXM_OK;
    }
    size_t kwg = 0;
    cl_ulong lmem = 0;
    if (clGetKernelWorkGroupInfo(k, cl->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kwg, &kwg, NULL) != CL_SUCCESS ||
        clGetKernelWorkGroupInfo(k, cl->device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof lmem, &lmem, NULL) != CL_SUCCESS)
        return vxm_cl_fail(be, CL_INVALID_KERNEL, 0, "clGetKernelWorkGroupInfo(vxm_conv_tiled)");
    if (kwg < tile_wg(t) || (cl->local_mem && lmem > cl->local_mem)) {
        snprintf(why, sizeof why, "kernel work-group limit %zu for %zu work-items, %llu bytes of local memory",
                 kwg, tile_wg(t), (unsigned long long)lmem);
        drop_tile(be, t, cout, why);
        return VXM_OK;
    }
    *out = k;
    return VXM_OK;
}

/* Reduction indices (taps x channels) per launch: unbounded, or on llvmpipe the loop budget (cl_loop_budget.h)
 * over the loop iterations of one step of TK (outer loop, the A and B fills, TK x (1 + 2 RM + RN + RM RN) in the
 * register block), less the set-up and epilogue loops. */
static size_t k_per_launch(const vxm_cl *cl, const vxm_cl_tile *t)
{
    unsigned budget = vxm_cl_loop_budget(cl);
    if (!budget)
        return (size_t)-1;
    size_t wg = tile_wg(t), tm = (size_t)t->tm, tn = (size_t)t->tn, tk = (size_t)t->tk;
    size_t rm = (size_t)t->rm, rn = (size_t)t->rn;
    size_t na = wg % tk == 0 ? (tm + wg / tk - 1) / (wg / tk) : (tk * tm + wg - 1) / wg;
    size_t nb = (tk * tn + wg - 1) / wg;
    size_t step = 1 + na + nb + tk * (1 + 2 * rm + rn + rm * rn);
    size_t fixed = na + 2 * (rm + rm * rn);
    size_t steps = budget > fixed + step ? (budget - fixed) / step : 1;
    return steps * tk;
}

vxm_status vxm_cl_conv_tiled(vxm_backend *be, cl_kernel k, const vxm_cl_tile *t, const vxm_tensor *x,
                             const vxm_cl_upcat *up, cl_mem wp, int coutp, const vxm_conv_params *p, int crange,
                             int nsplit, vxm_tensor *y, int *done)
{
    vxm_cl *cl = vxm_cl_of(be);
    int cin = x->channels + (up ? up->a->channels : 0), cout = y->channels;
    size_t ktaps = (size_t)p->ksize[0] * (size_t)p->ksize[1] * (size_t)p->ksize[2];
    size_t nvox = vxm_cl_nvox(y), wg = tile_wg(t), kper = k_per_launch(cl, t);
    size_t global[2] = {(nvox + (size_t)t->tm - 1) / (size_t)t->tm * wg, (size_t)(coutp / t->tn)};
    size_t local[2] = {wg, 1};
    *done = 0;
    if (nvox == 0) {
        *done = 1;
        return VXM_OK;
    }
    for (int r = 0; r < nsplit; r++) {
        int cbeg = r * crange, clen = r < nsplit - 1 ? crange : cin - cbeg;
        size_t kn = ktaps * (size_t)clen;
        for (size_t kb = 0; kb == 0 || kb < kn; kb += kper) {
            size_t ke = kn - kb > kper ? kb + kper : kn;
            vxm_cl_args a;
            vxm_cl_args_begin_kernel(&a, k);
            vxm_cl_conv_args(&a, x, cin, wp, y, coutp, p);
            vxm_cl_arg_uint(&a, (unsigned)nvox);
            vxm_cl_arg_ulong(&a, (unsigned long long)(ktaps * (size_t)cin * (size_t)coutp));
            vxm_cl_arg_int(&a, cbeg);
            vxm_cl_arg_int(&a, clen);
            vxm_cl_arg_uint(&a, (unsigned)kb);
            vxm_cl_arg_uint(&a, (unsigned)ke);
            vxm_cl_arg_int(&a, r == 0 && kb == 0);
            vxm_cl_arg_int(&a, r == nsplit - 1 && ke == kn);
            if (up)
                vxm_cl_upcat_args(&a, up, x);
            vxm_status st = vxm_cl_args_done_named(be, &a, "vxm_conv_tiled");
            if (st)
                return st;
            cl_int err = clEnqueueNDRangeKernel(cl->queue, k, 2, NULL, global, local, 0, NULL, NULL);
            if (err == CL_SUCCESS)
                continue;
            if (r == 0 && kb == 0 && (err == CL_INVALID_WORK_GROUP_SIZE || err == CL_OUT_OF_RESOURCES)) {
                drop_tile(be, t, cout, vxm_cl_error_name(err));
                return VXM_OK; /* nothing was enqueued: the caller runs the direct kernel */
            }
            return vxm_cl_fail(be, err, 0, "clEnqueueNDRangeKernel(vxm_conv_tiled)");
        }
    }
    *done = 1;
    return VXM_OK;
}
