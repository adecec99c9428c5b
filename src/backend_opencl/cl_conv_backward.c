/* Convolution gradients on the OpenCL backend (training doc §2.7; kernels in cl/conv_backward.cl).
 *
 *   data    dx = forward convolution (cl_conv.c) of dy -- dilated onto the input grid for stride 2 -- with the
 *           flipped, transposed kernel and padding k-1-p, so it runs on the tuned forward kernel;
 *   filter  per-chunk partial sums of x-patch (x) dy, then the partials added in chunk order (the partials by the
 *           tiled kernel of cl_conv_filter_tiled.c where the device's tile table picks one, bitwise the same);
 *   bias    the same with dy alone.
 * The chunks partition the output voxels by the problem size only (never the device or the work-group size), and
 * no atomics are used: results are reproducible across devices' scheduling and identical run to run. */
#include "backend_opencl/cl_conv_filter_tiled.h"
#include "backend_opencl/cl_internal.h"
#include "backend_opencl/cl_loop_budget.h"
#include "backend_opencl/cl_tile.h"

/* Chunking of the voxel reductions: about VXM_BWD_PARTS chunks of at least VXM_BWD_MIN_CHUNK voxels, a function of
 * the voxel count alone.  256 partials keep a GPU busy (x the weight blocks) while bounding the scratch to
 * 256 x the weight count (28 MB for a 3x3x3x32x32 kernel). */
enum { VXM_BWD_PARTS = 256, VXM_BWD_MIN_CHUNK = 64 };

static void chunking(size_t nvox, unsigned *chunk, unsigned *nparts)
{
    size_t c = (nvox + VXM_BWD_PARTS - 1) / VXM_BWD_PARTS;
    if (c < VXM_BWD_MIN_CHUNK)
        c = VXM_BWD_MIN_CHUNK;
    *chunk = (unsigned)c;
    *nparts = (unsigned)((nvox + c - 1) / c);
}

/* Shared checks: kernel / stride / padding and dy's shape = ceil(x's shape / stride). */
static vxm_status check_geometry(vxm_backend *be, const char *op, const int xshape[3], const vxm_tensor *dy,
                                 const vxm_conv_params *p)
{
    if (!p)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: missing parameters", op);
    for (int d = 0; d < 3; d++) {
        if (p->ksize[d] < 1 || p->stride[d] < 1 || p->stride[d] > 2 || p->pad_lo[d] < 0 ||
            p->pad_lo[d] >= p->ksize[d])
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: bad kernel %d / stride %d / padding %d on axis %d",
                             op, p->ksize[d], p->stride[d], p->pad_lo[d], d);
        int m = (xshape[d] + p->stride[d] - 1) / p->stride[d];
        if (dy->shape[d] != m)
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec,
                             "%s: gradient size %d on axis %d, expected ceil(%d/%d) = %d", op, dy->shape[d], d,
                             xshape[d], p->stride[d], m);
    }
    return VXM_OK;
}

/* Adds the np partials of ne floats each in `part` into out[0..ne). */
static vxm_status sum_partials(vxm_backend *be, cl_mem part, cl_mem out, unsigned ne, unsigned np)
{
    vxm_cl_args a;
    vxm_status st;
    vxm_cl_args_begin(&a, be, VXM_K_SUM_PARTIALS);
    vxm_cl_arg_mem(&a, part);
    vxm_cl_arg_mem(&a, out);
    vxm_cl_arg_uint(&a, ne);
    vxm_cl_arg_uint(&a, np);
    if ((st = vxm_cl_args_done(be, &a, VXM_K_SUM_PARTIALS)))
        return st;
    return vxm_cl_launch1(be, VXM_K_SUM_PARTIALS, ne);
}

