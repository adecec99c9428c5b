/* Backward of the linear spatial transform (training doc §2.7; kernels in cl/spatial_transform_backward.cl).
 *
 * ddisp: one kernel, one work-item per output voxel.
 * dimg: a deterministic scatter-add without float atomics, over output voxels bucketed by their base cell
 * (the lo corner): count per cell (integer atomics, exact) -> exclusive prefix sum (cl/01_reduce.cl) -> fill the cell
 * lists -> sort each list by output voxel -> the cells scatter their lists in 8 colours (index parities; cells of one
 * colour share no image voxel, so no races), in a fixed order.  The sum order of every dimg element -- colour, output
 * voxel, corner -- is independent of the scheduling.
 * Scratch: A = list (one uint per output voxel) + scan chunk totals, B = per-cell count / fill cursor,
 * C = per-cell start (ncell + 1). */
#include <math.h>

#include "backend_opencl/cl_internal.h"

static size_t nvox_of(const vxm_tensor *t)
{
    return (size_t)t->shape[0] * (size_t)t->shape[1] * (size_t)t->shape[2];
}

static int same_shape(const vxm_tensor *a, const vxm_tensor *b)
{
    return a->shape[0] == b->shape[0] && a->shape[1] == b->shape[1] && a->shape[2] == b->shape[2];
}

static vxm_status bad(vxm_backend *be, const char *what)
{
    return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "spatial_transform_backward: %s", what);
}

static vxm_status checks(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp, const vxm_tensor *dy,
                         int ndim, const vxm_tensor *dimg, const vxm_tensor *ddisp)
{
    const char *op = "spatial_transform_backward";
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, img, op)) || (st = vxm_cl_check_tensor(be, disp, op)) ||
        (st = vxm_cl_check_tensor(be, dy, op)) || (dimg && (st = vxm_cl_check_tensor(be, dimg, op))) ||
        (ddisp && (st = vxm_cl_check_tensor(be, ddisp, op))))
        return st;
    if (ndim < 1 || ndim > 3)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: ndim %d not in 1..3", op, ndim);
    if (disp->channels != ndim)
        return bad(be, "displacement channels differ from ndim");
    if (!same_shape(dy, disp) || dy->channels != img->channels)
        return bad(be, "dy must have the displacement's grid and the image's channels");
    if (dimg && (!same_shape(dimg, img) || dimg->channels != img->channels))
        return bad(be, "dimg must have the image's shape");
    if (ddisp && (!same_shape(ddisp, disp) || ddisp->channels != ndim))
        return bad(be, "ddisp must have the displacement's shape");
    const vxm_tensor *outs[2] = {dimg, ddisp}, *ins[3] = {img, disp, dy};
    for (int o = 0; o < 2; o++)
        for (int i = 0; i < 3 && outs[o]; i++)
            if (outs[o]->buf == ins[i]->buf)
                return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: an output aliases an input", op);
    if (dimg && ddisp && dimg->buf == ddisp->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: dimg and ddisp alias", op);
    return VXM_OK;
}

/* Image shape and channels, output grid rows, ndim: the grid description of the disp and img kernels. */
static void grid_args(vxm_cl_args *a, const vxm_tensor *img, const vxm_tensor *disp, int ndim)
{
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(a, img->shape[d]);
    vxm_cl_arg_int(a, img->channels);
    vxm_cl_arg_int(a, disp->shape[1]);
    vxm_cl_arg_int(a, disp->shape[2]);
    vxm_cl_arg_int(a, ndim);
}

