/* Every op of vxm_backend_ops except the convolution: shape checks on the host, then one kernel launch each (the
 * kernels are in the cl/ directory).  Ops only enqueue; buffer_read / finish wait. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_opencl/cl_internal.h"

static size_t nvox_of(const vxm_tensor *t)
{
    return (size_t)t->shape[0] * (size_t)t->shape[1] * (size_t)t->shape[2];
}

static int same_shape(const vxm_tensor *a, const vxm_tensor *b)
{
    return a->shape[0] == b->shape[0] && a->shape[1] == b->shape[1] && a->shape[2] == b->shape[2];
}

static vxm_status shape_error(vxm_backend *be, const char *op, const vxm_tensor *a, const vxm_tensor *b)
{
    return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: shapes %dx%dx%dx%d and %dx%dx%dx%d do not fit", op,
                     a->shape[0], a->shape[1], a->shape[2], a->channels, b->shape[0], b->shape[1], b->shape[2],
                     b->channels);
}

static vxm_status elementwise(vxm_backend *be, vxm_cl_kid kid, const char *op, const vxm_tensor *x, float s,
                              vxm_tensor *y)
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, x, op)) || (st = vxm_cl_check_tensor(be, y, op)))
        return st;
    if (vxm_tensor_numel(x) != vxm_tensor_numel(y))
        return shape_error(be, op, x, y);
    size_t n = vxm_tensor_numel(x);
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, kid);
    vxm_cl_arg_mem(&a, x->buf->mem);
    vxm_cl_arg_mem(&a, y->buf->mem);
    vxm_cl_arg_float(&a, s);
    vxm_cl_arg_ulong(&a, n);
    if ((st = vxm_cl_args_done(be, &a, kid)))
        return st;
    return vxm_cl_launch1(be, kid, n);
}

vxm_status vxm_cl_leaky_relu(vxm_backend *be, const vxm_tensor *x, float alpha, vxm_tensor *y)
{
    return elementwise(be, VXM_K_LEAKY_RELU, "leaky_relu", x, alpha, y);
}

vxm_status vxm_cl_scale(vxm_backend *be, const vxm_tensor *x, float s, vxm_tensor *y)
{
    return elementwise(be, VXM_K_SCALE, "scale", x, s, y);
}

vxm_status vxm_cl_maxpool(vxm_backend *be, const vxm_tensor *x, const int f[3], vxm_tensor *y)
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, x, "maxpool")) || (st = vxm_cl_check_tensor(be, y, "maxpool")))
        return st;
    for (int d = 0; d < 3; d++)
        if (f[d] < 1 || y->shape[d] != x->shape[d] / f[d])
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "maxpool: output %d on axis %d, expected floor(%d/%d)",
                             y->shape[d], d, x->shape[d], f[d]);
    if (x->channels != y->channels)
        return shape_error(be, "maxpool", x, y);
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_MAXPOOL);
    vxm_cl_arg_mem(&a, x->buf->mem);
    vxm_cl_arg_mem(&a, y->buf->mem);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, x->shape[d]);
    vxm_cl_arg_int(&a, x->channels);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, f[d]);
    vxm_cl_arg_int(&a, y->shape[1]);
    vxm_cl_arg_int(&a, y->shape[2]);
    vxm_cl_arg_uint(&a, (unsigned)nvox_of(y));
    if ((st = vxm_cl_args_done(be, &a, VXM_K_MAXPOOL)))
        return st;
    return vxm_cl_launch1(be, VXM_K_MAXPOOL, nvox_of(y));
}

vxm_status vxm_cl_upsample_nearest(vxm_backend *be, const vxm_tensor *x, const int f[3], vxm_tensor *y)
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, x, "upsample")) || (st = vxm_cl_check_tensor(be, y, "upsample")))
        return st;
    for (int d = 0; d < 3; d++)
        if (f[d] < 1 || y->shape[d] != x->shape[d] * f[d])
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "upsample: output %d on axis %d, expected %d*%d",
                             y->shape[d], d, x->shape[d], f[d]);
    if (x->channels != y->channels)
        return shape_error(be, "upsample", x, y);
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_UPSAMPLE);
    vxm_cl_arg_mem(&a, x->buf->mem);
    vxm_cl_arg_mem(&a, y->buf->mem);
    vxm_cl_arg_int(&a, x->shape[1]);
    vxm_cl_arg_int(&a, x->shape[2]);
    vxm_cl_arg_int(&a, x->channels);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, f[d]);
    vxm_cl_arg_int(&a, y->shape[1]);
    vxm_cl_arg_int(&a, y->shape[2]);
    vxm_cl_arg_uint(&a, (unsigned)nvox_of(y));
    if ((st = vxm_cl_args_done(be, &a, VXM_K_UPSAMPLE)))
        return st;
    return vxm_cl_launch1(be, VXM_K_UPSAMPLE, nvox_of(y));
}

vxm_status vxm_cl_concat(vxm_backend *be, const vxm_tensor *a_, const vxm_tensor *b_, vxm_tensor *y)
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, a_, "concat")) || (st = vxm_cl_check_tensor(be, b_, "concat")) ||
        (st = vxm_cl_check_tensor(be, y, "concat")))
        return st;
    if (!same_shape(a_, b_) || !same_shape(a_, y) || y->channels != a_->channels + b_->channels)
        return shape_error(be, "concat", a_, b_);
    if (y->buf == a_->buf || y->buf == b_->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "concat: output aliases an input");
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_CONCAT);
    vxm_cl_arg_mem(&a, a_->buf->mem);
    vxm_cl_arg_mem(&a, b_->buf->mem);
    vxm_cl_arg_mem(&a, y->buf->mem);
    vxm_cl_arg_int(&a, a_->channels);
    vxm_cl_arg_int(&a, b_->channels);
    vxm_cl_arg_uint(&a, (unsigned)nvox_of(y));
    if ((st = vxm_cl_args_done(be, &a, VXM_K_CONCAT)))
        return st;
    return vxm_cl_launch1(be, VXM_K_CONCAT, nvox_of(y));
}

vxm_status vxm_cl_resize_linear(vxm_backend *be, const vxm_tensor *x, vxm_resize_mapping map,
                                const float factor[3], vxm_tensor *y)
{
    vxm_cl *cl = vxm_cl_of(be);
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, x, "resize")) || (st = vxm_cl_check_tensor(be, y, "resize")))
        return st;
    if (x->channels != y->channels)
        return shape_error(be, "resize", x, y);
    if (map != VXM_RESIZE_LINSPACE && map != VXM_RESIZE_LEGACY)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "resize: unknown coordinate mapping %d", (int)map);
    if (map == VXM_RESIZE_LEGACY)
        for (int d = 0; d < 3; d++)
            if (!factor || !(factor[d] > 0.0f))
                return vxm_error(be->ctx, VXM_EINVAL, be->spec, "resize: legacy mapping needs positive factors");

    /* Sampling coordinates per axis, in float32 exactly as spec §6.1 / §6.2 state them. */
    size_t ncoord = (size_t)y->shape[0] + (size_t)y->shape[1] + (size_t)y->shape[2];
    float *coord = malloc(ncoord * sizeof *coord);
    if (!coord)
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of host memory");
    float *c = coord;
    for (int d = 0; d < 3; d++) {
        int n = x->shape[d], m = y->shape[d];
        if (map == VXM_RESIZE_LINSPACE) {
            float delta = m > 1 ? (float)(n - 1) / (float)(m - 1) : 0.0f;
            for (int i = 0; i < m; i++)
                c[i] = (i == 0) ? 0.0f : (i == m - 1) ? (float)(n - 1) : (float)i * delta;
        } else {
            for (int i = 0; i < m; i++)
                c[i] = (float)i / factor[d];
        }
        c += m;
    }
    cl_int err;
    cl_mem cbuf = clCreateBuffer(cl->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, ncoord * sizeof(float), coord,
                                 &err);
    free(coord);
    if (!cbuf)
        return vxm_cl_fail(be, err, 1, "clCreateBuffer(resize coordinates)");
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_RESIZE);
    vxm_cl_arg_mem(&a, x->buf->mem);
    vxm_cl_arg_mem(&a, cbuf);
    vxm_cl_arg_mem(&a, y->buf->mem);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, x->shape[d]);
    vxm_cl_arg_int(&a, x->channels);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, y->shape[d]);
    vxm_cl_arg_int(&a, x->shape[0] == 1 && y->shape[0] == 1); /* 2-D: axis 0 not interpolated */
    vxm_cl_arg_uint(&a, (unsigned)nvox_of(y));
    st = vxm_cl_args_done(be, &a, VXM_K_RESIZE);
    if (!st)
        st = vxm_cl_launch1(be, VXM_K_RESIZE, nvox_of(y));
    clReleaseMemObject(cbuf); /* freed by OpenCL once the kernel is done with it */
    return st;
}

