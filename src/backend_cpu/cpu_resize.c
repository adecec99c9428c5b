/* Linear resize of every channel (spec §6.1 linspace / §6.2 legacy mapping) with the clamped trilinear sampling
 * of §4.2.  The output sizes come from y (the caller truncates n*f as §6.1 says); per axis the sampling
 * coordinates, corners and weights are tabulated once. */
#include <stdlib.h>

#include "backend_cpu/cpu_internal.h"
#include "backend_cpu/cpu_sample.h"

/* Coordinate of output index i along an axis of input size n and output size m. */
static float resize_coord(vxm_resize_mapping map, int i, int n, int m, float factor)
{
    if (map == VXM_RESIZE_LEGACY)
        return (float)i / factor; /* legacy neuron: s(i) = i / f in float32 */
    /* TF linspace(0, n-1, m) in float32: exact end points, inner points float32(i) * float32((n-1)/(m-1)).
     * n == m gives delta 1, i.e. the identity. */
    if (m == 1 || i == 0)
        return 0.0f;
    if (i == m - 1)
        return (float)(n - 1);
    float delta = (float)(n - 1) / (float)(m - 1);
    return (float)i * delta;
}

vxm_status cpu_resize_linear(vxm_backend *be, const vxm_tensor *x, vxm_resize_mapping map, const float factor[3],
                             vxm_tensor *y)
{
    static const char op[] = "resize_linear";
    vxm_status st;
    if ((st = cpu_check_tensor(be, x, op, "input")) || (st = cpu_check_tensor(be, y, op, "output")))
        return st;
    if (map != VXM_RESIZE_LINSPACE && map != VXM_RESIZE_LEGACY)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: unknown mapping %d", op, (int)map);
    if (y->channels != x->channels)
        return vxm_error(be->ctx, VXM_ESHAPE, be->spec, "%s: output has %d channels, input %d", op, y->channels,
                         x->channels);
    if (y->buf == x->buf)
        return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: output must not alias the input", op);
    if (map == VXM_RESIZE_LEGACY) {
        if (!factor)
            return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: legacy mapping needs zoom factors", op);
        for (int d = 0; d < 3; d++)
            if (!(factor[d] > 0.0f) && x->shape[d] != 1)
                return vxm_error(be->ctx, VXM_EINVAL, be->spec, "%s: zoom factor %g along axis %d", op,
                                 (double)factor[d], d);
    }
    cpu_lin_axis *tab[3];
    size_t total = (size_t)y->shape[0] + (size_t)y->shape[1] + (size_t)y->shape[2];
    tab[0] = malloc(total * sizeof(cpu_lin_axis));
    if (!tab[0])
        return cpu_nomem(be, total * sizeof(cpu_lin_axis));
    tab[1] = tab[0] + y->shape[0];
    tab[2] = tab[1] + y->shape[1];
    for (int d = 0; d < 3; d++)
        for (int i = 0; i < y->shape[d]; i++) {
            /* a size-1 input axis samples its only voxel whatever the factor */
            float s = x->shape[d] == 1 ? 0.0f
                                       : resize_coord(map, i, x->shape[d], y->shape[d], factor ? factor[d] : 1.0f);
            tab[d][i] = cpu_lin_axis_at(s, x->shape[d]);
        }
    const float *in = x->buf->data;
    float *out = y->buf->data;
    const int C = x->channels;
    long rows = (long)y->shape[0] * y->shape[1];
    int par = vxm_tensor_numel(y) >= CPU_PAR_MIN;
    /* Per voxel through cpu_interp_linear: all channels of a corner are contiguous, and the corners of
     * neighbouring outputs are neighbours, so this beats gathering channel by channel. */
#pragma omp parallel for num_threads(cpu_threads(be)) schedule(static) if (par)
    for (long r = 0; r < rows; r++) {
        cpu_lin_axis a[3];
        a[0] = tab[0][r / y->shape[1]];
        a[1] = tab[1][r % y->shape[1]];
        float *o = out + (size_t)r * (size_t)y->shape[2] * (size_t)C;
        for (int k = 0; k < y->shape[2]; k++) {
            a[2] = tab[2][k];
            cpu_interp_linear(in, x->shape, C, a, o + (size_t)k * (size_t)C);
        }
    }
    free(tab[0]);
    return VXM_OK;
}