static vxm_status backward_disp(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp, const vxm_tensor *dy,
                                int ndim, int use_fill, vxm_tensor *ddisp)
{
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_ST_BWD_DISP);
    vxm_cl_arg_mem(&a, img->buf->mem);
    vxm_cl_arg_mem(&a, disp->buf->mem);
    vxm_cl_arg_mem(&a, dy->buf->mem);
    vxm_cl_arg_mem(&a, ddisp->buf->mem);
    grid_args(&a, img, disp, ndim);
    vxm_cl_arg_int(&a, use_fill != 0);
    vxm_cl_arg_uint(&a, (unsigned)nvox_of(disp));
    vxm_status st = vxm_cl_args_done(be, &a, VXM_K_ST_BWD_DISP);
    return st ? st : vxm_cl_launch1(be, VXM_K_ST_BWD_DISP, nvox_of(disp));
}

/* The arguments every keyed kernel starts its grid description with: image shape, output grid rows, ndim, fill. */
static void key_args(vxm_cl_args *a, const vxm_tensor *img, const vxm_tensor *disp, int ndim, int use_fill)
{
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(a, img->shape[d]);
    vxm_cl_arg_int(a, disp->shape[1]);
    vxm_cl_arg_int(a, disp->shape[2]);
    vxm_cl_arg_int(a, ndim);
    vxm_cl_arg_int(a, use_fill != 0);
    vxm_cl_arg_uint(a, (unsigned)nvox_of(disp));
}

static vxm_status go(vxm_backend *be, vxm_cl_args *a, vxm_cl_kid kid, size_t n)
{
    vxm_status st = vxm_cl_args_done(be, a, kid);
    return st ? st : vxm_cl_launch1(be, kid, n);
}

