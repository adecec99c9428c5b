/* The fused ops of backend.h on OpenCL (issue 10; graph/fuse.h): conv_upcat and conv_pool run the convolution
 * kernels' fused variants (cl/conv.cl `mode`, cl/tiled/conv_tiled.cl UPCAT) on the plain convolution's plan
 * (cl_conv.h), so every output is the same fma chain as in the unfused op sequence on the same device, and the
 * results are bitwise equal to it (the maximum is exact).
 *
 * conv_upcat: the kernels read input channel ci < Ca from `a` at the coarse voxel (i/f0, j/f1, k/f2) and ci >= Ca
 * from `skip` at (i, j, k): neither the upsampled tensor nor the concatenation is stored.
 *
 * conv_pool: the direct kernel's pool mode computes the f0*f1*f2 conv outputs of each pooled voxel in registers and
 * keeps the running maximum (bias and activation applied first), so the full-resolution output is never stored.
 * Where the tiled kernel is the device's choice, or where one launch of the pool mode would exceed Mesa llvmpipe's
 * loop budget (cl_loop_budget.h: the pool mode cannot resume a cut reduction without storing partial sums), the
 * output is produced in slabs of whole pooling windows' planes: conv of the slab into a scratch buffer (at most
 * SLAB_FLOATS, a quarter of the planes), vxm_maxpool of it, the pooled planes copied into place. */
#include "backend_opencl/cl_conv.h"

enum { SLAB_FLOATS = 4 << 20 }; /* 16 MiB of conv planes per slab at most (one window of planes at least) */

static vxm_status check_factors(vxm_backend *be, const int f[3], const char *op)
{
    if (!f || f[0] < 1 || f[1] < 1 || f[2] < 1)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: factors must be >= 1", op);
    return VXM_OK;
}

vxm_status vxm_cl_conv_upcat_fused(vxm_backend *be, const vxm_tensor *a, const int f[3], const vxm_tensor *skip,
                                   const vxm_buffer *w, const vxm_buffer *b, const vxm_conv_params *p, vxm_tensor *y)
{
    static const char op[] = "conv_upcat";
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, a, op)) || (st = vxm_cl_check_tensor(be, skip, op)) ||
        (st = vxm_cl_check_tensor(be, y, op)) || (st = check_factors(be, f, op)))
        return st;
    if (!w || !p)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: missing weights or parameters", op);
    if (y->buf == a->buf || y->buf == skip->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output aliases an input", op);
    int m[3];
    if ((st = vxm_cl_conv_grid(be, op, skip->shape, p, m)))
        return st;
    for (int d = 0; d < 3; d++) {
        if (a->shape[d] * f[d] != skip->shape[d])
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec,
                             "%s: upsampled input axis %d is %d * %d, the skip input's %d", op, d, a->shape[d], f[d],
                             skip->shape[d]);
        if (y->shape[d] != m[d])
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output size %d on axis %d, expected ceil(%d/%d) = %d",
                             op, y->shape[d], d, skip->shape[d], p->stride[d], m[d]);
    }
    vxm_cl_upcat up = {a, {f[0], f[1], f[2]}};
    vxm_cl_conv_plan P;
    if ((st = vxm_cl_conv_plan_init(be, a->channels + skip->channels, y->channels, m[2], w, b, p, &up, &P)))
        return st;
    return vxm_cl_conv_plan_run(be, &P, skip, p, y);
}

/* conv_pool through slabs of g pooled planes (g * f0 conv planes) as described at the top. */
static vxm_status pool_slabs(vxm_backend *be, vxm_cl_conv_plan *P, const vxm_tensor *x, const vxm_conv_params *p,
                             const int m[3], const int f[3], vxm_tensor *y)
{
    vxm_cl *cl = vxm_cl_of(be);
    vxm_status st;
    const int *q = y->shape;
    size_t plane = (size_t)m[1] * (size_t)m[2] * (size_t)P->cout, pooled = vxm_cl_nvox(y) / (size_t)q[0] * P->cout;
    int g = (q[0] + 3) / 4;
    if ((size_t)g * (size_t)f[0] * plane > SLAB_FLOATS)
        g = (int)(SLAB_FLOATS / ((size_t)f[0] * plane));
    if (g < 1)
        g = 1;
    int whole = g >= q[0]; /* one slab: pooled straight into y */
    cl_mem slab, spool = NULL;
    if ((st = vxm_cl_scratch(be, VXM_SCRATCH_CONV_SLAB, (size_t)g * (size_t)f[0] * plane, &slab)) ||
        (!whole && (st = vxm_cl_scratch(be, VXM_SCRATCH_CONV_SLAB_POOL, (size_t)g * pooled, &spool))))
        return st;
    for (int s = 0; s < q[0]; s += g) {
        int gs = q[0] - s < g ? q[0] - s : g;
        vxm_buffer cb = {slab, (size_t)gs * (size_t)f[0] * plane, 0}, pb = {spool, (size_t)gs * pooled, 0};
        vxm_tensor ct = {{gs * f[0], m[1], m[2]}, P->cout, &cb}, pt = {{gs, q[1], q[2]}, P->cout, &pb};
        vxm_conv_params ps = *p;
        ps.pad_lo[0] = p->pad_lo[0] - s * f[0] * p->stride[0]; /* the slab's first conv plane */
        if ((st = vxm_cl_conv_plan_run(be, P, x, &ps, &ct)) || (st = vxm_cl_maxpool(be, &ct, f, whole ? y : &pt)))
            return st;
        if (!whole) {
            cl_int err = clEnqueueCopyBuffer(cl->queue, spool, y->buf->mem, 0, (size_t)s * pooled * sizeof(float),
                                             pb.nfloats * sizeof(float), 0, NULL, NULL);
            if (err != CL_SUCCESS)
                return vxm_cl_fail(be, err, 0, "clEnqueueCopyBuffer(conv_pool slab)");
        }
    }
    return VXM_OK;
}

vxm_status vxm_cl_conv_pool_fused(vxm_backend *be, const vxm_tensor *x, const vxm_buffer *w, const vxm_buffer *b,
                                  const vxm_conv_params *p, const int f[3], vxm_tensor *y)
{
    static const char op[] = "conv_pool";
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, x, op)) || (st = vxm_cl_check_tensor(be, y, op)) ||
        (st = check_factors(be, f, op)))
        return st;
    if (!w || !p)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: missing weights or parameters", op);
    if (y->buf == x->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output aliases the input", op);
    int m[3]; /* the conv's grid */
    if ((st = vxm_cl_conv_grid(be, op, x->shape, p, m)))
        return st;
    for (int d = 0; d < 3; d++)
        if (y->shape[d] != m[d] / f[d])
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output axis %d is %d, expected %d / %d = %d", op, d,
                             y->shape[d], m[d], f[d], m[d] / f[d]);
    vxm_cl_conv_plan P;
    /* the plain convolution's plan for this layer (its grid's m2): the same input-channel ranges, the same sums */
    if ((st = vxm_cl_conv_plan_init(be, x->channels, y->channels, m[2], w, b, p, NULL, &P)))
        return st;
    if (vxm_cl_nvox(y) == 0)
        return VXM_OK;
    if (!P.tk) {
        int vx = vxm_cl_conv_pool_vx(vxm_cl_of(be), &P, f);
        while (vx > 1 && y->shape[2] * 2 <= vx) /* short pooled rows (2-D images) */
            vx = vx > 4 ? 4 : 1;
        if (vx)
            return vxm_cl_conv_direct(be, &P, VXM_CONV_POOL, vx, f, x, p, y);
    }
    return pool_slabs(be, &P, x, p, m, f, y);
}
