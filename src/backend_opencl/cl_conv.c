/* Convolution on the OpenCL backend: pack weights + bias (+ a row of zeros for padding taps) into a scratch buffer
 * with Cout padded to the channel block, then run the register-blocked direct kernel of cl/conv.cl -- or, where the
 * device's tile table picks one (cl_tile.h), the tiled kernel of cl/tiled/conv_tiled.cl (cl_conv_tiled.c) on
 * weights padded to the tile's TN, with the same input-channel ranges and so the same bits.  The plan (cl_conv.h)
 * is shared with the fused ops of cl_conv_fused.c, which run the same kernels' fused variants. */
#include <string.h>

#include "backend_opencl/cl_conv.h"
#include "backend_opencl/cl_conv_tiled.h"
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

/* Kernel of `mode` (VXM_CONV_PLAIN, _UPCAT, _POOL) for a channel block `cob` (4, 8, 16, 32) and `vx` voxels per
 * work-item (1, 4, 8). */
static vxm_cl_kid conv_kernel(int mode, int cob, int vx)
{
    static const vxm_cl_kid table[3][4][3] = {
        {{VXM_K_CONV_C4_V1, VXM_K_CONV_C4_V4, VXM_K_CONV_C4_V8},
         {VXM_K_CONV_C8_V1, VXM_K_CONV_C8_V4, VXM_K_CONV_C8_V8},
         {VXM_K_CONV_C16_V1, VXM_K_CONV_C16_V4, VXM_K_CONV_C16_V8},
         {VXM_K_CONV_C32_V1, VXM_K_CONV_C32_V4, VXM_K_CONV_C32_V8}},
        {{VXM_K_CONV_UPCAT_C4_V1, VXM_K_CONV_UPCAT_C4_V4, VXM_K_CONV_UPCAT_C4_V8},
         {VXM_K_CONV_UPCAT_C8_V1, VXM_K_CONV_UPCAT_C8_V4, VXM_K_CONV_UPCAT_C8_V8},
         {VXM_K_CONV_UPCAT_C16_V1, VXM_K_CONV_UPCAT_C16_V4, VXM_K_CONV_UPCAT_C16_V8},
         {VXM_K_CONV_UPCAT_C32_V1, VXM_K_CONV_UPCAT_C32_V4, VXM_K_CONV_UPCAT_C32_V8}},
        {{VXM_K_CONV_POOL_C4_V1, VXM_K_CONV_POOL_C4_V4, VXM_K_CONV_POOL_C4_V8},
         {VXM_K_CONV_POOL_C8_V1, VXM_K_CONV_POOL_C8_V4, VXM_K_CONV_POOL_C8_V8},
         {VXM_K_CONV_POOL_C16_V1, VXM_K_CONV_POOL_C16_V4, VXM_K_CONV_POOL_C16_V8},
         {VXM_K_CONV_POOL_C32_V1, VXM_K_CONV_POOL_C32_V4, VXM_K_CONV_POOL_C32_V8}},
    };
    int r = cob >= 32 ? 3 : cob >= 16 ? 2 : cob >= 8 ? 1 : 0;
    int c = vx >= 8 ? 2 : vx >= 4 ? 1 : 0;
    return table[mode][r][c];
}

/* The direct kernel's plan: channel block, voxels per work-item, and the input-channel ranges of the reduction
 * (nsplit ranges of crange channels, the last one shorter), which the tiled kernel and the fused variants follow
 * too. */
static void plan_direct(const vxm_cl *cl, size_t ktaps, int cin, int cout, int m2, vxm_cl_conv_plan *d)
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
    vxm_cl_args_begin(&a, be, VXM_K_CONV_PACK);
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