/* ndim 1..3: displacement channel c is along spatial axis 3 - ndim + c; the leading 3 - ndim axes are not displaced
 * (2-D data has shape[0] == 1; a larger leading axis is processed slice by slice, as on the CPU backend). */
static vxm_status check_ndim(vxm_backend *be, const char *op, int ndim)
{
    if (ndim < 1 || ndim > 3)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: ndim %d not in 1..3", op, ndim);
    return VXM_OK;
}

vxm_status vxm_cl_vecint(vxm_backend *be, const vxm_tensor *v, int ndim, int steps, vxm_tensor *y)
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, v, "vecint")) || (st = vxm_cl_check_tensor(be, y, "vecint")) ||
        (st = check_ndim(be, "vecint", ndim)))
        return st;
    if (!same_shape(v, y) || v->channels != ndim || y->channels != ndim)
        return shape_error(be, "vecint", v, y);
    if (steps < 0 || steps > 60)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "vecint: %d steps", steps);
    if (v->buf == y->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "vecint: output aliases the input");
    size_t n = vxm_tensor_numel(v);
    if (steps == 0)
        return vxm_cl_copy(be, v->buf->mem, y->buf->mem, n);
    cl_mem tmp = NULL;
    if (steps > 1 && (st = vxm_cl_scratch(be, VXM_SCRATCH_VECINT, n, &tmp)))
        return st;
    /* Step t (1..steps) writes y when steps - t is even, else tmp, so the last step lands in y; step 1 reads v
     * scaled by 2^-steps on the fly (exact), later steps the previous output at scale 1. */
    cl_mem src = v->buf->mem;
    float scale = ldexpf(1.0f, -steps);
    for (int t = 1; t <= steps; t++) {
        cl_mem dst = ((steps - t) % 2 == 0) ? y->buf->mem : tmp;
        vxm_cl_kid kid = ndim == 3 ? VXM_K_VECINT_STEP3 : VXM_K_VECINT_STEP;
        vxm_cl_args a;
        vxm_cl_args_begin(&a, be, kid);
        vxm_cl_arg_mem(&a, src);
        vxm_cl_arg_mem(&a, dst);
        for (int d = 0; d < 3; d++)
            vxm_cl_arg_int(&a, v->shape[d]);
        if (kid == VXM_K_VECINT_STEP)
            vxm_cl_arg_int(&a, ndim);
        vxm_cl_arg_float(&a, t == 1 ? scale : 1.0f);
        vxm_cl_arg_uint(&a, (unsigned)nvox_of(v));
        if ((st = vxm_cl_args_done(be, &a, kid)) || (st = vxm_cl_launch1(be, kid, nvox_of(v))))
            return st;
        src = dst;
    }
    return VXM_OK;
}