vxm_status vxm_cl_conv_backward_data(vxm_backend *be, const vxm_tensor *dy, const vxm_buffer *w,
                                     const vxm_conv_params *p, vxm_tensor *dx)
{
    static const char op[] = "conv_backward_data";
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, dy, op)) || (st = vxm_cl_check_tensor(be, dx, op)) ||
        (st = check_geometry(be, op, dx->shape, dy, p)))
        return st;
    if (!w)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: missing weights", op);
    if (dx->buf == dy->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: dx aliases dy", op);
    int cin = dx->channels, cout = dy->channels;
    size_t ktaps = (size_t)p->ksize[0] * (size_t)p->ksize[1] * (size_t)p->ksize[2];
    size_t nw = ktaps * (size_t)cin * (size_t)cout;
    if (w->nfloats < nw || nw > 0xffffffffu)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: weight buffer of %zu floats for a %zux%dx%d kernel", op,
                         w->nfloats, ktaps, cin, cout);

    /* Flipped, transposed kernel (k0,k1,k2,Cout,Cin). */
    vxm_buffer wf = {NULL, nw, 0};
    if ((st = vxm_cl_scratch(be, VXM_SCRATCH_CONV_BWD_W, nw, &wf.mem)))
        return st;
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_CONV_FLIP);
    vxm_cl_arg_mem(&a, w->mem);
    vxm_cl_arg_mem(&a, wf.mem);
    vxm_cl_arg_uint(&a, (unsigned)ktaps);
    vxm_cl_arg_int(&a, cin);
    vxm_cl_arg_int(&a, cout);
    vxm_cl_arg_uint(&a, (unsigned)nw);
    if ((st = vxm_cl_args_done(be, &a, VXM_K_CONV_FLIP)) || (st = vxm_cl_launch1(be, VXM_K_CONV_FLIP, nw)))
        return st;

    /* The stride-1 input: dy itself, or dy dilated onto dx's grid.  (Stride 2 thus multiplies by zeros on 7/8 of
     * a 3-D grid; a per-parity decomposition would avoid that if strided layers ever dominate.) */
    vxm_buffer dd = {dy->buf->mem, vxm_tensor_numel(dy), 0};
    vxm_tensor src = *dy;
    src.buf = &dd;
    if (p->stride[0] > 1 || p->stride[1] > 1 || p->stride[2] > 1) {
        size_t n = vxm_cl_nvox(dx) * (size_t)cout;
        if ((st = vxm_cl_scratch(be, VXM_SCRATCH_CONV_BWD_DY, n, &dd.mem)))
            return st;
        dd.nfloats = n;
        for (int d = 0; d < 3; d++)
            src.shape[d] = dx->shape[d];
        vxm_cl_args_begin(&a, be, VXM_K_CONV_DILATE);
        vxm_cl_arg_mem(&a, dy->buf->mem);
        vxm_cl_arg_mem(&a, dd.mem);
        vxm_cl_arg_int(&a, dx->shape[1]);
        vxm_cl_arg_int(&a, dx->shape[2]);
        vxm_cl_arg_int(&a, cout);
        vxm_cl_arg_int(&a, dy->shape[1]);
        vxm_cl_arg_int(&a, dy->shape[2]);
        for (int d = 0; d < 3; d++)
            vxm_cl_arg_int(&a, p->stride[d]);
        vxm_cl_arg_ulong(&a, n);
        if ((st = vxm_cl_args_done(be, &a, VXM_K_CONV_DILATE)) || (st = vxm_cl_launch1(be, VXM_K_CONV_DILATE, n)))
            return st;
    }
    vxm_conv_params q = {.leaky = 0, .alpha = 0.0f};
    for (int d = 0; d < 3; d++) {
        q.ksize[d] = p->ksize[d];
        q.stride[d] = 1;
        q.pad_lo[d] = p->ksize[d] - 1 - p->pad_lo[d];
    }
    return vxm_cl_conv(be, &src, &wf, NULL, &q, dx);
}

/* Arguments shared by the direct and tiled filter kernels (cl_conv_filter_tiled.h). */
void vxm_cl_filter_args(vxm_cl_args *a, const vxm_tensor *x, const vxm_tensor *dy, const vxm_conv_params *p,
                        cl_mem part, unsigned chunk)
{
    vxm_cl_arg_mem(a, x->buf->mem);
    vxm_cl_arg_mem(a, dy->buf->mem);
    vxm_cl_arg_mem(a, part);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(a, x->shape[d]);
    vxm_cl_arg_int(a, x->channels);
    vxm_cl_arg_int(a, dy->shape[1]);
    vxm_cl_arg_int(a, dy->shape[2]);
    vxm_cl_arg_int(a, dy->channels);
    vxm_cl_arg_int(a, p->ksize[1]);
    vxm_cl_arg_int(a, p->ksize[2]);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(a, p->stride[d]);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(a, p->pad_lo[d]);
    vxm_cl_arg_uint(a, (unsigned)vxm_cl_nvox(dy));
    vxm_cl_arg_uint(a, chunk);
}

