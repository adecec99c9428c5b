/* Convolution on the OpenCL backend: pack weights + bias (+ a row of zeros for padding taps) into a scratch buffer
 * with Cout padded to the channel block, then run the register-blocked direct kernel of cl/conv.cl -- or, where the
 * device's tile table picks one (cl_tile.h), the tiled kernel of cl/tiled/conv_tiled.cl (cl_conv_tiled.c) on
 * weights padded to the tile's TN, with the same input-channel ranges and so the same bits. */
#include "backend_opencl/cl_conv_tiled.h"
#include "backend_opencl/cl_internal.h"
#include "backend_opencl/cl_loop_budget.h"
#include "backend_opencl/cl_tile.h"

/* Products (tap x input channel) summed by one work-item per launch, longer reductions being cut into input-channel
 * ranges (cl/conv.cl).  On llvmpipe the bound is the loop budget (cl_loop_budget.h) over 4 + 3 VX NV iterations
 * per product (measured: 3 + 2 VX + NV VX, VX voxels x NV vectors per work-item); without the cut a 3x3x3 conv
 * with 96 inputs or the data gradient of a 128 -> 55296 Dense layer (HyperMorph, training doc §5) lost part of its
 * sums there.  Elsewhere VXM_CONV_KMAX bounds one work-item's run time (and puts wide Dense layers on the same
 * path on every device). */
enum { VXM_CONV_KMAX = 16384 };

static size_t products_per_launch(const vxm_cl *cl, int vx, int cob)
{
    unsigned budget = vxm_cl_loop_budget(cl);
    int nv = cob > 16 ? cob / 16 : 1;
    return budget ? budget / (unsigned)(4 + 3 * vx * nv) : VXM_CONV_KMAX;
}

/* Kernel variant for a channel block `cob` (4, 8, 16, 32) and `vx` voxels per work-item (1, 4, 8). */
static vxm_cl_kid conv_kernel(int cob, int vx)
{
    static const vxm_cl_kid table[4][3] = {
        {VXM_K_CONV_C4_V1, VXM_K_CONV_C4_V4, VXM_K_CONV_C4_V8},
        {VXM_K_CONV_C8_V1, VXM_K_CONV_C8_V4, VXM_K_CONV_C8_V8},
        {VXM_K_CONV_C16_V1, VXM_K_CONV_C16_V4, VXM_K_CONV_C16_V8},
        {VXM_K_CONV_C32_V1, VXM_K_CONV_C32_V4, VXM_K_CONV_C32_V8},
    };
    int r = cob >= 32 ? 3 : cob >= 16 ? 2 : cob >= 8 ? 1 : 0;
    int c = vx >= 8 ? 2 : vx >= 4 ? 1 : 0;
    return table[r][c];
}

/* The direct kernel's plan: channel block, voxels per work-item, and the input-channel ranges of the reduction
 * (nsplit ranges of crange channels, the last one shorter), which the tiled kernel follows too. */
typedef struct direct_plan {
    int cob, vx, crange, nsplit;
} direct_plan;

static void plan_direct(const vxm_cl *cl, size_t ktaps, int cin, int cout, int m2, direct_plan *d)
{
    /* Channel block: the largest of 32, 16, 8, 4 not above Cout (the flow head's 2-3 outputs use 4) nor the
     * device's limit. */
    int cob = 4;
    while (cob < 32 && cob * 2 <= cout && cob * 2 <= cl->conv_cob)
        cob *= 2;
    /* Voxels per work-item: the device default, fewer when the row is short (a 2-D 1x13x11 image would waste
     * most of an 8-wide group). */
    int vx = cl->conv_vx;
    while (vx > 1 && m2 * 2 <= vx)
        vx /= 2;
    vx = vx >= 8 ? 8 : vx >= 4 ? 4 : 1;
    /* Input channels per launch: all, or ranges of about equal size keeping ktaps x range <= the bound. */
    size_t kmax = products_per_launch(cl, vx, cob);
    int per = (int)(kmax / ktaps > 0 ? kmax / ktaps : 1), nsplit = 1, crange = cin;
    if (crange > per) {
        nsplit = (cin + per - 1) / per;
        crange = (cin + nsplit - 1) / nsplit;
        nsplit = (cin + crange - 1) / crange;
    }
    d->cob = cob;
    d->vx = vx;
    d->crange = crange;
    d->nsplit = nsplit;
}

/* Packs weights and bias into the scratch buffer with Cout padded to coutp. */
static vxm_status pack_weights(vxm_backend *be, const vxm_buffer *w, const vxm_buffer *b, size_t kc, int cin,
                               int cout, int coutp, cl_mem *wp)
{
    vxm_status st;
    size_t npack = kc * (size_t)coutp + (size_t)coutp + (size_t)cin;
    if (kc > 0xffffffffu / (size_t)coutp / 2)
        return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "conv: kernel of %zu taps x %d channels too large", kc,
                         coutp);
    if ((st = vxm_cl_scratch(be, VXM_SCRATCH_CONV_WEIGHTS, npack, wp)))
        return st;
    vxm_cl_args a;
    vxm_cl_args_begin(&a, vxm_cl_of(be), VXM_K_CONV_PACK);
    vxm_cl_arg_mem(&a, w->mem);
    vxm_cl_arg_mem(&a, b ? b->mem : w->mem);
    vxm_cl_arg_mem(&a, *wp);
    vxm_cl_arg_int(&a, b != NULL);
    vxm_cl_arg_uint(&a, (unsigned)kc);
    vxm_cl_arg_int(&a, cout);
    vxm_cl_arg_int(&a, coutp);
    vxm_cl_arg_int(&a, cin);
    if ((st = vxm_cl_args_done(be, &a, VXM_K_CONV_PACK)))
        return st;
    return vxm_cl_launch1(be, VXM_K_CONV_PACK, npack);
}

