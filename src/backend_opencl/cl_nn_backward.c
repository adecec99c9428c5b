/* Backward ops of the network layers on the OpenCL backend (training doc §2.7): LeakyReLU, max-pooling, nearest
 * upsampling, concatenation (slice), gradient accumulation (add), the reparameterised sample and the linear resize.
 * The convolution gradients are in cl_conv_backward.c.  Every op overwrites its output and writes each element
 * exactly once from a gather (no scatter, no atomics), so results are deterministic. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_opencl/cl_internal.h"

/* The element-wise kernel of cl/elementwise.cl: `kind` 0 leaky, 1 add, 2 sample; nin inputs, all with y's element
 * count (unused kernel inputs are passed as the first); y may alias any input. */
static vxm_status elementwise(vxm_backend *be, int kind, const char *op, const vxm_tensor *const in[3], int nin,
                              float s, vxm_tensor *y)
{
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, y, op)))
        return st;
    size_t n = vxm_tensor_numel(y);
    for (int i = 0; i < nin; i++) {
        if ((st = vxm_cl_check_tensor(be, in[i], op)))
            return st;
        if (vxm_tensor_numel(in[i]) != n)
            return vxm_cl_shape_error(be, op, in[i], y);
    }
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_ELEMENTWISE_BACKWARD);
    for (int i = 0; i < 3; i++)
        vxm_cl_arg_mem(&a, in[i < nin ? i : 0]->buf->mem);
    vxm_cl_arg_mem(&a, y->buf->mem);
    vxm_cl_arg_float(&a, s);
    vxm_cl_arg_int(&a, kind);
    vxm_cl_arg_ulong(&a, n);
    if ((st = vxm_cl_args_done(be, &a, VXM_K_ELEMENTWISE_BACKWARD)))
        return st;
    return vxm_cl_launch1(be, VXM_K_ELEMENTWISE_BACKWARD, n);
}

vxm_status vxm_cl_leaky_relu_backward(vxm_backend *be, const vxm_tensor *ref, const vxm_tensor *dy, float alpha,
                                      vxm_tensor *dx)
{
    const vxm_tensor *in[3] = {ref, dy, NULL};
    return elementwise(be, 0, "leaky_relu_backward", in, 2, alpha, dx);
}

vxm_status vxm_cl_add(vxm_backend *be, const vxm_tensor *a, const vxm_tensor *b, vxm_tensor *y)
{
    const vxm_tensor *in[3] = {a, b, NULL};
    return elementwise(be, 1, "add", in, 2, 0.0f, y);
}

vxm_status vxm_cl_sample_normal_backward(vxm_backend *be, const vxm_tensor *logvar, const vxm_tensor *eps,
                                         const vxm_tensor *dy, vxm_tensor *dlogvar)
{
    const vxm_tensor *in[3] = {logvar, eps, dy};
    return elementwise(be, 2, "sample_normal_backward", in, 3, 0.0f, dlogvar);
}

vxm_status vxm_cl_slice_channels(vxm_backend *be, const vxm_tensor *x, int c0, vxm_tensor *y)
{
    static const char op[] = "slice_channels";
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, x, op)) || (st = vxm_cl_check_tensor(be, y, op)))
        return st;
    if (vxm_cl_nvox(x) != vxm_cl_nvox(y) || c0 < 0 || c0 + y->channels > x->channels)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: channels [%d, %d) of a %dx%dx%dx%d tensor into %dx%dx%d",
                         op, c0, c0 + y->channels, x->shape[0], x->shape[1], x->shape[2], x->channels, y->shape[0],
                         y->shape[1], y->shape[2]);
    if (x->buf == y->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output aliases the input", op);
    size_t n = vxm_tensor_numel(y);
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_SLICE_CHANNELS);
    vxm_cl_arg_mem(&a, x->buf->mem);
    vxm_cl_arg_mem(&a, y->buf->mem);
    vxm_cl_arg_int(&a, x->channels);
    vxm_cl_arg_int(&a, c0);
    vxm_cl_arg_int(&a, y->channels);
    vxm_cl_arg_ulong(&a, n);
    if ((st = vxm_cl_args_done(be, &a, VXM_K_SLICE_CHANNELS)))
        return st;
    return vxm_cl_launch1(be, VXM_K_SLICE_CHANNELS, n);
}

/* Checks that `small` is `big` divided by the factors f on every axis: floored for pooling (exact = 0), exactly for
 * upsampling (exact = 1), with equal channel counts. */
static vxm_status check_factors(vxm_backend *be, const char *op, const vxm_tensor *big, const vxm_tensor *small,
                                const int f[3], int exact)
{
    if (!f)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: no factors", op);
    for (int d = 0; d < 3; d++)
        if (f[d] < 1 || small->shape[d] != big->shape[d] / f[d] || (exact && small->shape[d] * f[d] != big->shape[d]))
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: sizes %d and %d on axis %d with factor %d", op,
                             big->shape[d], small->shape[d], d, f[d]);
    if (big->channels != small->channels)
        return vxm_cl_shape_error(be, op, big, small);
    return VXM_OK;
}

