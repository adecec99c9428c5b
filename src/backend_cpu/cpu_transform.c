/* The spatial transformer (spec §4.1-§4.4) and the dense displacement of an affine matrix (§4.5). */
#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_sample.h"

vxm_status cpu_spatial_transform(vxm_backend *be, const vxm_tensor *img, const vxm_tensor *disp, int ndim,
                                 vxm_interp interp, int use_fill, float fill, vxm_tensor *y)
{
    static const char op[] = "spatial_transform";
    vxm_status st;
    if ((st = cpu_check_tensor(be, img, op, "image")) || (st = cpu_check_tensor(be, disp, op, "displacement")) ||
        (st = cpu_check_tensor(be, y, op, "output")))
        return st;
    if (ndim < 1 || ndim > 3)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: ndim %d not in 1..3", op, ndim);
    if (interp != VXM_INTERP_LINEAR && interp != VXM_INTERP_NEAREST)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: unknown interpolation %d", op, (int)interp);
    if (disp->channels != ndim)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: displacement has %d channels, expected %d", op,
                         disp->channels, ndim);
    if ((st = cpu_check_same(be, disp, y, 0, op, "displacement", "output")))
        return st;
    if (y->channels != img->channels)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output has %d channels, image %d", op, y->channels,
                         img->channels);
    if (y->buf == img->buf || y->buf == disp->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output must not alias an input", op);
    if (!cpu_sample_fits(img->shape))
        return vxm_error(be->ctx, VXM_EUNSUPPORTED, be->spec, "%s: %dx%dx%d voxels is too large", op, img->shape[0],
                         img->shape[1], img->shape[2]);
    cpu_sample_dense(img->buf->data, img->shape, img->channels, disp->buf->data, disp->shape, ndim, interp, use_fill,
                     fill, 0, y->buf->data, cpu_threads(be));
    return VXM_OK;
}

/* Follows voxelmorph's affine_to_dense_shift: with m = x - c (c = (n-1)/2, or 0 without shift_center, exact in
 * float32), loc = A m + t, displacement = loc - m.  loc is accumulated in double and rounded once to float32
 * (TF does a float32 matmul; the two agree to an ulp of the coordinate), the final subtraction is float32 as in
 * TF. */
vxm_status cpu_affine_to_disp(vxm_backend *be, const float *mat, int ndim, int shift_center, vxm_tensor *y)
{
    static const char op[] = "affine_to_disp";
    vxm_status st;
    if ((st = cpu_check_tensor(be, y, op, "output")))
        return st;
    if (ndim < 1 || ndim > 3)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: ndim %d not in 1..3", op, ndim);
    if (!mat)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: no matrix", op);
    if (y->channels != ndim)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output has %d channels, expected %d", op, y->channels,
                         ndim);
    int first = 3 - ndim;
    for (int d = 0; d < first; d++)
        if (y->shape[d] != 1)
            return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: %d-D field needs size 1 along axis %d, got %d", op,
                             ndim, d, y->shape[d]);
    float center[3] = {0, 0, 0};
    if (shift_center)
        for (int d = 0; d < ndim; d++)
            center[d] = (float)(y->shape[first + d] - 1) * 0.5f;
    const int *s = y->shape;
    float *out = y->buf->data;
    long rows = (long)s[0] * s[1];
    int par = vxm_tensor_numel(y) >= CPU_PAR_MIN;
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (par)
    for (long r = 0; r < rows; r++) {
        int x[3] = {(int)(r / s[1]), (int)(r % s[1]), 0};
        for (x[2] = 0; x[2] < s[2]; x[2]++) {
            float m[3];
            for (int d = 0; d < ndim; d++)
                m[d] = (float)x[first + d] - center[d];
            float *o = out + ((size_t)r * (size_t)s[2] + (size_t)x[2]) * (size_t)ndim;
            for (int d = 0; d < ndim; d++) {
                const float *row = mat + (size_t)d * (size_t)(ndim + 1);
                double loc = row[ndim];
                for (int e = 0; e < ndim; e++)
                    loc += (double)row[e] * (double)m[e];
                o[d] = (float)loc - m[d];
            }
        }
    }
    return VXM_OK;
}