void vxm_cl_conv_args(vxm_cl_args *a, const vxm_tensor *x, cl_mem wp, const vxm_tensor *y, int coutp,
                      const vxm_conv_params *p)
{
    vxm_cl_arg_mem(a, x->buf->mem);
    vxm_cl_arg_mem(a, wp);
    vxm_cl_arg_mem(a, y->buf->mem);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(a, x->shape[d]);
    vxm_cl_arg_int(a, x->channels);
    vxm_cl_arg_int(a, y->shape[1]);
    vxm_cl_arg_int(a, y->shape[2]);
    vxm_cl_arg_int(a, y->channels);
    vxm_cl_arg_int(a, coutp);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(a, p->ksize[d]);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(a, p->stride[d]);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(a, p->pad_lo[d]);
    vxm_cl_arg_int(a, p->leaky != 0);
    vxm_cl_arg_float(a, p->alpha);
}

vxm_status vxm_cl_conv(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b,
                       const vxm_conv_params *p, vxm_tensor *y)
{
    vxm_cl *cl = vxm_cl_of(be);
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, x, "conv input")) || (st = vxm_cl_check_tensor(be, y, "conv output")))
        return st;
    if (!w || !p)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "conv: missing weights or parameters");
    if (y->buf == x->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "conv: output aliases the input");
    for (int d = 0; d < 3; d++) {
        if (p->ksize[d] < 1 || p->stride[d] < 1 || p->pad_lo[d] < 0 || p->pad_lo[d] >= p->ksize[d])
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "conv: bad kernel %d / stride %d / padding %d on axis %d",
                             p->ksize[d], p->stride[d], p->pad_lo[d], d);
        int m = (x->shape[d] + p->stride[d] - 1) / p->stride[d];
        if (y->shape[d] != m)
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec,
                             "conv: output size %d on axis %d, expected ceil(%d/%d) = %d", y->shape[d], d,
                             x->shape[d], p->stride[d], m);
    }
    int cin = x->channels, cout = y->channels;
    size_t ktaps = (size_t)p->ksize[0] * (size_t)p->ksize[1] * (size_t)p->ksize[2];
    size_t nw = ktaps * (size_t)cin * (size_t)cout;
    if (w->nfloats < nw || (b && b->nfloats < (size_t)cout))
        return vxm_error(be->ctx, VXM_EINVAL, be->spec,
                         "conv: weight buffer of %zu floats for a %dx%dx%dx%dx%d kernel, bias of %zu for %d outputs",
                         w->nfloats, p->ksize[0], p->ksize[1], p->ksize[2], cin, cout, b ? b->nfloats : 0, cout);

    direct_plan dp;
    plan_direct(cl, ktaps, cin, cout, y->shape[2], &dp);
    int cob = dp.cob, vx = dp.vx, crange = dp.crange, nsplit = dp.nsplit;
    size_t kc = ktaps * (size_t)cin;
    cl_mem wp;

    /* The tiled kernel where the tile table picks one and the device accepts it (else the direct kernel). */
    vxm_cl_tile tile = *vxm_cl_tile_for(cl, VXM_TILE_CONV, cout);
    if (tile.tm) {
        cl_kernel tk;
        int done = 0;
        if ((st = vxm_cl_conv_tiled_kernel(be, &tile, cout, &tk)))
            return st;
        if (tk) {
            int coutt = (cout + tile.tn - 1) / tile.tn * tile.tn;
            if ((st = pack_weights(be, w, b, kc, cin, cout, coutt, &wp)) ||
                (st = vxm_cl_conv_tiled(be, tk, &tile, x, wp, coutt, p, crange, nsplit, y, &done)) || done)
                return st;
        }
    }

    int coutp = (cout + cob - 1) / cob * cob;
    if ((st = pack_weights(be, w, b, kc, cin, cout, coutp, &wp)))
        return st;
    vxm_cl_kid kid = conv_kernel(cob, vx);
    size_t nvg = (size_t)y->shape[0] * (size_t)y->shape[1] * (size_t)((y->shape[2] + vx - 1) / vx);
    vxm_cl_args a;
    for (int r = 0; r < nsplit; r++) {
        vxm_cl_args_begin(&a, cl, kid);
        vxm_cl_conv_args(&a, x, wp, y, coutp, p);
        vxm_cl_arg_uint(&a, (unsigned)nvg);
        vxm_cl_arg_int(&a, cl->conv_merge && nsplit == 1); /* merged runs span all channels */
        vxm_cl_arg_int(&a, r * crange);
        vxm_cl_arg_int(&a, r < nsplit - 1 ? crange : cin - r * crange);
        vxm_cl_arg_int(&a, r == 0);
        vxm_cl_arg_int(&a, r == nsplit - 1);
        if ((st = vxm_cl_args_done(be, &a, kid)) || (st = vxm_cl_launch2(be, kid, nvg, (size_t)(coutp / cob))))
            return st;
    }
    return VXM_OK;
}