vxm_status vxm_cl_maxpool_backward(vxm_backend *be, const vxm_tensor *x, const vxm_tensor *dy, const int f[3],
                                   float tie_tol, vxm_tensor *dx)
{
    static const char op[] = "maxpool_backward";
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, x, op)) || (st = vxm_cl_check_tensor(be, dy, op)) ||
        (st = vxm_cl_check_tensor(be, dx, op)) || (st = check_factors(be, op, x, dy, f, 0)))
        return st;
    if (vxm_cl_nvox(dx) != vxm_cl_nvox(x) || dx->channels != x->channels)
        return vxm_cl_shape_error(be, op, x, dx);
    if (dx->buf == x->buf || dx->buf == dy->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: dx aliases an input", op);
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_MAXPOOL_BACKWARD);
    vxm_cl_arg_mem(&a, x->buf->mem);
    vxm_cl_arg_mem(&a, dy->buf->mem);
    vxm_cl_arg_mem(&a, dx->buf->mem);
    vxm_cl_arg_int(&a, x->shape[1]);
    vxm_cl_arg_int(&a, x->shape[2]);
    vxm_cl_arg_int(&a, x->channels);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, f[d]);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, dy->shape[d]);
    vxm_cl_arg_float(&a, tie_tol);
    vxm_cl_arg_uint(&a, (unsigned)vxm_cl_nvox(x));
    if ((st = vxm_cl_args_done(be, &a, VXM_K_MAXPOOL_BACKWARD)))
        return st;
    return vxm_cl_launch1(be, VXM_K_MAXPOOL_BACKWARD, vxm_cl_nvox(x));
}

vxm_status vxm_cl_upsample_nearest_backward(vxm_backend *be, const vxm_tensor *dy, const int f[3], vxm_tensor *dx)
{
    static const char op[] = "upsample_nearest_backward";
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, dy, op)) || (st = vxm_cl_check_tensor(be, dx, op)) ||
        (st = check_factors(be, op, dy, dx, f, 1)))
        return st;
    if (dx->buf == dy->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: dx aliases dy", op);
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_UPSAMPLE_BACKWARD);
    vxm_cl_arg_mem(&a, dy->buf->mem);
    vxm_cl_arg_mem(&a, dx->buf->mem);
    vxm_cl_arg_int(&a, dx->shape[1]);
    vxm_cl_arg_int(&a, dx->shape[2]);
    vxm_cl_arg_int(&a, dx->channels);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, f[d]);
    vxm_cl_arg_uint(&a, (unsigned)vxm_cl_nvox(dx));
    if ((st = vxm_cl_args_done(be, &a, VXM_K_UPSAMPLE_BACKWARD)))
        return st;
    return vxm_cl_launch1(be, VXM_K_UPSAMPLE_BACKWARD, vxm_cl_nvox(dx));
}

/* Sampling coordinate of output index o (of m) on an input axis of n voxels, in float32 exactly as the forward
 * computes it (spec §6.1 linspace with exact end points; §6.2 legacy o / factor). */
static float resize_coordinate(vxm_resize_mapping map, int o, int n, int m, float factor)
{
    if (map == VXM_RESIZE_LEGACY)
        return (float)o / factor;
    float delta = m > 1 ? (float)(n - 1) / (float)(m - 1) : 0.0f;
    return o == 0 ? 0.0f : o == m - 1 ? (float)(n - 1) : (float)o * delta;
}

/* One axis of the adjoint's table (see vxm_resize_linear_backward in cl/resize.cl): for every input index i < n the
 * pairs (o, weight) of the outputs o < m whose clamped linear interpolation (spec §4.2, the float32 arithmetic of
 * vxm_axis_linear) reads i, in increasing o, lower corner first; padded to *len pairs with o = -1.  fixed: the
 * axis is not interpolated (2-D axis 0), input 0 <- output 0 with weight 1.  Returns a malloc'ed array or NULL. */
static float *resize_axis_table(vxm_resize_mapping map, int n, int m, float factor, int fixed, int *len)
{
    int *cnt = calloc((size_t)n, sizeof *cnt);
    int *lo = malloc((size_t)m * 2 * sizeof *lo);
    float *wt = malloc((size_t)m * 2 * sizeof *wt);
    float *tab = NULL;
    if (!cnt || !lo || !wt)
        goto done;
    int np = fixed ? 1 : 2 * m;
    for (int o = 0; o < (fixed ? 0 : m); o++) {
        float top = (float)(n - 1), p = resize_coordinate(map, o, n, m, factor);
        float q = fminf(fmaxf(p, 0.0f), top);
        float f = fminf(fmaxf(floorf(p), 0.0f), top);
        float c = fminf(f + 1.0f, top);
        float wl = c - q;
        lo[2 * o] = (int)f;
        lo[2 * o + 1] = (int)c;
        wt[2 * o] = wl;
        wt[2 * o + 1] = 1.0f - wl;
    }
    if (fixed) {
        lo[0] = 0;
        wt[0] = 1.0f;
    }
    int l = 1;
    for (int e = 0; e < np; e++)
        if (++cnt[lo[e]] > l)
            l = cnt[lo[e]];
    tab = malloc((size_t)n * (size_t)l * 2 * sizeof *tab);
    if (!tab)
        goto done;
    for (int i = 0; i < n; i++) {
        cnt[i] = 0;
        for (int e = 0; e < l; e++) {
            tab[2 * ((size_t)i * l + e)] = -1.0f;
            tab[2 * ((size_t)i * l + e) + 1] = 0.0f;
        }
    }
    for (int e = 0; e < np; e++) {
        size_t at = (size_t)lo[e] * l + (size_t)cnt[lo[e]]++;
        tab[2 * at] = (float)(e / 2); /* exact: checked below 2^24 */
        tab[2 * at + 1] = wt[e];
    }
    *len = l;
done:
    free(cnt);
    free(lo);
    free(wt);
    return tab;
}