vxm_status vxm_cl_spatial_transform(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp, int ndim,
                                    vxm_interp interp, int use_fill, float fill, vxm_tensor *y)
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, img, "spatial_transform")) ||
        (st = vxm_cl_check_tensor(be, disp, "spatial_transform")) ||
        (st = vxm_cl_check_tensor(be, y, "spatial_transform")) ||
        (st = check_ndim(be, "spatial_transform", ndim)))
        return st;
    if (disp->channels != ndim || !same_shape(disp, y) || y->channels != img->channels)
        return shape_error(be, "spatial_transform", img, disp);
    if (interp != VXM_INTERP_LINEAR && interp != VXM_INTERP_NEAREST)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "spatial_transform: unknown interpolation %d", (int)interp);
    if (y->buf == img->buf || y->buf == disp->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "spatial_transform: output aliases an input");
    vxm_cl_args a;
    if (ndim == 3 && interp == VXM_INTERP_LINEAR && (img->channels == 1 || img->channels == 3)) {
        /* straight-line specialisations of the common case */
        vxm_cl_kid kid = img->channels == 1 ? VXM_K_SPATIAL_TRANSFORM3_C1 : VXM_K_SPATIAL_TRANSFORM3_C3;
        vxm_cl_args_begin(&a, be, kid);
        vxm_cl_arg_mem(&a, img->buf->mem);
        vxm_cl_arg_mem(&a, disp->buf->mem);
        vxm_cl_arg_mem(&a, y->buf->mem);
        for (int d = 0; d < 3; d++)
            vxm_cl_arg_int(&a, img->shape[d]);
        vxm_cl_arg_int(&a, y->shape[1]);
        vxm_cl_arg_int(&a, y->shape[2]);
        vxm_cl_arg_int(&a, use_fill != 0);
        vxm_cl_arg_float(&a, fill);
        vxm_cl_arg_uint(&a, (unsigned)nvox_of(y));
        if ((st = vxm_cl_args_done(be, &a, kid)))
            return st;
        return vxm_cl_launch1(be, kid, nvox_of(y));
    }
    vxm_cl_args_begin(&a, be, VXM_K_SPATIAL_TRANSFORM);
    vxm_cl_arg_mem(&a, img->buf->mem);
    vxm_cl_arg_mem(&a, disp->buf->mem);
    vxm_cl_arg_mem(&a, y->buf->mem);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, img->shape[d]);
    vxm_cl_arg_int(&a, img->channels);
    vxm_cl_arg_int(&a, y->shape[1]);
    vxm_cl_arg_int(&a, y->shape[2]);
    vxm_cl_arg_int(&a, ndim);
    vxm_cl_arg_int(&a, interp == VXM_INTERP_NEAREST);
    vxm_cl_arg_int(&a, use_fill != 0);
    vxm_cl_arg_float(&a, fill);
    vxm_cl_arg_uint(&a, (unsigned)nvox_of(y));
    if ((st = vxm_cl_args_done(be, &a, VXM_K_SPATIAL_TRANSFORM)))
        return st;
    return vxm_cl_launch1(be, VXM_K_SPATIAL_TRANSFORM, nvox_of(y));
}