void vxm_cl_conv_args(vxm_cl_args *a, const vxm_tensor *x, int cin, cl_mem wp, const vxm_tensor *y, int coutp,
                      const vxm_conv_params *p)
{
    vxm_cl_arg_mem(a, x->buf->mem);
    vxm_cl_arg_mem(a, wp);
    vxm_cl_arg_mem(a, y->buf->mem);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(a, x->shape[d]);
    vxm_cl_arg_int(a, cin);
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

/* xa, ca, f0, f1, f2, na1, na2 of the fused kernels (`f` overriding the factors: the pool's). */
static void fused_args(vxm_cl_args *a, const vxm_cl_upcat *up, const vxm_tensor *x, const int *f)
{
    vxm_cl_arg_mem(a, up ? up->a->buf->mem : x->buf->mem);
    vxm_cl_arg_int(a, up ? up->a->channels : 0);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(a, f ? f[d] : up ? up->f[d] : 1);
    vxm_cl_arg_int(a, up ? up->a->shape[1] : 1);
    vxm_cl_arg_int(a, up ? up->a->shape[2] : 1);
}

void vxm_cl_upcat_args(vxm_cl_args *a, const vxm_cl_upcat *up, const vxm_tensor *x)
{
    fused_args(a, up, x, NULL);
}

vxm_status vxm_cl_conv_plan_init(vxm_backend *be, int cin, int cout, int m2, const vxm_buffer *w, const vxm_buffer *b,
                                 const vxm_conv_params *p, const vxm_cl_upcat *up, vxm_cl_conv_plan *P)
{
    vxm_cl *cl = vxm_cl_of(be);
    vxm_status st;
    memset(P, 0, sizeof *P);
    P->cin = cin;
    P->cout = cout;
    P->w = w;
    P->b = b;
    P->up = up;
    P->ktaps = (size_t)p->ksize[0] * (size_t)p->ksize[1] * (size_t)p->ksize[2];
    size_t nw = P->ktaps * (size_t)cin * (size_t)cout;
    if (w->nfloats < nw || (b && b->nfloats < (size_t)cout))
        return vxm_error(be->ctx, VXM_EINVAL, be->spec,
                         "conv: weight buffer of %zu floats for a %dx%dx%dx%dx%d kernel, bias of %zu for %d outputs",
                         w->nfloats, p->ksize[0], p->ksize[1], p->ksize[2], cin, cout, b ? b->nfloats : 0, cout);
    plan_direct(cl, P->ktaps, cin, cout, m2, P);

    /* The tiled kernel where the tile table picks one and the device accepts it (else the direct kernel). */
    vxm_cl_tile tile = *vxm_cl_tile_for(cl, VXM_TILE_CONV, cout);
    if (tile.tm) {
        if ((st = vxm_cl_conv_tiled_kernel(be, &tile, cout, up != NULL, &P->tk)))
            return st;
        if (P->tk) {
            P->tile = tile;
            P->coutp = (cout + tile.tn - 1) / tile.tn * tile.tn;
            return pack_weights(be, w, b, P->ktaps * (size_t)cin, cin, cout, P->coutp, &P->wp);
        }
    }
    P->coutp = (cout + P->cob - 1) / P->cob * P->cob;
    return pack_weights(be, w, b, P->ktaps * (size_t)cin, cin, cout, P->coutp, &P->wp);
}

vxm_status vxm_cl_conv_direct(vxm_backend *be, const vxm_cl_conv_plan *P, int mode, int vx, const int f[3],
                              const vxm_tensor *x, const vxm_conv_params *p, vxm_tensor *y)
{
    vxm_cl *cl = vxm_cl_of(be);
    vxm_status st;
    int pool = mode == VXM_CONV_POOL, cin = P->cin, crange = P->crange, nsplit = P->nsplit;
    vxm_cl_kid kid = conv_kernel(mode, P->cob, vx);
    size_t nvg = (size_t)y->shape[0] * (size_t)y->shape[1] * (size_t)((y->shape[2] + vx - 1) / vx);
    if ((st = vxm_cl_kernel_ready(be, kid)))
        return st;
    /* pool: one launch running every range in order */
    for (int r = 0; r < (pool ? 1 : nsplit); r++) {
        int cbeg = pool ? 0 : r * crange, clen = pool || r < nsplit - 1 ? crange : cin - cbeg;
        vxm_cl_args a;
        vxm_cl_args_begin(&a, be, kid);
        vxm_cl_conv_args(&a, x, cin, P->wp, y, P->coutp, p);
        vxm_cl_arg_uint(&a, (unsigned)nvg);
        /* merged runs span all channels of one tensor */
        vxm_cl_arg_int(&a, cl->conv_merge && nsplit == 1 && mode != VXM_CONV_UPCAT);
        vxm_cl_arg_int(&a, cbeg);
        vxm_cl_arg_int(&a, clen);
        if (mode != VXM_CONV_PLAIN)
            vxm_cl_arg_int(&a, pool ? cin : cbeg + clen);
        vxm_cl_arg_int(&a, pool || r == 0);
        vxm_cl_arg_int(&a, pool || r == nsplit - 1);
        if (mode != VXM_CONV_PLAIN)
            fused_args(&a, mode == VXM_CONV_UPCAT ? P->up : NULL, x, pool ? f : NULL);
        if ((st = vxm_cl_args_done(be, &a, kid)) ||
            (st = vxm_cl_launch2(be, kid, nvg, (size_t)(P->coutp / P->cob))))
            return st;
    }
    return VXM_OK;
}

vxm_status vxm_cl_conv_plan_run(vxm_backend *be, vxm_cl_conv_plan *P, const vxm_tensor *x, const vxm_conv_params *p,
                                vxm_tensor *y)
{
    vxm_status st;
    if (P->tk) {
        int done = 0;
        if ((st = vxm_cl_conv_tiled(be, P->tk, &P->tile, x, P->up, P->wp, P->coutp, p, P->crange, P->nsplit, y,
                                    &done)) ||
            done)
            return st;
        /* refused by the device (the tile is dropped): the direct kernel from now on */
        P->tk = NULL;
        memset(&P->tile, 0, sizeof P->tile);
        P->coutp = (P->cout + P->cob - 1) / P->cob * P->cob;
        if ((st = pack_weights(be, P->w, P->b, P->ktaps * (size_t)P->cin, P->cin, P->cout, P->coutp, &P->wp)))
            return st;
    }
    return vxm_cl_conv_direct(be, P, P->up ? VXM_CONV_UPCAT : VXM_CONV_PLAIN, P->vx, NULL, x, p, y);
}

vxm_status vxm_cl_conv_grid(vxm_backend *be, const char *op, const int n[3], const vxm_conv_params *p, int m[3])
{
    for (int d = 0; d < 3; d++) {
        if (p->ksize[d] < 1 || p->stride[d] < 1 || p->pad_lo[d] < 0 || p->pad_lo[d] >= p->ksize[d])
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: bad kernel %d / stride %d / padding %d on axis %d",
                             op, p->ksize[d], p->stride[d], p->pad_lo[d], d);
        m[d] = (n[d] + p->stride[d] - 1) / p->stride[d];
    }
    return VXM_OK;
}