vxm_status vxm_cl_resize_linear_backward(vxm_backend *be, const vxm_tensor *dy, vxm_resize_mapping map,
                                         const float factor[3], vxm_tensor *dx)
{
    static const char op[] = "resize_linear_backward";
    vxm_cl *cl = vxm_cl_of(be);
    vxm_status st;
    if ((st = vxm_cl_check_tensor(be, dy, op)) || (st = vxm_cl_check_tensor(be, dx, op)))
        return st;
    if (dx->channels != dy->channels)
        return vxm_cl_shape_error(be, op, dx, dy);
    if (map != VXM_RESIZE_LINSPACE && map != VXM_RESIZE_LEGACY)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: unknown coordinate mapping %d", op, (int)map);
    if (map == VXM_RESIZE_LEGACY)
        for (int d = 0; d < 3; d++)
            if (!factor || !(factor[d] > 0.0f))
                return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: legacy mapping needs positive factors", op);
    if (dx->buf == dy->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: dx aliases dy", op);
    for (int d = 0; d < 3; d++)
        if (dy->shape[d] >= (1 << 24)) /* output indices travel as floats, exact below 2^24 */
            return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "%s: %d voxels along axis %d", op, dy->shape[d], d);

    /* Per-axis tables, concatenated; axis 0 is fixed for 2-D data, as in the forward. */
    int fixed = dx->shape[0] == 1 && dy->shape[0] == 1;
    float *tab[3] = {NULL, NULL, NULL};
    int len[3] = {0, 0, 0};
    for (int d = 0; d < 3; d++) {
        tab[d] = resize_axis_table(map, dx->shape[d], dy->shape[d], factor ? factor[d] : 1.0f, d == 0 && fixed,
                                   &len[d]);
        if (!tab[d]) {
            for (int e = 0; e < d; e++)
                free(tab[e]);
            return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of host memory");
        }
    }
    size_t off1 = (size_t)dx->shape[0] * (size_t)len[0], off2 = off1 + (size_t)dx->shape[1] * (size_t)len[1];
    size_t npairs = off2 + (size_t)dx->shape[2] * (size_t)len[2];
    float *all = malloc(npairs * 2 * sizeof *all);
    if (all) {
        memcpy(all, tab[0], off1 * 2 * sizeof *all);
        memcpy(all + 2 * off1, tab[1], (off2 - off1) * 2 * sizeof *all);
        memcpy(all + 2 * off2, tab[2], (npairs - off2) * 2 * sizeof *all);
    }
    for (int d = 0; d < 3; d++)
        free(tab[d]);
    if (!all)
        return vxm_error(be->ctx, VXM_ENOMEM, be->spec, "out of host memory");
    cl_int err;
    cl_mem tbuf = clCreateBuffer(cl->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, npairs * 2 * sizeof(float),
                                 all, &err);
    free(all);
    if (!tbuf)
        return vxm_cl_fail(be, err, 1, "clCreateBuffer(resize adjoint table)");
    vxm_cl_args a;
    vxm_cl_args_begin(&a, be, VXM_K_RESIZE_BACKWARD);
    vxm_cl_arg_mem(&a, dy->buf->mem);
    vxm_cl_arg_mem(&a, tbuf);
    vxm_cl_arg_mem(&a, dx->buf->mem);
    vxm_cl_arg_int(&a, dx->shape[1]);
    vxm_cl_arg_int(&a, dx->shape[2]);
    vxm_cl_arg_int(&a, dx->channels);
    vxm_cl_arg_int(&a, dy->shape[1]);
    vxm_cl_arg_int(&a, dy->shape[2]);
    for (int d = 0; d < 3; d++)
        vxm_cl_arg_int(&a, len[d]);
    vxm_cl_arg_uint(&a, (unsigned)off1);
    vxm_cl_arg_uint(&a, (unsigned)off2);
    vxm_cl_arg_uint(&a, (unsigned)vxm_cl_nvox(dx));
    st = vxm_cl_args_done(be, &a, VXM_K_RESIZE_BACKWARD);
    if (!st)
        st = vxm_cl_launch1(be, VXM_K_RESIZE_BACKWARD, vxm_cl_nvox(dx));
    clReleaseMemObject(tbuf); /* freed by OpenCL once the kernel is done with it */
    return st;
}