vxm_status vxm_cl_affine_to_disp(vxm_backend *be, const float *mat, int ndim, int shift_center, vxm_tensor *y)
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, y, "affine_to_disp")) || (st = check_ndim(be, "affine_to_disp", ndim)))
        return st;
    for (int d = 0; d < 3 - ndim; d++)
        if (y->shape[d] != 1)
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec,
                             "affine_to_disp: %d-D field needs size 1 along axis %d, got %d", ndim, d, y->shape[d]);
    if (!mat)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "affine_to_disp: no matrix");
    if (y->channels != ndim)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "affine_to_disp: %d output channels for ndim %d",
                         y->channels, ndim);
    cl_float16 m;
    memset(&m, 0, sizeof m);
    for (int i = 0; i < ndim * (ndim + 1); i++)
        m.s[i] = mat[i];
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_AFFINE);
    vxm_cl_arg_mem(&a, y->buf->mem);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, y->shape[d]);
    vxm_cl_arg_int(&a, ndim);
    vxm_cl_arg_int(&a, shift_center != 0);
    vxm_cl_arg_raw(&a, sizeof m, &m);
    vxm_cl_arg_uint(&a, (unsigned)nvox_of(y));
    if ((st = vxm_cl_args_done(be, &a, VXM_K_AFFINE)))
        return st;
    return vxm_cl_launch1(be, VXM_K_AFFINE, nvox_of(y));
}

vxm_status vxm_cl_sample_normal(vxm_backend *be, const vxm_tensor *mean, const vxm_tensor *logvar,
                                const vxm_tensor *eps, vxm_tensor *y)
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, mean, "sample_normal")) || (st = vxm_cl_check_tensor(be, y, "sample_normal")))
        return st;
    size_t n = vxm_tensor_numel(mean);
    if (vxm_tensor_numel(y) != n)
        return shape_error(be, "sample_normal", mean, y);
    if (!eps)
        return vxm_cl_copy(be, mean->buf->mem, y->buf->mem, n);
    if ((st = vxm_cl_check_tensor(be, logvar, "sample_normal")) || (st = vxm_cl_check_tensor(be, eps, "sample_normal")))
        return st;
    if (vxm_tensor_numel(logvar) != n || vxm_tensor_numel(eps) != n)
        return shape_error(be, "sample_normal", mean, logvar);
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_SAMPLE_NORMAL);
    vxm_cl_arg_mem(&a, mean->buf->mem);
    vxm_cl_arg_mem(&a, logvar->buf->mem);
    vxm_cl_arg_mem(&a, eps->buf->mem);
    vxm_cl_arg_mem(&a, y->buf->mem);
    vxm_cl_arg_ulong(&a, n);
    if ((st = vxm_cl_args_done(be, &a, VXM_K_SAMPLE_NORMAL)))
        return st;
    return vxm_cl_launch1(be, VXM_K_SAMPLE_NORMAL, n);
}