int vxm_cl_conv_pool_vx(const vxm_cl *cl, const vxm_cl_conv_plan *P, const int f[3])
{
    unsigned budget = vxm_cl_loop_budget(cl);
    int nv = P->cob > 16 ? P->cob / 16 : 1;
    size_t win = (size_t)f[0] * (size_t)f[1] * (size_t)f[2];
    for (int vx = P->vx; vx >= 1; vx = vx > 4 ? 4 : vx - 3) {
        if (!budget)
            return vx;
        /* per window position: the products at products_per_launch's rate, each range's taps' pointer set-up and
         * loop heads, the epilogue */
        size_t per = P->ktaps * (size_t)P->cin * (size_t)(4 + 3 * vx * nv) +
                     P->ktaps * (size_t)P->nsplit * (size_t)(2 * vx + 8) + (size_t)(4 * vx * nv + 32);
        if (win * per <= budget)
            return vx;
    }
    return 0;
}

vxm_status vxm_cl_conv(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b,
                       const vxm_conv_params *p, vxm_tensor *y)
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, x, "conv input")) || (st = vxm_cl_check_tensor(be, y, "conv output")))
        return st;
    if (!w || !p)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "conv: missing weights or parameters");
    if (y->buf == x->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "conv: output aliases the input");
    int m[3];
    if ((st = vxm_cl_conv_grid(be, "conv", x->shape, p, m)))
        return st;
    for (int d = 0; d < 3; d++)
        if (y->shape[d] != m[d])
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec,
                             "conv: output size %d on axis %d, expected ceil(%d/%d) = %d", y->shape[d], d,
                             x->shape[d], p->stride[d], m[d]);
    vxm_cl_conv_plan P;
    if ((st = vxm_cl_conv_plan_init(be, x->channels, y->channels, y->shape[2], w, b, p, NULL, &P)))
        return st;
    return vxm_cl_conv_plan_run(be, &P, x, p, y);
}