static vxm_status backward_img(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp, const vxm_tensor *dy,
                               int ndim, int use_fill, vxm_tensor *dimg)
{
    size_t ncell = nvox_of(img), m = nvox_of(disp);
    if (ncell >= 0x7fffffffu || m >= 0xffffffffu) /* cell keys are ints in the kernels */
        return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "spatial_transform_backward: too many voxels");
    /* Scan partition: any chunking gives the same (integer) result; sqrt balances the two serial phases. */
    size_t chunk = (size_t)ceil(sqrt((double)ncell));
    if (chunk < 64)
        chunk = 64;
    size_t nchunks = (ncell + chunk - 1) / chunk;
    cl_mem A, B, C;
    vxm_status st;
    if ((st = vxm_cl_scratch(be, VXM_SCRATCH_TRAIN_A, m + nchunks + 1, &A)) ||
        (st = vxm_cl_scratch(be, VXM_SCRATCH_TRAIN_B, ncell, &B)) ||
        (st = vxm_cl_scratch(be, VXM_SCRATCH_TRAIN_C, ncell + 1, &C)))
        return st;
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_FILL); /* counts = 0 (0.0f is all zero bits) */
    vxm_cl_arg_mem(&a, B);
    vxm_cl_arg_float(&a, 0.0f);
    vxm_cl_arg_ulong(&a, ncell);
    if ((st = go(be, &a, VXM_K_FILL, ncell)))
        return st;
    vxm_cl_args_begin(&a, be, VXM_K_ST_BWD_COUNT);
    vxm_cl_arg_mem(&a, disp->buf->mem);
    vxm_cl_arg_mem(&a, B);
    key_args(&a, img, disp, ndim, use_fill);
    if ((st = go(be, &a, VXM_K_ST_BWD_COUNT, m)))
        return st;
    vxm_cl_args_begin(&a, be, VXM_K_SCAN_CHUNKS);
    vxm_cl_arg_mem(&a, B);
    vxm_cl_arg_mem(&a, A);
    vxm_cl_arg_uint(&a, (unsigned)m);
    vxm_cl_arg_uint(&a, (unsigned)ncell);
    vxm_cl_arg_uint(&a, (unsigned)chunk);
    vxm_cl_arg_uint(&a, (unsigned)nchunks);
    if ((st = go(be, &a, VXM_K_SCAN_CHUNKS, nchunks)))
        return st;
    vxm_cl_args_begin(&a, be, VXM_K_SCAN_TOP);
    vxm_cl_arg_mem(&a, A);
    vxm_cl_arg_uint(&a, (unsigned)m);
    vxm_cl_arg_uint(&a, (unsigned)nchunks);
    if ((st = go(be, &a, VXM_K_SCAN_TOP, 1)))
        return st;
    vxm_cl_args_begin(&a, be, VXM_K_SCAN_APPLY);
    vxm_cl_arg_mem(&a, B);
    vxm_cl_arg_mem(&a, A);
    vxm_cl_arg_uint(&a, (unsigned)m);
    vxm_cl_arg_mem(&a, C);
    vxm_cl_arg_uint(&a, (unsigned)ncell);
    vxm_cl_arg_uint(&a, (unsigned)chunk);
    vxm_cl_arg_uint(&a, (unsigned)nchunks);
    if ((st = go(be, &a, VXM_K_SCAN_APPLY, nchunks)))
        return st;
    vxm_cl_args_begin(&a, be, VXM_K_ST_BWD_SLOTS);
    vxm_cl_arg_mem(&a, disp->buf->mem);
    vxm_cl_arg_mem(&a, B);
    vxm_cl_arg_mem(&a, C);
    vxm_cl_arg_mem(&a, A);
    key_args(&a, img, disp, ndim, use_fill);
    if ((st = go(be, &a, VXM_K_ST_BWD_SLOTS, m)))
        return st;
    vxm_cl_args_begin(&a, be, VXM_K_ST_BWD_SORT);
    vxm_cl_arg_mem(&a, C);
    vxm_cl_arg_mem(&a, A);
    vxm_cl_arg_uint(&a, (unsigned)ncell);
    if ((st = go(be, &a, VXM_K_ST_BWD_SORT, ncell)))
        return st;
    vxm_cl_args_begin(&a, be, VXM_K_FILL); /* dimg = 0, then the 8 colours add in a fixed order */
    vxm_cl_arg_mem(&a, dimg->buf->mem);
    vxm_cl_arg_float(&a, 0.0f);
    vxm_cl_arg_ulong(&a, vxm_tensor_numel(img));
    if ((st = go(be, &a, VXM_K_FILL, vxm_tensor_numel(img))))
        return st;
    for (int colour = 0; colour < 8; colour++) {
        int par[3] = {colour >> 2, (colour >> 1) & 1, colour & 1}, cnt[3];
        for (int d = 0; d < 3; d++)
            cnt[d] = (img->shape[d] - par[d] + 1) / 2;
        size_t ncol = (size_t)cnt[0] * (size_t)cnt[1] * (size_t)cnt[2];
        if (ncol == 0)
            continue;
        vxm_cl_args_begin(&a, be, VXM_K_ST_BWD_IMG);
        vxm_cl_arg_mem(&a, disp->buf->mem);
        vxm_cl_arg_mem(&a, dy->buf->mem);
        vxm_cl_arg_mem(&a, C);
        vxm_cl_arg_mem(&a, A);
        vxm_cl_arg_mem(&a, dimg->buf->mem);
        grid_args(&a, img, disp, ndim);
        for (int d = 0; d < 3; d++)
            vxm_cl_arg_int(&a, par[d]);
        vxm_cl_arg_int(&a, cnt[1]);
        vxm_cl_arg_int(&a, cnt[2]);
        vxm_cl_arg_uint(&a, (unsigned)ncol);
        if ((st = go(be, &a, VXM_K_ST_BWD_IMG, ncol)))
            return st;
    }
    return VXM_OK;
}

vxm_status vxm_cl_spatial_transform_backward(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp,
                                             const vxm_tensor *dy, int ndim, int use_fill, vxm_tensor *dimg,
                                             vxm_tensor *ddisp)
{
    vxm_status st = checks(be, img, disp, dy, ndim, dimg, ddisp);
    if (st)
        return st;
    if (ddisp && (st = backward_disp(be, img, disp, dy, ndim, use_fill, ddisp)))
        return st;
    if (dimg)
        return backward_img(be, img, disp, dy, ndim, use_fill, dimg);
    return VXM_OK;
}