/* The direct (register-blocked) filter-gradient kernel: per-chunk partials of x-patch (x) dy into part. */
static vxm_status filter_direct(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, const vxm_conv_params *p,
                                cl_mem part, unsigned chunk, unsigned nparts)
{
    vxm_cl *cl = vxm_cl_of(be);
    vxm_status st;
    int cin = x->channels, cout = dy->channels;
    size_t nw = (size_t)p->ksize[0] * (size_t)p->ksize[1] * (size_t)p->ksize[2] * (size_t)cin * (size_t)cout;
    /* Register block per work-item: 3 taps along axis 2 (VXM_FB_KT) x 8 inputs x 16 outputs when both channel counts
     * fill it, else 3 x 4 x 8. */
    int wide = cin >= 8 && cout >= 16;
    int cib = wide ? 8 : 4, cob = wide ? 16 : 8;
    vxm_cl_kid kid = wide ? VXM_K_CONV_FILTER_PARTIAL_8X16 : VXM_K_CONV_FILTER_PARTIAL_4X8;
    int ncib = (cin + cib - 1) / cib, ncob = (cout + cob - 1) / cob;
    int ntg = (p->ksize[2] + 2) / 3;
    size_t nblk = (size_t)p->ksize[0] * (size_t)p->ksize[1] * (size_t)ntg * (size_t)ncib * (size_t)ncob;
    /* Voxels of a chunk per launch: all, or on llvmpipe the loop budget (cl_loop_budget.h) over 8 + 4 CIB + COB
     * iterations per voxel (measured about 37 for the 8x16 block, 25 for 4x8); a 96^3 volume lost 0.4 % of its
     * filter gradient there without the cut. */
    unsigned budget = vxm_cl_loop_budget(cl), sub = chunk;
    if (budget && sub > budget / (unsigned)(8 + 4 * cib + cob))
        sub = budget / (unsigned)(8 + 4 * cib + cob);
    for (unsigned qbeg = 0; qbeg < chunk; qbeg += sub) {
        vxm_cl_args a;
        vxm_cl_args_begin(&a, be, kid);
        vxm_cl_filter_args(&a, x, dy, p, part, chunk);
        vxm_cl_arg_uint(&a, (unsigned)nblk);
        vxm_cl_arg_int(&a, ntg);
        vxm_cl_arg_int(&a, ncib);
        vxm_cl_arg_int(&a, ncob);
        vxm_cl_arg_uint(&a, (unsigned)nw);
        vxm_cl_arg_uint(&a, qbeg);
        vxm_cl_arg_uint(&a, chunk - qbeg < sub ? chunk - qbeg : sub);
        vxm_cl_arg_int(&a, qbeg == 0);
        if ((st = vxm_cl_args_done(be, &a, kid)) || (st = vxm_cl_launch2(be, kid, nblk, nparts)))
            return st;
    }
    return VXM_OK;
}

vxm_status vxm_cl_conv_backward_filter(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy,
                                       const vxm_conv_params *p, vxm_buffer *dw)
{
    static const char op[] = "conv_backward_filter";
    vxm_cl *cl = vxm_cl_of(be);
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, x, op)) || (st = vxm_cl_check_tensor(be, dy, op)) ||
        (st = check_geometry(be, op, x->shape, dy, p)))
        return st;
    int cin = x->channels, cout = dy->channels;
    size_t ktaps = (size_t)p->ksize[0] * (size_t)p->ksize[1] * (size_t)p->ksize[2];
    size_t nw = ktaps * (size_t)cin * (size_t)cout;
    if (!dw || dw->nfloats < nw)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: gradient buffer of %zu floats for a %zux%dx%d kernel",
                         op, dw ? dw->nfloats : 0, ktaps, cin, cout);
    unsigned chunk, nparts;
    chunking(vxm_cl_nvox(dy), &chunk, &nparts);
    if (nw > 0xffffffffu / nparts)
        return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "%s: %zu weights too many", op, nw);
    cl_mem part;
    if ((st = vxm_cl_scratch(be, VXM_SCRATCH_CONV_BWD_DY, nw * nparts, &part)))
        return st;
    /* The tiled kernel where the device's tile table picks one (GPUs), bitwise the direct kernel's partials; the
     * direct kernel otherwise or where the device cannot run the tile. */
    const vxm_cl_tile *t = vxm_cl_tile_for(cl, VXM_TILE_FILTER, cout);
    int done = 0;
    if (t->tm != 0 && (st = vxm_cl_conv_filter_tiled(be, t, x, dy, p, part, chunk, nparts, &done)))
        return st;
    if (!done && (st = filter_direct(be, x, dy, p, part, chunk, nparts)))
        return st;
    return sum_partials(be, part, dw->mem, (unsigned)nw, nparts);
}

vxm_status vxm_cl_conv_backward_bias(vxm_backend *be, const vxm_tensor *dy, vxm_buffer *db)
{
    static const char op[] = "conv_backward_bias";
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, dy, op)))
        return st;
    int cout = dy->channels;
    if (!db || db->nfloats < (size_t)cout)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: gradient buffer of %zu floats for %d channels", op,
                         db ? db->nfloats : 0, cout);
    unsigned chunk, nparts;
    chunking(vxm_cl_nvox(dy), &chunk, &nparts);
    cl_mem part;
    if ((st = vxm_cl_scratch(be, VXM_SCRATCH_CONV_BWD_DY, (size_t)cout * nparts, &part)))
        return st;
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_CONV_BIAS_PARTIAL);
    vxm_cl_arg_mem(&a, dy->buf->mem);
    vxm_cl_arg_mem(&a, part);
    vxm_cl_arg_int(&a, cout);
    vxm_cl_arg_uint(&a, (unsigned)vxm_cl_nvox(dy));
    vxm_cl_arg_uint(&a, chunk);
    if ((st = vxm_cl_args_done(be, &a, VXM_K_CONV_BIAS_PARTIAL)) ||
        (st = vxm_cl_launch2(be, VXM_K_CONV_BIAS_PARTIAL, (size_t)cout, nparts)))
        return st;
    return sum_partials(be, part, db->mem, (unsigned)cout, nparts);
}
